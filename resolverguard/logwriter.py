"""The query log's one writer: records in, JSON lines to the file and rows to the query store out.

Why a writer apart from the event loop (issue #17): building each JSON line on the loop cost ~4 us
of a ~19 us cached answer, and writing the file more; bench/compare.py (d')/(d) was 0.66. The loop
now keeps only a small tuple per query (`QueryEntry`: time, client, latency and the query's shape,
which a repeat answered by resolverguard.shortcut shares) and hands batches of them over; this
module turns them into lines and rows, batched, in a child process (`query_log.writer: process`,
the default for a file or a store: the work runs on another core and never takes the resolver's
GIL) or a thread (`thread`, the default for standard output alone). To a process the loop writes
marshalled batches to a pipe itself (`PipeSender`): a multiprocessing queue pickled in a feeder
thread of the resolver's process, which took the GIL from the loop at every batch, and full
15-field records cost three times the bytes. With `workers: N` the workers send their batches to
the parent, which runs this writer in a thread of its own.

Measured end to end before these changes (py-spy on a server under dnsperf, hits): the loop spent
~5% in the queue's hand-over (its lock, waking the feeder thread) and the writer process ~10 us a
line, mostly the family model run again for every repeat of a flagged name in each batch, a content
key per line and the garbage collector (several collections per batch); the writer's CPU competed
with the resolver and the client on a 2-core machine. Now: hints remembered per label, line parts
remembered per shape serial, a high gc threshold in the writer process.

A writer process runs at a lower CPU priority than the resolver (`query_log.priority: low`, nice +10,
the default): its ~2.4-3 us of CPU a line in a served process was taken from the answers on a
machine whose cores are busy (bench/results/log_cost_log5.md); at nice +10 a burst's answers take the
CPU and the writer catches up after it, its backlog held by the resolver up to `query_log.backlog_mb`
(bench/results/log_cost_log6.md).

The per-query work in C where the extension is built (`resolverguard/_logc.c`; issue #17, part 3:
the log still cost ~18-22% of a cached answer's CPU, resolver and writer together): the loop packs
each query as it comes into a 24-byte record (`_logc.Packer`, `RECORD`: no tuple kept, a shape sent
once per batch, a shortcut's shape by its serial once the writer has it), and the writer makes the
batch's lines into one buffer (`_logc.render`) from the parts it memoises per shape and client, and
writes it as bytes in one call. Measured in process (bench/log_hits_cpu.py, Zipf hits): the loop
0.27 -> ~0.2 us and the writer 1.3 -> 0.5 us a query; where that went before (marshal 0.2, unmarshal
0.55, the Python line loop 0.85, join and text write 0.4 us) and the served figures are in
bench/results/log_logc8.md. Without the extension: the tuples, marshal and `LineMaker.lines`, the
same bytes (tests/test_logwriter.py compares C, Python and `line_of_record`).

What the file writer promised before and still does: it never raises into the caller (a full disk
or unwritable file is said once per outage and its lines are counted in `lost`), the file rotates
by size, a failed flush never leaves a torn line, and everything handed over is written on flush,
reload and stop.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import ipaddress
import json
import marshal
import math
import os
import pickle
import queue
import select
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO, cast

from resolverguard.config import ClientPrivacy, LogPriority, QueryLogConfig, QueryStoreConfig
from resolverguard.store import QueryStore, StoredQuery, StoreError

if TYPE_CHECKING:
    from resolverguard._logc import Texts
    from resolverguard.steps.family import FamilyHints

FLUSH_SECONDS = 0.5
RETRY_SECONDS = 1.0  # a log file (or store) that failed is reopened at most this often
EXPIRE_SECONDS = 60.0  # how often the store's retention is applied
STORE_BATCH = 2000  # rows per store transaction at most (a flush commits fewer)
_BUFFER_BYTES = 1 << 16
_ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
_STRING = json.encoder.encode_basestring_ascii  # one JSON string, quoted and escaped (in C)

# What the event loop keeps of one query (resolverguard.steps.querylog.record_of): plain values,
# cheap to build and to pickle to another process.
QueryRecord = tuple[
    float,  # wall clock, UNIX seconds
    str,  # client address (privacy is applied here, by the writer)
    str,  # transport
    str,  # qname
    str,  # qtype
    str | None,  # the label that was scored
    float | None,  # score
    str,  # action
    str,  # reason
    str | None,  # upstream rcode
    float,  # latency, seconds
    str | None,  # why the name was not scored
    str | None,  # would (monitor mode)
    str | None,  # error
    dict[str, Any] | None,  # notes
]
# What the event loop hands over per query: its own values and the query's shape, the part of the record
# that repeats. A repeat answered by resolverguard.shortcut hands over the shape its chain answer made
# (one shared object), so a hit costs the loop one small tuple, and a batch of repeats pickles (or
# marshals) each shape once (issue #17).
QueryShape = tuple[
    str,  # transport
    str,  # qname
    str,  # qtype
    str | None,  # the label that was scored
    float | None,  # score
    str,  # action
    str,  # reason
    str | None,  # upstream rcode
    str | None,  # why the name was not scored
    str | None,  # would (monitor mode)
    str | None,  # error
    dict[str, Any] | None,  # notes
    int | None,  # serial: unique among the shapes of one resolver process (QueryLog.shape_of); None: none
]
QueryEntry = tuple[float, str, float, QueryShape]  # wall clock, client address, latency (seconds), shape
# A message to the writer: ("batch", extra fields, [QueryEntry | event dict]), ("family", path as text or
# None: the family head whose hints flagged names get), ("sync", n) or ("stop", n).
Message = tuple[Any, ...]


def expand(entry: QueryEntry) -> QueryRecord:
    """The full record of a handed-over entry (what lines, rows and hints are made from)."""
    wall, client, latency, shape = entry
    return (wall, client, *shape[:8], latency, *shape[8:12])


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


@functools.lru_cache(maxsize=4)
def _second(whole: int) -> str:
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def timestamp(wall: float) -> str:
    """ISO 8601 in UTC with milliseconds, as isoformat writes it; the date part made once a second."""
    whole = int(wall)
    return f"{_second(whole)}.{int((wall - whole) * 1000):03d}+00:00"


def extra_json(extra: dict[str, Any] | None) -> str:
    """Extra fields as the tail of a JSON object (`,"worker":1`)."""
    return "".join(f",{_ENCODE(key)}:{_ENCODE(value)}" for key, value in (extra or {}).items())


_FRACTIONS = tuple(f"{n:03d}".rstrip("0") or "0" for n in range(1000))  # 120 -> "12", 0 -> "0", 7 -> "007"


def millis(seconds: float) -> str:
    """Seconds as milliseconds to the microsecond, as the log writes them ("0.123", "12.5", "3.0"):
    an int division and a table, where repr(round(x * 1000, 3)) cost ~0.6 us a line."""
    whole, fraction = divmod(round(seconds * 1e6), 1000)
    return f"{whole}.{_FRACTIONS[fraction]}"


def line_of_record(record: QueryRecord, client: str | None, tail: str) -> str:
    """The query's JSON line, written as one f-string (a dict and json.dumps per query cost twice as
    much); strings that come from the wire go through the JSON encoder."""
    wall, _, transport, qname, qtype, scored, score, action, reason, rcode, latency, unscored, would, error, notes = (
        record
    )
    line = (
        f'{{"time":"{timestamp(wall)}","client":{"null" if client is None else _STRING(client)}'
        f',"transport":"{transport}","qname":{_STRING(qname)},"qtype":{_STRING(qtype)}'
        f',"scored":{"null" if scored is None else _STRING(scored)}'
        f',"score":{"null" if score is None or not math.isfinite(score) else repr(round(score, 6))}'
        f',"action":"{action}","reason":"{reason}","upstream_rcode":{"null" if rcode is None else _STRING(rcode)}'
        f',"latency_ms":{millis(latency)}'
    )
    if unscored:
        line += f',"unscored":"{unscored}"'
    if would:
        line += f',"would":"{would}"'
    if error:
        line += f',"error":{_STRING(error)}'
    if notes:
        line += "".join(f",{_STRING(key)}:{_ENCODE(value)}" for key, value in notes.items())
    return line + tail + "}\n"


_MILLIS = tuple(f"{ms:03d}" for ms in range(1000))
LATENCY_TABLE = 20_000  # latencies (us) whose text `latency_texts` holds: hits and most misses (~1.2 MB)


def _latency_text(us: int) -> str:
    """A latency in whole microseconds as `millis` writes it."""
    ms, fraction = divmod(us, 1000)
    return f"{ms}.{_FRACTIONS[fraction]}"


@functools.cache
def latency_texts() -> tuple[str, ...]:
    """`_latency_text` of 0 .. LATENCY_TABLE - 1 us, made once in the writer (not at import: the
    resolver and its workers import this module too)."""
    return tuple(map(_latency_text, range(LATENCY_TABLE)))


NO_SECOND = -(2**63)  # (no wall clock's second: -1 is 1969-12-31T23:59:59)
MAX_PARTS = 65536  # memoised line parts before the memo starts over (a flood of new names)
RECORD = struct.Struct("<ddII")  # a packed query (_logc.c's Record): wall clock, latency, shape's and client's index
MAX_KNOWN = 65536  # shapes' serials the loop remembers its writer has, before both start over (PipeSender)
NATIVE = object()  # "the C extension where it is built" (LineMaker, PipeSender): tests pass None for Python


def native_log() -> ModuleType | None:
    """resolverguard._logc (setup.py builds it where a C compiler is), or None: the pure-Python paths,
    the same lines."""
    try:
        return importlib.import_module("resolverguard._logc")
    except ImportError:
        return None


def unpacked(records: bytes, shapes: list[QueryShape], clients: list[str]) -> list[QueryEntry]:
    """The entries of a packed batch (`_logc.pack`), as the loop handed them over."""
    return [(wall, clients[c], latency, shapes[s]) for wall, latency, s, c in RECORD.iter_unpack(records)]


class LineMaker:
    """`line_of_record` at a quarter of its cost (issue #17: the query log to a file must cost <= 10%
    of a cached answer; the writer made each line in ~4 us, more than the rest of a cached answer's
    Python on the loop).

    A line is its time, its latency and parts that repeat: from the client to the upstream rcode
    (the same for every repeat of a name by a client) and the rest (unscored/would/error/notes and
    the extra fields). Those parts are made once by `line_of_record` itself and memoised, so a line
    costs two memo lookups, the time (its second made once a second) and the latency; the bytes are
    the reference's (tests/test_querylog.py checks them on random records)."""

    def __init__(self, privacy: ClientPrivacy, tail: str = "", native: ModuleType | None | object = NATIVE) -> None:
        """`native`: resolverguard._logc or None (the pure-Python paths); by default the one built."""
        self._privacy, self._tail = privacy, tail
        self._middles: dict[tuple[Any, ...], str] = {}
        self._rests: dict[tuple[Any, ...], str] = {}
        self._shapes: dict[tuple[str, int], tuple[str, str, str]] = {}  # (client, serial) -> entry_line's parts
        self._second, self._second_text = NO_SECOND, ""
        self._native = native_log() if native is NATIVE else cast(ModuleType | None, native)
        self._client_texts: dict[str, str] = {}  # address -> `client_text` (render's parts)
        self._mids: dict[tuple[Any, ...], str] = {}  # transport .. upstream rcode -> `shape_texts`' first part
        # serial -> `shape_texts`: where render reads it, a table of its own (`_logc.Texts`: no dict, see _logc.c)
        self._texts: dict[int, tuple[str, str]] | Texts = self._native.Texts() if self._native is not None else {}
        self._buffer = bytearray()  # `_logc.render` writes a batch's lines here

    def line(self, record: QueryRecord) -> str:
        middle, rest = self._parts(record)
        return self._assemble(record[0], record[10], middle, rest)

    def entry_line(self, entry: QueryEntry, seen: dict[int, tuple[str, str, str]]) -> str:
        """`line` of a handed-over entry. `seen`: the parts of the shapes met in this batch, by the
        shape's id (one object per repeat of a name in a batch: resolverguard.shortcut, and marshal
        and pickle keep that), valid while the batch lives; a hit then costs no memo key at all."""
        wall, client, latency, shape = entry
        found = seen.get(id(shape))
        if found is None or found[0] != client:
            found = seen[id(shape)] = self._shape_parts(entry)
        return self._assemble(wall, latency, found[1], found[2])

    def lines(self, entries: list[QueryEntry], out: list[str]) -> None:
        """`entry_line` of every entry, appended to `out`: one loop with the time and latency
        written inline, where a call per line and per part made a line cost 1.12 us, then 0.75
        (a batch of 2048 Zipf repeats, best of 3). Issue #17: on a 2-core machine the writer's CPU
        competes with the resolver's and the client's, so it is part of what the log costs a hit;
        py-spy on a server under dnsperf hits: the writer's samples per resolver sample 0.40 -> 0.27.
        Now also: the text between the time and the latency kept whole per shape in the batch, and
        a latency under LATENCY_TABLE us taken from a table (`latency_texts`) instead of a divmod
        and two conversions."""
        append, millis, latencies = out.append, _MILLIS, latency_texts()
        seen: dict[int, tuple[str, str, str]] = {}  # id(shape) -> (client, time's end .. latency's key, rest)
        get, table = seen.get, len(latencies)
        second, head = self._second, self._second_text
        for entry in entries:
            wall, client, latency, shape = entry
            found = get(id(shape))
            if found is None or found[0] != client:
                _, middle, rest = self._shape_parts(entry)
                found = seen[id(shape)] = (client, f'+00:00",{middle},"latency_ms":', rest)
            whole = int(wall)
            if whole != second:
                second, head = whole, f'{{"time":"{_second(whole)}.'
            us, ms = round(latency * 1e6), int((wall - whole) * 1000)
            append(
                f"{head}{millis[ms] if ms >= 0 else f'{ms:03d}'}{found[1]}"  # (below 0: a wall clock before 1970)
                f"{latencies[us] if 0 <= us < table else _latency_text(us)}{found[2]}"
            )
        self._second, self._second_text = second, head

    def _shape_parts(self, entry: QueryEntry) -> tuple[str, str, str]:
        """(client, middle, rest) of a shape met the first time in a batch. A shape with a serial
        (the repeat shortcut's, handed over again and again; it never changes) is remembered by it: a
        key of two small values, where a key of its content took ~30% of the writer's CPU. One maker
        per set of extra fields: one per worker, whose serials are its own."""
        client, serial = entry[1], entry[3][12]
        if serial is None:  # a chain's answer: handed over once (its parts' memos still help)
            return (client, *self._parts(expand(entry)))
        found = self._shapes.get((client, serial))
        if found is None:
            if len(self._shapes) >= MAX_PARTS:
                self._shapes.clear()
            found = self._shapes[client, serial] = (client, *self._parts(expand(entry)))
        return found

    def _parts(self, record: QueryRecord) -> tuple[str, str]:
        """The parts of the line that repeat: from the client to the upstream rcode, and the rest."""
        middle = self._middles.get(record[1:10])  # client .. upstream rcode
        if middle is None:
            middle = self._middle(record)
        return middle, self._rest_of(record)

    def _rest_of(self, record: QueryRecord) -> str:
        """The part after the latency (unscored .. notes, the extra fields, the line's end), memoised."""
        notes = record[14]
        # the notes' types too: True == 1 == 1.0 as keys, but not as JSON
        key = record[11:14] if not notes else (*record[11:14], *notes.items(), *map(type, notes.values()))
        try:
            rest = self._rests.get(key)
        except TypeError:  # a note whose value is not hashable: made for this line alone
            key, rest = (), None
        if rest is None:
            rest = self._rest(record, key)
        return rest

    def render(
        self, records: bytes, slots: list[Any], clients: list[str], shape_of: Callable[[Any], QueryShape]
    ) -> bytes | memoryview:
        """The lines of a packed batch (`RECORD`s whose shape and client are indexes into `slots` and
        `clients`, see `_logc.pack`; `shape_of` makes a slot's shape), as bytes: in C (`_logc.render`,
        ~0.1 us a line), which takes a slot that is a serial straight from this maker's memo of
        `shape_texts` (a shortcut's shape in a batch costs no Python), or, without the extension
        or for what it leaves to Python (`_logc.c` says what), by `lines`: the same bytes."""
        native = self._native
        if native is not None:
            texts = self.shape_texts
            size: int | None = native.render(
                records,
                slots,
                list(map(self.client_text, clients)),
                self._texts,
                lambda slot: texts(shape_of(slot)),
                _second,
                self._buffer,
            )
            if size is not None:
                return memoryview(self._buffer)[:size]  # (released by the caller before the next batch)
        out: list[str] = []
        self.lines(unpacked(records, list(map(shape_of, slots)), clients), out)
        return "".join(out).encode()

    def client_text(self, address: str) -> str:
        """The line's client field as the privacy setting allows (`"client":"192.0.2.0/24"`), memoised."""
        found = self._client_texts.get(address)
        if found is None:
            client = self._client(address)
            found = '"client":' + ("null" if client is None else _STRING(client))
            if len(self._client_texts) >= MAX_PARTS:
                self._client_texts.clear()
            self._client_texts[address] = found
        return found

    def shape_texts(self, shape: QueryShape) -> tuple[str, str]:
        """A shape's parts of the line without the client: from the transport to the upstream rcode
        (`,"transport":...,"upstream_rcode":...`), and the rest; by its serial for the shortcut's
        shapes (met again and again). A shape met the first time (every never-seen name's) is made
        in C (`_logc.shape_texts`, ~0.3 us where `_python_texts` took ~4: issue #17, the log's
        cost on misses), or by Python for what the C code leaves to it: the same bytes."""
        serial = shape[12]
        if serial is not None and (found := self._texts.get(serial)) is not None:
            return found
        native = self._native
        made: tuple[str, str] | None = native.shape_texts(shape, self._tail) if native is not None else None
        if made is None:
            made = self._python_texts(shape)
        if serial is not None:
            if len(self._texts) >= MAX_PARTS:
                self._texts.clear()
            self._texts[serial] = made
        return made

    def _python_texts(self, shape: QueryShape) -> tuple[str, str]:
        """`shape_texts` from `line_of_record` itself, its parts memoised by content."""
        record: QueryRecord = (0.0, "", *shape[:8], 0.0, *shape[8:12])
        mid = self._mids.get(shape[:8])
        if mid is None:
            reference = line_of_record((0.0, "", *shape[:8], 0.0, None, None, None, None), None, "")
            mid = reference[reference.index(',"transport":') : reference.rindex(',"latency_ms":')]
            if len(self._mids) >= MAX_PARTS:
                self._mids.clear()
            self._mids[shape[:8]] = mid
        return mid, self._rest_of(record)

    def _assemble(self, wall: float, latency: float, middle: str, rest: str) -> str:
        whole = int(wall)
        if whole != self._second:
            self._second, self._second_text = whole, f'{{"time":"{_second(whole)}.'
        ms, fraction = divmod(round(latency * 1e6), 1000)  # `millis`, inlined (~15% of a line)
        return (
            f"{self._second_text}{_MILLIS[at] if (at := int((wall - whole) * 1000)) >= 0 else f'{at:03d}'}"
            f'+00:00",{middle}'
            f',"latency_ms":{ms}.{_FRACTIONS[fraction]}{rest}'
        )

    def _middle(self, record: QueryRecord) -> str:
        reference = line_of_record((0.0, *record[1:10], 0.0, None, None, None, None), self._client(record[1]), "")
        middle = reference[reference.index(',"client":') + 1 : reference.rindex(',"latency_ms":')]
        if len(self._middles) >= MAX_PARTS:
            self._middles.clear()
        self._middles[record[1:10]] = middle
        return middle

    def _rest(self, record: QueryRecord, key: tuple[Any, ...]) -> str:
        reference = line_of_record((0.0, "", "", "", "", None, None, "", "", None, 0.0, *record[11:]), None, self._tail)
        rest = reference[reference.index(',"latency_ms":0.0') + len(',"latency_ms":0.0') :]  # (millis(0.0))
        if key:
            if len(self._rests) >= MAX_PARTS:
                self._rests.clear()
            self._rests[key] = rest
        return rest

    def _client(self, address: str) -> str | None:
        return client_for_log(address, self._privacy)


