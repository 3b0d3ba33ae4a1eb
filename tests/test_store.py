"""The query store over real sockets: a resolver the test starts answers dnspython's queries, and
what it answered (and the client watch's alerts) is read back through `QueryStore`, the dashboard's
read side. Retention, a broken store, and names full of SQL metacharacters, too."""

from __future__ import annotations

import io
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from dnsfixtures import (
    DIGITS_MODEL,
    ROOT,
    UPSTREAM_A,
    Upstream,
    eventually,
    free_port,
    run_resolver,
    run_upstream,
    start_serving,
)
from test_watch import C2, INFECTED, OTHER, addresses, ask, config_for, find_c2_and_beacon

from resolverguard.config import QueryStoreConfig
from resolverguard.store import DAY, QueryRow, QueryStore, StoreError, day_table

TRICKY = ["a%b.example.com", "a_b.example.com", "o'brien.example.com", 'x"y.example.com', "a;b.example.com"]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with run_upstream(Upstream()) as up:
        yield up


def rows_for(path: Path, count: int, **filters: str) -> list[QueryRow]:
    def read() -> list[QueryRow]:
        if not path.exists():
            return []
        store = QueryStore.open_for_reading(path)
        try:
            return store.search(since=time.time() - 3600, until=time.time() + 60, **filters)  # type: ignore[arg-type]
        finally:
            store.close()

    return eventually(read, done=lambda rows: len(rows) >= count)


def ask_from(name: str, port: int, source: str = "127.0.0.1") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5, source=source)


def test_answered_queries_reach_the_store_with_action_reason_and_client_privacy(
    upstream: Upstream, tmp_path: Path
) -> None:
    port, policy, db = free_port(), tmp_path / "policy.yaml", tmp_path / "store" / "queries.db"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream.port}']\nlists:\n  deny: [ads.example.org]\n"
        f"query_log:\n  path: {tmp_path / 'q.jsonl'}\n  clients: truncate\nquery_store: {db}\n"
    )
    proc = start_serving(policy, port)
    try:
        assert addresses(ask_from("www.example.com", port, "127.0.0.2")) == [UPSTREAM_A]
        assert addresses(ask_from("ads.example.org", port, "127.0.0.3")) == ["0.0.0.0"]
        assert addresses(ask_from("cdn.ads.example.org", port, "127.0.0.3")) == ["0.0.0.0"]
        rows = rows_for(db, 3)  # read while the resolver runs, from its own connection
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    by_name = {row.qname: row for row in rows}
    assert set(by_name) == {"www.example.com", "ads.example.org", "cdn.ads.example.org"}
    assert (by_name["www.example.com"].action, by_name["ads.example.org"].action) == ("pass", "sinkhole")
    assert by_name["ads.example.org"].reason == "deny list" and by_name["www.example.com"].upstream_rcode == "NOERROR"
    assert {row.client for row in rows} == {"127.0.0.0/24"}  # truncate applies to the store as to the file
    assert [r.id for r in rows] == sorted((r.id for r in rows), reverse=True)  # newest first
    store = QueryStore.open_for_reading(db)
    now = time.time()
    try:
        assert [r.qname for r in store.search(since=now - 3600, until=now, name="ads.example.org")] == [
            "cdn.ads.example.org",
            "ads.example.org",
        ]  # the name and names under it, never "bads.example.org"-like neighbours
        assert store.search(since=now - 3600, until=now, name="example.org", action="pass") == []
        overview = store.overview(now - 3600, now + 60, buckets=12)
        assert overview.total == 3 and overview.by_action == {"pass": 1, "sinkhole": 2} and overview.clients == 1
        assert sum(b.queries for b in overview.series) == 3 and sum(b.blocked for b in overview.series) == 2
        assert store.top_names(now - 3600, now + 60) == [("ads.example.org", 1), ("cdn.ads.example.org", 1)]
        assert store.top_clients(now - 3600, now + 60, action="sinkhole") == [("127.0.0.0/24", 2)]
        assert store.clients_of("ads.example.org", now - 3600, now + 60) == [("127.0.0.0/24", 2)]
        page = store.search(since=now - 3600, until=now + 60, limit=2)
        rest = store.search(since=now - 3600, until=now + 60, limit=2, before_id=page[-1].id)
        assert len(page) == 2 and [r.qname for r in rest] == ["www.example.com"]
    finally:
        store.close()


