"""The migration walk-throughs of docs/migrate.md, replayed: a Pi-hole (v5 and v6), an AdGuard Home
and a Blocky setup built with each tool's own schema and layout (tests/migration.py), imported with
`resolverguard import`, checked, their lists downloaded from a real HTTP server on 127.0.0.1, then
served: dnspython asks, a test upstream and a test "router" answer."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest
from dnsfixtures import UPSTREAM_A, Upstream, run_resolver, run_upstream
from listserver import ListServer, Served, serve_lists
from migration import (
    ADGUARDHOME_YAML,
    BLOCKY_YAML,
    PIHOLE_CUSTOM_LIST,
    PIHOLE_SETUP_VARS,
    PIHOLE_TOML,
    pihole_gravity,
)

from resolverguard.config import EncryptedUpstream, Endpoint, load_config

ROOT = Path(__file__).resolve().parent.parent
LISTS = Path(__file__).resolve().parent / "data" / "lists"


def rg(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "resolverguard", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[ListServer, Upstream, Upstream]]:
    """The list server, the upstream and the router; downloaded lists go to a cache under tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with serve_lists() as lists, run_upstream(Upstream()) as main, run_upstream(Upstream()) as router:
        for name in ("hosts.txt", "domains.txt", "adguard.txt", "blocky.txt"):
            lists.files[f"/{name}"] = Served((LISTS / name).read_bytes())
        lists.files["/allow.txt"] = Served(b"@@||allowed-by-list.ads.example.com^\n0.0.0.0 allow-listed.example\n")
        yield lists, main, router


