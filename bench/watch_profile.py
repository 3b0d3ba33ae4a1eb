"""Where the client watch's end-to-end cost goes: the server's syscalls, loop turns, context
switches, garbage collections and CPU per answered query, with the watch off (d) and on (g).

    python bench/watch_profile.py [--seconds 5] [--rounds 2] [--pyspy DIR]

The same targets as `bench/compare.py --watch` ((d) the full chain, (g) the same with
`client_watch: {enabled: true, action: log}`, (g)'s client flagged by a prelude of DGA-looking
names), driven by dnsperf over the same hits and misses files, while `perf stat -p` counts the
server's syscalls by kind (one `epoll_wait` per turn of the asyncio loop), context switches and
task-clock; a wrapper around the server counts its garbage collections and their time
(`gc.callbacks`). With `--pyspy DIR`, one more run per target and kind under
`py-spy record --native -r 1000` (raw stacks to DIR). Why: in process the watch costs ~1-2 us per
answer, end to end more; these counts say whether the rest is the loop, the kernel or the GC.
Prints a markdown table (per answered query); results to stdout only. Bounded: dnsperf -l.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compare import ROOT, asked_once, dnsperf, free_port, query_files, start_nsd, wait_ready

EVENTS = {  # uvloop: epoll_pwait once per loop turn, recvmsg per datagram read (and one EAGAIN)
    "epoll_pwait": "syscalls:sys_enter_epoll_pwait",
    "recvmsg": "syscalls:sys_enter_recvmsg",
    "sendmsg": "syscalls:sys_enter_sendmsg",
    "send": "syscalls:sys_enter_sendto",
    "syscalls": "raw_syscalls:sys_enter",
    "cs": "context-switches",
}
PY_SPY = Path(sys.executable).with_name("py-spy")

# Runs the server with its garbage collections counted and timed; SIGUSR2 writes them out.
GC_WRAPPER = """
import collections, gc, json, signal, sys, time
stats = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0]}
began, target = [0.0], sys.argv[1]
def timed(phase, info):
    if phase == "start":
        began[0] = time.thread_time()
    else:
        g = info["generation"]
        stats["collections"][g] += 1
        stats["seconds"][g] += time.thread_time() - began[0]
gc.callbacks.append(timed)
def dump(*_):
    tracked = gc.get_objects()
    kinds = collections.Counter(type(o).__name__ for o in tracked)
    out = dict(stats, tracked=len(tracked), frozen=gc.get_freeze_count(), kinds=kinds.most_common(12))
    del tracked
    with open(target, "w") as f:
        json.dump(out, f)
