"""A few minutes of a small network's DNS lookups, generated from a seed, with the truth of every name.

Why a generator and not a capture: the replay (bench/replay.py) must judge the resolver on DGA families
the shipped model never trained on, with infected and benign clients side by side, and with the truth
known (which names exist, which lookup is a C2). No capture gives all three; a seeded generator gives
the same trace on every run, so the watch-on and watch-off passes see exactly the same lookups.

What a client does (all A queries; times in seconds from the start of the trace):
- page loads: a site drawn by Zipf over the popular names (or, sometimes, a long-tail name), its own
  hosts (www, cdn, api, static, ...), third-party popular names, sometimes a CDN hash name;
- typos of popular names (NXDOMAIN), then the right name a few seconds later;
- dead links: now and then (`dead_share` of page loads) a page pulls a long-tail name that no longer
  exists (NXDOMAIN); a fixed twentieth of the long-tail names is dead, the same for every client;
- browser start-up probes: Chromium asks for 3 random single labels of 7-15 letters (NXDOMAIN); on a
  client with a search domain (a router's `lan`, `home`, `fritz.box`) the stub asks `label.lan` too;
- some clients reach a home server under a dynamic-DNS provider (myhome.duckdns.org) now and then;
- a few run a mail server's DNSBL checks or an antivirus's cloud lookups: random-looking names under one
  popular domain (`1.2.3.4.zen.spamhaus.org`, `<26 chars>.sophosxl.net`), nine in ten NXDOMAIN.
Infected clients also browse, and walk their family's list in file order from a random place: every
name NXDOMAIN until the registered one (the C2, at a random position of the walk, possibly the first);
then they stop walking and look the C2 up again every `beacon` seconds until the end. Half of a
family's clients walk fast (hundreds of names in a burst), half slowly (a few names a minute).
The trace does not react to answers: a blocked C2 does not make the walk go on (a real DGA would).
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import itertools
import random
import string
from dataclasses import dataclass, field
from pathlib import Path

HOSTS = ("www", "cdn", "api", "static", "img", "m", "assets", "login", "media", "mail")
DDNS_SUFFIXES = ("duckdns.org", "ddns.net", "no-ip.org", "dynu.net", "freeddns.org")
DDNS_WORDS = ("home", "nas", "cloud", "media", "family", "pi", "casa", "plex", "vpn", "cam", "files", "photos")
BENIGN_ROLES = ("page", "longtail", "cdn", "typo", "dead", "probe", "ddns", "reputation")
SEARCH_DOMAINS = ("lan", "home", "fritz.box")
DGA_ROLES = ("walk", "c2", "beacon")
FIRST_CLIENT = 10  # clients are 127.0.1.10, .11, ...


@dataclass(frozen=True)
class TraceParams:
    """Everything the trace depends on besides the data; written into the results."""

    seed: int = 20261201
    duration: float = 150.0  # seconds of traffic
    benign_clients: int = 64
    infected_per_family: int = 4
    page_gap: float = 10.0  # mean seconds between a client's page loads (exponential)
    longtail_share: float = 0.2  # page loads of a long-tail site instead of a popular one
    typo_share: float = 0.03  # page loads that start with a mistyped name
    cdn_share: float = 0.3  # page loads that fetch one CDN hash name
    dead_share: float = 0.02  # page loads that also pull a dead long-tail name
    search_share: float = 0.3  # clients whose stub appends a search domain to single labels
    ddns_share: float = 0.3  # clients that reach a home server under a dynamic-DNS provider
    reputation_share: float = 0.06  # clients that make DNSBL / antivirus reputation lookups
    zipf_s: float = 1.0
    fast_gap: tuple[float, float] = (0.02, 0.1)  # seconds between names, fast walkers
    fast_max_walk: int = 300  # a fast walker's C2 is at position 0..fast_max_walk
    slow_gap: tuple[float, float] = (5.0, 15.0)  # seconds between names, slow walkers (4-12 a minute)
    walk_start: tuple[float, float] = (3.0, 20.0)  # when the walk begins
    beacon: tuple[float, float] = (5.0, 60.0)  # seconds between beacons to the C2
    max_queries: int = 40_000  # hard bound on the trace


@dataclass(frozen=True)
class Lookup:
    """One query of the trace: when, who, what, and why (its role, and its family for DGA roles)."""

    t: float
    client: int
    qname: str
    role: str
    family: str = ""


@dataclass(frozen=True)
class Client:
    index: int
    address: str
    family: str = ""  # "" for a benign client
    pace: str = ""  # "fast" or "slow" for an infected client
    c2: str = ""
    walk: tuple[str, ...] = ()  # the NXDOMAIN names before the C2, in order
    beacon_every: float = 0.0


@dataclass(frozen=True)
class BenignNames:
    """Popular names in rank order (Zipf head first), long-tail names, and every known benign name
    (typos are checked against it so that a typo never hits a real name)."""

    popular: tuple[str, ...]
    longtail: tuple[str, ...]
    known: frozenset[str] = field(default_factory=frozenset)
    dead: tuple[str, ...] = ()  # long-tail names that no longer resolve (dead links)


@dataclass(frozen=True)
class Trace:
    params: TraceParams
    clients: tuple[Client, ...]
    lookups: tuple[Lookup, ...]  # sorted by time
    exists: frozenset[str]  # every qname that resolves; any other name is NXDOMAIN
    truncated: bool = False


def load_benign(path: Path, seed: int = 0) -> BenignNames:
    """From benign_sources.tsv.gz: popular = names at least 3 providers list (all five first, each
    level in a seeded order: the file has no ranks); long tail = names one curated list (Alexa, Tranco,
    Majestic) vouches for, not the DNS-volume lists alone, which carry live DGA names (data README)."""
    rng = random.Random(seed)
    levels: dict[int, list[str]] = {}
    tail: list[str] = []
    known: set[str] = set()
    with gzip.open(path, "rt") as f:
        next(f)
        for line in f:
            name, n, providers, _ = line.rstrip("\n").split("\t", 3)
            known.add(name)
            if int(n) >= 3:
                levels.setdefault(int(n), []).append(name)
            elif int(n) == 1 and providers in ("alexa", "tranco", "majestic"):
                tail.append(name)
    popular: list[str] = []
    for n in sorted(levels, reverse=True):
        rng.shuffle(levels[n])
        popular += levels[n]
    dead = tail[::20]  # old Alexa names expire: a twentieth of the tail plays the dead links
    alive = [name for i, name in enumerate(tail) if i % 20]
    return BenignNames(tuple(popular), tuple(alive), frozenset(known), tuple(dead))


def load_family(path: Path) -> tuple[str, ...]:
    """A family's names in file (generation) order."""
    with gzip.open(path, "rt") as f:
        return tuple(line.strip() for line in f if line.strip())


