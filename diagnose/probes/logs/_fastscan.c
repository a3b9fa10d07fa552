/* Optional accelerator for the W3C log scanner (diagnose/probes/logs/scan.py).
 *
 * One function, scan_block(), does in one pass over a block of whole TAB-separated lines what the
 * pure-Python fast path does with bytes.split and Counter: it checks that the block is clean (every
 * line has exactly `width` fields, no '#' line, no empty line, no control byte, CR only before LF),
 * counts the distinct combinations of the key columns into a dict, finds the earliest and latest
 * (date, time), counts Outlook Anywhere records, and picks the records whose status value is in a
 * given set, returning only the columns asked for. Nothing is changed unless the whole block is
 * clean: an unclean block returns None and the caller takes its careful line-by-line path.
 *
 * The pure-Python path stays the reference; tests compare the two on the same inputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#if PY_VERSION_HEX < 0x030A0000 /* Python 3.8 and 3.9 (Windows Server 2008 R2's Python is 3.8) */
static inline PyObject *Py_NewRef(PyObject *o) { Py_INCREF(o); return o; }
#endif
#include <stdint.h>
#include <string.h>

#define MAX_KEYS 16
#define MAX_DETAIL 256
#define MAX_PICK 32
#define MAX_WIDTH 100000

enum { C_PLAIN = 0, C_TAB, C_LF, C_CR, C_BAD };
static unsigned char CLASS[256];

typedef struct {
    const char *p;
    Py_ssize_t n;
} span;

typedef struct {
    uint64_t hash;
    Py_ssize_t count;
    span f[MAX_KEYS];
    int used;
} entry;

typedef struct {
    entry *slots;
    size_t cap;  /* a power of two */
    size_t used;
    int nkeys;
} table;

static int table_init(table *t, int nkeys) {
    t->cap = 256;
    t->used = 0;
    t->nkeys = nkeys;
    t->slots = PyMem_Calloc(t->cap, sizeof(entry));
    return t->slots ? 0 : -1;
}

static int same_key(const entry *e, const span *f, int nkeys) {
    for (int k = 0; k < nkeys; k++) {
        if (e->f[k].n != f[k].n || memcmp(e->f[k].p, f[k].p, (size_t)f[k].n) != 0) return 0;
    }
    return 1;
}

static int table_grow(table *t) {
    size_t cap = t->cap * 2;
    entry *slots = PyMem_Calloc(cap, sizeof(entry));
    if (!slots) return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].used) continue;
        size_t j = (size_t)t->slots[i].hash & (cap - 1);
        while (slots[j].used) j = (j + 1) & (cap - 1);
        slots[j] = t->slots[i];
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

/* A hash of the key fields, eight bytes at a time (equality is always checked with memcmp). */
static uint64_t key_hash(const span *f, int nkeys) {
    const uint64_t mul = 0x9E3779B97F4A7C15ULL;
    uint64_t h = 0x243F6A8885A308D3ULL;
    for (int k = 0; k < nkeys; k++) {
        const unsigned char *p = (const unsigned char *)f[k].p;
        Py_ssize_t n = f[k].n, i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t chunk;
            memcpy(&chunk, p + i, 8);
            h = (h ^ chunk) * mul;
            h ^= h >> 32;
        }
        uint64_t tail = (uint64_t)n << 56;  /* the length separates "ab","c" from "a","bc" */
        for (int shift = 0; i < n; i++, shift += 8) tail |= (uint64_t)p[i] << shift;
        h = (h ^ tail) * mul;
        h ^= h >> 29;
    }
    return h;
}

static int table_add(table *t, const span *f) {
    uint64_t h = key_hash(f, t->nkeys);
    size_t j = (size_t)h & (t->cap - 1);
    while (t->slots[j].used) {
        entry *e = &t->slots[j];
        if (e->hash == h && same_key(e, f, t->nkeys)) {
            e->count++;
            return 0;
        }
        j = (j + 1) & (t->cap - 1);
    }
    entry *e = &t->slots[j];
    e->used = 1;
    e->hash = h;
    e->count = 1;
    memcpy(e->f, f, sizeof(span) * (size_t)t->nkeys);
    if (++t->used * 2 > t->cap) return table_grow(t);
    return 0;
}

/* bytes < b as Python orders them: memcmp over the common length, then the shorter first. */
static int span_cmp(span a, span b) {
    Py_ssize_t n = a.n < b.n ? a.n : b.n;
    int c = memcmp(a.p, b.p, (size_t)n);
    if (c) return c;
    return (a.n > b.n) - (a.n < b.n);
}

