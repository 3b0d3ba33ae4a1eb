"""Where the query log's CPU per cached answer goes in a real server: the resolver's own process
against its writer process, (d) without the log against (d') with it, under dnsperf on hits.

    python bench/log_split.py [--seconds 4] [--rounds 2]

Why (issue #17): bench/compare.py --log counts the server and its children together: (d') spent
~4.5 us more CPU per hit than (d), while the writer alone (bench/log_hits_cpu.py) spends ~1.6-2.6
us a line and the loop's add and hand-over ~0.5. This reads /proc for each process apart.
Results to bench/results/log_split.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import (  # noqa: E402
    ROOT,
    cpu_seconds,
    dnsperf,
    free_port,
    query_files,
    start_nsd,
    start_resolverguard,
    wait_ready,
)


def own_cpu(pid: int) -> float:
    """One process's user + system CPU seconds (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(proc: Any, port: int, files: dict[str, Path], seconds: float) -> dict[str, float]:
    """A hits run: QPS, and CPU us per answered query of the resolver's process and of the rest."""
    subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(files["hits"].with_name("warm.txt")), "-n", "1"],
        capture_output=True,
        timeout=120,
    )
    total, own = cpu_seconds(proc.pid), own_cpu(proc.pid)
    peak = dnsperf(port, files["hits"], seconds)
    total, own = cpu_seconds(proc.pid) - total, own_cpu(proc.pid) - own
    done = max(1, peak["completed"] or 0)
    server, children = round(own / done * 1e6, 2), round((total - own) / done * 1e6, 2)
    return {"qps": peak["qps"], "server_us": server, "children_us": children}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-split-"))
    files = query_files(work, 200_000, random.Random(7), 1000)
    ports = {k: free_port() for k in ("nsd", "d", "d'")}
    nsd = start_nsd(work, ports["nsd"])
    procs = [nsd]
    runs: dict[str, list[dict[str, float]]] = {"d": [], "d'": []}
    load_before = os.getloadavg()
    try:
        wait_ready(ports["nsd"])
        targets = {
            "d": start_resolverguard(work, ports["d"], ports["nsd"], True),
            "d'": start_resolverguard(work, ports["d'"], ports["nsd"], True, log=True, writer="process"),
        }
        procs += targets.values()
        for key in targets:
            wait_ready(ports[key])
        time.sleep(5.0)  # both servers' start-up (models, the writer's family head) done before any run
        for _ in range(a.rounds):
            for key, proc in targets.items():
                runs[key].append(run(proc, ports[key], files, a.seconds))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    load_after = os.getloadavg()
    out = ROOT / "bench" / "results"
    (out / "log_split.json").write_text(json.dumps({"runs": runs, "load": [load_before, load_after]}, indent=2) + "\n")
    lines = [
        f"# Query log CPU split (bench/log_split.py), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, hits only",
        "",
        f"Load average before {' '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{' '.join(f'{x:.2f}' for x in load_after)}; {a.rounds} rounds of {a.seconds:g} s in turn.",
        "",
        "| target | QPS | resolver process CPU us per hit | children (writer) CPU us per hit |",
        "|---|---:|---:|---:|",
    ]
    for key, values in runs.items():
        for r in values:
            lines.append(f"| ({key}) | {r['qps']:.0f} | {r['server_us']} | {r['children_us']} |")
    (out / "log_split.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
