"""The running resolver: start, reload on SIGHUP, stop on SIGTERM/SIGINT.

Reload follows `unbound-control reload`: the policy file and its lists are read and validated in
full first; only a policy that builds completely replaces the running one. A broken file is
reported with file:line: key and the old policy stays in force. Listen addresses are fixed at start.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from resolverguard.config import Config, QueryLogConfig, load_config
from resolverguard.errors import ConfigError, ResolverGuardError
from resolverguard.model import TFLiteScorer, load_model
from resolverguard.pipeline import Pipeline, build_pipeline
from resolverguard.server import DnsServer
from resolverguard.steps.metrics import Metrics
from resolverguard.steps.querylog import FLUSH_SECONDS, QueryLog

LOG_CLOSE_DELAY = 15.0  # a replaced query log (or upstream socket pool) stays open this long for queries in flight


@dataclass(frozen=True)
class WorkerRole:
    """Set when this Service is one of several worker processes (see resolverguard.workers)."""

    index: int
    send_line: Callable[[str], None]  # hands a finished query-log line to the parent's writer


class Service:
    def __init__(
        self,
        cfg: Config,
        model: TFLiteScorer,
        config_path: Path | None = None,
        overrides: dict[str, object] | None = None,
        stderr: TextIO | None = None,
        worker: WorkerRole | None = None,
    ) -> None:
        self.cfg, self.model, self.config_path, self.stderr = cfg, model, config_path, stderr
        self._overrides, self.worker = overrides or {}, worker
        # Metrics outlive reloads (counters must not reset); the endpoint is opened in start().
        self.metrics = Metrics() if cfg.metrics is not None else None
        self.pipeline: Pipeline = build_pipeline(cfg, model, self._query_log, self.metrics, stderr=stderr)
        self.server = DnsServer(
            self.pipeline.chain,
            cfg.listen,
            cfg.limits,
            self.pipeline.gates,
            reuse_port=worker is not None,
            stderr=stderr,
        )
        self.reloads = 0
        self._flusher: asyncio.TimerHandle | None = None

    def _query_log(self, cfg: QueryLogConfig) -> QueryLog:
        if self.worker is None:
            return QueryLog(cfg, self.stderr)
        return QueryLog(cfg, self.stderr, forward=self.worker.send_line, extra={"worker": self.worker.index})

    def say(self, text: str) -> None:
        who = f"resolverguard[{self.worker.index}]" if self.worker is not None else "resolverguard"
        print(f"{who}: {text}", file=self.stderr or sys.stderr, flush=True)

    async def start(self) -> None:
        await self.server.start()
        self._flush_log_later()
        if self.metrics is not None and self.cfg.metrics is not None:
            self.metrics.serve(self.cfg.metrics.host, self.cfg.metrics.port)
            self.say(f"metrics on http://{self.cfg.metrics}/metrics")

    def reload(self) -> bool:
        """Re-reads the policy; True when the new one is in force, False when the old one stays."""
        if self.config_path is None:
            self.say("reload: no policy file (built-in defaults); nothing to reload")
            return False
        try:
            cfg = replace(load_config(self.config_path), **self._overrides)  # type: ignore[arg-type]
            model = self.model if cfg.model == self.cfg.model else load_model(cfg.model)
            pipeline = build_pipeline(
                cfg, model, self._query_log, self.metrics, previous=self.pipeline, stderr=self.stderr
            )
        except ConfigError as err:
            self.say(f"reload rejected, previous policy stays in force: {err.location()}")
            return False
        except ResolverGuardError as err:
            self.say(f"reload rejected, previous policy stays in force: {err}")
            return False
        if cfg.listen != self.cfg.listen:
            self.say("reload: listen addresses change only on restart")
        loop, old = asyncio.get_running_loop(), self.pipeline
        self.cfg, self.model, self.pipeline = cfg, model, pipeline
        self.server.chain, self.server.gates, self.server.limits = pipeline.chain, pipeline.gates, cfg.limits
        old.retire(pipeline, lambda close: loop.call_later(LOG_CLOSE_DELAY, close))
        self.reloads += 1
        self.say(
            f"reloaded {self.config_path} ({len(pipeline.groups.default.lists.allow)} allowed, "
            f"{len(pipeline.groups.default.lists.deny)} denied domains, {len(pipeline.groups.groups)} client groups)"
        )
        return True

    def _flush_log_later(self) -> None:
        """Buffered query-log lines reach the file within FLUSH_SECONDS even when traffic stops."""
        self.pipeline.log.flush()
        self._flusher = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush_log_later)

    async def stop(self, grace: float = 5.0) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.server.stop(grace)
        self.pipeline.forwarder.close()
        if self.pipeline.hook is not None:
            self.pipeline.hook.close(wait=1.0)
        self.pipeline.log.close()


def settle_memory() -> None:
    """Moves what startup (or a reload) built to the collector's permanent generation.

    The model, the Public Suffix List, the lists and the policy live as long as the process, yet
    every full collection would walk them again: measured with warm caches, a gen-2 pause fell
    from ~30 ms to ~11 ms once they were frozen. Per-query objects are freed by reference counting
    and need no collector at all; the collector only catches the rare cycle.

    What was frozen is unfrozen first: after a reload the previous pipeline is garbage, and frozen
    garbage in a cycle is never collected (issue #14: every SIGHUP leaked ~2 MB)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


async def run_until_signalled(service: Service) -> None:
    """Serves until SIGTERM or SIGINT; SIGHUP reloads."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def reload() -> None:
        if service.reload():
            settle_memory()

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await service.start()
        settle_memory()
        where = ", ".join(f"{h}:{p}" for h, p in service.server.bound)
        upstreams = ", ".join(map(str, service.cfg.upstreams))
        if service.cfg.access.open_resolver:
            service.say(
                "WARNING: access.open_resolver is on: anyone who can reach this port may use it, "
                "and it can be abused for amplification attacks"
            )
        service.say(
            f"listening on {where} (udp+tcp), forwarding to {upstreams}, "
            f"model {service.model.metadata.model_version}, mode {service.cfg.mode.value}"
        )
        await stop.wait()
        service.say("stopping: finishing queries in flight")
    finally:
        await service.stop()


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop where it is installed (about 3x the packet rate of the default loop), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
