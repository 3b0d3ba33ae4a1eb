"""convert.report when some runs were not rerun: their figures come from the report being replaced,
labelled with the model they were measured for, and a second regeneration keeps that label (it never
relabels an old figure as the newer model's, and never fills in a figure nobody measured)."""

from __future__ import annotations

import json
from pathlib import Path

from convert.experiments import table
from convert.report import CARRIED_MARK, Previous, comparison_table, label_carried, partial_note, replaced

OLD = "cnn-dynamic-int8-20261201-4e220afa"


def _result(mean: float, cleaning: str = "shape") -> dict[str, object]:
    """A configuration's summary as convert.experiments.summarise writes it into eval.json."""
    return {
        "folds": 5,
        "n_families": 56,
        "mean_recall": {"sinkhole": mean, "log": mean + 0.2, "tail_target": mean + 0.1},
        "mean_recall_sinkhole_char": mean + 0.01,
        "families_ge_0.9": {"sinkhole": 2, "log": 5, "tail_target": 3},
        "tail": {"sinkhole": 0.0002, "log": 0.002},
        "tail_at_target": 0.001,
        "machine": {"sinkhole": 0.1, "log": 0.5},
        "info_cleaning": cleaning,
        "train_rows": 120_000,
        "train_seconds": 500.0,
        "config": {
            "arch": "cnn",
            "form": "registrable",
            "width": 64,
            "balance": "class",
            "suffix_dropout": 0.5,
            "compounds": False,
            "exclude": ["charbot", "gozi"],
        },
    }


REPORT = f"""# The shipped model: `models/default.tflite`

Model version `{OLD}`, architecture `cnn`.

## What the model reads: the label alone, or label + public suffix

Hand-picked names:

| name | label |
|---|---|
| `myhome.ddns.net` | 0.1 pass |

## Experiments: chosen by leave-family-out recall

### A linear n-gram stage, ensembles (#13, session 4)

The stage table.

| configuration | mean |
|---|---|
| x-ng1 | 0.134 |

## Reproduce
"""


def _models(tmp_path: Path) -> Path:
    out = tmp_path / "models"
    out.mkdir()
    ev = {
        "experiments": {"x-suffix": _result(0.109), "f-suffix": _result(0.126)},
        "comparison": [{"arch": "lstm", "auc": 0.99}, {"arch": "cnn", "auc": 0.98}],
    }
    (out / "eval.json").write_text(json.dumps(ev))
    (out / "REPORT.md").write_text(REPORT)
    return out


def test_runs_not_rerun_are_carried_with_the_model_they_were_measured_for(tmp_path: Path) -> None:
    previous = Previous.load(_models(tmp_path))
    assert previous.version == OLD  # from REPORT.md: an eval.json written before session 6 has no version
    fresh = {"f-suffix": _result(0.2, "lists")}
    merged = previous.carry(fresh, "experiments")
    assert merged["f-suffix"] is fresh["f-suffix"] and "carried_from" not in merged["f-suffix"]
    assert merged["x-suffix"]["carried_from"] == OLD and merged["x-suffix"]["mean_recall"]["sinkhole"] == 0.109
    assert previous.carry({}, "no such key") == {}
    rendered = table(merged)
    assert f"| x-suffix (not rerun since `{OLD}`) | cnn | registrable | shape |" in rendered
    assert "| f-suffix | cnn | registrable | lists |" in rendered
    rows = previous.rows([{"arch": "cnn", "auc": 0.97}])
    assert [(r["arch"], r.get("carried_from")) for r in rows] == [("cnn", None), ("lstm", OLD)]


def test_a_second_regeneration_keeps_the_original_label(tmp_path: Path) -> None:
    out = _models(tmp_path)
    first = Previous.load(out)
    stages = first.section("### A linear n-gram stage", "\n## ")
    assert stages.startswith("### A linear n-gram stage") and "| x-ng1 | 0.134 |" in stages
    assert stages.splitlines()[2] == f"*Not rerun since model `{OLD}`: carried unchanged from its REPORT.md.*"
    probe = first.table_in("## What the model reads")
    assert probe.startswith(CARRIED_MARK) and probe.endswith("| `myhome.ddns.net` | 0.1 pass |")
    carried = first.carry({}, "experiments")
    # The report this session writes, for a newer model, with the carried parts in it.
    newer = "cnn-dynamic-int8-20261202-0123abcd"
    text = REPORT.replace(OLD, newer).replace(
        REPORT[REPORT.index("### A linear") : REPORT.index("## Reproduce")], stages + "\n\n"
    )
    text = text.replace(REPORT[REPORT.index("| name |") : REPORT.index("\n\n## Experiments")], probe)
    (out / "REPORT.md").write_text(text)
    (out / "eval.json").write_text(json.dumps({"model_version": newer, "experiments": carried}))
    second = Previous.load(out)
    assert second.version == newer
    assert second.carry({}, "experiments")["x-suffix"]["carried_from"] == OLD
    again = second.section("### A linear n-gram stage", "\n## ")
    assert again == stages and again.count(CARRIED_MARK) == 1
    assert second.table_in("## What the model reads") == probe
    assert label_carried("| a |\n|---|", newer).startswith(f"*Not rerun since model `{newer}`")


