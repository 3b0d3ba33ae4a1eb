"""Writes the README's performance and model figures from bench/results and models/, so the README
never quotes an older run or an older model.

    python bench/readme.py           # rewrites the blocks between the markers in README.md
    python bench/readme.py --check   # exit 1 when README.md differs from what the results say

The performance block sits between `<!-- bench:begin -->` and `<!-- bench:end -->` (bench/results),
the model's between `<!-- model:begin -->` and `<!-- model:end -->` (models/eval.json and
models/default.json, written by convert.report and convert.ship), the client watch's end-to-end figures
between `<!-- replay:begin -->` and `<!-- replay:end -->` (bench/results/replay.json and
replay-folds.json); a test runs `--check`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
MODEL_BEGIN, MODEL_END = "<!-- model:begin -->", "<!-- model:end -->"
REPLAY_BEGIN, REPLAY_END = "<!-- replay:begin -->", "<!-- replay:end -->"
CAL_POOL = "calibration (validation benign + half of the long tail)"  # reports before session 13
CAL_TRUSTED = "trusted calibration (validation benign)"


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
        f"{compare['added_p99_ms']['misses']:.2f} ms (unseen) of p99 latency over the upstream at 20% load"
        f"{in_server(results)}; "
        f"a {lists['entries']:,}-entry blocklist adds ~{lists['rss_growth_mb']:.0f} MB "
        f"(`bench/results/lists.md`) and changes throughput on cached names by {list_change:.1f}%. "
        f"Unbound, written in C, answers {_k(unbound['hits']['qps'])}/s and {_k(unbound['misses']['qps'])}/s "
        f"in the same run, {slower[0]:.1f} and {slower[1]:.1f} times as many at forwarding alone."
        + module_figures(compare)
        + procs_figures(results)
        + scaleout_figures(results)
    )


# bench/p99_ab.py --trace runs of the current code: the latency measured inside the server, per query
IN_SERVER = {"misses": "p99_p99s13_main.json", "hits": "p99_p99s13_hits.json"}
IN_SERVER_SUMMARY = "p99_p99s13.md"  # what those runs found, and why the tail is what it is


def in_server(results: Path) -> str:
    """The same added latency measured per query inside the server (`own`: read from the client to
    the reply sent, less the upstream leg; bench/p99_ab.py --trace), median and range over its rounds:
    a difference of two p99s measured apart swings with the machine."""
    found = {}
    for kind, name in IN_SERVER.items():
        if not (results / name).exists():
            return ""
        runs = json.loads((results / name).read_text())["runs"]
        own = sorted(r["watch"]["legs"]["forwarded" if kind == "misses" else "here"]["own"][1] for r in runs)
        found[kind] = (own[len(own) // 2], own[0], own[-1], len(own), name)

    def said(kind: str) -> str:
        mid, lo, hi, n, _ = found[kind]
        spread = f", {lo:.2f}-{hi:.2f}" if f"{lo:.2f}" != f"{hi:.2f}" else ""
        return f"{mid:.2f} ms on {kind_names[kind]} (median of {n} rounds{spread})"

    kind_names = {"hits": "cached names", "misses": "never-seen names"}
    return (
        f" (measured per query inside the server instead, `bench/results/{IN_SERVER_SUMMARY}`: p99 "
        f"{said('hits')}, {said('misses')}{on_the_wire(results)})"
    )


ON_THE_WIRE = "p99_wire.json"  # bench/p99_wire.py: the same, off a capture on lo, socket wait included


def on_the_wire(results: Path) -> str:
    """The never-seen names' added p99 read off the wire (reply sent - query sent - the upstream leg,
    the time a query waited in the socket included, no hook in the server), median and range of its rounds."""
    if not (results / ON_THE_WIRE).exists():
        return ""
    found = json.loads((results / ON_THE_WIRE).read_text())
    own = sorted(r["d_own"]["ms"][1] for r in found["rounds"])
    return (
        f"; on the wire, socket wait included, `bench/results/{ON_THE_WIRE.replace('.json', '.md')}`: "
        f"{found['median_own_p99_ms']:.2f} ms on never-seen names (median of {len(own)} rounds, "
        f"{own[0]:.2f}-{own[-1]:.2f})"
    )


def load_note(compare: dict[str, Any]) -> str:
    """The machine's load during the run, when it was busy (then only the ratios mean much)."""
    load = compare.get("load")
    if not load or float(load["before"].split()[0]) < 1.0:
        return ""
    return f", load average {load['before'].split()[0]} before and {load['after'].split()[0]} after: a busy machine"


