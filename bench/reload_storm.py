"""Storms of reloads under load: does a client that asks again still get every answer?

    python bench/reload_storm.py [--storms 3] [--reloads 100] [--interval 0.1] [--qps 1840] [--rows b2,m2,mp]
                                 [--settle S] [--out reload_storm]

Why (issue #17): bench/module_procs.py runs one storm per row and saw no failed lookup at 1,552-1,951
never-seen names/s; ad hoc runs at 1,840/s, storm after storm on the same processes, did. Each storm
is `--reloads` SIGHUPs `--interval` s apart (to every process at once: `systemctl reload unbound`) while
dnsperf asks at `--qps` (lost answers, the module's count of queries in flight), then as many under
the retrying client of bench/reload_retry.py (1 s, 3 tries: lookups, retried, failed). Rows: (b2)
plain Unbound with 2 threads, (m2) with the module, (mp) two processes of the module on one port
(`resolverguard unbound-module --processes 2`); NSD upstream, one verdict service. Per storm also the
CPU seconds of the Unbound processes and of the service, and the share of the machine's CPU left idle
(/proc/stat): a reload costs each process ~30-60 ms of CPU (bench/reload_cost.py), and the idle share
tells a full machine from reloads that are merely long (session 21: ~40% idle). And from the module's
log, the reloads done (signals that come during a reload are merged) and the "stalled" ones: unloads
at which every query the module had seen since it was loaded was still in flight, so Unbound answered
none of them between two reloads (each then frees one read's worth, 100 datagrams). Loopback only;
bounded by --storms x --reloads.

`--settle S`: the storm's reloads are asked of systemd instead (`systemctl reload unbound` every
`--interval` s) for units whose ExecReload is SIGHUP and then `sleep S`, as `resolverguard
unbound-module` prints them since session 22. This machine cannot run systemd, so `SystemdJobs` does
what systemd 252 does with such a unit (Type=notify, as Debian's): one reload job per process at a time
(the unit is "reloading" while ExecReload runs and, after it, until Unbound's READY=1, which Unbound
sends at its `start of service`); a request that comes meanwhile is merged into one job that runs
after (job.c `job_install`: "Merged into running job, re-running"; unit.c `unit_reload`: -EAGAIN while
reloading).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import (  # noqa: E402
    cpu_seconds,
    free_port,
    hup_each,
    load_average,
    query_files,
    reloads_under_load,
    round_misses,
    start_nsd,
    start_verdicts,
    wait_ready,
)
from module_procs import ROWS, start_row  # noqa: E402
from reload_retry import fresh_names, retry_under_reloads  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("b2", "m2", "mp")


def cpu_jiffies() -> tuple[int, int]:
    """The machine's (idle, total) CPU time so far, in clock ticks, all cores (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])


def reload_counts(logs: list[Path]) -> tuple[int, int | None]:
    """(reloads done, stalled reloads) in these Unbound logs: `start of service` lines, and the
    module's unloads with queries in flight and none of those it saw since its load answered
    (None without the module)."""
    done, stalled, module = 0, 0, False
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            done += "start of service" in line
            if "resolverguard: module unloaded" not in line:
                continue
            module = True
            counts = dict(word.split("=", 1) for word in line.split() if "=" in word)
            seen = sum(int(counts.get(k, 0)) for k in ("asked", "cleared", "passed_unasked"))
            stalled += 0 < seen <= int(counts.get("in_flight", 0))
    return done, stalled if module else None


