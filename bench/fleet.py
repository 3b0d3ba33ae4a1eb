"""Issue #18's fleet targets, in one bounded run on 127.0.0.1:

    sudo apt-get install -y redis-server dnsdist dnsperf      (bench/README.md)
    python bench/fleet.py [--trials 200] [--seconds 8]

1. propagation: a likely C2 found on instance A -> blocked on instance B (both in this process, each
   on its own event loop and sockets, synced through a real redis-server). `--trials` times, a new
   name each: A's watch announces it as the client watch does (`WatchState.on_found`) and a client
   asks B for it every millisecond until B sinkholes it; plus 3 end-to-end trials where an infected
   client (tests/test_watch.py's first walk name and beacon) is flagged on A. Target: p99 < 1 s.
2. redis kill: a client asks A and B 400 times a second for 9 s; Redis is killed (SIGKILL) at 3 s
   and started again, empty, at 6 s. Every answer's latency, per phase, and any lost one. Target:
   none lost, none slower than `sync.timeout` (Redis is never on an answer's path).
3. verdict cache: a Redis GET from redis-py's asyncio client vs one model score (the shipped model,
   in process): why a score is not fetched on a miss; and `sync.share_verdicts` off and on (alternated,
   same run): two instance processes asked overlapping names at once, how many names were scored
   twice, CPU per answer and latency.
4. throughput: dnsperf (8 processes, each from its own 127.0.0.x address, so the client hash spreads
   them) against one resolverguard process directly, one behind dnsdist (examples/dnsdist.conf) and
   two behind dnsdist; answer-cache hits (every name asked once before). Target: two ~2x one.
   Also the CPU seconds per answered query of each instance and of dnsdist (/proc), so a reader can
   see whether the front adds cost when the cores cannot show the 2x.

Results to bench/results/fleet.{md,json}, with the machine's load (uptime) at the start and end:
on a shared 2-core machine the throughput ratio says more about the cores than about the design.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
from dnsfixtures import RunningResolver, Upstream, run_resolver, run_upstream  # noqa: E402
from fleetfixtures import RedisServer, dnsdist_config, run_redis, wait_listening  # noqa: E402
from test_watch import C2, INFECTED, config_for, find_c2_and_beacon  # noqa: E402

from resolverguard.config import SyncConfig  # noqa: E402
from resolverguard.sync import BACKOFF  # noqa: E402
from resolverguard.watch import LikelyC2  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CLIENT = "127.0.0.5"
SHARE_POOL, SHARE_ASKED = 6000, 4000  # names in the pool, names each instance is asked (overlap ~2/3)
FOUND_WHILE_DOWN = "fleetbenchdown.com"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def uptime() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def letters_name(i: int) -> str:
    """A name per trial in letters only: the test model (digits.tflite) scores names with digits as
    DGA and would sinkhole them itself, which would look like a propagated block."""
    label = "".join(chr(ord("a") + (i // 26**k) % 26) for k in range(4))
    return f"fleetbench{label}.com"


def sinkholed(r: RunningResolver, name: str) -> bool:
    for attempt in range(3):  # a loaded machine may lose a UDP answer; a lost one is asked again
        try:
            reply = dns.query.udp(dns.message.make_query(name, "A"), r.host, port=r.port, timeout=2, source=CLIENT)
        except dns.exception.Timeout:
            if attempt == 2:
                raise
            continue
        return [rd.to_text() for rrset in reply.answer for rd in rrset] == ["0.0.0.0"]
    return False


def on_loop(r: RunningResolver, call: Callable[[], None]) -> None:
    done = threading.Event()
    r.loop.call_soon_threadsafe(lambda: (call(), done.set()))
    done.wait(5)


def announce_c2(a: RunningResolver, name: str) -> None:
    """What the client watch does when it records a likely C2 (steps/watch.py `_announce_c2`)."""
    watch = a.service.pipeline.watch
    assert watch is not None and watch.on_found is not None
    c2 = LikelyC2(name, INFECTED, watch.clock() + 3600)
    watch.likely_c2[name] = c2
    watch.on_found(c2)


def propagation(up: Upstream, redis: RedisServer, work: Path, trials: int) -> dict[str, Any]:
    cfg = replace(config_for(up), sync=SyncConfig(redis=redis.url, prefix="bench", timeout=0.5))
    seconds: list[float] = []
    with run_resolver(cfg, work / "a.log") as a, run_resolver(cfg, work / "b.log") as b:
        for r in (a, b):
            sync = r.service.sync
            assert sync is not None
            while not sync.connected.is_set():
                time.sleep(0.01)
        for i in range(trials):
            name = letters_name(i)
            assert not sinkholed(b, name)  # resolves (and is in B's answer cache) before
            start = time.monotonic()
            on_loop(a, lambda name=name: announce_c2(a, name))  # type: ignore[misc]
            while not sinkholed(b, name):
                if time.monotonic() - start > 5:
                    raise AssertionError(f"{name} never blocked on B")
                time.sleep(0.001)
            seconds.append(time.monotonic() - start)
    end_to_end = []
    for trial in range(3):  # the whole story: infected client on A, then a client of B asks
        fresh = replace(cfg, sync=replace(cfg.sync, prefix=f"e2e{trial}"))
        with run_resolver(fresh, work / f"ea{trial}.log") as a, run_resolver(fresh, work / f"eb{trial}.log") as b:
            for r in (a, b):
                while r.service.sync is not None and not r.service.sync.connected.is_set():
                    time.sleep(0.01)
            find_c2_and_beacon(a, INFECTED)  # flagged at its C2's first beacon (the watch's beacon points)
            start = time.monotonic()  # the flag (and the C2 found with it) is raised on that answer
            while not sinkholed(b, C2):
                if time.monotonic() - start > 5:
                    raise AssertionError("end to end: C2 never blocked on B")
                time.sleep(0.001)
            end_to_end.append(time.monotonic() - start)
    return {
        "trials": trials,
        "p50_ms": round(pct(seconds, 0.5) * 1000, 2),
        "p99_ms": round(pct(seconds, 0.99) * 1000, 2),
        "max_ms": round(max(seconds) * 1000, 2),
        "end_to_end_ms": [round(s * 1000, 1) for s in end_to_end],
    }


def redis_kill(up: Upstream, redis: RedisServer, work: Path) -> dict[str, Any]:
    timeout = 0.5
    cfg = replace(config_for(up), sync=SyncConfig(redis=redis.url, prefix="kill", timeout=timeout))
    phases: dict[str, list[float]] = {"before": [], "redis down": [], "after": []}
    lost = {k: 0 for k in phases}
    with run_resolver(cfg, work / "ka.log") as a, run_resolver(cfg, work / "kb.log") as b:
        for r in (a, b):
            while r.service.sync is not None and not r.service.sync.connected.is_set():
                time.sleep(0.01)
        start, n, phase, restarted, converged = time.monotonic(), 0, "before", 0.0, None
        while (now := time.monotonic() - start) < 9.0 or (converged is None and now < 11.0 + BACKOFF[1]):
            if phase == "before" and now >= 3.0:
                redis.kill()
                phase = "redis down"
            elif phase == "redis down" and now >= 4.0 and not a.service.pipeline.watch.likely_c2:  # type: ignore[union-attr]
                on_loop(a, lambda: announce_c2(a, FOUND_WHILE_DOWN))  # found on A while Redis is away
            elif phase == "redis down" and now >= 6.0:
                redis.start()
                phase, restarted = "after", time.monotonic()
            elif phase == "after" and converged is None and n % 40 == 0 and sinkholed(b, FOUND_WHILE_DOWN):
                converged = time.monotonic() - restarted
            r = (a, b)[n % 2]
            n += 1
            t0 = time.monotonic()
            try:
                dns.query.udp(dns.message.make_query(f"k{n % 300}.example.org", "A"), r.host, port=r.port, timeout=2)
                phases[phase].append(time.monotonic() - t0)
            except dns.exception.Timeout:
                lost[phase] += 1
            time.sleep(max(0.0, start + n / 400 - time.monotonic()))
        reconnected = all(r.service.sync is not None and r.service.sync.connected.is_set() for r in (a, b))
    return {
        "sync_timeout_s": timeout,
        "reconnected_by_end": reconnected,
        "converged_s_after_restart": None if converged is None else round(converged, 2),
        "phases": {
            k: {
                "answers": len(v),
                "lost": lost[k],
                "p50_ms": round(pct(v, 0.5) * 1000, 2),
                "p99_ms": round(pct(v, 0.99) * 1000, 2),
                "max_ms": round(max(v) * 1000, 2),
            }
            for k, v in phases.items()
        },
    }


def verdict_cache(redis: RedisServer) -> dict[str, Any]:
    from redis.asyncio import Redis

    from resolverguard.model import load_model
    from resolverguard.names import NameParser

    model = load_model()  # the shipped model
    parser, form = NameParser(), model.metadata.input_form
    keys = [parser.model_input(f"exampleshop{i}.com", form) or "x" for i in range(2000)]
    model.score([keys[0]])
    t0 = time.perf_counter()
    for k in keys:  # one name at a time, as a cache miss is scored
        model.score([k])
    score_us = (time.perf_counter() - t0) / len(keys) * 1e6

    async def gets() -> float:
        client = Redis.from_url(redis.url)
        await client.set("bench:score:x", b"0.123")
        for _ in range(100):
            await client.get("bench:score:x")
        t0 = time.perf_counter()
        for _ in range(2000):
            await client.get("bench:score:x")
        elapsed = (time.perf_counter() - t0) / 2000 * 1e6
        await client.aclose()
        return elapsed

    get_us = asyncio.run(gets())
    send_us, adopt_us = asyncio.run(share_costs(redis, keys))
    return {
        "score_us": round(score_us, 1),
        "redis_get_us": round(get_us, 1),
        "ratio_get_over_score": round(get_us / score_us, 1),
        "send_us_per_score": round(send_us, 2),
        "adopt_us_per_score": round(adopt_us, 2),
    }


async def share_costs(redis: RedisServer, keys: list[str]) -> tuple[float, float]:
    """What `share_verdicts` costs an instance per score, in process: sending one it computed (its
    part of a batch's JSON and XADD + PUBLISH round trip) and adopting one another instance sent."""
    from resolverguard.steps.cache import VerdictCache
    from resolverguard.sync import VERDICT_BATCH, FleetSync

    sync = FleetSync(SyncConfig(redis=redis.url, prefix="bench-cost", share_verdicts=True))
    batch = [(k, 0.5) for k in keys[:VERDICT_BATCH]]
    for _ in range(5):
        await sync._write_scores(batch)  # noqa: SLF001 - the send itself, without the 0.1 s wait
    t0 = time.perf_counter()
    for _ in range(40):
        await sync._write_scores(batch)  # noqa: SLF001
    send = (time.perf_counter() - t0) / (40 * len(batch)) * 1e6
    raw = json.dumps({"o": "other", "m": sync.model_id, "t": time.time(), "v": batch}).encode()
    t0, rounds = time.perf_counter(), 40
    for _ in range(rounds):
        sync.cache = VerdictCache(100_000, 3600)  # empty: every score is taken (the costly case)
        sync.apply_scores(raw)
    adopt = (time.perf_counter() - t0) / (rounds * len(batch)) * 1e6
    await sync.redis.aclose()
    return send, adopt


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (/proc/PID/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(port: int, name: str) -> float:
    """One sample's value from an instance's /metrics (0 when absent)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:  # noqa: S310 - ours
        text = reply.read().decode()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def random_names(rng: Any, count: int) -> list[str]:
    """Distinct registrable names with distinct labels (each its own verdict-cache key)."""
    out: set[str] = set()
    while len(out) < count:
        label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(7, 12)))
        out.add(f"{label}.com")
    return sorted(out)


def paced(port: int, names: list[str], seconds: float, source: str, latencies: list[float]) -> None:
    """Asks `names` in order, evenly over `seconds`, from `source`; one latency per answer (ms), NaN if lost."""
    step, start = seconds / len(names), time.perf_counter()
    for n, name in enumerate(names):
        delay = start + n * step - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t0 = time.perf_counter()
        try:
            dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2, source=source)
            latencies.append((time.perf_counter() - t0) * 1000)
        except dns.exception.Timeout:
            latencies.append(float("nan"))


def share_run(up: Upstream, redis: RedisServer, work: Path, share: bool, seed: int, seconds: float) -> dict[str, Any]:
    """Two instances (processes) synced through Redis, each asked `ASKED` names of a pool of `POOL`
    by its own client over `seconds`: how many scores each computed, its CPU, its latencies."""
    import random

    rng = random.Random(seed)
    pool = random_names(rng, SHARE_POOL)
    asked = [rng.sample(pool, SHARE_ASKED), rng.sample(pool, SHARE_ASKED)]
    ports, metrics = [udp_port(), udp_port()], [udp_port(), udp_port()]
    procs = []
    for k in range(2):
        policy = work / f"share{k}.yaml"
        policy.write_text(
            f"upstreams: [127.0.0.1:{up.port}]\nquery_log: off\ncontrol_socket: off\nrate_limit: {{qps: 0}}\n"
            f"metrics: {{listen: 127.0.0.1:{metrics[k]}}}\ncache: {{size: 100000, ttl: 3600}}\n"
            f"sync: {{redis: '{redis.url}', prefix: share{seed}, share_verdicts: {str(share).lower()}}}\n"
        )
        procs.append(serve(policy, ports[k]))
    try:
        for k in range(2):
            wait_listening(ports[k], 60)
            warm(ports[k], ["warm.example.org"])
        time.sleep(1.0)  # both subscribed
        miss = 'resolverguard_verdict_cache_lookups_total{result="miss"}'
        scored0 = [metric(m, miss) for m in metrics]  # the warm-up's name
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        latencies: list[list[float]] = [[], []]
        senders = [
            threading.Thread(target=paced, args=(ports[k], asked[k], seconds, f"127.0.2.{k + 1}", latencies[k]))
            for k in range(2)
        ]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
        scored = [metric(m, miss) - before for m, before in zip(metrics, scored0, strict=True)]
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    union, overlap = len(set(asked[0]) | set(asked[1])), len(set(asked[0]) & set(asked[1]))
    twice = sum(scored) - union  # each instance scores a name at most once (its own cache holds it)
    answered = [x for lat in latencies for x in lat if x == x]
    return {
        "share": share,
        "names_asked_per_instance": SHARE_ASKED,
        "distinct_names": union,
        "asked_on_both": overlap,
        "scored": [int(x) for x in scored],
        "scored_twice": int(twice),
        "share_of_overlap_scored_once": round(1 - twice / overlap, 4),
        "cpu_us_per_query": round(sum(cpu) / max(1, len(answered)) * 1e6, 1),
        "lost": sum(1 for lat in latencies for x in lat if x != x),
        "p50_ms": round(pct(answered, 0.5), 2),
        "p99_ms": round(pct(answered, 0.99), 2),
    }


def verdict_sharing(up: Upstream, redis: RedisServer, work: Path, seconds: float, rounds: int) -> dict[str, Any]:
    """`share_verdicts` off and on, alternated `rounds` times each in this one run (same load)."""
    runs = []
    for n in range(rounds):
        for share in (False, True):
            runs.append(share_run(up, redis, work, share, seed=100 + 2 * n + int(share), seconds=seconds))
            print("  share run", runs[-1], flush=True)
    on = [r for r in runs if r["share"]]
    off = [r for r in runs if not r["share"]]

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        return sum(float(r[key]) for r in rows) / len(rows)

    return {
        "seconds": seconds,
        "runs": runs,
        "scored_once_on": round(mean(on, "share_of_overlap_scored_once"), 4),
        "scored_once_off": round(mean(off, "share_of_overlap_scored_once"), 4),
        "cpu_ratio_on_over_off": round(mean(on, "cpu_us_per_query") / mean(off, "cpu_us_per_query"), 3),
        "p99_ratio_on_over_off": round(mean(on, "p99_ms") / mean(off, "p99_ms"), 3),
    }


def serve(policy: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dnsperf_all(port: int, queries: Path, seconds: float, senders: int) -> tuple[float, int, int]:
    """QPS summed over `senders` dnsperf processes, each from its own address (the client hash),
    how many answers were not NOERROR, and how many queries were answered."""
    procs = [
        subprocess.Popen(
            [
                "dnsperf",
                "-s",
                "127.0.0.1",
                "-p",
                str(port),
                "-a",
                f"127.0.1.{i + 1}",
                "-d",
                str(queries),
                "-l",
                str(seconds),
                "-c",
                "4",
                "-q",
                "200",
                "-t",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(senders)
    ]
    total, other, completed = 0.0, 0, 0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 30)
        for line in out.splitlines():
            if "Queries per second" in line:
                total += float(line.split()[-1])
            if "Queries completed:" in line:  # e.g. "  Queries completed:    11645 (99.98%)"
                completed += int(line.split()[2])
            if "Response codes:" in line:  # e.g. "NOERROR 11593 (99.55%), SERVFAIL 52 (0.45%)"
                other += sum(int(n) for code, n in re.findall(r"([A-Z]+) (\d+) \(", line) if code != "NOERROR")
    return total, other, completed


def timed_dnsperf(port: int, queries: Path, seconds: float, senders: int, pids: dict[str, int]) -> dict[str, Any]:
    """dnsperf_all, with the CPU seconds each process in `pids` used per answered query (us)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    qps, other, completed = dnsperf_all(port, queries, seconds, senders)
    used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    per_query = {name: round(cpu / max(1, completed) * 1e6, 2) for name, cpu in used.items()}
    return {"qps": round(qps), "not_noerror": other, "completed": completed, "cpu_us_per_query": per_query}


def warm(port: int, names: list[str]) -> None:
    """Asks every name once, from a client address (127.0.0.1 is dnsdist's, which must send a PROXY header)."""
    for name in names:
        for _ in range(3):
            try:
                query = dns.message.make_query(name, "A")
                dns.query.udp(query, "127.0.0.1", port=port, timeout=2, source=CLIENT)  # not dnsdist's address
                break
            except dns.exception.Timeout:
                continue


def throughput(up: Upstream, work: Path, seconds: float, senders: int = 8) -> dict[str, Any]:
    policy = work / "policy.yaml"
    policy.write_text(
        f"upstreams: [127.0.0.1:{up.port}]\nquery_log: off\ncontrol_socket: off\nproxy_protocol: [127.0.0.1/32]\n"
        "access: {allow_clients: [127.0.0.0/8]}\nrate_limit: {qps: 0}\n"
    )
    queries = work / "hits.txt"
    names = [f"w{i}.example.org" for i in range(1000)]
    queries.write_text("".join(f"{name} A\n" for name in names))
    direct_policy = work / "direct.yaml"
    direct_policy.write_text(policy.read_text().replace("proxy_protocol: [127.0.0.1/32]\n", ""))
    out: dict[str, Any] = {"senders": senders, "seconds": seconds}
    ports = [udp_port(), udp_port(), udp_port()]
    procs = [serve(direct_policy, ports[0]), serve(policy, ports[1]), serve(policy, ports[2])]
    dnsdist_procs: list[subprocess.Popen[bytes]] = []
    try:
        for p in ports:
            wait_listening(p, 60)
            warm(p, names)  # every name in every instance's answer cache: the timed runs are all hits
        for n, backends in (("one behind dnsdist", ports[1:2]), ("two behind dnsdist", ports[1:3])):
            dport = udp_port()
            conf = work / f"dnsdist-{len(backends)}.conf"
            conf.write_text(dnsdist_config(dport, [("127.0.0.1", p) for p in backends]))
            proc = subprocess.Popen(
                ["dnsdist", "--supervised", "--disable-syslog", "-C", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            dnsdist_procs.append(proc)
            wait_listening(dport)
            time.sleep(2.5)  # health checks mark the backends up (rise=2, one a second)
            pids = {"dnsdist": proc.pid} | {f"instance {k + 1}": procs[k + 1].pid for k in range(len(backends))}
            run = timed_dnsperf(dport, queries, seconds, senders, pids)
            out[n], out[f"{n}: not NOERROR"], out[f"{n}: cpu_us_per_query"] = (
                run["qps"],
                run["not_noerror"],
                run["cpu_us_per_query"],
            )
            proc.terminate()
            proc.wait(5)
        run = timed_dnsperf(ports[0], queries, seconds, senders, {"instance": procs[0].pid})
        out["one direct"], out["one direct: not NOERROR"] = run["qps"], run["not_noerror"]
        out["one direct: cpu_us_per_query"] = run["cpu_us_per_query"]
    finally:
        for p in [*procs, *dnsdist_procs]:
            p.terminate()
            p.wait(10)
    out["ratio_two_over_one_behind_dnsdist"] = round(out["two behind dnsdist"] / max(1.0, out["one behind dnsdist"]), 2)
    out["ratio_one_behind_dnsdist_over_direct"] = round(out["one behind dnsdist"] / max(1.0, out["one direct"]), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--share-seconds", type=float, default=10.0, help="length of one share_verdicts run")
    parser.add_argument("--share-rounds", type=int, default=2, help="share_verdicts off/on pairs, alternated")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["propagation", "kill", "cache", "share", "throughput"]
    )
    a = parser.parse_args()
    results: dict[str, Any] = {"load_at_start": uptime(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp, run_upstream(Upstream(tld_soa=True)) as up, run_redis() as redis:
        work = Path(tmp)
        if "propagation" not in a.skip:
            results["propagation"] = propagation(up, redis, work, a.trials)
            print("propagation", results["propagation"], flush=True)
        if "kill" not in a.skip:
            results["redis_kill"] = redis_kill(up, redis, work)
            print("redis kill", results["redis_kill"], flush=True)
        if "cache" not in a.skip:
            results["verdict_cache"] = verdict_cache(redis)
            print("verdict cache", results["verdict_cache"], flush=True)
        if "share" not in a.skip:
            results["verdict_sharing"] = verdict_sharing(up, redis, work, a.share_seconds, a.share_rounds)
            print("verdict sharing", {k: v for k, v in results["verdict_sharing"].items() if k != "runs"}, flush=True)
        if "throughput" not in a.skip:
            results["throughput"] = throughput(up, work, a.seconds)
            print("throughput", results["throughput"], flush=True)
    results["load_at_end"] = uptime()
    write(results, a)


def write(results: dict[str, Any], a: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Fleet: Redis sync and a dnsdist front (issue #18)",
        "",
        f"`python bench/fleet.py --trials {a.trials} --seconds {a.seconds:g} --share-seconds {a.share_seconds:g} "
        f"--share-rounds {a.share_rounds}`; load average (1, 5, 15 min) "
        f"{results['load_at_start']} at the start, {results['load_at_end']} at the end, {results['cpus']} CPUs.",
        "",
    ]
    if p := results.get("propagation"):
        lines += [
            "## C2 found on A -> blocked on B (target: p99 < 1 s)",
            "",
            f"{p['trials']} names announced by A's watch, B asked every ms: p50 {p['p50_ms']} ms, "
            f"**p99 {p['p99_ms']} ms**, max {p['max_ms']} ms. End to end (infected client flagged on A, "
            f"a client of B asks): {', '.join(f'{x} ms' for x in p['end_to_end_ms'])}.",
            "",
        ]
    if k := results.get("redis_kill"):
        lines += [
            "## Answers while Redis is killed and restarted "
            f"(target: none lost, none over the {k['sync_timeout_s']} s timeout)",
            "",
            "| phase | answers | lost | p50 ms | p99 ms | max ms |",
            "|---|---|---|---|---|---|",
        ]
        for name, v in k["phases"].items():
            lines.append(f"| {name} | {v['answers']} | {v['lost']} | {v['p50_ms']} | {v['p99_ms']} | {v['max_ms']} |")
        lines += [
            "",
            f"A C2 found on A while Redis was down was blocked on B {k['converged_s_after_restart']} s after "
            f"Redis was started again (empty); reconnection backoff doubles from {BACKOFF[0]:g} s up to "
            f"{BACKOFF[1]:g} s, so this depends on how long Redis was away. Both instances reconnected before "
            f"the end: {k['reconnected_by_end']}.",
            "",
        ]
    if c := results.get("verdict_cache"):
        lines += [
            "## Fetching a score from Redis?",
            "",
            f"One score of the shipped model in process: {c['score_us']} us; one Redis GET (redis-py asyncio, "
            f"loopback): {c['redis_get_us']} us, {c['ratio_get_over_score']}x the score. Fetching a score on a "
            "miss would cost more than computing it and put Redis on the answer's path, so scores travel the "
            "other way: `sync.share_verdicts` publishes them write-behind (next section). Its costs per "
            f"score, in process: sending one this instance computed {c['send_us_per_score']} us, adopting one "
            f"another instance sent {c['adopt_us_per_score']} us. Each instance adopts what all the others "
            "score, so with N instances sharing pays while (N - 1) x adopt < score: up to "
            f"~{int(c['score_us'] / max(0.01, c['adopt_us_per_score'])) + 1} instances at these figures.",
            "",
        ]
    if v := results.get("verdict_sharing"):
        lines += [
            "## Scored once per fleet: `sync.share_verdicts` off and on",
            "",
            f"Two instances (processes), synced through Redis; each asked {SHARE_ASKED} names of a pool of "
            f"{SHARE_POOL} by its own client, paced over {v['seconds']:g} s, both at once (so ~2/3 of each "
            "instance's names are asked on the other too, in random order). Runs alternated off/on in this one "
            "run. Scored: cache misses from each instance's /metrics. CPU: both instances' processes, per answer.",
            "",
            "| share_verdicts | distinct names | asked on both | scored (A, B) | scored twice "
            "| asked-on-both scored once | CPU us/answer | p50 ms | p99 ms | lost |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in v["runs"]:
            lines.append(
                f"| {'on' if r['share'] else 'off'} | {r['distinct_names']} | {r['asked_on_both']} "
                f"| {r['scored'][0]}, {r['scored'][1]} | {r['scored_twice']} "
                f"| {r['share_of_overlap_scored_once'] * 100:.1f}% | {r['cpu_us_per_query']} "
                f"| {r['p50_ms']} | {r['p99_ms']} | {r['lost']} |"
            )
        lines += [
            "",
            f"Names asked on both instances scored only once: **{v['scored_once_on'] * 100:.1f}%** with sharing, "
            f"{v['scored_once_off'] * 100:.1f}% without. Same-run ratios on/off: CPU per answer "
            f"**{v['cpu_ratio_on_over_off']}x**, p99 latency {v['p99_ratio_on_over_off']}x (the CPU includes "
            "the scores not computed and the publishing and adopting done instead).",
            "",
        ]
    if t := results.get("throughput"):
        lines += [
            "## Throughput, answer-cache hits, instances not capped",
            "",
            "The target (two instances ~2x one) is judged in scaleout.md (`bench/scaleout.py`): there each "
            "instance gets a fixed CPU share (cgroups), so a second one adds what a second machine would. Here "
            "every process shares the machine's cores, which says what the front costs per query, not how far "
            "the fleet scales.",
            "",
            f"dnsperf x{t['senders']} (one 127.0.1.x address each), {t['seconds']:g} s per run, QPS:",
            "",
            "| setup | QPS | answers not NOERROR |",
            "|---|---|---|",
            f"| one instance, direct | {t['one direct']} | {t['one direct: not NOERROR']} |",
            f"| one instance behind dnsdist | {t['one behind dnsdist']} | {t['one behind dnsdist: not NOERROR']} |",
            f"| two instances behind dnsdist | {t['two behind dnsdist']} | {t['two behind dnsdist: not NOERROR']} |",
            "",
            f"Two over one behind dnsdist: **{t['ratio_two_over_one_behind_dnsdist']}x**; one behind dnsdist over "
            f"direct: {t['ratio_one_behind_dnsdist_over_direct']}x. dnsperf, dnsdist and the instances share "
            f"this machine's {results['cpus']} cores (and other jobs, see the load above): a second instance can "
            "only add throughput when a core is free for it, and the QPS of each setup depends on what the "
            "other jobs did during its 8 s.",
            "",
            "CPU per answered query (us, user + system, from /proc), which says whether the front adds cost "
            "whatever the cores:",
            "",
            "| setup | instances | dnsdist | total |",
            "|---|---|---|---|",
        ]
        for name in ("one direct", "one behind dnsdist", "two behind dnsdist"):
            cpu = t.get(f"{name}: cpu_us_per_query", {})
            mine = sum(v for k, v in cpu.items() if k.startswith("instance"))
            front = cpu.get("dnsdist", 0.0)
            lines.append(f"| {name} | {mine:.1f} | {front:.1f} | {mine + front:.1f} |")
        lines.append("")
    (RESULTS / "fleet.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
