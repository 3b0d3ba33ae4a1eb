"""What a never-seen name's latency through the Unbound module is made of, stage by stage (issue #17, mod6).

    python bench/module_stages.py [--qps 2800] [--seconds 4] [--rounds 2] [--client-dir DIR]

Starts NSD, the verdict service (bench/traced_service.py) and Unbound (1 thread) with the module
(bench/traced_module.py, which loads unbound_client.py from `--client-dir`, default this checkout's),
plus plain Unbound beside it, and asks both at `--qps` (compare.py --module's latency runs: 20% of the
module's peak, two dnsperf at once, never-seen names, the first second left out) with per-query
latencies. Both processes record CLOCK_MONOTONIC timestamps, so each asked name's time splits into:

    gate     operate(NEW) entry -> the line sent (the first stage ran, the name is above it)
    upstream the line sent -> operate(MODDONE) entry (the iterator and NSD)
    wait     resolved(): MODDONE entry -> the verdict collected (Unbound's thread blocked)
    to_svc   the line sent -> the service read it;   svc   read -> answer written;
    model    the batch the name was in;              back  written -> the module read it
    outside  dnsperf's latency - (NEW entry -> MODDONE exit): Unbound before and after the module
             (its socket queue, the mesh), i.e. mostly waiting behind other queries

and prints p50/p90/p99 of each for asked and cleared names, the mean of each over the slowest 1% of
all names, and how much of Unbound's thread time went to the module (busy) and to waiting. Under
the bench lock: `flock /work/notes/bench.lock python bench/module_stages.py`.
"""

from __future__ import annotations

import argparse
import bisect
import concurrent.futures
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compare import (
    MODULE,
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

BENCH = Path(__file__).resolve().parent
NEW, MODDONE = 0, 5  # unboundmodule.MODULE_EVENT_NEW, MODULE_EVENT_MODDONE


def start_service(work: Path, trace: Path) -> tuple[subprocess.Popen[bytes], Path]:
    policy, sock = work / "verdicts.yaml", work / "verdicts.sock"
    policy.write_text("query_log: off\n")
    cmd = [sys.executable, str(BENCH / "traced_service.py"), str(trace), "unbound-service"]
    cmd += ["--config", str(policy), "--socket", str(sock)]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{BENCH}")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(work / "svc.log").open("w"))
    deadline = time.monotonic() + 60
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((work / "svc.log").read_text())
        time.sleep(0.1)
    return proc, sock


def latencies(port: int, names: Path, seconds: float, qps: float, warmup: float) -> dict[str, float]:
    """dnsperf at `qps` with per-answer lines: qname -> latency in ms (the first `warmup` s left out)."""
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(names), "-l", str(seconds + warmup)]
    cmd += ["-c", "8", "-q", "500", "-t", "2", "-S", "0", "-Q", str(int(qps)), "-v"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warmup + 60).stdout
    got = {}
    lines = [line for line in out.splitlines() if line.startswith("> ") and re.match(r".*\s[\d.]+$", line)]
    for line in lines[int(qps * warmup) :]:
        fields = line.split()
        got[fields[2].rstrip(".").lower()] = float(fields[-1]) * 1000
    return got