# bench/module_procs.py runs with every row on names of its own (session 20 on; earlier runs flattered (mp)),
# the newest module code's (session 22, and session 23 on the same module code; all but s22c with --reloads 0)
PROCS_RUNS = ("module_procs_s22.json", "module_procs_s22b.json", "module_procs_s22c.json", "module_procs_s23.json")


def procs_figures(results: Path) -> str:
    """The module on two cores as two Unbound processes (docs/unbound.md, "More than one core")."""
    runs = [json.loads((results / name).read_text()) for name in PROCS_RUNS if (results / name).exists()]
    if not runs:
        return ""
    files = ", ".join(f"`bench/results/{name.replace('.json', '.md')}`" for name in PROCS_RUNS)
    mp = ", ".join(f"{r['ratios']['(mp)/(b2)']['misses']:.2f}x" for r in runs)
    m2 = ", ".join(f"{r['ratios']['(m2)/(b2)']['misses']:.2f}x" for r in runs)
    hits = ", ".join(f"{r['ratios']['(mp)/(b2)']['hits']:.2f}x" for r in runs)
    reloaded = [r["reloads"]["mp"] for r in runs if r.get("reloads", {}).get("mp")]
    retry = [r["retrying"] for r in reloaded]
    text = (
        f" As two Unbound processes of one thread on one port (`resolverguard unbound-module --processes 2`; "
        f"{files}): never-seen names {mp} plain Unbound with 2 threads (the 2-thread module {m2} in the same runs), "
        f"cached names {hits}"
    )
    if reloaded:
        text += (
            f"; under {reloaded[0]['reloads']} reloads of both, a client that asks again had "
            f"{sum(t['failed'] for t in retry)} of {sum(t['lookups'] for t in retry):,} lookups fail"
        )
    return text + f"{storm_figures(results)}."


STORMS = "reload_storm.json"  # bench/reload_storm.py: storms in a row on the same processes
STORMS_APART = "reload_storm_300ms.json"  # the same with the reloads 0.3 s apart (--interval 0.3)
# bench/systemd_reloads.py: storms of `systemctl reload` through systemd itself, the printed units
# (row "sleep") against units whose ExecReload is a bare SIGHUP (row "bare")
SYSTEMD_STORMS = ("systemd_reloads_run1.json", "systemd_reloads.json")  # two runs, the second the newest


def storm_failures(found: dict[str, Any], key: str) -> str:
    """A row's failed lookups of all its lookups over the storms, as "N of M"."""
    got = [r["retrying"] for r in found["rows"][key]]
    return f"{sum(t['failed'] for t in got):,} of {sum(t['lookups'] for t in got):,}"


def storm_figures(results: Path) -> str:
    """What the retrying client lost under storms of reloads in a row (docs/unbound.md)."""
    if not (results / STORMS).exists():
        return ""
    found = json.loads((results / STORMS).read_text())
    storms = len(found["rows"]["mp"])
    text = (
        f", but under {storms} such storms in a row at {found['qps']:,.0f} names/s "
        f"(`bench/results/{STORMS.replace('.json', '.md')}`) {storm_failures(found, 'mp')} failed with two "
        "processes (each reloading again before it had answered anything, see docs/unbound.md), "
        f"{storm_failures(found, 'm2')} with the 2-thread module and {storm_failures(found, 'b2')} with plain Unbound"
    )
    if (results / STORMS_APART).exists():
        apart = json.loads((results / STORMS_APART).read_text())
        where = STORMS_APART.replace(".json", ".md")
        text += (
            f"; with the reloads {apart['interval']:g} s apart (`bench/results/{where}`) "
            f"{storm_failures(apart, 'mp')} and {storm_failures(apart, 'm2')} failed"
        )
    runs = [json.loads((results / name).read_text()) for name in SYSTEMD_STORMS if (results / name).exists()]
    if runs:

        def tally(key: str, what: str) -> int:
            return sum(r[what] for run in runs for r in run["rows"][key])

        files = " and ".join(f"`bench/results/{name.replace('.json', '.md')}`" for name in SYSTEMD_STORMS)
        text += (
            f"; asked through systemd 252 itself ({files}: {sum(len(run['rows']['sleep']) for run in runs)} "
            f"storms of {runs[0]['reloads']} `systemctl reload` requests {runs[0]['interval']:g} s apart), the "
            f"printed units, whose reload waits 0.3 s after the signal, had {tally('sleep', 'failed'):,} of "
            f"{tally('sleep', 'lookups'):,} lookups fail and {tally('sleep', 'retried'):,} answered only after a "
            f"retry, units with a bare SIGHUP {tally('bare', 'failed'):,} and {tally('bare', 'retried'):,}"
        )
    return text


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
        f"queries in flight to dnsperf, which never asks again (Unbound without the module {lost[0]})"
        f"{retrying_figures(r['reload_module2'].get('retrying'))}."
    )


