/* An upstream's answer read, checked and rewritten in C: `replies.forwarded_read`'s usual case (#17).

Why: on never-seen names the answer's read in full (`wire.read_message`), its bailiwick check
(`replies.bailiwick`) and its rewrite (`replies._ours`) were ~9% of the standalone server's samples
(bench/results/miss_spy_rd12b_before.md), Python walking a few records label by label.

This is the SAME algorithm, step for step, on the same bytes: the names are the Python code's
(labels lowercased, compression pointers backwards only, at most 64 jumps, 255 octets, the
`seen` shortcut for owners that point at an earlier owner), the records and the message come back
as `wire.Record` and `wire.Message` with the same fields, and a record is kept by the same rules.
Whenever the Python code would do anything but answer plainly, this gives the message back to it
(`False`): a record outside the bailiwick (the Python code re-encodes the message with dnslib),
a target name that does not read (the Python code raises), more than MAX_RECORDS records (its
loops are quadratic: bounded here), an additional count that does not fit 16 bits. `None` is given
only where `forwarded_read` answers None: the message does not read (`read_message`) or an OPT
that is not the last record (`_ours`). tests/test_wirec.py compares both on random and
malformed answers (hypothesis), and the forwarder runs either (RESOLVERGUARD_NO_MMSG: Python).

No module state (multi-phase init), as `_ngramc.c`.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_RECORDS 128 /* more: the Python code's turn */
#define MAX_POINTERS 64 /* wire._MAX_POINTERS */
#define NAME_MAX_OCTETS 254 /* wire.read_name: "name over 255 octets" past this */

enum { ANSWER = 0, AUTHORITY = 1, ADDITIONAL = 2 };
enum { T_NS = 2, T_CNAME = 5, T_SOA = 6, T_MX = 15, T_SRV = 33, T_DNAME = 39, T_OPT = 41, T_RRSIG = 46, T_NSEC = 47,
       T_NSEC3 = 50 };

/* A name: its labels as length-prefixed lowercased bytes (no root byte), in the reader's arena. */
typedef struct {
    Py_ssize_t at;   /* in the arena */
    int len;         /* octets: the sum of (label length + 1), as `read_name` counts `size` */
    int labels;
    PyObject *object; /* its Python tuple, once made (owned) */
} Name;

typedef struct {
    Py_ssize_t start, ttl_at, rdata_at, end;
    unsigned long ttl;
    int section, rtype, owner; /* owner: index in names */
} Rec;

typedef struct {
    const unsigned char *wire;
    Py_ssize_t size;
    unsigned char *arena;
    Py_ssize_t used, cap;
    Name *names;
    int nnames, names_cap;
    Py_ssize_t seen_at[MAX_RECORDS + 1]; /* `read_message`'s `seen`: offsets ascending */
    int seen_name[MAX_RECORDS + 1];
    int nseen;
} Reader;

static int new_name(Reader *r, const unsigned char *bytes, int len, int labels) {
    if (r->nnames >= r->names_cap || r->used + len > r->cap) return -1; /* (sized so that it never is) */
    Name *n = &r->names[r->nnames];
    n->at = r->used;
    n->len = len;
    n->labels = labels;
    n->object = NULL;
    memcpy(r->arena + r->used, bytes, (size_t)len);
    r->used += len;
    return r->nnames++;
}

