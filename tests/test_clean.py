"""The benign cleaning rule (convert.clean) and the threshold calibration with its intervals
(convert.evaluate), on small lists these tests make: which entries the rule removes and why, which it
keeps, and that a threshold calibrated on enough names holds on names it never saw."""

from __future__ import annotations

import gzip
import random
import string
from pathlib import Path

import numpy as np
import pytest

from convert.clean import COUNTER_MIN, SERIES_MIN, Listed, cleaning_report, generated_names, vet
from convert.data import BENIGN, BENIGN_DNS_MACHINE, BENIGN_DNS_ONLY, BENIGN_MACHINE, benign_pools, load
from convert.evaluate import calibrate, held_out_support

WORDS = [
    "shop",
    "news",
    "mail",
    "cloud",
    "green",
    "river",
    "blue",
    "city",
    "home",
    "garden",
    "book",
    "travel",
    "photo",
    "music",
    "sport",
    "bank",
]
WORDS += [
    "tech",
    "data",
    "house",
    "market",
    "studio",
    "health",
    "family",
    "school",
    "water",
    "light",
    "media",
    "online",
    "point",
    "star",
]
CURATED = frozenset({"alexa"})
CLOUDFLARE = frozenset({"cloudflare"})


def curated_names(n: int, seed: int = 3) -> list[Listed]:
    rng = random.Random(seed)
    names = {f"{rng.choice(WORDS)}{rng.choice(WORDS)}{rng.choice(WORDS)}.com" for _ in range(n)}
    return [Listed(d, CURATED) for d in sorted(names)]


def random_label(rng: random.Random, n: int) -> str:
    """Random rare consonants with a vowel every fourth letter (no run the shape rule would catch)."""
    return "".join(rng.choice("aeiou" if i % 4 == 3 else "qxzjvkwp") for i in range(n))


@pytest.fixture(scope="module")
def listed() -> dict[str, list[Listed]]:
    """Benign-list entries of each kind, with the curated names the rule's letter statistics learn from."""
    rng = random.Random(11)
    chars = string.ascii_lowercase
    window = "kfjbitxzlhijfcenxejcqw"
    return {
        "curated": curated_names(600),
        "series_tail": [  # five random characters before a fixed tail (`?????2940637fafa.com`)
            Listed("".join(rng.choice(chars[6:]) for _ in range(5)) + "2940637fafa.com", CLOUDFLARE) for _ in range(5)
        ],
        "sliding": [Listed(window[i : i + 16] + ".top", CLOUDFLARE) for i in range(SERIES_MIN)],
        "counter": [Listed(f"srch{1000 + 37 * i}.cloud", CLOUDFLARE) for i in range(COUNTER_MIN)],
        "random": [Listed(random_label(rng, 14) + ".site", CLOUDFLARE) for _ in range(6)],
        "killswitch": [Listed("iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com", CLOUDFLARE)],
        "generator": [Listed("qwrtzpsdfghjk.biz", CLOUDFLARE)],
        "shape": [Listed("c43a3cd8f99413891.com", CURATED)],
        # kept: long word names only one DNS list knows, a short number series, punycode, and a
        # random-looking label a curated list vouches for
        "kept": [
            Listed("greenrivermarketstudio.com", CLOUDFLARE),
            Listed("familyhealthschoolonline.net", CLOUDFLARE),
            *(Listed(f"news{i}.com", CLOUDFLARE) for i in range(COUNTER_MIN - 1)),
            Listed("xn--80aesfpebagmfblc0a.xn--p1ai", CLOUDFLARE),
            Listed("qzvakwpetlmobxcu.com", CURATED),
        ],
    }


def test_the_rule_removes_each_kind_for_its_reason(listed: dict[str, list[Listed]]) -> None:
    everything = [e for group in listed.values() for e in group]
    rule = vet(everything, ["qwrtzpsdfghjk.biz", "qwrtzpsdfghjk"])
    expected = {
        "series_tail": "series",
        "sliding": "series",
        "counter": "series",
        "random": "random",
        "killswitch": "killswitch",
        "generator": "generator",
        "shape": "hex",
    }
    for group, reason in expected.items():
        assert [rule.reason(e) for e in listed[group]] == [reason] * len(listed[group]), group
    assert [rule.reason(e) for e in listed["kept"]] == [None] * len(listed["kept"])
    removed = sum(rule.reason(e) is not None for e in listed["curated"])
    assert removed <= 0.01 * len(listed["curated"])  # the curated names the letters are learned from stay


