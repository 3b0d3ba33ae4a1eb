"""The standalone server's CPU per never-seen name, user and system time apart, for several trees.

    python bench/miss_cpu.py TREE [TREE ...] [--rounds 2] [--seconds 3] [--workers 1]

py-spy's `--gil` samples (bench/miss_spy.py) do not see the system calls made without the GIL
(a socket's `send`/`recv`), and compare's CPU per query is user and system time together: this
splits them, per tree, trees alternated round by round, dnsperf at its peak on compare's misses
file against (d) (or (e) with `--workers 2`), the same NSD behind every run. Prints one line per
run: QPS, us/query user, us/query system.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as C  # noqa: E402
from standalone import start  # noqa: E402


def times(pid: int) -> tuple[float, float]:
    """(user, system) seconds of the process and its children (workers)."""
    user = system = 0.0
    for p in C.family(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11]) / os.sysconf("SC_CLK_TCK")
        system += int(fields[12]) / os.sysconf("SC_CLK_TCK")
    return user, system


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("trees", nargs="+", type=Path)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-misscpu-"))
    files = C.query_files(work, 200_000, random.Random(7), int(a.seconds * 200_000))
    nsd_port = C.free_port()
    nsd = C.start_nsd(work, nsd_port)
    print(f"load before {C.load_average()}; work {work}")
    try:
        C.wait_ready(nsd_port)
        for r in range(a.rounds):
            for tree in a.trees if r % 2 == 0 else a.trees[::-1]:
                port = C.free_port()
                proc = start(tree.resolve(), work, port, nsd_port, workers=a.workers)
                try:
                    C.wait_ready(port)
                    time.sleep(2.0)
                    sources = C.one_client_per_worker(a.workers) if a.workers > 1 else ()
                    u0, s0 = times(proc.pid)
                    peak = C.dnsperf(port, files["misses"], a.seconds, sources=sources)
                    u1, s1 = times(proc.pid)
                finally:
                    proc.terminate()
                    proc.wait(10)
                n = max(1.0, peak["completed"] or 0)
                print(
                    f"round {r} {tree.name}: {peak['qps'] or 0:.0f} qps, user {1e6 * (u1 - u0) / n:.1f} "
                    f"sys {1e6 * (s1 - s0) / n:.1f} us/query, load {C.load_average()}",
                    flush=True,
                )
    finally:
        nsd.terminate()
        nsd.wait(10)


if __name__ == "__main__":
    main()
