"""Where a standalone server's p99 at 20% load comes from: its own stalls, or the machine's.

    python bench/loop_lag.py [--seconds 4] [--rounds 3]

Starts NSD and resolverguard (d) (full chain, as bench/compare.py does), drives (d) at its peak on
never-seen names, then measures p50/p99 at 20% of that peak in rounds in turn with NSD's own
(`compare.paired_latency`). Inside the server a watcher thread (installed by a sitecustomize on
the server's PYTHONPATH only) sleeps 5 ms at a time and writes down every wake-up more than 20 ms
late, with how much CPU the whole process used meanwhile, and every garbage collection longer than
5 ms (gc.callbacks). A late wake-up with the process's CPU near zero is time the process was not
running at all (other work had the cores: the machine's stall); with CPU near the lag it was busy
(its own stall, or the GIL held by the loop). Results to bench/results/loop_lag.{md,json}.

Why (issue #17): the added p99 at 20% load swung from 0.2 to 120 ms between runs on the shared
2-core machine, with the upstream's own p99 swinging 0.09 to 86 ms; this tells which part is ours.
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

WATCHER = """
import gc, os, sys, threading, time
if "serve" in sys.argv:
    _out = open(os.environ["RG_LAG_LOG"], "w", buffering=1)
    _gc = [0.0]
    def _collected(phase, info):
        if phase == "start":
            _gc[0] = time.perf_counter()
        elif time.perf_counter() - _gc[0] > 0.005:
            _out.write(f"gc {time.time():.3f} {info['generation']} {(time.perf_counter() - _gc[0]) * 1e3:.2f}\\n")
    gc.callbacks.append(_collected)
    def _watch():
        while True:
            t0, c0 = time.perf_counter(), time.process_time()
            time.sleep(0.005)
            lag, cpu = time.perf_counter() - t0 - 0.005, time.process_time() - c0
            if lag > 0.02:
                _out.write(f"lag {time.time():.3f} {lag * 1e3:.2f} {cpu * 1e3:.2f}\\n")
    threading.Thread(target=_watch, name="lag-watcher", daemon=True).start()
"""
LATE_MS = 20.0  # a wake-up this late is a stall
IDLE_SHARE = 0.25  # process CPU below this share of the lag: the process was not running


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-lag-"))
    (work / "site").mkdir()
    (work / "site" / "sitecustomize.py").write_text(WATCHER)
    log = work / "lag.log"
    files = C.query_files(work, 200_000, random.Random(7), int(a.seconds * 200_000))
    nsd, port = C.free_port(), C.free_port()
    load_before = C.load_average()
    procs = [C.start_nsd(work, nsd)]
    env = {**os.environ, "RG_LAG_LOG": str(log)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work / "site"), env.get("PYTHONPATH", ""), str(C.ROOT)]))
    try:
        C.wait_ready(nsd)
        procs.append(start_watched(work, port, nsd, env))
        C.wait_ready(port)
        time.sleep(2.0)
        peak = C.dnsperf(port, files["misses"], a.seconds)
        qps = 0.2 * (peak["qps"] or 0)
        started = time.time()
        paired = C.paired_latency(port, nsd, files["misses"].with_name("misses.latency.txt"), qps, (), a.rounds)
        ended = time.time()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    write(summary(log, started, ended), peak, qps, paired, load_before, a)


def start_watched(work: Path, port: int, upstream: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """compare.start_resolverguard's (d), with the watcher on its PYTHONPATH."""
    policy = work / f"rg-{port}.yaml"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream}']\nscoring: true\nquery_log: off\n"
        "rate_limit:\n  qps: 0\nlimits:\n  max_inflight: 8192\n"
    )
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    stderr = (work / f"rg-{port}.log").open("w")
    return subprocess.Popen(cmd, cwd=C.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def summary(log: Path, start: float, end: float) -> dict[str, Any]:
    """The stalls and collections while the latency rounds ran (warm-up included)."""
    lags, collections = [], []
    for line in log.read_text().splitlines():
        kind, at, *values = line.split()
        if not start <= float(at) <= end:
            continue
        if kind == "lag":
            lags.append((float(values[0]), float(values[1])))
        else:
            collections.append((int(values[0]), float(values[1])))
    idle = [lag for lag, cpu in lags if cpu < IDLE_SHARE * lag]
    busy = [lag for lag, cpu in lags if cpu >= IDLE_SHARE * lag]
    return {
        "seconds": round(end - start, 1),
        "stalls_not_running": {"count": len(idle), "total_ms": round(sum(idle), 1), "max_ms": max(idle, default=0)},
        "stalls_running": {"count": len(busy), "total_ms": round(sum(busy), 1), "max_ms": max(busy, default=0)},
        "collections_over_5ms": {
            "count": len(collections),
            "total_ms": round(sum(ms for _, ms in collections), 1),
            "max_ms": max((ms for _, ms in collections), default=0),
            "by_generation": {g: sum(1 for x, _ in collections if x == g) for g in (0, 1, 2)},
        },
    }


def write(
    found: dict[str, Any], peak: dict[str, Any], qps: float, paired: dict[str, Any], load: str, a: argparse.Namespace
) -> None:
    out = C.ROOT / "bench" / "results"
    load_after = C.load_average()
    payload = {"stalls": found, "peak": peak, "latency_qps": qps, "paired": paired, "load": [load, load_after]}
    (out / "loop_lag.json").write_text(json.dumps(payload, indent=2) + "\n")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rounds = "; ".join(
        f"(d) {r['target'].get('p99_ms')} / NSD {r['upstream'].get('p99_ms')}" for r in paired["latency_rounds"]
    )
    idle, busy, gcs = found["stalls_not_running"], found["stalls_running"], found["collections_over_5ms"]
    lines = [
        f"# Stalls behind the p99 at 20% load (bench/loop_lag.py), {stamp}, {os.cpu_count()} cores",
        "",
        f"Load average (1/5/15 min) before {load}, after {load_after}. (d) peak on never-seen names"
        f" {peak['qps']:.0f} qps; latency at {qps:.0f} qps, {a.rounds} rounds in turn with NSD"
        " (compare.paired_latency).",
        "",
        f"p99 ms per round: {rounds}; added p99 (median round) {paired.get('added_p99_ms')} ms.",
        "",
        f"While the rounds ran ({found['seconds']} s), the server's watcher thread woke > {LATE_MS:g} ms late:",
        "",
        "| | count | total ms | longest ms |",
        "|---|---:|---:|---:|",
        f"| the process was not running (its CPU < {IDLE_SHARE:.0%} of the lag: the machine's) | {idle['count']}"
        f" | {idle['total_ms']} | {idle['max_ms']} |",
        f"| the process was running (its own work or the GIL) | {busy['count']} | {busy['total_ms']}"
        f" | {busy['max_ms']} |",
        f"| garbage collections over 5 ms (by generation {gcs['by_generation']}) | {gcs['count']} | {gcs['total_ms']}"
        f" | {gcs['max_ms']} |",
        "",
    ]
    (out / "loop_lag.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
