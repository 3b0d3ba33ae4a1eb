"""Never-seen names through `resolverguard serve` with one model against another, in one run.

    python bench/model_ab.py [--rounds 3] [--seconds 4] [--workers 2] [--tree DIR]

Why: the shipped scorer became the CNN + linear ensemble (#13 session 7) and compare.py's (e)/(b2) on
never-seen names fell from 0.49 to 0.35 in a later run; a same-run A/B tells the model's share of
that from the machine's. Targets, each round in turn (the order reversed every other round):
(b2) plain Unbound with `--workers` threads, (e) resolverguard with `workers: N` and the shipped
model, (e-cnn) the same with the CNN alone (the shipped `.tflite` with metadata lacking the
`ensemble` entry and the CNN's own thresholds, `ensemble.cnn_thresholds`), and, with `--tree DIR`,
(e-tree) the shipped model served from another checkout (a before/after of the scorer code). As
compare.py: NSD upstream with a wildcard zone, dnsperf -c 8 -q 500, compare.py's never-seen names
(half random labels), each round and target its own slice. Prints QPS, the server's CPU us per
answered name (all processes of the family) and QPS over (b2)'s of the same round; medians over
the rounds, and the load average before and after. Bounded: dnsperf -l, names per round.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import standalone as S
from compare import (
    ROOT,
    cpu_seconds,
    dnsperf,
    free_port,
    load_average,
    one_client_per_worker,
    query_files,
    start_nsd,
    start_unbound,
    wait_ready,
)


def cnn_alone(models: Path, out: Path) -> Path:
    """A copy of the shipped CNN whose metadata has no ensemble (so `load_model` serves the CNN alone)."""
    meta = json.loads((models / "default.json").read_text())
    spec = meta.pop("ensemble")
    meta["thresholds"] = spec["cnn_thresholds"]
    meta["model_version"] += "-cnn-alone"
    path = out / "cnn.tflite"
    path.write_bytes((models / "default.tflite").read_bytes())
    (out / "cnn.json").write_text(json.dumps(meta))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tree", type=Path, help="another checkout: (e-tree) serves the shipped model from it")
    p.add_argument("--out", help="also write the table to bench/results/OUT.md")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-modelab-"))
    targets = ["b2", "e", "e-cnn"] + (["e-tree"] if a.tree else [])
    per_run = int(a.seconds * 40_000)  # above any target's volume here (checked below)
    files = query_files(work, 1000, random.Random(7), per_run * len(targets) * a.rounds)
    names = files["misses"].read_text().splitlines(keepends=True)
    ports = {t: free_port() for t in targets}
    upstream = free_port()
    procs = [start_nsd(work, upstream)]
    sources = one_client_per_worker(a.workers) if a.workers > 1 else ()
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    before = load_average()
    try:
        wait_ready(upstream)
        models = ROOT / "models"
        servers = {
            "b2": start_unbound(work, ports["b2"], upstream, threads=a.workers),
            "e": S.start(ROOT, work, ports["e"], upstream, a.workers, model=models / "default.tflite"),
            "e-cnn": S.start(ROOT, work, ports["e-cnn"], upstream, a.workers, model=cnn_alone(models, work)),
        }
        if a.tree:
            tree = a.tree.resolve()
            servers["e-tree"] = S.start(
                tree, work, ports["e-tree"], upstream, a.workers, model=tree / "models/default.tflite"
            )
        procs += servers.values()
        for t in targets:
            wait_ready(ports[t])
        time.sleep(2.0)  # with workers, the first to answer may not be the last to start
        chunk = 0
        for r in range(a.rounds):
            for t in targets if r % 2 == 0 else targets[::-1]:
                path = work / f"misses-{chunk}.txt"
                path.write_text("".join(names[chunk * per_run : (chunk + 1) * per_run]))
                chunk += 1
                cpu = cpu_seconds(servers[t].pid)
                run: dict[str, Any] = dnsperf(ports[t], path, a.seconds, sources=sources if t != "b2" else ())
                spent = cpu_seconds(servers[t].pid) - cpu
                if (run["sent"] or 0) >= per_run:
                    sys.exit(f"{t} asked every name of its slice: raise per_run")
                done = run["completed"] or 1
                runs[t].append({"qps": run["qps"] or 0.0, "cpu_us": 1e6 * spent / done})
            print(f"round {r + 1}: " + json.dumps({t: runs[t][-1] for t in targets}), flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    after = load_average()
    lines = [
        f"# Never-seen names, one model against another (bench/model_ab.py), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{a.rounds} rounds of {a.seconds:g} s per target, workers/threads {a.workers}, targets in turn; load average "
        f"before {before}, after {after}. CPU: the server's processes only (not NSD, not dnsperf).",
        "",
        "| target | QPS (median) | CPU us per name (median) | QPS / (b2) same round (median) |",
        "|---|---:|---:|---:|",
    ]
    for t in targets:
        ratio = statistics.median(x["qps"] / max(1.0, b["qps"]) for x, b in zip(runs[t], runs["b2"], strict=True))
        qps = statistics.median(x["qps"] for x in runs[t])
        cpu = statistics.median(x["cpu_us"] for x in runs[t])
        lines.append(f"| {t} | {qps:.0f} | {cpu:.1f} | {ratio:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        (ROOT / "bench" / "results" / f"{a.out}.md").write_text(text)
        (ROOT / "bench" / "results" / f"{a.out}.json").write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
