"""The cascade of the Unbound verdict service: a linear n-gram gate in front of the CNN.

Why: the module inside Unbound must not wait on the service for every never-seen name (issue #17:
Unbound's threads spent ~70% of their time blocked on it). A name whose linear-stage logit is under
the gate (calibrated at benign FPR 0.05 by `convert/gate.py`, shipped as `models/default.gate.npz`
+ `default.gate.json` beside the CNN) passes without the CNN; #13 measured that this cascade flags
exactly the names the CNN flags and hands only ~5-8% of benign names on to it.

The module decides cleared names itself (`resolverguard/unbound_gate.py`, pure Python); the service
applies the same cascade to the names it is asked about (`GateStep`), with the same pure-Python
featurizer read back from the snapshot it wrote, so a name gets one verdict whoever decides it. The
snapshot (`write_gate_snapshot`) carries everything the module needs to be sure a name would pass:
the gate, the deny keys of every list of every group, the public suffix rules, and the gate switched
off when something cannot be decided in the module (deny regexes, a threshold at 0, `private_suffixes:
all`, no gate shipped with the model).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resolverguard.chain import Outcome, Request
from resolverguard.config import Config
from resolverguard.errors import ModelError
from resolverguard.groups import GroupDirectory
from resolverguard.lists import DomainLists, RuleSet, Tier
from resolverguard.model import TFLiteScorer
from resolverguard.names import _DYNAMIC_DNS_DEPTHS, DYNAMIC_DNS_SUFFIXES, LOCAL_SUFFIXES, PrivateSuffixMode
from resolverguard.ngrams import LinearWeights, gram_tables, low_table, shape_table
from resolverguard.unbound_gate import Gate, read_snapshot, write_snapshot

GATE_FORMAT = "resolverguard-gate/1"
_DENY_TIERS = (Tier.IMPORTANT_DENY, Tier.DENY)


@dataclass(frozen=True)
class GateModel:
    """The linear stage and its gate (a logit: names below it pass without the CNN)."""

    stage: LinearWeights
    threshold: float
    facts: dict[str, Any]  # calibration: FPR, pool size, shares reaching the CNN (default.gate.json)


def gate_files(model_path: Path) -> tuple[Path, Path]:
    """The gate's files beside a model: `default.tflite` -> `default.gate.npz`, `default.gate.json`."""
    stem = model_path.with_suffix("")
    return stem.with_name(stem.name + ".gate.npz"), stem.with_name(stem.name + ".gate.json")


