"""The shipped ensemble's cost for a batch of n names: its batch path against n lone names, in process.

    python bench/lone_vs_batch.py [--rounds 200] [--benign FILE]

Why (#17): `steps/score.py` scores batches under SINGLES_BELOW (8) one name at a time, a crossover
measured before the C linear stage made a lone name ~2x cheaper; this measures where one by one stops
paying now, on random labels (they all reach the CNN) and on benign names (most stop at the linear
stage), each kind's batch path first and then the same names one by one. Writes
bench/results/lone_vs_batch.md.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import string
import time
from pathlib import Path

from resolverguard.model import load_model

ROOT = Path(__file__).resolve().parent.parent
SIZES = (2, 4, 8, 16, 32, 48, 64)


def native_built() -> bool:
    try:
        import resolverguard._ngramc  # noqa: F401
    except ImportError:
        return False
    return True


def benign_names(path: Path, count: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:  # type: ignore[operator]
        names = [line.strip() for _, line in zip(range(count), handle, strict=False) if line.strip()]
    return names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--benign", type=Path, default=ROOT.parent / "shared" / "data" / "benign.txt.gz")
    args = p.parse_args()
    model, rng = load_model(), random.Random(1)
    batch_path = getattr(model, "score_batch", model.score)  # (the CNN alone has only one path)
    alphabet = string.ascii_lowercase + string.digits
    benign = benign_names(args.benign, 50_000) if args.benign.exists() else []

    def random_labels(n: int) -> list[str]:
        return ["".join(rng.choice(alphabet) for _ in range(rng.randint(8, 16))) + ".com" for _ in range(n)]

    kinds = {"random labels": random_labels}
    if benign:
        kinds["benign names"] = lambda n: rng.sample(benign, n)
    lines = [
        "# A batch of n names: the ensemble's batch path against n lone names (bench/lone_vs_batch.py)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.2f}, "
        f"C linear stage {'built' if native_built() else 'not built'}, {args.rounds} batches per size, us per batch.",
        "",
        "| names | n | batch path p50 | one by one p50 | batch path p99 | one by one p99 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, make in kinds.items():
        for n in SIZES:
            sets = [make(n) for _ in range(args.rounds)]
            whole, lone = [], []
            for texts in sets:
                t0 = time.perf_counter()
                batch_path(texts)
                whole.append(time.perf_counter() - t0)
            for texts in sets:
                t0 = time.perf_counter()
                for text in texts:
                    model.score([text])
                lone.append(time.perf_counter() - t0)
            whole.sort()
            lone.sort()
            mid, high = len(whole) // 2, int(len(whole) * 0.99)
            lines.append(
                f"| {kind} | {n} | {whole[mid] * 1e6:.1f} | {lone[mid] * 1e6:.1f} "
                f"| {whole[high] * 1e6:.1f} | {lone[high] * 1e6:.1f} |"
            )
            print(lines[-1], flush=True)
    out = ROOT / "bench" / "results" / "lone_vs_batch.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
