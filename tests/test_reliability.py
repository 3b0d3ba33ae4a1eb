"""Reliability and security over real sockets: ACL, rate limit, load shedding, reload, shutdown,
query-log durability and privacy."""

from __future__ import annotations

import json
import signal
import socket
import time
from dataclasses import replace
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from dnsfixtures import UPSTREAM_A, Upstream, eventually, free_port, run_resolver, run_upstream, start_serving, wait_for

from resolverguard.config import (
    AccessConfig,
    ClientPrivacy,
    Config,
    Endpoint,
    Limits,
    QueryLogConfig,
    RateLimitConfig,
)
from resolverguard.steps.querylog import QueryLog, client_for_log

ROOT = Path(__file__).resolve().parent.parent


def config_for(up: Upstream, **changes) -> Config:
    return replace(Config(upstreams=(Endpoint("127.0.0.1", up.port),), upstream_timeout=0.5), **changes)


def ask_from(source: str, r, name: str = "www.example.com", timeout: float = 2.0) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, "A"), r.host, port=r.port, timeout=timeout, source=source)


@pytest.fixture
def upstream():
    with run_upstream(Upstream()) as up:
        yield up


def test_clients_outside_the_acl_are_refused_or_dropped(upstream, tmp_path: Path) -> None:
    cfg = config_for(upstream, access=AccessConfig(allow_clients=("127.0.0.1/32",)))
    with run_resolver(cfg, tmp_path / "q.log") as r:
        assert [rd.to_text() for rr in ask_from("127.0.0.1", r).answer for rd in rr] == [UPSTREAM_A]
        refused = ask_from("127.0.0.2", r)
    assert refused.rcode() == dns.rcode.REFUSED and not refused.answer
    assert len(upstream.queries) == 1  # the refused query never reached the upstream
    assert len(r.log_lines()) == 1  # and is not in the query log (a flood must not fill the disk)

    cfg = config_for(upstream, access=AccessConfig(allow_clients=("127.0.0.1/32",), refused="drop"))
    with run_resolver(cfg, tmp_path / "q2.log") as r, pytest.raises(dns.exception.Timeout):
        ask_from("127.0.0.2", r, timeout=0.5)


def test_default_acl_admits_loopback_and_private_ranges_only() -> None:
    from resolverguard.steps.acl import ClientAcl

    acl = ClientAcl(AccessConfig().allow_clients)
    for ok in ("127.0.0.1", "127.0.0.9", "::1", "10.1.2.3", "192.168.1.20", "172.16.5.5", "fd00::1", "::ffff:10.0.0.1"):
        assert acl.allows(ok), ok
    for bad in ("8.8.8.8", "1.1.1.1", "2001:db8::1", "172.32.0.1", "not-an-ip"):
        assert not acl.allows(bad), bad


def test_open_acl_needs_explicit_opt_in(tmp_path: Path) -> None:
    from resolverguard.config import load_config
    from resolverguard.errors import ConfigError

    path = tmp_path / "p.yaml"
    path.write_text("access:\n  allow_clients: [0.0.0.0/0]\n")
    with pytest.raises(ConfigError, match="open_resolver") as info:
        load_config(path)
    assert info.value.line == 2 and info.value.key == "access.allow_clients"
    path.write_text("access:\n  allow_clients: [0.0.0.0/0, '::/0']\n  open_resolver: true\n")
    assert load_config(path).access.open_resolver


def test_rate_limit_is_per_client(upstream, tmp_path: Path) -> None:
    cfg = config_for(upstream, rate_limit=RateLimitConfig(qps=2, burst=5, over_limit="refuse"))
    with run_resolver(cfg, tmp_path / "q.log") as r:
        flood = [ask_from("127.0.0.3", r).rcode() for _ in range(20)]
        polite = ask_from("127.0.0.4", r)
    assert flood[:5] == [dns.rcode.NOERROR] * 5
    assert flood.count(dns.rcode.REFUSED) >= 13  # 20 in well under 3 s at 2 qps after a burst of 5
    assert polite.rcode() == dns.rcode.NOERROR


def test_inflight_bound_sheds_with_servfail_instead_of_queueing(tmp_path: Path) -> None:
    with run_upstream(Upstream(silent=True)) as dead:
        cfg = replace(config_for(dead, limits=Limits(max_inflight=4)), upstream_timeout=2.0)
        with run_resolver(cfg, tmp_path / "q.log") as r:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(1.0)
            for i in range(20):
                sock.sendto(dns.message.make_query(f"h{i}.example.com", "A").to_wire(), (r.host, r.port))
            fast = []
            started = time.monotonic()
            while len(fast) < 16 and time.monotonic() - started < 1.0:
                fast.append(dns.message.from_wire(sock.recv(65535)).rcode())
            sock.close()
    assert fast == [dns.rcode.SERVFAIL] * 16  # shed at once; 4 still wait on the dead upstream


def test_stop_waits_for_the_queries_in_flight_and_no_longer(tmp_path: Path) -> None:
    """UDP queries waiting on the upstream are not tasks (server.Resumed): stop still waits for
    them (their log lines are written), and returns once they are done, not after the whole grace."""
    with run_upstream(Upstream(delay=0.5)) as slow:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with run_resolver(config_for(slow), tmp_path / "q.log") as r:
            for i in range(3):
                sock.sendto(dns.message.make_query(f"late{i}.example.com", "A").to_wire(), (r.host, r.port))
            eventually(lambda: len(slow.queries) >= 3, 5, step=0.01)  # all three are in flight
            started = time.monotonic()
        took = time.monotonic() - started
        sock.close()
    logged = [json.loads(line)["qname"] for line in (tmp_path / "q.log").read_text().splitlines()]
    assert sorted(logged) == [f"late{i}.example.com" for i in range(3)]
    assert 0.2 < took < 3.0  # the grace is 5 s


