#!/usr/bin/env bash
# The training runs behind models/REPORT.md, in the order they were run on a 2-core CPU.
# Each writes runs/<name>/{model.keras,history.csv,scores.npz,run.json}; a finished run is skipped.
# STAGE=experiments stops after the leave-family-out experiments (the sweep a configuration is
# chosen by); STAGE=ship runs only what the shipped model needs (the chosen configuration, the gate, the
# chosen configuration's own folds), STAGE=vetting those and the session-5 cleaning runs: the order to
# train in when CPU is short (each later STAGE run skips what is finished). The default runs everything
# `python -m convert all` needs. NICE (default 10) is the nice level of every training process.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH=. TF_CPP_MIN_LOG_LEVEL=2
run() { local name=$1; shift; [ -f "runs/$name/scores.npz" ] && return 0
        echo "== $name $(date -u +%T)"; nice -n "${NICE:-10}" $PY -m convert.train --out "runs/$name" "$@" > "runs/$name.log" 2>&1; echo "   rc=$? $(date -u +%T)"; }
mkdir -p runs
runng() { local name=$1; shift; [ -f "runs/$name/scores.npz" ] && return 0
          echo "== $name $(date -u +%T)"; nice -n "${NICE:-10}" $PY -m convert.ngram --out "runs/$name" "$@" > "runs/$name.log" 2>&1; echo "   rc=$? $(date -u +%T)"; }