class _Zipf:
    """Draws ranks with weight 1/rank^s (bisect over cumulative weights: one draw is O(log n))."""

    def __init__(self, n: int, s: float) -> None:
        self.cum = list(itertools.accumulate(1.0 / (r**s) for r in range(1, n + 1)))

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self.cum, rng.random() * self.cum[-1])


def _stable_hex(text: str, n: int, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    """A hash-looking label that is the same for the same site on every visit (CDN names are)."""
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:n])


def cdn_name(site: str, rng: random.Random) -> str:
    """A CDN hash name in the shape real CDNs use, stable per site and pattern."""
    pattern = rng.randrange(4)
    if pattern == 0:
        return f"d{_stable_hex(site, 13)}.cloudfront.net"
    if pattern == 1:
        return f"e{_stable_hex(site, 4, string.digits)}.a.akamaiedge.net"
    if pattern == 2:
        return f"rr{rng.randint(1, 5)}---sn-{_stable_hex(site, 8)}.googlevideo.com"
    return f"{_stable_hex(site, 10)}.global.ssl.fastly.net"


def typo_of(name: str, rng: random.Random, known: frozenset[str]) -> str | None:
    """One edit (drop, double, swap, replace) in the first label; None when it lands on a known name."""
    label, _, suffix = name.partition(".")
    if len(label) < 4 or not suffix:
        return None
    i = rng.randrange(1, len(label) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        label = label[:i] + label[i + 1 :]
    elif kind == 1:
        label = label[:i] + label[i] + label[i:]
    elif kind == 2:
        label = label[: i - 1] + label[i] + label[i - 1] + label[i + 1 :]
    else:
        label = label[:i] + rng.choice(string.ascii_lowercase) + label[i + 1 :]
    typo = f"{label}.{suffix}"
    return None if typo == name or typo in known else typo


@dataclass
class _Builder:
    """Collects one trace's lookups and the names that exist."""

    rng: random.Random
    params: TraceParams
    benign: BenignNames
    zipf: _Zipf
    lookups: list[Lookup] = field(default_factory=list)
    exists: set[str] = field(default_factory=set)
    nx: set[str] = field(default_factory=set)
    runs: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # family -> [first, last] walked

    def add(self, t: float, client: int, qname: str, role: str, exists: bool, family: str = "") -> None:
        if t < self.params.duration:
            self.lookups.append(Lookup(round(t, 4), client, qname, role, family))
            (self.exists if exists else self.nx).add(qname)

    def popular(self) -> str:
        return self.benign.popular[self.zipf.draw(self.rng)]

    def page_load(self, t: float, client: int) -> None:
        rng, p = self.rng, self.params
        roll = rng.random()
        if roll < p.typo_share:
            site = self.popular()
            typo = typo_of(site, rng, self.benign.known)
            if typo:
                self.add(t, client, typo, "typo", False)
                t += rng.uniform(2.0, 5.0)
            role = "page"
        elif roll < p.typo_share + p.longtail_share and self.benign.longtail:
            site, role = rng.choice(self.benign.longtail), "longtail"
        else:
            site, role = self.popular(), "page"
        self.add(t, client, rng.choice(("www.", "")) + site, role, True)
        for _ in range(rng.randint(2, 12)):
            t += rng.uniform(0.005, 0.15)
            if rng.random() < 0.5:
                self.add(t, client, f"{rng.choice(HOSTS)}.{site}", role, True)
            else:
                self.add(t, client, rng.choice(("www.", "", f"{rng.choice(HOSTS)}.")) + self.popular(), "page", True)
        if rng.random() < p.cdn_share:
            self.add(t + rng.uniform(0.005, 0.1), client, cdn_name(site, rng), "cdn", True)
        if self.benign.dead and rng.random() < p.dead_share:
            dead = rng.choice(("www.", "")) + rng.choice(self.benign.dead)
            self.add(t + rng.uniform(0.005, 0.1), client, dead, "dead", False)

    def browse(self, client: int) -> None:
        rng, p = self.rng, self.params
        t = rng.uniform(0.0, 5.0)
        search = rng.choice(SEARCH_DOMAINS) if rng.random() < p.search_share else ""
        for _ in range(3):  # Chromium's start-up probes: random single labels, 7-15 letters
            label = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(7, 15)))
            if search:
                self.add(t, client, f"{label}.{search}", "probe", False)
            self.add(t, client, label, "probe", False)
            t += rng.uniform(0.001, 0.01)
        if rng.random() < p.ddns_share:
            home = rng.choice(DDNS_WORDS) + rng.choice(("", "-" + rng.choice(DDNS_WORDS), str(rng.randint(1, 99))))
            name = f"{home}.{rng.choice(DDNS_SUFFIXES)}"
            every = rng.uniform(20.0, 60.0)
            for k in range(int(p.duration / every) + 1):
                self.add(t + rng.uniform(0, 5) + k * every, client, name, "ddns", True)
        if rng.random() < p.reputation_share:
            self.reputation(t, client)
        while t < p.duration:
            self.page_load(t, client)
            t += rng.expovariate(1.0 / p.page_gap)

    def reputation(self, t: float, client: int) -> None:
        """A mail server's DNSBL checks or an antivirus's cloud lookups, every 1-8 s: random-looking
        names under one popular domain; a listed address or a known file resolves (one in ten)."""
        rng = self.rng
        while t < self.params.duration:
            if rng.random() < 0.5:
                name = ".".join(str(rng.randint(1, 254)) for _ in range(4)) + ".zen.spamhaus.org"
            else:
                name = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(26)) + ".sophosxl.net"
            self.add(t, client, name, "reputation", rng.random() < 0.1)
            t += rng.uniform(1.0, 8.0)

    def free_run(self, family: str, length: int, size: int) -> int:
        """Where a walk of `length` names starts, apart from the family's other walks, so that no
        client's NXDOMAIN name is another client's C2."""
        runs = self.runs.setdefault(family, [])
        for _ in range(100):
            first = self.rng.randrange(size - length + 1)
            if all(first + length <= lo or first > hi for lo, hi in runs):
                runs.append((first, first + length - 1))
                return first
        raise ValueError(f"{family}: no room for another walk of {length} names in {size}")

    def infect(self, index: int, address: str, family: str, names: tuple[str, ...], pace: str) -> Client:
        rng, p = self.rng, self.params
        start = rng.uniform(*p.walk_start)
        gap = rng.uniform(*(p.fast_gap if pace == "fast" else p.slow_gap))
        fits = max(1, int((p.duration * 0.7 - start) / gap))
        position = rng.randint(0, min(fits - 1, p.fast_max_walk, len(names) - 1))
        first = self.free_run(family, position + 1, len(names))
        walk, c2 = names[first : first + position], names[first + position]
        for i, name in enumerate(walk):
            self.add(start + i * gap, index, name, "walk", False, family)
        t = start + len(walk) * gap
        self.add(t, index, c2, "c2", True, family)
        every = rng.uniform(*p.beacon)
        while (t := t + every) < p.duration:
            self.add(t, index, c2, "beacon", True, family)
        return Client(index, address, family, pace, c2, walk, round(every, 3))