def test_tcp_connection_bound(upstream, tmp_path: Path) -> None:
    cfg = config_for(upstream, limits=Limits(max_tcp_connections=2, tcp_idle_timeout=5))
    with run_resolver(cfg, tmp_path / "q.log") as r:
        held = [socket.create_connection((r.host, r.port)) for _ in range(2)]
        time.sleep(0.2)
        extra = socket.create_connection((r.host, r.port))
        extra.settimeout(2)
        wire = dns.message.make_query("www.example.com", "A").to_wire()
        try:
            extra.sendall(len(wire).to_bytes(2, "big") + wire)
            assert extra.recv(2) == b""  # closed by the server
        except ConnectionResetError:
            pass  # closed by the server before our query arrived
        for s in (*held, extra):
            s.close()
        time.sleep(0.2)
        reply = dns.query.tcp(dns.message.make_query("www.example.com", "A"), r.host, port=r.port, timeout=3)
    assert reply.rcode() == dns.rcode.NOERROR


def test_query_log_rotates_by_size(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    log = QueryLog(QueryLogConfig(path=str(path), max_bytes=1000, keep=2))
    for i in range(100):
        log.write({"i": i, "pad": "x" * 40})
    log.close()
    files = [path, Path(f"{path}.1"), Path(f"{path}.2")]
    assert all(f.exists() for f in files) and not Path(f"{path}.3").exists()
    numbers = [json.loads(line)["i"] for f in reversed(files) for line in f.read_text().splitlines()]
    assert numbers == sorted(numbers) and numbers[-1] == 99 and log.written == 100 and log.lost == 0


def test_unwritable_query_log_does_not_stop_dns(upstream, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    cfg = config_for(upstream)
    with run_resolver(cfg, blocker / "sub" / "q.log") as r:
        reply = ask_from("127.0.0.1", r)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "DNS service continues" in capsys.readouterr().err


def test_client_privacy() -> None:
    assert client_for_log("192.168.1.77", ClientPrivacy.TRUNCATE) == "192.168.1.0/24"
    assert client_for_log("2001:db8:1:2::5", ClientPrivacy.TRUNCATE) == "2001:db8:1::/48"
    assert client_for_log("192.168.1.77", ClientPrivacy.OMIT) is None
    assert client_for_log("192.168.1.77", ClientPrivacy.FULL) == "192.168.1.77"


def a_records(name: str, port: int) -> list[str]:
    reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)
    return [rd.to_text() for rr in reply.answer for rd in rr]


def test_sighup_reload_applies_a_valid_policy_and_keeps_the_old_on_a_broken_one(upstream, tmp_path: Path) -> None:
    port, policy = free_port(), tmp_path / "policy.yaml"
    base = f"upstreams: ['127.0.0.1:{upstream.port}']\nquery_log: off\n"
    policy.write_text(base)
    proc = start_serving(policy, port)
    try:
        assert a_records("ads.example.org", port) == [UPSTREAM_A]
        policy.write_text(base + "lists:\n  deny: [ads.example.org]\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(proc, "reloaded")
        assert a_records("ads.example.org", port) == ["0.0.0.0"]
        policy.write_text(base + "lists:\n  deny: [ads.example.org]\nmode: enforc\n")
        proc.send_signal(signal.SIGHUP)
        line = wait_for(proc, "reload rejected")
        assert f"{policy}:5: mode:" in line
        assert a_records("ads.example.org", port) == ["0.0.0.0"]  # the old policy is still in force
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_sigterm_under_load_loses_no_log_line(tmp_path: Path) -> None:
    """Every query the resolver answered before it stopped has exactly one line in the log."""
    import concurrent.futures
    import threading

    port, policy, log = free_port(), tmp_path / "policy.yaml", tmp_path / "q.jsonl"
    stopped = threading.Event()
    with run_upstream(Upstream()) as up:
        policy.write_text(f"upstreams: ['127.0.0.1:{up.port}']\nquery_log: {log}\nrate_limit:\n  qps: 0\n")
        proc = start_serving(policy, port)

        def client(worker: int) -> tuple[int, int]:
            sent = answered = 0
            while not stopped.is_set() and sent < 2000:
                query = dns.message.make_query(f"w{worker}-{sent}.example.com", "A")
                sent += 1
                try:
                    dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
                    answered += 1
                except Exception:  # noqa: BLE001 - the server stopping mid-run is the point of this test
                    pass
            return sent, answered

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(client, w) for w in range(8)]
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            stopped.set()
            results = [f.result() for f in futures]
    sent, answered = sum(r[0] for r in results), sum(r[1] for r in results)
    logged = [json.loads(line)["qname"] for line in log.read_text().splitlines()]
    assert 0 < answered < sent  # the stop really happened under load
    assert len(logged) == len(set(logged))  # never two lines for one query
    assert len(logged) >= answered  # every answered query was logged (a reply can still be lost on the wire)
