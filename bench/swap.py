"""Answer latency while a 1,000,000-entry list is downloaded, parsed and swapped in (issue 15's target:
no answer slower than 10 ms p99 during the swap).

    python bench/swap.py [--entries 1000000] [--qps 500]     -> bench/results/swap.{md,json}
    python bench/swap.py --via reload                        -> bench/results/swap-reload.{md,json}

`--via reload`: the list is a local file that the policy starts to name, and SIGHUP reloads it
(the window ends at the server's "reloaded").

A hosts list is served by http.server on 127.0.0.1; `resolverguard serve` (a real process, with the
bench upstream) subscribes to it. A client sends `--qps` queries a second over 200 names (answer-cache
hits after the first round, so the figures are the resolver's own) and times each; `resolverguard
lists update` then makes the server download, parse and swap the list. Latencies are reported for
the steady state before, and for the window from the update's start to the server's "lists updated".
RSS of the server is read from /proc before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from lists import write_hosts  # noqa: E402


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query_packet(qid: int, name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x01\x00\x01"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Client(threading.Thread):
    """Sends queries at a steady rate, one outstanding at a time per slot; records (sent_at, latency)."""

    def __init__(self, port: int, qps: int) -> None:
        super().__init__(daemon=True)
        self.port, self.qps, self.samples = port, qps, []
        self.stop = threading.Event()
        self.lost = 0
        self.lost_at: list[float] = []

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", self.port))
        sock.settimeout(1.0)
        names = [f"host{i}.bench.example" for i in range(200)]
        interval, qid, nxt = 1 / self.qps, 0, time.perf_counter()
        while not self.stop.is_set():
            qid = (qid + 1) & 0xFFFF
            sent = time.perf_counter()
            sock.send(query_packet(qid, names[qid % len(names)]))
            try:
                while struct.unpack("!H", sock.recv(4096)[:2])[0] != qid:
                    pass
                self.samples.append((sent, time.perf_counter() - sent))
            except TimeoutError:
                self.lost += 1
                self.lost_at.append(sent)
            nxt += interval
            time.sleep(max(0.0, nxt - time.perf_counter()))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--qps", type=int, default=500)
    p.add_argument("--via", choices=("update", "reload"), default="update")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    write_hosts(tmp / "hosts.txt", a.entries, random.Random(1))
    http = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp)))
    threading.Thread(target=http.serve_forever, daemon=True).start()
    up_port, port = free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(up_port)])
    sock = tmp / "control.sock"
    policy = tmp / "policy.yaml"
    base = (
        f"listen: ['127.0.0.1:{port}']\nupstreams: ['127.0.0.1:{up_port}']\nquery_log: off\nrate_limit: {{qps: 0}}\n"
        f"control_socket: {sock}\nsubscriptions: {{refresh: 0, cache_dir: {tmp / 'cache'}}}\n"
    )
    if a.via == "update":
        url = f"http://127.0.0.1:{http.server_address[1]}/hosts.txt"
        policy.write_text(base + f"lists:\n  deny_files: [{{url: '{url}', format: hosts}}]\n")
    else:
        policy.write_text(base)
    serve = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy)]
    server = subprocess.Popen(serve, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in server.stderr or []:
            lines.append((time.perf_counter(), line.rstrip()))

    threading.Thread(target=read, daemon=True).start()
    try:
        while not any("listening on" in line for _, line in lines):
            time.sleep(0.1)
        client = Client(port, a.qps)
        client.start()
        time.sleep(5)
        rss_before = rss_mb(server.pid)
        started = time.perf_counter()
        if a.via == "update":
            update = subprocess.run(
                [sys.executable, "-m", "resolverguard", "lists", "update", "--config", str(policy)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=600,
            ).stdout
            done = next((t for t, line in lines if "lists updated" in line), time.perf_counter())
        else:
            policy.write_text(base + f"lists:\n  deny_files: [{{path: '{tmp / 'hosts.txt'}', format: hosts}}]\n")
            server.send_signal(signal.SIGHUP)
            deadline = time.perf_counter() + 600
            while not any("reloaded" in line for _, line in lines) and time.perf_counter() < deadline:
                time.sleep(0.05)
            done = next((t for t, line in lines if "reloaded" in line), time.perf_counter())
            update = next((line for _, line in lines if "reloaded" in line), "no reload seen")
        time.sleep(3)
        client.stop.set()
        client.join(5)
        rss_after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(20)
        upstream.terminate()
        http.shutdown()
    before = [lat for t, lat in client.samples if started - 4 <= t < started]
    during = [lat for t, lat in client.samples if started <= t <= done]
    result = {
        "entries": a.entries,
        "qps": a.qps,
        "via": a.via,
        "update": update.strip(),
        "swap_window_s": round(done - started, 2),
        "before_p50_ms": round(percentile(before, 0.5) * 1000, 3),
        "before_p99_ms": round(percentile(before, 0.99) * 1000, 3),
        "during_p50_ms": round(percentile(during, 0.5) * 1000, 3),
        "during_p99_ms": round(percentile(during, 0.99) * 1000, 3),
        "during_max_ms": round(max(during, default=float("nan")) * 1000, 3),
        "during_answers": len(during),
        "slowest_at_s": [
            (round(t - started, 2), round(lat * 1000, 1)) for t, lat in sorted(client.samples, key=lambda s: -s[1])[:5]
        ],
        "before_max_ms": round(max(before, default=float("nan")) * 1000, 3),
        "lost": client.lost,
        "lost_during_swap": sum(started <= t <= done for t in client.lost_at),
        "lost_at_s": [round(t - started, 2) for t in client.lost_at][:40],
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
        "cores": os.cpu_count(),
        "switch_interval_s": sys.getswitchinterval(),
    }
    out = ROOT / "bench" / "results"
    name = "swap" if a.via == "update" else "swap-reload"
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {k} | {v} |" for k, v in result.items())
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (out / f"{name}.md").write_text(
        f"# List swap under load (bench/swap.py --via {a.via}, {when})\n\n| measure | value |\n|---|---|\n{rows}\n"
    )
    print(json.dumps(result, indent=2))
    with contextlib.suppress(OSError):
        sock.unlink()


if __name__ == "__main__":
    main()
