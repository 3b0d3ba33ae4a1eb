from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

# CI runs the property tests on a fixed example sequence (a red CI then always reproduces);
# developers' runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True, scope="session")
def _own_control_sockets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Servers the tests start open their control socket in the default place unless told
    otherwise; that place is per user, so a resolverguard the developer runs (or another checkout's
    test run) would answer the tests' `pause`/`lists update`. The tests get a runtime folder of their own."""
    runtime = tmp_path_factory.mktemp("runtime")
    before = {key: os.environ.get(key) for key in ("XDG_RUNTIME_DIR", "RUNTIME_DIRECTORY")}
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    os.environ.pop("RUNTIME_DIRECTORY", None)
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
