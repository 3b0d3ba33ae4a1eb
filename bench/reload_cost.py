"""What one reload costs Unbound, with and without a Python module: time to serve again, and memory.

    python bench/reload_cost.py [--reloads 600] [--every 100] [--out reload_cost]

Why (issue #17): under 100 reloads 0.1 s apart at ~1,800 never-seen names/s on 2 cores, a client
that asks again after 1 s (3 tries) saw lookups fail with the module loaded and none with plain
Unbound; and `bench/adversarial.py` counts memory over many reloads of `serve`, never of Unbound.
Here one idle Unbound of one thread (NSD upstream) is sent SIGHUP `--reloads` times, one at a time:
each time, the seconds until its log says `start of service` again; every `--every` reloads, the
p50/p90 of those and the process's RSS. Rows: (b) plain Unbound, (n) with bench/noop_module.py (any
Python module's floor), (m) with resolverguard's module and its verdict service. Also per chunk the
CPU a reload costs the process (user and system ms, /proc), and, with `strace` installed, the system
calls of `--syscalls` (5) more reloads, counted (`strace -c`): where plain Unbound's reload goes
(session 21: ~70,000 `getrandom` calls a reload, see docs/unbound.md). Loopback only; bounded by
--reloads.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import (  # noqa: E402
    NOOP_MODULE,
    free_port,
    load_average,
    start_nsd,
    start_unbound,
    start_verdicts,
    wait_ready,
)

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = {"b": "(b) plain Unbound", "n": "(n) + do-nothing Python module", "m": "(m) + resolverguard's module"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def cpu_parts(pid: int) -> tuple[float, float]:
    """The process's user and system CPU seconds so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def reload_once(proc: subprocess.Popen[bytes], log: Path, what: str) -> float:
    """SIGHUP, then the seconds until the log says `start of service` once more."""
    before = log.read_text(errors="replace").count("start of service")
    start = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    while log.read_text(errors="replace").count("start of service") <= before:
        if proc.poll() is not None or time.monotonic() - start > 30:
            raise RuntimeError(f"{what} did not come back from a reload")
        time.sleep(0.002)
    return time.monotonic() - start


def syscalls_per_reload(
    proc: subprocess.Popen[bytes], log: Path, what: str, count: int, work: Path
) -> dict[str, float]:
    """`strace -c` over `count` reloads: the five most frequent system calls, calls per reload
    (empty without strace, or with count 0)."""
    if not count or shutil.which("strace") is None:
        return {}
    out = work / f"strace-{proc.pid}.txt"
    tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(proc.pid), "-o", str(out)], stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # (attached to every thread)
    for _ in range(count):
        reload_once(proc, log, what)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(30)
    calls: dict[str, float] = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[3].isdigit() and fields[-1] != "total":
            calls[fields[-1]] = round(int(fields[3]) / count, 1)
    return dict(sorted(calls.items(), key=lambda item: -item[1])[:5])


def reload_row(
    work: Path, key: str, upstream: int, reloads: int, every: int, syscalls: int
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """SIGHUP, wait for `start of service`, `reloads` times; a summary every `every` reloads (the
    reloads' CPU included); then the system calls of `syscalls` more."""
    sock = None
    service = None
    if key == "m":
        service, sock = start_verdicts(work, "cost")
    port = free_port()
    proc = start_unbound(work, port, upstream, "", 1, sock, NOOP_MODULE if key == "n" else None)
    log = work / f"unbound-{port}.log"
    out: list[dict[str, Any]] = []
    try:
        wait_ready(port)
        out.append({"reloads": 0, "rss_mb": rss_mb(proc.pid)})
        times: list[float] = []
        cpu = cpu_parts(proc.pid)
        for i in range(reloads):
            times.append(reload_once(proc, log, ROWS[key]))
            if (i + 1) % every == 0:
                chunk, now = sorted(times[-every:]), cpu_parts(proc.pid)
                out.append(
                    {
                        "reloads": i + 1,
                        "p50_ms": round(chunk[len(chunk) // 2] * 1000, 1),
                        "p90_ms": round(chunk[int(len(chunk) * 0.9)] * 1000, 1),
                        "rss_mb": rss_mb(proc.pid),
                        "user_ms": round((now[0] - cpu[0]) * 1000 / every, 1),
                        "sys_ms": round((now[1] - cpu[1]) * 1000 / every, 1),
                    }
                )
                cpu = now
        calls = syscalls_per_reload(proc, log, ROWS[key], syscalls, work)
    finally:
        for p in (proc, service):
            if p is not None:
                p.terminate()
                p.wait(10)
    return out, calls


def write(
    rows: dict[str, list[dict[str, Any]]],
    calls: dict[str, dict[str, float]],
    a: argparse.Namespace,
    load: tuple[str, str],
    path: Path,
) -> str:
    lines = [
        f"# What a reload costs Unbound (bench/reload_cost.py), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"One idle Unbound of 1 thread, SIGHUP {a.reloads} times one at a time (each after the last one's "
        f"`start of service`); per {a.every} reloads: p50/p90 ms until it served again, the CPU a reload cost "
        f"the process (user + system ms, mean), RSS after. Load average before {load[0]}, after {load[1]}.",
        "",
        "| row | RSS at start MB | " + " | ".join(f"after {x['reloads']}" for x in rows["b"][1:]) + " |",
        "|---|---:|" + "---|" * (len(rows["b"]) - 1),
    ]
    for key, got in rows.items():
        cells = [
            f"{x['p50_ms']}/{x['p90_ms']} ms, CPU {x['user_ms']} + {x['sys_ms']} ms, {x['rss_mb']} MB" for x in got[1:]
        ]
        lines.append(f"| {ROWS[key]} | {got[0]['rss_mb']} | " + " | ".join(cells) + " |")
    for key, got in rows.items():
        growth = (got[-1]["rss_mb"] - got[1]["rss_mb"]) / max(1, got[-1]["reloads"] - got[1]["reloads"]) * 1024
        user = sum(x["user_ms"] for x in got[1:]) / len(got[1:])
        system = sum(x["sys_ms"] for x in got[1:]) / len(got[1:])
        lines.append("")
        lines.append(
            f"{ROWS[key]}: RSS grows ~{growth:.0f} KB a reload (from reload {got[1]['reloads']} on); a reload "
            f"costs ~{user:.1f} ms user + {system:.1f} ms system CPU."
        )
        if calls.get(key):
            counted = ", ".join(f"{name} {n:,.0f}" for name, n in calls[key].items())
            lines.append(f"System calls per reload (`strace -c`, {a.syscalls} more reloads): {counted}.")
    text = "\n".join(lines) + "\n"
    path.with_suffix(".md").write_text(text)
    path.with_suffix(".json").write_text(json.dumps({"rows": rows, "syscalls": calls, "load": load}, indent=1) + "\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reloads", type=int, default=600)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--syscalls", type=int, default=5, help="reloads under strace -c after the rest (0: none; slow)")
    p.add_argument("--out", default="reload_cost")
    a = p.parse_args()
    before = load_average()
    rows, calls = {}, {}
    with tempfile.TemporaryDirectory(prefix="rg-reload-cost-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        upstream = free_port()
        nsd = start_nsd(work, upstream)
        try:
            wait_ready(upstream)
            for key in ROWS:
                rows[key], calls[key] = reload_row(work, key, upstream, a.reloads, a.every, a.syscalls)
                print(key, rows[key][-1], calls[key], flush=True)
        finally:
            nsd.terminate()
            nsd.wait(10)
    print(write(rows, calls, a, (before, load_average()), RESULTS / a.out))


if __name__ == "__main__":
    main()
