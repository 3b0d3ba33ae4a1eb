"""The query log under sustained saturation (issue #17): (d) full chain without a log against the same
with a log file whose writer process runs at `query_log.priority` normal and idle, each asked cached
names (compare.py's Zipf hits) as fast as dnsperf can for `--seconds`, in turn.

Why apart from compare.py --log: a writer at `priority: idle` defers its work past a short burst (the
resolver holds the backlog, `query_log.backlog_mb`), so a 4 s burst's QPS ratio says nothing about a
load that lasts. Here, per run: QPS, CPU per query counted after the log caught up (the deferred
work included), when the backlog filled (the resolver's "writer is behind" line, seconds into the
run), the lines lost (`resolverguard status`), the lines in the file, and how long the file kept
changing after the run (`log_lag_s`). Results to bench/results/log_backlog_TAG.{md,json}.

    flock /work/notes/bench.lock python bench/log_backlog.py --seconds 60 --tag log6
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import compare

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {  # key: (row, query_log.priority or None: no log)
    "d": ("(d) full chain, no query log", None),
    "d'l": ("(d'l) + query log file, writer process, priority: low (nice 10)", "low"),
    "d'i": ("(d'i) + query log file, writer process, priority: idle (SCHED_IDLE)", "idle"),
    "d'": ("(d') + query log file, writer process, priority: normal", "normal"),
    "d'l0": ("(d'l0) = (d'l) served from --baseline (another checkout)", "low"),
}


def start(
    work: Path, port: int, upstream: int, priority: str | None, backlog_mb: float, root: Path = ROOT
) -> subprocess.Popen[bytes]:
    """compare.py's (d) policy, with a log file that never rotates (its lines are counted) and a
    control socket (`status` says the lines lost); served from `root` (its own PYTHONPATH)."""
    log = (
        f"{{path: '{work}/q-{port}.jsonl', writer: process, max_mb: 0, priority: {priority}, backlog_mb: {backlog_mb}}}"
    )
    policy = work / f"rg-{port}.yaml"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream}']\nscoring: true\nquery_log: {log if priority else 'off'}\n"
        f"rate_limit:\n  qps: 0\nlimits:\n  max_inflight: 8192\ncontrol_socket: {work}/c-{port}.sock\n"
    )
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=(work / f"rg-{port}.log").open("w")
    )


def behind_at(stderr: Path, start: float, stop: threading.Event, found: list[float]) -> None:
    """Seconds into the run when the server said its writer's backlog was full (lines dropped from then on)."""
    while not stop.is_set() and not found:
        if "the writer is behind" in stderr.read_text(errors="replace"):
            found.append(round(time.monotonic() - start, 1))
        time.sleep(0.2)


def lost_lines(work: Path, port: int) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "resolverguard", "status", "--socket", f"{work}/c-{port}.sock"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    ).stdout
    match = re.search(r"query log (\d+) lines lost", out)
    return int(match.group(1)) if match else 0


def run(work: Path, key: str, port: int, proc: subprocess.Popen[bytes], hits: Path, seconds: float) -> dict[str, Any]:
    compare.wait_ready(port)
    subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(hits.with_name("warm.txt")), "-n", "1"],
        capture_output=True,
        timeout=120,
    )
    logged = work / f"q-{port}.jsonl"
    lost_before = 0
    if TARGETS[key][1] is not None:  # the warm-up's lines written, and what was lost before this run
        compare.log_settled(logged)
        lost_before = lost_lines(work, port)
    lines_before = len(logged.read_bytes().splitlines()) if logged.exists() else 0
    found: list[float] = []
    stop = threading.Event()
    start_at = time.monotonic()
    watcher = threading.Thread(target=behind_at, args=(work / f"rg-{port}.log", start_at, stop, found), daemon=True)
    watcher.start()
    cpu = compare.cpu_seconds(proc.pid)
    out: dict[str, Any] = {"target": key, "load_before": os.getloadavg()[0]}
    out.update(compare.dnsperf(port, hits, seconds))
    if TARGETS[key][1] is not None:
        out.update(compare.log_settled(logged))
    stop.set()
    out["cpu_us"] = round(1e6 * (compare.cpu_seconds(proc.pid) - cpu) / max(1.0, out["completed"] or 0), 2)
    out["load_after"] = os.getloadavg()[0]
    if TARGETS[key][1] is not None:
        out["backlog_full_at_s"] = found[0] if found else None
        out["log_lost"] = lost_lines(work, port) - lost_before
        out["lines"] = len(logged.read_bytes().splitlines()) - lines_before
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--backlog-mb", type=float, default=64.0, help="query_log.backlog_mb of the logged targets")
    p.add_argument("--targets", default="d,d'l,d'i", help="which of: " + ", ".join(TARGETS))
    p.add_argument("--tag", default="run")
    p.add_argument("--baseline", type=Path, default=ROOT, help="the checkout (d'l0) is served from")
    a = p.parse_args()
    keys = a.targets.split(",")
    work = Path(tempfile.mkdtemp(prefix="rg-backlog-"))
    hits = compare.query_files(work, 200_000, random.Random(7), 1000)["hits"]
    ports = {k: compare.free_port() for k in ("nsd", *keys)}
    procs = [compare.start_nsd(work, ports["nsd"])]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    try:
        compare.wait_ready(ports["nsd"])
        servers = {
            k: start(
                work, ports[k], ports["nsd"], TARGETS[k][1], a.backlog_mb, a.baseline.resolve() if k == "d'l0" else ROOT
            )
            for k in keys
        }
        procs += servers.values()
        for _ in range(a.rounds):
            for k in keys:
                runs[k].append(run(work, k, ports[k], servers[k], hits, a.seconds))
                print(json.dumps(runs[k][-1]), flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)  # the logs of a long run are GBs
    qps = {k: sum(r["qps"] or 0 for r in v) for k, v in runs.items()}
    ratios = {f"({k})/(d)": compare.ratio(qps[k], qps["d"]) for k in keys if k != "d" and "d" in keys}
    out = ROOT / "bench" / "results"
    (out / f"log_backlog_{a.tag}.json").write_text(
        json.dumps({"seconds": a.seconds, "backlog_mb": a.backlog_mb, "runs": runs, "ratios": ratios}, indent=2) + "\n"
    )
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"# The query log under sustained saturation (bench/log_backlog.py), {stamp}, {os.cpu_count()} cores",
        "",
        f"dnsperf -c 8 -q 500 on compare.py's hits, {a.seconds:g} s per run, targets in turn, {a.rounds} round(s);"
        f" backlog_mb {a.backlog_mb:g}.",
        "",
        "| target | load 1-min before / after | QPS | CPU us per query (after the log caught up) | backlog full at (s)"
        " | lines lost | lines written | log lag after the run (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k in keys:
        for r in runs[k]:
            lines.append(
                f"| {TARGETS[k][0]} | {r['load_before']:.2f} / {r['load_after']:.2f} | {r['qps']:.0f} | {r['cpu_us']}"
                f" | {r.get('backlog_full_at_s', '-')} | {r.get('log_lost', '-')} | {r.get('lines', '-')}"
                f" | {r.get('log_lag_s', '-')} |"
            )
    lines += ["", "| QPS ratio (summed runs) | hits |", "|---|---:|"]
    lines += [f"| {name} | {value} |" for name, value in ratios.items()]
    lines.append("")
    (out / f"log_backlog_{a.tag}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
