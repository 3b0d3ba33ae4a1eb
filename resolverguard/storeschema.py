"""The query store's schema, versioned: one ordered list of migrations for SQLite and PostgreSQL.

Why: several gateways of a fleet write to one PostgreSQL store (#18) and are upgraded one at a
time, and a home gateway's SQLite file outlives many releases. Before this module the schema was
"CREATE ... IF NOT EXISTS" at open, which cannot change a table that exists: the first store
(release with the query store, v1) counted by `minute`/`hour` columns and kept per-row time and
name indexes on every day table; later code reads `slot` columns, hour/day counts and partial
indexes, and simply failed on a v1 file.

How:
- `schema_version` holds one row per migration applied (version, name, readable_by, applied), so
  a store says what it is and `resolverguard store status` can print it.
- `MIGRATIONS` is the one ordered list. Each is a small named function of (connection, dialect);
  the SQL is shared text, the few differences live in `store.Dialect`. A new store runs them all,
  so the path an old store takes is the path every test store takes.
- They run in one transaction under the store's migration lock (SQLite: BEGIN IMMEDIATE, the
  file's write lock; PostgreSQL: `pg_advisory_xact_lock`, taken before anything is read or made,
  so two gateways starting at once neither both migrate nor race on CREATE TABLE). Both backends
  run DDL transactionally: a migration that fails leaves the store as it was.
- `readable_by` is the oldest code version that still works on a store after that migration. A
  store whose migrations need newer code than this one is refused with a clear error; a store
  newer but still readable (an additive migration) is used as it is, so a fleet can be upgraded
  one gateway at a time when the migration allows it.
- Stores made before versioning have no `schema_version`: their shape tells their version
  (`legacy_version`), and they are stamped when first migrated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resolverguard.store import Dialect

MIGRATION_LOCK = 0x7267_7363_6865_6D61  # PostgreSQL advisory lock key ("rgschema"); one per database


class SchemaError(Exception):
    """The store's schema cannot be used by this code (newer than it, or older and read-only here)."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    readable_by: int  # the oldest code version that still works on the store once this is applied
    apply: Callable[[Any, Dialect], None]


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """What a store is at, and what this code would do to it."""

    version: int  # 0: an empty database
    needs: int  # the oldest code version that can use the store (0: any)
    stamped: bool  # False: made before versioning (its version read from its shape), or empty
    history: tuple[tuple[int, str, float], ...]  # (version, name, applied at) as recorded
    pending: tuple[Migration, ...]  # what `migrate` would apply

    @property
    def usable(self) -> bool:
        return self.needs <= CODE_VERSION

    def describe(self) -> str:
        pending = ", ".join(f"{m.version} {m.name}" for m in self.pending)
        state = (
            f"needs resolverguard with schema {self.needs} or later"
            if not self.usable
            else f"to apply: {pending}"
            if self.pending
            else "up to date"
        )
        legacy = " (made before versioning: read from its tables)" if self.version and not self.stamped else ""
        return f"schema version {self.version}{legacy}; this resolverguard: {CODE_VERSION}; {state}"


def _first_store(db: Any, d: Dialect) -> None:
    """The store as the first release made it (#16): per-minute and per-client-hour counts, the
    watch's alerts, the id counter. Day tables are made by the writer as days begin."""
    for statement in (
        "CREATE TABLE store_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "CREATE TABLE store_days (day INTEGER PRIMARY KEY)",
        "CREATE TABLE query_minutes (minute BIGINT NOT NULL, action TEXT NOT NULL,"
        " queries BIGINT NOT NULL, PRIMARY KEY (minute, action))",
        "CREATE TABLE client_hours (hour BIGINT NOT NULL, client TEXT NOT NULL, action TEXT NOT NULL,"
        " queries BIGINT NOT NULL, PRIMARY KEY (hour, client, action))",
        f"CREATE TABLE flagged_clients (id {d.event_id}, time DOUBLE PRECISION NOT NULL, client TEXT,"
        " until DOUBLE PRECISION, names TEXT NOT NULL, family TEXT, mode TEXT NOT NULL)",
        "CREATE INDEX flagged_clients_time ON flagged_clients (time)",
        f"CREATE TABLE likely_c2 (id {d.event_id}, time DOUBLE PRECISION NOT NULL, name TEXT NOT NULL,"
        " client TEXT, until DOUBLE PRECISION)",
        "CREATE INDEX likely_c2_time ON likely_c2 (time)",
        "INSERT INTO store_meta (name, value) VALUES ('next_id', 1)",
    ):
        db.execute(statement)


