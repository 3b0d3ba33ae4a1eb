"""Query log: one JSON line per answered query (and one row in the query store), the record a user
reads to see why.

The log step is the outermost link, so it sees the final verdict, the upstream rcode and the full
latency, and it logs even when an inner step failed. On the event loop it only keeps a small tuple
per query (`entry_of`: time, client, latency and the query's shape; a repeat answered by the
shortcut hands over its shared shape again); the lines and the store's rows are made and written by
one writer off the loop (resolverguard.logwriter; `query_log.writer: auto`, the default: a child
process for a file or a store, which gets batches of PROCESS_BATCH entries over a pipe the loop
writes itself, so lines cost the loop ~0.3-0.5 us and the writer's ~1-2.5 us run on another core and
never take the resolver's GIL; a thread for standard output alone, in batches of BATCH; issue #17).
Where the C extension is built, a query for a writer process is packed as it comes (`add_query`:
`_logc.Packer`, see resolverguard.logwriter) and its line made in C: ~0.2 us on the loop and ~0.5 us
in the writer per cached answer. Batches also go every FLUSH_SECONDS (the service hands them over on
a timer, and on stop and reload). Logging never raises into the DNS path: an unwritable log or
store, a writer that is behind past `query_log.backlog_mb` or gone, is said on stderr, counted in
`lost` (`resolverguard status`, the metrics), and DNS service goes on. The writer process runs at a
lower CPU priority (`query_log.priority: low`), so in a burst the answers take the CPU and the
resolver holds its backlog. A crash (not a stop) can lose the last fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import multiprocessing
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from dnslib import QTYPE

from resolverguard.chain import Next, Reply, Request
from resolverguard.config import LogWriter, QueryLogConfig, QueryStoreConfig
from resolverguard.logwriter import (
    FLUSH_SECONDS,
    Message,
    PipeSender,
    QueryEntry,
    QueryRecord,
    QueryShape,
    RecordWriter,
    client_for_log,
    expand,
    extra_json,
    line_of_record,
    native_log,
    serve_inbox,
    timestamp,
    writer_process,
)
from resolverguard.store import QueryStore

__all__ = [
    "FLUSH_SECONDS",
    "HandOverTimer",
    "QueryLog",
    "QueryLogStep",
    "client_for_log",
    "entry_of",
    "line_of",
    "record_of",
    "shape_of",
    "timestamp",
]

BATCH = 256  # records per hand-over to a writer thread: one message to the writer instead of one per query
# ... and to a writer process: it makes a line of a shape met earlier in the batch at half the cost, and
# more repeat in a larger batch (Zipf(1.1) over 10k names: 54% of 256 entries are the first of their
# shape in the batch, 40% of 1024, 28% of 4096); a thread's batch holds the GIL while it is written.
# 8192 was tried (issue #17, bench/log_batch_ab.py): the writer's CPU per hit in a served process fell
# 0.2-0.7 us in 6 rounds of 6, but the resolver's own rose in one A/B of two, compare --log's CPU per hit
# was no lower, and the loop marshals a batch in one go (~2-3 ms at 8192): kept at 2048.
PROCESS_BATCH = 2048
SYNC_SECONDS = 120.0  # how long a flush or stop waits for a writer that is alive to write its backlog
MAX_BACKLOG = 1000  # batches waiting for a writer thread (~256 k queries, tens of MB) before new ones are dropped
# A writer process's backlog (`query_log.backlog_mb`, 64 MB by default: ~1.6 M cached answers at ~40 bytes
# each; 45 s of saturation did not fill it, a 4 MB one filled in 18 s at `priority: low` on a loaded 2-core
# machine, bench/results/log_cost_log6.md) is its pipe's buffer (PIPE_SHARE of the backlog, 1 MB at most)
# and the bytes the pipe has not taken (PipeSender.unsent). Past it, new batches are dropped and counted in
# `lost` (said on stderr, in `resolverguard status` and in the metrics), never waited for: the loop would
# otherwise hold every client's answer for a log line (a slow or hung disk, a writer stopped).
PIPE_SHARE = 4  # the pipe asks backlog / PIPE_SHARE


class QueryLog:
    """The event loop's end of the query log: keeps records and hands them to the one writer.

    `forward` (worker processes): batches go to the parent's writer instead of one of our own.
    Without it the log starts its own writer (a process or a thread, `query_log.writer`)."""

    @staticmethod
    def carried(
        old: QueryLog | None,
        config: QueryLogConfig,
        store: QueryStoreConfig | None,
        make: Callable[[QueryLogConfig, QueryStoreConfig | None], QueryLog],
    ) -> QueryLog:
        """The open log across a reload that keeps its settings (`make` opens a new one: a worker's
        log forwards its batches, see `resolverguard.workers`); the pipeline closes the one replaced."""
        if old is not None and old.config == config and old.store == _used(store):
            return old
        return make(config, store)

    def __init__(
        self,
        config: QueryLogConfig | str | None,
        stderr: TextIO | None = None,
        forward: Callable[[Message], None] | None = None,
        extra: dict[str, Any] | None = None,
        store: QueryStoreConfig | None = None,
    ) -> None:
        """`extra`: fields added to every record. `store`: the query store the writer also feeds;
        a store that cannot be opened raises StoreError here, at start (not at the first query)."""
        self.config = config if isinstance(config, QueryLogConfig) else QueryLogConfig(path=config)
        self.store = _used(store)
        self._stderr, self._forward, self._extra = stderr, forward, extra or None
        self._pending: list[Any] = []
        self._serials = itertools.count(time.monotonic_ns())
        self._batch = BATCH  # entries per hand-over (PROCESS_BATCH to a writer process)
        self._synced = 0
        self._behind = False  # batches are being dropped (said once per episode)
        self._dropped_behind = 0  # `_dropped` when the episode began
        self._max_unsent = 0  # a writer process's backlog beyond its pipe (set when the pipe is made)
        self._lock = threading.Lock()  # flush and close may come from another thread than the loop
        self._inbox: Any = None  # the thread writer's queue
        self._pipe: PipeSender | None = None  # the writer process's pipe
        self._pipe_end: Any = None  # (its multiprocessing connection, closed with the log)
        self._family: Path | None = None
        self._outbox: Any = None
        self._writer: threading.Thread | multiprocessing.process.BaseProcess | None = None
        self.written = self._writer_lost = self._dropped = 0
        self._handed = 0  # records handed to this log's own writer
        self._gone = False  # the writer died: what comes is counted in `lost` (said once)
        self._packer: Any = None  # _logc.Packer: the queries pending for a writer process, packed as they come
        # One query's entry as its four values (the shortcut's and the log step's way in): packed in C
        # where the extension is built and a writer process takes them (no tuple kept per query, no
        # Python call: the loop's side of a cached answer's log line was ~0.6-0.9 us), else `add`.
        self.add_query: Callable[[float, str, float, QueryShape], None] = self._add_entry
        # `add_query(time.time(), client, time.monotonic() - started, shape)` with both clocks read in C
        # (`_logc.Packer.add_since`), where there is a packer: the repeat shortcut's way in (its two clock
        # calls were ~70 of the ~150 ns its log call cost a cached answer); None: use `add_query`.
        self.add_since: Callable[[str, float, QueryShape], None] | None = None
        if forward is not None or not self.enabled:
            return
        if self.store is not None and self.store.path is not None:
            QueryStore.open_for_writing(self.store.path).close()  # raises StoreError: a clear error at start
        self._start_writer()

    def _start_writer(self) -> None:
        where = self.config.writer
        if where is LogWriter.THREAD or (where is LogWriter.AUTO and self.store is None and self.config.path == "-"):
            self._inbox, self._outbox = queue.SimpleQueue(), queue.SimpleQueue()
            writer = RecordWriter(self.config, self.store, lambda text: self._outbox.put(("said", text)))
            self._writer = threading.Thread(
                target=serve_inbox, args=(self._inbox, self._outbox.put, writer), name="query-log", daemon=True
            )
        else:
            ctx = multiprocessing.get_context("spawn")  # a fork would copy the model and the lists
            reading, self._pipe_end = ctx.Pipe(duplex=False)
            self._outbox = ctx.Queue()
            self._writer = ctx.Process(
                target=writer_process,
                args=(reading, self._outbox, self.config, self.store),
                name="resolverguard-log",
                daemon=True,
            )
        self._writer.start()
        if self._pipe_end is not None:
            reading.close()  # the child has its own: a writer that dies breaks the pipe (EPIPE, counted)
            self._pipe = PipeSender(self._pipe_end.fileno(), self.config.backlog_bytes // PIPE_SHARE)
            # (at least a byte: a backlog smaller than the pipe granted is full when the pipe is)
            self._batch, self._max_unsent = PROCESS_BATCH, max(1, self.config.backlog_bytes - self._pipe.capacity)
            native = native_log()
            if native is not None:  # queries packed as they come: one C call each (`add_query`)
                self._packer = native.Packer(PROCESS_BATCH, self.hand_over)
                self.add_query, self.add_since = self._packer.add, self._packer.add_since

    @property
    def lost(self) -> int:
        """Records that never became lines: the writer's failures (as of the last flush) and
        batches dropped here because the writer was gone or too far behind."""
        return self._writer_lost + self._dropped

    @property
    def backlog(self) -> int:
        """Bytes of lines handed over that a writer process's pipe has not taken yet (held here)."""
        return self._pipe.unsent if self._pipe is not None else 0

    @property
    def enabled(self) -> bool:
        """`query_log: off` (and no store) leaves the log step out of the chain: no record is built."""
        return self.config.path is not None or self.store is not None

    def client_text(self, address: str) -> str | None:
        """The client as the privacy setting allows it to be logged."""
        return client_for_log(address, self.config.clients)

    @functools.cached_property
    def extra_json(self) -> str:
        """The extra fields as the tail of a JSON object (`,"worker":1`), made once."""
        return extra_json(self._extra)

    def use_family(self, path: Path | None) -> None:
        """The family head whose hints the writer adds to flagged names' lines (`RecordWriter.use_family`);
        told again after a reload that changes it. A worker's log forwards records only: the parent's
        writer is told by resolverguard.workers."""
        if path == self._family or (self._inbox is None and self._pipe is None):
            return
        self._family = path
        self._put(("family", None if path is None else str(path)))

    def _put(self, message: Message) -> None:
        """A message to this log's own writer, in order with the batches."""
        if self._pipe is not None:
            self._pipe.put(message)
        elif self._inbox is not None:
            self._inbox.put(message)

    def shape_of(self, request: Request) -> QueryShape:
        """`shape_of` with a serial, for the repeat shortcut, which hands the shape over again and again:
        the writer remembers the shape's line parts by it. Unique within this process and never
        reused: it counts on from the monotonic clock's nanoseconds when the log opened, so a log
        opened by a reload (a worker's forwards to the same writer) starts past every serial an
        earlier one gave (it would take more than one shape a nanosecond to catch up)."""
        return shape_of(request, next(self._serials))

    def add(self, record: QueryEntry) -> None:
        """Keeps one query's entry (`entry_of`, or a repeat's: resolverguard.shortcut); never raises."""
        if self._packer is not None and type(record) is tuple:
            self._packer.add(*record)
            return
        self._pending.append(record)
        if len(self._pending) >= self._batch:
            self.hand_over()

    def _add_entry(self, wall: float, client: str, latency: float, shape: QueryShape) -> None:
        self.add((wall, client, latency, shape))

    def write(self, record: dict[str, Any]) -> None:
        """Logs one record given as a dict: an alert event of the client watch (it reaches the
        store too) or any other line. Privacy applies to its `client`, in the writer."""
        if self.enabled:
            if self._packer is not None and len(self._packer):
                self.hand_over()  # (the queries before it first: a batch holds events before queries)
            self._pending.append(dict(record))
            if len(self._pending) >= self._batch:
                self.hand_over()

    def hand_over(self) -> None:
        """Sends the kept records to the writer (one message); cheap, never waits. The service
        calls it every FLUSH_SECONDS, so lines reach the file even when traffic stops."""
        if self._outbox is not None:
            self._say_what_the_writer_said()
        packer = self._packer
        packed = len(packer) if packer is not None else 0
        if not self._pending and not packed:
            if self._pipe is not None and self._pipe.unsent:
                self._send(self._pipe.send, 0)  # what the pipe could not take at the last hand-over
            return
        if self._pending:  # (events, and queries where nothing packs them: before the packed queries)
            batch, self._pending = self._pending, []
            message = ("batch", self._extra, batch)
            if self._forward is not None:
                self._send(lambda: self._forward(message), len(batch))  # type: ignore[misc]
                return
            self._deliver(lambda: self._put(message), len(batch), batch.clear)
        if packer is not None and packed:
            pipe = self._pipe
            assert pipe is not None  # (a packer only with a pipe)
            self._deliver(lambda: pipe.put_packed(self._extra, packer), packed, packer.clear)

    def _deliver(self, send: Callable[[], None], records: int, drop: Callable[[], None]) -> None:
        """Hands `records` over with `send`, or drops them (`drop`) and counts them: the writer is gone
        or behind."""
        if self._gone or (self._pipe is None and self._inbox is None):
            self._dropped += records
            drop()
            return
        behind = self._pipe.unsent >= self._max_unsent if self._pipe is not None else self._inbox.qsize() >= MAX_BACKLOG
        if behind:  # the writer cannot keep up: answers come first
            if not self._behind:
                self._behind, self._dropped_behind = True, self._dropped
                self._say_once("query log: the writer is behind (its backlog is full); lines dropped")
            self._dropped += records
            drop()
            return
        if self._behind:
            self._behind = False
            dropped = self._dropped - self._dropped_behind
            self._say(f"query log: the writer has room again; {dropped} lines were dropped while it was behind")
        self._send(send, records)

    def _send(self, send: Callable[[], None], records: int) -> None:
        """Runs a hand-over; a writer that is gone (a broken pipe: killed, crashed) is said once, its
        records from then on are counted in `lost` (with those it may not have written: handed over
        since it last said how many it wrote), and DNS goes on."""
        try:
            send()
        except Exception as err:  # noqa: BLE001 - a writer that is gone must not break DNS
            self._dropped += records
            if self._forward is not None:
                self._say(f"query log: cannot hand over to the writer ({type(err).__name__}: {err}); DNS continues")
                return
            self._gone, unwritten = True, max(0, self._handed - self.written - self._writer_lost)
            self._dropped += unwritten
            self._say(
                f"query log: the writer is gone ({type(err).__name__}: {err}); up to {unwritten} lines it had not"
                " written and every line from now on are counted in lost; DNS service continues"
            )
            return
        if self._forward is not None:
            self.written += records
        else:
            self._handed += records

    def flush(self) -> None:
        """Hands over and waits (up to SYNC_SECONDS) until the writer has written everything so
        far: for stop, reload and tests. Worker processes only hand over (the parent writes)."""
        with self._lock:
            self.hand_over()
            self._sync("sync")

    def _sync(self, kind: str) -> None:
        writer = self._writer
        if (self._inbox is None and self._pipe is None) or writer is None or self._gone:
            return
        if not writer.is_alive():
            self._send(self._writer_died, 0)
            return
        self._synced += 1
        deadline = time.monotonic() + SYNC_SECONDS
        self._send(lambda: self._put((kind, self._synced)), 0)
        if self._pipe is not None and not self._gone and not self._pipe.drain(deadline, writer.is_alive):
            self._send(self._writer_died if not writer.is_alive() else self._pipe.send, 0)
        if self._gone:
            return
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self._outbox.get(timeout=min(left, 1.0))
            except queue.Empty:
                if writer.is_alive():
                    continue  # a backlog on a busy machine: wait while the writer lives
                self._send(self._writer_died, 0)
                return
            if message[0] == "said":
                self._say(message[1])
            elif message[0] == "synced" and message[1] == self._synced:
                self.written, self._writer_lost = message[2], message[3]
                return
        self._say("query log: the writer did not answer; lines may be missing")

    def _writer_died(self) -> None:
        raise ChildProcessError(f"exit code {getattr(self._writer, 'exitcode', None)}")

    def _say_what_the_writer_said(self) -> None:
        with contextlib.suppress(queue.Empty, OSError, ValueError):
            while True:
                message = self._outbox.get_nowait()
                if message[0] == "said":
                    self._say(message[1])

    def _say_once(self, text: str) -> bool:
        self._say(f"{text} (counted in lost); DNS service continues")
        return True

    def _say(self, text: str) -> None:
        print(f"resolverguard: {text}", file=self._stderr or sys.stderr, flush=True)

    def close_soon(self) -> None:
        """`close` in a thread: a log replaced by a reload must not hold the event loop while its
        writer finishes (the service's stop closes the log in force itself, and waits)."""
        threading.Thread(target=self.close, name="query-log-close", daemon=True).start()

    def close(self) -> None:
        """Hands over the rest, lets the writer finish and stop."""
        with self._lock:
            self.hand_over()
            self._sync("stop")
            if self._writer is not None:
                self._writer.join(SYNC_SECONDS)
            self._writer = None
            if self._outbox is not None:
                self._say_what_the_writer_said()
            for channel in (self._pipe_end, self._outbox):
                if hasattr(channel, "close"):  # a process's queue has a feeder thread and a pipe
                    channel.close()
            self._inbox = self._pipe = self._pipe_end = None


