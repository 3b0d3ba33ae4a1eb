"""The replay's verdict over every leave-family-out fold: each family's C2 lookups blocked by a model
that never saw it, with and without the client watch, in one table (bench/README.md, "The replay").

    python bench/replay_folds.py        # reads results/replay-fold*.json, writes results/replay-folds.{md,json}

Each `replay-fold<k>` is `bench/replay.py --model <fold k of the shipped recipe> --families <its
held-out families>`; the fold runs are separate replays (same seed and trace shape), so a family's
figure is from the run of the one fold that left it out. What this adds to them: the mean over every
family any fold left out, the families the model alone or the watch misses, and the benign side summed
over the runs (the same benign trace shape each time: summed, not independent).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PASSES = ("watch off", "watch on")


def load(results: Path) -> list[tuple[str, dict[str, Any]]]:
    runs = sorted(results.glob("replay-fold[0-9].json"))
    return [(p.stem.removeprefix("replay-"), json.loads(p.read_text())) for p in runs]


def summarise(runs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per family and pass: C2 lookups (first and all) blocked; per pass: the mean over families, the
    lowest, and the benign lookups blocked and clients flagged, summed over the runs."""
    families: dict[str, dict[str, Any]] = {}
    benign = {p: {"lookups": 0, "blocked": 0, "clients": 0, "flagged": 0} for p in PASSES}
    for fold, run in runs:
        for name in PASSES:
            got = run["passes"].get(name)
            if got is None:
                raise SystemExit(f"{fold}: no '{name}' pass (run bench/replay.py with --passes both)")
            for fam, row in got["families"].items():
                if families.get(fam, {}).get("fold", fold) != fold:
                    raise SystemExit(f"{fam} is in {families[fam]['fold']} and {fold}: a family has one fold")
                families.setdefault(fam, {"fold": fold, "model": run["model"]["version"]})[name] = {
                    k: row[k] for k in ("c2_first_blocked", "c2_first_total", "c2_all_blocked", "c2_all_total")
                }
            b = benign[name]
            b["lookups"] += got["benign"]["lookups"]
            b["blocked"] += got["benign"]["blocked"]
            b["clients"] += got["benign"]["clients"]
            b["flagged"] += got["benign"]["flagged"]
    passes = {}
    for name in PASSES:
        shares = {f: v[name]["c2_all_blocked"] / v[name]["c2_all_total"] for f, v in families.items()}
        passes[name] = {
            "mean_c2_all_share": sum(shares.values()) / len(shares) if shares else float("nan"),
            "lowest": sorted(shares.items(), key=lambda kv: kv[1])[:3],
            "families_ge_0.9": sum(s >= 0.9 for s in shares.values()),
            "benign": benign[name],
        }
    return {"folds": [f for f, _ in runs], "families": families, "passes": passes}


def _share(row: dict[str, Any], kind: str) -> str:
    return f"{row[f'{kind}_blocked']}/{row[f'{kind}_total']} ({row[f'{kind}_blocked'] / row[f'{kind}_total']:.0%})"


def render(s: dict[str, Any]) -> str:
    lines = [
        "# Replay over the leave-family-out folds: C2 lookups blocked on families the model never saw",
        "",
        "`python bench/replay_folds.py` over " + ", ".join(f"`results/replay-{f}.md`" for f in s["folds"]) + ".",
        "Each family's figures come from the replay of the one fold model that never saw it (the shipped",
        "recipe's fold: CNN + linear stage, as serving loads it; `examples/home-gateway.yaml`).",
        "",
        "| pass | families | C2 lookups blocked, mean over families | families >= 90% | lowest | benign lookups "
        "blocked | benign clients flagged |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for name in PASSES:
        p = s["passes"][name]
        b = p["benign"]
        low = ", ".join(f"{f} {v:.0%}" for f, v in p["lowest"])
        lines.append(
            f"| {name} | {len(s['families'])} | {p['mean_c2_all_share']:.1%} | {p['families_ge_0.9']} | {low} "
            f"| {b['blocked']} of {b['lookups']} | {b['flagged']} of {b['clients']} |"
        )
    lines += [
        "",
        "| family | fold | C2 first, watch off | C2 all, watch off | C2 first, watch on | C2 all, watch on |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for fam, v in sorted(s["families"].items()):
        off, on = v["watch off"], v["watch on"]
        lines.append(
            f"| {fam} | {v['fold']} | {_share(off, 'c2_first')} | {_share(off, 'c2_all')} "
            f"| {_share(on, 'c2_first')} | {_share(on, 'c2_all')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--out", type=Path, default=RESULTS / "replay-folds")
    a = p.parse_args(argv)
    runs = load(a.results)
    if not runs:
        raise SystemExit(f"no replay-fold*.json in {a.results}")
    s = summarise(runs)
    a.out.with_suffix(".json").write_text(json.dumps(s, indent=1) + "\n")
    a.out.with_suffix(".md").write_text(render(s))
    print(render(s))


if __name__ == "__main__":
    main()
