/* The linear stage's logit of one encoded name, in C: `resolverguard.ngrams.native_linear`.

Why (#13): a random-looking name alone (a lone miss on a quiet resolver) reaches both stages, and the
pure-Python featurizer (`resolverguard.unbound_gate.Featurizer`, ~10 us) cost as much as the CNN call
itself (~7 us): batch 1 was 21-24 us per name against the 20 us target. Here the same arithmetic costs
well under a microsecond.

The float is the pure-Python featurizer's, bit for bit (tests/test_native_linear.py compares them with
`==`): orders 1-3 are one lookup per character in the float64 table of their sums by trigram code
(`low_table`), orders 4 and 5 and the suffix token are hashed exactly as `NgramHasher` hashes them
(uint64 arithmetic wraps as its numpy does), the shape n-grams (when the stage has them) are one
lookup per position in the float64 table of their sums by window (`ngrams.shape_table`), and every
weight is a float16 value (a multiple of 2**-24 under 2**16) whose float64 sum is exact in any order. The dense features are computed in the order the
Python code computes them: the entropy summed by ascending code, the five features rounded to float32
(as `struct.pack("f")` rounds), their products summed left to right; `-ffp-contract=off` (setup.py)
keeps the compiler from fusing a multiply and an add into one rounding. Names of `maxlen` characters or
more (no padding column) and bytes outside the 64 codes go to the Python fallback the object holds.

Also the Unbound module's first stage (`unbound_gate.Featurizer`, gate6), inside Unbound, which
finalises and re-initialises Python in the same process on every `unbound-control reload`: so no static
type and no state outside the module (multi-phase init, a heap type made by each import), and the
tables are copied from any buffer (the snapshot's memoryviews; numpy would not survive the reload).
The type takes part in GC: the featurizer holds this object, whose fallback is the featurizer's method.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MULT 0x9E3779B97F4A7C15ULL
#define ORDER_SALT 0x632BE59BD9B4E019ULL
#define SUFFIX_SALT 0x2545F4914F6CDD1DULL
#define LOW_SIZE (64 * 64 * 64)

typedef struct {
    PyObject_HEAD
    double *low;      /* 64**3: orders 1-3 summed by trigram code (entry 0 unused: never looked up) */
    float *weights;   /* 2**bits hashed weights */
    double *terms;    /* (maxlen + 1) rows of maxlen + 1: p * log2(p) of n of a label of length L */
    unsigned char classes[256]; /* code -> 'v' vowel, 'l' other letter, 'd' digit, 'h' hyphen, else other */
    double *shape_table;        /* 8**shape_width: the shape n-grams summed by the window of classes (or NULL) */
    unsigned char shape_classes[256]; /* code -> shape class (ngrams.SHAPE_CLASSES) */
    int shape_width;
    double dense[5];
    double bias;
    int maxlen, bits, end, dot;
    PyObject *fallback; /* called with the raw bytes when this code cannot take the name */
} Linear;

static void *copy_buffer(PyObject *obj, Py_ssize_t size, const char *what) {
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) return NULL;
    if (view.len != size) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", what, view.len, size);
        PyBuffer_Release(&view);
        return NULL;
    }
    void *out = PyMem_Malloc(size > 0 ? size : 1);
    if (out == NULL) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(out, view.buf, size);
    PyBuffer_Release(&view);
    return out;
}

