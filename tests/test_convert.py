"""A tiny end-to-end training run: every architecture trains one epoch on names this test makes,
converts to TFLite, passes the parity check, and the shipped result loads and scores in serving.
Also the pieces around it on data the tests make: the benign cleaning rule, the suffix and compound
augmentations, per-family weights, threshold calibration with its interval, the family head."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import string
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from convert import family  # noqa: E402
from convert.augment import compound_copies, drop_suffixes, suffix_pool  # noqa: E402
from convert.clean import machine_made  # noqa: E402
from convert.data import (  # noqa: E402
    BENIGN,
    BENIGN_DNS_MACHINE,
    BENIGN_DNS_ONLY,
    BENIGN_MACHINE,
    InputForm,
    NameParser,
    load,
    load_cached,
)
from convert.evaluate import Scores, calibrate, fpr_interval, tail_budget, threshold_support  # noqa: E402
from convert.experiments import summarise  # noqa: E402
from convert.quantize import quantize_run  # noqa: E402
from convert.ship import ship  # noqa: E402
from convert.splits import TRAIN, VAL  # noqa: E402
from convert.train import TrainConfig, parse_args, sample_weights, train  # noqa: E402
from resolverguard.encoding import NameEncoder  # noqa: E402
from resolverguard.model import ModelMetadata, load_metadata, load_model, metadata_path  # noqa: E402

WORDS = ["shop", "news", "mail", "cloud", "green", "river", "blue", "city", "home"]
WORDS += ["garden", "book", "travel", "photo", "music", "sport", "bank", "tech", "data"]
TLDS = ["com", "net", "org", "de", "co.uk", "fr"]


def write_gz(path: Path, names: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(names) + "\n")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(7)
    root = tmp_path_factory.mktemp("data")
    benign = {
        f"{rng.choice(WORDS)}{rng.choice(WORDS)}{rng.choice(['', '24', 'hub'])}.{rng.choice(TLDS)}" for _ in range(600)
    }
    write_gz(root / "benign.txt.gz", sorted(benign))
    letters = string.ascii_lowercase
    families = {
        "randa": lambda: "".join(rng.choice(letters) for _ in range(rng.randint(12, 18))) + ".com",
        "hexy": lambda: "".join(rng.choice("0123456789abcdef") for _ in range(16)) + ".net",
        "dyn": lambda: "".join(rng.choice(letters + string.digits) for _ in range(14)) + ".ddns.net",
    }
    for name, make in families.items():
        write_gz(root / "dga" / f"{name}.txt.gz", [make() for _ in range(200)])
    return root


MACHINE = ["c43a3cd8f99413891.com", "91dq37ut8n.com", "wjnkcfrrgk.net", "b25b0814-8b7f-c56c.com"]
HUMAN = ["web2print.de", "club1906.com", "bcbsfl.com", "watchtvfree.me", "xn--80aesfpebagmfblc0a.xn--p1ai"]
HUMAN += ["kindergarten-sonnenschein.de", "mp3.com", "24h-news.net"]


@pytest.fixture(scope="module")
def sourced_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same data with a sources file: which lists vouch for each benign name."""
    import shutil

    root = tmp_path_factory.mktemp("sourced")
    shutil.copytree(data_dir / "dga", root / "dga")
    with gzip.open(data_dir / "benign.txt.gz", "rt") as handle:
        curated = handle.read().split()
    rows = [f"{n}\t1\talexa\talexa_2020" for n in curated + MACHINE + HUMAN]
    rows += ["onlycloudflare.com\t1\tcloudflare\tcf", "bothdnslists.com\t2\tcloudflare,umbrella\tcf,umb"]
    rows += [f"{a}{b}tail.net\t1\tumbrella\tumb" for a in WORDS[:10] for b in WORDS[10:]]  # 80 long-tail names
    rows += ["e89d45b16370ee7e43daeaf6ce8d.com\t1\tcloudflare\tcf"]
    write_gz(root / "benign_sources.tsv.gz", ["domain\tn_providers\tproviders\tsources", *rows])
    write_gz(root / "benign.txt.gz", sorted(curated + MACHINE + HUMAN))
    return root


