/* The query log's per-query work in C: `pack` on the event loop, `render` in the writer
(resolverguard.logwriter: `packed_frame`, `LineMaker.render`).

Why (issue #17, "the query log to a file costs <= 10%"): with the lines made off the loop, the log
still added ~2.3 us of CPU to a ~10 us cached answer (bench/compare.py --log, CPU ratio 0.82): the
loop marshalled a tuple per query (~0.2 us), the writer unmarshalled it (~0.55 us), made the line in
a Python loop (~0.85 us), joined and wrote the text (~0.4 us) (bench/results/log_logc8.md). Here a
query is 24 bytes (`RECORD`: wall clock, latency, the index of its shape and of its client in the
batch's lists), written by one C loop on the event loop and turned into its JSON line by another in
the writer; a shape met again in a batch, or (with a serial) already sent to the writer, is not
sent again.

The lines are the Python code's, byte for byte (tests/test_logwriter.py compares them on random
records): the parts that repeat (client, the shape's middle and rest) are made by Python and only
copied here; the time's second is Python's (`second`, called once per second met); the milliseconds
and the latency are the same integer arithmetic on the same doubles (Python's `round` is ties to
even, as below). Anything outside what this code is sure of (a wall clock below 0 or past 2**53, a
latency below 0 or past ~31 years, a part that is not ASCII, an item that is not a query's tuple)
makes `pack` or `render` return None, and the caller does that batch in Python.

No module state and no static type: nothing outlives an import (as in _ngramc.c).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#if PY_BIG_ENDIAN
#error "the query log's records are little-endian (logwriter.RECORD '<ddII')"
#endif

typedef struct {
    double wall;
    double latency;
    uint32_t slot;
    uint32_t client;
} Record; /* logwriter.RECORD: '<ddII', 24 bytes, no padding */

#define SHAPE_FIELDS 13 /* logwriter.QueryShape */
#define SERIAL 12
#define MAX_WALL 9007199254740992.0 /* 2**53: whole seconds exact in a double and a long long */
#define MAX_US 1e15

/* One entry of the identity table: a shape object (borrowed: the batch holds it) -> its slot. */
typedef struct {
    PyObject *key;
    uint32_t slot;
} Seen;

static size_t pointer_hash(PyObject *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

/* The items are all queries' tuples (wall: float, client: str, latency: float, shape: 13-tuple). */
static int all_queries(PyObject *items) {
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 4) return 0;
        PyObject *shape = PyTuple_GET_ITEM(item, 3);
        if (!PyFloat_CheckExact(PyTuple_GET_ITEM(item, 0)) || !PyUnicode_CheckExact(PyTuple_GET_ITEM(item, 1)) ||
            !PyFloat_CheckExact(PyTuple_GET_ITEM(item, 2)) || !PyTuple_CheckExact(shape) ||
            PyTuple_GET_SIZE(shape) != SHAPE_FIELDS)
            return 0;
    }
    return 1;
}

/* The slot of a shape met the first time in this batch: the shape itself, or its serial where
   `known` (the serials the writer has) holds it. A serial sent in full is added to `known`. */
static PyObject *slot_of(PyObject *shape, PyObject *known) {
    PyObject *serial = PyTuple_GET_ITEM(shape, SERIAL);
    if (known != Py_None && PyLong_CheckExact(serial)) {
        int has = PySet_Contains(known, serial);
        if (has < 0) return NULL;
        if (has) return Py_NewRef(serial);
        if (PySet_Add(known, serial) < 0) return NULL;
    }
    return Py_NewRef(shape);
}

static PyObject *pack_items(PyObject *items, PyObject *known) {
    Py_ssize_t n = PyList_GET_SIZE(items);
    size_t capacity = 16;
    while (capacity < (size_t)n * 2) capacity <<= 1;
    Seen *table = PyMem_Calloc(capacity, sizeof(Seen));
    PyObject *records = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(Record));
    PyObject *slots = PyList_New(0), *clients = PyList_New(0), *client_index = PyDict_New();
    PyObject *result = NULL;
    if (table == NULL || records == NULL || slots == NULL || clients == NULL || client_index == NULL) {
        if (table == NULL) PyErr_NoMemory();
        goto done;
    }
    char *out = PyBytes_AS_STRING(records);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        PyObject *shape = PyTuple_GET_ITEM(item, 3), *client = PyTuple_GET_ITEM(item, 1);
        Record record = {PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(item, 0)), PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(item, 2)),
                         0, 0};
        size_t at = pointer_hash(shape) & (capacity - 1);
        while (table[at].key != NULL && table[at].key != shape) at = (at + 1) & (capacity - 1);
        if (table[at].key == NULL) {
            PyObject *slot = slot_of(shape, known);
            if (slot == NULL) goto done;
            table[at].key = shape;
            table[at].slot = (uint32_t)PyList_GET_SIZE(slots);
            int failed = PyList_Append(slots, slot);
            Py_DECREF(slot);
            if (failed < 0) goto done;
        }
        record.slot = table[at].slot;
        PyObject *found = PyDict_GetItemWithError(client_index, client);
        if (found == NULL) {
            if (PyErr_Occurred()) goto done;
            PyObject *index = PyLong_FromSsize_t(PyList_GET_SIZE(clients));
            if (index == NULL) goto done;
            int failed = PyDict_SetItem(client_index, client, index) < 0 || PyList_Append(clients, client) < 0;
            Py_DECREF(index);
            if (failed) goto done;
            record.client = (uint32_t)(PyList_GET_SIZE(clients) - 1);
        } else {
            record.client = (uint32_t)PyLong_AsSize_t(found);
        }
        memcpy(out + i * sizeof(Record), &record, sizeof(Record));
    }
    result = PyTuple_Pack(3, records, slots, clients);
