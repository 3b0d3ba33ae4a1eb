"""The client watch over real sockets: clients on their own loopback addresses ask through the
resolver with dnspython, an upstream the test starts answers (NXDOMAIN for "nx..." names and the
names it is told are missing), and the query log, stderr and an HTTP hook say what happened."""

from __future__ import annotations

import io
import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest
from dnsfixtures import (
    DIGITS_MODEL,
    ROOT,
    UPSTREAM_A,
    RunningResolver,
    Upstream,
    eventually,
    free_port,
    run_resolver,
    run_upstream,
    start_serving,
    wait_for,
)

from resolverguard.config import (
    AlertHookConfig,
    ClientWatchConfig,
    Config,
    Endpoint,
    ListsConfig,
    WatchAction,
    load_config,
)
from resolverguard.steps.watch import watch_rule
from resolverguard.watch import BEACON_GAP, WatchRule

INFECTED, OTHER, THIRD = "127.0.0.2", "127.0.0.3", "127.0.0.4"
# letters only: the test model (tests/data/digits.tflite) scores these ~0, as an unseen family would
WALK = ["nxqzkvbrtw.com", "nxplmkojiu.com", "nxwsxedcrf.com", "nxtgbyhnuj.com", "nxikolpmnb.com"]
C2 = "kvbrtwqzab.com"


@dataclass
class RunningResolverAt:
    """A resolver running as its own process (`start_serving`)."""

    host: str
    port: int


def rule_of(cfg: Config) -> WatchRule:
    return watch_rule(cfg.client_watch, {})


def names_to_flag(rule: WatchRule) -> int:
    """How many alike unknown NXDOMAIN names the rule needs: 1 point, then 1 + alike bonus each."""
    return 1 + math.ceil((rule.flag_at - 1) / (1 + rule.alike_bonus))


def ask(r: RunningResolver | RunningResolverAt, name: str, client: str, qtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, qtype), r.host, port=r.port, timeout=5, source=client)


def addresses(reply: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in reply.answer for rd in rrset]


def events(r: RunningResolver, kind: str, wait: float = 3.0) -> list[dict[str, Any]]:
    """The query log's events of one kind; the watch judges an answer just after sending it."""
    return eventually(lambda: [line for line in r.log_lines() if line.get("event") == kind], wait, step=0.05)


def last_line(r: RunningResolver, name: str, client: str) -> dict[str, Any]:
    lines = [x for x in r.log_lines() if x.get("qname") == name and x.get("client") == client]
    return lines[-1]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    typos = {"gooogle.com", "facebok.com", "wikipeida.org", "amazonn.com", "netfllix.com", "twiter.com"}
    probes = {"qwhdkeusoq", "kdjfhgytre", "pzmxncbvlak"}
    missing = frozenset(typos | probes | {"myneighborhoodshop.de"})
    with run_upstream(Upstream(missing=missing, tld_soa=True)) as up:  # NXDOMAINs cacheable, as on the Internet
        yield up


def config_for(up: Upstream, **watch: Any) -> Config:
    return Config(
        upstreams=(Endpoint("127.0.0.1", up.port),),
        upstream_timeout=0.5,
        client_watch=ClientWatchConfig(enabled=True, **watch),
    )


def walk_until_flagged(r: RunningResolver, client: str, rule: WatchRule) -> None:
    """Walks until the rule flags the client; a second first, so no name counts as a page's dead link."""
    time.sleep(rule.page_gap)
    needed = names_to_flag(rule)
    for name in WALK[: needed - 1]:
        assert ask(r, name, client).rcode() == dns.rcode.NXDOMAIN
    assert [e for e in events(r, "client_flagged", wait=0.3) if e["client"] == client] == []  # one short: not yet
    assert ask(r, WALK[needed - 1], client).rcode() == dns.rcode.NXDOMAIN


