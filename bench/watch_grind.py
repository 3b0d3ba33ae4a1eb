"""The client watch's cost on never-seen names in instructions and simulated cache misses, not time.

    python bench/watch_grind.py d g [g@/path/to/other/checkout] [g+known_names=1000] [--warm 60000] [--measured 3000]

Why: this VM has no hardware counters (`perf stat -e cycles,instructions,LLC-load-misses`: "not
supported"), and the CPU time compare.py --watch measures moves by 5-10% from run to run on the
shared 2-core machine, as much as what (g) against (d) is meant to show. Valgrind's callgrind counts
instructions (Ir), data reads and writes, and the misses of a simulated cache (D1, and LL: the last
level) of the server process alone, the same in every run whatever else the machine does.

Each target runs as `bench/watch_ab.py` starts it ((d) the full chain, (g) with `client_watch:
{enabled: true, action: log}`; `@DIR` another checkout; `+key=value` one more `client_watch`
key), under `valgrind --tool=callgrind --instr-atstart=no --cache-sim=yes --LL=1048576,16,64`
(the last level simulated as this AMD EPYC's per-core 1 MB L2: the 32 MB L3 is shared with the
machine's other processes): a prelude of DGA-looking names (flags (g)'s client), `--warm`
never-seen names uncounted (they fill the watch's known names to their 50k bound, so a new name
evicts the oldest, as in a long compare run), then counting switched on (`callgrind_control -i on`)
for `--measured` never-seen names of their own, asked by dnsperf (20 in flight), and the counts
dumped. Prints the counts per answered query per target; the dumps stay in the work folder it names
(`callgrind_annotate --show=Ir,D1mr,DLmr,DLmw cg-t0.out.1`: which functions). Slow (~50x under the counting): run it
niced, outside the benchmark lock (the counts do not depend on the load). Bounded: dnsperf -n 1.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compare import ROOT, free_port, query_files, start_nsd, wait_ready

EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")


def start(work: Path, port: int, upstream: int, target: str, key: str, ll: str) -> subprocess.Popen[bytes]:
    kind, _, tree = target.partition("@")
    kind, *extra = kind.split("+")  # g+known_names=1000: one more client_watch key
    source = Path(tree).resolve() if tree else ROOT
    policy = work / f"rg-{key}.yaml"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream}']\nscoring: true\nquery_log: off\n"
        "rate_limit:\n  qps: 0\nlimits:\n  max_inflight: 8192\nworkers: 1\n"
        + ("client_watch:\n  enabled: true\n  action: log\n" if kind == "g" else "")
        + "".join(f"  {k}: {v}\n" for k, _, v in (e.partition("=") for e in extra))
    )
    grind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--cache-sim=yes", f"--LL={ll}"]
    grind += [f"--callgrind-out-file={work}/cg-{key}.out"]
    cmd = [*grind, sys.executable, "-m", "resolverguard", "serve", "--config", str(policy)]
    cmd += ["--listen", f"127.0.0.1:{port}"]
    env = dict(os.environ, PYTHONPATH=str(source))
    log = (work / f"rg-{key}.log").open("w")
    return subprocess.Popen(cmd, cwd=source, env=env, stdout=subprocess.DEVNULL, stderr=log)


def ask(port: int, names: Path, inflight: int) -> int:
    """Every name of the file asked once; the answered count."""
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(names), "-n", "1", "-q", str(inflight)]
    out = subprocess.run([*cmd, "-t", "30"], capture_output=True, text=True, timeout=3600).stdout
    found = re.search(r"Queries completed:\s+(\d+)", out)
    return int(found.group(1)) if found else 0


def totals(path: Path) -> dict[str, int]:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            counts = [int(x) for x in line.split()[1:]]
            events = next(ln for ln in path.read_text().splitlines() if ln.startswith("events:")).split()[1:]
            return dict(zip(events, counts, strict=False))
    raise RuntimeError(f"no totals in {path}")


def run(
    work: Path, target: str, key: str, upstream: int, files: dict[str, Path], ll: str
) -> tuple[dict[str, float], Path]:
    port = free_port()
    proc = start(work, port, upstream, target, key, ll)
    try:
        wait_ready(port, 600)
        ask(port, files["prelude"], 20)
        ask(port, files["warm"], 50)
        time.sleep(1.0)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], capture_output=True, check=True)
        answered = ask(port, files["measured"], 20)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], capture_output=True, check=True)
    finally:
        proc.terminate()
        proc.wait(120)
    dumps = sorted(work.glob(f"cg-{key}.out.*"), key=lambda p: p.stat().st_mtime)
    counted = totals(dumps[-1])
    per = {e: counted.get(e, 0) / max(1, answered) for e in EVENTS}
    per["answered"] = answered
    return per, dumps[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("targets", nargs="+", help="d or g, optionally @DIR (another checkout)")
    p.add_argument("--warm", type=int, default=60_000)
    p.add_argument("--measured", type=int, default=3_000)
    p.add_argument(
        "--ll", default="1048576,16,64", help="simulated last-level cache (size,ways,line): a core's 1 MB L2 here"
    )
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-watchgrind-"))
    made = query_files(work, 1000, random.Random(7), 2000 + a.warm + a.measured)
    names = made["misses"].read_text().splitlines(keepends=True)
    files = {"prelude": work / "prelude.txt", "warm": work / "warm-misses.txt", "measured": work / "measured.txt"}
    files["prelude"].write_text("".join(names[:2000]))
    files["warm"].write_text("".join(names[2000 : 2000 + a.warm]))
    files["measured"].write_text("".join(names[2000 + a.warm :]))
    upstream = free_port()
    nsd = start_nsd(work, upstream)
    results: dict[str, tuple[dict[str, float], Path]] = {}
    before = os.getloadavg()
    try:
        wait_ready(upstream)
        for i, target in enumerate(a.targets):
            results[target] = run(work, target, f"t{i}", upstream, files, a.ll)
            print(target, {k: round(v, 1) for k, v in results[target][0].items()}, flush=True)
    finally:
        nsd.terminate()
        nsd.wait(10)
    after = os.getloadavg()
    print(f"load average before {' '.join(f'{x:.2f}' for x in before)}, after {' '.join(f'{x:.2f}' for x in after)}")
    print(f"\nper answered never-seen name (callgrind, {a.measured} counted after {a.warm} uncounted); work: {work}\n")
    print("| target | " + " | ".join(EVENTS) + " |\n|---|" + "---:|" * len(EVENTS))
    for target, (per, _) in results.items():
        print(f"| {target} | " + " | ".join(f"{per[e]:,.0f}" for e in EVENTS) + " |")


if __name__ == "__main__":
    main()
