"""What the slowest 1% of (d)'s answers at 20% load are made of, for several checkouts (issue #17).

    python bench/p99_ab.py [TREE ...] [--rounds 3] [--seconds 4] [--qps N] [--watch | --trace] [--rt]
                           [--kind misses|hits] [--out NAME]

For each tree (this checkout first, then the others), (d) (the full chain, 1 worker, as
bench/standalone.py starts it) on never-seen names: its peak QPS (3 s, per round, so a change that
costs throughput shows), then at a fixed rate (`--qps`, default 20% of the first tree's first
peak) rounds of `--seconds` in turn with NSD alone on the same names, the trees' order reversed
every other round, each server fresh for every round. dnsperf -v gives every answer's latency in
the order they came; at a fixed rate the i-th answer arrived about i/qps seconds in, so the
slowest 1% can be placed in time: many slow answers within a few ms of each other are a stall
(the whole server, or the machine, stopped), lone ones are a query's own cost or a short queue.

Per run: p50, p99, answers over 1 ms, and the slow answers (over NSD's p99 of the same round +
0.5 ms) grouped in 10 ms windows: how many windows hold them and how many answers the largest
holds. `--watch`: a thread inside each server (installed by a sitecustomize on its PYTHONPATH only)
writes down every garbage collection (generation, ms) and every 2 ms sleep that woke over 1 ms
late, with the process's CPU meanwhile (below a quarter of the lag: the process was not running,
the machine's stall); those of the measured seconds are summed per run. The watcher costs the
server a wake-up every 2 ms: compare trees with it on in both, or off in both.

`--trace` (no watcher thread): the same collections, the loop's Python callbacks (the listener's
and the upstream sockets' readers, the model's batch, the upstream timer's sweep, and any
`module:Class.method` in RG_P99_WRAP) that took over 0.3 ms, with their own CPU time, and every
query's four moments keyed by its question (never-seen names are unique): read from the client,
sent upstream, the upstream's answer read, the reply sent (the client and upstream sockets' batch
reads and writes are wrapped: udpbatch.DatagramIO, udpbatch.send_all, steps.upstream.ReadBuffer).
Per run: the callbacks over 1 ms of CPU (the server's own stalls), and each leg's p50/p99
(`to_upstream`: our first steps and the model's batch; `upstream`: NSD and the wake-up on its
answer; `to_reply`: our last steps), `own` (read -> reply sent, less the upstream leg: the latency
resolverguard adds, the direct measure of issue #17's "added p99"), for queries forwarded and for
those answered here (cached, blocked), with which leg was longest for the slowest 1% and what long
event (a collection, a callback over 0.3 ms) overlapped them. `--kind hits`: the latency runs on
cached names (Zipf over ~10k, every name asked once first) instead of never-seen ones. `--rt`: (d)
in SCHED_FIFO for the latency runs (and dnsperf at nice -10), so no other work on the machine takes
its core: what is left is its own.
`--perf`: `perf sched record -a` during each measured (d) run (the files stay in the work dir).
Also with `--trace` (session 14): every moment is read on the loop thread's CPU clock too, so `own_cpu`
is the part of `own` the thread was running (the rest: its core taken by the hypervisor or interrupts,
or a late wake-up), and each long callback's CPU is split into socket sends (the kernel's loopback
delivery and the receiver's wake-up run inside them), socket reads, the model and collections, the
rest being the Python steps. `--gaps`: each core's own gaps (`vcpu_gaps`) before and after the rounds.
bench/p99_wire.py reads the same latency off the wire, socket wait included.

Results to bench/results/OUT.{md,json} (OUT default p99_ab); every answer's latency (dnsperf's order)
and the trace's events to OUT.raw.json.gz.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as C  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WINDOW_S = 0.010  # slow answers this close in time are one burst
SLOW_OVER_NSD_MS = 0.5  # an answer this much slower than NSD's own p99 of the round is "slow"
RAW = ("raw_ms", "raw_nsd_ms", "events")  # kept apart (OUT.raw.json.gz): ~0.5 MB a run
PEAK_NAMES = 60_000  # never-seen names per peak run (more than (d) answers in 3 s here: ~30k)

WATCHER = """
import gc, os, sys, threading, time
if "serve" in sys.argv:
    _out = open(os.environ["RG_P99_LOG"], "a", buffering=1)
    _gc = [0.0]
    _parts = {}  # --trace: the running callback's CPU seconds in each kind of work (see _timed)
    def _collected(phase, info):
        if phase == "start":
            _gc[0] = time.perf_counter()
        else:
            took = time.perf_counter() - _gc[0]
            _parts["gc"] = _parts.get("gc", 0.0) + took
            _out.write(f"gc {time.time():.4f} {info['generation']} {took * 1e3:.3f}\\n")
    gc.callbacks.append(_collected)
    def _watch():
        while True:
            t0, c0 = time.perf_counter(), time.process_time()
            time.sleep(0.002)
            lag, cpu = time.perf_counter() - t0 - 0.002, time.process_time() - c0
            if lag > 0.001:
                _out.write(f"lag {time.time():.4f} {lag * 1e3:.3f} {cpu * 1e3:.3f}\\n")
    if os.environ.get("RG_P99_GC"):  # other collector thresholds, set after the server's own
        import resolverguard.service as _s
        _settle = _s.settle_memory
        def _settled():
            _settle()
            gc.set_threshold(*map(int, os.environ["RG_P99_GC"].split(",")))
        _s.settle_memory = _settled
    if os.environ.get("RG_P99_WATCHER", "1") == "1":
        threading.Thread(target=_watch, name="p99-watcher", daemon=True).start()
    if os.environ.get("RG_P99_TRACE"):  # the loop's Python callbacks that ran long, by name
        import resolverguard.batching as _b, resolverguard.steps.upstream as _u, resolverguard.udpbatch as _l
        import resource
        _usage = lambda: resource.getrusage(resource.RUSAGE_THREAD)
        # cb END_TIME MS NAME:COUNT:CPU_MS:MAJOR_FAULTS:MINOR_FAULTS:PARTS, PARTS the callback's CPU ms in
        # socket sends (the kernel's loopback delivery and the receiver's wake-up run inside them), socket
        # reads, the model and collections (wall ms), k=v joined by "/"; the rest is the Python steps
        def _timed(cls, name, count, label=None):
            inner = getattr(cls, name)
            def wrapper(self, *args):
                outer = dict(_parts)  # a callback run from inside another (a full batch's flush)
                _parts.clear()
                t0, c0, n, u0 = time.perf_counter(), time.thread_time(), count(self), _usage()
                try:
                    return inner(self, *args)
                finally:
                    took = time.perf_counter() - t0
                    if took > 0.0003:
                        cpu, u = (time.thread_time() - c0) * 1e3, _usage()
                        faults = f"{u.ru_majflt - u0.ru_majflt}:{u.ru_minflt - u0.ru_minflt}"
                        parts = "/".join(f"{k}={v * 1e3:.3f}" for k, v in sorted(_parts.items()))
                        _out.write(
                            f"cb {time.time():.4f} {took * 1e3:.3f} {label or name}:{n}:{cpu:.3f}:{faults}:{parts}\\n"
                        )
                    for k, v in _parts.items():
                        outer[k] = outer.get(k, 0.0) + v
                    _parts.clear()
                    _parts.update(outer)
            setattr(cls, name, wrapper)
        def _part(kind, c0):
            _parts[kind] = _parts.get(kind, 0.0) + time.thread_time() - c0
        import resolverguard.model as _model
        _depth = [0]  # a scorer calling another (the ensemble's CNN) counts once
        for _scorer in (getattr(_model, n) for n in dir(_model) if n.endswith("Scorer")):
            if isinstance(_scorer, type) and "score" in vars(_scorer):
                def _scored(self, *args, _inner=vars(_scorer)["score"]):
                    c0 = time.thread_time()
                    _depth[0] += 1
                    try:
                        return _inner(self, *args)
                    finally:
                        _depth[0] -= 1
                        if not _depth[0]:
                            _part("model", c0)
                _scorer.score = _scored
        _timed(_l.UdpListener, "_readable", lambda s: 0, "listener")
        _timed(_u.Channel, "_readable", lambda s: len(s.pending), "upstream_read")
        _timed(_u.Deadlines, "_sweep", lambda s: len(s._queue))
        _timed(_b.MicroBatcher, "flush", lambda s: len(s._texts))
        import atexit, collections, importlib
        def _kinds():  # what the collector walks at the end (frozen objects left out)
            for g in (0, 1, 2):
                kinds = collections.Counter(type(o).__name__ for o in gc.get_objects(g))
                top = str(dict(kinds.most_common(12))).replace(" ", "")
                _out.write(f"kinds {time.time():.4f} {g} {sum(kinds.values())}:{top}\\n")
        atexit.register(_kinds)
        # every query's four moments: read from the client (0) and the reply sent (3), keyed by the
        # client's port and query ID with the question (a cached name is asked many times: pairs are
        # taken in turn); sent upstream (1) and the upstream's answer read (2), keyed by the question
        # alone (never-seen names: unique). The server reads and writes its client socket with
        # udpbatch.DatagramIO (recvmmsg/sendmmsg), sends upstream with udpbatch.send_all (a model
        # batch's queries, one sendmmsg) or the channel socket's own send (a lone query), and reads
        # the upstream's answers with steps.upstream.ReadBuffer.read (recvmmsg): those are wrapped.
        import socket as _socket
        _io, _seen = _l.DatagramIO, []
        def _q(d):  # the question: the name to its root label, type and class
            return d[12 : d.find(0, 12) + 5].hex() if len(d) > 12 else "-"
        def _client(d, a):  # the client's port and the query's ID
            return f"{a[1] if a else 0}:{int.from_bytes(d[:2], 'big') if len(d) > 1 else 0}"
        _receive, _send = _io.receive, _io.send
        _cpu = time.thread_time  # the loop thread's CPU clock beside the wall clock: stops while it is not running
        def _received(self):
            c0 = _cpu()
            got = _receive(self)
            _part("recv", c0)
            now, cpu = time.time(), _cpu()
            _seen.extend((now, 0, _q(d), _client(d, a), cpu) for d, a in got[0])
            return got
        def _sent(self, items):
            now, cpu = time.time(), _cpu()
            done = _send(self, items)
            _part("send", cpu)
            _seen.extend((now, 3, _q(d), _client(d, a), cpu) for d, a in items[: done[0]])
            return done
        _io.receive, _io.send = _received, _sent
        _send_all, _usend = _u.send_all, _socket.socket.send
        def _upsend_all(sock, datagrams, start=0, native=None):
            now, cpu = time.time(), _cpu()
            done = _send_all(sock, datagrams, start, native)
            _part("send", cpu)
            _seen.extend((now, 1, _q(bytes(d)), "-", cpu) for d in datagrams[start : done[0]])
            return done
        def _upsend(self, data, *args):
            c0 = _cpu()
            _seen.append((time.time(), 1, _q(bytes(data)), "-", c0))
            try:
                return _usend(self, data, *args)
            finally:
                _part("send", c0)
        _u.send_all, _socket.socket.send = _upsend_all, _upsend
        _read = _u.ReadBuffer.read
        def _upread(self, sock):
            c0 = _cpu()
            got = _read(self, sock)
            _part("recv", c0)
            now, cpu = time.time(), _cpu()
            _seen.extend((now, 2, _q(d), "-", cpu) for d in got[0])
            return got
        _u.ReadBuffer.read = _upread
        def _dump():
            with open(os.environ["RG_P99_LOG"] + ".io", "w") as f:
                f.writelines(f"{t:.6f} {k} {q} {c} {u:.6f}\\n" for t, k, q, c, u in _seen)
        atexit.register(_dump)
        for _spec in filter(None, os.environ.get("RG_P99_WRAP", "").split(",")):
            _mod, _qual = _spec.split(":")
            _cls_name, _meth = _qual.split(".")
            _timed(getattr(importlib.import_module(_mod), _cls_name), _meth, lambda s: 0)
