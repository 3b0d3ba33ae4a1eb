"""DNS over TLS and over HTTPS upstreams, against Debian's Unbound serving both on 127.0.0.1 with a
certificate these tests make (tests/tlsfixtures.py), and dnspython asking resolverguard."""

from __future__ import annotations

import asyncio
import io
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest
from dnsfixtures import UPSTREAM_A, Upstream, run_resolver, run_upstream
from dnslib import RR, DNSRecord
from tlsfixtures import Certificates, EncryptedServer, make_certificates, run_unbound_tls

from resolverguard.config import (
    Config,
    EncryptedUpstream,
    EncryptedUpstreamsConfig,
    Endpoint,
    load_config,
    parse_upstream,
)
from resolverguard.errors import ConfigError
from resolverguard.steps.encrypted import DohClient, DotClient, padded
from resolverguard.steps.upstream import UpstreamForwarder
from resolverguard.wire import parse_query


@dataclass(frozen=True)
class Servers:
    upstream: Upstream
    unbound: EncryptedServer
    certs: Certificates
    other_ca: Certificates  # a CA the client does not trust, with a certificate for the same name


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    work = tmp_path_factory.mktemp("tls")
    certs, other = make_certificates(work), make_certificates(work, tag="other")
    with run_upstream(Upstream()) as up, run_unbound_tls(work, certs, up.port) as unbound:
        yield Servers(up, unbound, certs, other)


def dot(s: Servers, name: str = "dns.test") -> EncryptedUpstream:
    return EncryptedUpstream("tls", name, "127.0.0.1", s.unbound.dot_port)


def doh(s: Servers, name: str = "dns.test") -> EncryptedUpstream:
    return EncryptedUpstream("https", name, "127.0.0.1", s.unbound.doh_port, "/dns-query")


def config(upstreams: tuple[EncryptedUpstream | Endpoint, ...], ca: Path, **encrypted: object) -> Config:
    settings = EncryptedUpstreamsConfig(ca_file=ca, **encrypted)  # type: ignore[arg-type]
    return Config(upstreams=upstreams, upstream_timeout=1.0, encrypted_upstreams=settings, scoring=False)


def ask(port: int, name: str, use_edns: bool = True, timeout: float = 10.0) -> dns.message.Message:
    query = dns.message.make_query(name, "A", use_edns=0 if use_edns else False)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout)


def client_of(resolver_cfg: Config, running: object) -> DotClient | DohClient:
    forwarder = running.service.pipeline.forwarder  # type: ignore[attr-defined]
    return forwarder._clients[resolver_cfg.upstreams[0]]  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["tls", "https-post", "https-get"])
def test_answers_come_over_one_reused_connection(servers: Servers, tmp_path: Path, kind: str) -> None:
    upstream = dot(servers) if kind == "tls" else doh(servers)
    cfg = config((upstream,), servers.certs.ca, doh_method=kind.removeprefix("https-") if "-" in kind else "post")
    with run_resolver(cfg, tmp_path / "q.jsonl") as r:
        names = [f"{kind}-{i}.example.com" for i in range(20)]
        answers = [ask(r.port, n) for n in names]
        client = client_of(cfg, r)
    for name, answer in zip(names, answers, strict=True):
        assert answer.rcode() == dns.rcode.NOERROR
        assert [rr.to_text() for rr in answer.answer[0]] == [UPSTREAM_A]
        assert f"{name}." in servers.upstream.queries  # it went through Unbound to the stub upstream
    assert client.connects == 1  # 20 queries, one TCP (and TLS) handshake
    if isinstance(client, DohClient):
        assert client.http_version == "HTTP/2"


