"""Answers lost under reloads, plain Unbound against Unbound with the module, by how fast the upstream
answers (issue #17, mod5).

    python bench/reload_losses.py [--qps 300] [--reloads 30] [--delays nsd,0.005] [--tag mod5]

Unbound 1.17 frees the queries it is resolving when a reload hits, unanswered, before it unloads the
module (docs/unbound.md, "What a reload loses"), so a reload loses about rate x mean time in flight.
With the module a never-seen name is in flight until both the upstream's answer and the service's
verdict are in: when the upstream answers first (NSD on loopback, ~0.1 ms) the module's queries stay
in flight longer and more are lost; with an upstream that answers later than the verdict, as any
upstream across a network does, they should not. This runs both with NSD (as `bench/compare.py`
does) and with the tests' stub upstream answering `--delays` seconds late, 2 threads each, `--reloads`
reloads (`unbound-control reload` and SIGHUP alternated, 0.1 s apart) under dnsperf at `--qps` on
never-seen names, and prints dnsperf's lost answers beside the module's own count of queries in
flight at the reloads. Written to bench/results/reload_losses_TAG.md; run it under the bench lock.

Keep qps x delay small: dnsperf (`reload_under_load`) keeps at most 100 queries outstanding, and a
lost one stays outstanding for its 2 s timeout, so ~100 lost within 2 s stop the load for a while
(the module's count then reads 0 for the reloads meanwhile: 300 qps with 20 ms did that).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compare import (
    ROOT,
    free_port,
    load_average,
    query_files,
    reload_under_load,
    start_nsd,
    start_unbound,
    start_verdicts,
    wait_ready,
)

sys.path.insert(0, str(ROOT / "tests"))
from dnsfixtures import Upstream, run_upstream  # noqa: E402 - the tests' stub upstream, with its `delay`


@contextmanager
def upstream(work: Path, delay: str) -> Iterator[int]:
    """The upstream's port: NSD (`nsd`) or the stub answering `delay` seconds late."""
    if delay == "nsd":
        port = free_port()
        nsd = start_nsd(work, port)
        try:
            wait_ready(port)
            yield port
        finally:
            nsd.terminate()
            nsd.wait(10)
    else:
        with run_upstream(Upstream(delay=float(delay))) as stub:
            yield stub.port


@contextmanager
def unbound_two_threads(work: Path, up: int, module: bool) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Unbound with 2 threads forwarding to `up` (with the module and its verdict service when
    `module`), ready: its port and process."""
    port, procs = free_port(), []
    verdicts = None
    if module:
        service, verdicts = start_verdicts(work, f"r{port}")
        procs.append(service)
    procs.append(start_unbound(work, port, up, "", 2, verdicts=verdicts))
    try:
        wait_ready(port)
        yield port, procs[-1]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def one_row(work: Path, up: int, module: bool, names: Path, qps: float, reloads: int) -> dict[str, Any]:
    with unbound_two_threads(work, up, module) as (port, proc):
        return reload_under_load(work, port, proc, names, qps, reloads)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--qps", type=float, default=300.0)
    p.add_argument("--reloads", type=int, default=30)
    p.add_argument("--delays", default="nsd,0.005", help="nsd, or the stub's delay in seconds")
    p.add_argument("--tag", default="run")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-reload-"))
    names = query_files(work, 1000, random.Random(11), 1000)["misses"].with_name("misses.latency.txt")
    before = load_average()
    lines = [
        f"# Answers lost under {a.reloads} reloads by upstream ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"bench/reload_losses.py --qps {a.qps:.0f} --reloads {a.reloads} --delays {a.delays}; 2 threads; "
        f"load before {before}, after LOAD_AFTER)",
        "",
        "| upstream | sent | lost, plain Unbound | lost, with the module | in flight at the reloads (module's count) |",
        "|---|---|---|---|---|",
    ]
    for delay in a.delays.split(","):
        with upstream(work, delay) as up:
            plain = one_row(work, up, False, names, a.qps, a.reloads)
            module = one_row(work, up, True, names, a.qps, a.reloads)
        label = "NSD on loopback" if delay == "nsd" else f"stub, answers {float(delay) * 1000:g} ms late"
        lines.append(f"| {label} | {plain['sent']} | {plain['lost']} | {module['lost']} | {module['in_flight']} |")
        print(lines[-1], flush=True)
    lines[0] = lines[0].replace("LOAD_AFTER", load_average())
    out = ROOT / "bench" / "results" / f"reload_losses_{a.tag}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
