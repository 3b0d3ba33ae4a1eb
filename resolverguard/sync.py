"""Fleet sync: what one instance's client watch finds, every instance blocks, through Redis.

Malware campaigns hit several sites within hours, and a site with several resolvers behind dnsdist
sees one client on one instance only (docs/scale-out.md). So a likely C2 name and a flagged client
are published the moment the watch finds them (`WatchState.on_found`) and applied by every other
instance (`WatchState.adopt_c2`/`adopt_flag`). Blocky shares its state through Redis the same way;
we use redis-py's asyncio client rather than a cluster protocol of our own.

Two Redis structures carry it:
  * a key per finding, `{prefix}:c2:{name}` and `{prefix}:flag:{client}`, holding the finding as
    JSON and expiring when its block does: an instance that (re)starts or reconnects reads them all
    (SCAN + MGET) and catches up;
  * a channel, `{prefix}:events`, on which each finding is also published, so running instances
    apply it at once (measured: found on A -> blocked on B within a few ms, bench/fleet.py).

Redis is never on a query's path: publishing is a bounded queue drained by one task, and what
arrives is applied on the event loop between queries. Redis down or slow therefore costs no answer:
each instance keeps answering on its own state; every Redis call is bounded by `sync.timeout`;
the connection is retried with exponential backoff (`BACKOFF`); the loss and the return are one
log line each and the `resolverguard_sync_up` gauge. On every (re)connection an instance also
writes what it knows that Redis does not (SET NX), so findings made while Redis was away reach the
others once it is back.

List subscriptions: one instance downloads (it holds a lock key), puts each copy in Redis, and the
others take it from there before their own refresh is due (`Service._refresh_lists`).

Scores (`sync.share_verdicts`, off by default): so a name is scored once per fleet, not once per
instance. Fetching a score on a miss would put Redis on the answer's path, and a Redis round trip
(~160 us) costs more than a score (~30 us, bench/results/fleet.md). So scores travel the other way,
write-behind: each score this instance computes is appended to a list (`VerdictCache.on_scored`;
one append on the answer's path), a task sends the list every `VERDICT_DELAY` as one message on
`{prefix}:verdicts`, and every other instance adopts them into its own LRU
(`VerdictCache.adopt`: never over a score of its own, expiring with what is left of the TTL).
A name asked on B ~0.1 s or more after A scored it is a cache hit on B. The same batches go to a
capped stream (`{prefix}:verdict-log`, XADD MAXLEN `sync.verdict_budget` / `VERDICT_BATCH`
entries), which a (re)starting instance reads back newest first: Redis holds at most about
`verdict_budget` scores, whatever the fleet's rate. A score is tied to the model that made it
(`model_id`): instances on another model ignore it. Measured in bench/fleet.py (share of names
scored once across two instances, and the answer path's cost with it on and off).
Timestamps: findings travel with wall-clock expiry times and are turned into the watch's
monotonic clock on arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TextIO

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from resolverguard.config import SyncConfig
from resolverguard.model import ModelMetadata
from resolverguard.steps.cache import VerdictCache
from resolverguard.watch import Flag, LikelyC2, WatchState

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

BACKOFF = (0.1, 2.0)  # seconds before the first reconnection attempt, and the most between two (a refused
# connection costs nothing; measured: a 10 s cap left the fleet apart ~10 s after Redis was back)
PING_EVERY = 1.0  # seconds between liveness checks of an idle connection (a hung Redis sends no RST)
QUEUE = 10_000  # findings waiting to be published; beyond, dropped (the next reconnection rewrites them)
SCAN_BATCH = 500
VERDICT_DELAY = 0.1  # seconds a computed score waits for others before its batch is sent
VERDICT_BATCH = 500  # most scores in one message (and one stream entry)
VERDICT_QUEUE = 50_000  # scores waiting to be sent; beyond, dropped (they are a cache: counted, not resent)
VERDICT_CATCHUP = 50  # stream entries read per call when catching up (the loop answers in between)
_FAILURES = (RedisError, OSError, asyncio.TimeoutError, ValueError)
STOP_ROUNDS = 5  # cancellations `stop` sends a task that keeps running (one is enough from Python 3.12)


@dataclass(frozen=True, slots=True)
class Finding:
    """A likely C2 or a flag as it travels between instances (`until`: wall-clock seconds)."""

    kind: str  # "c2" or "flag"
    key: str  # the C2 name, or the flagged client
    client: str
    until: float
    names: tuple[str, ...] = ()
    points: float = 0.0
    origin: str = ""

    def encode(self) -> bytes:
        return json.dumps(
            {"kind": self.kind, "key": self.key, "client": self.client, "until": self.until}
            | {"names": list(self.names), "points": self.points, "origin": self.origin},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> Finding:
        """Raises ValueError on anything that is not a finding (another program on the channel)."""
        try:
            d = json.loads(raw)
            names = tuple(str(n) for n in d.get("names", ()))
            out = cls(str(d["kind"]), str(d["key"]), str(d["client"]), float(d["until"]), names)
            out = replace(out, points=float(d.get("points", 0.0)), origin=str(d.get("origin", "")))
        except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as err:
            raise ValueError(f"not a finding: {err!r}") from None
        if out.kind not in ("c2", "flag"):
            raise ValueError(f"not a finding: kind {out.kind!r}")
        return out


def model_id(model: ModelMetadata | None) -> str:
    """What a score is valid for: the same model file reading the same input form."""
    if model is None:
        return ""
    return f"{model.model_version}|{model.input_form.value}|{model.tflite_sha256 or ''}"


class SyncMetrics:
    """`resolverguard_sync_*` on the server's registry (when metrics are on)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge

        self.up = Gauge("resolverguard_sync_up", "1 while the Redis sync is connected", registry=registry)
        self.errors = Counter(
            "resolverguard_sync_errors", "Redis sync connections lost or calls failed", registry=registry
        )
        self.published = Counter("resolverguard_sync_published", "Findings published", ["kind"], registry=registry)
        self.adopted = Counter(
            "resolverguard_sync_adopted", "Findings adopted from other instances", ["kind"], registry=registry
        )


