"""The C library's stderr is line-buffered in `serve`, so a native log line leaves in one piece."""

from __future__ import annotations

import subprocess
import sys

import pytest
from dnsfixtures import ROOT

# A native logger writing one line in two pieces, with another writer's line arriving in between
# (with `workers: 2`, the other worker): LiteRT's INFO line is written exactly so.
CHILD = """
import ctypes, os, sys
from resolverguard.nativelog import line_buffer_native_stderr
if sys.argv[1] == "on":
    assert line_buffer_native_stderr()
libc = ctypes.CDLL(None)
err = ctypes.c_void_p.in_dll(libc, "stderr")
libc.fputs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
libc.fputs(b"INFO: native ", err)
os.write(2, b"resolverguard[1]: listening\\n")
libc.fputs(b"line\\n", err)
"""


def child_stderr(mode: str) -> str:
    run = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the C library's stderr symbol is glibc's")
def test_a_native_line_is_written_whole_once_stderr_is_line_buffered() -> None:
    assert child_stderr("on") == "resolverguard[1]: listening\nINFO: native line\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the C library's stderr symbol is glibc's")
def test_without_it_the_other_writers_line_lands_inside_the_native_one() -> None:
    """The failure the change prevents, shown on the same child: the test above can fail."""
    assert child_stderr("off") == "INFO: native resolverguard[1]: listening\nline\n"


@pytest.mark.parametrize(("module", "entry"), [("cli.py", "def cmd_serve"), ("workers.py", "def worker_main")])
def test_serve_and_each_worker_turn_it_on_before_the_model_loads(module: str, entry: str) -> None:
    """LiteRT writes its first line when the interpreter is made, and setvbuf only holds before that;
    workers are spawned (new processes), so each turns it on for itself."""
    source = (ROOT / "resolverguard" / module).read_text()
    body = source[source.index(entry) :]
    assert body.index("line_buffer_native_stderr()") < body.index("load_model(")