def find_c2_and_beacon(r: RunningResolver | RunningResolverAt, client: str = INFECTED) -> None:
    """An infected client's first walk name (NXDOMAIN), its C2 found, and one beacon to it."""
    ask(r, WALK[0], client)
    ask(r, C2, client)
    time.sleep(BEACON_GAP)
    ask(r, C2, client)


def reload_in_loop(r: RunningResolver, timeout: float = 5.0) -> bool:
    """`Service.reload` run on the resolver's own loop, as SIGHUP runs it; its result."""
    done: list[bool] = []
    r.loop.call_soon_threadsafe(lambda: done.append(r.service.reload()))
    assert eventually(lambda: done, timeout), "reload did not finish"
    return done[0]


def test_infected_client_is_flagged_and_its_c2_blocked_for_everyone(upstream: Upstream, tmp_path: Path) -> None:
    # the C2 found before the walk flags the client; without beacon points, so only the walk flags it
    cfg = replace(config_for(upstream, beacon_points=0.0), metrics=Endpoint("127.0.0.1", free_port()))
    stderr = io.StringIO()
    with run_resolver(cfg, tmp_path / "q.log", stderr=stderr) as r:
        assert addresses(ask(r, "wikipedia.org", OTHER)) == [UPSTREAM_A]
        assert ask(r, WALK[0], INFECTED).rcode() == dns.rcode.NXDOMAIN
        assert addresses(ask(r, C2, INFECTED)) == [UPSTREAM_A]  # found before the flag...
        time.sleep(BEACON_GAP)
        assert addresses(ask(r, C2, INFECTED)) == [UPSTREAM_A]  # ...and beaconed to
        walk_until_flagged(r, INFECTED, rule_of(cfg))  # in this test the walk goes on
        (flagged,) = events(r, "client_flagged")
        (c2,) = events(r, "likely_c2")
        # the C2 is in the answer cache, yet now blocked for every client
        assert addresses(ask(r, C2, OTHER)) == ["0.0.0.0"]
        assert addresses(ask(r, C2, INFECTED)) == ["0.0.0.0"]
        # quarantine: the flagged client's new names are blocked, popular ones pass, other clients unaffected
        assert addresses(ask(r, "freshnewsite.org", INFECTED)) == ["0.0.0.0"]
        assert addresses(ask(r, "wikipedia.org", INFECTED)) == [UPSTREAM_A]
        assert addresses(ask(r, "freshnewsite.org", OTHER)) == [UPSTREAM_A]
        assert last_line(r, C2, OTHER)["reason"] == "likely c2"
        assert last_line(r, "freshnewsite.org", INFECTED)["reason"] == "client watch"
        watch, metrics = r.service.pipeline.watch, r.service.metrics
        assert watch is not None and watch.flags_raised == 1 and watch.c2_found == 1
        assert metrics is not None
        assert metrics.registry.get_sample_value("resolverguard_clients_flagged_total") == 1
        assert metrics.registry.get_sample_value("resolverguard_likely_c2_total") == 1
        blocked = {"action": "sinkhole", "reason": "likely c2"}
        assert metrics.registry.get_sample_value("resolverguard_queries_total", blocked) == 2
    needed = names_to_flag(rule_of(cfg))
    assert flagged["client"] == INFECTED and flagged["names"] == WALK[:needed] and flagged["until"]
    assert c2["name"] == C2 and c2["client"] == INFECTED and c2["until"]
    assert f"ALERT client {INFECTED} flagged" in stderr.getvalue() and f"likely C2 {C2}" in stderr.getvalue()


