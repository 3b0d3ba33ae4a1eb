"""`workers: N`: N resolver processes sharing the listen ports, one query-log writer.

Each worker is a fresh process (spawned, not forked: it loads its own model and builds its own
caches) that binds the same addresses with SO_REUSEPORT, so the kernel spreads clients over them:
by a hash of the client's address (resolverguard.reuseport), so that one client's queries all
reach one worker and its client watch sees the whole of a client's NXDOMAIN walk.
Workers do not write the query log themselves: they send finished lines to this parent process,
whose single writer owns the file (rotation included). On SIGTERM the parent stops the workers,
each finishes its queries in flight and flushes its lines, and only then is the log closed, so no
line is lost. SIGHUP is passed on: every worker reloads (and rejects a bad policy) by itself.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from resolverguard.config import Config, Endpoint, load_config
from resolverguard.steps.querylog import FLUSH_SECONDS, QueryLog

STOP = None  # the sentinel that ends the writer thread


def worker_config(config_path: Path | None, overrides: dict[str, Any], index: int) -> Config:
    cfg = replace(load_config(config_path) if config_path else Config(), **overrides)
    if cfg.metrics is not None:  # one metrics endpoint per worker: port, port + 1, ...
        cfg = replace(cfg, metrics=Endpoint(cfg.metrics.host, cfg.metrics.port + index))
    return cfg


def worker_main(
    config_path: Path | None, overrides: dict[str, Any], index: int, lines: Any, bind_lock: Any, workers: int
) -> None:
    from resolverguard.model import load_model
    from resolverguard.service import Service, WorkerRole, run_event_loop, run_until_signalled

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    cfg = worker_config(config_path, overrides, index)
    role = WorkerRole(index, lines.put, bind_lock, workers)
    service = Service(cfg, load_model(cfg.model), config_path, overrides, worker=role)
    run_event_loop(run_until_signalled(service))


def run_workers(cfg: Config, config_path: Path | None, overrides: dict[str, Any]) -> int:
    """Runs cfg.workers worker processes until SIGTERM/SIGINT; returns the exit code."""
    if any(ep.port == 0 for ep in cfg.listen):
        print("resolverguard: workers need fixed listen ports (not :0)", file=sys.stderr)
        return 2
    ctx = multiprocessing.get_context("spawn")
    lines, bind_lock = ctx.Queue(), ctx.Lock()
    log = QueryLog(cfg.query_log)
    writer = threading.Thread(target=_write_lines, args=(lines, log), daemon=True)
    writer.start()
    fixed = {**overrides, "listen": cfg.listen, "upstreams": cfg.upstreams, "model": cfg.model}
    procs = [
        ctx.Process(
            target=worker_main, args=(config_path, fixed, i, lines, bind_lock, cfg.workers), name=f"resolverguard-{i}"
        )
        for i in range(cfg.workers)
    ]
    for proc in procs:
        proc.start()
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
    lines.put(STOP)
    writer.join(30)
    log.close()
    return max((p.exitcode or 0) for p in procs)


def _write_lines(lines: Any, log: QueryLog) -> None:
    """The one writer: batches from the workers, flushed at least every FLUSH_SECONDS."""
    flushed = time.monotonic()
    while True:
        try:
            batch = lines.get(timeout=FLUSH_SECONDS)
        except queue.Empty:
            batch = ""
        if batch is STOP:
            log.flush()
            return
        if batch:
            log.write_line(batch)
        if time.monotonic() - flushed >= FLUSH_SECONDS:
            log.flush()
            flushed = time.monotonic()
