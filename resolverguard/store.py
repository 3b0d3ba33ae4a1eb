"""The query store: every query the log holds, and the client watch's alerts, in SQLite (issue #16).

Why a database next to the JSON lines: the dashboard asks "what did this client ask for", "who asked
for this name", "how many blocks per hour this month", and grepping a month of rotated files for each
answer takes seconds. The JSON-lines log stays for log shippers.

Shape, and why:
- One table per UTC day (`queries_20261201`), dropped whole when it ages out or the store grows past
  its size: retention costs one DROP TABLE, never a DELETE of millions of rows or a VACUUM. SQLite
  reuses the freed pages for the next days, so the file stops growing at about `max_bytes` plus a day.
- Ids come from one counter (`store_meta.next_id`) reserved per batch inside the batch's
  transaction, so they grow across day tables (keyset paging by id works across days) and two
  writers (the old and new log across a reload) never collide.
- Names are also stored reversed (`moc.elpmaxe.www`): "this name or any name under it" is then a
  range on an index (`rname >= 'moc.elpmaxe.' AND rname < 'moc.elpmaxe/'`), with no LIKE and so no
  pattern metacharacters to escape.
- Counts per minute and action (`query_minutes`) and per hour, client and action (`client_hours`)
  are kept by the writer as it inserts: the overview of a 10 M-row month then sums ~200 k small
  rows instead of counting 10 M (bench/store_scale.py measures it). Their resolution is the minute
  and the hour: a range counts every minute (hour) it touches.
- Every value reaches SQL as a bound parameter; the only names put into SQL text are day tables,
  which are built here from an integer day, never read from input.
- The SQL sticks to what SQLite and PostgreSQL both run (`?` placeholders become `%s` there; the
  few differences live in `Dialect`), so a PostgreSQL backend (#18) is a connection, not a rewrite.

Writes come from one writer (resolverguard.logwriter), off the event loop; reads open their own
connection (`QueryStore.open_for_reading`) and are meant to run in a worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DAY = 86_400
BLOCKING_ACTIONS = ("sinkhole", "nxdomain", "refuse", "servfail")  # verdicts.Action.blocks, as text
MAX_LIMIT = 1000  # most rows one read returns, whatever it is asked for
MAX_BUCKETS = 1000

# One query as the writer hands it over: the query log's fields the dashboard reads.
StoredQuery = tuple[
    float,  # time (UNIX seconds)
    str | None,  # client, as the privacy setting allows
    str,  # qname
    str,  # qtype
    str,  # action
    str,  # reason
    float | None,  # score
    str | None,  # upstream_rcode
    float,  # latency_ms
]


class StoreError(Exception):
    """The store cannot be opened or written (a bad path, a full disk, a file that is not SQLite)."""


@dataclass(frozen=True, slots=True)
class QueryRow:
    id: int
    time: float
    client: str | None
    qname: str
    qtype: str
    action: str
    reason: str
    score: float | None
    upstream_rcode: str | None
    latency_ms: float


@dataclass(frozen=True, slots=True)
class Bucket:
    start: float
    queries: int
    blocked: int


@dataclass(frozen=True, slots=True)
class Overview:
    total: int
    by_action: dict[str, int]
    clients: int
    series: list[Bucket]


@dataclass(frozen=True, slots=True)
class FlaggedClientRow:
    client: str | None
    time: float
    until: float | None
    names: tuple[str, ...]
    family: str | None
    mode: str


@dataclass(frozen=True, slots=True)
class LikelyC2Row:
    name: str
    time: float
    until: float | None
    clients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL backends; everything else is shared text."""

    query_id: str  # the id column of a day table (ids are given, not generated)
    event_id: str  # the id column of an event table (generated)


