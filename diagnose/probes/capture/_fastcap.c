/* Optional accelerator for the capture readers (diagnose/probes/capture/formats.py).
 *
 * Two functions walk the records of a pcap file, pcap(), or the blocks of a pcapng section,
 * pcapng(), and do per frame what the pure-Python readers do, in the same order, with the same
 * tracker calls:
 *
 * - a frame of a link layer decoded here (Ethernet with 802.1Q/802.1ad/QinQ tags and PPPoE sessions,
 *   Linux SLL and SLL2, raw IP) carrying IPv4 or IPv6 TCP is decoded here. A segment without SYN, FIN
 *   or RST of a known connection only updates that connection's state list in place (last frame,
 *   packet count, a direction's first ACK or data letter and the endpoint states it moves on, and the
 *   sequence space when the segment goes on where its direction is and its ACK reveals no gap; the
 *   tracker's _log_letter for zero windows, its sequence for every other segment), as formats._feeder
 *   does. Any other segment
 *   goes to the tracker's open_syn, control or packet, with the arguments the Python readers give them;
 * - a frame that is not TCP for certain (no IP, another protocol, a later fragment, cut short before
 *   the TCP header) is counted as such; anything else (other link types, IPv6 extension headers,
 *   IPv4 header lengths below 5) goes to the Python `feed` given, frame by frame;
 * - the sweeps of closed connections (tracker.sweep) and releases of read pages happen at the same
 *   frames and with the same arguments as in the Python readers.
 *
 * Each function stops before the first record it does not handle whole (a record cut short, a damaged
 * or unusual pcapng block, a section or interface header) and returns where it stopped: that record is
 * left untouched, for the Python reader, which goes on from there. So every record is read either here
 * or there, never partly by both.
 *
 * Timestamps are computed in the order Python computes them, with no fused multiply-add (the product
 * goes through a volatile), so the floats are the same bit for bit. The pure-Python path stays the
 * reference: tests compare the two on the same inputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#if PY_VERSION_HEX < 0x03090000 /* Python 3.8 (Windows Server 2008 R2's last) has it under its old name */
#define PyObject_Vectorcall _PyObject_Vectorcall
#endif
#include <stdint.h>
#include <string.h>

#define SWEEP_MASK ((1 << 14) - 1) /* tcp.SWEEP_EVERY - 1 */
#define SIGNAL_MASK ((1 << 16) - 1)
#define C_LAST 1
#define C_PK0 2
#define C_SEEN 4
#define C_HIST 5
#define C_ST0 8      /* tcp.C_ST0: the endpoint state of each direction */
#define C_SYNACK 26  /* tcp.C_SYNACK: a SYN-ACK was seen */
#define C_HI 37  /* tcp.C_HI: highest sequence end of each direction */
#define C_NXT 39 /* tcp.C_NXT: the byte up to which each direction is accounted for */
#define MIN_WIDTH 43 /* tcp._WIDTH: the state list is this long */

#define C_SEQ 29   /* tcp.C_SEQ: the last SYN-ACK (+ d) and SYN (+ 2 + d) sequence numbers */
#define C_OOO 41   /* tcp.C_OOO: ranges seen above the accounted byte (None: none) */

enum { INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED }; /* tcp's endpoint states */

static PyObject *LETTER_A, *LETTER_D, *LETTER_W, *UPPER_A, *UPPER_D, *DEAD;

typedef struct {
    const uint8_t *b;
    uint64_t end;
    PyObject *conns;
    PyObject *open_syn, *control, *control_flags, *packet, *log, *sequence, *sweep, *release, *feed;
    long jobs, index;
} walk;

/* -- reading -------------------------------------------------------------------------------------- */
static inline uint32_t be16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint32_t le32(const uint8_t *p) {
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}
static inline uint32_t rd32(const uint8_t *p, int big) { return big ? be32(p) : le32(p); }
static inline uint32_t rd16(const uint8_t *p, int big) {
    return big ? be16(p) : (((uint32_t)p[1] << 8) | p[0]);
}

/* a * b + c as Python computes it: the product rounded to a double before the sum */
static double mul_add(double a, double b, double c) {
    volatile double product = a * b;
    return product + c;
}

/* the 16-bit big-endian words of n bytes added (a last odd byte as the high byte of a word) */
static uint64_t word_sum(const uint8_t *p, uint64_t n) {
    uint64_t s = 0, i = 0;
    for (; i + 1 < n; i += 2) s += ((uint64_t)p[i] << 8) | p[i + 1];
    if (i < n) s += (uint64_t)p[i] << 8;
    return s;
}

