"""What one reload costs Unbound, with and without a Python module: time to serve again, and memory.

    python bench/reload_cost.py [--reloads 600] [--every 100] [--out reload_cost]

Why (issue #17): under 100 reloads 0.1 s apart at ~1,800 never-seen names/s on 2 cores, a client
that asks again after 1 s (3 tries) saw lookups fail with the module loaded and none with plain
Unbound; and `bench/adversarial.py` counts memory over many reloads of `serve`, never of Unbound.
Here one idle Unbound of one thread (NSD upstream) is sent SIGHUP `--reloads` times, one at a time:
each time, the seconds until its log says `start of service` again; every `--every` reloads, the
p50/p90 of those and the process's RSS. Rows: (b) plain Unbound, (n) with bench/noop_module.py (any
Python module's floor), (m) with resolverguard's module and its verdict service. Loopback only;
bounded by --reloads.
"""

from __future__ import annotations

import argparse
import json
import signal
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


def reload_row(work: Path, key: str, upstream: int, reloads: int, every: int) -> list[dict[str, Any]]:
    """SIGHUP, wait for `start of service`, `reloads` times; a summary every `every` reloads."""
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
        for i in range(reloads):
            before = log.read_text(errors="replace").count("start of service")
            start = time.monotonic()
            proc.send_signal(signal.SIGHUP)
            while log.read_text(errors="replace").count("start of service") <= before:
                if proc.poll() is not None or time.monotonic() - start > 30:
                    raise RuntimeError(f"{ROWS[key]} did not come back from reload {i + 1}")
                time.sleep(0.002)
            times.append(time.monotonic() - start)
            if (i + 1) % every == 0:
                chunk = sorted(times[-every:])
                out.append(
                    {
                        "reloads": i + 1,
                        "p50_ms": round(chunk[len(chunk) // 2] * 1000, 1),
                        "p90_ms": round(chunk[int(len(chunk) * 0.9)] * 1000, 1),
                        "rss_mb": rss_mb(proc.pid),
                    }
                )
    finally:
        for p in (proc, service):
            if p is not None:
                p.terminate()
                p.wait(10)
    return out


def write(rows: dict[str, list[dict[str, Any]]], a: argparse.Namespace, load: tuple[str, str], path: Path) -> str:
    lines = [
        f"# What a reload costs Unbound (bench/reload_cost.py), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"One idle Unbound of 1 thread, SIGHUP {a.reloads} times one at a time (each after the last one's "
        f"`start of service`); per {a.every} reloads: p50/p90 ms until it served again, RSS after. Load average "
        f"before {load[0]}, after {load[1]}.",
        "",
        "| row | RSS at start MB | " + " | ".join(f"after {x['reloads']}" for x in rows["b"][1:]) + " |",
        "|---|---:|" + "---|" * (len(rows["b"]) - 1),
    ]
    for key, got in rows.items():
        cells = [f"{x['p50_ms']}/{x['p90_ms']} ms, {x['rss_mb']} MB" for x in got[1:]]
        lines.append(f"| {ROWS[key]} | {got[0]['rss_mb']} | " + " | ".join(cells) + " |")
    for key, got in rows.items():
        growth = (got[-1]["rss_mb"] - got[1]["rss_mb"]) / max(1, got[-1]["reloads"] - got[1]["reloads"]) * 1024
        lines.append("")
        lines.append(f"{ROWS[key]}: RSS grows ~{growth:.0f} KB a reload (from reload {got[1]['reloads']} on).")
    text = "\n".join(lines) + "\n"
    path.with_suffix(".md").write_text(text)
    path.with_suffix(".json").write_text(json.dumps({"rows": rows, "load": load}, indent=1) + "\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reloads", type=int, default=600)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--out", default="reload_cost")
    a = p.parse_args()
    before = load_average()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="rg-reload-cost-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        upstream = free_port()
        nsd = start_nsd(work, upstream)
        try:
            wait_ready(upstream)
            for key in ROWS:
                rows[key] = reload_row(work, key, upstream, a.reloads, a.every)
                print(key, rows[key][-1], flush=True)
        finally:
            nsd.terminate()
            nsd.wait(10)
    print(write(rows, a, (before, load_average()), RESULTS / a.out))


if __name__ == "__main__":
    main()
