"""The client watch's cost as many short interleaved pairs, with an interval: can a run resolve 2-3%?

    python bench/watch_pairs.py d g [--pairs 10] [--seconds 3] [--kinds misses,hits] [--warm 60000]
    python bench/watch_pairs.py g@/tmp/main g          # two checkouts' (g) against each other

Two targets as `bench/watch_ab.py` names them (`d`: the full chain, watch off; `g`: the same with
`client_watch: {enabled: true, action: log}`, its client flagged by a prelude of DGA-looking names;
`@DIR`: another checkout), side by side on one NSD upstream. Each pair runs the first and the second
target back to back for `--seconds` per kind (the first one first in even pairs, the second first in
odd ones: ABBA, so a drift in the machine's load hits both alike), misses on names of their own per
pair (both targets ask the same ones; each server sees each once), hits on compare.py's Zipf file
after every name was asked once. Before the pairs, `--warm` never-seen names are asked once of each
target, so (g)'s known names are at their bound (a long compare.py run's steady state).

Why: compare.py --watch sums 3-4 rounds of 4 s, and its rounds swing by 10-25% on the shared 2-core
machine, so its (g)/(d) cannot resolve the 2-3% the watch costs by instruction counts
(bench/results/watch_cost_watch7.md). Per pair this prints the second target's QPS over the first's
and the first's CPU us per answered query over the second's (so both read "second / first: 1.00 is
free, 0.95 is 5% dearer"), the load average and both servers' resident memory; at the end per kind
the median of the pairs with a distribution-free interval (order statistics, the sign test's: at
least 95%) and a bootstrap interval of the median, and the summed ratio. Results to stdout and, with
`--json`, to a file. Bounded: dnsperf -l per run, names per pair.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compare import asked_once, cpu_seconds, dnsperf, free_port, query_files, start_nsd, wait_ready
from watch_ab import start

MISSES_PER_SECOND = 25_000  # names per target-second a pair's file holds (a run asks ~12k/s here)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def order_interval(values: list[float], coverage: float = 0.95) -> tuple[float, float]:
    """The widest-needed order statistics [x(k), x(n-k+1)] that cover the median with at least
    `coverage` (the sign test's interval: no assumption on the ratios' distribution)."""
    xs, n = sorted(values), len(values)
    k = 0
    while True:  # largest k with P(Bin(n, 1/2) <= k) <= (1 - coverage) / 2
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        if tail > (1 - coverage) / 2:
            break
        k += 1
    return (xs[k - 1], xs[n - k]) if k else (xs[0], xs[-1])


def bootstrap_median(values: list[float], rng: random.Random, draws: int = 10_000) -> tuple[float, float]:
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def summary(ratios: list[float], rng: random.Random) -> dict[str, Any]:
    low, high = order_interval(ratios)
    blow, bhigh = bootstrap_median(ratios, rng)
    return {
        "median": round(statistics.median(ratios), 4),
        "order_95": [round(low, 4), round(high, 4)],
        "bootstrap_95": [round(blow, 4), round(bhigh, 4)],
        "below_0.95": sum(r < 0.95 for r in ratios),
        "below_1": sum(r < 1.0 for r in ratios),
        "n": len(ratios),
    }


def timed_run(pid: int, port: int, path: Path, seconds: float) -> dict[str, float]:
    """dnsperf's peak run and the server's CPU us per answered query over it."""
    cpu = cpu_seconds(pid)
    run = dnsperf(port, path, seconds)
    cpu = cpu_seconds(pid) - cpu
    done = run["completed"] or 0
    return {"qps": run["qps"] or 0.0, "cpu_us": 1e6 * cpu / max(1.0, done), "sent": run["sent"] or 0}


def in_turn(
    servers: dict[str, subprocess.Popen[bytes]], ports: dict[str, int], path: Path, seconds: float, order: Any
) -> dict[str, dict[str, float]]:
    return {t: timed_run(servers[t].pid, ports[t], path, seconds) for t in order}


def together(
    servers: dict[str, subprocess.Popen[bytes]], ports: dict[str, int], path: Path, seconds: float
) -> dict[str, dict[str, float]]:
    """Both targets loaded at once, each by its own dnsperf: whatever else the machine does in those
    seconds (other processes, the shared cache, the clock) falls on both alike."""
    with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
        futures = {t: pool.submit(timed_run, servers[t].pid, ports[t], path, seconds) for t in servers}
        return {t: f.result() for t, f in futures.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("targets", nargs=2, help="first and second target: d or g, optionally @DIR")
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--kinds", default="misses,hits")
    p.add_argument("--warm", type=int, default=60_000, help="never-seen names asked once of each target first")
    p.add_argument("--together", action="store_true", help="load both targets at once in each pair")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    first, second = a.targets
    kinds = a.kinds.split(",")
    bad_target = any(t.partition("@")[0].split("+")[0] not in ("d", "g") for t in a.targets)
    if first == second or bad_target or not set(kinds) <= {"hits", "misses"}:
        sys.exit("two different targets, d or g each, optionally @DIR; kinds: misses and/or hits")
    work = Path(tempfile.mkdtemp(prefix="rg-watchpairs-"))
    share = int(a.seconds * MISSES_PER_SECOND)
    files = query_files(work, 200_000, random.Random(7), a.warm + 2000 + share * a.pairs)
    names = files["misses"].read_text().splitlines(keepends=True)
    (work / "prelude.txt").write_text("".join(names[:2000]))  # DGA-looking half: flags (g)'s client
    (work / "warm-misses.txt").write_text("".join(names[2000 : 2000 + a.warm]))
    chunks = [names[2000 + a.warm + i * share : 2000 + a.warm + (i + 1) * share] for i in range(a.pairs)]
    ports = {t: free_port() for t in a.targets}
    upstream = free_port()
    procs = [start_nsd(work, upstream)]
    rows: list[dict[str, Any]] = []
    try:
        wait_ready(upstream)
        servers = {t: start(work, ports[t], upstream, t) for t in a.targets}
        procs += servers.values()
        for t in a.targets:
            wait_ready(ports[t])
            asked_once(ports[t], work / "prelude.txt")
            if a.warm:
                asked_once(ports[t], work / "warm-misses.txt")
        time.sleep(0.5)
        for t in a.targets:
            if t.startswith("g") and "flagged by the client watch" not in (work / f"rg-{ports[t]}.log").read_text():
                sys.exit(f"{t}'s client was not flagged by the prelude: the bench would not measure the worst case")
        for r in range(a.pairs):
            misses = work / f"misses-{r}.txt"
            misses.write_text("".join(chunks[r]))
            order = a.targets if r % 2 == 0 else a.targets[::-1]
            row: dict[str, Any] = {"pair": r + 1, "load": os.getloadavg()[0]}
            for kind in kinds:
                path = misses if kind == "misses" else files["hits"]
                if kind == "hits":
                    for t in order:
                        asked_once(ports[t], work / "warm.txt")
                runs = (
                    together(servers, ports, path, a.seconds)
                    if a.together
                    else in_turn(servers, ports, path, a.seconds, order)
                )
                if kind == "misses" and max(run["sent"] for run in runs.values()) >= share:
                    sys.exit(f"a run asked {max(run['sent'] for run in runs.values()):.0f} of a {share}-name file")
                row[kind] = runs
                row[f"{kind}_qps_ratio"] = runs[second]["qps"] / max(1e-9, runs[first]["qps"])
                row[f"{kind}_cpu_ratio"] = runs[first]["cpu_us"] / max(1e-9, runs[second]["cpu_us"])
            row["rss_mb"] = {t: round(rss_mb(servers[t].pid), 1) for t in a.targets}
            rows.append(row)
            print(
                f"pair {r + 1} (load {row['load']:.2f}, first {order[0]}): "
                + "; ".join(
                    f"{k} QPS {row[k][first]['qps']:.0f}/{row[k][second]['qps']:.0f} ratio {row[f'{k}_qps_ratio']:.3f},"
                    f" CPU us {row[k][first]['cpu_us']:.1f}/{row[k][second]['cpu_us']:.1f}"
                    f" ratio {row[f'{k}_cpu_ratio']:.3f}"
                    for k in kinds
                )
                + f"; RSS MB {row['rss_mb']}",
                flush=True,
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    rng = random.Random(1)
    result: dict[str, Any] = {"targets": a.targets, "seconds": a.seconds, "warm": a.warm, "together": a.together}
    result["pairs"] = rows
    print(f"\nsecond / first: {second} / {first}; {a.pairs} pairs of {a.seconds:g} s; load {os.getloadavg()}")
    print("| kind | measure | median | >=95% order interval | bootstrap 95% | pairs < 0.95 | pairs < 1 | summed |")
    print("|---|---|---:|---|---|---:|---:|---:|")
    for kind in kinds:
        for measure in ("qps", "cpu"):
            s = summary([row[f"{kind}_{measure}_ratio"] for row in rows], rng)
            top, bottom = (second, first) if measure == "qps" else (first, second)
            field = "qps" if measure == "qps" else "cpu_us"
            summed = sum(row[kind][top][field] for row in rows) / sum(row[kind][bottom][field] for row in rows)
            s["summed"] = round(summed, 4)
            result[f"{kind}_{measure}"] = s
            print(
                f"| {kind} | {measure} | {s['median']:.3f} | {s['order_95'][0]:.3f}-{s['order_95'][1]:.3f} |"
                f" {s['bootstrap_95'][0]:.3f}-{s['bootstrap_95'][1]:.3f} | {s['below_0.95']}/{s['n']} |"
                f" {s['below_1']}/{s['n']} | {summed:.3f} |"
            )
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
