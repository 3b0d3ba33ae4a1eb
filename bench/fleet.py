"""Issue #18's fleet targets, in one bounded run on 127.0.0.1:

    sudo apt-get install -y redis-server dnsdist dnsperf      (bench/README.md)
    python bench/fleet.py [--trials 200] [--seconds 8]

1. propagation: a likely C2 found on instance A -> blocked on instance B (both in this process, each
   on its own event loop and sockets, synced through a real redis-server). `--trials` times, a new
   name each: A's watch announces it as the client watch does (`WatchState.on_found`) and a client
   asks B for it every millisecond until B sinkholes it; plus 3 end-to-end trials where an infected
   client (tests/test_watch.py's walk and beacon) is flagged on A. Target: p99 < 1 s.
2. redis kill: a client asks A and B 400 times a second for 9 s; Redis is killed (SIGKILL) at 3 s
   and started again, empty, at 6 s. Every answer's latency, per phase, and any lost one. Target:
   none lost, none slower than `sync.timeout` (Redis is never on an answer's path).
3. verdict cache: a Redis GET from redis-py's asyncio client vs one model score (the shipped model,
   in process), to decide whether sharing scores saves work (resolverguard/sync.py: it does not).
4. throughput: dnsperf (8 processes, each from its own 127.0.0.x address, so the client hash spreads
   them) against one resolverguard process directly, one behind dnsdist (examples/dnsdist.conf) and
   two behind dnsdist; answer-cache hits (every name asked once before). Target: two ~2x one.

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
from test_watch import C2, INFECTED, config_for, find_c2_and_beacon, rule_of, walk_until_flagged  # noqa: E402

from resolverguard.config import SyncConfig  # noqa: E402
from resolverguard.sync import BACKOFF  # noqa: E402
from resolverguard.watch import LikelyC2  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CLIENT = "127.0.0.5"
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
            find_c2_and_beacon(a, INFECTED)
            walk_until_flagged(a, INFECTED, rule_of(cfg))
            start = time.monotonic()  # the flag (and the C2 found with it) is raised on this answer
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
    return {
        "score_us": round(score_us, 1),
        "redis_get_us": round(get_us, 1),
        "ratio_get_over_score": round(get_us / score_us, 1),
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


def dnsperf_all(port: int, queries: Path, seconds: float, senders: int) -> tuple[float, int]:
    """QPS summed over `senders` dnsperf processes, each from its own address (the client hash),
    and how many answers were not NOERROR."""
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
    total, other = 0.0, 0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 30)
        for line in out.splitlines():
            if "Queries per second" in line:
                total += float(line.split()[-1])
            if "Response codes:" in line:  # e.g. "NOERROR 11593 (99.55%), SERVFAIL 52 (0.45%)"
                other += sum(int(n) for code, n in re.findall(r"([A-Z]+) (\d+) \(", line) if code != "NOERROR")
    return total, other


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
            qps, other = dnsperf_all(dport, queries, seconds, senders)
            out[n], out[f"{n}: not NOERROR"] = round(qps), other
            proc.terminate()
            proc.wait(5)
        qps, other = dnsperf_all(ports[0], queries, seconds, senders)
        out["one direct"], out["one direct: not NOERROR"] = round(qps), other
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
    parser.add_argument("--skip", nargs="*", default=[], choices=["propagation", "kill", "cache", "throughput"])
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
        f"`python bench/fleet.py --trials {a.trials} --seconds {a.seconds:g}`; load average (1, 5, 15 min) "
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
            "## Sharing the verdict cache?",
            "",
            f"One score of the shipped model in process: {c['score_us']} us; one Redis GET (redis-py asyncio, "
            f"loopback): {c['redis_get_us']} us, {c['ratio_get_over_score']}x the score. Fetching a score costs "
            "more than computing it, so scores are not shared (resolverguard/sync.py says so); findings are.",
            "",
        ]
    if t := results.get("throughput"):
        lines += [
            "## Throughput, answer-cache hits (target: two instances ~2x one)",
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
            "only add throughput when a core is free for it.",
            "",
        ]
    (RESULTS / "fleet.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
