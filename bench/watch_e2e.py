"""The client watch's cost end to end, and before/after a change, in one run: results/watch_e2e.md.

bench/compare.py --watch gives (g)/(d), the full chain with and without `client_watch`, from two
alternated rounds; on the shared 2-core machine two runs of the same target differ by 20-40%. This
measures the same servers (its policies, its NSD, its query files) more times, alternated, and
reports two ratios per kind:
  * QPS, as compare.py does (dnsperf's throughput: what a user sees, and what load hurts most);
  * the server's CPU microseconds per answered query (from /proc), which another process's load
    moves much less than it moves QPS.
Each round has its own `misses` file (never-seen names: a name the first round resolved would be an
answer-cache hit in the next). With `--before TREE` a third server, the watch as another checkout
has it, runs in the same rounds: the before/after of a change from one run.

    python bench/watch_e2e.py [--before ../old-checkout] [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as C  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def misses_file(path: Path, count: int, base: list[str], rng: random.Random) -> Path:
    """compare.py's misses (unique names, half DGA-looking), with a round's own names."""
    lines = []
    for i in range(count):
        if i % 2:
            label = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randint(8, 16)))
        else:
            label = rng.choice(base).split(".")[0] + str(i)
        lines.append(f"{label}.com A\n")
    path.write_text("".join(lines))
    return path


def start(work: Path, tree: Path, port: int, nsd: int, watch: bool) -> subprocess.Popen[bytes]:
    policy = work / f"rg-{port}.yaml"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{nsd}']\nscoring: true\nquery_log: off\ncontrol_socket: off\n"
        "rate_limit:\n  qps: 0\nlimits:\n  max_inflight: 8192\nworkers: 1\n"
        + ("client_watch:\n  enabled: true\n  action: log\n" if watch else "")  # log: the bench client walks DGA names
    )
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    log = (work / f"rg-{port}.log").open("w")
    return subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=log)


def run_one(proc: subprocess.Popen[bytes], port: int, queries: Path, seconds: float) -> dict[str, float]:
    cpu = C.cpu_seconds(proc.pid)
    result = C.dnsperf(port, queries, seconds)
    used = C.cpu_seconds(proc.pid) - cpu
    done = result.get("completed") or 0
    return {"qps": result.get("qps") or 0.0, "cpu_us": used / done * 1e6 if done else 0.0, "completed": done}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", type=Path, default=None, help="another checkout: its watch measured alongside")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "watch_e2e.md")
    a = p.parse_args()
    rng = random.Random(7)
    work = Path(tempfile.mkdtemp(prefix="rg-watch-e2e-"))
    files = C.query_files(work, 100_000, rng)
    base = C.benign_names(10_000, random.Random(8))
    misses = [misses_file(work / f"misses-{r}.txt", 100_000, base, random.Random(100 + r)) for r in range(a.rounds)]
    targets = {"(d) watch off": (ROOT, False), "(g) watch on": (ROOT, True)}
    if a.before is not None:
        targets["(g0) watch on, before"] = (a.before.resolve(), True)
    ports = {name: C.free_port() for name in targets}
    nsd_port = C.free_port()
    procs = [C.start_nsd(work, nsd_port)]
    runs: dict[str, dict[str, list[dict[str, float]]]] = {t: {"hits": [], "misses": []} for t in targets}
    try:
        C.wait_ready(nsd_port)
        servers = {}
        for name, (tree, watch) in targets.items():
            servers[name] = start(work, tree, ports[name], nsd_port, watch)
            procs.append(servers[name])
        for name in targets:
            C.wait_ready(ports[name], 60)
            subprocess.run(  # hits: every name asked once first (the steady state of an office)
                ["dnsperf", "-s", "127.0.0.1", "-p", str(ports[name]), "-d", str(work / "warm.txt"), "-n", "1"],
                capture_output=True,
                timeout=120,
            )
        for r in range(a.rounds):
            order = list(targets) if r % 2 == 0 else list(reversed(targets))  # drift hits every target alike
            for name in order:
                runs[name]["hits"].append(run_one(servers[name], ports[name], files["hits"], a.seconds))
                runs[name]["misses"].append(run_one(servers[name], ports[name], misses[r], a.seconds))
            shown = (f"{n} {runs[n]['hits'][-1]['qps']:.0f}/{runs[n]['misses'][-1]['qps']:.0f}" for n in targets)
            print(f"round {r + 1}: " + ", ".join(shown), flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    write(a, runs, targets)


def summary(runs: dict[str, dict[str, list[dict[str, float]]]], name: str, kind: str) -> tuple[float, float]:
    """Summed QPS, and CPU us per query over all of the rounds' queries."""
    rows = runs[name][kind]
    done = sum(r["completed"] for r in rows)
    return sum(r["qps"] for r in rows), sum(r["cpu_us"] * r["completed"] for r in rows) / done if done else 0.0


def write(a: argparse.Namespace, runs: dict[str, Any], targets: dict[str, Any]) -> None:
    load = os.getloadavg()[0]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"# Client watch cost end to end (bench/watch_e2e.py), {stamp}",
        "",
        f"`python bench/watch_e2e.py{' --before ' + str(a.before) if a.before else ''} --rounds {a.rounds} "
        f"--seconds {a.seconds:g}`: {a.rounds} rounds alternated, {a.seconds:g} s of dnsperf per kind and round, "
        f"{os.cpu_count()} cores, load average at the end {load:.1f}. Query log off, scoring on, `client_watch` "
        "action log (the bench client walks DGA-looking names and stays flagged: the worst case).",
        "",
        "| target | hits QPS (sum) | hits CPU us/query | misses QPS (sum) | misses CPU us/query |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in targets:
        hq, hc = summary(runs, name, "hits")
        mq, mc = summary(runs, name, "misses")
        lines.append(f"| {name} | {hq:.0f} | {hc:.1f} | {mq:.0f} | {mc:.1f} |")
    head = "| ratio to (d), same run | hits QPS | hits CPU/query (d)/(x) | misses QPS | misses CPU/query (d)/(x) |"
    lines += ["", head]
    lines.append("|---|---:|---:|---:|---:|")
    dh, dhc = summary(runs, "(d) watch off", "hits")
    dm, dmc = summary(runs, "(d) watch off", "misses")
    for name in list(targets)[1:]:
        hq, hc = summary(runs, name, "hits")
        mq, mc = summary(runs, name, "misses")
        lines.append(f"| {name} | {hq / dh:.3f} | {dhc / hc:.3f} | {mq / dm:.3f} | {dmc / mc:.3f} |")
    lines += ["", "Per round (QPS hits/misses):", ""]
    for r in range(a.rounds):
        row = ", ".join(f"{n} {runs[n]['hits'][r]['qps']:.0f}/{runs[n]['misses'][r]['qps']:.0f}" for n in targets)
        lines.append(f"- round {r + 1}: {row}")
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
