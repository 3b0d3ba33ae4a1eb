"""Store reads for the dashboard: each one in a worker thread with its own read-only connection,
so a slow query (a 10 M-row search) delays a page, never a DNS answer (the store contract).

At most `MAX_READS` run at once: twenty browsers or scripts polling the API then queue here
instead of filling the default thread pool with threads that all want the GIL the DNS loop needs.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from resolverguard.config import Config

T = TypeVar("T")
MAX_READS = 4


class StoreUnavailable(Exception):
    """The store exists in the policy but cannot be read now (not created yet, locked, corrupt)."""


def store_path(cfg: Config) -> Path | None:
    """Where the running policy's query store is, or None when it has none."""
    section: Any = getattr(cfg, "query_store", None)
    path = getattr(section, "path", None) if section is not None else None
    return Path(path) if path is not None else None


class StoreReads:
    """Opens the store per read (SQLite opens in ~0.1 ms; a connection is never shared by threads)."""

    def __init__(self, path: Path, gate: asyncio.Semaphore) -> None:
        self.path, self.gate = path, gate

    async def __call__(self, read: Callable[[Any], T]) -> T:
        async with self.gate:
            return await asyncio.to_thread(self._run, read)

    def _run(self, read: Callable[[Any], T]) -> T:
        from resolverguard.store import QueryStore, StoreError

        try:
            store = QueryStore.open_for_reading(self.path)
        except (StoreError, sqlite3.Error, OSError) as err:
            raise StoreUnavailable(f"the query store {self.path} cannot be read: {err}") from None
        try:
            return read(store)
        except sqlite3.Error as err:
            raise StoreUnavailable(f"the query store {self.path} cannot be read: {err}") from None
        finally:
            store.close()