def test_an_early_c2_is_flagged_at_its_first_beacon_and_blocked_for_all(upstream: Upstream, tmp_path: Path) -> None:
    """A slow walker whose C2 was its second name: one NXDOMAIN, then the C2 resolves and beacons.
    The beacon of a new name under the walk's suffix, nobody else's, adds the points that flag it."""
    cfg = config_for(upstream)
    rule = rule_of(cfg)
    assert 1 + rule.beacon_points >= rule.flag_at > 1 + rule.alike_bonus  # one name alone cannot flag
    with run_resolver(cfg, tmp_path / "q.log") as r:
        assert ask(r, WALK[0], INFECTED).rcode() == dns.rcode.NXDOMAIN
        assert addresses(ask(r, C2, INFECTED)) == [UPSTREAM_A]
        assert events(r, "client_flagged", wait=0.3) == []
        time.sleep(BEACON_GAP)
        assert addresses(ask(r, C2, INFECTED)) == [UPSTREAM_A]  # the first beacon gets through...
        (flagged,) = events(r, "client_flagged")
        (c2,) = events(r, "likely_c2")
        assert addresses(ask(r, C2, INFECTED)) == ["0.0.0.0"]  # ...the next ones do not
        assert addresses(ask(r, C2, OTHER)) == ["0.0.0.0"]
    assert flagged["client"] == INFECTED and flagged["names"] == [WALK[0]]
    assert c2["name"] == C2 and c2["client"] == INFECTED


def test_a_beaconed_name_unlike_the_burst_flags_nobody(upstream: Upstream, tmp_path: Path) -> None:
    """A stray NXDOMAIN, then a home server under a dynamic-DNS provider or a new name under another
    suffix, each asked again and again (what benign clients do): no flag."""
    cfg = config_for(upstream)
    with run_resolver(cfg, tmp_path / "q.log") as r:
        assert ask(r, "nxoldblogname.com", INFECTED).rcode() == dns.rcode.NXDOMAIN
        assert ask(r, "nxoldshopname.net", OTHER).rcode() == dns.rcode.NXDOMAIN
        for _ in range(3):
            assert addresses(ask(r, "mynas.duckdns.org", INFECTED)) == [UPSTREAM_A]
            assert addresses(ask(r, "freshnewsite.org", OTHER)) == [UPSTREAM_A]
            time.sleep(BEACON_GAP)
        assert events(r, "client_flagged", wait=0.5) == []


def test_benign_client_with_typos_and_probes_is_never_flagged(upstream: Upstream, tmp_path: Path) -> None:
    with run_resolver(config_for(upstream), tmp_path / "q.log") as r:
        ask(r, "myneighbourhoodshop.de", THIRD)  # somebody on the network uses the real name
        for _ in range(2):
            for name in ["gooogle.com", "facebok.com", "wikipeida.org", "amazonn.com", "netfllix.com", "twiter.com"]:
                assert ask(r, name, OTHER).rcode() == dns.rcode.NXDOMAIN
            for probe in ["qwhdkeusoq", "kdjfhgytre", "pzmxncbvlak"]:  # browser start-up probes
                assert ask(r, probe, OTHER).rcode() == dns.rcode.NXDOMAIN
            for dead in ["nxgone.example.com", "nxold.wikipedia.org", "nxcdn.github.com", "myneighborhoodshop.de"]:
                assert ask(r, dead, OTHER).rcode() == dns.rcode.NXDOMAIN
        time.sleep(0.3)
        assert addresses(ask(r, "freshnewsite.org", OTHER)) == [UPSTREAM_A]
        assert events(r, "client_flagged", wait=0.2) == []


def test_watch_sees_nxdomains_served_from_the_answer_cache(upstream: Upstream, tmp_path: Path) -> None:
    cfg = config_for(upstream)
    with run_resolver(cfg, tmp_path / "q.log") as r:
        walk_until_flagged(r, INFECTED, rule_of(cfg))
        asked = len(upstream.queries)
        walk_until_flagged(r, OTHER, rule_of(cfg))  # same family, same names: all from the cache
        assert len(upstream.queries) == asked
        flagged = eventually(lambda: events(r, "client_flagged"), 3, done=lambda found: len(found) >= 2, step=0.05)
        assert sorted(e["client"] for e in flagged) == [INFECTED, OTHER]


