"""The words of models/REPORT.md around the computed tables (kept apart so report.py stays code)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _sink_tpr(ev: dict[str, Any]) -> float:
    rows = [t for t in ev["threshold_table"] if t["threshold"] == ev["thresholds"]["sinkhole"]]
    return float(rows[0]["tpr"]) if rows else float("nan")


def _log_tpr(ev: dict[str, Any]) -> float:
    rows = [t for t in ev["threshold_table"] if t["threshold"] == ev["thresholds"]["log"]]
    return float(rows[0]["tpr"]) if rows else float("nan")


def _unseen_ranking(rows: list[dict[str, Any]]) -> str:
    ranked = sorted(rows, key=lambda r: -(r["lfo_recall"] or 0.0))
    order = ", ".join(f"{r['arch']} {r['lfo_recall'] or 0.0:.3f}" for r in ranked)
    return (
        f"Unseen-family recall of this one fold, highest first: {order}; with ~18 names behind the "
        "threshold, one fold and 60k training names, differences of a few hundredths are noise."
    )


def _carried(chosen: dict[str, Any]) -> str:
    """Says so when the leave-family-out figures were carried from an earlier report (not rerun)."""
    if not chosen:
        return ""
    folds = f", {chosen['folds']} of 5 folds" if chosen.get("folds", 5) < 5 else ""
    carried = f", not rerun since `{chosen['carried_from']}`" if chosen.get("carried_from") else ""
    return f", {chosen.get('info_cleaning', 'shape')} cleaning{folds}{carried}"


def targets(ev: dict[str, Any], chosen: dict[str, Any], us1: float | None) -> str:
    """The issue's targets against what this run measured."""
    dns = ev["dns_only_benign"]["flagged"]
    tpr4 = ev["tpr_at_fpr_trained"]["fpr_1e-4"]
    mean = chosen.get("mean_recall", {}).get("sinkhole", float("nan"))
    n90, nfam = chosen.get("families_ge_0.9", {}).get("sinkhole", 0), chosen.get("n_families", 0)
    note = f" (`{ev['chosen']}`{_carried(chosen)})"
    rows = [
        ("5-fold leave-family-out mean family recall at sinkhole >= 0.6", f"{mean:.3f}{note}", mean >= 0.6),
        (f"families >= 0.9 recall at sinkhole, of {nfam} (target 30)", f"{n90}{note}", n90 >= 30),
        ("long-tail benign sinkholed <= 0.1%", f"{dns['sinkhole'] * 100:.3f}%", dns["sinkhole"] <= 0.001),
        ("long-tail benign logged <= 1%", _pct(dns["log"]), dns["log"] <= 0.01),
        ("random split, families trained on: TPR at FPR 1e-4 >= 0.8", f"{tpr4:.3f}", tpr4 >= 0.8),
        ("LiteRT batch 1 <= ~20 us per name", f"{us1:.1f} us" if us1 else "n/a", bool(us1 and us1 <= 21.0)),
    ]
    ens = ev.get("shipped_ensemble")
    if ens:  # the shipped scorer is the CNN + linear ensemble: its own figures, the CNN's in the rows after
        rows = _ensemble_targets(ens) + [(f"... the CNN alone: {n}", v, ok) for n, v, ok in rows]
    lines = ["| target | measured | |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {_met(ok)} |" for name, value, ok in rows]
    return "\n".join(lines)


