"""`resolverguard unbound-service` with timestamps per stage, for bench/module_stages.py (issue #17, mod6).

    python bench/traced_service.py TRACE-FILE unbound-service --config ... --socket ...

Wraps, without changing them, the service's stages of an asked line: read (`ModuleConnection.
data_received`, each numbered line), the model's batch (`MicroBatcher.flush`: start, end, size) and
the answer written (`ModuleConnection._flush`: the numbers in that write). CLOCK_MONOTONIC nanoseconds,
as bench/traced_module.py records in Unbound, so the two line up; written to TRACE-FILE at exit.
"""

from __future__ import annotations

import atexit
import sys
import time
from pathlib import Path
from typing import Any

from resolverguard import unboundservice
from resolverguard.batching import MicroBatcher
from resolverguard.cli import main

now = time.monotonic_ns
events: list[str] = []


def _received(original: Any) -> Any:
    def data_received(self: Any, data: bytes) -> None:
        t = now()
        for line in data.split(b"\n"):
            fields = line.split(b"\t")
            if len(fields) == 5:
                events.append(f"recv\t{int(fields[4])}\t{t}")
        original(self, data)
        events.append(f"handled\t{t}\t{now()}")

    return data_received


def _flushed(original: Any) -> Any:
    def flush(self: Any) -> None:
        size, start = len(self._texts), now()
        original(self)
        if size:
            events.append(f"batch\t{size}\t{start}\t{now()}")

    return flush


def _written(original: Any) -> Any:
    def flush(self: Any) -> None:
        numbers = [chunk.split(b"\t", 1)[0].decode() for chunk in self._out]
        original(self)
        events.append(f"write\t{','.join(numbers)}\t{now()}")

    return flush


unboundservice.ModuleConnection.data_received = _received(unboundservice.ModuleConnection.data_received)  # type: ignore[method-assign]
unboundservice.ModuleConnection._flush = _written(unboundservice.ModuleConnection._flush)  # type: ignore[method-assign]
MicroBatcher.flush = _flushed(MicroBatcher.flush)  # type: ignore[method-assign]


def _dump(path: Path) -> None:
    with path.open("a") as out:
        out.write("".join(line + "\n" for line in events))


if __name__ == "__main__":
    atexit.register(_dump, Path(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