def retrying_figures(r: dict[str, Any] | None) -> str:
    """The reloads as a client that asks again sees them (bench/reload_retry.py), when the run measured it."""
    if not r:
        return ""
    return (
        f"; a client that asks again after {r['timeout']:g} s, as stub resolvers do, had "
        f"{r['failed'] + r['servfail']} of {r['lookups']} lookups fail under the same reloads"
        f" ({r['retried']} needed a retry)"
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


def _at(ev: dict[str, Any], action: str) -> float:
    """Share of the random split's test DGA names (every family) at the shipped `action` threshold."""
    rows = [t for t in ev["threshold_table"] if t["threshold"] == ev["thresholds"][action]]
    return float(rows[0]["tpr"]) if rows else float("nan")


def model_figures(models: Path = ROOT / "models") -> str:
    """The model paragraph, every number read from models/eval.json and models/default.json."""
    ev: dict[str, Any] = json.loads((models / "eval.json").read_text())
    meta: dict[str, Any] = json.loads((models / "default.json").read_text())
    variant = meta.get("quantization", "dynamic-int8")
    parity = ev["parity"].get(variant, {})
    sink = (ev["calibration"].get(CAL_TRUSTED) or ev["calibration"][CAL_POOL])["fpr_1e-4"]
    dns = ev["dns_only_benign"]["flagged"]
    chosen = ev.get("experiments_guarded", {}).get(ev["chosen"]) or ev["experiments"].get(ev["chosen"], {})
    mean, log = chosen["mean_recall"]["sinkhole"], chosen["mean_recall"]["log"]
    n90, nfam = chosen["families_ge_0.9"]["sinkhole"], chosen["n_families"]
    met = "met" if mean >= 0.6 and n90 >= 30 else "not met"
    rule = ev.get("cleaning_rule", "shape")
    cleaning = (
        "the names the list-level cleaning rule finds machine-made removed"
        if rule == "lists"
        else "machine-made labels removed by their shape"
    )
    carried = f", figures of model `{chosen['carried_from']}`: not rerun" if chosen.get("carried_from") else ""
    if ev.get("shipped_ensemble"):
        return ensemble_figures(ev, meta, parity, cleaning, linear_kind(models))
    return (
        f"`models/default.tflite` is `{meta['model_version']}`: {parity.get('bytes', 0) / 1024:.0f} KB, "
        f"~{parity.get('us_per_name_batch1', float('nan')):.0f} us per name in LiteRT at batch 1. In short "
        "(figures from `models/eval.json`, written by `convert.report`): thresholds are calibrated on "
        f"~{sink['n'] / 1000:.0f}k benign names (trusted top-list names plus half of the long-tail names only "
        f"one DNS-volume list knows, {cleaning}), so the `sinkhole` threshold (FPR 1e-4) rests on "
        f"{sink['flagged']} names. At it the model blocks {dns['sinkhole'] * 100:.3f}% of long-tail benign "
        f"names it never saw and logs {dns['log'] * 100:.2f}% (`log`, FPR 1e-3). On a random split it blocks "
        f"{_at(ev, 'sinkhole') * 100:.1f}% of the test DGA names at the sinkhole threshold and logs "
        f"{_at(ev, 'log') * 100:.0f}% (TPR {ev['tpr_at_fpr_trained']['fpr_1e-4']:.2f} at FPR 1e-4 on the test "
        f"benign names). On families it has **never seen** (5-fold leave-family-out, `{ev['chosen']}`{carried}) "
        f"it blocks on average only {mean * 100:.0f}% of their names at the sinkhole threshold and "
        f"{log * 100:.0f}% at the log threshold; {n90} of {nfam} families are blocked >= 90% (the targets were "
        f"60% and 30 families: {met}; the report says what limits it)."
    )


def linear_kind(models: Path) -> str:
    """What the shipped linear stage hashes, read from its file (shape n-grams since #13 session 15)."""
    import numpy as np

    gate = models / "default.gate.npz"
    shapes: list[int] = []
    if gate.exists():
        with np.load(gate) as z:
            shapes = [int(o) for o in z["shapes"]] if "shapes" in z.files else []
    if not shapes:
        return "the linear n-gram stage"
    orders = f"{min(shapes)}-{max(shapes)}"
    return f"the linear stage of character n-grams and shape (character-class) n-grams of orders {orders}"


def ensemble_figures(
    ev: dict[str, Any], meta: dict[str, Any], parity: dict[str, Any], cleaning: str, linear: str
) -> str:
    """The model paragraph when the shipped scorer is the CNN + linear stage ensemble (#13 session 7)."""
    ens = ev["shipped_ensemble"]
    facts, lofo, speed = ens["random_split"], ens["lofo"], ens.get("speed") or {}
    met = "met" if lofo["mean"] >= 0.6 and lofo["n90"] >= 30 else "not met"
    cost = (
        f"~{speed['popular_us_b1']:.0f} us per name at batch 1 on popular names ({speed['popular_ratio_b1']:.2f}x "
        f"the CNN alone), ~{speed['random_us_b1']:.0f} us on random-looking ones (`bench/results/ensemble.md`)"
        if speed
        else "cost not measured (bench/ensemble.py)"
    )
    return (
        f"`models/default.tflite` is `{meta['model_version']}`: the character CNN "
        f"({parity.get('bytes', 0) / 1024:.0f} KB, LiteRT) and {linear} beside it "
        "(`models/default.gate.npz`); the linear stage scores every name, and only names over its gate "
        "reach the CNN, which then scores the mean of the two logits: "
        f"{cost}. Names whose label is punycode (`xn--`) are not scored: they pass, logged as such. In short "
        "(figures from `models/eval.json` and `models/default.json`, written by `convert.report` and "
        f"`convert.ship`): {calibrated(meta, cleaning)}. At it the scorer blocks "
        f"{facts['tail_sinkhole'] * 100:.3f}% of long-tail benign names it never saw and logs "
        f"{facts['tail_log'] * 100:.2f}% (`log`, FPR 1e-3). On a random split its TPR at FPR 1e-4 is "
        f"{facts['tpr_1e-4']:.2f} (the CNN alone {facts['cnn_tpr_1e-4']:.2f}). On families it has **never seen** "
        f"(5-fold leave-family-out, `{ens['config']}`) it blocks on average only {lofo['mean'] * 100:.0f}% of their "
        f"names at the sinkhole threshold; {lofo['n90']} of {lofo['n']} families are blocked >= 90% (the targets "
        f"were 60% and 30 families: {met}; the report says what limits it).{_seen(facts)}"
    )


def _seen(facts: dict[str, Any]) -> str:
    """What the scorer reaches on the families it trained on (convert.ship's `families_seen`): the
    bound on what generalising better can buy, as the report's "How far from the targets" says."""
    seen = facts.get("families_seen")
    if not seen:
        return ""
    mean, n90 = sum(seen.values()) / len(seen), sum(r >= 0.9 for r in seen.values())
    return (
        f" Even on the families it trained on it blocks on average {mean * 100:.0f}% of a family's names at "
        f"the sinkhole threshold ({n90} of {len(seen)} families >= 90%): a name-only model meets benign "
        "names that look as random as DGA ones at FPR 1e-4, seen or not."
    )


def calibrated(meta: dict[str, Any], cleaning: str) -> str:
    """How the shipped thresholds were set: on the trusted names and guarded by the long tail (#13
    session 13, `tail_support` in the metadata), or on the pooled names before it."""
    sink, tail = meta["threshold_support"]["fpr_1e-4"], meta.get("tail_support", {}).get("fpr_1e-4")
    if tail is None:
        return (
            f"thresholds are calibrated on ~{sink['n'] / 1000:.0f}k benign names (trusted top-list names plus "
            f"half of the long-tail names only one DNS-volume list knows, {cleaning}), so the `sinkhole` "
            f"threshold (FPR 1e-4) rests on {sink['flagged']} names"
        )
    share = (  # session 18 on: another quarter of the long tail is trained on (convert --tail-train)
        "a quarter of them, another quarter trained on as benign"
        if meta.get("training", {}).get("tail_train")
        else "half of them"
    )
    return (
        f"the `sinkhole` threshold flags at most 1e-4 of ~{sink['n'] / 1000:.0f}k trusted top-list benign names "
        f"({sink['flagged']} at or above it; {cleaning}) and at most {tail['flagged']} of ~{tail['n'] / 1000:.0f}k "
        f"long-tail names only one DNS-volume list knows ({share}; the most that still keeps the long tail "
        "under 0.1% at 95% confidence), whichever is higher; `log` the same at 1e-3 and 1%"
    )


def replay_figures(results: Path = ROOT / "bench" / "results") -> str:
    """The client watch's end-to-end figures: the shipped model's replay (results/replay.json, the
    families it never trained on) and the replay over every leave-family-out fold
    (results/replay-folds.json, bench/replay_folds.py)."""
    shipped = json.loads((results / "replay.json").read_text())
    folds = json.loads((results / "replay-folds.json").read_text())

    def pct(p: dict[str, Any]) -> str:
        return f"{p['mean_c2_all_share'] * 100:.0f}%"

    on, off = shipped["passes"]["watch on"], shipped["passes"]["watch off"]
    f_on, f_off = folds["passes"]["watch on"], folds["passes"]["watch off"]
    lowest = ", ".join(f"{family} {share * 100:.0f}%" for family, share in f_on["lowest"])
    benign = [p["benign"] for p in (on, off, f_on, f_off)]
    clean = all(b["blocked"] == 0 and b["flagged"] == 0 for b in benign)
    return (
        f"On the replay of a small network ({shipped['trace']['params']['benign_clients']} benign clients, "
        f"{shipped['trace']['params']['infected_per_family']} infected per family, "
        f"{shipped['trace']['params']['duration']:.0f} s), the model alone blocks {pct(off)} of the C2 "
        f"lookups of the {len(shipped['families'])} families it never trained on ({', '.join(shipped['families'])}); "
        f"with the watch, {pct(on)} of them are blocked (every family at least "
        f"{on['min_c2_all_share'] * 100:.0f}%; `bench/results/replay.md`). Over the {len(folds['folds'])} "
        "leave-family-out folds of the shipped recipe, each replayed on the families it never saw "
        f"({len(folds['families'])} families), the model alone blocks on average {pct(f_off)} of a "
        f"family's C2 lookups and with the watch {pct(f_on)} ({f_on['families_ge_0.9']} families at "
        f"least 90%; the lowest {lowest}, why in bench/README.md; `bench/results/replay-folds.md`). "
        + (
            "In every run, no benign client is flagged or has a lookup blocked."
            if clean
            else "Benign clients flagged or blocked: see those files."
        )
    )


def render(readme: str, text: str, begin: str = BEGIN, end: str = END) -> str:
    head, _, rest = readme.partition(begin)
    _, _, tail = rest.partition(end)
    if not rest:
        raise SystemExit(f"README.md has no {begin} ... {end} block")
    return f"{head}{begin}\n{text}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when README.md is out of date")
    args = p.parse_args(argv)
    path = ROOT / "README.md"
    current = path.read_text(encoding="utf-8")
    wanted = render(render(current, figures()), model_figures(), MODEL_BEGIN, MODEL_END)
    wanted = render(wanted, replay_figures(), REPLAY_BEGIN, REPLAY_END)
    if args.check:
        if wanted != current:
            print("README.md figures differ from bench/results or models/: run python bench/readme.py")
            return 1
        return 0
    path.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
