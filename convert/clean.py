"""The cleaning rule for benign names: top-list labels that are machine-made, not named by a person.

The popularity lists rank by visits or DNS queries, so they also carry tracking hosts, hash-named CDN
and ad-fraud domains and live DGA names (the data README found 125 real DGA names in Cloudflare
Radar). At a 1e-4 false-positive target a handful of such names decide the threshold: the previous
report's top "benign" test names were `c43a3cd8f99413891`, `442d9f2ac50ca502`, `wflhuir72klvmxpr05kmsd`.

The rule looks at the label's shape only, never at a model score or a DGA family (either would make
the evaluation circular): a label is machine-made when, after dropping hyphens, it holds

* `hex`: a run of >= 12 hexadecimal characters with >= 2 digits and >= 2 letters (digests, UUIDs);
* `alnum`: >= 8 characters, >= 3 digits and >= 3 letters, and >= 4 switches between a letter and a
  digit (`91dq37ut8n`, `qp3lgzt6exyn`): people put numbers at an end (`web2print`, `club1906`),
  random generators put them anywhere;
* `consonants`: a run of >= 8 consonants (`wjnkcfrrgk`) in one hyphen-free part: no language
  writes that, while acronym compounds (`bcbsfl`, `fullvpsserver`, `watchtvfree`) stay below it
  (7 also removed those: measured on the lists, see models/REPORT.md).

Punycode labels (`xn--…`) are exempt: they encode non-Latin names and look random by construction.
Removed names are kept aside (family `benign-machine`), scored and reported, never trained on,
calibrated on or counted as false positives; the report shows how many the model flags anyway.

The list-level rule (`vet`, session 5, `--cleaning lists`) adds what a label's shape alone cannot
see, from facts about the list entry and the rest of the list: names a random-character or hash
generator makes (`generator`), kill-switch names (`killswitch`), series of labels sharing a random
run or differing only in a number (`series`), and long labels whose letter pairs are as unlikely as
the rarest curated labels' when no curated list vouches for them (`random`). The letter-pair
yardstick is fitted on the curated lists' labels, never on DGA names or a model's scores.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

_HEX_RUN = re.compile(r"[0-9a-f]{12,}")
_CONSONANT_RUN = re.compile(r"[bcdfghjklmnpqrstvwxz]{8,}")
MIN_HEX = 12
MIN_ALNUM_LEN, MIN_DIGITS, MIN_LETTERS, MIN_SWITCHES = 8, 3, 3, 4


def machine_made(label: str) -> str | None:
    """Why `label` (the registrable label, or `label.suffix`) looks machine-made, or None."""
    label = label.split(".", 1)[0].lower()
    if label.startswith("xn--"):
        return None
    flat = label.replace("-", "").replace("_", "")
    for run in _HEX_RUN.findall(flat):
        if _count(run, str.isdigit) >= 2 and _count(run, str.isalpha) >= 2:
            return "hex"
    digits, letters = _count(flat, str.isdigit), _count(flat, str.isalpha)
    mixed = len(flat) >= MIN_ALNUM_LEN and digits >= MIN_DIGITS and letters >= MIN_LETTERS
    if mixed and _switches(flat) >= MIN_SWITCHES:
        return "alnum"
    if any(_CONSONANT_RUN.search(part) for part in re.split(r"[-_]", label)):
        return "consonants"
    return None


def _count(text: str, test: Callable[[str], bool]) -> int:
    return sum(1 for c in text if test(c))


def _switches(text: str) -> int:
    """How often the label switches between a digit and a non-digit."""
    return sum(1 for a, b in zip(text, text[1:], strict=False) if a.isdigit() != b.isdigit())


def cleaning_report(rows: Iterable[tuple[str, str, str | None]], examples: int = 8) -> dict[str, dict[str, Any]]:
    """What the rule removed from each benign pool: (domain, pool, reason or None) rows in; per pool
    the number of names, the number removed per reason and a few removed names per reason, spread
    evenly over the (alphabetical) list so they are not all names that start with a digit."""
    names: Counter[str] = Counter()
    removed: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for domain, pool, why in rows:
        names[pool] += 1
        if why:
            removed[pool][why].append(domain)
    return {
        pool: {
            "names": n,
            "removed": {why: len(d) for why, d in removed[pool].items()},
            "examples": {why: _spread(d, examples) for why, d in removed[pool].items()},
        }
        for pool, n in names.items()
    }


def _spread(items: list[str], k: int) -> list[str]:
    n = min(k, len(items))
    return [items[round(j * (len(items) - 1) / max(1, n - 1))] for j in range(n)]


# --- The list-level rule (#13): facts about the list a name comes from, not only its own shape. ---

DNS_VOLUME = frozenset({"cloudflare", "umbrella"})  # rank by DNS queries, so they carry malware traffic
# Kill-switch and sinkhole names that malware looks up (WannaCry's kill switches and their variants):
# the lists carry them because infected machines query them, not because people visit them.
KILL_SWITCHES = (
    re.compile(r"fsodp9ifjaposdfjhgosurijfaewrwergwea"),
    re.compile(r"(?:asdf){3}"),
    re.compile(r"^[il1]{16,}$"),  # lookalike noise: `iiillillilliili...` labels
)
SERIES_GRAM = 8  # a run of this many characters shared by ...
SERIES_MIN = 4  # ... this many different labels is a series (`?????2940637fafa`, sliding windows)
COUNTER_MIN = 8  # labels that differ only in a number, under one suffix (`srch1400.cloud`, `srch2085.cloud`)
RANDOM_MIN_LEN = 10  # letters a label needs before its letter statistics are judged
RANDOM_QUANTILE = 0.005  # the cut: as unlikely as the 0.5% least likely curated labels of that length
GENERATOR_MIN_LEN = 8  # a shorter label can be a real name a generator also makes (`hpe`, `emc`)
_VOWELS = frozenset("aeiouy")
_ALPHABET = "^$-0123456789abcdefghijklmnopqrstuvwxyz"
_VOWEL_IDX = np.array([_ALPHABET.index(c) for c in sorted(_VOWELS)])


@dataclass(frozen=True)
class Listed:
    """One benign-list entry: the registrable domain and the providers whose lists hold it."""

    domain: str
    providers: frozenset[str]

    @property
    def label(self) -> str:
        return self.domain.split(".", 1)[0]

    @property
    def suffix(self) -> str:
        return self.domain.split(".", 1)[1] if "." in self.domain else ""

    @property
    def curated(self) -> bool:
        """On a list ranked by visits or curated (Alexa, Tranco, Majestic), not only by DNS volume."""
        return not self.providers <= DNS_VOLUME


@dataclass(frozen=True)
class LetterBigrams:
    """Log-probabilities of one character following another, fitted on curated labels: how much a
    label reads like the names people pick. A yardstick independent of the detector (no DGA name,
    no model score), used on DNS-volume-only names alone."""

    logp: npt.NDArray[np.float64]  # (len(_ALPHABET), len(_ALPHABET))

    @classmethod
    def fit(cls, labels: Iterable[str]) -> LetterBigrams:
        counts = np.ones((len(_ALPHABET), len(_ALPHABET)))  # add-one: unseen pairs stay finite
        for label in labels:
            idx = _indices(label)
            np.add.at(counts, (idx[:-1], idx[1:]), 1.0)
        return cls(np.log(counts / counts.sum(axis=1, keepdims=True)))

    def mean_logp(self, label: str) -> float:
        idx = _indices(label)
        return float(self.logp[idx[:-1], idx[1:]].mean())


def _indices(label: str) -> npt.NDArray[np.int64]:
    chars = "^" + "".join(c for c in label.lower() if c in _ALPHABET[2:]) + "$"
    return np.array([_ALPHABET.index(c) for c in chars], dtype=np.int64)


def _judged(label: str) -> bool:
    """Long enough, and not punycode (non-Latin names encoded: random-looking by construction)."""
    return not label.startswith("xn--") and sum(c.isalpha() for c in label) >= RANDOM_MIN_LEN


@dataclass(frozen=True)
class Vetting:
    """The cleaning rule fitted to one benign list: `reason(entry)` says why an entry is not trusted
    as benign, or None. Built by `vet` from the list itself (series need the other names)."""

    bigrams: LetterBigrams
    cut: float  # mean bigram log-probability below which a DNS-volume-only label is random-looking
    shared_grams: frozenset[str]
    counter_groups: frozenset[tuple[str, str]]
    generated: frozenset[str]

    def reason(self, entry: Listed) -> str | None:
        label = entry.label
        if entry.domain in self.generated or (len(label) >= GENERATOR_MIN_LEN and label in self.generated):
            return "generator"
        if any(p.search(label) for p in KILL_SWITCHES):
            return "killswitch"
        shape = machine_made(entry.domain)
        if shape:
            return shape
        if any(g in self.shared_grams for g in _grams(label, self.bigrams, self.cut)):
            return "series"
        if (_counter_stem(label), entry.suffix) in self.counter_groups:
            return "series"
        if not entry.curated and _judged(label) and self.bigrams.mean_logp(label) < self.cut:
            return "random"
        return None


def _grams(label: str, bigrams: LetterBigrams, cut: float) -> set[str]:
    """The label's runs of SERIES_GRAM characters that do not read as language: >= 3 digits and a
    letter (`2940637f`; a bare number is a number), or letters with at most one vowel whose pairs are
    as unlikely as a random-looking label's (`kfjbitxz`). A shared `restaura` or `windows1` is a word."""
    flat = "".join(c for c in label.lower() if c in _ALPHABET[3:])
    if len(flat) < SERIES_GRAM:
        return set()
    idx = _indices(flat)[1:-1]
    inner = np.convolve(bigrams.logp[idx[:-1], idx[1:]], np.ones(SERIES_GRAM - 1), "valid") / (SERIES_GRAM - 1)
    digits = np.convolve(idx < _ALPHABET.index("a"), np.ones(SERIES_GRAM, dtype=int), "valid")
    vowels = np.convolve(np.isin(idx, _VOWEL_IDX), np.ones(SERIES_GRAM, dtype=int), "valid")
    odd = ((digits >= 3) & (digits < SERIES_GRAM)) | ((digits == 0) & (vowels <= 1) & (inner < cut))
    return {flat[i : i + SERIES_GRAM] for i in np.flatnonzero(odd)}


