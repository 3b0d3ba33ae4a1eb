"""What the web handlers see of the running server, as protocols: the handlers (api, pages,
actions) depend on these, not on `Service` or on the aiohttp app that holds them, so the package's
imports stay one-way (service -> web.app -> web.api/pages -> web.context; tests/test_layers.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from aiohttp import web

if TYPE_CHECKING:
    from resolverguard.chain import Next
    from resolverguard.config import Config
    from resolverguard.model import TFLiteScorer
    from resolverguard.pipeline import Pipeline
    from resolverguard.web.reads import StoreReads

DASHBOARD = web.AppKey("dashboard", object)


class Resolver(Protocol):
    """The running `Service`, as far as the dashboard reads and changes it."""

    cfg: Config
    model: TFLiteScorer
    pipeline: Pipeline
    reloads: int
    config_path: Path | None

    async def command(self, words: list[str]) -> str: ...

    async def reload_off_loop(self) -> bool: ...


class Context(Protocol):
    """The running dashboard (`web.app.Dashboard`), as the handlers use it."""

    service: Resolver

    def reads(self) -> StoreReads | None: ...

    async def decision_chain(self) -> Next: ...


def dash(request: web.Request) -> Context:
    return cast("Context", request.app[DASHBOARD])
