"""Writes models/REPORT.md: data cleaning, calibration, the experiments, the architecture comparison
and the default model's evaluation.

    python -m convert.report --default runs/cnn --variant dynamic-int8 --out models/

Every number comes from the run directories (scores.npz, tflite/parity.json, run.json) and the data
files; nothing is typed in by hand, so re-running training and this script re-creates the report.
Runs that were not rerun (an experiment sweep costs hours on a 2-core CPU) are not filled in: their
figures are carried from the report being replaced (models/eval.json, and REPORT.md for the sections
eval.json does not hold), each labelled "not rerun since model <version>" (`Previous`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.clean import cleaning_report
from convert.data import BENIGN_DNS_ONLY, BENIGN_MACHINE, DEFAULT_DATA_DIR, benign_pools
from convert.evaluate import (
    FPR_TARGETS,
    Scores,
    evaluate_lfo,
    evaluate_run,
    fpr_name,
    plot_families,
    plot_roc,
    threshold_setters,
    threshold_support,
)
from convert.experiments import CHOSEN, FOLDS, FULL, carried_label, configs, summarise, threshold_rules
from convert.report_text import CAL_TAIL, CAL_TRUSTED
from convert.splits import TEST
from convert.variants import guard_binds

# The architecture comparison: the chosen data configuration, fold 0's families held out, the same
# 60k training names and 3 epochs for each (the recurrent models cost 5-10x the CNN on this CPU).
PREVIOUS = Path("runs/previous")  # the model this one replaces: tflite/dynamic-int8.tflite + default.json
VETTED, VETTED_BEFORE = "v-ng1", "x-ng1"  # the linear stage on the lists-cleaned data, and before
# The budget CNN and the CNN + linear mean on the same data, and the shipped configuration's own folds.
VETTED_ALSO = ("v-suffix", "v-e1-mean", "f-suffix")
COMPARE = {arch: f"runs/a-{arch}-lfo0" for arch in ("cnn", "lstm", "bilstm", "cnn_lstm")}
CARRIED = "*Not rerun since model `{version}`: carried unchanged from its REPORT.md.*"
CARRIED_MARK = "*Not rerun since model `"


@dataclass(frozen=True)
class Previous:
    """The report this one replaces (models/eval.json and REPORT.md before they are rewritten): the
    only source of figures for runs not rerun, so a partial rerun never drops or invents a section.
    `version` is the model that report was written for; a figure it had itself carried keeps the
    version it was carried from."""

    version: str
    eval: dict[str, Any]
    text: str

    @classmethod
    def load(cls, out: Path) -> Previous:
        ev = json.loads((out / "eval.json").read_text()) if (out / "eval.json").exists() else {}
        text = (out / "REPORT.md").read_text() if (out / "REPORT.md").exists() else ""
        found = re.search(r"Model version `([^`]+)`", text)
        return cls(str(ev.get("model_version") or (found[1] if found else "unknown")), ev, text)

    def carry(self, fresh: dict[str, dict[str, Any]], key: str, rule: str | None = None) -> dict[str, dict[str, Any]]:
        """`fresh` results by name, then those of `self.eval[key]` that were not rerun, each marked
        with the model version they were measured for; with `rule`, only those whose thresholds were
        set by that rule (`Scores.thresholds`; results before session 13 name none: "pooled")."""
        out = dict(fresh)
        for name, r in self.eval.get(key, {}).items():
            if name not in fresh and (rule is None or r.get("rule", "pooled") == rule):
                out[name] = r | {"carried_from": r.get("carried_from", self.version)}
        return out

    def rows(self, fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The architecture comparison: fresh rows, then the previous rows of architectures not rerun."""
        have = {r["arch"] for r in fresh}
        old = [r | {"carried_from": r.get("carried_from", self.version)} for r in self.eval.get("comparison", [])]
        return fresh + [r for r in old if r["arch"] not in have]

    def section(self, start: str, end: str) -> str:
        """The previous report's text from the line starting with `start` up to (not including) `end`,
        labelled as carried (under its heading); empty when the previous report has no such section."""
        at = self.text.find(start)
        if at < 0:
            return ""
        stop = self.text.find(end, at + len(start))
        block = self.text[at : stop if stop >= 0 else len(self.text)].strip()
        return label_carried(block, self.version)

    def marked(self, start: str, end: str, missing: str) -> str:
        """A generated section (between its `start` and `end` marks) carried from the previous report
        and labelled so, when its runs are not here; `missing` when that report has none either."""
        if start not in self.text or end not in self.text:
            return missing
        body = self.text[self.text.index(start) + len(start) : self.text.index(end)].strip()
        return f"{start}\n{label_carried(body, self.version)}\n{end}"

    def table_in(self, heading: str) -> str:
        """The first Markdown table (with a carried label right above it, if it had one) of the
        previous report's section `heading`, labelled as carried."""
        body = self.section(heading, "\n## ")
        lines = body.splitlines()[1:]  # under the heading (and the label this call may have added)
        first = next((i for i, ln in enumerate(lines) if ln.startswith("|")), None)
        if first is None:
            return ""
        last = first
        while last + 1 < len(lines) and lines[last + 1].startswith("|"):
            last += 1
        labels = [ln for ln in lines[:first] if ln.startswith(CARRIED_MARK)]
        table = "\n".join(lines[first : last + 1])
        return f"{labels[-1]}\n\n{table}" if labels else label_carried(table, self.version)


