"""One loader for the training data: benign registrable domains and DGA domains per family.

Every name is reduced to the label the resolver scores (`resolverguard.steps.names.NameParser`),
so a `*.ddns.net` DGA name trains the model on exactly the string serving will show it. Labels are
deduplicated per class and labels seen in both classes are dropped (they cannot be learned and would
only blur the threshold calibration).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from convert.clean import Listed, Vetting, generated_names, machine_made, vet

# The one import of the name layer in convert/ (it moves with the domain-layer refactor): the
# rest of convert/ takes these from here.
from resolverguard.names import DYNAMIC_DNS_SUFFIXES, InputForm, NameParser

__all__ = ["DYNAMIC_DNS_SUFFIXES", "InputForm", "NameParser"]

BENIGN = "benign"
# Benign names known to ONE DNS-volume list only (Cloudflare Radar or Umbrella): these lists rank by
# query volume and so contain live DGA, tracking and hash names (the data README warns of it). They
# are never trained on or calibrated with; evaluation reports how many the model flags (after the
# cleaning rule), as the long-tail false-positive rate. Names BOTH DNS-volume lists carry are
# benign training data (two independent vantage points, and the variety the curated lists lack).
BENIGN_DNS_ONLY = "benign-dnsonly"
# Benign-list names the cleaning rule (convert.clean) removes: scored and reported only. Kept apart by
# the pool they were removed from, so the long tail can be reported both cleaned and uncleaned.
BENIGN_MACHINE = "benign-machine"
BENIGN_DNS_MACHINE = "benign-dnsonly-machine"
BENIGN_FAMILIES = (BENIGN, BENIGN_DNS_ONLY, BENIGN_MACHINE, BENIGN_DNS_MACHINE)
DNS_VOLUME_PROVIDERS = frozenset({"cloudflare", "umbrella"})


def dga_families(family: npt.NDArray[np.str_]) -> list[str]:
    """The DGA families among these rows' families: a run's `trained_families`, which the shipped
    metadata and the replay benchmark read as DGA (no benign pool: `--tail-train` trains on the long tail)."""
    return sorted(set(family.tolist()) - set(BENIGN_FAMILIES))


DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# Feed files keep the feed's labels; these map them to the generator family names.
FEED_FAMILY = {"gameover": "newgoz", "pykspa_v2_fake": "pykspa", "pykspa_v2_real": "pykspa"}


@dataclass(frozen=True)
class Dataset:
    """Parallel arrays: the scored label, 1 for DGA, and the family ("benign" for benign names)."""

    labels: npt.NDArray[np.str_]
    y: npt.NDArray[np.int8]
    family: npt.NDArray[np.str_]
    digest: str  # sha256 over the sorted (label, family) pairs: which data a model was trained on

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: npt.NDArray[np.bool_]) -> Dataset:
        return Dataset(self.labels[mask], self.y[mask], self.family[mask], self.digest)


def read_names(path: Path) -> Iterator[str]:
    """Yields non-empty, non-comment lines of a plain or gzip text file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            name = line.strip()
            if name and not name.startswith("#"):
                yield name


def family_of(path: Path) -> str:
    stem = path.name.split(".", 1)[0]
    return FEED_FAMILY.get(stem, stem)


def load(data_dir: Path = DEFAULT_DATA_DIR, form: InputForm = InputForm.LABEL, cleaning: str = "shape") -> Dataset:
    """Loads `benign.txt.gz` and `dga/**/*.txt.gz` from `data_dir` into one deduplicated Dataset;
    `cleaning` is the benign cleaning rule (see `vetted_pools`)."""
    parser = NameParser(punycode=True)  # punycode labels stay in the data; Scores leaves them out of the pools

    def scored(name: str) -> str | None:
        return parser.model_input(name, form)

    benign: dict[str, str] = {}
    rank = {BENIGN: 0, BENIGN_DNS_ONLY: 1, BENIGN_MACHINE: 2, BENIGN_DNS_MACHINE: 3}
    for entry, pool in vetted_pools(data_dir, cleaning):
        label = scored(entry.domain)
        if label and (label not in benign or rank[pool] < rank[benign[label]]):
            benign[label] = pool
    dga: dict[str, str] = {}
    for path in sorted(data_dir.glob("dga/**/*.txt.gz")):
        family = family_of(path)
        for name in read_names(path):
            label = scored(name)
            if label:
                dga.setdefault(label, family)
    return build(benign, dga)


def read_benign(data_dir: Path) -> Iterator[Listed]:
    """The benign-list entries with the providers that list them (`benign_sources.tsv.gz`); without
    the sources file every name counts as curated."""
    sources = data_dir / "benign_sources.tsv.gz"
    if not sources.exists():
        yield from (Listed(name, frozenset({"curated"})) for name in read_names(data_dir / "benign.txt.gz"))
        return
    for line in read_names(sources):
        fields = line.split("\t")
        if len(fields) < 3 or fields[0] == "domain":
            continue
        yield Listed(fields[0].lower(), frozenset(fields[2].split(",")))


