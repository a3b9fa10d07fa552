/* Optional accelerator for the #Fields logs of the proxy reader (diagnose/probes/proxylogs/w3c.py).
 *
 * One function, w3c_block(), does in one pass over a block of whole lines what the pure-Python fast
 * path of w3c.Reader does with bytes.split, map and Counter: it checks that the block is clean (every
 * line has exactly `width` fields, no '#' line, no control byte, CR only before LF, no quote in a CSV
 * block), makes each record's key (scope, status, sub, code, long poll, seconds) and counts the
 * distinct keys into a dict in the order they first appear, and finds the earliest and latest
 * (date, time). An unclean block, or a long-lived request whose duration is not a plain number,
 * returns None and the caller takes the pure-Python way. The pure-Python path stays the reference;
 * tests compare the two on random damaged logs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_WIDTH 100000
#define NROLES 11 /* scope status sub code method stem query action ms date time */
enum { R_SCOPE, R_STATUS, R_SUB, R_CODE, R_METHOD, R_STEM, R_QUERY, R_ACTION, R_MS, R_DATE, R_TIME };
enum { LP_NONE, LP_RPC_IN, LP_RPC_OUT, LP_EAS, LP_MAPI, LP_COUNT };
static const char *LP_NAMES[LP_COUNT] = {"", "rpc_in_data", "rpc_out_data", "eas_ping", "mapi_notificationwait"};
static PyObject *LP_TEXT[LP_COUNT];

static unsigned char BAD[256]; /* bytes no clean line holds (control bytes other than TAB, LF, CR) */

typedef struct {
    const char *p;
    Py_ssize_t n;
} span;

typedef struct {
    uint64_t hash;
    Py_ssize_t count;
    span f[4];
    int lp;
    long long secs;
    int used;
} entry;

typedef struct {
    entry *slots;
    size_t cap; /* a power of two */
    size_t used;
    size_t *order; /* slot of each key, in the order keys first appear */
} table;

static int table_init(table *t) {
    t->cap = 256;
    t->used = 0;
    t->slots = PyMem_Calloc(t->cap, sizeof(entry));
    t->order = PyMem_Calloc(t->cap, sizeof(size_t));
    return (t->slots && t->order) ? 0 : -1;
}

static void table_free(table *t) {
    PyMem_Free(t->slots);
    PyMem_Free(t->order);
}

static int table_grow(table *t) {
    size_t cap = t->cap * 2;
    entry *slots = PyMem_Calloc(cap, sizeof(entry));
    size_t *order = PyMem_Calloc(cap, sizeof(size_t));
    if (!slots || !order) {
        PyMem_Free(slots);
        PyMem_Free(order);
        return -1;
    }
    for (size_t k = 0; k < t->used; k++) {
        const entry *e = &t->slots[t->order[k]];
        size_t j = (size_t)e->hash & (cap - 1);
        while (slots[j].used) j = (j + 1) & (cap - 1);
        slots[j] = *e;
        order[k] = j;
    }
    PyMem_Free(t->slots);
    PyMem_Free(t->order);
    t->slots = slots;
    t->order = order;
    t->cap = cap;
    return 0;
}

static uint64_t mix(uint64_t h, const unsigned char *p, Py_ssize_t n) {
    const uint64_t mul = 0x9E3779B97F4A7C15ULL;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t chunk;
        memcpy(&chunk, p + i, 8);
        h = (h ^ chunk) * mul;
        h ^= h >> 32;
    }
    uint64_t tail = (uint64_t)n << 56; /* the length separates "ab","c" from "a","bc" */
    for (int shift = 0; i < n; i++, shift += 8) tail |= (uint64_t)p[i] << shift;
    h = (h ^ tail) * mul;
    return h ^ (h >> 29);
}

static int same(const entry *e, const span *f, int lp, long long secs) {
    if (e->lp != lp || e->secs != secs) return 0;
    for (int k = 0; k < 4; k++) {
        if (e->f[k].n != f[k].n || memcmp(e->f[k].p, f[k].p, (size_t)f[k].n) != 0) return 0;
    }
    return 1;
}

static int table_add(table *t, const span *f, int lp, long long secs) {
    uint64_t h = 0x243F6A8885A308D3ULL;
    for (int k = 0; k < 4; k++) h = mix(h, (const unsigned char *)f[k].p, f[k].n);
    h = (h ^ (uint64_t)(lp + 1) ^ ((uint64_t)secs << 8)) * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 31;
    size_t j = (size_t)h & (t->cap - 1);
    while (t->slots[j].used) {
        entry *e = &t->slots[j];
        if (e->hash == h && same(e, f, lp, secs)) {
            e->count++;
            return 0;
        }
        j = (j + 1) & (t->cap - 1);
    }
    entry *e = &t->slots[j];
    e->used = 1;
    e->hash = h;
    e->count = 1;
    e->lp = lp;
    e->secs = secs;
    memcpy(e->f, f, sizeof(e->f));
    t->order[t->used] = j;
    if (++t->used * 2 > t->cap) return table_grow(t);
    return 0;
}

/* bytes a < b as Python orders them: memcmp over the common length, then the shorter first. */
static int span_cmp(span a, span b) {
    Py_ssize_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.p, b.p, (size_t)n) : 0;
    if (c) return c;
    return (a.n > b.n) - (a.n < b.n);
}

static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* `needle` (lower case) in the ASCII-lowered `v` */
#define has(v, needle) has_n(v, needle, (Py_ssize_t)sizeof(needle) - 1) /* needle: a string literal */
static int has_n(span v, const char *needle, Py_ssize_t m) {
    for (Py_ssize_t i = 0; i + m <= v.n; i++) {
        Py_ssize_t k = 0;
        while (k < m && lower((unsigned char)v.p[i + k]) == needle[k]) k++;
        if (k == m) return 1;
    }
    return 0;
}

