"""Score hand-picked names with the fold-0 models of both input forms (label vs label.suffix).

    python -m convert.probe > runs/probe.md      (included in models/REPORT.md by convert.report)

The names are the cases the random split cannot show: home servers under dynamic-DNS providers,
small businesses on cheap TLDs, long-tail ccTLD names, and two obvious DGA names for contrast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from convert.data import InputForm, NameParser
from resolverguard.encoding import NameEncoder

NAMES = [
    "myhome.ddns.net",
    "nextcloud-mueller.dyndns.org",
    "familienas.duckdns.org",
    "johnsmith.hopto.org",
    "mybakery.biz",
    "heavyduty.info",
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
    "label": ("runs/cnn-lfo0", InputForm.LABEL),
    "label.suffix": ("runs/cnn-registrable-lfo0", InputForm.REGISTRABLE),
}


def main() -> None:
    import keras

    parser, encoder, columns = NameParser(), NameEncoder(), {}
    for name, (run, form) in RUNS.items():
        model = keras.models.load_model(Path(run) / "model.keras")
        temperature = json.loads((Path(run) / "tflite" / "temperature.json").read_text())["temperature"]
        p = model.predict(encoder.encode([parser.model_input(n, form) or "" for n in NAMES]), verbose=0).ravel()
        p = np.clip(p.astype(np.float64), 1e-12, 1 - 1e-12)
        columns[name] = 1 / (1 + np.exp(-np.log(p / (1 - p)) / temperature))
    print("| name | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for i, n in enumerate(NAMES):
        print(f"| `{n}` | " + " | ".join(f"{columns[c][i]:.3f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