def generate(params: TraceParams, benign: BenignNames, families: dict[str, tuple[str, ...]]) -> Trace:
    """The trace: benign clients first, then `infected_per_family` clients per family (in the order
    given), alternately fast and slow walkers. The same inputs give the same trace."""
    rng = random.Random(params.seed)
    builder = _Builder(rng, params, benign, _Zipf(len(benign.popular), params.zipf_s))
    total = params.benign_clients + params.infected_per_family * len(families)
    if total > 240:
        raise ValueError(f"{total} clients: at most 240 fit in 127.0.1.10-249")
    clients: list[Client] = []
    for i in range(params.benign_clients):
        clients.append(Client(i, f"127.0.1.{FIRST_CLIENT + i}"))
    for family, names in families.items():
        for k in range(params.infected_per_family):
            i = len(clients)
            pace = "fast" if k % 2 == 0 else "slow"
            clients.append(builder.infect(i, f"127.0.1.{FIRST_CLIENT + i}", family, names, pace))
    for c in clients:
        builder.browse(c.index)
    lookups = sorted(builder.lookups, key=lambda q: (q.t, q.client))
    truncated = len(lookups) > params.max_queries
    lookups = lookups[: params.max_queries]
    if builder.nx & builder.exists:  # e.g. a walk name that is also a benign name: the truth would be ambiguous
        raise ValueError(f"names both NXDOMAIN and existing: {sorted(builder.nx & builder.exists)[:5]}")
    return Trace(params, tuple(clients), tuple(lookups), frozenset(builder.exists), truncated)
