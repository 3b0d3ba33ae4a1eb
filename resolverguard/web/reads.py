"""Store reads for the dashboard: each one in a worker thread with its own read-only connection,
so a slow query (a 10 M-row search) delays a page, never a DNS answer (the store contract)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from resolverguard.config import Config

T = TypeVar("T")


def store_path(cfg: Config) -> Path | None:
    """Where the running policy's query store is, or None when it has none."""
    section: Any = getattr(cfg, "query_store", None)
    path = getattr(section, "path", None) if section is not None else None
    if path is None or getattr(section, "enabled", True) is False:
        return None
    return Path(path)


class StoreReads:
    """Opens the store per read (SQLite opens in ~0.1 ms; a connection is never shared by threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def __call__(self, read: Callable[[Any], T]) -> T:
        return await asyncio.to_thread(self._run, read)

    def _run(self, read: Callable[[Any], T]) -> T:
        from resolverguard.store import QueryStore

        store = QueryStore.open_for_reading(self.path)
        try:
            return read(store)
        finally:
            store.close()
