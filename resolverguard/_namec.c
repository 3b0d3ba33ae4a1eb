/* `resolverguard.names.RegistrableName` as a type the garbage collector does not track.

Why (issue #17, the added p99 at 20% load): the name memo (`NameParser.parse`, a `BoundedMemo` of
16,384 names) keeps one RegistrableName per never-seen name. As a frozen dataclass each was a
tracked object that survived young collections, so every middle-generation collection walked a few
thousand of them: 3-5 per 4 s at ~1,500 never-seen names/s, 0.5-1.9 ms each with the event loop
held (bench/results/p99_p99s11.md: at exit 1,141 of the 1,141 objects in the middle generation and
14,787 of 14,802 in the old one were RegistrableNames). Plain tuples in the memo would be untracked
by the collector, but building the dataclass from one per lookup cost ~2 us on every query
(bench/results/miss_std6.md). This type has the dataclass's fields, equality, hash, repr and
`model_input`, at the same cost, and no Py_TPFLAGS_HAVE_GC: it is never in a generation, so it
costs no collection anything, neither its allocation (the young count) nor its walk.

That is only sound for an object that cannot be part of a reference cycle: its four fields are
checked to be `str` (the enum `Unscored` is a `str`) or None, which hold no reference back to it.

No module state and no static type: nothing outlives an import (as in _ngramc.c).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *qname;       /* str: lowercased, no trailing dot */
    PyObject *registrable; /* str or None */
    PyObject *label;       /* str or None */
    PyObject *unscored;    /* Unscored (a str) or None */
} Name;

static int text_or_none(PyObject *value, const char *field, int none_ok) {
    if ((none_ok && value == Py_None) || PyUnicode_Check(value)) return 0;
    PyErr_Format(PyExc_TypeError, "RegistrableName: %s must be str%s, not %.100s", field, none_ok ? " or None" : "",
                 Py_TYPE(value)->tp_name);
    return -1;
}

static PyObject *Name_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"qname", "registrable", "label", "unscored", NULL};
    PyObject *qname, *registrable, *label, *unscored = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|O:RegistrableName", kwlist, &qname, &registrable, &label,
                                     &unscored))
        return NULL;
    if (text_or_none(qname, "qname", 0) < 0 || text_or_none(registrable, "registrable", 1) < 0 ||
        text_or_none(label, "label", 1) < 0 || text_or_none(unscored, "unscored", 1) < 0)
        return NULL;
    Name *self = (Name *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->qname = Py_NewRef(qname);
    self->registrable = Py_NewRef(registrable);
    self->label = Py_NewRef(label);
    self->unscored = Py_NewRef(unscored);
    return (PyObject *)self;
}

static void Name_dealloc(Name *self) {
    PyTypeObject *type = Py_TYPE(self);
    Py_XDECREF(self->qname);
    Py_XDECREF(self->registrable);
    Py_XDECREF(self->label);
    Py_XDECREF(self->unscored);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyObject *Name_fields(Name *self) {
    return PyTuple_Pack(4, self->qname, self->registrable, self->label, self->unscored);
}

static PyObject *Name_richcompare(PyObject *a, PyObject *b, int op) {
    /* the dataclass's: equal when of the same class and the fields are equal, in order */
    if (Py_TYPE(a) != Py_TYPE(b) || (op != Py_EQ && op != Py_NE)) Py_RETURN_NOTIMPLEMENTED;
    PyObject *x = Name_fields((Name *)a), *y = x == NULL ? NULL : Name_fields((Name *)b), *out = NULL;
    if (y != NULL) out = PyObject_RichCompare(x, y, op);
    Py_XDECREF(x);
    Py_XDECREF(y);
    return out;
}

static Py_hash_t Name_hash(Name *self) {
    /* the dataclass's: hash((qname, registrable, label, unscored)) */
    PyObject *fields = Name_fields(self);
    if (fields == NULL) return -1;
    Py_hash_t h = PyObject_Hash(fields);
    Py_DECREF(fields);
    return h;
}

static PyObject *Name_repr(Name *self) {
    return PyUnicode_FromFormat("RegistrableName(qname=%R, registrable=%R, label=%R, unscored=%R)", self->qname,
                                self->registrable, self->label, self->unscored);
}

static PyObject *Name_model_input(Name *self, PyObject *form) {
    /* names.InputForm is a str enum: LABEL == "label" */
    if (self->label == Py_None) Py_RETURN_NONE;
    int label = PyUnicode_Check(form) ? PyUnicode_CompareWithASCIIString(form, "label") == 0 : 0;
    return Py_NewRef(label ? self->label : self->registrable);
}

static PyObject *Name_reduce(Name *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *fields = Name_fields(self);
    return fields == NULL ? NULL : Py_BuildValue("(ON)", (PyObject *)Py_TYPE(self), fields);
}

static PyMemberDef Name_members[] = {
    {"qname", T_OBJECT, offsetof(Name, qname), READONLY, "lowercased, no trailing dot"},
    {"registrable", T_OBJECT, offsetof(Name, registrable), READONLY, "eTLD+1 (or label + private suffix), None when not scored"},
    {"label", T_OBJECT, offsetof(Name, label), READONLY, "the string the model scores"},
    {"unscored", T_OBJECT, offsetof(Name, unscored), READONLY, "why the name is not scored, or None"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef Name_methods[] = {
    {"model_input", (PyCFunction)Name_model_input, METH_O,
     "model_input(form) -> the string the model scores for this name, or None when it is not scored."},
    {"__reduce__", (PyCFunction)Name_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Name_slots[] = {
    {Py_tp_doc, "What the name step learned about one query name (names.RegistrableName; untracked by the collector)."},
    {Py_tp_new, Name_new},
    {Py_tp_dealloc, Name_dealloc},
    {Py_tp_richcompare, Name_richcompare},
    {Py_tp_hash, Name_hash},
    {Py_tp_repr, Name_repr},
    {Py_tp_members, Name_members},
    {Py_tp_methods, Name_methods},
    {0, NULL},
};

static PyType_Spec Name_spec = {
    .name = "resolverguard._namec.RegistrableName",
    .basicsize = sizeof(Name),
    .flags = Py_TPFLAGS_DEFAULT, /* no Py_TPFLAGS_HAVE_GC: see the top of this file */
    .slots = Name_slots,
};

static int exec_module(PyObject *m) {
    PyObject *type = PyType_FromModuleAndSpec(m, &Name_spec, NULL);
    if (type == NULL) return -1;
    int rc = PyModule_AddObjectRef(m, "RegistrableName", type);
    Py_DECREF(type);
    return rc;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "resolverguard._namec",
    .m_doc = "names.RegistrableName as a type the garbage collector does not track (see _namec.c).", .m_size = 0,
    .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__namec(void) { return PyModuleDef_Init(&module); }