def test_allow_list_wins_over_the_watch_and_log_action_blocks_nothing(upstream: Upstream, tmp_path: Path) -> None:
    cfg = replace(config_for(upstream), lists=ListsConfig(allow=("freshnewsite.org",)))
    with run_resolver(cfg, tmp_path / "q.log") as r:
        walk_until_flagged(r, INFECTED, rule_of(cfg))
        assert events(r, "client_flagged")
        assert addresses(ask(r, "freshnewsite.org", INFECTED)) == [UPSTREAM_A]
        assert addresses(ask(r, "othernewsite.org", INFECTED)) == ["0.0.0.0"]
    cfg = config_for(upstream, action=WatchAction.LOG)
    with run_resolver(cfg, tmp_path / "q2.log") as r:
        walk_until_flagged(r, INFECTED, rule_of(cfg))
        (flagged,) = events(r, "client_flagged")
        assert flagged["until"] is None and flagged["action"] == "log"
        assert addresses(ask(r, "othernewsite.org", INFECTED)) == [UPSTREAM_A]


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alert", received
    finally:
        server.shutdown()
        server.server_close()


def test_alert_hook_fires_once_per_flag(upstream: Upstream, tmp_path: Path, hook_server: Any) -> None:
    url, received = hook_server
    cfg = config_for(upstream, on_flag=AlertHookConfig(url=url, timeout=2.0))
    with run_resolver(cfg, tmp_path / "q.log") as r:
        walk_until_flagged(r, INFECTED, rule_of(cfg))
        for name in WALK[names_to_flag(rule_of(cfg)) :] + ["nxmorewalk.com", "nxevenmore.com"]:
            ask(r, name, INFECTED)  # still walking while flagged: no new alert
        eventually(lambda: received, 5, step=0.05)
        time.sleep(0.5)  # a second alert would come by now
    assert len(received) == 1
    assert received[0]["event"] == "client_flagged" and received[0]["client"] == INFECTED


def test_reload_keeps_flags_and_likely_c2(upstream: Upstream, tmp_path: Path) -> None:
    log = tmp_path / "q.log"
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"upstreams: [127.0.0.1:{upstream.port}]\nupstream_timeout: 0.5\nquery_log: {log}\n"
        "client_watch:\n  enabled: true\n  action: quarantine\n  quarantine_ttl: 3600\n"
    )
    cfg = load_config(policy)
    with run_resolver(cfg, log) as r:
        find_c2_and_beacon(r)  # one walk name, the C2 and its beacon: flagged (beacon points)
        assert events(r, "client_flagged") and events(r, "likely_c2")
        r.service.config_path = policy
        assert reload_in_loop(r) and r.service.reloads == 1
        assert addresses(ask(r, C2, OTHER)) == ["0.0.0.0"]
        assert addresses(ask(r, "freshnewsite.org", INFECTED)) == ["0.0.0.0"]
        policy.write_text(policy.read_text().replace("enabled: true", "enabled: false"))
        assert reload_in_loop(r)
        assert addresses(ask(r, C2, OTHER)) == [UPSTREAM_A]  # the watch off: nothing of it is left


def test_a_look_alike_name_the_quarantine_blocked_is_resolved_aside_and_becomes_likely_c2(
    upstream: Upstream, tmp_path: Path
) -> None:
    """Another infected client that found the C2 before it could be flagged is stopped too."""
    cfg = config_for(upstream)
    with run_resolver(cfg, tmp_path / "q.log") as r:
        assert ask(r, WALK[0], OTHER).rcode() == dns.rcode.NXDOMAIN
        assert addresses(ask(r, C2, OTHER)) == [UPSTREAM_A]  # OTHER found its C2 at the second name
        walk_until_flagged(r, INFECTED, rule_of(cfg))
        assert addresses(ask(r, C2, INFECTED)) == ["0.0.0.0"]  # quarantined
        time.sleep(BEACON_GAP)
        assert addresses(ask(r, C2, INFECTED)) == ["0.0.0.0"]  # a beacon: resolved aside
        (c2,) = events(r, "likely_c2")
        assert c2["name"] == C2 and c2["client"] == INFECTED
        assert addresses(ask(r, C2, OTHER)) == ["0.0.0.0"]  # OTHER's beacons stop
        for _ in range(2):
            assert addresses(ask(r, "zzzunlikeanything-at-all.org", INFECTED)) == ["0.0.0.0"]
            time.sleep(BEACON_GAP)
        assert [e["name"] for e in events(r, "likely_c2")] == [C2]  # an unlike new name is not probed