"""


def start(
    tree: Path, work: Path, port: int, upstream: int, log: Path | None, trace: bool = False
) -> subprocess.Popen[bytes]:
    """(d) from `tree`, policy as bench/standalone.py's; `log`: with the watcher."""
    policy = work / f"rg-{port}.yaml"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream}']\nscoring: true\nquery_log: off\n"
        "rate_limit:\n  qps: 0\nlimits:\n  max_inflight: 8192\nworkers: 1\n"
    )
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    env = dict(os.environ, PYTHONPATH=str(tree))
    if log is not None:
        env["PYTHONPATH"] = f"{work / 'site'}{os.pathsep}{tree}"
        env["RG_P99_LOG"] = str(log)
        if trace:
            env["RG_P99_TRACE"], env["RG_P99_WATCHER"] = "1", "0"
    stderr = (work / f"rg-{port}.log").open("w")
    return subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


SPINNER = """
import json, sys, time
end, prev, gaps = time.perf_counter() + float(sys.argv[1]), time.perf_counter(), []
while (now := time.perf_counter()) < end:
    if now - prev > 2e-5:
        gaps.append(now - prev)
    prev = now
print(json.dumps(gaps))
"""
GAP_EDGES_MS = (0.02, 0.1, 0.3, 1.0, 3.0)


