"""The Unbound module's first stage (resolverguard/unbound_gate.py): it clears a name only when the
verdict service would pass it, so it must compute exactly what the service computes. These tests
hold its pure-Python featurizer to the numpy one (`resolverguard.ngrams`) on the shipped gate, its
name rules to `NameParser`, its deny keys to the lists, and check when the service switches it off.
Every gate here is the one the service writes to a snapshot and reads back, as the module does.
"""

from __future__ import annotations

import gzip
import math
import os
import random
import string
from pathlib import Path
from typing import Any

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


def reference_text(gate: Gate, qname: str) -> str | None:
    """`Gate.text` as it was before the one-pass rewrite (split, a join per suffix, the regex):
    the rewrite must decide every name exactly as this did."""
    import re

    ldh = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
    name = qname.lower().rstrip(".")
    if not name or len(name) > 253:
        return None
    labels = name.split(".")
    if len(labels) < 2 or "" in labels:
        return None
    tld = labels[-1]
    if tld == "arpa" or tld in gate.local or tld in gate.tricky_tlds or name.endswith(".home.arpa"):
        return None
    if gate.check_dynamic_dns and any(".".join(labels[-n:]) in gate.dynamic_dns for n in gate.dynamic_depths):
        return None
    for i in range(1, len(labels)):
        if ".".join(labels[i:]) in gate.rules:
            registrable, label = ".".join(labels[i - 1 :]), labels[i - 1]
            if not ldh.match(label) or label.startswith("xn--"):  # punycode: unscored (NameParser)
                return None
            return registrable if gate.form == "registrable" else label
    return None


def test_the_gate_decides_and_scores_every_name_exactly_as_before_its_runtime_rewrite(tmp_path: Path) -> None:
    gate, why = snapshot_gate(tmp_path, "query_log: off\nlists:\n  deny: [gardenshop.com]\n")
    assert gate is not None, why
    rng = random.Random(5)
    names = sample_names(2000, 6)
    names += [f"www.{n}" for n in names[:300]] + [f"a.b.{n}." for n in names[:300]] + [n.upper() for n in names[:100]]
    odd_chars = string.ascii_letters + string.digits + "-_.~\n ü"
    names += ["".join(rng.choice(odd_chars) for _ in range(rng.randint(1, 40))) + ".com" for _ in range(1000)]
    names += ["abc\n.com", "\n.com", "a\n\n.com", "-a.com", "a-.com", "a" * 63 + ".com", "a" * 64 + ".com"]
    names += ["x." * 130 + "com", "host.ddns.net", "ddns.net", "a.b.duckdns.org", "www.gardenshop.com", "co.uk"]
    names += ["foo.kawasaki.jp", "foo.bazar", "a..b.com", ".a.com", "com", "", ".", "localhost", "x.home.arpa"]
    judged = above = cleared = 0
    for name in names:
        text = reference_text(gate, name)
        decision, registrable = gate.judge(name)
        if gate.listed(name):
            assert (decision, registrable) == (LISTED, None), name
            continue
        assert gate.text(name) == text, name
        if text is None:
            assert (decision, registrable) == (ASK, None), name
            continue
        assert registrable is not None
        assert text == (registrable if gate.form == "registrable" else registrable.split(".")[0])
        logit = gate.featurizer.logit(text)  # the featurizer is untouched: the same float, compared exactly
        assert decision == (CLEARED if logit < gate.threshold else ABOVE), name
        assert decision == gate.decide(name)
        judged += 1
        above += decision == ABOVE
        cleared += decision == CLEARED
    assert judged > 0.5 * len(names) and above > 100 and cleared > 100  # not vacuous: both ways, many names


def test_the_service_takes_the_modules_registrable_name_and_gets_the_parsers_name(tmp_path: Path) -> None:
    from resolverguard.steps.names import NameStep
    from resolverguard.unboundservice import ModuleNameStep, VerdictService

    gate, _ = snapshot_gate(tmp_path)
    assert gate is not None
    parser = NameParser()
    step = ModuleNameStep(NameStep(parser))
    names = sample_names(500, 8) + [f"WWW.{n}." for n in sample_names(200, 9)] + ["a.b.foo.co.uk"]
    taken = 0
    for i, name in enumerate(names):
        decision, registrable = gate.judge(name)
        line = f"{name}\t1\t10.0.0.1\ta={registrable or ''}\t{i + 1}".encode()
        request, number = VerdictService.request(line)
        assert request is not None and number == str(i + 1).encode() and request.client == ("10.0.0.1", 0)
        step.check(request)
        assert request.name == parser.parse(name), name
        taken += registrable is not None
    assert taken > 0.9 * len(names)
    # a registrable name that is not the asked name's is not believed: the parser decides
    request, _ = VerdictService.request(b"www.example.com\t1\t-\ta=other.org\t7")
    assert request is not None and request.notes["gate"] == "above"
    step.check(request)
    assert request.name == parser.parse("www.example.com")