def test_series_need_enough_members(listed: dict[str, list[Listed]]) -> None:
    """Three names sharing a random tail are not yet a series: SERIES_MIN of them are."""
    few = listed["series_tail"][: SERIES_MIN - 1]
    rule = vet([*listed["curated"], *few])
    assert [rule.reason(e) for e in few] == [None] * len(few)


def test_generator_names_come_from_char_and_hash_families_only(tmp_path: Path) -> None:
    (tmp_path / "dga").mkdir()
    for family, names in {"rand": ["xkqzjwpv.com"], "words": ["bluegarden.net"]}.items():
        with gzip.open(tmp_path / "dga" / f"{family}.txt.gz", "wt") as handle:
            handle.write("\n".join(names) + "\n")
    manifest = "file\tfamily\tkind\n" + "dga/rand.txt.gz\trand\tchar\ndga/words.txt.gz\twords\twordlist\n"
    (tmp_path / "dga" / "MANIFEST.tsv").write_text(manifest)
    assert set(generated_names(tmp_path / "dga" / "MANIFEST.tsv")) == {"xkqzjwpv.com", "xkqzjwpv"}


def test_loader_and_report_keep_removed_names_apart_by_pool(tmp_path: Path, listed: dict[str, list[Listed]]) -> None:
    """Removed names are neither trained on nor calibrated on, and stay countable per pool and reason."""
    rows = [f"{e.domain}\t{len(e.providers)}\t{','.join(sorted(e.providers))}\tsrc" for g in listed.values() for e in g]
    with gzip.open(tmp_path / "benign_sources.tsv.gz", "wt") as handle:
        handle.write("domain\tn_providers\tproviders\tsources\n" + "\n".join(rows) + "\n")
    with gzip.open(tmp_path / "benign.txt.gz", "wt") as handle:
        handle.write("\n".join(sorted(r.split("\t")[0] for r in rows)) + "\n")
    (tmp_path / "dga").mkdir()
    with gzip.open(tmp_path / "dga" / "rnd.txt.gz", "wt") as handle:
        handle.write("zzqxkvbn.com\n")
    data = load(tmp_path, cleaning="lists")
    pool = dict(zip(data.labels.tolist(), data.family.tolist(), strict=True))
    assert pool["c43a3cd8f99413891"] == BENIGN_MACHINE
    assert {pool[e.label] for e in listed["random"] + listed["sliding"]} == {BENIGN_DNS_MACHINE}
    assert pool["greenrivermarketstudio"] == BENIGN_DNS_ONLY and pool["qzvakwpetlmobxcu"] == BENIGN
    report = cleaning_report(benign_pools(tmp_path))
    assert report[BENIGN_DNS_ONLY]["removed"]["random"] == len(listed["random"])
    assert report[BENIGN]["removed"] == {"hex": 1}
    assert report[BENIGN_DNS_ONLY]["examples"]["killswitch"] == [listed["killswitch"][0].domain]


def test_a_threshold_on_tens_of_names_holds_on_names_it_never_saw() -> None:
    """Calibrated on 300k names, 1e-4 rests on 30 of them; on 300k other names from the same
    distribution the FPR falls inside the interval, and the pool's interval is narrower than a
    3k-name set's."""
    rng = np.random.default_rng(5)
    pool, other, small = rng.random(300_000), rng.random(300_000), rng.random(3_000)
    support = held_out_support(pool.astype(np.float32), {"other": other.astype(np.float32)})
    sink = support["fpr_1e-4"]
    assert sink["flagged"] == 30 and sink["n"] == 300_000
    lo, hi = sink["ci95"]
    assert lo < 1e-4 < hi and hi / lo < 3
    held = sink["held_out"]["other"]
    assert held["ci95"][0] < 1e-4 < held["ci95"][1]
    assert held["fpr"] < hi
    coarse = held_out_support(small.astype(np.float32), {})["fpr_1e-4"]
    assert coarse["flagged"] == 0 and coarse["ci95"][1] > 5 * hi  # a 3k pool promises nothing at 1e-4
    assert calibrate(pool.astype(np.float32))["fpr_1e-4"] == sink["threshold"]
