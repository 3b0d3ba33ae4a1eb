"""examples/dnsdist.conf in front of two real resolverguard instances: each client lands on one
instance, the instances see the real client (PROXY v2), the client watch works through it, and
when an instance dies its clients move to the other one while the other's clients stay put."""

from __future__ import annotations

import contextlib
import math
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest
from dnsfixtures import UPSTREAM_A, RunningResolver, Upstream, eventually, run_resolver, run_upstream
from fleetfixtures import dnsdist_config, need, run_dnsdist, run_redis
from test_watch import C2, INFECTED, OTHER, THIRD, addresses, config_for, find_c2_and_beacon

from resolverguard.config import Config, SyncConfig
from resolverguard.proxyheader import make_proxy_header, read_proxy_header

CLIENTS = [f"127.0.0.{i}" for i in range(10, 51)]  # an odd count: round robin would split each client


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with run_upstream(Upstream(tld_soa=True)) as up:
        yield up


def behind_dnsdist(up: Upstream) -> Config:
    return replace(config_for(up), proxy_protocol=("127.0.0.1/32",))  # dnsdist talks from 127.0.0.1


def ask(port: int, name: str, client: str, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=port, timeout=3, source=client)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=3, source=client)


def clients_seen(r: RunningResolver, prefix: str) -> dict[str, set[str]]:
    """client -> the query names it asked this instance (only names starting with `prefix`)."""
    out: dict[str, set[str]] = {}
    for line in r.log_lines():
        qname = str(line.get("qname", ""))
        if qname.startswith(prefix):
            out.setdefault(str(line["client"]), set()).add(qname)
    return out


def test_every_client_lands_on_one_instance_which_sees_the_real_client(upstream: Upstream, tmp_path: Path) -> None:
    cfg = behind_dnsdist(upstream)
    with (
        run_resolver(cfg, tmp_path / "a.log") as a,
        run_resolver(cfg, tmp_path / "b.log") as b,
        run_dnsdist([(a.host, a.port), (b.host, b.port)], tmp_path) as port,
    ):
        for n in range(4):
            for client in CLIENTS:
                reply = ask(port, f"q{n}-{client.replace('.', '-')}.example.org", client, tcp=n == 3)
                assert reply.rcode() == dns.rcode.NOERROR
                assert [rd.to_text() for rrset in reply.answer for rd in rrset] == [UPSTREAM_A]
        seen_a, seen_b = clients_seen(a, "q"), clients_seen(b, "q")
    assert set(seen_a) | set(seen_b) == set(CLIENTS)  # the real clients, not dnsdist's address
    assert not set(seen_a) & set(seen_b), "a client's queries were split between instances"
    assert all(len(names) == 4 for names in (seen_a | seen_b).values())  # UDP and TCP alike
    assert len(seen_a) >= 5 and len(seen_b) >= 5, (len(seen_a), len(seen_b))  # both instances share the load


def test_the_client_watch_works_through_dnsdist(upstream: Upstream, tmp_path: Path) -> None:
    cfg = behind_dnsdist(upstream)
    with (
        run_resolver(cfg, tmp_path / "a.log") as a,
        run_resolver(cfg, tmp_path / "b.log") as b,
        run_dnsdist([(a.host, a.port), (b.host, b.port)], tmp_path) as port,
    ):
        front = replace(a, port=port)  # the helper asks host:port: here dnsdist's
        find_c2_and_beacon(front, INFECTED)  # flags it only if both its NXDOMAIN and its beacon reached one instance
        flagged = eventually(
            lambda: [x for r in (a, b) for x in r.log_lines() if x.get("event") == "client_flagged"], 3, step=0.05
        )
        assert [x["client"] for x in flagged] == [INFECTED]  # the client itself, not dnsdist
        # the C2 is blocked for every client on the infected client's instance
        home = a if any(x.get("event") == "client_flagged" for x in a.log_lines()) else b
        others = [c for c in CLIENTS if c in clients_seen_after(port, home)]
        assert others, "no other client of the infected client's instance among CLIENTS"
        reply = ask(port, C2, others[0])
        assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["0.0.0.0"]


def clients_seen_after(port: int, home: RunningResolver) -> set[str]:
    """Asks one name per client through dnsdist and returns the clients that landed on `home`."""
    for client in CLIENTS:
        ask(port, f"probe-{client.replace('.', '-')}.example.org", client)
    return set(clients_seen(home, "probe-"))


