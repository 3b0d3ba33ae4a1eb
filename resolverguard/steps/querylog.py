"""Query log: one JSON line per answered query, the record a user reads to see why.

The log step is the outermost link, so it sees the final verdict, the upstream rcode and the full
latency, and it logs even when an inner step failed. Writing never raises into the DNS path: an
unwritable log is reported once on stderr and DNS service goes on.

Lines are buffered and written at most every FLUSH_SECONDS (the service also flushes on a timer
and on stop, rotation and reload), as Pi-hole FTL and Unbound batch theirs: a write per query cost
more than the rest of a cached answer. A crash (not a stop) can lose the last fraction of a second.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import math
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from dnslib import QTYPE

from resolverguard.chain import Next, Reply, Request
from resolverguard.config import ClientPrivacy, QueryLogConfig


def client_for_log(address: str, privacy: ClientPrivacy) -> str | None:
    """The client address as the privacy setting allows: full, network only (/24, /48) or none."""
    if privacy is ClientPrivacy.FULL:
        return address
    if privacy is ClientPrivacy.OMIT:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


FLUSH_SECONDS = 0.5
RETRY_SECONDS = 1.0  # a log file that failed is reopened at most this often
_BUFFER_BYTES = 1 << 16
_ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
_STRING = json.encoder.encode_basestring_ascii  # one JSON string, quoted and escaped (in C)


class QueryLog:
    """Appends JSON lines to a file (rotated by size) or to stdout for `-`.

    Writing never raises: a full disk or an unwritable file is reported on stderr (once per outage)
    and the lines are counted in `lost`, while DNS service goes on.
    """

    @staticmethod
    def carried(old: QueryLog | None, config: QueryLogConfig, make: Callable[[QueryLogConfig], QueryLog]) -> QueryLog:
        """The open log across a reload that keeps its settings (`make` opens a new one: a worker's
        log forwards its lines, see `resolverguard.workers`); the pipeline closes the one replaced."""
        return old if old is not None and old.config == config else make(config)

    def __init__(
        self,
        config: QueryLogConfig | str | None,
        stderr: TextIO | None = None,
        forward: Callable[[str], None] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """`forward`: hand finished lines to another writer instead of a file (worker processes send
        theirs to the one writer in the parent). `extra`: fields added to every record."""
        self.config = config if isinstance(config, QueryLogConfig) else QueryLogConfig(path=config)
        self._stderr, self._failing, self._forward, self._extra = stderr, False, forward, extra or {}
        self._handle: TextIO | None = None
        self._size = 0
        self._good: int | None = None  # file size after the last flush that reached it: a line boundary
        self._unflushed = 0  # lines buffered since then
        self._retry_at = 0.0  # after a failure, the file is reopened no sooner than this
        self._pending: list[str] = []  # lines not yet handed to `forward`
        self._flushed = time.monotonic()
        self.written = self.lost = 0
        if forward is not None:
            return
        if self.config.path == "-":
            self._handle = sys.stdout
        elif self.config.path:
            self._open()

    def _open(self) -> None:
        path = Path(str(self.config.path))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(path, "a", encoding="utf-8", buffering=_BUFFER_BYTES)  # noqa: SIM115 - lives with the server
            self._size = self._good = path.stat().st_size
        except OSError as err:
            self._handle = None
            self._retry_at = time.monotonic() + RETRY_SECONDS
            self._report(err)

    def _broken(self, err: Exception) -> None:
        """A write or flush failed (a full disk): what the buffer held is lost and counted, the
        file is cut back to its last whole line (issue #14: a failed flush left torn lines) and
        closed; the next write reopens it, at most once per RETRY_SECONDS."""
        self._report(err)
        self.lost += self._unflushed
        self.written -= self._unflushed
        self._unflushed = 0
        if self._handle is None or self._handle is sys.stdout:
            return
        with contextlib.suppress(OSError, ValueError):
            self._handle.close()  # its flush fails again; the file is closed all the same
        self._handle = None
        if self._good is not None:
            with contextlib.suppress(OSError):
                path = str(self.config.path)
                os.truncate(path, whole_lines_end(path, self._good))
        self._retry_at = time.monotonic() + RETRY_SECONDS

    def _report(self, err: Exception) -> None:
        """Once per outage: an outage ends only when a flush reaches the file (a buffered write
        succeeds even on a full disk; issue #14: the 'once' line was printed 163 times)."""
        if not self._failing:
            self._failing = True
            print(
                f"resolverguard: query log {self.config.path}: {err}; DNS service continues",
                file=self._stderr or sys.stderr,
            )

    @property
    def enabled(self) -> bool:
        """`query_log: off` leaves the log step out of the chain: no record is even built."""
        return self.config.path is not None

    def client_text(self, address: str) -> str | None:
        """The client as the privacy setting allows it to be logged."""
        return address if self.config.clients is ClientPrivacy.FULL else client_for_log(address, self.config.clients)

    @functools.cached_property
    def extra_json(self) -> str:
        """The extra fields as the tail of a JSON object (`,"worker":1`), made once."""
        return "".join(f",{_ENCODE(key)}:{_ENCODE(value)}" for key, value in self._extra.items())

    def write(self, record: dict[str, Any]) -> None:
        """Logs one record given as a dict (the query log step builds its line directly)."""
        if "client" in record:
            record["client"] = self.client_text(record["client"])
        self.add(_ENCODE({**record, **self._extra}) + "\n")

    def add(self, line: str) -> None:
        """Buffers one finished line (a worker batches them for the parent); never raises."""
        if self.config.path is None:
            return
        if self._forward is not None:
            self._pending.append(line)
            self.written += 1
            if len(self._pending) >= 256:
                self._hand_over()
        else:
            self.write_line(line)
        if time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def _hand_over(self) -> None:
        """Worker processes: pending lines go to the parent's writer as one message."""
        if self._pending and self._forward is not None:
            lines, self._pending = "".join(self._pending), []
            self._forward(lines)

    def write_line(self, line: str) -> None:
        """Appends finished JSON lines (one, or a worker's batch; rotating as needed); never raises."""
        count = line.count("\n")
        if self._handle is None and self.config.path != "-":
            if time.monotonic() < self._retry_at:
                self.lost += count
                return
            self._open()  # retry after an earlier failure (disk freed, directory created)
        try:
            if self._handle is None:
                raise OSError("log file is not open")
            self._handle.write(line)
        except (OSError, ValueError) as err:
            self.lost += count
            self._broken(err)
            return
        self._size += len(line)  # JSON lines are ASCII: characters are bytes
        self.written += count
        self._unflushed += count
        if self.config.max_bytes and self._size >= self.config.max_bytes and self._handle is not sys.stdout:
            self._rotate()

    def _rotate(self) -> None:
        """queries.jsonl -> queries.jsonl.1 -> ... -> .keep; the oldest falls off."""
        path = str(self.config.path)
        try:
            if self._handle is not None:
                self._handle.close()
            self._good = None
            for n in range(self.config.keep - 1, 0, -1):
                if os.path.exists(f"{path}.{n}"):
                    os.replace(f"{path}.{n}", f"{path}.{n + 1}")
            if self.config.keep > 0:
                os.replace(path, f"{path}.1")
            else:
                os.truncate(path, 0)
        except OSError as err:
            self._report(err)
        self._handle = None
        self._open()

    def flush(self) -> None:
        self._flushed = time.monotonic()
        self._hand_over()
        if self._handle is not None:
            try:
                self._handle.flush()
            except (OSError, ValueError) as err:
                self._broken(err)
            else:
                self._failing, self._good, self._unflushed = False, self._size, 0

    def close(self) -> None:
        self.flush()
        if self._handle is not None and self._handle is not sys.stdout:
            try:
                self._handle.close()  # flushes what is left: may fail like any write
            except (OSError, ValueError) as err:
                self._report(err)
        self._handle = None


def whole_lines_end(path: str, good: int) -> int:
    """Where the file's last whole line ends: the lines a failed flush did write are kept, its torn
    last line is not. Only what was written after `good` (a known line boundary) is read."""
    size = os.stat(path).st_size  # 0 for a device such as /dev/full: nothing to cut
    if size <= good:
        return size
    with open(path, "rb") as handle:
        handle.seek(good)
        tail = handle.read(size - good)
    return good + tail.rfind(b"\n") + 1


@functools.lru_cache(maxsize=4)
def _second(whole: int) -> str:
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def timestamp(wall: float) -> str:
    """ISO 8601 in UTC with milliseconds, as isoformat writes it; the date part made once a second."""
    whole = int(wall)
    return f"{_second(whole)}.{int((wall - whole) * 1000):03d}+00:00"


def line_of(request: Request, now: float, wall: float, log: QueryLog) -> str:
    """The query's JSON line, written field by field: a dict and json.dumps per query cost more
    than answering a cached query. Strings that come from the wire go through the JSON encoder."""
    verdict, name, score = request.verdict, request.name, request.score
    parts = [
        f'{{"time":"{timestamp(wall)}","client":{_text(log.client_text(request.client[0]))}',
        f',"transport":"{request.transport}","qname":{_STRING(name.qname if name else request.qname.rstrip("."))}',
        f',"qtype":{_STRING(_qtype_name(request.qtype))},"scored":{_text(name.label if name else None)}',
        f',"score":{"null" if score is None or not math.isfinite(score) else repr(round(score, 6))}',
        f',"action":"{verdict.action.value if verdict else "servfail"}"',
        f',"reason":"{verdict.reason.value if verdict else "error"}"',
        f',"upstream_rcode":{_text(request.upstream_rcode)},"latency_ms":{round((now - request.started) * 1000, 3)!r}',
    ]
    if name and name.unscored:
        parts.append(f',"unscored":"{name.unscored.value}"')
    if verdict and verdict.would:
        parts.append(f',"would":"{verdict.would.value}"')
    if request.error:
        parts.append(f',"error":{_STRING(request.error)}')
    parts.extend(f",{_STRING(key)}:{_ENCODE(value)}" for key, value in request.notes.items())
    parts.append(log.extra_json + "}\n")
    return "".join(parts)


def _text(value: str | None) -> str:
    return "null" if value is None else _STRING(value)


@functools.lru_cache(maxsize=256)
def _qtype_name(qtype: int) -> str:
    return str(QTYPE.get(qtype, str(qtype)))


class QueryLogStep:
    def __init__(
        self, log: QueryLog, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self._log, self._clock, self._wall = log, clock, wall

    async def __call__(self, request: Request, next_step: Next) -> Reply:
        try:
            return await next_step(request)
        except Exception as err:
            request.internal_error = f"{type(err).__name__}: {err}"
            raise
        finally:
            self._log.add(line_of(request, self._clock(), self._wall(), self._log))