def test_concurrent_queries_are_pipelined_on_one_tls_connection(servers: Servers) -> None:
    async def run() -> tuple[list[bytes], int]:
        forwarder = UpstreamForwarder(
            (dot(servers),), 2.0, encrypted=EncryptedUpstreamsConfig(ca_file=servers.certs.ca)
        )
        packets = [DNSRecord.question(f"pipe{i}.example.com").pack() for i in range(64)]
        answers = await asyncio.gather(*(forwarder.resolve(p, None, parse_query(p)) for p in packets))
        connects = forwarder._clients[dot(servers)].connects  # type: ignore[union-attr]
        forwarder.close()
        return answers, connects

    answers, connects = asyncio.run(run())
    for i, answer in enumerate(answers):  # each waiter got the answer to its own question
        assert str(DNSRecord.parse(answer).q.qname) == f"pipe{i}.example.com."
    assert connects == 1


def test_an_idle_connection_is_closed_and_the_next_query_opens_another(servers: Servers) -> None:
    async def run() -> tuple[int, int, bool]:
        settings = EncryptedUpstreamsConfig(ca_file=servers.certs.ca, idle_timeout=1.0)
        forwarder = UpstreamForwarder((dot(servers),), 2.0, encrypted=settings)
        client = forwarder._clients.setdefault(dot(servers), forwarder._client(dot(servers)))
        await forwarder.resolve(DNSRecord.question("idle1.example.com").pack())
        first = client.connects  # type: ignore[union-attr]
        await asyncio.sleep(1.3)
        closed = client.connection is not None and client.connection.closed  # type: ignore[union-attr]
        await forwarder.resolve(DNSRecord.question("idle2.example.com").pack())
        forwarder.close()
        return first, client.connects, closed  # type: ignore[union-attr]

    first, then, closed = asyncio.run(run())
    assert (first, then, closed) == (1, 2, True)


def test_a_name_without_address_is_found_through_the_bootstrap(servers: Servers, tmp_path: Path) -> None:
    """`tls://dns.test:port` and `https://dns.test:port/dns-query`: the address comes from the
    plain bootstrap resolver (Unbound's own plain port answers dns.test with 127.0.0.1)."""
    upstreams = (
        EncryptedUpstream("tls", "dns.test", None, servers.unbound.dot_port),
        EncryptedUpstream("https", "dns.test", None, servers.unbound.doh_port, "/dns-query"),
    )
    bootstrap = (Endpoint("127.0.0.1", servers.unbound.plain_port),)
    for upstream in upstreams:
        cfg = config((upstream,), servers.certs.ca, bootstrap=bootstrap)
        with run_resolver(cfg, tmp_path / "q.jsonl") as r:
            answer = ask(r.port, f"boot-{upstream.scheme}.example.com")
        assert [rr.to_text() for rr in answer.answer[0]] == [UPSTREAM_A]


@pytest.mark.parametrize("scheme", ["tls", "https"])
@pytest.mark.parametrize("fault", ["wrong-name", "untrusted-ca"])
def test_a_bad_certificate_is_refused_with_a_clear_log_line(
    servers: Servers, tmp_path: Path, scheme: str, fault: str
) -> None:
    make = dot if scheme == "tls" else doh
    upstream = make(servers, "wrong.test") if fault == "wrong-name" else make(servers)
    ca = servers.other_ca.ca if fault == "untrusted-ca" else servers.certs.ca
    before = len(servers.upstream.queries)
    stderr = io.StringIO()
    with run_resolver(config((upstream,), ca), tmp_path / "q.jsonl", stderr=stderr) as r:
        answer = ask(r.port, f"refused-{scheme}-{fault}.example.com")
        logged = r.log_lines()
    assert answer.rcode() == dns.rcode.SERVFAIL
    assert len(servers.upstream.queries) == before  # the query never left over the refused connection
    said = [line for line in stderr.getvalue().splitlines() if "certificate" in line]
    assert said, stderr.getvalue()
    why = "Hostname mismatch" if fault == "wrong-name" else "unable to get local issuer certificate"
    assert why in said[0] and str(upstream) in said[0]
    assert "certificate" in str(logged[-1].get("error"))


