#!/usr/bin/env bash
# The training runs behind models/REPORT.md, in the order they were run on a 2-core CPU.
# Each writes runs/<name>/{model.keras,history.csv,scores.npz,run.json}; a finished run is skipped.
# STAGE=experiments stops after the leave-family-out experiments (the sweep a configuration is
# chosen by); the default runs everything `python -m convert all` needs.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH=. TF_CPP_MIN_LOG_LEVEL=2
run() { local name=$1; shift; [ -f "runs/$name/scores.npz" ] && return 0
        echo "== $name $(date -u +%T)"; nice -n 10 $PY -m convert.train --out "runs/$name" "$@" > "runs/$name.log" 2>&1; echo "   rc=$? $(date -u +%T)"; }
mkdir -p runs
# Experiments: each configuration trained 5 times, once per fold of families held out, on the budget
# protocol (120k training names, 4 epochs, CNN width 64: ~1.5 min per fold on 2 cores), and compared
# by leave-family-out recall at the sinkhole threshold (python -m convert.experiments).
B="--max-train 120000 --epochs 4 --width 64 --patience 2"
exp() { local name=$1; shift; for k in 0 1 2 3 4; do run "x-$name-lfo$k" --holdout-fold "$k" $B "$@"; done; }
SUF="--form registrable --suffix-dropout 0.5"
exp label --arch cnn
exp suffix --arch cnn $SUF
exp suffix-fam --arch cnn $SUF --balance family
[ "${STAGE:-all}" = experiments ] && exit 0