class SystemdJobs:
    """A `Reload` (compare.hup_each's shape) that asks systemd's way (see the module docstring): per
    process a job runner that sends SIGHUP, sleeps `settle`, then waits for the reload's `start of
    service` in the process's log (READY=1); requests that come while a job runs make one more job."""

    def __init__(self, procs: list[subprocess.Popen[bytes]], logs: list[Path], settle: float) -> None:
        self.procs, self.logs, self.settle = procs, logs, settle
        self.jobs = [0] * len(procs)  # reloads run, per process
        self._pending = [False] * len(procs)
        self._busy = [False] * len(procs)
        self._changed = threading.Condition()
        self._stop = False
        self._threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(len(procs))]
        for thread in self._threads:
            thread.start()

    def __call__(self, i: int) -> bool:
        with self._changed:
            self._pending = [True] * len(self.procs)
            self._changed.notify_all()
        return True

    def _starts(self, k: int) -> int:
        return self.logs[k].read_bytes().count(b"start of service")

    def _run(self, k: int) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending[k] or self._stop)
                if self._stop:
                    return
                self._pending[k], self._busy[k] = False, True
            before = self._starts(k)
            self.procs[k].send_signal(signal.SIGHUP)
            time.sleep(self.settle)
            deadline = time.monotonic() + 10.0  # (a reload takes ~0.03-0.3 s)
            while self._starts(k) <= before and time.monotonic() < deadline:
                time.sleep(0.002)
            with self._changed:
                self.jobs[k] += 1
                self._busy[k] = False
                self._changed.notify_all()

    def drain(self, timeout: float = 30.0) -> None:
        """Waits until every requested reload has run."""
        with self._changed:
            self._changed.wait_for(lambda: not any(self._pending) and not any(self._busy), timeout)

    def close(self) -> None:
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(15)


def reloader(procs: list[subprocess.Popen[bytes]], logs: list[Path], settle: float) -> Callable[[int], bool]:
    """SIGHUPs as they come (`hup_each`), or through systemd's jobs when `settle` is set."""
    return SystemdJobs(procs, logs, settle) if settle else hup_each(procs)


Row = Callable[
    [Path, str, int, Path, Path, int], Any
]  # (work, key, upstream, verdict socket, misses file, service pid)


