"""Query log: one JSON line per answered query (and one row in the query store), the record a user
reads to see why.

The log step is the outermost link, so it sees the final verdict, the upstream rcode and the full
latency, and it logs even when an inner step failed. On the event loop it only keeps a tuple of
plain values per query (`record_of`); the lines and the store's rows are made and written by one
writer off the loop (resolverguard.logwriter; `query_log.writer: auto`, the default: a thread for a
file alone, whose lines cost ~1 us each, and a child process when a query store is on, whose rows
cost ~8 us; a process costs more CPU in all, pickling and waking included: bench/standalone.py
measured +14.5 us per cached answer against +6.3 us for a thread, issue #17), which gets the records
in batches of BATCH or every FLUSH_SECONDS (the service hands them over on a timer, and on stop and
reload). Logging never raises into the DNS path: an unwritable log or store is said once on stderr
and DNS service goes on. A crash (not a stop) can lose the last fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
    QueryRecord,
    RecordWriter,
    client_for_log,
    extra_json,
    line_of_record,
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
    "line_of",
    "record_of",
    "timestamp",
]

BATCH = 256  # records per hand-over: one message to the writer instead of one per query
SYNC_SECONDS = 120.0  # how long a flush or stop waits for a writer that is alive to write its backlog
MAX_BACKLOG = 1000  # batches waiting for the writer (~256 k queries, tens of MB) before new ones are dropped


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
        self._synced = 0
        self._behind = False  # batches are being dropped (said once per episode)
        self._lock = threading.Lock()  # flush and close may come from another thread than the loop
        self._inbox: Any = None
        self._family: Path | None = None
        self._outbox: Any = None
        self._writer: threading.Thread | multiprocessing.process.BaseProcess | None = None
        self.written = self._writer_lost = self._dropped = 0
        if forward is not None or not self.enabled:
            return
        if self.store is not None and self.store.path is not None:
            QueryStore.open_for_writing(self.store.path).close()  # raises StoreError: a clear error at start
        self._start_writer()

    def _start_writer(self) -> None:
        where = self.config.writer
        if where is LogWriter.THREAD or (where is LogWriter.AUTO and self.store is None):
            self._inbox, self._outbox = queue.SimpleQueue(), queue.SimpleQueue()
            writer = RecordWriter(self.config, self.store, lambda text: self._outbox.put(("said", text)))
            self._writer = threading.Thread(
                target=serve_inbox, args=(self._inbox, self._outbox.put, writer), name="query-log", daemon=True
            )
        else:
            ctx = multiprocessing.get_context("spawn")  # a fork would copy the model and the lists
            self._inbox, self._outbox = ctx.Queue(), ctx.Queue()
            self._writer = ctx.Process(
                target=writer_process,
                args=(self._inbox, self._outbox, self.config, self.store),
                name="resolverguard-log",
                daemon=True,
            )
        self._writer.start()

    @property
    def lost(self) -> int:
        """Records that never became lines: the writer's failures (as of the last flush) and
        batches dropped here because the writer was gone or too far behind."""
        return self._writer_lost + self._dropped

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
        if path != self._family and self._inbox is not None:
            self._family = path
            self._inbox.put(("family", path))

    def add(self, record: QueryRecord) -> None:
        """Keeps one query's record; never raises."""
        self._pending.append(record)
        if len(self._pending) >= BATCH:
            self.hand_over()

    def write(self, record: dict[str, Any]) -> None:
        """Logs one record given as a dict: an alert event of the client watch (it reaches the
        store too) or any other line. Privacy applies to its `client`, in the writer."""
        if self.enabled:
            self.add(dict(record))  # type: ignore[arg-type]

    def hand_over(self) -> None:
        """Sends the kept records to the writer (one message); cheap, never waits. The service
        calls it every FLUSH_SECONDS, so lines reach the file even when traffic stops."""
        if self._outbox is not None:
            self._say_what_the_writer_said()
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        message = ("batch", self._extra, batch)
        try:
            if self._forward is not None:
                self._forward(message)
                self.written += len(batch)
            elif self._inbox is not None:
                if self._inbox.qsize() >= MAX_BACKLOG:  # the writer cannot keep up: answers come first
                    self._dropped += len(batch)
                    self._behind = self._behind or self._say_once("query log: the writer is behind; lines dropped")
                    return
                self._behind = False
                self._inbox.put(message)
        except Exception as err:  # noqa: BLE001 - a writer that is gone must not break DNS
            self._dropped += len(batch)
            self._say(f"query log: cannot hand over to the writer ({type(err).__name__}: {err}); DNS continues")

    def flush(self) -> None:
        """Hands over and waits (up to SYNC_SECONDS) until the writer has written everything so
        far: for stop, reload and tests. Worker processes only hand over (the parent writes)."""
        with self._lock:
            self.hand_over()
            self._sync("sync")

    def _sync(self, kind: str) -> None:
        if self._inbox is None or self._writer is None or not self._writer.is_alive():
            return
        self._synced += 1
        self._inbox.put((kind, self._synced))
        deadline = time.monotonic() + SYNC_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self._outbox.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self._writer.is_alive():
                    continue  # a backlog on a busy machine: wait while the writer lives
                break
            if message[0] == "said":
                self._say(message[1])
            elif message[0] == "synced" and message[1] == self._synced:
                self.written, self._writer_lost = message[2], message[3]
                return
        self._say("query log: the writer did not answer; lines may be missing")

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
            for channel in (self._inbox, self._outbox):
                if hasattr(channel, "close"):  # a process's queues have a feeder thread and a pipe
                    channel.close()
            self._inbox = None


def open_log(config: QueryLogConfig, store: QueryStoreConfig | None) -> QueryLog:
    """A query log with its own writer (the pipeline's default; a worker's service forwards instead)."""
    return QueryLog(config, store=store)


def _used(store: QueryStoreConfig | None) -> QueryStoreConfig | None:
    """The store settings when a store is on, else None (`query_store: off` is no store)."""
    return store if store is not None and store.path is not None else None


@functools.lru_cache(maxsize=256)
def _qtype_name(qtype: int) -> str:
    return str(QTYPE.get(qtype, str(qtype)))


def record_of(request: Request, now: float, wall: float) -> QueryRecord:
    """What the log keeps of a query on the event loop: plain values only (~0.7 us), so that
    building the line and the row happens in the writer."""
    verdict, name = request.verdict, request.name
    return (
        wall,
        request.client[0],
        request.transport,
        name.qname if name else request.qname.rstrip("."),
        _qtype_name(request.qtype),
        name.label if name else None,
        request.score,
        verdict.action.value if verdict else "servfail",
        verdict.reason.value if verdict else "error",
        request.upstream_rcode,
        now - request.started,
        name.unscored.value if name and name.unscored else None,
        verdict.would.value if verdict and verdict.would else None,
        request.error,
        request.notes or None,
    )


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
            self._log.add(record_of(request, self._clock(), self._wall()))


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
