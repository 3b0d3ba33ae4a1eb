"""What the shipped scorer does with uniformly random labels: the names users try a DGA filter with.

    python bench/random_labels.py [--before runs/previous/model/default.tflite]

The report measures families (leave-family-out) and the long tail; a user pastes `xkq3vbh7tz.com`.
Uniformly random labels are no DGA family (every real family has its own length, alphabet and
suffixes), so this is a probe, not a target: the share of 2,000 seeded random labels of each shape that
the model sinkholes and logs at its own thresholds, beside the model it replaced when `--before` names
it (a copy of models/ from git history). Writes bench/results/random_labels.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from resolverguard.model import load_model  # noqa: E402
from resolverguard.names import NameParser  # noqa: E402

ALNUM, ALPHA, HEX = string.ascii_lowercase + string.digits, string.ascii_lowercase, "0123456789abcdef"
SHAPES = (  # (name, alphabet, length, suffix)
    ("8 letters or digits, .com", ALNUM, 8, "com"),
    ("10 letters or digits, .com", ALNUM, 10, "com"),
    ("12 letters or digits, .com", ALNUM, 12, "com"),
    ("16 letters or digits, .com", ALNUM, 16, "com"),
    ("8 letters, .ru", ALPHA, 8, "ru"),
    ("12 letters, .net", ALPHA, 12, "net"),
    ("16 hex digits, .com", HEX, 16, "com"),
)
N = 2000


def names(alphabet: str, length: int, suffix: str, rng: random.Random) -> list[str]:
    return ["".join(rng.choice(alphabet) for _ in range(length)) + "." + suffix for _ in range(N)]


def rates(model_path: Path, sets: dict[str, list[str]]) -> tuple[str, dict[str, dict[str, float]]]:
    """The model's version, and per shape the share at or above its sinkhole and log thresholds."""
    model, parser = load_model(model_path), NameParser()
    form, thresholds = model.metadata.input_form, model.metadata.thresholds
    out = {}
    for shape, batch in sets.items():
        score = model.score([parser.model_input(n, form) or "" for n in batch])
        out[shape] = {a: round(float(np.mean(score >= thresholds[a])), 3) for a in ("sinkhole", "log")}
    return model.metadata.model_version, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "default.tflite")
    p.add_argument("--before", type=Path, help="the model it replaced (its default.tflite beside its json)")
    a = p.parse_args()
    rng = random.Random(7)
    sets = {shape: names(alphabet, length, suffix, rng) for shape, alphabet, length, suffix in SHAPES}
    measured = dict(rates(path, sets) for path in (a.model, *([a.before] if a.before else [])))
    head = "| random label | " + " | ".join(f"`{version}`: sinkholed / logged" for version in measured) + " |"
    lines = [head, "|---|" + "---|" * len(measured)]
    for shape in sets:
        cells = [f"{m[shape]['sinkhole']:.3f} / {m[shape]['log']:.3f}" for m in measured.values()]
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = (
        f"# Uniformly random labels (bench/random_labels.py, {when}, {N} seeded labels per shape)\n\n"
        "Share sinkholed / logged at each model's own thresholds. A probe, not a target: no DGA family is\n"
        "uniformly random (models/REPORT.md measures the families).\n\n" + "\n".join(lines) + "\n"
    )
    results = ROOT / "bench" / "results"
    (results / "random_labels.md").write_text(md)
    (results / "random_labels.json").write_text(json.dumps({"when": when, "rates": measured}, indent=2))
    print(md)


if __name__ == "__main__":
    main()
