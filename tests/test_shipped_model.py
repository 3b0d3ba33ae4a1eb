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
