"""Training-only augmentations: what the benign lists lack, made from names they do hold.

* Suffix dropout (input form `label.suffix`): a share of the training names, benign and DGA alike,
  get a suffix drawn from one pool (dynamic-DNS providers, cheap TLDs, common TLDs). The suffix then
  stops being a class label: in the data every `*.ddns.net` name is DGA and a home server under a
  dynamic-DNS provider scored 0.7+ in the first `label.suffix` model.
* Compound copies: a hyphenated benign label (`kindergarten-sonnenschein`) without its hyphens is a
  compound-word name people do register; the lists hold few of those, wordlist DGAs hold nothing else.

* Random names (`random_names`, an experiment): uniformly random strings over a few alphabets
  and lengths, labelled DGA, so the model learns "random" in general and not only the randomness of
  the families it trained on (a family it never saw is random in its own way).

All apply to TRAINING rows only; calibration and test names are never altered.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from convert.data import DYNAMIC_DNS_SUFFIXES

CHEAP_TLDS = ("xyz", "top", "online", "site", "club", "info", "biz", "icu", "shop", "store", "live", "fun")
CHEAP_TLDS += ("space", "website", "pw", "cc", "ru", "cn", "tk", "ml", "ga", "cf", "gq", "me")
COMMON_SUFFIXES = ("com", "net", "org", "de", "co.uk", "fr", "jp", "in", "com.br", "it", "nl", "pl")
_COMPOUND = re.compile(r"^[a-z]{3,}(?:-[a-z]{3,})+$")


def suffix_pool() -> tuple[tuple[str, ...], ...]:
    """Three equally likely groups, so each kind of suffix is common whatever its group's size."""
    return tuple(sorted(DYNAMIC_DNS_SUFFIXES)), CHEAP_TLDS, COMMON_SUFFIXES


def drop_suffixes(texts: npt.NDArray[np.str_], rate: float, rng: np.random.Generator) -> npt.NDArray[np.str_]:
    """`label.suffix` strings with the suffix of a `rate` share replaced from `suffix_pool()`."""
    out = texts.astype(object)  # a fixed-width str array would cut a longer suffix off
    pool = suffix_pool()
    for i in np.flatnonzero(rng.random(len(texts)) < rate):
        group = pool[int(rng.integers(len(pool)))]
        label = str(texts[i]).split(".", 1)[0]
        out[i] = f"{label}.{group[int(rng.integers(len(group)))]}"
    return np.array(out.tolist(), dtype=np.str_)


def compound_copies(texts: npt.NDArray[np.str_]) -> npt.NDArray[np.str_]:
    """The hyphen-free spelling of every hyphenated all-letter label (suffix kept), new ones only."""
    have = set(texts.tolist())
    out = []
    for text in texts.tolist():
        label, dot, suffix = text.partition(".")
        if _COMPOUND.match(label):
            joined = label.replace("-", "") + dot + suffix
            if joined not in have:
                have.add(joined)
                out.append(joined)
    return np.array(out, dtype=np.str_)


RANDOM_ALPHABETS = ("abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrstuvwxyz0123456789", "0123456789abcdef")
RANDOM_ALPHABETS += ("bcdfghjklmnpqrstvwxz", "abcdefghijklmnopqrstuvwxyz0123456789-")


def random_names(n: int, rng: np.random.Generator, lengths: tuple[int, int] = (7, 32)) -> npt.NDArray[np.str_]:
    """`n` random `label.suffix` names: an alphabet of RANDOM_ALPHABETS, a length in `lengths`, a
    suffix from `suffix_pool()`, each drawn uniformly."""
    pool = suffix_pool()
    out = []
    for _ in range(n):
        alphabet = RANDOM_ALPHABETS[int(rng.integers(len(RANDOM_ALPHABETS)))]
        size = int(rng.integers(lengths[0], lengths[1] + 1))
        label = "".join(alphabet[i] for i in rng.integers(len(alphabet), size=size)).strip("-") or "x"
        group = pool[int(rng.integers(len(pool)))]
        out.append(f"{label}.{group[int(rng.integers(len(group)))]}")
    return np.array(out, dtype=np.str_)