def reference_hashed_fast(f: Any, raw: bytes) -> float:
    """`Featurizer._hashed_fast` as it was before one multiplication per position was saved (two
    big products per position): the rewrite must give the very same float."""
    from resolverguard.unbound_gate import _M64, _MULT

    g = [0, 0, *raw, f._end]
    c3 = [(a << 12) | (b << 6) | c for a, b, c in zip(g, g[1:], g[2:], strict=False)]
    total = sum(map(f.low.__getitem__, c3))
    weights, shift, m64, mult = f.weights, f._shift, _M64, _MULT
    (_, k4), (_, k5) = f._high
    total += sum(
        [
            weights[((c4 * mult + k4) & m64) >> shift] + weights[((((c4 << 6) | e) * mult + k5) & m64) >> shift]
            for c4, e in zip([(x << 6) | d for x, d in zip(c3[1:], g[4:], strict=False)], g[5:], strict=False)
        ]
    )
    if len(raw) >= 2:
        last4 = (c3[-2] << 6) | g[-1]
        total += weights[((last4 * mult + k4) & m64) >> shift]
    return float(total + weights[f._suffix_index(raw, True)])


def reference_dense_sum(f: Any, raw: bytes) -> float:
    """`Featurizer._dense_sum` as it was before (float32 rounding through `array("f")`, not struct)."""
    from array import array

    dot = raw.find(f._dot)
    label = raw[:dot] if dot >= 0 else raw
    length = len(label)
    safe = max(length, 1)
    entropy = 0.0
    terms = f._entropy_terms[length]
    for n in map(label.count, sorted(set(label))):
        entropy -= terms[n]
    classes = label.translate(f._classes)
    vowels = classes.count(b"v")
    letters = vowels + classes.count(b"l")
    digits, hyphens = classes.count(b"d"), classes.count(b"h")
    features = array("f", (length / 32.0, entropy / 5.0, digits / safe, vowels / max(letters, 1), hyphens / safe))
    d = f.dense
    return features[0] * d[0] + features[1] * d[1] + features[2] * d[2] + features[3] * d[3] + features[4] * d[4]


def test_the_gate_scores_are_bit_identical_to_before_its_runtime_rewrite(tmp_path: Path) -> None:
    gate, why = snapshot_gate(tmp_path)
    assert gate is not None, why
    f = gate.featurizer
    rng = random.Random(11)
    texts = [t for t in (gate.text(n) for n in sample_names(2000, 12)) if t is not None]
    texts += ["".join(rng.choice(string.ascii_letters + string.digits + "-_.~ü") for _ in range(rng.randint(1, 60)))]
    texts += ["a", "ab", "abc", "abcd", "x" * (f.maxlen - 1), "x" * f.maxlen, "x" * (f.maxlen + 5)]
    exact = 0
    for text in texts:
        raw = text.encode("ascii", "replace")[: f.maxlen].translate(f._table)
        hashed = reference_hashed_fast(f, raw) if len(raw) < f.maxlen else f._hashed_any(raw)
        if f.shapes:  # (added after the rewrite: tests/test_shapes.py checks them against their definition)
            hashed = hashed + f._shape_sum(raw)
        before = hashed + reference_dense_sum(f, raw)
        assert f.logit(text) == before + f.bias, text  # ==: the same float, bit for bit
        exact += len(raw) < f.maxlen
    assert exact > 3000  # the rewritten path ran on thousands of names
    entropy_terms = tuple(
        tuple((n / max(length, 1)) * math.log2(n / max(length, 1)) if n else 0.0 for n in range(length + 1))
        for length in range(f.maxlen + 1)
    )  # the table as it was built before
    assert f._entropy_terms == entropy_terms


def test_a_header_with_numpy_values_is_written_plain_and_read_back(tmp_path: Path) -> None:
    from resolverguard.unbound_gate import write_snapshot

    header = {"enabled": False, "why_off": "test", "threshold": np.float64(1.5), "bias": np.float32(0.25)}
    write_snapshot(tmp_path / "n.gate", header | {"orders": (1, 2), "bits": np.int64(4)}, {"weights": b"\0" * 8})
    gate, why = read_snapshot(tmp_path / "n.gate")
    assert gate is None and why == "gate off: test"  # read back: the header parsed
    import marshal

    data = (tmp_path / "n.gate").read_bytes()
    head = marshal.loads(data[12 : 12 + int.from_bytes(data[8:12], "little")])
    assert head["threshold"] == 1.5 and head["bias"] == 0.25 and head["bits"] == 4 and head["orders"] == [1, 2]
    assert type(head["bits"]) is int and type(head["threshold"]) is float


def built_c() -> bool:
    """The C featurizer is there (the extension built, RESOLVERGUARD_GATE_C not "off")."""
    from resolverguard.unbound_gate import native_linear_type

    return native_linear_type() is not None


