"""Per-client policies over real sockets from different loopback addresses."""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from dnsfixtures import DIGITS_MODEL, UPSTREAM_A, Upstream, run_resolver, run_upstream

from resolverguard.config import load_config
from resolverguard.errors import ConfigError

POLICY = """
upstreams: ['127.0.0.1:{port}']
thresholds: {{log: 0.5, sinkhole: 0.9}}
lists:
  deny: [everyone-denies.example]
groups:
  - name: servers                 # monitor only: never break a server's lookups
    clients: [127.0.0.2/32]
    mode: monitor
  - name: guests                  # stricter, own lists, NXDOMAIN instead of sinkhole
    clients: [127.0.0.3/32, "fd00:3::/64"]
    thresholds: {{nxdomain: 0.5}}
    lists:
      deny: [social.example]
      deny_action: nxdomain
"""


def ask(r, source: str, name: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, "A"), r.host, port=r.port, timeout=3, source=source)


def addresses(reply: dns.message.Message) -> list[str]:
    return [rd.to_text() for rr in reply.answer for rd in rr]


@pytest.fixture
def resolver(tmp_path: Path):
    with run_upstream(Upstream()) as up:
        path = tmp_path / "policy.yaml"
        path.write_text(POLICY.format(port=up.port) + f"model: {DIGITS_MODEL}\n")
        with run_resolver(load_config(path), tmp_path / "q.log") as r:
            yield r


def test_each_client_gets_its_groups_policy(resolver) -> None:
    default = ask(resolver, "127.0.0.1", "xkq3vbh7tz.com")
    server = ask(resolver, "127.0.0.2", "xkq3vbh7tz.com")
    guest = ask(resolver, "127.0.0.3", "xkq3vbh7tz.com")
    assert addresses(default) == ["0.0.0.0"]  # default: sinkhole
    assert addresses(server) == [UPSTREAM_A]  # servers: monitor mode passes
    assert guest.rcode() == dns.rcode.NXDOMAIN  # guests: own threshold table
    lines = resolver.log_lines()
    assert [(x["client"], x["action"], x.get("would")) for x in lines] == [
        ("127.0.0.1", "sinkhole", None),
        ("127.0.0.2", "log", "sinkhole"),
        ("127.0.0.3", "nxdomain", None),
    ]


def test_group_lists_replace_the_top_level_lists(resolver) -> None:
    assert ask(resolver, "127.0.0.3", "www.social.example").rcode() == dns.rcode.NXDOMAIN
    assert addresses(ask(resolver, "127.0.0.1", "www.social.example")) == [UPSTREAM_A]
    assert addresses(ask(resolver, "127.0.0.1", "everyone-denies.example")) == ["0.0.0.0"]
    assert addresses(ask(resolver, "127.0.0.3", "everyone-denies.example")) == [UPSTREAM_A]


@pytest.mark.parametrize(
    ("groups", "line", "key", "problem"),
    [
        ("groups:\n  - name: a\n    clients: [nope]\n", 3, "groups[0].clients[0]", "not an address"),
        (
            "groups:\n  - name: a\n    clients: [10.0.0.0/8]\n  - name: a\n    clients: [10.1.0.0/16]\n",
            4,
            "groups[1].name",
            "unique name",
        ),
        ("groups:\n  - name: a\n    clients: [10.0.0.0/8]\n    mode: loud\n", 4, "groups[0].mode", "not one of"),
        ("groups:\n  - name: a\n    clients: [10.0.0.0/8]\n    sinkhol: {}\n", 4, "groups[0].sinkhol", "unknown key"),
        ("groups:\n  - name: a\n", 2, "groups[0].clients", "at least one"),
    ],
)
def test_group_errors_name_file_line_key(tmp_path: Path, groups: str, line: int, key: str, problem: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(groups)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.line, info.value.key) == (line, key) and problem in info.value.problem