def test_top_and_explain_show_the_flag_and_the_likely_c2(upstream: Upstream, tmp_path: Path) -> None:
    log = tmp_path / "q.jsonl"
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"query_log: {log}\nclient_watch: {{enabled: true}}\n")
    cfg = replace(load_config(policy), upstreams=(Endpoint("127.0.0.1", upstream.port),), upstream_timeout=0.5)
    with run_resolver(cfg, log) as r:
        find_c2_and_beacon(r)
        assert events(r, "client_flagged") and events(r, "likely_c2")
    run = [sys.executable, "-m", "resolverguard"]
    top = subprocess.run([*run, "top", str(log)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert top.returncode == 0, top.stderr
    assert "clients flagged by the client watch:" in top.stdout and INFECTED in top.stdout
    assert "likely C2 names (blocked for every client):\n  " in top.stdout and C2 in top.stdout
    assert "queries per action" in top.stdout and "    ?" not in top.stdout  # events are not queries
    explain = [*run, "explain", C2, "--config", str(policy), "--model", str(DIGITS_MODEL)]
    infected = subprocess.run([*explain, "--client", INFECTED], capture_output=True, text=True, timeout=60, cwd=ROOT)
    other = subprocess.run([*explain, "--client", OTHER], capture_output=True, text=True, timeout=60, cwd=ROOT)
    rows = dict(line.split(":", 1) for line in infected.stdout.splitlines())
    assert rows["client watch"].strip() == "on (quarantine)"
    assert rows["client flagged"].strip().startswith("yes, at ") and WALK[0] in rows["client flagged"]
    assert rows["likely C2"].strip().startswith(f"yes: resolved for {INFECTED}")
    rows = dict(line.split(":", 1) for line in other.stdout.splitlines())
    assert rows["client flagged"].strip() == "no (per the query log)" and "likely C2" in rows


def test_a_real_server_keeps_its_flags_across_sighup_and_runs_the_command_hook_once(
    upstream: Upstream, tmp_path: Path
) -> None:
    alerts, log, policy = tmp_path / "alerts.jsonl", tmp_path / "q.jsonl", tmp_path / "policy.yaml"
    policy.write_text(
        f"upstreams: [127.0.0.1:{upstream.port}]\nupstream_timeout: 0.5\nquery_log: {log}\n"
        "client_watch:\n  enabled: true\n"
        f"  on_flag: {{command: [sh, -c, 'cat >> {alerts}; echo >> {alerts}']}}\n"
    )
    port = free_port()
    proc = start_serving(policy, port)
    try:
        r = RunningResolverAt("127.0.0.1", port)
        find_c2_and_beacon(r)
        time.sleep(1.0)  # not a page's dead link
        for name in WALK[:4]:
            ask(r, name, INFECTED)
        wait_for(proc, "likely C2", lines=50)
        proc.send_signal(signal.SIGHUP)
        wait_for(proc, "reloaded", lines=50)
        assert addresses(ask(r, C2, OTHER)) == ["0.0.0.0"]
        assert addresses(ask(r, "freshnewsite.org", INFECTED)) == ["0.0.0.0"]
        ask(r, "nxstillwalking.com", INFECTED)
        eventually(lambda: alerts.exists() and alerts.read_text().strip(), 10, step=0.05)
        time.sleep(0.5)  # a second alert would come by now
    finally:
        proc.terminate()
        proc.wait(10)
    (alert,) = [json.loads(line) for line in alerts.read_text().splitlines() if line.strip()]
    assert alert["event"] == "client_flagged" and alert["client"] == INFECTED