def _ensemble_targets(ens: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The targets of the shipped scorer when it is the ensemble (`convert.report`: `shipped_ensemble`)."""
    lofo, facts, speed = ens["lofo"], ens["random_split"], ens.get("speed") or {}
    note = f" (`{ens['config']}`, {lofo['folds']} folds, the same models as the shipped ensemble's parts)"
    us1 = speed.get("popular_us_b1")
    cost = (
        f"{us1:.1f} us on popular labels ({speed['popular_ratio_b1']:.2f}x the CNN alone in the same run), "
        f"{speed['random_us_b1']:.1f} us on random ones ({speed['random_ratio_b1']:.2f}x; `bench/ensemble.py`)"
        if us1
        else "n/a (run bench/ensemble.py)"
    )
    return [
        (
            "5-fold leave-family-out mean family recall at sinkhole >= 0.6",
            f"{lofo['mean']:.3f}{note}",
            lofo["mean"] >= 0.6,
        ),
        (f"families >= 0.9 recall at sinkhole, of {lofo['n']} (target 30)", f"{lofo['n90']}{note}", lofo["n90"] >= 30),
        ("long-tail benign sinkholed <= 0.1%", f"{facts['tail_sinkhole'] * 100:.3f}%", facts["tail_sinkhole"] <= 0.001),
        ("long-tail benign logged <= 1%", _pct(facts["tail_log"]), facts["tail_log"] <= 0.01),
        (
            "random split, families trained on: TPR at FPR 1e-4 >= 0.8",
            f"{facts['tpr_1e-4']:.3f}",
            facts["tpr_1e-4"] >= 0.8,
        ),
        # Judged on the dearer of the two kinds of names: random-looking ones reach the CNN as well.
        ("batch 1 <= ~20 us per name", cost, bool(us1 and max(us1, speed["random_us_b1"]) <= 21.0)),
    ]


def _mean_n90(recall: dict[str, float], families: Iterable[str]) -> tuple[float, int]:
    values = [recall[f] for f in families]
    return float(sum(values) / len(values)), sum(v >= 0.9 for v in values)


def seen_against_unseen(ev: dict[str, Any]) -> str:
    """The first two targets held against what the same models reach on families they DID train on
    (the random split's test names, at the same thresholds): a family left out is not expected to be
    caught more often than when it was trained on, so the seen figures bound what generalising better
    can buy on this benign data."""
    ens = ev.get("shipped_ensemble") or {}
    excluded = set(ev.get("excluded_from_training", []))
    rows = []
    seen_cnn = {f: v["sinkhole"] for f, v in ev["family_recall"].items() if f not in excluded and v["n"]}
    unseen_cnn = {f: v["sinkhole"] for f, v in ev["leave_family_out"].items()}
    rows.append((f"the CNN alone (`{ev['chosen']}` left out)", seen_cnn, unseen_cnn))
    seen_ens = ens.get("random_split", {}).get("families_seen")
    unseen_ens = ens.get("lofo", {}).get("families")
    if seen_ens and unseen_ens:
        rows.insert(0, (f"the shipped ensemble (`{ens['config']}` left out)", seen_ens, unseen_ens))
    lines, best = [], 0.0
    for name, seen, unseen in rows:
        both = sorted(set(seen) & set(unseen))
        if not both:
            continue
        (s_mean, s_n90), (u_mean, u_n90) = _mean_n90(seen, both), _mean_n90(unseen, both)
        best = max(best, s_mean)
        lines.append(
            f"{name}: trained on, mean family recall {s_mean:.3f} and {s_n90} families >= 0.9; "
            f"left out, {u_mean:.3f} and {u_n90}"
        )
    if not lines:
        return ""
    n = len(set(seen_cnn) & set(unseen_cnn))
    verdict = (
        "Even on families it trained on, neither reaches the first target's 0.6 or its 30 families: at FPR "
        "1e-4 the benign names at the top of the scores (the top benign names above) bound what a "
        "name-only model catches, seen or not, so generalising better to families never seen cannot by "
        "itself meet these two targets on this benign data; cleaner benign data at the top (the threshold "
        "comes down) or evidence beyond the name (the client watch) can."
        if best < 0.6
        else "The gap between the two is what generalising better could still gain."
    )
    replay = ev.get("replay_folds")
    if replay:
        verdict += (
            f" End to end (`bench/results/replay-folds.md`: the {replay['folds']} fold models of the shipped "
            f"recipe on a replayed small network, each on the families it never saw, {replay['families']} in "
            f"all), the model alone blocks on average {replay['model_alone']:.0%} of a family's C2 lookups and, "
            f"with the client watch, {replay['with_watch']:.0%} ({replay['with_watch_ge_0.9']} families >= 90%; "
            f"benign lookups blocked: {replay['benign_blocked']})."
        )
    return (
        f"* **What the same models reach on families they trained on** (the random split's test names, "
        f"at each scorer's own sinkhole threshold; the {n} families trained on that have test names, "
        f"held against the same families left out): " + "; ".join(lines) + f". {verdict}\n"
    )


CAL_POOL = "calibration (validation benign + half of the long tail)"  # reports before session 13
CAL_TRUSTED = "trusted calibration (validation benign)"
CAL_TAIL = "long-tail calibration names (one DNS list only, cleaned, not trained on)"


def _cal_sink(ev: dict[str, Any]) -> dict[str, Any]:
    """What the sinkhole threshold rests on: the trusted calibration names (session 13 on) or the pool."""
    cal = ev.get("calibration", {})
    return (cal.get(CAL_TRUSTED) or cal.get(CAL_POOL) or {}).get("fpr_1e-4", {})


def _lfo(ev: dict[str, Any], experiments: dict[str, dict[str, Any]] | None = None) -> str:
    name = ev.get("chosen", "")
    c = (experiments if experiments is not None else ev.get("experiments", {})).get(name, {})
    if not c:
        return "n/a"
    carried = f", not rerun since `{c['carried_from']}`" if c.get("carried_from") else ""
    return (
        f"{c['mean_recall']['sinkhole']:.3f}, {c['families_ge_0.9']['sinkhole']} of {c['n_families']} "
        f"(`{name}`, {c.get('info_cleaning', 'shape')} cleaning, {c['folds']} folds{carried})"
    )


def _side(ev: dict[str, Any], experiments: dict[str, dict[str, Any]] | None = None) -> list[str]:
    t, tt, dns = ev["thresholds"], ev["tpr_at_fpr_trained"], ev["dns_only_benign"]
    sink = _cal_sink(ev)
    return [
        ev.get("cleaning_rule", "shape"),
        f"{t['sinkhole']:.5f} / {t['log']:.4f}",
        f"{sink['flagged']} of {sink['n']:,}",
        f"{tt['fpr_1e-4']:.3f} / {ev['auc_trained']:.4f}",
        f"{_sink_tpr(ev):.3f} / {_log_tpr(ev):.3f}",
        f"{dns['flagged']['sinkhole'] * 100:.3f}% / {_pct(dns['flagged']['log'])} of {dns['n']:,}",
        _lfo(ev, experiments),
    ]


def against_previous(ev: dict[str, Any], previous: dict[str, Any], experiments: dict[str, dict[str, Any]]) -> str:
    """This model next to the one it replaces, both sides computed by convert.report (the previous
    side read from the models/eval.json it replaces), and why it replaced it."""
    if not previous.get("thresholds") or not _cal_sink(previous):
        return "No previous report (models/eval.json) to compare with."
    if ev.get("shipped_ensemble") and previous.get("shipped_ensemble"):
        return _against_ensemble(ev, previous)
    if ev.get("shipped_ensemble"):
        return _against_cnn(ev, previous, experiments)
    pv = previous.get("model_version", "?")
    names = [
        "benign cleaning rule (training and calibration names)",
        "sinkhole / log threshold",
        "benign calibration names at or above the sinkhole threshold",
        "random split, families trained on: TPR at FPR 1e-4 / AUC",
        "random-split test DGA names (every family) sinkholed / logged at the shipped thresholds",
        "long-tail test half (its own cleaning) sinkholed / logged",
        "leave-family-out mean recall at sinkhole, families >= 0.9",
    ]
    old, new = _side(previous), _side(ev, experiments)
    lines = [f"| | previous `{pv}` | this model |", "|---|---|---|"]
    lines += [f"| {n} | {o} | {w} |" for n, o, w in zip(names, old, new, strict=True)]
    more = _sink_tpr(ev) >= _sink_tpr(previous)
    tail_more = ev["dns_only_benign"]["flagged"]["sinkhole"] > previous["dns_only_benign"]["flagged"]["sinkhole"]
    return (
        "\n".join(lines)
        + f"""

Each side is that model's own split and calibration pool (read from the models/eval.json each report
wrote), so the long-tail rows count different names when the cleaning rule differs. The previous
model on this model's held-out names, at its own shipped thresholds (needs it in `runs/previous/`):
{ev.get("previous", "not measured")}; this one: long-tail test half sinkholed
{ev["dns_only_benign"]["flagged"]["sinkhole"] * 100:.3f}%, logged {_pct(ev["dns_only_benign"]["flagged"]["log"])}.

**Why this model replaced the previous one.** {REPLACED.format(more="more" if more else "fewer", tail="more" if tail_more else "no more")}
Dynamic-DNS home servers pass (probe below, and `tests/test_shipped_model.py`)."""
    )


def _against_cnn(ev: dict[str, Any], previous: dict[str, Any], experiments: dict[str, dict[str, Any]]) -> str:
    """The shipped ensemble next to the CNN alone it is built on (session 7): same split, same CNN file."""
    ens, pv = ev["shipped_ensemble"], previous.get("model_version", "?")
    facts, lofo = ens["random_split"], ens["lofo"]
    cnn = experiments.get("f-suffix", {})
    cnn_lofo = (
        f"{cnn['mean_recall']['sinkhole']:.3f}, {cnn['families_ge_0.9']['sinkhole']} of {cnn['n_families']} (`f-suffix`)"
        if cnn
        else "n/a"
    )
    dns = ev["dns_only_benign"]["flagged"]
    rows = [
        ("scorer", "the CNN", "the same CNN file + the linear stage (`models/default.gate.npz`), mean of the logits"),
        (
            "sinkhole / log threshold",
            f"{ev['thresholds']['sinkhole']:.6f} / {ev['thresholds']['log']:.6f}",
            f"{ens['thresholds']['sinkhole']:.6f} / {ens['thresholds']['log']:.6f}",
        ),
        (
            "random split, families trained on: TPR at FPR 1e-4 (quantized CNN)",
            f"{facts['cnn_tpr_1e-4']:.3f}",
            f"{facts['tpr_1e-4']:.3f}",
        ),
        (
            "long-tail test half sinkholed / logged",
            f"{dns['sinkhole'] * 100:.3f}% / {_pct(dns['log'])}",
            f"{facts['tail_sinkhole'] * 100:.3f}% / {_pct(facts['tail_log'])}",
        ),
        (
            "leave-family-out mean recall at sinkhole, families >= 0.9",
            cnn_lofo,
            f"{lofo['mean']:.3f}, {lofo['n90']} of {lofo['n']} (`{ens['config']}`)",
        ),
    ]
    lines = [f"| | `{pv}` (the CNN alone) | this model |", "|---|---|---|"]
    lines += [f"| {n} | {o} | {w} |" for n, o, w in rows]
    return (
        "\n".join(lines)
        + """

**Why this model replaced the CNN alone.** The same CNN file, now combined with the linear n-gram stage
that already shipped as the Unbound gate: on the same five folds and the same random split, the mean
of the two logits is ahead of the CNN alone on families never seen and on the families trained on, with
the long tail still under its targets (section "Punycode names, and the CNN + linear ensemble"). The
gate in front keeps a lone miss about as cheap as the CNN alone. The rest of this report (calibration,
per-family tables, parity) describes the CNN part unless it says otherwise.
Dynamic-DNS home servers pass (probe below, and `tests/test_shipped_model.py`)."""
    )


def _against_ensemble(ev: dict[str, Any], previous: dict[str, Any]) -> str:
    """The shipped ensemble next to the ensemble it replaces, and why: the same configuration with
    another thresholds rule (session 13), or another linear stage (session 15, shape n-grams)."""
    new, old = ev["shipped_ensemble"], previous["shipped_ensemble"]

    def side(e: dict[str, Any], ev_: dict[str, Any]) -> list[str]:
        f, lofo, th = e["random_split"], e["lofo"], e["thresholds"]
        rule = "trusted names, guarded by the long tail" if ev_.get("threshold_rules") else "pooled calibration"
        return [
            rule,
            f"{th['sinkhole']:.6f} / {th['log']:.6f}",
            f"{f['tpr_1e-4']:.3f}",
            f"{f['tail_sinkhole'] * 100:.3f}% / {_pct(f['tail_log'])}",
            f"{lofo['mean']:.3f}, {lofo['n90']} of {lofo['n']} (`{e['config']}`)",
        ]

    names = [
        "how the thresholds are set",
        "sinkhole / log threshold",
        "random split, families trained on: TPR at FPR 1e-4",
        "long-tail test half sinkholed / logged",
        "leave-family-out mean recall at sinkhole, families >= 0.9",
    ]
    lines = [f"| | previous `{previous.get('model_version', '?')}` | this model |", "|---|---|---|"]
    lines += [f"| {n} | {o} | {w} |" for n, o, w in zip(names, side(old, previous), side(new, ev), strict=True)]
    why = WHY_THRESHOLDS if new["config"] == old["config"] else WHY_CONFIG.get(new["config"], WHY_SHAPES)
    return "\n".join(lines) + "\n\n" + why


# The long-tail pool in the Data section: trained on in part (session 18 on), or never.
TAIL_POOL_NEVER_TRAINED = """* **long tail**: names only ONE DNS-volume list carries. Never trained on. A fixed half of it (by a hash
  of the label) joins the calibration pool, the other half is the long-tail test set the targets are
  measured on."""
TAIL_POOL_TRAINED = """* **long tail**: names only ONE DNS-volume list carries. A fixed half of it (by a hash of the label,
  `convert.splits.tail_hash`) is the long-tail test set the targets are measured on: never trained or
  calibrated on. Of the other half, {part} ({share} of the long tail, `--tail-train{flag}`, session 18) is
  trained on as benign: the CDN, API and regional variety the trusted lists lack (section "What else
  was tried for families never seen (#13, session 17)"); {rest} the calibration pool."""
# eighths of the long tail trained on (`--tail-eighths`) -> (part of the other half, share, the rest)
TAIL_SHARES = {
    1: ("one quarter", "an eighth", "the other three quarters join"),
    2: ("one half", "a quarter", "the other quarter joins"),
    3: ("three quarters", "three eighths", "the last quarter joins"),
}


def long_tail_pool(meta: dict[str, Any]) -> str:
    """The Data section's long-tail paragraph, as the shipped run used the pool (its metadata's
    `training.tail_train` and `tail_eighths`, written by convert.ship; before session 19 only the
    quarter existed, so a model without `tail_eighths` trained on two eighths)."""
    training = meta.get("training", {})
    if not training.get("tail_train"):
        return TAIL_POOL_NEVER_TRAINED
    eighths = training.get("tail_eighths") or 2
    part, share, rest = TAIL_SHARES[eighths]
    flag = "" if eighths == 2 else f" --tail-eighths {eighths}"
    return TAIL_POOL_TRAINED.format(part=part, share=share, flag=flag, rest=rest)


# Why the ensemble was retrained under the same configuration (session 13) ...
WHY_THRESHOLDS = """**Why this model replaced the previous one.** The same scorer (the CNN + the linear stage, `e-f1-cmean`)
and configuration, retrained by `python -m convert all`; what changed is how its thresholds are set
(section "Thresholds: trusted names, guarded by the long tail"). The pooled calibration set the sinkhole
threshold on the ~18 highest of ~184k names, nearly all random strings the DNS-volume lists carry, and
held the long tail at a fifth of its 0.1% bound while unseen families went uncaught. The new rule spends
that margin, within the bound at 95% confidence. The TPR at FPR 1e-4 is read off the test set's own
ROC, so the rule does not move it (training is seeded: the retrained CNN file is the one shipped before,
byte for byte; the linear stage came out within float noise of its previous weights)."""
# ... and why its linear stage changed (session 15).
WHY_SHAPES = """**Why this model replaced the previous one.** The same CNN file and thresholds rule; the linear stage
beside it (`runs/gate`, also the Unbound module's gate) is now trained with shape n-grams (section "Shape
n-grams in the linear stage"). On the same five folds the combination is ahead on families never seen
(the last row), at the cost of a little on the random split's families trained on, with the long tail
still under its targets. The issue chooses by the families never seen, and so did this."""

# ... and why both parts were retrained on a quarter of the long tail (session 18).
WHY_TAIL = """**Why this model replaced the previous one.** The same configuration, thresholds rule and scorer
form; both parts (the CNN, `runs/cnn`, and the linear stage, `runs/gate`) are now trained on a quarter of
the long tail as benign (`--tail-train`, section "What else was tried for families never seen (#13,
session 17)"), and the thresholds rest on the other quarter (the long-tail calibration names above). On
the same five folds the combination trained so (`e-ft-cmean`) is ahead of the previous one
(`e-fs-cmean`) on families never seen, on the random split's families trained on and on the long tail
(rows above): the model has seen the CDN, API and regional names the trusted lists lack, so fewer of the
long tail's and the trusted pool's names score high, and the thresholds come down. The long-tail test
half is still never trained or calibrated on."""
WHY_CONFIG = {"e-fs-cmean": WHY_SHAPES, "e-ft-cmean": WHY_TAIL}  # the new configuration -> why it shipped


# Why the shipped model is the one it is (session 6, #13); the figures are in the table above it and
# in the section "Benign data you can trust at 1e-4".
REPLACED = """Same configuration as the previous model (`label.suffix`, suffix dropout 0.5,
CNN width 64, 8 epochs, class balance), trained and calibrated on the benign names the list-level rule
vets (`--cleaning lists`, section "Benign data you can trust at 1e-4"). The previous model's sinkhole
threshold was set by the highest-scoring names of its calibration pool, and most of those were
machine-made junk of the DNS-volume lists (random strings on cheap TLDs, sliding-window series,
kill switches): the threshold measured that junk, not the model. With the junk vetted out of training
and calibration, the budget CNN's leave-family-out recall at the sinkhole threshold rose by far more
than the ~0.02 seed noise (`x-suffix` against `v-suffix` in that section's table), with the long tail
still sinkholed well under the 0.1% target; the same rule under the linear n-gram stage gained more.
The linear stage (`v-ng1`) and the CNN + linear mean (`v-e1-mean`) are ahead of the CNN on families
never seen, but neither is a LiteRT model the resolver loads today (the linear stage costs 5-9x the
CNN at batch 1 in numpy, section on the linear stage), so the CNN is what ships; the linear stage stays
the Unbound module's first stage (`models/default.gate.*`), now calibrated on the same vetted pool.
At its shipped thresholds this model sinkholes {more} of the random-split test DGA names than the
previous one and {tail} of its long-tail test half (table above)."""


def _delta(experiments: dict[str, dict[str, Any]], name: str, base: str) -> str:
    a, b = experiments.get(base), experiments.get(name)
    if not a or not b:
        return f"`{name}`: not run"
    d = b["mean_recall"]["sinkhole"] - a["mean_recall"]["sinkhole"]
    dl = b["mean_recall"]["log"] - a["mean_recall"]["log"]
    old = sorted({r["carried_from"] for r in (a, b) if r.get("carried_from")})
    carried = f" (figures of `{'`, `'.join(old)}`: not rerun)" if old else ""
    return (
        f"`{name}` vs `{base}`{carried}: mean recall at sinkhole {d:+.3f}, at log {dl:+.3f}, at the long-tail target "
        f"{b['mean_recall']['tail_target'] - a['mean_recall']['tail_target']:+.3f}; long tail sinkholed "
        f"{a['tail']['sinkhole'] * 100:.3f}% -> {b['tail']['sinkhole'] * 100:.3f}%, logged {_pct(a['tail']['log'])} -> "
        f"{_pct(b['tail']['log'])}"
    )


def choice_text(experiments: dict[str, dict[str, Any]]) -> str:
    """Each experiment against the one it changes, and the reading behind the choice."""
    steps = [
        ("x-suffix", "x-label", "the input form: `label.suffix` with suffix dropout 0.5"),
        ("x-suffix-fam", "x-suffix", "per-family class balance"),
        ("x-suffix-fam-words", "x-suffix-fam", "wordlist families trained on, plus compound copies"),
        ("x-suffix-ngram", "x-suffix", "CNN + hashed 3/4-gram linear terms (one graph)"),
        ("x-suffix-w128", "x-suffix", "CNN width 128 instead of 64"),
        ("f-suffix", "x-suffix", "the chosen configuration at full size (all names, 8 epochs, its cleaning column)"),
    ]
    lines = [f"* {what}: {_delta(experiments, name, base)}." for name, base, what in steps]
    return (
        "What each change did, against the configuration it changes (one seed each):\n\n"
        + "\n".join(lines)
        + """

**How far apart these are.** At FPR 1e-4 the threshold rests on ~18 names, and recall at it moves
with them: while this report was built, choosing the long-tail calibration half by a hash of
`label.suffix` instead of the label alone (same models, same number of names) moved `x-suffix` from
0.125 to 0.108. Differences below ~0.02 in the sinkhole column are noise; the column at the long-tail
target (threshold at 0.1% of the long-tail calibration half, ~67 names) is steadier.

**Chosen: `x-suffix`** (`label.suffix`, suffix dropout 0.5, class balance, CNN width 64). No
configuration beats it by more than the noise at the sinkhole threshold. Against label-only it is level
at the sinkhole threshold and ahead at the log threshold and at the long-tail target (+0.015 each),
and it was ahead under the first calibration design too (below); it serves dynamic-DNS home servers
as `pass` (probe below), which the first `label.suffix` model did not. Per-family balance: within noise.
Wordlist families in training: **zero** recall on a wordlist family left out (the four use different
dictionaries, so one teaches nothing about another) and slightly lower elsewhere: they stay out, caught
only when seen, by lists. The n-gram ensemble is the best row by 0.01 (within noise) for twice the
parameters: not kept on this evidence, worth a second seed. Width 128: no gain over 64, and 64 serves
twice as fast. Since session 6 the chosen configuration is trained and calibrated with the list-level
cleaning rule (`--cleaning lists`; why: "Against the previous model" above).

Not tried in that session: word-segmentation features, a cheap first stage in front of the CNN, caps
per family; session 4 measured them (section below). Several seeds of one configuration: section "Seeds"
(session 14)."""
    )


# How the thresholds are set (session 13, #13); {table} is filled by convert.report from the fold runs.
RULES = """### Thresholds: trusted names, guarded by the long tail (#13, session 13)

**Why.** Until session 12 each threshold was set at its FPR of the trusted validation names and one
half of the long tail together (~184k names, 18 behind 1e-4). The names it rested on were nearly all
random strings that the DNS-volume lists carry (live DGA, ad-fraud: section "Benign data you can trust
at 1e-4"), so the sinkhole threshold measured that junk: it held the long tail at about a fifth of the
issue's 0.1% bound while unseen families went uncaught. The FPR targets are rates of benign names we
trust; the long-tail bounds are what a resolver may break. The rule now keeps each apart.

**The rule** (`convert.evaluate.Scores.thresholds`, used by `convert.ship`, the experiments and every
fold): for an FPR target f (1e-4 sinkhole, 1e-3 log), the lowest threshold that flags at most f of the
trusted validation names **and** at most k of the long-tail calibration half, k the largest count
whose Clopper-Pearson 95% upper bound stays under 10 f (the issue's 0.1% and 1%; on ~66k names: 50 and
609 names, `tail_budget`). The long-tail test half, never used to set anything, measures it. No
threshold or cut here was chosen on a leave-family-out result: the bound is the issue's, the margin is
the interval's.

**What it changes**, the same fold models, three ways of setting each fold's thresholds: `pooled`
(sessions 4-12), `trusted` (the validation names alone: the first design, before any list cleaning),
`guarded` (shipped). Long-tail rates are on the test half, averaged over the five fold models:

{table}

On these folds the long-tail guard is what holds the sinkhole threshold: the trusted names alone would
put it lower and sinkhole the long tail at or over its 0.1% bound (the `trusted` rows); at the log
threshold the trusted FPR holds it. What the recall costs is in the long-tail columns: several times as
many long-tail names sinkholed as under the pooled rule, still under the bound; with the names the
list-level rule removed put back ("uncleaned"), more, and most of those are the random strings the
lists carry. Still not met: a rule cannot make the model rank unseen families above the long tail's
random strings; at the same bound, that takes a better-separating model or vetted benign data."""


# The stage experiments of session 4 (convert/ngram.py, convert/ensemble.py); the {UPPER} fields are
# filled by convert.report.stages_section from the runs.
STAGES = """### A linear n-gram stage, ensembles, a cascade, word features, family caps (#13, session 4)

Same protocol as the table above: the same five folds and seed, each fold model calibrated on its own
calibration pool, recall on the families it never saw, long-tail rates on the half never calibrated
on. `x-suffix` is the budget CNN of the table above, retrained for this comparison (0.109 here, 0.108
above: the figures reproduce). The linear stage (`convert/ngram.py`, features in
`resolverguard/ngrams.py`) is an L2 logistic regression (C 0.3) over 2^18 hashed character 1-5-grams of
`label.suffix` (with start and end marks), the whole suffix as one token and five label shape features
(length, entropy, digit, vowel and hyphen shares), suffix dropout 0.5 like the CNN; it trains on all
316,441 training names (about 1 minute per fold on an idle CPU, up to 8 under this session's load).
`x-e1-*` combine a fold's CNN and linear runs (`convert/ensemble.py`): `mean` of the two logits; `max`
of the two rarities among the calibration benign names (either model at its own threshold, the joint
threshold calibrated after); `cascade-q`: the linear stage passes every name under its own FPR-q
threshold and only the rest reach the CNN. Random split: the same configurations trained on the
random split (`-rand` runs), TPR at FPR 1e-4 on the test names of the families trained on. A dash: not
run (CPU time).

{TABLE}

* **The linear stage alone** is ahead of the budget CNN on families it never saw: +0.025 mean recall
  at sinkhole (0.134 vs 0.109; above the ~0.02 noise mark), 3 families >= 0.9 instead of 2, +0.04 at the
  log threshold and at the long-tail target (0.263 vs 0.222), with a lower long-tail sinkhole rate
  (0.015% vs 0.019%). It is behind on the families it trained on (random-split TPR at 1e-4 0.372 vs
  0.420). Against the shipped full-size CNN (`f-suffix`: 0.126 at sinkhole, 0.241 at the long-tail target)
  it is level at sinkhole (+0.008, noise) and +0.02 at the long-tail target. Trained on the CNN's budget
  of 120,000 names it keeps most of the gain (`x-ng1-120k`: 0.127, 0.262 at the long-tail target): the
  gain is the model, not the extra names. C 0.1 instead of 0.3 changes nothing (`x-ng1-c01` 0.135);
  2^16 buckets instead of 2^18 (a 4x smaller file, 128 KB in float16) is level too (`x-ng1-b16` 0.137).
* **The mean ensemble** is level with the linear stage alone on unseen families (0.135) and lower on the
  random split (0.335): combining did not add what each model knows. **Max** lies between the two.
* **The cascade loses nothing**: at a gate of FPR 0.05, 0.1 or 0.2 every unseen DGA name the CNN
  sinkholes is above the gate, so recall, families >= 0.9 and the long-tail rates equal the CNN's
  exactly. Share of names that reach the CNN (the figure #17 asks for):

{CASCADE}

  It makes a batched miss cheaper and a single one dearer (absolute figures from a machine at load
  3-13 on 2 cores; `bench/results/model.md` has the CNN at 8.5 / 7.0 us idle; the ratios are the point):
  {SPEED} Across the timings of this
  session (the load varied) the linear stage cost 0.45-0.85x the CNN at batch 64, so a cascade that hands
  ~8% of the names on would cost ~0.55-0.95x the CNN alone; at batch 1 numpy's per-call overhead made it
  5-9x the CNN. Not built into serving: at best a 2x saving on batched misses, a loss at batch 1 (where a
  lightly loaded resolver runs), and a second model file to keep in step with the first; #17 should count
  on it only with a much cheaper featurizer.
* **Caps per family** (`--cap 2000`: at most 2,000 names of each family, against 10,000, so large
  families stop dominating): lower for the linear stage (0.121 vs 0.134 over five folds), level for the
  CNN (`x-suffix-cap2k` 0.108 vs 0.109, one family >= 0.9 instead of two). Per-family loss weights
  (`--balance family`): level for the linear stage (`x-ng1-fam` 0.134), as they were for the CNN (table
  above).
* **Random-string augmentation** (`--random-dga 20000`: uniformly random names over five alphabets,
  lengths 7-32, as extra DGA rows, `convert/augment.random_names`): fold 0 0.118 vs 0.124 without: no gain.
* **Word segmentation** (`--words`, `convert/ngram.WordFeatures`: share of the label covered by
  dictionary words of >= 3 letters, whether it splits fully into 1 / >= 2 / >= 3 words, the longest word;
  with the wordlist families trained on, so a held-out wordlist family is the test): on the folds that
  hold them out (fold 0: suppobox; fold 2: gozi, nymaim2, bigviktor) recall at sinkhole and at log stays
  **0.000** for all four, with or without the word features (`x-ng-wl` vs `x-ng-wlw`); the long tail is
  not raised. The reason is in the data (`python -m convert.wordseg`, word list: wordninja's 126k
  English Wikipedia words, a measurement only, not a dependency):

{WORDSEG}

  Half of the benign names split fully into dictionary words and one in seven into three or more; a
  threshold at FPR 1e-4 has to sit above 99.99% of them, so "made of words" can never push a name over
  it. The benign lists' own hyphenated parts as the dictionary (6,819 words) separate even less (benign
  17.6% fully split, suppobox 10.7%). Wordlist DGAs stay out of reach of the name model: lists, feeds and
  the client watch (NXDOMAIN bursts) are the answer for them.

**What the sinkhole threshold rests on.** {SETTERS} They are random strings on cheap TLDs
(`.cfd`, `.bid`, `.top`, `.site`, `.ru`), sliding-window series (`mkfjbitxzlhijfcenxej.top`,
`kfjbitxzlhijfcenxejc.top`, `mtmkfjbitxzlhijfcenx.top`), the WannaCry kill-switch names
(`iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com`) and long punycode names: most of them are not benign at
all. Every model ranks a held-out family's names against these, which is why no model change here moves
the mean far: the linear stage's gain is real but small, and the 0.6 target needs a calibration pool
whose top is vetted (e.g. long-tail names kept only if they resolve over months, or a feed check),
not a better name model.

**Not shipped.** The shipped model stays the CNN: the linear stage's unseen-family gain over the shipped
full-size CNN is within noise at the sinkhole threshold, it loses on the families trained on, and in
numpy it costs 5-9x the CNN at batch 1 (target: <= 20 us per name). What is in the tree for the next
step: the featurizer (`resolverguard/ngrams.py`, numpy only, with a parity test against the training
matrix and a batch-invariance test), its trainer, the combinations and their report
(`python -m convert.ensemble --report 'x-*' --stages`), all run by `convert/sweep.sh`. Worth doing with
more CPU (or a GPU): the mean ensemble with the full-size CNN folds (`f-suffix`), and a featurizer
that costs ~1 us per name at batch 1 (C or a lookup table), before a cascade is worth building."""


BUDGET = """No GPU in this session: everything trained on a 2-core CPU shared with other sessions, ~100 minutes of
training in total. That forced:

* the **budget protocol** for every experiment (120,000 training names, 4 epochs, width 64, one seed):
  the leave-family-out figures are those of models smaller and shorter-trained than the shipped one
  (how far seeds of one configuration land apart: section "Seeds", session 14);
* the architecture comparison on fold 0 only, 60,000 names and 3 epochs (the LSTMs need 5-10x the
  CNN's time per name), so it ranks the architectures, it does not measure what each could reach;
* the shipped model trains 8 epochs on all training names of the chosen configuration; the same
  configuration was then trained 5 more times at that size, one per fold (`f-suffix`), for the
  per-family unseen recall and the targets; nothing was chosen on those runs;
* no sweep over the suffix-dropout rate, the cap per family or the learning rate."""


def narrative(
    *,
    ev: dict[str, Any],
    meta: dict[str, Any],
    variant: str,
    experiments: dict[str, dict[str, Any]],
    shipped_rule: dict[str, dict[str, Any]],
    experiments_table: str,
    rules_section: str,
    comparison: str,
    threshold_table: str,
    calibration_table: str,
    cleaning_table: str,
    parity_table: str,
    family_table: str,
    top_benign: str,
    top_dns: str,
    rows: list[dict[str, Any]],
    family_head: str,
    probe: str,
    stages: str = "",
    previous: dict[str, Any] | None = None,
) -> str:
    lfo = ev["leave_family_out"]
    chosen = shipped_rule.get(ev["chosen"]) or experiments.get(ev["chosen"], {})
    caught = sorted(f for f, v in lfo.items() if v["sinkhole"] >= 0.9)
    missed = sorted(f for f, v in lfo.items() if v["sinkhole"] < 0.5)
    tt = ev["tpr_at_fpr_trained"]
    training = meta.get("training", {})
    shipped = ev["parity"].get(variant, {})
    us1, us64 = shipped.get("us_per_name_batch1"), shipped.get("us_per_name_batch64")
    dns = ev["dns_only_benign"]
    sink = _cal_sink(ev)
    tail_sink = ev["calibration"].get(CAL_TAIL, {}).get("fpr_1e-4", {})
    form = meta.get("input", {}).get("form", "?")
    full = ev["chosen"].startswith("f-")
    protocol = "at the shipped model's size: all training names, 8 epochs" if full else "budget protocol"
    reads = "the registrable domain (`label.suffix`)" if form == "registrable" else "the registrable label"
    tail_pool = long_tail_pool(meta)
    return f"""# The shipped model: `models/default.tflite`

Model version `{meta.get("model_version", "?")}`, architecture `{meta.get("architecture", "?")}`, quantization
`{variant}`; it reads {reads}, {meta.get("input", {}).get("maxlen", "?")} characters, padded on the left (under
dynamic-DNS providers the name under the provider, e.g. `myhome.ddns.net`). Training data digest
`{meta.get("training_data_digest", "?")[:16]}…`. Every figure below was computed by `python -m convert.report`
from the run directories. Configurations were chosen by **5-fold leave-family-out recall at the
sinkhole threshold** (never by the random split); thresholds were set on calibration names only (the
trusted validation benign names, guarded by long-tail calibration names, see Splits); all rates are
measured on TEST names or on names never trained or calibrated on.

## Summary

{targets(ev, chosen, us1)}

| | value |
|---|---|
| leave-family-out ({chosen.get("folds", 0)} folds, config `{ev["chosen"]}`{_carried(chosen)}): mean family recall at sinkhole / log | {chosen.get("mean_recall", {}).get("sinkhole", float("nan")):.3f} / {chosen.get("mean_recall", {}).get("log", float("nan")):.3f} |
| ... the same without the 5 lexically benign families (charbot, 4 wordlist) | {chosen.get("mean_recall_sinkhole_char", float("nan")):.3f} |
| ... at a sinkhole threshold set exactly at the long-tail target (0.1% of long-tail names) | {chosen.get("mean_recall", {}).get("tail_target", float("nan")):.3f}, {chosen.get("families_ge_0.9", {}).get("tail_target", 0)} families >= 0.9 |
| unseen families with recall >= 0.9 at sinkhole / at log | {chosen.get("families_ge_0.9", {}).get("sinkhole", 0)} / {chosen.get("families_ge_0.9", {}).get("log", 0)} of {chosen.get("n_families", 0)} |
| ROC AUC, random split, families trained on (test) | {ev["auc_trained"]:.4f} |
| TPR at FPR 1e-2 / 1e-3 / 1e-4, families trained on (test) | {tt["fpr_1e-2"]:.3f} / {tt["fpr_1e-3"]:.3f} / {tt["fpr_1e-4"]:.3f} |
| {"the CNN part's thresholds (the shipped ensemble's: Summary above)" if ev.get("shipped_ensemble") else "shipped thresholds"} (`log` = fpr_1e-3, `sinkhole` = fpr_1e-4) | log {ev["thresholds"]["log"]:.6f}, sinkhole {ev["thresholds"]["sinkhole"]:.6f} |
| the sinkhole threshold rests on | {sink["flagged"]} of {sink["n"]:,} trusted calibration names (FPR 95% interval {sink["ci95"][0]:.1e}..{sink["ci95"][1]:.1e}); {tail_sink.get("flagged", "?")} of {tail_sink.get("n", 0):,} long-tail calibration names |
| long-tail benign (one DNS list only, cleaned, never trained or calibrated on) sinkholed / logged | {dns["flagged"]["sinkhole"] * 100:.3f}% / {_pct(dns["flagged"]["log"])} of {dns["n"]:,} |
| `.tflite` size | {shipped.get("bytes", 0) / 1024:.1f} KB |
| LiteRT, one thread, per name at batch 1 / batch 64 | {us1 or float("nan"):.1f} us / {us64 or float("nan"):.1f} us |
| training (shipped run) | {training.get("train_rows")} names, {training.get("epochs_run")} epochs, {training.get("train_seconds")} s, {training.get("params")} parameters |

## Against the previous model, and why it was replaced

{against_previous(ev, previous or {}, experiments)}

## Data

Three benign pools, from `benign_sources.tsv.gz` (which lists vouch for each name):

* **trusted**: names a curated list carries (Alexa, Tranco, Majestic) or that **both** DNS-volume lists
  (Cloudflare Radar and Umbrella) carry: two independent vantage points, and the variety (CDNs, APIs,
  regional services) the curated lists lack. Training and test benign names and most of the
  calibration pool come from here.
{tail_pool}
  These lists rank by query volume and contain live DGA, tracking and ad-fraud names (the data README
  found 125 DGA names in them), so its rates are upper bounds.
* **machine-made**: names of either pool that the cleaning rule below removes. Scored and reported only.

**The cleaning rule** (`convert/clean.py`) looks at the label's shape, never at a model score or a DGA
family (either would make the evaluation circular). A label is machine-made when, hyphens dropped, it
holds a run of >= 12 hex characters with >= 2 digits and >= 2 letters (`hex`: digests, UUIDs); or it
has >= 8 characters, >= 3 digits, >= 3 letters and >= 4 switches between a letter and a digit (`alnum`:
people put numbers at an end, `web2print`, `club1906`; generators put them anywhere); or a hyphen-free
part has a run of >= 8 consonants (`consonants`). Punycode (`xn--`) is exempt. A run of 7 consonants was
tried first and removed human names (`watchtvfree`, `girlxxxphotos`, `keeppdfpdfreader`); 8 keeps those.
What it removed (counted on the eTLD+1 names of the lists, before reduction to labels):

{cleaning_table}

The rule can remove a real site (an acronym soup, a hash-named CDN a user does want) and cannot see
word-salad names such as `minutegregariousstructure.org` that are in the lists too; it is a floor under
the label noise, not a guarantee. The rates on the removed names are reported with every threshold below.

**Splits.** DGA names 70/15/15 per family (at most 10,000 per family); trusted benign 35% training,
**50% validation**, 15% test. Each threshold is the lowest that flags at most its FPR (1e-4 sinkhole,
1e-3 log) of the {sink["n"]:,} validation benign names (so 1e-4 rests on {sink["flagged"]} of them) **and** at most
{tail_sink.get("flagged", "?")} of the {tail_sink.get("n", 0):,} long-tail calibration names: the most that keeps the
long tail under ten times the FPR (the issue's 0.1% and 1%) at 95% confidence (`Scores.thresholds`;
section "Thresholds: trusted names, guarded by the long tail"). The other half of the long tail is the
test set its targets are measured on. Until session 12 the thresholds were set on the two together
(FPR 1e-4 of ~184k names); on the shipped run that rule would sinkhole {_pct(ev.get("pooled", {}).get("long_tail_sinkhole", float("nan")))} of the
long-tail test half. Leave-family-out: the {chosen.get("n_families", 57)} DGA families dealt into 5 seeded folds; each fold's model never
sees its families in training or validation, and its thresholds are set on its own calibration names.

**Augmentation** (training rows only, `convert/augment.py`): *suffix dropout* gives half of the training
names, benign and DGA alike, a suffix drawn from one pool (dynamic-DNS providers, cheap TLDs, common
TLDs, a third each), so a suffix stops being a class label (every `*.ddns.net` name in the data is DGA);
*compound copies* add the hyphen-free spelling of hyphenated benign labels (`kindergartensonnenschein`),
the compound-word names the lists hold few of. Nothing from academic, mail-provider or package-registry
domain lists is used (those are kept for independent evaluation).

## Calibration: how many names each threshold rests on

The shipped file's thresholds, set on the trusted and long-tail calibration names with its own
(quantized) scores, applied to each benign set; intervals are exact binomial (Clopper-Pearson) 95% intervals. The previous
model (the `models/default.tflite` this one replaced, at its own shipped thresholds) on the same
held-out names: {ev.get("previous", "not measured")}.

{calibration_table}

## Experiments: chosen by leave-family-out recall

Each configuration was trained 5 times, once per fold of families held out, on the **budget protocol**
(120,000 training names, 4 epochs, CNN width 64; about 1.5-2 minutes per fold on this shared 2-core CPU)
and scored on the families it never saw, at each fold model's own sinkhole threshold (FPR 1e-4) and log
threshold (FPR 1e-3), **set as in sessions 4-12** (on the trusted and long-tail calibration names
pooled): the rule these configurations were chosen under; the shipped rule's figures follow the table.
"char" leaves out the five lexically benign families (charbot and the wordlist
DGAs) from the mean. Long-tail and machine-made rates are averaged over the five fold models.

{experiments_table}

{choice_text(experiments)}

{rules_section}

{stages}

## What the model reads: the label alone, or label + public suffix

Hand-picked names through the fold-0 models of the label-only and the chosen configuration (score and
the action at that model's own thresholds; `python -m convert.probe`):

{probe}

## Architecture comparison

All four Keras architectures on the same footing: the chosen data configuration, fold 0's families held
out, the same 60,000 training names and 3 epochs (the recurrent models cost 5-10x the CNN per name on
this CPU), each scored by its own logits; AUC and TPR on the test names of the families they trained on;
unseen-family recall on fold 0's held-out families at that model's own sinkhole threshold. Timings:
LiteRT dynamic-int8, one thread, on this 2-core machine while training jobs shared it, so read them as
upper bounds and as ratios.

{comparison}

The CNN stays the architecture: best AUC and TPR here, and the only one inside the ~20 us per name
budget at batch 1 (`bench/results/model.md` times all four in one run; the recurrent models cost
3-15x more unbatched). {_unseen_ranking(rows)}

## Default model, random split

Thresholds calibrated on validation benign names, then applied to test names:

{threshold_table}

Top-scoring benign TEST names (the false positives at the strictest thresholds): {top_benign}

Top-scoring long-tail names (one DNS-volume list only, after cleaning): {top_dns}

## Per family: seen (random split) and unseen (leave-family-out)

The unseen columns are the 5-fold leave-family-out runs `{ev["chosen"]}`{_carried(chosen)} of the chosen configuration
({protocol}); the seen columns are the shipped run's random split.

![ROC](roc.png)

![families](families.png)

{family_table}

Families sinkholed >= 90% although never seen: {", ".join(caught) or "none"}.

Families it **cannot** catch when unseen (recall < 0.5 at sinkhole): {", ".join(missed) or "none"}.
The wordlist DGAs (gozi, suppobox, nymaim2, bigviktor) build names from dictionary words, which is what
benign names are made of; charbot is a benign name with two characters changed; short pronounceable or
hash-like families sit in the same region as short benign brand names. A character model can only learn
these from examples, and even then at a false-positive cost; allow/deny lists, threat feeds and the
client watch (NXDOMAIN bursts) are the answer for them.

## How far from the targets, and what limits it

{seen_against_unseen(ev)}
* **Unseen-family recall at the sinkhole threshold** (`{ev["chosen"]}`{_carried(chosen)}: {chosen.get("mean_recall", {}).get("sinkhole", float("nan")):.3f} for a target of 0.6;
  {chosen.get("families_ge_0.9", {}).get("sinkhole", 0)} families >= 0.9 for a target of 30). The sinkhole threshold is held by the long-tail
  guard (0.1% at 95% confidence), not by the trusted FPR, in {ev.get("guard_binds", "not measured")} folds; either way the names the
  model ranks highest among the benign ones are random-looking strings both kinds of list carry (see the
  top benign names above and the long-tail names), label noise the shape rule cannot remove without
  becoming a DGA detector itself. At the log threshold the same models reach {chosen.get("mean_recall", {}).get("log", float("nan")):.3f}. What would move it: benign data
  whose random-looking names are vetted (so the threshold can drop), more and more varied families
  (each new family mostly teaches the model that one family), and signals beyond the name (the client
  watch).
* **Random split TPR at FPR 1e-4** ({tt["fpr_1e-4"]:.3f} for 0.8): the same benign tail, measured on
  35k test names (3.5 names behind 1e-4), with pronounceable and short families among the trained ones.
* **Long tail**: met at the shipped thresholds, because they are guarded on names like it (the long-tail
  calibration names; the rates above are on the test half, never trained or calibrated on).

## Quantization and parity

Each variant scored the run's validation and test names in LiteRT and was compared with the Keras model:

{parity_table}

`full-int8` quantizes the output too: a sigmoid near 1 then has only a handful of representable values
above 0.99, so thresholds in the 1e-3..1e-4 FPR region cannot be expressed; it is reported, not shipped.
The shipped variant's thresholds were re-calibrated on its own scores.

## Family hint

{family_head}

## What the 2-core CPU budget forced

{BUDGET}

## Reproduce

    pip install -e '.[train]'
    python -m convert all          # = convert/sweep.sh, convert.quantize, convert.ship, convert.report

or step by step: `python -m convert.train --arch cnn --out runs/cnn ...` (the arguments are in
`convert/sweep.sh`), `python -m convert.quantize --run runs/cnn`,
`python -m convert.ship --run runs/cnn --variant {variant}`, `python -m convert.probe > runs/probe.md`,
`python -m convert.report`. `python -m convert.experiments` prints the experiments table alone.
The comparison with the previous model needs it in `runs/previous/` (`tflite/dynamic-int8.tflite` and
`default.json` from git history; for an ensemble also `model/` holding its `default.tflite`, `default.json`
and `default.gate.*`); without it that line says "not measured".

Time on this 2-core CPU, shared with other jobs while it ran (session 3, the first full sweep): about
95 minutes in all: the 30 experiment runs ~45 min, the shipped run + the architecture comparison + the
family head ~15 min, the 5 full-size folds ~30 min, quantization, parity, shipping and this report ~5 min;
each run's own training time is in the tables above. A finished run is skipped, so an interrupted
`python -m convert all` resumes where it stopped; `STAGE=ship bash convert/sweep.sh` trains only what the
shipped model needs (the shipped run, the gate, its own 5 folds), `STAGE=vetting` adds the session-5
cleaning runs. A section or row whose runs were not rerun is carried from the report it replaces and
says "not rerun since model ...".
"""


VETTING = """## Benign data you can trust at 1e-4 (#13, session 5)

**Why.** A sinkhole threshold at FPR 1e-4 is set by the ~18 highest-scoring names of a ~180k-name
calibration pool. Session 4 found that most of those names came from the long-tail half of the pool
and were not benign: random strings on cheap TLDs, sliding-window series, WannaCry kill switches.
So the threshold measured how random the worst junk in the DNS-volume lists looks, not the model.

**The list-level cleaning rule** (`convert/clean.py`, `vet` + `Vetting.reason`). It uses no model score
and no DGA family the detector is evaluated on by name. It uses only facts about the list entry
(`benign_sources.tsv.gz`: which providers list it) and about the other names in the list. An entry is
removed, with the first reason that applies, when:

* `generator`: the full name, or a label of >= 8 characters, is produced by a random-character or hash
  generator in `dga/` (MANIFEST kind `char`/`hash`). Wordlist, pronounceable and charbot generators also
  make real names, so they are left out. The data build already dropped the full-name matches, so
  on today's lists this is a guard for list updates.
* `killswitch`: a known kill-switch pattern (WannaCry's `...fsodp9ifjaposdfjhgosurijfaewrwergwea`,
  `asdfasdfasdf`) or lookalike noise (`iiillilli...`, >= 16 characters of i/l/1).
* `hex`, `alnum`, `consonants`: the label-shape rule of session 3 (unchanged, below).
* `series`: the label shares an 8-character run that does not read as language with >= 3 other labels
  of the list. "Does not read as language" means >= 3 digits and a letter, or at most one vowel with
  letter pairs as unlikely as a random label's. This catches `?????2940637fafa.com` and sliding windows
  (`kfjbitxzlhijfcenxejc`, `mkfjbitxzlhijfcenxej`). The rule also removes a label when >= 8 labels under
  the same public suffix differ from it only in a number (`srch1400.cloud`, `newtoki147.com`,
  `awsdns-18.net`).
* `random`: only for names that no curated list carries (Cloudflare Radar and/or Umbrella only). The
  label has >= 10 letters, and its mean letter-pair log-probability is below the 0.5% quantile of
  curated labels of that length. The letter pairs are fitted on the curated (Alexa, Tranco, Majestic)
  labels, so by construction the cut would remove 0.5% of curated names.

Removed names are kept apart by pool (`benign-machine` from the trusted pool, `benign-dnsonly-machine`
from the long tail). They are never trained or calibrated on, and every long-tail rate below is given
twice: cleaned, and uncleaned (the removed names put back into the same test half).

{CLEANING}

The rule also removes real sites: `awsdns-NN` nameserver domains, numbered mirror sets, and Polish,
German or Chinese names whose letter pairs are rare in the curated lists. That is why the uncleaned
long-tail rate is reported next to the cleaned one.

The rule is not blind to what it is for. Its categories were chosen after reading the names that set
last session's thresholds, and series with a short shared prefix (`ym` + 8 random characters under
`.ru`) still get through. What keeps it from being circular is what it computes from: list
membership, the other names in the list, and letter statistics of curated names. It never looks at a
model's score, and no threshold or cut was tuned on a leave-family-out result.

**Effect**, each configuration on the same 5 leave-family-out folds (recall at the sinkhole threshold,
FPR 1e-4 of the fold's calibration pool). "Same models, uncleaned pool" holds the `{CONFIG}` models fixed
and puts the removed long-tail names back into the calibration pool. That is the cleaning's effect on
calibration alone.

{TABLE}

{SETTERS}

**How many names a threshold rests on, and what it promises** (`{CONFIG}-rand`, the random split). Each
threshold is calibrated on the pool, then checked on benign sets it never saw. Intervals are exact
binomial (Clopper-Pearson) 95% intervals.

{SUPPORT}

**The shipped model, recalibrated without retraining.** `models/default.tflite` is scored on the
names of its own split that it never trained on. Its data and split are rebuilt from
`models/default.run.json`, and the data digest is checked. Its thresholds are then set twice: once
from its calibration pool as shipped, once from the same pool with the list-level rule's removals
taken out. The "test DGA" column counts the random split's test names of the families it trained
on, at these pool thresholds. It is not the TPR@1e-4 read off the test set's own ROC.

{SHIPPED}
"""


IDN = """## Punycode names, and the CNN + linear ensemble at full size (#13, session 7)

**Punycode names are outside the model's domain.** The models read LDH characters. A punycode label
(`xn--...`) is Unicode encoded into them, random-looking by construction, and no DGA family in the data
uses them (charbot, a benign name with two characters changed, makes a few from IDN names). Since this
session serving passes such a name unscored (`resolverguard.names.Unscored.PUNYCODE`: the query log and
`explain` say "internationalized label (punycode): outside the model's domain"), still subject to the
lists and the client watch; a name under an IDN suffix with an LDH label (`sberbank.xn--p1ai`) is
scored as before. Training data keeps them (the splits of the runs already trained stay the same);
`convert.evaluate.Scores` leaves benign punycode names out of every pool (calibration, long tail,
trusted test). Held-out DGA names that are punycode stay counted, as the model scored them (serving
passes them: a miss). The same trained models, recalibrated once with the punycode names in the pools
("before") and once without ("after"); long-tail rates are over the names the model judges, and the
long-tail punycode names (passed unscored now) are counted apart:

{POLICY}

What it changes for the shipped CNN: its thresholds (`runs/cnn`, quantized scores): {SHIPPED}.
The CNN never put a punycode name near its sinkhole threshold; the linear stage did, and leaving them
out is what lets its threshold drop onto the names it is meant to judge. The policy's cost: a DGA that
registers IDN names is not judged by the model (lists, feeds and the client watch still see it).

**The CNN + linear stage at full size.** The full-size CNN folds (`f-suffix`) beside the linear stage
(`v-ng1`) and their combinations (`convert/ensemble.py`, same folds, no new training): `e-f1-mean`, the
mean of the two logits; `e-f1-max`, the larger of the two rarities; `e-f1-cmean`, the mean behind the
linear stage as a gate at benign FPR 0.05 (names under it pass without the CNN). All under the
punycode policy; random split: the shipped run `runs/cnn` with `v-ng1-rand` (the same split; `runs/gate`,
the linear stage shipped as `models/default.gate.npz`, is the same training run).

{ENSEMBLES}

{CASCADE}

Families whose unseen recall at sinkhole moved by 0.1 or more from `f-suffix` to `e-f1-mean`: {MOVED}.

{SHIPPED_ENSEMBLE}
"""

CHARLM = """## A family-agnostic member: a character language model of benign labels (#13, session 12)

**Why.** Both shipped members are discriminative: trained against the training families, on a held-out
family they know only what resembles the families they saw. A generative model of BENIGN labels alone
never sees a DGA family, so its recall on a held-out family is its recall on any family.

**What** (`convert/charlm.py`, an experiment, not served). An interpolated Kneser-Ney character n-gram
model (orders 1..k, one start mark `^`, end mark `$`, discounts n1/(n1+2 n2) per order) fitted on the
82,296 trusted benign TRAINING labels of the split (the label before the first dot; no calibration,
test, long-tail or DGA name; the same rows in every fold, checked), in backoff form (one table lookup
per order). A label's scores, higher = less like a benign label: `nll`, mean negative log-likelihood
per symbol (length-normalised); `llr`, log P_uniform - log P_lm with the uniform over the model's 38
symbols (length-aware); `llr_sqrt`, `llr` / sqrt(symbols); `llr_class`, `llr` with the uniform over
the label's own character classes (26 letters, 10 digits, hyphen), so an all-letter random label is not
made to look benign by the digits it lacks. Each score is a run of its own, calibrated on each fold's
calibration pool like a trained model. Combinations (`python -m convert.charlm combine`): `mean` of
logits as `convert.ensemble` (the LM mapped to a logit by a 2-parameter logistic fit on the fold's
validation rows of the families it trained on; `-w` the LM's weight), `max` of calibration rarities.
The CNN (`v-suffix`: budget protocol, 120,000 names, 4 epochs, width 64) and linear (`v-ng1`) folds
were retrained this session with `convert/sweep.sh`'s `vetted` arguments (list cleaning) and reproduce
the session-5 figures (0.187 and 0.289). Columns as in the sections above; random split: the `-rand` runs.

**The LM alone** (orders 3-6 and the four scores, with the two trained members for reference):

{ALONE}

**Combined** with the linear stage (`c-ng-*`) and with the budget CNN + linear stage (`c-3-*`; `v-e1-mean`
is their mean without the LM, the shipped scorer's form at budget size):

{COMBINED}

* **Alone, the LM is behind the linear stage on families it never saw** (best, `lm4c-llr_class`, 0.216
  against 0.289, 3 families >= 0.9 against 6), ahead of the budget CNN (0.187) at the lowest long-tail
  sinkhole rate of any row (0.009%). Its unseen recall is its seen recall, as hypothesised, but that
  recall is low: the random split TPR@1e-4 is 0.41 (linear 0.53). Length-normalised scores (`nll`,
  `llr_sqrt`) are worse: short benign labels are the least predictable per symbol, so they set the
  threshold. Order 4 is the best of 3-6 under both `llr` and `llr_class`.
* **What limits it is what the session-4 and -5 sections found**: the names its sinkhole thresholds rest
  on (the 18 highest calibration names of each fold model; how many from the long-tail half): {SETTERS}.
  Long digit strings (phone numbers, numeric Chinese sites, in the trusted half too: a uniform draw over
  10 digits is what they look like to this score) and random strings on cheap TLDs (with `llr`, the
  uniform over all 38 symbols, the `ym` + 8 characters `.ru` series led); a model of what benign labels
  look like ranks them where it ranks a random DGA name. No family gains 0.2 or more over the linear
  stage; moved by 0.2 or more, `v-ng1` -> `lm4c-llr_class`: {MOVES_LM}.
* **Combined it adds nothing outside the noise.** The best row, `c-ng-lm4c-w1`, is 0.294 against the
  linear stage's 0.289 (+0.005; differences under ~0.02 are noise, and it was picked among 8 LM variants
  and several weights on these same folds), the same 6 families >= 0.9, and it costs random-split
  TPR@1e-4 (0.488 against 0.532). With the CNN as third member (`c-3-lm4c-w1` 0.275 against `v-e1-mean`
  0.267) the same. `max` of rarities is lower everywhere. Moved by 0.1 or more, `v-ng1` ->
  `c-ng-lm4c-w1`: {MOVES_MEAN}.
* **Serving cost, estimated, not built.** In backoff form a name costs one lookup per order tried plus
  one backoff weight per miss: measured on the fold-0 names (order 5), 20 lookups for a benign test
  label and 89 for a DGA one (9.9 and 17.5 symbols). The C linear stage (`resolverguard/_ngramc.c`,
  3 lookups per symbol) costs 0.57 us per name at batch 1 (shipped gate, 4,000 names, best of 5, nice 19,
  load 3.4-4.7), so a C table of the LM (an open-addressing hash of the ~540k order-5 grams and
  histories, ~6-12 MB; order 4: ~175k) would cost ~0.3-1.5 us per name, within the 20 us target beside
  today's 12.6 us. In pure Python it is 23-54 us per name (orders 3-5).

**Not kept**: no combination is ahead of the linear stage alone by more than the noise, and each costs
random-split TPR. A benign LM could only help once the calibration pool's top is vetted (the same
conclusion as session 5; not measured here): with junk random strings in the pool, every family-agnostic randomness score shares the
threshold with them. Reproduce (after `convert/sweep.sh`'s `vetted` runs `v-ng1-*`, `v-suffix-*`):
`python -m convert.charlm fit --out lm4c --order 4 --form registrable --cleaning lists` (one fit, every
fold; `lm3`..`lm6` for the other orders), `python -m convert.charlm combine --members v-ng1,lm4c-llr_class
--how mean --out c-ng-lm4c-w1` (and the other rows' members, `--how`, `--weights`), then
`python -m convert.charlm section --splice models/REPORT.md`."""


SEEDS_TEXT = """## Seeds: how far apart one configuration lands, and the seeds' average (#13, session 14)

Every configuration above was trained once. The budget CNN (`v-suffix`: `label.suffix`, suffix dropout
0.5, 120,000 training names, 4 epochs, width 64, lists cleaning) was trained twice more on the same
split, folds and names with another initialisation and batch order (`--init-seed 2` and `3`:
`v-suffix-i2`, `v-suffix-i3`); `s-avg3` is the mean of the three seeds' logits, `s-avg3-cmean` that mean
in the shipped combination with the linear stage (`cascade-mean-0.05`), `s-one-cmean` the first
seed alone in it. Guarded thresholds, 5 folds, recall of the families each fold never saw
(`python -m convert.seeds`):

{TABLE}

The seeds' mean recall at the sinkhole spreads over {SPREAD}. Their average against one seed:
{GAIN} alone; {GAIN_CASCADE} in the shipped combination. Not kept: a seed average costs one CNN per seed at serving."""

SHAPES_TEXT = """## Shape n-grams in the linear stage (#13, session 15)

The linear stage hashes character 1-5-grams, and a family it never saw shares few of them with those it
did. A shape n-gram maps each character to its class first (vowel `aeiou`; common consonant
`tnshrdlcm`; rare consonant or any other character; digit; hyphen; dot; the end mark), so `xkq3vbh7tz`
and `pwz8jdf2qk` share most of their shape grams and no character 3-gram. `s-shape` is `v-ng1` (same
split, folds, cleaning, C 0.3) with shape grams of orders 3-6 over `label.suffix` hashed into their own
2^14 block beside the 2^18 character block (`python -m convert.ngram --shapes 3,4,5,6`; every serving
path computes them: numpy, the C stage, the Unbound gate with and without its C part;
tests/test_shapes.py). `e-fs-cmean` is the shipped combination (`cascade-mean-0.05` with the full-size
CNN folds `f-suffix`) with `s-shape` in place of `v-ng1` (`e-f1-cmean`). Guarded thresholds, 5 folds,
recall of the families each fold never saw (`python -m convert.shapes section`):

{TABLE}

The shape block moves the linear stage's mean recall at the sinkhole by {GAIN}, and the shipped
combination's by {GAIN_ENSEMBLE}. Families that moved by 0.1 or more, linear stage: {MOVES}; in the
shipped combination: {MOVES_ENSEMBLE}.

{ALONE} The CNN part is kept for the families trained on (the random split), where the linear stage
alone is well behind; on the families never seen it costs a little. `e-fs-w35`, `-w65`, `-w8`: the same
cascade with the linear stage's logit weighted 0.35, 0.65 and 0.8 in the mean instead of 0.5
(`convert.ensemble --how cascade-wmean-0.05-<w>`; an experiment: serving has the plain mean). More weight
on the linear stage buys recall on families never seen with recall on those trained on, and the other way
round; a weight would have to be chosen on the budget folds, not on these, before it ships.

{VERDICT}"""

VARIANTS_TEXT = """## What else was tried for families never seen (#13, session 17)

Five questions about the shipped configuration (the fifth, more of the long tail, from session 18), each
on the same five leave-family-out folds as the sections above (guarded thresholds; recall of the
families each fold never saw; `python -m convert.variants section`, runs in convert/sweep.sh). Differences under ~0.02 in mean recall at the
sinkhole are noise (section "Experiments"); families >= 0.9 moves by one or two between seeds.

**The linear stage's n-gram orders, and label statistics.** Character orders 1-4 or 1-3 instead of 1-5,
shape orders 2-6 or 3-7 instead of 3-6, and (`--stats`, `convert/labelstats.py`) nine statistics of the
label (entropy, vowel share, digits, the longest consonant, vowel and digit runs, letter-digit switches,
distinct characters, hyphens), each binned and one-hot encoded alone and crossed with eight length
buckets, so a linear model can learn how randomness depends on length:

{LINEAR}

The orders move the mean recall at the sinkhole by {ORDERS}: none is ahead of the shipped orders, which
stay. The statistics cost {STATS}: they are what any random string has, so they raise the long tail's
random strings (which hold the sinkhole threshold, sections above) as much as the unseen families, and
the threshold rises with them. Not kept; the code stays for the record (not served).

**A quarter of the long tail trained on** (`--tail-train`, `convert.splits.with_tail_trained`). The long
tail (names only one DNS-volume list carries) was never trained on: half of it calibrates, half tests.
Here half of the calibration half (by the same label hash) is trained on as benign, the variety of CDN,
API and regional names the trusted lists lack; the test half is untouched, and the thresholds rest on
the other quarter. To tell the training from the smaller pool, the runs without it are also read
calibrated on that quarter alone (`Scores.load(tail_quarter_out=True)`):

{TAIL}

The linear stage alone: {TAIL_VS_QUARTER} at the sinkhole against the same calibration names, {TAIL_VS_BASE}
against the shipped practice (the whole calibration half, nothing of the tail trained on: within noise),
with the long-tail test half sinkholed / logged at {TAIL_RATES} against {BASE_RATES}, and {TAIL_TARGET}
at the long-tail target (a threshold at 0.1% of the long-tail calibration names). Its sinkhole threshold
is then held by the trusted FPR instead of the long-tail guard (the guard sets it in {BINDS_BASE} folds of
`s-shape`, {BINDS_TAIL} of `s-tail`): the top of the trusted pool is the same kind of random strings
(names both DNS-volume lists carry), so alone it gains nothing at the sinkhole.

The CNN gains more: the budget CNN trained on the quarter is {TAIL_CNN_Q} against the same calibration
names and {TAIL_CNN_B} against the shipped practice; the two in the shipped form (`cascade-mean-0.05`)
{TAIL_ENS_Q} and {TAIL_ENS_B}, with {ENS_FAMILIES} families >= 0.9, random-split TPR at FPR 1e-4
{ENS_TPR}, and the long tail sinkholed / logged at {ENS_RATES}: ahead on each column the issue sets, at
budget size (at the sinkhole by less than the ~0.02 noise mark; the random-split TPR rests on ~3.5 test
names, one seed). At full size (all training names, 8 epochs; `f-tail` folds, the random split
`runs/cnn`, called `cnn-tail` in session 17), the shipped form trained on the quarter reaches {FULL}; the
shipped form without it (`e-fs-cmean`, section "Shape n-grams", same data and folds) is the row to hold
it against. **Shipped in session 18** (`runs/cnn`, `runs/gate` and the shipped-form rows rebuilt with
`--tail-train` together: the first sections of this report); its thresholds rest on 33k long-tail
calibration names instead of 67k.

**More of the long tail, and a wider CNN** (session 18, `--tail-eighths 3`): three eighths of the long tail trained on
(the quarter and one more eighth of the calibration half), the thresholds on the last eighth (16k names),
against the quarter, budget protocol:

{MORE_TAIL}

Three eighths against a quarter: the linear stage {MORE_LINEAR}, the budget CNN {MORE_CNN}, the shipped form
{MORE_ENS} at the sinkhole; the shipped form's random-split TPR at FPR 1e-4 {MORE_TPR} (~3.5 test names
behind it), its long tail sinkholed / logged {MORE_RATES}. Within noise on families never seen, for half
the long-tail names behind the thresholds: the quarter stays. The last two rows: with the quarter, a CNN of
width 128 instead of 64 (twice the filters: a larger file, not timed here) moves the CNN by {WIDE_CNN} and the shipped form by
{WIDE_ENS} (random-split TPR {WIDE_TPR}): within noise, so the width stays 64.

**A CNN with a character-class branch** (`--arch cnn_shape`): beside the character embedding, a fixed
one-hot of each character's class (the shape n-grams' classes) through convolutions of widths 3-6.
Budget protocol (120,000 names, 4 epochs, width 64):

{CNN}

On families never seen: {CSHAPE} alone, {CSHAPE_ENSEMBLE} in the shipped form (noise). The random-split
TPR at FPR 1e-4 looked better with one seed, but it rests on ~3.5 test names: a second initialisation
(`--init-seed 2`) of each gives {SEEDS}. Not kept: the learned embedding already groups characters this way.

**The linear stage's weight in the shipped form, on the budget folds** (`cascade-wmean-0.05-<w>`, the
budget CNN `v-suffix` with `s-shape`), as session 16 asked before changing serving's plain mean:

{WEIGHTS}

The same trade as on the full-size folds (section "Shape n-grams"): more weight on the linear stage buys
recall on families never seen with recall on the families trained on. No weight is ahead of 0.5 on
both, so serving keeps the plain mean.
"""
