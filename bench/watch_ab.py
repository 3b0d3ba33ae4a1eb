"""The client watch's end-to-end cost, two checkouts against each other in one run: CPU per answered
query of `resolverguard serve` servers side by side, each round's runs back to back in turn.

    python bench/watch_ab.py d g@/path/to/before/checkout g [--rounds 3] [--seconds 4]

A target is `d` (the full chain, watch off) or `g` (the same with `client_watch: {enabled: true,
action: log}`), `@DIR` to run another checkout's resolverguard (e.g. `git archive REV | tar -x -C
DIR`; default this one). As `compare.py --watch`: NSD upstream, a prelude of DGA-looking names that
flags the bench client, Zipf hits (every name asked once first) and never-seen misses (names of
their own per round), dnsperf for `--seconds` per target and kind; the order of the targets is
reversed every other round. Why: on the shared 2-core machine (load 3-7) compare.py's (g)/(d)
moves by more than the 5% it is meant to judge; two versions of (g) measured in the same rounds
show what a change did. Prints CPU us per answered query per target and kind (summed rounds) and
the load average; results to stdout only. Bounded: dnsperf -l, names per round.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compare import ROOT, asked_once, cpu_seconds, dnsperf, free_port, query_files, start_nsd, wait_ready


def start(work: Path, port: int, upstream: int, target: str) -> subprocess.Popen[bytes]:
    kind, _, tree = target.partition("@")
    kind, *extra = kind.split("+")  # g+known_names=1000: one more client_watch key (as bench/watch_grind.py)
    source = Path(tree).resolve() if tree else ROOT
    policy = work / f"rg-{port}.yaml"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream}']\nscoring: true\nquery_log: off\n"
        "rate_limit:\n  qps: 0\nlimits:\n  max_inflight: 8192\nworkers: 1\n"
        + ("client_watch:\n  enabled: true\n  action: log\n" if kind == "g" else "")
        + "".join(f"  {k}: {v}\n" for k, _, v in (e.partition("=") for e in extra))
    )
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen", f"127.0.0.1:{port}"]
    env = dict(os.environ, PYTHONPATH=str(source))
    log = (work / f"rg-{port}.log").open("w")
    return subprocess.Popen(cmd, cwd=source, env=env, stdout=subprocess.DEVNULL, stderr=log)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("targets", nargs="+", help="d or g, optionally @DIR (another checkout)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0)
    a = p.parse_args()
    kinds = [t.partition("@")[0].split("+")[0] for t in a.targets]
    if any(k not in ("d", "g") for k in kinds) or len(set(a.targets)) != len(a.targets):
        sys.exit("targets: d or g, each optionally @DIR, each once")
    work = Path(tempfile.mkdtemp(prefix="rg-watchab-"))
    files = query_files(work, 200_000, random.Random(7), int(a.seconds * 20_000) * (a.rounds + 1))
    names = files["misses"].read_text().splitlines(keepends=True)
    share = len(names) // (a.rounds + 1)
    chunks = [names[i * share : (i + 1) * share] for i in range(a.rounds + 1)]
    (work / "prelude.txt").write_text("".join(chunks[0][:2000]))  # DGA-looking: flags (g)'s client
    ports = {t: free_port() for t in a.targets}
    upstream = free_port()
    procs = [start_nsd(work, upstream)]
    totals: dict[str, dict[str, list[float]]] = {t: {"hits": [0.0, 0.0], "misses": [0.0, 0.0]} for t in a.targets}
    before = os.getloadavg()
    try:
        wait_ready(upstream)
        servers = {t: start(work, ports[t], upstream, t) for t in a.targets}
        procs += servers.values()
        for t in a.targets:
            wait_ready(ports[t])
            asked_once(ports[t], work / "prelude.txt")
        time.sleep(0.5)
        for r in range(a.rounds):
            misses = work / f"misses-{r}.txt"
            misses.write_text("".join(chunks[r + 1]))
            order = a.targets if r % 2 == 0 else a.targets[::-1]
            for kind, path in (("hits", files["hits"]), ("misses", misses)):
                for t in order:
                    if kind == "hits":
                        asked_once(ports[t], files["hits"].with_name("warm.txt"))
                    cpu = cpu_seconds(servers[t].pid)
                    run: dict[str, Any] = dnsperf(ports[t], path, a.seconds)
                    totals[t][kind][0] += cpu_seconds(servers[t].pid) - cpu
                    totals[t][kind][1] += run["completed"] or 0
            print(f"round {r + 1} done", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    after = os.getloadavg()
    print(f"load average before {' '.join(f'{x:.2f}' for x in before)}, after {' '.join(f'{x:.2f}' for x in after)}")
    print("| target | hits CPU us | misses CPU us |\n|---|---:|---:|")
    for t in a.targets:
        per = {k: 1e6 * cpu / max(1.0, n) for k, (cpu, n) in totals[t].items()}
        print(f"| {t} | {per['hits']:.2f} | {per['misses']:.2f} |")


if __name__ == "__main__":
    main()
