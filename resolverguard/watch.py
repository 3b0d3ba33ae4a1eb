"""Client watch: the evidence that a client is walking a DGA's list, read from the answers it gets.

A name classifier cannot tell `mightsquare.net` (suppobox, a wordlist DGA) from a real shop, but a
resolver sees what no classifier sees: an infected machine asks for name after name that does not
exist, until the one its operator registered resolves; then it stops walking and beacons to it.
A benign client rarely gets NXDOMAIN for a registrable domain nobody uses, and when it does the
name is a typo of a real one, a dead link, or a browser probe (a single label, never registrable).
(The idea of Pleiades, Antonakakis et al. 2012, and FANCI, Schüppen et al. 2018.)

Everything here is plain state with an injected clock, so the rule can be tested and measured
without sockets: `WatchState.nxdomain` adds evidence and may raise a `Flag`; `resolved` keeps the
network's recently resolved names and each client's ring of new ones, from which a flag picks the
likely C2; `block_reason` is what the watch check asks per query.

Evidence (the rule; the measurements behind it are in docs/client-watch.md):
  * only NXDOMAIN for a registrable domain that is *unknown* counts: not resolved on this network
    recently, not a popular name, not one edit away from either (typos), not a single label or a
    local name. Subdomains of a known registrable (dead hostnames) do not count.
  * each unknown name is worth 1 point (`page_weight` when it came within `page_gap` of one of the
    client's answers: a page load's dead link, measured as the cause of every benign flag on the
    replay traces); +`alike_bonus` when it looks like a name already in the
    window (same suffix, same character classes, length within 2), as a family's names do and
    unrelated typos do not; +`score_bonus` when the model already found it suspicious.
  * a client is flagged when its window (the last `window_names` such names within
    `window_seconds`) holds `flag_at` points.

Bounded: at most `max_clients` clients with evidence (oldest forgotten first), `window_names`
names each, `max_flagged` flags (kept apart, so a flood of new addresses cannot evict a flag),
`known_names` network-resolved names and `recent_resolved` new names per client; see
`WatchLimits.bytes_bound` for what that costs.
"""

from __future__ import annotations

import gzip
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from sys import intern
from typing import TypeVar

import numpy as np

from resolverguard.names import DYNAMIC_DNS_SUFFIXES, RegistrableName

# The label of every domain at least two top lists hold (56,392 labels), made from the training data:
#   zcat benign_sources.tsv.gz | awk -F'\t' 'NR>1 && $2>=2 {split($1,a,"."); print a[1]}' | sort -u | gzip -9
POPULAR_LABELS = Path(__file__).resolve().parent / "data" / "popular-labels.txt.gz"
BEACON_GAP = 2.0  # seconds between two lookups of a name for the second to count as a beacon
MIN_TYPO_LENGTH = 5  # shorter labels are one edit from too many real names (measured: bench/watch_rule.py)

LABELS_PER_TURN = 4096  # known names' labels counted at most per turn of the loop (~1-2 ms; WatchState.observe)
ADOPT_SLACK = 1.0  # seconds: a fleet finding read twice (catch-up and publish) is the same one, not an extension
T = TypeVar("T")
# What an answer said (WatchState.observe): client, registrable, score, when it resolved (None: an
# NXDOMAIN), and a tag of the caller's that comes back with a flag the event raised
Event = tuple[str, str, float | None, float | None, T]


@dataclass(frozen=True, slots=True)
class WatchRule:
    """How evidence adds up to a flag, and what a flag does for how long."""

    flag_at: float = 2.5  # points in the window that flag a client
    alike_bonus: float = 0.5  # a name like one already in the window
    score_bonus: float = 1.0  # a name the model scored at or above `suspicious_score`
    suspicious_score: float | None = None  # the model's log threshold (resolved from the model)
    window_seconds: float = 120.0
    window_names: int = 16
    quarantine_seconds: float = 3600.0  # how long a flag lasts
    c2_seconds: float = 86400.0  # how long a likely C2 stays blocked for everyone
    burst_gap: float = 60.0  # a new name resolved this close to an NX of the burst may be its C2
    max_c2_per_flag: int = 3
    max_probes_per_flag: int = 32  # quarantined look-alike names resolved in the background, per flag
    page_gap: float = 1.0  # an NXDOMAIN this soon after one of the client's answers is part of a page load...
    page_weight: float = 0.5  # ...a dead link, more likely than a DGA walk: it counts this much
    beacon_points: float = 1.5  # a new name of the burst's suffix, resolved in it, asked again (0: off)


@dataclass(frozen=True, slots=True)
class WatchLimits:
    max_clients: int = 10_000
    max_flagged: int = 1_000
    known_names: int = 50_000
    recent_resolved: int = 8
    max_c2: int = 10_000

    def bytes_bound(self, window_names: int) -> int:
        """A generous upper bound on the state's memory, for the docs and the 100k-client test:
        ~400 bytes per evidence name (tuple + facts + strings), ~300 per client, ~200 per recent
        name or likely C2, ~600 per known name."""
        return (
            self.max_clients * (300 + window_names * 400 + self.recent_resolved * 200)
            + self.max_flagged * (1000 + window_names * 100)
            + self.known_names * 600  # the name, its owner, its label filed twice in NearbyLabels
            + self.max_c2 * 200
        )


