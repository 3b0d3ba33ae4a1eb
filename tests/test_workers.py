"""`workers: 2`: two processes share the port (SO_REUSEPORT); one writer logs every query once."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import signal
from pathlib import Path

import dns.message
import dns.query
from dnsfixtures import UPSTREAM_A, Upstream, free_port, run_upstream, start_serving, wait_for


def test_two_workers_share_the_port_and_lose_no_log_line(tmp_path: Path) -> None:
    port, policy, log = free_port(), tmp_path / "policy.yaml", tmp_path / "q.jsonl"
    with run_upstream(Upstream()) as up:
        policy.write_text(f"workers: 2\nupstreams: ['127.0.0.1:{up.port}']\nquery_log: {log}\nrate_limit: {{qps: 0}}\n")
        proc = start_serving(policy, port)
        wait_for(proc, "listening on")  # the second worker

        def one(i: int) -> list[str]:
            reply = dns.query.udp(dns.message.make_query(f"h{i}.example.com", "A"), "127.0.0.1", port=port, timeout=5)
            return [rd.to_text() for rr in reply.answer for rd in rr]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, range(300)))
        proc.send_signal(signal.SIGHUP)
        wait_for(proc, "reloaded")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert all(a == [UPSTREAM_A] for a in answers)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert sorted(x["qname"] for x in lines) == sorted(f"h{i}.example.com" for i in range(300))
    assert set(collections.Counter(x["worker"] for x in lines)) == {0, 1}  # the kernel used both