done:
    PyMem_Free(table);
    Py_XDECREF(records);
    Py_XDECREF(slots);
    Py_XDECREF(clients);
    Py_XDECREF(client_index);
    return result;
}

static PyObject *pack(PyObject *self, PyObject *args) {
    PyObject *items, *known;
    if (!PyArg_ParseTuple(args, "O!O:pack", &PyList_Type, &items, &known)) return NULL;
    if (known != Py_None && !PySet_CheckExact(known)) {
        PyErr_SetString(PyExc_TypeError, "pack: known must be a set or None");
        return NULL;
    }
    if (PyList_GET_SIZE(items) >= UINT32_MAX || !all_queries(items)) Py_RETURN_NONE;
    return pack_items(items, known);
}

/* An ASCII str's bytes (NULL, no error set: not ASCII or not a str). */
typedef struct {
    const char *text;
    Py_ssize_t size;
} Text;

static int texts_of(PyObject *list, Text **out, Py_ssize_t *longest) {
    Py_ssize_t n = PyList_GET_SIZE(list);
    *out = PyMem_Malloc((n > 0 ? n : 1) * sizeof(Text));
    if (*out == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *longest = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(list, i);
        if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s)) return 0;
        (*out)[i].text = (const char *)PyUnicode_DATA(s);
        (*out)[i].size = PyUnicode_GET_LENGTH(s);
        if ((*out)[i].size > *longest) *longest = (*out)[i].size;
    }
    return 1;
}

/* "0", "5", "05", "005", "123": the fraction of a millisecond as logwriter._FRACTIONS writes it. */
static char *put_fraction(char *p, int n) {
    if (n == 0) {
        *p++ = '0';
        return p;
    }
    char digits[3] = {(char)('0' + n / 100), (char)('0' + n / 10 % 10), (char)('0' + n % 10)};
    int keep = 3;
    while (digits[keep - 1] == '0') keep--;
    memcpy(p, digits, keep);
    return p + keep;
}

static char *put_uint(char *p, unsigned long long v) {
    char digits[24];
    int k = 0;
    do {
        digits[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k) *p++ = digits[--k];
    return p;
}

/* Python's round(x) of a float: ties to even. */
static double round_even(double x) {
    double rounded = round(x);
    if (fabs(x - rounded) == 0.5) rounded = 2.0 * round(x / 2.0);
    return rounded;
}

#define PUT(p, s) (memcpy((p), (s), sizeof(s) - 1), (p) + sizeof(s) - 1)

/* Texts: serial -> (mid, rest), the line maker's memo of its shapes' parts (LineMaker._texts) kept for
   `render`: the key, the parts' characters and their lengths inline in one table entry, where a dict cost
   render ~5 cache misses a slot (the entry, the key's int, the pair, both strings; in a served writer, run
   between the resolver's bursts, most of its time, issue #17). Serials are ints of 64 bits (a larger one
   is not kept: its shape's parts are made again). Only exact str parts are kept; `ascii` says whether
   render may copy them. */
typedef struct {
    int64_t key;
    int used, ascii;
    const char *mid, *rest;
    Py_ssize_t mid_size, rest_size;
    PyObject *pair;
} TextEntry;

typedef struct {
    PyObject_HEAD
    TextEntry *table;
    size_t size; /* a power of two, or 0 */
    Py_ssize_t count;
} Texts;

static size_t key_hash(int64_t key) {
    uint64_t x = (uint64_t)key * 0x9e3779b97f4a7c15ULL;
    return (size_t)(x ^ (x >> 29));
}

static TextEntry *Texts_find(Texts *self, int64_t key) {
    if (self->size == 0) return NULL;
    size_t at = key_hash(key) & (self->size - 1);
    while (self->table[at].used) {
        if (self->table[at].key == key) return &self->table[at];
        at = (at + 1) & (self->size - 1);
    }
    return NULL;
}

/* A serial as a 64-bit key: 1, 0 (not an int of 64 bits: not kept), -1 an error. */
static int key_of(PyObject *serial, int64_t *key) {
    if (!PyLong_CheckExact(serial)) return 0;
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(serial, &overflow);
    if (value == -1 && PyErr_Occurred()) return -1;
    if (overflow) return 0;
    *key = (int64_t)value;
    return 1;
}

static int Texts_grow(Texts *self) {
    size_t size = self->size ? self->size * 2 : 1024;
    TextEntry *table = PyMem_Calloc(size, sizeof(TextEntry));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < self->size; i++) {
        if (!self->table[i].used) continue;
        size_t at = key_hash(self->table[i].key) & (size - 1);
        while (table[at].used) at = (at + 1) & (size - 1);
        table[at] = self->table[i];
    }
    PyMem_Free(self->table);
    self->table = table;
    self->size = size;
    return 0;
}

static PyObject *Texts_get(Texts *self, PyObject *serial) {
    int64_t key;
    int is_key = key_of(serial, &key);
    if (is_key < 0) return NULL;
    TextEntry *found = is_key ? Texts_find(self, key) : NULL;
    return Py_NewRef(found != NULL ? found->pair : Py_None);
}

