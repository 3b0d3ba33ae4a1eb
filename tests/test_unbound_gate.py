"""The Unbound module's first stage (resolverguard/unbound_gate.py): it clears a name only when the
verdict service would pass it, so it must compute exactly what the service computes. These tests
hold its pure-Python featurizer to the numpy one (`resolverguard.ngrams`) on the shipped gate, its
name rules to `NameParser`, its deny keys to the lists, and check when the service switches it off.
Every gate here is the one the service writes to a snapshot and reads back, as the module does.
"""

from __future__ import annotations

import gzip
import random
import string
from pathlib import Path

import numpy as np
import pytest

from resolverguard.config import load_config
from resolverguard.gatestage import load_gate, write_gate_snapshot
from resolverguard.model import load_model
from resolverguard.names import NameParser
from resolverguard.pipeline import groups_for
from resolverguard.unbound_gate import ABOVE, ASK, CLEARED, LISTED, Gate, read_snapshot

ROOT = Path(__file__).resolve().parent.parent
BENIGN = ROOT.parent / "shared" / "data" / "benign.txt.gz"
WORDS = ["shop", "news", "mail", "cloud", "green", "river", "blue", "city", "home", "garden", "book", "travel"]


def snapshot_gate(tmp_path: Path, policy: str = "") -> tuple[Gate | None, str]:
    config = tmp_path / "policy.yaml"
    config.write_text(policy or "query_log: off\n")
    cfg = load_config(config)
    model = load_model(cfg.model)
    groups = groups_for(cfg, model.metadata.thresholds)
    write_gate_snapshot(tmp_path / "s.gate", cfg, model, groups, load_gate(model.path), log=False)
    return read_snapshot(tmp_path / "s.gate")


def sample_names(n: int, seed: int) -> list[str]:
    """Benign names from the training data when it is there (else made-up word pairs), and random strings."""
    rng = random.Random(seed)
    if BENIGN.exists():
        with gzip.open(BENIGN, "rt") as handle:
            benign = rng.sample([line.strip() for line in handle if line.strip()], n)
    else:
        benign = [f"{rng.choice(WORDS)}{rng.choice(WORDS)}{i}.{rng.choice(['com', 'de', 'co.uk'])}" for i in range(n)]
    alphabet = string.ascii_lowercase + string.digits
    dga = ["".join(rng.choice(alphabet) for _ in range(rng.randint(6, 30))) + ".com" for _ in range(n)]
    return benign + dga


def test_the_pure_python_featurizer_scores_what_the_numpy_one_scores(tmp_path: Path) -> None:
    gate, why = snapshot_gate(tmp_path)
    assert gate is not None, why
    stage = load_gate(load_model(None).path)
    assert stage is not None
    rng = random.Random(3)
    odd = ["".join(rng.choice(string.ascii_letters + string.digits + "-_.~") for _ in range(rng.randint(1, 70)))]
    odd += ["x" * 60 + ".com", "a" * 47, "a" * 48, "a" * 49, "nodot", "UPPER.COM", "ünïcode.de", "a.b.c.d.e.f.g"]
    odd += ["a", "ab", "abc", "a.", ".a", "-", "a-b.c"]  # the shortest names: no 4- or 5-grams
    texts = sample_names(1500, 1) + odd
    expected = stage.stage.logits(texts)
    got = np.array([gate.featurizer.logit(t) for t in texts])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    cleared = got < gate.threshold
    assert 0 < cleared.sum() < len(texts)  # the gate separates these names: the check is not vacuous