def import_and_update(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "imported"
    result = rg("import", *args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    policy = out / "policy.yaml"
    check = rg("check", str(policy))
    assert check.returncode == 0, check.stderr
    update = rg("lists", "update", "--config", str(policy), "--socket", str(tmp_path / "none.sock"))
    assert update.returncode == 0, update.stdout + update.stderr
    return policy


def a(r, name: str, qtype: str = "A") -> list[str]:
    reply = dns.query.udp(dns.message.make_query(name, qtype), r.host, port=r.port, timeout=5)
    return [rd.to_text() for rrset in reply.answer for rd in rrset]


@pytest.mark.parametrize("v6", [False, True])
def test_from_pihole(tmp_path: Path, world, v6: bool) -> None:
    lists, main, router = world
    gravity = pihole_gravity(tmp_path / "gravity.db", lists.url(""), v6=v6)
    extra = tmp_path / ("pihole.toml" if v6 else "setupVars.conf")
    extra.write_text((PIHOLE_TOML if v6 else PIHOLE_SETUP_VARS).format(port=main.port, router=router.port))
    custom = tmp_path / "custom.list"
    custom.write_text(PIHOLE_CUSTOM_LIST)
    option = "--toml" if v6 else "--setup-vars"
    policy = import_and_update(
        tmp_path, "pihole", "--gravity", str(gravity), "--custom-list", str(custom), option, str(extra)
    )
    text = policy.read_text()
    assert "disabled.txt" not in text and "off.example" not in text  # disabled items stay off
    assert "aa:bb:cc:dd:ee:ff" in text  # the MAC client is named in the "not carried over" notes
    cfg = load_config(policy)
    assert [g.name for g in cfg.groups] == ["Default+kids"] and cfg.groups[0].clients == ("192.168.1.50/32",)
    with run_resolver(cfg, tmp_path / "q.jsonl") as r:
        assert a(r, "telemetry.example.com") == ["0.0.0.0"]  # adlist (hosts): exact, as gravity
        assert a(r, "sub.telemetry.example.com") == [UPSTREAM_A]
        assert a(r, "ads.example.org") == ["0.0.0.0"] and a(r, "x.ads.example.org") == [UPSTREAM_A]
        assert a(r, "track12.example.com") == ["0.0.0.0"]  # regex deny
        assert a(r, "metrics.example.net") == [UPSTREAM_A]  # exact allow beats the adlist's entry
        assert a(r, "games.example") == [UPSTREAM_A]  # the kids' domain is not the Default group's
        assert a(r, "router.lan") == ["192.168.1.1"] and a(r, "nas.lan") == ["192.168.1.20"]
        assert a(r, "20.1.168.192.in-addr.arpa", "PTR") == ["nas.lan."]
        a(r, "laptop.lan")  # not a local record: the Pi-hole's rev-server rule sends .lan to the router
        a(r, "99.1.168.192.in-addr.arpa", "PTR")
        kids = r.service.pipeline.groups.group_for("192.168.1.50").lists
        assert kids.listed("games.example") is not None and kids.listed("malware.example") is not None
        assert kids.listed("telemetry.example.com") is not None  # Default's lists too: the tablet is in both
        if v6:
            assert a(r, "printer.lan") == ["192.168.1.30"] and a(r, "files.lan")[0] == "nas.lan."
            assert a(r, "allow-listed.example") == [UPSTREAM_A]
    assert router.queries == ["laptop.lan.", "99.1.168.192.in-addr.arpa."]
    assert "router.lan." not in main.queries and "laptop.lan." not in main.queries


def test_from_adguardhome(tmp_path: Path, world) -> None:
    lists, main, router = world
    config = tmp_path / "AdGuardHome.yaml"
    config.write_text(ADGUARDHOME_YAML.format(port=main.port, router=router.port, lists_url=lists.url("")))
    result = rg("import", "adguardhome", "--config", str(config), "--out", str(tmp_path / "imported"))
    assert "quic://dns.adguard-dns.com" in result.stdout and "*.dev.lan" in result.stdout  # noted: no DoQ here
    policy = import_and_update(tmp_path, "adguardhome", "--config", str(config))
    cfg = load_config(policy)
    assert cfg.upstreams[1:] == (
        EncryptedUpstream("https", "dns10.quad9.net", None, 443, "/dns-query"),
        EncryptedUpstream("tls", "dns10.quad9.net", None, 853),
    )
    assert cfg.encrypted_upstreams.bootstrap == (Endpoint("9.9.9.10", 53),)  # its bootstrap_dns
    assert [(g.name, g.clients, g.mode.value) for g in cfg.groups] == [("work laptop", ("192.168.1.70/32",), "monitor")]
    with run_resolver(cfg, tmp_path / "q.jsonl") as r:
        assert a(r, "ads.example.com") == ["0.0.0.0"] and a(r, "youtube.com") == [UPSTREAM_A]
        assert a(r, "user-blocked.example") == ["0.0.0.0"]
        assert a(r, "user-allowed.ads.example.com") == [UPSTREAM_A]  # user rule @@
        assert a(r, "allowed-by-list.ads.example.com") == [UPSTREAM_A]  # whitelist filter
        assert a(r, "nas.lan") == ["192.168.1.20"] and a(r, "files.lan") == ["nas.lan.", "192.168.1.20"]
        assert a(r, "kid-only.example") == [UPSTREAM_A]  # $client: the tablet only
        lists_for_tablet = r.service.pipeline.groups.default.lists
        assert lists_for_tablet.listed("kid-only.example", "192.168.1.50") is not None
        a(r, "laptop.lan")
    assert router.queries == ["laptop.lan."] and "nas.lan." not in main.queries


def test_from_blocky(tmp_path: Path, world) -> None:
    lists, main, router = world
    config = tmp_path / "config.yml"
    config.write_text(BLOCKY_YAML.format(port=main.port, router=router.port, lists_url=lists.url("")))
    policy = import_and_update(tmp_path, "blocky", "--config", str(config))
    cfg = load_config(policy)
    assert cfg.upstreams[1:] == (
        EncryptedUpstream("https", "dns.example", None, 443, "/dns-query"),
        EncryptedUpstream("tls", "cloudflare-dns.com", "1.1.1.1", 853),  # Blocky's #commonName
    )
    assert cfg.encrypted_upstreams.bootstrap == (Endpoint("9.9.9.9", 53),)  # its bootstrapDns
    with run_resolver(cfg, tmp_path / "q.jsonl") as r:
        assert a(r, "x.wild.example") == ["0.0.0.0"] and a(r, "track3.example") == ["0.0.0.0"]
        assert a(r, "inline-blocked.example") == ["0.0.0.0"] and a(r, "a.inline-wild.example") == ["0.0.0.0"]
        assert a(r, "allowed.wild.example") == [UPSTREAM_A]
        assert a(r, "malware.example") == [UPSTREAM_A]  # the kids' list: not the default group's
        tablet = r.service.pipeline.groups.group_for("192.168.1.50").lists
        assert tablet.listed("malware.example") is not None and tablet.listed("x.wild.example") is not None
        assert a(r, "printer.lan") == ["192.168.1.30"] and a(r, "printer.lan", "AAAA") == ["fd00::30"]
        a(r, "laptop.lan")
    assert router.queries == ["laptop.lan."]


def test_the_walkthrough_commands_are_the_cli() -> None:
    """Every command line of docs/migrate.md parses with the real argument parser."""
    from resolverguard.cli import _parser

    text = (ROOT / "docs" / "migrate.md").read_text().replace("\\\n", " ")
    commands = [line.strip().split()[1:] for line in text.splitlines() if line.startswith("    resolverguard ")]
    assert len(commands) == 9
    for words in commands:
        args = _parser().parse_args(words)
        assert callable(args.run), words