def _counter_stem(label: str) -> str:
    """The label with each number replaced by `#`, when it has a number and >= 3 letters; else ''."""
    stem = re.sub(r"\d+", "#", label)
    return stem if stem != label and sum(c.isalpha() for c in stem) >= 3 else ""


def vet(entries: Sequence[Listed], generated: Iterable[str] = ()) -> Vetting:
    """Fits the rule to a list: the bigram yardstick and its cut on the curated labels, the shared
    runs and number series among all labels, and the names DGA generators produce (`generated`:
    full names and labels of the generator families, see `generated_names`)."""
    curated = [e.label for e in entries if e.curated and not e.label.startswith("xn--")]
    bigrams = LetterBigrams.fit(curated)
    judged = [bigrams.mean_logp(lab) for lab in curated if _judged(lab)]
    cut = float(np.quantile(judged, RANDOM_QUANTILE)) if judged else float("-inf")
    owners: dict[str, set[str]] = defaultdict(set)
    counters: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in entries:
        for g in _grams(e.label, bigrams, cut):
            owners[g].add(e.label)
        stem = _counter_stem(e.label)
        if stem:
            counters[(stem, e.suffix)].add(e.label)
    return Vetting(
        bigrams,
        cut,
        frozenset(g for g, labels in owners.items() if len(labels) >= SERIES_MIN),
        frozenset(k for k, labels in counters.items() if len(labels) >= COUNTER_MIN),
        frozenset(generated),
    )


def generated_names(manifest: Path, kinds: tuple[str, ...] = ("char", "hash")) -> Iterator[str]:
    """Full names and first labels produced by the generator families of these kinds (dga/MANIFEST.tsv):
    a benign-list name that a random-character or hash generator makes is a live DGA name. Wordlist,
    pronounceable and benign-derived (charbot) generators also make real names, so they are left out."""
    import gzip

    for line in manifest.read_text().splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) < 3 or fields[2] not in kinds:
            continue
        with gzip.open(manifest.parent.parent / fields[0], "rt", encoding="utf-8", errors="replace") as handle:
            for name in handle:
                name = name.strip().lower()
                if name:
                    yield name
                    yield name.split(".", 1)[0]