SQLITE = Dialect(query_id="INTEGER PRIMARY KEY", event_id="INTEGER PRIMARY KEY")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS store_days (day INTEGER PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS query_minutes (minute BIGINT NOT NULL, action TEXT NOT NULL,"
    " queries BIGINT NOT NULL, PRIMARY KEY (minute, action))",
    "CREATE TABLE IF NOT EXISTS client_hours (hour BIGINT NOT NULL, client TEXT NOT NULL, action TEXT NOT NULL,"
    " queries BIGINT NOT NULL, PRIMARY KEY (hour, client, action))",
    "CREATE TABLE IF NOT EXISTS flagged_clients (id {event_id}, time DOUBLE PRECISION NOT NULL, client TEXT,"
    " until DOUBLE PRECISION, names TEXT NOT NULL, family TEXT, mode TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS flagged_clients_time ON flagged_clients (time)",
    "CREATE TABLE IF NOT EXISTS likely_c2 (id {event_id}, time DOUBLE PRECISION NOT NULL, name TEXT NOT NULL,"
    " client TEXT, until DOUBLE PRECISION)",
    "CREATE INDEX IF NOT EXISTS likely_c2_time ON likely_c2 (time)",
    "INSERT INTO store_meta (name, value) VALUES ('next_id', 1) ON CONFLICT (name) DO NOTHING",
)
_DAY_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {t} (id {query_id}, time DOUBLE PRECISION NOT NULL, client TEXT,"
    " qname TEXT NOT NULL, rname TEXT NOT NULL, qtype TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL,"
    " score REAL, upstream_rcode TEXT, latency_ms REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {t}_time ON {t} (time)",
    "CREATE INDEX IF NOT EXISTS {t}_client ON {t} (client, id)",
    "CREATE INDEX IF NOT EXISTS {t}_rname ON {t} (rname)",
    "CREATE INDEX IF NOT EXISTS {t}_action ON {t} (action, id)",
)
_COLUMNS = "id, time, client, qname, qtype, action, reason, score, upstream_rcode, latency_ms"


def day_table(day: int) -> str:
    """The table of UNIX day `day` (an int, so nothing from outside ever reaches SQL text)."""
    return f"queries_{datetime.fromtimestamp(int(day) * DAY, UTC):%Y%m%d}"


def reversed_name(name: str) -> str:
    """`www.example.com` -> `moc.elpmaxe.www`: names under a domain share a prefix."""
    return name.lower().rstrip(".")[::-1]


def name_range(name: str) -> tuple[str, str, str]:
    """(exact, low, high) for "this name or any name under it": rname = exact or low <= rname < high."""
    exact = reversed_name(name)
    return exact, exact + ".", exact + "/"  # '/' sorts right after '.'


def _since_until(since: float, until: float) -> tuple[float, float]:
    if not (since == since and until == until) or until < since:  # NaN or reversed: an empty range
        return 0.0, 0.0
    return float(since), float(until)


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


class QueryStore:
    """One connection to the store: the writer's (`open_for_writing`) or a reader's."""

    def __init__(self, connection: Any, path: str, dialect: Dialect = SQLITE) -> None:
        self._db, self.path, self._dialect = connection, path, dialect
        self._lock = threading.Lock()  # one statement at a time: readers are called from pool threads
        self._days: set[int] = set()  # day tables this writer knows exist

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open_for_writing(cls, path: str | Path) -> QueryStore:
        """Creates the store (folder, file, schema) when missing; raises StoreError saying why not."""
        where = Path(path)
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(where), isolation_level=None, check_same_thread=False, timeout=10.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a power cut loses the last commits, never the file
            store = cls(db, str(where))
            store._create()
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"cannot open the query store {where}: {err}") from None
        return store

    @classmethod
    def open_for_reading(cls, path: str | Path) -> QueryStore:
        """Its own read-only connection, safe to use from any one thread at a time (calls are
        serialised by a lock): the dashboard's reads run in `asyncio.to_thread`."""
        where = Path(path)
        if not where.is_file():
            raise StoreError(f"no query store at {where} (is query_store.path set and the resolver running?)")
        try:
            db = sqlite3.connect(
                f"{where.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA query_only=1")
            db.execute("SELECT value FROM store_meta WHERE name = 'next_id'").fetchone()
        except sqlite3.Error as err:
            raise StoreError(f"cannot read the query store {where}: {err}") from None
        return cls(db, str(where))

    def _create(self) -> None:
        for statement in _SCHEMA:
            self._db.execute(statement.format(event_id=self._dialect.event_id))
        self._days = set(self._known_days())
        if self._days:  # a counter lost or behind (a restored copy): ids must still only grow
            (top,) = self._db.execute(f"SELECT MAX(id) FROM {day_table(max(self._days))}").fetchone()  # noqa: S608
            self._db.execute(
                "UPDATE store_meta SET value = ? WHERE name = 'next_id' AND value <= ?", ((top or 0) + 1, top or 0)
            )

    def _known_days(self, low: int | None = None, high: int | None = None) -> list[int]:
        """Day tables, newest first, optionally only those between `low` and `high`."""
        if low is None or high is None:
            rows = self._db.execute("SELECT day FROM store_days ORDER BY day DESC").fetchall()
        else:
            rows = self._db.execute(
                "SELECT day FROM store_days WHERE day >= ? AND day <= ? ORDER BY day DESC", (low, high)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing (the log writer only) ---------------------------------------------------------
    def add(self, queries: Sequence[StoredQuery], events: Iterable[dict[str, Any]] = ()) -> None:
        """One batch in one transaction: the queries (ids reserved from the counter), the minute
        and hour counts, and the watch's alert events. Raises sqlite3.Error; the writer counts."""
        events = list(events)
        if not queries and not events:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._add_queries(queries)
                self._add_events(events)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _add_queries(self, queries: Sequence[StoredQuery]) -> None:
        if not queries:
            return
        (end,) = self._db.execute(
            "UPDATE store_meta SET value = value + ? WHERE name = 'next_id' RETURNING value", (len(queries),)
        ).fetchone()
        first = int(end) - len(queries)
        by_day: dict[int, list[tuple[Any, ...]]] = {}
        minutes: Counter[tuple[int, str]] = Counter()
        hours: Counter[tuple[int, str, str]] = Counter()
        for n, (when, client, qname, qtype, action, reason, score, rcode, latency) in enumerate(queries):
            by_day.setdefault(int(when // DAY), []).append(
                (first + n, when, client, qname, reversed_name(qname), qtype, action, reason, score, rcode, latency)
            )
            minutes[int(when // 60), action] += 1
            hours[int(when // 3600), client or "", action] += 1
        for day, rows in by_day.items():
            table = self._day_table(day)
            self._db.executemany(
                f"INSERT INTO {table} (id, time, client, qname, rname, qtype, action, reason, score,"  # noqa: S608 - a day table
                " upstream_rcode, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        self._db.executemany(
            "INSERT INTO query_minutes (minute, action, queries) VALUES (?, ?, ?)"
            " ON CONFLICT (minute, action) DO UPDATE SET queries = query_minutes.queries + excluded.queries",
            [(m, a, n) for (m, a), n in minutes.items()],
        )
        self._db.executemany(
            "INSERT INTO client_hours (hour, client, action, queries) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (hour, client, action) DO UPDATE SET queries = client_hours.queries + excluded.queries",
            [(h, c, a, n) for (h, c, a), n in hours.items()],
        )

    def _day_table(self, day: int) -> str:
        table = day_table(day)
        if day not in self._days:
            for statement in _DAY_SCHEMA:
                self._db.execute(statement.format(t=table, query_id=self._dialect.query_id))
            self._db.execute("INSERT INTO store_days (day) VALUES (?) ON CONFLICT (day) DO NOTHING", (day,))
            self._days.add(day)
        return table

    def _add_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            when = _event_time(event.get("time"))
            until = _event_time(event.get("until")) if event.get("until") else None
            if event.get("event") == "client_flagged":
                self._db.execute(
                    "INSERT INTO flagged_clients (time, client, until, names, family, mode) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        when,
                        event.get("client"),
                        until,
                        json.dumps(list(event.get("names") or [])),
                        event.get("family_hint"),
                        str(event.get("action") or "log"),
                    ),
                )
            elif event.get("event") == "likely_c2":
                self._db.execute(
                    "INSERT INTO likely_c2 (time, name, client, until) VALUES (?, ?, ?, ?)",
                    (when, str(event.get("name")), event.get("client"), until),
                )

    def expire(self, now: float, retention_days: int, max_bytes: int) -> list[str]:
        """Drops whole day tables: those older than `retention_days`, then the oldest while the
        store is over `max_bytes` (0: no size bound; the newest day is always kept). Returns the
        tables dropped. No VACUUM: the freed pages hold the next days' rows."""
        dropped: list[str] = []
        with self._lock:
            days = sorted(self._known_days())
            first_kept = int(now // DAY) - retention_days + 1
            for day in [d for d in days if d < first_kept]:
                dropped.append(self._drop(day))
                days.remove(day)
            while max_bytes and len(days) > 1 and self._used_bytes() > max_bytes:
                dropped.append(self._drop(days.pop(0)))
            if dropped:
                cut = (days[0] if days else int(now // DAY)) * DAY
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM query_minutes WHERE minute < ?", (cut // 60,))
                self._db.execute("DELETE FROM client_hours WHERE hour < ?", (cut // 3600,))
                self._db.execute("DELETE FROM flagged_clients WHERE time < ?", (cut,))
                self._db.execute("DELETE FROM likely_c2 WHERE time < ?", (cut,))
                self._db.execute("COMMIT")
        return dropped

    def _drop(self, day: int) -> str:
        table = day_table(day)
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute(f"DROP TABLE IF EXISTS {table}")
        self._db.execute("DELETE FROM store_days WHERE day = ?", (day,))
        self._db.execute("COMMIT")
        self._days.discard(day)
        return table

    def _used_bytes(self) -> int:
        """Bytes the store's data occupies (pages in use, not the free pages a drop left)."""
        (pages,) = self._db.execute("PRAGMA page_count").fetchone()
        (free,) = self._db.execute("PRAGMA freelist_count").fetchone()
        (size,) = self._db.execute("PRAGMA page_size").fetchone()
        return int((pages - free) * size)

    # -- reading -------------------------------------------------------------------------------
    def _days_between(self, since: float, until: float) -> list[int]:
        return self._known_days(int(since // DAY), int(until // DAY))

    def overview(self, since: float, until: float, buckets: int = 48) -> Overview:
        """Queries by action, distinct clients and a series of `buckets` equal buckets (at least a
        minute each) over [since, until), from the minute and hour counts."""
        since, until = _since_until(since, until)
        buckets = max(1, min(int(buckets), MAX_BUCKETS))
        low, high = int(since // 60), -int(-until // 60)  # every minute the range touches
        start = low * 60
        width = max(60, -int(-(high * 60 - start) // buckets))
        width = -(-width // 60) * 60  # whole minutes: a minute never straddles two buckets
        marks = ", ".join("?" * len(BLOCKING_ACTIONS))
        with self._lock:
            self._db.execute("BEGIN")
            try:
                by_action = dict(
                    self._db.execute(
                        "SELECT action, SUM(queries) FROM query_minutes WHERE minute >= ? AND minute < ?"
                        " GROUP BY action",
                        (low, high),
                    ).fetchall()
                )
                series = self._db.execute(
                    f"SELECT (minute * 60 - ?) / ?, SUM(queries), SUM(CASE WHEN action IN ({marks}) THEN queries"  # noqa: S608 - placeholders only
                    " ELSE 0 END) FROM query_minutes WHERE minute >= ? AND minute < ? GROUP BY (minute * 60 - ?) / ?",
                    (start, width, *BLOCKING_ACTIONS, low, high, start, width),
                ).fetchall()
                (clients,) = self._db.execute(
                    "SELECT COUNT(DISTINCT client) FROM client_hours WHERE hour >= ? AND hour < ? AND client <> ''",
                    (int(since // 3600), -int(-until // 3600)),
                ).fetchone()
            finally:
                self._db.execute("COMMIT")
        counts = {int(b): (int(q), int(x)) for b, q, x in series}
        count = min(buckets, -(-(high * 60 - start) // width)) if high > low else 0
        return Overview(
            total=sum(int(v) for v in by_action.values()),
            by_action={str(k): int(v) for k, v in by_action.items()},
            clients=int(clients or 0),
            series=[Bucket(float(start + b * width), *counts.get(b, (0, 0))) for b in range(count)],
        )

    def search(
        self,
        *,
        since: float,
        until: float,
        client: str | None = None,
        name: str | None = None,
        action: str | None = None,
        reason: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[QueryRow]:
        """Queries in [since, until) matching every filter given, newest first; `name` matches the
        name and any name under it; page with `before_id` (the last id of the previous page)."""
        since, until = _since_until(since, until)
        limit = _limit(limit)
        where, params = ["time >= ?", "time < ?"], list[Any]([since, until])
        for column, value in (("client", client), ("action", action), ("reason", reason)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if name is not None:
            where.append("(rname = ? OR (rname >= ? AND rname < ?))")
            params.extend(name_range(name))
        if before_id is not None:
            where.append("id < ?")
            params.append(int(before_id))
        rows: list[QueryRow] = []
        with self._lock:
            for day in self._days_between(since, until):
                found = self._db.execute(
                    f"SELECT {_COLUMNS} FROM {day_table(day)} WHERE {' AND '.join(where)}"  # noqa: S608 - fixed text
                    " ORDER BY id DESC LIMIT ?",
                    (*params, limit - len(rows)),
                ).fetchall()
                rows.extend(QueryRow(*row) for row in found)
                if len(rows) >= limit:
                    break
        return rows

    def _grouped(
        self, since: float, until: float, column: str, where: str, params: Sequence[Any], limit: int
    ) -> list[tuple[str, int]]:
        since, until = _since_until(since, until)
        with self._lock:
            days = self._days_between(since, until)
            if not days:
                return []
            inner = " UNION ALL ".join(
                f"SELECT {column} AS k FROM {day_table(d)} WHERE time >= ? AND time < ? {where}"  # noqa: S608
                for d in days
            )
            found = self._db.execute(
                f"SELECT k, COUNT(*) FROM ({inner}) AS q WHERE k IS NOT NULL GROUP BY k ORDER BY 2 DESC, 1 LIMIT ?",  # noqa: S608
                (*[p for _ in days for p in (since, until, *params)], _limit(limit)),
            ).fetchall()
        return [(str(k), int(n)) for k, n in found]

    def top_names(
        self, since: float, until: float, action: str | None = "sinkhole", limit: int = 10
    ) -> list[tuple[str, int]]:
        """The most asked names in [since, until), only those with `action` unless it is None."""
        if action is None:
            return self._grouped(since, until, "qname", "", (), limit)
        return self._grouped(since, until, "qname", "AND action = ?", (action,), limit)

    def top_clients(
        self, since: float, until: float, action: str | None = None, limit: int = 10
    ) -> list[tuple[str, int]]:
        """The clients that asked most in the hours [since, until) touches (from the hour counts)."""
        since, until = _since_until(since, until)
        where, params = "hour >= ? AND hour < ? AND client <> ''", list[Any]([int(since // 3600), -int(-until // 3600)])
        if action is not None:
            where += " AND action = ?"
            params.append(action)
        with self._lock:
            found = self._db.execute(
                f"SELECT client, SUM(queries) FROM client_hours WHERE {where}"  # noqa: S608 - fixed text
                " GROUP BY client ORDER BY 2 DESC, 1 LIMIT ?",
                (*params, _limit(limit)),
            ).fetchall()
        return [(str(c), int(n)) for c, n in found]

    def clients_of(self, name: str, since: float, until: float, limit: int = 20) -> list[tuple[str, int]]:
        """Who asked for `name` (or a name under it) in [since, until), most queries first."""
        return self._grouped(
            since, until, "client", "AND (rname = ? OR (rname >= ? AND rname < ?))", name_range(name), limit
        )

    def flagged_clients(self, since: float) -> list[FlaggedClientRow]:
        """Clients the watch flagged since `since`, newest first."""
        with self._lock:
            found = self._db.execute(
                "SELECT client, time, until, names, family, mode FROM flagged_clients WHERE time >= ?"
                " ORDER BY time DESC, id DESC LIMIT ?",
                (float(since), MAX_LIMIT),
            ).fetchall()
        return [FlaggedClientRow(c, t, u, tuple(json.loads(n)), f, m) for c, t, u, n, f, m in found]

    def likely_c2(self, since: float) -> list[LikelyC2Row]:
        """Names the watch found to be likely C2 since `since`, one row per name (the clients it
        was found for), newest first."""
        with self._lock:
            found = self._db.execute(
                "SELECT name, time, until, client FROM likely_c2 WHERE time >= ? ORDER BY time DESC, id DESC LIMIT ?",
                (float(since), MAX_LIMIT),
            ).fetchall()
        rows: dict[str, LikelyC2Row] = {}
        for name, when, until, client in found:
            seen = rows.get(name)
            if seen is None:
                rows[name] = LikelyC2Row(name, when, until, (client,) if client else ())
            else:
                clients = seen.clients + ((client,) if client and client not in seen.clients else ())
                rows[name] = LikelyC2Row(name, seen.time, _later(seen.until, until), clients)
        return list(rows.values())


def _later(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _event_time(value: Any) -> float:
    """An event's time as UNIX seconds (the log writes ISO 8601 text)."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0