def test_the_module_scores_the_text_the_service_scores_or_asks(tmp_path: Path) -> None:
    gate, _ = snapshot_gate(tmp_path)
    assert gate is not None
    parser = NameParser()
    names = sample_names(3000, 2)
    names += [f"www.{n}" for n in names[:500]] + [f"a.b.{n}" for n in names[:200]]
    names += ["host.ddns.net", "x.duckdns.org", "a.b.ck", "www.ck", "1.0.0.127.in-addr.arpa", "printer.local"]
    names += ["router.home.arpa", "localhost", "co.uk", "foo.co.uk", "xn--bcher-kva.de", "foo.bazar", "-bad-.com"]
    names += ["a..b.com", "under_score.com", "x" * 64 + ".com", "EXAMPLE.COM.", "foo.kawasaki.jp", "b.kawasaki.jp"]
    asked = 0
    for name in names:
        text = gate.text(name)
        if text is None:
            asked += 1
            continue
        assert text == parser.parse(name).model_input(load_model(None).metadata.input_form), name
    must = ("host.ddns.net", "1.0.0.127.in-addr.arpa", "printer.local", "localhost", "co.uk", "foo.bazar")
    for must_ask in (*must, "xn--bcher-kva.de"):  # (punycode: unscored by the service, never cleared here)
        assert gate.text(must_ask) is None and gate.decide(must_ask) == ASK, must_ask
    assert asked < 0.05 * len(names)  # almost every ordinary name is decided in the module


def test_a_name_on_any_deny_list_is_asked_even_when_the_gate_would_clear_it(tmp_path: Path) -> None:
    policy = (
        "query_log: off\nlists:\n  deny: [gardenshop.com]\n"
        "groups:\n  - name: kids\n    clients: [10.0.0.0/8]\n    lists:\n      deny: [riverbooks.net]\n"
    )
    gate, why = snapshot_gate(tmp_path, policy)
    assert gate is not None, why
    for name in ("gardenshop.com", "www.gardenshop.com", "riverbooks.net", "a.riverbooks.net"):
        text = gate.text(name)
        assert text is not None and gate.featurizer.logit(text) < gate.threshold  # the gate alone would clear it
        assert gate.listed(name) and gate.decide(name) == LISTED, name
    assert gate.decide("gardenshop.org") == CLEARED and not gate.listed("shop.com")
    assert gate.decide("xkq3vbh7tzpq.com") == ABOVE


@pytest.mark.parametrize(
    ("policy", "why"),
    [
        ("lists:\n  deny_files: [{tmp}/regex.txt]\n", "regular expressions"),
        ("private_suffixes: all\n", "private_suffixes: all"),
        ("scoring: false\n", "scoring is off"),
    ],
)
def test_the_service_turns_the_gate_off_where_the_module_could_not_decide_alike(
    tmp_path: Path, policy: str, why: str
) -> None:
    (tmp_path / "regex.txt").write_text("/^ads[0-9]+\\./\n")  # an adblock-style regex rule
    gate, said = snapshot_gate(tmp_path, "query_log: off\n" + policy.format(tmp=tmp_path))
    assert gate is None and why in said


def test_a_snapshot_that_is_missing_or_damaged_turns_the_gate_off(tmp_path: Path) -> None:
    assert read_snapshot(tmp_path / "none.gate")[0] is None
    gate, _ = snapshot_gate(tmp_path)
    assert gate is not None
    data = (tmp_path / "s.gate").read_bytes()
    (tmp_path / "cut.gate").write_bytes(data[: len(data) // 2])
    cut, why = read_snapshot(tmp_path / "cut.gate")
    assert cut is None and "unreadable" in why
    (tmp_path / "junk.gate").write_bytes(b"junk" * 10)
    assert read_snapshot(tmp_path / "junk.gate") == (None, "not a gate snapshot")


def test_the_gate_lets_at_most_its_share_of_calibration_names_through_to_the_cnn() -> None:
    from convert.gate import gate_threshold

    rng = np.random.default_rng(4)
    logits = rng.normal(size=2000)
    for fpr in (0.01, 0.05, 0.2):
        threshold = gate_threshold(logits, fpr)
        above = int((logits >= threshold).sum())
        assert above <= fpr * len(logits) and above >= fpr * len(logits) - 1  # the lowest such gate
