"""The client watch's rule and state, driven by an injected clock (no sockets): what counts as
evidence, when a client is flagged, which name becomes a likely C2, and that memory stays bounded."""

from __future__ import annotations

import gc
import gzip
import math
import random
import string
import sys
from pathlib import Path

import pytest

from resolverguard.watch import (
    ADOPT_SLACK,
    BEACON_GAP,
    LABELS_PER_TURN,
    NearbyLabels,
    PopularNames,
    WatchLimits,
    WatchRule,
    WatchState,
)

DGA = Path("/work/shared/data/dga")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def popular() -> PopularNames:
    return PopularNames.bundled()


def state_for(popular: PopularNames, clock: Clock, **rule: object) -> WatchState:
    return WatchState(WatchRule(**rule), WatchLimits(), popular, clock)  # type: ignore[arg-type]


def walk(state: WatchState, clock: Clock, client: str, names: list[str], step: float = 1.0) -> int | None:
    """Feeds NXDOMAINs one by one; how many it took to flag the client (None: never)."""
    for count, name in enumerate(names, 1):
        clock.now += step
        if state.nxdomain(client, name, None) is not None:
            return count
    return None


def test_alike_names_flag_at_the_second_and_unlike_ones_at_the_third(popular: PopularNames) -> None:
    clock = Clock()
    state = state_for(popular, clock)
    alike = ["qzkvbrtw.com", "pwxmnbvq.com", "lkjhgfzx.com", "zzqqwvbn.com"]
    unlike = ["qzkvbrtw.com", "pw-xmnb.org", "lkjhgfzx77.net", "zq.info", "mnbvcxzlkq.biz"]
    rule = state.rule  # 1 + (1 + alike) reaches flag_at, 1 + 1 does not, 1 + 1 + 1 does: the rule's numbers
    assert 1 + (1 + rule.alike_bonus) >= rule.flag_at > 2 and rule.flag_at <= 3
    assert walk(state, clock, "10.0.0.1", alike) == 2
    assert walk(state, clock, "10.0.0.2", unlike) == 3


def test_a_dead_link_in_a_page_load_counts_half(popular: PopularNames) -> None:
    clock = Clock()
    state = state_for(popular, clock)
    unlike = ["qzkvbrtw.com", "pw-xmnb.org", "lkjhgfzx77.net", "mnbvcxzlkq.biz", "zq-1.info"]
    taken = None
    for count, name in enumerate(unlike, 1):
        clock.now += 10
        state.resolved("10.0.0.1", "wikipedia.org", when=clock.now)  # the page
        clock.now += 0.05
        if state.nxdomain("10.0.0.1", name, None) is not None:  # its dead link
            taken = count
            break
    assert taken == math.ceil(state.rule.flag_at / state.rule.page_weight)


def test_typos_probes_and_known_names_are_no_evidence(popular: PopularNames) -> None:
    clock = Clock()
    state = state_for(popular, clock)
    state.resolved("10.0.0.9", "myneighbourhoodshop.de")  # the network resolves it
    typos = ["gooogle.com", "amazonn.com", "facebok.com", "wikipeida.org", "youtube.cm", "wwwnetflix.com"]
    known = ["myneighbourhoodshop.de", "myneighborhoodshop.de"]  # known, and one edit from known
    assert walk(state, clock, "10.0.0.1", typos + known) is None
    assert "10.0.0.1" not in state.clients or not state.clients["10.0.0.1"].names


def test_window_forgets_old_evidence(popular: PopularNames) -> None:
    clock = Clock()
    state = state_for(popular, clock, window_seconds=60.0)
    names = ["qzkvbrtw.com", "pw-xmnb.org", "lkjhgfzx77.net", "mnbvcxzlkq.biz"]
    assert walk(state, clock, "10.0.0.1", names, step=40.0) is None  # never more than 2 in a minute


