"""`python -m convert all`: reproduce the shipped model end to end.

    python -m convert all      # train every run (convert/sweep.sh), quantize, ship, write the report
    python -m convert finish   # the steps after training: quantize, ship, gate, family head, report

Steps already done are skipped (a finished run directory is kept), so an interrupted run resumes.
`finish` is for when the runs were trained apart (`STAGE=ship bash convert/sweep.sh` on a short CPU
budget): the report then carries what was not rerun from the report it replaces, labelled.
Each step is also its own command: convert.train, convert.quantize, convert.ship, convert.report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from convert import gate, quantize, report, ship

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN = ROOT / "runs" / "cnn"
VARIANT = "dynamic-int8"


def all_steps() -> None:
    subprocess.run(["bash", str(ROOT / "convert" / "sweep.sh")], check=True, cwd=ROOT)
    finish()


def finish() -> None:
    """Everything `all` does after training, on the runs that exist."""
    if not (DEFAULT_RUN / "tflite" / "parity.json").exists():
        quantize.quantize_run(DEFAULT_RUN)  # every variant, with parity
    for run in (ROOT / r for r in report.COMPARE.values()):  # size and speed for the comparison table
        if (run / "scores.npz").exists() and not (run / "tflite" / "parity.json").exists():
            quantize.quantize_run(run, (VARIANT,))
    # The CNN + linear stage ensemble (#13 session 7) when the linear stage of the same split was trained.
    linear = ROOT / "runs" / "gate" if (ROOT / "runs" / "gate" / "linear.npz").exists() else None
    ship.ship(DEFAULT_RUN, VARIANT, ROOT / "models" / "default.tflite", linear)
    if (ROOT / "runs" / "gate" / "linear.npz").exists():  # the Unbound module's gate (models/default.gate.*)
        gate.export_gate(ROOT / "runs" / "gate", ROOT / "models" / "default.tflite")
    for name in ("family.tflite", "family.json"):  # the family head (convert.family), if it was trained
        if (ROOT / "runs" / "family" / name).exists():
            shutil.copy(ROOT / "runs" / "family" / name, ROOT / "models" / name)
    # The report reads runs/ and bench/results/ relative to the checkout, and writes the run's path
    # into models/eval.json: relative, so the committed file names no machine's directory.
    os.chdir(ROOT)
    report.main(["--default", str(DEFAULT_RUN.relative_to(ROOT)), "--variant", VARIANT, "--out", "models"])


if __name__ == "__main__":
    if sys.argv[1:] not in (["all"], ["finish"]):
        sys.exit(__doc__)
    all_steps() if sys.argv[1] == "all" else finish()
