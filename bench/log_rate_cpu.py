"""What the query log costs in CPU per query at a fixed query rate, the resolver and its writer apart:
(d) no log, (d') the log file, (d'0) the log file served from another checkout (an A/B), in turn.

    python bench/log_rate_cpu.py [--seconds 4] [--rounds 3] [--hits-qps 40000] [--misses-qps 4000]
                                 [--baseline OTHER_CHECKOUT] [--tag TAG]

Why (issue #17, "query log to a file costs <= 10%"): bench/compare.py --log measures at peak, where the
resolver's loop is saturated: its CPU is one core for the run's seconds whatever it does, so its "CPU per
query" is 1/QPS, and QPS on this shared 2-core machine moves +-10-20% between rounds (dnsperf, the writer
and other work share the cores). At a fixed rate below the peak the same CPU seconds measure the work
itself: what the loop spends per query (the log's call, the hand-over, the pipe writes) and what the
writer process spends (reading, lines, the file), each from /proc. The order per round follows
compare.py: each target gets its hits run (after asking every hits name once) and then its misses run
(never-seen names: every run its own slice of the misses file), so the repeat shortcut re-learns as
there. Results to bench/results/log_rate_cpu[_TAG].{md,json}.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import ROOT, family, free_port, query_files, start_nsd, start_resolverguard, wait_ready  # noqa: E402


def own_cpu(pid: int) -> float:
    """One process's user + system CPU seconds (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paced(port: int, names: Path, seconds: float, qps: int) -> int:
    """dnsperf at `qps` for `seconds`; the queries answered."""
    out = subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(names), "-l", str(seconds)]
        + ["-c", "8", "-q", "500", "-t", "2", "-S", "0", "-Q", str(qps)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    for line in out.splitlines():
        if "Queries completed:" in line:
            return int(line.split()[2])
    return 0


def measure(proc: Any, port: int, names: Path, seconds: float, qps: int, log: Path | None) -> dict[str, float]:
    """One paced run: CPU us per answered query of the resolver's process and of its children (the
    writer), read after the log file stopped changing (deferred work counts)."""
    pids = family(proc.pid)
    before = {p: own_cpu(p) for p in pids}
    done = max(1, paced(port, names, seconds, qps))
    if log is not None:  # the writer done with the run: the file unchanged for 1 s
        last, quiet = None, time.monotonic()
        while time.monotonic() - quiet < 1.0:
            seen = log.stat().st_size if log.exists() else -1
            if seen != last:
                last, quiet = seen, time.monotonic()
            time.sleep(0.05)
    after = {p: own_cpu(p) for p in pids}
    resolver = (after[proc.pid] - before[proc.pid]) / done * 1e6
    writer = sum(after[p] - before[p] for p in pids if p != proc.pid) / done * 1e6
    return {"answered": done, "resolver_us": round(resolver, 3), "writer_us": round(writer, 3)}


def slices(path: Path, parts: int, size: int) -> list[Path]:
    """`parts` files of `size` names each from `path`, none sharing a name (a never-seen name stays so)."""
    lines = path.read_text().splitlines(keepends=True)
    out = []
    for n in range(parts):
        part = path.with_name(f"{path.stem}.{n}.txt")
        part.write_text("".join(lines[n * size : (n + 1) * size]))
        out.append(part)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--hits-qps", type=int, default=40_000)
    p.add_argument("--misses-qps", type=int, default=4_000)
    p.add_argument("--baseline", type=Path, default=None, help="(d'0): (d') served from this checkout")
    p.add_argument("--tag", default="")
    a = p.parse_args()
    keys = ["d", "d'", *(["d'0"] if a.baseline else [])]
    per_run = int(a.misses_qps * a.seconds * 1.3) + 100
    work = Path(tempfile.mkdtemp(prefix="rg-rate-"))
    files = query_files(work, 200_000, random.Random(7), per_run * a.rounds * len(keys))
    misses = slices(files["misses"], a.rounds * len(keys), per_run)
    ports = {k: free_port() for k in ("nsd", *keys)}
    procs = [start_nsd(work, ports["nsd"])]
    runs: dict[str, dict[str, list[dict[str, float]]]] = {k: {"hits": [], "misses": []} for k in keys}
    load_before, loads = os.getloadavg(), []
    try:
        wait_ready(ports["nsd"])
        targets = {
            "d": start_resolverguard(work, ports["d"], ports["nsd"], True),
            "d'": start_resolverguard(work, ports["d'"], ports["nsd"], True, log=True, writer="process"),
        }
        if a.baseline:
            root = a.baseline.resolve()
            targets["d'0"] = start_resolverguard(work, ports["d'0"], ports["nsd"], True, log=True, root=root)
        procs += targets.values()
        for key in targets:
            wait_ready(ports[key])
        time.sleep(5.0)  # start-up (models, the writer's family head) done before any run
        used = 0
        for _ in range(a.rounds):
            for key, proc in targets.items():
                log = work / f"queries-{ports[key]}.jsonl" if key != "d" else None
                warm = ["dnsperf", "-s", "127.0.0.1", "-p", str(ports[key]), "-d", str(work / "warm.txt"), "-n", "1"]
                subprocess.run(warm, capture_output=True, timeout=120)
                runs[key]["hits"].append(measure(proc, ports[key], files["hits"], a.seconds, a.hits_qps, log))
                runs[key]["misses"].append(measure(proc, ports[key], misses[used], a.seconds, a.misses_qps, log))
                used += 1
            loads.append(os.getloadavg())
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    report(a, runs, load_before, loads)


def report(a: argparse.Namespace, runs: dict[str, Any], load_before: Any, loads: list[Any]) -> None:
    def total(key: str, kind: str) -> list[float]:
        return [r["resolver_us"] + r["writer_us"] for r in runs[key][kind]]

    summary = {
        key: {
            kind: {
                "resolver_us": round(statistics.median(r["resolver_us"] for r in runs[key][kind]), 3),
                "writer_us": round(statistics.median(r["writer_us"] for r in runs[key][kind]), 3),
                "total_us": round(statistics.median(total(key, kind)), 3),
            }
            for kind in ("hits", "misses")
        }
        for key in runs
    }
    ratios = {
        f"({key})/(d)": {
            kind: round(summary["d"][kind]["total_us"] / summary[key][kind]["total_us"], 3)
            for kind in ("hits", "misses")
        }
        for key in runs
        if key != "d"
    }
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"# Query log CPU per query at a fixed rate (bench/log_rate_cpu.py), {stamp}",
        "",
        f"hits at {a.hits_qps} QPS, misses (never-seen, a slice each run) at {a.misses_qps} QPS, {a.seconds:g} s per"
        f" run, {a.rounds} rounds in turn; (d'0): {a.baseline}. Load average before "
        f"{' '.join(f'{x:.2f}' for x in load_before)}; 1-min after each round: "
        f"{', '.join(f'{x[0]:.2f}' for x in loads)}.",
        "",
        "| target | kind | resolver us per query, each run | writer us per query, each run | median total |",
        "|---|---|---|---|---:|",
    ]
    for key, kinds in runs.items():
        for kind, values in kinds.items():
            lines.append(
                f"| ({key}) | {kind} | {' / '.join(str(r['resolver_us']) for r in values)} | "
                f"{' / '.join(str(r['writer_us']) for r in values)} | {summary[key][kind]['total_us']} |"
            )
    lines += ["", "| CPU ratio (d)/target, medians | hits | misses |", "|---|---:|---:|"]
    lines += [f"| {name} | {v['hits']} | {v['misses']} |" for name, v in ratios.items()]
    suffix = f"_{a.tag}" if a.tag else ""
    out = ROOT / "bench" / "results"
    payload = {"runs": runs, "summary": summary, "ratios": ratios, "load": [load_before, loads], "args": vars(a)}
    (out / f"log_rate_cpu{suffix}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (out / f"log_rate_cpu{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
