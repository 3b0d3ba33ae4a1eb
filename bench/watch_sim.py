"""The client watch's rule on many replay traces at once, without sockets: results/watch_sim.md.

bench/replay.py judges one trace in real time (2.5 minutes); tuning the rule needs many. This
feeds the same traces (bench/traffic.py, other seeds, also longer ones) straight into
`WatchState`, in time order, as the step would: a name that exists "resolves", any other is an
NXDOMAIN, a flagged client's names go through the quarantine, quarantined look-alikes are probed.
No model (the families are held out: the model blocks none of them, bench/results/replay.md) and no
answer cache, so it is the rule alone. Per rule variant: C2 lookups blocked (mean over families,
lowest family), benign clients flagged, benign lookups blocked, wrong likely-C2 names.

    python bench/watch_sim.py [--seeds 8] [--duration 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from traffic import TraceParams, generate, load_benign, load_family  # noqa: E402

from resolverguard.names import NameParser  # noqa: E402
from resolverguard.watch import PopularNames, WatchLimits, WatchRule, WatchState, watch_key  # noqa: E402

FAMILIES = ("charbot", "gozi", "suppobox", "nymaim2", "bigviktor")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(trace, rule: WatchRule, popular: PopularNames, parser: NameParser) -> dict[str, object]:  # type: ignore[no-untyped-def]
    clock = Clock()
    state = WatchState(rule, WatchLimits(), popular, clock)
    family_of = {c.index: c.family for c in trace.clients}
    # slow walkers whose C2 came within their first 2 names: nothing much to show before the C2
    early = {c.index for c in trace.clients if c.family and c.pace == "slow" and len(c.walk) <= 2}
    early_total = early_blocked = 0
    c2_names = {c.c2 for c in trace.clients if c.family}
    c2_total: Counter[str] = Counter()
    c2_blocked: Counter[str] = Counter()
    benign_blocked = benign_total = 0
    wrong_c2: set[str] = set()
    c2_right: set[str] = set()
    for lookup in trace.lookups:
        clock.now = lookup.t
        client = str(lookup.client)
        name = parser.parse(lookup.qname)
        key = watch_key(name)
        blocked = False
        if key is not None:
            flag = state.flag_of(client)
            if state.c2_until(key) is not None:
                blocked = True
            elif flag is not None and state.quarantines(flag, key):
                blocked = True
                probe, found = state.quarantined(flag, key, None)
                if probe and lookup.qname in trace.exists:
                    found = found + state.probe_resolved(client, key)
                wrong_c2.update(c.name for c in found if c.name not in c2_names)
                c2_right.update(c.name for c in found if c.name in c2_names)
            elif lookup.qname in trace.exists:
                found = state.resolved(client, key, None, lookup.t)
                wrong_c2.update(c.name for c in found if c.name not in c2_names)
                c2_right.update(c.name for c in found if c.name in c2_names)
            else:
                new = state.nxdomain(client, key, None)
                if new is not None:
                    wrong_c2.update(c.name for c in state.c2_at_flag(new) if c.name not in c2_names)
        family = family_of[lookup.client]
        if lookup.role in ("c2", "beacon"):
            c2_total[family] += 1
            c2_blocked[family] += blocked
            if lookup.client in early:
                early_total += 1
                early_blocked += blocked
        elif not family:
            benign_total += 1
            benign_blocked += blocked
    shares = {f: c2_blocked[f] / c2_total[f] for f in c2_total}
    benign_flagged = sum(1 for c in trace.clients if not c.family and str(c.index) in state.flagged)
    return {
        "shares": shares,
        "benign_flagged": benign_flagged,
        "benign_blocked": benign_blocked,
        "benign_total": benign_total,
        "wrong_c2": len(wrong_c2),
        "right_c2": len(c2_right),
        "early": (early_blocked, early_total),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "watch_sim.md")
    ap.add_argument("--only", default="", help="only the variants whose label contains this")
    args = ap.parse_args()
    benign = load_benign(args.data / "benign_sources.tsv.gz")
    families = {f: load_family(args.data / "dga" / f"{f}.txt.gz") for f in FAMILIES}
    popular, parser = PopularNames.bundled(), NameParser()
    traces = [
        generate(replace(TraceParams(), seed=TraceParams.seed + i, duration=args.duration), benign, families)
        for i in range(args.seeds)
    ]
    base = WatchRule()
    variants = {
        f"default (flag_at {base.flag_at:g}, window {base.window_seconds:g})": base,
        "flag_at 4, window 600": replace(base, flag_at=4.0, window_seconds=600.0),
        "flag_at 4, window 120": replace(base, flag_at=4.0, window_seconds=120.0),
        "flag_at 3, window 120": replace(base, flag_at=3.0, window_seconds=120.0),
        "flag_at 3, window 600": replace(base, flag_at=3.0, window_seconds=600.0),
        "flag_at 2.5, window 300": replace(base, window_seconds=300.0),
        "flag_at 2, window 120": replace(base, flag_at=2.0),
        "default, no page weight": replace(base, page_weight=1.0),
        "default, no alike bonus": replace(base, alike_bonus=0.0),
        "default, beacon_points 0 (the rule before)": replace(base, beacon_points=0.0),
        "default, beacon_points 1": replace(base, beacon_points=1.0),
    }
    variants = {k: v for k, v in variants.items() if args.only in k}
    out = [
        "# Client watch: rule variants on replay traces (bench/watch_sim.py)",
        "",
        f"{args.seeds} traces (seeds {TraceParams.seed}..{TraceParams.seed + args.seeds - 1}),"
        f" {args.duration:g} s each, 64 benign clients, 4 infected per family ({', '.join(FAMILIES)});",
        "the rule alone (no model, no caches).",
        "",
        "| rule | C2 blocked, mean over families | lowest family (worst trace) | benign clients flagged |"
        " benign lookups blocked | likely C2: right | wrong | early-C2 slow walkers: C2 lookups blocked |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, rule in variants.items():
        results = [simulate(t, rule, popular, parser) for t in traces]
        means = [statistics.mean(r["shares"].values()) for r in results]  # type: ignore[union-attr]
        lowest = min(min(r["shares"].values()) for r in results)  # type: ignore[union-attr]
        flagged = sum(r["benign_flagged"] for r in results)  # type: ignore[misc]
        blocked = sum(r["benign_blocked"] for r in results)  # type: ignore[misc]
        total = sum(r["benign_total"] for r in results)  # type: ignore[misc]
        wrong = sum(r["wrong_c2"] for r in results)  # type: ignore[misc]
        right = sum(r["right_c2"] for r in results)  # type: ignore[misc]
        early = [sum(r["early"][i] for r in results) for i in (0, 1)]  # type: ignore[index]
        out.append(
            f"| {label} | {statistics.mean(means):.3f} (min {min(means):.3f}) | {lowest:.3f} | {flagged} |"
            f" {blocked}/{total} | {right} | {wrong} | {early[0]}/{early[1]} |"
        )
        print(out[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