def test_watch_alerts_reach_the_store(tmp_path: Path) -> None:
    missing = frozenset({"myneighborhoodshop.de"})
    with run_upstream(Upstream(missing=missing, tld_soa=True)) as up:
        db = tmp_path / "queries.db"
        cfg = replace(config_for(up), query_store=QueryStoreConfig(path=db))
        with run_resolver(cfg, tmp_path / "q.log", stderr=io.StringIO()) as r:
            find_c2_and_beacon(r)  # flagged at the beacon (client_watch.beacon_points)
            assert addresses(ask(r, C2, OTHER)) == ["0.0.0.0"]
            r.service.pipeline.log.flush()
            store = QueryStore.open_for_reading(db)
            try:
                flagged = eventually(lambda: store.flagged_clients(time.time() - 60))
                c2 = store.likely_c2(time.time() - 60)
                blocked = store.search(since=time.time() - 60, until=time.time() + 1, name=C2, reason="likely c2")
            finally:
                store.close()
    assert [(f.client, f.mode) for f in flagged] == [(INFECTED, "quarantine")] and flagged[0].until
    assert flagged[0].names and all(name.startswith("nx") for name in flagged[0].names)
    assert [(c.name, c.clients) for c in c2] == [(C2, (INFECTED,))] and c2[0].until
    assert [(row.client, row.action) for row in blocked] == [(OTHER, "sinkhole")]


def fill(store: QueryStore, days: list[int], per_day: int = 50) -> None:
    for day in days:
        base = day * DAY + 3600.0
        store.add(
            [
                (base + i, f"10.0.0.{i % 5}", f"n{i}.d{day}.example", "A", "pass", "model", 0.1, "NOERROR", 1.0)
                for i in range(per_day)
            ]
        )


