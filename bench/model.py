"""Model-only speed: names per second in the LiteRT interpreter at batch 1 and batch 64.

    python bench/model.py [--seconds 1.5]

Measures every `.tflite` of models/ (what ships) and, when a training run left them in runs/, every
quantization variant of it (float32, float16, dynamic-int8, full-int8), one interpreter thread,
on the same made-up names, in one run. Writes bench/results/model.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from convert.quantize import microseconds_per_name  # noqa: E402 - after the path is set
from resolverguard.encoding import NameEncoder  # noqa: E402


def models() -> list[Path]:
    shipped = sorted((ROOT / "models").glob("*.tflite"))
    variants = sorted((ROOT / "runs").glob("*/tflite/*.tflite"))
    return shipped + variants


def names(n: int, rng: random.Random) -> list[str]:
    alphabet = string.ascii_lowercase + string.digits
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(5, 20))) for _ in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=1.5)
    a = p.parse_args()
    encoder = NameEncoder()
    x = encoder.encode(names(64, random.Random(3)))
    rows = []
    for path in models():
        content = path.read_bytes()
        b1, b64 = (microseconds_per_name(content, x, batch, a.seconds) for batch in (1, 64))
        rows.append(
            {
                "model": str(path.relative_to(ROOT)),
                "kb": round(len(content) / 1024),
                "us_per_name_batch1": round(b1, 1),
                "us_per_name_batch64": round(b64, 1),
                "names_per_s_batch1": round(1e6 / b1),
                "names_per_s_batch64": round(1e6 / b64),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.json").write_text(json.dumps(rows, indent=2))
    head = list(rows[0]) if rows else []
    lines = [
        f"# Model speed in LiteRT (bench/model.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"one thread, {a.seconds:g} s per figure)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows),
    ]
    (out / "model.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
