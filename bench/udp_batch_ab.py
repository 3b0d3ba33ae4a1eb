"""The standalone server's peaks and p99 for several checkouts, rounds alternated (issue #17, mmsg8).

    python bench/udp_batch_ab.py BEFORE_TREE AFTER_TREE [--rounds 2] [--seconds 3] [--out NAME]

What bench/standalone.py measures, but with the trees taking turns round by round (their order
reversed every other round) and (b2) measured in every round, so that the load drift of a shared
2-core machine hits every tree alike: for each tree (d) the full chain and (e) the same with
`workers: 2` (dnsperf from one client address per worker), hits and misses, peak QPS and the
server's CPU per answered query; (b2) Unbound with 2 threads; then (d)'s p99 at 20% of the first
tree's first (d) peak, in turn with NSD's own on the same names (compare.paired_latency: the added
p99). The ratio (e)/(b2) is taken within each round, then the median over rounds. Each server runs
from its own tree (PYTHONPATH=tree), fresh for every row.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as C  # noqa: E402
from standalone import cpu_us, start  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("hits", "misses")


def stopped(proc: Any) -> None:
    proc.terminate()
    proc.wait(10)


def peaks(tree: Path, work: Path, files: dict[str, Path], nsd: int, workers: int, seconds: float) -> dict[str, Any]:
    port = C.free_port()
    proc = start(tree, work, port, nsd, workers=workers)
    try:
        sources = C.one_client_per_worker(workers) if workers > 1 else ()
        return C.measure(f"{tree.name} {workers}", proc, port, files, seconds, {}, sources=sources)
    finally:
        stopped(proc)


def latency(tree: Path, work: Path, files: dict[str, Path], nsd: int, qps: dict[str, float]) -> dict[str, Any]:
    """(d)'s p50/p99 and NSD's, in turn, at `qps` (2 paired rounds of compare's 3 s per kind)."""
    port = C.free_port()
    proc = start(tree, work, port, nsd)
    out: dict[str, Any] = {}
    try:
        C.wait_ready(port)
        time.sleep(2.0)
        for kind, path in files.items():
            if kind == "hits":
                C.asked_once(port, path.with_name("warm.txt"))
            names = path.with_name(f"{kind}.latency.txt")
            out[kind] = C.paired_latency(port, nsd, names, qps[kind], (), rounds=2)
    finally:
        stopped(proc)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("trees", nargs="+", type=Path)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--no-peaks", action="store_true", help="latency only, at --latency-qps")
    p.add_argument("--latency-qps", default="", help="HITS,MISSES: the latency runs' rates (default 20%% of (d))")
    p.add_argument("--out", help="bench/results/OUT.md and OUT.json")
    a = p.parse_args()
    trees = [t.resolve() for t in a.trees]
    work = Path(tempfile.mkdtemp(prefix="rg-udpbatch-"))
    misses = int(a.seconds * 200_000)
    files = C.query_files(work, 200_000, random.Random(7), misses)
    load: dict[str, Any] = {"before": C.load_average(), "rounds": []}
    nsd_port = C.free_port()
    nsd = C.start_nsd(work, nsd_port)
    runs: dict[str, list[dict[str, Any]]] = {}
    qps: dict[str, float] = {}
    try:
        C.wait_ready(nsd_port)
        if a.latency_qps:
            qps = dict(zip(KINDS, (float(x) for x in a.latency_qps.split(",")), strict=True))
        for r in range(0 if a.no_peaks else a.rounds):
            order = trees if r % 2 == 0 else trees[::-1]
            for tree in order:
                for workers, row in ((1, "d"), (2, "e")):
                    runs.setdefault(f"({row}) {tree.name}", []).append(
                        peaks(tree, work, files, nsd_port, workers, a.seconds)
                    )
                    if not qps:
                        qps = {k: 0.2 * (runs[f"({row}) {tree.name}"][0][k]["qps"] or 0) for k in KINDS}
            port = C.free_port()
            unbound = C.start_unbound(work, port, nsd_port, threads=2)
            try:
                runs.setdefault("(b2)", []).append(C.measure("(b2)", unbound, port, files, a.seconds, {}))
            finally:
                stopped(unbound)
            load["rounds"].append(C.load_average())
        if not a.no_latency:
            for r in range(a.rounds):
                for tree in trees if r % 2 == 0 else trees[::-1]:
                    runs.setdefault(f"(d) latency {tree.name}", []).append(latency(tree, work, files, nsd_port, qps))
    finally:
        stopped(nsd)
    load["after"] = C.load_average()
    write(runs, trees, qps, load, a)


def med(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def write(
    runs: dict[str, list[dict[str, Any]]], trees: list[Path], qps: dict[str, float], load: dict[str, Any], a: Any
) -> None:
    lines = [
        f"# Standalone peaks and p99, trees alternated (bench/udp_batch_ab.py), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores",
        "",
        f"{a.rounds} rounds of {a.seconds:g} s per peak run, dnsperf -c 8 -q 500; load average before "
        f"{load['before']}, after each round {'; '.join(load['rounds'])}, at the end {load['after']}.",
        "",
        "| row | hits QPS (median) | hits CPU us/query | misses QPS (median) | misses CPU us/query "
        "| per round misses QPS |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for key, rows in runs.items():
        if "latency" in key:
            continue
        cells = []
        for kind in KINDS:
            cells += [f"{med([r[kind]['qps'] or 0 for r in rows]):.0f}", f"{med([cpu_us(r, kind) for r in rows])}"]
        each = ", ".join(f"{r['misses']['qps'] or 0:.0f}" for r in rows)
        lines.append(f"| {key} | {' | '.join(cells)} | {each} |")
    lines += ["", "| ratio, per round then median | hits | misses | misses per round |", "|---|---:|---:|---|"]
    b2 = runs.get("(b2)", [])
    for tree in trees if b2 else ():
        for row in ("e", "d"):
            mine = runs[f"({row}) {tree.name}"]
            per = {k: [(x[k]["qps"] or 0) / (y[k]["qps"] or 1) for x, y in zip(mine, b2, strict=True)] for k in KINDS}
            lines.append(
                f"| ({row})/(b2) {tree.name} | {med(per['hits'])} | {med(per['misses'])} "
                f"| {', '.join(f'{v:.3f}' for v in per['misses'])} |"
            )
    if any("latency" in k for k in runs):
        lines += [
            "",
            f"(d) at 20% of the first (d) peak (hits {qps['hits']:.0f} qps, misses {qps['misses']:.0f} qps), "
            "each run 2 paired rounds of 3 s with NSD alone on the same names; medians over the runs:",
            "",
            "| tree | hits p99 ms | hits added p99 ms | misses p50 ms | misses p99 ms | misses added p99 ms "
            "| misses added p99 per run |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for tree in trees:
            rows = runs[f"(d) latency {tree.name}"]

            def got(kind: str, key: str, rows: list[dict[str, Any]] = rows) -> list[float]:
                return [r[kind][key] for r in rows if r[kind].get(key) is not None]

            lines.append(
                f"| {tree.name} | {med(got('hits', 'p99_ms'))} | {med(got('hits', 'added_p99_ms'))} "
                f"| {med(got('misses', 'p50_ms'))} | {med(got('misses', 'p99_ms'))} "
                f"| {med(got('misses', 'added_p99_ms'))} | {', '.join(str(v) for v in got('misses', 'added_p99_ms'))} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        (ROOT / "bench" / "results" / f"{a.out}.md").write_text(text)
        raw = {"runs": runs, "trees": [str(t) for t in trees], "latency_qps": qps, "load": load}
        (ROOT / "bench" / "results" / f"{a.out}.json").write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    main()
