"""resolverguard against Unbound, in one run, on 127.0.0.1 only.

    sudo apt-get install -y nsd unbound dnsperf      (bench/README.md)
    python bench/compare.py [--seconds 10]

Starts (a) NSD answering every name from a wildcard root zone, (b) Unbound as a caching forwarder to
it, (c) resolverguard with scoring off (a plain forwarder), (d) resolverguard with the full chain and
the shipped model, (d') the same with the query log written to a file, (e) the same with
`workers: 2`, (f) the same with a 1,000,000-entry hosts blocklist, and drives each with dnsperf
over the same query files: `hits` (Zipf over ~10k benign names; every name is asked once before the
timed run, so it measures the steady state of an office whose popular names are cached) and
`misses` (every registrable name unique, so every query is scored and forwarded). For each: QPS,
server CPU seconds, peak RSS, and p50/p99 latency measured in a second run at 20% of (d)'s peak
QPS. Results and the ratios from the same run go to bench/results/compare.{md,json}. Every run is
bounded in time (dnsperf -l) and count.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lists import write_hosts

from resolverguard.store import day_table

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "benign.txt.gz"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def benign_names(n: int, rng: random.Random) -> list[str]:
    if DATA.exists():
        with gzip.open(DATA, "rt") as handle:
            names = [line.strip() for line in handle if line.strip()]
        return rng.sample(names, n)
    words = ["shop", "news", "mail", "cloud", "green", "river", "blue", "city", "home", "garden", "book"]
    return [f"{rng.choice(words)}{rng.choice(words)}{i}.com" for i in range(n)]


def query_files(work: Path, count: int, rng: random.Random) -> dict[str, Path]:
    """hits: Zipf(1.1) over 10k benign names; misses: unique registrable names, half DGA-looking."""
    names = benign_names(10_000, rng)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(names))]
    hits = rng.choices(names, weights=weights, k=count)
    misses = []
    for i in range(count):
        if i % 2:
            label = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randint(8, 16)))
        else:
            label = rng.choice(names).split(".")[0] + str(i)
        misses.append(f"{label}.com")
    (work / "warm.txt").write_text("".join(f"{n} A\n" for n in dict.fromkeys(hits)))  # each hits name once
    out = {}
    for kind, items in (("hits", hits), ("misses", misses)):
        path = work / f"{kind}.txt"
        path.write_text("".join(f"{n} A\n" for n in items))
        out[kind] = path
    return out


def start_nsd(work: Path, port: int) -> subprocess.Popen[bytes]:
    zone = work / "root.zone"
    zone.write_text(
        "$TTL 3600\n. IN SOA ns. host. 1 3600 600 86400 300\n. IN NS ns.\nns. IN A 127.0.0.1\n"
        "* IN A 192.0.2.1\n* IN AAAA 2001:db8::1\n"
    )
    conf = work / "nsd.conf"
    conf.write_text(
        f'server:\n  ip-address: 127.0.0.1@{port}\n  database: ""\n  zonelistfile: "{work}/zone.list"\n'
        f'  pidfile: "{work}/nsd.pid"\n  xfrdfile: "{work}/xfrd.state"\n  username: ""\n  server-count: 1\n'
        "  rrl-ratelimit: 0\n  rrl-whitelist-ratelimit: 0\n"
        f'  chroot: ""\n  logfile: "{work}/nsd.log"\nremote-control:\n  control-enable: no\n'
        f'zone:\n  name: "."\n  zonefile: "{zone}"\n'
    )
    return subprocess.Popen(["nsd", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_unbound(work: Path, port: int, upstream: int, extra: str = "") -> subprocess.Popen[bytes]:
    """Unbound as a caching forwarder; `extra`: more `server:` lines (two-space indented)."""
    conf = work / f"unbound-{port}.conf"
    conf.write_text(
        f'server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-daemonize: no\n  username: ""\n'
        f'  chroot: ""\n  directory: "{work}"\n  pidfile: "{work}/unbound.pid"\n  use-syslog: no\n'
        "  num-threads: 1\n  do-not-query-localhost: no\n  access-control: 127.0.0.0/8 allow\n"
        '  module-config: "iterator"\n  qname-minimisation: no\n  verbosity: 0\n'
        f"{extra}"
        f'forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@{upstream}\n'
    )
    return subprocess.Popen(["unbound", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_resolverguard(
    work: Path,
    port: int,
    upstream: int,
    scoring: bool,
    workers: int = 1,
    log: bool = False,
    deny_file: Path | None = None,
    watch: bool = False,
    writer: str = "process",
    store: bool = False,
) -> subprocess.Popen[bytes]:
    policy = work / f"rg-{port}.yaml"
    query_log = f"{{path: '{work}/queries-{port}.jsonl', writer: {writer}}}" if log else "off"
    if store:
        query_log += f"\nquery_store: '{work}/store-{port}.db'"
    lists = f"lists:\n  deny_files: ['{deny_file}']\n" if deny_file else ""
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream}']\nscoring: {str(scoring).lower()}\nquery_log: {query_log}\n"
        f"rate_limit:\n  qps: 0\nlimits:\n  max_inflight: 8192\nworkers: {workers}\n{lists}"
        + ("client_watch:\n  enabled: true\n  action: log\n" if watch else "")  # log: the bench client walks DGA names
    )
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(work / f"rg-{port}.log").open("w"))


def wait_ready(port: int, timeout: float = 20.0) -> None:
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            try:
                s.sendto(query, ("127.0.0.1", port))
                s.recv(512)
                return
            except OSError:
                time.sleep(0.2)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


def family(pid: int) -> list[int]:
    """The process and its children (worker processes, when there are some)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(c) for c in (children.read_text().split() if children.exists() else []))]


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in family(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of the largest process of the family (one worker, when several)."""
    peaks = []
    for p in family(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks, default=0.0)


def dnsperf(port: int, queries: Path, seconds: float, qps: float | None = None) -> dict[str, Any]:
    cmd = [
        "dnsperf",
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        str(queries),
        "-l",
        str(seconds),
        "-c",
        "8",
        "-q",
        "500",
        "-t",
        "2",
        "-S",
        "0",
    ]
    if qps:
        cmd += ["-Q", str(int(qps)), "-v"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    result: dict[str, Any] = {}
    for key, pattern in (
        ("qps", r"Queries per second:\s+([\d.]+)"),
        ("sent", r"Queries sent:\s+(\d+)"),
        ("completed", r"Queries completed:\s+(\d+)"),
        ("lost", r"Queries lost:\s+(\d+)"),
    ):
        match = re.search(pattern, out)
        result[key] = float(match.group(1)) if match else None
    if qps:  # verbose lines: "> NOERROR name A 0.000123"
        lat = sorted(
            float(line.rsplit(None, 1)[1])
            for line in out.splitlines()
            if line.startswith("> ") and re.match(r".*\s[\d.]+$", line)
        )
        if lat:
            result["p50_ms"] = round(lat[len(lat) // 2] * 1000, 3)
            result["p99_ms"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3)
    return result


def measure(
    name: str,
    proc: subprocess.Popen[bytes],
    port: int,
    files: dict[str, Path],
    seconds: float,
    latency_qps: dict[str, float],
) -> dict[str, Any]:
    wait_ready(port)
    time.sleep(2.0)  # with workers, the first to answer may not be the last to start
    out: dict[str, Any] = {"target": name}
    for kind, path in files.items():
        if kind == "hits":  # steady state: every name asked once before the timed run
            subprocess.run(
                ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(path.with_name("warm.txt")), "-n", "1"],
                capture_output=True,
                timeout=120,
            )
        cpu = cpu_seconds(proc.pid)
        peak = dnsperf(port, path, seconds)
        peak["cpu_s"] = round(cpu_seconds(proc.pid) - cpu, 2)
        if latency_qps.get(kind):
            peak.update({k: v for k, v in dnsperf(port, path, 5, latency_qps[kind]).items() if k.endswith("_ms")})
        out[kind] = peak
    out["peak_rss_mb"] = round(peak_rss_mb(proc.pid), 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--queries", type=int, default=200_000)
    p.add_argument("--watch", action="store_true", help="only (d) against (g) = (d) + client_watch, alternated")
    p.add_argument("--log", action="store_true", help="only (d) against (d') log file, (d't) thread, (d's) store")
    a = p.parse_args()
    for tool in ("nsd", "unbound", "dnsperf"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: sudo apt-get install -y nsd unbound dnsperf")
    work = Path(tempfile.mkdtemp(prefix="rg-bench-"))
    files = query_files(work, a.queries, random.Random(7))
    if a.watch:
        compare_watch(work, files, a)
        return
    if a.log:
        compare_log(work, files, a)
        return
    ports = {k: free_port() for k in ("nsd", "unbound", "rg_plain", "rg_full", "rg_workers", "rg_log", "rg_list")}
    blocklist = write_hosts(work / "hosts-1m.txt", 1_000_000, random.Random(1))
    procs = [start_nsd(work, ports["nsd"])]
    try:
        wait_ready(ports["nsd"])
        results = {"upstream": measure("(a) NSD alone", procs[0], ports["nsd"], files, a.seconds, {})}
        # (d) first, to learn its peak; everything's latency is then measured at 20% of it.
        procs.append(start_resolverguard(work, ports["rg_full"], ports["nsd"], True))
        full = measure("(d) resolverguard full chain", procs[-1], ports["rg_full"], files, a.seconds, {})
        latency_qps = {k: 0.2 * (full[k]["qps"] or 0) for k in files}
        results["rg_full"] = measure(
            "(d) resolverguard full chain", procs[-1], ports["rg_full"], files, a.seconds, latency_qps
        )
        procs.append(start_resolverguard(work, ports["rg_plain"], ports["nsd"], False))
        results["rg_plain"] = measure(
            "(c) resolverguard, scoring off", procs[-1], ports["rg_plain"], files, a.seconds, latency_qps
        )
        procs.append(start_resolverguard(work, ports["rg_workers"], ports["nsd"], True, workers=2))
        results["rg_workers"] = measure(
            "(e) resolverguard full chain, workers: 2", procs[-1], ports["rg_workers"], files, a.seconds, latency_qps
        )
        procs.append(start_resolverguard(work, ports["rg_log"], ports["nsd"], True, log=True))
        results["rg_log"] = measure(
            "(d') full chain + query log file", procs[-1], ports["rg_log"], files, a.seconds, latency_qps
        )
        procs.append(start_resolverguard(work, ports["rg_list"], ports["nsd"], True, deny_file=blocklist))
        results["rg_list"] = measure(
            "(f) full chain + 1M-entry blocklist", procs[-1], ports["rg_list"], files, a.seconds, latency_qps
        )
        procs.append(start_unbound(work, ports["unbound"], ports["nsd"]))
        results["unbound"] = measure(
            "(b) Unbound forwarder", procs[-1], ports["unbound"], files, a.seconds, latency_qps
        )
        results["upstream_latency"] = {k: dnsperf(ports["nsd"], v, 5, latency_qps[k]) for k, v in files.items()}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    write(results, a, latency_qps)


def compare_watch(work: Path, files: dict[str, Path], a: argparse.Namespace) -> None:
    """The client watch's cost: (d) the full chain and (g) the same with `client_watch` on, measured
    alternately twice (d, g, d, g) so that drift in the machine's load hits both alike; QPS ratio
    (g)/(d) of the summed runs, to results/compare_watch.{md,json}."""
    ports = {k: free_port() for k in ("nsd", "d", "g")}
    procs = [start_nsd(work, ports["nsd"])]
    runs: dict[str, list[dict[str, Any]]] = {"d": [], "g": []}
    try:
        wait_ready(ports["nsd"])
        procs.append(start_resolverguard(work, ports["d"], ports["nsd"], True))
        procs.append(start_resolverguard(work, ports["g"], ports["nsd"], True, watch=True))
        for _ in range(2):
            for key, proc in (("d", procs[1]), ("g", procs[2])):
                runs[key].append(measure(key, proc, ports[key], files, a.seconds, {}))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    total = {k: {kind: sum(r[kind]["qps"] or 0 for r in v) for kind in files} for k, v in runs.items()}
    ratios = {kind: ratio(total["g"][kind], total["d"][kind]) for kind in files}
    out = ROOT / "bench" / "results"
    (out / "compare_watch.json").write_text(json.dumps({"runs": runs, "ratios": ratios}, indent=2) + "\n")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"# Client watch cost (bench/compare.py --watch), {stamp}, {os.cpu_count()} cores, {a.seconds:g} s per run",
        "",
        "| run | (d) hits QPS | (g) hits QPS | (d) misses QPS | (g) misses QPS |",
        "|---|---:|---:|---:|---:|",
    ]
    for i in range(2):
        d, g = runs["d"][i], runs["g"][i]
        lines.append(
            f"| {i + 1} | {d['hits']['qps']:.0f} | {g['hits']['qps']:.0f} | {d['misses']['qps']:.0f} |"
            f" {g['misses']['qps']:.0f} |"
        )
    lines += ["", f"(g)/(d): hits {ratios['hits']}, misses {ratios['misses']}", ""]
    (out / "compare_watch.md").write_text("\n".join(lines))
    print("\n".join(lines))


STORE_TARGET = "d's"
LOG_TARGETS = {  # key: (row, start_resolverguard keywords)
    "d": ("(d) full chain, no query log", {}),
    "d'": ("(d') + query log file (writer: process, the default)", {"log": True}),
    "d't": ("(d't) + query log file, writer: thread", {"log": True, "writer": "thread"}),
    "d's": ("(d's) + query log file + query store", {"log": True, "store": True}),
}


def compare_log(work: Path, files: dict[str, Path], a: argparse.Namespace) -> None:
    """What the query log and the query store cost (issues #16, #17): (d) against (d') with the
    log file, (d't) with its writer in a thread and (d's) with the store as well, each measured
    twice in turn (d, d', d't, d's, d, ...) so that drift in the machine's load hits all alike;
    QPS ratios of the summed runs, to results/compare_log.{md,json}. The load average is
    written beside them: on a shared machine, ratios from one run are what to compare."""
    ports = {k: free_port() for k in ("nsd", *LOG_TARGETS)}
    procs = [start_nsd(work, ports["nsd"])]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in LOG_TARGETS}
    load_before = os.getloadavg()
    try:
        wait_ready(ports["nsd"])
        targets = {}
        for key, (_, options) in LOG_TARGETS.items():
            targets[key] = start_resolverguard(work, ports[key], ports["nsd"], True, **options)  # type: ignore[arg-type]
            procs.append(targets[key])
        for _ in range(2):
            for key, proc in targets.items():
                runs[key].append(measure(key, proc, ports[key], files, a.seconds, {}))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    load_after = os.getloadavg()
    stored = stored_rows(work / f"store-{ports[STORE_TARGET]}.db")
    total = {k: {kind: sum(r[kind]["qps"] or 0 for r in v) for kind in files} for k, v in runs.items()}
    ratios = {
        name: {kind: ratio(total[x][kind], total[y][kind]) for kind in files}
        for name, x, y in (
            ("(d')/(d)", "d'", "d"),
            ("(d't)/(d)", "d't", "d"),
            ("(d's)/(d)", "d's", "d"),
            ("(d's)/(d')", "d's", "d'"),
        )
    }
    # CPU per answered query (the server and its children: the writer process is counted): the cost
    # itself, which a loaded machine distorts far less than the QPS it allows.
    cpu_us = {
        k: {
            kind: round(1e6 * sum(r[kind]["cpu_s"] for r in v) / max(1.0, sum(r[kind]["completed"] or 0 for r in v)), 2)
            for kind in files
        }
        for k, v in runs.items()
    }
    cpu_ratios = {
        name: {kind: ratio(cpu_us[y][kind], cpu_us[x][kind]) for kind in files}
        for name, x, y in (("(d')/(d)", "d'", "d"), ("(d't)/(d)", "d't", "d"), ("(d's)/(d)", "d's", "d"))
    }
    out = ROOT / "bench" / "results"
    payload = {
        "runs": runs,
        "ratios": ratios,
        "cpu_us_per_query": cpu_us,
        "cpu_ratios": cpu_ratios,
        "load": [load_before, load_after],
        "store_rows": stored,
    }
    (out / "compare_log.json").write_text(json.dumps(payload, indent=2) + "\n")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"# Query log and query store cost (bench/compare.py --log), {stamp}, {os.cpu_count()} cores, "
        f"dnsperf -c 8 -q 500, {a.seconds:g} s per run, each target measured twice in turn",
        "",
        f"Load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{' '.join(f'{x:.2f}' for x in load_after)} (other work shared the machine; ratios from one run).",
        "",
        "| target | hits QPS, run 1 / run 2 | misses QPS, run 1 / run 2 | CPU us per query (hits, misses) |",
        "|---|---:|---:|---:|",
    ]
    for key, (row, _) in LOG_TARGETS.items():
        one, two = runs[key]
        lines.append(
            f"| {row} | {one['hits']['qps']:.0f} / {two['hits']['qps']:.0f} "
            f"| {one['misses']['qps']:.0f} / {two['misses']['qps']:.0f} "
            f"| {cpu_us[key]['hits']}, {cpu_us[key]['misses']} |"
        )
    lines += ["", "| QPS ratio (summed runs) | hits | misses |", "|---|---:|---:|"]
    lines += [f"| {name} | {r['hits']} | {r['misses']} |" for name, r in ratios.items()]
    lines += [
        "",
        "| CPU ratio: (d)'s CPU per query / the target's (the QPS ratio if the server were CPU-bound "
        "on a core of its own) | hits | misses |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {r['hits']} | {r['misses']} |" for name, r in cpu_ratios.items()]
    lines += ["", f"Rows in (d's)'s store at the end: {stored} (every query it answered, warm-ups included).", ""]
    (out / "compare_log.md").write_text("\n".join(lines))
    print("\n".join(lines))


def stored_rows(path: Path) -> int:
    """Rows in a query store (all day tables): the store kept up when it holds every answer."""
    import sqlite3

    with sqlite3.connect(path) as db:
        days = [r[0] for r in db.execute("SELECT day FROM store_days")]
        return sum(db.execute(f"SELECT COUNT(*) FROM {day_table(d)}").fetchone()[0] for d in days)


def ratio(x: float | None, y: float | None) -> float | None:
    return round(x / y, 3) if x and y else None


def write(results: dict[str, Any], a: argparse.Namespace, latency_qps: dict[str, float]) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    ratios = {
        kind: {
            "(d)/(c)": ratio(results["rg_full"][kind]["qps"], results["rg_plain"][kind]["qps"]),
            "(d)/(b)": ratio(results["rg_full"][kind]["qps"], results["unbound"][kind]["qps"]),
            "(c)/(b)": ratio(results["rg_plain"][kind]["qps"], results["unbound"][kind]["qps"]),
            "(e)/(b)": ratio(results["rg_workers"][kind]["qps"], results["unbound"][kind]["qps"]),
            "(d')/(d)": ratio(results["rg_log"][kind]["qps"], results["rg_full"][kind]["qps"]),
            "(f)/(d)": ratio(results["rg_list"][kind]["qps"], results["rg_full"][kind]["qps"]),
        }
        for kind in ("hits", "misses")
    }
    added = {
        kind: round(
            (results["rg_full"][kind].get("p99_ms") or 0) - (results["upstream_latency"][kind].get("p99_ms") or 0), 3
        )
        for kind in ("hits", "misses")
    }
    payload = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "seconds": a.seconds,
        "results": results,
        "ratios": ratios,
        "latency_qps": latency_qps,
        "added_p99_ms": added,
    }
    (out / "compare.json").write_text(json.dumps(payload, indent=2))
    lines = [
        f"# resolverguard vs Unbound (bench/compare.py), {payload['date']}, {payload['cores']} cores, "
        f"dnsperf -c 8 -q 500, {a.seconds:g} s per run, loopback only",
        "",
        "| target | hits QPS | hits CPU s | hits p50/p99 ms | misses QPS | misses CPU s | misses p50/p99 ms "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in ("upstream", "unbound", "rg_plain", "rg_full", "rg_workers", "rg_log", "rg_list"):
        r = results[key]
        lines.append(
            f"| {r['target']} | {r['hits']['qps']} | {r['hits']['cpu_s']} "
            f"| {r['hits'].get('p50_ms', '-')}/{r['hits'].get('p99_ms', '-')} | {r['misses']['qps']} "
            f"| {r['misses']['cpu_s']} | {r['misses'].get('p50_ms', '-')}/{r['misses'].get('p99_ms', '-')} "
            f"| {r['peak_rss_mb']} |"
        )
    lines += ["", "| ratio (same run) | hits | misses |", "|---|---|---|"]
    for name in ("(d)/(c)", "(d)/(b)", "(c)/(b)", "(e)/(b)", "(d')/(d)", "(f)/(d)"):
        lines.append(f"| {name} | {ratios['hits'][name]} | {ratios['misses'][name]} |")
    lines += [
        "",
        f"Latency runs at 20% of (d)'s peak: {', '.join(f'{k} {v:.0f} qps' for k, v in latency_qps.items())}; "
        f"(d)'s p99 minus the upstream's own p99: hits {added['hits']} ms, misses {added['misses']} ms.",
    ]
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