#define equals(v, text) equals_n(v, text, (Py_ssize_t)sizeof(text) - 1)
static int equals_n(span v, const char *text, Py_ssize_t m) {
    return v.n == m && memcmp(v.p, text, (size_t)m) == 0;
}

#define equals_lower(v, text) equals_lower_n(v, text, (Py_ssize_t)sizeof(text) - 1)
static int equals_lower_n(span v, const char *text, Py_ssize_t m) {
    if (v.n != m) return 0;
    for (Py_ssize_t i = 0; i < m; i++)
        if (lower((unsigned char)v.p[i]) != text[i]) return 0;
    return 1;
}

/* w3c.long_poll: the long-lived request class of a record */
static int long_poll(span method, span stem, span query, span action) {
    if (equals(method, "RPC_IN_DATA")) return LP_RPC_IN;
    if (equals(method, "RPC_OUT_DATA")) return LP_RPC_OUT;
    /* "cmd=ping" and "notificationwait" hold no space, so they cannot span query + " " + action */
    if (has(stem, "activesync") &&
        (has(query, "cmd=ping") || has(action, "cmd=ping") || equals_lower(action, "ping")))
        return LP_EAS;
    if (has(stem, "/mapi/") && (has(query, "notificationwait") || has(action, "notificationwait"))) return LP_MAPI;
    return LP_NONE;
}

/* w3c._seconds for a long poll: int(ms) // 1000, -1 when int() refuses it; 1 in *odd when the value
   is one this function does not read the way int() does (the caller then gives up the block) */
static long long seconds(span ms, int *odd) {
    if (ms.n == 0 || (ms.n == 1 && ms.p[0] == '-')) return -1;
    if (ms.n > 18) {
        *odd = 1;
        return -1;
    }
    long long v = 0;
    for (Py_ssize_t i = 0; i < ms.n; i++) {
        unsigned char c = (unsigned char)ms.p[i];
        if (c < '0' || c > '9') {
            *odd = 1;
            return -1;
        }
        v = v * 10 + (c - '0');
    }
    return v / 1000;
}

static PyObject *bytes_of(span s) { return PyBytes_FromStringAndSize(s.p, s.n); }

static PyObject *pair_of(span d, span t) {
    PyObject *a = bytes_of(d), *b = a ? bytes_of(t) : NULL;
    PyObject *pair = b ? PyTuple_Pack(2, a, b) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    return pair;
}

/* the key tuple of an entry: (4 x bytes, long poll, seconds) */
static PyObject *key_of(const entry *e) {
    PyObject *key = PyTuple_New(6);
    if (!key) return NULL;
    for (int r = 0; r < 4; r++) {
        PyObject *v = bytes_of(e->f[r]);
        if (!v) {
            Py_DECREF(key);
            return NULL;
        }
        PyTuple_SET_ITEM(key, r, v);
    }
    Py_INCREF(LP_TEXT[e->lp]);
    PyTuple_SET_ITEM(key, 4, LP_TEXT[e->lp]);
    PyObject *s = PyLong_FromLongLong(e->secs);
    if (!s) {
        Py_DECREF(key);
        return NULL;
    }
    PyTuple_SET_ITEM(key, 5, s);
    return key;
}

/* Key tuples made before, found again by content: the same key in every block is one object (no new
 * bytes to hash, dict and set lookups that match by identity). At most KEPT_CAP / 2 keys of at most
 * KEPT_BYTES bytes each are kept for the life of the process (a few MB at most); others are made anew.
 * Only ever used with the GIL held. */
#define KEPT_CAP 16384
#define KEPT_BYTES 256
typedef struct {
    uint64_t hash;
    PyObject *key;
} kept_key;
static kept_key *KEPT;
static size_t KEPT_USED;

static int kept_is(PyObject *key, const entry *e) {
    for (int r = 0; r < 4; r++) {
        PyObject *v = PyTuple_GET_ITEM(key, r);
        if (PyBytes_GET_SIZE(v) != e->f[r].n || memcmp(PyBytes_AS_STRING(v), e->f[r].p, (size_t)e->f[r].n) != 0)
            return 0;
    }
    if (PyTuple_GET_ITEM(key, 4) != LP_TEXT[e->lp]) return 0;
    long long secs = PyLong_AsLongLong(PyTuple_GET_ITEM(key, 5));
    return secs == e->secs;
}

static PyObject *kept_key_of(const entry *e) {
    if (e->f[0].n + e->f[1].n + e->f[2].n + e->f[3].n > KEPT_BYTES) return key_of(e);
    if (!KEPT) KEPT = PyMem_Calloc(KEPT_CAP, sizeof(kept_key));
    if (!KEPT) return key_of(e);
    size_t j = (size_t)e->hash & (KEPT_CAP - 1);
    while (KEPT[j].key) {
        if (KEPT[j].hash == e->hash && kept_is(KEPT[j].key, e)) {
            Py_INCREF(KEPT[j].key);
            return KEPT[j].key;
        }
        j = (j + 1) & (KEPT_CAP - 1);
    }
    PyObject *key = key_of(e);
    if (key && KEPT_USED < KEPT_CAP / 2) {
        Py_INCREF(key);
        KEPT[j].hash = e->hash;
        KEPT[j].key = key;
        KEPT_USED++;
    }
    return key;
}