def test_nothing_is_carried_from_a_report_that_has_no_such_section(tmp_path: Path) -> None:
    previous = Previous.load(tmp_path)  # no models/eval.json, no REPORT.md
    assert previous.version == "unknown" and previous.eval == {}
    assert previous.section("### A linear n-gram stage", "\n## ") == ""
    assert previous.table_in("## What the model reads") == ""
    assert previous.rows([]) == [] and previous.carry({}, "experiments") == {}


def test_comparison_table_marks_carried_rows() -> None:
    row = {
        "arch": "lstm",
        "auc": 0.99,
        "tpr_1e-3": 0.7,
        "tpr_1e-4": 0.3,
        "lfo_recall": 0.1,
        "dns_only_flagged": 0.0002,
        "params": 1000,
        "kb": 10.0,
        "us1": 50.0,
        "us64": 20.0,
        "train_rows": 60_000,
        "epochs": 3,
        "train_s": 100.0,
        "carried_from": OLD,
    }
    assert f"| lstm (not rerun since `{OLD}`) | 0.9900 |" in comparison_table([row])


def test_a_regeneration_for_the_same_model_still_compares_with_the_model_it_replaced(tmp_path: Path) -> None:
    out = _models(tmp_path)
    ev = json.loads((out / "eval.json").read_text()) | {"chosen": "f-suffix", "thresholds": {"sinkhole": 0.9997}}
    (out / "eval.json").write_text(json.dumps(ev))
    first = replaced(Previous.load(out), "cnn-new")
    assert first["model_version"] == OLD and first["thresholds"] == {"sinkhole": 0.9997}
    assert list(first["experiments"]) == ["f-suffix"]
    (out / "eval.json").write_text(json.dumps({"model_version": "cnn-new", "replaced": first}))
    assert replaced(Previous.load(out), "cnn-new") == first


def test_a_configuration_with_some_folds_is_named_not_summarised(tmp_path: Path) -> None:
    runs = []
    for k in (0, 3):
        run = tmp_path / f"f-suffix-lfo{k}"
        run.mkdir()
        (run / "run.json").write_text(json.dumps({"cleaning": "lists"}))
        runs.append(run)
    assert partial_note({}) == ""
    note = partial_note({"f-suffix": runs})
    assert (
        note.strip()
        == "Partly rerun, left out of the tables until all 5 folds exist: `f-suffix` (2 of 5 folds, lists cleaning)."
    )


def test_a_generated_section_without_its_runs_is_carried_between_its_marks_or_named_missing() -> None:
    """`Previous.marked`: what the idn, vetting and charlm sections fall back to when their runs are gone."""
    start, end = "<!-- x: generated -->", "<!-- /x -->"
    previous = Previous(OLD, {}, f"intro\n{start}\n| a | b |\n{end}\nrest")
    carried = previous.marked(start, end, "missing")
    assert carried.startswith(start + "\n") and carried.endswith("\n" + end)
    assert "| a | b |" in carried and OLD in carried and "intro" not in carried and "rest" not in carried
    assert Previous(OLD, {}, f"intro\n{start}\nno end").marked(start, end, "missing") == "missing"


def test_the_shape_section_reads_which_linear_stage_shipped_from_its_run(tmp_path: Path) -> None:
    """convert.shapes: the shipped combination and the verdict come from runs/gate/run.json, never
    from the text; gains and moves from the summaries, "not measured" without them."""
    from convert.shapes import difference, moves, shipped_combination, verdict

    assert shipped_combination(tmp_path) == "e-f1-cmean" and verdict(tmp_path).startswith("Not shipped")
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / "run.json").write_text(json.dumps({"shapes": []}))
    assert shipped_combination(tmp_path) == "e-f1-cmean"
    (tmp_path / "gate" / "run.json").write_text(json.dumps({"shapes": [3, 4]}))
    assert shipped_combination(tmp_path) == "e-fs-cmean" and "orders 3, 4;" in verdict(tmp_path)
    (tmp_path / "gate" / "run.json").write_text(json.dumps({"shapes": [3, 4], "tail_train": True}))
    assert shipped_combination(tmp_path) == "e-ft-cmean"
    got = {
        "a": {"mean_recall": {"sinkhole": 0.30}, "families": {"f": {"sinkhole": 0.10}, "g": {"sinkhole": 0.50}}},
        "b": {"mean_recall": {"sinkhole": 0.35}, "families": {"f": {"sinkhole": 0.30}, "g": {"sinkhole": 0.55}}},
    }
    assert moves(got, "a", "b") == "f 0.10 -> 0.30" and moves(got, "b", "b") == "none"
    assert difference(got, "a", "b") == "+0.050" and difference(got, "a", "c") == "not measured"


