"""One query at a time: the round trip of never-seen names and of hits, for several trees, interleaved.

    python bench/rtt_ab.py TREE [TREE ...] [--queries 3000] [--block 100] [--out NAME]

A closed loop (one query in flight, no batching anywhere) against (d) `resolverguard serve` of
each tree (full chain, shipped model, NSD as the upstream, as bench/compare.py), the trees taking
turns every `--block` queries so that the load of a shared machine falls on each alike: what one
query costs on the way through, with nothing else in the process. p50/p90/p99 of the round trip
per tree, misses (each name new) and hits (a few names asked over and over).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as C  # noqa: E402
from standalone import start  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def query(name: str, qid: int) -> bytes:
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + wire + b"\x00\x01\x00\x01"


def rtt(sock: socket.socket, port: int, name: str, qid: int) -> float:
    began = time.perf_counter()
    sock.sendto(query(name, qid), ("127.0.0.1", port))
    while True:
        data = sock.recv(4096)
        if data[:2] == qid.to_bytes(2, "big"):
            return time.perf_counter() - began


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("trees", nargs="+", type=Path)
    p.add_argument("--queries", type=int, default=3000)
    p.add_argument("--block", type=int, default=100)
    p.add_argument("--out")
    a = p.parse_args()
    trees = [t.resolve() for t in a.trees]
    work = Path(tempfile.mkdtemp(prefix="rg-rtt-"))
    rng = random.Random(5)
    names = C.miss_names(C.benign_names(2000, rng), a.queries * len(trees), rng, "t")
    hits = C.benign_names(20, rng)
    load_before = C.load_average()
    nsd_port = C.free_port()
    procs = [C.start_nsd(work, nsd_port)]
    ports = []
    out: dict[str, dict[str, list[float]]] = {t.name: {"misses": [], "hits": []} for t in trees}
    try:
        C.wait_ready(nsd_port)
        for tree in trees:
            ports.append(C.free_port())
            procs.append(start(tree, work, ports[-1], nsd_port))
        for port in ports:
            C.wait_ready(port)
        time.sleep(2.0)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2.0)
        for port in ports:  # warm: the model, the hits' answers
            for i, name in enumerate(hits * 3 + names[-200:]):
                rtt(sock, port, name, i)
        at = 0
        for start_at in range(0, a.queries, a.block):
            for tree, port in zip(trees, ports, strict=True):
                for i in range(start_at, min(a.queries, start_at + a.block)):
                    out[tree.name]["misses"].append(rtt(sock, port, names[at], i & 0xFFFF))
                    out[tree.name]["hits"].append(rtt(sock, port, hits[i % len(hits)], (i + 1) & 0xFFFF))
                    at += 1
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    lines = [
        f"# One query at a time (bench/rtt_ab.py), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{a.queries} misses and {a.queries} hits per tree, trees in turn every {a.block}; load average before "
        f"{load_before}, after {C.load_average()}.",
        "",
        "| tree | misses p50 us | p90 | p99 | hits p50 us | p90 | p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for tree in trees:
        cells = []
        for kind in ("misses", "hits"):
            v = sorted(out[tree.name][kind])
            cells += [f"{1e6 * v[int(len(v) * q)]:.0f}" for q in (0.5, 0.9, 0.99)]
        lines.append(f"| {tree.name} | {' | '.join(cells)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        (ROOT / "bench" / "results" / f"{a.out}.md").write_text(text)
        summary = {t: {k: statistics.median(v) for k, v in kinds.items()} for t, kinds in out.items()}
        (ROOT / "bench" / "results" / f"{a.out}.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