def test_the_gates_c_featurizer_gives_the_pure_python_float_bit_for_bit(tmp_path: Path) -> None:
    """gate6: the module's gate runs its featurizer in C (`_ngramc.Linear` made from the snapshot's
    own buffers) where the extension is built; the float must be the pure-Python one, so a name is
    cleared or asked exactly as before. Both gates read the same snapshot file."""
    gate, why = snapshot_gate(tmp_path, "query_log: off\nlists:\n  deny: [gardenshop.com]\n")
    python, why_python = read_snapshot(tmp_path / "s.gate", native=False)
    assert gate is not None and python is not None, why
    assert why.endswith(f"featurizer in {'C' if built_c() else 'Python'})") and why_python.endswith("in Python)")
    f = gate.featurizer
    rng = random.Random(21)
    names = sample_names(3000, 22) + [f"www.{n}" for n in sample_names(300, 23)]
    texts = [t for t in map(gate.text, names) if t is not None]
    odd_chars = string.ascii_letters + string.digits + "-_.~\n ü\x00\x7f"
    texts += ["".join(rng.choice(odd_chars) for _ in range(rng.randint(0, 70))) for _ in range(1000)]
    texts += ["", ".", "a", "ab", "abc", "a.", ".a", "-", "e" * 30, "0123456789-_" * 3, "a" * 12 + "." + "b" * 30]
    texts += ["x" * k for k in range(f.maxlen - 3, f.maxlen + 3)] + [
        "y" * k + ".com" for k in range(f.maxlen - 7, f.maxlen)
    ]
    for text in texts:
        assert gate.featurizer.logit(text) == python.featurizer.logit(text), text  # ==: the same float
    for name in names + ["gardenshop.com", "a.b.co.uk", "host.ddns.net", "x" * 64 + ".com", "UPPER.COM."]:
        assert gate.judge(name) == python.judge(name), name
    cleared = sum(python.featurizer.logit(t) < python.threshold for t in texts)
    assert 0 < cleared < len(texts) - 1000  # both sides of the gate, many names: not vacuous


def test_a_snapshot_without_float16_weights_keeps_the_pure_python_featurizer(tmp_path: Path) -> None:
    """The C sums the weights in another order than the Python code; that gives the same float only
    when every weight is a float16 value, which the service checks and writes into the header. A
    snapshot that does not say so (an older service, or a stage being fit) gets the Python featurizer."""
    import marshal

    from resolverguard.unbound_gate import write_snapshot

    gate, why = snapshot_gate(tmp_path)
    assert gate is not None, why
    data = (tmp_path / "s.gate").read_bytes()
    head = marshal.loads(data[12 : 12 + int.from_bytes(data[8:12], "little")])
    assert head["weights_float16"] is True
    sections = {name: data[at : at + size] for name, (at, size) in head.pop("sections").items()}
    for value in (False, None):
        if value is None:
            del head["weights_float16"]
        else:
            head["weights_float16"] = value
        write_snapshot(tmp_path / "old.gate", head, sections)
        old, why_old = read_snapshot(tmp_path / "old.gate")
        assert old is not None and why_old.endswith("featurizer in Python)"), why_old
        assert old.featurizer.logit("xkq3vbh7tzpq.com") == gate.featurizer.logit("xkq3vbh7tzpq.com")


def test_the_gate_runs_in_c_in_a_process_without_numpy(tmp_path: Path) -> None:
    """As Unbound loads it: unbound_gate.py from its file, no package, no numpy (a reload of Unbound's
    Python would not survive numpy): the C featurizer is made from the snapshot's buffers alone."""
    import subprocess
    import sys

    gate, why = snapshot_gate(tmp_path)
    assert gate is not None, why
    script = (
        "import sys\n"
        "from importlib.machinery import SourceFileLoader\n"
        f"loader = SourceFileLoader('gatecode', {str(ROOT / 'resolverguard' / 'unbound_gate.py')!r})\n"
        "code = type(sys)('gatecode'); code.__file__ = loader.path; sys.modules['gatecode'] = code\n"
        "loader.exec_module(code)\n"
        f"gate, why = code.read_snapshot({str(tmp_path / 's.gate')!r})\n"
        "print(why); print(repr(gate.featurizer.logit('xkq3vbh7tzpq.com')))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'resolverguard')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # (nothing of resolverguard's package)
    out = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, env=env, check=True)
    said, logit, modules = out.stdout.splitlines()
    assert said.endswith(f"featurizer in {'C' if built_c() else 'Python'})"), out.stdout + out.stderr
    assert float(logit) == gate.featurizer.logit("xkq3vbh7tzpq.com")  # repr round-trips: the same float
    assert modules == "[]"  # neither numpy nor resolverguard's package (the extension is loaded from its file)