static int Texts_set(Texts *self, PyObject *serial, PyObject *pair) {
    if (pair == NULL) {
        PyErr_SetString(PyExc_TypeError, "Texts: nothing is deleted but by clear()");
        return -1;
    }
    if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyUnicode_CheckExact(PyTuple_GET_ITEM(pair, 0)) ||
        !PyUnicode_CheckExact(PyTuple_GET_ITEM(pair, 1))) {
        PyErr_SetString(PyExc_TypeError, "Texts: a value is a (str, str) tuple");
        return -1;
    }
    int64_t key;
    int is_key = key_of(serial, &key);
    if (is_key <= 0) return is_key; /* (a serial past 64 bits: not kept) */
    TextEntry *entry = Texts_find(self, key);
    if (entry == NULL) {
        if ((size_t)(self->count + 1) * 2 > self->size && Texts_grow(self) < 0) return -1;
        size_t at = key_hash(key) & (self->size - 1);
        while (self->table[at].used) at = (at + 1) & (self->size - 1);
        entry = &self->table[at];
        entry->used = 1;
        entry->key = key;
        entry->pair = NULL;
        self->count++;
    }
    PyObject *mid = PyTuple_GET_ITEM(pair, 0), *rest = PyTuple_GET_ITEM(pair, 1);
    Py_XSETREF(entry->pair, Py_NewRef(pair));
    entry->ascii = PyUnicode_IS_ASCII(mid) && PyUnicode_IS_ASCII(rest);
    entry->mid = entry->ascii ? (const char *)PyUnicode_DATA(mid) : NULL;
    entry->rest = entry->ascii ? (const char *)PyUnicode_DATA(rest) : NULL;
    entry->mid_size = PyUnicode_GET_LENGTH(mid);
    entry->rest_size = PyUnicode_GET_LENGTH(rest);
    return 0;
}

static void Texts_release(Texts *self) {
    TextEntry *table = self->table;
    size_t size = self->size;
    self->table = NULL;
    self->size = 0;
    self->count = 0;
    for (size_t i = 0; i < size; i++)
        if (table[i].used) Py_XDECREF(table[i].pair);
    PyMem_Free(table);
}

static PyObject *Texts_clear_all(Texts *self, PyObject *unused) {
    Texts_release(self);
    Py_RETURN_NONE;
}

static Py_ssize_t Texts_len(Texts *self) { return self->count; }

static int Texts_traverse(Texts *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    for (size_t i = 0; i < self->size; i++)
        if (self->table[i].used) Py_VISIT(self->table[i].pair);
    return 0;
}

static int Texts_clear(Texts *self) {
    Texts_release(self);
    return 0;
}