def each_row(keys: list[str], name: str, seed: int, misses: int, measure: Row) -> dict[str, Any]:
    """NSD and one verdict service in a fresh directory, with `misses` never-seen names (query_files,
    `seed`), and `measure` run for every row of `keys` against them: {key: what it returned}."""
    rows = {}
    with tempfile.TemporaryDirectory(prefix=f"rg-{name}-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        files = query_files(work, 1000, random.Random(seed), misses=misses)
        upstream = free_port()
        nsd = start_nsd(work, upstream)
        service, sock = start_verdicts(work, name)
        try:
            wait_ready(upstream)
            for key in keys:
                rows[key] = measure(work, key, upstream, sock, files["misses"], service.pid)
        finally:
            for proc in (service, nsd):
                proc.terminate()
                proc.wait(10)
    return rows


def storms(
    work: Path, key: str, upstream: int, sock: Path, misses: Path, service: int, a: argparse.Namespace
) -> list[dict[str, Any]]:
    port, procs = start_row(work, key, upstream, sock)
    logs = [work / f"{key}-{i}" / f"unbound-{port}.log" for i in range(len(procs))]
    count = int(a.qps * (a.reloads * (a.interval + 0.1) + 4)) + 10
    lines = misses.read_text().splitlines()
    out = []
    try:
        for storm in range(a.storms):
            for log in logs:  # the module's in-flight count of this storm only
                log.write_text("")
            cpu, machine, start = [cpu_seconds(p.pid) for p in procs], cpu_jiffies(), time.monotonic()
            service_cpu = cpu_seconds(service)
            jobs = [0] * len(procs)
            for half in ("dnsperf", "retrying"):
                reload = reloader(procs, logs, a.settle)
                if half == "dnsperf":
                    queries = round_misses(misses, storm, tag=key)
                    got = reloads_under_load(port, procs, logs, reload, queries, a.qps, a.reloads, a.interval)
                else:
                    names = fresh_names(lines, f"s{storm}{key}", count)
                    got["retrying"] = retry_under_reloads(
                        port, procs, reload, names, a.qps, a.reloads, interval=a.interval
                    )
                if isinstance(reload, SystemdJobs):
                    reload.drain()
                    reload.close()
                    jobs = [j + k for j, k in zip(jobs, reload.jobs, strict=True)]
            got["reloads_done"], got["stalled"] = reload_counts(logs)
            got["systemd_jobs"] = jobs if a.settle else None
            idle, total = (now - then for now, then in zip(cpu_jiffies(), machine, strict=True))
            got["seconds"] = round(time.monotonic() - start, 1)
            got["unbound_cpu_s"] = round(sum(cpu_seconds(p.pid) for p in procs) - sum(cpu), 2)
            got["service_cpu_s"] = round(cpu_seconds(service) - service_cpu, 2) if key != "b2" else None
            got["machine_idle"] = round(idle / max(total, 1), 3)
            out.append(got)
            print(key, storm, {k: got[k] for k in ("lost", "in_flight")}, got["retrying"]["failed"], flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    return out


def write_results(path: Path, lines: list[str], found: dict[str, Any]) -> str:
    """A reload bench's table as PATH.md and its figures as PATH.json; the table's text."""
    text = "\n".join(lines) + "\n"
    path.with_suffix(".md").write_text(text)
    path.with_suffix(".json").write_text(json.dumps(found, indent=1) + "\n")
    return text


def write(rows: dict[str, list[dict[str, Any]]], a: argparse.Namespace, load: tuple[str, str], path: Path) -> str:
    lines = [
        f"# Storms of reloads under load (bench/reload_storm.py), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{a.storms} storms in a row on the same processes, each {a.reloads} {how(a)} {a.interval:g} s apart (to every "
        f"process at once) at {a.qps:g} never-seen names/s, dnsperf and then the retrying client (1 s, 3 tries). "
        f"Load average before {load[0]}, after {load[1]}.",
        "",
        "Both halves of a storm (dnsperf, then the retrying client) together: its seconds, the CPU seconds of the "
        "Unbound processes and of the verdict service, the share of the machine's CPU (all cores) left idle; the "
        "reloads done (2 x reloads requested per process) and the stalled ones (the module's unloads with "
        "every query it had seen since its load still in flight).",
        "",
        "| row | storm | dnsperf sent | lost | in flight (module's count) | retrying: lookups | retried | failed "
        "| alive | seconds | Unbound CPU s | service CPU s | machine idle | reloads done | stalled |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, got in rows.items():
        for i, r in enumerate(got):
            t = r["retrying"]
            flight = "-" if r["in_flight"] is None else r["in_flight"]
            lines.append(
                f"| {ROWS[key][0]} | {i + 1} | {r['sent']} | {r['lost']} | {flight} | {t['lookups']} | {t['retried']} "
                f"| {t['failed']} | {r['alive'] and t['alive']} | {r.get('seconds', '-')} "
                f"| {r.get('unbound_cpu_s', '-')} | {r.get('service_cpu_s') or '-'} | {r.get('machine_idle', '-')} "
                f"| {r.get('reloads_done', '-')} | {'-' if r.get('stalled') is None else r['stalled']} |"
            )
    found = {"rows": rows, "load": load, "qps": a.qps, "interval": a.interval, "settle": a.settle}
    return write_results(path, lines, found)


def how(a: argparse.Namespace) -> str:
    if not a.settle:
        return "SIGHUPs"
    return (
        f"`systemctl reload` requests (systemd's jobs as `SystemdJobs` runs them: ExecReload SIGHUP, then "
        f"`sleep {a.settle:g}`, then READY=1)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--storms", type=int, default=3)
    p.add_argument("--reloads", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.1, help="seconds between a storm's reloads")
    p.add_argument("--qps", type=float, default=1840.0)
    p.add_argument("--rows", default=",".join(KEYS), help=f"of {','.join(KEYS)}")
    p.add_argument("--settle", type=float, default=0.0, help="ask systemd's way, ExecReload's sleep (s)")
    p.add_argument("--out", default="reload_storm")
    a = p.parse_args()
    before = load_average()
    rows = each_row(a.rows.split(","), "storm", 20261204, 400_000, lambda *row: storms(*row, a))
    print(write(rows, a, (before, load_average()), RESULTS / a.out))


if __name__ == "__main__":
    main()