def trusted(entry: Listed) -> bool:
    """Trusted benign (training and calibration): a list other than the DNS-volume ones has it, or
    both DNS-volume lists do (two independent vantage points)."""
    return entry.curated or len(entry.providers) > 1


def vetting(data_dir: Path, entries: list[Listed]) -> Vetting:
    manifest = data_dir / "dga" / "MANIFEST.tsv"
    return vet(entries, generated_names(manifest) if manifest.exists() else ())


CLEANING_RULES = ("shape", "lists")


def vetted_pools(data_dir: Path, cleaning: str = "lists") -> Iterator[tuple[Listed, str]]:
    """Every benign-list entry with its pool: BENIGN (trusted), BENIGN_DNS_ONLY (long tail), or, when
    the cleaning rule (convert.clean) removes it, BENIGN_MACHINE / BENIGN_DNS_MACHINE by where it was
    (under "shape" all removed names are BENIGN_MACHINE, as before, so old runs keep their split).
    `cleaning`: "shape", the label-shape rule alone (`machine_made`, the runs before session 5), or
    "lists", the list-level rule (`vet`) that includes it."""
    if cleaning not in CLEANING_RULES:
        raise ValueError(f"cleaning: {cleaning!r} is not one of {CLEANING_RULES}")
    entries = list(read_benign(data_dir))
    rule = vetting(data_dir, entries) if cleaning == "lists" else None
    for entry in entries:
        if rule is None and machine_made(entry.domain):  # as before session 5: one family, same split
            yield entry, BENIGN_MACHINE
        elif rule is not None and rule.reason(entry):
            yield entry, BENIGN_MACHINE if trusted(entry) else BENIGN_DNS_MACHINE
        else:
            yield entry, BENIGN if trusted(entry) else BENIGN_DNS_ONLY


def benign_pools(data_dir: Path, cleaning: str = "lists") -> Iterator[tuple[str, str, str | None]]:
    """(domain, pool before cleaning, reason removed or None) for every benign-list name: what
    `convert.clean.cleaning_report` counts."""
    entries = list(read_benign(data_dir))
    rule = vetting(data_dir, entries) if cleaning == "lists" else None
    for entry in entries:
        why = rule.reason(entry) if rule else machine_made(entry.domain)
        yield entry.domain, BENIGN if trusted(entry) else BENIGN_DNS_ONLY, why


def build(benign: dict[str, str] | set[str], dga: dict[str, str]) -> Dataset:
    """Makes a Dataset from benign labels (-> benign family) and DGA label -> family, dropping
    labels in both classes."""
    if isinstance(benign, set):
        benign = {lab: BENIGN_MACHINE if machine_made(lab) else BENIGN for lab in benign}
    both = benign.keys() & dga.keys()
    rows = [(lab, 0, fam) for lab, fam in sorted(benign.items()) if lab not in both]
    rows += [(lab, 1, fam) for lab, fam in sorted(dga.items()) if lab not in both]
    digest = hashlib.sha256("\n".join(f"{lab}\t{fam}" for lab, _, fam in rows).encode()).hexdigest()
    labels, y, family = zip(*rows, strict=False) if rows else ((), (), ())
    return Dataset(np.array(labels, dtype=np.str_), np.array(y, dtype=np.int8), np.array(family, dtype=np.str_), digest)


CACHE_VERSION = "4"  # bump when load() or the cleaning rule changes what a cached Dataset holds


def load_cached(data_dir: Path, form: InputForm, cache_dir: Path | None, cleaning: str = "shape") -> Dataset:
    """`load`, kept as an .npz keyed by the data files' names, sizes and mtimes: parsing 1.2M names
    through the Public Suffix List costs about a minute, and a sweep loads the same data 30 times.
    `cache_dir` None: no cache (tests, one-off runs)."""
    if cache_dir is None:
        return load(data_dir, form, cleaning)
    files = [data_dir / "benign.txt.gz", data_dir / "benign_sources.tsv.gz", data_dir / "dga" / "MANIFEST.tsv"]
    files = sorted([*files, *data_dir.glob("dga/**/*.txt.gz")])
    stamp = "\n".join(
        f"{p.relative_to(data_dir)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files if p.exists()
    )
    key = hashlib.sha256(f"{CACHE_VERSION}\n{form.value}\n{cleaning}\n{stamp}".encode()).hexdigest()[:16]
    path = cache_dir / f"data-{form.value}-{key}.npz"
    if path.exists():
        z = np.load(path)
        return Dataset(z["labels"], z["y"], z["family"], str(z["digest"]))
    data = load(data_dir, form, cleaning)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: runs started together (sweep.sh, a helper's fold) must never read a
    # half-written cache (a BadZipFile took down a training run that way).
    part = path.with_name(f"{path.stem}.{os.getpid()}.part.npz")
    np.savez(part, labels=data.labels, y=data.y, family=data.family, digest=np.array(data.digest))
    os.replace(part, path)
    return data
