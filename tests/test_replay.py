"""bench/replay.py on small made-up data: the trace keeps its promises, the truth upstream answers like
the Internet, and a short replay through a real `resolverguard serve` counts blocked lookups right
(the digits model blocks exactly the names whose scored label has a digit)."""

from __future__ import annotations

import asyncio
import json
import random
import string
import sys
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from dnsfixtures import DIGITS_MODEL, ROOT

from resolverguard.model import load_model

sys.path.insert(0, str(ROOT / "bench"))
import replay  # noqa: E402
from traffic import BenignNames, TraceParams, generate  # noqa: E402
from truth import TruthUpstream, address_of  # noqa: E402


def words(n: int, seed: int, suffix: str, digit: bool = False) -> tuple[str, ...]:
    """Letter-only names (or, with `digit`, names with a digit inside the label), unique, in a fixed order."""
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        label = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(6, 10)))
        if digit:
            label = label[:3] + str(rng.randrange(10)) + label[3:]
        out[f"{label}.{suffix}"] = None
    return tuple(out)


POPULAR = ("web2go.com", *words(60, 1, "com"))  # the Zipf head has a digit: the digits model blocks it
BENIGN = BenignNames(
    popular=POPULAR,
    longtail=words(40, 2, "org"),
    known=frozenset(POPULAR + words(40, 2, "org") + words(5, 3, "net")),
    dead=words(5, 3, "net"),
)
FAMILIES = {"digitfam": words(400, 4, "biz", digit=True), "wordfam": words(400, 5, "info")}
SMALL = TraceParams(
    seed=7,
    duration=6.0,
    benign_clients=3,
    infected_per_family=2,
    page_gap=1.0,
    dead_share=0.2,
    typo_share=0.2,
    ddns_share=1.0,
    reputation_share=0.5,
    fast_gap=(0.01, 0.03),
    fast_max_walk=60,
    slow_gap=(0.5, 1.0),
    walk_start=(0.3, 1.0),
    beacon=(0.5, 1.5),
)


def test_the_trace_is_seeded_and_keeps_its_truth() -> None:
    trace = generate(SMALL, BENIGN, FAMILIES)
    assert trace == generate(SMALL, BENIGN, FAMILIES)
    assert trace.lookups != generate(TraceParams(**{**SMALL.__dict__, "seed": 8}), BENIGN, FAMILIES).lookups
    assert [q.t for q in trace.lookups] == sorted(q.t for q in trace.lookups)
    for c in (c for c in trace.clients if c.family):
        names = FAMILIES[c.family]
        start = names.index(c.walk[0]) if c.walk else names.index(c.c2)
        assert (*c.walk, c.c2) == names[start : start + len(c.walk) + 1]  # a contiguous run, in file order
        mine = [q for q in trace.lookups if q.client == c.index and q.family]
        assert [q.qname for q in mine if q.role == "walk"] == list(c.walk)
        c2_time = next(q.t for q in mine if q.role == "c2")
        assert all(q.qname == c.c2 and q.t > c2_time for q in mine if q.role == "beacon")
        assert c.c2 in trace.exists and not set(c.walk) & trace.exists
    roles = {q.role for q in trace.lookups}
    assert {"page", "typo", "dead", "probe", "ddns", "reputation", "walk", "c2", "beacon"} <= roles
    assert {c.pace for c in trace.clients if c.family} == {"fast", "slow"}


async def _ask(port: int, name: str, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    if tcp:
        return await dns.asyncquery.tcp(query, "127.0.0.1", port=port, timeout=2)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=2)


def test_the_truth_upstream_resolves_what_exists_and_nxdomains_the_rest_with_a_soa() -> None:
    async def scenario() -> None:
        upstream = TruthUpstream(frozenset({"www.alpha.com"}))
        port = await upstream.start()
        try:
            for tcp in (False, True):
                yes = await _ask(port, "www.alpha.com", tcp)
                assert yes.rcode() == dns.rcode.NOERROR
                assert [r.address for r in yes.answer[0]] == [address_of("www.alpha.com")]
                no = await _ask(port, "qzkxwv.alpha.com", tcp)
                assert no.rcode() == dns.rcode.NXDOMAIN and not no.answer
                assert no.authority[0].rdtype == dns.rdatatype.SOA and no.authority[0].ttl > 0
            assert upstream.queries == 4
        finally:
            await upstream.stop()

    asyncio.run(scenario())
    assert address_of("www.alpha.com") == address_of("WWW.alpha.com.") != address_of("alpha.com")