def open_log(config: QueryLogConfig, store: QueryStoreConfig | None) -> QueryLog:
    """A query log with its own writer (the pipeline's default; a worker's service forwards instead)."""
    return QueryLog(config, store=store)


def _used(store: QueryStoreConfig | None) -> QueryStoreConfig | None:
    """The store settings when a store is on, else None (`query_store: off` is no store)."""
    return store if store is not None and store.path is not None else None


@functools.lru_cache(maxsize=256)
def _qtype_name(qtype: int) -> str:
    return str(QTYPE.get(qtype, str(qtype)))


def shape_of(request: Request, serial: int | None = None) -> QueryShape:
    """What the log keeps of a query on the event loop, beyond its time, client and latency: plain
    values only, so that building the line and the row happens in the writer. `serial`: see
    `QueryLog.shape_of`."""
    verdict, name = request.verdict, request.name
    return (
        request.transport,
        name.qname if name else request.qname.rstrip("."),
        _qtype_name(request.qtype),
        name.label if name else None,
        request.score,
        verdict.action.value if verdict else "servfail",
        verdict.reason.value if verdict else "error",
        request.upstream_rcode,
        name.unscored.value if name and name.unscored else None,
        verdict.would.value if verdict and verdict.would else None,
        request.error,
        request.notes or None,
        serial,
    )


