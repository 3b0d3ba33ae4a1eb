"""Pause and resume through the control socket of a real `resolverguard serve` process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import dns.message
import dns.query
from dnsfixtures import DIGITS_MODEL, UPSTREAM_A, Upstream, free_port, run_upstream, start_serving, wait_for

ROOT = Path(__file__).resolve().parent.parent


def rg(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "resolverguard", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)


def answer(port: int, name: str) -> str:
    reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5)
    return reply.answer[0][0].to_text()


def test_pause_resume_and_a_pause_that_ends_by_itself(tmp_path: Path) -> None:
    sock, log = tmp_path / "run" / "control.sock", tmp_path / "q.jsonl"
    with run_upstream(Upstream()) as up:
        policy = tmp_path / "p.yaml"
        policy.write_text(
            f"upstreams: ['127.0.0.1:{up.port}']\ncontrol_socket: {sock}\nquery_log: {log}\n"
            "answer_cache: {size: 0}\nlists:\n  deny: [blocked.example]\n"
        )
        port = free_port()
        proc = start_serving(policy, port, DIGITS_MODEL)
        try:
            assert answer(port, "blocked.example") == "0.0.0.0"
            assert answer(port, "xkq3vbh7tz.com") == "0.0.0.0"  # the model blocks too
            paused = rg("pause", "5m", "--socket", str(sock))
            assert paused.returncode == 0 and paused.stdout.strip() == "ok: blocking paused for 300 s"
            wait_for(proc, "blocking paused for 300 s")
            assert answer(port, "blocked.example") == UPSTREAM_A
            assert answer(port, "xkq3vbh7tz.com") == UPSTREAM_A
            status = rg("status", "--config", str(policy))
            left = re.match(r"ok: paused, (\d+) s left", status.stdout)
            assert status.returncode == 0 and left is not None and 200 < int(left.group(1)) <= 300, status.stdout
            resumed = rg("resume", "--socket", str(sock))
            assert resumed.stdout.strip() == "ok: blocking resumed"
            wait_for(proc, "blocking resumed (resolverguard resume)")
            assert answer(port, "blocked.example") == "0.0.0.0"
            assert rg("pause", "1s", "--socket", str(sock)).returncode == 0
            assert answer(port, "blocked.example") == UPSTREAM_A
            wait_for(proc, "blocking resumed (pause ended)", timeout=30)
            assert answer(port, "blocked.example") == "0.0.0.0"
            assert rg("status", "--socket", str(sock)).stdout.startswith("ok: blocking;")
        finally:
            proc.terminate()
            proc.wait(15)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    paused_lines = [x for x in lines if x.get("would")]
    assert [(x["qname"], x["action"], x["would"]) for x in paused_lines] == [
        ("blocked.example", "log", "sinkhole"),
        ("xkq3vbh7tz.com", "log", "sinkhole"),
        ("blocked.example", "log", "sinkhole"),
    ]
    assert not sock.exists()  # removed on stop


def test_control_commands_without_a_server_say_so(tmp_path: Path) -> None:
    result = rg("pause", "5m", "--socket", str(tmp_path / "none.sock"))
    assert result.returncode == 1 and "is it running?" in result.stderr
    assert rg("pause", "soon", "--socket", str(tmp_path / "none.sock")).returncode == 2