static int pair_cmp(span ad, span at, span bd, span bt) {
    int c = span_cmp(ad, bd);
    return c ? c : span_cmp(at, bt);
}

/* int(value) >= limit, as Python's int() reads bytes; a value int() refuses counts as -1. */
static int at_least(span v, long long limit) {
    const char *p = v.p, *e = v.p + v.n;
    while (p < e && *p == ' ') p++;
    while (e > p && e[-1] == ' ') e--;
    int neg = 0;
    if (p < e && (*p == '+' || *p == '-')) neg = *p++ == '-';
    if (p == e) return -1 >= limit;
    long long value = 0;
    int big = 0, last_digit = 0;
    for (; p < e; p++) {
        if (*p >= '0' && *p <= '9') {
            if (value > 100000000000000000LL) big = 1;
            else value = value * 10 + (*p - '0');
            last_digit = 1;
        } else if (*p == '_' && last_digit && p + 1 < e && p[1] >= '0' && p[1] <= '9') {
            last_digit = 0;
        } else {
            return -1 >= limit;
        }
    }
    if (big) return !neg;
    return (neg ? -value : value) >= limit;
}

static const char RPCPROXY[] = "/rpc/rpcproxy.dll";

static int has_rpcproxy(span v) {
    const Py_ssize_t m = (Py_ssize_t)sizeof(RPCPROXY) - 1;
    for (Py_ssize_t i = 0; i + m <= v.n; i++) {
        if (v.p[i] != '/') continue;
        Py_ssize_t k = 1;
        while (k < m) {
            char c = v.p[i + k];
            if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            if (c != RPCPROXY[k]) break;
            k++;
        }
        if (k == m) return 1;
    }
    return 0;
}

static int is_oa_method(span v) {
    return (v.n == 11 && memcmp(v.p, "RPC_IN_DATA", 11) == 0) || (v.n == 12 && memcmp(v.p, "RPC_OUT_DATA", 12) == 0);
}

static int read_columns(PyObject *seq, Py_ssize_t *out, int max, Py_ssize_t width, const char *what, int *count) {
    PyObject *fast = PySequence_Fast(seq, what);
    if (!fast) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > max) {
        PyErr_Format(PyExc_ValueError, "%s: at most %d columns", what, max);
        Py_DECREF(fast);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t col = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(fast, i));
        if (col == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        if (col < 0 || col >= width) {
            PyErr_Format(PyExc_ValueError, "%s: column %zd outside 0..%zd", what, col, width - 1);
            Py_DECREF(fast);
            return -1;
        }
        out[i] = col;
    }
    *count = (int)n;
    Py_DECREF(fast);
    return 0;
}

/* Field i of a line whose field starts are in fstart (fstart[width] is one past the line's end). */
static span field_at(const unsigned char *line, const Py_ssize_t *fstart, Py_ssize_t i) {
    span f;
    f.p = (const char *)line + fstart[i];
    f.n = fstart[i + 1] - 1 - fstart[i];
    return f;
}

static PyObject *span_bytes(span s) { return PyBytes_FromStringAndSize(s.p, s.n); }

static PyObject *pair_or_none(int have, span a, span b) {
    if (!have) return Py_BuildValue("(OO)", Py_None, Py_None);
    return Py_BuildValue("(y#y#)", a.p, a.n, b.p, b.n);
}

PyDoc_STRVAR(scan_block_doc,
"scan_block(block, width, keys, counts, date, time, method, uri, taken, oa_long, status, detail,\n"
"           detail_all, pick) -> tuple | None\n\n"
"Scan a block of whole lines of `width` TAB-separated fields. None when the block is not clean.\n"
"Otherwise (lines, new_keys, (lo_date, lo_time), (hi_date, hi_time), oa, oa_long, rows, starts, cols):\n"
"key-column combinations are added to `counts` (skipped when counts is None); rows are the indexes\n"
"of the records whose status field is in `detail` (every record when detail_all), starts their\n"
"offsets in the block, cols one list per `pick` column. Column arguments are -1 when absent.");