def test_when_an_instance_dies_its_clients_move_and_the_others_stay(upstream: Upstream, tmp_path: Path) -> None:
    cfg = behind_dnsdist(upstream)
    with contextlib.ExitStack() as stack, run_resolver(cfg, tmp_path / "b.log") as b:
        a = stack.enter_context(run_resolver(cfg, tmp_path / "a.log"))
        with run_dnsdist([(a.host, a.port), (b.host, b.port)], tmp_path) as port:
            for client in CLIENTS:
                ask(port, f"before-{client.replace('.', '-')}.example.org", client)
            on_a, on_b = set(clients_seen(a, "before-")), set(clients_seen(b, "before-"))
            assert on_a and on_b
            stack.close()  # instance A stops: its sockets close, dnsdist's health check fails
            moved = next(iter(sorted(on_a)))
            deadline, answered = time.monotonic() + 15, False
            while not answered and time.monotonic() < deadline:
                with contextlib.suppress(dns.exception.Timeout):
                    answered = ask(port, "moved.example.org", moved).rcode() == dns.rcode.NOERROR
            assert answered, "dnsdist never moved A's clients to B"
            for client in CLIENTS:
                reply = ask(port, f"after-{client.replace('.', '-')}.example.org", client)
                assert reply.rcode() == dns.rcode.NOERROR
            assert set(clients_seen(b, "after-")) == set(CLIENTS)  # everyone on B now...
            assert set(clients_seen(b, "before-")) == on_b  # ...and B's own clients never moved


def wait_connected(r: RunningResolver) -> None:
    sync = r.service.sync
    assert sync is not None
    assert eventually(sync.connected.is_set), "an instance never connected to Redis"


def test_a_flagged_client_moved_by_dnsdist_stays_quarantined_through_redis(upstream: Upstream, tmp_path: Path) -> None:
    """docs/scale-out.md: when an instance dies its clients move, and a flag raised before the move
    and every likely C2 come with them through Redis (the new instance never saw the walk)."""
    cfg = replace(behind_dnsdist(upstream), sync=SyncConfig(redis="", prefix="dd-move", timeout=0.5))
    with run_redis() as redis, contextlib.ExitStack() as on_a, contextlib.ExitStack() as on_b:
        cfg = replace(cfg, sync=replace(cfg.sync, redis=redis.url))
        instances = {"a": on_a.enter_context(run_resolver(cfg, tmp_path / "a.log")),
                     "b": on_b.enter_context(run_resolver(cfg, tmp_path / "b.log"))}  # fmt: skip
        for r in instances.values():
            wait_connected(r)
        with run_dnsdist([(r.host, r.port) for r in instances.values()], tmp_path) as port:
            front = replace(instances["a"], port=port)
            find_c2_and_beacon(front, INFECTED)  # through dnsdist: the client's own instance flags it
            deadline, home = time.monotonic() + 5, ""
            while not home and time.monotonic() < deadline:
                home = next((k for k, r in instances.items() if any(
                    x.get("event") == "client_flagged" for x in r.log_lines())), "")  # fmt: skip
                time.sleep(0.05)
            assert home, "the infected client was not flagged through dnsdist"
            new_home = instances["b" if home == "a" else "a"]
            (on_a if home == "a" else on_b).close()  # its instance stops; dnsdist's health check fails
            deadline, moved = time.monotonic() + 15, False
            while not moved and time.monotonic() < deadline:  # until dnsdist sends the client elsewhere
                with contextlib.suppress(dns.exception.Timeout):
                    moved = ask(port, "after-move.example.org", INFECTED).rcode() == dns.rcode.NOERROR
            assert moved, "dnsdist never moved the infected client"
            assert addresses(ask(port, "anotherfreshsite.org", INFECTED)) == ["0.0.0.0"]  # still quarantined
            assert addresses(ask(port, C2, THIRD)) == ["0.0.0.0"]  # the C2 blocked for everyone there too
            assert addresses(ask(port, "anotherfreshsite.org", THIRD)) == [UPSTREAM_A]  # only the flagged client
            time.sleep(0.6)  # the query log is written at least every 0.5 s
            answered = {str(x.get("client")) for x in new_home.log_lines() if x.get("qname") == "anotherfreshsite.org"}
            assert answered == {INFECTED, THIRD}  # the instance it moved to answered (and knew only via Redis)
            watch = new_home.service.pipeline.watch
            assert watch is not None and watch.c2_found == 0 and INFECTED in watch.flagged


