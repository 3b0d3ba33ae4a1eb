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

Ratios (medians of the rounds' ratios, as compare.py): (m2)/(b2), (mp)/(b2), (mp)/(bp). Every row
gets never-seen names of its own in every round: (m2) and (mp) share the verdict service, and its
verdict cache would otherwise flatter the row asked second.

Then p50/p99 at 20% of (m2)'s peak, (m2) and (mp) each measured at the same time as (b2)
(compare.latency_rounds: two dnsperf at once, names of their own, first second left out): the
module's added p99 with 2 threads against 2 processes.

Then `--reloads` reloads under load per row, last (a reload empties Unbound's caches), at 20% of
(m2)'s never-seen peak, as bench/compare.py: dnsperf's lost answers and the module's count of queries
in flight at the reloads, then a client that asks again (bench/reload_retry.py: 1 s, 3 tries). (b2)
and (m2) are reloaded as compare.py does (`unbound-control reload` and SIGHUP alternated); (bp) and
(mp) with bare SIGHUPs to both at once (what `systemctl reload unbound` sent with the units
`resolverguard unbound-module --processes 2` printed before session 22; their `ExecReload=` now
sleeps 0.3 s after the signal, which spaces reloads out: bench/reload_storm.py --settle).
Loopback only; bounded by --seconds per run, --rounds and --reloads.
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
    control_or_hup,
    cpu_seconds,
    dnsperf,
    free_port,
    hup_each,
    latency_rounds,
    load_average,
    median,
    query_files,
    reloads_under_load,
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
LATENCY_BASE = {"m2": "b2", "mp": "b2"}  # the rows whose added p99 is measured, against the row beside them
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
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            names = {"hits": files["hits"], "misses": round_misses(files["misses"], r + 1, tag=key)}
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
    latency: dict[str, Any] = {key: {"hits": {}, "misses": {}} for key in ROWS}
    rate = {kind: 0.2 * (median([x.get("qps") for x in results["m2"][kind]]) or 0) for kind in ("hits", "misses")}
    ports = {key: port for key, (port, _) in rows.items()}
    latency_rounds(tuple((key,) for key in ROWS), ports, files, rate, a.rounds, latency, LATENCY_BASE)
    alive = {key: all(p.poll() is None for p in procs) for key, (_, procs) in rows.items()}
    reload_qps = 0.2 * (median([x.get("qps") for x in results["m2"]["misses"]]) or 0)
    reloads = {key: reload_row(work, key, *rows[key], files["misses"], reload_qps, a.reloads) for key in ROWS}
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
    return {
        "results": results,
        "ratios": ratios,
        "alive": alive,
        "latency": latency,
        "latency_qps": rate,
        "reloads": reloads,
    }


def reload_row(
    work: Path, key: str, port: int, procs: list[subprocess.Popen[bytes]], misses: Path, qps: float, reloads: int
) -> dict[str, Any]:
    """dnsperf under `reloads` reloads, then the retrying client under as many, on names of the row's own."""
    from reload_retry import fresh_names, retry_under_reloads  # (it imports compare)

    if not reloads:
        return {}
    dirs = [work / f"{key}-{i}" for i in range(len(procs))]
    reload = control_or_hup(dirs[0], port, procs[0]) if len(procs) == 1 else hup_each(procs)
    logs = [d / f"unbound-{port}.log" for d in dirs]
    out = reloads_under_load(port, procs, logs, reload, round_misses(misses, 90, tag=key), qps, reloads)
    count = int(qps * (reloads * 0.2 + 4)) + 10
    names = fresh_names(misses.read_text().splitlines(), f"rt{key}", count)
    out["retrying"] = retry_under_reloads(port, procs, reload, names, qps, reloads)
    return out


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
    if out.get("latency"):
        lines += latency_lines(out["latency"], out["latency_qps"])
    if any(out["reloads"].values()):
        lines += reload_lines(out["reloads"])
    text = "\n".join(lines) + "\n"
    path.with_suffix(".md").write_text(text)
    path.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    return text


def latency_lines(latency: dict[str, dict[str, Any]], rate: dict[str, float]) -> list[str]:
    lines = [
        "",
        f"Latency at 20% of (m2)'s peak (hits {rate['hits']:.0f} qps, misses {rate['misses']:.0f} qps), each row "
        "at the same time as (b2), rounds in turn; added p99 = the median over the rounds of the row's p99 minus "
        "(b2)'s of the same seconds:",
        "",
        "| row | hits p50/p99 ms | added p99 hits ms | misses p50/p99 ms | added p99 misses ms |",
        "|---|---|---:|---|---:|",
    ]
    for key in ("b2", *LATENCY_BASE):
        h, m = latency[key]["hits"], latency[key]["misses"]
        lines.append(
            f"| {ROWS[key][0]} | {h.get('p50_ms')}/{h.get('p99_ms')} | {h.get('added_p99_ms', '-')} "
            f"| {m.get('p50_ms')}/{m.get('p99_ms')} | {m.get('added_p99_ms', '-')} |"
        )
    return lines


def reload_lines(reloads: dict[str, dict[str, Any]]) -> list[str]:
    first = next(r for r in reloads.values() if r)
    lines = [
        "",
        f"Reloads under load: {first['reloads']} reloads 0.1 s apart at {first['qps']} qps of never-seen names "
        "(20% of (m2)'s peak); (b2), (m2): `unbound-control reload` and SIGHUP alternated; (bp), (mp): bare "
        "SIGHUPs to both processes at once (the printed units' `systemctl reload` spaces them 0.3 s apart: "
        "bench/reload_storm.py --settle). Then a client that asks again after 1 s, 3 tries "
        "(bench/reload_retry.py), under as many.",
        "",
        "| row | sent | answered | lost | in flight at the reloads (module's count) | reload failed | alive after "
        "| answers after | retrying client: lookups, answered after a retry, SERVFAIL, failed |",
        "|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for key, r in reloads.items():
        if not r:
            continue
        t = r["retrying"]
        flight = "-" if r["in_flight"] is None else r["in_flight"]
        lines.append(
            f"| {ROWS[key][0]} | {r['sent']} | {r['completed']} | {r['lost']} | {flight} | {r['control_failures']} "
            f"| {r['alive'] and t['alive']} | {r['answers_after']} "
            f"| {t['lookups']}, {t['retried']}, {t['servfail']}, {t['failed']} |"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reloads", type=int, default=100, help="reloads under load per row (0: none)")
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