def test_the_data_section_says_whether_a_quarter_of_the_long_tail_was_trained_on() -> None:
    """convert.report_text.long_tail_pool reads the shipped metadata (`training.tail_train`, which
    convert.ship copies from the run), never a constant: the report must not say 'never trained on'
    of a model that was."""
    from convert.report_text import long_tail_pool

    assert "Never trained on" in long_tail_pool({"training": {"tail_train": False}})
    assert "Never trained on" in long_tail_pool({})
    trained = long_tail_pool({"training": {"tail_train": True}})
    assert "a quarter of the long tail" in trained and "Never trained on" not in trained
    assert "the other quarter joins" in trained and "--tail-eighths" not in trained
    three = long_tail_pool({"training": {"tail_train": True, "tail_eighths": 3}})
    assert "three eighths of the long tail, `--tail-train --tail-eighths 3`" in three


def test_a_section_is_made_again_only_when_all_its_configurations_ran(tmp_path: Path) -> None:
    """convert.report.ran: a partial rerun (STAGE=ship trains s-tail, which the session-17 section
    also tables) must carry the section, not rebuild it from the one configuration it has."""
    from convert.report import ran

    assert ran([], tmp_path)
    (tmp_path / "a-lfo0").mkdir()
    (tmp_path / "a-lfo0" / "scores.npz").write_bytes(b"")
    assert ran(["a"], tmp_path) and not ran(["a", "b"], tmp_path)


def test_unseen_recall_is_held_against_the_same_families_trained_on() -> None:
    """convert.report_text.seen_against_unseen: over the families both sides have (not those excluded
    from training), and its verdict follows the figures: below 0.6 even when trained on, better
    generalisation alone cannot meet the target; above, the gap is what it could gain."""
    from convert.report_text import seen_against_unseen

    def fam(**recall: float) -> dict[str, dict[str, float]]:
        return {f: {"n": 10, "sinkhole": r} for f, r in recall.items()}

    ev = {
        "chosen": "f-x",
        "excluded_from_training": ["w"],
        "family_recall": fam(a=0.5, b=0.95, w=0.0) | {"e": {"n": 0, "sinkhole": 0.0}},
        "leave_family_out": fam(a=0.2, b=0.9, w=0.0, e=0.0, z=0.3),
        "shipped_ensemble": {
            "config": "e-x",
            "random_split": {"families_seen": {"a": 0.7, "b": 1.0}},
            "lofo": {"families": {"a": 0.3, "b": 0.95, "w": 0.0, "z": 0.3}},
        },
    }
    text = seen_against_unseen(ev)
    assert "the 2 families trained on" in text
    ens = "shipped ensemble (`e-x` left out): trained on, mean family recall 0.850 and 1 families >= 0.9; "
    assert ens + "left out, 0.625 and 1" in text
    cnn = "CNN alone (`f-x` left out): trained on, mean family recall 0.725 and 1 families >= 0.9; "
    assert cnn + "left out, 0.550 and 1" in text
    assert "what generalising better could still gain" in text
    ev["shipped_ensemble"]["random_split"]["families_seen"] = {"a": 0.4, "b": 0.5}
    ev["family_recall"] = fam(a=0.4, b=0.5)
    assert "cannot by itself meet these two targets" in seen_against_unseen(ev)
    assert "End to end" not in seen_against_unseen(ev)
    ev["replay_folds"] = {
        "folds": 5,
        "families": 47,
        "model_alone": 0.388,
        "with_watch": 0.904,
        "with_watch_ge_0.9": 33,
        "benign_blocked": 0,
    }
    said = seen_against_unseen(ev)
    assert "blocks on average 39% of a family's C2 lookups and, with the client watch, 90% (33 families" in said
    assert seen_against_unseen(ev | {"shipped_ensemble": {}, "leave_family_out": {}}) == ""
