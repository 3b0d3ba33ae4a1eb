"""The shipped scorer's CPU per name over the batch sizes a busy verdict service sees, this checkout
against another, in the same run.

    python bench/scorer_batches.py BASELINE-CHECKOUT [--rounds 6] [--names 30000] [--out scorer_batches]

Why (issue #17): at peak the Unbound verdict service's micro-batches range from 1 to ~60 names
(`SIZES`, counted in `MicroBatcher.flush` during `bench/module_profile.py --threads 1 --seconds 6`,
2026-12-04: 12.9k never-seen names/s, 4,735 batches), and one LiteRT interpreter resized to each new
size (`resize_tensor_input` + `allocate_tensors`) paid 4-22 us a batch, twice when a batch fell
between lone names. Each round runs both checkouts in turn (order alternating), each in a fresh
process: random-looking names (every one reaches the CNN), batch sizes drawn from `SIZES`, through
`steps.score.batch_scorer`'s scoring function (lone names below `SINGLES_BELOW`, as the service
does), CPU time (process_time) per name after a warm-up. Writes bench/results/OUT.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# batch size -> batches (see the docstring)
SIZES = {1: 853, 2: 348, 3: 499, 4: 318, 5: 204, 6: 188, 7: 226, 8: 208, 9: 187, 10: 164, 11: 117, 12: 104,
         13: 101, 14: 73, 15: 78, 16: 80, 17: 98, 18: 81, 19: 83, 20: 87, 21: 91, 22: 82, 23: 84, 24: 71,
         25: 51, 26: 53, 27: 31, 28: 35, 29: 28, 30: 16, 31: 13, 32: 15, 33: 11, 34: 6, 35: 6, 36: 5, 37: 10,
         38: 5, 39: 4, 40: 1, 41: 4, 42: 2, 43: 1, 44: 2, 45: 1, 47: 2, 51: 1, 52: 1, 55: 3, 56: 1, 57: 2}  # fmt: skip

# One side of a round, run with the checkout first on sys.path: prints CPU microseconds per name.
SIDE = r"""
import json, random, sys, time
sys.path.insert(0, sys.argv[1])
from resolverguard.model import load_model
from resolverguard.steps.score import batch_scorer
seed, total, sizes = int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
scores = batch_scorer(load_model()).run
rng = random.Random(seed)
alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
names = ["".join(rng.choice(alphabet) for _ in range(rng.randint(8, 16))) for _ in range(total)]
counts = [int(k) for k in sizes], list(sizes.values())
batches, at = [], 0
while at < total:
    k = rng.choices(*counts)[0]
    batches.append(names[at : at + k])
    at += k
for batch in batches[:200]:  # warm-up: every interpreter made, caches filled
    scores(batch)
start = time.process_time()
for batch in batches:
    scores(batch)
print(json.dumps({"us_per_name": (time.process_time() - start) / total * 1e6, "batches": len(batches)}))
"""


def side(checkout: Path, seed: int, names: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", SIDE, str(checkout), str(seed), str(names), json.dumps(SIZES)],
        capture_output=True, text=True, check=True, cwd=checkout,
    )  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1])["us_per_name"])


def commit(checkout: Path) -> str:
    """The checkout's commit, with "+" when its tracked files differ from it."""
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(checkout), "diff", "--quiet", "HEAD"], capture_output=True)
    return head.stdout.strip() + ("+" if dirty.returncode else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("baseline", type=Path)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--names", type=int, default=30_000)
    p.add_argument("--out", default="scorer_batches")
    a = p.parse_args()
    sides = {"this": ROOT, "baseline": a.baseline.resolve()}
    rows: list[dict[str, float]] = []
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    for r in range(a.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        row = {name: side(sides[name], r, a.names) for name in order}
        row["ratio"] = row["this"] / row["baseline"]
        rows.append(row)
        print(f"round {r}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    median = {k: statistics.median(row[k] for row in rows) for k in ("this", "baseline", "ratio")}
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    commits = {name: commit(path) for name, path in sides.items()}
    results = {"when": when, "commits": commits, "names": a.names, "rounds": rows, "median": median,
               "load_before": load_before, "load_after": load_after}  # fmt: skip
    out = ROOT / "bench" / "results" / a.out
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"# The shipped scorer over a busy service's batch sizes (bench/scorer_batches.py, {when})",
        "",
        f"This checkout ({commits['this']}) against {commits['baseline']}, {a.rounds} rounds of {a.names} "
        "random-looking names each, "
        f"CPU microseconds per name; load average before {' '.join(load_before)}, after {' '.join(load_after)}.",
        "",
        "| round | this | baseline | this / baseline |",
        "|---|---|---|---|",
        *(f"| {i} | {r['this']:.2f} | {r['baseline']:.2f} | {r['ratio']:.3f} |" for i, r in enumerate(rows)),
        f"| median | {median['this']:.2f} | {median['baseline']:.2f} | **{median['ratio']:.3f}** |",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.md")


if __name__ == "__main__":
    main()