@pytest.mark.parametrize("family", ["dircrypt", "suppobox", "ramnit", "pykspa", "qsnatch"])
def test_family_walk_is_flagged_within_five_names(popular: PopularNames, family: str) -> None:
    with gzip.open(DGA / f"{family}.txt.gz", "rt") as f:
        names = [next(f).strip() for _ in range(40)]
    clock = Clock()
    state = state_for(popular, clock)
    taken = walk(state, clock, "10.0.0.1", names)
    assert taken is not None and taken <= 5


def test_a_name_that_resolved_in_the_burst_and_is_asked_again_becomes_likely_c2(popular: PopularNames) -> None:
    clock = Clock()
    state = state_for(popular, clock)
    state.resolved("10.0.0.2", "wikipedia.org")
    clock.now += 5
    state.resolved("10.0.0.1", "wikipedia.org")  # shared: never a C2
    walk(state, clock, "10.0.0.1", ["qzkvbrtw.com"], step=5)
    clock.now += 5
    assert state.resolved("10.0.0.1", "zxcvbnmasd.biz") == []  # not flagged yet: only remembered
    clock.now += 1
    state.resolved("10.0.0.1", "zxcvbnmasd.biz")  # a page's second name, not a beacon yet
    clock.now += BEACON_GAP
    state.resolved("10.0.0.1", "zxcvbnmasd.biz")  # the beacon
    state.resolved("10.0.0.1", "unlikename-here.org")
    clock.now += BEACON_GAP
    state.resolved("10.0.0.1", "unlikename-here.org")  # asked again, but not like the walk
    clock.now += 5
    flag = walk(state, clock, "10.0.0.1", ["lkjhgfzx77.net", "mnbvcxzlkq.biz"], step=5)
    assert flag == 2
    flag_ = state.flag_of("10.0.0.1")
    assert flag_ is not None
    found = state.c2_at_flag(flag_)
    assert [c.name for c in found] == ["zxcvbnmasd.biz"]
    assert state.c2_until("zxcvbnmasd.biz") is not None and state.c2_until("wikipedia.org") is None
    # quarantine: new names and cluster look-alikes for the flagged client, popular names pass
    assert state.quarantines(flag_, "brandnewthing.io") and not state.quarantines(flag_, "wikipedia.org")
    clock.now += state.rule.c2_seconds
    assert state.c2_until("zxcvbnmasd.biz") is None and state.flag_of("10.0.0.1") is None


def test_a_name_another_client_resolved_is_never_a_likely_c2(popular: PopularNames) -> None:
    clock = Clock()
    state = state_for(popular, clock)
    state.resolved("10.0.0.1", "sharedshop.biz")  # like the walk below, and asked again: but shared
    state.resolved("10.0.0.2", "sharedshop.biz")
    clock.now += BEACON_GAP
    state.resolved("10.0.0.1", "sharedshop.biz")
    flag = None
    for name in ["qzkvbrtw.com", "pw-xmnb.org", "lkjhgfzx77.net", "mnbvcxzlkq.biz"]:
        clock.now += 2
        flag = flag or state.nxdomain("10.0.0.1", name, None)
    assert flag is not None and state.c2_at_flag(flag) == []


def deep_size(*roots: object) -> int:
    """Bytes held by the objects reachable from `roots` (each counted once)."""
    seen: set[int] = set()
    stack, total = list(roots), 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def test_memory_stays_bounded_under_100k_clients(popular: PopularNames) -> None:
    clock = Clock()
    limits = WatchLimits(max_clients=2000, max_flagged=100, known_names=5000)
    state = WatchState(WatchRule(), limits, popular, clock)
    for i in range(100_000):
        clock.now += 0.001
        client = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        for j in range(3):
            state.nxdomain(client, f"q{i:07d}x{j}{'z' * 24}.com", None)
        state.resolved(client, f"n{i}.net")
    assert len(state.clients) == limits.max_clients and len(state.flagged) <= limits.max_flagged
    assert len(state.known) <= limits.known_names
    held = deep_size(
        state.clients,
        state.flagged,
        state.known,
        state.known_order,
        state.known_labels,
        state.likely_c2,
    )
    assert held <= limits.bytes_bound(state.rule.window_names)