def watch_key(name: RegistrableName) -> str | None:
    """The registrable domain a DGA would register; under a dynamic-DNS provider the label below
    it (`x.mooo.com`, not `mooo.com`: several providers are not in the Public Suffix List)."""
    reg = name.registrable
    if reg is None or name.label is None:
        return None
    if reg in DYNAMIC_DNS_SUFFIXES and len(name.qname) > len(reg):
        return name.qname[: -len(reg) - 1].rsplit(".", 1)[-1] + "." + reg
    return reg


def shape_of(label: str) -> str:
    """The character classes of a label: `a` letters only, `a0` with digits, `a-` with hyphens."""
    digits = any(c.isdigit() for c in label)
    return ("a" if not label.isdigit() else "") + ("0" if digits else "") + ("-" if "-" in label else "")


@dataclass(frozen=True, slots=True)
class NameFacts:
    """What is cheap to know about one NXDOMAIN name, kept in the client's window."""

    key: str  # registrable domain (see watch_key)
    label: str
    suffix: str
    shape: str
    score: float | None

    @classmethod
    def of(cls, key: str, score: float | None) -> NameFacts:
        label, _, suffix = key.partition(".")
        return cls(key, label, suffix, shape_of(label), score)

    def alike(self, other: NameFacts) -> bool:
        """Same suffix, same character classes, similar length: how a family's names resemble
        each other (measured: a random pair of long-tail benign names matches ~5% of the time)."""
        same_kind = self.suffix == other.suffix and self.shape == other.shape
        return same_kind and abs(len(self.label) - len(other.label)) <= 2


class PopularNames:
    """Popular labels (bundled) plus labels resolved on this network: a name one edit away from
    one of them is a typo, not a DGA name.

    One edit is checked with deletions only (the symmetric-delete idea of SymSpell): `q` is one
    insert, delete, substitute or swap from `p` when `q` is `p`, a deletion of `p`, `p` is a
    deletion of `q`, or they share a deletion. Deletions of the popular labels are kept as 64-bit
    hashes in a sorted array (~4 MB for 56k labels instead of ~40 MB of strings), so a check is
    ~20 lookups (~15 us) instead of ~800 generated variants (~170 us, measured). Labels known from
    the network are checked for the cheap kinds only (exact, one extra letter, swapped letters).
    """

    def __init__(self, labels: Iterable[str]) -> None:
        self.labels = frozenset(labels)
        hashes = (hash(d) for label in self.labels if len(label) >= MIN_TYPO_LENGTH for d in _deletions(label))
        self._deletions = np.unique(np.fromiter(hashes, dtype=np.int64))

    @classmethod
    def bundled(cls, path: Path = POPULAR_LABELS) -> PopularNames:
        with gzip.open(path, "rt", encoding="ascii") as f:
            return cls(line.strip() for line in f if line.strip())

    def typo_of_known(self, label: str, known: NearbyLabels) -> bool:
        """True when the label is a popular or known label, or one edit from one (see above)."""
        if self._hit(label, known):
            return True
        if label.startswith("www") and self._hit(label[3:], known):
            return True  # wwwexample.com: the dot forgotten
        if len(label) < MIN_TYPO_LENGTH:
            return False
        deletions = list(_deletions(label))
        if any(self._hit(d, known) for d in deletions):
            return True  # one letter too many
        swaps = (label[:i] + label[i + 1] + label[i] + label[i + 2 :] for i in range(len(label) - 1))
        if any(self._hit(s, known) for s in swaps):
            return True
        if self._shares_deletion([label, *deletions]):  # a popular name with one letter missing or replaced
            return True
        return known.near(label)

    def _hit(self, label: str, known: NearbyLabels) -> bool:
        return label in self.labels or label in known

    def _shares_deletion(self, variants: list[str]) -> bool:
        table = self._deletions
        if not len(table):
            return False
        wanted = np.fromiter((hash(v) for v in variants), dtype=np.int64, count=len(variants))
        at = np.minimum(np.searchsorted(table, wanted), len(table) - 1)
        return bool((table[at] == wanted).any())