SUF="--form registrable --suffix-dropout 0.5"
NG="--form registrable --suffix-dropout 0.5 --C 0.3"
B="--max-train 120000 --epochs 4 --width 64 --patience 2"
# The chosen configuration (convert.experiments.CHOSEN = suffix, session 6: with the list-level cleaning
# rule, `--cleaning lists`, so its thresholds are calibrated on the vetted pool) on all training names:
# the shipped model.
CHOSEN_ARGS="--arch cnn $SUF --width 64 --cleaning lists"
# The shipped linear stage's configuration per fold and on the random split (the ensemble's linear runs).
tail_linear() {
  for k in 0 1 2 3 4; do runng "s-tail-lfo$k" --holdout-fold "$k" $NG --cleaning lists --shapes 3,4,5,6 --tail-train; done
  runng s-tail-rand $NG --cleaning lists --shapes 3,4,5,6 --tail-train  # (= gate, under the name the ensemble reads)
}
shipped() {
  # Since session 18 the shipped runs train on a quarter of the long tail (--tail-train,
  # convert.splits.with_tail_trained; chosen in session 17 by e-vt-cmean against e-vs-cmean, section
  # "What else was tried for families never seen").
  run cnn $CHOSEN_ARGS --epochs 8 --patience 2 --tail-train
  # The Unbound module's gate (convert/gate.py) and the ensemble's linear stage: on the shipped CNN's own
  # split and cleaning, so its FPR-0.05 gate is calibrated on the pool the CNN's thresholds come from.
  # With shape n-grams since session 15 (python -m convert.shapes: s-shape against v-ng1, e-fs-cmean
  # against e-f1-cmean).
  runng gate $NG --cleaning lists --shapes 3,4,5,6 --tail-train
  # The shipped configuration at the shipped model's size, once per fold (the CNN and the linear stage),
  # and their combination in the shipped scorer's form (convert.shapes.shipped_combination): its own
  # leave-family-out recall.
  for k in 0 1 2 3 4; do run "f-tail-lfo$k" --holdout-fold "$k" $CHOSEN_ARGS --epochs 8 --patience 2 --tail-train; done
  tail_linear
  $PY -m convert.ensemble --cnn f-tail --linear s-tail --how cascade-mean-0.05 --out e-ft-cmean --cnn-rand runs/cnn > /dev/null
}
# Session 5: the list-level cleaning rule (convert/clean.py `vet`, --cleaning lists) under the linear
# stage and the budget CNN, their mean, the same folds (`python -m convert.vetting`, models/REPORT.md).
vetted() {
  # The CNN shipped in sessions 6-17 (without --tail-train) and its folds: the sections of those
  # sessions (idn, shapes, seeds) are built on them.
  run cnn-suffix $CHOSEN_ARGS --epochs 8 --patience 2
  for k in 0 1 2 3 4; do run "f-suffix-lfo$k" --holdout-fold "$k" $CHOSEN_ARGS --epochs 8 --patience 2; done
  for k in 0 1 2 3 4; do runng "v-ng1-lfo$k" --holdout-fold "$k" $NG --cleaning lists; done
  runng v-ng1-rand $NG --cleaning lists
  for k in 0 1 2 3 4; do run "v-suffix-lfo$k" --holdout-fold "$k" --arch cnn $SUF $B --cleaning lists; done
  run v-suffix-rand --arch cnn $SUF $B --cleaning lists
  $PY -m convert.ensemble --cnn v-suffix --linear v-ng1 --how mean --out v-e1-mean > /dev/null
  # Session 14: the budget CNN's seed variance: two more initialisations on the same split, their
  # average alone and with the linear stage (python -m convert.seeds, models/REPORT.md "Seeds").
  for s in 2 3; do for k in 0 1 2 3 4; do
    run "v-suffix-i$s-lfo$k" --holdout-fold "$k" --arch cnn $SUF $B --cleaning lists --init-seed "$s"
  done; done
  $PY -m convert.seeds combine
  # Session 7: the full-size CNN folds with the linear stage (python -m convert.idn, models/REPORT.md);
  # e-f1-cmean is the shipped scorer's form (resolverguard.model.EnsembleScorer).
  for how in mean max cascade-mean-0.05; do
    out=e-f1-${how%-0.05}; out=${out/cascade-mean/cmean}
    $PY -m convert.ensemble --cnn f-suffix --linear v-ng1 --how $how --out "$out" --cnn-rand runs/cnn-suffix > /dev/null
  done
  # Session 15: shape (character-class) n-grams in the linear stage, alone and in the shipped form
  # (python -m convert.shapes, models/REPORT.md "Shape n-grams").
  for k in 0 1 2 3 4; do runng "s-shape-lfo$k" --holdout-fold "$k" $NG --cleaning lists --shapes 3,4,5,6; done
  runng s-shape-rand $NG --cleaning lists --shapes 3,4,5,6
  $PY -m convert.ensemble --cnn f-suffix --linear s-shape --how cascade-mean-0.05 --out e-fs-cmean --cnn-rand runs/cnn-suffix > /dev/null
  for w in 0.35 0.65 0.8; do  # the linear stage's weight in the mean (an experiment: serving has 0.5)
    $PY -m convert.ensemble --cnn f-suffix --linear s-shape --how "cascade-wmean-0.05-$w" --out "e-fs-w${w#0.}" --cnn-rand runs/cnn-suffix > /dev/null
  done
  # Session 17 (python -m convert.variants, models/REPORT.md "What else was tried"): the linear stage's
  # orders around the shipped ones, label statistics, a quarter of the long tail trained on, the budget
  # CNN with a character-class branch (and a second seed of it and of v-suffix on the random split),
  # and the linear stage's weight in the shipped form chosen on the budget folds.
  for k in 0 1 2 3 4; do
    runng "s-o14-lfo$k" --holdout-fold "$k" $NG --cleaning lists --orders 1,2,3,4 --shapes 3,4,5,6
    runng "s-o13-lfo$k" --holdout-fold "$k" $NG --cleaning lists --orders 1,2,3 --shapes 3,4,5,6
    runng "s-sh26-lfo$k" --holdout-fold "$k" $NG --cleaning lists --shapes 2,3,4,5,6
    runng "s-sh37-lfo$k" --holdout-fold "$k" $NG --cleaning lists --shapes 3,4,5,6,7
    runng "s-stats-lfo$k" --holdout-fold "$k" $NG --cleaning lists --shapes 3,4,5,6 --stats
    run "v-cshape-lfo$k" --holdout-fold "$k" --arch cnn_shape $SUF $B --cleaning lists
  done
  run v-cshape-rand --arch cnn_shape $SUF $B --cleaning lists
  run v-cshape-i2-rand --arch cnn_shape $SUF $B --cleaning lists --init-seed 2
  run v-suffix-i2-rand --arch cnn $SUF $B --cleaning lists --init-seed 2
  for cnn in v-suffix v-cshape; do
    out=e-vs-cmean; [ $cnn = v-cshape ] && out=e-vcs-cmean
    $PY -m convert.ensemble --cnn $cnn --linear s-shape --how cascade-mean-0.05 --out $out --cnn-rand "runs/$cnn-rand" > /dev/null
  done
  for w in 0.35 0.65 0.8; do
    $PY -m convert.ensemble --cnn v-suffix --linear s-shape --how "cascade-wmean-0.05-$w" --out "e-vs-w${w#0.}" --cnn-rand runs/v-suffix-rand > /dev/null
  done
  # ... and the quarter of the long tail trained on: the budget CNN beside the linear stage
  tail_linear
  for k in 0 1 2 3 4; do run "v-tail-lfo$k" --holdout-fold "$k" --arch cnn $SUF $B --cleaning lists --tail-train; done
  run v-tail-rand --arch cnn $SUF $B --cleaning lists --tail-train
  $PY -m convert.ensemble --cnn v-tail --linear s-tail --how cascade-mean-0.05 --out e-vt-cmean > /dev/null
  # (the full-size CNN with it, its folds and e-ft-cmean: the shipped runs since session 18, shipped() above)
  # Session 18: three eighths of the long tail trained on instead of a quarter (--tail-eighths 3), budget size.
  for k in 0 1 2 3 4; do
    runng "s-tail3-lfo$k" --holdout-fold "$k" $NG --cleaning lists --shapes 3,4,5,6 --tail-train --tail-eighths 3
    run "v-tail3-lfo$k" --holdout-fold "$k" --arch cnn $SUF $B --cleaning lists --tail-train --tail-eighths 3
  done
  runng s-tail3-rand $NG --cleaning lists --shapes 3,4,5,6 --tail-train --tail-eighths 3
  run v-tail3-rand --arch cnn $SUF $B --cleaning lists --tail-train --tail-eighths 3
  $PY -m convert.ensemble --cnn v-tail3 --linear s-tail3 --how cascade-mean-0.05 --out e-vt3-cmean > /dev/null
  # ... and with the quarter, the budget CNN at width 128 (B's other settings).
  for k in 0 1 2 3 4; do
    run "v-tailw128-lfo$k" --holdout-fold "$k" --arch cnn $SUF $B --width 128 --cleaning lists --tail-train
  done
  run v-tailw128-rand --arch cnn $SUF $B --width 128 --cleaning lists --tail-train
  $PY -m convert.ensemble --cnn v-tailw128 --linear s-tail --how cascade-mean-0.05 --out e-vtw128-cmean > /dev/null
}
case "${STAGE:-all}" in
  ship) shipped; exit 0 ;;
  vetting) shipped; vetted; exit 0 ;;
