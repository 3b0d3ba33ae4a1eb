"""The attacks of issue #14, measured: resolverguard and Debian's Unbound side by side, loopback only.

    sudo apt-get install -y unbound
    python bench/adversarial.py [--seconds 8] [--reloads 1000]      (about 4 minutes)

Both forward to the same upstream (the tests' fault-injecting upstream in its own process: a ~4 KB
answer for `big.*` names, one A record otherwise). Scenarios, every one bounded in time and count:

* flood: two clients at the rate limit (190 qps each) ask a ~4 KB name without EDNS, so every
  answer must be truncated; a third client asks a cached name at 50 qps: its p50/p99 and losses.
* non-reading TCP clients: as many clients as there are TCP slots (8) pipeline queries for the
  4 KB name and never read; how long a normal TCP client is then locked out (idle timeout 3 s).
* refused TCP clients: 8 connections from an address the ACL refuses, idle; the lockout of an
  allowed TCP client.
* reload storm: RSS before and after N reloads (SIGHUP for both).
* disk-full query log (resolverguard only): queries answered and stderr lines with the log on
  /dev/full.
* the RFC 8906-style check table (tests/rfc8906.py) on fresh, cached and sinkholed names (the
  tests' digits model sinkholes names with a digit; Unbound gets a `local-zone` redirect).

Results: bench/results/adversarial.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compare import cpu_seconds, free_port, start_unbound, wait_ready
from faults import rss_kb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from rfc8906 import CHECKS, exchange, query_wire  # noqa: E402

DIGITS = ROOT / "tests" / "data" / "digits.tflite"
SINKHOLED = "www.evil1.com"
TCP_SLOTS, IDLE = 8, 3.0


# -- targets ---------------------------------------------------------------------------------------


def serve_upstream(port: int) -> None:
    """The tests' upstream, with a ~4 KB answer for names starting with `big`."""
    from dnsfixtures import Upstream, run_upstream

    class BenchUpstream(Upstream):
        def answer(self, data: bytes) -> bytes:
            self.huge = b"\x03big" in data[12:17]
            self.queries.clear()  # no unbounded memory in a long run
            return super().answer(data)

    with run_upstream(BenchUpstream(port=port)):
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


@contextmanager
def upstream() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(port)], cwd=ROOT)
    try:
        wait_ready(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def resolverguard(up: int, policy: str = "") -> Iterator[tuple[int, subprocess.Popen[str]]]:
    work = Path(tempfile.mkdtemp(prefix="rg-adv-"))
    port = free_port()
    (work / "policy.yaml").write_text(f"upstreams: ['127.0.0.1:{up}']\nquery_log: off\n{policy}")
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(work / "policy.yaml")]
    cmd += ["--listen", f"127.0.0.1:{port}", "--model", str(DIGITS)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(port)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def unbound(up: int, extra: str = "") -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    work = Path(tempfile.mkdtemp(prefix="ub-adv-"))
    port = free_port()
    local = '  local-zone: "evil1.com." redirect\n  local-data: "evil1.com. 10 IN A 0.0.0.0"\n'
    proc = start_unbound(work, port, up, local + extra)
    try:
        wait_ready(port)
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


# -- clients ---------------------------------------------------------------------------------------


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.sent: dict[int, float] = {}
        self.latency: list[float] = []
        self.count = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        started = self.sent.pop(data[0] << 8 | data[1], None)
        if started is not None:
            self.latency.append(time.perf_counter() - started)


async def steady(source: str, port: int, name: str, qps: float, seconds: float) -> Client:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        Client, local_addr=(source, 0), remote_addr=("127.0.0.1", port)
    )
    start = time.perf_counter()
    while time.perf_counter() - start < seconds and client.count < 100_000:
        qid = client.count & 0xFFFF
        client.sent[qid] = time.perf_counter()
        transport.sendto(query_wire(name, qid=qid))
        client.count += 1
        await asyncio.sleep(max(0.0, start + client.count / qps - time.perf_counter()))
    await asyncio.sleep(2.0)  # late answers
    transport.close()
    return client


