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
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

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


def cleaning_report(sources: Iterable[tuple[str, str]], examples: int = 8) -> dict[str, dict[str, Any]]:
    """What the rule removed from each benign pool: (domain, pool) pairs in; per pool the number of
    names, the number removed per reason and the first few removed names per reason."""
    names: Counter[str] = Counter()
    removed: dict[str, Counter[str]] = defaultdict(Counter)
    shown: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for domain, pool in sources:
        names[pool] += 1
        why = machine_made(domain)
        if why:
            removed[pool][why] += 1
            if len(shown[pool][why]) < examples:
                shown[pool][why].append(domain)
    return {
        pool: {"names": n, "removed": dict(removed[pool]), "examples": dict(shown[pool])} for pool, n in names.items()
    }
