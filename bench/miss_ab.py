"""A never-seen name's CPU in the resolver's process, for several checkouts, rounds alternated.

    python bench/miss_ab.py BEFORE_TREE [AFTER_TREE ...] [--rounds 5] [--names 6000] [--out miss_v2_ab]

What bench/hotpath.py measures for misses (the real DnsServer and pipeline, default policy, NSD
as the upstream in its own process, datagrams handed to `accept_udp` in bursts of 64 as dnsperf's
8 clients keep many in flight), with scoring on and off, each tree in its own process
(PYTHONPATH=tree) and the trees alternated round by round, so that load drift on a shared
machine hits every tree alike: process CPU per miss (best and median of the rounds), and what
the garbage collector cost (collections, its CPU, the longest full collection), since on the
miss path the collector's full collections are what a client sees at the p99.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import resolverguard  # first, from the tree being measured (the cwd): bench/lists.py puts its own tree first
import asyncio, gc, json, random, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])  # this bench/ (compare.py, hotpath.py)
import compare as C
from hotpath import Replies, burst, packets
from resolverguard.config import load_config
from resolverguard.model import load_model
from resolverguard.pipeline import build_pipeline
from resolverguard.server import DnsServer

upstream, scoring, names_n, round_ = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
work = Path(sys.argv[6])

async def main():
    rng = random.Random(7)
    names = C.benign_names(4000, rng)
    policy = work / f"p-{scoring}.yaml"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream}']\nquery_log: off\nscoring: {scoring}\n"
        "rate_limit: {qps: 0}\nlimits: {max_inflight: 8192}\n"
    )
    cfg = load_config(policy)
    pipeline = build_pipeline(cfg, load_model(cfg.model))
    server = DnsServer(pipeline.chain, cfg.listen, cfg.limits, pipeline.gates)
    out = Replies()
    await burst(server, out, packets(names[:500]))  # warm: the model, the PSL, the sockets
    misses = packets(C.miss_names(names, names_n, rng, f"r{round_}x"))
    gc.collect()
    gc.freeze()  # as the service does after startup (service.settle_memory)
    stats = {"collections": [0, 0, 0], "gc_cpu_s": 0.0, "gen2_max_ms": 0.0}
    began = [0.0]

    def watch(phase, info):
        if phase == "start":
            began[0] = time.thread_time()
            return
        spent = time.thread_time() - began[0]
        stats["collections"][info["generation"]] += 1
        stats["gc_cpu_s"] += spent
        if info["generation"] == 2:
            stats["gen2_max_ms"] = max(stats["gen2_max_ms"], spent * 1000)

    gc.callbacks.append(watch)
    started = time.process_time()
    await burst(server, out, misses)
    spent = time.process_time() - started
    gc.callbacks.remove(watch)
    pipeline.forwarder.close()
    stats["package"] = str(Path(resolverguard.__file__).parent.parent)
    print(json.dumps({"us": spent / len(misses) * 1e6, "n": len(misses), **stats}))

import uvloop
uvloop.run(main())
"""


def probe(tree: Path, upstream: int, scoring: str, names: int, round_: int, work: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "bench"), str(upstream), scoring, str(names), str(round_), str(work)],
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=str(tree), HOTPATH_TREE=str(tree)),  # (hotpath.py puts its tree first)
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import compare as C

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("trees", nargs="+", type=Path)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--names", type=int, default=6000)
    p.add_argument("--out", help="write the table to bench/results/OUT.md (and OUT.json)")
    a = p.parse_args()
    trees = [t.resolve() for t in a.trees]
    work = Path(tempfile.mkdtemp(prefix="rg-miss-ab-"))
    port = C.free_port()
    nsd = C.start_nsd(work, port)
    load_before = C.load_average()
    runs: dict[str, list[dict[str, object]]] = {}
    try:
        C.wait_ready(port)
        for round_ in range(a.rounds):
            for scoring in ("false", "true"):
                for tree in trees:
                    found = probe(tree, port, scoring, a.names, round_, work)
                    assert found["package"] == str(tree), f"{tree} measured {found['package']}'s package"
                    runs.setdefault(f"{tree}|{scoring}", []).append(found)
    finally:
        nsd.terminate()
        nsd.wait(10)
    lines = [
        f"# CPU per never-seen name in the resolver's process (bench/miss_ab.py), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{a.rounds} rounds of {a.names} never-seen names per tree and setting, trees alternated; load average "
        f"before {load_before}, after {C.load_average()} (a shared machine: compare the trees, not the figures "
        "with another run). The collector's figures are per 1000 misses, summed over the rounds.",
        "",
        "| tree | scoring | best us/miss | median us/miss | collections gen0/1/2 per 1000 | GC CPU ms per 1000 "
        "| longest full collection ms |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for key, rows in runs.items():
        tree, scoring = key.split("|")
        us = [float(r["us"]) for r in rows]  # type: ignore[arg-type]
        n = sum(int(r["n"]) for r in rows) / 1000  # type: ignore[call-overload]
        gens = [sum(r["collections"][g] for r in rows) / n for g in range(3)]  # type: ignore[index]
        gc_ms = sum(float(r["gc_cpu_s"]) for r in rows) * 1000 / n  # type: ignore[arg-type]
        longest = max(float(r["gen2_max_ms"]) for r in rows)  # type: ignore[arg-type]
        lines.append(
            f"| {Path(tree).name} | {scoring} | {min(us):.1f} | {statistics.median(us):.1f} "
            f"| {'/'.join(f'{g:.1f}' for g in gens)} | {gc_ms:.1f} | {longest:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        (ROOT / "bench" / "results" / f"{a.out}.md").write_text(text)
        (ROOT / "bench" / "results" / f"{a.out}.json").write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
