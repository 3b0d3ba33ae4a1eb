"""`workers: N`: N resolver processes sharing the listen ports, one query-log writer.

Each worker is a fresh process (spawned, not forked: it loads its own model and builds its own
caches) that binds the same addresses with SO_REUSEPORT, so the kernel spreads clients over them:
by a hash of the client's address (resolverguard.reuseport), so that one client's queries all
reach one worker and its client watch sees the whole of a client's NXDOMAIN walk.
Workers do not write the query log themselves: they send batches of records to this parent process,
whose single writer (resolverguard.logwriter, in a thread: the parent answers no queries) makes the
lines and the store's rows and owns the file (rotation included) and the store. On SIGTERM the parent stops the workers,
each finishes its queries in flight and flushes its lines, and only then is the log closed, so no
line is lost. SIGHUP is passed on: every worker reloads (and rejects a bad policy) by itself.

The control socket (`resolverguard pause/resume/status/lists update/reload`) is the parent's: each
worker listens on a private socket beside it (`control-worker0.sock`, ...), and the parent passes
every command to all of them (`ControlFanout`) and answers with what they said, so a pause stops
blocking in every worker, not in whichever one the command happened to reach.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from resolverguard.config import Config, Endpoint, load_config
from resolverguard.control import ControlServer, default_socket, send
from resolverguard.logwriter import Message, RecordWriter, serve_inbox
from resolverguard.pipeline import family_model_path
from resolverguard.store import QueryStore, StoreError


def worker_config(config_path: Path | None, overrides: dict[str, Any], index: int) -> Config:
    cfg = replace(load_config(config_path) if config_path else Config(), **overrides)
    if cfg.metrics is not None:  # one metrics endpoint per worker: port, port + 1, ...
        cfg = replace(cfg, metrics=Endpoint(cfg.metrics.host, cfg.metrics.port + index))
    return cfg


def worker_main(
    config_path: Path | None,
    overrides: dict[str, Any],
    index: int,
    lines: Any,
    bind_lock: Any,
    workers: int,
    control: Path | None = None,
) -> None:
    from resolverguard.model import load_model
    from resolverguard.nativelog import line_buffer_native_stderr
    from resolverguard.service import Service, WorkerRole, run_event_loop, run_until_signalled

    line_buffer_native_stderr()  # a spawned worker is a new process: the parent's setting is not inherited
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    cfg = worker_config(config_path, overrides, index)
    role = WorkerRole(index, lines.put, control, bind_lock, workers)
    service = Service(cfg, load_model(cfg.model), config_path, overrides, worker=role)
    run_event_loop(run_until_signalled(service))


def worker_socket(main: Path, index: int) -> Path:
    """Worker `index`'s private control socket, beside the parent's (same folder, same 0700)."""
    return main.with_name(f"{main.stem}-worker{index}{main.suffix}")


class ControlFanout:
    """The parent's end of the control socket: a command goes to every worker's own socket and
    the reply says what each answered (one line when they all said the same). `lists update`
    goes to one worker after the other: the first downloads, the others find the copy current
    (ETag/Last-Modified) and only read it; at once they would all download it."""

    def __init__(self, sockets: list[Path], timeout: float = 120.0) -> None:
        self.sockets, self.timeout = sockets, timeout

    async def handle(self, words: list[str]) -> str:
        command, loop = " ".join(words), asyncio.get_running_loop()
        if words == ["lists", "update"]:
            replies = [await loop.run_in_executor(None, self._ask, path, command) for path in self.sockets]
        else:
            replies = list(
                await asyncio.gather(*(loop.run_in_executor(None, self._ask, p, command) for p in self.sockets))
            )
        ok = all(reply.startswith("ok") for reply in replies)
        said = [reply.partition(": ")[2] or reply for reply in replies]
        if len(set(said)) == 1:
            return f"{'ok' if ok else 'error'}: {said[0]} (all {len(replies)} workers)"
        return f"{'ok' if ok else 'error'}: " + "; ".join(f"worker {i}: {text}" for i, text in enumerate(said))

    def _ask(self, path: Path, command: str) -> str:
        try:
            return send(path, command, self.timeout)
        except OSError as err:
            return f"error: not reachable ({err.strerror or err})"


class ControlThread:
    """The parent's control socket, served by an event loop of its own in a thread (the parent
    otherwise waits on its workers and signals, with no loop)."""

    def __init__(self, path: Path, fanout: ControlFanout) -> None:
        self.server = ControlServer(path, fanout.handle)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="control", daemon=True)

    def start(self) -> str:
        """Opens the socket; what to say about it (where it is, or why it is not)."""
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        except OSError as err:
            return f"control socket not opened ({err}); pause and resume are unavailable"
        return f"control socket {self.server.path} (for all workers)"

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def run_workers(cfg: Config, config_path: Path | None, overrides: dict[str, Any]) -> int:
    """Runs cfg.workers worker processes until SIGTERM/SIGINT; returns the exit code."""
    if any(ep.port == 0 for ep in cfg.listen):
        print("resolverguard: workers need fixed listen ports (not :0)", file=sys.stderr)
        return 2
    store = cfg.query_store if cfg.query_store.path is not None else None
    if store is not None and store.path is not None:
        try:
            QueryStore.open_for_writing(store.path).close()  # a clear error now, not after the workers start
        except StoreError as err:
            print(f"{cfg.source}: query_store.path: {err}", file=sys.stderr)
            return 2
    ctx = multiprocessing.get_context("spawn")
    lines, bind_lock = ctx.Queue(), ctx.Lock()
    log = RecordWriter(cfg.query_log, store, say)
    log.use_family(family_model_path(cfg) if cfg.scoring else None)  # (workers only forward records)
    done: list[Message] = []
    writer = threading.Thread(target=serve_inbox, args=(lines, done.append, log), name="query-log", daemon=True)
    writer.start()
    fixed = {**overrides, "listen": cfg.listen, "upstreams": cfg.upstreams, "model": cfg.model}
    where = cfg.control_socket
    main_socket = None if where is False else where if isinstance(where, Path) else default_socket()
    sockets = [worker_socket(main_socket, i) if main_socket else None for i in range(cfg.workers)]
    procs = [
        ctx.Process(
            target=worker_main,
            args=(config_path, fixed, i, lines, bind_lock, cfg.workers, sockets[i]),
            name=f"resolverguard-{i}",
        )
        for i in range(cfg.workers)
    ]
    for proc in procs:
        proc.start()
    control = ControlThread(main_socket, ControlFanout([p for p in sockets if p])) if main_socket else None
    if control is not None:
        print(f"resolverguard: {control.start()}", file=sys.stderr, flush=True)
    stopping = threading.Event()

    def forward(sig: int, _frame: object) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping.set()
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM if sig == signal.SIGINT else sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    print(
        f"resolverguard: {cfg.workers} workers started (pids {', '.join(str(p.pid) for p in procs)})",
        file=sys.stderr,
        flush=True,
    )
    while any(p.is_alive() for p in procs):
        for proc in procs:
            proc.join(0.5)
        if not stopping.is_set() and any(p.exitcode not in (None, 0) for p in procs):
            forward(signal.SIGTERM, None)  # one worker failed (bad port, bad model): stop them all
            stopping.set()
    if control is not None:
        control.stop()
    lines.put(("stop", 0))  # after every worker's last batch: the writer closes the file and the store
    writer.join(30)
    return max((p.exitcode or 0) for p in procs)


def say(text: str) -> None:
    print(f"resolverguard: {text}", file=sys.stderr, flush=True)
