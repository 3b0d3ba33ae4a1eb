"""End-to-end behaviour of the resolver over real UDP/TCP sockets with dnspython as the client."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from dnsfixtures import UPSTREAM_A, Upstream, run_resolver, run_upstream

from resolverguard.config import Config, Endpoint, ListsConfig
from resolverguard.verdicts import Mode, OnModelError


def ask(resolver, name: str, qtype: str = "A", tcp: bool = False, timeout: float = 5.0, **kw) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, **kw)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, resolver.host, port=resolver.port, timeout=timeout)


def addresses(reply: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in reply.answer for rd in rrset]


@pytest.fixture
def upstream():
    with run_upstream(Upstream()) as up:
        yield up


def config_for(*ups: Upstream, **changes) -> Config:
    cfg = Config(upstreams=tuple(Endpoint("127.0.0.1", u.port) for u in ups), upstream_timeout=0.5)
    return replace(cfg, **changes)


@pytest.mark.parametrize("tcp", [False, True])
def test_benign_name_passes_with_upstream_answer(upstream, tmp_path: Path, tcp: bool) -> None:
    with run_resolver(config_for(upstream), tmp_path / "q.log") as r:
        reply = ask(r, "www.example.com", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == [UPSTREAM_A]
    (line,) = r.log_lines()
    assert line["action"] == "pass" and line["reason"] == "model" and line["scored"] == "example"
    assert line["upstream_rcode"] == "NOERROR" and line["transport"] == ("tcp" if tcp else "udp")
    assert line["score"] < 0.5 and line["latency_ms"] > 0


@pytest.mark.parametrize(("qtype", "expected"), [("A", ["0.0.0.0"]), ("AAAA", ["::"]), ("MX", [])])
def test_high_scoring_name_is_sinkholed(upstream, tmp_path: Path, qtype: str, expected: list[str]) -> None:
    with run_resolver(config_for(upstream), tmp_path / "q.log") as r:
        reply = ask(r, "xkq3vbh7tz.com", qtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == expected
    if not expected:  # NODATA carries a SOA so stubs cache the negative answer
        assert reply.authority and reply.authority[0].rdtype == dns.rdatatype.SOA
    assert upstream.queries == []  # a sinkholed name never leaves the network
    (line,) = r.log_lines()
    assert (line["action"], line["reason"], line["scored"]) == ("sinkhole", "model", "xkq3vbh7tz")


def test_deny_list_sinkholes_subdomains_with_configured_address(upstream, tmp_path: Path) -> None:
    cfg = config_for(upstream, lists=ListsConfig(deny=("ads.example.org",)))
    cfg = replace(cfg, sinkhole=replace(cfg.sinkhole, ipv4="10.9.9.9", ipv6="fd00::9", ttl=42))
    with run_resolver(cfg, tmp_path / "q.log") as r:
        a, aaaa, mx = (
            ask(r, "x.ads.example.org", "A"),
            ask(r, "ads.example.org", "AAAA"),
            ask(r, "ads.example.org", "MX"),
        )
        other = ask(r, "example.org", "A")
    assert addresses(a) == ["10.9.9.9"] and a.answer[0].ttl == 42
    assert addresses(aaaa) == ["fd00::9"]
    assert addresses(mx) == [] and mx.rcode() == dns.rcode.NOERROR
    assert addresses(other) == [UPSTREAM_A]
    assert [x["reason"] for x in r.log_lines()] == ["deny list"] * 3 + ["model"]


def test_allow_list_beats_model_and_deny_list(upstream, tmp_path: Path) -> None:
    cfg = config_for(upstream, lists=ListsConfig(allow=("xkq3vbh7tz.com",), deny=("xkq3vbh7tz.com",)))
    with run_resolver(cfg, tmp_path / "q.log") as r:
        reply = ask(r, "cdn.xkq3vbh7tz.com")
    assert addresses(reply) == [UPSTREAM_A]
    (line,) = r.log_lines()
    assert (line["action"], line["reason"]) == ("pass", "allow list")


def test_monitor_mode_passes_and_logs_what_it_would_block(upstream, tmp_path: Path) -> None:
    with run_resolver(config_for(upstream, mode=Mode.MONITOR), tmp_path / "q.log") as r:
        reply = ask(r, "xkq3vbh7tz.com")
    assert addresses(reply) == [UPSTREAM_A]
    (line,) = r.log_lines()
    assert (line["action"], line["would"], line["reason"]) == ("log", "sinkhole", "model")


def test_verdict_cache_scores_each_registrable_name_once(upstream, tmp_path: Path) -> None:
    calls = []

    class Counting:
        def score(self, texts):
            import numpy as np

            calls.append(list(texts))
            return np.array([0.01] * len(texts), dtype=np.float32)

    with run_resolver(config_for(upstream), tmp_path / "q.log", scorer=Counting()) as r:
        for host in ("a", "b", "c"):
            ask(r, f"{host}.example.net")
    assert calls == [["example"]]
    assert [x["reason"] for x in r.log_lines()] == ["model", "cache", "cache"]


def test_dead_upstream_gives_servfail_within_timeout(tmp_path: Path) -> None:
    with run_upstream(Upstream(silent=True)) as dead, run_resolver(config_for(dead), tmp_path / "q.log") as r:
        started = time.monotonic()
        reply = ask(r, "www.example.com")
        elapsed = time.monotonic() - started
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert elapsed < 2.5  # one upstream, 0.5 s timeout (dnspython would give up at 5 s)
    (line,) = r.log_lines()
    assert line["upstream_rcode"] == "SERVFAIL" and "TimeoutError" in line["error"]


def test_failover_to_next_upstream(upstream, tmp_path: Path) -> None:
    with run_upstream(Upstream(silent=True)) as dead, run_resolver(config_for(dead, upstream), tmp_path / "q.log") as r:
        reply = ask(r, "www.example.com")
    assert addresses(reply) == [UPSTREAM_A]
    assert len(dead.queries) == 1 and len(upstream.queries) == 1


def test_closed_upstream_port_fails_over_at_once(upstream, tmp_path: Path) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    closed = probe.getsockname()[1]
    probe.close()
    cfg = replace(
        config_for(upstream),
        upstreams=(Endpoint("127.0.0.1", closed), Endpoint("127.0.0.1", upstream.port)),
        upstream_timeout=2.0,
    )
    with run_resolver(cfg, tmp_path / "q.log") as r:
        started = time.monotonic()
        reply = ask(r, "www.example.com")
        assert time.monotonic() - started < 1.0  # ICMP port unreachable, no 2 s wait
    assert addresses(reply) == [UPSTREAM_A]


def test_truncated_upstream_answer_is_retried_over_tcp(tmp_path: Path) -> None:
    with (
        run_upstream(Upstream(truncate_udp=True, big=True)) as up,
        run_resolver(config_for(up), tmp_path / "q.log") as r,
    ):
        over_tcp = ask(r, "www.example.com", tcp=True)
        small_udp = ask(r, "www.example.com")
        big_udp = ask(r, "www.example.com", use_edns=0, payload=4096)
    assert len(addresses(over_tcp)) == 60
    assert small_udp.flags & dns.flags.TC and not small_udp.answer  # 60 records do not fit 512 bytes
    assert len(addresses(big_udp)) == 60 and not big_udp.flags & dns.flags.TC


@pytest.mark.parametrize("lie", ["forge_first", "lie_first", "garbage_first"])
def test_forged_or_garbage_answers_are_ignored(tmp_path: Path, lie: str) -> None:
    with run_upstream(Upstream(**{lie: True})) as up, run_resolver(config_for(up), tmp_path / "q.log") as r:
        reply = ask(r, "www.example.com")
    assert addresses(reply) == [UPSTREAM_A] and reply.rcode() == dns.rcode.NOERROR


def test_upstream_that_only_lies_is_a_servfail_not_a_poisoned_answer(upstream, tmp_path: Path) -> None:
    with run_upstream(Upstream(lie_first=True, garbage_first=True, only_lies=True)) as liar:
        with run_resolver(config_for(liar), tmp_path / "q.log") as r:
            alone = ask(r, "www.example.com")
        with run_resolver(config_for(liar, upstream), tmp_path / "q2.log") as r:
            failover = ask(r, "www.example.com")
    assert alone.rcode() == dns.rcode.SERVFAIL and not alone.answer
    assert addresses(failover) == [UPSTREAM_A]


def test_edns_from_client_reaches_upstream(tmp_path: Path) -> None:
    seen = []

    class Recording(Upstream):
        def answer(self, data: bytes) -> bytes:
            seen.append(dns.message.from_wire(data))
            return super().answer(data)

    with run_upstream(Recording()) as up, run_resolver(config_for(up), tmp_path / "q.log") as r:
        reply = ask(r, "www.example.com", use_edns=0, payload=1400, want_dnssec=True)
    assert addresses(reply) == [UPSTREAM_A]
    assert seen[0].edns == 0 and seen[0].payload == 1400 and seen[0].flags is not None
    assert seen[0].ednsflags & dns.flags.DO


class Broken:
    def score(self, texts):
        raise RuntimeError("interpreter exploded")


def test_broken_scorer_fails_open_and_logs_the_error(upstream, tmp_path: Path) -> None:
    with run_resolver(config_for(upstream), tmp_path / "q.log", scorer=Broken()) as r:
        reply = ask(r, "xkq3vbh7tz.com")
    assert addresses(reply) == [UPSTREAM_A]
    (line,) = r.log_lines()
    assert (line["action"], line["reason"]) == ("pass", "model error")
    assert "interpreter exploded" in line["error"]


def test_answer_is_cached_although_scoring_failed(upstream, tmp_path: Path) -> None:
    """Under on_model_error: pass the upstream's answer is sound: a model error must not keep it
    out of the answer cache (only an upstream failure does)."""
    with run_resolver(config_for(upstream), tmp_path / "q.log", scorer=Broken()) as r:
        first, second = ask(r, "xkq3vbh7tz.com"), ask(r, "xkq3vbh7tz.com")
        lines = r.log_lines()
    assert addresses(first) == addresses(second) == [UPSTREAM_A]
    assert len(upstream.queries) == 1
    assert [line.get("answer_cache") for line in lines] == [None, "hit"]
    assert all(line["reason"] == "model error" and "interpreter exploded" in line["error"] for line in lines)


def test_broken_scorer_servfails_when_policy_says_so(upstream, tmp_path: Path) -> None:
    cfg = config_for(upstream, on_model_error=OnModelError.SERVFAIL)
    with run_resolver(cfg, tmp_path / "q.log", scorer=Broken()) as r:
        reply = ask(r, "xkq3vbh7tz.com")
    assert reply.rcode() == dns.rcode.SERVFAIL and upstream.queries == []


def test_nan_score_is_a_model_error_not_a_verdict(upstream, tmp_path: Path) -> None:
    import numpy as np
    from dnsfixtures import DIGITS_MODEL

    from resolverguard.model import load_model

    real = load_model(DIGITS_MODEL)

    class NaN:
        def score(self, texts):
            out = real.score(texts)
            out[:] = np.nan
            if not np.all(np.isfinite(out)):
                from resolverguard.errors import ModelError

                raise ModelError("model returned a non-finite or mis-shaped score")
            return out

    with run_resolver(config_for(upstream), tmp_path / "q.log", scorer=NaN()) as r:
        reply = ask(r, "xkq3vbh7tz.com")
    assert addresses(reply) == [UPSTREAM_A]
    assert r.log_lines()[0]["reason"] == "model error"


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x00",
        b"\x12\x34" + b"\x00" * 9,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc",
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
        bytes(range(256)) * 4,
    ],
)
def test_malformed_packet_gets_formerr_or_silence_and_server_keeps_serving(
    upstream, tmp_path: Path, packet: bytes
) -> None:
    with run_resolver(config_for(upstream), tmp_path / "q.log") as r:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.5)
        sock.sendto(packet, (r.host, r.port))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            data = None
        finally:
            sock.close()
        if data is not None:
            assert data[:2] == packet[:2] and dns.message.from_wire(data).rcode() == dns.rcode.FORMERR
        assert addresses(ask(r, "www.example.com")) == [UPSTREAM_A]
        assert addresses(ask(r, "www.example.com", tcp=True)) == [UPSTREAM_A]


def test_unscored_names_pass_and_say_why(upstream, tmp_path: Path) -> None:
    # private_zones off: these names are forwarded, so the name step's reasons show (with it on,
    # `.local` and private reverse zones are answered locally: tests/test_local_names.py)
    with run_resolver(replace(config_for(upstream), private_zones=False), tmp_path / "q.log") as r:
        for name in ("printer.local", "localhost", "4.3.2.1.in-addr.arpa"):
            ask(r, name)
    lines = r.log_lines()
    assert [x["unscored"] for x in lines] == ["local name", "single label", "reverse lookup (arpa)"]
    assert {x["reason"] for x in lines} == {"not scored"} and {x["action"] for x in lines} == {"pass"}


def test_punycode_names_pass_unscored_under_the_shipped_model(upstream, tmp_path: Path) -> None:
    """#13: an IDN (punycode) label is outside the model's domain: passed, logged as not scored and why,
    even where the shipped model's score of it would cross the threshold (an ASCII name over it is logged)."""
    from resolverguard.model import load_model
    from resolverguard.names import Unscored
    from resolverguard.verdicts import Action, Threshold

    idn_text = "xn--38jxbj0vre5b1otb0ex220bmxbtxcxz2a4jzj6xfqj2m3civ9f.com"  # a long-tail name, #13
    idn = f"www.{idn_text}"
    would = float(load_model(None).score([idn_text])[0])
    cfg = config_for(upstream, thresholds=(Threshold(Action.LOG, would / 2),), private_zones=False)
    with run_resolver(cfg, tmp_path / "q.log") as r:
        idn_reply, ascii_reply = ask(r, idn), ask(r, "xkq3vbh7tz.com")
    assert addresses(idn_reply) == [UPSTREAM_A] and addresses(ascii_reply) == [UPSTREAM_A]
    by_name = {x["qname"]: x for x in r.log_lines()}
    line = by_name[idn]
    assert (line["action"], line["reason"], line["unscored"]) == ("pass", "not scored", Unscored.PUNYCODE.value)
    assert line.get("score") is None and "punycode" in line["unscored"]
    assert by_name["xkq3vbh7tz.com"]["action"] == "log"  # the same threshold, an LDH name: the model judges it


