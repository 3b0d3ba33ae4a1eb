"""Where the standalone server's CPU goes on never-seen names: py-spy on (d) under compare's miss load.

    python bench/miss_spy.py [--seconds 6] [--rate 1000] [--tree PATH] [--out NAME]

Starts NSD and resolverguard (d) (compare.start_resolverguard: full chain, shipped model, query
log off) from `--tree`, drives it at its peak with dnsperf on never-seen names (compare's
miss_names, as its misses file) and samples it with `py-spy record --format raw` meanwhile (the
GIL-holding thread only: idle waits in epoll are not CPU). Prints each function's share of the
samples, self and inclusive, to bench/results/<out>.md (the collapsed stacks stay in the work folder).
"""

from __future__ import annotations

import argparse
import collections
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as C  # noqa: E402

SPY = Path(sys.executable).with_name("py-spy")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--tree", type=Path, default=C.ROOT)
    p.add_argument("--out", default="miss_spy")
    p.add_argument("--top", type=int, default=45)
    p.add_argument(
        "--all",
        action="store_true",
        help="every non-idle sample, not only the GIL holder's (system calls and native code that release the GIL)",
    )
    p.add_argument("--native", action="store_true", help="py-spy --native: C frames too")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-spy-"))
    rng = random.Random(5)
    names = C.miss_names(C.benign_names(10_000, rng), int(a.seconds * 40_000), rng, "y")
    misses = work / "misses.txt"
    misses.write_text("".join(f"{n} A\n" for n in names))
    nsd, port = C.free_port(), C.free_port()
    load = C.load_average()
    procs = [C.start_nsd(work, nsd)]
    raw = work / "stacks.txt"
    try:
        C.wait_ready(nsd)
        C.ROOT = a.tree.resolve()  # start_resolverguard runs `-m resolverguard` from C.ROOT
        procs.append(C.start_resolverguard(work, port, nsd, True))
        C.wait_ready(port)
        time.sleep(2.0)
        spy = subprocess.Popen(
            [
                str(SPY),
                "record",
                "-p",
                str(procs[-1].pid),
                "-r",
                str(a.rate),
                "-d",
                str(int(a.seconds)),
                "--format",
                "raw",
                "-o",
                str(raw),
                *(["--nonblocking"] if a.all else ["--gil"]),
                *(["--native"] if a.native else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)
        peak = C.dnsperf(port, misses, a.seconds)
        spy.wait(60)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    text = raw.read_text()
    head = f"load before {load}, after {C.load_average()}; (d) on misses {peak.get('qps')} qps under py-spy"
    out = f"# py-spy on (d) under never-seen names (bench/miss_spy.py)\n\n{head}\n\n{summary(text, a.top)}\n"
    (C.ROOT / "bench" / "results" / f"{a.out}.md").write_text(out)
    print(out)
    print(f"collapsed stacks: {raw}")


def summary(text: str, top: int) -> str:
    """Each function's share of the samples: self (leaf) and inclusive (anywhere on the stack)."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " " + f.split("/")[-1].split(":")[0].rstrip(")") for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            anywhere[frame] += n
    lines = [f"{total} samples", "| function | self % | inclusive % |", "|---|---:|---:|"]
    for frame, n in anywhere.most_common(top):
        lines.append(f"| {frame} | {100 * own[frame] / total:.1f} | {100 * n / total:.1f} |")
    lines.append("\nself, top:")
    for frame, n in own.most_common(top):
        lines.append(f"| {frame} | {100 * n / total:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