def test_cleaning_rule_removes_machine_made_labels_only() -> None:
    assert [machine_made(n) for n in MACHINE] == ["hex", "alnum", "consonants", "hex"]
    assert [machine_made(n) for n in HUMAN] == [None] * len(HUMAN)
    assert machine_made("012345678901.com") is None  # digits only (a number), not a hex digest
    assert machine_made("a1b2c3d4.com") == "alnum" and machine_made("abc1234.com") is None


def test_loader_pools_benign_names_by_source_and_cleaning(sourced_dir: Path) -> None:
    data = load(sourced_dir)
    pool = dict(zip(data.labels.tolist(), data.family.tolist(), strict=True))
    assert {pool[NameParser(punycode=True).model_input(n)] for n in MACHINE} == {BENIGN_MACHINE}
    assert {pool[NameParser(punycode=True).model_input(n)] for n in HUMAN} == {BENIGN}
    assert pool["onlycloudflare"] == BENIGN_DNS_ONLY and pool["bothdnslists"] == BENIGN
    assert pool["e89d45b16370ee7e43daeaf6ce8d"] == BENIGN_MACHINE  # cleaned in the long-tail pool too
    lists = load(sourced_dir, cleaning="lists")
    kept_apart = dict(zip(lists.labels.tolist(), lists.family.tolist(), strict=True))
    assert kept_apart["e89d45b16370ee7e43daeaf6ce8d"] == BENIGN_DNS_MACHINE  # by pool under the list-level rule


def test_suffix_dropout_changes_suffixes_only() -> None:
    rng = np.random.default_rng(0)
    texts = np.array([f"name{i}.com" for i in range(2000)])
    out = drop_suffixes(texts, 0.5, rng)
    changed = out != texts
    assert 0.4 < changed.mean() < 0.6
    assert [t.split(".", 1)[0] for t in out.tolist()] == [t.split(".", 1)[0] for t in texts.tolist()]
    every = {s for group in suffix_pool() for s in group}
    assert {t.split(".", 1)[1] for t in out[changed].tolist()} <= every
    assert any(t.endswith(".ddns.net") for t in out.tolist())  # long suffixes are not cut off


def test_compound_copies_are_new_hyphen_free_spellings() -> None:
    texts = np.array(["kinder-garten.de", "kindergarten.de", "heavy-duty.info", "24h-news.net", "a-b.com"])
    assert compound_copies(texts).tolist() == ["heavyduty.info"]


def test_family_balance_gives_every_family_the_same_weight() -> None:
    y = np.array([0] * 60 + [1] * 30 + [1] * 10)
    fam = np.array(["benign"] * 60 + ["big"] * 30 + ["small"] * 10)
    w = sample_weights(y, fam, "family")
    assert w[fam == "big"].sum() == pytest.approx(w[fam == "small"].sum())
    assert w[y == 1].sum() == pytest.approx(w[y == 0].sum())
    plain = sample_weights(y, fam, "class")
    assert plain[fam == "big"].sum() == pytest.approx(3 * plain[fam == "small"].sum())


def test_calibration_rests_on_the_names_it_reports() -> None:
    rng = np.random.default_rng(1)
    benign = rng.random(200_000).astype(np.float32)
    thresholds = calibrate(benign)
    support = threshold_support(benign, thresholds)
    for name, fpr in (("fpr_1e-2", 1e-2), ("fpr_1e-3", 1e-3), ("fpr_1e-4", 1e-4)):
        assert support[name]["flagged"] == int(fpr * len(benign))  # 20 names behind 1e-4 here
        lo, hi = support[name]["ci95"]
        assert lo < support[name]["fpr"] < hi and lo < fpr < hi
    narrow, wide = fpr_interval(20, 200_000), fpr_interval(2, 20_000)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert fpr_interval(0, 3000)[0] == 0.0 and fpr_interval(0, 3000)[1] == pytest.approx(3.69 / 3000, rel=0.01)