class NearbyLabels:
    """The labels resolved on this network, so that a name one edit from one of them is found in a
    few dict lookups. One edit leaves either the first or the last `_half(n)` letters of an
    n-letter label untouched, so each label is filed under both; a query looks in the buckets of
    lengths n-1, n, n+1 and checks the few labels there exactly (`one_edit`). Generating every
    variant instead cost ~200 us per name with 50k known labels (measured; this: ~10 us), and
    the index grows and shrinks with the network's names, which a sorted array cannot.

    Filing is lazy: `add` only counts the label (exact lookups stay exact) and queues it; `near`,
    which runs for a client's unknown NXDOMAIN (rare), files the queue first, at most
    `FILE_PER_LOOKUP` labels a time. A label that leaves before it was ever needed is never filed:
    on a stream of new names (every query a never-seen name, bench/compare.py's misses) filing
    each one cost ~1.5 us of the watch's ~4 us per answer (bench/results/watch_cost.md). The queue
    is a plain deque and a label's count says whether it is filed (negative: filed), so a label
    coming and going costs two dict operations and an append, not two OrderedDict operations more
    (~1 us of a never-seen name's ~3.5 us, measured); an entry of a label that left or was filed
    since is skipped when met, and the queue is compacted when it outgrows the labels it serves."""

    FILE_PER_LOOKUP = 4096  # ~5 ms on the loop at most; the rest is filed by the next lookups

    def __init__(self) -> None:
        self._buckets: dict[str, list[str]] = {}
        # label -> how many registrables have it (google.com, google.de), negated once it is filed
        self._count: dict[str, int] = {}
        self._unfiled: deque[str] = deque()  # to file, oldest first; may hold labels gone or filed since

    def __contains__(self, label: object) -> bool:
        return label in self._count

    def __len__(self) -> int:
        return len(self._count)

    def add(self, label: str) -> None:
        counts = self._count
        seen = counts.get(label, 0)
        if seen:
            counts[label] = seen + 1 if seen > 0 else seen - 1
            return
        counts[label] = 1
        if len(label) >= MIN_TYPO_LENGTH:
            unfiled = self._unfiled
            unfiled.append(label)
            if len(unfiled) > 2 * len(counts) + self.FILE_PER_LOOKUP:
                self._compact()

    def remove(self, label: str) -> None:
        counts = self._count
        seen = counts.get(label, 0)
        if seen > 1 or seen < -1:
            counts[label] = seen - 1 if seen > 0 else seen + 1
            return
        if not seen:
            return
        del counts[label]
        if seen > 0:
            return  # never filed: its entry in the queue is skipped when met
        for key in _bucket_keys(label, len(label)):
            bucket = self._buckets.get(key)
            if bucket is not None and label in bucket:
                bucket.remove(label)
                if not bucket:
                    del self._buckets[key]

    def _compact(self) -> None:
        """The queue without the labels that left or were filed since (each once): on a stream of
        new names that nobody looks up, it would otherwise grow by one per name."""
        counts = self._count
        self._unfiled = deque(label for label in dict.fromkeys(self._unfiled) if counts.get(label, 0) > 0)

    def _file(self) -> None:
        """Files up to FILE_PER_LOOKUP labels of the queue, oldest first; the entries it skips (gone,
        or filed already: the label came back after it left) are at most the queue's bound."""
        unfiled, counts, buckets = self._unfiled, self._count, self._buckets
        filed = 0
        while unfiled and filed < self.FILE_PER_LOOKUP:
            label = unfiled.popleft()
            seen = counts.get(label, 0)
            if seen <= 0:
                continue
            counts[label] = -seen
            for key in _bucket_keys(label, len(label)):
                buckets.setdefault(key, []).append(label)
            filed += 1

    def near(self, label: str) -> bool:
        """True when a known label is one edit from `label` (or is it)."""
        if label in self._count:
            return True
        if self._unfiled:
            self._file()
        size = len(label)
        for n in (size - 1, size, size + 1):
            if n < MIN_TYPO_LENGTH:
                continue
            for key in _bucket_keys(label, n):
                if any(one_edit(label, known) for known in self._buckets.get(key, ())):
                    return True
        return False


