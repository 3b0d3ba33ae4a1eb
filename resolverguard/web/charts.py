"""Charts drawn on the server as inline SVG: no chart library, no script, nothing fetched, and
they scale to a phone's width (`viewBox` with `width: 100%` in the stylesheet)."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import Any

WIDTH, HEIGHT, PAD = 720, 200, 28


def _nice_top(value: int) -> int:
    """The y axis top: 1, 2 or 5 times a power of ten, at or above `value`."""
    power = 1
    while True:
        for factor in (1, 2, 5):
            if factor * power >= value:
                return factor * power
        power *= 10


def _when(ts: float) -> str:
    return time.strftime("%m-%d %H:%M", time.gmtime(ts))


def series_chart(series: Sequence[Any]) -> str:
    """Bars of queries per bucket with the blocked part over them (bucket: start, queries, blocked)."""
    if not series:
        return '<p class="muted">no queries in this range</p>'
    top = _nice_top(max(int(b.queries) for b in series))
    inner_w, inner_h = WIDTH - PAD - 8, HEIGHT - 2 * PAD
    step = inner_w / len(series)
    bars = []
    for i, bucket in enumerate(series):
        x = PAD + i * step
        q_h = inner_h * bucket.queries / top
        b_h = inner_h * bucket.blocked / top
        label = f"{_when(bucket.start)} UTC: {bucket.queries} queries, {bucket.blocked} blocked"
        width = f"{max(step - 1, 1):.1f}"
        bars.append(
            f"<g><title>{html.escape(label)}</title>"
            f'<rect class="q" x="{x:.1f}" y="{PAD + inner_h - q_h:.1f}" width="{width}" height="{q_h:.1f}"/>'
            f'<rect class="b" x="{x:.1f}" y="{PAD + inner_h - b_h:.1f}" width="{width}" height="{b_h:.1f}"/></g>'
        )
    base = PAD + inner_h
    axis = (
        f'<text x="{PAD}" y="{HEIGHT - 8}" class="axis">{_when(series[0].start)}</text>'
        f'<text x="{WIDTH - 8}" y="{HEIGHT - 8}" class="axis end">{_when(series[-1].start)} UTC</text>'
        f'<text x="4" y="{PAD - 6}" class="axis">{top}</text>'
        f'<line x1="{PAD}" y1="{base}" x2="{WIDTH - 8}" y2="{base}" class="base"/>'
    )
    legend = '<p class="legend"><span class="q"></span>queries <span class="b"></span>blocked</p>'
    return (
        f'<svg class="chart" id="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="queries and blocked queries over time">{axis}{"".join(bars)}</svg>{legend}'
    )


def score_bar(score: float | None, thresholds: Sequence[dict[str, Any]]) -> str:
    """The name's score on a 0..1 line with each threshold marked."""
    w, h, pad = 600, 56, 10
    span = w - 2 * pad
    marks = []
    for t in thresholds:
        if t.get("value") is None:
            continue
        x = pad + span * float(t["value"])
        marks.append(
            f'<line x1="{x:.1f}" y1="8" x2="{x:.1f}" y2="36" class="th"/>'
            f'<text x="{x:.1f}" y="50" class="axis mid">{html.escape(str(t["action"]))}</text>'
        )
    dot = "" if score is None else f'<circle cx="{pad + span * score:.1f}" cy="22" r="7" class="dot"/>'
    return (
        f'<svg class="scorebar" viewBox="0 0 {w} {h}" role="img" aria-label="score against thresholds">'
        f'<line x1="{pad}" y1="22" x2="{w - pad}" y2="22" class="base"/>{"".join(marks)}{dot}</svg>'
    )