def test_tail_budget_is_the_most_names_the_interval_allows() -> None:
    for n, bound in ((66_000, 1e-3), (66_000, 1e-2), (20_000, 1e-3)):
        k = tail_budget(bound, n)
        assert 0 < k < bound * n and fpr_interval(k, n)[1] <= bound < fpr_interval(k + 1, n)[1]
    assert tail_budget(1e-3, 1_000) == 0 and tail_budget(1e-3, 0) == 0  # too few names to promise anything


def _pools(trusted: np.ndarray, tail: np.ndarray) -> Scores:
    """Validation benign names, then long-tail names all in the calibration half (labels chosen so)."""
    labels = [f"val{i}.com" for i in range(len(trusted))]
    halves = (f"tail{i}" for i in range(10 * len(tail)))
    labels += [f"{x}.com" for x in halves if zlib.crc32(x.encode()) % 2 == 0][: len(tail)]
    family = np.array([BENIGN] * len(trusted) + [BENIGN_DNS_ONLY] * len(tail))
    part = np.full(len(labels), VAL, dtype=np.int8)
    score = np.concatenate([trusted, tail]).astype(np.float32)
    return Scores(np.array(labels), np.zeros(len(labels), dtype=np.int8), family, part, score, ())


def test_thresholds_hold_the_trusted_fpr_and_the_long_tail_bound() -> None:
    """#13 session 13: FPR f of the trusted names, raised only as far as the long tail needs."""
    rng = np.random.default_rng(3)
    trusted = rng.random(100_000) * 0.9  # trusted names never above 0.9
    clean_tail, junk_tail = rng.random(20_000) * 0.9, rng.random(20_000) * 0.9
    junk_tail[:200] = 0.95 + 0.05 * rng.random(200)  # 1% random-string junk, above every trusted name
    clean, junk = _pools(trusted, clean_tail), _pools(trusted, junk_tail)
    assert clean.tail_calibration().sum() == junk.tail_calibration().sum() == 20_000
    by_trusted = calibrate(clean.score[clean.trusted_calibration()])
    assert clean.thresholds() == by_trusted  # a clean long tail: the trusted FPR alone sets them
    guarded = junk.thresholds()
    for name, f in (("fpr_1e-4", 1e-4), ("fpr_1e-3", 1e-3)):
        flagged = int((junk_tail >= guarded[name]).sum())
        assert flagged <= tail_budget(10 * f, 20_000) and guarded[name] > by_trusted[name]
        assert (trusted >= guarded[name]).mean() <= f
    # The sessions 4-12 rule (the two pooled) and the first design (trusted alone) stay measurable.
    assert junk.thresholds(rule="trusted") == by_trusted
    assert junk.thresholds(rule="pooled") == calibrate(junk.score[junk.calibration()])
    with pytest.raises(ValueError, match="rule"):
        junk.thresholds(rule="pool")


def test_data_cache_is_renamed_into_place_and_read_back(data_dir: Path, tmp_path: Path) -> None:
    """Runs started together share the cache: it appears whole or not at all (no half-written file)."""
    first = load_cached(data_dir, InputForm.REGISTRABLE, tmp_path)
    written = list(tmp_path.iterdir())
    assert len(written) == 1 and written[0].suffix == ".npz" and ".part" not in written[0].name
    again = load_cached(data_dir, InputForm.REGISTRABLE, tmp_path)
    assert (again.labels == first.labels).all() and again.digest == first.digest


def test_loader_uses_the_resolver_name_step(data_dir: Path) -> None:
    data = load(data_dir)
    parser = NameParser(punycode=True)
    dyn = data.labels[data.family == "dyn"]
    assert len(dyn) > 150 and all("." not in label for label in dyn.tolist())  # label under ddns.net
    with gzip.open(data_dir / "benign.txt.gz", "rt") as handle:
        raw = handle.read().split()
    assert set(data.labels[data.family == BENIGN].tolist()) == {parser.model_input(n) for n in raw}