/* -- calling back ----------------------------------------------------------------------------------- */
static int call_none(PyObject *func, PyObject **args, size_t n) {
    PyObject *r = PyObject_Vectorcall(func, args, n, NULL);
    for (size_t i = 0; i < n; i++) Py_XDECREF(args[i]);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

/* every argument a new reference (NULL after a failed conversion: the call is not made) */
static int call_new(PyObject *func, PyObject **args, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!args[i]) {
            for (size_t j = 0; j < n; j++) Py_XDECREF(args[j]);
            return -1;
        }
    }
    return call_none(func, args, n);
}

static PyObject *ref(PyObject *o) {
    Py_INCREF(o);
    return o;
}

static int do_sweep(walk *w, double ts, long long after, uint64_t upto) {
    PyObject *a[2] = {PyFloat_FromDouble(ts), PyLong_FromLongLong(after)};
    if (call_new(w->sweep, a, 2) < 0) return -1;
    PyObject *r[1] = {PyLong_FromUnsignedLongLong(upto)};
    return call_new(w->release, r, 1);
}

/* Python's feed(lt, p, incl, frame, ts): 1 TCP, 0 not, -1 error */
static int do_feed(walk *w, long lt, uint64_t p, uint64_t incl, long long frame, double ts) {
    PyObject *a[5] = {PyLong_FromLong(lt), PyLong_FromUnsignedLongLong(p), PyLong_FromUnsignedLongLong(incl),
                      PyLong_FromLongLong(frame), PyFloat_FromDouble(ts)};
    for (int i = 0; i < 5; i++) {
        if (!a[i]) {
            for (int j = 0; j < 5; j++) Py_XDECREF(a[j]);
            return -1;
        }
    }
    PyObject *r = PyObject_Vectorcall(w->feed, a, 5, NULL);
    for (int i = 0; i < 5; i++) Py_DECREF(a[i]);
    if (!r) return -1;
    int yes = PyObject_IsTrue(r);
    Py_DECREF(r);
    return yes;
}

/* -- one TCP segment -------------------------------------------------------------------------------- */
/* The connection list and direction of a dict entry (c, d), checked. */
static int entry_of(PyObject *ent, PyObject **c, PyObject **d, long *dv) {
    if (!PyTuple_CheckExact(ent) || PyTuple_GET_SIZE(ent) != 2) goto bad;
    *c = PyTuple_GET_ITEM(ent, 0);
    *d = PyTuple_GET_ITEM(ent, 1);
    if (!PyList_CheckExact(*c) || PyList_GET_SIZE(*c) < MIN_WIDTH || !PyLong_CheckExact(*d)) goto bad;
    *dv = PyLong_AsLong(*d);
    if (*dv != 0 && *dv != 1) goto bad;
    return 0;
bad:
    PyErr_SetString(PyExc_TypeError, "_fastcap: a tracker entry is not a (state list, direction) pair");
    return -1;
}

