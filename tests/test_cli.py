"""The CLI as users and other tools run it: real processes, real sockets, exit codes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import pytest
from dnsfixtures import DIGITS_MODEL, UPSTREAM_A, Upstream, free_port, run_upstream, start_serving

ROOT = Path(__file__).resolve().parent.parent


def rg(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resolverguard", *args], capture_output=True, text=True, timeout=60, cwd=ROOT, **kw
    )


def test_score_prints_one_tab_separated_line_per_name(tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("# comment\nwww.google.com\n\nxkq3vbh7tz.com\n")
    result = rg("score", "--model", str(DIGITS_MODEL), "--input", str(names), "printer.local")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert rows[0] == ["printer.local", "-", "-", "pass"]
    assert rows[1][:2] == ["www.google.com", "google"] and rows[1][3] == "pass"
    assert rows[2][:2] == ["xkq3vbh7tz.com", "xkq3vbh7tz"] and rows[2][3] == "sinkhole"
    assert all(len(r[2].split(".")[1]) == 6 for r in rows[1:])


def test_score_reads_many_names_from_stdin() -> None:
    names = "\n".join(f"host{i}.example{i % 7}.com" for i in range(2000))
    result = rg("score", "--model", str(DIGITS_MODEL), "--input", "-", input=names)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 2000


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m, j: m.write_bytes(b"not a flatbuffer"), "does not match the sha256"),
        (lambda m, j: j.unlink(), "metadata not found"),
        (lambda m, j: j.write_text("{broken"), "cannot read model metadata"),
        (
            lambda m, j: j.write_text(
                json.dumps({**json.loads(j.read_text()), "input": {"charset": "ab", "maxlen": 7}})
            ),
            "metadata says [n, 7]",
        ),
        (lambda m, j: m.unlink(), "model file not found"),
    ],
)
def test_corrupt_model_is_a_clear_error_at_start(tmp_path: Path, damage, message: str) -> None:
    model, meta = tmp_path / "m.tflite", tmp_path / "m.json"
    model.write_bytes(DIGITS_MODEL.read_bytes())
    meta.write_text(DIGITS_MODEL.with_suffix(".json").read_text())
    damage(model, meta)
    result = rg("serve", "--model", str(model), "--listen", f"127.0.0.1:{free_port()}", "--upstream", "127.0.0.1")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_flatbuffer_garbage_without_checksum_is_rejected(tmp_path: Path) -> None:
    model, meta = tmp_path / "m.tflite", tmp_path / "m.json"
    model.write_bytes(b"\x00" * 64)
    raw = json.loads(DIGITS_MODEL.with_suffix(".json").read_text())
    raw.pop("tflite_sha256")
    meta.write_text(json.dumps(raw))
    result = rg("score", "--model", str(model), "example.com")
    assert result.returncode == 2 and "not a valid TFLite model" in result.stderr


def test_serve_answers_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "queries.jsonl"
    policy = tmp_path / "policy.yaml"
    with run_upstream(Upstream()) as up:
        policy.write_text(f"upstreams: ['127.0.0.1:{up.port}']\nquery_log: {log}\nlists:\n  deny: [bad.example]\n")
        proc = start_serving(policy, port)
        try:
            ok = dns.query.udp(dns.message.make_query("example.com", "A"), "127.0.0.1", port=port, timeout=5)
            bad = dns.query.tcp(dns.message.make_query("www.bad.example", "A"), "127.0.0.1", port=port, timeout=5)
            dga = dns.query.udp(dns.message.make_query("xkq3vbh7tz.com", "A"), "127.0.0.1", port=port, timeout=5)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(10)
    assert code == 0
    assert [rd.to_text() for rr in ok.answer for rd in rr] == [UPSTREAM_A]
    assert [rd.to_text() for rr in bad.answer for rd in rr] == ["0.0.0.0"]
    assert [rd.to_text() for rr in dga.answer for rd in rr] == ["0.0.0.0"]
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(x["qname"], x["action"], x["reason"]) for x in lines] == [
        ("example.com", "pass", "model"),
        ("www.bad.example", "sinkhole", "deny list"),
        ("xkq3vbh7tz.com", "sinkhole", "model"),
    ]


def test_serve_without_upstream_uses_resolv_conf_not_itself(tmp_path: Path) -> None:
    from resolverguard.config import Endpoint
    from resolverguard.pipeline import resolv_conf_upstreams

    conf = tmp_path / "resolv.conf"
    conf.write_text("# generated\nnameserver 127.0.0.1\nnameserver 192.0.2.53\n")
    assert resolv_conf_upstreams((Endpoint("127.0.0.1", 53),), conf) == (Endpoint("192.0.2.53", 53),)
    assert resolv_conf_upstreams((Endpoint("127.0.0.1", 5335),), conf) == (Endpoint("127.0.0.1", 53),)
    assert resolv_conf_upstreams((Endpoint("127.0.0.1", 53),), tmp_path / "missing") == ()


def test_port_in_use_is_an_error_not_a_traceback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = rg("serve", "--model", str(DIGITS_MODEL), "--listen", f"127.0.0.1:{port}", "--upstream", "127.0.0.1")
    assert result.returncode == 1 and "cannot listen" in result.stderr
    assert time.monotonic() - started < 30


def test_explain_shows_the_decision(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("lists:\n  allow: [ok9.example]\n")
    blocked = rg("explain", "--model", str(DIGITS_MODEL), "www.xkq3vbh7tz.com")
    allowed = rg("explain", "--model", str(DIGITS_MODEL), "--config", str(policy), "a.ok9.example")
    assert blocked.returncode == 0 and allowed.returncode == 0
    fields = dict(line.split(":", 1) for line in blocked.stdout.splitlines())
    assert fields["scored"].strip() == "xkq3vbh7tz" and fields["action"].strip() == "sinkhole (reason: model)"
    assert "sinkhole >= 0.900000 (sinkhole) <- reached" in fields["thresholds"]
    fields = dict(line.split(":", 1) for line in allowed.stdout.splitlines())
    assert fields["list rule"].strip() == "allow ok9.example"
    assert fields["action"].strip() == "pass (reason: allow list)"


def test_explain_says_a_punycode_name_is_not_scored() -> None:
    """#13: the shipped model does not judge IDN labels; explain says so instead of showing a score."""
    shown = rg("explain", "www.xn--38jxbj0vre5b1otb0ex220bmxbtxcxz2a4jzj6xfqj2m3civ9f.com")
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(":", 1) for line in shown.stdout.splitlines())
    assert "punycode" in fields["scored"] and fields["score"].strip() == "-"
    assert fields["action"].strip() == "pass (reason: not scored)"


