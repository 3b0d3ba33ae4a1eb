"""Where the Unbound module's never-seen names spend their time: CPU per process and py-spy profiles.

    python bench/module_profile.py [--threads 2] [--seconds 8] [--script PATH] [--out DIR]

Why (issue #17): with 2 threads the module answered fewer never-seen names than with 1 while plain
Unbound gained. This starts NSD, the verdict service and Unbound with the module (or `--script`, e.g.
bench/noop_module.py), drives it with dnsperf at its peak on never-seen names, and meanwhile records
each process's CPU seconds (/proc) and, with `--pyspy`, py-spy profiles (--native, --idle: the C
frames show a thread waiting for the GIL) of Unbound and the service into DIR.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compare import (
    MODULE,
    cpu_seconds,
    dnsperf,
    free_port,
    load_average,
    query_files,
    start_nsd,
    start_unbound,
    start_verdicts,
    wait_ready,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--script", type=Path, default=MODULE)
    p.add_argument("--pyspy", action="store_true")
    p.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="rg-prof-")))
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-prof-work-"))
    files = query_files(work, 1000, random.Random(7), int(a.seconds * 60_000))
    nsd_port, port = free_port(), free_port()
    procs = [start_nsd(work, nsd_port)]
    service = None
    try:
        wait_ready(nsd_port)
        sock = None
        if a.script == MODULE:
            service, sock = start_verdicts(work, "prof")
            procs.append(service)
        procs.append(start_unbound(work, port, nsd_port, "", a.threads, verdicts=sock, script=a.script))
        unbound = procs[-1]
        wait_ready(port)
        time.sleep(1.0)
        named = {"unbound": unbound.pid, "nsd": procs[0].pid, **({"service": service.pid} if service else {})}
        before = {k: cpu_seconds(v) for k, v in named.items()}
        spies = []
        if a.pyspy:
            a.out.mkdir(parents=True, exist_ok=True)
            for key in ("unbound", "service") if service else ("unbound",):
                cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(named[key]),
                       "--duration", str(int(a.seconds)), "--rate", "200", "--format", "raw", "--idle",
                       "--threads", "--native", "-o", str(a.out / f"{key}-{a.threads}.txt")]  # fmt: skip
                spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        load = load_average()
        got = dnsperf(port, files["misses"], a.seconds)
        cpu = {k: round(cpu_seconds(v) - before[k], 2) for k, v in named.items()}
        for spy in spies:
            spy.wait(60)
        print(f"threads {a.threads} script {a.script.name}: misses {got['qps']} qps, cpu s {cpu}, load {load}")
        log = (work / f"unbound-{port}.log").read_text(errors="replace")[-2000:]
        print(log)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    print(f"profiles in {a.out}")


if __name__ == "__main__":
    main()