/* {key: records} of a table, in the order the keys first appeared; key = (4 x bytes, long poll, seconds) */
static PyObject *counts_of(const table *t) {
    PyObject *counts = PyDict_New();
    if (!counts) return NULL;
    for (size_t k = 0; k < t->used; k++) {
        const entry *e = &t->slots[t->order[k]];
        PyObject *key = kept_key_of(e);
        PyObject *n = PyLong_FromSsize_t(e->count);
        int failed = !key || !n;
        if (failed || PyDict_SetItem(counts, key, n) < 0) {
            Py_XDECREF(key);
            Py_XDECREF(n);
            Py_DECREF(counts);
            return NULL;
        }
        Py_DECREF(key);
        Py_DECREF(n);
    }
    return counts;
}

/* (records, counts, lo, hi), taking the references given (a NULL one: an error is set, all are let go) */
static PyObject *block_result(Py_ssize_t records, PyObject *counts, PyObject *lo, PyObject *hi) {
    if (!counts || !lo || !hi) {
        Py_XDECREF(counts);
        Py_XDECREF(lo);
        Py_XDECREF(hi);
        return NULL;
    }
    return Py_BuildValue("(nNNN)", records, counts, lo, hi);
}

PyDoc_STRVAR(add_closed_doc,
             "add_closed(target, counts, closed) -> bool\n\n"
             "Add every count of `counts` ({key: records}) to the dict `target` when each key is in the set\n"
             "`closed` (its records need no closer look); True then. False, with `target` unchanged, when\n"
             "a key is not in `closed`. What Tally.quiet() and Tally.add() do for such a block, in one C loop.");

static PyObject *add_closed(PyObject *self, PyObject *args) {
    PyObject *target, *counts, *closed;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyDict_Type, &target, &PyDict_Type, &counts, &PySet_Type, &closed))
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *n;
    while (PyDict_Next(counts, &pos, &key, &n)) {
        int in = PySet_Contains(closed, key);
        if (in < 0) return NULL;
        if (!in) Py_RETURN_FALSE;
    }
    pos = 0;
    while (PyDict_Next(counts, &pos, &key, &n)) {
        PyObject *old = PyDict_GetItemWithError(target, key);
        if (!old && PyErr_Occurred()) return NULL;
        PyObject *sum = old ? PyNumber_Add(old, n) : (Py_INCREF(n), n);
        if (!sum) return NULL;
        int failed = PyDict_SetItem(target, key, sum) < 0;
        Py_DECREF(sum);
        if (failed) return NULL;
    }
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(w3c_block_doc,
             "w3c_block(data, separator, width, columns) -> (records, counts, lo, hi) or None\n\n"
             "columns: the field index of each role (scope, status, sub, code, method, stem, query, action,\n"
             "ms, date, time), -1 when absent. counts: {key: records} in first-seen order; lo, hi: the\n"
             "earliest and latest (date, time) as bytes (b'' for an absent column).");

static PyObject *w3c_block(PyObject *self, PyObject *args) {
    Py_buffer buf;
    int sep;
    Py_ssize_t width;
    PyObject *columns;
    if (!PyArg_ParseTuple(args, "y*CnO", &buf, &sep, &width, &columns)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t *fstart = NULL;
    Py_ssize_t col[NROLES];
    table t = {0};
    if (width < 1 || width > MAX_WIDTH || !PyTuple_Check(columns) || PyTuple_GET_SIZE(columns) != NROLES) {
        PyErr_SetString(PyExc_ValueError, "w3c_block: bad width or columns");
        goto done;
    }
    for (int r = 0; r < NROLES; r++) {
        col[r] = PyLong_AsSsize_t(PyTuple_GET_ITEM(columns, r));
        if (col[r] == -1 && PyErr_Occurred()) goto done;
        if (col[r] >= width) {
            PyErr_SetString(PyExc_ValueError, "w3c_block: column beyond the width");
            goto done;
        }
    }
    const unsigned char *data = buf.buf;
    Py_ssize_t size = buf.len;
    if (size == 0 || data[size - 1] != '\n' || data[0] == '#') {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    fstart = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(width + 1));
    if (!fstart || table_init(&t) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    const unsigned char csep = (unsigned char)sep;
    const int csv = csep == ',';
    unsigned char cls[256]; /* nonzero: a byte the loop below must look at */
    for (int c = 0; c < 256; c++) cls[c] = BAD[c] || c == '\n' || c == '\r' || c == csep || (csv && c == '"');
    Py_ssize_t records = 0, pos = 0;
    int first = 1, odd = 0;
    span lo_d = {0}, lo_t = {0}, hi_d = {0}, hi_t = {0};
    static const char empty[1] = "";
    while (pos < size) {
        Py_ssize_t nf = 0, i = pos;
        fstart[nf++] = pos;
        if (data[pos] == '#') goto unclean;
        Py_ssize_t end = -1;
        for (; i < size; i++) {
            unsigned char c = data[i];
            if (!cls[c]) continue;
            if (c == csep) {
                if (nf >= width) goto unclean;
                fstart[nf++] = i + 1;
            } else if (c == '\n') {
                end = i;
                break;
            } else if (c == '\r') {
                if (i + 1 >= size || data[i + 1] != '\n') goto unclean;
                end = i;
                break;
            } else if (BAD[c] || (csv && c == '"')) {
                goto unclean;
            }
        }
        if (end < 0 || nf != width) goto unclean;
        fstart[nf] = end + 1; /* one past the last field's end */
        span f[NROLES];
        for (int r = 0; r < NROLES; r++) {
            Py_ssize_t j = col[r];
            if (j < 0) {
                f[r].p = empty;
                f[r].n = 0;
            } else {
                f[r].p = (const char *)data + fstart[j];
                f[r].n = fstart[j + 1] - 1 - fstart[j];
            }
        }
        int lp = long_poll(f[R_METHOD], f[R_STEM], f[R_QUERY], f[R_ACTION]);
        long long secs = lp ? seconds(f[R_MS], &odd) : -1;
        if (odd) goto unclean;
        if (table_add(&t, f, lp, secs) < 0) {
            PyErr_NoMemory();
            goto done;
        }
        if (first) {
            lo_d = hi_d = f[R_DATE];
            lo_t = hi_t = f[R_TIME];
            first = 0;
        } else {
            int c = span_cmp(f[R_DATE], lo_d);
            if (c < 0 || (c == 0 && span_cmp(f[R_TIME], lo_t) < 0)) {
                lo_d = f[R_DATE];
                lo_t = f[R_TIME];
            }
            c = span_cmp(f[R_DATE], hi_d);
            if (c > 0 || (c == 0 && span_cmp(f[R_TIME], hi_t) > 0)) {
                hi_d = f[R_DATE];
                hi_t = f[R_TIME];
            }
        }
        records++;
        pos = data[end] == '\r' ? end + 2 : end + 1;
    }
    result = block_result(records, counts_of(&t), pair_of(lo_d, lo_t), pair_of(hi_d, hi_t));
    goto done;
unclean:
    result = Py_None;
    Py_INCREF(result);
done:
    table_free(&t);
    PyMem_Free(fstart);
    PyBuffer_Release(&buf);
    return result;
}

/* ------------------------------------------------------------------ one record per line
 * A block of whole lines, each read by a `reader` into its key and time, counted by distinct key.
 */

typedef struct {
    span f[4];
    int lp;
    long long secs;
    span time;
} keyed;

/* no control byte (other than TAB) and no CR in the line: eight bytes at a time while none is below
   0x20 or 0x7f (a word with a TAB, or any such byte, is looked at byte by byte) */
static int clean_line(const unsigned char *l, Py_ssize_t n) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    Py_ssize_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t x, y;
        memcpy(&x, l + k, 8);
        y = x ^ (0x7f * ones);
        if (((x - 0x20 * ones) & ~x & highs) | ((y - ones) & ~y & highs)) break;
    }
    for (; k < n; k++)
        if (BAD[l[k]] || l[k] == '\r') return 0;
    return 1;
}