static int list_int(PyObject *c, Py_ssize_t i, long long *v) {
    PyObject *o = PyList_GET_ITEM(c, i);
    if (!PyLong_CheckExact(o)) {
        PyErr_Format(PyExc_TypeError, "_fastcap: slot %zd of a connection state is not an int", i);
        return -1;
    }
    *v = PyLong_AsLongLong(o);
    return (*v == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int list_set(PyObject *c, Py_ssize_t i, long long v) {
    PyObject *o = PyLong_FromLongLong(v);
    if (!o) return -1;
    PyList_SET_ITEM(c, i, o);  /* steals o; the old value is released below */
    return 0;
}

static int set_slot(PyObject *c, Py_ssize_t i, long long v) {
    PyObject *old = PyList_GET_ITEM(c, i);
    if (list_set(c, i, v) < 0) return -1;
    Py_DECREF(old);
    return 0;
}

/* The value of a sequence slot (0 .. 2**32 - 1); -1 when it holds anything else (None: not known yet;
 * tcp.DEAD; not an int), which no sequence number equals. */
static inline long long seq_slot(PyObject *c, Py_ssize_t i) {
    PyObject *o = PyList_GET_ITEM(c, i);
    if (!PyLong_CheckExact(o)) return -1;
    long long v = PyLong_AsLongLong(o);
    if (v < 0 || v > 0xFFFFFFFFLL) {
        PyErr_Clear();
        return -1;
    }
    return v;
}

/* The sequence numbers of a segment without SYN, FIN or RST (tcp.Tracker.sequence): in place when it
 * starts where its direction's highest end and accounted byte both are (so no range waits above, and
 * the direction has sent no RST) and its ACK reveals nothing unseen of the other direction; the
 * tracker's sequence() otherwise. */
/* The ACK `ack` reveals nothing of the other direction (1 - dv) that the capture did not show: that
 * direction has sent nothing yet, or `ack` is not beyond its accounted byte (tcp.Tracker._acked). */
static inline int quiet_ack(PyObject *c, long dv, uint32_t ack) {
    if (PyList_GET_ITEM(c, C_HI + 1 - dv) == Py_None) return 1;
    long long pn = seq_slot(c, C_NXT + 1 - dv);
    uint32_t ahead = ack - (uint32_t)pn;
    return pn >= 0 && (ahead == 0 || ahead >= 0x80000000u);
}

/* Slot i set to `v` (a new reference, stolen; NULL: an error). */
static int put_slot(PyObject *c, Py_ssize_t i, PyObject *v) {
    if (!v) return -1;
    PyObject *old = PyList_GET_ITEM(c, i);
    PyList_SET_ITEM(c, i, v);
    Py_DECREF(old);
    return 0;
}

/* The direction's highest end and accounted byte both set to `to` (mod 2**32). */
static int advance(PyObject *c, long dv, uint32_t to) {
    PyObject *v = PyLong_FromUnsignedLong((unsigned long)to);
    if (!v) return -1;
    Py_INCREF(v);
    if (put_slot(c, C_HI + dv, v) < 0) return -1;
    return put_slot(c, C_NXT + dv, v);
}

static int inline_seq(walk *w, PyObject *c, PyObject *d, long dv, uint32_t fl, long plen, uint32_t seq, uint32_t ack) {
    /* (after `advance` both slots hold the same int: one conversion then) */
    PyObject *hi = PyList_GET_ITEM(c, C_HI + dv), *nxt = PyList_GET_ITEM(c, C_NXT + dv);
    if (seq_slot(c, C_HI + dv) == (long long)seq && (hi == nxt || seq_slot(c, C_NXT + dv) == (long long)seq) &&
        quiet_ack(c, dv, ack))
        return plen > 0 ? advance(c, dv, seq + (uint32_t)plen) : 0;
    PyObject *a[6] = {ref(c), ref(d), PyLong_FromUnsignedLong(fl), PyLong_FromUnsignedLong(seq), PyLong_FromLong(plen),
                      PyLong_FromUnsignedLong(ack)};
    return call_new(w->sequence, a, 6);
}

/* A direction's first pure ACK or data (tcp.Tracker._first and _active): its bit in C_SEEN, its
 * letter (upper case from the originator), and the endpoint states it moves on. */
static int first_letter(PyObject *c, long dv, long long seen, long bit, PyObject *letter) {
    if (set_slot(c, C_SEEN, seen | bit) < 0) return -1;
    PyObject *hist = PyList_GET_ITEM(c, C_HIST);
    if (!PyUnicode_CheckExact(hist)) {
        PyErr_SetString(PyExc_TypeError, "_fastcap: the history of a connection state is not a str");
        return -1;
    }
    if (put_slot(c, C_HIST, PyUnicode_Concat(hist, letter)) < 0) return -1;
    long long st, other;
    if (list_int(c, C_ST0 + dv, &st) < 0) return -1;
    if (st == INACTIVE) return set_slot(c, C_ST0 + dv, PARTIAL);
    if (st == SYN_SENT && dv == 0) {
        int synack = PyObject_IsTrue(PyList_GET_ITEM(c, C_SYNACK));
        if (synack <= 0) return synack;
        if (set_slot(c, C_ST0, ESTABLISHED) < 0 || list_int(c, C_ST0 + 1, &other) < 0) return -1;
        return other == SYN_ACK_SENT ? set_slot(c, C_ST0 + 1, ESTABLISHED) : 0;
    }
    if (st == SYN_ACK_SENT && dv == 1) {
        if (list_int(c, C_ST0, &other) < 0) return -1;
        return other == ESTABLISHED ? set_slot(c, C_ST0 + 1, ESTABLISHED) : 0;
    }
    return 0;
}

/* A segment without SYN, FIN or RST of a known connection: what formats._feeder does inline. */
static int inline_ack(walk *w, PyObject *ent, long long frame, long plen, uint32_t win, uint32_t fl, uint32_t seq,
                      uint32_t ack) {
    PyObject *c, *d;
    long dv;
    long long n, seen;
    if (entry_of(ent, &c, &d, &dv) < 0) return -1;
    if (set_slot(c, C_LAST, frame) < 0) return -1;
    if (list_int(c, C_PK0 + dv, &n) < 0 || set_slot(c, C_PK0 + dv, n + 1) < 0) return -1;
    if (list_int(c, C_SEEN, &seen) < 0) return -1;
    long m = 5L << dv;
    if ((seen & m) != m) {
        if (plen > 0) {
            if (!(seen & (4L << dv)) && first_letter(c, dv, seen, 4L << dv, dv ? LETTER_D : UPPER_D) < 0) return -1;
        } else if (!(seen & (1L << dv)) && first_letter(c, dv, seen, 1L << dv, dv ? LETTER_A : UPPER_A) < 0) {
            return -1;
        }
    }
    if (win == 0) {
        PyObject *a[3] = {ref(c), ref(d), ref(LETTER_W)};
        if (call_new(w->log, a, 3) < 0) return -1;
    }
    return inline_seq(w, c, d, dv, fl, plen, seq, ack);
}

/* The sequence numbers of a SYN-ACK, FIN or RST of a known connection, done here in the cases
 * tcp.Tracker.control does in place (a direction's first SYN-ACK, a FIN or RST where its direction is,
 * with an ACK that reveals no gap): 1 done, 0 not (for the tracker's control), -1 error. */
static int control_seq(PyObject *c, long dv, uint32_t fl, long plen, uint32_t seq, uint32_t ack) {
    if ((fl & 0x10) && !quiet_ack(c, dv, ack)) return 0;
    if (fl & 0x02) {
        if (fl & 0x05) return 0;
        PyObject *prev = PyList_GET_ITEM(c, C_SEQ + ((fl & 0x10) ? 0 : 2) + dv);
        int init = PyList_GET_ITEM(c, C_HI + dv) == Py_None || !PyLong_CheckExact(prev) ||
                   PyLong_AsLongLong(prev) != (long long)seq;
        if (PyErr_Occurred()) return -1;
        if (!init) return 0;
        if (advance(c, dv, seq + 1 + (uint32_t)plen) < 0) return -1;
        return put_slot(c, C_OOO + dv, ref(Py_None)) < 0 ? -1 : 1;
    }
    if (seq_slot(c, C_HI + dv) != (long long)seq || seq_slot(c, C_NXT + dv) != (long long)seq ||
        ((fl & 0x04) && plen > 0))
        return 0;
    if (fl & 0x04) return put_slot(c, C_HI + dv, ref(DEAD)) < 0 ? -1 : 1;
    return advance(c, dv, seq + (uint32_t)plen + 1) < 0 ? -1 : 1; /* a FIN: its sequence number is seen */
}

/* The segment whose TCP header is at t, addresses (2 x alen bytes) at src; plen already >= 0.
 * rkey: pass the reversed key to the tracker (the general decoder does, the IPv4 fast path not). */
static int segment(walk *w, long long frame, double ts, uint64_t src, int alen, uint64_t t, long plen, int bad,
                   int rkey) {
    const uint8_t *b = w->b;
    uint32_t fl = b[t + 13], win = be16(b + t + 14), seq = be32(b + t + 4), ack = be32(b + t + 8);
    uint8_t kb[36];
    Py_ssize_t klen = 2 * alen + 4;
    memcpy(kb, b + src, (size_t)(2 * alen));
    memcpy(kb + 2 * alen, b + t, 4);
    PyObject *key = PyBytes_FromStringAndSize((const char *)kb, klen);
    if (!key) return -1;
    PyObject *ent = PyDict_GetItemWithError(w->conns, key); /* borrowed */
    if (!ent && PyErr_Occurred()) goto fail;
    Py_XINCREF(ent);
    int rc;
    if ((fl & 0x17) == 0x10 && ent) { /* ACK, no SYN/FIN/RST, a known connection */
        rc = inline_ack(w, ent, frame, plen, win, fl, seq, ack);
        Py_DECREF(ent);
        Py_DECREF(key);
        return rc;
    }
    PyObject *rk;
    if (rkey) {
        uint8_t rb[36];
        memcpy(rb, b + src + alen, (size_t)alen);
        memcpy(rb + alen, b + src, (size_t)alen);
        memcpy(rb + 2 * alen, b + t + 2, 2);
        memcpy(rb + 2 * alen + 2, b + t, 2);
        rk = PyBytes_FromStringAndSize((const char *)rb, klen);
        if (!rk) {
            Py_XDECREF(ent);
            goto fail;
        }
    } else {
        rk = ref(Py_None);
    }
    if ((fl & 0x17) == 0x02 && !bad && !ent) { /* a SYN that opens a connection */
        PyObject *a[6] = {PyLong_FromLongLong(frame), PyFloat_FromDouble(ts), key, rk, PyLong_FromUnsignedLong(seq),
                          PyLong_FromLong(plen)};
        return call_new(w->open_syn, a, 6);
    }
    if ((fl & 0x07) && !bad && (fl & 0x12) != 0x02 && ent) { /* SYN-ACK, FIN, RST of a known connection */
        PyObject *c, *d;
        long dv;
        rc = entry_of(ent, &c, &d, &dv);
        if (rc == 0) {
            rc = control_seq(c, dv, fl, plen, seq, ack);
            if (rc == 1) { /* the sequence numbers done here: the rest is the tracker's control_flags */
                PyObject *a[8] = {ref(c), ref(d), PyLong_FromLongLong(frame), PyFloat_FromDouble(ts),
                                  PyLong_FromUnsignedLong(fl), PyLong_FromUnsignedLong(win), PyLong_FromLong(plen),
                                  PyLong_FromUnsignedLong(seq)};
                rc = call_new(w->control_flags, a, 8);
            } else if (rc == 0) {
                PyObject *a[9] = {ref(c), ref(d), PyLong_FromLongLong(frame), PyFloat_FromDouble(ts),
                                  PyLong_FromUnsignedLong(fl), PyLong_FromUnsignedLong(win), PyLong_FromLong(plen),
                                  PyLong_FromUnsignedLong(seq), PyLong_FromUnsignedLong(ack)};
                rc = call_new(w->control, a, 9);
            }
        }
        Py_DECREF(ent);
        Py_DECREF(key);
        Py_DECREF(rk);
        return rc;
    }
    Py_XDECREF(ent);
    PyObject *a[10] = {PyLong_FromLongLong(frame), PyFloat_FromDouble(ts), key, rk, PyLong_FromUnsignedLong(fl),
                       PyLong_FromUnsignedLong(win), PyLong_FromLong(plen), PyLong_FromUnsignedLong(seq),
                       PyLong_FromUnsignedLong(ack), PyBool_FromLong(bad)};
    return call_new(w->packet, a, 10);
fail:
    Py_DECREF(key);
    return -1;
}

/* -- one frame ------------------------------------------------------------------------------------ */
enum { NOT_TCP = 0, IS_TCP = 1, FEED = 2, FAILED = -1 };

/* linklayer._ethertype_to_ip: the IP header after an ethertype, following VLAN tags and PPPoE */
static int ethertype_to_ip(const uint8_t *b, uint64_t p, uint64_t end, uint32_t etype, uint64_t *ip) {
    for (;;) {
        if (etype == 0x0800) return *ip = p, 4;
        if (etype == 0x86DD) return *ip = p, 6;
        if (etype == 0x8100 || etype == 0x88A8 || etype == 0x9100 || etype == 0x9200) {
            if (p + 4 > end) return 0;
            etype = be16(b + p + 2);
            p += 4;
            continue;
        }
        if (etype == 0x8864) {
            if (p + 8 > end) return 0;
            uint32_t proto = be16(b + p + 6);
            *ip = p + 8;
            return proto == 0x0021 ? 4 : proto == 0x0057 ? 6 : 0;
        }
        return 0;
    }
}

/* linklayer.ip_offset for the link types decoded here: 4 or 6 with *ip, 0 no IP, -1 not decoded here */
static int ip_offset(long lt, const uint8_t *b, uint64_t p, uint64_t end, uint64_t *ip) {
    switch (lt) {
    case 1: /* Ethernet */
        if (p + 14 > end) return 0;
        return ethertype_to_ip(b, p + 14, end, be16(b + p + 12), ip);
    case 101: case 12: case 228: case 229: { /* raw IP */
        if (p >= end) return 0;
        int v = b[p] >> 4;
        *ip = p;
        return (v == 4 || v == 6) ? v : 0;
    }
    case 113: /* Linux SLL */
        if (p + 16 > end) return 0;
        return ethertype_to_ip(b, p + 16, end, be16(b + p + 14), ip);
    case 276: /* Linux SLL2 */
        if (p + 20 > end) return 0;
        return ethertype_to_ip(b, p + 20, end, be16(b + p), ip);
    default:
        return -1;
    }
}

static inline int mine(walk *w, const uint8_t *ports) {
    return w->jobs <= 1 || (long)((ports[1] ^ ports[3]) % w->jobs) == w->index;
}

/* A frame at p (incl bytes) of link type lt: IS_TCP, NOT_TCP, FEED (for Python's feed) or FAILED. */
static int one_frame(walk *w, long lt, uint64_t p, uint64_t incl, long long frame, double ts) {
    const uint8_t *b = w->b;
    uint64_t end = p + incl, ip;
    int v = ip_offset(lt, b, p, end, &ip);
    if (v < 0) return FEED;
    if (v == 0) return NOT_TCP;
    if (v == 4) {
        if (ip + 40 <= end && b[ip] == 0x45 && b[ip + 9] == 6 && !(be16(b + ip + 6) & 0x1FFF)) {
            /* plain IPv4 (formats._feeder): the checksum of FIN and RST segments only */
            if (!mine(w, b + ip + 20)) return IS_TCP;
            long tl = (long)be16(b + ip + 2);
            long plen = tl - 20 - ((b[ip + 32] >> 4) << 2);
            int bad = 0;
            if ((b[ip + 33] & 0x05) && ip + (uint64_t)tl <= end) {
                long long s = (long long)word_sum(b + ip + 12, 8) + tl - 14;
                if (tl > 20) s += (long long)word_sum(b + ip + 20, (uint64_t)tl - 20);
                long long r = s % 0xFFFF;
                bad = (r < 0 ? r + 0xFFFF : r) != 0;
            }
            return segment(w, frame, ts, ip + 12, 4, ip + 20, plen > 0 ? plen : 0, bad, 0) < 0 ? FAILED : IS_TCP;
        }
        /* linklayer.decode_tcp */
        if (ip + 20 > end) return NOT_TCP;
        uint32_t vihl = b[ip], total = be16(b + ip + 2);
        if (b[ip + 9] != 6 || vihl >> 4 != 4 || (be16(b + ip + 6) & 0x1FFF)) return NOT_TCP;
        if ((vihl & 15) < 5) return FEED;
        uint64_t hl = (vihl & 15) * 4, t = ip + hl;
        long seg_len = (long)total - (long)hl;
        if (t + 20 > end || seg_len < 20) return NOT_TCP;
        if (!mine(w, b + t)) return IS_TCP;
        long plen = seg_len - ((b[t + 12] >> 4) << 2);
        int bad = 0;
        if ((b[t + 13] & 0x07) && ip + total <= end)
            bad = (word_sum(b + ip + 12, 8) + 6 + (uint64_t)seg_len + word_sum(b + t, (uint64_t)seg_len)) % 0xFFFF != 0;
        return segment(w, frame, ts, ip + 12, 4, t, plen > 0 ? plen : 0, bad, 1) < 0 ? FAILED : IS_TCP;
    }
    /* IPv6 (linklayer.decode_tcp); extension headers are left to Python */
    if (ip + 40 > end) return NOT_TCP;
    uint32_t nxt = b[ip + 6];
    if (nxt != 6) {
        if (nxt == 0 || nxt == 43 || nxt == 60 || nxt == 44 || nxt == 51) return FEED;
        return NOT_TCP;
    }
    uint64_t t = ip + 40;
    long seg_len = (long)be16(b + ip + 4);
    if (t + 20 > end || seg_len < 20) return NOT_TCP;
    if (!mine(w, b + t)) return IS_TCP;
    long plen = seg_len - ((b[t + 12] >> 4) << 2);
    int bad = 0;
    if ((b[t + 13] & 0x07) && t + (uint64_t)seg_len <= end)
        bad = (word_sum(b + ip + 8, 32) + 6 + (uint64_t)seg_len + word_sum(b + t, (uint64_t)seg_len)) % 0xFFFF != 0;
    return segment(w, frame, ts, ip + 8, 16, t, plen > 0 ? plen : 0, bad, 1) < 0 ? FAILED : IS_TCP;
}

/* IS_TCP / NOT_TCP after Python's feed where needed, or FAILED */
static int frame_tcp(walk *w, long lt, uint64_t p, uint64_t incl, long long frame, double ts) {
    int r = one_frame(w, lt, p, incl, frame, ts);
    if (r == FEED) r = do_feed(w, lt, p, incl, frame, ts);
    return r;
}

/* -- arguments ------------------------------------------------------------------------------------ */
static int take_handlers(walk *w, PyObject *h) {
    if (!PyTuple_Check(h) || PyTuple_GET_SIZE(h) != 12) {
        PyErr_SetString(PyExc_TypeError, "handlers: (conns, open_syn, control, control_flags, packet, log, sequence, "
                                         "sweep, release, feed, jobs, index)");
        return -1;
    }
    w->conns = PyTuple_GET_ITEM(h, 0);
    if (!PyDict_CheckExact(w->conns)) {
        PyErr_SetString(PyExc_TypeError, "handlers: conns must be a dict");
        return -1;
    }
    PyObject **f[9] = {&w->open_syn, &w->control, &w->control_flags, &w->packet, &w->log, &w->sequence, &w->sweep,
                       &w->release, &w->feed};
    for (int i = 0; i < 9; i++) {
        *f[i] = PyTuple_GET_ITEM(h, i + 1);
        if (!PyCallable_Check(*f[i])) {
            PyErr_Format(PyExc_TypeError, "handlers: item %d is not callable", i + 1);
            return -1;
        }
    }
    w->jobs = PyLong_AsLong(PyTuple_GET_ITEM(h, 10));
    w->index = PyLong_AsLong(PyTuple_GET_ITEM(h, 11));
    if (PyErr_Occurred()) return -1;
    if (w->jobs < 1 || w->index < 0 || w->index >= w->jobs) {
        PyErr_SetString(PyExc_ValueError, "handlers: need 1 <= jobs and 0 <= index < jobs");
        return -1;
    }
    return 0;
}

static PyObject *done(Py_buffer *view, uint64_t off, long long frame, long long tcp) {
    PyBuffer_Release(view);
    return Py_BuildValue("(KLL)", (unsigned long long)off, frame, tcp);
}

/* -- pcap ------------------------------------------------------------------------------------------- */
PyDoc_STRVAR(pcap_doc,
"pcap(data, off, frame, linktype, big_endian, scale, sweep_before, handlers) -> (off, frame, tcp)\n\n"
"Read the pcap records of `data` from byte `off` (after `frame` frames) into the tracker, up to the\n"
"first record that is not whole. `sweep_before`: sweep before every SWEEP_EVERY-th frame with the\n"
"frame before it (the fused little-endian Ethernet loop), else after it. Returns where it stopped,\n"
"the frames read so far and the TCP frames among those read here.");

static PyObject *fast_pcap(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *data, *handlers;
    unsigned long long off;
    long long frame;
    long lt;
    int big, before;
    double scale;
    if (!PyArg_ParseTuple(args, "OKLlpdpO!", &data, &off, &frame, &lt, &big, &scale, &before, &PyTuple_Type,
                          &handlers))
        return NULL;
    walk w;
    if (take_handlers(&w, handlers) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    w.b = view.buf;
    w.end = (uint64_t)view.len;
    long long tcp = 0;
    const uint8_t *b = w.b;
    while (off + 16 <= w.end) {
        uint64_t incl = rd32(b + off + 8, big), p = off + 16;
        if (p + incl > w.end) break;
        frame++;
        off = p + incl;
        double ts = mul_add((double)rd32(b + p - 12, big), scale, (double)rd32(b + p - 16, big));
        if (before && !(frame & SWEEP_MASK) && do_sweep(&w, ts, frame - 1, off) < 0) goto fail;
        int r = frame_tcp(&w, lt, p, incl, frame, ts);
        if (r < 0) goto fail;
        tcp += r;
        if (!before && !(frame & SWEEP_MASK) && do_sweep(&w, ts, frame, off) < 0) goto fail;
        if (!(frame & SIGNAL_MASK) && PyErr_CheckSignals() < 0) goto fail;
    }
    return done(&view, off, frame, tcp);
fail:
    PyBuffer_Release(&view);
    return NULL;
}

/* -- pcapng ----------------------------------------------------------------------------------------- */
typedef struct {
    long lt;
    double tick, tsoff;
} iface;

PyDoc_STRVAR(pcapng_doc,
"pcapng(data, off, frame, big_endian, interfaces, handlers) -> (off, frame, tcp)\n\n"
"Read the pcapng blocks of `data` from byte `off` (after `frame` packets) into the tracker: enhanced,\n"
"simple and obsolete packet blocks of the `interfaces` [(link type, seconds per tick, offset seconds)]\n"
"declared, other blocks skipped; stops before a section or interface header, a damaged block or a\n"
"packet of an undeclared interface. Returns where it stopped, the packets read so far and the TCP\n"
"frames among those read here.");

/* interface `i` of the list: (link type, seconds per tick, offset seconds) */
static int load_iface(PyObject *ifaces, Py_ssize_t i, iface *out) {
    PyObject *it = PyList_GET_ITEM(ifaces, i);
    if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 3) {
        PyErr_SetString(PyExc_TypeError, "interfaces: (link type, seconds per tick, offset seconds) tuples");
        return -1;
    }
    out->lt = PyLong_AsLong(PyTuple_GET_ITEM(it, 0));
    out->tick = PyFloat_AsDouble(PyTuple_GET_ITEM(it, 1));
    out->tsoff = PyLong_AsDouble(PyTuple_GET_ITEM(it, 2)); /* int -> float, as int + float does */
    return PyErr_Occurred() ? -1 : 0;
}

static PyObject *fast_pcapng(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *data, *ifaces, *handlers;
    unsigned long long off;
    long long frame;
    int big;
    if (!PyArg_ParseTuple(args, "OKLpO!O!", &data, &off, &frame, &big, &PyList_Type, &ifaces, &PyTuple_Type,
                          &handlers))
        return NULL;
    walk w;
    if (take_handlers(&w, handlers) < 0) return NULL;
    /* The interface of a packet is converted when it differs from the last packet's, not all of them
       up front: a file of 100,000 interface blocks calls here after each one (Python reads them),
       and converting the whole list every time made that quadratic. */
    Py_ssize_t nif = PyList_GET_SIZE(ifaces);
    iface cur_if = {0};
    long long cur_ifn = -1;
    if (nif && load_iface(ifaces, nif - 1, &cur_if) < 0) return NULL; /* the newest is checked now */
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    w.b = view.buf;
    w.end = (uint64_t)view.len;
    const uint8_t *b = w.b;
    long long tcp = 0;
    while (off + 12 <= w.end) {
        uint32_t btype = rd32(b + off, big);
        if (btype == 0x0A0D0D0A || btype == 1) break; /* section / interface header: Python's */
        uint64_t blen = rd32(b + off + 4, big);
        if (blen < 12 || blen % 4 || off + blen > w.end || rd32(b + off + blen - 4, big) != blen) break;
        uint64_t body = off + 8;
        if (btype == 6 || btype == 2 || btype == 3) {
            uint64_t ifn, p, ts_raw, incl;
            if (btype == 3) {
                uint64_t announced = rd32(b + body, big);
                if (blen < 16) break;  /* min(announced, blen - 16) < 0 */
                incl = announced < blen - 16 ? announced : blen - 16;
                ifn = 0, ts_raw = 0, p = body + 4;
            } else {
                if (blen < 32) break;
                if (btype == 6) {
                    ifn = rd32(b + body, big);
                } else {
                    ifn = rd16(b + body, big);
                }
                ts_raw = ((uint64_t)rd32(b + body + 4, big) << 32) | rd32(b + body + 8, big);
                incl = rd32(b + body + 12, big);
                p = body + 20;
            }
            if (p + incl > off + blen - 4) break;
            if (ifn >= (uint64_t)nif) break;  /* Python counts it as skipped */
            if ((long long)ifn != cur_ifn) {
                if (load_iface(ifaces, (Py_ssize_t)ifn, &cur_if) < 0) goto fail;
                cur_ifn = (long long)ifn;
            }
            frame++;
            iface *f = &cur_if;
            double ts = mul_add((double)ts_raw, f->tick, f->tsoff);
            int r = frame_tcp(&w, f->lt, p, incl, frame, ts);
            if (r < 0) goto fail;
            tcp += r;
            if (!(frame & SWEEP_MASK) && do_sweep(&w, ts, frame, off) < 0) goto fail;
            if (!(frame & SIGNAL_MASK) && PyErr_CheckSignals() < 0) goto fail;
        }
        off += blen;
    }
    return done(&view, off, frame, tcp);
fail:
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"pcap", fast_pcap, METH_VARARGS, pcap_doc},
    {"pcapng", fast_pcapng, METH_VARARGS, pcapng_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastcap", "Optional accelerator of the capture readers (see formats.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastcap(void) {
    LETTER_A = PyUnicode_InternFromString("a");
    LETTER_D = PyUnicode_InternFromString("d");
    LETTER_W = PyUnicode_InternFromString("w");
    UPPER_A = PyUnicode_InternFromString("A");
    UPPER_D = PyUnicode_InternFromString("D");
    DEAD = PyLong_FromLong(-1); /* tcp.DEAD */
    if (!LETTER_A || !LETTER_D || !LETTER_W || !UPPER_A || !UPPER_D || !DEAD) return NULL;
    return PyModule_Create(&module);
}