static void Texts_dealloc(Texts *self) {
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Texts_release(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef Texts_methods[] = {
    {"get", (PyCFunction)Texts_get, METH_O, "get(serial) -> (mid, rest) or None."},
    {"clear", (PyCFunction)Texts_clear_all, METH_NOARGS, "Forgets every serial."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Texts_slots[] = {
    {Py_tp_doc, "serial -> (mid, rest): the line maker's memo, read by render without a dict (see _logc.c)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, Texts_dealloc},
    {Py_tp_traverse, Texts_traverse},
    {Py_tp_clear, Texts_clear},
    {Py_tp_methods, Texts_methods},
    {Py_mp_ass_subscript, Texts_set},
    {Py_mp_length, Texts_len},
    {0, NULL},
};

static PyType_Spec Texts_spec = {
    .name = "resolverguard._logc.Texts",
    .basicsize = sizeof(Texts),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = Texts_slots,
};

/* The (mid, rest) texts of each slot. First every slot Python makes (`make(slot)`: a shape sent in full, or
   a serial `texts` does not have), held (new references) in `held`; then, with no Python code left to run
   (which could change `texts`), the serials' texts straight from its table, borrowed. Returns 1, 0 (a text
   Python must handle, or a serial `texts` lost meanwhile: no error set) or -1 (an error). */
static int slot_texts(PyObject *slots, Texts *texts, PyObject *make, PyObject **held, Text *mid, Text *rest,
                      Py_ssize_t *mid_max, Py_ssize_t *rest_max) {
    Py_ssize_t n = PyList_GET_SIZE(slots);
    *mid_max = *rest_max = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *slot = PyList_GET_ITEM(slots, i);
        int64_t key;
        int is_key = key_of(slot, &key);
        if (is_key < 0) return -1;
        if (is_key && Texts_find(texts, key) != NULL) continue;
        PyObject *pair = PyObject_CallOneArg(make, slot);
        if (pair == NULL) return -1;
        held[i] = pair;
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) return 0;
        PyObject *m = PyTuple_GET_ITEM(pair, 0), *r = PyTuple_GET_ITEM(pair, 1);
        if (!PyUnicode_CheckExact(m) || !PyUnicode_IS_ASCII(m) || !PyUnicode_CheckExact(r) || !PyUnicode_IS_ASCII(r))
            return 0;
        mid[i] = (Text){(const char *)PyUnicode_DATA(m), PyUnicode_GET_LENGTH(m)};
        rest[i] = (Text){(const char *)PyUnicode_DATA(r), PyUnicode_GET_LENGTH(r)};
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (held[i] == NULL) {
            int64_t key;
            if (key_of(PyList_GET_ITEM(slots, i), &key) <= 0) return 0;
            TextEntry *entry = Texts_find(texts, key);
            if (entry == NULL || !entry->ascii) return 0; /* (texts started over while Python made others) */
            mid[i] = (Text){entry->mid, entry->mid_size};
            rest[i] = (Text){entry->rest, entry->rest_size};
        }
        /* the characters the line loop copies, asked for now, all slots' in flight together: in a served
           writer they are out of cache, and a line waited on each in turn */
        for (Py_ssize_t at = 0; at < mid[i].size; at += 64) __builtin_prefetch(mid[i].text + at);
        __builtin_prefetch(rest[i].text);
        if (mid[i].size > *mid_max) *mid_max = mid[i].size;
        if (rest[i].size > *rest_max) *rest_max = rest[i].size;
    }
    return 1;
}

static PyObject *render(PyObject *self, PyObject *args) {
    PyObject *records, *slots_list, *clients, *texts, *make, *second, *buffer;
    if (!PyArg_ParseTuple(args, "SO!O!OOOO!:render", &records, &PyList_Type, &slots_list, &PyList_Type, &clients,
                          &texts, &make, &second, &PyByteArray_Type, &buffer))
        return NULL;
    PyObject *texts_type = PyObject_GetAttrString(self, "Texts"); /* (self: this module) */
    if (texts_type == NULL) return NULL;
    int is_texts = Py_IS_TYPE(texts, (PyTypeObject *)texts_type);
    Py_DECREF(texts_type);
    if (!is_texts) {
        PyErr_SetString(PyExc_TypeError, "render: texts must be a _logc.Texts");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(records), n = size / (Py_ssize_t)sizeof(Record);
    Py_ssize_t slots = PyList_GET_SIZE(slots_list);
    if (size % (Py_ssize_t)sizeof(Record)) {
        PyErr_SetString(PyExc_ValueError, "render: records are not whole");
        return NULL;
    }
    Text *mid = PyMem_Calloc(slots > 0 ? slots : 1, sizeof(Text));
    Text *rest = PyMem_Calloc(slots > 0 ? slots : 1, sizeof(Text));
    PyObject **held = PyMem_Calloc(slots > 0 ? slots : 1, sizeof(PyObject *));
    Text *client = NULL;
    Py_ssize_t mid_max, rest_max, client_max;
    PyObject *out = NULL, *head = NULL;
    int ok = -1;
    if (mid == NULL || rest == NULL || held == NULL)
        PyErr_NoMemory();
    else
        ok = slot_texts(slots_list, (Texts *)texts, make, held, mid, rest, &mid_max, &rest_max);
    if (ok == 1) ok = texts_of(clients, &client, &client_max);
    if (ok <= 0) goto done; /* -1: an error set; 0: a part that is not ASCII (Python's job) */
    const char *in = PyBytes_AS_STRING(records);
    /* {"time":" second . ms +00:00", client mid ,"latency_ms": latency rest */
    Py_ssize_t line_max = 9 + 64 + 1 + 3 + 8 + client_max + mid_max + 14 + 24 + rest_max;
    if (n > 0 && line_max > PY_SSIZE_T_MAX / n) {
        PyErr_NoMemory();
        goto done;
    }
    /* into the caller's buffer, grown here and kept: a new ~0.5 MB object per batch cost more in page
       faults (the allocator maps it fresh each time) than making its lines */
    if (PyByteArray_GET_SIZE(buffer) < n * line_max && PyByteArray_Resize(buffer, n * line_max) < 0) goto done;
    char *start = PyByteArray_AS_STRING(buffer), *p = start;
    long long current = -1;
    const char *head_text = NULL;
    Py_ssize_t head_size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Record r;
        memcpy(&r, in + i * sizeof(Record), sizeof(Record));
        if (r.slot >= (uint32_t)slots || r.client >= (uint32_t)PyList_GET_SIZE(clients)) {
            PyErr_SetString(PyExc_ValueError, "render: a record's slot or client is out of range");
            goto fail;
        }
        if (!(r.wall >= 0.0 && r.wall < MAX_WALL)) goto python; /* (NaN too) */
        double us_double = round_even(r.latency * 1e6);
        if (!(us_double >= 0.0 && us_double < MAX_US)) goto python;
        long long whole = (long long)r.wall;
        int ms = (int)((r.wall - (double)whole) * 1000.0);
        if (ms < 0 || ms > 999) goto python;
        if (whole != current) {
            PyObject *text = PyObject_CallFunction(second, "L", whole);
            if (text == NULL) goto fail;
            if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text) || PyUnicode_GET_LENGTH(text) > 64) {
                Py_DECREF(text);
                goto python;
            }
            Py_XSETREF(head, text);
            current = whole;
            head_text = (const char *)PyUnicode_DATA(head);
            head_size = PyUnicode_GET_LENGTH(head);
        }
        p = PUT(p, "{\"time\":\"");
        memcpy(p, head_text, head_size);
        p += head_size;
        *p++ = '.';
        *p++ = (char)('0' + ms / 100);
        *p++ = (char)('0' + ms / 10 % 10);
        *p++ = (char)('0' + ms % 10);
        p = PUT(p, "+00:00\",");
        memcpy(p, client[r.client].text, client[r.client].size);
        p += client[r.client].size;
        memcpy(p, mid[r.slot].text, mid[r.slot].size);
        p += mid[r.slot].size;
        p = PUT(p, ",\"latency_ms\":");
        unsigned long long us = (unsigned long long)us_double;
        p = put_uint(p, us / 1000);
        *p++ = '.';
        p = put_fraction(p, (int)(us % 1000));
        memcpy(p, rest[r.slot].text, rest[r.slot].size);
        p += rest[r.slot].size;
    }
    out = PyLong_FromSsize_t(p - start);
    goto done;
python:
    out = Py_NewRef(Py_None);
    goto done;
fail:
done:
    Py_XDECREF(head);
    if (held != NULL)
        for (Py_ssize_t i = 0; i < slots; i++) Py_XDECREF(held[i]);
    PyMem_Free(held);
    PyMem_Free(mid);
    PyMem_Free(rest);
    PyMem_Free(client);
    if (out == NULL && !PyErr_Occurred()) out = Py_NewRef(Py_None);
    return out;
}

/* shape_texts: a shape's (mid, rest) parts of the line (LineMaker.shape_texts), made here for a shape the
   writer meets the first time (every never-seen name's; ~4 us in Python, issue #17), the same bytes as
   line_of_record: a str from the wire through json's encode_basestring_ascii (escaped the same way, below),
   the score as repr(round(score, 6)), a note's value as json's encoder writes a str, an int, a float, a bool
   or None. Anything else (a part that is not ASCII, a value of another type) returns None: Python's job. */
typedef struct {
    char *data; /* `first`, or a PyMem block once the text outgrows it */
    Py_ssize_t size, capacity;
    char first[512];
} Out;

static void out_init(Out *o) {
    o->data = o->first;
    o->size = 0;
    o->capacity = (Py_ssize_t)sizeof(o->first);
}

static void out_free(Out *o) {
    if (o->data != o->first) PyMem_Free(o->data);
}

static int out_reserve(Out *o, Py_ssize_t more) {
    if (o->size + more <= o->capacity) return 0;
    Py_ssize_t capacity = o->capacity;
    while (capacity < o->size + more) capacity *= 2;
    char *grown = PyMem_Malloc(capacity);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(grown, o->data, o->size);
    out_free(o);
    o->data = grown;
    o->capacity = capacity;
    return 0;
}

static int out_put(Out *o, const char *text, Py_ssize_t size) {
    if (out_reserve(o, size) < 0) return -1;
    memcpy(o->data + o->size, text, size);
    o->size += size;
    return 0;
}

#define OUT_PUT(o, s) out_put((o), (s), (Py_ssize_t)sizeof(s) - 1)

/* 1: ASCII str written raw (an f-string's `{value}` of a str); 0: not an ASCII str; -1: an error. */
static int out_raw(Out *o, PyObject *s) {
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s)) return 0;
    return out_put(o, (const char *)PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s)) < 0 ? -1 : 1;
}