def _half(n: int) -> int:
    return max(2, (n - 2) // 2)


def _bucket_keys(label: str, n: int) -> tuple[str, str]:
    """The buckets where n-letter labels one edit from `label` are filed: same first or last letters."""
    half = _half(n)
    return f"{n}<{label[:half]}", f"{n}>{label[-half:]}"


def one_edit(a: str, b: str) -> bool:
    """`a` and `b` are equal or one insert, delete, replace or swap of neighbours apart."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    i, shortest = 0, min(la, lb)
    while i < shortest and a[i] == b[i]:
        i += 1
    if la == lb:
        if a[i + 1 :] == b[i + 1 :]:
            return True  # one letter replaced
        return i + 1 < la and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]  # swapped
    return a[i + 1 :] == b[i:] if la > lb else a[i:] == b[i + 1 :]


def _deletions(label: str) -> Iterable[str]:
    return (label[:i] + label[i + 1 :] for i in range(len(label)))


# A flagged client's NXDOMAIN in its window: its time marks the burst a likely C2 must fall in; it
# is no evidence (0 points, like nothing: no suffix) and costs no NameFacts, no typo check, no scan.
_ONLY_WHEN = NameFacts("", "", "\x00", "", None)


@dataclass(slots=True)
class _Resolved:
    """A new name that resolved for a client: a likely C2 if it came in the NX burst and is asked
    again (the malware's beacons; a page's long-tail name is asked once, then cached)."""

    when: float
    key: str
    suspicious: bool  # the model scored it at or above suspicious_score
    lookups: int = 1  # lookups at least BEACON_GAP apart (a page's www/cdn/api names come together)
    last: float = 0.0

    def asked(self, now: float) -> None:
        if now - max(self.when, self.last) >= BEACON_GAP:
            self.lookups += 1
        self.last = now

    def asked_soon(self, now: float) -> bool:
        """`asked` for a lookup within BEACON_GAP of the last one (True), which counts for nothing
        but its time: noted on the answer's way out, not sent to the step's inbox and its loop
        callback (~3 us each, and a client asks a fresh name again and again in seconds)."""
        if now - max(self.when, self.last) >= BEACON_GAP:
            return False
        self.last = now
        return True


# A new name in a client's ring until it is asked again: when it resolved, and whether the model
# found it suspicious (`_Evidence.entry` makes it a _Resolved when it is)
_Fresh = tuple[float, bool]


@dataclass(slots=True)
class _Evidence:
    """One client's window of unknown NXDOMAIN names and its ring of newly resolved names."""

    names: deque[tuple[float, NameFacts, float]]  # (when, facts, points)
    resolved: dict[str, _Resolved | _Fresh]  # new names that resolved for it (nobody else had), oldest first
    client: str  # its address, interned: the one string the known names hold for it (`observe`)
    c2_marked: int = 0  # likely C2 names this client's flags recorded (at most max_c2_per_flag per flag)
    probed: dict[str, _Resolved] = field(default_factory=dict)  # quarantined look-alikes since the flag

    def entry(self, key: str) -> _Resolved | None:
        """The ring's entry for `key`, made a _Resolved on first use. Most new names are never
        asked again (a page's long tail), and a _Resolved per new name was an object the
        collector kept walking until the ring let it go; a (float, bool) tuple it stops
        tracking at its first pass. (With the known names' tuples, `WatchState.known_order`:
        ~7% more collections per never-seen name with the watch on, ~1% without them;
        bench/results/watch_cost.md.)"""
        found = self.resolved.get(key)
        if found is None or isinstance(found, _Resolved):
            return found
        entry = self.resolved[key] = _Resolved(found[0], key, found[1])  # (its place in the ring kept)
        return entry

    def entries(self) -> list[_Resolved]:
        return [entry for entry in map(self.entry, list(self.resolved)) if entry is not None]

    def prune(self, now: float, window: float) -> None:
        while self.names and now - self.names[0][0] > window:
            self.names.popleft()

    @property
    def points(self) -> float:
        return sum(points for _, _, points in self.names)


@dataclass(frozen=True, slots=True)
class Flag:
    """A client the watch flagged: the names that convinced it, and until when it lasts."""

    client: str
    since: float
    until: float
    names: tuple[NameFacts, ...]
    points: float

    def cluster_match(self, facts: NameFacts) -> bool:
        return any(facts.alike(seen) for seen in self.names)

    def describe(self) -> str:
        """The cluster in words, for the alert: `12-16 letters, .com .net`."""
        lengths = sorted(len(f.label) for f in self.names)
        suffixes = sorted({f.suffix for f in self.names})
        shapes = {"a": "letters", "a0": "letters+digits", "0": "digits"}
        kinds = sorted({shapes.get(f.shape, "with hyphens") for f in self.names})
        shown = " ".join("." + s for s in suffixes[:4]) + (" ..." if len(suffixes) > 4 else "")
        return f"{lengths[0]}-{lengths[-1]} chars, {'/'.join(kinds)}, {shown}"


@dataclass(frozen=True, slots=True)
class LikelyC2:
    name: str
    client: str
    until: float


@dataclass(slots=True)
class WatchState:
    """The network's watch: per-client evidence, flags, likely C2 names and recently resolved
    names. Lives across reloads (the service hands it to the next pipeline); `rule` may change."""

    rule: WatchRule = field(default_factory=WatchRule)
    limits: WatchLimits = field(default_factory=WatchLimits)
    popular: PopularNames = field(default_factory=lambda: PopularNames(()))
    clock: Callable[[], float] = time.monotonic
    # OrderedDicts: the oldest entry goes first in O(1) (a dict's next(iter()) after many deletions
    # from its front walks the deleted slots: quadratic under a flood of new clients or names)
    clients: OrderedDict[str, _Evidence] = field(default_factory=OrderedDict)  # least recent first
    flagged: dict[str, Flag] = field(default_factory=dict)
    likely_c2: OrderedDict[str, LikelyC2] = field(default_factory=OrderedDict)
    # registrable -> the one client that resolved it, or "" once several have; `known_order` holds the
    # same names, oldest first, so the oldest goes first in O(1) without an OrderedDict's upkeep (a
    # deque of strings: a tuple per new name was one more object the collector counted, see
    # `_Evidence.entry`). A name's label is cut from it when it is counted and again when it leaves
    # (`_count_labels`, `observe`), not kept beside it: a copy per known name was ~55 bytes x 50k
    # names of memory written for each never-seen name and read again when it left, while on a
    # flagged client's stream of new names no label is ever counted.
    known: dict[str, str] = field(default_factory=dict)
    known_order: deque[str] = field(default_factory=deque)
    # the labels of the oldest `labels_counted` names of `known_order` (the rest: `_count_labels`)
    known_labels: NearbyLabels = field(default_factory=NearbyLabels)
    labels_counted: int = 0
    # names that have left `known`, ever: a name leaves no other way (oldest first, `observe`), so
    # while this stands still every name `known` held stands as it was but for "" (several clients),
    # and what `ClientWatchStep.seen_repeat` said of its repeats still holds (the repeat shortcut
    # keeps a quiet client across seconds on it)
    known_left: int = 0
    last_answer: dict[str, float] = field(default_factory=dict)  # client -> when a name last resolved for it
    raised: list[Flag] = field(default_factory=list)  # flags `resolved` raised, for the step to announce
    flags_raised: int = 0
    c2_found: int = 0
    # told of each flag and likely C2 this instance finds (resolverguard.sync publishes them to the fleet)
    on_found: Callable[[Flag | LikelyC2], None] | None = None

    @classmethod
    def carried(cls, old: WatchState | None, rule: WatchRule, limits: WatchLimits) -> WatchState:
        """Flags, likely C2 names and evidence survive a reload (an infected client must not be
        released by an unrelated policy change); the new rule and bounds apply from now on."""
        if old is None:
            return cls(rule, limits, PopularNames.bundled())
        old.rule, old.limits = rule, limits
        return old

    # -- what the answers tell us ------------------------------------------------------------
    def resolved(self, client: str, key: str, score: float | None = None, when: float | None = None) -> list[LikelyC2]:
        """A NOERROR answer with records for `key` (`when`: the query's arrival, else now): `answered`,
        then `observe` if it has more to read; a flag it raises is left in `raised`."""
        when = self.clock() if when is None else when
        found: list[LikelyC2] = []
        if self.answered(client, key, when):
            raised: list[tuple[Flag, None]] = []
            self.observe(iter([(client, key, score, when, None)]), found, raised)
            self.raised.extend(flag for flag, _ in raised)
        return found

    def answered(self, client: str, key: str, when: float) -> bool:
        """What a NOERROR answer with records tells at once, on the answer's way out (the step's
        `seen`, for every answer, cached ones too): the client's last answer (a page load), and
        nothing more for a name several clients use or a name of this client's already asked again:
        two to four dict operations. True when `observe` has more to read, in the answers' order: a
        name new to the network, one another client resolved first, or this client's own new name
        asked again BEACON_GAP or more after its last lookup (a beacon?; one asked sooner only has
        its time noted, `_Resolved.asked_soon`). Read later in a batch instead, a cached answer's name had left the
        CPU cache by then: the watch's share of the server's CPU on cached answers grew from 2.8% to
        4.1% (py-spy, bench/compare.py's hits). `ClientWatchStep.seen_repeat` has these lines
        written out (a call less per cached answer): keep the two alike."""
        last = self.last_answer
        last[client] = when
        if len(last) > 2 * self.limits.max_clients:
            last.clear()  # bounded, crudely: a lost entry only makes one dead link count in full
        first = self.known.get(key)
        if first == "":
            return False
        if first != client:
            return True  # new (first is None), or another client's until now
        evidence = self.clients.get(client)
        if evidence is None or key not in evidence.resolved:
            return False
        entry = evidence.entry(key)  # asked again: a _Resolved from now on
        return entry is not None and entry.lookups < 2 and not entry.asked_soon(when)

    def observe(
        self, events: Iterator[Event[T]], found: list[LikelyC2], raised: list[tuple[Flag, T]]
    ) -> Event[T] | None:
        """What answers said, in their order (the step reads a turn of the loop's answers at once,
        after they left): an event is (client, registrable, score, when it resolved, tag), `when`
        None for an NXDOMAIN (`nxdomain`, at the rule's clock); a resolved one is an answer
        `answered` had more to read for. Likely C2 names found go to `found`,
        flags raised to `raised` with their event's tag (the step's client group); an exception
        leaves the events after the one that raised it in `events`. An NXDOMAIN whose typo check
        needs more than LABELS_PER_TURN known names' labels counted first (`_count_labels`) is
        handed back unread, the events after it left in `events`: the caller reads them on a
        later turn of the loop, so that counting a long backlog never holds the loop for long.
        A never-seen name becomes this client's in `known` (the oldest forgotten first) and the newest
        in its ring of new names, where a flag looks for its C2. That, and a flagged client's
        NXDOMAIN (`_flagged_nx`), are the two events of compare.py --watch's misses, one per answer:
        both are written out here, with the clock read once per call, one tuple for all of a call's
        flagged NXDOMAINs and the client's place in `clients` moved once per run of its events
        (was a call, a clock read, a tuple and a move each: bench/results/watch_watch8.md)."""
        known, clients, order, flagged = self.known, self.clients, self.known_order, self.flagged
        rule, limits = self.rule, self.limits
        bound, recent, threshold = limits.known_names, limits.recent_resolved, rule.suspicious_score
        window, window_names = rule.window_seconds, rule.window_names
        now: float | None = None  # the rule's clock, read once per call (a turn's answers left together)
        only = (0.0, _ONLY_WHEN, 0.0)  # a flagged client's NXDOMAIN at `now` (set with it): one tuple for all
        # the client last moved to the end of `clients` here, and its evidence: it is still the last
        # one until another client's evidence is touched (then None), so its next event moves nothing
        moved: str | None = None
        moved_evidence: _Evidence | None = None
        for client, key, score, when, tag in events:
            if when is None:
                flag = flagged.get(client) if flagged else None
                if flag is not None:  # (`_flagged_nx`, written out: a flagged client's misses are a stream of these)
                    if now is None:
                        now = self.clock()
                        only = (now, _ONLY_WHEN, 0.0)
                    if now < flag.until:
                        if key in known:
                            continue
                        if client == moved and moved_evidence is not None:
                            evidence = moved_evidence
                        else:
                            found_evidence = clients.get(client)
                            if found_evidence is None:
                                evidence = self._evidence_for(client)
                            else:
                                evidence = found_evidence
                                clients.move_to_end(client)
                            moved, moved_evidence = client, evidence
                        names = evidence.names
                        while names and now - names[0][0] > window:  # (`_Evidence.prune`)
                            names.popleft()
                        names.append(only)  # only the time counts now (the C2's burst)
                        if len(names) > window_names:
                            names.popleft()
                        continue
                moved = moved_evidence = None  # (`nxdomain` may touch any client's evidence)
                behind = self.labels_counted < len(order) and self._typo_check_ahead(client, key)
                if behind and not self._count_labels(LABELS_PER_TURN):
                    return client, key, score, when, tag
                raised_flag = self.nxdomain(client, key, score)
                if raised_flag is not None:
                    raised.append((raised_flag, tag))
                continue
            first = known.get(key)
            if first is None:  # a name new to the network: this client's now
                while len(known) >= bound and order:
                    old = order.popleft()
                    known.pop(old, None)
                    self.known_left += 1
                    if self.labels_counted:  # the oldest names are the counted ones
                        self.labels_counted -= 1
                        self.known_labels.remove(old.partition(".")[0])
                if client == moved and moved_evidence is not None:
                    evidence = moved_evidence
                else:
                    found_evidence = clients.get(client)
                    if found_evidence is None:
                        evidence = self._evidence_for(client)
                    else:
                        evidence = found_evidence
                        clients.move_to_end(client)
                    moved, moved_evidence = client, evidence
                known[key] = evidence.client  # one string per client, which `answered` compares answers with
                order.append(key)
                ring = evidence.resolved
                if len(ring) >= recent:
                    del ring[next(iter(ring))]  # a small dict: walking its few deleted slots is cheap
                # a _Resolved if it is asked again (`_Evidence.entry`)
                ring[key] = (when, score is not None and threshold is not None and score >= threshold)
            elif first == client:
                client_evidence = clients.get(client)
                entry = client_evidence.entry(key) if client_evidence is not None else None
                if client_evidence is not None and entry is not None and entry.lookups < 2:
                    moved = moved_evidence = None
                    found += self._asked_again(client, client_evidence, entry, when)
                    if self.raised:
                        raised += ((flag, tag) for flag in self.raised)
                        self.raised.clear()
            elif first:
                known[key] = ""  # now shared: not "new" for anyone
        return None

    def _flagged_nx(self, client: str, key: str) -> bool:
        """`nxdomain` for a client flagged now: only the time is noted (for the burst a likely C2
        must fall in), unless the name is known; False for a client not flagged (`nxdomain` reads
        it). `observe` asks this first: a flagged client's NXDOMAIN then costs one call, one clock
        read, a lookup in the flags and one in the known names (was three calls, two clock reads
        and two lookups of each, through `_typo_check_ahead` and `nxdomain`)."""
        flag = self.flagged.get(client)
        if flag is None:
            return False
        now = self.clock()
        if now >= flag.until:
            return False
        if key in self.known:
            return True
        clients, rule = self.clients, self.rule
        evidence = clients.get(client)
        if evidence is None:
            evidence = self._evidence_for(client)
        else:
            clients.move_to_end(client)  # (`_evidence_for`, written out)
        names, window = evidence.names, rule.window_seconds
        while names and now - names[0][0] > window:  # (`_Evidence.prune`)
            names.popleft()
        names.append((now, _ONLY_WHEN, 0.0))  # only the time counts now (the C2's burst)
        if len(names) > rule.window_names:
            names.popleft()
        return True

    def _typo_check_ahead(self, client: str, key: str) -> bool:
        """Whether `nxdomain` may run its typo check for this NXDOMAIN (a name not known, a client
        not flagged): then the known names' labels must all be counted. The flag first: a flagged
        client's NXDOMAIN (a stream of them on its misses) then costs no lookup in the known names
        here, only the one in `nxdomain`."""
        flag = self.flagged.get(client)
        return (flag is None or self.clock() >= flag.until) and key not in self.known

    def _count_labels(self, most: int) -> bool:
        """Counts the labels of up to `most` known names not counted yet, oldest first, into
        `known_labels`; True when all are. Labels are counted only when a typo check needs them:
        on a stream of never-seen names and no unknown NXDOMAIN of a client not flagged (a flagged
        client's misses: bench/compare.py --watch) a name comes and goes uncounted, which saved
        ~1 us of its ~2.7 us in the watch (measured in process)."""
        order, add, start = self.known_order, self.known_labels.add, self.labels_counted
        end = min(len(order), start + most)
        for key in islice(order, start, end):
            add(key.partition(".")[0])
        self.labels_counted = end
        return end == len(order)

    def _asked_again(self, client: str, evidence: _Evidence, entry: _Resolved, when: float) -> list[LikelyC2]:
        """The one client that resolved a new name asks for it again: perhaps a beacon."""
        entry.asked(when)
        if entry.lookups < 2:
            return []  # the same page load (www, cdn, api of one site come together): no beacon yet
        flag = self.flag_of(client) if self.flagged else None
        if flag is None:
            return self._beacon_evidence(client, evidence, entry, when) if self.rule.beacon_points else []
        return self._mark_c2(flag, [entry], evidence, when)

    def _beacon_evidence(self, client: str, evidence: _Evidence, entry: _Resolved, when: float) -> list[LikelyC2]:
        """The early C2: a slow walker whose C2 came 1st or 2nd in its walk stops walking before its
        NXDOMAINs flag it. A name that resolved for this client alone within `burst_gap` of its
        unknown NXDOMAINs, under the suffix of one of them (a generator's names share their TLDs;
        a dynamic-DNS home server, which a benign client also asks again and again, is no such
        name), and is asked again (the beacon) adds `beacon_points`, once. The full look-alike test
        was measured too: it misses most early C2s (bench/results/watch_sim.md). A flag it raises
        marks that name the likely C2 at once when it also looks like the walk; else the quarantine
        blocks it for this client (nobody else resolved it)."""
        rule = self.rule
        if entry.lookups != 2 or self.known.get(entry.key) != client:
            return []
        evidence.prune(when, rule.window_seconds)
        walk = [(t, facts) for t, facts, _ in evidence.names if facts is not _ONLY_WHEN]
        if not walk or _gap(entry.when, [t for t, _ in walk]) > rule.burst_gap:
            return []
        facts = NameFacts.of(entry.key, None)
        if facts.suffix in DYNAMIC_DNS_SUFFIXES or not any(facts.suffix == seen.suffix for _, seen in walk):
            return []
        if facts.label in self.popular.labels:
            return []
        total = evidence.points + rule.beacon_points
        if total < rule.flag_at:
            return []
        flag = self._flag(client, evidence, total, when)
        if len(self.raised) < self.limits.max_flagged:  # the step takes them at once; bounded all the same
            self.raised.append(flag)
        return self.c2_at_flag(flag)

    def probe_resolved(self, client: str, key: str) -> list[LikelyC2]:
        """A look-alike name the quarantine blocked resolved in the background (`should_probe`).
        Unlike an ordinary answer, one other client may have resolved it already: another
        infected client that found the C2 before it could be flagged. Two or more may not."""
        flag, evidence = self.flag_of(client), self.clients.get(client)
        if flag is None or evidence is None or self.known.get(key) == "":
            return []
        asked = evidence.probed.get(key)  # its first lookup is what counts for the burst, not the probe's
        entry = _Resolved(asked.when if asked else self.clock(), key, True, lookups=2)  # see should_probe
        return self._mark_c2(flag, [entry], evidence, self.clock(), one_other=True)

    def nxdomain(self, client: str, key: str, score: float | None) -> Flag | None:
        """An NXDOMAIN for `key` (a registrable name); the new Flag when this one raised it. A client
        already flagged only has the time noted (for the burst a likely C2 must fall in): the
        typo check (~10-40 us) is spent on clients not yet flagged."""
        if self.flagged and self._flagged_nx(client, key):
            return None
        now, rule = self.clock(), self.rule
        if key in self.known:
            return None
        seen = self.clients.get(client)
        if seen is not None and any(facts.key == key for _, facts, _ in seen.names):
            return None  # asked again (a retry, a cached NXDOMAIN): one name is one piece of evidence
        self._count_labels(len(self.known_order))  # all (the step's `observe` has counted them by now)
        if self.popular.typo_of_known(key.partition(".")[0], self.known_labels):
            return None
        evidence = self._evidence_for(client)
        evidence.prune(now, rule.window_seconds)
        facts = NameFacts.of(key, score)
        points = rule.page_weight if now - self.last_answer.get(client, -1e18) <= rule.page_gap else 1.0
        if any(facts.alike(seen) for _, seen, _ in evidence.names):
            points += rule.alike_bonus
        if score is not None and rule.suspicious_score is not None and score >= rule.suspicious_score:
            points += rule.score_bonus
        evidence.names.append((now, facts, points))
        if len(evidence.names) > rule.window_names:
            evidence.names.popleft()
        total = evidence.points
        if total < rule.flag_at:
            return None
        return self._flag(client, evidence, total, now)

    def _flag(self, client: str, evidence: _Evidence, total: float, now: float) -> Flag:
        flagged = self.flagged
        flagged.pop(client, None)
        while len(flagged) >= self.limits.max_flagged:
            del flagged[min(flagged, key=lambda c: flagged[c].until)]  # the flag that ends first goes
        names = tuple(f for _, f, _ in evidence.names if f is not _ONLY_WHEN)
        flag = Flag(client, now, now + self.rule.quarantine_seconds, names, total)
        evidence.c2_marked = 0
        evidence.probed.clear()
        flagged[client] = flag
        self.flags_raised += 1
        return flag

    def c2_at_flag(self, flag: Flag) -> list[LikelyC2]:
        """The new names that resolved for the client during its burst, before the flag was raised:
        the name the malware stopped walking at is among them."""
        evidence = self.clients.get(flag.client)
        if evidence is None:
            return []
        return self._mark_c2(flag, evidence.entries(), evidence, flag.since)

    def _mark_c2(
        self,
        flag: Flag,
        candidates: list[_Resolved],
        evidence: _Evidence,
        now: float,
        one_other: bool = False,
    ) -> list[LikelyC2]:
        """Candidates resolved within `burst_gap` of one of the client's NXDOMAINs, asked at least
        twice (beacons), that look like its NX cluster (or that the model found suspicious), that
        nobody else resolved and that are not popular names, become likely C2. A few per flag at
        most, so a flagged client cannot get a list of names blocked for everybody. Measured on
        replay traces (bench/watch_sim.py): without the look-alike condition the infected clients'
        own browsing gave ~10 wrong C2 per trace, without the second lookup still ~1."""
        rule, out, client = self.rule, list[LikelyC2](), flag.client
        nx_times = [when for when, _, _ in evidence.names]
        for entry in sorted(candidates, key=lambda c: _gap(c.when, nx_times)):
            key = entry.key
            if evidence.c2_marked + len(out) >= rule.max_c2_per_flag:
                break
            if entry.lookups < 2 or _gap(entry.when, nx_times) > rule.burst_gap or key in self.likely_c2:
                continue
            if not (entry.suspicious or flag.cluster_match(NameFacts.of(key, None))):
                continue
            owner = self.known.get(key, client)  # "" once two or more clients resolved it
            if owner == "" or (owner != client and not one_other) or key.partition(".")[0] in self.popular.labels:
                continue
            out.append(LikelyC2(key, client, now + rule.c2_seconds))
        evidence.c2_marked += len(out)
        for c2 in out:
            while len(self.likely_c2) >= self.limits.max_c2:
                self.likely_c2.popitem(last=False)
            self.likely_c2[c2.name] = c2
            self.c2_found += 1
        return out

    def _evidence_for(self, client: str) -> _Evidence:
        clients = self.clients
        evidence = clients.get(client)
        if evidence is not None:
            clients.move_to_end(client)
            return evidence
        while len(clients) >= self.limits.max_clients:
            clients.popitem(last=False)  # the client heard from least recently
        evidence = clients[client] = _Evidence(deque(), {}, intern(client))
        return evidence

    # -- what a query gets --------------------------------------------------------------------
    def c2_until(self, key: str) -> float | None:
        """When the likely-C2 block of `key` ends, or None when it is not (or no longer) one."""
        c2 = self.likely_c2.get(key)
        if c2 is None:
            return None
        if self.clock() >= c2.until:
            del self.likely_c2[key]
            return None
        return c2.until

    def flag_of(self, client: str) -> Flag | None:
        """The client's flag while it lasts (an expired one is dropped here)."""
        flag = self.flagged.get(client)
        if flag is None:
            return None
        if self.clock() >= flag.until:
            del self.flagged[client]
            return None
        return flag

    def quarantines(self, flag: Flag, key: str) -> bool:
        """A flagged client's name is blocked when it looks like its NX cluster, or when it is a
        new registrable nobody else on the network resolved recently (and not a popular name)."""
        if flag.cluster_match(NameFacts.of(key, None)):
            return True
        label = key.partition(".")[0]
        return self.known.get(key, flag.client) == flag.client and label not in self.popular.labels

    def quarantined(self, flag: Flag, key: str, score: float | None) -> tuple[bool, list[LikelyC2]]:
        """The quarantine blocked `key` for the flagged client: whether to resolve it aside
        (`should_probe`), and the likely C2 this lookup revealed: a name that had resolved for the
        client before the flag (in its ring) and is asked again now is the beacon of a C2 found
        before the walk gave the client away."""
        evidence = self.clients.get(flag.client)
        entry = None if evidence is None else evidence.entry(key)
        if evidence is not None and entry is not None:
            entry.asked(self.clock())
            return False, self._mark_c2(flag, [entry], evidence, self.clock())
        return self.should_probe(flag, key, score), []

    def should_probe(self, flag: Flag, key: str, score: float | None) -> bool:
        """Whether a name the quarantine just blocked should still be resolved in the background,
        to learn whether it is the C2 the walk was looking for (then it is blocked for everybody,
        which stops other infected clients that found it before they could be flagged). Only names
        like the NX cluster or that the model finds suspicious, at their second lookup, once each,
        a few per flag."""
        evidence = self.clients.get(flag.client)
        if evidence is None:
            return False
        seen, now = evidence.probed.get(key), self.clock()
        if seen is None:
            suspicious = self.rule.suspicious_score
            alike = flag.cluster_match(NameFacts.of(key, None))
            if not (alike or (score is not None and suspicious is not None and score >= suspicious)):
                return False
            if len(evidence.probed) >= self.rule.max_probes_per_flag:
                return False
            evidence.probed[key] = _Resolved(now, key, False)
            return False  # a beacon asks again; a page's name is asked once
        before = seen.lookups
        seen.asked(now)
        return before == 1 and seen.lookups == 2

    def unflag(self, client: str) -> bool:
        """Ends a flag now (allow list, operator); the client's window starts empty again."""
        self.clients.pop(client, None)
        return self.flagged.pop(client, None) is not None

    def forget_c2(self, name: str) -> bool:
        return self.likely_c2.pop(name, None) is not None

    # -- what another instance found (resolverguard.sync) --------------------------------------
    def adopt_c2(self, name: str, client: str, until: float) -> bool:
        """A likely C2 another instance found, blocked here until `until` (this state's clock);
        True when it is new here or lasts longer than what was known (by more than ADOPT_SLACK:
        the same finding, read twice, maps its wall-clock end onto this clock a little apart)."""
        known = self.likely_c2.get(name)
        if until <= self.clock() or (known is not None and known.until >= until - ADOPT_SLACK):
            return False
        while name not in self.likely_c2 and len(self.likely_c2) >= self.limits.max_c2:
            self.likely_c2.popitem(last=False)
        self.likely_c2[name] = LikelyC2(name, client, until)
        return True

    def adopt_flag(self, client: str, names: Iterable[str], until: float, points: float) -> bool:
        """A client another instance flagged (it moved here, e.g. its instance died): quarantined
        here too, with the names that convinced the other instance as its cluster."""
        known = self.flagged.get(client)
        now = self.clock()
        if until <= now or (known is not None and known.until >= until - ADOPT_SLACK):
            return False
        flagged = self.flagged
        while client not in flagged and len(flagged) >= self.limits.max_flagged:
            del flagged[min(flagged, key=lambda c: flagged[c].until)]
        flagged[client] = Flag(client, now, until, tuple(NameFacts.of(n, None) for n in names), points)
        return True


def _gap(when: float, times: list[float]) -> float:
    return min((abs(when - t) for t in times), default=float("inf"))
