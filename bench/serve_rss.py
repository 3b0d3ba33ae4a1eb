"""Peak resident memory of `resolverguard serve` (full chain, shipped model) with and without a
1,000,000-entry hosts blocklist: the issue #15 budget is +8 MB per million entries and a peak under
150 MB.

    python bench/serve_rss.py [--entries 1000000] [--root DIR]   -> bench/results/serve_rss.{md,json}

`--root`: the checkout whose code is measured (default this one; give another worktree to compare).
The server reads the list at start, answers 2000 queries (from the bench upstream), and then its
VmRSS and VmHWM (peak) are read from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lists import write_hosts

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(qid: int, name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x01\x00\x01"


def measure(root: Path, work: Path, hosts: Path | None) -> dict[str, float]:
    up, port = free_port(), free_port()
    policy = work / "policy.yaml"
    deny = f"lists:\n  deny_files: ['{hosts}']\n" if hosts else ""
    policy.write_text(
        f"upstreams: ['127.0.0.1:{up}']\nquery_log: off\nrate_limit: {{qps: 0}}\ncontrol_socket: off\n{deny}"
    )
    stub = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(up)])
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    started = time.perf_counter()
    server = subprocess.Popen(cmd, cwd=root, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in server.stderr or []:
            if "listening on" in line:
                break
        ready = time.perf_counter() - started
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            for i in range(2000):
                sock.sendto(query(i, f"q{i}.bench{i % 97}.example"), ("127.0.0.1", port))
                sock.recv(4096)
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{server.pid}/status").read_text().splitlines() if ":" in line
        )
        return {
            "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "peak_mb": int(status["VmHWM"].split()[0]) / 1024,
            "ready_s": ready,
        }
    finally:
        server.terminate()
        server.wait(20)
        stub.terminate()
        stub.wait(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--root", type=Path, default=ROOT)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hosts = write_hosts(work / "hosts.txt", a.entries, random.Random(1))
        without = measure(a.root, work, None)
        with_list = measure(a.root, work, hosts)
    result = {
        "root": str(a.root),
        "entries": a.entries,
        "without": without,
        "with_list": with_list,
        "added_rss_mb": with_list["rss_mb"] - without["rss_mb"],
        "load_average": os.getloadavg()[0],
    }
    out = ROOT / "bench" / "results"
    (out / "serve_rss.json").write_text(json.dumps(result, indent=2) + "\n")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (out / "serve_rss.md").write_text(
        f"# Server memory with a {a.entries:,}-entry blocklist (bench/serve_rss.py, {when})\n\n"
        "| | RSS MB | peak RSS MB | ready in s |\n|---|---|---|---|\n"
        f"| no list | {without['rss_mb']:.1f} | {without['peak_mb']:.1f} | {without['ready_s']:.1f} |\n"
        f"| {a.entries:,} entries | {with_list['rss_mb']:.1f} | {with_list['peak_mb']:.1f} | "
        f"{with_list['ready_s']:.1f} |\n\n"
        f"Added by the list: {result['added_rss_mb']:.1f} MB resident (target +8 MB per million), peak "
        f"{with_list['peak_mb']:.1f} MB (target < 150 MB). Load average {result['load_average']:.1f}.\n"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