static int Linear_init(Linear *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"low", "weights", "terms", "classes", "dense", "bias", "maxlen", "bits", "end", "dot",
                             "fallback", "shape_table", "shape_classes", "shape_width", NULL};
    PyObject *low, *weights, *terms, *classes, *fallback, *shape_table = NULL, *shape_classes = NULL;
    double d0, d1, d2, d3, d4, bias;
    int maxlen, bits, end, dot, shape_width = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO(ddddd)diiiiO|OOi", kwlist, &low, &weights, &terms, &classes,
                                     &d0, &d1, &d2, &d3, &d4, &bias, &maxlen, &bits, &end, &dot, &fallback,
                                     &shape_table, &shape_classes, &shape_width))
        return -1;
    if (maxlen < 1 || maxlen > 253 || bits < 1 || bits > 32 || end < 0 || end > 63 || dot < -1 || dot > 63 ||
        shape_width < 0 || shape_width > 6 || (shape_width > 0 && (shape_table == NULL || shape_classes == NULL))) {
        PyErr_SetString(PyExc_ValueError, "maxlen, bits, end, dot or the shape arguments out of range");
        return -1;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return -1;
    }
    Py_ssize_t rows = (Py_ssize_t)(maxlen + 1) * (maxlen + 1);
    double *l = copy_buffer(low, LOW_SIZE * (Py_ssize_t)sizeof(double), "low");
    float *w = l ? copy_buffer(weights, ((Py_ssize_t)1 << bits) * (Py_ssize_t)sizeof(float), "weights") : NULL;
    double *t = w ? copy_buffer(terms, rows * (Py_ssize_t)sizeof(double), "terms") : NULL;
    unsigned char *c = t ? copy_buffer(classes, 256, "classes") : NULL;
    Py_ssize_t shape_size = (Py_ssize_t)1 << (3 * shape_width);
    double *st = c && shape_width ? copy_buffer(shape_table, shape_size * (Py_ssize_t)sizeof(double), "shape_table")
                                  : NULL;
    unsigned char *sc = st ? copy_buffer(shape_classes, 256, "shape_classes") : NULL;
    if (c == NULL || (shape_width && sc == NULL)) {
        PyMem_Free(l);
        PyMem_Free(w);
        PyMem_Free(t);
        PyMem_Free(c);
        PyMem_Free(st);
        return -1;
    }
    PyMem_Free(self->shape_table);
    self->shape_table = st;
    self->shape_width = shape_width;
    if (sc) {
        memcpy(self->shape_classes, sc, 256);
        PyMem_Free(sc);
    }
    PyMem_Free(self->low);
    PyMem_Free(self->weights);
    PyMem_Free(self->terms);
    self->low = l;
    self->weights = w;
    self->terms = t;
    memcpy(self->classes, c, 256);
    PyMem_Free(c);
    self->dense[0] = d0;
    self->dense[1] = d1;
    self->dense[2] = d2;
    self->dense[3] = d3;
    self->dense[4] = d4;
    self->bias = bias;
    self->maxlen = maxlen;
    self->bits = bits;
    self->end = end;
    self->dot = dot;
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    return 0;
}

static inline uint64_t bucket(uint64_t code, int shift) { return (code * MULT) >> shift; }

/* orders 1-5 and the suffix token of a padded name of n < maxlen codes, each < 64 */
static double hashed(const Linear *self, const unsigned char *raw, Py_ssize_t n) {
    unsigned char g[256 + 3]; /* two padding columns, the name, the end mark */
    int shift = 64 - self->bits;
    g[0] = g[1] = 0;
    memcpy(g + 2, raw, (size_t)n);
    g[n + 2] = (unsigned char)self->end;
    double total = 0.0;
    for (Py_ssize_t i = 0; i <= n; i++) /* every character (and the end mark) ends a unigram, bigram, trigram */
        total += self->low[((unsigned)g[i] << 12) | ((unsigned)g[i + 1] << 6) | g[i + 2]];
    for (Py_ssize_t j = 1; j + 3 <= n + 2; j++) { /* 4-grams from one padding column on (the start mark) */
        uint64_t c4 = ((uint64_t)g[j] << 18) | ((uint64_t)g[j + 1] << 12) | ((uint64_t)g[j + 2] << 6) | g[j + 3];
        total += self->weights[bucket(c4 + 4 * ORDER_SALT, shift)];
        if (j + 4 <= n + 2) total += self->weights[bucket((c4 << 6 | g[j + 4]) + 5 * ORDER_SALT, shift)];
    }
    /* the suffix: everything from the first dot, of which the last 11 codes survive modulo 2**64 */
    uint64_t code = 0;
    Py_ssize_t first = -1;
    for (Py_ssize_t i = 0; i < n && self->dot >= 0; i++)
        if (raw[i] == self->dot) {
            first = i;
            break;
        }
    if (first >= 0)
        for (Py_ssize_t i = (first > n - 11 ? first : n - 11); i < n; i++) code = (code << 6) | raw[i];
    total += self->weights[bucket(code + SUFFIX_SALT, shift)];
    if (self->shape_width) { /* shape n-grams: one lookup per position, by the window of classes ending there */
        uint64_t mask = ((uint64_t)1 << (3 * self->shape_width)) - 1, window = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            window = ((window << 3) | self->shape_classes[raw[i]]) & mask;
            total += self->shape_table[window];
        }
        window = ((window << 3) | 7) & mask; /* the end mark (ngrams.SHAPE_END) */
        total += self->shape_table[window];
    }
    return total;
}