def schedstat(pid: int) -> tuple[float, float, int]:
    """(s on a CPU, s runnable but waiting for one, times switched in) summed over the process's threads."""
    run = wait = slices = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        a, b, c = (int(x) for x in (task / "schedstat").read_text().split())
        run, wait, slices = run + a, wait + b, slices + c
    return run / 1e9, wait / 1e9, slices


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def analyse(module_trace: Path, service_trace: Path, e2e: dict[str, float]) -> dict[str, Any]:
    ops: dict[str, dict[int, tuple[int, int]]] = {}
    sends: dict[int, tuple[str, int, int]] = {}
    takes: dict[int, int] = {}
    resolved: dict[int, tuple[int, int]] = {}
    busy = waited = 0
    first = last = None
    for line in module_trace.read_text().splitlines():
        kind, *f = line.split("\t")
        if kind == "op":
            start, end = int(f[2]), int(f[3])
            ops.setdefault(f[1].rstrip(".").lower(), {})[int(f[0])] = (start, end)
            busy += end - start
            first = start if first is None else min(first, start)
            last = end if last is None else max(last, end)
        elif kind == "send" and int(f[1]) >= 0:
            sends[int(f[1])] = (f[0].rstrip(".").lower(), int(f[2]), int(f[3]))
        elif kind == "take":
            takes.setdefault(int(f[0]), int(f[1]))
        elif kind == "resolved":
            resolved[int(f[0])] = (int(f[1]), int(f[2]))
            waited += int(f[2]) - int(f[1])
    recv: dict[int, int] = {}
    written: dict[int, int] = {}
    batches: list[tuple[int, int, int]] = []
    for line in service_trace.read_text().splitlines():
        kind, *f = line.split("\t")
        if kind == "recv":
            recv.setdefault(int(f[0]), int(f[1]))
        elif kind == "write":
            for n in f[0].split(","):
                if n.isdigit():
                    written.setdefault(int(n), int(f[1]))
        elif kind == "batch":
            batches.append((int(f[1]), int(f[2]), int(f[0])))
    batches.sort()
    starts = [b[0] for b in batches]
    parts: dict[str, list[float]] = {}
    for line in module_trace.read_text().splitlines():
        if line.startswith("part\t"):
            _, name, start, end = line.split("\t")
            parts.setdefault(name, []).append((int(end) - int(start)) / 1e3)
    rows: dict[str, dict[str, float]] = {}
    asked_names = {name: number for number, (name, *_) in sends.items()}
    for name, latency in e2e.items():
        op = ops.get(name, {})
        if NEW not in op or MODDONE not in op:
            continue
        new, done = op[NEW], op[MODDONE]
        row = {
            "t": new[0] / 1e9,
            "e2e": latency,
            "module_span": (done[1] - new[0]) / 1e6,
            "new_op": (new[1] - new[0]) / 1e6,
        }
        row["outside"] = latency - row["module_span"]
        row["moddone_op"] = (done[1] - done[0]) / 1e6
        number = asked_names.get(name)
        if number is not None and number in resolved and number in recv and number in written:
            _, s0, s1 = sends[number]
            row["gate"] = (s0 - new[0]) / 1e6
            row["upstream"] = (done[0] - s1) / 1e6
            r0, r1 = resolved[number]
            row["wait"] = (r1 - r0) / 1e6
            row["to_svc"] = (recv[number] - s1) / 1e6
            row["svc"] = (written[number] - recv[number]) / 1e6
            i = bisect.bisect_left(starts, recv[number])
            if i < len(batches) and batches[i][0] <= written[number]:
                row["svc_to_batch"] = (batches[i][0] - recv[number]) / 1e6
                row["model"] = (batches[i][1] - batches[i][0]) / 1e6
                row["batch_size"] = batches[i][2]
                row["batch_to_write"] = (written[number] - batches[i][1]) / 1e6
            if number in takes:
                row["back"] = (takes[number] - written[number]) / 1e6
                row["verdict_after_moddone"] = (takes[number] - done[0]) / 1e6
            row["asked"] = 1
        rows[name] = row
    span = ((last or 0) - (first or 0)) / 1e9
    part_us = {k: [round(pct(v, q), 1) for q in (0.5, 0.9, 0.99)] for k, v in parts.items()}
    return {"rows": rows, "span_s": span, "busy_s": busy / 1e9, "waited_s": waited / 1e9, "parts_us": part_us}


def covered(intervals: list[tuple[int, int]], start: int, end: int) -> int:
    """Nanoseconds of [start, end) that the sorted, non-overlapping `intervals` cover."""
    i = max(0, bisect.bisect_left(intervals, (start, start)) - 1)
    total = 0
    while i < len(intervals) and intervals[i][0] < end:
        total += max(0, min(intervals[i][1], end) - max(intervals[i][0], start))
        i += 1
    return total