typedef int (*reader)(const unsigned char *l, Py_ssize_t n, keyed *k);

/* (records, counts, lo, hi) of a block, or None when a line is not read (not clean, not a record);
   one_zone: times end in a zone, and a block of several zones is refused (they do not order as text) */
/* records.Reader's test that a block's times (lo, hi) add nothing: of the day (and zone) of `low`, and
   low <= lo, hi <= high, where [low, high] are times already seen */
static int within(span lo, span hi, span low, span high) {
    if (low.n < 12 || lo.n < 12 || hi.n < 12 || memcmp(low.p, lo.p, 12) != 0 || memcmp(lo.p, hi.p, 12) != 0)
        return 0;
    int zoned = lo.n >= 6 && lo.p[lo.n - 6] == ' ';
    if (zoned && (low.n < 5 || memcmp(low.p + low.n - 5, lo.p + lo.n - 5, 5) != 0)) return 0;
    return span_cmp(low, lo) <= 0 && span_cmp(hi, high) <= 0;
}

/* with a target: add the block's counts to it (as add_closed does) when every key is in `closed` and
   the times are within [low, high]; 1 then, 0 when not (nothing added), -1 on an error */
static int add_to(const table *t, span lo, span hi, PyObject *target, PyObject *closed, span low, span high) {
    if (!within(lo, hi, low, high)) return 0;
    PyObject **keys = PyMem_Calloc(t->used ? t->used : 1, sizeof(PyObject *));
    if (!keys) {
        PyErr_NoMemory();
        return -1;
    }
    int outcome = 1;
    size_t made = 0;
    for (; made < t->used && outcome == 1; made++) {
        keys[made] = kept_key_of(&t->slots[t->order[made]]);
        if (!keys[made]) outcome = -1;
        else {
            int in = PySet_Contains(closed, keys[made]);
            if (in <= 0) outcome = in;
        }
    }
    for (size_t k = 0; k < t->used && outcome == 1; k++) {
        const entry *e = &t->slots[t->order[k]];
        PyObject *old = PyDict_GetItemWithError(target, keys[k]);
        if (!old && PyErr_Occurred()) {
            outcome = -1;
            break;
        }
        PyObject *sum = old ? PyLong_FromSsize_t(PyLong_AsSsize_t(old) + e->count) : PyLong_FromSsize_t(e->count);
        if (!sum || PyDict_SetItem(target, keys[k], sum) < 0) outcome = -1;
        Py_XDECREF(sum);
    }
    for (size_t k = 0; k < made; k++) Py_XDECREF(keys[k]);
    PyMem_Free(keys);
    return outcome;
}

