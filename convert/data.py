"""One loader for the training data: benign registrable domains and DGA domains per family.

Every name is reduced to the label the resolver scores (`resolverguard.steps.names.NameParser`),
so a `*.ddns.net` DGA name trains the model on exactly the string serving will show it. Labels are
deduplicated per class and labels seen in both classes are dropped (they cannot be learned and would
only blur the threshold calibration).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from resolverguard.names import InputForm, NameParser

BENIGN = "benign"
# Benign names known only from DNS-volume lists (Cloudflare Radar, Umbrella): these lists rank by
# query volume and so contain live DGA, tracking and hash names (the data README warns of it). They
# are never trained on or calibrated with; evaluation reports how many the model flags, as an upper
# bound on the false-positive rate among less curated names.
BENIGN_DNS_ONLY = "benign-dnsonly"
DNS_VOLUME_PROVIDERS = frozenset({"cloudflare", "umbrella"})
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


def load(data_dir: Path = DEFAULT_DATA_DIR, form: InputForm = InputForm.LABEL) -> Dataset:
    """Loads `benign.txt.gz` and `dga/**/*.txt.gz` from `data_dir` into one deduplicated Dataset."""
    parser = NameParser()

    def scored(name: str) -> str | None:
        return parser.model_input(name, form)

    benign: dict[str, str] = {}
    for name, curated in read_benign(data_dir):
        label = scored(name)
        if label and benign.get(label) != BENIGN:
            benign[label] = BENIGN if curated else BENIGN_DNS_ONLY
    dga: dict[str, str] = {}
    for path in sorted(data_dir.glob("dga/**/*.txt.gz")):
        family = family_of(path)
        for name in read_names(path):
            label = scored(name)
            if label:
                dga.setdefault(label, family)
    return build(benign, dga)


def read_benign(data_dir: Path) -> Iterator[tuple[str, bool]]:
    """(domain, curated) pairs: curated when a list other than the DNS-volume ones (Alexa, Tranco,
    Majestic) has it. Without the sources file every benign name counts as curated."""
    sources = data_dir / "benign_sources.tsv.gz"
    if not sources.exists():
        yield from ((name, True) for name in read_names(data_dir / "benign.txt.gz"))
        return
    for line in read_names(sources):
        fields = line.split("\t")
        if len(fields) < 3 or fields[0] == "domain":
            continue
        yield fields[0], not set(fields[2].split(",")) <= DNS_VOLUME_PROVIDERS


def build(benign: dict[str, str] | set[str], dga: dict[str, str]) -> Dataset:
    """Makes a Dataset from benign labels (-> benign family) and DGA label -> family, dropping
    labels in both classes."""
    if isinstance(benign, set):
        benign = dict.fromkeys(benign, BENIGN)
    both = benign.keys() & dga.keys()
    rows = [(lab, 0, fam) for lab, fam in sorted(benign.items()) if lab not in both]
    rows += [(lab, 1, fam) for lab, fam in sorted(dga.items()) if lab not in both]
    digest = hashlib.sha256("\n".join(f"{lab}\t{fam}" for lab, _, fam in rows).encode()).hexdigest()
    labels, y, family = zip(*rows, strict=False) if rows else ((), (), ())
    return Dataset(np.array(labels, dtype=np.str_), np.array(y, dtype=np.int8), np.array(family, dtype=np.str_), digest)
