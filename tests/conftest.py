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


def native_mmsg() -> bool:
    """Whether the UDP batch extension is built here."""
    from resolverguard import udpbatch

    return udpbatch.recv_many is not None and udpbatch.send_connected is not None


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


@pytest.fixture(
    params=[
        pytest.param(True, marks=pytest.mark.skipif(not native_mmsg(), reason="_udpbatch not built (no C compiler)")),
        False,
    ],
    ids=["mmsg", "fallback"],
)
def native_io(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Each test twice: with recvmmsg/sendmmsg (resolverguard/_udpbatch.c), and with
    RESOLVERGUARD_NO_MMSG set (the fallback: one system call per datagram)."""
    from resolverguard import udpbatch

    if request.param:
        monkeypatch.delenv(udpbatch.NO_MMSG, raising=False)
    else:
        monkeypatch.setenv(udpbatch.NO_MMSG, "1")
    return bool(request.param)