/* 1: an ASCII str as json.encoder.encode_basestring_ascii writes it (quoted); 0: not an ASCII str. */
static int out_string(Out *o, PyObject *s) {
    static const char hex[] = "0123456789abcdef";
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s)) return 0;
    const unsigned char *text = (const unsigned char *)PyUnicode_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n > (PY_SSIZE_T_MAX - 2) / 6 || out_reserve(o, 6 * n + 2) < 0) return -1;
    char *p = o->data + o->size;
    *p++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = text[i];
        if (c >= ' ' && c <= '~' && c != '\\' && c != '"') {
            *p++ = (char)c;
            continue;
        }
        *p++ = '\\';
        switch (c) {
            case '\\': *p++ = '\\'; break;
            case '"': *p++ = '"'; break;
            case '\b': *p++ = 'b'; break;
            case '\f': *p++ = 'f'; break;
            case '\n': *p++ = 'n'; break;
            case '\r': *p++ = 'r'; break;
            case '\t': *p++ = 't'; break;
            default:
                *p++ = 'u';
                *p++ = '0';
                *p++ = '0';
                *p++ = hex[c >> 4];
                *p++ = hex[c & 15];
        }
    }
    *p++ = '"';
    o->size = p - o->data;
    return 1;
}

/* `null` or out_string. */
static int out_string_or_null(Out *o, PyObject *s) {
    if (s == Py_None) return OUT_PUT(o, "null") < 0 ? -1 : 1;
    return out_string(o, s);
}

/* A repr() of an object (a float's or an int's), ASCII. */
static int out_repr(Out *o, PyObject *value) {
    PyObject *text = PyObject_Repr(value);
    if (text == NULL) return -1;
    int done = out_raw(o, text);
    Py_DECREF(text);
    return done;
}

/* repr(round(x, 6)) from the 6-decimal digits that round() itself rounds to (_Py_dg_dtoa, mode 3, as
   PyOS_double_to_string's 'f' makes them): the shortest repr of that double is those digits without their
   trailing zeros (two decimals of <= 6 places and |x| < 1e9 are more than an ulp apart), written as repr
   writes it: fixed, or with an exponent below 1e-4 ("1.5e-05"). 0: |x| >= 1e9 (Python's job). */
static int out_rounded(Out *o, double x) {
    if (!(fabs(x) < 1e9)) return 0;
    char *text = PyOS_double_to_string(x, 'f', 6, 0, NULL);
    if (text == NULL) return -1;
    char digits[48];
    const char *p = text;
    Py_ssize_t n = 0;
    if (*p == '-') digits[n++] = *p++;
    const char *point = strchr(p, '.');
    const char *fraction = point + 1;
    int keep = 6;
    while (keep > 0 && fraction[keep - 1] == '0') keep--;
    int zero = point - p == 1 && p[0] == '0';
    int first = 0; /* the fraction's first non-zero digit */
    while (first < keep && fraction[first] == '0') first++;
    if (zero && keep > 0 && first >= 4) { /* below 1e-4: d[.ddd]e-0N */
        digits[n++] = fraction[first];
        if (keep - first > 1) {
            digits[n++] = '.';
            memcpy(digits + n, fraction + first + 1, keep - first - 1);
            n += keep - first - 1;
        }
        memcpy(digits + n, first == 4 ? "e-05" : "e-06", 4);
        n += 4;
    } else {
        memcpy(digits + n, p, point - p + 1); /* the integer part and the point */
        n += point - p + 1;
        if (keep == 0) digits[n++] = '0';
        memcpy(digits + n, fraction, keep);
        n += keep;
    }
    PyMem_Free(text);
    return out_put(o, digits, n) < 0 ? -1 : 1;
}

/* The score: null (None, NaN, an infinity) or repr(round(score, 6)); 0 for a score that is not a float. */
static int out_score(Out *o, PyObject *score) {
    if (score == Py_None || (PyFloat_CheckExact(score) && !isfinite(PyFloat_AS_DOUBLE(score))))
        return OUT_PUT(o, "null") < 0 ? -1 : 1;
    if (!PyFloat_CheckExact(score)) return 0;
    return out_rounded(o, PyFloat_AS_DOUBLE(score));
}