static int seen_find(const Reader *r, Py_ssize_t at) {
    int lo = 0, hi = r->nseen - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (r->seen_at[mid] == at) return r->seen_name[mid];
        if (r->seen_at[mid] < at) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* `wire.read_name`: the name at `at` (its index in names) and the offset after it in *end; -1 where
   the Python code raises ValueError or IndexError. `seen`: use the owners read so far. */
static int read_name(Reader *r, Py_ssize_t at, int seen, Py_ssize_t *end_out) {
    unsigned char buf[NAME_MAX_OCTETS + 1];
    int size = 0, labels = 0, jumps = 0;
    Py_ssize_t end = -1;
    const unsigned char *wire = r->wire;
    for (;;) {
        if (at < 0 || at >= r->size) return -1;
        unsigned length = wire[at];
        if (length >= 0xC0) {
            if (at + 1 >= r->size) return -1;
            Py_ssize_t target = (Py_ssize_t)((length & 0x3F) << 8 | wire[at + 1]);
            if (target >= at || jumps >= MAX_POINTERS) return -1;
            if (end < 0) end = at + 2;
            int rest = seen ? seen_find(r, target) : -1;
            if (rest >= 0) {
                *end_out = end;
                if (!size) return rest; /* a bare pointer: the very same name */
                const Name *tail = &r->names[rest];
                if (size + tail->len > NAME_MAX_OCTETS) return -1;
                memcpy(buf + size, r->arena + tail->at, (size_t)tail->len);
                return new_name(r, buf, size + tail->len, labels + tail->labels);
            }
            at = target;
            jumps++;
            continue;
        }
        if (length > 63) return -1;
        if (length == 0) {
            *end_out = end >= 0 ? end : at + 1;
            return new_name(r, buf, size, labels);
        }
        if (size + (int)length + 1 > NAME_MAX_OCTETS) return -1;
        if (at + 1 + (Py_ssize_t)length > r->size) return -1;
        buf[size] = (unsigned char)length;
        for (unsigned i = 0; i < length; i++) {
            unsigned char c = wire[at + 1 + i];
            buf[size + 1 + i] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
        }
        size += (int)length + 1;
        labels++;
        at += 1 + length;
    }
}

static int same(const Reader *r, int a, int b) {
    const Name *x = &r->names[a], *y = &r->names[b];
    return a == b || (x->len == y->len && memcmp(r->arena + x->at, r->arena + y->at, (size_t)x->len) == 0);
}

/* `wire.within`: is name `a` at or below zone `z`? */
static int within(const Reader *r, int a, int z) {
    const Name *n = &r->names[a], *zone = &r->names[z];
    if (zone->labels > n->labels) return 0;
    const unsigned char *p = r->arena + n->at;
    Py_ssize_t at = 0;
    for (int skip = n->labels - zone->labels; skip > 0; skip--) at += p[at] + 1;
    return n->len - at == zone->len && memcmp(p + at, r->arena + zone->at, (size_t)zone->len) == 0;
}

static int in_set(const Reader *r, const int *set, int count, int name) {
    for (int i = 0; i < count; i++)
        if (same(r, set[i], name)) return 1;
    return 0;
}

static unsigned get16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

/* `Message.target`: the name a CNAME/DNAME/NS/MX/SRV record points to, read without `seen`; -1 if it
   does not read (where the Python code raises). */
static int target_of(Reader *r, const Rec *rec) {
    Py_ssize_t skip = rec->rtype == T_MX ? 2 : rec->rtype == T_SRV ? 6 : 0, end;
    return read_name(r, rec->rdata_at + skip, 0, &end);
}

/* `replies.bailiwick`, into keep[]; 0, or -1 where the Python code would raise (a target that does
   not read). */
static int bailiwick(Reader *r, const Rec *recs, int n, int qname, char *keep) {
    int chain[MAX_RECORDS + 1], zones[MAX_RECORDS], targets[MAX_RECORDS];
    int nchain = 1, nzones = 0, ntargets = 0;
    chain[0] = qname;
    memset(keep, 0, (size_t)n);
    for (int i = 0; i < n; i++) {
        if (recs[i].section != ANSWER) break;
        if (!same(r, recs[i].owner, qname) || recs[i].rtype == T_CNAME || recs[i].rtype == T_DNAME) {
            /* `_answer_chain` */
            int changed = 1;
            while (changed) {
                changed = 0;
                for (int j = 0; j < n; j++) {
                    if (keep[j] || recs[j].section != ANSWER) continue;
                    int hit = in_set(r, chain, nchain, recs[j].owner);
                    if (!hit && recs[j].rtype == T_DNAME)
                        for (int k = 0; k < nchain && !hit; k++) hit = within(r, chain[k], recs[j].owner);
                    if (hit) {
                        keep[j] = 1;
                        changed = 1;
                        if (recs[j].rtype == T_CNAME) {
                            int t = target_of(r, &recs[j]);
                            if (t < 0 || nchain > MAX_RECORDS) return -1;
                            chain[nchain++] = t;
                        }
                    }
                }
            }
            break;
        }
        keep[i] = 1;
    }
    for (int i = 0; i < n; i++) {
        if (recs[i].section != AUTHORITY || recs[i].rtype == T_OPT) continue;
        int covers = 0;
        for (int k = 0; k < nchain && !covers; k++) covers = within(r, chain[k], recs[i].owner);
        if (covers) {
            keep[i] = 1;
            zones[nzones++] = recs[i].owner;
        }
    }
    for (int i = 0; i < n; i++) {
        int t = recs[i].rtype;
        if (recs[i].section == AUTHORITY && !keep[i] && (t == T_NSEC || t == T_NSEC3 || t == T_RRSIG)) {
            int any = 0;
            for (int k = 0; k < nzones && !any; k++) any = within(r, recs[i].owner, zones[k]);
            keep[i] = (char)any;
        }
        if (keep[i] && (t == T_NS || t == T_MX || t == T_SRV)) {
            int target = target_of(r, &recs[i]);
            if (target < 0) return -1;
            targets[ntargets++] = target;
        } else if (recs[i].section == ADDITIONAL) {
            keep[i] = (char)(t == T_OPT || in_set(r, targets, ntargets, recs[i].owner) ||
                             in_set(r, chain, nchain, recs[i].owner));
        }
    }
    return 0;
}

/* The Python tuple of a name (made once per name). New reference. */
static PyObject *name_object(Reader *r, int index) {
    Name *n = &r->names[index];
    if (n->object == NULL) {
        PyObject *t = PyTuple_New(n->labels);
        if (t == NULL) return NULL;
        const unsigned char *p = r->arena + n->at;
        Py_ssize_t at = 0;
        for (int i = 0; i < n->labels; i++) {
            PyObject *label = PyBytes_FromStringAndSize((const char *)p + at + 1, p[at]);
            if (label == NULL) {
                Py_DECREF(t);
                return NULL;
            }
            PyTuple_SET_ITEM(t, i, label);
            at += p[at] + 1;
        }
        n->object = t;
    }
    Py_INCREF(n->object);
    return n->object;
}

/* A NamedTuple of `type` from `count` new references (stolen; NULL among them: an error), as
   CPython's tuple_subtype_new makes one. */
static PyObject *named(PyTypeObject *type, int count, PyObject **items) {
    PyObject *t = NULL;
    for (int i = 0; i < count; i++)
        if (items[i] == NULL) goto fail;
    t = type->tp_alloc(type, count);
    if (t == NULL) goto fail;
    for (int i = 0; i < count; i++) PyTuple_SET_ITEM(t, i, items[i]);
    return t;
fail:
    for (int i = 0; i < count; i++) Py_XDECREF(items[i]);
    return NULL;
}

static PyObject *record_object(Reader *r, PyTypeObject *type, const Rec *rec, unsigned long ttl) {
    PyObject *items[8] = {
        PyLong_FromLong(rec->section), PyLong_FromSsize_t(rec->start), name_object(r, rec->owner),
        PyLong_FromLong(rec->rtype), PyLong_FromUnsignedLong(ttl), PyLong_FromSsize_t(rec->ttl_at),
        PyLong_FromSsize_t(rec->rdata_at), PyLong_FromSsize_t(rec->end),
    };
    return named(type, 8, items);
}

#define GIVE_BACK 1 /* the Python code's turn */
#define MALFORMED 2 /* forwarded_read's None */

/* `wire.read_message` into recs; 0, MALFORMED or GIVE_BACK. */
static int read_message(Reader *r, Rec *recs, int *count, int *qname, Py_ssize_t *question_end) {
    if (r->size < 12) return MALFORMED;
    const unsigned char *w = r->wire;
    long total = (long)get16(w + 6) + (long)get16(w + 8) + (long)get16(w + 10);
    long an = get16(w + 6), ns = get16(w + 8);
    if (get16(w + 4) != 1) return MALFORMED;
    if (total > MAX_RECORDS) return GIVE_BACK;
    Py_ssize_t at;
    *qname = read_name(r, 12, 0, &at);
    if (*qname < 0) return MALFORMED;
    r->seen_at[0] = 12;
    r->seen_name[0] = *qname;
    r->nseen = 1;
    at += 4;
    *question_end = at;
    for (long index = 0; index < total; index++) {
        Rec *rec = &recs[index];
        rec->start = at;
        rec->owner = read_name(r, at, 1, &at);
        if (rec->owner < 0) return MALFORMED;
        if (r->wire[rec->start] < 0xC0) { /* (starts ascend: the table stays sorted) */
            r->seen_at[r->nseen] = rec->start;
            r->seen_name[r->nseen++] = rec->owner;
        }
        if (at + 10 > r->size) return MALFORMED;
        rec->rtype = (int)get16(w + at);
        rec->ttl = (unsigned long)w[at + 4] << 24 | (unsigned long)w[at + 5] << 16 | (unsigned long)w[at + 6] << 8 |
                   w[at + 7];
        Py_ssize_t end = at + 10 + (Py_ssize_t)get16(w + at + 8);
        if (end > r->size) return MALFORMED;
        rec->section = index < an ? ANSWER : index < an + ns ? AUTHORITY : ADDITIONAL;
        rec->ttl_at = at + 4;
        rec->rdata_at = at + 10;
        rec->end = end;
        at = end;
    }
    if (at != r->size || *question_end > r->size) return MALFORMED;
    *count = (int)total;
    return 0;
}

/* `replies._ours` on a message whose records are all kept: (bytes, Message), None or False. */
static PyObject *ours(Reader *r, const Rec *recs, int n, int qname, Py_ssize_t question_end, unsigned head_flags,
                      int edns, int do_bit, PyTypeObject *record_type, PyTypeObject *message_type) {
    const unsigned char *w = r->wire;
    Py_ssize_t opt_at = -1;
    unsigned extended = 0;
    for (int i = 0; i < n; i++) {
        if (recs[i].rtype == T_OPT) {
            if (opt_at >= 0 || i != n - 1 || recs[i].section != ADDITIONAL)
                Py_RETURN_NONE; /* one OPT, last, in the additional section (RFC 6891 6.1.1) */
            extended = w[recs[i].ttl_at];
            opt_at = recs[i].start;
        }
    }
    long additional = (long)get16(w + 10) - (opt_at >= 0) + (edns != 0);
    if (additional < 0 || additional > 0xFFFF) Py_RETURN_FALSE; /* (the Python code raises OverflowError) */
    Py_ssize_t kept = opt_at >= 0 ? opt_at : r->size, size = kept + (edns ? 11 : 0);
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(o, w, (size_t)kept);
    unsigned flags = 0x8080 | (head_flags & (0x7800 | 0x0100 | 0x0010)) | (get16(w + 2) & (0x0200 | 0x0020 | 0x000F));
    o[2] = (unsigned char)(flags >> 8);
    o[3] = (unsigned char)flags;
    o[10] = (unsigned char)(additional >> 8);
    o[11] = (unsigned char)additional;
    int nout = n - (opt_at >= 0) + (edns != 0);
    PyObject *records = PyTuple_New(nout);
    if (records == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    for (int i = 0; i < n - (opt_at >= 0); i++) {
        unsigned long ttl = recs[i].ttl;
        if (ttl >= 0x80000000UL) { /* RFC 2181 8: the top bit set means 0 */
            memset(o + recs[i].ttl_at, 0, 4);
            ttl = 0;
        }
        PyObject *rec = record_object(r, record_type, &recs[i], ttl);
        if (rec == NULL) goto fail;
        PyTuple_SET_ITEM(records, i, rec);
    }
    if (edns) {
        Py_ssize_t start = kept;
        unsigned char *p = o + start;
        unsigned do_flags = do_bit ? 0x8000 : 0;
        p[0] = 0;
        p[1] = 0, p[2] = T_OPT;
        p[3] = 1232 >> 8, p[4] = 1232 & 0xFF;
        p[5] = (unsigned char)extended, p[6] = 0;
        p[7] = (unsigned char)(do_flags >> 8), p[8] = 0;
        p[9] = 0, p[10] = 0;
        Rec opt = {start, start + 5, start + 11, start + 11, 0, ADDITIONAL, T_OPT, -1};
        PyObject *items[8] = {
            PyLong_FromLong(ADDITIONAL), PyLong_FromSsize_t(start), PyTuple_New(0), PyLong_FromLong(T_OPT),
            PyLong_FromUnsignedLong((unsigned long)extended << 24 | do_flags), PyLong_FromSsize_t(opt.ttl_at),
            PyLong_FromSsize_t(opt.rdata_at), PyLong_FromSsize_t(opt.end),
        };
        PyObject *rec = named(record_type, 8, items);
        if (rec == NULL) goto fail;
        PyTuple_SET_ITEM(records, nout - 1, rec);
    }
    PyObject *items[3] = {PyLong_FromSsize_t(question_end), records, name_object(r, qname)};
    PyObject *message = named(message_type, 3, items); /* (steals records) */
    if (message == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    PyObject *result = PyTuple_Pack(2, out, message);
    Py_DECREF(out);
    Py_DECREF(message);
    return result;
fail:
    Py_DECREF(records);
    Py_DECREF(out);
    return NULL;
}

PyDoc_STRVAR(forwarded_read_doc,
"forwarded_read(answer, flags, edns, do, Record, Message) -> (bytes, Message) | None | False\n\n"
"`replies.forwarded_read(answer, head)` for a query head's `flags`, `edns` and `do`: the answer as\n"
"passed on and its records (as `wire.Record` and `wire.Message`), None when it is malformed, or\n"
"False when the Python code must decide (see _wirec.c).");

static PyObject *forwarded_read(PyObject *self, PyObject *args) {
    Py_buffer view;
    unsigned head_flags;
    int edns, do_bit;
    PyTypeObject *record_type, *message_type;
    if (!PyArg_ParseTuple(args, "y*IppO!O!", &view, &head_flags, &edns, &do_bit, &PyType_Type, &record_type,
                          &PyType_Type, &message_type))
        return NULL;
    PyObject *result = NULL;
    if (!PyType_IsSubtype(record_type, &PyTuple_Type) || !PyType_IsSubtype(message_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Record and Message must be NamedTuples");
        PyBuffer_Release(&view);
        return NULL;
    }
    Reader r = {.wire = view.buf, .size = view.len};
    Rec recs[MAX_RECORDS];
    char keep[MAX_RECORDS];
    /* Names: the question, an owner and a target per record. Each at most 254 octets. */
    r.names_cap = 2 * MAX_RECORDS + 2;
    r.cap = 0;
    int count = 0, qname = -1;
    Py_ssize_t question_end = 0;
    if (r.size >= 12) {
        long total = (long)get16(r.wire + 6) + get16(r.wire + 8) + get16(r.wire + 10);
        r.names_cap = (int)(total <= MAX_RECORDS ? 2 * total + 2 : 2);
        r.cap = (Py_ssize_t)r.names_cap * NAME_MAX_OCTETS;
    }
    r.names = PyMem_Malloc(sizeof(Name) * (size_t)r.names_cap);
    r.arena = PyMem_Malloc((size_t)(r.cap ? r.cap : 1));
    if (r.names == NULL || r.arena == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int status = read_message(&r, recs, &count, &qname, &question_end);
    if (status == MALFORMED) {
        result = Py_NewRef(Py_None);
    } else if (status == GIVE_BACK || bailiwick(&r, recs, count, qname, keep) < 0 ||
               memchr(keep, 0, (size_t)count) != NULL) {
        result = Py_NewRef(Py_False);
    } else {
        result = ours(&r, recs, count, qname, question_end, head_flags, edns, do_bit, record_type, message_type);
    }
done:
    if (r.names != NULL)
        for (int i = 0; i < r.nnames; i++) Py_XDECREF(r.names[i].object);
    PyMem_Free(r.names);
    PyMem_Free(r.arena);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(parse_query_doc,
"parse_query(QueryHead, packet) -> QueryHead | None\n\n"
"`wire.parse_query_python(packet)`: the head of a plain one-question query (a `QueryHead`), or None\n"
"when it needs the full parser. The same checks in the same order, the same fields.");

/* `wire.parse_query_python`, step for step (tests/test_wirec.py holds the two to the same result). */
static PyObject *parse_query(PyObject *self, PyObject *args) {
    Py_buffer view;
    PyTypeObject *head_type;
    if (!PyArg_ParseTuple(args, "O!y*", &PyType_Type, &head_type, &view)) return NULL;
    if (!PyType_IsSubtype(head_type, &PyTuple_Type)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "QueryHead must be a NamedTuple");
        return NULL;
    }
    const unsigned char *p = view.buf;
    Py_ssize_t size = view.len, at = 12;
    char name[4 * 255 + 8]; /* presentation form: a byte is at most 4 characters ("\\ddd") */
    Py_ssize_t n = 0;
    int labels = 0;
    if (size < 17) goto none;
    if (get16(p + 4) != 1 || get16(p + 6) || get16(p + 8) || get16(p + 10) > 1) goto none;
    for (;;) {
        if (at >= size) goto none;
        unsigned length = p[at];
        if (length == 0) {
            at++;
            break;
        }
        if (length > 63) goto none; /* compression pointer or a label too long: the full parser decides */
        Py_ssize_t end = at + 1 + length;
        if (end > size || end - 12 > 254) goto none;
        if (labels++) name[n++] = '.';
        for (Py_ssize_t i = at + 1; i < end; i++) {
            unsigned char b = p[i];
            if (b >= 33 && b <= 126 && b != '.' && b != '\\') {
                name[n++] = (char)b;
            } else { /* `wire.label_text`: \ddd */
                name[n++] = '\\';
                name[n++] = (char)('0' + b / 100);
                name[n++] = (char)('0' + b / 10 % 10);
                name[n++] = (char)('0' + b % 10);
            }
        }
        at = end;
    }
    if (at + 4 > size) goto none;
    unsigned qtype = get16(p + at), qclass = get16(p + at + 2), udp_size = 512, version = 0;
    Py_ssize_t question_end = at + 4;
    int edns = 0, do_bit = 0;
    if (get16(p + 10)) { /* one OPT record: root name, type 41, class = UDP size, TTL = ext-rcode/version/flags */
        if (question_end >= size || p[question_end] != 0 || question_end + 11 > size) goto none;
        const unsigned char *o = p + question_end + 1;
        if (get16(o) != 41 || question_end + 11 + (Py_ssize_t)get16(o + 8) != size) goto none;
        edns = 1;
        udp_size = get16(o + 2);
        do_bit = (o[6] & 0x80) != 0; /* EDNS_DO, 0x8000 of the TTL's low half */
        version = o[5];
    } else if (question_end != size) {
        goto none;
    }
    name[n++] = '.';
    PyObject *items[10] = {
        PyLong_FromLong((long)get16(p)), PyLong_FromLong((long)get16(p + 2)), PyUnicode_DecodeASCII(name, n, NULL),
        PyLong_FromLong((long)qtype), PyLong_FromLong((long)qclass),
        PyBytes_FromStringAndSize((const char *)p + 12, question_end - 12), PyBool_FromLong(edns),
        PyLong_FromLong((long)udp_size), PyBool_FromLong(do_bit), PyLong_FromLong((long)version),
    };
    PyBuffer_Release(&view);
    return named(head_type, 10, items);
none:
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(matches_doc,
"matches(answer, qid, question) -> bool\n\n"
"`steps.upstream.matches_python`: is `answer` a reply to our query `qid` for the same question (the\n"
"name compared without ASCII case)? The same checks in the same order.");

static int answer_matches(const unsigned char *a, Py_ssize_t alen, unsigned long qid, const unsigned char *q,
                          Py_ssize_t qlen) {
    if (alen < 12 || get16(a) != qid || !(a[2] & 0x80)) return 0;
    if (a[4] == 0 && a[5] == 0) return (a[3] & 0x0F) != 0; /* FORMERR/REFUSED/NOTIMP may echo no question */
    if (a[4] != 0 || a[5] != 1 || alen - 12 < qlen) return 0;
    for (Py_ssize_t i = 0; i < qlen; i++) {
        unsigned char x = a[12 + i], y = q[i];
        x = (x >= 'A' && x <= 'Z') ? (unsigned char)(x + 32) : x;
        y = (y >= 'A' && y <= 'Z') ? (unsigned char)(y + 32) : y;
        if (x != y) return 0;
    }
    return 1;
}

/* METH_FASTCALL: it runs once per upstream answer, and tuple parsing was most of its cost. */
static PyObject *matches(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "matches(answer, qid, question)");
        return NULL;
    }
    int overflow = 0;
    long long id = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (id == -1 && PyErr_Occurred()) return NULL;
    if (overflow || id < 0 || id > 0xFFFF) Py_RETURN_FALSE; /* (no 16-bit ID equals it) */
    unsigned long qid = (unsigned long)id;
    if (PyBytes_CheckExact(args[0]) && PyBytes_CheckExact(args[2]))
        return PyBool_FromLong(answer_matches((const unsigned char *)PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]),
                                              qid, (const unsigned char *)PyBytes_AS_STRING(args[2]),
                                              PyBytes_GET_SIZE(args[2])));
    Py_buffer answer, question;
    if (PyObject_GetBuffer(args[0], &answer, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[2], &question, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&answer);
        return NULL;
    }
    int ok = answer_matches(answer.buf, answer.len, qid, question.buf, question.len);
    PyBuffer_Release(&answer);
    PyBuffer_Release(&question);
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"matches", (PyCFunction)(void (*)(void))matches, METH_FASTCALL, matches_doc},
    {"forwarded_read", forwarded_read, METH_VARARGS, forwarded_read_doc},
    {"parse_query", parse_query, METH_VARARGS, parse_query_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot module_slots[] = {{0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "resolverguard._wirec",
    .m_doc = "An upstream's answer read, checked and rewritten in C (see _wirec.c).", .m_size = 0,
    .m_methods = methods, .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__wirec(void) { return PyModuleDef_Init(&module); }
