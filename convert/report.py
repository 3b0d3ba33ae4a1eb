"""Writes models/REPORT.md: data cleaning, calibration, the experiments, the architecture comparison
and the default model's evaluation.

    python -m convert.report --default runs/cnn --variant dynamic-int8 --out models/

Every number comes from the run directories (scores.npz, tflite/parity.json, run.json) and the data
files; nothing is typed in by hand, so re-running training and this script re-creates the report.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from convert.clean import cleaning_report
from convert.data import BENIGN_DNS_ONLY, BENIGN_MACHINE, DEFAULT_DATA_DIR, benign_pools
from convert.evaluate import (
    FPR_TARGETS,
    Scores,
    calibrate,
    evaluate_lfo,
    evaluate_run,
    fpr_name,
    plot_families,
    plot_roc,
    threshold_setters,
    threshold_support,
)
from convert.experiments import CHOSEN, FULL, configs, summarise
from convert.splits import TEST, VAL

# The architecture comparison: the chosen data configuration, fold 0's families held out, the same
# 60k training names and 3 epochs for each (the recurrent models cost 5-10x the CNN on this CPU).
PREVIOUS = Path("runs/previous")  # the model this one replaces: tflite/dynamic-int8.tflite + default.json
VETTED, VETTED_BEFORE = "v-ng1", "x-ng1"  # the linear stage on the lists-cleaned data, and before
VETTED_ALSO = ("v-suffix", "v-e1-mean")  # the budget CNN and the CNN + linear mean on the same data
COMPARE = {arch: f"runs/a-{arch}-lfo0" for arch in ("cnn", "lstm", "bilstm", "cnn_lstm")}


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
            f"| {r['arch']} | {_fmt(r['auc'])} | {_fmt(r['tpr_1e-3'], 3)} | {_fmt(r['tpr_1e-4'], 3)} "
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
    """The shipped thresholds (calibrated on the validation benign names with the shipped file's own
    scores) and what they do on each benign set, with the 95% interval of each rate."""
    s = Scores.load(run, variant)
    val = s.score[s.calibration()]
    thresholds = calibrate(val)
    named = {fpr_name(f): thresholds[fpr_name(f)] for f in FPR_TARGETS}
    sets = {
        "calibration (validation benign + half of the long tail)": val,
        "test benign": s.score[s.rows(TEST) & (s.y == 0)],
        "long tail (one DNS list only, cleaned; the half not calibrated on)": s.score[s.long_tail()],
        "machine-made (removed by the cleaning rule)": s.score[s.family == BENIGN_MACHINE],
    }
    return {name: threshold_support(scores, named) for name, scores in sets.items()}


def trusted_only(run: Path, variant: str) -> dict[str, float]:
    """The first design, for the record: thresholds from the trusted validation benign names alone."""
    s = Scores.load(run, variant)
    thresholds = calibrate(s.score[s.rows(VAL) & (s.y == 0)])
    tail = s.score[s.long_tail()]
    return {
        "long_tail_sinkhole": float((tail >= thresholds["fpr_1e-4"]).mean()),
        "long_tail_log": float((tail >= thresholds["fpr_1e-3"]).mean()),
    }


def previous_model(run: Path, previous: Path = PREVIOUS) -> str:
    """The model shipped before this one, on the same held-out names, at its own shipped thresholds
    (it reads the label alone: the part before the first dot of the label.suffix string)."""
    from convert.quantize import run_tflite
    from resolverguard.encoding import NameEncoder

    if not (previous / "tflite" / "dynamic-int8.tflite").exists():
        return "not measured (runs/previous missing)"
    meta = json.loads((previous / "default.json").read_text())
    encoder = NameEncoder(meta["input"]["charset"], meta["input"]["maxlen"])
    content = (previous / "tflite" / "dynamic-int8.tflite").read_bytes()
    s = Scores.load(run)
    parts = []
    for name, mask in (("long-tail test half", s.long_tail()), ("machine-made", s.family == BENIGN_MACHINE)):
        scores = run_tflite(content, encoder.encode([t.split(".", 1)[0] for t in s.labels[mask].tolist()]))
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
    rows = [comparison_row(n, Path(r), a.variant) for n, r in COMPARE.items() if (Path(r) / "scores.npz").exists()]
    ev = evaluate_run(a.default, a.variant)
    found = configs()
    experiments = {name: summarise(runs) for name, runs in found.items()}
    first_design = {name: summarise(runs, trusted_only=True) for name, runs in found.items()}
    ev["chosen"] = FULL if FULL in experiments else CHOSEN
    ev["leave_family_out"] = experiments.get(ev["chosen"], {}).get("families", {})
    ev["experiments"] = {n: {k: v for k, v in r.items() if k != "families"} for n, r in experiments.items()}
    ev["experiments_trusted_only"] = {
        n: {k: v for k, v in r.items() if k != "families"} for n, r in first_design.items()
    }
    ev["comparison"] = rows
    ev["calibration"] = calibration(a.default, a.variant)
    ev["trusted_only"] = trusted_only(a.default, a.variant)
    ev["previous"] = previous_model(a.default)
    cleaning = json.loads((a.default / "run.json").read_text()).get("cleaning", "shape")
    ev["cleaning"] = cleaning_report(benign_pools(DEFAULT_DATA_DIR, cleaning))
    parity = json.loads((a.default / "tflite" / "parity.json").read_text())
    ev["parity"] = parity
    (a.out / "eval.json").write_text(json.dumps(ev, indent=2))
    plot_roc(
        {f"{r['arch']} (fold 0, {r['train_rows'] // 1000}k names)": Path(COMPARE[r["arch"]]) for r in rows}
        | {f"{a.default.name} (shipped run)": a.default},
        a.out / "roc.png",
        "logit",
    )
    plot_families(ev["family_recall"], ev["leave_family_out"], "sinkhole", a.out / "families.png")
    meta = json.loads((a.out / "default.json").read_text()) if (a.out / "default.json").exists() else {}
    text = render(ev, rows, experiments, kinds_from_manifest(DEFAULT_DATA_DIR), meta, a, first_design)
    if (Path("runs") / f"{VETTED}-lfo0" / "scores.npz").exists():  # the session-5 cleaning section
        from convert.vetting import section

        vetting = section(VETTED, [VETTED_BEFORE], VETTED_ALSO)
        text = text.replace("\n## Reproduce", "\n" + vetting + "\n\n## Reproduce", 1)
    (a.out / "REPORT.md").write_text(text)
    shutil.copy(a.default / "run.json", a.out / "default.run.json")
    print(text[:3000])


def render(
    ev: dict[str, Any],
    rows: list[dict[str, Any]],
    experiments: dict[str, dict[str, Any]],
    kinds: dict[str, str],
    meta: dict[str, Any],
    a: argparse.Namespace,
    first_design: dict[str, dict[str, Any]],
) -> str:
    from convert.experiments import first_design_table
    from convert.experiments import table as experiments_table
    from convert.report_text import narrative

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
        experiments_table=experiments_table(experiments),
        first_design_table=first_design_table(first_design),
        comparison=comparison_table(rows),
        threshold_table=table,
        calibration_table=calibration_table(ev["calibration"]),
        cleaning_table=cleaning_table(ev["cleaning"]),
        parity_table=par,
        family_table=family_table(ev["family_recall"], ev["leave_family_out"], kinds),
        top_benign=", ".join(f"`{lab}` {s:.3f}" for lab, s in ev["top_benign"][:15]),
        top_dns=", ".join(f"`{lab}` {s:.3f}" for lab, s in dns["top"][:10]),
        rows=rows,
        family_head=family_head_text(Path("runs/family/family.json")),
        probe=Path("runs/probe.md").read_text()
        if Path("runs/probe.md").exists()
        else "(run `python -m convert.probe`)",
        stages=stages_section(),
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


def family_head_text(path: Path) -> str:
    if not path.exists():
        return "Not trained in this run."
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
