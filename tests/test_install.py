"""What `pip install .` puts on a machine, and the first-run messages: the install as a user gets it.

The package is installed with pip itself (no build isolation, no dependencies: those come from the
test's own environment) into a prefix outside `sys.prefix`, the layout of `pip install --user` and
of a venv other than the running interpreter's; it is then imported from there, never from the source tree.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from resolverguard.cli import bind_hint
from resolverguard.config import Config, Endpoint

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """site-packages of a `pip install --prefix` of a copy of this checkout."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "src"
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "runs", ".*_cache")
    shutil.copytree(ROOT, source, ignore=ignore)
    prefix = tmp / "prefix"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--prefix", str(prefix)]
    result = subprocess.run([*pip, str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = list(prefix.glob("lib/python3*/site-packages"))
    assert len(found) == 1
    return found[0]


def run_installed(site: Path, *code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, *code], capture_output=True, text=True, timeout=120, cwd=site.parent, env=env
    )


def test_install_ships_both_model_heads_and_finds_them_outside_sys_prefix(installed: Path) -> None:
    code = (
        "import sys, resolverguard.model as m; "
        "print(m.__file__); print(m.shipped('default.tflite')); print(m.shipped('family.tflite')); print(sys.prefix)"
    )
    result = run_installed(installed, "-c", code)
    assert result.returncode == 0, result.stderr
    module, default, family, prefix = result.stdout.splitlines()
    base = installed.parents[2]
    assert Path(module).is_relative_to(installed)  # the installed copy, not the checkout
    assert default == str(base / "share/resolverguard/models/default.tflite")
    assert family == str(base / "share/resolverguard/models/family.tflite")
    assert not base.is_relative_to(prefix)


def test_install_has_no_top_level_convert_package(installed: Path) -> None:
    assert (installed / "resolverguard").is_dir()
    assert not (installed / "convert").exists()
    tops = {p.name.split("-")[0] for p in installed.iterdir()}
    assert tops <= {"resolverguard", "__pycache__"}, tops


def test_install_ships_the_dashboards_assets(installed: Path) -> None:
    """The dashboard fetches nothing from elsewhere: its stylesheet and script are package data."""
    static = installed / "resolverguard" / "web" / "static"
    assert {p.name for p in static.iterdir()} >= {"style.css", "dashboard.js"}


def test_version_of_the_installed_command(installed: Path) -> None:
    result = run_installed(installed, "-m", "resolverguard", "--version")
    assert result.returncode == 0, result.stderr
    from resolverguard import __version__

    assert result.stdout.strip() == f"resolverguard {__version__}"


def test_top_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """`top | head`: the reader is gone before we write (its end is closed before we start), so
    every write fails with EPIPE, deterministically."""
    log = tmp_path / "q.jsonl"
    log.write_text('{"ts":"2026-01-01T00:00:00Z","client":"10.0.0.1","qname":"a.example","action":"sinkhole"}\n')
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "resolverguard", "top", str(log)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == ""


def test_bind_hints_say_what_to_do() -> None:
    low = Config(listen=(Endpoint("0.0.0.0", 53),))
    hint = bind_hint(OSError(errno.EACCES, "Permission denied"), low)
    assert "CAP_NET_BIND_SERVICE" in hint and "0.0.0.0:53" in hint and "5335" in hint
    assert "another program" in bind_hint(OSError(errno.EADDRINUSE, "in use"), Config())
    assert bind_hint(OSError(errno.EACCES, "Permission denied"), Config()) == ""  # 5335 needs no privilege


def test_default_port_is_not_mdns() -> None:
    assert Config().listen == (Endpoint("127.0.0.1", 5335),)


def test_readme_figures_are_the_bench_results() -> None:
    result = subprocess.run([sys.executable, "bench/readme.py", "--check"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout


def test_readme_says_what_the_model_reaches_on_families_it_trained_on() -> None:
    """bench/readme.py's model paragraph reads convert.ship's `families_seen` (none: no sentence)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_readme", ROOT / "bench" / "readme.py")
    assert spec is not None and spec.loader is not None
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)
    said = readme._seen({"families_seen": {"a": 0.5, "b": 0.95, "c": 0.4, "d": 1.0}})
    assert "blocks on average 71% of a family's names" in said and "(2 of 4 families >= 90%)" in said
    assert readme._seen({}) == ""


def test_readme_replay_sentence_follows_the_results(tmp_path: Path) -> None:
    """bench/readme.py's client-watch block reads replay.json and replay-folds.json; it says no benign
    client was touched only when none was, in any pass of either."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("bench_readme", ROOT / "bench" / "readme.py")
    assert spec is not None and spec.loader is not None
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)

    def one(mean: float, blocked: int = 0) -> dict[str, object]:
        benign = {"blocked": blocked, "flagged": 0}
        return {"mean_c2_all_share": mean, "min_c2_all_share": mean / 2, "benign": benign}

    params = {"benign_clients": 8, "infected_per_family": 2, "duration": 60.0}
    shipped = {"trace": {"params": params}, "families": ["w"], "passes": {"watch on": one(0.8), "watch off": one(0.0)}}
    fold_on = one(0.9) | {"families_ge_0.9": 1, "lowest": [["a", 0.5]]}
    folds = {"folds": ["fold0"], "families": {"a": {}, "b": {}}, "passes": {"watch on": fold_on, "watch off": one(0.4)}}
    (tmp_path / "replay.json").write_text(json.dumps(shipped))
    (tmp_path / "replay-folds.json").write_text(json.dumps(folds))
    said = readme.replay_figures(tmp_path)
    assert "the model alone blocks 0% of the C2 lookups of the 1 families" in said and "at least 40%" in said
    assert "on average 40% of a family's C2 lookups and with the watch 90% (1 families" in said
    assert "the lowest a 50%" in said and "no benign client is flagged" in said
    folds["passes"]["watch off"] = one(0.4, blocked=3)
    (tmp_path / "replay-folds.json").write_text(json.dumps(folds))
    assert "no benign client" not in readme.replay_figures(tmp_path)


def test_docker_build_context_and_image() -> None:
    """The image installs the package only (no training side) and keeps local environments out of
    the build context (a venv would be sent to the daemon and could shadow the install)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "COPY convert" not in dockerfile and "5335" in dockerfile and "5353" not in dockerfile
    assert {".venv", ".git", "**/__pycache__"} <= set(ignored)