def test_many_queries_in_flight_do_not_wait_for_a_slow_one(upstream, tmp_path: Path) -> None:
    """A query stuck on a dead first upstream must not delay others answered by the failover."""
    import concurrent.futures

    with (
        run_upstream(Upstream(silent=True)) as dead,
        run_resolver(config_for(dead, upstream), tmp_path / "q.log") as r,
        concurrent.futures.ThreadPoolExecutor(20) as pool,
    ):
        started = time.monotonic()
        replies = list(pool.map(lambda i: ask(r, f"host{i}.example.com"), range(40)))
        elapsed = time.monotonic() - started
    assert all(addresses(x) == [UPSTREAM_A] for x in replies)
    assert elapsed < 8.0  # 40 queries x 0.5 s timeout would be 20 s if they were serialised
    assert len(r.log_lines()) == 40


def test_ipv6_listener_udp_and_tcp(upstream, tmp_path: Path) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with run_resolver(config_for(upstream), tmp_path / "q.log", host="::1") as r:
        assert addresses(ask(r, "www.example.com")) == [UPSTREAM_A]
        assert addresses(ask(r, "xkq3vbh7tz.com", "AAAA", tcp=True)) == ["::"]
    assert [x["client"] for x in r.log_lines()] == ["::1", "::1"]