/* A note's value as json's encoder writes it: a str, None, a bool, an int, a float (NaN and the infinities
   as the encoder spells them); 0 for another type (a dict, a list: Python's job). */
static int out_json(Out *o, PyObject *value) {
    if (PyUnicode_CheckExact(value)) return out_string(o, value);
    if (value == Py_None) return OUT_PUT(o, "null") < 0 ? -1 : 1;
    if (value == Py_True) return OUT_PUT(o, "true") < 0 ? -1 : 1;
    if (value == Py_False) return OUT_PUT(o, "false") < 0 ? -1 : 1;
    if (PyLong_CheckExact(value)) return out_repr(o, value);
    if (PyFloat_CheckExact(value)) {
        double x = PyFloat_AS_DOUBLE(value);
        if (isnan(x)) return OUT_PUT(o, "NaN") < 0 ? -1 : 1;
        if (isinf(x)) return (x > 0 ? OUT_PUT(o, "Infinity") : OUT_PUT(o, "-Infinity")) < 0 ? -1 : 1;
        return out_repr(o, value);
    }
    return 0;
}

#define TRY(call)                          \
    do {                                   \
        int done_ = (call);                \
        if (done_ <= 0) return done_;      \
    } while (0)

/* `,"transport":...,"upstream_rcode":...` (line_of_record's text between the client and the latency). */
static int shape_mid(Out *o, PyObject *shape) {
    PyObject *const *f = &PyTuple_GET_ITEM(shape, 0);
    TRY(OUT_PUT(o, ",\"transport\":\"") < 0 ? -1 : 1);
    TRY(out_raw(o, f[0]));
    TRY(OUT_PUT(o, "\",\"qname\":") < 0 ? -1 : 1);
    TRY(out_string(o, f[1]));
    TRY(OUT_PUT(o, ",\"qtype\":") < 0 ? -1 : 1);
    TRY(out_string(o, f[2]));
    TRY(OUT_PUT(o, ",\"scored\":") < 0 ? -1 : 1);
    TRY(out_string_or_null(o, f[3]));
    TRY(OUT_PUT(o, ",\"score\":") < 0 ? -1 : 1);
    TRY(out_score(o, f[4]));
    TRY(OUT_PUT(o, ",\"action\":\"") < 0 ? -1 : 1);
    TRY(out_raw(o, f[5]));
    TRY(OUT_PUT(o, "\",\"reason\":\"") < 0 ? -1 : 1);
    TRY(out_raw(o, f[6]));
    TRY(OUT_PUT(o, "\",\"upstream_rcode\":") < 0 ? -1 : 1);
    return out_string_or_null(o, f[7]);
}

/* Python's truth of an optional part (None, "" and {} leave it out): 1 true, 0 false, -1 not sure. */
static int present(PyObject *value) {
    if (value == Py_None) return 0;
    if (PyUnicode_CheckExact(value)) return PyUnicode_GET_LENGTH(value) > 0;
    if (PyDict_CheckExact(value)) return PyDict_GET_SIZE(value) > 0;
    return -1;
}

/* unscored .. notes, the extra fields (`tail`), the line's end (line_of_record's text after the latency). */
static int shape_rest(Out *o, PyObject *shape, PyObject *tail) {
    PyObject *const *f = &PyTuple_GET_ITEM(shape, 0);
    static const char *const keys[] = {",\"unscored\":\"", ",\"would\":\""};
    for (int k = 0; k < 2; k++) {
        int has = present(f[8 + k]);
        if (has < 0) return 0;
        if (has) {
            TRY(out_put(o, keys[k], (Py_ssize_t)strlen(keys[k])) < 0 ? -1 : 1);
            TRY(out_raw(o, f[8 + k]));
            TRY(OUT_PUT(o, "\"") < 0 ? -1 : 1);
        }
    }
    int has = present(f[10]);
    if (has < 0) return 0;
    if (has) {
        TRY(OUT_PUT(o, ",\"error\":") < 0 ? -1 : 1);
        TRY(out_string(o, f[10]));
    }
    has = present(f[11]);
    if (has < 0) return 0;
    if (has) {
        PyObject *key, *value;
        Py_ssize_t at = 0;
        while (PyDict_Next(f[11], &at, &key, &value)) {
            TRY(OUT_PUT(o, ",") < 0 ? -1 : 1);
            TRY(out_string(o, key));
            TRY(OUT_PUT(o, ":") < 0 ? -1 : 1);
            TRY(out_json(o, value));
        }
    }
    TRY(out_raw(o, tail));
    return OUT_PUT(o, "}\n") < 0 ? -1 : 1;
}

/* fresh(slots) -> the slots that are shapes (sent in full), in order: RecordWriter.write_packed's scan of a
   batch's ~700 slots, ~30-70 us a batch as a list comprehension (issue #17). */
