"""Fleet sync over a real `redis-server`: two or three resolverguard instances, each with its own
loop and sockets, an infected client on one of them (as tests/test_watch.py simulates it), and
dnspython asking the others. Redis is killed and started again (empty) mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dns.exception
import dns.rcode
import pytest
from dnsfixtures import UPSTREAM_A, RunningResolver, Upstream, eventually, free_port, run_resolver, run_upstream
from fleetfixtures import RedisServer, make_certificates, run_redis
from listserver import Served, serve_lists
from test_watch import (
    C2,
    INFECTED,
    OTHER,
    THIRD,
    addresses,
    ask,
    config_for,
    find_c2_and_beacon,
    reload_in_loop,
)

from resolverguard.config import (
    Config,
    ConfigError,
    Endpoint,
    ListsConfig,
    ListSource,
    SubscriptionsConfig,
    SyncConfig,
    load_config,
)
from resolverguard.sync import Finding, FleetSync


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with run_upstream(Upstream(tld_soa=True)) as up:
        yield up


def synced(up: Upstream, redis: RedisServer, prefix: str = "rg-test") -> Config:
    return replace(config_for(up), sync=SyncConfig(redis=redis.url, prefix=prefix, timeout=0.3))


def connected(r: RunningResolver, timeout: float = 10.0) -> None:
    sync = r.service.sync
    assert sync is not None
    assert eventually(sync.connected.is_set, timeout), "the instance never connected to Redis"


def blocked(r: RunningResolver, name: str, client: str) -> bool:
    return addresses(ask(r, name, client)) == ["0.0.0.0"]


@contextlib.contextmanager
def instance(cfg: Config, path: Path, stderr: io.StringIO | None = None) -> Iterator[RunningResolver]:
    with run_resolver(cfg, path, stderr=stderr) as r:
        connected(r)
        yield r


def infect(r: RunningResolver, client: str = INFECTED) -> None:
    """An infected client's first walk name, its C2 found and a beacon to it: flagged by the
    beacon points (test_watch.py), the C2 a likely C2."""
    find_c2_and_beacon(r, client)
    watch = r.service.pipeline.watch
    assert watch is not None and eventually(lambda: C2 in watch.likely_c2, 3)


def test_c2_found_on_one_instance_is_blocked_on_the_other(upstream: Upstream, tmp_path: Path) -> None:
    with run_redis() as redis:
        cfg = synced(upstream, redis)
        with instance(cfg, tmp_path / "a.log") as a, instance(cfg, tmp_path / "b.log") as b:
            assert addresses(ask(b, C2, OTHER)) == [UPSTREAM_A]  # B knows nothing yet
            assert addresses(ask(b, "freshnewsite.org", INFECTED)) == [UPSTREAM_A]
            infect(a)
            assert eventually(lambda: blocked(b, C2, OTHER)), "B never blocked the C2 A found"
            # the flag travels too: were the infected client to land on B, its new names are quarantined
            assert blocked(b, "anotherfreshsite.org", INFECTED)
            assert addresses(ask(b, "anotherfreshsite.org", THIRD)) == [UPSTREAM_A]
            line = [x for x in b.log_lines() if x.get("qname") == C2 and x.get("client") == OTHER][-1]
            assert line["reason"] == "likely c2"
            sync_b = b.service.sync
            assert sync_b is not None and sync_b.adopted == 2  # the C2 and the flag, once each
            assert b.service.pipeline.watch is not None and b.service.pipeline.watch.c2_found == 0  # B found nothing


def test_an_instance_started_later_catches_up(upstream: Upstream, tmp_path: Path) -> None:
    with run_redis() as redis:
        cfg = synced(upstream, redis)
        with instance(cfg, tmp_path / "a.log") as a:
            infect(a)
            with instance(cfg, tmp_path / "b.log") as b:  # (re)started after the finding: reads the keys
                assert blocked(b, C2, OTHER)
        with instance(cfg, tmp_path / "c.log") as c:  # A gone too: Redis keeps the findings until they expire
            assert blocked(c, C2, OTHER)


def test_a_watch_turned_on_by_a_reload_catches_up(upstream: Upstream, tmp_path: Path) -> None:
    with run_redis() as redis:
        policy = tmp_path / "b.yaml"
        policy.write_text(
            f"upstreams: [127.0.0.1:{upstream.port}]\nupstream_timeout: 0.5\nquery_log: {tmp_path / 'b.log'}\n"
            f"client_watch: {{enabled: false}}\nsync: {{redis: '{redis.url}', prefix: rg-test}}\n"
        )
        with (
            instance(synced(upstream, redis), tmp_path / "a.log") as a,
            instance(load_config(policy), tmp_path / "b.log") as b,
        ):
            infect(a)
            assert addresses(ask(b, C2, OTHER)) == [UPSTREAM_A]  # B's watch is off: nothing to apply
            policy.write_text(policy.read_text().replace("enabled: false", "enabled: true"))
            b.service.config_path = policy
            assert reload_in_loop(b)
            assert eventually(lambda: blocked(b, C2, OTHER)), "B's new watch never caught up from Redis"
            assert "redis sync up" in asyncio.run_coroutine_threadsafe(b.service.command(["status"]), b.loop).result(5)


def test_findings_expire_in_redis_with_their_block(upstream: Upstream, tmp_path: Path) -> None:
    with run_redis() as redis:
        cfg = synced(upstream, redis)
        cfg = replace(cfg, client_watch=replace(cfg.client_watch, likely_c2_ttl=3.0, quarantine_ttl=3.0))
        with instance(cfg, tmp_path / "a.log") as a:
            infect(a)
        time.sleep(3.2)
        with instance(cfg, tmp_path / "b.log") as b:
            assert addresses(ask(b, C2, OTHER)) == [UPSTREAM_A]
            sync = b.service.sync
            assert sync is not None and sync.adopted == 0


def denied(r: RunningResolver) -> int:
    return r.service.pipeline.groups.default.lists.denied_count


def test_a_list_is_downloaded_by_one_instance_and_shared(upstream: Upstream, tmp_path: Path) -> None:
    with run_redis() as redis, serve_lists() as http:
        http.files["/deny.txt"] = Served(b"ads.example.com\ntracker.example.net\n", etag='"v1"')
        source = ListSource(url=http.url("/deny.txt"))

        def cfg_for(name: str) -> Config:  # each instance its own cache directory, as on its own machine
            subs = SubscriptionsConfig(cache_dir=tmp_path / name, refresh=3600.0, timeout=5.0)
            lists = ListsConfig(deny_files=(source,))
            return replace(synced(upstream, redis), lists=lists, subscriptions=subs)

        stderr = io.StringIO()
        with instance(cfg_for("a"), tmp_path / "a.log") as a:
            assert eventually(lambda: denied(a) == 2, 20), "A never downloaded the list"
            with instance(cfg_for("b"), tmp_path / "b.log", stderr) as b:
                assert eventually(lambda: denied(b) == 2, 20), "B never got the list"
                assert blocked(b, "ads.example.com", OTHER)
        assert [path for path, _ in http.requests] == ["/deny.txt"]  # one download for the fleet
        assert "copies another instance downloaded taken from Redis" in stderr.getvalue()


class Asker:
    """Asks every instance for a name, without pause, in a thread: every answer must come."""

    def __init__(self, instances: list[RunningResolver], client: str = THIRD) -> None:
        self.instances, self.client = instances, client
        self.asked = self.answered = 0
        self.lost: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            for r in self.instances:
                n += 1
                name = f"www{n % 50}.example.org"
                self.asked += 1
                try:
                    reply = ask(r, name, self.client)
                except dns.exception.Timeout:
                    self.lost.append(name)
                    continue
                if reply.rcode() == dns.rcode.NOERROR and addresses(reply) == [UPSTREAM_A]:
                    self.answered += 1
                else:
                    self.lost.append(f"{name}: {dns.rcode.to_text(reply.rcode())}")
            time.sleep(0.005)

    def __enter__(self) -> Asker:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_redis_killed_mid_run_no_answer_lost_and_state_converges(upstream: Upstream, tmp_path: Path) -> None:
    with run_redis() as redis:
        cfg = synced(upstream, redis)
        err_a, err_b = io.StringIO(), io.StringIO()
        with_metrics = replace(cfg, metrics=Endpoint("127.0.0.1", free_port()))
        with instance(cfg, tmp_path / "a.log", err_a) as a, instance(with_metrics, tmp_path / "b.log", err_b) as b:
            sync_a, sync_b = a.service.sync, b.service.sync
            assert sync_a is not None and sync_b is not None
            assert b.service.metrics is not None
            registry = b.service.metrics.registry
            assert registry.get_sample_value("resolverguard_sync_up") == 1
            with Asker([a, b]) as asker:
                time.sleep(0.3)
                redis.kill()
                assert eventually(lambda: not sync_a.connected.is_set() and not sync_b.connected.is_set(), 5)
                assert registry.get_sample_value("resolverguard_sync_up") == 0
                assert (registry.get_sample_value("resolverguard_sync_errors_total") or 0) >= 1
                infect(a)  # found while Redis is away: B cannot know yet...
                assert addresses(ask(b, C2, OTHER)) == [UPSTREAM_A]
                time.sleep(0.5)
                redis.start()  # ...until Redis is back (empty: A writes back what it found)
                assert eventually(lambda: sync_a.connected.is_set() and sync_b.connected.is_set(), 40)
                assert eventually(lambda: blocked(b, C2, OTHER), 5), (
                    "B never learned the C2 A found while Redis was down"
                )
                assert registry.get_sample_value("resolverguard_sync_up") == 1
                assert registry.get_sample_value("resolverguard_sync_adopted_total", {"kind": "c2"}) == 1
                time.sleep(0.3)
            assert asker.lost == [] and asker.answered == asker.asked and asker.asked > 50
            for err in (err_a, err_b):  # one line for the loss and one for the return, not one per retry
                lines = [x for x in err.getvalue().splitlines() if "redis sync" in x]
                assert sum("unreachable" in x for x in lines) == 1, lines
                assert sum("back: connected" in x for x in lines) == 1, lines


def test_a_hung_redis_is_a_lost_link_not_a_lost_answer(upstream: Upstream, tmp_path: Path) -> None:
    """Redis that stops answering without closing anything (SIGSTOP: a hung or swamped server):
    the call timeouts and the liveness ping notice it, no answer waits on it, and the fleet
    converges when it answers again (a C2 found meanwhile reaches the other instance)."""
    with run_redis() as redis:
        cfg = synced(upstream, redis)
        err_a, err_b = io.StringIO(), io.StringIO()
        with instance(cfg, tmp_path / "a.log", err_a) as a, instance(cfg, tmp_path / "b.log", err_b) as b:
            sync_a, sync_b = a.service.sync, b.service.sync
            assert sync_a is not None and sync_b is not None
            with Asker([a, b]) as asker:
                time.sleep(0.3)
                redis.pause()
                try:
                    infect(a)  # found while Redis hangs: its publish times out
                    assert eventually(lambda: not sync_a.connected.is_set() and not sync_b.connected.is_set(), 10)
                    assert addresses(ask(b, C2, OTHER)) == [UPSTREAM_A]
                    time.sleep(0.5)
                finally:
                    redis.resume()
                assert eventually(lambda: sync_a.connected.is_set() and sync_b.connected.is_set(), 40)
                assert eventually(lambda: blocked(b, C2, OTHER), 5), "B never learned the C2 A found while Redis hung"
                time.sleep(0.3)
            assert asker.lost == [] and asker.answered == asker.asked and asker.asked > 50
            for err in (err_a, err_b):  # one line for the loss (a timeout) and one for the return
                lines = [x for x in err.getvalue().splitlines() if "redis sync" in x]
                assert sum("unreachable" in x for x in lines) == 1, lines
                assert sum("back: connected" in x for x in lines) == 1, lines


def test_a_loss_first_seen_as_a_timeout_is_named_again_by_its_definite_cause(
    upstream: Upstream, tmp_path: Path
) -> None:
    """Redis hangs (a timeout: says little), then dies (refused: says more): one more line, once."""
    with run_redis() as redis:
        stderr = io.StringIO()
        with instance(synced(upstream, redis), tmp_path / "a.log", stderr) as a:
            sync = a.service.sync
            assert sync is not None
            redis.pause()
            assert eventually(lambda: not sync.connected.is_set(), 10)
            redis.kill()  # the stopped process dies: connections refused from now on
            assert eventually(lambda: "still cut off, now: ConnectionError" in stderr.getvalue(), 10), stderr.getvalue()
            time.sleep(2.5)  # more refused retries (backoff up to 2 s): no more lines
            lines = [x for x in stderr.getvalue().splitlines() if "redis sync" in x]
            assert sum("unreachable (TimeoutError" in x for x in lines) == 1, lines
            assert sum("still cut off" in x for x in lines) == 1, lines
            assert addresses(ask(a, "www.example.org", OTHER)) == [UPSTREAM_A]  # answering all along


def test_auth_a_wrong_password_is_a_lost_link_not_a_lost_answer(upstream: Upstream, tmp_path: Path) -> None:
    with run_redis(password="s3cret-fleet") as redis:
        cfg = synced(upstream, redis)
        with instance(cfg, tmp_path / "a.log") as a, instance(cfg, tmp_path / "b.log") as b:
            infect(a)
            assert eventually(lambda: blocked(b, C2, OTHER))
        wrong = replace(cfg, sync=replace(cfg.sync, redis=redis.url.replace("s3cret-fleet", "wrong")))
        stderr = io.StringIO()
        with run_resolver(wrong, tmp_path / "c.log", stderr=stderr) as c:
            assert addresses(ask(c, C2, OTHER)) == [UPSTREAM_A]  # answers on its own state
            assert eventually(lambda: "unreachable" in stderr.getvalue(), 5)
        assert "wrong" not in stderr.getvalue()  # the password is never printed


def test_the_redis_acl_user_docs_scale_out_gives_is_enough(upstream: Upstream, tmp_path: Path) -> None:
    """docs/scale-out.md's `ACL SETUSER` line, run as written (its prefix replaced by the test's):
    a C2 travels, a late instance catches up and a list is shared with nothing more."""
    import redis as redis_py

    doc = (Path(__file__).resolve().parent.parent / "docs" / "scale-out.md").read_text(encoding="utf-8")
    words = next(line.split() for line in doc.splitlines() if line.strip().startswith("ACL SETUSER"))
    words = [w.replace("acme:", "rg-test:").replace(">PASSWORD", ">fleet-pw") for w in words]
    with run_redis() as redis, serve_lists() as http:
        redis_py.Redis(port=redis.port).execute_command(*words)
        http.files["/deny.txt"] = Served(b"ads.example.com\n")
        user_url = f"redis://resolverguard:fleet-pw@127.0.0.1:{redis.port}/0"
        cfg = replace(synced(upstream, redis), sync=SyncConfig(redis=user_url, prefix="rg-test", timeout=0.3))
        cfg = replace(cfg, lists=ListsConfig(deny_files=(ListSource(url=http.url("/deny.txt")),)))
        subs = SubscriptionsConfig(refresh=3600.0, timeout=5.0)
        stderr = io.StringIO()
        a_cfg = replace(cfg, subscriptions=replace(subs, cache_dir=tmp_path / "a"))
        with instance(a_cfg, tmp_path / "a.log", stderr) as a:
            infect(a)
            assert eventually(lambda: denied(a) == 1, 20)
            b_cfg = replace(cfg, subscriptions=replace(subs, cache_dir=tmp_path / "b"))
            with instance(b_cfg, tmp_path / "b.log", stderr) as b:
                assert eventually(lambda: blocked(b, C2, OTHER))
                assert eventually(lambda: denied(b) == 1, 20)
        assert "unreachable" not in stderr.getvalue() and "NOPERM" not in stderr.getvalue()
        assert len(http.requests) == 1


def test_tls_with_a_private_ca(upstream: Upstream, tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    with run_redis(tls=certs) as redis:
        assert redis.url.startswith("rediss://")
        cfg = synced(upstream, redis)
        cfg = replace(cfg, sync=replace(cfg.sync, tls_ca=certs / "ca.pem"))
        with instance(cfg, tmp_path / "a.log") as a, instance(cfg, tmp_path / "b.log") as b:
            infect(a)
            assert eventually(lambda: blocked(b, C2, OTHER))
        untrusted = replace(cfg, sync=replace(cfg.sync, tls_ca=None))  # the system's CAs do not know ours
        stderr = io.StringIO()
        with run_resolver(untrusted, tmp_path / "c.log", stderr=stderr) as c:
            assert eventually(lambda: "unreachable" in stderr.getvalue(), 5)
            assert addresses(ask(c, C2, OTHER)) == [UPSTREAM_A]
            sync = c.service.sync
            assert sync is not None and not sync.connected.is_set()
            # the cause is named: at once, or, when a busy machine's first handshake timed out, by the
            # retry that met the certificate (the first failure ran out of time before getting that far)
            assert eventually(lambda: "certificate" in stderr.getvalue().lower(), 10), stderr.getvalue()


def test_foreign_messages_on_the_channel_are_ignored() -> None:
    for raw in (b"hello", b"[]", b'{"kind": "c2"}', b'{"kind": "x", "key": "a", "client": "b", "until": 1}'):
        with pytest.raises(ValueError):
            Finding.decode(raw)
    f = Finding("flag", "10.0.0.1", "10.0.0.1", 123.5, ("a.com", "b.com"), 2.5, "me")
    assert Finding.decode(f.encode()) == f


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("sync: {redis: http://127.0.0.1:6379}", "sync.redis: 'http://127.0.0.1:6379' is not a redis://"),
        ("sync: {redis: 'redis://127.0.0.1:99999'}", "sync.redis: 'redis://127.0.0.1:99999': the port"),
        ("sync: {redis: 'redis://:pw@127.0.0.1:6379/x'}", "sync.redis: 'redis://:***@127.0.0.1:6379/x': the path"),
        ("sync:\n  redis: redis://127.0.0.1\n  timeout: 0", "sync.timeout: must be between"),
        ("sync:\n  redis: redis://127.0.0.1\n  prefix: 'a*'", "sync.prefix: 'a*': a key prefix"),
        ("sync:\n  redis: redis://127.0.0.1\n  tls_ca: ca.pem", "sync.tls_ca: is only used with a rediss://"),
        ("sync:\n  redis: redis://127.0.0.1\n  password: x", "sync.password: unknown key"),
    ],
)
def test_sync_config_errors_name_file_line_and_key(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("upstreams: [127.0.0.1]\n" + text + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = err.value.location()
    assert message.startswith(f"{path}:"), message
    line = int(message.split(":")[1])
    assert 2 <= line <= 1 + text.count("\n") + 1
    assert problem in message, message


def test_sync_config_reads_urls_with_auth_and_tls(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("sync:\n  redis: rediss://fleet:pw@redis.example:6380/2\n  tls_ca: ca.pem\n  prefix: site-a\n")
    cfg = load_config(path).sync
    assert cfg.enabled and cfg.tls_ca == tmp_path / "ca.pem" and cfg.prefix == "site-a"
    assert cfg.redacted() == "rediss://fleet:***@redis.example:6380/2"
    short = tmp_path / "s.yaml"
    short.write_text("sync: redis://127.0.0.1:6379\n")
    assert load_config(short).sync.redis == "redis://127.0.0.1:6379"
    assert not Config().sync.enabled  # off by default


def test_stop_cancels_again_a_task_that_dropped_its_cancellation() -> None:
    """Before Python 3.12 `asyncio.wait_for` can drop a cancellation that arrives as its call ends
    (python/cpython#86296); CI saw shutdown hang on a sync task that then looped on. `stop` cancels
    again: the task ends and stop returns (without the second cancel this waits the full 30 s)."""
    sync = FleetSync(SyncConfig(redis=f"redis://127.0.0.1:{free_port()}/0", timeout=0.2))

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # dropped, as the race drops it
            await asyncio.sleep(30)
        await asyncio.sleep(30)  # on to its next wait

    async def run() -> tuple[bool, bool]:
        task = asyncio.ensure_future(stubborn())
        sync._tasks = [task]
        await asyncio.sleep(0)
        stopping = asyncio.ensure_future(sync.stop())
        done, _ = await asyncio.wait({stopping}, timeout=10)
        return stopping in done, task.cancelled()

    assert asyncio.run(run()) == (True, True)
