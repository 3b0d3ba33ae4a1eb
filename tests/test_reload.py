"""Reload in process: every stateful part of the chain decides by itself what it carries over, so
`Service.reload` names none of them; what did not change keeps its state (caches, sockets, log)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import dns.message
import dns.query
from dnsfixtures import UPSTREAM_A, RunningResolver, Upstream, run_resolver, run_upstream

from resolverguard.config import load_config
from resolverguard.service import Service


def ask(r: RunningResolver, name: str) -> list[str]:
    reply = dns.query.udp(dns.message.make_query(name, "A"), r.host, port=r.port, timeout=3)
    return [rd.to_text() for rrset in reply.answer for rd in rrset]


def reload(r: RunningResolver) -> bool:
    async def run(service: Service) -> bool:
        return service.reload()

    return asyncio.run_coroutine_threadsafe(run(r.service), r.loop).result(10)


def test_reload_carries_what_did_not_change_and_replaces_what_did(tmp_path: Path) -> None:
    policy, log = tmp_path / "policy.yaml", tmp_path / "q.log"
    with run_upstream(Upstream()) as first, run_upstream(Upstream()) as second:
        policy.write_text(f"upstreams: [127.0.0.1:{first.port}]\nquery_log: {log}\n")
        with run_resolver(load_config(policy), log, stderr=io.StringIO()) as r:
            r.service.config_path = policy
            assert ask(r, "www.example.com") == [UPSTREAM_A]
            before = r.service.pipeline
            policy.write_text(f"upstreams: [127.0.0.1:{first.port}]\nquery_log: {log}\nmode: monitor\n")
            assert reload(r)
            kept = r.service.pipeline
            assert kept is not before and kept.groups.default.policy.mode.value == "monitor"
            for part in ("cache", "answers", "forwarder", "log"):
                assert getattr(kept, part) is getattr(before, part), part
            assert len(kept.cache) == 1  # the score survived: no second model call for the name
            assert ask(r, "www.example.com") == [UPSTREAM_A] and len(first.queries) == 1  # answer cache
            policy.write_text(f"upstreams: [127.0.0.1:{second.port}]\nquery_log: {log}\n")
            assert reload(r)
            moved = r.service.pipeline
            assert moved.cache is before.cache and moved.log is before.log
            assert moved.answers is not before.answers and moved.forwarder is not before.forwarder
            assert ask(r, "www.example.com") == [UPSTREAM_A] and len(second.queries) == 1
    assert [line["qname"] for line in r.log_lines()] == ["www.example.com"] * 3


def test_reload_off_loop_reads_the_lists_elsewhere_while_answers_go_on(tmp_path: Path) -> None:
    """SIGHUP's reload: the policy names a new 50,000-entry list; queries sent while it is read get
    answers (on the loop the parse would hold every answer until the swap), then the list is in force.
    A broken policy is rejected the same way with file:line: key, and the list stays."""
    policy, log, hosts = tmp_path / "policy.yaml", tmp_path / "q.log", tmp_path / "hosts.txt"
    hosts.write_text("".join(f"0.0.0.0 blocked{i}.example.net\n" for i in range(50_000)))
    with run_upstream(Upstream()) as up:
        base = f"upstreams: [127.0.0.1:{up.port}]\nquery_log: {log}\nrate_limit: {{qps: 0}}\n"
        policy.write_text(base)
        stderr = io.StringIO()
        with run_resolver(load_config(policy), log, stderr=stderr) as r:
            r.service.config_path = policy
            policy.write_text(base + f"lists:\n  deny_files: [{{path: '{hosts}', format: hosts}}]\n")
            reloading = asyncio.run_coroutine_threadsafe(r.service.reload_off_loop(), r.loop)
            during = 0
            while not reloading.done():
                answer = ask(r, f"during{during}.example.com")
                during += answer == [UPSTREAM_A] and not reloading.done()
            assert reloading.result(60) is True
            assert during >= 3, during  # answered while the lists were read
            assert ask(r, "blocked49999.example.net") == ["0.0.0.0"]
            policy.write_text(base + "mode: enforc\n")
            assert asyncio.run_coroutine_threadsafe(r.service.reload_off_loop(), r.loop).result(60) is False
            assert ask(r, "blocked7.example.net") == ["0.0.0.0"]  # the old policy stays
    assert f"{policy}:4: mode:" in stderr.getvalue()