esac
# Experiments: each configuration trained 5 times, once per fold of families held out, on the budget
# protocol (120k training names, 4 epochs, CNN width 64: ~1.5 min per fold on 2 cores), and compared
# by leave-family-out recall at the sinkhole threshold (python -m convert.experiments).
exp() { local name=$1; shift; for k in 0 1 2 3 4; do run "x-$name-lfo$k" --holdout-fold "$k" $B "$@"; done; }
exp label --arch cnn
exp suffix --arch cnn $SUF
exp suffix-fam --arch cnn $SUF --balance family
exp suffix-fam-words --arch cnn $SUF --balance family --compounds --exclude charbot
exp suffix-ngram --arch cnn_ngram $SUF
exp suffix-w128 --arch cnn $SUF --width 128
# The linear n-gram stage (convert/ngram.py: hashed 1-5-grams, logistic regression, all training names,
# ~1 min per fold on an idle 2-core CPU), its combinations with the x-suffix CNN folds
# (convert/ensemble.py: mean, max, cascade), per-family balance and caps, word-segmentation features
# (with wordlist families trained on; needs a word list: `pip install wordninja`, its
# wordninja_words.txt.gz copied to runs/words/) and random-string augmentation: all chosen or not by
# the same leave-family-out table (`python -m convert.ensemble --report 'x-*-lfo[0-9]'`).
ng() { local name=$1; shift; for k in 0 1 2 3 4; do runng "x-$name-lfo$k" --holdout-fold "$k" $NG "$@"; done; }
ng ng1
ng ng1-120k --max-train 120000  # the CNN's budget of training names: is the gain the model or the data?
ng ng1-c01 --C 0.1  # (the later --C wins) regularisation
ng ng1-b16 --bits 16  # a 4x smaller weight file
runng x-ng1-rand $NG
run x-suffix-rand --arch cnn $SUF $B
for how in mean max cascade-0.05 cascade-0.1 cascade-0.2; do
  $PY -m convert.ensemble --cnn x-suffix --linear x-ng1 --how $how --out "x-e1-$how" > /dev/null
done
ng ng1-fam --balance family
ng ng1-cap2k --cap 2000
exp suffix-cap2k --arch cnn $SUF --cap 2000
runng x-ng1-rnd20k-lfo0 --holdout-fold 0 $NG --random-dga 20000
WORDS=runs/words/wordninja_words.txt.gz
for k in 0 2; do  # the folds that hold wordlist families out (suppobox; gozi, nymaim2, bigviktor)
  runng "x-ng-wl-lfo$k" --holdout-fold $k --form registrable --suffix-dropout 0.5 --exclude charbot
  [ -f "$WORDS" ] && runng "x-ng-wlw-lfo$k" --holdout-fold $k --form registrable --suffix-dropout 0.5 --exclude charbot --words "$WORDS"
done
[ -f "$WORDS" ] && $PY -m convert.wordseg --words "$WORDS" > runs/wordseg.md
vetted  # (defined above)
[ "${STAGE:-all}" = experiments ] && exit 0
shipped
# Architecture comparison: the chosen data configuration, fold 0 held out, 60k names, 3 epochs each.
A="--holdout-fold 0 --max-train 60000 --epochs 3 --patience 2 $SUF"
run a-cnn-lfo0 --arch cnn --width 64 $A
run a-cnn_lstm-lfo0 --arch cnn_lstm $A
run a-bilstm-lfo0 --arch bilstm $A
run a-lstm-lfo0 --arch lstm $A
# The family head (a softmax over DGA families, for the family_hint in the query log).
[ -f runs/family/family.tflite ] || { echo "== family $(date -u +%T)"; nice -n "${NICE:-10}" $PY -m convert.family --out runs/family > runs/family.log 2>&1; echo "   rc=$? $(date -u +%T)"; }
# Hand-picked names through both input forms (the input-form section of the report).
$PY -m convert.probe > runs/probe.md 2>/dev/null