def with_client(record: dict[str, Any], client: Callable[[str], str | None]) -> dict[str, Any]:
    """A copy of an event record with its client as the privacy setting allows."""
    record = dict(record)
    if "client" in record and isinstance(record["client"], str):
        record["client"] = client(record["client"])
    return record


def event_line(record: dict[str, Any], extra: dict[str, Any] | None) -> str:
    """The line of an event (a client watch alert) or any other record given as a dict."""
    return _ENCODE({**record, **(extra or {})}) + "\n"


def stored_of(entry: QueryEntry, client: str | None) -> StoredQuery:
    """The query's row for the store."""
    wall, _, latency, shape = entry
    score = shape[4]
    return (
        wall,
        client,
        shape[1],
        shape[2],
        shape[5],
        shape[6],
        score if score is None or math.isfinite(score) else None,
        shape[7],
        round(latency * 1000, 3),
    )


class LogFile:
    """Appends JSON lines to a file (rotated by size) or to stdout for `-`; never raises.

    A full disk or an unwritable file is said once per outage and its lines are counted in `lost`."""

    def __init__(self, config: QueryLogConfig, say: Callable[[str], None]) -> None:
        self.config, self._say, self._failing = config, say, False
        self._handle: BinaryIO | TextIO | None = None  # (TextIO: standard output)
        self._size = 0
        self._good: int | None = None  # file size after the last flush that reached it: a line boundary
        self._unflushed = 0  # lines buffered since then
        self._retry_at = 0.0  # after a failure, the file is reopened no sooner than this
        self.written = self.lost = 0
        if self.config.path == "-":
            self._handle = sys.stdout
        elif self.config.path:
            self._open()

    def _open(self) -> None:
        path = Path(str(self.config.path))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(path, "ab", buffering=_BUFFER_BYTES)  # noqa: SIM115 - lives with the writer
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
            self._say(f"query log {self.config.path}: {err}; DNS service continues")

    def write_lines(self, lines: list[str]) -> None:
        """Appends a batch of lines (`write_data`)."""
        self.write_data("".join(lines).encode(), len(lines))

    def write_data(self, data: bytes | memoryview, count: int) -> None:
        """Appends `count` finished JSON lines given as bytes (a batch: one write), rotating where a
        line takes the file past max_bytes (so a file outgrows it by one line at most, as when lines
        came one at a time)."""
        limit = self.config.max_bytes
        if not limit or self._handle is sys.stdout or self._size + len(data) < limit:
            self._write(data, count)  # the common batch: one write, no count of lines
            return
        data, start, size = bytes(data), 0, self._size  # (a rotation: `find` below)
        while start < len(data):
            end = data.find(b"\n", start + max(0, limit - size - 1)) + 1 or len(data)  # the line past the limit
            self._write(data[start:end], data.count(b"\n", start, end))  # rotates at the limit
            start, size = end, self._size

    def write_line(self, line: str, count: int | None = None) -> None:
        """Appends finished JSON lines (one or a batch; rotating as needed); never raises."""
        self.write_data(line.encode(), line.count("\n") if count is None else count)

    def _write(self, data: bytes | memoryview, count: int) -> None:
        if self.config.path is None:
            return
        if self._handle is None and self.config.path != "-":
            if time.monotonic() < self._retry_at:
                self.lost += count
                return
            self._open()  # retry after an earlier failure (disk freed, directory created)
        try:
            if self._handle is None:
                raise OSError("log file is not open")
            if self._handle is sys.stdout:
                cast(TextIO, self._handle).write(bytes(data).decode())
            else:
                cast(BinaryIO, self._handle).write(data)
        except (OSError, ValueError) as err:
            self.lost += count
            self._broken(err)
            return
        self._size += len(data)
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