def _counts_by_slot(db: Any, d: Dialect) -> None:
    """Counts per hour of queries and per day of clients beside the minute/hour ones (a month's
    overview sums ~3 k rows, not 10 M), all keyed by `slot`; day tables lose their per-row time and
    name indexes (the name index is made once a day is over) and keep a partial action index."""
    from resolverguard.store import day_table

    db.execute("ALTER TABLE query_minutes RENAME COLUMN minute TO slot")
    db.execute("ALTER TABLE client_hours RENAME COLUMN hour TO slot")
    db.execute(
        "CREATE TABLE query_hours (slot BIGINT NOT NULL, action TEXT NOT NULL,"
        " queries BIGINT NOT NULL, PRIMARY KEY (slot, action))"
    )
    db.execute(
        "CREATE TABLE client_days (slot BIGINT NOT NULL, client TEXT NOT NULL, action TEXT NOT NULL,"
        " queries BIGINT NOT NULL, PRIMARY KEY (slot, client, action))"
    )
    # Integer division of the non-negative slots is floor on both backends.
    db.execute(
        "INSERT INTO query_hours (slot, action, queries)"
        " SELECT slot / 60, action, SUM(queries) FROM query_minutes GROUP BY slot / 60, action"
    )
    db.execute(
        "INSERT INTO client_days (slot, client, action, queries)"
        " SELECT slot / 24, client, action, SUM(queries) FROM client_hours GROUP BY slot / 24, client, action"
    )
    for (day,) in db.execute("SELECT day FROM store_days").fetchall():
        t = day_table(int(day))
        # v1's `{t}_rname` was on (rname) alone: the finished-day index of the same name is on
        # (rname, client), and CREATE INDEX IF NOT EXISTS would have kept the old one.
        for index in ("time", "rname", "action"):
            db.execute(f"DROP INDEX IF EXISTS {t}_{index}")
        db.execute(f"CREATE INDEX {t}_action ON {t} (action, id) WHERE action <> 'pass'")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "query store", 1, _first_store),
    Migration(2, "counts by slot, partial day indexes", 2, _counts_by_slot),
)
CODE_VERSION = MIGRATIONS[-1].version


def legacy_version(db: Any, d: Dialect) -> int:
    """The version of a store made before `schema_version` existed, from its tables: 0 (empty),
    1 (`query_minutes.minute`) or 2 (`query_minutes.slot`)."""
    if not _has_table(db, d, "store_meta"):
        return 0
    columns = {str(row[0]) for row in db.execute(d.columns, ("query_minutes",)).fetchall()}
    return 1 if "minute" in columns else 2


def _has_table(db: Any, d: Dialect, table: str) -> bool:
    return db.execute(d.has_table, (table,)).fetchone() is not None


def status(db: Any, d: Dialect) -> SchemaStatus:
    """Reads only (no lock): what the store is at and what `migrate` would apply."""
    if not _has_table(db, d, "schema_version"):
        version = legacy_version(db, d)
        return SchemaStatus(version, version, False, (), MIGRATIONS[version:])
    rows = db.execute("SELECT version, name, readable_by, applied FROM schema_version ORDER BY version").fetchall()
    version = max((int(r[0]) for r in rows), default=0)
    needs = max((int(r[2]) for r in rows), default=0)
    history = tuple((int(r[0]), str(r[1]), float(r[3])) for r in rows)
    return SchemaStatus(version, needs, True, history, tuple(m for m in MIGRATIONS if m.version > version))


def check_readable(db: Any, d: Dialect, where: str) -> None:
    """For readers (the dashboard): raises SchemaError unless this code can read the store as it is."""
    found = status(db, d)
    if not found.usable:
        raise SchemaError(_too_new(found, where))
    if found.version == 0:
        raise SchemaError(f"the query store {where} is empty (no resolver has written to it yet)")
    if found.version < CODE_VERSION:
        raise SchemaError(
            f"the query store {where} is at schema version {found.version}, this resolverguard reads "
            f"{CODE_VERSION}: run `resolverguard store migrate --url ...` (or start the resolver, which migrates it)"
        )


def _too_new(found: SchemaStatus, where: str) -> str:
    return (
        f"the query store {where} is at schema version {found.version} and needs resolverguard with schema "
        f"{found.needs} or later; this one knows up to {CODE_VERSION}: upgrade resolverguard (nothing was changed)"
    )


def migrate(
    db: Any, d: Dialect, where: str, dry_run: bool = False, clock: Callable[[], float] = time.time
) -> SchemaStatus:
    """Brings the store to CODE_VERSION in one transaction under the migration lock; returns its
    status as found (inside the lock). `dry_run`: applies everything, then rolls back, so a dry run
    proves the migrations work on this store. Raises SchemaError for a store too new for this code,
    and whatever the driver raises for a failed statement (after rolling back)."""
    for statement in d.migration_lock:
        db.execute(statement.format(key=MIGRATION_LOCK))
    try:
        found = status(db, d)
        if not found.usable:
            raise SchemaError(_too_new(found, where))
        if found.pending or not found.stamped:
            _apply(db, d, found, clock())
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("ROLLBACK" if dry_run else "COMMIT")
    return found


def _apply(db: Any, d: Dialect, found: SchemaStatus, now: float) -> None:
    if not found.stamped:
        db.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " readable_by INTEGER NOT NULL, applied DOUBLE PRECISION NOT NULL)"
        )
        for done in MIGRATIONS[: found.version]:  # what a store made before versioning already is
            _record(db, done, now, " (found: made before versioning)")
    for migration in found.pending:
        migration.apply(db, d)
        _record(db, migration, now)


def _record(db: Any, migration: Migration, now: float, note: str = "") -> None:
    db.execute(
        "INSERT INTO schema_version (version, name, readable_by, applied) VALUES (?, ?, ?, ?)",
        (migration.version, migration.name + note, migration.readable_by, now),
    )
