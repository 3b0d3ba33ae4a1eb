#!/usr/bin/env bash
# The training runs behind models/REPORT.md, in the order they were run on a 2-core CPU.
# Each writes runs/<name>/{model.keras,history.csv,scores.npz,run.json}; a finished run is skipped.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH=. TF_CPP_MIN_LOG_LEVEL=2
run() { local name=$1; shift; [ -f "runs/$name/scores.npz" ] && return 0
        echo "== $name $(date -u +%T)"; $PY -m convert.train --out "runs/$name" "$@" > "runs/$name.log" 2>&1; echo "   rc=$? $(date -u +%T)"; }
mkdir -p runs
run cnn --arch cnn                                   # the candidate default, all training rows
# Architecture comparison: fold 0's families held out, the same 150k training rows for each.
run cnn-lfo0 --arch cnn --holdout-fold 0 --max-train 150000 --epochs 6
run cnn_lstm-lfo0 --arch cnn_lstm --holdout-fold 0 --max-train 150000 --epochs 4
run lstm-lfo0 --arch lstm --holdout-fold 0 --max-train 150000 --epochs 4
run bilstm-lfo0 --arch bilstm --holdout-fold 0 --max-train 150000 --epochs 4
# Leave-family-out recall of the default architecture over all folds, and the input-form experiment.
for k in 1 2 3 4; do run cnn-lfo$k --arch cnn --holdout-fold $k --max-train 150000 --epochs 6; done
run cnn-registrable-lfo0 --arch cnn --form registrable --holdout-fold 0 --max-train 150000 --epochs 6
# The family head (a softmax over DGA families, for the family_hint in the query log).
[ -f runs/family/family.tflite ] || { echo "== family $(date -u +%T)"; $PY -m convert.family --out runs/family > runs/family.log 2>&1; echo "   rc=$? $(date -u +%T)"; }
# Hand-picked names through both input forms (the input-form section of the report).
$PY -m convert.probe > runs/probe.md 2>/dev/null