def slow_share(module_trace: Path, rows: dict[str, dict[str, float]]) -> str:
    """What Unbound's thread did while the slowest 1% of names were in the module: run Python (any
    query's operate), of it wait for verdicts (any query's), or neither (Unbound's own C work, or
    no CPU at all)."""
    ops: list[tuple[int, int]] = []
    waits: list[tuple[int, int]] = []
    for line in module_trace.read_text().splitlines():
        kind, *f = line.split("\t")
        if kind == "op":
            ops.append((int(f[2]), int(f[3])))
        elif kind == "resolved":
            waits.append((int(f[1]), int(f[2])))
    ops.sort()
    waits.sort()
    every = sorted(rows.values(), key=lambda r: r["e2e"])
    slow = every[-max(1, len(every) // 100) :]
    spans = [(int(r["t"] * 1e9), int(r["t"] * 1e9 + r["module_span"] * 1e6)) for r in slow]
    total = sum(b - a for a, b in spans) or 1
    python = sum(covered(ops, a, b) for a, b in spans)
    blocked = sum(covered(waits, a, b) for a, b in spans)
    return (
        f"while the slowest 1% ({len(slow)}) were in the module ({total / 1e6:.0f} ms summed), Unbound's thread ran "
        f"Python {100 * python / total:.1f}% of the time (of it blocked on verdicts {100 * blocked / total:.1f}%), "
        f"neither {100 * (total - python) / total:.1f}% (Unbound's own work, or no CPU)"
    )


def summary(result: dict[str, Any], plain: dict[str, float]) -> list[str]:
    rows = result["rows"]
    asked = [r for r in rows.values() if r.get("asked")]
    cleared = [r for r in rows.values() if not r.get("asked")]
    keys = [
        "e2e",
        "outside",
        "module_span",
        "new_op",
        "moddone_op",
        "gate",
        "upstream",
        "wait",
        "to_svc",
        "svc_to_batch",
        "model",
        "batch_size",
        "batch_to_write",
        "svc",
        "back",
        "verdict_after_moddone",
    ]
    beside = list(plain.values())
    out = [
        f"names with a latency and a trace: {len(rows)} (asked {len(asked)}, cleared {len(cleared)}); "
        f"plain Unbound beside it p50/p99 {pct(beside, 0.5):.3f}/{pct(beside, 0.99):.3f} ms",
        f"Unbound's thread: {result['span_s']:.2f} s traced, in the module {result['busy_s']:.3f} s "
        f"({100 * result['busy_s'] / max(result['span_s'], 1e-9):.1f}%), of it waiting for verdicts "
        f"{result['waited_s']:.3f} s ({100 * result['waited_s'] / max(result['span_s'], 1e-9):.1f}%)",
        "",
        result.get("slow_share", ""),
        f"parts of the NEW op, us p50/p90/p99: {result.get('parts_us', {})}",
        "",
        "| ms | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    every = list(rows.values())
    slow = sorted(every, key=lambda r: r["e2e"])[-max(1, len(every) // 100) :]
    for label, group, q in (
        ("asked p50", asked, 0.5), ("asked p90", asked, 0.9), ("asked p99", asked, 0.99),
        ("cleared p50", cleared, 0.5), ("cleared p99", cleared, 0.99),
    ):  # fmt: skip
        cells = [pct([r[k] for r in group if k in r], q) for k in keys]
        out.append(f"| {label} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    cells = [statistics.fmean([r[k] for r in slow if k in r] or [float("nan")]) for k in keys]
    out.append(f"| slowest 1% mean ({len(slow)}, {sum(1 for r in slow if r.get('asked'))} asked) | "
               + " | ".join(f"{c:.3f}" for c in cells) + " |")  # fmt: skip
    out.append(f"| all p99 | {pct([r['e2e'] for r in every], 0.99):.3f} |" + " |" * (len(keys) - 1))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--qps", type=float, default=2800.0)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--client-dir", type=Path, default=ROOT / "resolverguard")
    p.add_argument("--untraced", action="store_true", help="the module and service as shipped: latency and CPU only")
    p.add_argument("--env", default="", help="more environment for Unbound: K=V,K=V")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-stages-"))
    files = query_files(work, 1000, __import__("random").Random(7), 1000)
    latency_names = files["misses"].with_name("misses.latency.txt")
    ports = {"nsd": free_port(), "module": free_port(), "plain": free_port()}
    module_trace, service_trace = work / "module.trace", work / "service.trace"
    procs = [start_nsd(work, ports["nsd"])]
    try:
        wait_ready(ports["nsd"])
        service, sock = start_verdicts(work, "plain") if a.untraced else start_service(work, service_trace)
        procs.append(service)
        script = MODULE if a.untraced else BENCH / "traced_module.py"
        extra_env = dict(kv.split("=", 1) for kv in a.env.split(",") if kv)
        os.environ.update(
            RESOLVERGUARD_TRACE=str(module_trace), RESOLVERGUARD_CLIENT_DIR=str(a.client_dir), **extra_env
        )
        procs.append(start_unbound(work, ports["module"], ports["nsd"], verdicts=sock, script=script))
        unbound = procs[-1]
        procs.append(start_unbound(work, ports["plain"], ports["nsd"]))
        for key in ("module", "plain"):
            wait_ready(ports[key])
        load = load_average()
        e2e: dict[str, float] = {}
        plain: dict[str, float] = {}
        watched = {"unbound+module": unbound.pid, "service": service.pid, "plain unbound": procs[-1].pid}
        sched: dict[str, Any] = {}
        for r in range(a.rounds + 1):  # round 0: warm-up, not counted
            if r == 1:
                sched = {k: schedstat(v) for k, v in watched.items()}
                clock = time.monotonic()
            names = round_misses(latency_names, 100 + r, "stage")
            other = round_misses(latency_names, 200 + r, "stageplain")
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                mine = pool.submit(latencies, ports["module"], names, a.seconds, a.qps, a.warmup)
                theirs = pool.submit(latencies, ports["plain"], other, a.seconds, a.qps, a.warmup)
                if r:
                    e2e.update(mine.result())
                    plain.update(theirs.result())
                else:
                    mine.result(), theirs.result()
        wall = time.monotonic() - clock
        sched = {k: [round(x - y, 3) for x, y in zip(schedstat(v), sched[k], strict=True)] for k, v in watched.items()}
        load_after = load_average()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(20)
    if a.untraced:
        rows = {n: {"t": 0.0, "e2e": v} for n, v in e2e.items()}
        result = {"rows": rows, "span_s": 0.0, "busy_s": 0.0, "waited_s": 0.0}
    else:
        result = analyse(module_trace, service_trace, e2e)
        result["slow_share"] = slow_share(module_trace, result["rows"])
    (work / "rows.json").write_text(__import__("json").dumps(result))
    lines = [
        f"module_stages: client {a.client_dir}, {a.qps:g} qps, {a.rounds} x {a.seconds:g} s, env {a.env or '-'}, "
        f"load before {load}, after {load_after}",
        f"per process over the timed rounds ({wall:.1f} s): [s on a CPU, s runnable waiting for a CPU, "
        f"switches in] {sched}",
        *summary(result, plain),
        f"traces and rows.json in {work}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
