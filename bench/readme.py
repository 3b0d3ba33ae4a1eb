"""Writes the README's performance figures from bench/results, so the README never quotes an older run.

    python bench/readme.py           # rewrites the block between the markers in README.md
    python bench/readme.py --check   # exit 1 when README.md differs from what the results say

The block sits between `<!-- bench:begin -->` and `<!-- bench:end -->`; a test runs `--check`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _k(qps: float) -> str:
    return f"~{qps / 1000:.0f}k" if qps >= 10_000 else f"~{qps / 1000:.1f}k"


def figures(results: Path = ROOT / "bench" / "results") -> str:
    """The performance paragraph, every number read from compare.json and lists.json."""
    compare: dict[str, Any] = json.loads((results / "compare.json").read_text())
    lists: dict[str, Any] = json.loads((results / "lists.json").read_text())
    r, ratios = compare["results"], compare["ratios"]
    full, workers, unbound = r["rg_full"], r["rg_workers"], r["unbound"]
    slower = (1 / ratios["hits"]["(d)/(b)"], 1 / ratios["misses"]["(d)/(b)"])
    list_change = abs(1 - ratios["hits"]["(f)/(d)"]) * 100
    return (
        f"On the {compare['cores']}-core development machine, with dnsperf on the same cores "
        f"(`bench/results/compare.md`, run of {compare['date']}{load_note(compare)}): "
        "the full chain with the shipped model answers "
        f"{_k(full['hits']['qps'])} queries/s on cached names and {_k(full['misses']['qps'])}/s on never-seen "
        f"names (every one scored and forwarded); `workers: 2` {_k(workers['hits']['qps'])} and "
        f"{_k(workers['misses']['qps'])}; the filter costs {compare['added_p99_ms']['hits']:.2f} ms (cached) and "
        f"{compare['added_p99_ms']['misses']:.2f} ms (unseen) of p99 latency over the upstream at 20% load; "
        f"a {lists['entries']:,}-entry blocklist adds ~{lists['rss_growth_mb']:.0f} MB "
        f"(`bench/results/lists.md`) and changes throughput on cached names by {list_change:.1f}%. "
        f"Unbound, written in C, answers {_k(unbound['hits']['qps'])}/s and {_k(unbound['misses']['qps'])}/s "
        f"in the same run, {slower[0]:.1f} and {slower[1]:.1f} times as many at forwarding alone."
        + module_figures(compare)
        + scaleout_figures(results)
    )


def load_note(compare: dict[str, Any]) -> str:
    """The machine's load during the run, when it was busy (then only the ratios mean much)."""
    load = compare.get("load")
    if not load or float(load["before"].split()[0]) < 1.0:
        return ""
    return f", load average {load['before'].split()[0]} before and {load['after'].split()[0]} after: a busy machine"


def module_figures(compare: dict[str, Any]) -> str:
    """The Unbound module's sentence (docs/unbound.md), when the run measured it."""
    ratios, r = compare["ratios"], compare["results"]
    if "(m)/(b)" not in ratios["hits"]:
        return ""
    lost = (r["reload_unbound2"]["lost"], r["reload_module2"]["lost"], r["reload_module2"]["sent"])
    return (
        f" As a module inside Unbound (docs/unbound.md), against Unbound alone in the same run: cached names "
        f"{ratios['hits']['(m)/(b)']:.2f}x with 1 thread and {ratios['hits']['(m2)/(b2)']:.2f}x with 2, never-seen "
        f"names {ratios['misses']['(m)/(b)']:.2f}x and {ratios['misses']['(m2)/(b2)']:.2f}x; added p99 latency at "
        f"20% load {compare['module_added_p99_ms']['misses']:.2f} ms on never-seen names; "
        f"{r['reload_module2']['reloads']} reloads under load: Unbound stayed up, and lost {lost[1]} of {lost[2]} "
        f"queries in flight (Unbound without the module {lost[0]})."
    )


def scaleout_figures(results: Path) -> str:
    """The dnsdist front's sentence (docs/scale-out.md), when bench/scaleout.py has run (it needs root)."""
    path = results / "scaleout.json"
    if not path.exists():
        return ""
    scale: dict[str, Any] = json.loads(path.read_text())
    args, ratios = scale["args"], scale["summary"]["ratios"]
    three = (
        f", three at {args['cap3']:g} each {ratios['three over one behind dnsdist']:.1f}x"
        if "three over one behind dnsdist" in ratios
        else ""
    )
    split = len(scale["summary"]["clients_on_more_than_one_instance"])
    return (
        f" Behind dnsdist (`examples/dnsdist.conf`, `bench/results/scaleout.md`), with each instance's CPU capped "
        f"at {args['cap']:g} of a core so the 2 cores could hold them all: two instances answered "
        f"{ratios['two over one behind dnsdist']:.1f}x what one did{three}; "
        + ("every client stayed on one instance." if split == 0 else f"{split} clients were split between instances.")
    )


def render(readme: str, text: str) -> str:
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if not rest:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    return f"{head}{BEGIN}\n{text}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when README.md is out of date")
    args = p.parse_args(argv)
    path = ROOT / "README.md"
    current = path.read_text(encoding="utf-8")
    wanted = render(current, figures())
    if args.check:
        if wanted != current:
            print("README.md performance figures differ from bench/results: run python bench/readme.py")
            return 1
        return 0
    path.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