static PyObject *line_block(PyObject *args, reader read, int one_zone) {
    Py_buffer buf;
    PyObject *target = NULL, *closed = NULL;
    const char *low_p = "", *high_p = "";
    Py_ssize_t low_n = 0, high_n = 0;
    if (!PyArg_ParseTuple(args, "y*|O!O!y#y#", &buf, &PyDict_Type, &target, &PySet_Type, &closed, &low_p, &low_n,
                          &high_p, &high_n))
        return NULL;
    PyObject *result = NULL;
    table t = {0};
    const unsigned char *data = buf.buf;
    Py_ssize_t size = buf.len, pos = 0, records = 0;
    span lo = {0}, hi = {0};
    if (size == 0 || data[size - 1] != '\n') goto unclean;
    if (table_init(&t) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    while (pos < size) {
        const unsigned char *nl = memchr(data + pos, '\n', (size_t)(size - pos));
        Py_ssize_t end = nl - data, n = end - pos;
        if (n > 0 && data[end - 1] == '\r') n--;
        const unsigned char *l = data + pos;
        if (!clean_line(l, n)) goto unclean;
        keyed k;
        if (!read(l, n, &k)) goto unclean;
        if (table_add(&t, k.f, k.lp, k.secs) < 0) {
            PyErr_NoMemory();
            goto done;
        }
        if (one_zone && records && (k.time.n < 5 || memcmp(k.time.p + k.time.n - 5, lo.p + lo.n - 5, 5) != 0))
            goto unclean;
        if (!records || span_cmp(k.time, lo) < 0) lo = k.time;
        if (!records || span_cmp(k.time, hi) > 0) hi = k.time;
        records++;
        pos = end + 1;
    }
    if (target && closed) {
        span low = {low_p, low_n}, high = {high_p, high_n};
        int added = add_to(&t, lo, hi, target, closed, low, high);
        if (added < 0) goto done;
        if (added) {
            Py_INCREF(Py_None);
            result = block_result(records, Py_None, bytes_of(lo), bytes_of(hi));
            goto done;
        }
    }
    result = block_result(records, counts_of(&t), bytes_of(lo), bytes_of(hi));
    goto done;
unclean:
    result = Py_None;
    Py_INCREF(result);
done:
    table_free(&t);
    PyBuffer_Release(&buf);
    return result;
}

/* ------------------------------------------------------------------ HAProxy HTTP log lines
 * haproxy_block() reads a block whose every line matches haproxy.HTTP, the way that regular
 * expression reads it: a syslog prefix ending in a blank is tried from the shortest (none) up, and
 * the first start at which the rest matches wins; every later part can match in one way only.
 */

static int is_ws(unsigned char c) { return c == ' ' || c == '\t'; } /* \s within a clean line */
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_word(unsigned char c) { return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
static int is_hexish(unsigned char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}

typedef struct {
    span time, backend, timers, status, term, request;
} hap;

/* digits from *i (at least 1, at most `most`, or any when most is 0); 0 when none */
static Py_ssize_t digits(const unsigned char *l, Py_ssize_t n, Py_ssize_t *i, Py_ssize_t most) {
    Py_ssize_t start = *i;
    while (*i < n && is_digit(l[*i])) (*i)++;
    Py_ssize_t got = *i - start;
    if (most && got > most) return 0;
    return got;
}

static int ws_at(const unsigned char *l, Py_ssize_t n, Py_ssize_t *i) {
    if (*i < n && is_ws(l[*i])) {
        (*i)++;
        return 1;
    }
    return 0;
}

/* a run of non-blank bytes (at least one) followed by a blank, which is passed */
static int word_ws(const unsigned char *l, Py_ssize_t n, Py_ssize_t *i, span *out) {
    Py_ssize_t start = *i;
    while (*i < n && !is_ws(l[*i])) (*i)++;
    if (*i == start) return 0;
    if (out) {
        out->p = (const char *)l + start;
        out->n = *i - start;
    }
    return ws_at(l, n, i);
}

/* `-?\d+` (sign 1) or `\+?-?\d+` (sign 2) */
static int number(const unsigned char *l, Py_ssize_t n, Py_ssize_t *i, int sign) {
    if (sign == 2 && *i < n && l[*i] == '+') (*i)++;
    if (*i < n && l[*i] == '-') (*i)++;
    return digits(l, n, i, 0) > 0;
}

/* \d{1,2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} from *i (passed) */
static int clf_date(const unsigned char *l, Py_ssize_t n, Py_ssize_t *at) {
    Py_ssize_t i = *at;
    if (!digits(l, n, &i, 2) || i >= n || l[i] != '/') return 0;
    i++;
    for (int k = 0; k < 3; k++, i++)
        if (i >= n || !is_word(l[i])) return 0;
    if (i >= n || l[i] != '/') return 0;
    i++;
    if (digits(l, n, &i, 4) != 4) return 0;
    for (int k = 0; k < 3; k++) { /* :HH:MM:SS */
        if (i >= n || l[i] != ':') return 0;
        i++;
        if (digits(l, n, &i, 2) != 2) return 0;
    }
    *at = i;
    return 1;
}

static int hap_rest(const unsigned char *l, Py_ssize_t n, Py_ssize_t i, hap *h) {
    /* client: \[[0-9a-fA-F:.]+\] or [^\s\[\]]+ (up to its last colon), then :\d+\s */
    if (i < n && l[i] == '[') {
        Py_ssize_t start = ++i;
        while (i < n && is_hexish(l[i])) i++;
        if (i == start || i >= n || l[i] != ']') return 0;
        i++;
        if (i >= n || l[i] != ':') return 0;
        i++;
        if (!digits(l, n, &i, 0) || !ws_at(l, n, &i)) return 0;
    } else {
        Py_ssize_t start = i, colon = -1;
        while (i < n && !is_ws(l[i]) && l[i] != '[' && l[i] != ']') {
            if (l[i] == ':') colon = i;
            i++;
        }
        if (colon <= start || colon + 1 >= i || i >= n || !is_ws(l[i])) return 0;
        for (Py_ssize_t k = colon + 1; k < i; k++)
            if (!is_digit(l[k])) return 0;
        i++;
    }
    /* \[(\d{1,2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2}(?:\.\d+)?)\]\s */
    if (i >= n || l[i] != '[') return 0;
    Py_ssize_t t0 = ++i;
    if (!clf_date(l, n, &i)) return 0;
    if (i < n && l[i] == '.') {
        Py_ssize_t f = i + 1;
        if (digits(l, n, &f, 0) && f < n && l[f] == ']') i = f;
    }
    if (i >= n || l[i] != ']') return 0;
    h->time.p = (const char *)l + t0;
    h->time.n = i - t0;
    i++;
    if (!ws_at(l, n, &i)) return 0;
    /* (\S+)\s([^\s/]+)/(\S+)\s */
    if (!word_ws(l, n, &i, NULL)) return 0;
    Py_ssize_t b0 = i;
    while (i < n && !is_ws(l[i]) && l[i] != '/') i++;
    if (i == b0 || i >= n || l[i] != '/') return 0;
    h->backend.p = (const char *)l + b0;
    h->backend.n = i - b0;
    i++;
    if (!word_ws(l, n, &i, NULL)) return 0;
    /* -?\d+/-?\d+/-?\d+/-?\d+/\+?-?\d+\s */
    Py_ssize_t m0 = i;
    for (int k = 0; k < 4; k++) {
        if (!number(l, n, &i, 1) || i >= n || l[i] != '/') return 0;
        i++;
    }
    if (!number(l, n, &i, 2)) return 0;
    h->timers.p = (const char *)l + m0;
    h->timers.n = i - m0;
    if (!ws_at(l, n, &i)) return 0;
    /* (-?\d{1,3})\s\+?\d+\s\S+\s\S+\s */
    Py_ssize_t s0 = i;
    if (i < n && l[i] == '-') i++;
    if (!digits(l, n, &i, 3)) return 0;
    h->status.p = (const char *)l + s0;
    h->status.n = i - s0;
    if (!ws_at(l, n, &i)) return 0;
    if (i < n && l[i] == '+') i++;
    if (!digits(l, n, &i, 0) || !ws_at(l, n, &i)) return 0;
    if (!word_ws(l, n, &i, NULL) || !word_ws(l, n, &i, NULL)) return 0;
    /* ([-A-Za-z]{4})\s */
    Py_ssize_t e0 = i;
    for (int k = 0; k < 4; k++, i++) {
        if (i >= n) return 0;
        unsigned char c = l[i];
        if (!(c == '-' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return 0;
    }
    h->term.p = (const char *)l + e0;
    h->term.n = 4;
    if (!ws_at(l, n, &i)) return 0;
    /* [^\n"]*(?:"([^"\n]*)"?)?[^\n]*$ */
    while (i < n && l[i] != '"') i++;
    h->request.p = (const char *)l + i;
    h->request.n = 0;
    if (i < n) {
        Py_ssize_t r0 = ++i;
        while (i < n && l[i] != '"') i++;
        h->request.p = (const char *)l + r0;
        h->request.n = i - r0;
    }
    return 1;
}

static int hap_line(const unsigned char *l, Py_ssize_t n, hap *h) {
    if (hap_rest(l, n, 0, h)) return 1;
    for (Py_ssize_t i = 0; i < n; i++)
        if (is_ws(l[i]) && hap_rest(l, n, i + 1, h)) return 1;
    return 0;
}

/* w3c.request_long_poll */
static int request_long_poll(span request) {
    const char *p = request.p, *e = request.p + request.n;
    const char *sp = memchr(p, ' ', (size_t)request.n);
    span method = {p, sp ? sp - p : request.n};
    span rest = {sp ? sp + 1 : e, sp ? e - (sp + 1) : 0};
    span uri = rest;
    int http = 0;
    for (Py_ssize_t k = 0; k + 6 <= rest.n; k++)
        if (memcmp(rest.p + k, " HTTP/", 6) == 0) {
            http = 1;
            break;
        }
    if (http) {
        Py_ssize_t last = rest.n - 1;
        while (last >= 0 && rest.p[last] != ' ') last--;
        uri.n = last; /* " HTTP/" holds a space, so there is one */
    }
    const char *q = memchr(uri.p, '?', (size_t)uri.n);
    span stem = {uri.p, q ? q - uri.p : uri.n};
    span query = {q ? q + 1 : uri.p + uri.n, q ? (uri.p + uri.n) - (q + 1) : 0};
    span none = {"", 0};
    return long_poll(method, stem, query, none);
}

PyDoc_STRVAR(haproxy_block_doc,
             "haproxy_block(data[, target, closed, low, high]) -> (records, counts, lo, hi) or None\n\n"
             "A block of HAProxy HTTP log lines: counts {(backend, status, b'', state[:2], long poll, seconds):\n"
             "records} in first-seen order; lo, hi the least and greatest accept time as logged (bytes).\n"
             "None when a line is not such a record or the block is not clean. With a target dict, a closed set\n"
             "and the least and greatest times seen (bytes): when every key is in closed and the block's times\n"
             "are within [low, high] of one day, the counts are added to target and counts is None.");

/* one HAProxy HTTP line -> its key and time; 0 when it is not such a record (or not read plainly) */
static int hap_key(const unsigned char *l, Py_ssize_t n, keyed *k) {
    hap h;
    if (!hap_line(l, n, &h)) return 0;
    k->lp = h.request.n ? request_long_poll(h.request) : LP_NONE;
    k->secs = -1;
    if (k->lp) {
        const char *last = h.timers.p + h.timers.n;
        const char *p = last;
        while (p > h.timers.p && p[-1] != '/') p--;
        if (*p == '+') p++;
        int negative = *p == '-';
        p += negative;
        if (last - p > 18) return 0;
        long long v = 0;
        for (; p < last; p++) v = v * 10 + (*p - '0');
        k->secs = negative && v ? -1 : v / 1000; /* int() of "-0" is 0 */
    }
    k->f[0] = h.backend;
    k->f[1] = h.status;
    k->f[2].p = "";
    k->f[2].n = 0;
    k->f[3].p = h.term.p;
    k->f[3].n = 2;
    k->time = h.time;
    return 1;
}

static PyObject *haproxy_block(PyObject *self, PyObject *args) { return line_block(args, hap_key, 0); }

/* ------------------------------------------------------------------ nginx access log lines
 * nginx_block() reads a block whose every line matches nginx.ACCESS, the way that expression reads
 * it (the user field ends at the first blank followed by "[" from which the rest matches), and
 * the variables after the user agent the way nginx.extras() reads them.
 */

typedef struct {
    span time, request, status, tail;
} ngx;

static int ngx_rest(const unsigned char *l, Py_ssize_t n, Py_ssize_t i, ngx *g) {
    /* \[(\d{1,2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2}\s[+-]\d{4})\]\s, from the "[" at i */
    Py_ssize_t t0 = ++i;
    if (!clf_date(l, n, &i)) return 0;
    if (!ws_at(l, n, &i) || i >= n || (l[i] != '+' && l[i] != '-')) return 0;
    i++;
    if (digits(l, n, &i, 4) != 4 || i >= n || l[i] != ']') return 0;
    g->time.p = (const char *)l + t0;
    g->time.n = i - t0;
    i++;
    if (!ws_at(l, n, &i)) return 0;
    /* "([^"\n]*)"\s(\d{3})\s(?:\d+|-) */
    if (i >= n || l[i] != '"') return 0;
    Py_ssize_t r0 = ++i;
    while (i < n && l[i] != '"') i++;
    if (i >= n) return 0;
    g->request.p = (const char *)l + r0;
    g->request.n = i - r0;
    i++;
    if (!ws_at(l, n, &i)) return 0;
    Py_ssize_t s0 = i;
    if (digits(l, n, &i, 3) != 3) return 0;
    g->status.p = (const char *)l + s0;
    g->status.n = 3;
    if (!ws_at(l, n, &i)) return 0;
    if (i < n && l[i] == '-') i++;
    else if (!digits(l, n, &i, 0)) return 0;
    /* (?:\s"[^"\n]*"\s"[^"\n]*")? */
    Py_ssize_t j = i;
    int quoted = 1;
    for (int k = 0; k < 2 && quoted; k++) {
        if (!ws_at(l, n, &j) || j >= n || l[j] != '"') {
            quoted = 0;
            break;
        }
        j++;
        while (j < n && l[j] != '"') j++;
        if (j >= n) quoted = 0;
        else j++;
    }
    if (quoted) i = j;
    g->tail.p = (const char *)l + i;
    g->tail.n = n - i;
    return 1;
}

static int ngx_line(const unsigned char *l, Py_ssize_t n, ngx *g) {
    Py_ssize_t i = 0;
    if (!word_ws(l, n, &i, NULL) || !word_ws(l, n, &i, NULL)) return 0;
    for (Py_ssize_t q = i; q + 1 < n; q++)
        if (is_ws(l[q]) && l[q + 1] == '[' && ngx_rest(l, n, q + 1, g)) return 1;
    return 0;
}

static span strip_quotes(span v) {
    while (v.n && v.p[0] == '"') v.p++, v.n--;
    while (v.n && v.p[v.n - 1] == '"') v.n--;
    return v;
}

/* the role of a variable name (nginx._NAMES): 1 rt, 2 urt, 3 ua, 4 us, 0 none */
static int role_of(span name) {
#define NAME(text, role) {text, (Py_ssize_t)sizeof(text) - 1, role}
    static const struct { const char *name; Py_ssize_t n; int role; } NAMES[] = {
        NAME("rt", 1), NAME("request_time", 1), NAME("urt", 2), NAME("upstream_response_time", 2), NAME("ua", 3),
        NAME("upstream_addr", 3), NAME("upstream", 3), NAME("us", 4), NAME("upstream_status", 4),
    };
#undef NAME
    for (size_t k = 0; k < sizeof(NAMES) / sizeof(NAMES[0]); k++)
        if (name.n == NAMES[k].n && equals_lower_n(name, NAMES[k].name, NAMES[k].n)) return NAMES[k].role;
    return 0;
}

static int is_number(span v) { /* \d+(?:\.\d+)? */
    Py_ssize_t i = 0;
    if (!digits((const unsigned char *)v.p, v.n, &i, 0)) return 0;
    if (i == v.n) return 1;
    if (v.p[i] != '.') return 0;
    i++;
    return digits((const unsigned char *)v.p, v.n, &i, 0) && i == v.n;
}

static int is_address(span v) { /* (?:\[[0-9a-fA-F:]+\]|[\w.-]+):\d+|unix:\S+ (whole) */
    const unsigned char *p = (const unsigned char *)v.p;
    Py_ssize_t i = 0, n = v.n;
    if (n > 5 && memcmp(p, "unix:", 5) == 0) {
        Py_ssize_t k = 5;
        while (k < n && !is_ws(p[k])) k++;
        if (k == n) return 1;
    }
    if (n && p[0] == '[') {
        i = 1;
        while (i < n && (is_hexish(p[i]) && p[i] != '.')) i++;
        if (i == 1 || i >= n || p[i] != ']') return 0;
        i++;
    } else {
        while (i < n && (is_word(p[i]) || p[i] == '.' || p[i] == '-')) i++;
        if (i == 0) return 0;
    }
    if (i >= n || p[i] != ':') return 0;
    i++;
    return digits(p, n, &i, 0) && i == n;
}

/* nginx.extras(): roles[1..4] the values of rt, urt, ua, us (have[r] 0 when absent) */
static void extras(span tail, span *roles, int *have) {
    const unsigned char *p = (const unsigned char *)tail.p;
    Py_ssize_t n = tail.n, i = 0;
    span unnamed[64];
    int nun = 0, over = 0;
    while (i < n) {
        span name = {0}, value = {0};
        int named = 0;
        Py_ssize_t w = i;
        while (w < n && is_word(p[w])) w++;
        if (w > i && w < n && p[w] == '=') { /* (\w+)= then a value, or no name after all */
            Py_ssize_t j = w + 1, e = -1;
            if (j < n && p[j] == '"') {
                const unsigned char *q = memchr(p + j + 1, '"', (size_t)(n - j - 1));
                if (q) e = (q - p) + 1;
            }
            if (e < 0 && j < n && !is_ws(p[j])) {
                e = j;
                while (e < n && !is_ws(p[e])) e++;
            }
            if (e >= 0) {
                named = 1;
                name.p = (const char *)p + i;
                name.n = w - i;
                value.p = (const char *)p + j;
                value.n = e - j;
                i = e;
            }
        }
        if (!named) {
            Py_ssize_t e = -1;
            if (p[i] == '"') {
                const unsigned char *q = i + 1 < n ? memchr(p + i + 1, '"', (size_t)(n - i - 1)) : NULL;
                if (q) e = (q - p) + 1;
            }
            if (e < 0 && !is_ws(p[i])) {
                e = i;
                while (e < n && !is_ws(p[e])) e++;
            }
            if (e < 0) {
                i++;
                continue;
            }
            value.p = (const char *)p + i;
            value.n = e - i;
            i = e;
            if (nun < 64) unnamed[nun++] = strip_quotes(value);
            else over = 1;
            continue;
        }
        int role = role_of(name);
        if (role && !have[role]) {
            have[role] = 1;
            roles[role] = strip_quotes(value);
        }
    }
    if (over) have[0] = -1; /* too many unnamed values to follow: the caller gives up the block */
    for (int k = 0; k < nun; k++) {
        if (is_number(unnamed[k])) {
            int role = have[1] ? 2 : 1;
            if (!have[role]) {
                have[role] = 1;
                roles[role] = unnamed[k];
            }
        } else if (is_address(unnamed[k]) && !have[3]) {
            have[3] = 1;
            roles[3] = unnamed[k];
        }
    }
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 11 || c == 12; }

/* value.split(b",")[-1].strip() */
static span last_item(span v) {
    const char *e = v.p + v.n, *s = e;
    while (s > v.p && s[-1] != ',') s--;
    while (s < e && is_space((unsigned char)*s)) s++;
    while (e > s && is_space((unsigned char)e[-1])) e--;
    span out = {s, e - s};
    return out;
}

/* int(float(rt)) for a plain decimal of at most 15 digits (exact in a double); -1 for b""; 0 in *ok
   for anything else (the caller gives up the block) */
static long long whole_seconds(span v, int *ok) {
    if (v.n == 0) return -1;
    Py_ssize_t i = 0, sig = 0;
    long long whole = 0;
    while (i < v.n && is_digit((unsigned char)v.p[i])) whole = whole * 10 + (v.p[i++] - '0'), sig++;
    if (sig == 0) {
        *ok = 0;
        return -1;
    }
    if (i < v.n && v.p[i] == '.') {
        i++;
        Py_ssize_t f0 = i;
        while (i < v.n && is_digit((unsigned char)v.p[i])) i++;
        sig += i - f0;
    }
    if (i != v.n || sig > 15) *ok = 0;
    return whole;
}

PyDoc_STRVAR(nginx_block_doc,
             "nginx_block(data[, target, closed, low, high]) -> (records, counts, lo, hi) or None\n\n"
             "A block of nginx access log lines: counts {(upstream, status, upstream status, b'', long poll,\n"
             "seconds): records} in first-seen order; lo, hi the least and greatest time as logged (bytes).\n"
             "None when a line is not such a record, the block is not clean or a value is not plain.\n"
             "target, closed, low, high: as haproxy_block.");

/* one nginx access line -> its key and time; 0 when it is not such a record (or not read plainly) */
static int ngx_key(const unsigned char *l, Py_ssize_t n, keyed *k) {
    ngx g;
    if (!ngx_line(l, n, &g)) return 0;
    span roles[5] = {{"", 0}, {"", 0}, {"", 0}, {"", 0}, {"", 0}};
    int have[5] = {0};
    int blank = 1;
    for (Py_ssize_t i = 0; i < g.tail.n && blank; i++) blank = is_space((unsigned char)g.tail.p[i]);
    if (!blank) extras(g.tail, roles, have);
    if (have[0] < 0) return 0;
    k->lp = g.request.n ? request_long_poll(g.request) : LP_NONE;
    k->secs = -1;
    if (k->lp) {
        int ok = 1;
        k->secs = whole_seconds(roles[1], &ok);
        if (!ok) return 0;
    }
    span upstream = last_item(roles[3]);
    if (upstream.n == 1 && upstream.p[0] == '-') upstream.n = 0;
    k->f[0] = upstream;
    k->f[1] = g.status;
    k->f[2] = last_item(roles[4]);
    k->f[3].p = "";
    k->f[3].n = 0;
    k->time = g.time;
    return 1;
}

static PyObject *nginx_block(PyObject *self, PyObject *args) { return line_block(args, ngx_key, 1); }

static PyMethodDef METHODS[] = {
    {"w3c_block", w3c_block, METH_VARARGS, w3c_block_doc},
    {"haproxy_block", haproxy_block, METH_VARARGS, haproxy_block_doc},
    {"nginx_block", nginx_block, METH_VARARGS, nginx_block_doc},
    {"add_closed", add_closed, METH_VARARGS, add_closed_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_fastproxy", "Optional C accelerator for the proxy log reader.", -1, METHODS,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastproxy(void) {
    for (int c = 0; c < 256; c++) BAD[c] = (c < 0x20 || c == 0x7f) && c != '\t' && c != '\n' && c != '\r';
    for (int k = 0; k < LP_COUNT; k++) {
        LP_TEXT[k] = PyUnicode_InternFromString(LP_NAMES[k]);
        if (!LP_TEXT[k]) return NULL;
    }
    PyObject *module = PyModule_Create(&MODULE);
    if (module && PyModule_AddIntConstant(module, "MAX_WIDTH", MAX_WIDTH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