class StoreFeed:
    """Rows for the query store, committed in batches; a failing store is said once per outage,
    its rows counted in `lost`, and reopened at most once per RETRY_SECONDS. Never raises."""

    def __init__(self, config: QueryStoreConfig, say: Callable[[str], None], clock: Callable[[], float]) -> None:
        self.config, self._say, self._clock = config, say, clock
        self._store: QueryStore | None = None
        self._rows: list[StoredQuery] = []
        self._events: list[dict[str, Any]] = []
        self._failing, self._retry_at, self._expired_at = False, 0.0, -math.inf
        self.written = self.lost = 0

    def add(self, row: StoredQuery) -> None:
        self._rows.append(row)
        if len(self._rows) >= STORE_BATCH:
            self.commit()

    def add_event(self, event: dict[str, Any]) -> None:
        self._events.append(event)

    def commit(self) -> None:
        if not self._rows and not self._events:
            return
        rows, events, self._rows, self._events = self._rows, self._events, [], []
        store = self._open()
        if store is None:
            self.lost += len(rows)
            return
        try:
            store.add(rows, events)
            self._expire(store)
        except Exception as err:  # noqa: BLE001 - sqlite3.Error, OSError, a corrupt file: DNS goes on
            self.lost += len(rows)
            self._fail(err)
            return
        self.written += len(rows)
        self._failing = False

    def _open(self) -> QueryStore | None:
        if self._store is None and self.config.path is not None and time.monotonic() >= self._retry_at:
            try:
                self._store = QueryStore.open_for_writing(self.config.path, self.config.gateway_name)
            except StoreError as err:
                self._fail(err)
        return self._store

    def _expire(self, store: QueryStore) -> None:
        if time.monotonic() - self._expired_at >= EXPIRE_SECONDS:
            self._expired_at = time.monotonic()
            now = self._clock()
            store.expire(now, self.config.retention_days, self.config.max_bytes)
            store.index_finished_days(now)

    def _fail(self, err: Exception) -> None:
        if not self._failing:
            self._failing = True
            self._say(f"query store {self.config.path}: {err}; DNS service continues")
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
        self._store = None
        self._retry_at = time.monotonic() + RETRY_SECONDS

    def close(self) -> None:
        self.commit()
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
            self._store = None


