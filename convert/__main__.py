"""`python -m convert all`: reproduce the shipped model end to end.

    python -m convert all      # train every run (convert/sweep.sh), quantize, ship, write the report

Steps already done are skipped (a finished run directory is kept), so an interrupted run resumes.
Each step is also its own command: convert.train, convert.quantize, convert.ship, convert.report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from convert import quantize, report, ship

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN = ROOT / "runs" / "cnn"
VARIANT = "dynamic-int8"


def all_steps() -> None:
    subprocess.run(["bash", str(ROOT / "convert" / "sweep.sh")], check=True, cwd=ROOT)
    for run in sorted((ROOT / "runs").glob("*/scores.npz")):
        if not (run.parent / "tflite" / "parity.json").exists():
            quantize.quantize_run(run.parent)
    ship.ship(DEFAULT_RUN, VARIANT, ROOT / "models" / "default.tflite")
    report.main(["--default", str(DEFAULT_RUN), "--variant", VARIANT, "--out", str(ROOT / "models")])


if __name__ == "__main__":
    if sys.argv[1:] != ["all"]:
        sys.exit(__doc__)
    all_steps()
