"""Two Unbound modules side by side at the same rate, in the same seconds: latency and CPU per query (issue #17, mod6).

    python bench/module_ab.py BASELINE-CHECKOUT [--qps 3000] [--seconds 4] [--rounds 3]

Starts NSD and, for this checkout and for BASELINE-CHECKOUT, a verdict service and Unbound (1 thread)
with that checkout's module, and asks both at `--qps` at once (two dnsperf, never-seen names of
their own, the first second of each run left out), `--rounds` times. Per round and side: p50/p99 ms
and, from /proc/PID/task/*/schedstat over the same seconds, the CPU microseconds per query of
Unbound's thread and of the service, and the seconds Unbound waited runnable for a CPU.

Why (bench/results/module_mod6.md): on this shared 2-core machine the module's p99 at 20% load moves
by tens of ms between runs with whatever else runs; one side measured after the other compares two
different machines. Side by side, a burst lands on both, and CPU per query is steadier than a p99.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from compare import (
    ROOT,
    free_port,
    load_average,
    query_files,
    round_misses,
    start_nsd,
    start_unbound,
    start_verdicts,
    wait_ready,
)
from module_stages import latencies, pct, schedstat


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("baseline", type=Path)
    p.add_argument("--qps", type=float, default=3000.0)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-ab-"))
    files = query_files(work, 1000, random.Random(7), 1000)
    names = files["misses"].with_name("misses.latency.txt")
    sides = {"this": ROOT, "base": a.baseline.resolve()}
    ports = {"nsd": free_port(), **{k: free_port() for k in sides}}
    procs = [start_nsd(work, ports["nsd"])]
    pids: dict[str, dict[str, int]] = {}
    rounds: list[dict[str, Any]] = []
    try:
        wait_ready(ports["nsd"])
        for side, root in sides.items():
            service, sock = start_verdicts(work, side, root)
            script = root / "resolverguard" / "unbound_module.py"
            procs += [service, start_unbound(work, ports[side], ports["nsd"], verdicts=sock, script=script)]
            pids[side] = {"unbound": procs[-1].pid, "service": service.pid}
        for side in sides:
            wait_ready(ports[side])
        load = load_average()
        for r in range(a.rounds + 1):  # round 0: warm-up (the services' first model calls), not counted
            order = list(sides) if r % 2 else list(reversed(sides))
            files_of = {side: round_misses(names, 10 * r + i, f"ab{side}") for i, side in enumerate(order)}
            before = {s: {k: schedstat(v) for k, v in pids[s].items()} for s in sides}
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                runs = {s: pool.submit(latencies, ports[s], files_of[s], a.seconds, a.qps, a.warmup) for s in order}
                got = {s: f.result() for s, f in runs.items()}
            if not r:
                continue
            row: dict[str, Any] = {}
            for side in sides:
                after = {k: schedstat(v) for k, v in pids[side].items()}
                queries = a.qps * (a.seconds + a.warmup)
                cpu = {k: (after[k][0] - before[side][k][0]) / queries * 1e6 for k in after}
                lat = list(got[side].values())
                row[side] = {
                    "p50": pct(lat, 0.5),
                    "p99": pct(lat, 0.99),
                    "unbound_us": cpu["unbound"],
                    "service_us": cpu["service"],
                    "unbound_runq_s": after["unbound"][1] - before[side]["unbound"][1],
                }
            rounds.append(row)
        load_after = load_average()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(20)
    print(f"module_ab: this {ROOT} vs base {a.baseline}, {a.qps:g} qps each, {a.rounds} x {a.seconds:g} s "
          f"(+{a.warmup:g} s left out), load before {load}, after {load_after}")  # fmt: skip
    print("| round | side | p50 ms | p99 ms | Unbound CPU us/query | service CPU us/query | Unbound runnable-wait s |")
    print("|---|---|---|---|---|---|---|")
    for i, row in enumerate(rounds, 1):
        for side, v in row.items():
            print(f"| {i} | {side} | {v['p50']:.3f} | {v['p99']:.3f} | {v['unbound_us']:.1f} | {v['service_us']:.1f} "
                  f"| {v['unbound_runq_s']:.2f} |")  # fmt: skip
    for key in ("p99", "unbound_us", "service_us"):
        diffs = [row["this"][key] - row["base"][key] for row in rounds]
        print(f"{key}: this - base per round {[round(d, 3) for d in diffs]}, median {statistics.median(diffs):.3f}")


if __name__ == "__main__":
    main()