def percentiles(client: Client) -> dict[str, Any]:
    lat = sorted(client.latency)

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else None

    return {"sent": client.count, "answered": len(lat), "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


def flood(port: int, pid: int, seconds: float) -> dict[str, Any]:
    """Two clients at the rate limit on the 4 KB name (truncated for them), one benign client."""
    exchange(query_wire("www.example.com"), "127.0.0.1", port)
    exchange(query_wire("big.example.com"), "127.0.0.1", port)

    async def run() -> list[Client]:
        return list(
            await asyncio.gather(
                steady("127.0.0.2", port, "big.example.com", 190, seconds),
                steady("127.0.0.3", port, "big.example.com", 190, seconds),
                steady("127.0.0.4", port, "www.example.com", 50, seconds),
            )
        )

    cpu = cpu_seconds(pid)
    flooders_a, flooders_b, benign = asyncio.run(run())
    return {
        "benign": percentiles(benign),
        "flooders_answered": len(flooders_a.latency) + len(flooders_b.latency),
        "flooders_sent": flooders_a.count + flooders_b.count,
        "server_cpu_s": round(cpu_seconds(pid) - cpu, 2),
    }


def hog(port: int, source: str, count: int = 5000, window: float = 2.0) -> socket.socket:
    """A TCP client that pipelines queries for the 4 KB name and never reads."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    wire = query_wire("big.example.com")
    frames = memoryview((struct.pack("!H", len(wire)) + wire) * count)
    s.settimeout(0.1)
    deadline = time.monotonic() + window
    while frames and time.monotonic() < deadline:
        try:
            frames = frames[s.send(frames) :]
        except TimeoutError:
            continue
        except OSError:
            break
    return s


def lockout(port: int, make: Callable[[], socket.socket], limit: float = 20.0) -> dict[str, Any]:
    """Opens TCP_SLOTS bad connections, then asks over TCP every 0.25 s until answered (or `limit`)."""
    bad = []
    try:
        for _ in range(TCP_SLOTS):
            try:
                bad.append(make())
            except OSError:
                break
        started = time.monotonic()
        tries = 0
        while time.monotonic() - started < limit:
            tries += 1
            reply = exchange(query_wire("www.example.com"), "127.0.0.1", port, tcp=True, timeout=0.5)
            if reply.message is not None and reply.message.rcode() == 0:
                return {"locked_out_s": round(time.monotonic() - started, 2), "tries": tries, "opened": len(bad)}
            time.sleep(0.25)
        return {"locked_out_s": f">{limit:g}", "tries": tries, "opened": len(bad)}
    finally:
        for s in bad:
            s.close()


def idle_connection(port: int, source: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def reload_storm(pid: int, count: int, wait: Callable[[], None]) -> dict[str, Any]:
    for _ in range(10):
        os.kill(pid, signal.SIGHUP)
        wait()
    before, started = rss_kb(pid), time.monotonic()
    for _ in range(count):
        os.kill(pid, signal.SIGHUP)
        wait()
    return {
        "reloads": count,
        "rss_mb_before": round(before / 1024, 1),
        "rss_mb_after": round(rss_kb(pid) / 1024, 1),
        "growth_mb": round((rss_kb(pid) - before) / 1024, 1),
        "seconds": round(time.monotonic() - started, 1),
    }


def rg_reloaded(proc: subprocess.Popen[str]) -> Callable[[], None]:
    def wait() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline() if proc.stderr else ""
            if "reloaded" in line or "rejected" in line:
                return
        raise RuntimeError("no reload line")

    return wait


def unbound_reloaded(port: int) -> Callable[[], None]:
    def wait() -> None:
        time.sleep(0.05)
        wait_ready(port)

    return wait


def disk_full(up: int, seconds: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rg-full-"))
    port = free_port()
    (work / "policy.yaml").write_text(f"upstreams: ['127.0.0.1:{up}']\nquery_log: /dev/full\nrate_limit: {{qps: 0}}\n")
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(work / "policy.yaml")]
    proc = subprocess.Popen(
        [*cmd, "--listen", f"127.0.0.1:{port}", "--model", str(DIGITS)], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_ready(port)
        client = asyncio.run(steady("127.0.0.4", port, "www.example.com", 400, seconds))
    finally:
        proc.terminate()
        err = proc.communicate(timeout=15)[1]
        shutil.rmtree(work, ignore_errors=True)
    lines = err.splitlines()
    return {
        **percentiles(client),
        "stderr_lines": len(lines),
        "query_log_lines": sum("query log" in x for x in lines),
        "tracebacks": err.count("Traceback"),
    }


def table(port: int) -> dict[str, dict[str, list[Any]]]:
    fresh = (f"fresh{a}{b}.example.com" for a, b in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=2))
    out: dict[str, dict[str, list[Any]]] = {}
    for path in ("fresh", "cached", "sinkholed"):
        out[path] = {}
        for key, _, check in CHECKS:
            name = {"fresh": next(fresh), "cached": "cached.example.com", "sinkholed": SINKHOLED}[path]
            if path == "cached":
                exchange(query_wire(name), "127.0.0.1", port)
            ok, why = check("127.0.0.1", port, name)
            out[path][key] = [ok, why]
    return out


# -- report ----------------------------------------------------------------------------------------


def run(a: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count()}
    tcp_rg = f"limits: {{max_tcp_connections: {TCP_SLOTS}, tcp_idle_timeout: {IDLE}}}\n"
    tcp_ub = f"  incoming-num-tcp: {TCP_SLOTS}\n  tcp-idle-timeout: {int(IDLE * 1000)}\n"
    with upstream() as up:
        with resolverguard(up) as (port, proc):
            results["flood_rg"] = flood(port, proc.pid, a.seconds)
            results["table_rg"] = table(port)
        with unbound(up) as (port, proc):
            results["flood_ub"] = flood(port, proc.pid, a.seconds)
            results["table_ub"] = table(port)
        with resolverguard(up, tcp_rg + "rate_limit: {qps: 0}\n") as (port, _):
            results["hogs_rg"] = lockout(port, lambda: hog(port, "127.0.0.5"))
        with unbound(up, tcp_ub) as (port, _):
            results["hogs_ub"] = lockout(port, lambda: hog(port, "127.0.0.5"))
        acl = "access: {allow_clients: [127.0.0.1/32], refused: drop}\n"
        with resolverguard(up, tcp_rg + acl) as (port, _):
            results["refused_rg"] = lockout(port, lambda: idle_connection(port, "127.0.0.2"))
        with unbound(up, tcp_ub + "  access-control: 127.0.0.2/32 refuse\n") as (port, _):
            results["refused_ub"] = lockout(port, lambda: idle_connection(port, "127.0.0.2"))
        with resolverguard(up) as (port, proc):
            results["reload_rg"] = reload_storm(proc.pid, a.reloads, rg_reloaded(proc))
        with unbound(up) as (port, proc):
            results["reload_ub"] = reload_storm(proc.pid, a.reloads, unbound_reloaded(port))
        results["disk_full_rg"] = disk_full(up, a.seconds)
    return results


def score(table_result: dict[str, dict[str, list[Any]]], path: str) -> str:
    rows = table_result.get(path, {})
    return f"{sum(1 for ok, _ in rows.values() if ok)}/{len(rows)}"


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(scenario, resolverguard, Unbound) for one run's results."""
    rg, ub, full = r["flood_rg"], r["flood_ub"], r["disk_full_rg"]

    def reload(x: dict[str, Any]) -> str:
        return f"{x['growth_mb']} ({x['rss_mb_before']} -> {x['rss_mb_after']}) after {x['reloads']}"

    rows = [
        (
            "flood: benign client p50 / p99 ms (2 clients x 190 qps on a 4 KB name, no EDNS)",
            f"{rg['benign']['p50_ms']} / {rg['benign']['p99_ms']}",
            f"{ub['benign']['p50_ms']} / {ub['benign']['p99_ms']}",
        ),
        (
            "flood: benign answered / sent",
            f"{rg['benign']['answered']}/{rg['benign']['sent']}",
            f"{ub['benign']['answered']}/{ub['benign']['sent']}",
        ),
        (
            "flood: flooders answered / sent",
            f"{rg['flooders_answered']}/{rg['flooders_sent']}",
            f"{ub['flooders_answered']}/{ub['flooders_sent']}",
        ),
        ("flood: server CPU s", f"{rg['server_cpu_s']}", f"{ub['server_cpu_s']}"),
        (
            f"{TCP_SLOTS} non-reading TCP clients: allowed client locked out for (s), idle timeout {IDLE:g} s",
            f"{r['hogs_rg']['locked_out_s']}",
            f"{r['hogs_ub']['locked_out_s']}",
        ),
        (
            f"{TCP_SLOTS} refused idle TCP clients: allowed client locked out for (s)",
            f"{r['refused_rg']['locked_out_s']}",
            f"{r['refused_ub']['locked_out_s']}",
        ),
        ("reloads: RSS growth MB (before -> after)", reload(r["reload_rg"]), reload(r["reload_ub"])),
        (
            "query log on /dev/full: answered / sent, stderr lines (query-log lines), tracebacks",
            f"{full['answered']}/{full['sent']}, {full['stderr_lines']} ({full['query_log_lines']}), "
            f"{full['tracebacks']}",
            "-",
        ),
    ]
    for path in ("fresh", "cached", "sinkholed"):
        rows.append((f"RFC 8906-style table, {path} names", score(r["table_rg"], path), score(r["table_ub"], path)))
    return rows


def write(results: dict[str, Any], a: argparse.Namespace) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "adversarial.json").write_text(json.dumps(results, indent=2))
    before = json.loads(Path(a.before).read_text()) if a.before else None
    lines = [
        f"# Adversarial runs (bench/adversarial.py), {results['date']}, {results['cores']} cores, loopback only",
        "",
        f"`python bench/adversarial.py --seconds {a.seconds:g} --reloads {a.reloads}"
        + (f" --before {a.before}" if a.before else "")
        + "`; resolverguard with the tests' digits model, Unbound 1.17 (Debian) as a forwarder, both to the "
        "tests' upstream in its own process.",
        "",
    ]
    rows = summary_rows(results)
    if before is not None:
        lines += [
            f"`resolverguard before` is the run of {before['date']} ({before.get('note', '')}), same script.",
            "",
            "| scenario | resolverguard | Unbound | resolverguard before |",
            "|---|---|---|---|",
        ]
        lines += [f"| {n} | {x} | {u} | {b[1]} |" for (n, x, u), b in zip(rows, summary_rows(before), strict=True)]
    else:
        lines += ["| scenario | resolverguard | Unbound |", "|---|---|---|"]
        lines += [f"| {n} | {x} | {u} |" for n, x, u in rows]
    lines += [
        "",
        "## The check table",
        "",
        "| check | what | rg fresh | rg cached | rg sinkholed | Unbound fresh | Unbound cached | Unbound local-zone |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, doc, _ in CHECKS:
        cells = []
        for t in ("table_rg", "table_ub"):
            for path in ("fresh", "cached", "sinkholed"):
                ok, why = results[t][path][key]
                cells.append("pass" if ok else f"FAIL: {why}")
        lines.append(f"| {key} | {doc} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Unbound answers its own `local-zone` data with AA=1 (it is authoritative for it), hence its one",
        "miss in the sinkholed column. The TCP lockout is measured from when the last bad connection was",
        "made, probing every 0.25 s with a 0.5 s timeout.",
    ]
    (out / "adversarial.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--reloads", type=int, default=1000)
    p.add_argument("--before", help="results JSON of an earlier run, shown as an extra column")
    p.add_argument("--rewrite", action="store_true", help="only rewrite the .md from results/adversarial.json")
    p.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)  # internal: be the upstream
    a = p.parse_args()
    if a.serve_upstream:
        serve_upstream(a.serve_upstream)
        return
    if a.rewrite:
        write(json.loads((ROOT / "bench" / "results" / "adversarial.json").read_text()), a)
        return
    if shutil.which("unbound") is None:
        sys.exit("unbound is not installed: sudo apt-get install -y unbound")
    write(run(a), a)


if __name__ == "__main__":
    main()
