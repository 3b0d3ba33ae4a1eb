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

/* The (mid, rest) texts of each slot: from `texts` by serial (an int slot: a shape the writer has),
   else from `make(slot)`. Held (new references) in `held`, since `make` may change `texts`.
   Returns 1, 0 (a text Python must handle: no error set) or -1 (an error). */
static int slot_texts(PyObject *slots, PyObject *texts, PyObject *make, PyObject **held, Text *mid, Text *rest,
                      Py_ssize_t *mid_max, Py_ssize_t *rest_max) {
    Py_ssize_t n = PyList_GET_SIZE(slots);
    *mid_max = *rest_max = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *slot = PyList_GET_ITEM(slots, i), *pair = NULL;
        if (PyLong_CheckExact(slot)) {
            pair = PyDict_GetItemWithError(texts, slot);
            if (pair == NULL && PyErr_Occurred()) return -1;
            Py_XINCREF(pair);
        }
        if (pair == NULL) pair = PyObject_CallOneArg(make, slot);
        if (pair == NULL) return -1;
        held[i] = pair;
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) return 0;
        PyObject *m = PyTuple_GET_ITEM(pair, 0), *r = PyTuple_GET_ITEM(pair, 1);
        if (!PyUnicode_CheckExact(m) || !PyUnicode_IS_ASCII(m) || !PyUnicode_CheckExact(r) || !PyUnicode_IS_ASCII(r))
            return 0;
        mid[i] = (Text){(const char *)PyUnicode_DATA(m), PyUnicode_GET_LENGTH(m)};
        rest[i] = (Text){(const char *)PyUnicode_DATA(r), PyUnicode_GET_LENGTH(r)};
        if (mid[i].size > *mid_max) *mid_max = mid[i].size;
        if (rest[i].size > *rest_max) *rest_max = rest[i].size;
    }
    return 1;
}

static PyObject *render(PyObject *self, PyObject *args) {
    PyObject *records, *slots_list, *clients, *texts, *make, *second, *buffer;
    if (!PyArg_ParseTuple(args, "SO!O!O!OOO!:render", &records, &PyList_Type, &slots_list, &PyList_Type, &clients,
                          &PyDict_Type, &texts, &make, &second, &PyByteArray_Type, &buffer))
        return NULL;
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
        ok = slot_texts(slots_list, texts, make, held, mid, rest, &mid_max, &rest_max);
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

static PyObject *Packer_add(Packer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "add(wall, client, latency, shape)");
        return NULL;
    }
    PyObject *client = args[1], *shape = args[3];
    if (!PyUnicode_CheckExact(client) || !PyTuple_CheckExact(shape) || PyTuple_GET_SIZE(shape) != SHAPE_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "add: a client (str) and a shape (a 13-tuple)");
        return NULL;
    }
    Record record = {PyFloat_AsDouble(args[0]), PyFloat_AsDouble(args[2]), 0, 0};
    if (PyErr_Occurred()) return NULL;
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

static int exec_module(PyObject *m) {
    PyObject *type = PyType_FromModuleAndSpec(m, &Packer_spec, NULL);
    if (type == NULL) return -1;
    int rc = PyModule_AddObjectRef(m, "Packer", type);
    Py_DECREF(type);
    return rc;
}

static PyMethodDef methods[] = {
    {"pack", pack, METH_VARARGS,
     "pack(items, known) -> (records, slots, clients) or None: a batch of queries' entries as RECORD bytes."},
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
