"""resolverguard against Unbound, in one run, on 127.0.0.1 only.

    sudo apt-get install -y nsd unbound dnsperf      (bench/README.md)
    python bench/compare.py [--seconds 10]

Starts (a) NSD answering every name from a wildcard root zone, (b) Unbound as a caching forwarder to
it with 1 thread and (b2) with 2, (m) Unbound with the resolverguard module (`module-config: "python
iterator"`) asking `resolverguard unbound-service` (full chain, shipped model, query log off) with 1
thread and (m2) with 2, (c) resolverguard with scoring off (a plain forwarder), (d) resolverguard with
the full chain and the shipped model, (d') the same with the query log written to a file, (e) the same with
`workers: 2`, (f) the same with a 1,000,000-entry hosts blocklist, and drives each with dnsperf
over the same query files: `hits` (Zipf over ~10k benign names; every name is asked once before the
timed run, so it measures the steady state of an office whose popular names are cached) and
`misses` (every registrable name unique, so every query is scored and forwarded). For each: QPS,
server CPU seconds (Unbound and the verdict service together for the module), peak RSS, and p50/p99
latency measured in a second run (on names of their own, after a second of quiet and a warm-up
second: `settled_latency`) at 20% of (d)'s peak QPS, (d)'s in rounds in turn with the upstream's
own (`paired_latency`: the added p99); the module's added p99 is (m) against (b) at 20% of (m)'s
peak. `--standalone` leaves out the module rows and the reloads (results/compare_standalone.*).
Then 100 reloads under load (`unbound-control reload` and
SIGHUP alternated, under dnsperf at 20% of (m2)'s miss peak) for (b2) and (m2): queries lost, whether
Unbound is still up; then 100 more with a client that asks again after 1 s as stub resolvers do
(`bench/reload_retry.py`): lookups that failed after 3 tries.

Fair to Unbound: it gets the receive buffer resolverguard sets (`so-rcvbuf: 4m`), and the misses file
holds more names than any target asks in a run (checked; the run fails otherwise), so no miss becomes
a cache hit. Results, ratios from the same run and the machine's load (uptime before and after) go to
bench/results/compare.{md,json}. Every run is bounded in time (dnsperf -l) and count.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import gzip
import json
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from lists import write_hosts

from resolverguard.store import day_table

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "benign.txt.gz"


# dnsperf's summary lines: (key, pattern of its one number), read by every bench that runs dnsperf
DNSPERF_TOTALS = (
    ("qps", r"Queries per second:\s+([\d.]+)"),
    ("sent", r"Queries sent:\s+(\d+)"),
    ("completed", r"Queries completed:\s+(\d+)"),
    ("lost", r"Queries lost:\s+(\d+)"),
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def benign_names(n: int, rng: random.Random) -> list[str]:
    if DATA.exists():
        with gzip.open(DATA, "rt") as handle:
            names = [line.strip() for line in handle if line.strip()]
        return rng.sample(names, n)
    words = ["shop", "news", "mail", "cloud", "green", "river", "blue", "city", "home", "garden", "book"]
    return [f"{rng.choice(words)}{rng.choice(words)}{i}.com" for i in range(n)]


def miss_names(names: list[str], count: int, rng: random.Random, tag: str = "") -> list[str]:
    """Unique registrable names, half DGA-looking (random), half benign labels with a number."""
    out = []
    alphabet = string.ascii_lowercase + string.digits
    for i in range(count):
        if i % 2:
            label = "".join(rng.choice(alphabet) for _ in range(rng.randint(8, 16))) + f"{tag}{i}"
        else:
            label = rng.choice(names).split(".")[0] + f"{tag}{i}"
        out.append(f"{label}.com")
    return out


def query_files(work: Path, count: int, rng: random.Random, misses: int | None = None) -> dict[str, Path]:
    """hits: Zipf(1.1) over 10k benign names; misses: `misses` unique registrable names (default
    `count`), half DGA-looking; latency runs ask names of their own (`<kind>.latency.txt`)."""
    names = benign_names(10_000, rng)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(names))]
    hits = rng.choices(names, weights=weights, k=count)
    (work / "warm.txt").write_text("".join(f"{n} A\n" for n in dict.fromkeys(hits)))  # each hits name once
    out = {}
    for kind, items in (("hits", hits), ("misses", miss_names(names, misses or count, rng))):
        path = work / f"{kind}.txt"
        path.write_text("".join(f"{n} A\n" for n in items))
        out[kind] = path
    (work / "hits.latency.txt").write_text((work / "hits.txt").read_text())
    (work / "misses.latency.txt").write_text("".join(f"{n} A\n" for n in miss_names(names, 200_000, rng, "l")))
    return out


def start_nsd(work: Path, port: int) -> subprocess.Popen[bytes]:
    zone = work / "root.zone"
    zone.write_text(
        "$TTL 3600\n. IN SOA ns. host. 1 3600 600 86400 300\n. IN NS ns.\nns. IN A 127.0.0.1\n"
        "* IN A 192.0.2.1\n* IN AAAA 2001:db8::1\n"
    )
    conf = work / "nsd.conf"
    conf.write_text(
        f'server:\n  ip-address: 127.0.0.1@{port}\n  database: ""\n  zonelistfile: "{work}/zone.list"\n'
        f'  pidfile: "{work}/nsd.pid"\n  xfrdfile: "{work}/xfrd.state"\n  username: ""\n  server-count: 1\n'
        "  rrl-ratelimit: 0\n  rrl-whitelist-ratelimit: 0\n"
        f'  chroot: ""\n  logfile: "{work}/nsd.log"\nremote-control:\n  control-enable: no\n'
        f'zone:\n  name: "."\n  zonefile: "{zone}"\n'
    )
    return subprocess.Popen(["nsd", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


UNBOUND_PYTHONPATH = "/usr/lib/python3/dist-packages"  # Debian's python3-unbound (docs/unbound.md)


def unbound_conf(work: Path, port: int) -> Path:
    return work / f"unbound-{port}.conf"


MODULE = ROOT / "resolverguard" / "unbound_module.py"
NOOP_MODULE = ROOT / "bench" / "noop_module.py"


def start_unbound(
    work: Path,
    port: int,
    upstream: int,
    extra: str = "",
    threads: int = 1,
    verdicts: Path | None = None,
    script: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Unbound as a caching forwarder with resolverguard's receive buffer (4 MB) and a control
    socket; `extra`: more `server:` lines (two-space indented); `verdicts`: load the resolverguard
    module, asking the verdict service on that socket; `script`: load this Python module instead."""
    conf = unbound_conf(work, port)
    script = script or (MODULE if verdicts else None)
    modules = "python iterator" if script else "iterator"
    module = f'python:\n  python-script: "{script}"\n' if script else ""
    conf.write_text(
        f'server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-daemonize: no\n  username: ""\n'
        f'  chroot: ""\n  directory: "{work}"\n  pidfile: "{work}/unbound-{port}.pid"\n  use-syslog: no\n'
        f'  logfile: "{work}/unbound-{port}.log"\n  so-rcvbuf: 4m\n'
        f"  num-threads: {threads}\n  do-not-query-localhost: no\n  access-control: 127.0.0.0/8 allow\n"
        f'  module-config: "{modules}"\n  qname-minimisation: no\n  verbosity: 0\n'
        f"{extra}{module}"
        f'remote-control:\n  control-enable: yes\n  control-interface: "{work}/unbound-{port}.ctl"\n'
        f'forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@{upstream}\n'
    )
    env = dict(os.environ, PYTHONPATH=UNBOUND_PYTHONPATH, RESOLVERGUARD_SOCKET=str(verdicts or ""))
    return subprocess.Popen(
        ["unbound", "-d", "-c", str(conf)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def start_verdicts(work: Path, name: str, root: Path = ROOT) -> tuple[subprocess.Popen[bytes], Path]:
    """`resolverguard unbound-service` with (d)'s policy (full chain, shipped model, query log off);
    `root`: the checkout to run it from (another one: the before of a before/after)."""
    policy, sock = work / f"verdicts-{name}.yaml", work / f"verdicts-{name}.sock"
    policy.write_text("query_log: off\n")
    cmd = [sys.executable, "-m", "resolverguard", "unbound-service", "--config", str(policy), "--socket", str(sock)]
    env = dict(os.environ, PYTHONPATH=str(root))
    log = (work / f"verdicts-{name}.log").open("w")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the verdict service did not start: {(work / f'verdicts-{name}.log').read_text()}")
        time.sleep(0.1)
    return proc, sock


def start_resolverguard(
    work: Path,
    port: int,
    upstream: int,
    scoring: bool,
    workers: int = 1,
    log: bool = False,
    deny_file: Path | None = None,
    watch: bool = False,
    writer: str = "auto",
    store: bool = False,
    shortcut: bool = True,
    priority: str = "",
    root: Path | None = None,
) -> subprocess.Popen[bytes]:
    """`root`: another checkout to serve from (its own PYTHONPATH and cwd; --log --baseline)."""
    policy = work / f"rg-{port}.yaml"
    set_priority = f", priority: {priority}" if priority else ""
    query_log = f"{{path: '{work}/queries-{port}.jsonl', writer: {writer}{set_priority}}}" if log else "off"
    if store:
        query_log += f"\nquery_store: '{work}/store-{port}.db'"
    lists = f"lists:\n  deny_files: ['{deny_file}']\n" if deny_file else ""
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream}']\nscoring: {str(scoring).lower()}\nquery_log: {query_log}\n"
        f"rate_limit:\n  qps: 0\nlimits:\n  max_inflight: 8192\nworkers: {workers}\n{lists}"
        + ("client_watch:\n  enabled: true\n  action: log\n" if watch else "")  # log: the bench client walks DGA names
        + ("" if shortcut else "answer_cache:\n  repeat_shortcut: false\n")
    )
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    env = None if root is None else {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.Popen(
        cmd, cwd=root or ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(work / f"rg-{port}.log").open("w")
    )


def wait_ready(port: int, timeout: float = 120.0) -> None:
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            try:
                s.sendto(query, ("127.0.0.1", port))
                s.recv(512)
                return
            except OSError:
                time.sleep(0.2)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


def family(pid: int) -> list[int]:
    """The process and its children (worker processes, when there are some)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(c) for c in (children.read_text().split() if children.exists() else []))]


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in family(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of the largest process of the family (one worker, when several)."""
    peaks = []
    for p in family(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks, default=0.0)


def dnsperf(
    port: int,
    queries: Path,
    seconds: float,
    qps: float | None = None,
    sources: tuple[str, ...] = (),
    warmup: float = 0.0,
) -> dict[str, Any]:
    """dnsperf's peak (or, with `qps`, latency) run. `sources`: client addresses to ask from, one
    dnsperf each (the 8 sockets and the rate split between them), summed: with `workers` each
    client's queries reach one worker (resolverguard.reuseport), so one address would load one.
    `warmup`: with `qps`, the run is that much longer and the answers of its first `warmup` seconds
    (dnsperf prints them in the order they came) are left out of p50/p99: dnsperf starting its
    sockets and threads, and a server's first queries after a pause, are not the server's latency."""
    if len(sources) > 1:
        return _summed(port, queries, seconds, qps, sources)
    if qps and warmup:
        seconds += warmup
    cmd = [
        "dnsperf",
        *(["-a", sources[0]] if sources else []),
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        str(queries),
        "-l",
        str(seconds),
        "-c",
        str(8 // max(1, len(sources))),
        "-q",
        "500",
        "-t",
        "2",
        "-S",
        "0",
    ]
    if qps:
        cmd += ["-Q", str(int(qps)), "-v"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    result: dict[str, Any] = {}
    for key, pattern in DNSPERF_TOTALS:
        match = re.search(pattern, out)
        result[key] = float(match.group(1)) if match else None
    if qps:  # verbose lines: "> NOERROR name A 0.000123"
        lat = sorted(
            [
                float(line.rsplit(None, 1)[1])
                for line in out.splitlines()
                if line.startswith("> ") and re.match(r".*\s[\d.]+$", line)
            ][int(qps * warmup) :]
        )
        if lat:
            result["p50_ms"] = round(lat[len(lat) // 2] * 1000, 3)
            result["p99_ms"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3)
    return result


def _summed(port: int, queries: Path, seconds: float, qps: float | None, sources: tuple[str, ...]) -> dict[str, Any]:
    share = qps / len(sources) if qps else None
    with concurrent.futures.ThreadPoolExecutor(len(sources)) as pool:
        parts = list(pool.map(lambda src: dnsperf(port, queries, seconds, share, (src,)), sources))
    out: dict[str, Any] = {k: sum(p[k] or 0 for p in parts) for k in ("qps", "sent", "completed", "lost")}
    for key in ("p50_ms", "p99_ms"):  # the slower client's figure: a bound, not a merge of the samples
        if all(key in p for p in parts):
            out[key] = max(p[key] for p in parts)
    return out


def one_client_per_worker(workers: int) -> tuple[str, ...]:
    """Loopback client addresses that the workers' steering program sends to different workers."""
    from resolverguard.reuseport import worker_of

    chosen: dict[int, str] = {}
    for i in range(1, 255):
        chosen.setdefault(worker_of(f"127.0.0.{i}", workers), f"127.0.0.{i}")
        if len(chosen) == workers:
            break
    return tuple(chosen[k] for k in sorted(chosen))


def measure(
    name: str,
    proc: subprocess.Popen[bytes],
    port: int,
    files: dict[str, Path],
    seconds: float,
    latency_qps: dict[str, float],
    helpers: tuple[subprocess.Popen[bytes], ...] = (),
    sources: tuple[str, ...] = (),
    upstream: int | None = None,
    settle: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Peak QPS and CPU per query file, then p50/p99 at `latency_qps` on the latency names;
    `helpers`: processes whose CPU counts too (the module's verdict service); `sources`: the
    client addresses dnsperf asks from (see `dnsperf`); `upstream`: the port of the upstream the
    target forwards to, whose own latency is then measured in turn with the target's
    (`paired_latency`: the added p99); `settle`: waits after each peak run until the target is
    done with it (a query log's writer behind the answers: `log_settled`) and says how long it took;
    the CPU is read after it, so work deferred past the run still counts."""
    pids = [proc.pid, *(h.pid for h in helpers)]
    wait_ready(port)
    time.sleep(2.0)  # with workers, the first to answer may not be the last to start
    out: dict[str, Any] = {"target": name}
    for kind, path in files.items():
        peak = peak_run(pids, port, kind, path, seconds, sources, settle)
        if latency_qps.get(kind):
            names = path.with_name(f"{kind}.latency.txt")
            if upstream is None:
                latency = settled_latency(port, names, latency_qps[kind], sources)
            else:
                latency = paired_latency(port, upstream, names, latency_qps[kind], sources)
            peak.update({k: v for k, v in latency.items() if k.endswith("_ms") or k == "latency_rounds"})
        out[kind] = peak
    out["peak_rss_mb"] = round(max(peak_rss_mb(p) for p in pids), 1)
    return out


def peak_run(
    pids: list[int],
    port: int,
    kind: str,
    path: Path,
    seconds: float,
    sources: tuple[str, ...] = (),
    settle: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One peak run of `measure` (dnsperf's totals and the CPU seconds of `pids` over it); for `hits`,
    after every name was asked once (the steady state of an office whose popular names are cached)."""
    if kind == "hits":
        for source in sources or ("127.0.0.1",):  # each worker's answer cache, when clients are steered
            subprocess.run(
                ["dnsperf", "-a", source, "-s", "127.0.0.1", "-p", str(port)]
                + ["-d", str(path.with_name("warm.txt")), "-n", "1"],
                capture_output=True,
                timeout=120,
            )
    cpu = sum(cpu_seconds(p) for p in pids)
    peak = dnsperf(port, path, seconds, sources=sources)
    if settle is not None:
        peak.update(settle())
    peak["cpu_s"] = round(sum(cpu_seconds(p) for p in pids) - cpu, 2)
    return peak


LATENCY_SETTLE = 1.0  # seconds of quiet between a peak run and a latency run
LATENCY_WARMUP = 1.0  # seconds at the latency rate, on names of their own, not counted
LATENCY_ROUNDS = 3  # paired rounds: the target, then its upstream, on the same names
LATENCY_SECONDS = 4.0  # per round (paired_latency's, and each latency run of --module)


def latency_slice(names: Path, part: int, qps: float, seconds: float) -> Path:
    """Part `part` of a latency file: enough names for `seconds` at `qps` that no other part of the
    same run asks, so a never-seen name stays never seen (dnsperf reads its file from the top every
    run: a warm-up or a second round on the whole file would turn misses into cache hits)."""
    count = int(qps * seconds * 1.2) + 100
    lines = names.read_text().splitlines(keepends=True)
    if names.name.startswith("hits"):  # repeats are the point of the hits file
        return names
    if (part + 1) * count > len(lines):
        raise RuntimeError(f"{names} holds {len(lines)} names, part {part} needs {(part + 1) * count}")
    out = names.with_name(f"{names.stem}.part{part}.txt")
    out.write_text("".join(lines[part * count : (part + 1) * count]))
    return out


def settled_latency(
    port: int, names: Path, qps: float, sources: tuple[str, ...], seconds: float = 5.0
) -> dict[str, Any]:
    """p50/p99 at `qps` measured as a steady state (issue #17: the latency run used to start the
    moment the peak run ended, and its first second carried the peak's tail: queues, the client's
    own start, a collector pass over what the peak left; on this 2-core machine those alone made
    a p99 of several ms). A second of quiet, then a warm-up second on other names, then the run."""
    time.sleep(LATENCY_SETTLE)
    dnsperf(port, latency_slice(names, 0, qps, LATENCY_WARMUP), LATENCY_WARMUP, qps, sources)
    return dnsperf(port, latency_slice(names, 1, qps, seconds), seconds, qps, sources)


def paired_latency(
    port: int, upstream: int, names: Path, qps: float, sources: tuple[str, ...], rounds: int = LATENCY_ROUNDS
) -> dict[str, Any]:
    """The target's p50/p99 and its upstream's at the same rate on the same names, in turn, for
    `rounds` rounds (after `settled_latency`'s quiet and warm-up); the medians over the rounds and
    `added_p99_ms`, the median of each round's target p99 minus upstream p99. Why in turn: on a
    shared 2-core machine the upstream's own p99 moved from 0.09 to 2 ms between two runs a minute
    apart, so an upstream measured once, at the end of the bench, was a different machine's."""
    time.sleep(LATENCY_SETTLE)
    dnsperf(port, latency_slice(names, 0, qps, LATENCY_WARMUP), LATENCY_WARMUP, qps, sources)
    each = []
    for r in range(rounds):
        part = latency_slice(names, 1 + r, qps, LATENCY_SECONDS)
        mine = dnsperf(port, part, LATENCY_SECONDS, qps, sources)
        theirs = dnsperf(upstream, part, LATENCY_SECONDS, qps)
        each.append({"target": mine, "upstream": theirs})
    out: dict[str, Any] = {"latency_rounds": each}
    for key in ("p50_ms", "p99_ms"):
        out[key] = median([r["target"].get(key) for r in each])
        out[f"upstream_{key}"] = median([r["upstream"].get(key) for r in each])
    out["added_p99_ms"] = median(
        [
            r["target"]["p99_ms"] - r["upstream"]["p99_ms"]
            for r in each
            if "p99_ms" in r["target"] and "p99_ms" in r["upstream"]
        ]
    )
    return out


def median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return round(known[len(known) // 2], 3) if known else None


Reload = Callable[[int], bool]  # the i-th reload of a run; False where the reload could not be made


def control_or_hup(work: Path, port: int, proc: subprocess.Popen[bytes]) -> Reload:
    """`unbound-control reload` and SIGHUP alternated, to the one Unbound answering on `port`."""

    def reload(i: int) -> bool:
        if i % 2:
            proc.send_signal(signal.SIGHUP)
            return True
        control = ["unbound-control", "-c", str(unbound_conf(work, port)), "reload"]
        return subprocess.run(control, capture_output=True, timeout=30).returncode == 0

    return reload


def hup_each(procs: list[subprocess.Popen[bytes]]) -> Reload:
    """SIGHUP to every process at once, as `systemctl reload unbound` sends it to one Unbound process
    per core (`resolverguard unbound-module --processes N`: the others' units have ReloadPropagatedFrom),
    without the pause their `ExecReload=` keeps after it (bench/reload_storm.py's `SystemdJobs` has it)."""

    def reload(i: int) -> bool:
        for proc in procs:
            proc.send_signal(signal.SIGHUP)
        return True

    return reload


def reload_under_load(
    work: Path, port: int, proc: subprocess.Popen[bytes], queries: Path, qps: float, reloads: int
) -> dict[str, Any]:
    """`reloads_under_load` of one Unbound, reloaded by `control_or_hup`."""
    reload = control_or_hup(work, port, proc)
    return reloads_under_load(port, [proc], [work / f"unbound-{port}.log"], reload, queries, qps, reloads)


def reloads_under_load(
    port: int,
    procs: list[subprocess.Popen[bytes]],
    logs: list[Path],
    reload: Reload,
    queries: Path,
    qps: float,
    reloads: int,
    interval: float = 0.1,
) -> dict[str, Any]:
    """`reloads` reloads, `interval` s apart, while dnsperf asks at `qps`: queries sent, answered,
    lost, the module's count of queries in flight at the reloads (from the `logs`), and whether every
    one of the `procs` is still up and `port` still answers."""
    wait_ready(port)
    seconds = reloads * (interval + 0.1) + 4  # (each unbound-control call takes its own time too)
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds), "-c", "8"]
    load = subprocess.Popen([*cmd, "-Q", str(int(qps)), "-t", "2", "-S", "0"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    failed = 0
    for i in range(reloads):
        failed += not reload(i)
        time.sleep(interval)
    out, _ = load.communicate(timeout=seconds + 60)
    result: dict[str, Any] = {"reloads": reloads, "qps": round(qps), "control_failures": failed}
    for key, pattern in (("sent", r"Queries sent:\s+(\d+)"), ("completed", r"Queries completed:\s+(\d+)")):
        match = re.search(pattern, out)
        result[key] = int(match.group(1)) if match else None
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    result["lost"] = int(lost.group(1)) if lost else None
    result["alive"] = all(proc.poll() is None for proc in procs)
    held = [held_at_reloads(log) for log in logs]
    result["in_flight"] = None if all(h is None for h in held) else sum(h or 0 for h in held)
    try:
        wait_ready(port, timeout=5)
        result["answers_after"] = True
    except RuntimeError:
        result["answers_after"] = False
    return result


def held_at_reloads(log: Path) -> int | None:
    """The queries the resolverguard module counted in flight (handed to the iterator, not back)
    at each of its unloads, summed: what Unbound freed unanswered when the reloads hit (issue #17).
    None for a row without the module."""
    counts = [
        int(word.split("=", 1)[1])
        for line in (log.read_text(errors="replace").splitlines() if log.exists() else [])
        if "resolverguard: module unloaded" in line
        for word in line.split()
        if word.startswith("in_flight=")
    ]
    return sum(counts) if counts else None


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as uptime prints them (the machine may be shared)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--queries", type=int, default=200_000)
    p.add_argument("--misses", type=int, default=0, help="never-seen names (default 200k per second of run)")
    p.add_argument("--reloads", type=int, default=100)
    p.add_argument(
        "--watch",
        action="store_true",
        help="(d) full chain, (g) = (d) + client_watch, (d0) = (d) without the repeat shortcut; in turn",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="--watch: rounds of (d) and (g) in turn (4); --module: rounds in turn, each row's best kept (3);"
        " the full run and --standalone: peak rounds of every row in turn, medians (3)",
    )
    p.add_argument("--log", action="store_true", help="only (d) against (d') log file, (d't) thread, (d's) store")
    p.add_argument(
        "--priority",
        action="store_true",
        help="with --log: (d) against (d') with the writer process at priority normal, low (d'l) and idle (d'i)",
    )
    p.add_argument(
        "--standalone",
        action="store_true",
        help="no module rows and no reloads: (a), (b), (b2), (c), (d), (e), (d'), (f); to compare_standalone.{md,json}",
    )
    p.add_argument(
        "--module", action="store_true", help="only Unbound: (b), (n) do-nothing module, (m); 1 and 2 threads"
    )
    p.add_argument("--rows", default="", help="with --module: only these rows (unbound,noop,module,unbound2,...)")
    p.add_argument(
        "--benign-misses", action="store_true", help="with --module: never-seen names of the benign half only"
    )
    p.add_argument(
        "--unbound-extra", default="", help="with --module: more server: lines for every Unbound, ';'-separated"
    )
    p.add_argument(
        "--baseline",
        type=Path,
        help="with --module: rows (o)/(o2), the module and service of this checkout; with --log: (d'0), its (d')",
    )
    p.add_argument(
        "--tag",
        default="run",
        help="results go to bench/results/module_TAG.{md,json} (--module), compare_log_TAG (--log)",
    )
    a = p.parse_args()
    if a.rounds is None:
        a.rounds = 4 if a.watch or a.log else 3
    for tool in ("nsd", "unbound", "dnsperf"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: sudo apt-get install -y nsd unbound dnsperf")
    work = Path(tempfile.mkdtemp(prefix="rg-bench-"))
    misses = a.misses or int(a.seconds * 200_000)
    files = query_files(work, a.queries, random.Random(7), misses)
    if a.watch:
        compare_watch(work, files, a)
        return
    if a.log:
        compare_log(work, files, a)
        return
    if a.module:
        compare_module(work, files, a, misses)
        return
    load_before = load_average()
    keys = ("nsd", "unbound", "unbound2", "module", "module2", "rg_plain", "rg_full", "rg_workers", "rg_log", "rg_list")
    ports = {k: free_port() for k in keys}
    blocklist = write_hosts(work / "hosts-1m.txt", 1_000_000, random.Random(1))
    procs = [start_nsd(work, ports["nsd"])]
    running: dict[str, Running] = {}  # the rows measured again in --rounds, as they were started
    try:
        wait_ready(ports["nsd"])
        results = {"upstream": measure("(a) NSD alone", procs[0], ports["nsd"], files, a.seconds, {})}
        # (d) first, to learn its peak; everything's latency is then measured at 20% of it.
        procs.append(start_resolverguard(work, ports["rg_full"], ports["nsd"], True))
        full = measure("(d) resolverguard full chain", procs[-1], ports["rg_full"], files, a.seconds, {})
        latency_qps = {k: 0.2 * (full[k]["qps"] or 0) for k in files}
        results["rg_full"] = measure(
            "(d) resolverguard full chain",
            procs[-1],
            ports["rg_full"],
            files,
            a.seconds,
            latency_qps,
            upstream=ports["nsd"],
        )
        running["rg_full"] = Running(procs[-1], ports["rg_full"])
        scoring = functools.partial(start_resolverguard, scoring=True)
        for key, label, start, sources in (
            ("rg_plain", "(c) resolverguard, scoring off", functools.partial(start_resolverguard, scoring=False), ()),
            (
                "rg_workers",
                "(e) resolverguard full chain, workers: 2 (dnsperf from 2 client addresses)",
                functools.partial(scoring, workers=2),
                one_client_per_worker(2),
            ),
            ("rg_log", "(d') full chain + query log file", functools.partial(scoring, log=True), ()),
            ("rg_list", "(f) full chain + 1M-entry blocklist", functools.partial(scoring, deny_file=blocklist), ()),
        ):
            procs.append(start(work, ports[key], ports["nsd"]))
            results[key] = measure(label, procs[-1], ports[key], files, a.seconds, latency_qps, sources=sources)
            running[key] = Running(procs[-1], ports[key], sources=sources)
        if a.standalone:  # plain Unbound at (d)'s latency rate, for the ratios with 1 and 2 threads
            module_qps = {}
            for key, label, threads in (
                ("unbound", "(b) Unbound forwarder, 1 thread", 1),
                ("unbound2", "(b2) Unbound forwarder, 2 threads", 2),
            ):
                procs.append(start_unbound(work, ports[key], ports["nsd"], threads=threads))
                results[key] = measure(label, procs[-1], ports[key], files, a.seconds, latency_qps)
                running[key] = Running(procs[-1], ports[key])
        else:
            module_qps = module_rows(work, ports, procs, files, a, results, running)
        peak_rounds(running, files, a, results)
        if not a.standalone:
            reloads(work, ports, running, files, a, results)
        results["upstream_latency"] = {
            k: dnsperf(ports["nsd"], v.with_name(f"{k}.latency.txt"), 5, latency_qps[k]) for k, v in files.items()
        }
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    results["misses_file"] = misses
    results["load"] = {"before": load_before, "after": load_average()}
    largest = max(
        max([r["misses"]["sent"] or 0] + [each["sent"] or 0 for each in r["misses"].get("rounds", [])])
        for r in results.values()
        if isinstance(r, dict) and "misses" in r
    )
    if largest >= misses:
        sys.exit(
            f"a target asked {largest:.0f} misses from a {misses}-name file: rerun with --misses {2 * largest:.0f}"
        )
    results["misses_largest_volume"] = largest
    write(results, a, latency_qps, module_qps)


class Running(NamedTuple):
    """A row of the default run as it was started, so `peak_rounds` can measure it again."""

    proc: subprocess.Popen[bytes]
    port: int
    helpers: tuple[subprocess.Popen[bytes], ...] = ()
    sources: tuple[str, ...] = ()


def peak_rounds(
    running: dict[str, Running], files: dict[str, Path], a: argparse.Namespace, results: dict[str, Any]
) -> None:
    """Rounds 2..`--rounds` of every row's peak, the rows in turn (each round starting one row
    later, on never-seen names new to that round); a row's QPS and CPU become the medians of its
    rounds, and `ratio_of` takes a ratio round by round. Why: one 5 s run per row, rows a minute
    apart, put the machine's swings into single rows ((b2) misses 21k in one run, 30-34k in the
    others, moved (e)/(b2) from 0.39 to 0.49 between two idle runs)."""
    keys = list(running)
    for r in range(1, a.rounds):
        names = {"hits": files["hits"], "misses": round_misses(files["misses"], r)}
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            row = running[key]
            pids = [row.proc.pid, *(h.pid for h in row.helpers)]
            for kind, path in names.items():
                got = peak_run(pids, row.port, kind, path, a.seconds, row.sources)
                results[key][kind].setdefault("rounds", []).append(got)
    for key in keys:
        for kind in files:
            r = results[key][kind]
            each = [{k: r[k] for k in ("qps", "sent", "completed", "lost", "cpu_s")}, *r.get("rounds", [])]
            r["rounds"] = each
            r["qps"] = median([x["qps"] for x in each])
            r["cpu_s"] = median([x["cpu_s"] for x in each])


MODULE_ROWS = (  # key, label, threads, module
    ("unbound", "(b) Unbound forwarder, 1 thread", 1, None),
    ("noop", "(n) Unbound + do-nothing Python module, 1 thread", 1, NOOP_MODULE),
    ("module", "(m) Unbound + resolverguard module, 1 thread", 1, MODULE),
    ("unbound2", "(b2) Unbound forwarder, 2 threads", 2, None),
    ("noop2", "(n2) Unbound + do-nothing Python module, 2 threads", 2, NOOP_MODULE),
    ("module2", "(m2) Unbound + resolverguard module, 2 threads", 2, MODULE),
)
BASELINE_ROWS = (  # with --baseline DIR: the module and service of another checkout, in the same run
    ("old", "(o) Unbound + the module of --baseline, 1 thread", 1, None),
    ("old2", "(o2) Unbound + the module of --baseline, 2 threads", 2, None),
)
MODULE_RATIOS = {
    "(o)/(b)": ("old", "unbound"),
    "(m)/(o)": ("module", "old"),
    "(o2)/(b2)": ("old2", "unbound2"),
    "(m2)/(o2)": ("module2", "old2"),
    "(n)/(b)": ("noop", "unbound"),
    "(m)/(b)": ("module", "unbound"),
    "(m)/(n)": ("module", "noop"),
    "(n2)/(b2)": ("noop2", "unbound2"),
    "(m2)/(b2)": ("module2", "unbound2"),
    "(m2)/(n2)": ("module2", "noop2"),
}


def module_rows(
    work: Path,
    ports: dict[str, int],
    procs: list[subprocess.Popen[bytes]],
    files: dict[str, Path],
    a: argparse.Namespace,
    results: dict[str, Any],
    running: dict[str, Running],
) -> dict[str, float]:
    """The Unbound rows of the full run, (m), (b), (m2), (b2); returns the rate their latency was
    measured at (20% of (m)'s peak). Started processes go to `procs` and `running`."""
    # The module: its own peak first, then latency at 20% of it for the module and plain Unbound alike.
    service, sock = start_verdicts(work, "m")
    procs.append(service)
    procs.append(start_unbound(work, ports["module"], ports["nsd"], verdicts=sock))
    module = measure("(m) Unbound + module, 1 thread", procs[-1], ports["module"], files, a.seconds, {}, (service,))
    module_qps = {k: 0.2 * (module[k]["qps"] or 0) for k in files}
    results["module"] = measure(
        "(m) Unbound + module, 1 thread", procs[-1], ports["module"], files, a.seconds, module_qps, (service,)
    )
    running["module"] = Running(procs[-1], ports["module"], (service,))
    procs.append(start_unbound(work, ports["unbound"], ports["nsd"]))
    results["unbound"] = measure(
        "(b) Unbound forwarder, 1 thread", procs[-1], ports["unbound"], files, a.seconds, module_qps
    )
    running["unbound"] = Running(procs[-1], ports["unbound"])
    service2, sock2 = start_verdicts(work, "m2")
    procs.append(service2)
    procs.append(start_unbound(work, ports["module2"], ports["nsd"], threads=2, verdicts=sock2))
    results["module2"] = measure(
        "(m2) Unbound + module, 2 threads", procs[-1], ports["module2"], files, a.seconds, module_qps, (service2,)
    )
    running["module2"] = Running(procs[-1], ports["module2"], (service2,))
    procs.append(start_unbound(work, ports["unbound2"], ports["nsd"], threads=2))
    results["unbound2"] = measure(
        "(b2) Unbound forwarder, 2 threads", procs[-1], ports["unbound2"], files, a.seconds, module_qps
    )
    running["unbound2"] = Running(procs[-1], ports["unbound2"])
    return module_qps


def reloads(
    work: Path,
    ports: dict[str, int],
    running: dict[str, Running],
    files: dict[str, Path],
    a: argparse.Namespace,
    results: dict[str, Any],
) -> None:
    """`--reloads` reloads under load for (m2) and (b2), at 20% of (m2)'s miss peak, last (a reload
    empties Unbound's cache)."""
    from reload_retry import retry_under_reloads  # (it imports this file)

    reload_qps = 0.2 * (results["module2"]["misses"]["qps"] or 0)
    reload_names = files["misses"].with_name("misses.latency.txt")
    names = [line.split()[0] for line in reload_names.read_text().splitlines()]
    count = int(reload_qps * (a.reloads * 0.2 + 4)) + 10
    for i, key in enumerate(("module2", "unbound2")):
        results[f"reload_{key}"] = reload_under_load(
            work, ports[key], running[key].proc, reload_names, reload_qps, a.reloads
        )
        results[f"reload_{key}"]["retrying"] = retry_under_reloads(  # the lookups of a client that asks again
            ports[key],
            [running[key].proc],
            control_or_hup(work, ports[key], running[key].proc),
            [f"rt-{n}" for n in names[i * count : (i + 1) * count]],
            reload_qps,
            a.reloads,
        )


def round_misses(path: Path, r: int, kind: str = "misses", tag: str = "") -> Path:
    """The misses file with every name made new for round `r` (a prefix on the first label): a row
    measured again must not find the names of its last round in its cache. `tag`: names of a row's
    own, where rows share a verdict service (whose cache would flatter the row asked second)."""
    out = path.with_name(f"{kind}{tag}.r{r}.txt")
    out.write_text("".join(f"r{r}{tag}-{line}\n" for line in path.read_text().splitlines()))
    return out


WARM_SECONDS = 1.0  # --module: never-seen names through each row before its first timed round (r0 names)


def latency_rounds(
    rows: tuple[Any, ...],
    ports: dict[str, int],
    files: dict[str, Path],
    qps: dict[str, float],
    rounds: int,
    results: dict[str, Any],
    base: dict[str, str] | None = None,
) -> None:
    """p50/p99 at the same rate for every row against plain Unbound with its thread count (or the
    row's `base`: row key -> the key of the row it is measured against), each
    pair measured at the same time (two dnsperf at once, on names of their own), `rounds` times in
    turn, each run's first LATENCY_WARMUP seconds left out. A row's added p99 is the median over the
    rounds of its p99 minus the base's p99 of the same seconds; its p50/p99, the medians of its runs.

    Why: one 5 s run per row, one row after the other, as before, put whatever else the shared
    machine did in those seconds into that row's p99 alone: plain Unbound's own p99 on cached names
    (no Python anywhere in the path) ranged 2-57 ms between runs at load 5, the module's "added" p99
    swung from -46 to +47 ms, and the first second of a run held most of the outliers. Measured at
    the same time, a burst of the machine's other work lands on both sides of the difference."""
    keys = [key for key, *_ in rows]
    if base is None:
        base = {key: "unbound2" if key.endswith("2") else "unbound" for key in keys if not key.startswith("unbound")}
    pairs = [(x, y) for x, y in base.items() if y in keys] or [(key, "") for key in keys]
    runs: dict[str, dict[str, list[float]]] = {key: {} for key in keys}
    added: dict[str, dict[str, list[float]]] = {x: {kind: [] for kind in files} for x, _ in pairs}
    count = 0
    for r in range(rounds):
        for x, y in pairs[r % len(pairs) :] + pairs[: r % len(pairs)]:
            count += 1
            for kind in files:
                names = files[kind].with_name(f"{kind}.latency.txt")
                if kind == "misses":  # never-seen names: new for every pair and round (the base runs in several)
                    names = round_misses(names, count, "latency")
                both = [key for key in (x, y) if key]
                with concurrent.futures.ThreadPoolExecutor(len(both)) as pool:
                    started = [
                        pool.submit(dnsperf, ports[key], names, LATENCY_SECONDS, qps[kind], (), LATENCY_WARMUP)
                        for key in both
                    ]
                    got = {key: future.result() for key, future in zip(both, started, strict=True)}
                for key, run in got.items():
                    for k in ("p50_ms", "p99_ms"):
                        if k in run:
                            runs[key].setdefault(f"{kind} {k}", []).append(run[k])
                if y and "p99_ms" in got[x] and "p99_ms" in got[y]:
                    added[x][kind].append(round(got[x]["p99_ms"] - got[y]["p99_ms"], 3))
    for key, measured in runs.items():
        for name, values in measured.items():
            kind, k = name.split()
            results[key][kind][k] = sorted(values)[len(values) // 2]
            results[key][kind].setdefault("rounds_ms", {})[k] = values
    for x, kinds in added.items():
        for kind, values in kinds.items():
            if values:
                results[x][kind]["added_p99_ms"] = sorted(values)[len(values) // 2]
                results[x][kind].setdefault("rounds_ms", {})["added_p99_ms"] = values


def compare_module(work: Path, files: dict[str, Path], a: argparse.Namespace, misses: int) -> None:
    """Only the Unbound rows, all in one run: plain Unbound (b), Unbound with a do-nothing Python
    module (n: the ceiling of any Python module) and with resolverguard's module (m), each with 1
    and 2 threads, measured in `--rounds` turns (new names each round) and each row's best round kept
    (on a shared machine the best round is the one least disturbed); latency at 20% of (m)'s peak
    for all; then `--reloads` under load for (b2), (n2) and (m2). Written to
    bench/results/module_TAG.{md,json} (compare.md stays the full run's)."""
    load_before = load_average()
    every = MODULE_ROWS + (BASELINE_ROWS if a.baseline else ())
    rows = tuple(row for row in every if not a.rows or row[0] in a.rows.split(","))
    extra = "".join(f"  {line.strip()}\n" for line in a.unbound_extra.split(";") if line.strip())
    if a.benign_misses:  # every other line of the misses files is a benign label with a number (miss_names)
        for path in (files["misses"], files["misses"].with_name("misses.latency.txt")):
            path.write_text("".join(path.read_text().splitlines(keepends=True)[0::2]))
        misses //= 2
    ports = {k: free_port() for k in ("nsd", *(row[0] for row in rows))}
    procs = [start_nsd(work, ports["nsd"])]
    results: dict[str, Any] = {}
    servers: dict[str, subprocess.Popen[bytes]] = {}
    services: dict[str, subprocess.Popen[bytes]] = {}
    try:
        wait_ready(ports["nsd"])
        for key, _, threads, script in rows:
            verdicts = None
            if key.startswith("old"):
                script = a.baseline / "resolverguard" / "unbound_module.py"
                services[key], verdicts = start_verdicts(work, key, a.baseline)
                procs.append(services[key])
            elif script == MODULE:  # a service of its own per module row: no verdict cache shared between rows
                services[key], verdicts = start_verdicts(work, key)
                procs.append(services[key])
            procs.append(
                start_unbound(work, ports[key], ports["nsd"], extra, threads, verdicts=verdicts, script=script)
            )
            servers[key] = procs[-1]
        warm = round_misses(files["misses"], 0, "warm")  # names no timed round asks ("r0-" prefix)
        for key, *_ in rows:  # every row's first never-seen names (a verdict service's first model calls) untimed
            wait_ready(ports[key])
            dnsperf(ports[key], warm, WARM_SECONDS)
        for r in range(a.rounds):  # rounds in turn, each starting one row later: the machine's drift hits all
            round_files = files if r == 0 else {"hits": files["hits"], "misses": round_misses(files["misses"], r)}
            for key, label, _, _ in rows[r % len(rows) :] + rows[: r % len(rows)]:
                helpers = (services[key],) if key in services else ()
                got = measure(label, servers[key], ports[key], round_files, a.seconds, {}, helpers)
                best = results.setdefault(key, got)
                for kind in files:
                    best.setdefault("rounds", {}).setdefault(kind, []).append(got[kind]["qps"])
                    if (got[kind]["qps"] or 0) > (best[kind]["qps"] or 0):
                        best[kind] = got[kind]
        first = "module" if "module" in results else rows[0][0]
        module_qps = {k: 0.2 * (results[first][k]["qps"] or 0) for k in files}
        latency_rounds(rows, ports, files, module_qps, a.rounds, results)
        reload_qps = 0.2 * (results["module2" if "module2" in results else first]["misses"]["qps"] or 0)
        names = files["misses"].with_name("misses.latency.txt")
        for key in [k for k in ("unbound2", "noop2", "old2", "module2") if k in results] if a.reloads else ():
            results[f"reload_{key}"] = reload_under_load(work, ports[key], servers[key], names, reload_qps, a.reloads)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    largest = max(r["misses"]["sent"] or 0 for k, r in results.items() if not k.startswith("reload"))
    if largest >= misses:
        sys.exit(
            f"a target asked {largest:.0f} misses from a {misses}-name file: rerun with --misses {2 * largest:.0f}"
        )
    pairs = {n: (x, y) for n, (x, y) in MODULE_RATIOS.items() if x in results and y in results}
    ratios = {
        kind: {n: ratio(results[x][kind]["qps"], results[y][kind]["qps"]) for n, (x, y) in pairs.items()}
        for kind in ("hits", "misses")
    }
    payload = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": a.seconds,
        "load": {"before": load_before, "after": load_average()},
        "misses_file": misses,
        "results": results,
        "ratios": ratios,
        "module_latency_qps": module_qps,
        "benign_misses": a.benign_misses,
        "unbound_extra": extra,
        "added_p99_ms": {
            x.replace("/", "-"): added_p99(results, *pairs[x])
            for x in ("(n)/(b)", "(m)/(b)", "(n2)/(b2)", "(m2)/(b2)")
            if x in pairs
        },
    }
    out = ROOT / "bench" / "results"
    (out / f"module_{a.tag}.json").write_text(json.dumps(payload, indent=2))
    lines = [
        f"# Unbound module rows (bench/compare.py --module{' --benign-misses' if a.benign_misses else ''}), "
        f"{payload['date']}, dnsperf -c 8 -q 500, "
        f"{a.seconds:g} s per run, best of {a.rounds} rounds in turn; load average before "
        f"{payload['load']['before']}, after {payload['load']['after']}",
        "",
        "| target | hits QPS | hits p50/p99 ms | misses QPS | misses CPU s | misses p50/p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for key, *_ in rows:
        r = results[key]
        lines.append(
            f"| {r['target']} | {r['hits']['qps'] or 0:.0f} "
            f"| {r['hits'].get('p50_ms', '-')}/{r['hits'].get('p99_ms', '-')} "
            f"| {r['misses']['qps'] or 0:.0f} | {r['misses']['cpu_s']} "
            f"| {r['misses'].get('p50_ms', '-')}/{r['misses'].get('p99_ms', '-')} |"
        )
    lines += ["", "| ratio (same run) | hits | misses |", "|---|---|---|"]
    lines += [f"| {n} | {ratios['hits'][n]} | {ratios['misses'][n]} |" for n in pairs]
    lines += [
        "",
        "Misses QPS per round: "
        + "; ".join(
            f"{key} {', '.join(f'{q or 0:.0f}' for q in results[key]['rounds']['misses'])}" for key, *_ in rows
        ),
    ]
    lines += ["", f"Added p99 at 20% of (m)'s peak ({', '.join(f'{k} {v:.0f} qps' for k, v in module_qps.items())}): "]
    lines += [f"{n}: hits {v['hits']} ms, misses {v['misses']} ms; " for n, v in payload["added_p99_ms"].items()]
    lines += [
        "",
        f"p50/p99: each row measured at the same time as plain Unbound with its thread count, {a.rounds} rounds "
        f"in turn, {LATENCY_SECONDS:g} s each after {LATENCY_WARMUP:g} s left out; medians of the runs, added p99 "
        "the median of the same-time differences. Per run, p99 ms (added p99 ms): "
        + "; ".join(
            f"{key} hits {results[key]['hits'].get('rounds_ms', {}).get('p99_ms')} "
            f"({results[key]['hits'].get('rounds_ms', {}).get('added_p99_ms', '-')}) "
            f"misses {results[key]['misses'].get('rounds_ms', {}).get('p99_ms')} "
            f"({results[key]['misses'].get('rounds_ms', {}).get('added_p99_ms', '-')})"
            for key, *_ in rows
        ),
    ]
    if a.reloads:
        lines += [
            "",
            "| reloads under load | reloads | qps | sent | answered | lost | in flight at the reloads (module's count)"
            " | control failed | alive | answers after |",
        ]
        lines += ["|---|---|---|---|---|---|---|---|---|---|"]
        for key in [k for k in ("unbound2", "noop2", "old2", "module2") if f"reload_{k}" in results]:
            r = results[f"reload_{key}"]
            lines.append(
                f"| {key} | {r['reloads']} | {r['qps']} | {r['sent']} | {r['completed']} | {r['lost']} "
                f"| {r.get('in_flight') if r.get('in_flight') is not None else '-'} "
                f"| {r['control_failures']} | {r['alive']} | {r['answers_after']} |"
            )
    (out / f"module_{a.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def compare_watch(work: Path, files: dict[str, Path], a: argparse.Namespace) -> None:
    """The client watch's cost: (d) the full chain against (g) the same with `client_watch` on, and
    (d0) the full chain without the repeat shortcut (the chain the issue was filed against) (action
    log: the bench client walks DGA-looking names, so it is flagged from the prelude on and stays
    flagged, the worst case; checked). The two differ in the watch alone: the same prelude, the same
    names in the same order, each round's misses names of their own (a name asked again in a later
    round is a verdict-cache hit, for the target that got further in the earlier round more than for
    the other), and both targets measured back to back per kind, (d) first in odd rounds and (g) first
    in even ones, so that drift in the machine's load hits both alike. QPS ratio (g)/(d) of the summed
    rounds, and the ratio of the server's CPU us per answered query, which other processes' load moves
    far less; the load average before and after. To results/compare_watch.{md,json}."""
    ports = {k: free_port() for k in ("nsd", "d0", "d", "g")}
    procs = [start_nsd(work, ports["nsd"])]
    names = files["misses"].read_text().splitlines(keepends=True)
    share = len(names) // (a.rounds + 1)
    prelude, *rounds = (names[i * share : (i + 1) * share] for i in range(a.rounds + 1))
    (work / "prelude.txt").write_text("".join(prelude[:2000]))  # flags (g)'s client: DGA-looking names
    misses = []
    for r, chunk in enumerate(rounds):
        misses.append(work / f"misses-{r}.txt")
        misses[-1].write_text("".join(chunk))
    runs: dict[str, list[dict[str, Any]]] = {"d0": [], "d": [], "g": []}
    load_before = os.getloadavg()
    try:
        wait_ready(ports["nsd"])
        servers = {
            key: start_resolverguard(work, ports[key], ports["nsd"], True, watch=key == "g", shortcut=key != "d0")
            for key in runs
        }
        procs += servers.values()
        for key in runs:
            wait_ready(ports[key])
            asked_once(ports[key], work / "prelude.txt")
        time.sleep(0.5)
        if "flagged by the client watch" not in (work / f"rg-{ports['g']}.log").read_text():
            sys.exit("(g)'s client was not flagged by the prelude: the bench would not measure the worst case")
        for r in range(a.rounds):
            order = ("d0", "d", "g") if r % 2 == 0 else ("g", "d", "d0")
            row: dict[str, dict[str, Any]] = {key: {} for key in runs}
            for kind, path in (("hits", files["hits"]), ("misses", misses[r])):
                for key in order:
                    if kind == "hits":  # steady state: every name asked once before the timed run
                        asked_once(ports[key], files["hits"].with_name("warm.txt"))
                    cpu = cpu_seconds(servers[key].pid)
                    row[key][kind] = dnsperf(ports[key], path, a.seconds)
                    row[key][kind]["cpu_s"] = round(cpu_seconds(servers[key].pid) - cpu, 3)
            for key in runs:
                runs[key].append(row[key])
            print(
                f"round {r + 1}: "
                + ", ".join(f"({k}) {row[k]['hits']['qps']:.0f}/{row[k]['misses']['qps']:.0f}" for k in runs)
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    load_after = os.getloadavg()
    largest = max(r["misses"]["sent"] or 0 for v in runs.values() for r in v)
    if largest >= share:
        sys.exit(f"a round asked {largest:.0f} misses from a {share}-name file: rerun with more --misses")
    write_watch(runs, a, (load_before, load_after))


def asked_once(port: int, names: Path) -> None:
    """Every name of the file asked once (dnsperf -n 1)."""
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(names), "-n", "1", "-c", "8", "-q", "500"]
    subprocess.run(cmd, capture_output=True, timeout=120)


def write_watch(runs: dict[str, list[dict[str, Any]]], a: argparse.Namespace, load: tuple[Any, Any]) -> None:
    kinds = ("hits", "misses")
    total = {k: {kind: sum(r[kind]["qps"] or 0 for r in v) for kind in kinds} for k, v in runs.items()}
    ratios = {kind: ratio(total["g"][kind], total["d"][kind]) for kind in kinds}
    to_d0 = {kind: ratio(total["g"][kind], total["d0"][kind]) for kind in kinds}
    cpu_us = {
        k: {
            kind: 1e6 * sum(r[kind]["cpu_s"] for r in v) / max(1.0, sum(r[kind]["completed"] or 0 for r in v))
            for kind in kinds
        }
        for k, v in runs.items()
    }
    cpu_ratios = {kind: ratio(cpu_us["d"][kind], cpu_us["g"][kind]) for kind in kinds}
    out = ROOT / "bench" / "results"
    payload = {
        "runs": runs,
        "ratios": ratios,
        "ratios_to_d0": to_d0,
        "cpu_us_per_query": cpu_us,
        "cpu_ratios": cpu_ratios,
        "load": load,
    }
    (out / "compare_watch.json").write_text(json.dumps(payload, indent=2) + "\n")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    shown = [" ".join(f"{x:.2f}" for x in avg) for avg in load]
    lines = [
        f"# Client watch cost (bench/compare.py --watch), {stamp}, {os.cpu_count()} cores, {a.seconds:g} s per run,"
        f" {a.rounds} rounds",
        "",
        f"Load average (1/5/15 min) before: {shown[0]}, after: {shown[1]}. Same prelude and names for both; each"
        " round's misses are names of their own; per kind the three back to back, (d0) first in odd rounds, (g)"
        " first in even ones. (g)'s client is flagged from the prelude on (the worst case). (d) is the full chain,"
        " (g) the same with the client watch, (d0) the full chain with `answer_cache.repeat_shortcut: false`.",
        "",
        "| round | (d0) hits QPS | (d) hits QPS | (g) hits QPS | (d0) misses QPS | (d) misses QPS | (g) misses QPS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i in range(a.rounds):
        d0, d, g = runs["d0"][i], runs["d"][i], runs["g"][i]
        lines.append(
            f"| {i + 1} | {d0['hits']['qps']:.0f} | {d['hits']['qps']:.0f} | {g['hits']['qps']:.0f} |"
            f" {d0['misses']['qps']:.0f} | {d['misses']['qps']:.0f} | {g['misses']['qps']:.0f} |"
        )
    lines += [
        "",
        f"(g)/(d), the watch's cost: hits {ratios['hits']}, misses {ratios['misses']} (QPS, summed rounds)",
        "",
        f"(g)/(d0), against the chain without the repeat shortcut: hits {to_d0['hits']}, misses {to_d0['misses']}",
        "",
        f"CPU us per answered query, (d)/(g): hits {cpu_us['d']['hits']:.1f}/{cpu_us['g']['hits']:.1f} ="
        f" {cpu_ratios['hits']}, misses {cpu_us['d']['misses']:.1f}/{cpu_us['g']['misses']:.1f} ="
        f" {cpu_ratios['misses']}; (d0): hits {cpu_us['d0']['hits']:.1f}, misses {cpu_us['d0']['misses']:.1f}",
        "",
    ]
    (out / "compare_watch.md").write_text("\n".join(lines))
    print("\n".join(lines))


STORE_TARGET = "d's"
LOG_TARGETS = {  # key: (row, start_resolverguard keywords)
    "d": ("(d) full chain, no query log", {}),
    "d'": ("(d') + query log file (writer: process, the default)", {"log": True, "writer": "process"}),
    "d't": ("(d't) + query log file, writer: thread", {"log": True, "writer": "thread"}),
    "d's": (
        "(d's) + query log file + query store (writer: process, the default with a store)",
        {"log": True, "store": True},
    ),
}


PRIORITY_TARGETS = {  # --log --priority: the writer process at each query_log.priority (issue #17)
    "d": ("(d) full chain, no query log", {}),
    "d'": ("(d') + query log file, writer process, priority: normal", {"log": True, "priority": "normal"}),
    "d'l": ("(d'l) + query log file, writer process, priority: low (nice 10)", {"log": True, "priority": "low"}),
    "d'i": ("(d'i) + query log file, writer process, priority: idle (SCHED_IDLE)", {"log": True, "priority": "idle"}),
}
LOG_QUIET_S = 1.0  # a log file unchanged this long has caught up (the writer flushes every 0.5 s)


def log_settled(path: Path, limit: float = 300.0) -> dict[str, Any]:
    """How long after a peak run the query log file kept changing (`log_lag_s`): the writer writing
    the backlog it could not write during the run (with `priority: idle` it gets the CPU only once
    the burst ends). The file is caught up once unchanged for LOG_QUIET_S (it may rotate meanwhile)."""
    start = changed = time.monotonic()
    last: tuple[int, int] | None = None
    while (now := time.monotonic()) - start < limit:
        try:
            stat = path.stat()
            seen = (stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:  # rotating
            seen = (-1, -1)
        if seen != last:
            last, changed = seen, now
        elif now - changed >= LOG_QUIET_S:
            break
        time.sleep(0.05)
    return {"log_lag_s": round(changed - start, 2)}


def compare_log(work: Path, files: dict[str, Path], a: argparse.Namespace) -> None:
    """What the query log and the query store cost (issues #16, #17): (d) against (d') with the
    log file, (d't) with its writer in a thread and (d's) with the store as well, each measured
    twice in turn (d, d', d't, d's, d, ...) so that drift in the machine's load hits all alike;
    QPS ratios of the summed runs, to results/compare_log.{md,json}. The load average is
    written beside them: on a shared machine, ratios from one run are what to compare."""
    log_targets = PRIORITY_TARGETS if a.priority else LOG_TARGETS
    if a.baseline is not None:  # same-run A/B of a change in the log: (d) and (d') here, (d'0) from the baseline
        log_targets = {
            "d": LOG_TARGETS["d"],
            "d'": LOG_TARGETS["d'"],
            "d'0": (
                f"(d'0) (d') served from {a.baseline}",
                {"log": True, "writer": "process", "root": a.baseline.resolve()},
            ),
        }
    ports = {k: free_port() for k in ("nsd", *log_targets)}
    procs = [start_nsd(work, ports["nsd"])]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in log_targets}
    load_before, loads = os.getloadavg(), []
    try:
        wait_ready(ports["nsd"])
        targets = {}
        for key, (_, options) in log_targets.items():
            targets[key] = start_resolverguard(work, ports[key], ports["nsd"], True, **options)  # type: ignore[arg-type]
            procs.append(targets[key])
        for _ in range(a.rounds):
            for key, proc in targets.items():
                logged = work / f"queries-{ports[key]}.jsonl"
                settle = functools.partial(log_settled, logged) if log_targets[key][1].get("log") else None
                runs[key].append(measure(key, proc, ports[key], files, a.seconds, {}, settle=settle))
            loads.append(os.getloadavg())
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    load_after = os.getloadavg()
    stored = stored_rows(work / f"store-{ports[STORE_TARGET]}.db") if STORE_TARGET in ports else None
    total = {k: {kind: sum(r[kind]["qps"] or 0 for r in v) for kind in files} for k, v in runs.items()}
    pairs = [(f"({x})/({y})", x, y) for x in log_targets if x != "d" for y in ("d",)]
    if a.baseline is not None:
        pairs.append(("(d')/(d'0)", "d'", "d'0"))
    elif not a.priority:
        pairs.append(("(d's)/(d')", "d's", "d'"))
    ratios = {name: {kind: ratio(total[x][kind], total[y][kind]) for kind in files} for name, x, y in pairs}
    # CPU per answered query (the server and its children: the writer process is counted): the cost
    # itself, which a loaded machine distorts far less than the QPS it allows.
    cpu_us = {
        k: {
            kind: round(1e6 * sum(r[kind]["cpu_s"] for r in v) / max(1.0, sum(r[kind]["completed"] or 0 for r in v)), 2)
            for kind in files
        }
        for k, v in runs.items()
    }
    cpu_ratios = {
        name: {kind: ratio(cpu_us[y][kind], cpu_us[x][kind]) for kind in files} for name, x, y in pairs if y == "d"
    }
    lags = {  # seconds the log file kept changing after each peak run (`log_settled`)
        k: {kind: [r[kind]["log_lag_s"] for r in v] for kind in files}
        for k, v in runs.items()
        if "log_lag_s" in v[0]["hits"]
    }
    out = ROOT / "bench" / "results"
    payload = {
        "runs": runs,
        "ratios": ratios,
        "cpu_us_per_query": cpu_us,
        "cpu_ratios": cpu_ratios,
        "load": [load_before, load_after],
        "load_per_round": loads,
        "store_rows": stored,
        "log_lag_s": lags,
    }
    name = "compare_log" if a.tag == "run" else f"compare_log_{a.tag}"
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"# Query log and query store cost (bench/compare.py --log), {stamp}, {os.cpu_count()} cores, "
        f"dnsperf -c 8 -q 500, {a.seconds:g} s per run, each target measured {a.rounds} times in turn",
        "",
        f"Load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{' '.join(f'{x:.2f}' for x in load_after)}; 1-min after each round: "
        f"{', '.join(f'{x[0]:.2f}' for x in loads)} (other work shared the machine; ratios from one run).",
        "",
        "| target | hits QPS, each run | misses QPS, each run | CPU us per query (hits, misses) |",
        "|---|---:|---:|---:|",
    ]

    def each(key: str, kind: str) -> str:
        return " / ".join(f"{r[kind]['qps']:.0f}" for r in runs[key])

    for key, (row, _) in log_targets.items():
        lines.append(
            f"| {row} | {each(key, 'hits')} | {each(key, 'misses')} | {cpu_us[key]['hits']}, {cpu_us[key]['misses']} |"
        )
    lines += ["", "| QPS ratio (summed runs) | hits | misses |", "|---|---:|---:|"]
    lines += [f"| {name} | {r['hits']} | {r['misses']} |" for name, r in ratios.items()]
    lines += [
        "",
        "| CPU ratio: (d)'s CPU per query / the target's (the QPS ratio if the server were CPU-bound "
        "on a core of its own) | hits | misses |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {r['hits']} | {r['misses']} |" for name, r in cpu_ratios.items()]
    lines += [
        "",
        "| log lag after each peak run: seconds the file kept changing (less 0-0.5 s of flush timer) | hits | misses |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| ({k}) | {' / '.join(map(str, v['hits']))} | {' / '.join(map(str, v['misses']))} |" for k, v in lags.items()
    ]
    if stored is not None:
        lines += ["", f"Rows in (d's)'s store at the end: {stored} (every query it answered, warm-ups included)."]
    lines.append("")
    (out / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


def stored_rows(path: Path) -> int:
    """Rows in a query store (all day tables): the store kept up when it holds every answer."""
    import sqlite3

    with sqlite3.connect(path) as db:
        days = [r[0] for r in db.execute("SELECT day FROM store_days")]
        return sum(db.execute(f"SELECT COUNT(*) FROM {day_table(d)}").fetchone()[0] for d in days)


def ratio(x: float | None, y: float | None) -> float | None:
    return round(x / y, 3) if x and y else None


def ratio_of(x: dict[str, Any], y: dict[str, Any]) -> float | None:
    """x's QPS over y's: the median of the ratios round by round where both were measured in
    `peak_rounds`, else the ratio of their one run."""
    if "rounds" in x and "rounds" in y:
        return median([ratio(p["qps"], q["qps"]) for p, q in zip(x["rounds"], y["rounds"], strict=False)])
    return ratio(x["qps"], y["qps"])


TARGETS = (
    "upstream",
    "unbound",
    "unbound2",
    "module",
    "module2",
    "rg_plain",
    "rg_full",
    "rg_workers",
    "rg_log",
    "rg_list",
)
RATIOS = {  # name: (numerator, denominator), all from the same run
    "(m)/(b)": ("module", "unbound"),
    "(m2)/(b2)": ("module2", "unbound2"),
    "(b2)/(b)": ("unbound2", "unbound"),
    "(d)/(c)": ("rg_full", "rg_plain"),
    "(d)/(b)": ("rg_full", "unbound"),
    "(c)/(b)": ("rg_plain", "unbound"),
    "(e)/(b)": ("rg_workers", "unbound"),
    "(e)/(b2)": ("rg_workers", "unbound2"),
    "(d')/(d)": ("rg_log", "rg_full"),
    "(f)/(d)": ("rg_list", "rg_full"),
}


def added_p99(results: dict[str, Any], target: str, base: str) -> dict[str, float]:
    """p99 of `target` minus p99 of `base` (both measured at the same rate), per query file: the
    median of the differences measured at the same time when there are some (`latency_rounds`)."""
    out = {}
    for kind in ("hits", "misses"):
        paired = results[target][kind].get("added_p99_ms") if base.startswith("unbound") else None
        plain = (results[target][kind].get("p99_ms") or 0) - (results[base][kind].get("p99_ms") or 0)
        out[kind] = round(paired if paired is not None else plain, 3)
    return out


def write(
    results: dict[str, Any], a: argparse.Namespace, latency_qps: dict[str, float], module_qps: dict[str, float]
) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    pairs = {name: (x, y) for name, (x, y) in RATIOS.items() if x in results and y in results}
    ratios = {
        kind: {name: ratio_of(results[x][kind], results[y][kind]) for name, (x, y) in pairs.items()}
        for kind in ("hits", "misses")
    }
    added = {  # measured in turn with the upstream (paired_latency); else against its one run at the end
        kind: results["rg_full"][kind].get("added_p99_ms")
        or round(
            (results["rg_full"][kind].get("p99_ms") or 0) - (results["upstream_latency"][kind].get("p99_ms") or 0), 3
        )
        for kind in ("hits", "misses")
    }
    payload = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "seconds": a.seconds,
        "load": results.pop("load"),
        "misses_file": results.pop("misses_file"),
        "misses_largest_volume": results.pop("misses_largest_volume"),
        "results": results,
        "ratios": ratios,
        "latency_qps": latency_qps,
        "module_latency_qps": module_qps,
        "added_p99_ms": added,
    }
    if not a.standalone:
        payload["module_added_p99_ms"] = added_p99(results, "module", "unbound")
        payload["module2_added_p99_ms"] = added_p99(results, "module2", "unbound2")
    name = "compare_standalone" if a.standalone else "compare"
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    lines = [
        f"# resolverguard vs Unbound (bench/compare.py), {payload['date']}, {payload['cores']} cores, "
        f"dnsperf -c 8 -q 500, {a.seconds:g} s per run, loopback only",
        "",
        f"Load average (1/5/15 min) before {payload['load']['before']}, after {payload['load']['after']}"
        " (other jobs on the machine lower every target alike only when the load is steady: compare ratios, and"
        " rerun on an idle machine for the figures). Unbound and resolverguard both get a 4 MB receive buffer;"
        f" the misses file holds {payload['misses_file']:,} never-seen names, more than any target asked in a run"
        f" ({payload['misses_largest_volume']:,.0f}).",
        "",
        "| target | hits QPS | hits CPU s | hits p50/p99 ms | misses QPS | misses CPU s | misses p50/p99 ms "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rounds_said = (
        f"; QPS and CPU: medians of {a.rounds} rounds of every row in turn, ratios the medians of the rounds' ratios"
        if a.rounds > 1
        else ""
    )
    for key in (key for key in TARGETS if key in results):
        r = results[key]
        lines.append(
            f"| {r['target']} | {r['hits']['qps'] or 0:.0f} | {r['hits']['cpu_s']} "
            f"| {r['hits'].get('p50_ms', '-')}/{r['hits'].get('p99_ms', '-')} | {r['misses']['qps'] or 0:.0f} "
            f"| {r['misses']['cpu_s']} | {r['misses'].get('p50_ms', '-')}/{r['misses'].get('p99_ms', '-')} "
            f"| {r['peak_rss_mb']} |"
        )
    lines += ["", f"| ratio (same run{rounds_said}) | hits | misses | misses per round |", "|---|---|---|---|"]
    for pair, (x, y) in pairs.items():
        per_round = ", ".join(
            f"{ratio(p['qps'], q['qps'])}"
            for p, q in zip(
                results[x]["misses"].get("rounds", []), results[y]["misses"].get("rounds", []), strict=False
            )
        )
        lines.append(f"| {pair} | {ratios['hits'][pair]} | {ratios['misses'][pair]} | {per_round or '-'} |")

    def paired(key: str) -> str:
        return " / ".join(f"{kind} {results['rg_full'][kind].get(key, '-')} ms" for kind in ("hits", "misses"))

    lines += [
        "",
        f"Latency runs (names of their own, each after {LATENCY_SETTLE:g} s of quiet and a {LATENCY_WARMUP:g} s"
        f" warm-up on other names): resolverguard standalone at 20% of (d)'s peak "
        f"({', '.join(f'{k} {v:.0f} qps' for k, v in latency_qps.items())}); (d)'s p99 minus the upstream's own "
        f"p99 at that rate, measured in turn on the same names ({LATENCY_ROUNDS} rounds of {LATENCY_SECONDS:g} s,"
        f" the median round): hits {added['hits']} ms, misses {added['misses']} ms"
        f" ((d) p99 {paired('p99_ms')}, upstream p99 {paired('upstream_p99_ms')}).",
    ]
    if not a.standalone:
        lines += module_latency_and_reloads(results, payload, module_qps)
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def retried(r: dict[str, Any] | None) -> str:
    """The retrying client's lookups under the reloads, for the table: lookups, retried, failed."""
    return f"{r['lookups']}, {r['retried']}, {r['failed'] + r['servfail']}" if r else "-"


def module_latency_and_reloads(
    results: dict[str, Any], payload: dict[str, Any], module_qps: dict[str, float]
) -> list[str]:
    """The full run's lines on the module's added latency and the reloads under load."""
    m1, m2 = payload["module_added_p99_ms"], payload["module2_added_p99_ms"]
    lines = [
        f"Unbound with and without the module at 20% of (m)'s peak"
        f" ({', '.join(f'{k} {v:.0f} qps' for k, v in module_qps.items())}); added "
        f"p99, (m) - (b): hits {m1['hits']} ms, misses {m1['misses']} ms; (m2) - (b2): hits {m2['hits']} ms, "
        f"misses {m2['misses']} ms.",
        "",
        "| reloads under load (`unbound-control reload` and SIGHUP alternated, 0.1 s apart; dnsperf on never-seen"
        " names) | reloads | qps | sent | answered | lost | in flight at the reloads (module's count) | control failed"
        " | alive after | answers after | a client that retries (`bench/reload_retry.py`, 1 s, 3 tries): lookups,"
        " answered after a retry, failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label in (("reload_unbound2", "(b2) Unbound, 2 threads"), ("reload_module2", "(m2) + module, 2 threads")):
        r = results[key]
        lines.append(
            f"| {label} | {r['reloads']} | {r['qps']} | {r['sent']} | {r['completed']} | {r['lost']} "
            f"| {r.get('in_flight') if r.get('in_flight') is not None else '-'} "
            f"| {r['control_failures']} | {r['alive']} | {r['answers_after']} | {retried(r.get('retrying'))} |"
        )
    return lines


if __name__ == "__main__":
    main()
