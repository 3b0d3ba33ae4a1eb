"""Allow and deny lists: inline names and list files in the formats people already have.

One line per entry, any of: `example.com`, hosts format (`0.0.0.0 example.com [more names]`) and
adblock style (`||example.com^`, modifiers after `$` ignored, `@@||x^` exceptions). `#` and `!`
start comments. A listed domain covers all of its subdomains. Allow wins over deny and the model.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resolverguard.errors import ConfigError
from resolverguard.memo import BoundedMemo
from resolverguard.verdicts import Action, Reason, Verdict

_HOSTS_ADDRESSES = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1", "0:0:0:0:0:0:0:0", "255.255.255.255"})
_NAME = re.compile(r"^(?:\*\.)?([a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_-]{1,63})*)\.?$")
_ALLOWED = Verdict(Action.PASS, Reason.ALLOW_LIST)
_IGNORED_HOSTS_NAMES = frozenset({"localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost"})


@dataclass(frozen=True, slots=True)
class ListEntry:
    domain: str
    exception: bool = False  # adblock `@@` rule: allow rather than deny


@dataclass(slots=True)
class ParseReport:
    """What a list file held; skipped lines are counted (adblock lists carry cosmetic rules)."""

    entries: int = 0
    skipped: int = 0
    first_skipped: list[int] = field(default_factory=list)


def parse_line(line: str) -> list[ListEntry] | None:
    """Entries on one line; [] for blank/comment lines, None for lines we cannot use."""
    text = line.split("#", 1)[0].strip().lower() if not line.lstrip().startswith("!") else ""
    if not text:
        return []
    if text.startswith(("||", "@@||")):
        exception = text.startswith("@@")
        body = text.removeprefix("@@").removeprefix("||").split("$", 1)[0].rstrip("^|")
        match = _NAME.match(body)
        return [ListEntry(match.group(1), exception)] if match else None
    fields = text.split()
    if fields[0] in _HOSTS_ADDRESSES:
        names = [n for n in fields[1:] if n not in _IGNORED_HOSTS_NAMES]
        entries = [_NAME.match(n) for n in names]
        return [ListEntry(m.group(1)) for m in entries if m] if all(entries) else None
    match = _NAME.match(fields[0]) if len(fields) == 1 else None
    return [ListEntry(match.group(1))] if match else None


def list_files(path: Path) -> list[Path]:
    """A list file, or every regular file of a list directory (not recursive, sorted by name)."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return [path]


def iter_list(path: Path, report: ParseReport) -> Iterator[ListEntry]:
    """Streams the entries of a list file (or directory), counting what it skips in `report`."""
    for file in list_files(path):
        try:
            with file.open(encoding="utf-8", errors="replace") as handle:
                for number, line in enumerate(handle, start=1):
                    parsed = parse_line(line)
                    if parsed is None:
                        report.skipped += 1
                        if len(report.first_skipped) < 5:
                            report.first_skipped.append(number)
                        continue
                    report.entries += len(parsed)
                    yield from parsed
        except OSError as err:
            raise ConfigError(f"cannot read list file: {err.strerror}", file=str(file)) from None


def read_list(path: Path) -> tuple[list[ListEntry], ParseReport]:
    report = ParseReport()
    return list(iter_list(path, report)), report


def _key(domain: str) -> int:
    """64-bit key of a domain; blake2b, so keys are the same in every process and run."""
    return int.from_bytes(
        hashlib.blake2b(domain.encode("utf-8", "replace"), digest_size=8).digest(), "little", signed=True
    )


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
        keys = array("q", (_key(d.lower().rstrip(".")) for d in domains))
        self._keys = array("q")
        if keys:
            self._keys.frombytes(sorted_unique(np.frombuffer(keys, dtype=np.int64)).tobytes())

    def __len__(self) -> int:
        return len(self._keys)

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


@dataclass(frozen=True)
class DomainLists:
    allow: DomainSet
    deny: DomainSet
    deny_action: Action = Action.SINKHOLE
    # What each list file held and skipped, for `resolverguard check`: ("allow_files" | "deny_files", path, report).
    reports: tuple[tuple[str, Path, ParseReport], ...] = field(default=(), repr=False, compare=False)
    listed: BoundedMemo[Verdict | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The lists never change under a running pipeline (a reload builds new ones), so the
        # verdict for a name can be remembered: popular names cost one dict lookup.
        object.__setattr__(self, "listed", BoundedMemo(self._listed, 16384))

    def _listed(self, qname: str) -> Verdict | None:
        """Allow wins over deny; None when neither list covers the name."""
        if not self.allow and not self.deny:
            return None
        suffixes = suffix_keys(qname)
        if self.allow and self.allow.match_keys(suffixes):
            return _ALLOWED
        if self.deny and self.deny.match_keys(suffixes):
            return Verdict(self.deny_action, Reason.DENY_LIST)
        return None

    @classmethod
    def build(
        cls,
        allow: Iterable[str],
        deny: Iterable[str],
        allow_files: Iterable[Path],
        deny_files: Iterable[Path],
        deny_action: Action = Action.SINKHOLE,
    ) -> DomainLists:
        """Streams every file once; only the 8-byte keys are kept, never the list of names."""
        exceptions: list[str] = []
        reports: list[tuple[str, Path, ParseReport]] = []

        def read(kind: str, path: Path) -> Iterator[ListEntry]:
            reports.append((kind, path, ParseReport()))
            return iter_list(path, reports[-1][2])

        def denied() -> Iterator[str]:
            yield from deny
            for path in deny_files:
                for entry in read("deny_files", path):
                    if entry.exception:
                        exceptions.append(entry.domain)
                    else:
                        yield entry.domain

        deny_set = DomainSet(denied())
        allowed = [*allow, *exceptions]
        allow_set = DomainSet(
            itertools.chain(allowed, (e.domain for path in allow_files for e in read("allow_files", path)))
        )
        return cls(allow_set, deny_set, deny_action, tuple(reports))