def test_a_flood_of_new_clients_cannot_evict_a_flag(popular: PopularNames) -> None:
    clock = Clock()
    state = WatchState(WatchRule(), WatchLimits(max_clients=100), popular, clock)
    assert walk(state, clock, "10.0.0.1", ["qzkvbrtw.com", "pwxmnbvq.com", "lkjhgfzx.com"]) is not None
    for i in range(1000):
        state.nxdomain(f"10.1.{i >> 8}.{i & 255}", "zzqqwvbn.com", None)
    assert state.flag_of("10.0.0.1") is not None
    assert all(state.flag_of(f"10.1.{i >> 8}.{i & 255}") is None for i in range(1000))


def test_a_fleet_finding_read_twice_is_adopted_once_and_a_real_extension_again(popular: PopularNames) -> None:
    """Catch-up and the publish can both deliver one finding; its end, mapped from wall clock onto
    this clock at two moments, differs by microseconds: that is no news (CI saw it counted twice)."""
    clock = Clock()
    state = state_for(popular, clock)
    assert state.adopt_c2("c2.example", "10.0.0.1", clock.now + 600)
    assert not state.adopt_c2("c2.example", "10.0.0.1", clock.now + 600.000_3)
    assert state.adopt_c2("c2.example", "10.0.0.1", clock.now + 600 + 2 * ADOPT_SLACK)
    assert state.adopt_flag("10.0.0.2", ["qzkvbrtw.com"], clock.now + 600, 3.0)
    assert not state.adopt_flag("10.0.0.2", ["qzkvbrtw.com"], clock.now + 600.000_3, 3.0)
    assert state.adopt_flag("10.0.0.2", ["qzkvbrtw.com"], clock.now + 600 + 2 * ADOPT_SLACK, 3.0)


def _one_edit_away(a: str) -> set[str]:
    """Every label one insert, delete, replace or swap from `a`, and `a` (by brute force)."""
    letters = "abcdefghijklmnopqrstuvwxyz0123456789-"
    variants = {a}
    for i in range(len(a) + 1):
        variants.update(a[:i] + c + a[i:] for c in letters)
    for i in range(len(a)):
        variants.add(a[:i] + a[i + 1 :])
        variants.update(a[:i] + c + a[i + 1 :] for c in letters)
        if i + 1 < len(a):
            variants.add(a[:i] + a[i + 1] + a[i] + a[i + 2 :])
    return variants


def test_nearby_labels_finds_exactly_the_labels_one_edit_away() -> None:
    rng = random.Random(5)
    known = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 14))) for _ in range(400)]
    index = NearbyLabels()
    for label in known[:200]:
        index.add(label)
    assert not index.near("qqqqqqqqqq")  # files the first 200 (filing is lazy: the rest are removed unfiled)
    for label in known[200:] + known[:50]:  # some twice: a label can come from two registrables
        index.add(label)
    for label in known[:50]:
        index.remove(label)  # still there once
    for label in known[150:200] + known[350:]:
        index.remove(label)  # gone (filed before, and never filed)
    present = known[:150] + known[200:350]
    queries = [q for p in known for q in (p[1:], p[:3] + "x" + p[3:], p[:2] + p[3] + p[2] + p[4:], "zz" + p[2:])]
    queries += ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 14))) for _ in range(200)]
    for q in queries:
        assert index.near(q) == bool(_one_edit_away(q) & set(present)), q


