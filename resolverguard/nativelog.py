"""Native libraries' log lines, kept whole when several processes share one stderr.

LiteRT logs `INFO: Created TensorFlow Lite XNNPACK delegate for CPU.` through the C library's
stderr, which is unbuffered: three `write`s, the prefix, the text and the newline. With
`workers: 2` every worker shares the parent's stderr (a pipe to journald, Docker or a test), and
a worker's own line written between those pieces splits a line in two: journald then shows a
garbled `INFO: ...resolverguard[1]: listening on ...` and a blank line (CI saw exactly that).
Python's own `print` does not go through the C library's FILE, so only native loggers change.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_IOLBF = 1  # glibc, musl and the BSDs agree on the value
_BUFFER = 4096  # a log line longer than this leaves in pieces of this size


def line_buffer_native_stderr() -> bool:
    """Makes the C library's `stderr` line-buffered, so each native line leaves in one `write`.

    Must run before any native library writes to it (setvbuf's own rule): call it first thing in a
    command that loads the model. False where the C library's `stderr` is not reachable by that
    name (macOS calls it `__stderrp`): the lines may split there, nothing else changes."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        stream = ctypes.c_void_p.in_dll(libc, "stderr")
        malloc, setvbuf = libc.malloc, libc.setvbuf
    except (OSError, ValueError, AttributeError):
        return False
    malloc.argtypes, malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    setvbuf.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    setvbuf.restype = ctypes.c_int
    # glibc ignores _IOLBF on its unbuffered stderr unless given a buffer; the stream keeps it for the
    # life of the process, so it comes from malloc and is never freed (4 KB, once).
    buffer = malloc(_BUFFER)
    return bool(buffer) and setvbuf(stream, buffer, _IOLBF, _BUFFER) == 0