signal.signal(signal.SIGUSR2, dump)
sys.argv = ["resolverguard", *sys.argv[2:]]
from resolverguard.cli import main
sys.exit(main())
"""


def start(work: Path, key: str, port: int, upstream: int, watch: bool) -> subprocess.Popen[bytes]:
    policy = work / f"rg-{key}.yaml"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream}']\nscoring: true\nquery_log: off\n"
        "rate_limit:\n  qps: 0\nlimits:\n  max_inflight: 8192\nworkers: 1\n"
        + ("client_watch:\n  enabled: true\n  action: log\n" if watch else "")
    )
    (work / "gcwrap.py").write_text(GC_WRAPPER)
    cmd = [sys.executable, str(work / "gcwrap.py"), str(work / f"gc-{key}.json")]
    cmd += ["serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    log = (work / f"rg-{key}.log").open("w")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)


def gc_stats(work: Path, key: str, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    path = work / f"gc-{key}.json"
    path.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 5
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.05)
    return dict(json.loads(path.read_text()))


def counted(pid: int, port: int, names: Path, seconds: float) -> dict[str, Any]:
    """dnsperf for `seconds` while perf counts the server's events."""
    events = ",".join(EVENTS.values()) + ",task-clock"
    perf = subprocess.Popen(
        ["perf", "stat", "-x", ";", "-e", events, "-p", str(pid), "--", "sleep", str(seconds + 0.5)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.2)
    run = dnsperf(port, names, seconds)
    _, err = perf.communicate(timeout=seconds + 30)
    counts: dict[str, float] = {}
    for line in err.splitlines():
        parts = line.split(";")
        if len(parts) > 2 and parts[0].replace(".", "").isdigit():
            counts[parts[2]] = float(parts[0])
    out = {name: counts.get(event, 0.0) for name, event in EVENTS.items()}
    out["task_clock_ms"] = counts.get("task-clock", 0.0)
    out["completed"] = run["completed"] or 0
    out["qps"] = run["qps"] or 0
    return out


def pyspy(pid: int, port: int, names: Path, seconds: float, out: Path) -> None:
    cmd = [str(PY_SPY), "record", "-r", "1000", "--native", "-f", "raw", "-o", str(out), "-p", str(pid)]
    spy = subprocess.Popen([*cmd, "-d", str(int(seconds))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    dnsperf(port, names, seconds)
    spy.wait(seconds + 60)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--pyspy", type=Path, help="also record py-spy raw stacks per target and kind here")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-watchprof-"))
    files = query_files(work, 200_000, random.Random(7), int(a.seconds * 200_000) * (a.rounds + 2))
    names = files["misses"].read_text().splitlines(keepends=True)
    share = len(names) // (a.rounds + 2)
    chunks = [names[i * share : (i + 1) * share] for i in range(a.rounds + 2)]
    (work / "prelude.txt").write_text("".join(chunks[0][:2000]))
    ports = {k: free_port() for k in ("nsd", "d", "g")}
    procs = [start_nsd(work, ports["nsd"])]
    load_before = os.getloadavg()
    results: dict[str, list[dict[str, Any]]] = {"d": [], "g": []}
    try:
        wait_ready(ports["nsd"])
        servers = {k: start(work, k, ports[k], ports["nsd"], k == "g") for k in results}
        procs += servers.values()
        for k in results:
            wait_ready(ports[k])
            asked_once(ports[k], work / "prelude.txt")
        time.sleep(0.5)
        if "flagged by the client watch" not in (work / "rg-g.log").read_text():
            sys.exit("(g)'s client was not flagged by the prelude")
        for r in range(a.rounds + (1 if a.pyspy else 0)):
            misses = work / f"misses-{r}.txt"
            misses.write_text("".join(chunks[r + 1]))
            order = ("d", "g") if r % 2 == 0 else ("g", "d")
            for kind, path in (("hits", files["hits"]), ("misses", misses)):
                for k in order:
                    if kind == "hits":
                        asked_once(ports[k], work / "warm.txt")
                    if r == a.rounds:
                        a.pyspy.mkdir(parents=True, exist_ok=True)
                        pyspy(servers[k].pid, ports[k], path, a.seconds, a.pyspy / f"{k}-{kind}.txt")
                        continue
                    before = gc_stats(work, k, servers[k])
                    row = counted(servers[k].pid, ports[k], path, a.seconds)
                    after = gc_stats(work, k, servers[k])
                    row["gc"] = [x - y for x, y in zip(after["collections"], before["collections"], strict=True)]
                    row["gc_ms"] = [1000 * (x - y) for x, y in zip(after["seconds"], before["seconds"], strict=True)]
                    row["tracked"], row["kinds"] = after["tracked"], after["kinds"]
                    row["kind"], row["round"] = kind, r
                    results[k].append(row)
                    print(k, kind, r, json.dumps(row), flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    report(results, load_before, os.getloadavg())


def report(results: dict[str, list[dict[str, Any]]], before: Any, after: Any) -> None:
    print(f"\nload average before {' '.join(f'{x:.2f}' for x in before)}, after {' '.join(f'{x:.2f}' for x in after)}")
    print(
        "\n| target | kind | QPS | CPU us | epoll_pwait | recvmsg | sendmsg | sendto | syscalls | ctx switches"
        " | gc gen0/1/2 per 1k | gc us |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for kind in ("hits", "misses"):
        for k, label in (("d", "(d) watch off"), ("g", "(g) watch on")):
            rows = [r for r in results[k] if r["kind"] == kind]
            n = max(1.0, sum(r["completed"] for r in rows))
            per = {e: sum(r[e] for r in rows) / n for e in EVENTS}
            gcs = [1000 * sum(r["gc"][g] for r in rows) / n for g in range(3)]
            print(
                f"| {label} | {kind} | {sum(r['qps'] for r in rows) / len(rows):.0f} "
                f"| {1000 * sum(r['task_clock_ms'] for r in rows) / n:.1f} "
                + "".join(f"| {per[e]:.3f} " for e in ("epoll_pwait", "recvmsg", "sendmsg", "send", "syscalls", "cs"))
                + f"| {'/'.join(f'{x:.2f}' for x in gcs)} | {1000 * sum(sum(r['gc_ms']) for r in rows) / n:.2f} |"
            )


if __name__ == "__main__":
    main()
