"""The shipped scorer's cost per name: the CNN + linear ensemble against the CNN alone, in one run.

    python bench/ensemble.py [--seconds 1.5]

Since #13 session 7 `models/default.tflite` ships as an ensemble (`resolverguard.model.EnsembleScorer`):
the linear n-gram stage runs on every name, and only names at or above its gate reach the CNN. What a
name costs therefore depends on the name: popular labels (`resolverguard/data/popular-labels.txt.gz`,
under `.com`; about one in twenty reaches the CNN) and random alphanumeric labels (most reach it)
are timed apart, at batch 1 (a lone miss) and 64, against the same `.tflite` alone (`TFLiteScorer`).
In turns, best of 3 rounds, one interpreter thread. Writes bench/results/ensemble.{md,json}; the
report (models/REPORT.md) reads the ratios.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import string
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resolverguard.model import EnsembleScorer, TFLiteScorer, load_metadata, metadata_path  # noqa: E402


def popular(n: int, rng: random.Random) -> list[str]:
    with gzip.open(ROOT / "resolverguard" / "data" / "popular-labels.txt.gz", "rt", encoding="ascii") as f:
        labels = [line.strip() for line in f if line.strip()]
    return [f"{label}.com" for label in rng.sample(labels, n)]


def random_names(n: int, rng: random.Random) -> list[str]:
    alphabet = string.ascii_lowercase + string.digits
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(8, 20))) + ".com" for _ in range(n)]


def per_name(score: Callable[[Sequence[str]], object], names: list[str], batch: int, seconds: float) -> float:
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        i = (n * 7919) % (len(names) - batch)
        score(names[i : i + batch])
        n += batch
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--model", type=Path, default=ROOT / "models" / "default.tflite")
    a = p.parse_args()
    meta = load_metadata(metadata_path(a.model))
    if not (meta.extra or {}).get("ensemble"):
        raise SystemExit(f"{a.model}: not an ensemble (no 'ensemble' in its metadata)")
    ensemble, cnn = EnsembleScorer(a.model, meta), TFLiteScorer(a.model, meta)
    rng = random.Random(3)
    sets = {"popular labels": popular(4000, rng), "random labels": random_names(4000, rng)}
    best: dict[tuple[str, str, int], float] = {}
    for _ in range(3):
        for set_name, names in sets.items():
            for scorer_name, scorer in (("ensemble", ensemble), ("cnn", cnn)):
                for batch in (1, 64):
                    us = per_name(scorer.score, names, batch, a.seconds / 4)
                    key = (set_name, scorer_name, batch)
                    best[key] = min(best.get(key, float("inf")), us)
    rows = []
    for set_name, names in sets.items():
        reach = float((ensemble.linear_logits(names) >= ensemble.gate).mean())
        row = {"names": set_name, "reach_cnn": round(reach, 3)}
        for batch in (1, 64):
            e, c = best[(set_name, "ensemble", batch)], best[(set_name, "cnn", batch)]
            row |= {
                f"ensemble_us_b{batch}": round(e, 1),
                f"cnn_us_b{batch}": round(c, 1),
                f"ratio_b{batch}": round(e / c, 2),
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ensemble.json").write_text(json.dumps({"model": meta.model_version, "rows": rows}, indent=2))
    head = list(rows[0])
    lines = [
        f"# The shipped ensemble against the CNN alone (bench/ensemble.py, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `{meta.model_version}`, one thread, best of 3 rounds)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows),
    ]
    (out / "ensemble.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
