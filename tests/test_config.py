"""Policy validation: every error names file:line:key; `check` exits 0 or 2."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from resolverguard.config import GATEWAY_NAME, host_gateway_name, load_config, resolve_thresholds
from resolverguard.errors import ConfigError
from resolverguard.verdicts import Action, Mode

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "tests" / "data" / "digits.tflite"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resolverguard", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("text", "line", "key", "problem"),
    [
        ("mode: enforce\nthresholds:\n  sinkhole: 1.5\n", 3, "thresholds.sinkhole", "between 0 and 1"),
        ("mode: enforc\n", 1, "mode", "not one of"),
        ("listen:\n  - 127.0.0.1:53\n  - nope\n", 3, "listen[1]", "not an IP address"),
        ("sinkhole:\n  ttl: 10\n  ipv4: '::1'\n", 3, "sinkhole.ipv4", "not an IPv4"),
        ("lists:\n  deny:\n    - good.example\n    - 'bad name'\n", 4, "lists.deny[1]", "not a domain"),
        ("upstreams: [1.1.1.1]\nsinkhol:\n  ttl: 5\n", 2, "sinkhol", "unknown key"),
        ("thresholds:\n  block: 0.5\n", 2, "thresholds.block", "not one of"),
        ("cache:\n  size: -1\n", 2, "cache.size", "between"),
        ("mode: [unclosed\n", 2, None, "invalid YAML"),
        ("mode: a\nmode: b\n", 2, "mode", "duplicate key"),
        ("upstream_timeout: fast\n", 1, "upstream_timeout", "must be a number"),
        ("query_store:\n  path: q.db\n  gateway: 'branch 12'\n", 3, "query_store.gateway", "not a gateway name"),
        ("query_store:\n  path: q.db\n  gateway: ''\n", 3, "query_store.gateway", "not a gateway name"),
        ("query_store:\n  gateway: -gw\n", 2, "query_store.gateway", "not a gateway name"),
        ("query_store:\n  gateway: " + "g" * 64 + "\n", 2, "query_store.gateway", "not a gateway name"),
        ("query_log:\n  path: q.jsonl\n  priority: lowest\n", 3, "query_log.priority", "not one of"),
        ("query_log:\n  path: q.jsonl\n  backlog_mb: 0\n", 3, "query_log.backlog_mb", "between"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str | None, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert (err.file, err.line) == (str(path), line)
    assert err.key == (key or "") and problem in err.problem
    result = check(path)
    assert result.returncode == 2
    expected = f"{path}:{line}: {key}: " if key else f"{path}:{line}: "
    assert result.stderr.startswith(expected), result.stderr


def test_named_threshold_must_exist_in_the_model(tmp_path: Path) -> None:
    path = write(tmp_path, f"model: {DIGITS}\nthresholds:\n  log: fpr_1e-2\n")
    result = check(path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{path}:3: thresholds.log: 'fpr_1e-2' is not a threshold of the model")


def test_valid_policy_resolves_strictest_first(tmp_path: Path) -> None:
    path = write(
        tmp_path, f"model: {DIGITS}\nmode: monitor\nthresholds:\n  log: 0.2\n  sinkhole: fpr_1e-3\n  nxdomain: 0.999\n"
    )
    cfg = load_config(path)
    assert cfg.mode is Mode.MONITOR and cfg.model == DIGITS
    resolved = resolve_thresholds(cfg.thresholds, {"fpr_1e-3": 0.9})
    assert [(t.action, t.value) for t in resolved] == [
        (Action.NXDOMAIN, 0.999),
        (Action.SINKHOLE, 0.9),
        (Action.LOG, 0.2),
    ]
    result = check(path)
    assert result.returncode == 0 and "ok" in result.stdout


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    assert check(tmp_path / "nope.yaml").returncode == 2
    assert check(write(tmp_path, "- just\n- a list\n")).returncode == 2


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(example: Path) -> None:
    result = check(example)
    assert result.returncode == 0, result.stderr


def test_query_store_gateway_defaults_to_the_host_name(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "query_store: q.db\n")).query_store.gateway_name == host_gateway_name()
    host = socket.gethostname().split(".")[0]
    if GATEWAY_NAME.match(host):
        assert host_gateway_name() == host
    assert GATEWAY_NAME.match(host_gateway_name())  # whatever the host is called, a name the store takes
    named = load_config(write(tmp_path, "query_store:\n  path: q.db\n  gateway: branch-12\n"))
    assert named.query_store.gateway_name == "branch-12"
