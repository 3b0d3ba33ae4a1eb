"""Store reads for the dashboard: in worker threads (`asyncio.to_thread`), each with its own
read-only connection, so a search over millions of rows delays a page, never a DNS answer.

SQLite releases the GIL while it runs a query, and a read returns at most `inputs.MAX_LIMIT` rows,
so the Python work a read does in its thread is small. A helper process was measured against
threads (bench/dashboard.py, 20 API clients, 2 cores, two runs each): added DNS p99 10-14 ms with
processes, 9-14 ms with threads, within the machine's noise; threads stayed (no process start,
no pickling). At most `MAX_READS` run at once (more queue on a semaphore), and only the store's
read methods in `READ_METHODS` can be called.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resolverguard.config import Config

MAX_READS = 4  # reads in flight (a page's reads run side by side); more wait their turn
READ_METHODS = frozenset(
    {
        "overview",
        "search",
        "top_names",
        "top_clients",
        "clients_of",
        "flagged_clients",
        "likely_c2",
        "gateways",
        "gateway_counts",
    }
)


class StoreUnavailable(Exception):
    """The store exists in the policy but cannot be read now (not created yet, locked, corrupt)."""


@dataclass(frozen=True, slots=True)
class Read:
    """One call of a QueryStore read method (by name: only `READ_METHODS` run)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def call(method: str, *args: Any, **kwargs: Any) -> Read:
    if method not in READ_METHODS:
        raise ValueError(f"{method} is not a store read")
    return Read(method, args, kwargs)


def plain(value: Any) -> Any:
    """Store rows (frozen dataclasses), tuples and dicts as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def store_path(cfg: Config) -> str | None:
    """Where the running policy's query store is (a file or a postgresql:// URL), or None."""
    where = cfg.query_store.path
    return None if where is None else str(where)


def shown(where: str) -> str:
    """A store's name for a message: a URL without its credentials."""
    return where.rsplit("@", 1)[-1] if "://" in where else where


def run_reads(path: str, reads: tuple[Read, ...], as_plain: bool) -> list[Any]:
    """In a worker thread: the reads' results, in order (plain values when `as_plain`)."""
    from resolverguard.store import QueryStore, StoreError

    try:
        store = QueryStore.open_for_reading(path)
    except (StoreError, sqlite3.Error, OSError) as err:
        raise StoreUnavailable(f"the query store {shown(path)} cannot be read: {err}") from None
    try:
        out = [getattr(store, r.method)(*r.args, **r.kwargs) for r in reads if r.method in READ_METHODS]
    except Exception as err:  # noqa: BLE001 - sqlite3.Error or psycopg.Error: a page says so, DNS goes on
        raise StoreUnavailable(f"the query store {shown(path)} cannot be read: {type(err).__name__}") from None
    finally:
        store.close()
    return [plain(x) for x in out] if as_plain else out


class StoreReads:
    """`await reads(call("overview", since, until), call("top_names", ...))` -> their results."""

    def __init__(self, path: str, gate: asyncio.Semaphore) -> None:
        self.path, self.gate = path, gate

    async def __call__(self, *reads: Read, as_plain: bool = False) -> list[Any]:
        """The reads of one page run side by side, each in its own thread and connection: the page
        waits for the slowest, not for their sum (the 30-day overview: top names alone ~0.7 s)."""
        found = await asyncio.gather(*(self._one(r, as_plain) for r in reads))
        return [x for part in found for x in part]

    async def _one(self, read: Read, as_plain: bool) -> list[Any]:
        async with self.gate:
            return await asyncio.to_thread(run_reads, self.path, (read,), as_plain)