def vcpu_gaps(seconds: float = 0.9) -> list[dict[str, Any]]:
    """--gaps: per core, a spinner in SCHED_FIFO (nothing in this machine takes its core but
    interrupts) writes down every gap in its own running over 20 us: the time the core itself was
    not running it (the hypervisor's steal, interrupts). 0.9 s, under the kernel's real-time budget
    (950 ms a second: a longer spin is throttled 50 ms and measures that instead)."""
    out = []
    for core in range(os.cpu_count() or 1):
        cmd = ["taskset", "-c", str(core), "chrt", "-f", "50", sys.executable, "-c", SPINNER, str(seconds)]
        gaps = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        bounds = zip(GAP_EDGES_MS, (*GAP_EDGES_MS[1:], 1e9), strict=True)
        bins = [sum(1 for g in gaps if lo <= g * 1e3 < hi) for lo, hi in bounds]
        out.append(
            {
                "core": core,
                "seconds": seconds,
                "lost_share": round(sum(gaps) / seconds, 4),
                "max_ms": round(max(gaps, default=0.0) * 1e3, 3),
                "count_from_ms": dict(zip(map(str, GAP_EDGES_MS), bins, strict=True)),
                "ms_in_gaps_over_0.3ms": round(sum(g for g in gaps if g >= 3e-4) * 1e3, 2),
            }
        )
        time.sleep(0.2)
    return out


def gaps_text(g: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"core {c['core']}: {c['lost_share'] * 100:.1f}% lost, max {c['max_ms']} ms, gaps from ms {c['count_from_ms']}"
        for c in g
    )


RT = ("nice", "-n", "-10")  # --rt: dnsperf's priority in the latency runs (not real-time: it spins)