def test_top_summarises_a_log_the_resolver_wrote(tmp_path: Path) -> None:
    from dataclasses import replace

    from dnsfixtures import run_resolver

    from resolverguard.config import Config, Endpoint, ListsConfig

    log = tmp_path / "q.jsonl"
    with run_upstream(Upstream()) as up:
        cfg = replace(Config(upstreams=(Endpoint("127.0.0.1", up.port),)), lists=ListsConfig(deny=("bad.example",)))
        with run_resolver(cfg, log) as r:
            for name in ["xkq3vbh7tz.com", "xkq3vbh7tz.com", "www.bad.example", "example.com", "example.org"]:
                dns.query.udp(dns.message.make_query(name, "A"), r.host, port=r.port, timeout=5)
    with log.open("a") as handle:
        handle.write("{not json\n")
    result = rg("top", "--since", "1h", str(log))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("5 queries, 3 blocked (or would be, in monitor mode), 1 unreadable lines")
    assert "       3  sinkhole" in out and "       2  pass" in out
    assert "       2  xkq3vbh7tz.com" in out and "       1  www.bad.example" in out
    assert "       3  127.0.0.1" in out
    assert rg("top", "--since", "soon", str(log)).returncode == 2


def test_check_shows_what_each_list_file_held_and_skipped(tmp_path: Path) -> None:
    deny = tmp_path / "deny.txt"
    deny.write_text("# ads\n||ads.example^\n0.0.0.0 a.example b.example\n/banner/ads/\ntwo words\nok.example\n")
    allow = tmp_path / "allow.txt"
    allow.write_text("good.example\n")
    policy = tmp_path / "p.yaml"
    policy.write_text(
        f"model: {DIGITS_MODEL}\nlists:\n  deny_files: [deny.txt]\n"
        "groups:\n  - name: guests\n    clients: [10.0.0.0/8]\n    lists: {allow_files: [allow.txt]}\n"
    )
    result = rg("check", str(policy))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    skipped = "(1 URL or path rule, 1 not a domain name); first skipped lines: 4, 5"
    assert f"  lists.deny_files: {deny}: 4 entries, 2 lines skipped {skipped}" in lines
    assert f"  groups[0].lists.allow_files: {allow}: 1 entries, 0 lines skipped" in lines
