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
- Counts per minute and per hour by action, and per hour and per day by client and action, are
  summed by the writer from each batch it inserts: the overview of a 10 M-row month then sums
  ~3 k hour rows instead of counting 10 M (bench/store_scale.py measures it). Their resolution is
  the minute (the hour for ranges over two days): a range counts every slot it touches.
- Every value reaches SQL as a bound parameter; the only names put into SQL text are day tables,
  which are built here from an integer day, never read from input.
- The SQL sticks to what SQLite and PostgreSQL both run (`?` placeholders become `%s` there; the
  few differences live in `Dialect`), so a PostgreSQL backend (#18) is a connection, not a rewrite.
- The tables other than the day tables are versioned (resolverguard.storeschema: one ordered list of
  migrations for both backends), migrated when the writer opens the store; readers only check that
  they can read it.

Writes come from one writer (resolverguard.logwriter), off the event loop; reads open their own
connection (`QueryStore.open_for_reading`) and are meant to run in a worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from resolverguard import storeschema
from resolverguard.storeschema import DAY, POSTGRES, SQLITE, Dialect, day_table

BLOCKING_ACTIONS = ("sinkhole", "nxdomain", "refuse", "servfail")  # verdicts.Action.blocks, as text
MAX_LIMIT = 1000  # most rows one read returns, whatever it is asked for
MAX_BUCKETS = 1000
NOT_PASSED = "action <> 'pass'"  # the condition of the day tables' partial action index

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
    gateway: str  # the resolverguard instance that answered ('' : written before gateways were recorded)


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
class GatewayCount:
    """One gateway's queries over a range (the fleet dashboard), from the per-gateway counts."""

    gateway: str  # '' : rows written before gateways were recorded
    queries: int
    blocked: int
    last_active: float | None  # start of its last minute (hour, for long ranges) with queries in the range
    first_seen: float  # its first batch in the store (0 for ''); UNIX seconds


@dataclass(frozen=True, slots=True)
class FlaggedClientRow:
    client: str | None
    time: float
    until: float | None
    names: tuple[str, ...]
    family: str | None
    mode: str
    gateway: str


@dataclass(frozen=True, slots=True)
class LikelyC2Row:
    name: str
    time: float
    until: float | None
    clients: tuple[str, ...]
    gateways: tuple[str, ...]  # the gateways whose watch found it


# Counts kept beside the rows, per time slot: (table, slot length in seconds). Queries by action per
# minute (ranges up to two days) and per hour (longer ones); clients per hour and per day.
QUERY_COUNTS = (("query_minutes", 60), ("query_hours", 3600))
CLIENT_COUNTS = (("client_hours", 3600), ("client_days", DAY))
GATEWAY_COUNTS = (("gateway_minutes", 60), ("gateway_hours", 3600))  # as QUERY_COUNTS, per gateway
SHORT_RANGE = 2 * DAY  # up to this span the overview counts by the minute, beyond it by the hour

# The tables other than the day tables: resolverguard.storeschema (versioned, migrated at open).
_DAY_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {t} (id {query_id}, time DOUBLE PRECISION NOT NULL, client TEXT,"
    " qname TEXT NOT NULL, rname TEXT NOT NULL, qtype TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL,"
    " score DOUBLE PRECISION, upstream_rcode TEXT, latency_ms DOUBLE PRECISION NOT NULL,"
    " gateway TEXT NOT NULL DEFAULT '')",
    # A gateway's ids only grow, so its entries are appended (cheap, unlike a name index): a filter
    # by a quiet gateway then finds its rows at once, not after scanning a busy one's day.
    "CREATE INDEX IF NOT EXISTS {t}_gateway ON {t} (gateway, id)",
    # No index on time: ids grow with time, so the primary key orders a day by time already.
    "CREATE INDEX IF NOT EXISTS {t}_client ON {t} (client, id)",
    # Only what was not passed: ~90% of the rows pass and are found by scanning the newest first,
    # while blocks and logs (the dashboard's lists) are found at once; a third of the insert cost.
    "CREATE INDEX IF NOT EXISTS {t}_action ON {t} (action, id) WHERE action <> 'pass'",
)
_COUNT_QUERIES = (
    "INSERT INTO {table} (slot, action, queries) SELECT {slot}, action, COUNT(*) FROM {t}"
    " WHERE id >= ? AND id <= ? GROUP BY {slot}, action"
    " ON CONFLICT (slot, action) DO UPDATE SET queries = {table}.queries + excluded.queries"
)
# One gateway writes a whole batch, so its counts are summed here from the rows in hand: re-reading
# the batch in SQL, as the other counts do, cost more (measured: 1.4 us a row in SQL).
_COUNT_GATEWAYS = (
    "INSERT INTO {table} (slot, gateway, action, queries) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (slot, gateway, action) DO UPDATE SET queries = {table}.queries + excluded.queries"
)
_COUNT_CLIENTS = (
    "INSERT INTO {table} (slot, client, action, queries) SELECT {slot}, COALESCE(client, ''), action, COUNT(*)"
    " FROM {t} WHERE id >= ? AND id <= ? GROUP BY {slot}, COALESCE(client, ''), action"
    " ON CONFLICT (slot, client, action) DO UPDATE SET queries = {table}.queries + excluded.queries"
)
# Made once a day is over (`index_finished_days`), never row by row: reversed names arrive in no
# order, and an index kept up per row cost more than the rest of the insert (measured: 3.4 us a row
# without it, 10.8 with it, at 300 k rows a day; every batch dirtied a page per row for the WAL).
# Today's table is scanned for a name (a day of a home network: tens of ms).
# (rname, client) answers "who asked for this name" from the index alone; the blocked names' index
# answers "top blocked names" without reading the rows.
_FINISHED_DAY_INDEXES = (
    "CREATE INDEX IF NOT EXISTS {t}_rname ON {t} (rname, client)",
    "CREATE INDEX IF NOT EXISTS {t}_blocked ON {t} (action, qname) WHERE action <> 'pass'",
)
_COLUMNS = "id, time, client, qname, qtype, action, reason, score, upstream_rcode, latency_ms, gateway"


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

    def __init__(self, connection: Any, path: str, dialect: Dialect = SQLITE, gateway: str = "") -> None:
        """`connection`: sqlite3's, or a `PostgresConnection` (the same execute/executemany);
        `gateway`: the name the writer puts on every row and alert it writes."""
        self._db, self.path, self._dialect, self.gateway = connection, path, dialect, gateway
        self._lock = threading.Lock()  # one statement at a time: readers are called from pool threads
        self._days: set[int] = set()  # day tables this writer knows exist
        self._indexed: set[int] = set()  # days whose name index this writer made or found
        self._registered = False  # this writer's gateway is in store_gateways

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open_for_writing(cls, path: str | Path, gateway: str = "") -> QueryStore:
        """Creates the store (folder, file, schema) when missing and migrates an older one to this
        code's schema (resolverguard.storeschema: one transaction under the migration lock, so
        several gateways may open one PostgreSQL at once); raises StoreError saying why not, e.g.
        a store whose schema is newer than this code. `gateway` names this writer in every row it
        writes (`query_store.gateway`; the writer knows it, the per-query record does not carry it)."""
        store = cls(*_connect_for_writing(path), gateway=gateway)
        try:
            storeschema.migrate(store._db, store._dialect, safe_url(store.path))
            store._load()
        except storeschema.SchemaError as err:
            store.close()
            raise StoreError(str(err)) from None
        except Exception as err:  # noqa: BLE001 - sqlite3.Error or psycopg.Error (imported lazily)
            store.close()
            raise StoreError(f"cannot open the query store {safe_url(store.path)}: {err}") from None
        return store

    @classmethod
    def open_for_reading(cls, path: str | Path) -> QueryStore:
        """Its own read-only connection, safe to use from any one thread at a time (calls are
        serialised by a lock): the dashboard's reads run in `asyncio.to_thread`. Raises StoreError
        for a store this code cannot read (older: not migrated yet; or newer)."""
        if is_postgres(path):
            store = cls(PostgresConnection.open(str(path)), str(path), POSTGRES)
        else:
            where = Path(path)
            if not where.is_file():
                raise StoreError(f"no query store at {where} (is query_store.path set and the resolver running?)")
            try:
                db = sqlite3.connect(
                    f"{where.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
                )
                db.execute("PRAGMA query_only=1")
            except sqlite3.Error as err:
                raise StoreError(f"cannot read the query store {where}: {err}") from None
            store = cls(db, str(where))
        try:
            storeschema.check_readable(store._db, store._dialect, safe_url(store.path))
        except storeschema.SchemaError as err:
            store.close()
            raise StoreError(str(err)) from None
        except Exception as err:  # noqa: BLE001 - sqlite3.Error or psycopg.Error
            store.close()
            raise StoreError(f"cannot read the query store {safe_url(store.path)}: {err}") from None
        return store

    def _load(self) -> None:
        """The day tables that exist; the id counter made to follow the newest id."""
        self._days = set(self._known_days())
        if self._days:  # a counter lost or behind (a restored copy): ids must still only grow
            (top,) = self._db.execute(f"SELECT MAX(id) FROM {day_table(max(self._days))}").fetchone()  # noqa: S608
            self._db.execute(
                "UPDATE store_meta SET value = ? WHERE name = 'next_id' AND value <= ?", ((top or 0) + 1, top or 0)
            )

    def _register(self, now: float) -> None:
        """This gateway in `store_gateways` (the dashboard shows a gateway column from two on), with
        its first batch: opening the store to check it (at start, at reload) writes nothing."""
        self._db.execute(
            "INSERT INTO store_gateways (name, first_seen, last_seen) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen",
            (self.gateway, now, now),
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
            self._db.execute(self._dialect.begin_write)
            try:
                if not self._registered:
                    self._register(time.time())
                self._add_queries(queries)
                self._add_events(events)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._registered = True

    def _add_queries(self, queries: Sequence[StoredQuery]) -> None:
        if not queries:
            return
        (end,) = self._db.execute(
            "UPDATE store_meta SET value = value + ? WHERE name = 'next_id' RETURNING value", (len(queries),)
        ).fetchone()
        first, gw = int(end) - len(queries), self.gateway
        rows = [
            (first + n, when, client, qname, qname.lower().rstrip(".")[::-1], qtype, action, reason, score, rcode, ms)
            + (gw,)
            for n, (when, client, qname, qtype, action, reason, score, rcode, ms) in enumerate(queries)
        ]
        low, high = int(rows[0][1] // DAY), int(rows[-1][1] // DAY)
        days = {low: rows} if low == high else _by_day(rows)
        for day, some in days.items():
            table = self._day_table(day)
            self._db.executemany(
                f"INSERT INTO {table} (id, time, client, qname, rname, qtype, action, reason, score,"  # noqa: S608 - a day table
                " upstream_rcode, latency_ms, gateway) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                some,
            )
            # The counts, summed in SQL from the rows just written (the range of their ids).
            ids = (some[0][0], some[-1][0])
            for statement, counts in ((_COUNT_QUERIES, QUERY_COUNTS), (_COUNT_CLIENTS, CLIENT_COUNTS)):
                for name, unit in counts:
                    slot = self._dialect.slot.format(unit=unit)
                    self._db.execute(statement.format(table=name, slot=slot, t=table), ids)
            self._add_gateway_counts(some)

    def _add_gateway_counts(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """This gateway's queries by slot and action, counted from the rows just written. The slot
        is time / unit truncated, as the SQL of the other counts computes it (`Dialect.slot`)."""
        for name, unit in GATEWAY_COUNTS:
            counted = Counter((int(row[1] / unit), row[6]) for row in rows)
            self._db.executemany(
                _COUNT_GATEWAYS.format(table=name),
                [(slot, self.gateway, action, n) for (slot, action), n in counted.items()],
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
                    "INSERT INTO flagged_clients (time, client, until, names, family, mode, gateway)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        when,
                        event.get("client"),
                        until,
                        json.dumps(list(event.get("names") or [])),
                        event.get("family_hint"),
                        str(event.get("action") or "log"),
                        self.gateway,
                    ),
                )
            elif event.get("event") == "likely_c2":
                self._db.execute(
                    "INSERT INTO likely_c2 (time, name, client, until, gateway) VALUES (?, ?, ?, ?, ?)",
                    (when, str(event.get("name")), event.get("client"), until, self.gateway),
                )

    def index_finished_days(self, now: float) -> int:
        """Builds the name index of each day table before today's that lacks one; returns how many."""
        today, made = int(now // DAY), 0
        with self._lock:
            for day in sorted(self._known_days()):
                if day < today and day not in self._indexed:
                    for statement in _FINISHED_DAY_INDEXES:
                        self._db.execute(statement.format(t=day_table(day)))
                    self._indexed.add(day)
                    made += 1
        return made

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
                self._db.execute(self._dialect.begin_write)
                for name, unit in (*QUERY_COUNTS, *CLIENT_COUNTS, *GATEWAY_COUNTS):
                    self._db.execute(f"DELETE FROM {name} WHERE slot < ?", (cut // unit,))  # noqa: S608 - ours
                self._db.execute("DELETE FROM flagged_clients WHERE time < ?", (cut,))
                self._db.execute("DELETE FROM likely_c2 WHERE time < ?", (cut,))
                self._db.execute("COMMIT")
        return dropped

    def _drop(self, day: int) -> str:
        table = day_table(day)
        self._db.execute(self._dialect.begin_write)
        self._db.execute(f"DROP TABLE IF EXISTS {table}")
        self._db.execute("DELETE FROM store_days WHERE day = ?", (day,))
        self._db.execute("COMMIT")
        self._days.discard(day)
        return table

    def _used_bytes(self) -> int:
        """Bytes the store's data occupies (pages in use, not the free pages a drop left)."""
        used = 1
        for statement in self._dialect.used_bytes:
            used *= int(self._db.execute(statement).fetchone()[0])
        return used

    # -- reading -------------------------------------------------------------------------------
    def _days_between(self, since: float, until: float) -> list[int]:
        return self._known_days(int(since // DAY), int(until // DAY))

    def overview(self, since: float, until: float, buckets: int = 48) -> Overview:
        """Queries by action, distinct clients and a series of `buckets` equal buckets over
        [since, until), from the counts: by the minute for ranges up to SHORT_RANGE (every minute
        the range touches counts), by the hour beyond; clients to the hour."""
        since, until = _since_until(since, until)
        buckets = max(1, min(int(buckets), MAX_BUCKETS))
        table, unit = QUERY_COUNTS[0] if until - since <= SHORT_RANGE else QUERY_COUNTS[1]
        low, high = int(since // unit), -int(-until // unit)  # every slot the range touches
        width = max(1, -(-(high - low) // buckets))  # slots per bucket: a slot never straddles two
        with self._lock:
            self._db.execute("BEGIN")
            try:
                series = self._db.execute(
                    "SELECT b, action, SUM(queries) FROM (SELECT (slot - ?) / ? AS b, action, queries"  # noqa: S608
                    f" FROM {table} WHERE slot >= ? AND slot < ?) AS s GROUP BY b, action",
                    (low, width, low, high),
                ).fetchall()
                clients = self._clients_between(since, until)
            finally:
                self._db.execute("COMMIT")
        by_action: Counter[str] = Counter()
        per_bucket: dict[int, list[int]] = {}
        for bucket, action, queries in series:
            blocked = action in BLOCKING_ACTIONS
            by_action[str(action)] += int(queries)
            counts = per_bucket.setdefault(int(bucket), [0, 0])
            counts[0] += int(queries)
            counts[1] += int(queries) if blocked else 0
        count = -(-(high - low) // width) if high > low else 0
        return Overview(
            total=sum(by_action.values()),
            by_action=dict(by_action),
            clients=clients,
            series=[Bucket(float((low + b * width) * unit), *per_bucket.get(b, (0, 0))) for b in range(count)],
        )

    def _client_counts(self, select: str, where: str = "") -> str:
        """A UNION ALL of the day counts for the whole days inside the hours [since, until)
        touches and of the hour counts for the hours at either end; its parameters: `_client_slots(...)`."""
        return (
            f"SELECT {select} FROM client_days WHERE slot >= ? AND slot < ? AND client <> ''{where}"
            f" UNION ALL SELECT {select} FROM client_hours"
            f" WHERE ((slot >= ? AND slot < ?) OR (slot >= ? AND slot < ?)) AND client <> ''{where}"
        )

    def _clients_between(self, since: float, until: float) -> int:
        inner = self._client_counts("client")
        (found,) = self._db.execute(
            f"SELECT COUNT(DISTINCT client) FROM ({inner}) AS c",
            _client_slots(since, until),  # noqa: S608 - fixed
        ).fetchone()
        return int(found or 0)

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
        gateway: str | None = None,
    ) -> list[QueryRow]:
        """Queries in [since, until) matching every filter given, newest first; `name` matches the
        name and any name under it; `gateway` the instance that answered them; page with
        `before_id` (the last id of the previous page)."""
        since, until = _since_until(since, until)
        limit = _limit(limit)
        where, params = ["time >= ?", "time < ?"], list[Any]([since, until])
        # With a client, its index leads and `+action` (a no-op in SQL) keeps the planner off the
        # action index: a quiet client's few rows beat a month of blocks checked one by one.
        lead = self._dialect.not_indexed if client is not None else ""
        for column, value in (("client", client), (f"{lead}action", action), ("reason", reason), ("gateway", gateway)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if action is not None and action != "pass" and client is None:
            where.append(NOT_PASSED)  # lets the planner use the partial index of what was not passed
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
        """COUNT(*) by `column` over the day tables in range, most first. A day wholly inside the
        range gets no time condition, so a covering index can answer it without the rows."""
        since, until = _since_until(since, until)
        parts, values = [], list[Any]()
        with self._lock:
            for day in self._days_between(since, until):
                whole = since <= day * DAY and (day + 1) * DAY <= until
                parts.append(
                    f"SELECT {column} AS k FROM {day_table(day)} WHERE "  # noqa: S608 - fixed text
                    + ("1 = 1 " if whole else "time >= ? AND time < ? ")
                    + where
                )
                values.extend((*params,) if whole else (since, until, *params))
            if not parts:
                return []
            found = self._db.execute(
                f"SELECT k, COUNT(*) FROM ({' UNION ALL '.join(parts)}) AS q WHERE k IS NOT NULL"  # noqa: S608
                " GROUP BY k ORDER BY 2 DESC, 1 LIMIT ?",
                (*values, _limit(limit)),
            ).fetchall()
        return [(str(k), int(n)) for k, n in found]

    def top_names(
        self, since: float, until: float, action: str | None = "sinkhole", limit: int = 10
    ) -> list[tuple[str, int]]:
        """The most asked names in [since, until), only those with `action` unless it is None."""
        if action is None:
            return self._grouped(since, until, "qname", "", (), limit)
        extra = "" if action == "pass" else f" AND {NOT_PASSED}"
        return self._grouped(since, until, "qname", f"AND action = ?{extra}", (action,), limit)

    def top_clients(
        self, since: float, until: float, action: str | None = None, limit: int = 10
    ) -> list[tuple[str, int]]:
        """The clients that asked most in the hours [since, until) touches (from the counts)."""
        since, until = _since_until(since, until)
        where = " AND action = ?" if action is not None else ""
        days, hours, tail = _client_slots(since, until, split=True)
        extra = (action,) if action is not None else ()
        inner = self._client_counts("client, queries", where)
        with self._lock:
            found = self._db.execute(
                f"SELECT client, SUM(queries) FROM ({inner}) AS c GROUP BY client ORDER BY 2 DESC, 1 LIMIT ?",  # noqa: S608
                (*days, *extra, *hours, *tail, *extra, _limit(limit)),
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
                "SELECT client, time, until, names, family, mode, gateway FROM flagged_clients WHERE time >= ?"
                " ORDER BY time DESC, id DESC LIMIT ?",
                (float(since), MAX_LIMIT),
            ).fetchall()
        return [FlaggedClientRow(c, t, u, tuple(json.loads(n)), f, m, g) for c, t, u, n, f, m, g in found]

    def likely_c2(self, since: float) -> list[LikelyC2Row]:
        """Names the watch found to be likely C2 since `since`, one row per name (the clients it
        was found for), newest first."""
        with self._lock:
            found = self._db.execute(
                "SELECT name, time, until, client, gateway FROM likely_c2 WHERE time >= ?"
                " ORDER BY time DESC, id DESC LIMIT ?",
                (float(since), MAX_LIMIT),
            ).fetchall()
        rows: dict[str, LikelyC2Row] = {}
        for name, when, until, client, gateway in found:
            seen = rows.get(name)
            if seen is None:
                rows[name] = LikelyC2Row(name, when, until, (client,) if client else (), (gateway,))
            else:
                clients = seen.clients + ((client,) if client and client not in seen.clients else ())
                gateways = seen.gateways + ((gateway,) if gateway not in seen.gateways else ())
                rows[name] = LikelyC2Row(name, seen.time, _later(seen.until, until), clients, gateways)
        return list(rows.values())

    def gateway_counts(self, since: float, until: float) -> list[GatewayCount]:
        """Every gateway that has written to the store, with its queries and blocked queries in
        [since, until) (0 for one silent in the range: a fleet's dashboard should show it), from
        the per-gateway counts, by the minute or by the hour as `overview` counts; most queries first."""
        since, until = _since_until(since, until)
        table, unit = GATEWAY_COUNTS[0] if until - since <= SHORT_RANGE else GATEWAY_COUNTS[1]
        low, high = int(since // unit), -int(-until // unit)  # every slot the range touches, as overview
        blocking = ", ".join("?" * len(BLOCKING_ACTIONS))
        with self._lock:
            self._db.execute("BEGIN")
            try:
                counted = self._db.execute(
                    "SELECT gateway, SUM(queries), SUM(CASE WHEN action IN"  # noqa: S608 - fixed text
                    f" ({blocking}) THEN queries ELSE 0 END), MAX(slot) FROM {table}"
                    " WHERE slot >= ? AND slot < ? GROUP BY gateway",
                    (*BLOCKING_ACTIONS, low, high),
                ).fetchall()
                known = self._db.execute("SELECT name, first_seen FROM store_gateways").fetchall()
            finally:
                self._db.execute("COMMIT")
        counts: dict[str, tuple[int, int, float | None]] = {
            str(g): (int(q), int(b), float(s * unit)) for g, q, b, s in counted
        }
        first = {str(g): float(f) for g, f in known}
        first |= {g: 0.0 for g in counts if g not in first}  # counted, not (yet) listed
        rows = [GatewayCount(g, *counts.get(g, (0, 0, None)), first_seen) for g, first_seen in first.items()]
        return sorted(rows, key=lambda r: (-r.queries, r.gateway))

    def gateways(self) -> list[str]:
        """The gateways that have written to the store, by name ('' : rows from before they were
        recorded). The dashboard shows which gateway answered only when there are two or more."""
        with self._lock:
            found = self._db.execute("SELECT name FROM store_gateways ORDER BY name").fetchall()
        return [str(n) for (n,) in found]


def _client_slots(since: float, until: float, split: bool = False) -> Any:
    """For `_client_counts`: the whole days inside the hours [since, until) touches, then the hours
    before and after them. `split`: as three pairs, for statements that put more between them."""
    low, high = int(since // 3600), -int(-until // 3600)
    first_day, end_day = -(-low // 24), high // 24
    if first_day >= end_day:  # no whole day: all hours
        days, hours, tail = (0, 0), (low, high), (0, 0)
    else:
        days, hours, tail = (first_day, end_day), (low, first_day * 24), (end_day * 24, high)
    return (days, hours, tail) if split else (*days, *hours, *tail)


SQLITE_WAIT = 10.0  # seconds a writer waits for another's lock (a migration under way) before giving up


def _into_wal(db: sqlite3.Connection) -> None:
    """WAL mode, waiting for the lock like any write: switching a store that is not in WAL yet (one
    made before, or by other tools) needs the database to itself, and SQLite answers 'database is
    locked' at once, without its busy handler, while another gateway migrates it."""
    deadline = time.monotonic() + SQLITE_WAIT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _connect_for_writing(path: str | Path) -> tuple[Any, str, Dialect]:
    """A writable connection: (connection, path as given, its dialect); raises StoreError."""
    if is_postgres(path):
        return PostgresConnection.open(str(path)), str(path), POSTGRES
    where = Path(path)
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(where), isolation_level=None, check_same_thread=False, timeout=SQLITE_WAIT)
        _into_wal(db)
        db.execute("PRAGMA cache_size=-65536")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a power cut loses the last commits, never the file
    except (OSError, sqlite3.Error) as err:
        raise StoreError(f"cannot open the query store {where}: {err}") from None
    return db, str(where), SQLITE


def schema_status(path: str | Path) -> storeschema.SchemaStatus:
    """`resolverguard store status`: what the store's schema is at (reads only; an SQLite file
    that does not exist is not created)."""
    if not is_postgres(path) and not Path(path).is_file():
        raise StoreError(f"no query store at {path}")
    db, where, dialect = _connect_for_writing(path)
    try:
        return storeschema.status(db, dialect)
    except Exception as err:  # noqa: BLE001 - sqlite3.Error or psycopg.Error
        raise StoreError(f"cannot read the query store {safe_url(where)}: {err}") from None
    finally:
        db.close()


def migrate_store(path: str | Path, dry_run: bool = False) -> storeschema.SchemaStatus:
    """`resolverguard store migrate`: the store brought to this code's schema (or, `dry_run`, the
    migrations applied and rolled back); returns its status as it was found."""
    db, where, dialect = _connect_for_writing(path)
    try:
        return storeschema.migrate(db, dialect, safe_url(where), dry_run)
    except storeschema.SchemaError as err:
        raise StoreError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - sqlite3.Error or psycopg.Error
        raise StoreError(f"migrating the query store {safe_url(where)} failed, nothing was changed: {err}") from None
    finally:
        db.close()


def is_postgres(path: str | Path) -> bool:
    return isinstance(path, str) and path.startswith(("postgresql://", "postgres://"))


def safe_url(url: str) -> str:
    """A URL as an error message may show it: without its password."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':', 1)[0]}@{tail}"


class PostgresConnection:
    """psycopg behind the few methods the store calls on an sqlite3 connection: the SQL is shared,
    only `?` placeholders become `%s` (the store's SQL has no literal `%` or `?`)."""

    def __init__(self, connection: Any) -> None:
        self._db = connection

    @classmethod
    def open(cls, url: str) -> PostgresConnection:
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                "a postgresql:// query store needs psycopg: pip install 'resolverguard[postgres]'"
            ) from None
        try:
            return cls(psycopg.connect(url, autocommit=True))
        except psycopg.Error as err:
            raise StoreError(f"cannot connect to the query store {safe_url(url)}: {err}") from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql.replace("?", "%s"), tuple(params) or None)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._db.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), rows)

    def close(self) -> None:
        self._db.close()


def _by_day(rows: list[tuple[Any, ...]]) -> dict[int, list[tuple[Any, ...]]]:
    """A batch that spans midnight (UTC), split by day, in order."""
    out: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        out.setdefault(int(row[1] // DAY), []).append(row)
    return out


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
