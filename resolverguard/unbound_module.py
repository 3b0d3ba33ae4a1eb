"""resolverguard inside Unbound: the file Unbound loads (`python-script:`); the module itself is
`unbound_client.py` beside it (its docstring says what it does and why).

Why two files: Unbound runs this file again, from its source, on every `unbound-control reload` and
SIGHUP, which compiled the whole module each time (~2.3 ms on an idle machine, more under load, while
Unbound answers nothing). This file only loads `unbound_client.py` through the import system, which
reads its cached bytecode (`__pycache__`, written at install) instead, and hands Unbound the functions
it calls by name. Standard library only, as the module is (a test holds both to it).
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import SourceFileLoader

TYPE_CHECKING = False  # no typing at run time (imported again on every reload)
if TYPE_CHECKING:
    from typing import Any


def _load_client() -> Any:
    """unbound_client.py from beside this file, as a module of its own (Unbound runs this file as
    `__main__` with no package around it)."""
    name = "resolverguard_unbound_client"
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unbound_client.py")
    loader = SourceFileLoader(name, path)
    code = type(sys)(name)
    code.__file__, code.__loader__ = path, loader
    sys.modules[name] = code  # (a class defined while the file runs may look its module up)
    loader.exec_module(code)
    return code


_client_code = _load_client()
init_standard = _client_code.init_standard
deinit = _client_code.deinit
inform_super = _client_code.inform_super
operate = _client_code.operate