def realtime(pid: int, on: bool) -> None:
    """--rt: every thread of `pid` (and its children) in SCHED_FIFO (on) or back to SCHED_OTHER,
    so that no other work on the machine delays it: what is left of its time is its own. Only
    (d), and only for the latency runs (at the peak both cores would be held from everyone else).
    dnsperf with -Q keeps a core busy between its sends: in SCHED_FIFO it kept the server off its
    core for up to 20 ms (tried: p99 16.7 ms), so it gets nice -10 instead; NSD stays as it is
    (its answer leg is then the machine's, and its own p99 is measured as before)."""
    policy = ["-f", "-p", "10"] if on else ["-o", "-p", "0"]
    for each in C.family(pid):  # (NSD answers from a child process)
        subprocess.run(["chrt", "-a", *policy, str(each)], check=True, stdout=subprocess.DEVNULL)


def latencies(
    port: int, names: Path, seconds: float, qps: float, rt: bool = False
) -> tuple[list[float], dict[str, Any]]:
    """dnsperf at `qps`: every answer's latency in ms, in the order they came, and its totals."""
    cmd = [*(RT if rt else ()), "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(names), "-l", str(seconds)]
    cmd += ["-c", "8", "-q", "500", "-t", "2", "-S", "0", "-Q", str(int(qps)), "-v"]
    with tempfile.TemporaryFile("w+") as sink:  # (a file, not a pipe: no reader woken per line meanwhile)
        subprocess.run(cmd, stdout=sink, stderr=subprocess.DEVNULL, timeout=seconds + 60, check=False)
        sink.seek(0)
        out = sink.read()
    lat = []
    for line in out.splitlines():
        if line.startswith("> "):
            try:
                lat.append(round(float(line.rsplit(None, 1)[1]) * 1000, 4))
            except ValueError:
                continue
    totals = {}
    for key, pattern in C.DNSPERF_TOTALS:
        match = re.search(pattern, out)
        totals[key] = float(match.group(1)) if match else None
    return lat, totals


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def bursts(lat: list[float], qps: float, over: float) -> dict[str, Any]:
    """The answers slower than `over` ms, grouped by the 10 ms window they arrived in."""
    windows: dict[int, int] = {}
    for i, ms in enumerate(lat):
        if ms > over:
            windows[int(i / qps / WINDOW_S)] = windows.get(int(i / qps / WINDOW_S), 0) + 1
    sizes = sorted(windows.values(), reverse=True)
    return {
        "slow": sum(sizes),
        "windows": len(sizes),
        "largest": sizes[:5],
        "in_windows_of_5_or_more": sum(s for s in sizes if s >= 5),
    }


def watched(log: Path, start: float, end: float) -> dict[str, Any]:
    """The watcher's lines between `start` and `end` (wall clock): collections and late wake-ups."""
    gcs: dict[int, list[float]] = {0: [], 1: [], 2: []}
    idle: list[float] = []
    busy: list[float] = []
    long_calls: list[float] = []
    # CPU ms of the callbacks over 0.3 ms (and of those over 1 ms of CPU) by kind of work (--trace's PARTS)
    spent_long: dict[str, float] = {}
    spent_1ms: dict[str, float] = {}
    if not log.exists():
        return {}
    for line in log.read_text().splitlines():
        kind, at, *values = line.split()
        if kind == "kinds" or not start <= float(at) <= end:
            continue
        if kind == "gc":
            gcs[int(values[0])].append(float(values[1]))
        elif kind == "lag":
            lag, cpu = float(values[0]), float(values[1])
            (idle if cpu < 0.25 * lag else busy).append(lag)
        elif kind == "cb":
            fields = values[1].split(":")
            cpu = float(fields[2])
            parts = dict(kv.split("=") for kv in fields[5].split("/") if kv) if len(fields) > 5 else {}
            for over, sums in ((0.0, spent_long), (1.0, spent_1ms)):
                if cpu > over:
                    for k, v in parts.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    sums["python_rest"] = sums.get("python_rest", 0.0) + cpu - sum(map(float, parts.values()))
            if cpu > 1.0:
                long_calls.append(cpu)
    return {
        "gc": {g: {"n": len(v), "total_ms": round(sum(v), 2), "max_ms": max(v, default=0)} for g, v in gcs.items()},
        "late_not_running": {"n": len(idle), "total_ms": round(sum(idle), 1), "max_ms": max(idle, default=0)},
        "late_running": {"n": len(busy), "total_ms": round(sum(busy), 1), "max_ms": max(busy, default=0)},
        "callbacks_over_1ms_cpu": {"n": len(long_calls), "total_ms": round(sum(long_calls), 1)},
        "callbacks_over_1ms_cpu_ms_in": {k: round(v, 1) for k, v in sorted(spent_1ms.items())},
        "callbacks_over_0.3ms_cpu_ms_in": {k: round(v, 1) for k, v in sorted(spent_long.items())},
        "legs": legs(Path(f"{log}.io"), start, end, log),
    }


def legs(io: Path, start: float, end: float, log: Path | None = None) -> dict[str, Any]:
    """--trace: each query read from a client in [start, end] and answered, followed through the
    server. `forwarded` (sent upstream and its answer read before the reply): p50/p99 ms of the
    whole time in the server (`in_server`), of its legs (`to_upstream`: our first steps and the
    model's batch; `upstream`: NSD and our wake-up on its answer; `to_reply`: our last steps), and
    of `own`, in_server less the upstream leg: the latency resolverguard adds. `here`
    (answered without the upstream: cache hits, blocks): its in_server, all of it our own.
    `own_cpu`: the same two legs on the loop thread's CPU clock, which stops while the thread is not
    running: the part of `own` the server spent working (on this query or on those ahead of it),
    without the time its core was taken from it (the hypervisor's steal, interrupts) or a wake-up
    was late; `off_cpu` = own - own_cpu per query. For the slowest 1% of each by our own time: which
    of our legs was the longer, how much of their own time was off the CPU, and what the trace
    (`log`) saw run over 0.3 ms while it was in the server (collections, long callbacks)."""
    if not io.exists():
        return {}
    waiting: dict[tuple[str, str], list[tuple[float, float]]] = {}
    done: list[tuple[float, float, float, float, str]] = []
    upstream: dict[str, dict[int, tuple[float, float]]] = {}
    for line in io.read_text().splitlines():
        parts = line.split()
        if len(parts) not in (4, 5):
            continue
        at, kind, question, client = float(parts[0]), int(parts[1]), parts[2], parts[3]
        cpu = float(parts[4]) if len(parts) == 5 else float("nan")
        if kind == 0:
            waiting.setdefault((client, question), []).append((at, cpu))
        elif kind == 3:
            began = waiting.get((client, question))
            if began:
                t0, c0 = began.pop(0)
                if start <= t0 <= end:
                    done.append((t0, at, c0, cpu, question))
        else:
            upstream.setdefault(question, {}).setdefault(kind, (at, cpu))
    # a row: wall-clock read, sent upstream, upstream's answer read, reply sent; then the same on the CPU clock
    forwarded: list[tuple[float, ...]] = []
    here: list[tuple[float, ...]] = []
    for t0, t3, c0, c3, question in done:
        up = upstream.get(question, {})
        if 1 in up and 2 in up and t0 <= up[1][0] <= up[2][0] <= t3:
            forwarded.append((t0, up[1][0], up[2][0], t3, c0, up[1][1], up[2][1], c3))
        else:
            here.append((t0, t3, t3, t3, c0, c3, c3, c3))
    stalls = long_events(log) if log is not None else []
    out: dict[str, Any] = {}
    for name, rows in (("forwarded", forwarded), ("here", here)):
        if rows:
            out[name] = leg_stats(name, rows, stalls)
    return out


def own_of(v: tuple[float, ...]) -> float:
    return v[3] - v[0] - (v[2] - v[1])


def own_cpu_of(v: tuple[float, ...]) -> float:
    return v[7] - v[4] - (v[6] - v[5])


def leg_stats(name: str, rows: list[tuple[float, ...]], stalls: list[tuple[float, float, str]]) -> dict[str, Any]:
    """p50/p99 ms of each leg of `rows` (see `legs`), and what the slowest 1% by own time were made of."""
    got: dict[str, Any] = {"queries": len(rows)}
    spans = {"in_server": [v[3] - v[0] for v in rows], "own": [own_of(v) for v in rows]}
    if not any(map(math.isnan, (own_cpu_of(v) for v in rows))):
        spans |= {"own_cpu": [own_cpu_of(v) for v in rows], "off_cpu": [own_of(v) - own_cpu_of(v) for v in rows]}
    if name == "forwarded":
        spans |= {
            "to_upstream": [v[1] - v[0] for v in rows],
            "upstream": [v[2] - v[1] for v in rows],
            "to_reply": [v[3] - v[2] for v in rows],
        }
    for leg, values in spans.items():
        got[leg] = [round(pct(values, 0.5) * 1e3, 3), round(pct(values, 0.99) * 1e3, 3)]
    slowest = sorted(rows, key=own_of)[-max(1, len(rows) // 100) :]
    if name == "forwarded":
        longer = ["to_upstream" if v[1] - v[0] >= v[3] - v[2] else "to_reply" for v in slowest]
        got["slowest_1pct_own_longer_leg"] = {n: longer.count(n) for n in ("to_upstream", "to_reply")}
        by_all = sorted(rows, key=lambda v: v[3] - v[0])[-max(1, len(rows) // 100) :]
        longest = [max(range(3), key=lambda k, v=v: v[k + 1] - v[k]) for v in by_all]  # type: ignore[misc]
        names = ("to_upstream", "upstream", "to_reply")
        got["slowest_1pct_longest_leg"] = {n: longest.count(k) for k, n in enumerate(names)}
    got["slowest_1pct_own_ms"] = round(own_of(slowest[0]) * 1e3, 3)
    if "own_cpu" in spans:  # of the slowest 1%'s own time, the share the loop thread was not running
        off = sum(own_of(v) - own_cpu_of(v) for v in slowest) / max(1e-12, sum(own_of(v) for v in slowest))
        got["slowest_1pct_off_cpu_share"] = round(off, 3)
    got["slowest_1pct_during"] = during(slowest, stalls)
    return got


def long_events(log: Path) -> list[tuple[float, float, str]]:
    """The trace's collections and callbacks over 0.3 ms: (began, ended, what) in wall-clock seconds."""
    out = []
    for line in log.read_text().splitlines() if log.exists() else []:
        kind, at, *values = line.split()
        if kind == "gc":
            out.append((float(at) - float(values[1]) / 1e3, float(at), f"gc{values[0]}"))
        elif kind == "cb":
            out.append((float(at) - float(values[0]) / 1e3, float(at), values[1].split(":")[0]))
    return out


def during(rows: list[tuple[float, ...]], stalls: list[tuple[float, float, str]]) -> dict[str, int]:
    """How many of `rows` (queries: read ... reply sent) had each kind of long event overlap them
    ("none": none did; a query can count under several)."""
    counts: dict[str, int] = {}
    for t0, t3 in ((v[0], v[3]) for v in rows):
        hit = {what for began, ended, what in stalls if began < t3 and ended > t0}
        for what in hit or {"none"}:
            counts[what] = counts.get(what, 0) + 1
    return dict(sorted(counts.items()))


def record_scheduler(work: Path, part: int) -> subprocess.Popen[bytes]:
    """`perf sched record` of the whole machine (both cores) until SIGINT: who ran while (d) waited."""
    out = work / f"sched-{part}.data"
    proc = subprocess.Popen(
        ["perf", "sched", "record", "-a", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(0.5)
    return proc


def events(log: Path, start: float, end: float) -> list[tuple[str, float, str, str]]:
    """The watcher's lines in those seconds: (kind, seconds after `start`, value, value)."""
    out = []
    for line in log.read_text().splitlines():
        kind, at, x, y = line.split()
        if start <= float(at) <= end or kind == "kinds":
            out.append((kind, round(float(at) - start, 4), x, y))
    return out


def one_round(
    tree: Path,
    work: Path,
    nsd: tuple[int, int],
    files: dict[str, Path],
    part: int,
    qps: float | None,
    a: argparse.Namespace,
) -> dict[str, Any]:
    """One tree's fresh server: its peak, then its latency and NSD's (`nsd`: port, pid)."""
    nsd, _ = nsd
    port = C.free_port()
    log = work / f"watch-{tree.name}-{part}.log" if a.watch or a.trace else None
    proc = start(tree, work, port, nsd, log, a.trace)
    try:
        C.wait_ready(port)
        time.sleep(2.0)
        peak = C.dnsperf(
            port,
            C.latency_slice(files[a.kind], part, PEAK_NAMES / 1.2 / a.peak_seconds - 100, a.peak_seconds),
            a.peak_seconds,
        )
        rate = qps or 0.2 * (peak["qps"] or 0)
        names = files[a.kind].with_name(f"{a.kind}.latency.txt")
        if a.kind == "hits":  # steady state: every name asked once before the timed runs
            C.asked_once(port, files["hits"].with_name("warm.txt"))
        time.sleep(C.LATENCY_SETTLE)
        if a.rt:
            realtime(proc.pid, True)
        latencies(port, C.latency_slice(names, 3 * part, rate, C.LATENCY_WARMUP), C.LATENCY_WARMUP, rate, a.rt)
        measured = C.latency_slice(names, 3 * part + 1, rate, a.seconds)
        recorder = record_scheduler(work, part) if a.perf else None
        began = time.time()
        mine, totals = latencies(port, measured, a.seconds, rate, a.rt)
        ended = time.time()
        if recorder is not None:
            recorder.send_signal(2)
            recorder.wait(60)
        theirs, _ = latencies(nsd, measured, a.seconds, rate, a.rt)
        cpu = C.cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    nsd99 = pct(theirs, 0.99)
    return {
        "tree": tree.name,
        "peak_qps": peak["qps"],
        "qps": rate,
        "answered": len(mine),
        "lost": totals.get("lost"),
        "p50_ms": pct(mine, 0.5),
        "p99_ms": pct(mine, 0.99),
        "p999_ms": pct(mine, 0.999),
        "over_1ms": sum(1 for x in mine if x > 1.0),
        "nsd_p50_ms": pct(theirs, 0.5),
        "nsd_p99_ms": nsd99,
        "nsd_over_1ms": sum(1 for x in theirs if x > 1.0),
        "added_p99_ms": round(pct(mine, 0.99) - nsd99, 3),
        "bursts": bursts(mine, rate, nsd99 + SLOW_OVER_NSD_MS),
        "nsd_bursts": bursts(theirs, rate, nsd99 + SLOW_OVER_NSD_MS),
        "watch": watched(log, began, ended) if log else {},
        "cpu_s": round(cpu, 2),
        "pid": proc.pid,
        "began": began,
        "events": events(log, began, ended) if log else [],
        "perf": str(work / f"sched-{part}.data") if a.perf else None,
        "load": C.load_average(),
        "raw_ms": mine,
        "raw_nsd_ms": theirs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("trees", nargs="*", type=Path)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--peak-seconds", type=float, default=3.0)
    p.add_argument("--qps", type=float, default=0.0, help="the latency rate (default: 20%% of the first peak)")
    p.add_argument("--watch", action="store_true")
    p.add_argument("--trace", action="store_true", help="no watcher thread; log GCs and callbacks over 0.3 ms")
    p.add_argument("--rt", action="store_true", help="latency runs in SCHED_FIFO: other work on the machine left out")
    p.add_argument("--perf", action="store_true", help="perf sched record -a during each measured (d) run")
    p.add_argument("--kind", choices=("misses", "hits"), default="misses", help="never-seen or cached names")
    p.add_argument("--gaps", action="store_true", help="before and after the rounds: each core's gaps (vcpu_gaps)")
    p.add_argument("--out", default="p99_ab")
    a = p.parse_args()
    trees = [ROOT, *(t.resolve() for t in a.trees)]
    work = Path(tempfile.mkdtemp(prefix="rg-p99ab-"))
    (work / "site").mkdir()
    (work / "site" / "sitecustomize.py").write_text(WATCHER)
    files = C.query_files(work, 20_000, random.Random(7), PEAK_NAMES * len(trees) * a.rounds + 1000)
    (work / "misses.latency.txt").write_text(
        "".join(
            f"{n} A\n" for n in C.miss_names(C.benign_names(2000, random.Random(3)), 400_000, random.Random(5), "l")
        )
    )
    load_before = C.load_average()
    gaps = {"before": vcpu_gaps()} if a.gaps else {}
    nsd = C.free_port()
    procs = [C.start_nsd(work, nsd)]
    runs: list[dict[str, Any]] = []
    qps = a.qps or None
    try:
        C.wait_ready(nsd)
        part = 0
        for r in range(a.rounds):
            for tree in trees if r % 2 == 0 else trees[::-1]:
                got = one_round(tree, work, (nsd, procs[0].pid), files, part, qps, a)
                qps = qps or got["qps"]
                got["round"] = r
                runs.append(got)
                part += 1
                print(summary_line(got), flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    if a.gaps:
        gaps["after"] = vcpu_gaps()
    write(runs, trees, a, load_before, gaps)


def summary_line(r: dict[str, Any]) -> str:
    b, w = r["bursts"], r["watch"]
    text = (
        f"{r['tree']} r{r['round']}: peak {r['peak_qps']:.0f} qps; at {r['qps']:.0f}: p50 {r['p50_ms']:.3f}"
        f" p99 {r['p99_ms']:.3f} (NSD {r['nsd_p99_ms']:.3f}, added {r['added_p99_ms']:.3f}) >1ms {r['over_1ms']}"
        f" (NSD {r['nsd_over_1ms']}); slow {b['slow']} in {b['windows']} windows, largest {b['largest']};"
        f" load {r['load']}"
    )
    if w:
        gcs = ", ".join(f"gen{g} {v['n']} x, {v['total_ms']} ms, max {v['max_ms']}" for g, v in w["gc"].items())
        text += f"; collections: {gcs}"
        if w["late_not_running"]["n"] or w["late_running"]["n"]:
            text += f"; late idle {w['late_not_running']} busy {w['late_running']}"
        if w.get("callbacks_over_1ms_cpu"):
            text += f"; callbacks over 1 ms CPU {w['callbacks_over_1ms_cpu']}"
            if w.get("callbacks_over_1ms_cpu_ms_in"):
                text += f", their CPU ms in {w['callbacks_over_1ms_cpu_ms_in']}"
                text += f" (callbacks over 0.3 ms: {w['callbacks_over_0.3ms_cpu_ms_in']})"
        if w.get("legs"):
            text += f"; in the server (p50, p99 ms) {w['legs']}"
    return text


def legs_table(runs: list[dict[str, Any]], trees: list[Path]) -> list[str]:
    """--trace: per tree and round, the time inside the server (ms, p50 / p99): our own (read to reply
    sent, less the upstream leg) for forwarded queries and for those answered here, with the leg
    that was the longer of ours for the slowest 1%, and what long event overlapped them."""
    lines = [
        "Inside the server (--trace; ms, p50 / p99 per round): `own` = read from the client -> reply sent, less"
        " the upstream leg (sent upstream -> its answer read): the latency resolverguard adds.",
        "",
        "`own_cpu`: the same on the loop thread's CPU clock (the time it was running: its work on this query"
        " and on those ahead of it); the rest of `own` its core was not running it (steal, interrupts, a late"
        " wake-up).",
        "",
        "| tree | round | forwarded: own | own_cpu | in server | to_upstream | upstream | to_reply"
        " | answered here: own | own_cpu | slowest 1% of forwarded (own): off the CPU; longer leg; overlapped by |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pair(v: list[float] | None) -> str:
        return f"{v[0]:.3f} / {v[1]:.3f}" if v else "-"

    for tree in trees:
        for r in (r for r in runs if r["tree"] == tree.name):
            got = r["watch"].get("legs", {})
            f, h = got.get("forwarded", {}), got.get("here", {})
            lines.append(
                f"| {tree.name} | {r['round']} | {pair(f.get('own'))} | {pair(f.get('own_cpu'))}"
                f" | {pair(f.get('in_server'))} | {pair(f.get('to_upstream'))} | {pair(f.get('upstream'))}"
                f" | {pair(f.get('to_reply'))} | {pair(h.get('own'))} | {pair(h.get('own_cpu'))}"
                f" | {f.get('slowest_1pct_off_cpu_share', '-')}; {f.get('slowest_1pct_own_longer_leg', '-')};"
                f" {f.get('slowest_1pct_during', '-')} |"
            )
    for tree in trees:
        mine = [r["watch"].get("legs", {}) for r in runs if r["tree"] == tree.name]
        own = [g["forwarded"]["own"][1] for g in mine if "forwarded" in g]
        here = [g["here"]["own"][1] for g in mine if "here" in g]
        f_cpu = [g["forwarded"]["own_cpu"][1] for g in mine if "own_cpu" in g.get("forwarded", {})]
        h_cpu = [g["here"]["own_cpu"][1] for g in mine if "own_cpu" in g.get("here", {})]
        if own:
            lines.append(
                f"\n{tree.name}: own p99 forwarded, median of rounds {statistics.median(own):.3f} ms"
                + (f", answered here {statistics.median(here):.3f} ms" if here else "")
            )
        if f_cpu:
            lines.append(
                f"{tree.name}: own_cpu p99 (the loop thread's CPU clock) forwarded, median of rounds"
                f" {statistics.median(f_cpu):.3f} ms"
                + (f", answered here {statistics.median(h_cpu):.3f} ms" if h_cpu else "")
            )
    return lines


def burst_text(b: dict[str, Any]) -> str:
    return f"{b['slow']} in {b['windows']} {b['largest']}"


def write(
    runs: list[dict[str, Any]], trees: list[Path], a: argparse.Namespace, load_before: str, gaps: dict[str, Any]
) -> None:
    out = ROOT / "bench" / "results"
    load_after = C.load_average()
    raw = {
        "runs": [
            {k: r.get(k) for k in ("tree", "round", "qps", "began", "raw_ms", "raw_nsd_ms", "events")} for r in runs
        ]
    }
    with gzip.open(out / f"{a.out}.raw.json.gz", "wt") as f:  # every answer's latency, the trace's events
        json.dump(raw, f)
    runs = [{k: v for k, v in r.items() if k not in RAW} for r in runs]
    (out / f"{a.out}.json").write_text(
        json.dumps(
            {
                "runs": runs,
                "load": [load_before, load_after],
                "vcpu_gaps": gaps,
                "args": vars(a) | {"trees": [str(t) for t in trees]},
            }
        )
        + "\n"
    )
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"# (d)'s p99 at a fixed rate, trees in turn (bench/p99_ab.py), {stamp}, {os.cpu_count()} cores",
        "",
        f"Load average before {load_before}, after {load_after}. {a.rounds} rounds; each tree's server fresh per"
        f" round: peak {a.peak_seconds:g} s on {'cached' if a.kind == 'hits' else 'never-seen'} names,"
        f" then {a.seconds:g} s at {runs[0]['qps']:.0f} qps"
        f" and NSD alone on the same names right after. Watcher: {'on' if a.watch else 'off'},"
        f" trace: {'on' if a.trace else 'off'}; latency runs in"
        f" {'SCHED_FIFO for (d), nice -10 for dnsperf' if a.rt else 'SCHED_OTHER'}.",
        "",
        "| tree | peak QPS (median) | p50 ms | p99 ms | added p99 ms (median) | added p99 per round | >1 ms per round"
        " | NSD >1 ms | slow answers in 10 ms windows (largest) |",
        "|---|---:|---:|---:|---:|---|---|---|---|",
    ]
    for tree in trees:
        mine = [r for r in runs if r["tree"] == tree.name]
        lines.append(
            f"| {tree.name} | {statistics.median(r['peak_qps'] or 0 for r in mine):.0f}"
            f" | {statistics.median(r['p50_ms'] for r in mine):.3f}"
            f" | {statistics.median(r['p99_ms'] for r in mine):.3f}"
            f" | {statistics.median(r['added_p99_ms'] for r in mine):.3f}"
            f" | {', '.join(format(r['added_p99_ms'], '.3f') for r in mine)}"
            f" | {', '.join(str(r['over_1ms']) for r in mine)} | {', '.join(str(r['nsd_over_1ms']) for r in mine)}"
            f" | {'; '.join(burst_text(r['bursts']) for r in mine)} |"
        )
    for when, g in gaps.items():
        lines += ["", f"Cores' own gaps {when} the rounds (--gaps: a SCHED_FIFO spinner, 0.9 s a core): {gaps_text(g)}"]
    if a.trace:
        lines += ["", *legs_table(runs, trees)]
    lines += ["", "Per run:", ""] + [f"- {summary_line(r)}" for r in runs] + [""]
    (out / f"{a.out}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
