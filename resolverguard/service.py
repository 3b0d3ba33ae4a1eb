"""The running resolver: start, reload on SIGHUP, stop on SIGTERM/SIGINT.

Reload follows `unbound-control reload`: the policy file and its lists are read and validated in
full first; only a policy that builds completely replaces the running one. A broken file is
reported with file:line: key and the old policy stays in force. Listen addresses are fixed at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from resolverguard.addresses import networks
from resolverguard.config import Config, ListsConfig, QueryLogConfig, QueryStoreConfig, load_config
from resolverguard.control import ControlServer, default_socket
from resolverguard.errors import ConfigError, ResolverGuardError
from resolverguard.lists import DomainLists
from resolverguard.model import TFLiteScorer, load_model
from resolverguard.pipeline import Pipeline, build_pipeline, list_copies, prebuilt_lists, subscribed
from resolverguard.server import DnsServer
from resolverguard.steps.metrics import Metrics
from resolverguard.steps.querylog import HandOverTimer, QueryLog
from resolverguard.subscriptions import (
    Downloader,
    FetchResult,
    ages,
    cached_path,
    default_cache_dir,
    read_copy,
    read_meta,
    store_copy,
)

if TYPE_CHECKING:
    from resolverguard.sync import FleetSync
    from resolverguard.web.app import Dashboard

Copies = tuple[tuple[str, int], ...]  # see pipeline.list_copies
LOG_CLOSE_DELAY = 15.0  # a replaced query log (or upstream socket pool) stays open this long for queries in flight
FULL_COLLECTION_EVERY = 100  # young collections of the second generation per full collection (Python's default: 10)


@dataclass(frozen=True)
class WorkerRole:
    """Set when this Service is one of several worker processes (see resolverguard.workers)."""

    index: int
    send_line: Callable[[Any], None]  # hands a batch of query-log records to the parent's writer
    control: Path | None = None  # its private control socket, which the parent's fans out to
    # held while this worker binds its sockets, so that worker k holds the k-th socket of every
    # reuseport group, UDP and TCP alike (resolverguard.reuseport); a multiprocessing lock
    bind_lock: AbstractContextManager[Any] = field(default_factory=contextlib.nullcontext)
    workers: int = 1  # how many share the ports


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
        self._copies: Copies = list_copies(cfg)  # the downloaded copies the running lists were read from
        self.pipeline: Pipeline = build_pipeline(cfg, model, self._query_log, self.metrics, stderr=stderr)
        if self.metrics is not None:
            self.metrics.watch_log(lambda: self.pipeline.log)
        self.server = DnsServer(
            self.pipeline.chain,
            cfg.listen,
            cfg.limits,
            self.pipeline.gates,
            reuse_port=worker is not None,
            stderr=stderr,
            proxies=networks(cfg.proxy_protocol),
            steer=worker.workers if worker is not None else 0,
            shortcut=self.pipeline.shortcut,
        )
        self.reloads = 0
        self._flusher = HandOverTimer(lambda: self.pipeline.log)  # kept records reach the writer when traffic stops
        self._refresher: asyncio.Future[None] | None = None
        self._updating = asyncio.Lock()
        self.control: ControlServer | None = None
        self.dashboard: Dashboard | None = None
        self._pause_timer: asyncio.TimerHandle | None = None
        # the fleet link (sync.redis); fixed at start, like the listen addresses
        self.sync: FleetSync | None = None
        if cfg.sync.enabled:
            from resolverguard.sync import FleetSync  # redis-py is imported only by a fleet's instances

            self.sync = FleetSync(cfg.sync, stderr, self.metrics.registry if self.metrics is not None else None)
            self.sync.attach(self.pipeline.watch, self.pipeline.cache, model.metadata)

    def _query_log(self, cfg: QueryLogConfig, store: QueryStoreConfig | None) -> QueryLog:
        if self.worker is None:
            return QueryLog(cfg, self.stderr, store=store)
        extra = {"worker": self.worker.index}  # the parent's writer owns the file and the store
        return QueryLog(cfg, self.stderr, forward=self.worker.send_line, extra=extra, store=store)

    def say(self, text: str) -> None:
        who = f"resolverguard[{self.worker.index}]" if self.worker is not None else "resolverguard"
        print(f"{who}: {text}", file=self.stderr or sys.stderr, flush=True)

    async def start(self) -> None:
        if self.worker is None:
            await self.server.start()
        else:
            with self.worker.bind_lock:  # one worker binds at a time: see WorkerRole.bind_lock
                await self.server.start()
        self._flusher.start()
        self.say_lists()
        self._refresher = asyncio.ensure_future(self._refresh_lists())
        await self._start_control()
        if self.sync is not None:
            self.sync.start()
        if self.metrics is not None and self.cfg.metrics is not None:
            self.metrics.serve(self.cfg.metrics.host, self.cfg.metrics.port)
            self.say(f"metrics on http://{self.cfg.metrics}/metrics")
        if self.cfg.dashboard.enabled and self.worker is None:  # one dashboard per server, as the control socket
            from resolverguard.web.app import Dashboard

            self.dashboard = Dashboard(self)
            await self.dashboard.start()
            self.say(f"dashboard on http://{self.cfg.dashboard.listen}/")

    def reload(self) -> bool:
        """Re-reads the policy right here; True when the new one is in force, False when the old
        one stays. It holds the event loop while it reads the lists (a million entries: ~20 s with
        no answer), so the server reloads with `reload_off_loop`; this is for callers without a
        loop to keep answering (tests, small policies)."""
        if self.config_path is None:
            self.say("reload: no policy file (built-in defaults); nothing to reload")
            return False
        built = self._build()
        if built is None:
            return False
        self._swap(*built, f"reloaded {self.config_path}")
        return True

    async def reload_off_loop(self) -> bool:
        """What SIGHUP and `resolverguard reload` run: the policy and its lists are read in a
        helper process (`read_policy`; in a thread the parse would hold the GIL for seconds, as
        `download_and_read` found), the pipeline is assembled in a thread from what it sent back,
        and only the swap runs on the loop. Answers go on meanwhile (bench/results/swap-reload.md)."""
        if self.config_path is None:
            self.say("reload: no policy file (built-in defaults); nothing to reload")
            return False
        async with self._updating:  # a reload and a list update never build at once
            loop = asyncio.get_running_loop()
            helper = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            try:
                read = await loop.run_in_executor(helper, read_policy, self.config_path, self._overrides)
            except Exception as err:  # noqa: BLE001 - a helper that died must not take the server with it
                self.say(f"reload failed, previous policy stays in force: {type(err).__name__}: {err}")
                return False
            finally:  # joined off the loop: the helper's exit frees a million-entry heap
                loop.run_in_executor(None, helper.shutdown)
            if isinstance(read, str):
                self.say(f"reload rejected, previous policy stays in force: {read}")
                return False
            fresh = await loop.run_in_executor(None, self._build, *read)
            if fresh is None:
                return False
            self._swap(*fresh, f"reloaded {self.config_path}")
            settle_memory()  # the old pipeline was frozen at start (issue #14's leak): 100 API reloads grew 39 MB
            return True

    def _build(
        self, built: Mapping[ListsConfig, DomainLists] | None = None, copies: Copies | None = None
    ) -> tuple[Config, TFLiteScorer, Pipeline, Copies] | None:
        """A complete new pipeline from the policy file (or the running config when there is no
        file), or None after saying why the old one stays. Safe to run in a worker thread."""
        try:
            fresh = self.config_path is not None and load_config(self.config_path)
            cfg = replace(fresh, **self._overrides) if fresh else self.cfg  # type: ignore[arg-type]
            model = self.model if cfg.model == self.cfg.model else load_model(cfg.model)
            copies = copies if copies is not None else list_copies(cfg)
            pipeline = build_pipeline(
                cfg, model, self._query_log, self.metrics, previous=self.pipeline, built=built, stderr=self.stderr
            )
        except ConfigError as err:
            self.say(f"reload rejected, previous policy stays in force: {err.location()}")
            return None
        except ResolverGuardError as err:
            self.say(f"reload rejected, previous policy stays in force: {err}")
            return None
        return cfg, model, pipeline, copies

    def _swap(self, cfg: Config, model: TFLiteScorer, pipeline: Pipeline, copies: Copies, what: str) -> None:
        """Puts a built pipeline in force (on the event loop: one assignment per field, no stall)."""
        self._copies = copies
        if cfg.listen != self.cfg.listen:
            self.say("reload: listen addresses change only on restart")
        if cfg.sync != self.cfg.sync:
            self.say("reload: the sync section changes only on restart")
        if self.sync is not None:
            self.sync.attach(pipeline.watch, pipeline.cache, model.metadata)
        loop, old = asyncio.get_running_loop(), self.pipeline
        self.cfg, self.model, self.pipeline = cfg, model, pipeline
        self.server.chain, self.server.gates, self.server.limits = pipeline.chain, pipeline.gates, cfg.limits
        self.server.shortcut = pipeline.shortcut
        self.server.proxies = networks(cfg.proxy_protocol)
        old.retire(pipeline, lambda close: loop.call_later(LOG_CLOSE_DELAY, close))
        self.reloads += 1
        lists = pipeline.groups.default.lists
        self.say(
            f"{what} ({lists.allowed_count} allowed, {lists.denied_count} denied rules, "
            f"{len(pipeline.groups.groups)} client groups)"
        )
        self.say_lists()

    def say_lists(self) -> None:
        """Per list: entries, skipped lines by reason, age of a downloaded copy."""
        for line in self.pipeline.groups.list_summaries():
            self.say(f"list {line}")

    async def update_lists(self) -> list[FetchResult]:
        """Downloads every list URL now and, when any changed, reads the lists, both in a helper
        process (`download_and_read`); the new pipeline is then assembled in a worker thread from
        the lists it sent back and swapped in on the loop: answers never wait for a download or a parse."""
        if not subscribed(self.cfg):
            return []
        async with self._updating:  # a scheduled refresh and `lists update` never run at once
            results = await self._update_lists()
        if self.sync is not None:
            await self._push_lists(results)
        return results

    async def _update_lists(self, fetch: bool = True) -> list[FetchResult]:
        """`fetch` False: only re-reads the cached copies (another instance downloaded them)."""
        loop = asyncio.get_running_loop()
        helper = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        try:
            results, built, copies = await loop.run_in_executor(
                helper, download_and_read, self.cfg, self._copies, fetch
            )
        except Exception as err:  # noqa: BLE001 - a list that cannot be read must not stop the refresher
            self.say(f"list update failed, the lists in force stay: {type(err).__name__}: {err}")
            return []
        finally:  # joined off the loop: the helper's exit frees a million-entry heap (~0.3 s measured)
            loop.run_in_executor(None, helper.shutdown)
        for result in results:
            self.say(f"list update: {result}")
        if built is not None:
            fresh = await loop.run_in_executor(None, self._build, built, copies)
            if fresh is not None:
                self._swap(*fresh, "lists updated")
        return results

    async def _start_control(self) -> None:
        """The control socket (`resolverguard pause/resume/status/lists update`). A worker (of
        `workers` > 1) listens on the private one its parent passes its commands to."""
        where = self.cfg.control_socket
        if self.worker is not None:
            where = self.worker.control or False
        if where is False:
            return
        self.control = ControlServer(where if isinstance(where, Path) else default_socket(), self.command)
        try:
            await self.control.start()
        except OSError as err:
            self.say(f"control socket not opened ({err}); pause and resume are unavailable")
            self.control = None
            return
        self.say(f"control socket {self.control.path}")

    async def command(self, words: list[str]) -> str:
        """One control command: `pause SECONDS`, `resume`, `status`, `lists update`, `reload`."""
        switch = self.pipeline.pause
        if words[0] == "pause" and len(words) == 2:
            try:
                seconds = float(words[1])
            except ValueError:
                return f"error: {words[1]!r} is not a number of seconds"
            if not 0 < seconds <= 86_400 * 7:
                return "error: a pause lasts between 1 second and 7 days"
            switch.pause(seconds)
            if self._pause_timer is not None:
                self._pause_timer.cancel()
            self._pause_timer = asyncio.get_running_loop().call_later(seconds, self._pause_ended)
            self.say(f"blocking paused for {seconds:g} s (resolverguard resume ends it sooner)")
            return f"ok: blocking paused for {seconds:g} s"
        if words == ["resume"]:
            was = switch.resume()
            if self._pause_timer is not None:
                self._pause_timer.cancel()
            if was:
                self.say("blocking resumed (resolverguard resume)")
            return "ok: blocking resumed" if was else "ok: blocking was not paused"
        if words == ["status"]:
            lists = self.pipeline.groups.default.lists
            state = f"paused, {switch.remaining():.0f} s left" if switch.active else "blocking"
            sync = "" if self.sync is None else f"; redis sync {'up' if self.sync.connected.is_set() else 'down'}"
            lost = self.pipeline.log.lost  # (a dead writer, a full disk, a writer far behind: issue #17)
            return (
                f"ok: {state}; {lists.allowed_count} allowed, {lists.denied_count} denied rules; {self.reloads} reloads"
                f"{sync}{f'; query log {lost} lines lost' if lost else ''}"
            )
        if words == ["lists", "update"]:
            results = await self.update_lists()
            return "ok: " + ("; ".join(map(str, results)) or "no list URLs")
        if words == ["reload"]:
            return "ok: reloaded" if await self.reload_off_loop() else "error: reload rejected (see the server's log)"
        return f"error: unknown command {' '.join(words)!r}"

    def _pause_ended(self) -> None:
        """Says so when a pause runs out (asyncio may fire a timer a clock tick early: wait on)."""
        switch, self._pause_timer = self.pipeline.pause, None
        if switch.active:
            self._pause_timer = asyncio.get_running_loop().call_later(switch.remaining() + 0.01, self._pause_ended)
        elif switch.until:
            switch.resume()
            self.say("blocking resumed (pause ended)")

    async def _refresh_lists(self) -> None:
        """Downloads list URLs at start when a copy is missing or older than `refresh`, then every
        `refresh` seconds. With `sync`, one instance of the fleet downloads (it holds the lists
        lock in Redis) and the others take its copies from Redis instead."""
        while True:
            subs = self.cfg.subscriptions
            if subs.refresh <= 0:
                return
            if self.sync is not None:
                await self._pull_lists()
            known = ages(subs.cache_dir or default_cache_dir(), [u for u, _ in subscribed(self.cfg)])
            urls = [u for u, _ in subscribed(self.cfg)]
            oldest = max((known.get(u, float("inf")) for u in urls), default=0.0)
            wait = max(0.0, subs.refresh - oldest)
            if wait > 0:
                await asyncio.sleep(min(wait, subs.refresh))
                continue
            hold = subs.timeout * (len(urls) + 1)  # the longest the lock may be held: every download's timeout
            if self.sync is not None and not await self.sync.lists_lock(hold):
                await self.sync.lists_unlocked(hold)  # another instance downloads: take its copies next
                continue
            await self.update_lists()
            await asyncio.sleep(subs.refresh)

    async def _push_lists(self, results: list[FetchResult]) -> None:
        """Shares the copies this instance just downloaded (or confirmed) with the fleet."""
        assert self.sync is not None
        subs, loop = self.cfg.subscriptions, asyncio.get_running_loop()
        cache_dir, keep = subs.cache_dir or default_cache_dir(), max(2 * subs.refresh, 86_400.0)
        for result in results:
            if result.status in ("updated", "not modified"):
                copy = await loop.run_in_executor(None, read_copy, cache_dir, result.url)
                if copy is not None:
                    await self.sync.push_list(result.url, copy, keep, subs.timeout)
        await self.sync.unlock_lists()

    async def _pull_lists(self) -> None:
        """Copies another instance downloaded after ours, into our cache; then the lists are re-read."""
        assert self.sync is not None
        subs, loop = self.cfg.subscriptions, asyncio.get_running_loop()
        cache_dir, pulled = subs.cache_dir or default_cache_dir(), 0
        for url, _ in subscribed(self.cfg):
            mine = read_meta(cached_path(cache_dir, url)).get("checked")
            copy = await self.sync.pull_list(url, mine if isinstance(mine, int | float) else None, subs.timeout)
            if copy is not None:
                await loop.run_in_executor(None, store_copy, cache_dir, url, *copy)
                pulled += 1
        if pulled:
            self.say(f"lists: {pulled} copies another instance downloaded taken from Redis")
            async with self._updating:
                await self._update_lists(fetch=False)

    async def stop(self, grace: float = 5.0) -> None:
        self._flusher.stop()
        if self._refresher is not None:
            self._refresher.cancel()
        if self._pause_timer is not None:
            self._pause_timer.cancel()
        if self.control is not None:
            await self.control.stop()
        if self.dashboard is not None:
            await self.dashboard.stop()
        if self.sync is not None:
            await self.sync.stop()
        await self.server.stop(grace)
        self.pipeline.forwarder.close()
        if self.pipeline.hook is not None:
            self.pipeline.hook.close(wait=1.0)
        self.pipeline.log.close()


def download_and_read(
    cfg: Config, copies: tuple[tuple[str, int], ...], fetch: bool = True
) -> tuple[list[FetchResult], dict[ListsConfig, DomainLists] | None, tuple[tuple[str, int], ...]]:
    """Runs in a helper process (`Service.update_lists`): downloads every list URL of `cfg` and,
    when a cached copy is not the one the running lists were read from (`copies`: this download,
    or another worker's), reads every lists section; returns (results, prebuilt lists or None, copies).
    Reading a million-entry list holds Python's GIL for seconds, and downloads are parsed to be
    checked: in the serving process that would stall answers (measured: p99 28 ms, max 0.56 s in
    bench/swap.py with a thread), in a separate process it costs the server nothing but CPU."""
    with contextlib.suppress(OSError):
        os.nice(5)  # the server's answers come first on a small machine
    subs, results = cfg.subscriptions, []
    if fetch:
        downloader = Downloader(subs.cache_dir or default_cache_dir(), subs.max_bytes, subs.timeout)
        try:
            results = downloader.fetch_all(subscribed(cfg))
        finally:
            downloader.close()
    now = list_copies(cfg)
    return results, prebuilt_lists(cfg) if now != copies else None, now


def read_policy(
    path: Path, overrides: Mapping[str, object]
) -> tuple[dict[ListsConfig, DomainLists], tuple[tuple[str, int], ...]] | str:
    """Runs in a helper process (`Service.reload_off_loop`): reads the policy and every lists
    section it names; returns (prebuilt lists, the downloaded copies they were read from), or
    what is wrong with the policy (`file:line: key: problem`) as text, which pickles everywhere."""
    with contextlib.suppress(OSError):
        os.nice(5)  # the server's answers come first on a small machine
    try:
        cfg = replace(load_config(path), **overrides)  # type: ignore[arg-type]
        return prebuilt_lists(cfg), list_copies(cfg)
    except ConfigError as err:
        return err.location()
    except ResolverGuardError as err:
        return str(err)


def settle_memory() -> None:
    """Moves what startup (or a reload) built to the collector's permanent generation.

    The model, the Public Suffix List, the lists and the policy live as long as the process, yet
    every full collection would walk them again: measured with warm caches, a gen-2 pause fell
    from ~30 ms to ~11 ms once they were frozen. Per-query objects are freed by reference counting
    and need no collector at all; the collector only catches the rare cycle.

    What was frozen is unfrozen first: after a reload the previous pipeline is garbage, and frozen
    garbage in a cycle is never collected (issue #14: every SIGHUP leaked ~2 MB).

    Full collections are then made rarer (FULL_COLLECTION_EVERY): what is left to walk are the
    memos and caches that fill with traffic, and after a freeze the collector's own rule (a full
    pass only when what is new exceeds a quarter of the old) rarely holds it back, since the old is
    frozen and not counted. Measured with gc.callbacks on a server under never-seen names (issue
    #17, the p99 at 20% load): over a start and ~25 s of traffic, 4 full passes of 5-15 ms each
    (the one here included) at Python's default, 1 at this setting; each stalls every query that
    arrives meanwhile. Cycles still get collected, only later; reference counting frees the rest."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


async def run_until_signalled(service: Service) -> None:
    """Serves until SIGTERM or SIGINT; SIGHUP reloads."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    reloading: set[asyncio.Task[None]] = set()  # held until done (the loop keeps only weak references)

    async def reload() -> None:
        await service.reload_off_loop()  # settles memory itself after a swap

    def on_sighup() -> None:
        task = asyncio.ensure_future(reload())
        reloading.add(task)
        task.add_done_callback(reloading.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
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
