"""A do-nothing Unbound Python module: the ceiling of any module (bench/compare.py --module, row (n)).

It runs exactly what every Python module pays for (Unbound calling `operate` for the new query and
again when the iterator is done) and decides nothing, so (n)/(b) is the most any Python module,
resolverguard's included, can reach on names Unbound has not cached.
"""

from typing import Any

from unboundmodule import (
    MODULE_ERROR,
    MODULE_EVENT_MODDONE,
    MODULE_EVENT_NEW,
    MODULE_EVENT_PASS,
    MODULE_FINISHED,
    MODULE_WAIT_MODULE,
)


def init_standard(id: int, env: Any) -> bool:  # noqa: A002 - Unbound's signature
    return True


def deinit(id: int) -> bool:  # noqa: A002
    return True


def inform_super(id: int, qstate: Any, superqstate: Any, qdata: Any) -> bool:  # noqa: A002
    return True


def operate(id: int, event: int, qstate: Any, qdata: Any) -> bool:  # noqa: A002
    if event == MODULE_EVENT_MODDONE:
        qstate.ext_state[id] = MODULE_FINISHED
    elif event in (MODULE_EVENT_NEW, MODULE_EVENT_PASS):
        qstate.ext_state[id] = MODULE_WAIT_MODULE
    else:
        qstate.ext_state[id] = MODULE_ERROR
    return True
