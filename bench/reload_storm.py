"""Storms of reloads under load: does a client that asks again still get every answer?

    python bench/reload_storm.py [--storms 3] [--reloads 100] [--qps 1840] [--out reload_storm]

Why (issue #17): bench/module_procs.py runs one storm per row and saw no failed lookup at 1,552-1,951
never-seen names/s; ad hoc runs at 1,840/s, storm after storm on the same processes, did. Each storm
is `--reloads` SIGHUPs 0.1 s apart (to every process at once: `systemctl reload unbound`) while
dnsperf asks at `--qps` (lost answers, the module's count of queries in flight), then as many under
the retrying client of bench/reload_retry.py (1 s, 3 tries: lookups, retried, failed). Rows: (b2)
plain Unbound with 2 threads, (m2) with the module, (mp) two processes of the module on one port
(`resolverguard unbound-module --processes 2`); NSD upstream, one verdict service. Loopback only;
bounded by --storms x --reloads.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import (  # noqa: E402
    free_port,
    hup_each,
    load_average,
    query_files,
    reloads_under_load,
    round_misses,
    start_nsd,
    start_verdicts,
    wait_ready,
)
from module_procs import ROWS, start_row  # noqa: E402
from reload_retry import fresh_names, retry_under_reloads  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("b2", "m2", "mp")


def storms(
    work: Path, key: str, upstream: int, sock: Path, misses: Path, a: argparse.Namespace
) -> list[dict[str, Any]]:
    port, procs = start_row(work, key, upstream, sock)
    logs = [work / f"{key}-{i}" / f"unbound-{port}.log" for i in range(len(procs))]
    count = int(a.qps * (a.reloads * 0.2 + 4)) + 10
    lines = misses.read_text().splitlines()
    out = []
    try:
        for storm in range(a.storms):
            for log in logs:  # the module's in-flight count of this storm only
                log.write_text("")
            got = reloads_under_load(
                port, procs, logs, hup_each(procs), round_misses(misses, storm, tag=key), a.qps, a.reloads
            )
            names = fresh_names(lines, f"s{storm}{key}", count)
            got["retrying"] = retry_under_reloads(port, procs, hup_each(procs), names, a.qps, a.reloads)
            out.append(got)
            print(key, storm, {k: got[k] for k in ("lost", "in_flight")}, got["retrying"]["failed"], flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    return out


def write(rows: dict[str, list[dict[str, Any]]], a: argparse.Namespace, load: tuple[str, str], path: Path) -> str:
    lines = [
        f"# Storms of reloads under load (bench/reload_storm.py), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{a.storms} storms in a row on the same processes, each {a.reloads} SIGHUPs 0.1 s apart (to every process "
        f"at once) at {a.qps:g} never-seen names/s, dnsperf and then the retrying client (1 s, 3 tries). Load average "
        f"before {load[0]}, after {load[1]}.",
        "",
        "| row | storm | dnsperf sent | lost | in flight (module's count) | retrying: lookups | retried | failed "
        "| alive |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, got in rows.items():
        for i, r in enumerate(got):
            t = r["retrying"]
            flight = "-" if r["in_flight"] is None else r["in_flight"]
            lines.append(
                f"| {ROWS[key][0]} | {i + 1} | {r['sent']} | {r['lost']} | {flight} | {t['lookups']} | {t['retried']} "
                f"| {t['failed']} | {r['alive'] and t['alive']} |"
            )
    text = "\n".join(lines) + "\n"
    path.with_suffix(".md").write_text(text)
    path.with_suffix(".json").write_text(json.dumps({"rows": rows, "load": load, "qps": a.qps}, indent=1) + "\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--storms", type=int, default=3)
    p.add_argument("--reloads", type=int, default=100)
    p.add_argument("--qps", type=float, default=1840.0)
    p.add_argument("--out", default="reload_storm")
    a = p.parse_args()
    before = load_average()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="rg-storm-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        files = query_files(work, 1000, random.Random(20261204), misses=400_000)
        upstream = free_port()
        nsd = start_nsd(work, upstream)
        service, sock = start_verdicts(work, "storm")
        try:
            wait_ready(upstream)
            for key in KEYS:
                rows[key] = storms(work, key, upstream, sock, files["misses"], a)
        finally:
            for proc in (service, nsd):
                proc.terminate()
                proc.wait(10)
    print(write(rows, a, (before, load_average()), RESULTS / a.out))


if __name__ == "__main__":
    main()
