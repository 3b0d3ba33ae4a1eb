"""Measures the client watch's rule on the data alone (no resolver): results/watch_rule.md.

For every DGA family in ../shared/data/dga: the share of its names the typo filter wrongly
discards (they would not count as evidence), the share of name pairs that look alike (the rule's
alike bonus), and how many NXDOMAIN names a walk takes until the client is flagged (median and
worst over 50 random starting points, without the model's score bonus: the model may never have
seen the family). For benign names: the share of typos of popular names (and of long-tail names
the network resolved) the filter catches, and how alike unrelated long-tail names are, i.e. how
fast dead links to unrelated expired domains would add up.

    python bench/watch_rule.py [--data ../shared/data] [--out bench/results/watch_rule.md]
"""

from __future__ import annotations

import argparse
import gzip
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resolverguard.steps.names import NameParser  # noqa: E402
from resolverguard.watch import NameFacts, NearbyLabels, PopularNames, WatchLimits, WatchRule, WatchState, watch_key  # noqa: E402

LETTERS = "abcdefghijklmnopqrstuvwxyz"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        return f.read().splitlines()


def typo(label: str, rng: random.Random) -> str:
    """One random edit: the kinds people make (omit, double, swap, replace)."""
    i = rng.randrange(len(label))
    kind = rng.choice(("omit", "double", "swap", "replace"))
    if kind == "omit" and len(label) > 3:
        return label[:i] + label[i + 1 :]
    if kind == "double":
        return label[:i] + label[i] + label[i:]
    if kind == "swap" and i + 1 < len(label) and label[i] != label[i + 1]:
        return label[:i] + label[i + 1] + label[i] + label[i + 2 :]
    return label[:i] + rng.choice(LETTERS.replace(label[i], "")) + label[i + 1 :]


def names_to_flag(keys: list[str], popular: PopularNames, rule: WatchRule) -> int | None:
    clock = Clock()
    state = WatchState(rule, WatchLimits(), popular, clock)
    for count, key in enumerate(keys, 1):
        clock.now += 1.0
        if state.nxdomain("c", key, None) is not None:
            return count
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "watch_rule.md")
    args = ap.parse_args()
    rng, parser, rule = random.Random(7), NameParser(), WatchRule()
    popular = PopularNames.bundled()
    rows = [line.split("\t") for line in read_lines(args.data / "benign_sources.tsv.gz")[1:]]
    tail = [d for d, n, *_ in rows if n == "1"]
    common = [d for d, n, *_ in rows if int(n) >= 2]
    out = ["# Client watch: the rule measured on the data", "", f"Rule: {rule}", ""]

    # benign: typos caught
    def caught(domains: list[str], known: NearbyLabels) -> tuple[float, float]:
        hits, spent = 0, 0.0
        for d in domains:
            label = d.split(".", 1)[0]
            if len(label) < 4:
                continue
            t = typo(label, rng)
            start = time.perf_counter()
            hits += popular.typo_of_known(t, known)
            spent += time.perf_counter() - start
        return hits / len(domains), spent / len(domains) * 1e6

    sample_common, sample_tail = rng.sample(common, 3000), rng.sample(tail, 3000)
    network = NearbyLabels()
    for d in rng.sample(tail, 50_000):  # the network resolved 50k long-tail names, these among them
        network.add(d.split(".", 1)[0])
    for d in sample_tail:
        network.add(d.split(".", 1)[0])
    pop_rate, us = caught(sample_common, NearbyLabels())
    tail_rate, us_known = caught(sample_tail, network)
    tail_unknown, _ = caught(sample_tail, NearbyLabels())
    pairs = [(NameFacts.of(a, None), NameFacts.of(b, None)) for a, b in (rng.sample(tail, 2) for _ in range(20000))]
    alike = sum(a.alike(b) for a, b in pairs) / len(pairs)
    out += [
        "## Benign",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| typos of popular names (>= 2 top lists, bundled) caught by the filter | {pop_rate:.3f} |",
        f"| typos of long-tail names the network resolved recently, caught | {tail_rate:.3f} |",
        f"| typos of long-tail names nobody on the network resolved, caught | {tail_unknown:.3f} |",
        f"| typo check, us per name (mean): nothing known / 50k network names known | {us:.1f} / {us_known:.1f} |",
        f"| random pairs of long-tail benign names that look alike | {alike:.3f} |",
        "",
        "Typos of names shorter than 5 letters are only caught when exact or `www`-prefixed: shorter",
        "labels are one edit from too many real names (at 4, 25% of qsnatch's 5-letter names were eaten).",
        "",
        "## DGA families (no model bonus: as if the model never saw the family)",
        "",
        "| family | names eaten by typo filter | alike pairs | names to flag: median | worst of 50 | never |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    worst_overall: list[float] = []
    for path in sorted((args.data / "dga").glob("*.txt.gz")):
        family = path.name.removesuffix(".txt.gz")
        names = [line.strip() for line in read_lines(path) if line.strip()][:3000]
        keys = [k for k in (watch_key(parser.parse(n)) for n in names) if k]
        if len(keys) < 20:
            continue
        eaten = sum(popular.typo_of_known(k.split(".", 1)[0], NearbyLabels()) for k in keys[:1000]) / min(
            1000, len(keys)
        )
        facts = [NameFacts.of(k, None) for k in keys[:1000]]
        alike_f = sum(a.alike(b) for a, b in zip(facts, facts[1:], strict=False)) / (len(facts) - 1)
        counts = []
        for _ in range(50):
            start = rng.randrange(max(1, len(keys) - 40))
            counts.append(names_to_flag(keys[start : start + 40], popular, rule))
        done = [c for c in counts if c is not None]
        median = statistics.median(done) if done else float("nan")
        worst = max(done) if done else float("nan")
        worst_overall.append(median)
        out.append(f"| {family} | {eaten:.3f} | {alike_f:.2f} | {median:g} | {worst:g} | {len(counts) - len(done)} |")
    out += ["", f"Median over families of the median names to flag: {statistics.median(worst_overall):g}", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
