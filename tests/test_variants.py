"""The session-17 report section (convert.variants): every placeholder of its template is filled, with
"not run" / "not measured" where a run is missing, so a partial rerun never prints a raw `{KEY}`."""

from __future__ import annotations

import re
from pathlib import Path

from convert.variants import END, ROWS, START, change, rates, section


def test_without_runs_every_field_is_filled_and_says_so(tmp_path: Path) -> None:
    text = section(tmp_path)
    assert text.startswith(START) and text.endswith(END)
    assert not re.search(r"\{[A-Z_]+\}", text)
    assert text.count("| not run |") == len(ROWS)
    assert "not measured" in text


def test_changes_and_rates_read_the_summaries() -> None:
    got = {
        "a": {"mean_recall": {"sinkhole": 0.30, "tail_target": 0.4}, "tail": {"sinkhole": 0.0005, "log": 0.009}},
        "b": {"mean_recall": {"sinkhole": 0.25, "tail_target": 0.5}, "tail": {"sinkhole": 0.0007, "log": 0.008}},
    }
    assert change(got, "a", "b") == "+0.050" and change(got, "a", "b", "tail_target") == "-0.100"
    assert change(got, "a", "missing") == "not measured"
    assert rates(got, "b") == "0.070% / 0.80%" and rates(got, "c") == "not measured"
