"""The latency resolverguard adds at 20% load, read off the wire: no hook inside the server (issue #17).

    python bench/p99_wire.py [--rounds 8] [--seconds 3] [--qps N] [--kind misses|hits] [--rt] [--out p99_wire]

Needs tcpdump (`.ci/run` does not: this is a bench) besides NSD and dnsperf. Starts NSD (a wildcard
root zone, as bench/compare.py) and resolverguard (d) (full chain, shipped model, query log off,
1 worker: bench/p99_ab.py's server), measures (d)'s peak on never-seen names once, then in rounds,
in turn: dnsperf at `--qps` (default 20% of that peak) for `--seconds` on never-seen names against
(d), then against NSD alone on names of their own, each with `tcpdump -i lo` writing down every
packet to and from the two servers with the kernel's time of sending it. From the capture:

* `own` per query = (d)'s reply sent - the client's query sent, less the upstream leg (its query to
  NSD sent -> NSD's answer sent, matched by question): the time resolverguard adds, including the
  time a query waited in the socket before the server read it, which a hook in the server cannot
  see (bench/p99_ab.py --trace starts its clock at the read);
* NSD alone: its service time the same way (reply sent - query sent), the same rate, the same
  round: how long a C server on this machine, at this moment, takes to turn a query round;
* the client's sending: queries per 10 ms window, and runs sent within 50 us of each other (dnsperf
  paces its queries: a burst at the server that the client did not send is the server's, or its core's).

Why (issue #17, session 14): in-server traces (p99_ab --trace) showed the slowest 1% waiting behind
model batches of 12-28 names at 20% load, and rounds differing 3x at the same rate. The client sends
evenly (measured here); the rounds differ with the machine: this measures (d) and its baseline on the
wire in every round, so the figure can be read against how the machine was doing then.

`--kind hits`: cached names instead (compare.py's Zipf(1.1) over ~10k names, every name asked once
before the timed run; no upstream leg to take off). `--rt`: (d) in SCHED_FIFO and dnsperf at nice -10
(as bench/p99_ab.py --rt). Results to
bench/results/OUT.{md,json}: per round (d)'s own p50/p99/p99.9 and NSD's, their medians over the rounds.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as C  # noqa: E402
import p99_ab as P  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BURST_GAP_S = 50e-6  # queries the client sent closer than this are one burst
WINDOW_S = 0.010
MAX_QPS = 4000  # never-seen names are made for at most this rate (20% of (d)'s peak here: ~2,000)


def packets(pcap: Path) -> list[tuple[float, int, int, bytes, bytes]]:
    """(kernel time, source port, destination port, DNS ID, question) of each UDP packet of a pcap
    (Ethernet framing: tcpdump's on `lo`)."""
    data = pcap.read_bytes()
    if len(data) < 24:
        return []
    nano = struct.unpack("<I", data[:4])[0] == 0xA1B23C4D
    link = struct.unpack("<I", data[20:24])[0]
    skip = 14 if link == 1 else 16  # Ethernet, or Linux cooked capture
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack("<IIII", data[off : off + 16])
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        ip = frame[skip:]
        if len(ip) < 20 or ip[9] != 17:
            continue
        header = (ip[0] & 15) * 4
        sport, dport = struct.unpack("!HH", ip[header : header + 4])
        dns = ip[header + 8 :]
        end = dns.find(0, 12)
        question = bytes(dns[12 : end + 5]) if len(dns) > 12 and end > 0 else b""
        out.append((sec + frac * (1e-9 if nano else 1e-6), sport, dport, bytes(dns[:2]), question))
    return out


def on_the_wire(pcap: Path, port: int, upstream: int | None) -> dict[str, Any]:
    """Per answered query of the server on `port`: reply sent - query sent, less (with `upstream`)
    the leg to the upstream and back for the same question; and how the client sent its queries."""
    asked: dict[tuple[int, bytes, bytes], float] = {}
    replied: dict[tuple[int, bytes, bytes], float] = {}
    up_asked: dict[bytes, float] = {}
    up_answered: dict[bytes, float] = {}
    for at, sport, dport, ident, question in packets(pcap):
        if dport == port:
            asked.setdefault((sport, ident, question), at)
        elif sport == port and dport != upstream:
            replied.setdefault((dport, ident, question), at)
        elif upstream is not None and dport == upstream:
            up_asked.setdefault(question, at)
        elif upstream is not None and sport == upstream:
            up_answered.setdefault(question, at)
    own = []
    for key, sent in asked.items():
        if key in replied:
            q = key[2]
            leg = up_answered[q] - up_asked[q] if q in up_asked and q in up_answered else 0.0
            own.append(replied[key] - sent - leg)
    arrivals = sorted(asked.values())
    runs, run = [], 1
    for a, b in zip(arrivals, arrivals[1:], strict=False):
        if b - a < BURST_GAP_S:
            run += 1
        else:
            runs.append(run)
            run = 1
    runs.append(run)
    windows = collections.Counter(int(t / WINDOW_S) for t in arrivals)
    return {
        "asked": len(asked),
        "answered": len(own),
        "ms": [pct(own, q) for q in (0.5, 0.99, 0.999)],
        "client_bursts_over_4": sum(1 for r in runs if r > 4),
        "client_largest_burst": max(runs, default=0),
        "client_max_per_10ms": max(windows.values(), default=0),
    }


def pct(values: list[float], q: float) -> float:
    """p99_ab.pct of seconds, in ms."""
    return round(P.pct(values, q) * 1e3, 3)


def captured(work: Path, name: str, ports: list[int], port: int, names: Path, a: argparse.Namespace) -> Path:
    """dnsperf at the round's rate against `port` while tcpdump writes down the traffic of `ports`."""
    pcap = work / f"{name}.pcap"
    expr = " or ".join(f"udp port {p}" for p in ports)
    cmd = ["tcpdump", "-i", "lo", "-n", "-s", "160", "-B", "32768", "-w", str(pcap), expr]
    dump = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # tcpdump's capture open before the first query
    try:
        P.latencies(port, names, a.seconds, a.qps, a.rt)
    finally:
        time.sleep(0.3)
        dump.send_signal(2)
        dump.wait(30)
    return pcap


def one_round(work: Path, nsd: int, files: dict[str, Path], part: int, a: argparse.Namespace) -> dict[str, Any]:
    port = C.free_port()
    proc = P.start(ROOT, work, port, nsd, None)
    try:
        C.wait_ready(port)
        time.sleep(1.0)
        if a.kind == "hits":  # the steady state: every name asked once, then the Zipf stream again
            C.asked_once(port, files["warm"])
        else:
            warm = C.latency_slice(files["misses"], 3 * part, a.qps, a.seconds)  # (parts of one size: no overlap)
            P.latencies(port, warm, 1.0, a.qps, False)  # the server's first never-seen names: untimed
        time.sleep(C.LATENCY_SETTLE)
        if a.rt:
            P.realtime(proc.pid, True)
        timed = C.latency_slice(files[a.kind], 3 * part + 1, a.qps, a.seconds)
        mine = on_the_wire(captured(work, f"d-{part}", [port, nsd], port, timed, a), port, nsd)
    finally:
        proc.terminate()
        proc.wait(10)
    time.sleep(C.LATENCY_SETTLE)
    names = C.latency_slice(files[a.kind], 3 * part + 2, a.qps, a.seconds)
    theirs = on_the_wire(captured(work, f"nsd-{part}", [nsd], nsd, names, a), nsd, None)
    return {"round": part, "qps": a.qps, "d_own": mine, "nsd": theirs, "load": C.load_average()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--qps", type=float, default=0.0, help="the rate (default: 20%% of (d)'s peak on never-seen names)")
    p.add_argument("--rt", action="store_true", help="(d) in SCHED_FIFO, dnsperf at nice -10")
    p.add_argument("--kind", choices=("misses", "hits"), default="misses", help="never-seen or cached names")
    p.add_argument("--out", default="p99_wire")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-p99wire-"))
    rng = random.Random(11)
    per_part = int(MAX_QPS * a.seconds * 1.2) + 100  # (compare.latency_slice's part, at the most rate allowed)
    names = C.miss_names(C.benign_names(2000, rng), 60_000 + 3 * a.rounds * per_part, rng, "w")
    files = {"misses": work / "misses.txt", "peak": work / "peak.txt"}
    files["peak"].write_text("".join(f"{n} A\n" for n in names[:60_000]))
    files["misses"].write_text("".join(f"{n} A\n" for n in names[60_000:]))
    if a.kind == "hits":  # hits.txt (the Zipf stream) and warm.txt (each of its names once)
        files |= C.query_files(work, 200_000, random.Random(7))
        files["warm"] = work / "warm.txt"
        files["peak"] = files["hits"]
    load_before = C.load_average()
    nsd = C.free_port()
    server = C.start_nsd(work, nsd)
    rounds: list[dict[str, Any]] = []
    try:
        C.wait_ready(nsd)
        if not a.qps:
            port = C.free_port()
            proc = P.start(ROOT, work, port, nsd, None)
            try:
                C.wait_ready(port)
                time.sleep(1.0)
                if a.kind == "hits":
                    C.asked_once(port, files["warm"])
                a.qps = round(0.2 * (C.dnsperf(port, files["peak"], 3.0)["qps"] or 0))
            finally:
                proc.terminate()
                proc.wait(10)
        for part in range(a.rounds):
            got = one_round(work, nsd, files, part, a)
            rounds.append(got)
            print(summary(got), flush=True)
    finally:
        server.terminate()
        server.wait(10)
    write(rounds, a, load_before)


def summary(r: dict[str, Any]) -> str:
    d, n = r["d_own"], r["nsd"]
    return (
        f"round {r['round']}: (d) own p50/p99/p99.9 {d['ms']} ms ({d['answered']} of {d['asked']});"
        f" NSD alone {n['ms']} ms; client: largest burst {d['client_largest_burst']}/{n['client_largest_burst']},"
        f" max per 10 ms {d['client_max_per_10ms']}/{n['client_max_per_10ms']}; load {r['load']}"
    )


def write(rounds: list[dict[str, Any]], a: argparse.Namespace, load_before: str) -> None:
    out = ROOT / "bench" / "results"
    load_after = C.load_average()
    own99 = [r["d_own"]["ms"][1] for r in rounds]
    nsd99 = [r["nsd"]["ms"][1] for r in rounds]
    met = sum(1 for x in own99 if x <= 0.5)
    payload = {
        "rounds": rounds,
        "load": [load_before, load_after],
        "args": vars(a),
        "median_own_p99_ms": statistics.median(own99),
        "median_nsd_p99_ms": statistics.median(nsd99),
        "rounds_own_p99_at_most_0.5ms": met,
    }
    (out / f"{a.out}.json").write_text(json.dumps(payload) + "\n")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"# The latency (d) adds at a fixed rate, on the wire (bench/p99_wire.py), {stamp}, {os.cpu_count()} cores",
        "",
        f"Load average before {load_before}, after {load_after}. {a.rounds} rounds of {a.seconds:g} s"
        f" at {a.qps:.0f} qps on {'cached' if a.kind == 'hits' else 'never-seen'} names"
        ", (d) then NSD alone, each captured with tcpdump on lo;"
        f" {'(d) in SCHED_FIFO, dnsperf nice -10' if a.rt else 'SCHED_OTHER'}. `own` = (d)'s reply sent - the"
        " client's query sent - (its query to NSD sent -> NSD's answer sent): the time (d) adds, socket wait"
        " included. NSD alone: reply sent - query sent, the same rate, the same round.",
        "",
        "| round | (d) own p50 / p99 / p99.9 ms | NSD alone p50 / p99 / p99.9 ms | client's largest burst ((d) / NSD)"
        " | client's max per 10 ms | load |",
        "|---|---|---|---|---|---|",
    ]
    for r in rounds:
        d, n = r["d_own"], r["nsd"]
        lines.append(
            f"| {r['round']} | {' / '.join(map(str, d['ms']))} | {' / '.join(map(str, n['ms']))}"
            f" | {d['client_largest_burst']} / {n['client_largest_burst']}"
            f" | {d['client_max_per_10ms']} / {n['client_max_per_10ms']} | {r['load']} |"
        )
    lines += [
        "",
        f"Median over the rounds: (d) own p99 {payload['median_own_p99_ms']:.3f} ms, NSD alone p99"
        f" {payload['median_nsd_p99_ms']:.3f} ms; rounds with (d)'s own p99 <= 0.5 ms: {met} of {len(rounds)}.",
        "",
    ]
    (out / f"{a.out}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
