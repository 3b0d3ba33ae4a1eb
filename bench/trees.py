"""Forwarding cost of several checkouts in one run: the same NSD upstream, the same query files, each
tree's `resolverguard serve` (scoring off) measured in turn with dnsperf, twice, alternated.

Used to find which change made never-seen names slower (results/trees.md); bounded: 7 s of dnsperf
per tree and round, loopback only. The server's CPU time per answered miss is printed too: on a
loaded machine QPS swings with the other jobs, CPU per query much less.

    python bench/trees.py ../old-checkout ../new-checkout
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as C  # noqa: E402


def main() -> None:
    trees = [str(Path(t).resolve()) for t in sys.argv[1:]]
    work = Path(tempfile.mkdtemp(prefix="rg-trees-"))
    files = C.query_files(work, 200_000, random.Random(7))
    nsd_port = C.free_port()
    nsd = C.start_nsd(work, nsd_port)
    C.wait_ready(nsd_port)
    results: dict[str, list[tuple[int, int]]] = {t: [] for t in trees}
    cpu_per_miss: dict[str, list[float]] = {t: [] for t in trees}  # server CPU us per answered miss
    try:
        for _ in range(2):
            for tree in trees:
                port = C.free_port()
                policy = work / f"p{port}.yaml"
                policy.write_text(
                    f"upstreams: ['127.0.0.1:{nsd_port}']\nscoring: false\nquery_log: off\n"
                    "rate_limit:\n  qps: 0\nlimits:\n  max_inflight: 8192\n"
                )
                cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy)]
                proc = subprocess.Popen(
                    [*cmd, "--listen", f"127.0.0.1:{port}"],
                    cwd=tree,
                    env=dict(os.environ, PYTHONPATH=tree),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    C.wait_ready(port)
                    cpu = C.cpu_seconds(proc.pid)
                    miss = C.dnsperf(port, files["misses"], 4)
                    per_miss = (C.cpu_seconds(proc.pid) - cpu) / max(1.0, miss["completed"] or 0) * 1e6
                    hits = C.dnsperf(port, files["hits"], 3)["qps"]
                    results[tree].append((round(miss["qps"] or 0), round(hits or 0)))
                    cpu_per_miss[tree].append(per_miss)
                finally:
                    proc.terminate()
                    proc.wait(10)
    finally:
        nsd.terminate()
    print("| tree | misses QPS (rounds) | hits QPS (rounds) | server CPU us per miss (rounds) |")
    print("|---|---|---|---|")
    for tree, runs in results.items():
        cpu = " / ".join(f"{us:.1f}" for us in cpu_per_miss[tree])
        print(f"| {tree} | {' / '.join(str(m) for m, _ in runs)} | {' / '.join(str(h) for _, h in runs)} | {cpu} |")


if __name__ == "__main__":
    main()