def test_nearby_labels_queue_stays_bounded_on_a_stream_nobody_looks_up() -> None:
    """A stream of never-seen names (a flagged client's misses) adds and removes labels with no
    lookup to file them: the queue of unfiled labels is compacted, and lookups stay exact."""
    index = NearbyLabels()
    for i in range(30_000):
        index.add(f"label{i:06d}")
        if i >= 1000:
            index.remove(f"label{i - 1000:06d}")
        assert len(index._unfiled) <= 2 * (len(index) + 1) + NearbyLabels.FILE_PER_LOOKUP
    assert len(index) == 1000
    assert index.near("label029999z") and index.near("labl029000")  # present: one edit away
    assert not index.near("label000500z") and "label028999" not in index  # gone


def test_a_typo_check_after_a_long_stream_of_new_names_counts_their_labels_a_turn_at_a_time(
    popular: PopularNames,
) -> None:
    """Labels of the network's names are counted only when a typo check needs them; a backlog
    longer than LABELS_PER_TURN is counted over several calls (turns of the loop), the NXDOMAIN
    handed back meanwhile, and then read like any other: a typo of the newest name is no evidence."""
    clock = Clock()
    state = state_for(popular, clock)
    backlog = 2 * LABELS_PER_TURN + 100
    names = [f"shop{i:05d}{'q' * 8}.biz" for i in range(backlog)]
    state.observe(iter([("10.0.0.9", name, None, clock.now, None) for name in names]), [], [])
    typo = names[-1].replace("shop", "shpo")
    events = iter([("10.0.0.1", typo, None, None, "b"), ("10.0.0.1", "qzkvbrtwxy.com", None, None, "b")])
    turns, stopped = 0, state.observe(events, [], [])
    while stopped is not None:  # as the step does: the event handed back, then the rest
        turns += 1
        events = iter([stopped, *events])
        stopped = state.observe(events, [], [])
    assert turns == math.ceil(backlog / LABELS_PER_TURN) - 1
    window = [facts.key for _, facts, _ in state.clients["10.0.0.1"].names]
    assert window == ["qzkvbrtwxy.com"]  # the typo counted nothing; the unknown name after it did


def test_a_counted_label_leaves_with_the_last_known_name_that_has_it(popular: PopularNames) -> None:
    """A known name's label is counted (a typo check needed it) and leaves `known_labels` when the
    name leaves the known names, the oldest first; a label two registrables share (shop.com,
    shop.net) stays while one of them is known. Typos of a name gone are evidence again."""
    clock = Clock()
    state = WatchState(WatchRule(), WatchLimits(known_names=4), popular, clock)
    for name in ("qzvbrtkwmn.com", "qzvbrtkwmn.net", "xwplmkrtzq.org", "vbnmzqtrwk.biz"):
        state.resolved("10.0.0.9", name)
    typos = ["qzvbrtkwnm.info", "xwplmkrtq.info", "vbnmzqtrwkk.info"]  # swap, deletion, insertion
    for typo in typos:
        clock.now += 1
        assert state.nxdomain("10.0.0.1", typo, None) is None
    assert "10.0.0.1" not in state.clients and state.labels_counted == 4
    state.resolved("10.0.0.9", "mmmmmmmmmm.com")  # qzvbrtkwmn.com leaves; its label stays (.net)
    clock.now += 1
    assert state.nxdomain("10.0.0.2", "qzvbrtkwnm.biz", None) is None and "10.0.0.2" not in state.clients
    for name in ("nnnnnnnnnn.com", "oooooooooo.com", "pppppppppp.com"):  # the other three leave
        state.resolved("10.0.0.9", name)
    assert len(state.known_labels) == 1 and "mmmmmmmmmm" in state.known_labels  # counted at the .biz check
    walked = [typo.replace(".info", ".cc") for typo in typos]
    assert walk(state, clock, "10.0.0.3", walked) is not None  # no typos any more: evidence, a flag
    assert [facts.key for facts in state.flag_of("10.0.0.3").names] == walked[: len(state.clients["10.0.0.3"].names)]