REPLACED_KEYS = ("thresholds", "tpr_at_fpr_trained", "auc_trained", "threshold_table", "dns_only_benign")
REPLACED_KEYS += ("calibration", "cleaning_rule", "chosen", "shipped_ensemble", "threshold_rules")


def replaced(previous: Previous, version: str) -> dict[str, Any]:
    """The figures of the model this one replaced (its side of "Against the previous model"): from the
    previous eval.json, or, when that report was already this model's (a regeneration), the figures
    it had kept of the model before."""
    if previous.version == version:
        return dict(previous.eval.get("replaced", {}))
    ev = previous.eval
    out = {k: ev[k] for k in REPLACED_KEYS if k in ev} | {"model_version": previous.version}
    chosen = ev.get("experiments", {}).get(ev.get("chosen", ""))
    return out | ({"experiments": {ev["chosen"]: chosen}} if chosen else {})


def partial_note(partial: dict[str, list[Path]]) -> str:
    """Configurations some of whose fold runs exist: a mean over some folds' families is not comparable
    with the others', so they stay out of the tables (and a carried row of that name stays in)."""
    if not partial:
        return ""
    rules = {
        name: json.loads((runs[0] / "run.json").read_text()).get("cleaning", "shape") for name, runs in partial.items()
    }
    listed = ", ".join(f"`{n}` ({len(r)} of {FOLDS} folds, {rules[n]} cleaning)" for n, r in partial.items())
    return f"\n\nPartly rerun, left out of the tables until all {FOLDS} folds exist: {listed}."


def label_carried(block: str, version: str) -> str:
    """`block` with the carried label after its heading line (or first, when it has none); a block
    already carried keeps the label it has."""
    if CARRIED_MARK in "\n".join(block.splitlines()[:4]):
        return block
    label = CARRIED.format(version=version)
    if block.startswith("#"):
        head, _, rest = block.partition("\n")
        return f"{head}\n\n{label}\n{rest}"
    return f"{label}\n\n{block}"


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def comparison_row(name: str, run: Path, variant: str) -> dict[str, Any]:
    """Quality from the Keras model's logits (the same for every architecture); size and speed from
    its quantized `variant` in LiteRT."""
    parity_path = run / "tflite" / "parity.json"
    parity = json.loads(parity_path.read_text()).get(variant, {}) if parity_path.exists() else {}
    ev = evaluate_run(run, "logit")
    lfo = evaluate_lfo([run], "logit")
    info = json.loads((run / "run.json").read_text())
    trained_on = [v["sinkhole"] for f, v in lfo.items() if f not in info.get("exclude", ())]
    return {
        "arch": name,
        "auc": ev["auc_trained"],
        "tpr_1e-3": ev["tpr_at_fpr_trained"]["fpr_1e-3"],
        "tpr_1e-4": ev["tpr_at_fpr_trained"]["fpr_1e-4"],
        "lfo_recall": float(np.mean(trained_on)) if trained_on else None,
        "dns_only_flagged": ev["dns_only_benign"]["flagged"]["sinkhole"],
        "params": info["params"],
        "train_rows": info["train_rows"],
        "epochs": info["epochs_run"],
        "train_s": info["train_seconds"],
        "kb": parity["bytes"] / 1024 if "bytes" in parity else None,
        "us1": parity.get("us_per_name_batch1"),
        "us64": parity.get("us_per_name_batch64"),
        "held_out": info["held_out"],
    }


