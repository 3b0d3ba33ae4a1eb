"""What the query log costs per cached answer (hit), in CPU time: on the event loop and in the writer process.

    python bench/log_hits_cpu.py [--entries 400000] [--rounds 3] [--source OTHER_CHECKOUT ...]

Why (issue #17, "query log to a file costs <= 10%" on hits): bench/compare.py --log measures QPS
under dnsperf, which the shared 2-core machine moves by +-40% between rounds; CPU time per entry
moves far less. This feeds a real `QueryLog` (writer: process, a file in a temporary directory)
the entries the repeat shortcut hands over for bench/compare.py's hits file: Zipf(1.1) over 10k
names, each name's shape one object with its serial, the client's address a new string each time.
Loop: process time of `add` (hand-overs included: marshal and the pipe write; the tuple itself is
built before the clock starts). Writer: its utime + stime from /proc between two syncs (its
start-up, ~0.3 s, left out), so file writes, pipe reads, unmarshal and line making are all in.
Each checkout (this one and every --source) is run in a child process with its own PYTHONPATH,
in turn, `--rounds` times; the median per checkout is reported. Results to
bench/results/log_hits_cpu.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = 10_000


def writer_cpu(pid: int) -> float:
    """A process's user + system CPU seconds, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one(entries: int, misses: bool = False) -> dict[str, float]:
    """One run in this process (the checkout on PYTHONPATH): CPU us per entry, loop and writer.
    `misses`: every entry a never-seen name's, as the chain hands it over (a shape of its own, no serial)."""
    from resolverguard.config import LogWriter, QueryLogConfig
    from resolverguard.steps.querylog import QueryLog

    rng = random.Random(7)
    serial = time.monotonic_ns()
    shapes = [
        ("udp", f"name{i}.example.com", "A", f"name{i}", 0.01, "pass", "scored", "NOERROR", *[None] * 4, serial + i)
        for i in range(NAMES)
    ]
    picks = rng.choices(shapes, weights=[1 / (rank + 1) ** 1.1 for rank in range(NAMES)], k=entries)
    if misses:
        picks = [
            ("udp", f"m{n}.example.com", "A", f"m{n}", 0.01, "pass", "model", "NOERROR", *[None] * 5)
            for n in range(entries)
        ]
    start = time.time()
    client = ("127", "0", "0", "1")  # joined for each entry: a new string, as each packet's address is
    batch = [(start + n * 2e-5, ".".join(client), 5e-5 + rng.random() * 3e-4, s) for n, s in enumerate(picks)]
    with tempfile.TemporaryDirectory() as work:
        log = QueryLog(QueryLogConfig(path=f"{work}/q.jsonl", writer=LogWriter.PROCESS))
        log.flush()  # the writer is up
        pid = log._writer.pid  # type: ignore[union-attr]  # noqa: SLF001 - a bench reads the child's CPU
        before, loop = writer_cpu(pid), time.process_time()
        add = log.add
        for entry in batch:
            add(entry)  # type: ignore[arg-type]
        loop = time.process_time() - loop
        log.flush()
        writer = writer_cpu(pid) - before
        log.close()
        assert log.written == entries and log.lost == 0, (log.written, log.lost)
    return {"loop_us": round(loop / entries * 1e6, 3), "writer_us": round(writer / entries * 1e6, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=400_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--source", type=Path, action="append", default=[], help="another checkout to compare")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--misses", action="store_true", help="never-seen names (the chain's entries) instead of hits")
    p.add_argument("--tag", default="", help="results to bench/results/log_hits_cpu_TAG.{md,json}")
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(a.entries, a.misses)))
        return
    trees = [ROOT, *(s.resolve() for s in a.source)]
    runs: dict[str, list[dict[str, float]]] = {str(t): [] for t in trees}
    load_before = os.getloadavg()
    for _ in range(a.rounds):
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": str(tree)}
            cmd = [sys.executable, str(Path(__file__).resolve()), "--one", "--entries", str(a.entries)]
            cmd += ["--misses"] if a.misses else []
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=600).stdout
            runs[str(tree)].append(json.loads(out.strip().splitlines()[-1]))
    load_after = os.getloadavg()
    median = {t: {k: statistics.median(r[k] for r in v) for k in ("loop_us", "writer_us")} for t, v in runs.items()}
    out = ROOT / "bench" / "results"
    (out / f"log_hits_cpu{'_' + a.tag if a.tag else ''}.json").write_text(
        json.dumps({"runs": runs, "median": median, "load": [load_before, load_after], "entries": a.entries}, indent=2)
        + "\n"
    )
    what = "chain entries of never-seen names" if a.misses else f"shortcut entries (Zipf 1.1 over {NAMES} names)"
    lines = [
        "# Query log CPU per cached answer (bench/log_hits_cpu.py), "
        + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "",
        f"{a.entries} {what} per run, {a.rounds} rounds in turn; load average "
        f"before {' '.join(f'{x:.2f}' for x in load_before)}, after {' '.join(f'{x:.2f}' for x in load_after)}.",
        "",
        "| checkout | loop us per entry (median; each run) | writer process us per entry (median; each run) |",
        "|---|---:|---:|",
    ]
    for tree, values in runs.items():
        loops = " / ".join(f"{r['loop_us']:.3f}" for r in values)
        writers = " / ".join(f"{r['writer_us']:.3f}" for r in values)
        loop, writer = median[tree]["loop_us"], median[tree]["writer_us"]
        lines.append(f"| {tree} | {loop:.3f} ({loops}) | {writer:.3f} ({writers}) |")
    (out / f"log_hits_cpu{'_' + a.tag if a.tag else ''}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
