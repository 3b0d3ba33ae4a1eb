"""The shipped default model loads in the resolver and behaves on names whose answer is obvious."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resolverguard.model import default_model_path, load_model
from resolverguard.names import NameParser

ROOT = Path(__file__).resolve().parent.parent
BENIGN = [
    "google.com",
    "www.wikipedia.org",
    "bbc.co.uk",
    "github.com",
    "amazon.de",
    "uni-heidelberg.de",
    "mail.yandex.ru",
    "baidu.com",
    "nytimes.com",
    "sparkasse.de",
]
# Home servers under dynamic-DNS providers: what Pi-hole users run, and what a suffix-reading model
# could learn to call DGA (every `*.ddns.net` name in the training data is one).
HOME_SERVERS = ["myhome.ddns.net", "nextcloud-mueller.dyndns.org", "familienas.duckdns.org", "johnsmith.hopto.org"]
DGA = [
    "xkq3vbh7tzpq.com",
    "0o21xilej5pqpk.ddns.net",
    "qxzvbnmkjhgtrw.net",
    "e7z9t4x6a0v5mk3zo1a0.org",
    "jxhqzkwpvtrbnm.info",
]


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_shipped_files_and_metadata() -> None:
    path = default_model_path()
    assert path == ROOT / "models" / "default.tflite"
    assert path.stat().st_size <= 1024 * 1024  # the size target of the training issue
    meta = json.loads(path.with_suffix(".json").read_text())
    assert {"fpr_1e-2", "fpr_1e-3", "fpr_1e-4", "log", "sinkhole"} <= set(meta["thresholds"])
    assert meta["thresholds"]["log"] < meta["thresholds"]["sinkhole"] < 1.0
    assert meta["input"]["form"] in {"label", "registrable"} and len(meta["training_data_digest"]) == 64
    training = meta["training"]
    assert training["families"] and not set(training["families"]) & set(training["held_out_families"])


def test_obvious_names_behave(model) -> None:
    parser, log, form = NameParser(), model.metadata.thresholds["log"], model.metadata.input_form
    benign = model.score([parser.model_input(n, form) or "" for n in BENIGN])
    dga = model.score([parser.model_input(n, form) or "" for n in DGA])
    assert (benign < log).all(), dict(zip(BENIGN, benign.tolist(), strict=True))
    assert (dga >= log).all(), dict(zip(DGA, dga.tolist(), strict=True))
    assert benign.max() < 0.5


def test_home_servers_under_dynamic_dns_are_not_sinkholed(model) -> None:
    parser, form = NameParser(), model.metadata.input_form
    scores = model.score([parser.model_input(n, form) or "" for n in HOME_SERVERS])
    assert (scores < model.metadata.thresholds["sinkhole"]).all(), dict(zip(HOME_SERVERS, scores.tolist(), strict=True))


def test_the_shipped_scorer_is_the_ensemble_its_metadata_describes(model) -> None:
    """#13 session 7: the CNN + linear stage, one name at a time (pure Python) as in a batch (numpy),
    names under the gate at 0 without the CNN, the others the mean of the two logits."""
    import numpy as np

    from resolverguard.model import EnsembleScorer, TFLiteScorer, cnn_logits, load_metadata, metadata_path

    assert isinstance(model, EnsembleScorer)
    spec = model.metadata.extra["ensemble"]
    assert spec["cnn_thresholds"]["sinkhole"] != model.metadata.thresholds["sinkhole"]
    parser, form = NameParser(), model.metadata.input_form
    texts = [parser.model_input(n, form) or "" for n in BENIGN + HOME_SERVERS + DGA]
    batch = model.score(texts)
    assert batch.tolist() == [float(model.score([t])[0]) for t in texts]  # the two paths agree exactly
    linear = model.linear.logits(texts)
    cnn = TFLiteScorer(model.path, load_metadata(metadata_path(model.path))).score(texts)
    under = linear < spec["gate_logit"]
    assert under.any() and (~under).any() and (batch[under] == 0.0).all()
    z = (cnn_logits(cnn[~under], spec["cnn_temperature"]) + linear[~under]) / 2.0
    assert np.allclose(batch[~under], 1.0 / (1.0 + np.exp(-z)), rtol=0, atol=1e-6)


def test_an_ensemble_refuses_a_linear_stage_it_was_not_calibrated_with(tmp_path: Path) -> None:
    import shutil

    from resolverguard.errors import ModelError
    from resolverguard.ngrams import LinearWeights

    for name in ("default.tflite", "default.json", "default.gate.npz"):
        shutil.copy(ROOT / "models" / name, tmp_path / name)
    stage = LinearWeights.load(tmp_path / "default.gate.npz")
    LinearWeights(stage.hasher, stage.weights, stage.dense, stage.bias + 1.0).save(tmp_path / "default.gate.npz")
    with pytest.raises(ModelError, match="not the linear stage it was calibrated with"):
        load_model(tmp_path / "default.tflite")


def reference_ensemble(model, texts: list[str]):
    """`EnsembleScorer.score` as it was before it encoded once for both stages (#17): the reference
    numpy linear stage (`LinearWeights.logits`, what convert.ship calibrated the thresholds on) for a
    batch, the pure-Python featurizer for one name, and the CNN from the texts on the names over the
    gate, as one call (a dynamic-range quantized model's output may depend on its batch)."""
    import numpy as np

    from resolverguard.model import TFLiteScorer, ensemble_scores

    if len(texts) == 1:
        linear = np.array([model.featurizer.logit(texts[0])], dtype=np.float64)
    else:
        linear = model.linear.logits(texts)
    reach = linear >= model.gate
    cnn_p = np.zeros(len(texts), dtype=np.float32)
    if reach.any():
        cnn_p[reach] = TFLiteScorer.score(model, [t for t, r in zip(texts, reach.tolist(), strict=True) if r])
    return ensemble_scores(cnn_p, linear, model.gate, model.temperature), linear


def test_the_ensemble_scores_what_it_scored_before_its_serving_rewrite(model) -> None:
    """Bit for bit (`==`), alone and in the batches the server makes, on benign names, random labels
    and odd inputs (empty, non-ASCII, over maxlen: the paths that fall back)."""
    import random
    import string

    import numpy as np

    rng = random.Random(17)
    alphabet = string.ascii_lowercase + string.digits
    words = ["shop", "news", "mail", "cloud", "green", "river", "blue", "city", "home", "garden", "book", "travel"]
    texts = [f"{rng.choice(words)}{rng.choice(words)}{rng.randint(0, 999)}.com" for _ in range(600)]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(6, 30))) + ".net" for _ in range(600)]
    texts += ["".join(rng.choice(string.printable + "ü") for _ in range(rng.randint(0, 70))) for _ in range(200)]
    texts += ["", "a", "ab", "abc", "abcd.e", "x" * 47, "x" * 48, "q7" * 40 + ".com", ".", "a.b.c.d"]
    texts += list(BENIGN) + list(DGA)
    rng.shuffle(texts)
    reached = 0
    for size in (1, 2, 7, 32, 64):
        for i in range(0, len(texts) if size > 1 else 400, size):
            batch = texts[i : i + size]
            expected, linear = reference_ensemble(model, batch)
            assert model.score(batch).tolist() == expected.tolist(), batch
            if size > 1 and model.rows is not None:
                rows = model.encoder.encode(batch)
                assert (model.rows.logits(batch, rows) == linear).all(), batch
            reached += int((linear >= model.gate).sum())
    assert model.rows is not None and model.rows.fast  # the shipped pair takes the new paths
    assert reached > 1000  # names reached the CNN, on every path
    assert np.array_equal(model.encoder.encode(texts[:50]), np.stack([_row(model, t) for t in texts[:50]]))


