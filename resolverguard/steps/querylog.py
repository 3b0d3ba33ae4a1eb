"""Query log: one JSON line per answered query, the record a user reads to see why.

The log step is the outermost link, so it sees the final verdict, the upstream rcode and the full
latency, and it logs even when an inner step failed. Writing never raises into the DNS path: an
unwritable log is reported once on stderr and DNS service goes on.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from dnslib import QTYPE

from resolverguard.chain import Next, Reply, Request


class QueryLog:
    """Appends JSON lines to a file, or to stdout for `-`."""

    def __init__(self, target: str | None, stderr: TextIO = sys.stderr) -> None:
        self._stderr, self._failed = stderr, False
        self._handle: TextIO | None = None
        if target == "-":
            self._handle = sys.stdout
        elif target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(target, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the server

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            return
        try:
            self._handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        except (OSError, ValueError) as err:
            if not self._failed:
                self._failed = True
                print(f"resolverguard: query log write failed, DNS service continues: {err}", file=self._stderr)

    def close(self) -> None:
        if self._handle is not None and self._handle is not sys.stdout:
            self._handle.close()
        elif self._handle is sys.stdout:
            self._handle.flush()
        self._handle = None


def record_of(request: Request, now: float, wall: float) -> dict[str, Any]:
    verdict, name = request.verdict, request.name
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds"),
        "client": request.client[0],
        "transport": request.transport,
        "qname": name.qname if name else request.qname.rstrip("."),
        "qtype": QTYPE.get(request.qtype, str(request.qtype)),
        "scored": name.label if name else None,
        "score": None if request.score is None else round(request.score, 6),
        "action": verdict.action.value if verdict else "servfail",
        "reason": verdict.reason.value if verdict else "error",
        "upstream_rcode": request.upstream_rcode,
        "latency_ms": round((now - request.started) * 1000, 3),
    }
    if name and name.unscored:
        record["unscored"] = name.unscored.value
    if verdict and verdict.would:
        record["would"] = verdict.would.value
    if request.error:
        record["error"] = request.error
    return record


class QueryLogStep:
    def __init__(
        self, log: QueryLog, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self._log, self._clock, self._wall = log, clock, wall

    async def __call__(self, request: Request, next_step: Next) -> Reply:
        try:
            return await next_step(request)
        except Exception as err:
            request.error = request.error or f"internal: {type(err).__name__}: {err}"
            raise
        finally:
            self._log.write(record_of(request, self._clock(), self._wall()))
