"""Local names over real sockets: local records, conditional forwarding to a second upstream (the
"router"), and RFC 6303 private zones that the main upstream must never see."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from dnsfixtures import UPSTREAM_A, Upstream, run_resolver, run_upstream

from resolverguard.config import Config, Endpoint, LocalRecordsConfig, load_config
from resolverguard.errors import ConfigError
from resolverguard.localnames import parse_record, reverse_zones


def ask(r, name: str, qtype: str = "A", tcp: bool = False) -> dns.message.Message:
    send = dns.query.tcp if tcp else dns.query.udp
    return send(dns.message.make_query(name, qtype), r.host, port=r.port, timeout=5)


def values(reply: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in reply.answer for rd in rrset]


@pytest.fixture
def upstreams():
    with run_upstream(Upstream()) as main, run_upstream(Upstream()) as router:
        yield main, router


def config(main: Upstream, router: Upstream, tmp_path: Path, **changes) -> Config:
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "127.0.0.1 localhost\n192.168.1.30 printer printer.lan  # the office printer\nfd00::30 printer6.lan\n"
    )
    records = LocalRecordsConfig(
        records=tuple(
            map(
                parse_record,
                [
                    "router.lan A 192.168.1.1",
                    "nas.home.arpa A 192.168.1.20",
                    "nas.home.arpa AAAA fd00::20",
                    "files.lan CNAME nas.home.arpa",
                    "music.corp.example CNAME files.lan",
                ],
            )
        ),
        hosts_files=(hosts,),
        ttl=120,
    )
    cfg = Config(
        upstreams=(Endpoint("127.0.0.1", main.port),),
        scoring=False,
        upstream_timeout=1.0,
        local_records=records,
        conditional_forwarding=(
            ("corp.example", Endpoint("127.0.0.1", router.port)),
            ("1.168.192.in-addr.arpa", Endpoint("127.0.0.1", router.port)),
        ),
    )
    return replace(cfg, **changes)


@pytest.mark.parametrize("tcp", [False, True])
def test_local_records_are_answered_here(upstreams, tmp_path: Path, tcp: bool) -> None:
    main, router = upstreams
    with run_resolver(config(main, router, tmp_path), tmp_path / "q.log") as r:
        assert values(ask(r, "router.lan", tcp=tcp)) == ["192.168.1.1"]
        assert values(ask(r, "NAS.home.arpa", "AAAA", tcp=tcp)) == ["fd00::20"]
        assert values(ask(r, "files.lan", tcp=tcp)) == ["nas.home.arpa.", "192.168.1.20"]
        assert values(ask(r, "printer.lan", tcp=tcp)) == ["192.168.1.30"]
        assert values(ask(r, "printer6.lan", "AAAA", tcp=tcp)) == ["fd00::30"]
        assert values(ask(r, "20.1.168.192.in-addr.arpa", "PTR", tcp=tcp)) == ["nas.home.arpa."]
        nodata = ask(r, "router.lan", "AAAA", tcp=tcp)
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
        ttl = ask(r, "router.lan", tcp=tcp).answer[0].ttl
        lines = r.log_lines()
    assert ttl == 120
    assert main.queries == [] and router.queries == []
    assert {(x["action"], x["reason"]) for x in lines} == {("pass", "local")}


def test_private_zones_never_reach_the_upstream(upstreams, tmp_path: Path) -> None:
    main, router = upstreams
    with run_resolver(config(main, router, tmp_path), tmp_path / "q.log") as r:
        for name, qtype in [
            ("unknown.lan", "A"),
            ("printer.local", "A"),
            ("thing.internal", "AAAA"),
            ("x.home.arpa", "A"),
            ("5.0.0.10.in-addr.arpa", "PTR"),
            ("9.2.20.172.in-addr.arpa", "PTR"),
            ("7.3.168.192.in-addr.arpa", "PTR"),
            ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa", "PTR"),
        ]:
            reply = ask(r, name, qtype)
            assert reply.rcode() == dns.rcode.NXDOMAIN, name
            assert reply.authority and reply.authority[0].rdtype == dns.rdatatype.SOA, name
        assert values(ask(r, "www.example.com")) == [UPSTREAM_A]  # everything else is forwarded
        assert values(ask(r, "8.8.8.8.in-addr.arpa", "PTR")) == []  # public reverse zones too
    assert main.queries == ["www.example.com.", "8.8.8.8.in-addr.arpa."]
    assert router.queries == []


def test_conditional_forwarding_goes_to_its_upstream_only(upstreams, tmp_path: Path) -> None:
    main, router = upstreams
    with run_resolver(config(main, router, tmp_path), tmp_path / "q.log") as r:
        assert values(ask(r, "intranet.corp.example")) == [UPSTREAM_A]
        ask(r, "77.1.168.192.in-addr.arpa", "PTR")  # a private reverse zone that a rule forwards
        assert values(ask(r, "music.corp.example")) == ["files.lan.", "nas.home.arpa.", "192.168.1.20"]
        assert values(ask(r, "20.1.168.192.in-addr.arpa", "PTR")) == ["nas.home.arpa."]  # local beats forwarding
    assert router.queries == ["intranet.corp.example.", "77.1.168.192.in-addr.arpa."]
    assert main.queries == []


def test_private_zones_off_forwards_them(upstreams, tmp_path: Path) -> None:
    main, router = upstreams
    with run_resolver(config(main, router, tmp_path, private_zones=False), tmp_path / "q.log") as r:
        ask(r, "unknown.lan")
        assert values(ask(r, "router.lan")) == ["192.168.1.1"]
    assert main.queries == ["unknown.lan."]


def test_policy_file_reads_local_names(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "local_records:\n"
        "  records:\n"
        "    - router.lan A 192.168.1.1\n"
        "    - {name: nas.lan, type: aaaa, value: 'fd00::2'}\n"
        "  hosts_files: [hosts]\n"
        "conditional_forwarding:\n"
        "  lan: 192.168.1.1\n"
        "  172.16.0.0/12: '192.168.1.1:5353'\n"
    )
    cfg = load_config(policy)
    assert [str(r) for r in cfg.local_records.records] == ["router.lan A 192.168.1.1", "nas.lan AAAA fd00::2"]
    assert cfg.local_records.hosts_files == (tmp_path / "hosts",)
    zones = dict(cfg.conditional_forwarding)
    assert zones["lan"] == Endpoint("192.168.1.1", 53) and len(zones) == 17
    assert zones["31.172.in-addr.arpa"] == Endpoint("192.168.1.1", 5353)


@pytest.mark.parametrize(
    ("text", "line", "key", "problem"),
    [
        ("local_records:\n  records:\n    - router.lan A 192.168.1.300\n", 3, "local_records.records[0]", "not an IP"),
        ("local_records:\n  records:\n    - router.lan A fd00::1\n", 3, "local_records.records[0]", "IPv4"),
        ("local_records:\n  records:\n    - router.lan MX mail.lan\n", 3, "local_records.records[0]", "not one of"),
        ("conditional_forwarding:\n  lan: router.lan\n", 2, "conditional_forwarding.lan", "not an IP address"),
    ],
)
def test_local_name_errors_say_where(tmp_path: Path, text: str, line: int, key: str, problem: str) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(policy)
    assert err.value.line == line and err.value.key == key and problem in err.value.problem, err.value.location()


def test_reverse_zones_of_networks() -> None:
    assert reverse_zones("192.168.1.0/24") == ("1.168.192.in-addr.arpa",)
    assert reverse_zones("10.0.0.0/8") == ("10.in-addr.arpa",)
    assert len(reverse_zones("192.168.16.0/20")) == 16
    assert reverse_zones("fd12:3456::/32") == ("6.5.4.3.2.1.d.f.ip6.arpa",)


def test_local_answers_carry_our_opt_for_edns_clients(upstreams, tmp_path: Path) -> None:
    main, router = upstreams
    with run_resolver(config(main, router, tmp_path), tmp_path / "q.log") as r:
        for name in ("router.lan", "unknown.lan", "intranet.corp.example"):
            query = dns.message.make_query(name, "A", use_edns=0, want_dnssec=True)
            reply = dns.query.udp(query, r.host, port=r.port, timeout=5)
            assert reply.edns == 0 and reply.payload == 1232 and reply.ednsflags & dns.flags.DO, name
            plain = dns.query.udp(dns.message.make_query(name, "A"), r.host, port=r.port, timeout=5)
            assert plain.edns == -1, name