def entry_of(request: Request, now: float, wall: float, serial: int | None = None) -> QueryEntry:
    """The query's entry as the log step hands it over (~0.8 us, `now` on the monotonic clock)."""
    return (wall, request.client[0], now - request.started, shape_of(request, serial))


def record_of(request: Request, now: float, wall: float) -> QueryRecord:
    """The query's full record, as the writer makes it of the entry (for tests and `explain`)."""
    return expand(entry_of(request, now, wall))


def line_of(request: Request, now: float, wall: float, log: QueryLog) -> str:
    """The query's JSON line as the writer will write it (for tests and `explain`)."""
    record = record_of(request, now, wall)
    return line_of_record(record, log.client_text(record[1]), log.extra_json)


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
            self._log.add_query(*entry_of(request, self._clock(), self._wall()))  # (handed over once: no serial)


class HandOverTimer:
    """Hands a query log's kept records to its writer every FLUSH_SECONDS on the running event loop,
    so lines reach the file even when traffic stops: the one timer `resolverguard serve` and the
    Unbound verdict service both run. It never waits for the writer (`QueryLog.hand_over`), so the
    loop is not held; `log_of` is asked each time because a reload swaps the log."""

    def __init__(self, log_of: Callable[[], QueryLog]) -> None:
        self._log_of = log_of
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Hands over now, then every FLUSH_SECONDS until `stop` (call it on the loop)."""
        self._log_of().hand_over()
        self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.start)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
