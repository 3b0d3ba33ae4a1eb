"""Bounded fault and load runs against a real resolverguard process, on 127.0.0.1 only.

    python bench/faults.py [--seconds 6]     (about 30 s in all; writes bench/results/faults.{md,json})

Scenarios: a dead first upstream (failover), a slow upstream (1 s), and one client flooding while
another sends at a steady pace. For each: queries sent / answered (by rcode) / logged, latency of
the steady client, and the resolver's RSS before and after. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MAX_QUERIES = 200_000  # hard bound on what one scenario may send


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(qid: int, name: str) -> bytes:
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + b"\x00\x01\x00\x01"


def rss_kb(pid: int) -> int:
    """Resident memory of the process and its children (the workers, when there are some)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(c) for c in children.read_text().split()] if children.exists() else []
    total = 0
    for p in [pid, *kids]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


class Client(asyncio.DatagramProtocol):
    """Sends queries from one source address and records each reply's rcode and latency."""

    def __init__(self) -> None:
        self.sent: dict[int, float] = {}
        self.latency: list[float] = []
        self.rcodes: dict[int, int] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        qid = struct.unpack("!H", data[:2])[0]
        started = self.sent.pop(qid, None)
        if started is not None:
            self.latency.append(time.perf_counter() - started)
            self.rcodes[data[3] & 0x0F] = self.rcodes.get(data[3] & 0x0F, 0) + 1

    def error_received(self, exc: Exception) -> None:
        pass


async def drive(source: str, port: int, qps: float, seconds: float, label: str, total: list[int]) -> Client:
    """Sends at `qps` (0 = as fast as the socket takes them, bounded by MAX_QUERIES) for `seconds`."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        Client, local_addr=(source, 0), remote_addr=("127.0.0.1", port)
    )
    qid, deadline, start = 0, time.perf_counter() + seconds, time.perf_counter()
    while time.perf_counter() < deadline and total[0] < MAX_QUERIES:
        qid = (qid + 1) & 0xFFFF
        client.sent[qid] = time.perf_counter()
        transport.sendto(query(qid, f"h{random.getrandbits(40):x}.{label}.example.com"))
        total[0] += 1
        client.rcodes.setdefault(-1, 0)
        client.rcodes[-1] += 1  # -1 counts queries sent
        if qps:
            await asyncio.sleep(max(0.0, start + client.rcodes[-1] / qps - time.perf_counter()))
        elif client.rcodes[-1] % 64 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(2.5)  # let late answers arrive (the slow upstream answers after 1 s)
    transport.close()
    return client


def summary(client: Client) -> dict[str, Any]:
    lat = sorted(client.latency)
    sent = client.rcodes.get(-1, 0)

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else None

    names = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}
    return {
        "sent": sent,
        "answered": len(lat),
        "rcodes": {names.get(k, str(k)): v for k, v in client.rcodes.items() if k >= 0},
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    }


def scenario(
    name: str,
    upstreams: list[tuple[float, bool]],
    flood: bool,
    seconds: float,
    timeout: float = 0.3,
    workers: int = 1,
) -> dict[str, Any]:
    procs, ports = [], []
    for delay, silent in upstreams:
        port = free_port()
        args = [sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(port), "--delay", str(delay)]
        procs.append(subprocess.Popen(args + (["--silent"] if silent else [])))
        ports.append(port)
    log = Path(tempfile.mkdtemp()) / "queries.jsonl"
    policy = log.parent / "policy.yaml"
    policy.write_text(
        f"upstreams: [{', '.join(f'127.0.0.1:{p}' for p in ports)}]\nupstream_timeout: {timeout}\nquery_log: {log}\n"
        "rate_limit:\n  qps: 500\n  burst: 1000\nlimits:\n  max_inflight: 4096\n"
        f"workers: {workers}\n"
    )
    port = free_port()
    model = ROOT / "tests" / "data" / "digits.tflite" if not (ROOT / "models" / "default.tflite").exists() else None
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    server = subprocess.Popen(
        cmd + (["--model", str(model)] if model else []), cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        seen = 0
        for _ in range(20):
            seen += "listening on" in server.stderr.readline()
            if seen == workers:
                break
        rss_before = rss_kb(server.pid)

        flooder_proc = None
        if flood:  # its own process, so the flood cannot slow down the steady client's own loop
            flooder_proc = subprocess.Popen(
                [sys.executable, __file__, "--flood", str(port), "--seconds", str(seconds)],
                stdout=subprocess.PIPE,
                text=True,
            )
        steady = asyncio.run(drive("127.0.0.3", port, 50, seconds, "steady", [0]))
        flooder = json.loads(flooder_proc.communicate(timeout=seconds + 30)[0]) if flooder_proc else None
        rss_after = rss_kb(server.pid)
    finally:
        server.terminate()
        server.wait(15)
        for p in procs:
            p.terminate()
            p.wait(5)
    logged = sum(1 for _ in log.open()) if log.exists() else 0
    steady_summary = summary(steady)
    answered = steady_summary["answered"] + (flooder["answered"] if flooder else 0)
    refused = sum(x["rcodes"].get("REFUSED", 0) for x in (steady_summary, flooder) if x)
    return {
        "scenario": name,
        "steady_client": steady_summary,
        "flooding_client": flooder,
        "logged": logged,
        "answered_not_refused": answered - refused,
        "rss_kb_before": rss_before,
        "rss_kb_after": rss_after,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--flood", type=int, metavar="PORT", help=argparse.SUPPRESS)  # internal: be the flooder
    a = p.parse_args()
    if a.flood:
        print(json.dumps(summary(asyncio.run(drive("127.0.0.2", a.flood, 0, a.seconds, "flood", [0])))))
        return
    results = [
        scenario("dead first upstream (failover after 0.3 s)", [(0.0, True), (0.0, False)], False, a.seconds),
        scenario("slow upstream (answers after 1 s, timeout 2 s)", [(1.0, False)], False, a.seconds, timeout=2.0),
        scenario("one client flooding, one steady at 50 qps", [(0.0, False)], True, a.seconds),
        scenario("the same flood, workers: 2", [(0.0, False)], True, a.seconds, workers=2),
    ]
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults.json").write_text(json.dumps(results, indent=2))
    lines = [
        "# Fault and load runs (bench/faults.py)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores, loopback only, "
        f"{a.seconds:g} s per scenario.",
        "",
        "| scenario | steady sent | steady answered | steady rcodes | steady p50 ms | steady p99 ms | flood sent "
        "| flood answered | flood rcodes | answered & not refused | logged | RSS before KB | RSS after KB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s, f = r["steady_client"], r["flooding_client"] or {}
        lines.append(
            f"| {r['scenario']} | {s['sent']} | {s['answered']} | {s['rcodes']} | {s['p50_ms']} | {s['p99_ms']} "
            f"| {f.get('sent', '-')} | {f.get('answered', '-')} | {f.get('rcodes', '-')} "
            f"| {r['answered_not_refused']} | {r['logged']} | {r['rss_kb_before']} | {r['rss_kb_after']} |"
        )
    (out / "faults.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