def test_a_proxy_header_names_the_client_only_from_a_listed_proxy(upstream: Upstream, tmp_path: Path) -> None:
    with run_resolver(behind_dnsdist(upstream), tmp_path / "a.log") as r:
        query = dns.message.make_query("hdr.example.org", "A").to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(3)
            s.sendto(make_proxy_header(("10.9.8.7", 4242), (r.host, r.port)) + query, (r.host, r.port))
            assert dns.message.from_wire(s.recvfrom(4096)[0]).rcode() == dns.rcode.NOERROR
            s.sendto(query, (r.host, r.port))  # from the proxy without a header: dropped, not answered
            with pytest.raises(TimeoutError):
                s.settimeout(0.5)
                s.recvfrom(4096)
        assert r.service.server.proxy_errors == 1
        # another address is not a proxy: a header from it is not believed (it is not even DNS)
        spoof = make_proxy_header(("192.0.2.99", 1), (r.host, r.port)) + query
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((OTHER, 0))
            s.settimeout(0.5)
            s.sendto(spoof, (r.host, r.port))
            with contextlib.suppress(TimeoutError):
                s.recvfrom(4096)
        clients = {x.get("client") for x in r.log_lines() if x.get("qname") == "hdr.example.org"}
    assert clients == {"10.9.8.7"}


def test_proxy_headers_round_trip_and_malformed_ones_are_refused() -> None:
    for client, server in ((("192.0.2.1", 53000), ("10.0.0.1", 53)), (("2001:db8::1", 1), ("2001:db8::2", 53))):
        data = make_proxy_header(client, server) + b"dns"
        header = read_proxy_header(data)
        assert header is not None and header.client == client and data[header.size :] == b"dns"
    good = make_proxy_header(("192.0.2.1", 1), ("192.0.2.2", 2))
    assert read_proxy_header(good[:20]) is None  # cut short
    assert read_proxy_header(b"x" + good[1:]) is None  # no signature
    assert read_proxy_header(good[:12] + b"\x11" + good[13:]) is None  # version 1 in the v2 slot
    local = good[:12] + b"\x20" + good[13:]
    assert read_proxy_header(local) is not None and read_proxy_header(local).client is None  # type: ignore[union-attr]


def test_the_example_config_is_what_the_tests_run() -> None:
    text = dnsdist_config(5300, [("127.0.0.1", 1), ("127.0.0.1", 2)])
    assert text.count("newServer(") == 2 and "useProxyProtocol=true" in text and "clientSticky" in text


def test_a_lans_clients_spread_evenly_over_three_instances(upstream: Upstream, tmp_path: Path) -> None:
    """Addresses of one /24, differing only in the last octet: the hash must still rank the instances
    differently for each (FNV-1a without a finalizer put 187 of these 254 clients on one instance)."""
    lan = [f"127.0.10.{i}" for i in range(1, 255)]
    cfg = behind_dnsdist(upstream)
    with (
        run_resolver(cfg, tmp_path / "a.log") as a,
        run_resolver(cfg, tmp_path / "b.log") as b,
        run_resolver(cfg, tmp_path / "c.log") as c,
        run_dnsdist([(r.host, r.port) for r in (a, b, c)], tmp_path) as port,
    ):
        time.sleep(2.5)  # every instance marked up by the health checks (rise=2, one a second)
        for client in lan:
            assert ask(port, f"lan-{client.replace('.', '-')}.example.org", client).rcode() == dns.rcode.NOERROR
        counts = [len(clients_seen(r, "lan-")) for r in (a, b, c)]
    assert sum(counts) == len(lan)
    mean, sd = len(lan) / 3, math.sqrt(len(lan) * (1 / 3) * (2 / 3))  # a fair hash: binomial counts
    assert all(abs(n - mean) <= 3 * sd for n in counts), counts


def reference_hash(text: str) -> int:
    """FNV-1a (32 bits) then murmur3's 32-bit finalizer: what clientHash in examples/dnsdist.conf computes."""
    h = 2166136261
    for byte in text.encode():
        h = ((h ^ byte) * 16777619) % 2**32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) % 2**32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) % 2**32
    return h ^ (h >> 16)


@pytest.mark.parametrize("lua", ["luajit bit library", "plain lua arithmetic"])
def test_the_client_hash_in_lua_is_the_reference_hash(tmp_path: Path, lua: str) -> None:
    """dnsdist runs the example's Lua at --check-config; printed hashes must match, with LuaJIT's bit
    library and without it (the plain-arithmetic XOR another dnsdist build would use)."""
    texts = ["rg0|127.0.1.1", "rg1|127.0.10.254", "", "rg2|2001:db8::1", "rg10|192.168.1.200"]
    prints = "".join(f'print(string.format("hash %.0f", clientHash("{t}")))\n' for t in texts)
    conf = tmp_path / "hash.conf"
    plain = "bit = nil\n" if lua.startswith("plain") else ""
    conf.write_text(plain + dnsdist_config(5300, [("127.0.0.1", 1)]) + "\n" + prints, encoding="utf-8")
    out = subprocess.run([need("dnsdist"), "--check-config", "-C", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    got = [int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("hash ")]
    assert got == [reference_hash(t) for t in texts]
