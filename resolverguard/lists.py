"""Allow and deny lists: inline names and list files in the formats people already have.

Formats (`ListFormat`), and what an entry matches, as the tool each comes from does it:

* `hosts` (`0.0.0.0 a.example b.example`): each name **exactly**, as Pi-hole's gravity does (and
  AdGuard Home since 0.107.1): `a.example` does not cover `x.a.example`.
* `domains` (`a.example`): the name and its subdomains (AdGuard Home's domains-only lists, Blocky).
* `exact` (`a.example`): the name only; hosts lines too, and `||x^` as adblock: Pi-hole's adlists and
  domain lists, as gravity reads them (the Pi-hole importer writes this).
* `adblock` (AdGuard / uBlock DNS subset): `||a.example^` name and subdomains, `|a.example^` the name
  only, `@@` an exception (allow), `/re/` a regular expression on the name, `*` inside a pattern a
  wildcard, `$important` beats exceptions, `$client=10.0.0.5|192.168.1.0/24` limits a rule to those
  clients. Cosmetic rules (`##`, `#@#`, `#?#`, `#$#`, `#%#`, `$$`), URL rules with a path and rules
  with browser-only modifiers (`$script`, `$third-party`, ...) are not DNS rules: skipped, counted.
* `regex` (Pi-hole's regex list): one regular expression per line, matched anywhere in the name.
* `wildcard` (Blocky): `*.a.example` covers a.example and its subdomains; plain names likewise;
  `/re/` a regular expression.
* `auto` (the default): each line by its own shape (`||..^` adblock, `IP name` hosts, `*.x` wildcard,
  `/re/` regex, a plain name as `domains`).

Every skipped line is counted by reason (`ParseReport.skipped_by`), shown by `resolverguard check`
and in the log. Precedence: the policy's own `lists.allow` and `@@...$important` first, then
`$important` denials, then allow entries and `@@` exceptions, then denials.

Regular expressions are Python `re`, with a bound on what one match can cost: a pattern whose
repeats nest (`(a+)+`, `(x|xy)*` inside another repeat: the catastrophic-backtracking shapes) is
refused when the list is read, and names are at most 253 characters, so a match is linear in practice.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import re
import warnings
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from re import _parser as sre_parse  # type: ignore[attr-defined]  # the stdlib's own pattern parser: what `re` will run, as a tree
from typing import Any

import numpy as np

from resolverguard.addresses import IPNetwork, client_ip, networks, within
from resolverguard.errors import ConfigError
from resolverguard.memo import BoundedMemo
from resolverguard.verdicts import Action, Reason, Verdict

_NAME = re.compile(r"^(?:\*\.)?([a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_-]{1,63})*)\.?$")
_ALLOWED = Verdict(Action.PASS, Reason.ALLOW_LIST)
_IGNORED_HOSTS_NAMES = frozenset({"localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost"})
_IGNORED_HOSTS_NAMES |= {"ip6-loopback", "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters"}
_COSMETIC = re.compile(r"#[@?$%]*#|#@?[$?%]#|\$@?\$")
_DNS_MODIFIERS = frozenset({"important", "client"})
_UNSUPPORTED_MODIFIERS = frozenset({"badfilter", "dnstype", "dnsrewrite", "denyallow", "ctag"})
MAX_NAME = 253  # longest DNS name in text form: bounds what one regex match can cost


class ListFormat(str, Enum):
    AUTO = "auto"
    HOSTS = "hosts"
    DOMAINS = "domains"
    EXACT = "exact"
    ADBLOCK = "adblock"
    REGEX = "regex"
    WILDCARD = "wildcard"


class Skip(str, Enum):
    """Why a line was not used; counted per list."""

    COSMETIC = "cosmetic rule"
    URL = "URL or path rule"
    BROWSER_MODIFIER = "browser-only modifier"
    UNSUPPORTED_MODIFIER = "unsupported modifier"
    NOT_A_NAME = "not a domain name"
    BAD_REGEX = "invalid regex"
    UNSAFE_REGEX = "regex with nested repeats"
    BAD_CLIENT = "invalid $client"


@dataclass(frozen=True, slots=True)
class ListEntry:
    domain: str  # the name, or the pattern of a regex rule
    exception: bool = False  # adblock `@@` rule: allow rather than deny
    exact: bool = False  # the name only, not its subdomains (hosts entries, `|x^`)
    regex: bool = False  # `domain` is a regular expression searched in the name
    important: bool = False  # adblock `$important`: beats exceptions
    clients: tuple[str, ...] = ()  # adblock `$client=`: only for these networks


@dataclass(slots=True)
class ParseReport:
    """What a list file held; skipped lines are counted by reason (adblock lists carry cosmetic rules)."""

    entries: int = 0
    skipped_by: dict[str, int] = field(default_factory=dict)
    first_skipped: list[int] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by.values())

    def skip(self, reason: Skip, line: int) -> None:
        self.skipped_by[reason.value] = self.skipped_by.get(reason.value, 0) + 1
        if len(self.first_skipped) < 5:
            self.first_skipped.append(line)


Parsed = list[ListEntry] | Skip


def parse_line(line: str, fmt: ListFormat = ListFormat.AUTO) -> Parsed:
    """Entries on one line ([] for blank and comment lines), or why the line cannot be used."""
    raw = line.strip()
    if not raw or raw.startswith("!") or raw.startswith("#") and not raw.startswith("##"):
        return []
    if raw.startswith("[") and raw.endswith("]"):  # `[Adblock Plus 2.0]`: a filter list's header
        return []
    if fmt is ListFormat.REGEX:
        pattern = raw.split(" #", 1)[0].strip()
        if ";" in pattern:  # Pi-hole's `;querytype=AAAA`, `;invert`, `;reply=...`
            return Skip.UNSUPPORTED_MODIFIER
        return _regex_rule(posix_to_python(pattern), False, False, ())
    if fmt in (ListFormat.AUTO, ListFormat.ADBLOCK, ListFormat.WILDCARD) and _COSMETIC.search(raw):
        return Skip.COSMETIC
    text = raw.lower()
    if fmt is ListFormat.ADBLOCK or fmt in (ListFormat.AUTO, ListFormat.EXACT) and _looks_adblock(text):
        return _adblock(raw)
    text = text.split(" #", 1)[0].split("\t#", 1)[0].strip()
    if (fmt is ListFormat.WILDCARD or fmt is ListFormat.AUTO) and len(text) > 2 and text[0] == text[-1] == "/":
        return _regex_rule(raw.strip()[1:-1], False, False, ())
    fields = text.split()
    if fmt in (ListFormat.HOSTS, ListFormat.AUTO, ListFormat.EXACT) and len(fields) >= 2 and _is_ip(fields[0]):
        names = [n for n in fields[1:] if n not in _IGNORED_HOSTS_NAMES and not _is_ip(n)]
        found = [_NAME.match(n) for n in names]
        if not all(found) or any(n.startswith("*") for n in names):
            return Skip.NOT_A_NAME
        return [ListEntry(m.group(1), exact=True) for m in found if m]
    if len(fields) != 1 or fmt is ListFormat.HOSTS:
        return Skip.NOT_A_NAME
    match = _NAME.match(fields[0])
    if match is None or fields[0].startswith("*") and fmt is ListFormat.EXACT:
        return Skip.NOT_A_NAME
    return [ListEntry(match.group(1), exact=fmt is ListFormat.EXACT)]


def _looks_adblock(text: str) -> bool:
    return text.startswith(("||", "@@", "|")) or text.endswith("^") or "^$" in text


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _adblock(text: str) -> Parsed:
    """One adblock-style rule (cosmetic rules already set aside); names are lowercased, a regex is
    kept as written (`\\S` is not `\\s`)."""
    exception = text.startswith("@@")
    body = text.removeprefix("@@")
    regex = len(body) > 2 and body[0] == "/" and "/" in body[1:]
    if regex:
        end = body.rindex("/")
        pattern, _, mods = body[1:end], None, body[end + 1 :].removeprefix("$")
        if body[end + 1 :] and not body[end + 1 :].startswith("$"):
            return Skip.URL
    else:
        pattern, _, mods = body.lower().partition("$")
    options = _modifiers(mods.lower())
    if isinstance(options, Skip):
        return options
    important, clients = options
    if regex:
        return _regex_rule(pattern, exception, important, clients)
    exact = pattern.startswith("|") and not pattern.startswith("||")
    name = pattern.removeprefix("||").removeprefix("|").removesuffix("|").removesuffix("^")
    if "/" in name or "^" in name or ":" in name:
        return Skip.URL
    if "*" in name.removeprefix("*."):
        regex_text = ("^" if exact else r"(?:^|\.)") + ".*".join(map(re.escape, name.split("*"))) + "$"
        return _regex_rule(regex_text, exception, important, clients)
    match = _NAME.match(name)
    if match is None:
        return Skip.NOT_A_NAME
    return [ListEntry(match.group(1), exception, exact, False, important, clients)]


def _modifiers(text: str) -> tuple[bool, tuple[str, ...]] | Skip:
    """(important, client networks) from `$important,client=...`, or why the rule is not for DNS."""
    important, clients = False, tuple[str, ...]()
    for option in filter(None, text.split(",")):
        name, _, value = option.partition("=")
        if name in _UNSUPPORTED_MODIFIERS:
            return Skip.UNSUPPORTED_MODIFIER
        if name not in _DNS_MODIFIERS:
            return Skip.BROWSER_MODIFIER
        if name == "important":
            important = True
            continue
        parsed = _client_networks(value)
        if parsed is None:
            return Skip.BAD_CLIENT
        clients = parsed
    return important, clients


def _client_networks(value: str) -> tuple[str, ...] | None:
    """`$client=` values we can match on the source address: IPs and CIDRs (names and `~` negation: None)."""
    out = []
    for item in value.split("|"):
        try:
            out.append(str(ipaddress.ip_network(item.strip("'\""), strict=False)))
        except ValueError:
            return None
    return tuple(out) or None


def _regex_rule(pattern: str, exception: bool, important: bool, clients: tuple[str, ...]) -> Parsed:
    problem = regex_problem(pattern)
    if problem is not None:
        return problem
    return [ListEntry(pattern, exception, False, True, important, clients)]


def regex_problem(pattern: str) -> Skip | None:
    """None for a pattern we will run on every name; else why not (it does not compile, or it
    nests repeats, the shape that backtracks exponentially)."""
    if not pattern or "/" in pattern:
        return Skip.BAD_REGEX if not pattern else Skip.URL
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible nested set" and the like: we judge the tree
            tree = sre_parse.parse(pattern)
            re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return Skip.BAD_REGEX
    return Skip.UNSAFE_REGEX if _nested_repeat(tree, False) else None


def _nested_repeat(items: Any, inside: bool) -> bool:
    """True when an unbounded repeat sits inside another repeat (`(a+)+`, `(.*)*`) in a way that
    can backtrack: an inner repeat of one character class followed by a literal that class cannot
    match (`([^.]+[.])+`, Pi-hole's common shape) splits the text in one way only, and is allowed."""
    items = list(items)
    for index, (op, arg) in enumerate(items):
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            unbounded = high is sre_parse.MAXREPEAT or high > 16
            if inside and unbounded and not _delimited(sub, items[index + 1 : index + 2]):
                return True
            if _nested_repeat(sub, inside or unbounded):
                return True
        elif name == "SUBPATTERN":
            if _nested_repeat(arg[-1], inside):
                return True
        elif name == "BRANCH":
            if any(_nested_repeat(branch, inside) for branch in arg[1]):
                return True
        elif name in ("ASSERT", "ASSERT_NOT") and _nested_repeat(arg[1], inside):
            return True
    return False


def _delimited(repeated: Any, following: list[Any]) -> bool:
    """The repeat is one character class and the next item a literal outside that class."""
    body = list(repeated)
    if len(body) != 1 or not following or str(following[0][0]) != "LITERAL":
        return False
    return _matches_char(body[0], following[0][1]) is False


def _matches_char(item: Any, char: int) -> bool | None:
    """Whether a one-character regex item matches `char`; None when it is not such an item."""
    op, arg = str(item[0]), item[1]
    if op == "LITERAL":
        return bool(arg == char)
    if op == "NOT_LITERAL":
        return bool(arg != char)
    if op == "ANY":
        return char != 10
    if op != "IN":
        return None
    negate, hit = False, False
    for sub_op, sub_arg in arg:
        kind = str(sub_op)
        if kind == "NEGATE":
            negate = True
        elif kind == "LITERAL":
            hit |= sub_arg == char
        elif kind == "RANGE":
            hit |= sub_arg[0] <= char <= sub_arg[1]
        elif kind == "CATEGORY":
            found = _CATEGORIES.get(str(sub_arg))
            if found is None:
                return None
            hit |= found(chr(char))
        else:
            return None
    return hit != negate


_CATEGORIES: dict[str, Callable[[str], bool]] = {
    "CATEGORY_DIGIT": str.isdigit,
    "CATEGORY_NOT_DIGIT": lambda c: not c.isdigit(),
    "CATEGORY_SPACE": str.isspace,
    "CATEGORY_NOT_SPACE": lambda c: not c.isspace(),
    "CATEGORY_WORD": lambda c: c.isalnum() or c == "_",
    "CATEGORY_NOT_WORD": lambda c: not (c.isalnum() or c == "_"),
}
_POSIX_CLASSES = {
    "[:space:]": r"\s",
    "[:digit:]": "0-9",
    "[:alpha:]": "a-zA-Z",
    "[:alnum:]": "a-zA-Z0-9",
    "[:lower:]": "a-z",
    "[:upper:]": "A-Z",
    "[:xdigit:]": "0-9a-fA-F",
    "[:punct:]": r"!-/:-@\[-`{-~",
}


def posix_to_python(pattern: str) -> str:
    """Pi-hole's regexes are POSIX ERE (`[^.[:space:]]`); Python spells the classes differently."""
    for posix, python in _POSIX_CLASSES.items():
        pattern = pattern.replace(posix, python)
    return pattern


def list_files(path: Path) -> list[Path]:
    """A list file, or every regular file of a list directory (not recursive, sorted by name)."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return [path]


def iter_list(path: Path, report: ParseReport, fmt: ListFormat = ListFormat.AUTO) -> Iterator[ListEntry]:
    """Streams the entries of a list file (or directory), counting what it skips in `report`."""
    for file in list_files(path):
        try:
            with file.open(encoding="utf-8", errors="replace") as handle:
                for number, line in enumerate(handle, start=1):
                    parsed = parse_line(line, fmt)
                    if isinstance(parsed, Skip):
                        report.skip(parsed, number)
                        continue
                    report.entries += len(parsed)
                    yield from parsed
        except OSError as err:
            raise ConfigError(f"cannot read list file: {err.strerror}", file=str(file)) from None


def read_list(path: Path, fmt: ListFormat = ListFormat.AUTO) -> tuple[list[ListEntry], ParseReport]:
    report = ParseReport()
    return list(iter_list(path, report, fmt)), report


def _key(domain: str) -> int:
    """64-bit key of a domain; blake2b, so keys are the same in every process and run."""
    return int.from_bytes(
        hashlib.blake2b(domain.encode("utf-8", "replace"), digest_size=8).digest(), "little", signed=True
    )


def domain_key(domain: str) -> int:
    """The key a listed domain is stored under (case and a trailing dot do not count)."""
    return _key(domain.lower().rstrip("."))


def suffix_keys(qname: str) -> list[tuple[str, int]]:
    """The name and each parent domain with its key, longest first: www.a.com, a.com, com."""
    name, out = qname.lower().rstrip("."), []
    while name:
        out.append((name, _key(name)))
        name = name.partition(".")[2]
    return out


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """np.unique without its temporaries: sorts `keys` in place and keeps the first of each run.
    (np.unique copies, sorts and masks; for a million keys that left ~30 MB of resident memory
    behind after loading, more than the keys themselves.)"""
    keys.sort()
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return keys[first]


class DomainSet:
    """Domains where a member also covers its subdomains (`example.com` covers `a.example.com`).

    Stored as a sorted array of 64-bit keys, about 8 bytes a domain, so a million-entry blocklist
    costs ~8 MB instead of the ~100 MB a Python set of strings would; a lookup is one binary search
    (bisect, in C) per label of the query name. (A false match needs a 64-bit key collision.)
    """

    def __init__(self, domains: Iterable[str] = ()) -> None:
        self._keys = self._sorted(array("q", (domain_key(d) for d in domains)))

    @classmethod
    def of_keys(cls, keys: array[int]) -> DomainSet:
        """The set of already-made keys (`domain_key`); `keys` is sorted in place and dropped."""
        out = cls()
        out._keys = cls._sorted(keys)
        return out

    @staticmethod
    def _sorted(keys: array[int]) -> array[int]:
        out = array("q")
        if keys:
            out.frombytes(sorted_unique(np.frombuffer(keys, dtype=np.int64)).view(np.uint8).data)  # no bytes copy
        return out

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def keys(self) -> array[int]:
        """The sorted keys (read-only use: the Unbound module's snapshot copies them)."""
        return self._keys

    def match(self, qname: str) -> str | None:
        """The listed domain covering `qname`, or None."""
        return self.match_keys(suffix_keys(qname)) if self._keys else None

    def match_keys(self, suffixes: list[tuple[str, int]]) -> str | None:
        """The same, from `suffix_keys` of the name (made once for the allow and the deny list)."""
        keys = self._keys
        for name, key in suffixes:
            i = bisect.bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                return name
        return None

    def match_exact(self, suffixes: list[tuple[str, int]]) -> str | None:
        """The name itself only (the first of `suffix_keys`), for exact entries."""
        if not suffixes or not self._keys:
            return None
        name, key = suffixes[0]
        i = bisect.bisect_left(self._keys, key)
        return name if i < len(self._keys) and self._keys[i] == key else None


class RuleSet:
    """One tier of rules: names with their subdomains, exact names, and regular expressions."""

    def __init__(
        self,
        covering: Iterable[str] | DomainSet = (),
        exact: Iterable[str] | DomainSet = (),
        regexes: Sequence[str] = (),
    ) -> None:
        self.covering = covering if isinstance(covering, DomainSet) else DomainSet(covering)
        self.exact = exact if isinstance(exact, DomainSet) else DomainSet(exact)
        self.patterns = tuple(dict.fromkeys(regexes))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._compiled = tuple(re.compile(p) for p in self.patterns)

    def __len__(self) -> int:
        return len(self.covering) + len(self.exact) + len(self.patterns)

    def __bool__(self) -> bool:
        return len(self) > 0

    def match(self, qname: str, suffixes: list[tuple[str, int]] | None = None) -> str | None:
        """The rule that matches `qname` (the listed name, or `/pattern/`), or None."""
        suffixes = suffixes if suffixes is not None else suffix_keys(qname)
        found = self.covering.match_keys(suffixes) if self.covering else None
        if found is None and self.exact:
            found = self.exact.match_exact(suffixes)
        if found is None and self._compiled:
            name = qname.lower().rstrip(".")[:MAX_NAME]
            found = next((f"/{r.pattern}/" for r in self._compiled if r.search(name)), None)
        return found


class Tier(int, Enum):
    """Precedence of rules, first wins: the policy's own allow, $important denials, allow, deny."""

    FIRST_ALLOW = 0  # lists.allow, @@...$important
    IMPORTANT_DENY = 1
    ALLOW = 2  # allow_files, @@ exceptions
    DENY = 3


def _tier(entry: ListEntry, kind: str) -> Tier:
    if kind == "allow" or entry.exception:
        return Tier.FIRST_ALLOW if entry.important else Tier.ALLOW
    return Tier.IMPORTANT_DENY if entry.important else Tier.DENY


@dataclass
class _TierBuilder:
    """One tier while its lists stream in. Names are kept as their 8-byte keys from the start:
    kept as strings until the end, a million names held ~70 MB more at the peak of the read
    (tracemalloc: bench/results/lists.md), which was the resolver's peak RSS."""

    covering: array[int] = field(default_factory=lambda: array("q"))
    exact: array[int] = field(default_factory=lambda: array("q"))
    regexes: list[str] = field(default_factory=list)

    def add(self, entry: ListEntry) -> None:
        if entry.regex:
            self.regexes.append(entry.domain)
        else:
            (self.exact if entry.exact else self.covering).append(domain_key(entry.domain))

    def build(self) -> RuleSet:
        return RuleSet(DomainSet.of_keys(self.covering), DomainSet.of_keys(self.exact), self.regexes)


@dataclass(frozen=True)
class ListFile:
    """A list to read: a file or directory (a downloaded list is read from its cached copy)."""

    path: Path
    format: ListFormat = ListFormat.AUTO
    origin: str = ""  # the URL it was downloaded from, if any


@dataclass(frozen=True)
class ListReport:
    kind: str  # "allow_files" | "deny_files"
    source: str  # path or URL
    report: ParseReport
    age: float | None = None  # seconds since a downloaded copy was fetched; None: a local file

    def summary(self) -> str:
        """What a list held, skipped by reason, and (for a URL) how old the copy is: for `check` and the log."""
        report = self.report
        text = f"{report.entries} entries, {report.skipped} lines skipped"
        if report.skipped_by:
            text += " (" + ", ".join(f"{n} {why}" for why, n in sorted(report.skipped_by.items())) + ")"
        if report.first_skipped:
            text += f"; first skipped lines: {', '.join(map(str, report.first_skipped))}"
        if self.source.startswith(("http://", "https://")):
            text += "; never downloaded yet" if self.age is None else f"; downloaded {_span(self.age)} ago"
        return text


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@dataclass(frozen=True)
class ScopedRules:
    """`$client=` rules: tiers that apply only to clients in `networks`."""

    networks: tuple[IPNetwork, ...]
    tiers: tuple[RuleSet, ...]


@dataclass(frozen=True)
class DomainLists:
    tiers: tuple[RuleSet, ...]  # indexed by Tier
    deny_action: Action = Action.SINKHOLE
    scoped: tuple[ScopedRules, ...] = ()
    # What each list file held and skipped, for `resolverguard check` and the log.
    reports: tuple[ListReport, ...] = field(default=(), repr=False, compare=False)
    listed_memo: BoundedMemo[Verdict | None] = field(init=False, repr=False, compare=False)
    # the tiers that have rules, in order, as `_decide` takes them: what `_listed` walks
    _active: list[tuple[Any, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The lists never change under a running pipeline (a reload builds new ones), so the
        # verdict for a name can be remembered: popular names cost one dict lookup.
        object.__setattr__(self, "listed_memo", BoundedMemo(self._listed, 16384))
        object.__setattr__(self, "_active", [(tier,) for tier, rules in enumerate(self.tiers) if rules])

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled without the memo (lists are built in a helper process and sent back: see
        `resolverguard.service`); the sorted key arrays travel as bytes."""
        return (DomainLists, (self.tiers, self.deny_action, self.scoped, self.reports))

    @property
    def allow(self) -> RuleSet:
        return self.tiers[Tier.ALLOW]

    @property
    def deny(self) -> RuleSet:
        return self.tiers[Tier.DENY]

    @property
    def allowed_count(self) -> int:
        return len(self.tiers[Tier.FIRST_ALLOW]) + len(self.tiers[Tier.ALLOW])

    @property
    def denied_count(self) -> int:
        return len(self.tiers[Tier.IMPORTANT_DENY]) + len(self.tiers[Tier.DENY])

    def listed(self, qname: str, client: str | None = None) -> Verdict | None:
        """The verdict of the lists for `qname` asked by `client`; None when no rule matches."""
        if self.scoped and client is not None:
            ip = client_ip(client)
            scoped = [s for s in self.scoped if ip is not None and within(ip, s.networks)]
            if scoped:
                return self._decide(qname, [(t, *(s.tiers[t] for s in scoped)) for t in range(len(Tier))])
        return self.listed_memo(qname)

    def _listed(self, qname: str) -> Verdict | None:
        """`_decide` over every tier, for any client: the empty tiers were left out once for all
        (`_active`), where `_decide` asked each tier's three sets their size on every never-seen
        name (#17: ~2-3% of a miss's samples, bench/results/miss_spy_rd12b_after.md)."""
        return self._decide(qname, self._active)

    def _decide(self, qname: str, order: list[tuple[Any, ...]]) -> Verdict | None:
        """First tier with a matching rule decides (`order`: tier index, then extra rule sets)."""
        suffixes: list[tuple[str, int]] | None = None
        for tier, *extra in order:
            for rules in (self.tiers[tier], *extra):
                if not rules:
                    continue
                suffixes = suffixes if suffixes is not None else suffix_keys(qname)
                if rules.match(qname, suffixes) is not None:
                    allowed = tier in (Tier.FIRST_ALLOW, Tier.ALLOW)
                    return _ALLOWED if allowed else Verdict(self.deny_action, Reason.DENY_LIST)
        return None

    def why(self, qname: str, client: str | None = None) -> tuple[str, str] | None:
        """(tier name, matching rule) for `explain`; None when no rule matches."""
        ip = client_ip(client) if client else None
        scoped = [s for s in self.scoped if ip is not None and within(ip, s.networks)]
        for tier in Tier:
            for rules in (self.tiers[tier], *(s.tiers[tier] for s in scoped)):
                found = rules.match(qname) if rules else None
                if found is not None:
                    return ("allow" if tier in (Tier.FIRST_ALLOW, Tier.ALLOW) else "deny"), found
        return None

    @classmethod
    def build(
        cls,
        allow: Iterable[str],
        deny: Iterable[str],
        allow_files: Iterable[Path | ListFile],
        deny_files: Iterable[Path | ListFile],
        deny_action: Action = Action.SINKHOLE,
        ages: dict[str, float] | None = None,
    ) -> DomainLists:
        """Streams every file once; only the 8-byte keys (and any regexes) are kept."""
        tiers = [_TierBuilder() for _ in Tier]
        scoped: dict[tuple[str, ...], list[_TierBuilder]] = {}
        reports: list[ListReport] = []
        tiers[Tier.FIRST_ALLOW].covering.extend(map(domain_key, allow))
        tiers[Tier.DENY].covering.extend(map(domain_key, deny))
        for kind, sources in (("allow", allow_files), ("deny", deny_files)):
            for source in sources:
                item = source if isinstance(source, ListFile) else ListFile(source)
                report = ParseReport()
                where = item.origin or str(item.path)
                age = (ages or {}).get(item.origin) if item.origin else None
                reports.append(ListReport(f"{kind}_files", where, report, age))
                if item.origin and not item.path.exists():
                    continue  # a subscription never downloaded yet: empty until it is
                for entry in iter_list(item.path, report, item.format):
                    target = (
                        scoped.setdefault(entry.clients, [_TierBuilder() for _ in Tier]) if entry.clients else tiers
                    )
                    target[_tier(entry, kind)].add(entry)
        return cls(
            tuple(t.build() for t in tiers),
            deny_action,
            tuple(ScopedRules(networks(k), tuple(t.build() for t in v)) for k, v in scoped.items()),
            tuple(reports),
        )