class FleetSync:
    """One instance's link to the fleet; `attach` it to the running watch state (again after a
    reload builds a new one), `start` it on the event loop, `stop` it on shutdown."""

    def __init__(
        self,
        cfg: SyncConfig,
        stderr: TextIO | None = None,
        registry: CollectorRegistry | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        assert cfg.redis is not None
        self.cfg, self._stderr, self._wall = cfg, stderr, wall
        self.origin = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.metrics = SyncMetrics(registry) if registry is not None else None
        tls: dict[str, Any] = {"ssl_ca_certs": str(cfg.tls_ca)} if cfg.tls_ca is not None else {}
        self.redis: Redis = Redis.from_url(
            cfg.redis,
            socket_timeout=cfg.timeout,
            socket_connect_timeout=cfg.timeout,
            retry=Retry(NoBackoff(), 0),  # our loop retries, with backoff, off the query path
            **tls,
        )
        self.channel = f"{cfg.prefix}:events"
        self.watch: WatchState | None = None
        self.connected = asyncio.Event()
        self.lost_since: float | None = None
        self._loss_vague = False  # the loss's line named only a timeout: a definite cause gets one more
        self.adopted = 0  # findings of other instances applied here
        self.dropped = 0  # findings not published at once (queue full, Redis away)
        self.connections = 0
        self._queue: asyncio.Queue[Finding] = asyncio.Queue(QUEUE)
        self.verdict_channel = f"{cfg.prefix}:verdicts"
        self.verdict_log = f"{cfg.prefix}:verdict-log"
        self.cache: VerdictCache | None = None
        self.model_id = ""
        self._scores: list[tuple[str, float]] = []
        self._scores_waiting = asyncio.Event()
        self.scores_sent = 0
        self.scores_adopted = 0
        self.scores_dropped = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._resync = False

    # -- wiring --------------------------------------------------------------------------------
    def attach(
        self, watch: WatchState | None, cache: VerdictCache | None = None, model: ModelMetadata | None = None
    ) -> None:
        """Publishes what `watch` finds from now on (None: the watch is off; nothing to share), and
        with `share_verdicts` the scores `cache` is given, which `model` computes."""
        if watch is not self.watch and watch is not None:
            self._resync = True  # a new state (the watch was turned on by a reload): catch it up
        self.watch = watch
        if watch is not None:
            watch.on_found = self.found
        if self.cfg.share_verdicts and cache is not None:
            if self.cache is not None and self.cache is not cache:
                self.cache.on_scored = None
            self.cache, self.model_id = cache, model_id(model)
            cache.on_scored = self.scored

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._follow()), asyncio.ensure_future(self._publish())]
        if self.cfg.share_verdicts:
            self._tasks.append(asyncio.ensure_future(self._send_scores()))

    async def stop(self) -> None:
        """Cancels the link's tasks, again while one runs on: before Python 3.12 `asyncio.wait_for`
        drops a cancellation that arrives as its call completes (python/cpython#86296), and a task
        that then loops on (`_publish` back at its queue) would keep shutdown waiting for ever
        (seen in CI: stop after a finding was written). Each round waits one Redis timeout."""
        pending = set(self._tasks)
        for _ in range(STOP_ROUNDS):
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=self.cfg.timeout)
            if not pending:
                break
        for task in self._tasks:  # a link failure was said when it happened; anything else is a bug: raised
            err = task.exception() if task.done() and not task.cancelled() else None
            if err is not None and not isinstance(err, _FAILURES):
                raise err
        with contextlib.suppress(*_FAILURES):
            await asyncio.wait_for(self.redis.aclose(), self.cfg.timeout)

    def say(self, text: str) -> None:
        print(f"resolverguard: redis sync: {text}", file=self._stderr or sys.stderr, flush=True)

    # -- outgoing ------------------------------------------------------------------------------
    def found(self, item: Flag | LikelyC2) -> None:
        """`WatchState.on_found`: called on the loop as the watch announces; never waits."""
        finding = self._finding(item)
        if finding is None:
            return
        try:
            self._queue.put_nowait(finding)
        except asyncio.QueueFull:
            self.dropped += 1  # rewritten from the watch state at the next reconnection

    def _finding(self, item: Flag | LikelyC2) -> Finding | None:
        watch = self.watch
        if watch is None:
            return None
        until = self._wall() + item.until - watch.clock()
        if isinstance(item, Flag):
            names = tuple(f.key for f in item.names)
            return Finding("flag", item.client, item.client, until, names, item.points, self.origin)
        return Finding("c2", item.name, item.client, until, origin=self.origin)

    async def _publish(self) -> None:
        while True:
            finding = await self._queue.get()
            if not self.connected.is_set():
                self.dropped += 1  # Redis is away: the reconnection writes the watch state instead
                continue
            try:
                await asyncio.wait_for(self._write(finding), self.cfg.timeout)
            except _FAILURES as err:
                self._failed(err)

    async def _write(self, finding: Finding) -> None:
        """The finding's key (expiring with its block) and its message, in one round trip."""
        ttl_ms = int((finding.until - self._wall()) * 1000)
        if ttl_ms <= 0:
            return
        data = finding.encode()
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self._key(finding), data, px=ttl_ms)
        pipe.publish(self.channel, data)
        await pipe.execute()
        if self.metrics is not None:
            self.metrics.published.labels(finding.kind).inc()

    def scored(self, key: str, score: float) -> None:
        """`VerdictCache.on_scored`, on the answer's path: one append, never a wait."""
        if len(self._scores) < VERDICT_QUEUE:
            self._scores.append((key, score))
            if not self._scores_waiting.is_set():
                self._scores_waiting.set()
        else:
            self.scores_dropped += 1

    async def _send_scores(self) -> None:
        """Every VERDICT_DELAY at most, what was scored since, in messages of VERDICT_BATCH."""
        while True:
            await self._scores_waiting.wait()
            await asyncio.sleep(VERDICT_DELAY)
            scores, self._scores = self._scores, []
            self._scores_waiting.clear()
            if not self.connected.is_set():
                self.scores_dropped += len(scores)  # a cache: not resent after a reconnection
                continue
            for first in range(0, len(scores), VERDICT_BATCH):
                batch = scores[first : first + VERDICT_BATCH]
                try:
                    await asyncio.wait_for(self._write_scores(batch), self.cfg.timeout)
                except _FAILURES as err:
                    self.scores_dropped += len(batch)
                    self._failed(err)

    async def _write_scores(self, batch: list[tuple[str, float]]) -> None:
        data = json.dumps(
            {"o": self.origin, "m": self.model_id, "t": self._wall(), "v": batch}, separators=(",", ":")
        ).encode()
        pipe = self.redis.pipeline(transaction=False)
        pipe.publish(self.verdict_channel, data)
        if self.cfg.verdict_budget:
            entries = -(-self.cfg.verdict_budget // VERDICT_BATCH)
            pipe.xadd(self.verdict_log, {"v": data}, maxlen=entries, approximate=False)  # a strict bound: ~10 XADDs/s
        await pipe.execute()
        self.scores_sent += len(batch)
        if self.metrics is not None:
            self.metrics.published.labels("score").inc(len(batch))

    def _key(self, finding: Finding) -> str:
        return f"{self.cfg.prefix}:{finding.kind}:{finding.key}"

    # -- incoming ------------------------------------------------------------------------------
    async def _follow(self) -> None:
        """Connected: subscribed, caught up, listening; on any failure: backoff, then again."""
        delay = BACKOFF[0]
        while True:
            ups = self.connections
            try:
                await self._session()
            except _FAILURES as err:
                self._failed(err)
            if self.connections != ups:
                delay = BACKOFF[0]  # it had connected: a new loss starts the backoff over
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF[1])

    async def _session(self) -> None:
        timeout = self.cfg.timeout
        pubsub = self.redis.pubsub()
        try:
            channels = (self.channel, self.verdict_channel) if self.cfg.share_verdicts else (self.channel,)
            await asyncio.wait_for(pubsub.subscribe(*channels), timeout)  # first: nothing slips between
            self._resync = False
            caught = await self._catch_up()
            if self.cfg.share_verdicts:
                await self._catch_up_scores()
            await self._write_back()
            self._connected(caught)
            await self._listen(pubsub)
        finally:
            with contextlib.suppress(*_FAILURES):
                await asyncio.wait_for(pubsub.aclose(), timeout)  # type: ignore[no-untyped-call]

    async def _listen(self, pubsub: Any) -> None:
        """Applies what arrives until the link is lost. An idle link is checked every PING_EVERY:
        a PING on a subscribed connection only sends (its PONG comes back as a message), so a hung
        Redis, whose socket takes the PING and never answers, is found by the PONG that does not come
        within `sync.timeout`. Before giving up, whatever already arrived is read, so a loop that
        was itself kept from running (a busy machine) does not take a late read for a dead Redis."""
        timeout = self.cfg.timeout
        next_ping, pong_due = time.monotonic() + PING_EVERY, None
        while self.connected.is_set():  # cleared when a publish failed: reconnect, write back
            if self._resync:
                self._resync = False
                await self._catch_up()
            wait = PING_EVERY if pong_due is None else max(0.0, pong_due - time.monotonic())
            if self._handle(await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)):
                pong_due = None
            now = time.monotonic()
            if pong_due is not None and now >= pong_due:
                while (message := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)) is not None:
                    if self._handle(message):
                        pong_due = None
                if pong_due is not None:
                    raise TimeoutError(f"no answer to PING within {timeout:g} s")
            if pong_due is None and now >= next_ping:
                await asyncio.wait_for(pubsub.ping(), timeout)
                pong_due, next_ping = now + timeout, now + PING_EVERY

    def _handle(self, message: dict[str, Any] | None) -> bool:
        """One message from the channels: applied; True when it was the answer to our PING."""
        if message is None:
            return False
        if message.get("type") == "message":
            if message.get("channel") in (self.verdict_channel, self.verdict_channel.encode()):
                self.apply_scores(message["data"])
            else:
                self._apply_raw(message["data"])
        return message.get("type") == "pong"

    async def _catch_up(self) -> int:
        """Every finding Redis holds (what this instance missed while it was down or cut off)."""
        timeout, count = self.cfg.timeout, 0
        for kind in ("c2", "flag"):
            cursor: int = 0
            while True:
                cursor, keys = await asyncio.wait_for(
                    self.redis.scan(cursor, match=f"{self.cfg.prefix}:{kind}:*", count=SCAN_BATCH), timeout
                )
                if keys:
                    for raw in await asyncio.wait_for(self.redis.mget(keys), timeout):
                        if raw is not None:
                            count += self._apply_raw(raw)
                if not cursor:
                    break
        return count

    async def _catch_up_scores(self) -> None:
        """The fleet's recent scores from the capped stream, newest first, until they are older
        than the cache's TTL; read in small chunks so the loop answers queries in between."""
        cache = self.cache
        if cache is None or not self.cfg.verdict_budget:
            return
        newest = "+"
        while True:
            read: Any = self.redis.xrevrange(self.verdict_log, max=newest, count=VERDICT_CATCHUP)
            entries: list[tuple[bytes, dict[bytes, bytes]]] = await asyncio.wait_for(read, self.cfg.timeout)
            ages = [self.apply_scores(fields.get(b"v", b"")) for _, fields in entries]
            if len(entries) < VERDICT_CATCHUP or any(age >= cache.ttl for age in ages):
                return
            newest = "(" + entries[-1][0].decode()  # exclusive: on from the oldest read
            await asyncio.sleep(0)

    def apply_scores(self, raw: bytes | str) -> float:
        """Another instance's batch of scores into the local cache (not our own, not another
        model's); returns the batch's age in seconds (inf when it is not a batch at all)."""
        cache = self.cache
        try:
            d = json.loads(raw)
            age = self._wall() - float(d["t"])
            if cache is None or d["o"] == self.origin or d["m"] != self.model_id:
                return age
            taken = sum(cache.adopt(str(k), float(v), age) for k, v in d["v"])
        except (TypeError, KeyError, ValueError, AttributeError):
            return float("inf")
        self.scores_adopted += taken
        if taken and self.metrics is not None:
            self.metrics.adopted.labels("score").inc(taken)
        return age

    async def _write_back(self) -> None:
        """What this instance knows that Redis does not (found while Redis was away, or Redis lost
        its data): SET NX, so a newer finding of another instance is never overwritten, and
        published when it was new, so instances that reconnected first learn it too."""
        watch = self.watch
        if watch is None:
            return
        items: list[Flag | LikelyC2] = [*list(watch.likely_c2.values()), *list(watch.flagged.values())]
        for item in items:
            finding = self._finding(item)
            ttl_ms = 0 if finding is None else int((finding.until - self._wall()) * 1000)
            if finding is None or ttl_ms <= 0:
                continue
            data, timeout = finding.encode(), self.cfg.timeout
            if await asyncio.wait_for(self.redis.set(self._key(finding), data, px=ttl_ms, nx=True), timeout):
                await asyncio.wait_for(self.redis.publish(self.channel, data), timeout)

    def _apply_raw(self, raw: bytes | str) -> int:
        try:
            finding = Finding.decode(raw)
        except ValueError:
            return 0
        return int(self.apply(finding))

    def apply(self, finding: Finding) -> bool:
        """A finding from another instance, into the local watch; True when it changed something."""
        watch = self.watch
        if watch is None or finding.origin == self.origin:
            return False
        until = watch.clock() + finding.until - self._wall()
        if finding.kind == "c2":
            changed = watch.adopt_c2(finding.key, finding.client, until)
        else:
            changed = watch.adopt_flag(finding.key, finding.names, until, finding.points)
        if changed:
            self.adopted += 1
            if self.metrics is not None:
                self.metrics.adopted.labels(finding.kind).inc()
        return changed

    # -- list subscriptions -------------------------------------------------------------------
    async def lists_lock(self, seconds: float) -> bool:
        """True when this instance may download the lists now: it took the fleet's lock (held for
        `seconds` at most), or Redis is away (then every instance downloads its own, as without
        sync). False while another instance downloads: pull its copies after it (`pull_lists`)."""
        try:
            got = await asyncio.wait_for(
                self.redis.set(self._lists_key("lock"), self.origin, nx=True, px=int(seconds * 1000)), self.cfg.timeout
            )
        except _FAILURES as err:
            self._failed(err)
            return True
        return bool(got)

    async def lists_unlocked(self, seconds: float) -> None:
        """Waits (at most `seconds`) until no instance holds the lists lock."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if not await asyncio.wait_for(self.redis.exists(self._lists_key("lock")), self.cfg.timeout):
                    return
            except _FAILURES:
                return
            await asyncio.sleep(0.2)

    async def unlock_lists(self) -> None:
        with contextlib.suppress(*_FAILURES):
            key = self._lists_key("lock")
            if await asyncio.wait_for(self.redis.get(key), self.cfg.timeout) == self.origin.encode():
                await asyncio.wait_for(self.redis.delete(key), self.cfg.timeout)

    async def push_list(self, url: str, copy: tuple[bytes, dict[str, Any]], keep: float, timeout: float) -> bool:
        """Shares this instance's copy of `url` (after its download) for `keep` seconds."""
        data, meta = copy
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(self._lists_key(url), mapping={"body": data, "meta": json.dumps(meta)})
            pipe.pexpire(self._lists_key(url), int(keep * 1000))
            await asyncio.wait_for(pipe.execute(), timeout)
        except _FAILURES as err:
            self._failed(err)
            return False
        return True

    async def pull_list(
        self, url: str, newer_than: float | None, timeout: float
    ) -> tuple[bytes, dict[str, Any]] | None:
        """The fleet's copy of `url` when it was checked after `newer_than` (our copy's time)."""
        try:
            raw = await asyncio.wait_for(self.redis.hget(self._lists_key(url), "meta"), self.cfg.timeout)
            if raw is None:
                return None
            meta = json.loads(raw)
            checked = meta.get("checked") if isinstance(meta, dict) else None
            if not isinstance(checked, int | float) or (newer_than is not None and checked <= newer_than):
                return None
            data = await asyncio.wait_for(self.redis.hget(self._lists_key(url), "body"), timeout)
        except (*_FAILURES, json.JSONDecodeError) as err:
            self._failed(err)
            return None
        return (data, meta) if isinstance(data, bytes) and data else None

    def _lists_key(self, what: str) -> str:
        digest = what if what == "lock" else hashlib.sha256(what.encode()).hexdigest()[:24]
        return f"{self.cfg.prefix}:lists:{digest}"

    # -- health --------------------------------------------------------------------------------
    def _connected(self, caught: int) -> None:
        was_lost = self.lost_since is not None
        self.connected.set()
        self.lost_since = None
        self.connections += 1
        if self.metrics is not None:
            self.metrics.up.set(1)
        again = "back: " if was_lost else ""
        self.say(f"{again}connected to {self.cfg.redacted()} ({caught} findings of other instances caught up)")

    def _failed(self, err: BaseException) -> None:
        """One log line per loss (not per retry); the gauge and the error counter say the rest.
        A loss first seen as a timeout (a slow handshake on a busy machine, a hung Redis) is named
        once more when a retry fails for a definite reason: otherwise an untrusted certificate or a
        wrong password would hide behind "timeout" for the whole outage."""
        if self.metrics is not None:
            self.metrics.errors.inc()
            self.metrics.up.set(0)
        what = f"{type(err).__name__}: {err}".strip().rstrip(":")
        vague = isinstance(err, TimeoutError | RedisTimeout)
        if self.lost_since is None:
            self.lost_since, self._loss_vague = time.monotonic(), vague
            self.say(
                f"{self.cfg.redacted()} unreachable ({what}); answering on this instance's own state, "
                f"reconnecting with backoff up to {BACKOFF[1]:g} s"
            )
        elif self._loss_vague and not vague:
            self._loss_vague = False
            self.say(f"{self.cfg.redacted()} still cut off, now: {what}")
        self.connected.clear()