/* length, entropy, digit, vowel and hyphen shares of the label (before the first dot) times their weights */
static double dense(const Linear *self, const unsigned char *raw, Py_ssize_t n) {
    Py_ssize_t length = n;
    for (Py_ssize_t i = 0; i < n && self->dot >= 0; i++)
        if (raw[i] == self->dot) {
            length = i;
            break;
        }
    int counts[64] = {0};
    Py_ssize_t vowels = 0, others = 0, digits = 0, hyphens = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        counts[raw[i]]++;
        switch (self->classes[raw[i]]) {
        case 'v': vowels++; break;
        case 'l': others++; break;
        case 'd': digits++; break;
        case 'h': hyphens++; break;
        default: break;
        }
    }
    const double *terms = self->terms + length * (self->maxlen + 1);
    double entropy = 0.0;
    for (int c = 0; c < 64; c++) /* by ascending code, as the Python loop over sorted(set(label)) */
        if (counts[c]) entropy -= terms[counts[c]];
    double safe = (double)(length > 0 ? length : 1);
    Py_ssize_t letters = vowels + others;
    volatile float f[5]; /* stored as float: rounded once to float32, as struct.pack("f") does */
    f[0] = (float)((double)length / 32.0);
    f[1] = (float)(entropy / 5.0);
    f[2] = (float)((double)digits / safe);
    f[3] = (float)((double)vowels / (double)(letters > 0 ? letters : 1));
    f[4] = (float)((double)hyphens / safe);
    const double *d = self->dense;
    double out = (double)f[0] * d[0];
    out = out + (double)f[1] * d[1];
    out = out + (double)f[2] * d[2];
    out = out + (double)f[3] * d[3];
    out = out + (double)f[4] * d[4];
    return out;
}

static PyObject *Linear_logit(Linear *self, PyObject *raw) {
    if (!PyBytes_Check(raw)) {
        PyErr_SetString(PyExc_TypeError, "logit() takes the encoded name as bytes");
        return NULL;
    }
    if (self->low == NULL || self->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Linear was not initialised");
        return NULL;
    }
    const unsigned char *r = (const unsigned char *)PyBytes_AS_STRING(raw);
    Py_ssize_t n = PyBytes_GET_SIZE(raw);
    int ok = n < self->maxlen;
    for (Py_ssize_t i = 0; ok && i < n; i++) ok = r[i] < 64;
    if (!ok) return PyObject_CallOneArg(self->fallback, raw);
    double h = hashed(self, r, n);
    double d = dense(self, r, n);
    return PyFloat_FromDouble((h + d) + self->bias);
}

static int Linear_traverse(Linear *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self)); /* a heap type: its instances hold it */
    Py_VISIT(self->fallback);
    return 0;
}

static int Linear_clear(Linear *self) {
    Py_CLEAR(self->fallback); /* (the Unbound module's featurizer holds this object, which holds its method) */
    return 0;
}

static void Linear_dealloc(Linear *self) {
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Linear_clear(self);
    PyMem_Free(self->low);
    PyMem_Free(self->weights);
    PyMem_Free(self->terms);
    PyMem_Free(self->shape_table);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef Linear_methods[] = {
    {"logit", (PyCFunction)Linear_logit, METH_O, "The logit of one encoded name (NameEncoder.raw)."},
    {NULL, NULL, 0, NULL},
};

/* A heap type made by each import (multi-phase init, PEP 489), no static type and no module state:
   Unbound finalises and re-initialises Python in the same process on every `unbound-control reload`,
   and a static type readied in the first interpreter would keep that interpreter's objects. */
static PyType_Slot Linear_slots[] = {
    {Py_tp_doc, "The linear stage's tables, and its logit of one encoded name."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, Linear_init},
    {Py_tp_dealloc, Linear_dealloc},
    {Py_tp_traverse, Linear_traverse},
    {Py_tp_clear, Linear_clear},
    {Py_tp_methods, Linear_methods},
    {0, NULL},
};

static PyType_Spec Linear_spec = {
    .name = "resolverguard._ngramc.Linear",
    .basicsize = sizeof(Linear),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = Linear_slots,
};

static int exec_module(PyObject *m) {
    PyObject *type = PyType_FromModuleAndSpec(m, &Linear_spec, NULL);
    if (type == NULL) return -1;
    int rc = PyModule_AddObjectRef(m, "Linear", type);
    Py_DECREF(type);
    return rc;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "resolverguard._ngramc",
    .m_doc = "The linear stage of one name in C (see _ngramc.c).", .m_size = 0, .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__ngramc(void) { return PyModuleDef_Init(&module); }
