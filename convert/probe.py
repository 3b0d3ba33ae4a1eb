"""Score hand-picked names with the fold-0 models of both input forms (label vs label.suffix).

    python -m convert.probe > runs/probe.md      (included in models/REPORT.md by convert.report)

The names are the cases the random split cannot show: home servers under dynamic-DNS providers,
small businesses on cheap TLDs, long-tail ccTLD names, compound-word names, and two obvious DGA
names for contrast. Each score is followed by the action at that fold model's own thresholds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convert.data import InputForm, NameParser
from convert.evaluate import DEFAULT_ACTIONS, Scores
from convert.experiments import CHOSEN
from resolverguard.encoding import NameEncoder

NAMES = [
    "myhome.ddns.net",
    "nextcloud-mueller.dyndns.org",
    "familienas.duckdns.org",
    "johnsmith.hopto.org",
    "mybakery.biz",
    "heavyduty.info",
    "bestpizzaberlin.de",
    "meiwasuisan.jp",
    "ujjwaldubey.in",
    "attijariwafa.ma",
    "kindergarten-sonnenschein.de",
    "uni-heidelberg.de",
    "google.com",
    "xkq3vbh7tzpq.com",
    "0o21xilej5pqpk.ddns.net",
]
RUNS = {
    "label": (Path("runs/x-label-lfo0"), InputForm.LABEL),
    f"label.suffix ({CHOSEN})": (Path(f"runs/{CHOSEN}-lfo0"), InputForm.REGISTRABLE),
}


def main() -> None:
    import keras

    from convert.quantize import logit_model

    parser, encoder, columns = NameParser(), NameEncoder(), {}
    for name, (run, form) in RUNS.items():
        if not (run / "model.keras").exists():
            continue
        model = logit_model(keras.models.load_model(run / "model.keras"))
        z = model.predict(encoder.encode([parser.model_input(n, form) or "" for n in NAMES]), verbose=0).ravel()
        p = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
        s = Scores.load(run, "logit")
        thresholds = s.thresholds()
        named = {action: thresholds[n] for action, n in DEFAULT_ACTIONS.items()}
        columns[name] = [f"{v:.3f} {_action(v, named)}" for v in p]
    print("| name | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for i, n in enumerate(NAMES):
        print(f"| `{n}` | " + " | ".join(columns[c][i] for c in columns) + " |")


def _action(score: float, thresholds: dict[str, float]) -> str:
    return "**sinkhole**" if score >= thresholds["sinkhole"] else "*log*" if score >= thresholds["log"] else "pass"


if __name__ == "__main__":
    main()