def comparison_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| arch | AUC | TPR@FPR 1e-3 | TPR@FPR 1e-4 | unseen-family recall @sinkhole (fold 0) | long-tail sinkholed "
        "| params | .tflite KB | us/name b=1 | us/name b=64 | train rows | epochs | train s |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append(
            f"| {carried_label(r['arch'], r)} | {_fmt(r['auc'])} | {_fmt(r['tpr_1e-3'], 3)} | {_fmt(r['tpr_1e-4'], 3)} "
            f"| {_fmt(r['lfo_recall'], 3)} | {_fmt(r['dns_only_flagged'] * 100, 2)}% | {r['params']:,} "
            f"| {_fmt(r['kb'], 1)} | {_fmt(r['us1'], 1)} | {_fmt(r['us64'], 1)} | {r['train_rows']:,} "
            f"| {r['epochs']} | {r['train_s']:.0f} |"
        )
    return "\n".join(lines)


def family_table(seen: dict[str, Any], unseen: dict[str, Any], kinds: dict[str, str]) -> str:
    lines = [
        "| family | kind | test names | recall@log (seen) | recall@sinkhole (seen) "
        "| recall@log (unseen, LFO) | recall@sinkhole (unseen, LFO) | fold |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fam in sorted(set(seen) | set(unseen)):
        s, u = seen.get(fam, {}), unseen.get(fam, {})
        lines.append(
            f"| {fam} | {kinds.get(fam, '?')} | {s.get('n', u.get('n', 0))} | {_fmt(s.get('log'), 3)} "
            f"| {_fmt(s.get('sinkhole'), 3)} | {_fmt(u.get('log'), 3)} | {_fmt(u.get('sinkhole'), 3)} "
            f"| {u.get('fold', '')} |"
        )
    return "\n".join(lines)


def kinds_from_manifest(data_dir: Path) -> dict[str, str]:
    path = data_dir / "dga" / "MANIFEST.tsv"
    out: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines()[1:]:
            fields = line.split("\t")
            if len(fields) > 2:
                out.setdefault(fields[1], fields[2])
    return out


def calibration(run: Path, variant: str) -> dict[str, Any]:
    """The shipped thresholds (`Scores.thresholds` with the shipped file's own scores) and what they
    do on each benign set, with the 95% interval of each rate."""
    s = Scores.load(run, variant)
    thresholds = s.thresholds()
    named = {fpr_name(f): thresholds[fpr_name(f)] for f in FPR_TARGETS}
    sets = {
        CAL_TRUSTED: s.score[s.trusted_calibration()],
        CAL_TAIL: s.score[s.tail_calibration()],
        "test benign": s.score[s.rows(TEST) & (s.y == 0)],
        "long tail (one DNS list only, cleaned; the half not calibrated on)": s.score[s.long_tail()],
        "machine-made (removed by the cleaning rule)": s.score[(s.family == BENIGN_MACHINE) & s.judged()],
    }
    return {name: threshold_support(scores, named) for name, scores in sets.items()}


def pooled(run: Path, variant: str) -> dict[str, float]:
    """The rule of sessions 4-12, for the record: thresholds at FPR f of the trusted and long-tail
    calibration names together."""
    s = Scores.load(run, variant)
    thresholds = s.thresholds(rule="pooled")
    tail = s.score[s.long_tail()]
    return {
        "long_tail_sinkhole": float((tail >= thresholds["fpr_1e-4"]).mean()),
        "long_tail_log": float((tail >= thresholds["fpr_1e-3"]).mean()),
    }


def previous_model(run: Path, previous: Path = PREVIOUS) -> str:
    """The model shipped before this one, on the same held-out names, at its own shipped thresholds
    (given what it reads: for a label-only model the part before the first dot of `label.suffix`)."""
    from convert.quantize import run_tflite
    from resolverguard.encoding import NameEncoder

    if not (previous / "tflite" / "dynamic-int8.tflite").exists():
        return "not measured (runs/previous missing)"
    meta = json.loads((previous / "default.json").read_text())
    encoder = NameEncoder(meta["input"]["charset"], meta["input"]["maxlen"])
    content = (previous / "tflite" / "dynamic-int8.tflite").read_bytes()
    whole = previous / "model" / "default.tflite"  # an ensemble: its files as models/ held them
    if meta.get("ensemble") and not whole.exists():
        return "not measured (an ensemble: runs/previous/model/ missing)"
    s = Scores.load(run)
    parts = []
    machine = (s.family == BENIGN_MACHINE) & s.judged()
    for name, mask in (("long-tail test half", s.long_tail()), ("machine-made", machine)):
        texts = s.labels[mask].tolist()
        if meta.get("input", {}).get("form", "label") == "label":
            texts = [t.split(".", 1)[0] for t in texts]
        if meta.get("ensemble"):  # the whole scorer, as serving loads it: its thresholds are the ensemble's
            from resolverguard.model import load_model

            scores = load_model(whole).score(texts)
        else:
            scores = run_tflite(content, encoder.encode(texts))
        rates = {a: float((scores >= meta["thresholds"][a]).mean()) for a in ("sinkhole", "log")}
        parts.append(f"{name} sinkholed {rates['sinkhole'] * 100:.3f}%, logged {rates['log'] * 100:.2f}%")
    return f"`{meta['model_version']}`: " + "; ".join(parts)


def calibration_table(cal: dict[str, Any]) -> str:
    lines = ["| benign set | names | " + " | ".join(f"at {t}: flagged, FPR [95% interval]" for t in _fprs()) + " |"]
    lines.append("|---|---|" + "---|" * len(_fprs()))
    for name, per in cal.items():
        n = next(iter(per.values()))["n"]
        cells = [f"{v['flagged']}, {v['fpr']:.2e} [{v['ci95'][0]:.1e}, {v['ci95'][1]:.1e}]" for v in per.values()]
        lines.append(f"| {name} | {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fprs() -> list[str]:
    return [fpr_name(f) for f in FPR_TARGETS]


def cleaning_table(report: dict[str, Any]) -> str:
    reasons = ("hex", "alnum", "consonants")
    titles = {BENIGN_DNS_ONLY: "long tail (one DNS-volume list)", "benign": "trusted (training + calibration)"}
    lines = ["| benign pool | names (eTLD+1) | " + " | ".join(reasons) + " | removed | examples |"]
    lines.append("|---|---|" + "---|" * (len(reasons) + 2))
    for pool, r in sorted(report.items()):
        removed = sum(r["removed"].values())
        shown = "; ".join(f"{why}: " + ", ".join(f"`{d}`" for d in ex[:4]) for why, ex in r["examples"].items())
        lines.append(
            f"| {titles.get(pool, pool)} | {r['names']:,} | "
            + " | ".join(str(r["removed"].get(why, 0)) for why in reasons)
            + f" | {removed:,} ({removed / r['names'] * 100:.2f}%) | {shown} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m convert.report", description=__doc__.split("\n")[0])
    p.add_argument("--default", type=Path, default=Path("runs/cnn"))
    p.add_argument("--variant", default="dynamic-int8")
    p.add_argument("--out", type=Path, default=Path("models"))
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    previous = Previous.load(a.out)
    # The shipped run's own run.json first: the sections below read the model in models/ with it.
    shutil.copy(a.default / "run.json", a.out / "default.run.json")
    meta = json.loads((a.out / "default.json").read_text()) if (a.out / "default.json").exists() else {}
    fresh_rows = [
        comparison_row(n, Path(r), a.variant) for n, r in COMPARE.items() if (Path(r) / "scores.npz").exists()
    ]
    rows = previous.rows(fresh_rows)
    ev = evaluate_run(a.default, a.variant)
    ev["model_version"] = meta.get("model_version", "?")
    found = {name: runs for name, runs in configs().items() if len(runs) >= FOLDS}
    partial = {name: runs for name, runs in configs().items() if len(runs) < FOLDS}
    # The experiments table keeps the rule the configurations were chosen under (pooled calibration,
    # sessions 4-12); the chosen configuration's and the shipped scorer's figures use the shipped rule.
    fresh = {name: summarise(runs, rule="pooled") for name, runs in found.items()}
    experiments = previous.carry(fresh, "experiments", rule="pooled")
    guarded = {name: summarise(runs) for name, runs in found.items()}
    shipped_rule = previous.carry(guarded, "experiments_guarded", rule="guarded")
    made = {(n, rule): (found[n], r) for rule, got in (("pooled", fresh), ("guarded", guarded)) for n, r in got.items()}
    ev["chosen"] = FULL if FULL in experiments or FULL in shipped_rule else CHOSEN
    ev["guard_binds"] = guard_binds(Path("runs"), ev["chosen"])  # what holds the sinkhole threshold
    chosen = shipped_rule.get(ev["chosen"]) or experiments.get(ev["chosen"], {})
    if "carried_from" in chosen and previous.eval.get("chosen") == ev["chosen"]:
        ev["leave_family_out"] = previous.eval.get("leave_family_out", {})
    else:
        ev["leave_family_out"] = chosen.get("families", {})
    ev["experiments"] = {n: {k: v for k, v in r.items() if k != "families"} for n, r in experiments.items()}
    ev["experiments_guarded"] = {n: {k: v for k, v in r.items() if k != "families"} for n, r in shipped_rule.items()}
    rules = threshold_rules(configs(Path("runs"), "*-lfo[0-9]"), made)  # (the summaries above not made again)
    ev["threshold_rules"] = previous.carry(rules, "threshold_rules")
    ev["comparison"] = rows
    ev["calibration"] = calibration(a.default, a.variant)
    ev["pooled"] = pooled(a.default, a.variant)
    ev["previous"] = previous_model(a.default)
    cleaning = json.loads((a.default / "run.json").read_text()).get("cleaning", "shape")
    ev["cleaning_rule"] = cleaning
    ev["cleaning"] = cleaning_report(benign_pools(DEFAULT_DATA_DIR, cleaning))
    parity = json.loads((a.default / "tflite" / "parity.json").read_text())
    ev["parity"] = parity
    ev["replaced"] = replaced(previous, ev["model_version"])
    ev["shipped_ensemble"] = shipped_ensemble(meta, configs(Path("runs"), "*-lfo[0-9]"))
    ev["replay_folds"] = replay_folds(Path("bench/results/replay-folds.json"))
    (a.out / "eval.json").write_text(json.dumps(ev, indent=2))
    plot_roc(
        {f"{r['arch']} (fold 0, {r['train_rows'] // 1000}k names)": Path(COMPARE[r["arch"]]) for r in fresh_rows}
        | {f"{a.default.name} (shipped run)": a.default},
        a.out / "roc.png",
        "logit",
    )
    plot_families(ev["family_recall"], ev["leave_family_out"], "sinkhole", a.out / "families.png")
    text = render(
        ev, rows, experiments, kinds_from_manifest(DEFAULT_DATA_DIR), meta, a, shipped_rule, previous, partial
    )
    text = text.replace("\n## Reproduce", "\n" + vetting_section(previous, cleaning) + "\n\n## Reproduce", 1)
    text = text.replace("\n## Reproduce", "\n" + idn_section(previous, a.default, a.variant) + "\n\n## Reproduce", 1)
    text = text.replace("\n## Reproduce", "\n" + charlm_section(previous) + "\n\n## Reproduce", 1)
    text = text.replace("\n## Reproduce", "\n" + seeds_section(previous) + "\n\n## Reproduce", 1)
    text = text.replace("\n## Reproduce", "\n" + shapes_section(previous) + "\n\n## Reproduce", 1)
    text = text.replace("\n## Reproduce", "\n" + variants_section(previous) + "\n\n## Reproduce", 1)
    (a.out / "REPORT.md").write_text(text)
    print(text[:3000])


def shipped_ensemble(meta: dict[str, Any], found: dict[str, list[Path]]) -> dict[str, Any] | None:
    """When the shipped scorer is the CNN + linear ensemble (models/default.json `ensemble`): its
    leave-family-out figures (the same combination of the same fold models,
    `convert.shapes.shipped_combination`: `e-ft-cmean` since session 18), its
    random-split and long-tail figures (written by convert.ship) and its cost (bench/ensemble.py)."""
    from convert.shapes import shipped_combination

    spec, config = meta.get("ensemble"), shipped_combination()
    if not spec or config not in found:
        return None
    r = summarise(found[config])
    bench = Path("bench/results/ensemble.json")
    speed = {}
    if bench.exists():
        rows = {row["names"]: row for row in json.loads(bench.read_text())["rows"]}
        for key, name in (("popular", "popular labels"), ("random", "random labels")):
            if name in rows:
                speed |= {f"{key}_us_b1": rows[name]["ensemble_us_b1"], f"{key}_ratio_b1": rows[name]["ratio_b1"]}
    return {
        "config": config,
        "lofo": {
            "mean": r["mean_recall"]["sinkhole"],
            "n90": r["families_ge_0.9"]["sinkhole"],
            "n": r["n_families"],
            "folds": r["folds"],
            "families": {f: v["sinkhole"] for f, v in r["families"].items()},
        },
        "random_split": spec.get("random_split", {}),
        "thresholds": meta.get("thresholds", {}),
        "speed": speed,
    }


def replay_folds(path: Path) -> dict[str, Any] | None:
    """The end-to-end replay of the shipped recipe's fold models on the families each never saw
    (bench/replay_folds.py): C2 lookups blocked by the model alone and with the client watch."""
    if not path.exists():
        return None
    got = json.loads(path.read_text())
    passes = got["passes"]
    return {
        "families": len(got["families"]),
        "folds": len(got["folds"]),
        "model_alone": passes["watch off"]["mean_c2_all_share"],
        "with_watch": passes["watch on"]["mean_c2_all_share"],
        "with_watch_ge_0.9": passes["watch on"]["families_ge_0.9"],
        "benign_blocked": passes["watch on"]["benign"]["blocked"] + passes["watch off"]["benign"]["blocked"],
    }


def idn_section(previous: Previous, default: Path, variant: str) -> str:
    """The session-7 section (punycode names, the full-size ensembles): from its runs when they exist,
    else carried from the previous report."""
    from convert.idn import END, START, section

    if not (Path("runs") / "e-f1-mean-lfo0" / "scores.npz").exists():
        missing = "(the session-7 punycode and ensemble runs were not run: `python -m convert.idn`)"
        return previous.marked(START, END, missing)
    return section(Path("runs"), default, variant)


def ran(configs: Iterable[str], root: Path = Path("runs")) -> bool:
    """Whether every configuration a generated section tables has its first fold: a section is made
    again only whole, never from the few of its runs a partial rerun (STAGE=ship) happens to share."""
    return all((root / f"{name}-lfo0" / "scores.npz").exists() for name in configs)


def charlm_section(previous: Previous) -> str:
    """The session-12 section (the benign character LM): from its runs when they exist, else carried."""
    from convert.charlm import END, START, section

    if not (Path("runs") / "c-3-lm4c-w1-lfo0" / "scores.npz").exists():
        return previous.marked(START, END, "(the character-LM runs were not run: `python -m convert.charlm`)")
    return section(Path("runs"))


def seeds_section(previous: Previous) -> str:
    """The session-14 section (seeds of the budget CNN): from its runs when they exist, else carried."""
    from convert.seeds import AVERAGE_CASCADE, END, START, section

    if not (Path("runs") / f"{AVERAGE_CASCADE}-lfo0" / "scores.npz").exists():
        return previous.marked(START, END, "(the seed runs were not run: `python -m convert.seeds`)")
    return section(Path("runs"))


def shapes_section(previous: Previous) -> str:
    """The session-15 section (shape n-grams in the linear stage): from its runs, else carried."""
    from convert.shapes import AFTER, BEFORE, END, ENSEMBLES, START, WEIGHTED, section

    if not ran((BEFORE, AFTER, *ENSEMBLES, *WEIGHTED)):
        return previous.marked(START, END, "(the shape n-gram runs were not run: convert/sweep.sh)")
    return section(Path("runs"))


def variants_section(previous: Previous) -> str:
    """The session-17 section (what else was tried for families never seen): from its runs, else carried."""
    from convert.variants import END, ROWS, START, section

    if not ran(name for _, name, _ in ROWS):
        return previous.marked(START, END, "(the session-17 runs were not run: convert/sweep.sh)")
    return section(Path("runs"))


def vetting_section(previous: Previous, cleaning: str) -> str:
    """The session-5 section on the list-level cleaning rule: from its runs when they exist, else
    carried from the previous report. When the shipped model is itself trained on the vetted data,
    the recalibration of a shape-cleaned shipped model has nothing to measure: the previous report's
    table (the evidence the rule was adopted on) is carried instead."""
    from convert.vetting import END, START, section

    if not (Path("runs") / f"{VETTED}-lfo0" / "scores.npz").exists():
        return previous.marked(START, END, "(the list-level cleaning runs were not run)")
    shipped = None
    if cleaning == "lists":
        lines = previous.section("**The shipped model, recalibrated without retraining.**", END).splitlines()
        marks = [ln for ln in lines if ln.startswith(CARRIED_MARK)]
        table = "\n".join(marks[-1:] + [""] + [ln for ln in lines if ln.startswith("|")])
        shipped = (
            "The model shipped now is trained and calibrated on the vetted data (`--cleaning lists`), so its "
            "thresholds already come from the vetted pool (Summary). The previous shipped model, shape "
            "cleaning, recalibrated as described:\n\n" + (table if "|" in table else "(not in the previous report)")
        )
    return section(VETTED, [VETTED_BEFORE], VETTED_ALSO, shipped=shipped)


def render(
    ev: dict[str, Any],
    rows: list[dict[str, Any]],
    experiments: dict[str, dict[str, Any]],
    kinds: dict[str, str],
    meta: dict[str, Any],
    a: argparse.Namespace,
    shipped_rule: dict[str, dict[str, Any]],
    previous: Previous,
    partial: dict[str, list[Path]],
) -> str:
    from convert.experiments import rules_table
    from convert.experiments import table as experiments_table
    from convert.report_text import RULES, narrative

    table = "\n".join(
        ["| threshold | test FPR | benign flagged | test TPR |", "|---|---|---|---|"]
        + [
            f"| {t['threshold']:.6f} | {t['fpr']:.5f} | {t['benign_flagged']} | {t['tpr']:.4f} |"
            for t in ev["threshold_table"]
        ]
    )
    par = "\n".join(
        [
            "| variant | bytes | max abs diff | mean abs diff | action changes | us/name b=1 | us/name b=64 | ok |",
            "|---|---|---|---|---|---|---|---|",
        ]
        + [
            f"| {v} | {p.get('bytes', 0):,} | {_fmt(p.get('max_abs_diff'), 5)} | {_fmt(p.get('mean_abs_diff'), 6)} "
            f"| {_fmt(p.get('action_changes', float('nan')) * 100, 3)}% | {_fmt(p.get('us_per_name_batch1'), 1)} "
            f"| {_fmt(p.get('us_per_name_batch64'), 1)} | {p.get('ok', p.get('error', ''))} |"
            for v, p in ev["parity"].items()
        ]
    )
    dns = ev["dns_only_benign"]
    return narrative(
        ev=ev,
        meta=meta,
        variant=a.variant,
        experiments=experiments,
        experiments_table=experiments_table(experiments) + partial_note(partial),
        shipped_rule=shipped_rule,
        rules_section=RULES.format(table=rules_table(ev["threshold_rules"])),
        comparison=comparison_table(rows),
        threshold_table=table,
        calibration_table=calibration_table(ev["calibration"]),
        cleaning_table=cleaning_table(ev["cleaning"]),
        parity_table=par,
        family_table=family_table(ev["family_recall"], ev["leave_family_out"], kinds),
        top_benign=", ".join(f"`{lab}` {s:.3f}" for lab, s in ev["top_benign"][:15]),
        top_dns=", ".join(f"`{lab}` {s:.3f}" for lab, s in dns["top"][:10]),
        rows=rows,
        family_head=family_head_text(Path("runs/family/family.json"), a.out / "family.json"),
        probe=Path("runs/probe.md").read_text()
        if Path("runs/probe.md").exists()
        else previous.table_in("## What the model reads") or "(run `python -m convert.probe`)",
        stages=stages_section() or previous.section("### A linear n-gram stage", "\n## "),
        previous=ev.get("replaced", {}),
    )


def stages_section(root: Path = Path("runs")) -> str:
    """The session-4 stage experiments (linear stage, ensembles, cascade, word features) from their
    runs; empty when they were not run."""
    from convert.ensemble import STAGE_CONFIGS, report, speed_text
    from convert.report_text import STAGES

    cnn = [root / f"x-suffix-lfo{k}" for k in range(5) if (root / f"x-suffix-lfo{k}" / "scores.npz").exists()]
    if not (root / "x-ng1-lfo0" / "scores.npz").exists() or not cnn:
        return ""
    cascades = [c for c in STAGE_CONFIGS if c.startswith("x-e1-cascade")]
    table = report(root, "x-*", [], None, STAGE_CONFIGS).partition("\n\n")[0]
    cascade = report(root, "x-none", cascades, None).partition("\n\n")[2]
    stage = root / "x-ng1-rand" / "linear.npz"
    speed = speed_text(stage) if stage.exists() else "(not timed)."
    tail, total, names = threshold_setters(cnn)
    setters = (
        f"Of the {total} names the five `x-suffix` fold models' sinkhole thresholds rest on (the 18 "
        f"highest-scoring calibration names of each), {tail} come from the long-tail half of the pool."
    )
    wordseg = root / "wordseg.md"
    fields = {
        "{TABLE}": table,
        "{CASCADE}": "\n".join("  " + line for line in cascade.strip().splitlines()),
        "{SPEED}": speed,
        "{WORDSEG}": "\n".join("  " + line for line in wordseg.read_text().strip().splitlines()[2:])
        if wordseg.exists()
        else "  (run `python -m convert.wordseg`)",
        "{SETTERS}": setters,
    }
    text = STAGES
    for key, value in fields.items():
        text = text.replace(key, value)
    return text


def family_head_text(path: Path, shipped: Path | None = None) -> str:
    """The family head trained in this run (`path`), else the one already in models/ (`shipped`),
    labelled as not retrained."""
    if not path.exists():
        if shipped is None or not shipped.exists():
            return "Not trained in this run."
        return "Not retrained in this run; the head already in models/ (trained apart from the CNN): " + (
            family_head_text(shipped)
        )
    meta = json.loads(path.read_text())
    per = sorted(meta["test_top1_accuracy_per_family"].items(), key=lambda kv: kv[1])
    return (
        f"`models/family.tflite`: a softmax over {len(meta['families'])} families (dynamic-range int8), "
        f"test top-1 accuracy {meta['test_top1_accuracy']:.3f} on names of those families. Least separable: "
        + ", ".join(f"{f} {a:.2f}" for f, a in per[:6])
        + ". The resolver logs its guess as `family_hint` (with `family_p`) for flagged names only."
    )


if __name__ == "__main__":
    main()
