"""The standalone targets of issue #17 in one shorter run, for this checkout and others side by side.

    python bench/standalone.py [--seconds 4] [--tree /work/main] [--out NAME]

bench/compare.py's standalone rows only: (b) Unbound with 1 thread and (b2) with 2, then for each
tree (this checkout first, then every `--tree`) (d) the full chain, (e) the same with `workers: 2`
(dnsperf from one client address per worker) and (d') the same as (d) with the query log to a file;
(d) and (b) also at 20% of (d)'s peak for the added p99 (against NSD's own p99 at that rate).
Each tree's server runs from its own directory. Same query files, same NSD, one run: the ratios
(d)/(b), (e)/(b2), (d')/(d) are what to read on a shared machine, with the load average beside
them, and the server's CPU per answered query (its worker and writer processes included).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as C  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def start(
    tree: Path,
    work: Path,
    port: int,
    upstream: int,
    workers: int = 1,
    log: str = "",
    scoring: bool = True,
    model: Path | None = None,
) -> Any:
    """`resolverguard serve` from `tree` (its own package first on the path), policy as compare's;
    `model` serves another model file than the tree's shipped one (bench/model_ab.py)."""
    policy = work / f"rg-{port}.yaml"
    query_log = f"{{path: '{work}/queries-{port}.jsonl', writer: {log}}}" if log else "off"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream}']\nscoring: {str(scoring).lower()}\nquery_log: {query_log}\n"
        f"rate_limit:\n  qps: 0\nlimits:\n  max_inflight: 8192\nworkers: {workers}\n"
        + (f"model: '{model}'\n" if model else "")
    )
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    env = dict(os.environ, PYTHONPATH=str(tree))
    stderr = (work / f"rg-{port}.log").open("w")
    return subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def cpu_us(row: dict[str, Any], kind: str) -> float:
    return round(1e6 * row[kind]["cpu_s"] / max(1.0, row[kind]["completed"] or 0), 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--tree", action="append", default=[], help="another checkout to measure beside this one")
    p.add_argument("--writer", action="append", default=[], help="query_log.writer of (d'): process (default), thread")
    p.add_argument("--skip-workers", action="store_true", help="no (e) rows")
    p.add_argument("--plain", action="store_true", help="(c) rows too: each tree with scoring off")
    p.add_argument("--no-log", action="store_true", help="no (d') rows")
    p.add_argument("--out", help="write the table to bench/results/OUT.md too")
    a = p.parse_args()
    a.writer = [] if a.no_log else a.writer or ["process"]
    trees = [ROOT, *(Path(t).resolve() for t in a.tree)]
    work = Path(tempfile.mkdtemp(prefix="rg-standalone-"))
    misses = int(a.seconds * 200_000)
    files = C.query_files(work, 200_000, random.Random(7), misses)
    load_before = C.load_average()
    nsd_port = C.free_port()
    procs = [C.start_nsd(work, nsd_port)]
    rows: dict[str, dict[str, Any]] = {}
    latency_qps: dict[str, float] = {}
    try:
        C.wait_ready(nsd_port)
        for index, tree in enumerate(trees):
            tag = tree.name
            port = C.free_port()
            procs.append(start(tree, work, port, nsd_port))
            if index == 0:  # the first tree's (d) peak sets the latency runs' rate, as in compare.py
                peak = C.measure("d", procs[-1], port, files, a.seconds, {})
                latency_qps = {k: 0.2 * (peak[k]["qps"] or 0) for k in files}
            rows[f"(d) {tag}"] = C.measure(f"(d) {tag}", procs[-1], port, files, a.seconds, latency_qps)
            if not a.skip_workers:
                port = C.free_port()
                procs.append(start(tree, work, port, nsd_port, workers=2))
                rows[f"(e) {tag}"] = C.measure(
                    f"(e) {tag}", procs[-1], port, files, a.seconds, {}, sources=C.one_client_per_worker(2)
                )
            if a.plain:
                port = C.free_port()
                procs.append(start(tree, work, port, nsd_port, scoring=False))
                rows[f"(c) {tag}"] = C.measure(f"(c) {tag}", procs[-1], port, files, a.seconds, latency_qps)
            for writer in a.writer:
                port = C.free_port()
                procs.append(start(tree, work, port, nsd_port, log=writer))
                rows[f"(d') {tag} {writer}"] = C.measure(f"(d') {tag}", procs[-1], port, files, a.seconds, {})
        for key, threads in (("(b) Unbound, 1 thread", 1), ("(b2) Unbound, 2 threads", 2)):
            port = C.free_port()
            procs.append(C.start_unbound(work, port, nsd_port, threads=threads))
            rows[key] = C.measure(key, procs[-1], port, files, a.seconds, latency_qps if threads == 1 else {})
        upstream = {
            k: C.dnsperf(nsd_port, v.with_name(f"{k}.latency.txt"), 5, latency_qps[k]) for k, v in files.items()
        }
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    largest = max(r[k]["sent"] or 0 for r in rows.values() for k in ("misses",))
    if largest >= misses:
        sys.exit(f"a target asked {largest:.0f} misses from a {misses}-name file: use more --seconds names")
    write(rows, trees, upstream, latency_qps, load_before, a)


def write(
    rows: dict[str, dict[str, Any]],
    trees: list[Path],
    upstream: dict[str, Any],
    latency_qps: dict[str, float],
    load_before: str,
    a: argparse.Namespace,
) -> None:
    kinds = ("hits", "misses")
    b, b2 = rows["(b) Unbound, 1 thread"], rows["(b2) Unbound, 2 threads"]
    lines = [
        f"# Standalone targets (bench/standalone.py), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, dnsperf -c 8 -q 500, {a.seconds:g} s per run",
        "",
        f"Load average before {load_before}, after {C.load_average()} (a shared machine: read the ratios).",
        "",
        "| target | hits QPS | hits CPU us/query | misses QPS | misses CPU us/query | p99 hits/misses ms at 20% |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        p99 = f"{r['hits'].get('p99_ms', '-')}/{r['misses'].get('p99_ms', '-')}"
        lines.append(
            f"| {name} | {r['hits']['qps'] or 0:.0f} | {cpu_us(r, 'hits')} | {r['misses']['qps'] or 0:.0f} "
            f"| {cpu_us(r, 'misses')} | {p99} |"
        )
    lines += [
        "",
        "| ratio (same run) | hits | misses | target | CPU per query, y/x (the ratio if CPU-bound): hits, misses |",
        "|---|---:|---:|---|---:|",
    ]
    for tree in trees:
        tag = tree.name
        d = rows[f"(d) {tag}"]
        pairs = [(f"(d)/(b) {tag}", d, b, ">= 0.5")]
        if f"(e) {tag}" in rows:
            pairs.append((f"(e)/(b2) {tag}", rows[f"(e) {tag}"], b2, ">= 0.5"))
        if f"(c) {tag}" in rows:
            pairs += [(f"(c)/(b) {tag}", rows[f"(c) {tag}"], b, ""), (f"(d)/(c) {tag}", d, rows[f"(c) {tag}"], "")]
        pairs += [(f"(d')/(d) {tag} {w}", rows[f"(d') {tag} {w}"], d, ">= 0.9") for w in a.writer]
        for name, x, y, target in pairs:
            cells = [C.ratio(x[k]["qps"], y[k]["qps"]) for k in kinds]
            cpu = [C.ratio(cpu_us(y, k), cpu_us(x, k)) for k in kinds]
            lines.append(f"| {name} | {cells[0]} | {cells[1]} | {target} | {cpu[0]}, {cpu[1]} |")
    for tree in trees:  # each tree's (d) ran at the same rate (20% of the first tree's peak)
        added = {
            k: round((rows[f"(d) {tree.name}"][k].get("p99_ms") or 0) - (upstream[k].get("p99_ms") or 0), 3)
            for k in kinds
        }
        lines += [
            "",
            f"Added p99 of (d) {tree.name} over NSD's own at 20% of {trees[0].name}'s peak "
            f"({', '.join(f'{k} {v:.0f} qps' for k, v in latency_qps.items())}): hits {added['hits']} ms, "
            f"misses {added['misses']} ms (target <= 0.5 ms).",
        ]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if a.out:
        (ROOT / "bench" / "results" / f"{a.out}.md").write_text(text)
        raw = {"rows": rows, "upstream_latency": upstream, "latency_qps": latency_qps, "load_before": load_before}
        raw["load_after"], raw["trees"] = C.load_average(), [str(t) for t in trees]
        (ROOT / "bench" / "results" / f"{a.out}.json").write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    main()
