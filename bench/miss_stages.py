"""Where a never-seen name's latency goes at 20% load: a per-stage breakdown inside the real server.

    python bench/miss_stages.py [--qps 2000] [--seconds 5] [--tree PATH ...] [--out NAME]

Starts NSD and resolverguard (d) (`serve`, full chain, shipped model, query log off, as
bench/compare.py does) with a tracer on the server's PYTHONPATH only (a sitecustomize), drives
it with dnsperf at `--qps` on never-seen names (a warm-up second first, on other names), then NSD
alone at the same rate on the same names (the upstream's own latency). Each `--tree` (a checkout)
gets its own server, run in turn, so a before/after shares the machine's state.

The tracer wraps each UDP query's coroutine (`DnsServer._answer_udp`) and writes, per query:
the time it entered `accept_udp` (uvloop's read callback), each time it stopped to wait and each
time it was resumed, when the model's batch it joined started and ended (and its size), when the
upstream query was sent and when the upstream socket's reader last ran before the resume; and
every collection of the garbage collector with its generation and length. From these:

- to first wait: parse, name, decision checks, up to the model's future (CPU);
- model queue: submitted to the batch's start (other datagrams of the same read, callbacks);
- model batch: the batch's own run;
- batch to resume: the batch's end to the query's resume (the futures' done callbacks' turn);
- model to send: policy, answer-cache miss, the forwarder's socket pick and ID (CPU);
- upstream: sent to the reader's run (NSD, the kernel, and the loop's turn to the reader);
- read to resume: the reader's run to the query's resume (a loop turn: done callbacks);
- resume to reply: the forwarded answer read, the answer cache, the shortcut's learning, sendto.

The query's whole time inside the server (accept to sendto) is set against dnsperf's latency:
what is left is the kernel, the client, and the time the datagram waited in the socket before
uvloop read it (the loop busy with others, or the process not running).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as C  # noqa: E402

TRACER = r"""
import gc, os, sys, time, types, atexit
if "serve" in sys.argv and os.environ.get("RG_STAGES_LOG"):
    from resolverguard import server as _S, batching as _B
    from resolverguard.steps import upstream as _U
    _clock, _cpu = time.perf_counter, time.thread_time
    _cur = [None]
    _records = []
    _gcs = []
    _read_at = [0.0]
    _gc_start = [0.0]

    def _collected(phase, info):
        if phase == "start":
            _gc_start[0] = _clock()
        else:
            _gcs.append((_gc_start[0], _clock(), info["generation"]))
    gc.callbacks.append(_collected)

    @types.coroutine
    def _traced(coro, rec):
        value = None
        while True:
            _cur[0] = rec
            c0, w0 = _cpu(), _clock()
            try:
                waiting = coro.send(value)
            except StopIteration:
                _cur[0] = None
                rec["end"] = _clock()
                rec["own"] += _cpu() - c0
                rec["own_wall"] += rec["end"] - w0
                rec["cpu"] = (_cpu() - rec["cpu"], rec["own"], rec["own_wall"])
                # kept as tuples of floats: the collector untracks them (a dict per query kept
                # here would be walked by every collection, a cost of the tracer's own)
                _records.append((rec["accept"], tuple(rec["waits"]), tuple(rec["resumes"]), rec["batch"],
                                 rec["sent"], rec["end"], rec["cpu"]))
                return
            _cur[0] = None
            rec["waits"].append(_clock())
            rec["own"] += _cpu() - c0
            rec["own_wall"] += rec["waits"][-1] - w0
            value = yield waiting
            rec["resumes"].append((_clock(), _read_at[0]))

    _orig_answer_udp = _S.DnsServer._answer_udp
    def _answer_udp(self, transport, packet, client, sender):
        rec = {"accept": _accept[0], "waits": [], "resumes": [], "batch": None, "sent": None}
        rec.update(cpu=_cpu(), own=0.0, own_wall=0.0)
        return _traced(_orig_answer_udp(self, transport, packet, client, sender), rec)
    _S.DnsServer._answer_udp = _answer_udp

    _accept = [0.0]
    _orig_accept = _S.DnsServer.accept_udp
    def _accept_udp(self, transport, packet, client):
        _accept[0] = _clock()
        return _orig_accept(self, transport, packet, client)
    _S.DnsServer.accept_udp = _accept_udp

    _orig_submit = _B.MicroBatcher.submit
    def _submit(self, text):
        future = _orig_submit(self, text)
        if _cur[0] is not None:
            self.__dict__.setdefault("_trace", []).append(_cur[0])
        return future
    _B.MicroBatcher.submit = _submit

    _orig_flush = _B.MicroBatcher.flush
    def _flush(self):
        recs = self.__dict__.pop("_trace", [])
        run, timed = self.run, []
        def _timed(texts):  # the model's own run: with a Handoff, the flush also runs the queries on
            started, cpu = _clock(), _cpu()
            out = run(texts)
            timed.append((started, _clock(), len(texts), _cpu() - cpu))
            return out
        self.run = _timed
        try:
            _orig_flush(self)
        finally:
            self.run = run
        for rec in recs:
            rec["batch"] = timed[0] if timed else None
    _B.MicroBatcher.flush = _flush

    _orig_udp = _U.UpstreamForwarder._udp
    def _udp(self, *args, **kwargs):
        if _cur[0] is not None:
            _cur[0]["sent"] = _clock()
        return _orig_udp(self, *args, **kwargs)
    _U.UpstreamForwarder._udp = _udp

    _orig_readable = _U.Channel._readable
    def _readable(self):
        _read_at[0] = _clock()
        return _orig_readable(self)
    _U.Channel._readable = _readable

    def _dump():
        with open(os.environ["RG_STAGES_LOG"], "w") as out:
            keys = ("accept", "waits", "resumes", "batch", "sent", "end", "cpu")
            out.write(json.dumps({"queries": [dict(zip(keys, r)) for r in _records], "gc": _gcs}))
    import json
    atexit.register(_dump)
