"""Does dnsdist spread the load? Issue #18's "two instances behind dnsdist: ~2x one", measured fairly
on a machine too small to give each instance a core of its own:

    sudo apt-get install -y dnsdist dnsperf      (bench/README.md); run as root (cgroup v1 cpu)
    python bench/scaleout.py [--cap 0.3] [--cap3 0.2] [--seconds 6] [--rounds 2]

On the 2-core development machine dnsperf, dnsdist and the instances share both cores, so a second
instance could only add throughput when a core happened to be free (bench/results/fleet.md). Here
each resolverguard instance runs in its own cgroup (v1 `cpu` controller) capped at the same share
of a core (`--cap`, 0.3 by default), so one instance cannot use more than that however idle the
machine is, and the instances together stay below what the two cores have left once dnsperf and
dnsdist have theirs. The throughput of N instances over one instance then measures the front's
spreading with each instance's CPU held equal, which is what "~2x" asks; it does not measure
resolverguard's speed (bench/compare.py does).

Setups, all in one run and alternated over `--rounds` (order reversed every other round): one capped
instance asked directly; the same instance behind dnsdist (examples/dnsdist.conf: client-address
rendezvous hashing, PROXY v2); two capped instances behind dnsdist; and, at `--cap3` each, one and
three behind dnsdist. Each setup is driven by dnsperf from `--senders` client addresses (one dnsperf
process each, 127.0.1.x) asking names every instance has in its answer cache.

Per setup it records, besides the QPS: each instance's CPU over the run against its cap and the
share of CFS periods it was throttled in (an instance at its cap is the bottleneck), dnsdist's CPU
and its busiest thread's (below a full core: dnsdist is not the bottleneck), dnsperf's CPU, and, from
each instance's own query log, how many queries each client address sent it (every client on
exactly one instance). The bench's groups get a high `cpu.shares` so the machine's other jobs cannot
take an instance's cap from it; dnsdist and dnsperf run uncapped in one such group.

Needs root and a writable /sys/fs/cgroup/cpu (cgroup v1). Without them (a CI container, cgroup v2
only) it prints why and writes nothing: no test depends on it. The groups are removed at the end.
Results to bench/results/scaleout.{md,json}, with the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
from compare import DNSPERF_TOTALS  # noqa: E402
from dnsfixtures import Upstream, free_port, run_upstream, stop_server  # noqa: E402
from fleetfixtures import dnsdist_config, wait_listening  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CGROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 10_000  # 10 ms: a capped instance stalls ~7 ms at most, not 70 (fewer queries lost to a full socket)
SHARES = 8192  # 8x a default process's weight: the machine's other jobs do not eat into a cap
WARM_NAMES = [f"w{i}.example.org" for i in range(300)]
WARM_FROM = "127.0.0.5"  # not dnsdist's address (127.0.0.1 must send a PROXY header)


@dataclass(frozen=True)
class CpuGroup:
    """One cgroup v1 `cpu` group of this bench (a CFS quota per period caps its processes' CPU)."""

    path: Path

    @classmethod
    def make(cls, name: str) -> CpuGroup:
        path = CGROOT / name
        path.mkdir()
        group = cls(path)
        (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (path / "cpu.shares").write_text(str(SHARES))
        return group

    def cap(self, cores: float | None) -> None:
        """At most `cores` of CPU per period (None: no cap)."""
        (self.path / "cpu.cfs_quota_us").write_text(str(-1 if cores is None else int(cores * PERIOD_US)))

    def join(self) -> None:
        """Moves the calling process (a child between fork and exec: `preexec_fn`) into the group."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def throttling(self) -> tuple[int, int]:
        """(CFS periods, periods in which the group ran out of quota) since the group was made."""
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["nr_periods"]), int(stat["nr_throttled"])

    def remove(self) -> None:
        """Moves anything left in the group back to the root group, then removes the group."""
        for pid in (self.path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (CGROOT / "cgroup.procs").write_text(pid)
        self.path.rmdir()


def cgroups_unusable() -> str | None:
    """Why this machine cannot cap a process's CPU with a cgroup v1 `cpu` group (None: it can)."""
    if not (CGROOT / "cgroup.procs").exists():
        return f"no cgroup v1 cpu controller at {CGROOT}"
    try:
        probe = CpuGroup.make(f"rg-scaleout-probe-{os.getpid()}")
    except OSError as exc:
        return f"cannot make a group under {CGROOT} ({exc}; the bench needs root)"
    try:
        probe.cap(0.5)
    except OSError as exc:
        return f"cannot set a CPU quota ({exc})"
    finally:
        probe.remove()
    return None


@contextlib.contextmanager
def cpu_groups(names: list[str]) -> Iterator[dict[str, CpuGroup]]:
    made: dict[str, CpuGroup] = {}
    try:
        for name in names:
            made[name] = CpuGroup.make(f"rg-scaleout-{os.getpid()}-{name}")
        yield made
    finally:
        for group in made.values():
            group.remove()


def uptime() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used, all its threads (/proc/PID/stat)."""
    return thread_seconds(Path(f"/proc/{pid}/stat"))


def thread_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> dict[str, float]:
    """CPU seconds of each of a process's threads, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out[task.name] = thread_seconds(task / "stat")
    return out


def children_seconds() -> float:
    """CPU of the children this process has waited for: the dnsperf runs (the servers live on)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Instance:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    group: CpuGroup
    log: Path


def start_instance(name: str, up: Upstream, group: CpuGroup, work: Path) -> Instance:
    """One resolverguard process in its own CPU group: the default chain (shipped model), a query
    log (each instance's own record of which clients it answered), PROXY v2 from dnsdist's address."""
    port, log = free_port(), work / f"{name}.log"
    policy = work / f"{name}.yaml"
    policy.write_text(
        f"upstreams: [127.0.0.1:{up.port}]\nquery_log: {{path: '{log}', max_mb: 0}}\ncontrol_socket: off\n"
        "proxy_protocol: [127.0.0.1/32]\naccess: {allow_clients: [127.0.0.0/8]}\nrate_limit: {qps: 0}\n"
    )
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=group.join,  # noqa: PLW1509 - no threads in this process yet that could hold a lock
    )
    return Instance(name, port, proc, group, log)


def start_dnsdist(backends: list[Instance], group: CpuGroup, work: Path) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    conf = work / f"dnsdist-{len(backends)}.conf"
    conf.write_text(dnsdist_config(port, [("127.0.0.1", b.port) for b in backends]))
    proc = subprocess.Popen(
        ["dnsdist", "--supervised", "--disable-syslog", "-C", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=group.join,  # noqa: PLW1509
    )
    return port, proc


def warm(port: int) -> None:
    """Asks every name once, so every timed query is an answer-cache hit."""
    for name in WARM_NAMES:
        for _ in range(3):
            try:
                dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2, source=WARM_FROM)
                break
            except dns.exception.Timeout:
                continue


def dnsperf(port: int, queries: Path, a: argparse.Namespace, group: CpuGroup) -> dict[str, Any]:
    """`a.senders` dnsperf processes at once, each from its own address (the client hash's input),
    `a.inflight` queries in flight each: summed QPS, queries sent, completed, lost, answers not NOERROR."""
    procs = [
        subprocess.Popen(
            ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-a", client_address(i), "-d", str(queries)]
            + ["-l", str(a.seconds), "-c", "1", "-q", str(a.inflight), "-t", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=group.join,  # noqa: PLW1509
        )
        for i in range(a.senders)
    ]
    out: dict[str, Any] = {"qps": 0.0, "sent": 0, "completed": 0, "lost": 0, "not_noerror": 0}
    for p in procs:
        text, _ = p.communicate(timeout=a.seconds + 30)
        for key, pattern in DNSPERF_TOTALS:
            found = re.search(pattern, text)
            out[key] += float(found.group(1)) if key == "qps" and found else int(found.group(1)) if found else 0
        codes = re.search(r"Response codes:\s+(.*)", text)
        if codes:
            out["not_noerror"] += sum(
                int(n) for c, n in re.findall(r"([A-Z]+) (\d+) \(", codes.group(1)) if c != "NOERROR"
            )
    out["qps"] = round(out["qps"])
    return out


def client_address(i: int) -> str:
    return f"127.0.1.{i + 1}"


def new_log_lines(inst: Instance, offsets: dict[str, int]) -> Counter[str]:
    """Queries per client in the lines `inst` logged since the last call (its own record)."""
    with inst.log.open("rb") as f:
        f.seek(offsets.get(inst.name, 0))
        data = f.read()
    end = data.rfind(b"\n") + 1  # a half-written last line waits for the next call
    offsets[inst.name] = offsets.get(inst.name, 0) + end
    return Counter(m.decode() for m in re.findall(rb'"client": ?"([^"]*)"', data[:end]))


@dataclass(frozen=True)
class Setup:
    label: str
    instances: int
    cap: float
    front: bool


def run_setup(
    setup: Setup,
    fleet: list[Instance],
    fronts: dict[int, tuple[int, subprocess.Popen[bytes]]],
    front_group: CpuGroup,
    queries: Path,
    a: argparse.Namespace,
    offsets: dict[str, int],
) -> dict[str, Any]:
    used = fleet[: setup.instances]
    for inst in fleet:
        inst.group.cap(setup.cap)
    port = fronts[setup.instances][0] if setup.front else used[0].port
    for inst in used:
        new_log_lines(inst, offsets)  # skip what came before (warming, health checks)
    dnsdist_pid = fronts[setup.instances][1].pid if setup.front else None
    cpu0 = {inst.name: cpu_seconds(inst.proc.pid) for inst in used}
    thr0 = {inst.name: inst.group.throttling() for inst in used}
    dd0 = threads(dnsdist_pid) if dnsdist_pid else {}
    perf0, t0 = children_seconds(), time.monotonic()
    result = dnsperf(port, queries, a, front_group)
    wall = time.monotonic() - t0
    perf_cpu = children_seconds() - perf0
    dd1 = threads(dnsdist_pid) if dnsdist_pid else {}
    per_instance = {}
    for inst in used:
        periods, throttled = (x - y for x, y in zip(inst.group.throttling(), thr0[inst.name], strict=True))
        cpu = cpu_seconds(inst.proc.pid) - cpu0[inst.name]
        per_instance[inst.name] = {
            "cpu_cores": round(cpu / wall, 3),
            "of_cap": round(cpu / wall / setup.cap, 3),
            "throttled_periods": round(throttled / max(1, periods), 3),
        }
    time.sleep(1.2)  # the query logs are written at least every 0.5 s
    by_client = {inst.name: dict(sorted(new_log_lines(inst, offsets).items())) for inst in used}
    dd_threads = sorted((dd1[t] - dd0.get(t, 0.0) for t in dd1), reverse=True)
    result |= {
        "setup": setup.label,
        "instances": setup.instances,
        "cap": setup.cap,
        "wall_s": round(wall, 2),
        "per_instance": per_instance,
        "dnsdist_cores": round(sum(dd_threads) / wall, 3) if setup.front else None,
        "dnsdist_busiest_thread": round(dd_threads[0] / wall, 3) if dd_threads else None,
        "dnsperf_cores": round(perf_cpu / wall, 3),
        "instance_cpu_us_per_answer": round(
            sum(v["cpu_cores"] for v in per_instance.values()) * wall / max(1, result["completed"]) * 1e6, 1
        ),
        "queries_by_client": by_client,
        "load": uptime(),
    }
    print(
        f"{setup.label} (cap {setup.cap}): {result['qps']} qps, lost {result['lost']}, "
        f"instances {[v['of_cap'] for v in per_instance.values()]} of cap, dnsdist {result['dnsdist_cores']} "
        f"(busiest thread {result['dnsdist_busiest_thread']}), dnsperf {result['dnsperf_cores']}, load {uptime()}",
        flush=True,
    )
    return result


def summarize(runs: list[dict[str, Any]], setups: list[Setup], senders: int) -> dict[str, Any]:
    """Median QPS per setup over the rounds, the ratios the issue asks for, and the stickiness check."""
    med = {s.label: statistics.median(r["qps"] for r in runs if r["setup"] == s.label) for s in setups}
    out: dict[str, Any] = {"median_qps": {k: round(v) for k, v in med.items()}, "ratios": {}}
    pairs = [
        ("two over one behind dnsdist", "two behind dnsdist", "one behind dnsdist"),
        ("three over one behind dnsdist", "three behind dnsdist", "one behind dnsdist (cap3)"),
        ("one behind dnsdist over direct", "one behind dnsdist", "one direct"),
    ]
    for name, top, bottom in pairs:
        if top in med and bottom in med:
            out["ratios"][name] = round(med[top] / max(1.0, med[bottom]), 2)
            out["ratios"][f"{name}, per round"] = [
                round(t["qps"] / max(1.0, b["qps"]), 2)
                for t, b in zip(
                    [r for r in runs if r["setup"] == top], [r for r in runs if r["setup"] == bottom], strict=True
                )
            ]
    split, clients_on = [], {}
    for r in runs:
        if r["instances"] < 2:
            continue
        where: dict[str, list[str]] = {}
        for inst, counts in r["queries_by_client"].items():
            for client, n in counts.items():
                if client.startswith("127.0.1.") and n:
                    where.setdefault(client, []).append(inst)
        split += [c for c, insts in where.items() if len(insts) > 1]
        clients_on[r["setup"]] = {c: insts[0] for c, insts in where.items() if len(insts) == 1}
    out["mean_of_cap"] = {
        s.label: round(
            statistics.mean(v["of_cap"] for r in runs if r["setup"] == s.label for v in r["per_instance"].values()), 2
        )
        for s in setups
    }
    out["dnsdist_busiest_thread_max"] = max((r["dnsdist_busiest_thread"] or 0.0) for r in runs)
    out["dnsdist_cores_max"] = max((r["dnsdist_cores"] or 0.0) for r in runs)
    out["clients_on_more_than_one_instance"] = sorted(set(split))
    out["client_to_instance"] = clients_on
    out["senders"] = senders
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cap", type=float, default=0.3, help="CPU cap of each instance (cores), one vs two")
    parser.add_argument("--cap3", type=float, default=0.2, help="CPU cap of each instance, one vs three (0: skip)")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of one dnsperf run")
    parser.add_argument("--rounds", type=int, default=2, help="every setup once per round, order alternated")
    parser.add_argument("--senders", type=int, default=12, help="client addresses, one dnsperf process each")
    parser.add_argument("--inflight", type=int, default=40, help="queries in flight per dnsperf process")
    a = parser.parse_args()
    for tool in ("dnsdist", "dnsperf"):
        if not any((Path(d) / tool).exists() for d in os.get_exec_path()):
            sys.exit(f"{tool} is not installed: sudo apt-get install -y dnsdist dnsperf")
    why = cgroups_unusable()
    if why is not None:
        print(f"scaleout: skipped, the instances' CPU cannot be capped here: {why}. Nothing written.")
        return
    setups = [
        Setup("one direct", 1, a.cap, False),
        Setup("one behind dnsdist", 1, a.cap, True),
        Setup("two behind dnsdist", 2, a.cap, True),
    ]
    if a.cap3 > 0:
        setups += [Setup("one behind dnsdist (cap3)", 1, a.cap3, True), Setup("three behind dnsdist", 3, a.cap3, True)]
    results: dict[str, Any] = {"load_at_start": uptime(), "cpus": os.cpu_count(), "args": vars(a)}
    runs: list[dict[str, Any]] = []
    n = max(s.instances for s in setups)
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_upstream(Upstream()) as up,
        cpu_groups([f"rg{k}" for k in range(n)] + ["front"]) as groups,
    ):
        work = Path(tmp)
        queries = work / "hits.txt"
        queries.write_text("".join(f"{name} A\n" for name in WARM_NAMES))
        fleet = [start_instance(f"rg{k}", up, groups[f"rg{k}"], work) for k in range(n)]
        fronts: dict[int, tuple[int, subprocess.Popen[bytes]]] = {}
        try:
            for inst in fleet:
                wait_listening(inst.port, 120)
            for count in sorted({s.instances for s in setups if s.front}):
                fronts[count] = start_dnsdist(fleet[:count], groups["front"], work)
            for port, _ in fronts.values():
                wait_listening(port, 30)
            time.sleep(2.5)  # health checks mark the backends up (rise=2, one a second)
            offsets: dict[str, int] = {}
            for rnd in range(a.rounds):
                for inst in fleet:
                    inst.group.cap(None)
                    warm(inst.port)  # every round: the answers' TTL (300 s) outlives it
                for setup in setups if rnd % 2 == 0 else setups[::-1]:
                    runs.append(run_setup(setup, fleet, fronts, groups["front"], queries, a, offsets) | {"round": rnd})
        finally:
            for proc in [*(p for _, p in fronts.values()), *(inst.proc for inst in fleet)]:
                stop_server(proc)
    results |= {"load_at_end": uptime(), "runs": runs, "summary": summarize(runs, setups, a.senders)}
    write(results, a)
    print(json.dumps({k: v for k, v in results["summary"].items() if k != "client_to_instance"}, indent=2))


def write(results: dict[str, Any], a: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaleout.json").write_text(json.dumps(results, indent=2) + "\n")
    s = results["summary"]
    lines = [
        "# Scale-out behind dnsdist, each instance's CPU capped (issue #18)",
        "",
        f"`python bench/scaleout.py --cap {a.cap:g} --cap3 {a.cap3:g} --seconds {a.seconds:g} --rounds {a.rounds} "
        f"--senders {a.senders} --inflight {a.inflight}` (as root); load average (1, 5, 15 min) "
        f"{results['load_at_start']} at the start, "
        f"{results['load_at_end']} at the end, {results['cpus']} CPUs.",
        "",
        "**Why the caps.** This machine has 2 cores for dnsperf, dnsdist and every instance (and other jobs), "
        "too few to give each instance a core of its own, so uncapped a second instance adds throughput only when "
        "a core happens to be free (bench/results/fleet.md). Here each instance runs in its own cgroup v1 `cpu` "
        f"group with the same CFS quota: {a.cap:g} of a core each for one against two instances, {a.cap3:g} each "
        "for one against three, so the instances together stay below what the cores have left after dnsperf and "
        "dnsdist. With each instance's CPU held equal, N instances over one measures how well the front spreads "
        "the load; it says nothing about how fast one instance is (bench/results/compare.md does). The groups "
        f"have `cpu.shares` {SHARES} so other jobs do not take an instance's quota; dnsdist and dnsperf run "
        "uncapped in one such group.",
        "",
        f"dnsperf from {a.senders} client addresses (127.0.1.1-{a.senders}, one process each, {a.inflight} "
        f"queries in flight each), {a.seconds:g} s per run, answer-cache hits; every setup once per round, "
        f"{a.rounds} rounds, order reversed every other round. *of cap*: the instance's CPU over the run "
        "divided by its cap (1.0: it used all of it, it is the bottleneck); *throttled*: share of the 10 ms "
        "periods in which it ran out of quota.",
        "",
        "| round | setup | cap | QPS | lost | answers per instance (own log) | instances: of cap (throttled) "
        "| instances' CPU us/answer | dnsdist cores (busiest thread) | dnsperf cores | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        inst = ", ".join(f"{v['of_cap']:.2f} ({v['throttled_periods']:.2f})" for v in r["per_instance"].values())
        front = "-" if r["dnsdist_cores"] is None else f"{r['dnsdist_cores']:.2f} ({r['dnsdist_busiest_thread']:.2f})"
        answers = ", ".join(
            str(sum(n for c, n in counts.items() if c.startswith("127.0.1.")))
            for counts in r["queries_by_client"].values()
        )
        lines.append(
            f"| {r['round']} | {r['setup']} | {r['cap']:g} | {r['qps']} | {r['lost']} | {answers} | {inst} "
            f"| {r['instance_cpu_us_per_answer']} | {front} "
            f"| {r['dnsperf_cores']:.2f} | {r['load'].split()[0]} |"
        )
    ratios = s["ratios"]
    lines += ["", "Median QPS over the rounds and same-run ratios:", ""]
    lines += [f"- {k}: {v}" for k, v in s["median_qps"].items()]
    lines += [""]
    for key in ("two over one behind dnsdist", "three over one behind dnsdist", "one behind dnsdist over direct"):
        if key in ratios:
            lines.append(f"- **{key}: {ratios[key]}x** (per round: {', '.join(map(str, ratios[key + ', per round']))})")
    caps = ", ".join(f"{k} {v}" for k, v in s["mean_of_cap"].items())
    lines += [
        "",
        f"**Is the front the bottleneck?** The instances used, on average, this share of their cap: {caps}. "
        f"dnsdist used at most {s['dnsdist_cores_max']:.2f} of a core, its busiest thread at most "
        f"{s['dnsdist_busiest_thread_max']:.2f}"
        + (
            ": far from a full core, so the instances, held at their caps, set the throughput."
            if s["dnsdist_busiest_thread_max"] < 0.8
            else ": near a full core, so dnsdist may have limited the larger setups."
        )
        + " An instance below 1.0 did not use its whole quota: it waited for queries (dnsperf's slots held by "
        "lost queries), the machine (its other jobs, at the load above) did not run it, or CFS's per-CPU slices "
        "of the quota expired unused (throttled in most periods while under its cap); this lowers that "
        "setup's QPS, in every setup alike. "
        "Lost queries are those dnsperf gave up on after 1 s: the capped instance's socket overflowed while it "
        "waited for its next period.",
    ]
    split = s["clients_on_more_than_one_instance"]
    lines += [
        "",
        "**One client, one instance** (from each instance's own query log, the queries of each client address "
        f"it answered): clients whose queries reached more than one instance in a run: {len(split)}"
        + (f" ({', '.join(split)})" if split else "")
        + ". Where each client landed:",
        "",
    ]
    for setup, where in s["client_to_instance"].items():
        per = Counter(where.values())
        lines.append(f"- {setup}: " + "; ".join(f"{inst} {per[inst]} clients" for inst in sorted(per)))
    lines.append("")
    (RESULTS / "scaleout.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