static PyObject *fresh(PyObject *self, PyObject *slots) {
    if (!PyList_CheckExact(slots)) {
        PyErr_SetString(PyExc_TypeError, "fresh: slots must be a list");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(slots); i++) {
        PyObject *slot = PyList_GET_ITEM(slots, i);
        if (PyTuple_CheckExact(slot) && PyList_Append(out, slot) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *shape_texts(PyObject *self, PyObject *args) {
    PyObject *shape, *tail;
    if (!PyArg_ParseTuple(args, "O!U:shape_texts", &PyTuple_Type, &shape, &tail)) return NULL;
    if (PyTuple_GET_SIZE(shape) != SHAPE_FIELDS) Py_RETURN_NONE;
    Out mid, rest;
    out_init(&mid);
    out_init(&rest);
    PyObject *result = NULL;
    int done = shape_mid(&mid, shape);
    if (done > 0) done = shape_rest(&rest, shape, tail);
    if (done > 0) {
        PyObject *m = PyUnicode_DecodeASCII(mid.data, mid.size, NULL);
        PyObject *r = m == NULL ? NULL : PyUnicode_DecodeASCII(rest.data, rest.size, NULL);
        if (r != NULL) result = PyTuple_Pack(2, m, r);
        Py_XDECREF(m);
        Py_XDECREF(r);
    } else if (done == 0) {
        result = Py_NewRef(Py_None);
    }
    out_free(&mid);
    out_free(&rest);
    return result;
}

/* Packer: the event loop's pending queries, packed as they come (`add`: one C call a query, no
   tuple kept, nothing for the garbage collector to walk), taken as `pack`'s result at the hand-over.
   `full` is called once `limit` queries are pending (QueryLog.hand_over). */
typedef struct {
    PyObject_HEAD
    Record *records;
    Py_ssize_t count, capacity;
    Seen *table; /* shape -> slot (the shapes are held by `shapes`) */
    size_t table_size;
    PyObject *shapes, *clients, *client_index, *last_client, *full;
    uint32_t last_index;
    Py_ssize_t limit;
} Packer;

static int Packer_reset(Packer *self) {
    PyObject *shapes = PyList_New(0), *clients = PyList_New(0), *index = PyDict_New();
    if (shapes == NULL || clients == NULL || index == NULL) {
        Py_XDECREF(shapes);
        Py_XDECREF(clients);
        Py_XDECREF(index);
        return -1;
    }
    Py_XSETREF(self->shapes, shapes);
    Py_XSETREF(self->clients, clients);
    Py_XSETREF(self->client_index, index);
    Py_CLEAR(self->last_client);
    if (self->table != NULL) memset(self->table, 0, self->table_size * sizeof(Seen));
    self->count = 0;
    return 0;
}

static int Packer_init(Packer *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"limit", "full", NULL};
    Py_ssize_t limit;
    PyObject *full;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nO:Packer", names, &limit, &full)) return -1;
    self->limit = limit > 0 ? limit : 1;
    Py_XSETREF(self->full, Py_NewRef(full));
    return Packer_reset(self);
}

static int Packer_grow_table(Packer *self) {
    size_t size = self->table_size ? self->table_size * 2 : 1024;
    Seen *table = PyMem_Calloc(size, sizeof(Seen));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < self->table_size; i++) {
        if (self->table[i].key == NULL) continue;
        size_t at = pointer_hash(self->table[i].key) & (size - 1);
        while (table[at].key != NULL) at = (at + 1) & (size - 1);
        table[at] = self->table[i];
    }
    PyMem_Free(self->table);
    self->table = table;
    self->table_size = size;
    return 0;
}

static uint32_t Packer_client(Packer *self, PyObject *client, int *failed) {
    if (self->last_client != NULL &&
        (client == self->last_client || PyUnicode_Compare(client, self->last_client) == 0))
        return self->last_index;
    PyObject *found = PyDict_GetItemWithError(self->client_index, client);
    uint32_t index;
    if (found != NULL) {
        index = (uint32_t)PyLong_AsSize_t(found);
    } else {
        if (PyErr_Occurred()) goto fail;
        index = (uint32_t)PyList_GET_SIZE(self->clients);
        PyObject *number = PyLong_FromSize_t(index);
        if (number == NULL) goto fail;
        int bad = PyDict_SetItem(self->client_index, client, number) < 0 || PyList_Append(self->clients, client) < 0;
        Py_DECREF(number);
        if (bad) goto fail;
    }
    Py_XSETREF(self->last_client, Py_NewRef(client));
    self->last_index = index;
    return index;
fail:
    *failed = 1;
    return 0;
}

static PyObject *Packer_put(Packer *self, double wall, PyObject *client, double latency, PyObject *shape) {
    if (!PyUnicode_CheckExact(client) || !PyTuple_CheckExact(shape) || PyTuple_GET_SIZE(shape) != SHAPE_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "add: a client (str) and a shape (a 13-tuple)");
        return NULL;
    }
    Record record = {wall, latency, 0, 0};
    if ((size_t)(PyList_GET_SIZE(self->shapes) + 1) * 2 > self->table_size && Packer_grow_table(self) < 0) return NULL;
    size_t at = pointer_hash(shape) & (self->table_size - 1);
    while (self->table[at].key != NULL && self->table[at].key != shape) at = (at + 1) & (self->table_size - 1);
    if (self->table[at].key == NULL) {
        if (PyList_Append(self->shapes, shape) < 0) return NULL;
        self->table[at].key = shape;
        self->table[at].slot = (uint32_t)(PyList_GET_SIZE(self->shapes) - 1);
    }
    record.slot = self->table[at].slot;
    int failed = 0;
    record.client = Packer_client(self, client, &failed);
    if (failed) return NULL;
    if (self->count == self->capacity) {
        Py_ssize_t capacity = self->capacity ? self->capacity * 2 : 1024;
        Record *grown = PyMem_Realloc(self->records, capacity * sizeof(Record));
        if (grown == NULL) return PyErr_NoMemory();
        self->records = grown;
        self->capacity = capacity;
    }
    self->records[self->count++] = record;
    if (self->count >= self->limit && self->full != Py_None) {
        PyObject *done = PyObject_CallNoArgs(self->full);
        if (done == NULL) return NULL;
        Py_DECREF(done);
    }
    Py_RETURN_NONE;
}

static PyObject *Packer_add(Packer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "add(wall, client, latency, shape)");
        return NULL;
    }
    double wall = PyFloat_AsDouble(args[0]), latency = PyFloat_AsDouble(args[2]);
    if (PyErr_Occurred()) return NULL;
    return Packer_put(self, wall, args[1], latency, args[3]);
}

