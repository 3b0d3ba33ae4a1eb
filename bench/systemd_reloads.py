"""Storms of `systemctl reload` through systemd itself, with the units `resolverguard unbound-module
--processes 2` prints: does a client that asks again still get every answer?

    python bench/systemd_reloads.py [--reloads 100] [--interval 0.1] [--qps 1840] [--storms 2] [--out systemd_reloads]

Why (issue #17): the printed units hold each reload job for 0.3 s after the SIGHUP (`ExecReload=` kill,
then sleep), so that systemd, which runs one reload job per unit at a time and merges the requests that
come meanwhile, keeps a storm of reloads from stalling Unbound. bench/reload_storm.py --settle emulates
those jobs; this asks systemd 252 (Debian 12's). The development machine has no systemd as its init
and must not boot one (it shares the filesystem, whose /tmp systemd-tmpfiles empties), so the bench
runs a *user* manager (`systemd --user`, tests/systemdfixtures.py) as an unprivileged user
(`--user-name`, nobody): in a private mount namespace where /run/systemd/system exists (systemd's
"booted" check) and in a cgroup of its own delegated to that user. A user manager's job engine is
the system manager's: one job per unit, Type=notify (Unbound's READY=1 / RELOADING=1), ExecReload=,
ReloadPropagatedFrom=, PartOf=, After=.

Rows, each on two Unbound processes of one thread with the module on one port (so-reuseport), NSD
upstream, one verdict service, all on loopback:
  (sleep) the printed units: process 1's unit with the printed drop-in's `ExecReload=` lines, process
          2's unit exactly as printed;
  (bare)  the same with `ExecReload=` SIGHUP only (Debian's unbound.service; the units printed before
          session 22).
Each storm: `systemctl --user --no-block reload unbound.service` every `--interval` s, `--reloads` times
(the second process reloads through ReloadPropagatedFrom), while the retrying client of
bench/reload_retry.py (1 s, 3 tries) asks `--qps` never-seen names/s. Per storm: lookups, retried,
failed; per process the reloads done (`start of service` lines, read every 2 ms) and the shortest and
median time between two of them. Bounded by --storms x --reloads; writes bench/results/OUT.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from compare import free_port, load_average, query_files, start_nsd, start_verdicts, wait_ready  # noqa: E402
from reload_durations import StartWatch  # noqa: E402
from reload_retry import drive, fresh_names  # noqa: E402
from reload_storm import write_results  # noqa: E402
from systemdfixtures import UserManager, printed_unbound_units, unavailable  # noqa: E402

from resolverguard.unboundconf import RELOAD_LINES  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# ExecReload= lines per row: None = as printed
ROWS: dict[str, tuple[str, ...] | None] = {"sleep": None, "bare": RELOAD_LINES[:1]}


def spacing(starts: list[float]) -> dict[str, float | None]:
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    if not gaps:
        return {"min_s": None, "median_s": None}
    return {"min_s": round(min(gaps), 3), "median_s": round(statistics.median(gaps), 3)}


@contextlib.contextmanager
def requests(manager: UserManager, reloads: int, interval: float) -> Iterator[list[Any]]:
    """`systemctl --user --no-block reload unbound.service` every `interval` s on a thread; yields
    [requests systemctl refused, when the last one was made]."""
    refused = [0, 0.0]  # refused, and the monotonic time of the last request

    def loop() -> None:
        time.sleep(1.0)
        for _ in range(reloads):
            started = time.monotonic()
            refused[0] += manager.ctl("--no-block", "reload", "unbound.service").returncode != 0
            refused[1] = started
            time.sleep(max(0.0, interval - (time.monotonic() - started)))

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield refused
    finally:
        thread.join()


def storm(manager: UserManager, port: int, logs: list[Path], names: list[str], a: argparse.Namespace) -> dict[str, Any]:
    seconds = a.reloads * (a.interval + 0.1) + 4
    with StartWatch(logs) as watch, requests(manager, a.reloads, a.interval) as refused:
        tally = asyncio.run(drive(port, names, a.qps, seconds, 1.0, 3))
    deadline = time.monotonic() + 60
    while "No jobs running" not in manager.ctl("list-jobs").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = all(
        manager.ctl("is-active", unit).stdout.strip() == "active" for unit in ("unbound.service", "unbound-2.service")
    )
    return {
        "lookups": tally.first + tally.retried + tally.servfail + tally.failed,
        "retried": tally.retried,
        "failed": tally.failed + tally.servfail,
        "refused": refused[0],
        "alive": alive,
        "reloads_done": [len(s) for s in watch.starts],
        # each process's last `start of service` after the last request: > 0 when that request's reload reached it
        "last_start_after_last_request_s": [round(s[-1] - refused[1], 3) if s else None for s in watch.starts],
        "spacing": [spacing(s) for s in watch.starts],
    }


def row(
    manager: UserManager, key: str, work: Path, upstream: int, sock: Path, lines: list[str], a: argparse.Namespace
) -> list[dict[str, Any]]:
    own = work / key
    own.mkdir()
    port = free_port()
    for name, text in printed_unbound_units(own, port, upstream, sock, ROWS[key]).items():
        manager.install(name, text)
    manager.give(own, *own.iterdir())
    manager.ctl("daemon-reload", check=True)
    manager.ctl("start", "unbound.service", "unbound-2.service", check=True)
    logs = [own / "unbound-1.log", own / "unbound-2.log"]
    try:
        wait_ready(port)
        out = []
        for s in range(a.storms):
            names = fresh_names(lines, f"{key}{s}", int(a.qps * (a.reloads * (a.interval + 0.1) + 4)) + 10)
            out.append(storm(manager, port, logs, names, a))
            print(key, s, out[-1], flush=True)
        return out
    finally:
        manager.ctl("stop", "unbound.service", "unbound-2.service")


def write(rows: dict[str, list[dict[str, Any]]], a: argparse.Namespace, load: tuple[str, str]) -> str:
    path = RESULTS / a.out
    lines = [
        f"# Storms of `systemctl reload` through systemd itself (bench/systemd_reloads.py), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"systemd {a.systemd} as a user manager; two Unbound processes of one thread with the module on one port, "
        f"their units from `resolverguard unbound-module --processes 2`; {a.storms} storms per row, each "
        f"{a.reloads} `systemctl --user --no-block reload unbound.service` {a.interval:g} s apart while the retrying "
        f"client (1 s, 3 tries) asks {a.qps:g} never-seen names/s. Load average before {load[0]}, after {load[1]}.",
        "",
        "| row | storm | lookups | retried | failed | requests refused | both alive | reloads done (1 / 2) "
        "| time between reloads, min / median s (1; 2) | last reload after the last request, s (1 / 2) |",
        "|---|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    labels = {"sleep": "(sleep) printed: SIGHUP, then sleep 0.3", "bare": "(bare) SIGHUP only"}
    for key, got in rows.items():
        for i, r in enumerate(got):
            gaps = "; ".join(f"{g['min_s']} / {g['median_s']}" for g in r["spacing"])
            done = " / ".join(str(n) for n in r["reloads_done"])
            after = " / ".join(str(x) for x in r["last_start_after_last_request_s"])
            lines.append(
                f"| {labels[key]} | {i + 1} | {r['lookups']} | {r['retried']} | {r['failed']} | {r['refused']} "
                f"| {r['alive']} | {done} | {gaps} | {after} |"
            )
    found = {"rows": rows, "load": load, "qps": a.qps, "interval": a.interval, "reloads": a.reloads}
    return write_results(path, lines, found)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--storms", type=int, default=2)
    p.add_argument("--reloads", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--qps", type=float, default=1840.0)
    p.add_argument("--rows", default="sleep,bare")
    p.add_argument("--user-name", default="nobody", help="the user the manager and Unbound run as")
    p.add_argument("--out", default="systemd_reloads")
    a = p.parse_args()
    why = unavailable(a.user_name)
    if why:
        sys.exit(f"systemd_reloads: {why}")
    a.systemd = subprocess.run(["systemctl", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    before = load_average()
    work = Path(tempfile.mkdtemp(prefix="rg-systemd-"))
    work.chmod(0o755)
    files = query_files(work, 1000, random.Random(20261204), misses=400_000)
    lines = files["misses"].read_text().splitlines()
    upstream = free_port()
    helpers = [start_nsd(work, upstream)]
    # (Unbound runs as the manager's user: the work directory and the snapshot must be readable)
    manager = None
    try:
        wait_ready(upstream)
        service, sock = start_verdicts(work, "systemd")
        helpers.append(service)
        for path in work.iterdir():  # Unbound runs as the bench user: the snapshot must be readable
            if path.name.startswith("verdicts-systemd.sock"):
                path.chmod(0o666 if path.is_socket() else 0o644)
        manager = UserManager(work, a.user_name)
        rows = {key: row(manager, key, work, upstream, sock, lines, a) for key in a.rows.split(",")}
    finally:
        if manager is not None:
            manager.close()
        for proc in helpers:
            proc.terminate()
            proc.wait(10)
    print(write(rows, a, (before, load_average())))


if __name__ == "__main__":
    main()
