"""Two cores for the module without one GIL: two Unbound processes of one thread each on one port
(`so-reuseport: yes`), each with its own embedded Python, against one Unbound of two threads.

    python bench/module_procs.py [--seconds 10] [--rounds 3] [--tag NAME]

Why: Unbound's threads share one embedded Python, so a Python module with `num-threads: 2` answers
never-seen names at about half plain Unbound's rate at best (the do-nothing module's ceiling,
docs/unbound.md). Two processes share no interpreter; the kernel spreads the clients' sockets over
them; each keeps its own cache, and both ask the one verdict service. Rows, measured in turn, each
round on never-seen names of its own (bench/compare.py's files, NSD as the upstream):

  (b2)  plain Unbound, 2 threads                 (m2)  + the module, 2 threads
  (bp)  2 plain Unbound processes of 1 thread    (mp)  + the module, 2 processes of 1 thread

Ratios (medians of the rounds' ratios, as compare.py): (m2)/(b2), (mp)/(b2), (mp)/(bp).
Loopback only; bounded by --seconds per run and --rounds.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import (  # noqa: E402
    cpu_seconds,
    dnsperf,
    free_port,
    load_average,
    median,
    query_files,
    round_misses,
    start_nsd,
    start_unbound,
    start_verdicts,
    wait_ready,
)

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = {  # key: (label, processes, threads each, module)
    "b2": ("(b2) plain Unbound, 2 threads", 1, 2, False),
    "m2": ("(m2) Unbound + module, 2 threads", 1, 2, True),
    "bp": ("(bp) 2 plain Unbound processes of 1 thread, one port (so-reuseport)", 2, 1, False),
    "mp": ("(mp) 2 Unbound processes of 1 thread + module, one port (so-reuseport)", 2, 1, True),
}
RATIOS = {"(m2)/(b2)": ("m2", "b2"), "(mp)/(b2)": ("mp", "b2"), "(mp)/(bp)": ("mp", "bp"), "(bp)/(b2)": ("bp", "b2")}


def start_row(work: Path, key: str, upstream: int, verdicts: Path | None) -> tuple[int, list[subprocess.Popen[bytes]]]:
    """A row's Unbound processes on one fresh port; each process gets a directory of its own (its
    config, pidfile and control socket are named by the port)."""
    _, processes, threads, module = ROWS[key]
    port = free_port()
    extra = "  so-reuseport: yes\n" if processes > 1 else ""
    procs = []
    for i in range(processes):
        own = work / f"{key}-{i}"
        own.mkdir()
        procs.append(start_unbound(own, port, upstream, extra, threads, verdicts if module else None))
    wait_ready(port)
    return port, procs


def run(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(20261204)
    files = query_files(work, 500_000, rng, misses=1_000_000)
    upstream = free_port()
    helpers: list[subprocess.Popen[bytes]] = [start_nsd(work, upstream)]
    wait_ready(upstream)
    service, sock = start_verdicts(work, "procs")
    helpers.append(service)
    rows = {key: start_row(work, key, upstream, sock) for key in ROWS}
    time.sleep(2.0)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {k: {"hits": [], "misses": []} for k in ROWS}
    keys = list(ROWS)
    for r in range(a.rounds):
        names = {"hits": files["hits"], "misses": round_misses(files["misses"], r + 1)}
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            port, procs = rows[key]
            pids = [p.pid for p in procs] + ([service.pid] if ROWS[key][3] else [])
            for kind, path in names.items():
                if kind == "hits" and r == 0:  # each process's cache, as compare.py warms its rows
                    for _ in range(3 * len(procs)):
                        dnsperf(port, path.with_name("warm.txt"), 2.0)
                before = sum(cpu_seconds(p) for p in pids)
                got = dnsperf(port, path, a.seconds)
                got["cpu_s"] = round(sum(cpu_seconds(p) for p in pids) - before, 2)
                results[key][kind].append(got)
    alive = {key: all(p.poll() is None for p in procs) for key, (_, procs) in rows.items()}
    everything = [p for _, procs in rows.values() for p in procs] + helpers
    for p in everything:
        p.terminate()
    for p in everything:  # gone before the work directory is removed
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    ratios = {}
    for name, (top, bottom) in RATIOS.items():
        ratios[name] = {
            kind: median(
                [
                    (t["qps"] / b["qps"]) if t.get("qps") and b.get("qps") else None
                    for t, b in zip(results[top][kind], results[bottom][kind], strict=True)
                ]
            )
            for kind in ("hits", "misses")
        }
    return {"results": results, "ratios": ratios, "alive": alive}


def write(out: dict[str, Any], a: argparse.Namespace, load: tuple[str, str], path: Path) -> str:
    lines = [
        f"# The module on two cores: 2 Unbound processes against 2 threads (bench/module_procs.py), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"dnsperf -c 8 -q 500, {a.seconds:g} s per run, {a.rounds} rounds of every row in turn, each round on "
        f"never-seen names of its own; NSD upstream; one verdict service. Load average before {load[0]}, "
        f"after {load[1]}.",
        "",
        "| row | hits QPS (median) | misses QPS (median) | misses CPU s (median, service included) | alive |",
        "|---|---:|---:|---:|---|",
    ]
    for key, (label, *_rest) in ROWS.items():
        r = out["results"][key]
        lines.append(
            f"| {label} | {median([x.get('qps') for x in r['hits']]):.0f} "
            f"| {median([x.get('qps') for x in r['misses']]):.0f} | {median([x['cpu_s'] for x in r['misses']])} "
            f"| {out['alive'][key]} |"
        )
    lines += ["", "| ratio (medians of the rounds' ratios) | hits | misses |", "|---|---:|---:|"]
    for name, v in out["ratios"].items():
        lines.append(f"| {name} | {v['hits']:.3f} | {v['misses']:.3f} |")
    text = "\n".join(lines) + "\n"
    path.with_suffix(".md").write_text(text)
    path.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tag", default="")
    a = p.parse_args()
    for tool in ("unbound", "nsd", "dnsperf"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (bench/run.sh installs it)")
    before = load_average()
    with tempfile.TemporaryDirectory(prefix="rg-procs-", ignore_cleanup_errors=True) as tmp:
        out = run(a, Path(tmp))
    name = "module_procs" + (f"_{a.tag}" if a.tag else "")
    print(write(out, a, (before, load_average()), RESULTS / name))


if __name__ == "__main__":
    main()
