"""A tiny end-to-end training run: every architecture trains one epoch on names this test makes,
converts to TFLite, passes the parity check, and the shipped result loads and scores in serving."""

from __future__ import annotations

import gzip
import random
import string
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from convert.data import BENIGN, load  # noqa: E402
from convert.quantize import quantize_run  # noqa: E402
from convert.ship import ship  # noqa: E402
from convert.train import TrainConfig, train  # noqa: E402
from resolverguard.encoding import NameEncoder  # noqa: E402
from resolverguard.model import load_model  # noqa: E402
from resolverguard.names import NameParser  # noqa: E402

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
    for family, make in families.items():
        write_gz(root / "dga" / f"{family}.txt.gz", [make() for _ in range(200)])
    return root


def test_loader_uses_the_resolver_name_step(data_dir: Path) -> None:
    data = load(data_dir)
    parser = NameParser()
    dyn = data.labels[data.family == "dyn"]
    assert len(dyn) > 150 and all("." not in label for label in dyn.tolist())  # label under ddns.net
    with gzip.open(data_dir / "benign.txt.gz", "rt") as handle:
        raw = handle.read().split()
    assert set(data.labels[data.family == BENIGN].tolist()) == {parser.model_input(n) for n in raw}


@pytest.mark.parametrize("arch", ["cnn", "lstm", "bilstm", "cnn_lstm"])
def test_architecture_trains_quantizes_and_ships(arch: str, data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / arch
    train(TrainConfig(arch, run, data_dir=data_dir, epochs=1, cap=1000, folds=3, maxlen=24, batch_size=64))
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
