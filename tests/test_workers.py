"""`workers: 2`: two processes share the port (SO_REUSEPORT); one writer logs every query once."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import signal
import time
from pathlib import Path

import dns.message
import dns.query
from dnsfixtures import UPSTREAM_A, Upstream, free_port, run_upstream, start_serving, wait_for
from test_watch import C2, WALK, RunningResolverAt, addresses, ask, find_c2_and_beacon

from resolverguard.reuseport import worker_of


def test_two_workers_share_the_port_and_lose_no_log_line(tmp_path: Path) -> None:
    port, policy, log = free_port(), tmp_path / "policy.yaml", tmp_path / "q.jsonl"
    with run_upstream(Upstream()) as up:
        policy.write_text(f"workers: 2\nupstreams: ['127.0.0.1:{up.port}']\nquery_log: {log}\nrate_limit: {{qps: 0}}\n")
        proc = start_serving(policy, port)
        wait_for(proc, "listening on")  # the second worker

        def one(i: int) -> list[str]:
            query, client = dns.message.make_query(f"h{i}.example.com", "A"), f"127.0.1.{10 + i % 20}"
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=5, source=client)
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
    assert set(collections.Counter(x["worker"] for x in lines)) == {0, 1}  # 20 clients: both workers have some


def test_each_client_lands_on_one_worker_whose_watch_flags_its_walk_and_blocks_its_c2(tmp_path: Path) -> None:
    """With SO_REUSEPORT alone the kernel picks a worker per source port, so a client's walk was split
    between the workers' watches; the steering program keeps every client on one worker."""
    port, policy, log = free_port(), tmp_path / "policy.yaml", tmp_path / "q.jsonl"
    # clients on both sockets of the group: the infected one, a neighbour on its worker, one on the other
    clients = [f"127.0.1.{i}" for i in range(10, 40)]
    infected = clients[0]
    neighbour = next(c for c in clients[1:] if worker_of(c, 2) == worker_of(infected, 2))
    far = next(c for c in clients if worker_of(c, 2) != worker_of(infected, 2))
    with run_upstream(Upstream(tld_soa=True)) as up:
        policy.write_text(
            f"workers: 2\nupstreams: ['127.0.0.1:{up.port}']\nupstream_timeout: 0.5\nquery_log: {log}\n"
            "rate_limit: {qps: 0}\nclient_watch:\n  enabled: true\n  action: quarantine\n"
        )
        proc = start_serving(policy, port)
        try:
            wait_for(proc, "listening on")  # the second worker
            r = RunningResolverAt("127.0.0.1", port)
            for i in range(6):  # each client asks from a new source port every time
                for client in clients[1:]:
                    ask(r, f"h{i}.example.com", client)
            for client in clients[1:]:  # and over TCP (as after a truncated answer): the same worker
                query = dns.message.make_query("tcp.example.com", "A")
                assert addresses(dns.query.tcp(query, "127.0.0.1", port=port, timeout=5, source=client)) == [UPSTREAM_A]
            find_c2_and_beacon(r, infected)
            time.sleep(1.0)  # not a page's dead link
            for name in WALK[1:4]:  # NXDOMAIN until the flag, then quarantined
                ask(r, name, infected)
            wait_for(proc, "likely C2", lines=20)
            assert addresses(ask(r, C2, infected)) == ["0.0.0.0"]
            assert addresses(ask(r, C2, neighbour)) == ["0.0.0.0"]  # every client of that worker
            assert addresses(ask(r, "h0.example.com", infected)) == [UPSTREAM_A]  # a known name passes
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            rest = proc.stderr.read() if proc.stderr else ""
    assert "cannot steer" not in rest
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    workers: dict[str, set[int]] = collections.defaultdict(set)
    for line in lines:
        if "qname" in line:
            workers[line["client"]].add(line["worker"])
    assert all(len(seen) == 1 for seen in workers.values()), workers
    assert sum(x.get("transport") == "tcp" for x in lines) == len(clients) - 1
    assert workers[far] != workers[infected] and set().union(*workers.values()) == {0, 1}
    (flagged,) = [x for x in lines if x.get("event") == "client_flagged"]
    assert flagged["client"] == infected and flagged["worker"] in workers[infected]