def _row(model, text: str):
    import numpy as np

    row = np.zeros(model.encoder.maxlen, dtype=np.int32)
    model.encoder.encode_one(text, row)
    return row


def test_chunks_cover_a_batch_with_powers_of_two_largest_first() -> None:
    from resolverguard.model import MAX_CHUNK, chunks

    assert chunks(0) == [] and chunks(1) == [1] and chunks(13) == [8, 4, 1]
    for n in range(0, 3 * MAX_CHUNK + 2):
        parts = chunks(n)
        assert sum(parts) == n and parts == sorted(parts, reverse=True)
        assert all(p & (p - 1) == 0 and p <= MAX_CHUNK for p in parts)
        assert len(set(p for p in parts if p < MAX_CHUNK)) == len([p for p in parts if p < MAX_CHUNK])


def test_a_name_scores_the_same_in_any_batch_it_rides_in(model) -> None:
    """The CNN runs a batch as chunks on interpreters of fixed sizes (never resized): a row's output
    must not depend on its batch's size or on the rows beside it, bit for bit."""
    import random
    import string

    import numpy as np

    rng = random.Random(5)
    alphabet = string.ascii_lowercase + string.digits
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(6, 30))) + ".com" for _ in range(200)]
    rows = model.encoder.encode(texts)
    alone = np.concatenate([model.outputs_of_rows(rows[i : i + 1]) for i in range(len(texts))])
    at = 0
    for size in (13, 77, 3, 64, 2, 41):  # 200 names in batches of sizes the chunks split differently
        batch = model.outputs_of_rows(rows[at : at + size])
        assert batch.shape == (size, 1) and np.array_equal(batch, alone[at : at + size]), size
        at += size
    assert at == len(texts)
    assert model.outputs_of_rows(rows[:0]).shape == (0, 1)
    assert sorted(model._sized) == [1, 2, 4, 8, 16, 32, 64]  # no more interpreters than the chunk sizes
