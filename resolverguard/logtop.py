"""`resolverguard top [--since 1h] LOGFILE`: what the query log says, in a screenful.

Reads the JSON Lines query log (rotated files too, if given), keeps lines newer than `--since`, and
prints counts per action and reason, the most blocked names and the clients with most blocks.
Unparseable lines are counted, never fatal: a log cut by a crash must still be readable.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

_SPAN = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
BLOCKING = {"sinkhole", "nxdomain", "refuse", "servfail"}


def parse_span(text: str) -> timedelta:
    match = _SPAN.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a time span like 30m, 1h, 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def read_records(paths: Iterable[Path], since: datetime | None) -> tuple[list[dict[str, Any]], int]:
    records, bad = [], 0
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                    when = datetime.fromisoformat(record["time"])
                except (ValueError, KeyError, TypeError):
                    bad += 1
                    continue
                if since is None or when >= since:
                    records.append(record)
    return records, bad


def summarise(records: list[dict[str, Any]], bad: int, out: TextIO, top: int = 10) -> None:
    blocked = [r for r in records if r.get("action") in BLOCKING or r.get("would") in BLOCKING]
    out.write(f"{len(records)} queries, {len(blocked)} blocked (or would be, in monitor mode)")
    out.write(f", {bad} unreadable lines\n" if bad else "\n")
    sections = [
        ("queries per action", Counter(r.get("action", "?") for r in records)),
        ("queries per reason", Counter(r.get("reason", "?") for r in records)),
        ("top blocked names", Counter(r.get("qname", "?") for r in blocked)),
        ("top blocked scored names", Counter(r.get("scored") or "-" for r in blocked)),
        ("clients with most blocks", Counter(str(r.get("client")) for r in blocked)),
    ]
    for title, counts in sections:
        out.write(f"\n{title}:\n")
        for key, n in counts.most_common(top):
            out.write(f"  {n:>8}  {key}\n")


def top_command(paths: list[Path], since: str | None, out: TextIO, now: datetime | None = None) -> int:
    cutoff = (now or datetime.now(UTC)) - parse_span(since) if since else None
    records, bad = read_records(paths, cutoff)
    summarise(records, bad, out)
    return 0