def table_names(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_retention_drops_old_days_whole_and_bounds_the_size(tmp_path: Path) -> None:
    path, today = tmp_path / "q.db", int(time.time() // DAY)
    store = QueryStore.open_for_writing(path)
    days = [today - n for n in range(6, -1, -1)]  # a week, oldest first
    fill(store, days)
    assert {day_table(d) for d in days} <= table_names(path)
    dropped = store.expire(time.time(), retention_days=3, max_bytes=0)
    assert dropped == [day_table(d) for d in days[:4]]  # today and the two days before stay
    assert not {day_table(d) for d in days[:4]} & table_names(path)
    reader = QueryStore.open_for_reading(path)
    kept = reader.search(since=0, until=time.time() + DAY, limit=1000)
    assert {int(r.time // DAY) for r in kept} == set(days[4:]) and len(kept) == 150
    assert reader.overview(0, (today + 1) * DAY, buckets=1).total == 150  # the counts age out with their days
    assert [g.queries for g in reader.gateway_counts(0, (today + 1) * DAY)] == [150]  # the gateway counts too
    fill(store, [today], per_day=5000)  # today grows: the size bound drops older days, never today
    dropped = store.expire(time.time(), retention_days=3, max_bytes=200_000)
    assert dropped == [day_table(days[4]), day_table(days[5])]
    assert {int(r.time // DAY) for r in reader.search(since=0, until=time.time() + DAY, limit=1000)} == {today}
    reader.close()
    store.close()


def test_search_with_sql_metacharacters_is_only_data(upstream: Upstream, tmp_path: Path) -> None:
    db = tmp_path / "queries.db"
    cfg = replace(config_for(upstream), query_store=QueryStoreConfig(path=db))
    with run_resolver(cfg, tmp_path / "q.log") as r:
        for name in TRICKY:
            assert ask_from(name, r.port).rcode() == dns.rcode.NOERROR  # over DNS, with the bytes as they are
        r.service.pipeline.log.flush()
        store = QueryStore.open_for_reading(db)
        now = time.time()
        try:
            rows = eventually(
                lambda: store.search(since=now - 60, until=now + 60), done=lambda x: len(x) >= len(TRICKY)
            )
            assert sorted(r.qname for r in rows) == sorted(TRICKY)
            for name in TRICKY:  # each finds itself only: % and _ are no wildcards, quotes end nothing
                assert [r.qname for r in store.search(since=now - 60, until=now + 60, name=name)] == [name]
            for hostile in ("%", "_", "' OR '1'='1", "x'); DROP TABLE store_days; --", "example.com' --"):
                assert store.search(since=now - 60, until=now + 60, name=hostile) == []
                assert store.search(since=now - 60, until=now + 60, client=hostile) == []
                assert store.clients_of(hostile, now - 60, now + 60) == []
            assert len(store.search(since=now - 60, until=now + 60, name="example.com")) == len(TRICKY)
        finally:
            store.close()
    assert "store_days" in table_names(db)


def test_an_unusable_store_path_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"upstreams: ['127.0.0.1:9']\nquery_log: off\nquery_store: {blocker / 'queries.db'}\n")
    cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy), "--listen",
           f"127.0.0.1:{free_port()}", "--model", str(DIGITS_MODEL)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{policy}: query_store.path: cannot open the query store {blocker / 'queries.db'}" in done.stderr
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("not a database, but a file someone named by mistake\n" * 100)
    with pytest.raises(StoreError, match="cannot open the query store"):
        QueryStore.open_for_writing(not_sqlite)
    with pytest.raises(StoreError, match="no query store"):
        QueryStore.open_for_reading(tmp_path / "absent.db")


def test_a_store_that_breaks_at_run_time_never_breaks_dns(upstream: Upstream, tmp_path: Path) -> None:
    db = tmp_path / "queries.db"
    cfg = replace(config_for(upstream), query_store=QueryStoreConfig(path=db))
    stderr = io.StringIO()
    with run_resolver(cfg, tmp_path / "q.log", stderr=stderr) as r:
        assert addresses(ask_from("before.example.com", r.port)) == [UPSTREAM_A]
        r.service.pipeline.log.flush()
        with sqlite3.connect(db) as other:  # someone breaks the store under the running writer
            other.execute("DROP TABLE store_meta")
        for n in range(20):
            assert addresses(ask_from(f"after{n}.example.com", r.port)) == [UPSTREAM_A]
        r.service.pipeline.log.flush()
        lines = r.log_lines()
    assert "query store" in stderr.getvalue() and "DNS service continues" in stderr.getvalue()
    assert stderr.getvalue().count("query store") == 1  # once per outage, not once per batch
    assert len([x for x in lines if x["qname"].startswith("after")]) == 20  # the file is written all the same


def test_with_two_workers_the_parent_writes_every_query_once_to_the_store(upstream: Upstream, tmp_path: Path) -> None:
    port, policy, db = free_port(), tmp_path / "policy.yaml", tmp_path / "queries.db"
    policy.write_text(
        f"workers: 2\nupstreams: ['127.0.0.1:{upstream.port}']\nquery_log: off\nquery_store: {db}\n"
        "rate_limit: {qps: 0}\n"
    )
    proc = start_serving(policy, port, workers=2)
    try:
        for i in range(60):
            assert addresses(ask_from(f"w{i}.example.com", port)) == [UPSTREAM_A]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    store = QueryStore.open_for_reading(db)
    rows = store.search(since=time.time() - 3600, until=time.time() + 1, limit=1000)
    store.close()
    assert sorted(r.qname for r in rows) == sorted(f"w{i}.example.com" for i in range(60))
    assert len({r.id for r in rows}) == 60