def _scored_has_digit(qname: str, role: str) -> bool:
    """What the digits model blocks: a digit in the scored label (a dynamic-DNS name's own label; else
    the label left of the suffix; in this made-up data every suffix is one label)."""
    labels = qname.split(".")
    label = labels[0] if role == "ddns" else labels[-2] if len(labels) > 1 else labels[0]
    return any(ch.isdigit() for ch in label)


def test_a_short_replay_counts_what_the_resolver_blocked(tmp_path: Path) -> None:
    trace = generate(SMALL, BENIGN, FAMILIES)
    plan = replay.Plan(ROOT / "examples" / "home-gateway.yaml", DIGITS_MODEL, list(FAMILIES), "test", "test")
    result = asyncio.run(replay.replay(plan, trace))
    # the example has client_watch on: the same trace through the policy as given and with the watch off
    assert list(result["passes"]) == ["watch on", "watch off"]
    # both passes run at once: the version comes from the server's ready line, not a control-socket error
    assert result["model"]["version"] == load_model(DIGITS_MODEL).metadata.model_version
    on = result["passes"]["watch on"]
    assert on["benign"]["flagged"] == 0 and on["families"]["wordfam"]["flagged"] > 0
    assert on["families"]["wordfam"]["c2_all_share"] > 0  # what the model alone cannot block (below)
    p = result["passes"]["watch off"]  # the model alone
    digit, word = p["families"]["digitfam"], p["families"]["wordfam"]
    assert digit["c2_first_share"] == digit["c2_all_share"] == 1.0 and digit["c2_all_total"] > 2
    assert word["c2_first_share"] == word["c2_all_share"] == 0.0 and word["c2_all_total"] > 2
    benign_ids = {c.index for c in trace.clients if not c.family}
    expected = sum(_scored_has_digit(q.qname, q.role) for q in trace.lookups if q.client in benign_ids)
    assert 0 < expected < p["benign"]["lookups"]
    assert p["benign"]["blocked"] == expected
    assert p["benign"]["lookups"] == sum(q.client in benign_ids for q in trace.lookups)
    health = p["health"]
    assert health["verdicts"].get("lost", 0) == 0 and health["verdicts"].get("error", 0) == 0
    assert health["blocked_by_answers"] == health["blocked_by_log"]
    assert set(health["log_block_reasons"]) <= {"model", "cache"}  # scored now, or a verdict kept from before
    assert health["log_lines"] == len(trace.lookups)
    # bench/replay_folds.py over this result as two folds, each leaving out one family: every family is
    # read from the fold that left it out, the benign side summed over the runs
    import replay_folds

    for k, fam in enumerate(("digitfam", "wordfam")):
        fold = {
            **result,
            "passes": {n: {**r, "families": {fam: r["families"][fam]}} for n, r in result["passes"].items()},
        }
        (tmp_path / f"replay-fold{k}.json").write_text(json.dumps(fold))
    summary = replay_folds.summarise(replay_folds.load(tmp_path))
    assert summary["folds"] == ["fold0", "fold1"] and summary["families"]["wordfam"]["fold"] == "fold1"
    off = summary["passes"]["watch off"]
    assert off["mean_c2_all_share"] == 0.5 and off["families_ge_0.9"] == 1 and off["lowest"][0] == ("wordfam", 0.0)
    assert (
        off["benign"]["blocked"] == 2 * p["benign"]["blocked"] and off["benign"]["clients"] == 2 * SMALL.benign_clients
    )
    assert "| wordfam | fold1 | 0/" in replay_folds.render(summary)
    (tmp_path / "replay-fold2.json").write_text((tmp_path / "replay-fold0.json").read_text())
    with pytest.raises(SystemExit, match="digitfam is in fold0 and fold2"):
        replay_folds.summarise(replay_folds.load(tmp_path))


def test_lookups_until_flagged_count_the_clients_dga_lookups_in_log_order() -> None:
    trace = generate(SMALL, BENIGN, FAMILIES)
    infected = next(c for c in trace.clients if c.family and len(c.walk) >= 3)
    other = next(c for c in trace.clients if not c.family)
    log = [{"client": infected.address, "qname": n, "action": "pass"} for n in infected.walk[:3]]
    log += [{"client": other.address, "qname": infected.walk[0], "action": "pass"}]  # not its own DGA name
    log += [{"time": "2026-12-01T16:00:00.000+00:00", "event": "client_flagged", "client": infected.address}]
    log += [{"client": infected.address, "qname": infected.walk[3 % len(infected.walk)], "action": "sinkhole"}]
    log += [{"time": 1.0, "event": "client_flagged", "client": infected.address}]  # only the first flag counts
    flags = replay.flags_from_log(trace, log)["flagged"]
    assert list(flags) == [infected.address]
    assert flags[infected.address]["dga_lookups_before"] == 3
