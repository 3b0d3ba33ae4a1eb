"""The module's first stage per name, hot and cold, in process (issue #17, mod6).

    python bench/gate_cold.py [--names 3000]

`Gate.judge` on never-seen names (compare.py's misses) as bench/module_micro.py times it (back to
back: hot caches), then one name at a time after 32 MB were written (the CPU caches emptied, as
other processes on a shared machine leave them) and after a 0.3 ms sleep (a name every 0.3 ms:
the module's rate at 20% load); then the featurizer's parts, hot. Why: in Unbound the gate took
~40 us per name (bench/module_stages.py's parts) where module_micro measured ~6 us. Since gate6 the
same run times the gate with the C featurizer (`_ngramc`, where built) and with the pure-Python one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compare import load_average
from module_micro import names, service_in

from resolverguard.unbound_gate import read_snapshot


def best_us(fn: Callable[[Any], Any], items: list[Any], passes: int = 5) -> float:
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return round(best / len(items) * 1e6, 2)


def one_by_one_us(fn: Callable[[Any], Any], items: list[Any], between: Callable[[], None]) -> tuple[float, float]:
    """p50 and p90 of `fn` on each item, `between` run before each (not timed)."""
    times = []
    for item in items:
        between()
        start = time.perf_counter_ns()
        fn(item)
        times.append((time.perf_counter_ns() - start) / 1e3)
    times.sort()
    return round(times[len(times) // 2], 1), round(times[len(times) * 9 // 10], 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--names", type=int, default=3000)
    p.add_argument("--python-only", action="store_true", help="only the pure-Python featurizer (as before gate6)")
    a = p.parse_args()
    service = service_in(Path(tempfile.mkdtemp(prefix="rg-gate-cold-")))
    asked = names(a.names, "c")
    load = load_average()
    print(f"gate_cold: {len(asked)} never-seen names, load {load}")
    for native in (True, False) if not a.python_only else (False,):  # the same run: C (where built), then Python
        gate, why = read_snapshot(service.snapshot, native=native)
        assert gate is not None, why
        print(f"-- {why}")
        time_gate(gate, asked)
    print(f"load after: {load_average()}")


def time_gate(gate: Any, asked: list[str]) -> None:
    f = gate.featurizer
    lowered = [n.lower().rstrip(".") for n in asked]
    texts = [r if gate.form == "registrable" else r.partition(".")[0] for r in map(gate._registrable, lowered) if r]
    raws = [t.encode("ascii", "replace")[: f.maxlen].translate(f._table) for t in texts]
    junk = bytearray(32 << 20)

    def flush_caches() -> None:
        junk[::64] = bytes(len(junk) // 64)

    third = len(asked) // 3
    print(f"judge hot (back to back, best of 5): {best_us(gate.judge, asked)} us")
    print(f"judge after 32 MB written, p50/p90: {one_by_one_us(gate.judge, asked[:third], flush_caches)} us")
    slept = one_by_one_us(gate.judge, asked[third : 2 * third], lambda: time.sleep(0.0003))
    print(f"judge after a 0.3 ms sleep, p50/p90: {slept} us")
    print(
        f"parts hot: _registrable {best_us(gate._registrable, lowered)}, logit {best_us(f.logit, texts)} "
        f"(pure Python: _hashed {best_us(f._hashed, raws)}, _dense_sum {best_us(f._dense_sum, raws)}) us"
    )


if __name__ == "__main__":
    main()