class RecordWriter:
    """Turns batches of records into lines for the file and rows for the store."""

    def __init__(
        self,
        config: QueryLogConfig,
        store: QueryStoreConfig | None,
        say: Callable[[str], None],
        clock: Callable[[], float] = time.time,
        native: ModuleType | None | object = NATIVE,
    ) -> None:
        """`native`: resolverguard._logc or None (the pure-Python paths); by default the one built."""
        self.file = LogFile(config, say)
        self.store = StoreFeed(store, say, clock) if store is not None and store.path is not None else None
        self._privacy, self._say = config.clients, say
        self._clients: dict[str, str | None] = {}
        self._makers: dict[str, LineMaker] = {}
        self._family: Path | None = None
        self._hints: FamilyHints | None = None
        self._hint_memo: dict[str, tuple[str, float]] = {}  # label -> (family, p)
        self._native = native_log() if native is NATIVE else cast(ModuleType | None, native)
        self._known: dict[int, QueryShape] = {}  # serial -> shape, of the shapes packed batches sent (write_packed)

    def use_family(self, path: Path | None) -> None:
        """The family head (models/family.tflite) whose hint a flagged name's line gets. Made here,
        for a whole batch in one call, rather than by a step on the event loop: there the hint cost a
        model call per flagged name before its answer (issue #17: ~14-35 us per never-seen name with
        the log on, bench/hotpath.py --no-family). This writer's own copy of the model: an
        interpreter is not shared between threads."""
        if path == self._family:
            return
        self._family, self._hints = path, None
        self._hint_memo.clear()
        self._makers.clear()  # a hinted shape keeps its serial: the makers' memos by serial hold its parts
        from resolverguard.steps.family import FamilyHints  # numpy and LiteRT only where hints are made

        try:
            self._hints = FamilyHints.carried(None, path)
        except Exception as err:  # noqa: BLE001 - a broken family head costs the hints, never the log
            self._say(f"query log: family hints off: {err}")

    def _hinted(self, items: list[Any]) -> list[Any]:
        """The batch with the family hint in the notes of every flagged name's record (a blocking or
        logging verdict, or one monitor mode would have blocked, of a scored name), as the family
        step added them before; a failing family head leaves the lines without. A label's hint is
        remembered (it depends on the label alone), and a shape met again in the batch gets the same
        hinted shape (so the line maker meets it again too): repeats of a flagged name cost no model call."""
        flagged = [  # (a call per entry was ~3% of the writer's CPU)
            i
            for i, item in enumerate(items)
            if type(item) is tuple
            and ((shape := item[3])[5] != "pass" or shape[9] is not None)
            and shape[6] != "error"
            and shape[3]
            and shape[4] is not None
        ]
        if not flagged or self._hints is None:
            return items
        memo = self._hint_memo
        if len(memo) >= MAX_PARTS:
            memo.clear()
        labels = list(dict.fromkeys(label for i in flagged if (label := items[i][3][3]) not in memo))
        if labels:
            try:
                found = self._hints.hints(labels)
            except Exception:  # noqa: BLE001 - a hint must never cost a line
                return items
            memo.update(zip(labels, found, strict=True))
        items = list(items)
        hinted: dict[int, QueryShape] = {}
        for i in flagged:
            wall, client, latency, shape = items[i]
            new = hinted.get(id(shape))
            if new is None:
                family, p = memo[shape[3]]
                notes = {**(shape[11] or {}), "family_hint": family, "family_p": round(p, 4)}
                new = hinted[id(shape)] = (*shape[:11], notes, shape[12])  # (see use_family)
            items[i] = (wall, client, latency, new)
        return items

    def client(self, address: str) -> str | None:
        """The client as the privacy setting allows it to be logged (remembered: few clients)."""
        if self._privacy is ClientPrivacy.FULL:
            return address
        found = self._clients.get(address, "")
        if found == "":
            if len(self._clients) > 65536:
                self._clients.clear()
            found = self._clients[address] = client_for_log(address, self._privacy)
        return found

    def _maker(self, extra: dict[str, Any] | None) -> LineMaker:
        """The line maker of a set of extra fields (one per worker)."""
        tail = extra_json(extra)
        maker = self._makers.get(tail)
        if maker is None:
            maker = self._makers[tail] = LineMaker(self._privacy, tail, self._native)
        return maker

    def write_packed(
        self, extra: dict[str, Any] | None, records: bytes, slots: list[Any], clients: list[str], reset: bool
    ) -> None:
        """A packed batch from the loop (`PipeSender`: `_logc.pack`): a slot is a shape, or the serial
        of a shape an earlier batch sent (kept in `_known` until the loop says `reset`)."""
        known = self._known
        if reset:
            known.clear()
        native = self._native
        fresh = native.fresh(slots) if native is not None else [slot for slot in slots if type(slot) is tuple]
        for shape in fresh:
            if shape[12] is not None:
                known[shape[12]] = shape
        self._write_slots(extra, records, slots, clients, fresh)

    def _write_slots(
        self, extra: dict[str, Any] | None, records: bytes, slots: list[Any], clients: list[str], fresh: list[Any]
    ) -> None:
        """Lines (and rows) of a packed batch. The family hints of the shapes sent in full are made for
        them all in one call (`_hinted`); a shape sent by serial has its hinted line parts memoised
        by the line maker, or (rarely: a memo started over) is hinted alone."""
        if not records:
            return
        hinted: dict[int, QueryShape] = {}
        if self._hints is not None and fresh:
            wrapped = [(0.0, "", 0.0, shape) for shape in fresh]
            hinted = {id(old[3]): new[3] for old, new in zip(wrapped, self._hinted(wrapped), strict=True)}
        known = self._known

        def shape_of(slot: Any) -> QueryShape:
            shape: QueryShape = known[slot] if type(slot) is int else slot
            found = hinted.get(id(shape))
            if found is None and self._hints is not None:
                found = hinted[id(shape)] = self._hinted([(0.0, "", 0.0, shape)])[0][3]
            return shape if found is None else found

        maker = self._maker(extra)
        if self.store is not None:
            shapes = list(map(shape_of, slots))
            for entry in unpacked(records, shapes, clients):
                self.store.add(stored_of(entry, self.client(entry[1])))
        data = maker.render(records, slots, clients, shape_of)
        try:
            self.file.write_data(data, len(records) // RECORD.size)
        finally:
            if isinstance(data, memoryview):
                data.release()

    def write(self, extra: dict[str, Any] | None, items: list[Any]) -> None:
        if self._native is not None and (packed := self._native.pack(items, None)) is not None:
            records, slots, clients = packed  # queries only (a thread's batch, a worker's): in C
            self._write_slots(extra, records, slots, clients, slots)
            return
        if self._hints is not None:
            items = self._hinted(items)
        lines: list[str] = []
        store = self.store
        seen: dict[int, tuple[str, str, str]] = {}  # the parts of this batch's shapes (LineMaker.entry_line)
        maker = self._maker(extra)
        if store is None and dict not in set(map(type, items)):  # (a generator's `all` cost ~0.1 us an item)
            maker.lines(items, lines)  # queries only, no store: the common batch, in one loop
            items = []
        for item in items:
            if type(item) is tuple:
                lines.append(maker.entry_line(item, seen))
                if store is not None:
                    store.add(stored_of(item, self.client(item[1])))
            else:
                record = with_client(item, self.client)
                lines.append(event_line(record, extra))
                if store is not None and record.get("event") in ("client_flagged", "likely_c2"):
                    store.add_event(record)
        if lines:
            self.file.write_lines(lines)

    def flush(self) -> None:
        self.file.flush()
        if self.store is not None:
            self.store.commit()

    def close(self) -> None:
        self.file.close()
        if self.store is not None:
            self.store.close()

    def count_lost(self, records: int) -> None:
        """Records that never became lines (a batch the writer failed on)."""
        if self.file.config.path is None and self.store is not None:
            self.store.lost += records
        else:
            self.file.lost += records

    @property
    def counts(self) -> tuple[int, int]:
        """(written, lost) lines of the file, or rows of the store when there is no file."""
        if self.file.config.path is None and self.store is not None:
            return self.store.written, self.store.lost
        return self.file.written, self.file.lost


def serve_inbox(inbox: Any, answer: Callable[[Message], None], writer: RecordWriter) -> None:
    """The writer's loop: batches in, flushed at least every FLUSH_SECONDS; ("sync", n) flushes and
    answers ("synced", n, written, lost); ("stop", n) does that and returns."""
    flushed = time.monotonic()
    while True:
        try:
            message = inbox.get(timeout=FLUSH_SECONDS)
        except queue.Empty:
            message = None
        if message is not None and message[0] == "batch":
            try:
                writer.write(message[1], message[2])
            except Exception as err:  # noqa: BLE001 - a bug in one batch must not end the writer
                writer.count_lost(len(message[2]))
                answer(("said", f"query log: a batch was not written ({type(err).__name__}: {err}); counted in lost"))
        elif message is not None and message[0] == "entries":
            try:
                writer.write_packed(*message[1:])
            except Exception as err:  # noqa: BLE001 - as a batch
                writer.count_lost(len(message[2]) // RECORD.size)
                answer(("said", f"query log: a batch was not written ({type(err).__name__}: {err}); counted in lost"))
        elif message is not None and message[0] == "family":
            writer.use_family(None if message[1] is None else Path(message[1]))
        elif message is not None:
            if message[0] == "stop":
                writer.close()
            else:
                writer.flush()
            answer(("synced", message[1], *writer.counts))
            if message[0] == "stop":
                return
            flushed = time.monotonic()
        if time.monotonic() - flushed >= FLUSH_SECONDS:
            writer.flush()
            flushed = time.monotonic()


FRAME = struct.Struct("<IB")  # a message's length and codec, before its bytes
MARSHAL, PICKLE = 0, 1
PIPE_BYTES = 1 << 20  # the pipe's buffer asked for (Linux' default cap): ~30 k queries before a write waits
GC_THRESHOLD = 200_000  # the writer process's first-generation threshold (see writer_process)
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032  # as the fcntl module names them from Python 3.10 on Linux only
PAGE = 4096  # the smallest pipe buffer Linux grants


def frame_of(message: Message) -> bytes:
    """A message as bytes for the pipe: marshal (a batch of entries in ~0.14 us each, half of pickle's
    ~0.3 us and a third of what pickling full records cost; repeated shapes are written once), or
    pickle for what marshal refuses (an event field of another type)."""
    try:
        body, codec = marshal.dumps(message), MARSHAL
    except ValueError:
        body, codec = pickle.dumps(message, pickle.HIGHEST_PROTOCOL), PICKLE
    return FRAME.pack(len(body), codec) + body


class PipeSender:
    """The resolver's end of the pipe to a writer process. Why a pipe and not a multiprocessing
    queue (issue #17): a queue pickles in a feeder thread of the resolver's process, and every batch
    woke that thread, which then took the GIL from the event loop; here the loop itself marshals a
    batch and writes it without blocking: what the pipe cannot take now stays in `unsent` and goes
    with the next hand-over. `unsent` is not bounded here: the caller decides what a full one means
    (QueryLog: `query_log.backlog_mb`, then lines are dropped and counted).

    `pipe_bytes`: the pipe's buffer asked for (PIPE_BYTES at most; a small backlog asks less, so the
    pipe never holds more than the backlog allows); `capacity` is what the kernel granted."""

    def __init__(
        self,
        fd: int,
        pipe_bytes: int = PIPE_BYTES,
        native: ModuleType | None | object = NATIVE,
        max_known: int = MAX_KNOWN,
    ) -> None:
        os.set_blocking(fd, False)
        self._native = native_log() if native is NATIVE else cast(ModuleType | None, native)
        self._max_known = max_known
        self._known: set[int] = set()  # serials of the shapes the writer has (`frame`)
        self._reset = False  # `_known` started over: the next packed batch tells the writer
        self.capacity = PIPE_BYTES  # (what a pipe holds where its size cannot be read: an upper bound)
        with contextlib.suppress(OSError, ImportError):
            import fcntl

            fcntl.fcntl(fd, F_SETPIPE_SZ, max(PAGE, min(pipe_bytes, PIPE_BYTES)))
            self.capacity = fcntl.fcntl(fd, F_GETPIPE_SZ)
        self._fd, self._unsent = fd, bytearray()

    @property
    def unsent(self) -> int:
        """Bytes handed over that the pipe has not taken yet."""
        return len(self._unsent)

    def put(self, message: Message) -> None:
        """Sends what the pipe takes now; raises OSError (BrokenPipeError) when the writer is gone."""
        self._unsent += self.frame(message)
        self.send()

    def put_packed(self, extra: dict[str, Any] | None, packer: Any) -> None:
        """Sends the queries a `_logc.Packer` holds (QueryLog.add_query), as `frame` packs a batch."""
        packed = packer.take(self._known_set())
        reset, self._reset = self._reset, False
        self._unsent += frame_of(("entries", extra, *packed, reset))
        self.send()

    def _known_set(self) -> set[int]:
        """The serials the writer has, started over (with the writer: `reset`) when MAX_KNOWN."""
        if len(self._known) >= self._max_known:
            self._known.clear()
            self._reset = True
        return self._known

    def frame(self, message: Message) -> bytes:
        """`frame_of` the message; a batch of queries only, packed where the C extension is built
        (`_logc.pack`, ~0.05 us a query where marshalling its tuple cost ~0.2 and unmarshalling it
        in the writer ~0.5): ("entries", extra, records, slots, clients, reset). A slot is a shape
        met the first time in the batch, or the serial of a shortcut's shape sent before; the
        serials sent are remembered (MAX_KNOWN, then forgotten together with the writer: `reset`)."""
        if message[0] != "batch" or self._native is None:
            return frame_of(message)
        packed = self._native.pack(message[2], self._known_set())
        if packed is None:  # an event in the batch
            return frame_of(message)
        reset, self._reset = self._reset, False
        return frame_of(("entries", message[1], *packed, reset))

    def send(self) -> None:
        while self._unsent:
            try:
                sent = os.write(self._fd, self._unsent)
            except BlockingIOError:
                return
            del self._unsent[:sent]

    def drain(self, deadline: float, alive: Callable[[], bool]) -> bool:
        """Waits (up to `deadline`, while the writer lives) until the pipe took everything."""
        while self._unsent and alive() and (left := deadline - time.monotonic()) > 0:
            select.select([], [self._fd], [], min(left, 1.0))
            self.send()
        return not self._unsent


class PipeInbox:
    """The writer process's end of the pipe: `get` as a queue's, framed messages in order. The end of
    the pipe (the resolver is gone without a stop) reads as a stop: what came is written."""

    def __init__(self, fd: int) -> None:
        self._fd, self._buffer, self._ready = fd, bytearray(), deque[Message]()
        self._space = bytearray(PIPE_BYTES)  # read into, kept: a new 1 MB bytes per read cost page faults

    def get(self, timeout: float) -> Message:
        deadline = time.monotonic() + timeout
        while not self._ready:
            readable, _, _ = select.select([self._fd], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                raise queue.Empty
            size = os.readv(self._fd, [self._space])
            if not size:
                self._ready.append(("stop", 0))
                break
            with memoryview(self._space) as view, view[:size] as chunk:
                self._buffer += chunk
            self._split()
        return self._ready.popleft()

    def _split(self) -> None:
        buffer, at = self._buffer, 0
        with memoryview(buffer) as view:
            while len(buffer) - at >= FRAME.size:
                size, codec = FRAME.unpack_from(buffer, at)
                end = at + FRAME.size + size
                if end > len(buffer):
                    break
                with view[at + FRAME.size : end] as body:
                    self._ready.append(marshal.loads(body) if codec == MARSHAL else pickle.loads(body))
                at = end
        del buffer[:at]


LOW_NICE = 10  # `priority: low`: CFS gives a nice-10 process ~1/10 of a nice-0 one's share when both want a core


def lower_priority(priority: LogPriority) -> str | None:
    """Lowers this process's CPU priority as `query_log.priority` asks (issue #17: the writer's lines
    are worth less than answers; on a machine whose cores are all busy, a burst's answers then take
    the CPU and the writer catches up when it ends, its backlog held in the pipe and the resolver's
    bounded `PipeSender`). Returns what went wrong, if anything: a priority not granted leaves the
    writer at the resolver's own and is said, never fatal."""
    try:
        if priority is LogPriority.IDLE:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # lowering is always allowed on Linux
        elif priority is LogPriority.LOW:
            os.nice(LOW_NICE)
    except (OSError, AttributeError) as err:  # AttributeError: no sched_setscheduler (not Linux)
        return f"query log: writer priority {priority.value} not set ({err}); it runs at the resolver's"
    return None


def writer_process(inbox: Any, outbox: Any, config: QueryLogConfig, store: QueryStoreConfig | None) -> None:
    """A child process's main: messages come over a pipe (`inbox`, the reading end of a
    multiprocessing pipe, see PipeSender); what it has to say goes back to the resolver, which
    prints it."""
    import gc
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the resolver decides when the writer stops
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload of the resolver is not the writer's
    # A batch is thousands of tuples alive at once: at the default threshold (700) the collector ran
    # several times a batch and, as the memos grew, walked LiteRT's and numpy's objects too (~12% of
    # the writer's CPU in py-spy, issue #17). What it writes makes no cycles; a rare error may.
    gc.set_threshold(GC_THRESHOLD, 20, 100)
    writer = RecordWriter(config, store, lambda text: outbox.put(("said", text)))
    if (problem := lower_priority(config.priority)) is not None:
        outbox.put(("said", problem))
    serve_inbox(PipeInbox(inbox.fileno()), outbox.put, writer)