"""

STAGES = (
    "to first wait",
    "model queue",
    "model batch",
    "batch to resume (incl. the batch's earlier queries run on)",
    "model to send",
    "upstream",
    "read to resume",
    "resume to reply",
    "inside (accept to reply)",
    "model batch CPU",
    "own callbacks, wall",
    "own callbacks, CPU",
    "process CPU over its life",
)


def stages(rec: dict[str, Any]) -> dict[str, float] | None:
    """A scored and forwarded query's stages in ms (two waits: the model's batch, the upstream)."""
    if len(rec["waits"]) != 2 or rec["batch"] is None or rec["sent"] is None:
        return None
    (w1, _), ((r1, _), (r2, read)) = rec["waits"], rec["resumes"]
    b0, b1, _, bcpu = rec["batch"]
    ms = 1000.0
    return {
        "to first wait": (w1 - rec["accept"]) * ms,
        "model queue": (b0 - w1) * ms,
        "model batch": (b1 - b0) * ms,
        "batch to resume (incl. the batch's earlier queries run on)": (r1 - b1) * ms,
        "model to send": (rec["sent"] - r1) * ms,
        "upstream": (read - rec["sent"]) * ms,
        "read to resume": (r2 - read) * ms,
        "resume to reply": (rec["end"] - r2) * ms,
        "inside (accept to reply)": (rec["end"] - rec["accept"]) * ms,
        "model batch CPU": bcpu * ms,
        "own callbacks, wall": rec["cpu"][2] * ms,
        "own callbacks, CPU": rec["cpu"][1] * ms,
        "process CPU over its life": rec["cpu"][0] * ms,
    }


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))] if s else float("nan")


def analyse(trace: dict[str, Any], window: tuple[float, float] | None = None) -> dict[str, Any]:
    """Per-stage p50/p99/max, the stages of the slowest 1% (mean), batch sizes, collections."""
    rows = [s for s in map(stages, trace["queries"]) if s is not None]
    other = len(trace["queries"]) - len(rows)
    out: dict[str, Any] = {"queries": len(rows), "blocked": other}
    out["stages"] = {
        k: {
            "p50": pct([r[k] for r in rows], 0.5),
            "p99": pct([r[k] for r in rows], 0.99),
            "max": max((r[k] for r in rows), default=float("nan")),
        }
        for k in STAGES
    }
    cut = pct([r["inside (accept to reply)"] for r in rows], 0.99)
    slow = [r for r in rows if r["inside (accept to reply)"] >= cut]
    out["slowest_1pct_mean"] = {k: sum(r[k] for r in slow) / max(1, len(slow)) for k in STAGES}
    sizes = [q["batch"][2] for q in trace["queries"] if q["batch"] is not None]
    out["batch_sizes"] = {"mean": sum(sizes) / max(1, len(sizes)), "max": max(sizes, default=0)}
    first = min((q["accept"] for q in trace["queries"]), default=0.0)
    last = max((q["end"] for q in trace["queries"]), default=0.0)
    gcs = [(g, (e - s) * 1000) for s, e, g in trace["gc"] if first <= s <= last]
    out["gc"] = {
        str(gen): {
            "count": sum(1 for g, _ in gcs if g == gen),
            "max_ms": max((ms for g, ms in gcs if g == gen), default=0.0),
            "total_ms": sum(ms for g, ms in gcs if g == gen),
        }
        for gen in (0, 1, 2)
    }
    out["seconds"] = last - first
    return out


def run_tree(
    tree: Path, work: Path, nsd: int, names: Path, qps: float, seconds: float, tag: str, peak: Path | None
) -> dict[str, Any]:
    """One server from `tree` with the tracer, warm-up then the measured run; NSD in turn."""
    site = work / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(TRACER)
    log, port = work / f"stages-{tag}.json", C.free_port()
    policy = work / f"rg-{tag}.yaml"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{nsd}']\nscoring: true\nquery_log: off\n"
        "rate_limit:\n  qps: 0\nlimits:\n  max_inflight: 8192\n"
    )
    env = {**os.environ, "RG_STAGES_LOG": str(log), "PYTHONPATH": f"{site}{os.pathsep}{tree}"}
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=(work / f"rg-{tag}.log").open("w")
    )
    try:
        C.wait_ready(port)
        time.sleep(1.0)
        C.dnsperf(port, C.latency_slice(names, 0, qps, 1.0), 1.0, qps)
        time.sleep(0.5)
        part = C.latency_slice(names, 1, qps, seconds)
        cpu = C.cpu_seconds(proc.pid)
        client = C.dnsperf(port, part, seconds, qps)
        client["server_cpu_us_per_query"] = (C.cpu_seconds(proc.pid) - cpu) / max(1, client.get("completed") or 0) * 1e6
        upstream = C.dnsperf(nsd, part, seconds, qps)
        top: dict[str, Any] = {}
        if peak is not None:
            cpu = C.cpu_seconds(proc.pid)
            top = C.dnsperf(port, peak, seconds)
            top["server_cpu_us_per_query"] = (C.cpu_seconds(proc.pid) - cpu) / max(1, top.get("completed") or 0) * 1e6
    finally:
        proc.terminate()
        proc.wait(30)
    trace = json.loads(log.read_text())
    # the warm-up's queries are left out: the measured run's are the last `completed`
    trace["queries"] = trace["queries"][: -int(top.get("completed") or 0) or None][-int(client.get("completed") or 0) :]
    return {"tree": str(tree), "client": client, "upstream": upstream, "peak": top, "inside": analyse(trace)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--qps", type=float, default=2000.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--tree", action="append", type=Path)
    p.add_argument("--out", default="miss_stages")
    p.add_argument("--peak", action="store_true", help="then each tree's peak QPS on never-seen names (dnsperf)")
    p.add_argument("--summary", type=Path, help="only print the report of a results file written before")
    a = p.parse_args()
    if a.summary:
        print(report(json.loads(a.summary.read_text())))
        return
    trees = a.tree or [C.ROOT]
    work = Path(tempfile.mkdtemp(prefix="rg-stages-"))
    rng = random.Random(11)
    names = work / "misses.latency.txt"
    count = int(a.qps * (a.seconds + 1) * 1.2 + 200) * (2 + 1)
    names.write_text(
        "".join(f"{n} A\n" for n in C.miss_names(C.benign_names(10_000, rng), count * len(trees), rng, "s"))
    )
    nsd = C.free_port()
    load_before = C.load_average()
    nsd_proc = C.start_nsd(work, nsd)
    results = []
    try:
        C.wait_ready(nsd)
        for i, tree in enumerate(trees):
            own = names.with_name(f"misses-{i}.latency.txt")  # each tree its own never-seen names
            lines = names.read_text().splitlines(keepends=True)
            own.write_text("".join(lines[i * count : (i + 1) * count]))
            peak = None
            if a.peak:
                peak = work / f"peak-{i}.txt"
                peak.write_text(
                    "".join(f"{n} A\n" for n in C.miss_names(C.benign_names(10_000, rng), 300_000, rng, f"p{i}x"))
                )
            results.append(run_tree(tree.resolve(), work, nsd, own, a.qps, a.seconds, str(i), peak))
    finally:
        nsd_proc.terminate()
        nsd_proc.wait(10)
    payload = {"qps": a.qps, "seconds": a.seconds, "load": [load_before, C.load_average()], "runs": results}
    out = C.ROOT / "bench" / "results" / f"{a.out}.json"
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(report(payload))


def by_tree(payload: dict[str, Any]) -> list[str]:
    """Each tree's medians over its runs (trees alternated in one run of this script)."""
    trees: dict[str, list[dict[str, Any]]] = {}
    for run in payload["runs"]:
        trees.setdefault(run["tree"], []).append(run)
    lines = [
        "| tree | runs | dnsperf p99 ms | NSD alone p99 ms | inside p99 ms | slowest 1% inside ms"
        " | model batch CPU p99 ms | peak never-seen qps | server CPU us/query at the rate | at the peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tree, runs in trees.items():

        def med(get: Any, runs: list[dict[str, Any]] = runs) -> float:
            values = sorted(v for v in (get(r) for r in runs) if v is not None)
            return values[len(values) // 2] if values else float("nan")

        lines.append(
            f"| {Path(tree).name} | {len(runs)} | {med(lambda r: r['client'].get('p99_ms')):.3f}"
            f" | {med(lambda r: r['upstream'].get('p99_ms')):.3f}"
            f" | {med(lambda r: r['inside']['stages']['inside (accept to reply)']['p99']):.3f}"
            f" | {med(lambda r: r['inside']['slowest_1pct_mean']['inside (accept to reply)']):.3f}"
            f" | {med(lambda r: r['inside']['stages']['model batch CPU']['p99']):.3f}"
            f" | {med(lambda r: (r.get('peak') or {}).get('qps')):.0f}"
            f" | {med(lambda r: r['client'].get('server_cpu_us_per_query')):.1f}"
            f" | {med(lambda r: (r.get('peak') or {}).get('server_cpu_us_per_query')):.1f} |"
        )
    return lines


def report(payload: dict[str, Any]) -> str:
    lines = [
        f"load before {payload['load'][0]}, after {payload['load'][1]};"
        f" {payload['qps']:.0f} qps, {payload['seconds']} s"
    ]
    for run in payload["runs"]:
        inside, client, up = run["inside"], run["client"], run["upstream"]
        lines.append(
            f"\n{run['tree']}: dnsperf p50/p99 {client.get('p50_ms')}/{client.get('p99_ms')} ms, NSD alone"
            f" {up.get('p50_ms')}/{up.get('p99_ms')} ms; {inside['queries']} traced"
            f" ({inside['blocked']} blocked by the model, not forwarded),"
            f" batch mean {inside['batch_sizes']['mean']:.2f} max {inside['batch_sizes']['max']}"
            + (f"; peak on never-seen names {run['peak'].get('qps')} qps" if run.get("peak") else "")
        )
        lines.append("| stage | p50 ms | p99 ms | max ms | slowest 1% mean ms |")
        lines.append("|---|---:|---:|---:|---:|")
        for k in STAGES:
            if k not in inside["stages"]:  # (a file from an earlier version of this script)
                continue
            s = inside["stages"][k]
            lines.append(
                f"| {k} | {s['p50']:.3f} | {s['p99']:.3f} | {s['max']:.3f} | {inside['slowest_1pct_mean'][k]:.3f} |"
            )
        lines.append(
            "gc during the run: "
            + ", ".join(
                f"gen{g} {v['count']}x max {v['max_ms']:.2f} ms total {v['total_ms']:.1f} ms"
                for g, v in inside["gc"].items()
            )
        )
    return "\n".join([*lines, "", "Medians per tree:", *by_tree(payload)])


if __name__ == "__main__":
    main()