def load_gate(model_path: Path) -> GateModel | None:
    """The gate shipped with this model, or None when it has none (every name is then asked)."""
    weights, facts_path = gate_files(model_path)
    if not weights.exists() or not facts_path.exists():
        return None
    try:
        facts = json.loads(facts_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{facts_path}: cannot read the gate: {err}") from None
    if facts.get("format") != GATE_FORMAT or not isinstance(facts.get("threshold_logit"), float):
        raise ModelError(f"{facts_path}: not a resolverguard gate (format != {GATE_FORMAT!r})")
    return GateModel(LinearWeights.load(weights), facts["threshold_logit"], facts)


def psl_rules() -> tuple[frozenset[str], frozenset[str]]:
    """(ICANN rules without wildcard or exception, TLDs that have a wildcard or exception rule),
    both also in ASCII (punycode) form, from the list `resolverguard.names.NameParser` walks."""
    import publicsuffixlist

    text = (Path(publicsuffixlist.__file__).parent / "public_suffix_list.dat").read_text(encoding="utf-8")
    icann = text.split("===BEGIN ICANN DOMAINS===", 1)[1].split("===END ICANN DOMAINS===", 1)[0]
    rules: set[str] = set()
    tricky: set[str] = set()
    for line in icann.splitlines():
        rule = line.strip().split(" ", 1)[0].lower()
        if not rule or rule.startswith("//"):
            continue
        for form in _forms(rule.lstrip("!*.") if rule[0] in "!*" else rule):
            if rule[0] in "!*":
                tricky.add(form.rsplit(".", 1)[-1])
            else:
                rules.add(form)
    return frozenset(rules), frozenset(tricky)


def _forms(rule: str) -> Iterator[str]:
    yield rule
    try:
        ascii_form = rule.encode("idna").decode("ascii")
    except UnicodeError:
        return
    if ascii_form != rule:
        yield ascii_form


def _deny_rule_sets(groups: GroupDirectory) -> Iterator[RuleSet]:
    lists: list[DomainLists] = [groups.default.lists, *(g.lists for g in groups.groups)]
    for item in lists:
        for tier in _DENY_TIERS:
            yield item.tiers[tier]
        for scoped in item.scoped:
            for tier in _DENY_TIERS:
                yield scoped.tiers[tier]


def why_gate_off(cfg: Config, groups: GroupDirectory, gate: GateModel | None) -> str | None:
    """Why the module may not clear names itself here, or None when it may."""
    if gate is None:
        return "the model has no gate (models/<model>.gate.npz)"
    if not cfg.scoring:
        return "scoring is off"
    if cfg.private_suffixes is PrivateSuffixMode.ALL:
        return "private_suffixes: all (every private suffix changes what is scored)"
    if any(rules.patterns for rules in _deny_rule_sets(groups)):
        return "a deny list has regular expressions (the module matches domains only)"
    thresholds = [t.value for g in (groups.default, *groups.groups) for t in g.policy.thresholds]
    if any(value is not None and value <= 0.0 for value in thresholds):
        return "a threshold is 0 (every name blocks)"
    return None


def deny_keys(groups: GroupDirectory) -> bytes:
    """Every deny key of every group's lists, covering and exact alike, sorted and unique, as int64
    bytes (the module asks about a name any of them matches; the service's lists decide)."""
    parts = [np.frombuffer(rules.covering.keys, dtype=np.int64) for rules in _deny_rule_sets(groups)]
    parts += [np.frombuffer(rules.exact.keys, dtype=np.int64) for rules in _deny_rule_sets(groups)]
    keys = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
    return keys.astype("<i8").tobytes()


def write_gate_snapshot(
    path: Path, cfg: Config, model: TFLiteScorer, groups: GroupDirectory, gate: GateModel | None, log: bool
) -> Gate | None:
    """Writes the module's snapshot and returns the gate read back from it (what the module will
    run, so the service's own `GateStep` runs the very same bytes), or None when the gate is off."""
    off = why_gate_off(cfg, groups, gate)
    header: dict[str, Any] = {"enabled": off is None, "why_off": off, "log": log}
    sections = {"weights": b"", "tables": b"", "deny": b""}
    if gate is not None and off is None:
        hasher, stage = gate.stage.hasher, gate.stage
        rules, tricky = psl_rules()
        header |= {
            "model_version": model.metadata.model_version,
            "charset": hasher.encoder.charset,
            "maxlen": hasher.encoder.maxlen,
            "orders": list(hasher.orders),
            "bits": hasher.bits,
            "shapes": list(hasher.shapes),
            "shape_bits": hasher.shape_bits,
            # every weight a float16 value (a loaded stage): the module's C featurizer then gives
            # the pure-Python float bit for bit (unbound_gate.Featurizer._native_logit)
            "weights_float16": bool(np.array_equal(stage.weights.astype(np.float16).astype(np.float32), stage.weights)),
            "dense": [float(v) for v in stage.dense.astype(np.float32)],
            "bias": float(stage.bias),
            "threshold": gate.threshold,
            "form": model.metadata.input_form.value,
            "check_dynamic_dns": cfg.private_suffixes is PrivateSuffixMode.DYNAMIC_DNS,
            "rules": sorted(rules),
            "tricky_tlds": sorted(tricky),
            "dynamic_dns": sorted(DYNAMIC_DNS_SUFFIXES),
            "dynamic_depths": list(_DYNAMIC_DNS_DEPTHS),
            "local": sorted(LOCAL_SUFFIXES),
        }
        tables = gram_tables(stage)
        sections = {
            "weights": stage.weights.astype("<f4").tobytes(),
            "tables": tables,
            "low": low_table(tables) if hasher.orders == (1, 2, 3, 4, 5) else b"",
            "shapes": shape_table(stage),
            "deny": deny_keys(groups),
        }
    write_snapshot(path, header, sections)
    found, _ = read_snapshot(path)
    return found


class GateStep:
    """Chain check before the score step: a name under the gate gets score 0.0 (passes, in every
    group: every threshold is above 0 while the gate is on) and never reaches the CNN. A name the
    module already ran through the gate (`notes["gate"] == "above"`) is not run again."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._form = gate.form

    def check(self, request: Request) -> Outcome:
        if request.verdict is not None or request.score is not None or request.name is None:
            return None
        if request.notes.get("gate") == "above":
            return None
        text = request.name.label if self._form == "label" else request.name.registrable
        if request.name.label is None or text is None:
            return None
        if self._gate.featurizer.logit(text) < self._gate.threshold:
            request.score = 0.0
            request.notes["gate"] = "cleared"
        return None