static PyObject *scan_block(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buf;
    Py_ssize_t width, date, time, method, uri, taken, status;
    long long oa_long;
    PyObject *keys_obj, *counts, *detail, *pick_obj;
    int detail_all;
    if (!PyArg_ParseTuple(args, "y*nOOnnnnnLnOpO:scan_block", &buf, &width, &keys_obj, &counts, &date, &time,
                          &method, &uri, &taken, &oa_long, &status, &detail, &detail_all, &pick_obj))
        return NULL;

    PyObject *result = NULL, *rows = NULL, *starts = NULL, *cols = NULL;
    Py_ssize_t *fstart = NULL;
    table tab = {NULL, 0, 0, 0};
    Py_ssize_t keycol[MAX_KEYS], pickcol[MAX_PICK];
    int nkeys = 0, npick = 0, ndetail = 0;
    span want[MAX_DETAIL];
    PyObject *detail_items = NULL;

    if (width < 1 || width > MAX_WIDTH) {
        PyErr_Format(PyExc_ValueError, "width outside 1..%d", MAX_WIDTH);
        goto done;
    }
    Py_ssize_t optional[6];
    optional[0] = date, optional[1] = time, optional[2] = method, optional[3] = uri, optional[4] = taken;
    optional[5] = status;
    for (int k = 0; k < 6; k++) {
        if (optional[k] < -1 || optional[k] >= width) {
            PyErr_Format(PyExc_ValueError, "column %zd outside -1..%zd", optional[k], width - 1);
            goto done;
        }
    }
    if (read_columns(keys_obj, keycol, MAX_KEYS, width, "keys", &nkeys) < 0) goto done;
    if (read_columns(pick_obj, pickcol, MAX_PICK, width, "pick", &npick) < 0) goto done;
    if (counts != Py_None && !PyDict_Check(counts)) {
        PyErr_SetString(PyExc_TypeError, "counts must be a dict or None");
        goto done;
    }
    if (detail != Py_None && status >= 0 && !detail_all) {
        detail_items = PySequence_Fast(detail, "detail must be iterable");
        if (!detail_items) goto done;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(detail_items);
        if (n > MAX_DETAIL) {
            PyErr_Format(PyExc_ValueError, "detail: at most %d values", MAX_DETAIL);
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(detail_items, i);
            if (!PyBytes_Check(item)) continue;  /* None and the like never equal a field */
            want[ndetail].p = PyBytes_AS_STRING(item);
            want[ndetail].n = PyBytes_GET_SIZE(item);
            ndetail++;
        }
    }
    int picking = detail_all || ndetail > 0;
    int counting = counts != Py_None && nkeys > 0;

    fstart = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(width + 1));
    if (!fstart || (counting && table_init(&tab, nkeys) < 0)) {
        PyErr_NoMemory();
        goto done;
    }
    rows = PyList_New(0);
    starts = PyList_New(0);
    cols = PyList_New(npick);
    if (!rows || !starts || !cols) goto done;
    for (int k = 0; k < npick; k++) {
        PyObject *column = PyList_New(0);
        if (!column) goto done;
        PyList_SET_ITEM(cols, k, column);
    }

    const unsigned char *base = (const unsigned char *)buf.buf;
    const unsigned char *s = base, *end = base + buf.len;
    int clean = buf.len > 0 && end[-1] == '\n';
    Py_ssize_t row = 0, oa = 0, oa_long_n = 0;
    int have_time = 0;
    span lo_d = {NULL, 0}, lo_t = {NULL, 0}, hi_d = {NULL, 0}, hi_t = {NULL, 0};
    span key[MAX_KEYS];

    while (clean && s < end) {
        const unsigned char *line = s, *line_end;
        Py_ssize_t nf = 0;
        if (*s == '#') { clean = 0; break; }
        fstart[0] = 0;
        for (;;) {
            while (CLASS[*s] == C_PLAIN) s++;  /* the block ends with LF, so this stops */
            unsigned char c = CLASS[*s];
            if (c == C_TAB) {
                if (++nf >= width) { clean = 0; break; }
                fstart[nf] = (s + 1) - line;
                s++;
            } else if (c == C_LF) {
                line_end = s;
                break;
            } else if (c == C_CR && s + 1 < end && s[1] == '\n') {
                line_end = s;
                s++;
                break;
            } else {
                clean = 0;
                break;
            }
        }
        if (!clean) break;
        if (nf != width - 1 || line_end == line) { clean = 0; break; }
        fstart[width] = (line_end - line) + 1;
#define FIELD(i) field_at(line, fstart, i)
        if (counting) {
            for (int k = 0; k < nkeys; k++) key[k] = FIELD(keycol[k]);
            if (table_add(&tab, key) < 0) { PyErr_NoMemory(); goto done; }
        }
        if (date >= 0 && time >= 0) {
            span d = FIELD(date), t = FIELD(time);
            if (!have_time) {
                lo_d = hi_d = d;
                lo_t = hi_t = t;
                have_time = 1;
            } else if (pair_cmp(d, t, lo_d, lo_t) < 0) {
                lo_d = d;
                lo_t = t;
            } else if (pair_cmp(d, t, hi_d, hi_t) > 0) {
                hi_d = d;
                hi_t = t;
            }
        }
        if (method >= 0 || uri >= 0) {
            int flag = (method >= 0 && is_oa_method(FIELD(method))) || (uri >= 0 && has_rpcproxy(FIELD(uri)));
            if (flag) {
                oa++;
                if (taken >= 0 && at_least(FIELD(taken), oa_long)) oa_long_n++;
            }
        }
        int picked = detail_all;
        if (!picked && ndetail > 0) {
            span v = FIELD(status);
            for (int k = 0; k < ndetail && !picked; k++) picked = v.n == want[k].n && memcmp(v.p, want[k].p, (size_t)v.n) == 0;
        }
        if (picked && picking) {
            PyObject *r = PyLong_FromSsize_t(row), *o = PyLong_FromSsize_t(line - base);
            int bad = !r || !o || PyList_Append(rows, r) < 0 || PyList_Append(starts, o) < 0;
            Py_XDECREF(r);
            Py_XDECREF(o);
            if (bad) goto done;
            for (int k = 0; k < npick; k++) {
                PyObject *v = span_bytes(FIELD(pickcol[k]));
                if (!v || PyList_Append(PyList_GET_ITEM(cols, k), v) < 0) {
                    Py_XDECREF(v);
                    goto done;
                }
                Py_DECREF(v);
            }
        }
#undef FIELD
        s++;  /* past the LF */
        row++;
    }
    if (!clean) {
        result = Py_NewRef(Py_None);
        goto done;
    }

    Py_ssize_t new_keys = 0;
    if (counting) {
        for (size_t i = 0; i < tab.cap; i++) {
            entry *e = &tab.slots[i];
            if (!e->used) continue;
            PyObject *tuple = PyTuple_New(nkeys);
            if (!tuple) goto done;
            for (int k = 0; k < nkeys; k++) {
                PyObject *v = span_bytes(e->f[k]);
                if (!v) { Py_DECREF(tuple); goto done; }
                PyTuple_SET_ITEM(tuple, k, v);
            }
            PyObject *old = PyDict_GetItemWithError(counts, tuple);
            PyObject *sum;
            if (old) {
                PyObject *add = PyLong_FromSsize_t(e->count);
                sum = add ? PyNumber_Add(old, add) : NULL;
                Py_XDECREF(add);
            } else if (PyErr_Occurred()) {
                sum = NULL;
            } else {
                sum = PyLong_FromSsize_t(e->count);
                new_keys++;
            }
            int bad = !sum || PyDict_SetItem(counts, tuple, sum) < 0;
            Py_XDECREF(sum);
            Py_DECREF(tuple);
            if (bad) goto done;
        }
    }
    PyObject *lo = pair_or_none(have_time, lo_d, lo_t), *hi = pair_or_none(have_time, hi_d, hi_t);
    if (lo && hi)
        result = Py_BuildValue("(nnOOnnOOO)", row, new_keys, lo, hi, oa, oa_long_n, rows, starts, cols);
    Py_XDECREF(lo);
    Py_XDECREF(hi);

done:
    PyBuffer_Release(&buf);
    PyMem_Free(fstart);
    PyMem_Free(tab.slots);
    Py_XDECREF(detail_items);
    Py_XDECREF(rows);
    Py_XDECREF(starts);
    Py_XDECREF(cols);
    return result;
}

static PyMethodDef METHODS[] = {
    {"scan_block", scan_block, METH_VARARGS, scan_block_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_fastscan", "Optional C accelerator for the W3C log scanner.", -1, METHODS,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastscan(void) {
    for (int c = 0; c < 256; c++) CLASS[c] = (c < 0x20 || c == 0x7f) ? C_BAD : C_PLAIN;
    CLASS['\t'] = C_TAB;
    CLASS['\n'] = C_LF;
    CLASS['\r'] = C_CR;
    PyObject *module = PyModule_Create(&MODULE);
    if (module && (PyModule_AddIntConstant(module, "MAX_DETAIL", MAX_DETAIL) < 0 ||
                   PyModule_AddIntConstant(module, "MAX_WIDTH", MAX_WIDTH) < 0)) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