def test_family_hint_is_logged_for_flagged_names_only(upstream, tmp_path: Path) -> None:
    from dnsfixtures import DATA

    cfg = config_for(upstream, family_model=DATA / "family2.tflite", mode=Mode.MONITOR)
    with run_resolver(cfg, tmp_path / "q.log") as r:
        ask(r, "xkq3vbh7tz.com")
        ask(r, "www.example.com")
    flagged, benign = r.log_lines()
    assert flagged["family_hint"] == "with-digits" and flagged["family_p"] > 0.99
    assert "family_hint" not in benign


def test_broken_family_model_is_a_clear_error(upstream, tmp_path: Path) -> None:
    from dnsfixtures import DIGITS_MODEL

    from resolverguard.errors import ModelError
    from resolverguard.pipeline import family_hints_for

    with pytest.raises(ModelError, match="families"):
        family_hints_for(config_for(upstream, family_model=DIGITS_MODEL))  # a detector, not a family head
    assert family_hints_for(config_for(upstream, family_model=False)) is None


def test_scoring_off_is_a_plain_filtering_forwarder(upstream, tmp_path: Path) -> None:
    cfg = config_for(upstream, scoring=False, lists=ListsConfig(deny=("bad.example",)))
    with run_resolver(cfg, tmp_path / "q.log") as r:
        assert addresses(ask(r, "xkq3vbh7tz.com")) == [UPSTREAM_A]
        assert addresses(ask(r, "bad.example")) == ["0.0.0.0"]
    lines = r.log_lines()
    assert [(x["reason"], x["score"]) for x in lines] == [("not scored", None), ("deny list", None)]
