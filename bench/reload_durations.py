"""How long each reload of a storm takes under load: from the SIGHUP to Unbound's `start of service`.

    python bench/reload_durations.py [--reloads 100] [--interval 0.1] [--qps 1840] [--rows b2,m2,mp]
                                     [--out reload_durations]

Why (issue #17, session 21): under storms of reloads Unbound with the module sometimes reloads again
before it has answered anything (bench/reload_storm.py's "stalled" reloads), which needs a reload that
lasts longer than the time between two signals. This measures that length instead of inferring it: one
storm of `--reloads` SIGHUPs `--interval` s apart (to every process at once) while the retrying client of
bench/reload_retry.py asks `--qps` never-seen names/s; a thread reads each process's log every 2 ms and
notes when `start of service` appears; a reload's length is its `start of service` minus the later of
the previous one and the first signal after it. Per process: reloads done, p10/p50/p90/max ms, how many
took longer than the interval; and the client's failed lookups. Rows as reload_storm.py; NSD upstream,
one verdict service. Loopback only; bounded by --reloads.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import load_average, wait_ready  # noqa: E402
from module_procs import ROWS, start_row  # noqa: E402
from module_stages import pct  # noqa: E402
from reload_retry import drive, fresh_names  # noqa: E402
from reload_storm import KEYS, each_row, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class StartWatch:
    """Notes the monotonic time of every `start of service` each log gains (read every 2 ms)."""

    def __init__(self, logs: list[Path]) -> None:
        self.logs = logs
        self.starts: list[list[float]] = [[] for _ in logs]
        self._seen = [log.stat().st_size for log in logs]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> StartWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(1.0)  # the last reload's start
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for i, log in enumerate(self.logs):
                size = log.stat().st_size
                if size > self._seen[i]:
                    with log.open("rb") as handle:
                        handle.seek(self._seen[i])
                        new = handle.read(size - self._seen[i])
                    self._seen[i] = size
                    self.starts[i] += [time.monotonic()] * new.count(b"start of service")
            time.sleep(0.002)


def lengths(starts: list[float], signals: list[float]) -> list[float]:
    """Each reload's seconds: its start of service minus the later of the previous start and the
    first signal after that (signals that come during a reload are merged into the next one)."""
    out, previous = [], signals[0] - 1.0
    for start in starts:
        first = next((s for s in signals if previous < s < start), None)
        if first is not None:
            out.append(start - max(previous, first))
        previous = start
    return out


def summary(got: list[float], interval: float) -> dict[str, Any]:
    """Reloads, p10/p50/p90/max ms of their lengths `got`, and how many outlasted the interval."""
    return {
        "reloads": len(got),
        **{f"p{round(q * 100)}_ms": round(pct(got, q) * 1000, 1) for q in (0.1, 0.5, 0.9)},
        "max_ms": round(pct(got, 1.0) * 1000, 1),
        "over_interval": sum(g > interval for g in got),
    }


def storm(
    work: Path, key: str, upstream: int, sock: Path, misses: Path, service: int, a: argparse.Namespace
) -> dict[str, Any]:
    port, procs = start_row(work, key, upstream, sock)
    logs = [work / f"{key}-{i}" / f"unbound-{port}.log" for i in range(len(procs))]
    seconds = a.reloads * a.interval + 4
    names = fresh_names(misses.read_text().splitlines(), f"d{key}", int(a.qps * seconds) + 10)
    tally: dict[str, Any] = {}
    try:
        wait_ready(port)
        ask = drive(port, names, a.qps, seconds, 1.0, 3)
        client = threading.Thread(target=lambda: tally.update(vars(asyncio.run(ask))))
        with StartWatch(logs) as watch:
            client.start()
            time.sleep(1.0)
            signals = []
            for _ in range(a.reloads):
                signals.append(time.monotonic())
                for proc in procs:
                    proc.send_signal(signal.SIGHUP)
                time.sleep(a.interval)
            client.join()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    per_process = [summary(lengths(starts, signals), a.interval) for starts in watch.starts]
    lookups = sum(tally[k] for k in ("first", "retried", "servfail", "failed"))
    return {"processes": per_process, "lookups": lookups, "retried": tally["retried"], "failed": tally["failed"]}


def write(rows: dict[str, dict[str, Any]], a: argparse.Namespace, load: tuple[str, str], path: Path) -> str:
    lines = [
        f"# How long a reload takes in a storm (bench/reload_durations.py), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"One storm of {a.reloads} SIGHUPs {a.interval:g} s apart (to every process at once) while the retrying "
        f"client (1 s, 3 tries) asks {a.qps:g} never-seen names/s; a reload's length = its `start of service` "
        f"(the log read every 2 ms by a thread that shares the client's process: a few ms either way) minus "
        f"the later of the previous start and the first signal after it. Load "
        f"average before {load[0]}, after {load[1]}.",
        "",
        "| row | process | reloads | p10 ms | p50 ms | p90 ms | max ms | longer than the interval "
        "| client: lookups | retried | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in rows.items():
        for i, p in enumerate(row["processes"]):
            lines.append(
                f"| {ROWS[key][0]} | {i + 1} | {p['reloads']} | {p['p10_ms']} | {p['p50_ms']} | {p['p90_ms']} "
                f"| {p['max_ms']} | {p['over_interval']} | {row['lookups']} | {row['retried']} | {row['failed']} |"
            )
    found = {"rows": rows, "load": load, "qps": a.qps, "interval": a.interval, "reloads": a.reloads}
    return write_results(path, lines, found)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reloads", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--qps", type=float, default=1840.0)
    p.add_argument("--rows", default=",".join(KEYS), help=f"of {','.join(KEYS)}")
    p.add_argument("--out", default="reload_durations")
    a = p.parse_args()
    before = load_average()
    rows = each_row(a.rows.split(","), "durations", 20261205, 300_000, lambda *row: storm(*row, a))
    print(write(rows, a, (before, load_average()), RESULTS / a.out))


if __name__ == "__main__":
    main()