/* A clock read as Python's time module reads it (time.time: CLOCK_REALTIME, time.monotonic:
   CLOCK_MONOTONIC; nanoseconds to a double as _PyTime_AsSecondsDouble does), so that `add_since`
   keeps the values `add(time.time(), client, time.monotonic() - started, shape)` would. */
static int read_clock(clockid_t which, double *seconds) {
    struct timespec ts;
    if (clock_gettime(which, &ts) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    volatile double d;
    if (ns % 1000000000 == 0) {
        d = (double)(ns / 1000000000);
    } else {
        d = (double)ns;
        d /= 1e9;
    }
    *seconds = d;
    return 0;
}

/* add_since(client, started, shape): `add` with the wall clock now and the latency since `started` (a
   time.monotonic() value) read here: the repeat shortcut's call per cached answer without its two clock
   calls and their floats in Python (~70 of its ~150 ns, issue #17). */
static PyObject *Packer_add_since(Packer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "add_since(client, started, shape)");
        return NULL;
    }
    double started = PyFloat_AsDouble(args[1]), wall, now;
    if (started == -1.0 && PyErr_Occurred()) return NULL;
    if (read_clock(CLOCK_REALTIME, &wall) < 0 || read_clock(CLOCK_MONOTONIC, &now) < 0) return NULL;
    return Packer_put(self, wall, args[0], now - started, args[2]);
}

static PyObject *Packer_take(Packer *self, PyObject *known) {
    if (known != Py_None && !PySet_CheckExact(known)) {
        PyErr_SetString(PyExc_TypeError, "take: known must be a set or None");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(self->shapes);
    PyObject *slots = PyList_New(n), *records = NULL, *result = NULL;
    if (slots == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *slot = slot_of(PyList_GET_ITEM(self->shapes, i), known);
        if (slot == NULL) goto done;
        PyList_SET_ITEM(slots, i, slot);
    }
    records = PyBytes_FromStringAndSize((const char *)self->records, self->count * (Py_ssize_t)sizeof(Record));
    if (records == NULL) goto done;
    result = PyTuple_Pack(3, records, slots, self->clients);
    if (result != NULL && Packer_reset(self) < 0) Py_CLEAR(result);
done:
    Py_XDECREF(slots);
    Py_XDECREF(records);
    return result;
}

static PyObject *Packer_clear_all(Packer *self, PyObject *unused) {
    if (Packer_reset(self) < 0) return NULL;
    Py_RETURN_NONE;
}

static Py_ssize_t Packer_len(Packer *self) { return self->count; }

static int Packer_traverse(Packer *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->shapes);
    Py_VISIT(self->clients);
    Py_VISIT(self->client_index);
    Py_VISIT(self->last_client);
    Py_VISIT(self->full);
    return 0;
}

static int Packer_clear(Packer *self) {
    Py_CLEAR(self->shapes);
    Py_CLEAR(self->clients);
    Py_CLEAR(self->client_index);
    Py_CLEAR(self->last_client);
    Py_CLEAR(self->full); /* (QueryLog holds this object, which holds its hand_over) */
    return 0;
}

static void Packer_dealloc(Packer *self) {
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Packer_clear(self);
    PyMem_Free(self->records);
    PyMem_Free(self->table);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef Packer_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Packer_add, METH_FASTCALL,
     "add(wall, client, latency, shape): one query; calls full() when limit are pending."},
    {"add_since", (PyCFunction)(void (*)(void))Packer_add_since, METH_FASTCALL,
     "add_since(client, started, shape): add(time.time(), client, time.monotonic() - started, shape)."},
    {"take", (PyCFunction)Packer_take, METH_O,
     "take(known) -> (records, slots, clients), as pack returns them; nothing is pending after."},
    {"clear", (PyCFunction)Packer_clear_all, METH_NOARGS, "Drops what is pending."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Packer_slots[] = {
    {Py_tp_doc, "The event loop's pending queries, packed as they come (see _logc.c)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, Packer_init},
    {Py_tp_dealloc, Packer_dealloc},
    {Py_tp_traverse, Packer_traverse},
    {Py_tp_clear, Packer_clear},
    {Py_tp_methods, Packer_methods},
    {Py_sq_length, Packer_len},
    {0, NULL},
};

static PyType_Spec Packer_spec = {
    .name = "resolverguard._logc.Packer",
    .basicsize = sizeof(Packer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = Packer_slots,
};

static int add_type(PyObject *m, PyType_Spec *spec, const char *name) {
    PyObject *type = PyType_FromModuleAndSpec(m, spec, NULL);
    if (type == NULL) return -1;
    int rc = PyModule_AddObjectRef(m, name, type);
    Py_DECREF(type);
    return rc;
}

static int exec_module(PyObject *m) {
    return add_type(m, &Packer_spec, "Packer") < 0 || add_type(m, &Texts_spec, "Texts") < 0 ? -1 : 0;
}

static PyMethodDef methods[] = {
    {"pack", pack, METH_VARARGS,
     "pack(items, known) -> (records, slots, clients) or None: a batch of queries' entries as RECORD bytes."},
    {"fresh", fresh, METH_O, "fresh(slots) -> [the slots that are tuples], in order."},
    {"shape_texts", shape_texts, METH_VARARGS,
     "shape_texts(shape, tail) -> (mid, rest) as LineMaker.shape_texts makes them, or None (Python's job)."},
    {"render", render, METH_VARARGS,
     "render(records, slots, clients, texts, make, second, buffer) -> the length of the batch's JSON lines written"
     " at the start of buffer, or None."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "resolverguard._logc",
    .m_doc = "The query log's per-query work in C (see _logc.c).", .m_size = 0, .m_methods = methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__logc(void) { return PyModuleDef_Init(&module); }