def blackhole() -> socket.socket:
    """A TCP port that completes the TCP handshake (in the kernel's backlog) and then says nothing:
    a TLS upstream that is dead in the worst way, one that never refuses."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@pytest.mark.parametrize("scheme", ["tls", "https"])
def test_a_dead_tls_upstream_fails_over_then_is_tried_last(servers: Servers, tmp_path: Path, scheme: str) -> None:
    with blackhole() as hole:
        dead = EncryptedUpstream(
            scheme, "dns.test", "127.0.0.1", hole.getsockname()[1], "/dns-query" * (scheme == "https")
        )
        alive = dot(servers) if scheme == "tls" else doh(servers)
        with run_resolver(config((dead, alive), servers.certs.ca), tmp_path / "q.jsonl") as r:
            started = time.monotonic()
            first = ask(r.port, f"dead1-{scheme}.example.com")
            first_took = time.monotonic() - started
            started = time.monotonic()
            second = ask(r.port, f"dead2-{scheme}.example.com")
            second_took = time.monotonic() - started
    assert first.rcode() == second.rcode() == dns.rcode.NOERROR
    assert 0.9 < first_took < 5  # one upstream timeout (1 s), then the live upstream
    assert second_took < first_took / 2  # the dead one is now tried last (UpstreamHealth)


@pytest.mark.parametrize("scheme", ["tls", "https"])
def test_a_dead_tls_upstream_alone_gives_servfail_in_time(servers: Servers, tmp_path: Path, scheme: str) -> None:
    with blackhole() as hole:
        dead = EncryptedUpstream(
            scheme, "dns.test", "127.0.0.1", hole.getsockname()[1], "/dns-query" * (scheme == "https")
        )
        stderr = io.StringIO()
        with run_resolver(config((dead,), servers.certs.ca), tmp_path / "q.jsonl", stderr=stderr) as r:
            took = []
            for i in range(2):
                started = time.monotonic()
                answer = ask(r.port, f"hang{i}-{scheme}.example.com")
                took.append(time.monotonic() - started)
                assert answer.rcode() == dns.rcode.SERVFAIL
                assert "TimeoutError" in str(r.log_lines()[-1].get("error"))  # the query's or the handshake's
        said = [line for line in stderr.getvalue().splitlines() if str(dead) in line]
        assert said == [f"resolverguard: upstream {dead}: no answer in 1 s"]  # said once, not per query
    # The first waits out the 1 s upstream timeout; the second may join a handshake already under
    # way (and fail sooner); neither hangs.
    assert 0.9 < took[0] < 3 and took[1] < 3, took


def test_a_client_without_edns_gets_no_opt_from_a_padded_exchange(servers: Servers, tmp_path: Path) -> None:
    with run_resolver(config((dot(servers),), servers.certs.ca), tmp_path / "q.jsonl") as r:
        plain = ask(r.port, "noedns.example.com", use_edns=False)
    assert plain.edns < 0 and plain.rcode() == dns.rcode.NOERROR  # RFC 6891 7: no OPT to a client that sent none


def test_queries_are_padded_to_a_multiple_of_128_octets() -> None:
    for name in ("a.io", "www.example.com", "x" * 60 + ".example.org"):
        with_edns = dns.message.make_query(name, "AAAA", use_edns=0, want_dnssec=True).to_wire()
        without = dns.message.make_query(name, "A", use_edns=False).to_wire()
        for query, add in ((with_edns, False), (without, True)):
            out = padded(query, add)
            assert len(out) % 128 == 0 and len(out) > len(query)
            parsed = dns.message.from_wire(out)
            assert parsed.question[0].name.to_text() == name + "."
            assert any(o.otype == dns.edns.OptionType.PADDING for o in parsed.options)
            assert padded(out, add) == out  # padded once only
        assert padded(without, False) == without  # no OPT where the caller cannot strip it from the answer


def test_encrypted_upstreams_are_read_from_the_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "upstreams:\n"
        "  - 192.0.2.53\n"
        "  - tls://dns.quad9.net@9.9.9.9\n"
        "  - https://dns.quad9.net/dns-query\n"
        "encrypted_upstreams:\n"
        "  bootstrap: [9.9.9.9]\n"
        "  doh_method: get\n"
    )
    cfg = load_config(policy)
    assert cfg.upstreams == (
        Endpoint("192.0.2.53", 53),
        EncryptedUpstream("tls", "dns.quad9.net", "9.9.9.9", 853),
        EncryptedUpstream("https", "dns.quad9.net", None, 443, "/dns-query"),
    )
    assert cfg.encrypted_upstreams.doh_method == "get"
    assert [str(u) for u in cfg.upstreams[1:]] == ["tls://dns.quad9.net@9.9.9.9", "https://dns.quad9.net/dns-query"]


@pytest.mark.parametrize(
    ("text", "line", "key", "problem"),
    [
        ("upstreams:\n  - 9.9.9.9\n  - tls://dns.quad9.net\n", 3, "upstreams[1]", "needs an address"),
        ("upstreams:\n  - tls://dns.quad9.net@quad9\n", 2, "upstreams[0]", "must be an IP address"),
        ("upstreams:\n  - tls://dns.quad9.net/dns-query\n", 2, "upstreams[0]", "has no path"),
        (
            "upstreams: [9.9.9.9]\nencrypted_upstreams:\n  doh_method: put\n",
            3,
            "encrypted_upstreams.doh_method",
            "one of",
        ),
        ("encrypted_upstreams:\n  ca_file: missing.pem\n", 2, "encrypted_upstreams.ca_file", "no such file"),
    ],
)
def test_bad_encrypted_upstreams_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, problem: str
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(policy)
    message = str(caught.value)
    assert message.startswith(f"{policy}:{line}: {key}: ") and problem in message, message


def test_the_command_line_takes_encrypted_upstreams_too() -> None:
    cfg = Config().with_overrides(None, ["tls://dns.test@127.0.0.1:8853"])
    assert cfg.upstreams == (parse_upstream("tls://dns.test@127.0.0.1:8853"),)
    with pytest.raises(ConfigError, match="needs an address"):
        Config().with_overrides(None, ["https://dns.test/dns-query"])  # nothing to find dns.test with
    with_bootstrap = replace(
        Config(), encrypted_upstreams=EncryptedUpstreamsConfig(bootstrap=(Endpoint("9.9.9.9", 53),))
    )
    assert with_bootstrap.with_overrides(None, ["https://dns.test/dns-query"]).upstreams[0].address is None  # type: ignore[union-attr]


def test_a_query_the_server_drops_with_its_connection_is_sent_again_on_a_new_one(servers: Servers) -> None:
    """A DoT server of our own that answers one query per connection and closes the connection on
    the next one unanswered (a server's idle close racing our query): the query is sent again on
    a fresh connection, once, and answered."""

    async def run() -> tuple[list[str], int, int]:
        accepted = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            for answered in range(2):
                size = int.from_bytes(await reader.readexactly(2), "big")
                query = DNSRecord.parse(await reader.readexactly(size))
                if answered:  # the second query on this connection: closed unanswered
                    break
                reply = query.reply()
                reply.add_answer(*RR.fromZone(f"{query.q.qname} 60 A {UPSTREAM_A}"))
                wire = reply.pack()
                writer.write(len(wire).to_bytes(2, "big") + wire)
            writer.close()

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(servers.certs.cert, servers.certs.key)
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        upstream = EncryptedUpstream("tls", "dns.test", "127.0.0.1", port)
        forwarder = UpstreamForwarder((upstream,), 2.0, encrypted=EncryptedUpstreamsConfig(ca_file=servers.certs.ca))
        names = []
        for i in range(3):
            answer = DNSRecord.parse(await forwarder.resolve(DNSRecord.question(f"drop{i}.example.com").pack()))
            names.append(str(answer.rr[0].rdata))
        connects = forwarder._clients[upstream].connects  # type: ignore[union-attr]
        forwarder.close()
        server.close()
        return names, connects, accepted

    names, connects, accepted = asyncio.run(run())
    assert names == [UPSTREAM_A] * 3
    assert connects == accepted == 3  # each later query found its connection closed and opened one more