@pytest.mark.parametrize("arch", ["cnn", "lstm", "bilstm", "cnn_lstm", "cnn_ngram", "cnn_shape"])
def test_architecture_trains_quantizes_and_ships(arch: str, data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / arch
    train(TrainConfig(arch, run, data_dir=data_dir, epochs=1, cap=1000, folds=3, maxlen=24, batch_size=64, cache=None))
    report = quantize_run(run, ("float32", "dynamic-int8"), log=lambda _: None, bench_seconds=0.05)
    assert report["float32"]["ok"] and report["float32"]["max_abs_diff"] < 1e-4
    assert report["dynamic-int8"]["max_abs_diff"] < 0.1 and report["dynamic-int8"]["bytes"] > 0

    target = tmp_path / "ship" / "model.tflite"
    meta = ship(run, "float32", target)
    assert set(meta["thresholds"]) >= {"fpr_1e-2", "fpr_1e-3", "fpr_1e-4", "log", "sinkhole"}
    model = load_model(target)  # the serving loader: sha256, shape and metadata checks
    assert model.encoder == NameEncoder(meta["input"]["charset"], 24)
    names = ["shopnews", "qkzjxwpvbrt", "a", "0123456789abcdef0123"]
    served = model.score(names)
    lite = np.load(run / "tflite" / "float32.scores.npy")
    assert served.shape == (4,) and np.all((served >= 0) & (served <= 1))
    assert lite.dtype == np.float32 and np.isfinite(lite).all()
    assert meta["training"]["families"] == ["dyn", "hexy", "randa"] and meta["training"]["held_out_families"] == []
    assert meta["training"]["tail_train"] is False  # carried from run.json: the report's Data text reads it
    # the version ends with the file's digest: two models of one day and data set never share it
    assert meta["model_version"].endswith("-" + hashlib.sha256(target.read_bytes()).hexdigest()[:8])


def test_init_seed_changes_the_weights_and_keeps_the_split(data_dir: Path, tmp_path: Path) -> None:
    """Several seeds of one configuration (seed variance, seed ensembles): `--init-seed` moves the
    initialisation and batch order only; the names and their parts stay those of `seed`."""
    cfg = dict(data_dir=data_dir, epochs=1, cap=400, folds=3, maxlen=24, batch_size=64, cache=None)
    runs = {name: tmp_path / name for name in ("a", "a-again", "b")}
    for name, init in (("a", 7), ("a-again", 7), ("b", 8)):
        train(TrainConfig("cnn", runs[name], init_seed=init, **cfg))  # type: ignore[arg-type]
    got = {name: np.load(run / "scores.npz") for name, run in runs.items()}
    assert np.array_equal(got["a"]["labels"], got["b"]["labels"]) and np.array_equal(got["a"]["part"], got["b"]["part"])
    same = np.abs(got["a"]["score"] - got["a-again"]["score"]).max()  # (threads sum in their own order)
    other = np.abs(got["a"]["score"] - got["b"]["score"]).max()
    assert same < 1e-5 and other > 1e-2
    assert parse_args(["--arch", "cnn", "--out", "x", "--init-seed", "8"]).init_seed == 8
    assert json.loads((runs["b"] / "run.json").read_text())["init_seed"] == 8


def test_seed_average_and_its_report_section(sourced_dir: Path, tmp_path: Path) -> None:
    """convert.seeds on three "seeds" of a tiny fold model (its logits shifted by fixed noise) and a
    "linear stage": the average is the mean of the logits, the cascade passes what the gate clears,
    and the section's spread is the seeds' own."""
    from convert import seeds
    from convert.ensemble import FLOOR
    from convert.train import save_scores

    cfg = dict(data_dir=sourced_dir, epochs=1, cap=1000, folds=3, maxlen=32, batch_size=64, cache=None)
    rng = np.random.default_rng(5)
    for k in range(3):
        base = tmp_path / f"base-lfo{k}"
        train(TrainConfig("cnn", base, holdout_fold=k, form=InputForm.REGISTRABLE, **cfg))  # type: ignore[arg-type]
        got = np.load(base / "scores.npz")
        for name in (*seeds.SEEDS, seeds.LINEAR):
            run = tmp_path / f"{name}-lfo{k}"
            run.mkdir()
            noise = rng.normal(0.0, 0.5, len(got["logit"]))
            save_scores(
                run, got["labels"], got["y"], got["family"], got["part"], got["logit"].astype(np.float64) + noise
            )
            (run / "run.json").write_text((base / "run.json").read_text())
    seeds.combine(tmp_path, folds=3)
    for k in range(3):
        members = [np.load(tmp_path / f"{n}-lfo{k}" / "scores.npz")["logit"] for n in seeds.SEEDS]
        average = np.load(tmp_path / f"{seeds.AVERAGE}-lfo{k}" / "scores.npz")["logit"]
        assert np.allclose(average, np.mean(members, axis=0), atol=1e-3)
        cascade = np.load(tmp_path / f"{seeds.AVERAGE_CASCADE}-lfo{k}" / "scores.npz")["logit"]
        assert 0 < int((cascade == np.float32(FLOOR)).sum()) < len(cascade)  # the gate passes some, not all
    text = seeds.section(tmp_path, folds=3)
    assert text.startswith(seeds.START) and text.endswith(seeds.END)
    for name in (*seeds.SEEDS, seeds.AVERAGE, seeds.ONE_CASCADE, seeds.AVERAGE_CASCADE, seeds.LINEAR):
        assert f"| {name} |" in text
    recalls = [summarise([tmp_path / f"{n}-lfo{k}" for k in range(3)])["mean_recall"]["sinkhole"] for n in seeds.SEEDS]
    assert f"spreads over {max(recalls) - min(recalls):.3f}" in text


def test_suffix_form_with_augmentation_and_family_folds(sourced_dir: Path, tmp_path: Path) -> None:
    """The `label.suffix` input with suffix dropout, compounds and family balance, left out one fold of
    families: the experiments table reads it, and the shipped model scores `label.suffix` strings."""
    cfg = dict(data_dir=sourced_dir, epochs=1, cap=1000, folds=3, maxlen=32, batch_size=64, cache=None)
    extra = dict(form=InputForm.REGISTRABLE, suffix_dropout=0.5, compounds=True, balance="family")
    runs = [tmp_path / f"x-suf-lfo{k}" for k in range(3)]
    for k, run in enumerate(runs):
        train(TrainConfig("cnn", run, holdout_fold=k, **cfg, **extra))  # type: ignore[arg-type]
    summary = summarise(runs)
    assert summary["n_families"] == 3 and summary["folds"] == 3
    assert summary["config"]["form"] == "registrable" and 20 < summary["tail_n"] < 61
    assert 0.0 <= summary["mean_recall"]["sinkhole"] <= summary["mean_recall"]["log"] <= 1.0
    quantize_run(runs[0], ("float32",), log=lambda _: None, bench_seconds=0.05)
    meta = ship(runs[0], "float32", tmp_path / "ship" / "m.tflite")
    assert meta["input"]["form"] == "registrable" and len(meta["training"]["held_out_families"]) == 1
    assert meta["threshold_support"]["fpr_1e-4"]["n"] > 0
    model = load_model(tmp_path / "ship" / "m.tflite")
    assert model.metadata.input_form is InputForm.REGISTRABLE
    assert model.score(["myhome.ddns.net", "shopnews.com"]).shape == (2,)


def test_long_tail_is_split_between_calibration_and_test(tmp_path: Path) -> None:
    """Half of the one-DNS-list names calibrate, the other half test; the same half in both input forms."""
    from convert.evaluate import Scores

    labels = np.array([f"shop{i}.com" for i in range(300)] + ["news.de", "blog.net"])
    family = np.array([BENIGN_DNS_ONLY] * 300 + [BENIGN, BENIGN])
    part = np.array([2] * 300 + [1, 2], dtype=np.int8)
    y, score = np.zeros(302, dtype=np.int8), np.zeros(302, dtype=np.float32)
    halves = []
    for texts in (labels, np.array([t.split(".")[0] for t in labels.tolist()])):
        s = Scores(texts, y, family, part, score, ())
        cal, tail = s.calibration(), s.long_tail()
        assert not (cal & tail).any() and (cal | tail)[:300].all() and 100 < tail.sum() < 200
        assert cal[300] and not cal[301] and not tail[300:].any()  # validation benign in, test benign out
        halves.append(tail)
    assert (halves[0] == halves[1]).all()


def test_tail_train_takes_a_quarter_of_the_long_tail_from_the_calibration_half(
    sourced_dir: Path, tmp_path: Path
) -> None:
    """`--tail-train`: the long-tail names whose label hashes to 0 mod 4 (inside the calibration half)
    are trained on and leave every pool; the test half is the one without it."""
    pytest.importorskip("sklearn")
    from convert import ngram
    from convert.splits import tail_hash

    cfg = dict(data_dir=sourced_dir, cap=1000, folds=3, maxlen=32, cache=None, form=InputForm.REGISTRABLE)
    runs = {flag: tmp_path / f"tail-{flag}" for flag in (False, True)}
    for flag, run in runs.items():
        ngram.train(TrainConfig("cnn", run, tail_train=flag, **cfg), c=1.0, bits=12)  # type: ignore[arg-type]
    plain, trained = (Scores.load(run) for run in runs.values())
    tail = plain.labels[plain.family == BENIGN_DNS_ONLY]
    quarter = set(tail[tail_hash(tail) % 4 == 0].tolist())
    assert 5 < len(quarter) < len(tail) / 2
    assert set(plain.labels.tolist()) - set(trained.labels.tolist()) == quarter  # scored: all but those
    info = [json.loads((run / "run.json").read_text()) for run in runs.values()]
    assert info[1]["train_rows"] == info[0]["train_rows"] + len(quarter) and info[1]["tail_train"]
    assert info[1]["trained_families"] == info[0]["trained_families"]  # the long tail is not a DGA family
    assert set(trained.labels[trained.long_tail()].tolist()) == set(plain.labels[plain.long_tail()].tolist())
    assert not quarter & set(trained.labels[trained.calibration()].tolist())
    # a run without it, read as such a run sees the pools: the same names
    assert set(Scores.load(runs[False], tail_quarter_out=True).labels.tolist()) == set(trained.labels.tolist())


def test_tail_eighths_take_more_of_the_calibration_half_and_never_the_test_half(sourced_dir: Path) -> None:
    """`--tail-eighths 3` (an experiment): the quarter plus the eighth hashing to 2 mod 8, all inside
    the calibration half (even hashes); 2 is the quarter; out of range is refused, not clamped."""
    from convert.data import load
    from convert.splits import random_split, tail_hash, with_tail_trained

    data = load(sourced_dir, InputForm.REGISTRABLE)
    split = random_split(data, 7)
    tail = np.flatnonzero(data.family == BENIGN_DNS_ONLY)
    h = tail_hash(data.labels[tail])
    moved = {k: tail[with_tail_trained(data, split, k).part[tail] == TRAIN] for k in (1, 2, 3)}
    assert set(moved[2].tolist()) == set(tail[h % 4 == 0].tolist())  # the quarter --tail-train always took
    assert set(moved[1]) < set(moved[2]) < set(moved[3]) == set(tail[np.isin(h % 8, (0, 2, 4))].tolist())
    assert (tail_hash(data.labels[moved[3]]) % 2 == 0).all() and len(moved[3]) < (h % 2 == 0).sum()
    for bad in (0, 4):
        with pytest.raises(ValueError, match="eighths"):
            with_tail_trained(data, split, bad)


def test_punycode_benign_names_leave_every_pool() -> None:
    """#13 session 7: serving does not score punycode labels, so no threshold may rest on them and no
    long-tail rate counts them; `judge_punycode=True` gives the pools as before (to measure the change)."""
    from convert.evaluate import Scores

    labels = np.array(
        [f"xn--shop{i}-abc.com" for i in range(40)] + [f"shop{i}.com" for i in range(200)] + ["xn--dga-1.com"]
    )
    family = np.array([BENIGN_DNS_ONLY] * 40 + [BENIGN_DNS_ONLY] * 200 + ["randa"])
    y = np.array([0] * 240 + [1], dtype=np.int8)
    part, score = np.full(241, 2, dtype=np.int8), np.zeros(241, dtype=np.float32)
    now, before = Scores(labels, y, family, part, score, ()), Scores(labels, y, family, part, score, (), True)
    idn = now.punycode()
    assert idn[:40].all() and not idn[40:240].any() and idn[240]
    for pool in (now.calibration(), now.long_tail(), now.long_tail_uncleaned()):
        assert not (pool & idn).any()
    assert (before.calibration() | before.long_tail())[:40].all()
    assert now.judged()[240] and now.rows(2)[240]  # a DGA name stays counted (serving passes it: a miss)


def test_ship_with_a_linear_stage_serves_the_ensemble(data_dir: Path, tmp_path: Path) -> None:
    """The CNN and a linear stage trained on the same data ship as one scorer whose thresholds are
    calibrated on its own scores; the gate written beside it is the one the ensemble uses."""
    import json

    from convert import gate, ngram
    from resolverguard.model import EnsembleScorer

    cfg = dict(data_dir=data_dir, epochs=1, cap=1000, folds=3, maxlen=24, batch_size=64, cache=None)
    cnn, linear = tmp_path / "cnn", tmp_path / "gate"
    train(TrainConfig("cnn", cnn, **cfg))  # type: ignore[arg-type]
    ngram.train(TrainConfig("cnn", linear, **cfg), 0.3, 16, None)  # type: ignore[arg-type]
    quantize_run(cnn, ("float32",), log=lambda _: None, bench_seconds=0.05)
    target = tmp_path / "ship" / "m.tflite"
    meta = ship(cnn, "float32", target, linear)
    facts = gate.export_gate(linear, target)
    spec = meta["ensemble"]
    assert spec["gate_logit"] == facts["threshold_logit"] and meta["architecture"] == "cnn+linear"
    assert meta["threshold_support"]["fpr_1e-4"]["n"] == spec["calibration_names"]
    assert spec["cnn_thresholds"]["sinkhole"] > 0 and 0 < spec["random_split"]["reach_calibration"] <= 0.06
    seen = spec["random_split"]["families_seen"]  # the families trained on, for convert.report_text
    assert set(seen) == {"dyn", "hexy", "randa"} and all(0 <= r <= 1 for r in seen.values())
    model = load_model(target)
    assert isinstance(model, EnsembleScorer) and model.gate == spec["gate_logit"]
    names = ["shopnews.com", "qkzjxwpvbrt.net", "a.de", "0123456789abcdef0123.com", "myhome.ddns.net"]
    assert model.score(names).tolist() == [float(model.score([n])[0]) for n in names]
    assert json.loads(target.with_suffix(".json").read_text())["ensemble"]["linear"] == "m.gate.npz"


def test_family_head_trains_through_the_shared_fit_and_writer(data_dir: Path, tmp_path: Path) -> None:
    family.main(["--out", str(tmp_path), "--data", str(data_dir), "--epochs", "1", "--maxlen", "24", "--cache", ""])
    meta = load_metadata(metadata_path(tmp_path / "family.tflite"))
    assert (meta.extra or {})["families"] == ["dyn", "hexy", "randa"] and meta.encoder.maxlen == 24
    model = load_model(tmp_path / "family.tflite")
    assert model.outputs(["abcdef0123456789"]).shape == (1, 3)


def test_metadata_writer_round_trips(tmp_path: Path) -> None:
    meta = ModelMetadata("v1", "cnn", NameEncoder(maxlen=16), InputForm.REGISTRABLE, {"log": 0.5}, None, {"x": [1]})
    meta.write(tmp_path / "m.tflite", b"model bytes")
    back = load_metadata(tmp_path / "m.json")
    assert (back.model_version, back.architecture, back.input_form, back.thresholds) == (
        "v1",
        "cnn",
        meta.input_form,
        {"log": 0.5},
    )
    assert back.encoder == meta.encoder and (back.extra or {})["x"] == [1] and back.tflite_sha256
    back.write(tmp_path / "again.tflite", b"model bytes")
    assert (tmp_path / "again.json").read_text() == (tmp_path / "m.json").read_text()


def test_the_class_branch_refuses_a_vocabulary_it_cannot_class() -> None:
    """`cnn_shape` classes each encoder index by the default charset; another vocabulary would put
    every character in the wrong class silently, so it is refused."""
    from convert.architectures import shape_onehots

    vocab = NameEncoder().vocab_size
    assert shape_onehots(vocab).shape == (vocab, 8)
    with pytest.raises(ValueError, match="charset"):
        shape_onehots(vocab + 3)
