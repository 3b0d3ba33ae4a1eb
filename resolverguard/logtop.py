"""`resolverguard top [--since 1h] LOGFILE`: what the query log says, in a screenful.

Reads the JSON Lines query log (rotated files too, if given), keeps lines newer than `--since`, and
prints counts per action and reason, the most blocked names and the clients with most blocks.
Unparseable lines are counted, never fatal: a log cut by a crash must still be readable. The client
watch's event lines (`client_flagged`, `likely_c2`) are listed on their own, not counted as queries.
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


def watch_events(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The client watch's event lines of the given logs, oldest first (only lines that mention an
    event are parsed, so reading a large log stays quick)."""
    events = []
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if '"event"' not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "event" in record:
                    events.append(record)
    return events


def summarise(records: list[dict[str, Any]], bad: int, out: TextIO, top: int = 10) -> None:
    events = [r for r in records if "event" in r]
    records = [r for r in records if "event" not in r]
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
    flagged = [e for e in events if e.get("event") == "client_flagged"]
    if flagged:
        out.write("\nclients flagged by the client watch:\n")
        for e in flagged[-top:]:
            names = e.get("names") or []
            hint = f", like {e['family_hint']}" if e.get("family_hint") else ""
            until = f"quarantined until {e['until']}" if e.get("until") else "logged only"
            out.write(f"  {e.get('time')}  {e.get('client')}  {len(names)} NXDOMAIN names{hint}; {until}\n")
            out.write(f"      {', '.join(map(str, names[:8]))}{' ...' if len(names) > 8 else ''}\n")
    c2 = [e for e in events if e.get("event") == "likely_c2"]
    if c2:
        out.write("\nlikely C2 names (blocked for every client):\n")
        for e in c2[-top:]:
            out.write(f"  {e.get('time')}  {e.get('name')}  (from {e.get('client')}, until {e.get('until')})\n")


def top_command(paths: list[Path], since: str | None, out: TextIO, now: datetime | None = None) -> int:
    cutoff = (now or datetime.now(UTC)) - parse_span(since) if since else None
    records, bad = read_records(paths, cutoff)
    summarise(records, bad, out)
    return 0
