"""A long fuzzing run against a real resolverguard process: up to 1,000,000 malformed packets.

    python bench/fuzz.py [--packets 1000000] [--seconds 300]      (writes bench/results/fuzz.{md,json})

The tests (tests/test_fuzz.py) run a few hundred hypothesis examples in CI; this is the campaign
issue #14 asks for, bounded in count and time, on 127.0.0.1 only. Packets come from the tests'
generators (tests/fuzzing.py: the crafted cases, random bytes, near-valid queries and mutations of
them), drawn with a fixed seed; 1 in 50 goes over TCP. Every 5,000 packets a real query must still
be answered. At the end: packets sent, replies seen, real queries answered, tracebacks on the
server's stderr, RSS before and after.
"""

from __future__ import annotations

import argparse
import contextlib
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

from compare import free_port, wait_ready
from faults import rss_kb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from fuzzing import CRAFTED, mutate, query_packet  # noqa: E402
from rfc8906 import exchange, query_wire  # noqa: E402


def packet(rng: random.Random) -> bytes:
    """One packet from the same families as tests/fuzzing.py's hypothesis strategy."""
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(600))
    if kind == 1:
        return rng.choice(CRAFTED)
    labels = [rng.randbytes(rng.randrange(71)) for _ in range(rng.randrange(7))]
    valid_ish = query_packet(labels, rng.randrange(65536), rng.randrange(4), rng.randrange(65536))
    if kind == 2:
        return valid_ish
    count = rng.randrange(7)
    positions = [rng.randrange(301) for _ in range(count)]
    values = [rng.randrange(256) for _ in range(count)]
    return mutate(valid_ish, positions, values, rng.choice([None, rng.randrange(301)]))


def send_tcp(port: int, data: bytes) -> None:
    """One framed packet on a new connection, closed at once without reading (a client that goes
    away while its answer is being written is part of the test)."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(struct.pack("!H", len(data) & 0xFFFF) + data)


def run(a: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rg-fuzz-"))
    up_port, port = free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(up_port)])
    (work / "policy.yaml").write_text(
        f"upstreams: ['127.0.0.1:{up_port}']\nquery_log: off\nrate_limit: {{qps: 0}}\nupstream_timeout: 0.3\n"
    )
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(work / "policy.yaml")]
    cmd += ["--listen", f"127.0.0.1:{port}", "--model", str(ROOT / "tests" / "data" / "digits.tflite")]
    server = subprocess.Popen(cmd, cwd=ROOT, stderr=(work / "stderr.txt").open("w"))
    rng = random.Random(a.seed)
    sent = replies = checks = answered = tcp = 0
    try:
        wait_ready(port)
        rss_before = rss_kb(server.pid)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setblocking(False)
        started = time.monotonic()
        while sent < a.packets and time.monotonic() - started < a.seconds:
            data = packet(rng)
            if rng.randrange(50) == 0:
                send_tcp(port, data)
                tcp += 1
            else:
                with contextlib.suppress(OSError):
                    udp.sendto(data, ("127.0.0.1", port))
            sent += 1
            while True:  # drain whatever came back, never wait
                try:
                    udp.recv(65535)
                    replies += 1
                except OSError:
                    break
            if sent % 64 == 0:  # paced, so the kernel does not drop what the server has no time to read
                time.sleep(max(0.0, started + sent / a.rate - time.monotonic()))
            if sent % 5000 == 0:
                checks += 1
                reply = exchange(query_wire("www.example.com"), "127.0.0.1", port, timeout=2.0)
                answered += reply.message is not None and reply.message.rcode() == 0
                time.sleep(0.01)  # let the server drain its socket buffer now and then
        seconds = time.monotonic() - started
        final = exchange(query_wire("www.example.com"), "127.0.0.1", port, timeout=2.0)
        rss_after = rss_kb(server.pid)
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(15)
        upstream.terminate()
        upstream.wait(5)
    err = (work / "stderr.txt").read_text()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "seed": a.seed,
        "packets": sent,
        "over_tcp": tcp,
        "seconds": round(seconds, 1),
        "udp_replies_seen": replies,
        "real_queries_answered": f"{answered}/{checks}",
        "answers_at_the_end": final.message is not None and final.message.rcode() == 0,
        "alive": alive,
        "tracebacks": err.count("Traceback"),
        "stderr_lines": len(err.splitlines()),
        "rss_mb_before": round(rss_before / 1024, 1),
        "rss_mb_after": round(rss_after / 1024, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--packets", type=int, default=1_000_000)
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--rate", type=float, default=15000.0, help="packets per second at most")
    a = p.parse_args()
    result = run(a)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Fuzzing run (bench/fuzz.py), {result['date']}, {result['cores']} cores, loopback only",
        "",
        f"`python bench/fuzz.py --packets {a.packets} --seconds {a.seconds:g} --seed {a.seed} --rate {a.rate:g}`",
        "",
        "| what | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in result.items() if k not in ("date", "cores")),
    ]
    (out / "fuzz.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
