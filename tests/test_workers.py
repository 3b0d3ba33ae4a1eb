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
        policy.write_text(
            f"workers: 2\nupstreams: ['127.0.0.1:{up.port}']\nquery_log: {log}\nrate_limit: {{qps: 0}}\n"
            "control_socket: off\n"  # not the default path, which other servers on this machine may use
        )
        proc = start_serving(policy, port, workers=2)

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


def test_the_control_socket_reaches_every_worker(tmp_path: Path) -> None:
    """With `workers: 2`, `resolverguard pause` through the one control socket stops blocking in
    both workers (the query log shows both answering while paused), and `resume` restarts it in both."""
    import subprocess
    import sys

    from resolverguard.control import send

    port, policy, log, sock = free_port(), tmp_path / "policy.yaml", tmp_path / "q.jsonl", tmp_path / "run" / "c.sock"
    with run_upstream(Upstream()) as up:
        policy.write_text(
            f"workers: 2\nupstreams: ['127.0.0.1:{up.port}']\nquery_log: {log}\nrate_limit: {{qps: 0}}\n"
            f"control_socket: {sock}\nanswer_cache: {{size: 0}}\nlists:\n  deny: [blocked.example]\n"
        )
        proc = start_serving(policy, port, workers=2)

        def rg(*args: str) -> str:
            cmd = [sys.executable, "-m", "resolverguard", *args, "--socket", str(sock)]
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()

        def blocked_answers(count: int, tag: str) -> list[str]:
            def one(i: int) -> str:
                query = dns.message.make_query(f"{tag}{i}.blocked.example", "A")
                client = f"127.0.1.{10 + i % 20}"  # 20 clients: each worker has some (one client, one worker)
                return str(dns.query.udp(query, "127.0.0.1", port=port, timeout=5, source=client).answer[0][0])

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                return list(pool.map(one, range(count)))

        try:
            assert set(blocked_answers(40, "before")) == {"0.0.0.0"}
            assert rg("pause", "5m") == "ok: blocking paused for 300 s (all 2 workers)"
            status = rg("status")
            assert status.startswith("ok: ") and "paused, " in status, status
            assert status.endswith("(all 2 workers)") or status.count("paused, ") == 2, status
            assert set(blocked_answers(60, "paused")) == {UPSTREAM_A}  # every worker let it through
            assert rg("resume") == "ok: blocking resumed (all 2 workers)"
            assert set(blocked_answers(40, "after")) == {"0.0.0.0"}
            policy.write_text(policy.read_text().replace("deny: [blocked.example]", "deny: [other.example]"))
            assert send(sock, "reload") == "ok: reloaded (all 2 workers)"
            assert set(blocked_answers(40, "reloaded")) == {UPSTREAM_A}  # neither worker blocks it now
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    during = [x for x in lines if x["qname"].startswith("paused")]
    assert len(during) == 60 and {x["worker"] for x in during} == {0, 1}, during  # both workers were paused
    after = [x for x in lines if x["qname"].startswith("after")]
    assert {x["worker"] for x in after} == {0, 1} and {x["action"] for x in after} == {"sinkhole"}
    assert {x["worker"] for x in lines if x["qname"].startswith("reloaded")} == {0, 1}
    assert not sock.exists()  # the parent removed its socket on the way out


def test_lists_update_through_the_parent_reaches_every_worker_and_downloads_once(tmp_path: Path) -> None:
    """`resolverguard lists update` with `workers: 2`: one worker downloads the changed list, the
    other finds the copy current (304) and reads it; both then block what it lists."""
    import subprocess
    import sys

    from listserver import Served, serve_lists

    port, policy, log, sock = free_port(), tmp_path / "policy.yaml", tmp_path / "q.jsonl", tmp_path / "run" / "c.sock"
    with run_upstream(Upstream()) as up, serve_lists() as lists:
        lists.files["/deny.txt"] = Served(b"old.example\n", etag='"v1"')
        policy.write_text(
            f"workers: 2\nupstreams: ['127.0.0.1:{up.port}']\nquery_log: {log}\nrate_limit: {{qps: 0}}\n"
            f"control_socket: {sock}\nanswer_cache: {{size: 0}}\n"
            f"subscriptions: {{cache_dir: {tmp_path / 'cache'}, refresh: 0}}\n"
            f"lists:\n  deny_files: [{{url: '{lists.url('/deny.txt')}', format: domains}}]\n"
        )
        subprocess.run([sys.executable, "-m", "resolverguard", "lists", "update", "--config", str(policy)], timeout=60)
        proc = start_serving(policy, port, workers=2)
        try:
            lists.files["/deny.txt"] = Served(b"new.example\n", etag='"v2"')
            lists.requests.clear()
            cmd = [sys.executable, "-m", "resolverguard", "lists", "update", "--config", str(policy)]
            update = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            assert update.returncode == 0, update.stdout + update.stderr
            assert "worker 0: " in update.stdout and "worker 1: " in update.stdout, update.stdout
            assert "updated" in update.stdout and "not modified" in update.stdout, update.stdout
            assert len(lists.requests) == 2  # one download, one conditional request answered 304

            def answers(tag: str) -> set[str]:
                def one(i: int) -> str:
                    query = dns.message.make_query(f"{tag}{i}.new.example", "A")
                    client = f"127.0.1.{10 + i % 20}"  # 20 clients: each worker has some (one client, one worker)
                    return str(dns.query.udp(query, "127.0.0.1", port=port, timeout=5, source=client).answer[0][0])

                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    return set(pool.map(one, range(40)))

            assert answers("w") == {"0.0.0.0"}
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert {x["worker"] for x in lines if x["qname"].endswith(".new.example")} == {0, 1}  # both blocked it


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
        proc = start_serving(policy, port, workers=2)
        try:
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
