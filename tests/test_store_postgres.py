"""The query store's SQL on PostgreSQL (issue #18 item 3): the same schema and statements as on
SQLite, so the same batches must give the same answers; a resolver writing to it over DNS; and two
gateways writing to one database, told apart by their `query_store.gateway` on the dashboard."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from dashfixtures import PASSWORD, Http, Served, serve_dashboard
from dnsfixtures import UPSTREAM_A, Upstream, eventually, run_resolver, run_upstream
from pgcluster import fresh_database, postgres_cluster
from test_store import TRICKY, ask_from
from test_watch import addresses, config_for

from resolverguard.config import QueryStoreConfig
from resolverguard.store import DAY, QueryStore, StoredQuery, StoreError, day_table

HOSTILE = ("%", "_", "' OR '1'='1", "x'); DROP TABLE store_days; --", "%s", "?")


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with postgres_cluster() as url:
        yield url


def batches(now: float) -> list[list[StoredQuery]]:
    """A week of queries, a batch per day, with blocks, several clients and tricky names."""
    today = int(now // DAY)
    out = []
    for age in range(6, -1, -1):
        base = (today - age) * DAY + 60.0
        rows: list[StoredQuery] = []
        for i in range(120):
            name = TRICKY[i % len(TRICKY)] if i % 7 == 0 else f"n{i % 13}.d{age}.example.com"
            action = "sinkhole" if i % 5 == 0 else "pass"
            client = None if i % 11 == 0 else f"10.0.{age}.{i % 4}"
            rows.append((base + i * 97.0, client, name, "A", action, "model", i / 120, "NOERROR", 0.5))
        out.append(rows)
    return out


EVENTS = [
    {"time": "2026-11-30T10:00:00.000+00:00", "event": "client_flagged", "client": "10.0.1.2", "names": ["a.net"],
     "family_hint": "x (2/2)", "until": "2026-11-30T11:00:00.000+00:00", "action": "quarantine"},
    {"time": "2026-11-30T10:00:01.000+00:00", "event": "likely_c2", "name": "c2.example", "client": "10.0.1.2",
     "until": None},
]  # fmt: skip


def answers(store: QueryStore, now: float) -> list[object]:
    week, day = now - 7 * DAY, now - DAY
    out: list[object] = [
        store.overview(week, now + 60, 24),
        store.overview(day, now + 60, 48),
        store.search(since=week, until=now + 60, limit=50),
        store.search(since=week, until=now + 60, client="10.0.2.1"),
        store.search(since=week, until=now + 60, client="10.0.2.1", action="sinkhole"),
        store.search(since=week, until=now + 60, name="example.com", reason="model", limit=30),
        store.search(since=week, until=now + 60, limit=10, before_id=100),
        store.top_names(week, now + 60),
        store.top_names(week, now + 60, action=None, limit=5),
        store.top_clients(week, now + 60),
        store.top_clients(day, now + 60, action="sinkhole"),
        store.clients_of("example.com", week, now + 60),
        store.flagged_clients(0),
        store.likely_c2(0),
    ]
    for name in (*TRICKY, *HOSTILE):
        out += [store.search(since=week, until=now + 60, name=name), store.clients_of(name, week, now + 60)]
        out.append(store.search(since=week, until=now + 60, client=name))
    return out


def test_postgres_gives_the_answers_sqlite_gives(cluster: str, tmp_path: Path) -> None:
    now = time.time()
    stores = [
        QueryStore.open_for_writing(tmp_path / "q.db"),
        QueryStore.open_for_writing(fresh_database(cluster, "same")),
    ]
    for store in stores:
        for rows in batches(now):
            store.add(rows)
        store.add([], EVENTS)
        store.index_finished_days(now)
    readers = [QueryStore.open_for_reading(tmp_path / "q.db"), QueryStore.open_for_reading(fresh_url(cluster, "same"))]
    sqlite, postgres = (answers(r, now) for r in readers)
    assert len(sqlite[2]) == 50 and sqlite[7] and sqlite[12] and sqlite[13]  # not a comparison of empty lists
    for number, (a, b) in enumerate(zip(sqlite, postgres, strict=True)):
        assert a == b, f"answer {number} differs"
    for store in (*stores, *readers):
        store.close()


def fresh_url(cluster: str, name: str) -> str:
    return cluster.rsplit("/", 1)[0] + f"/{name}"


def test_postgres_retention_drops_whole_days(cluster: str) -> None:
    now = time.time()
    store = QueryStore.open_for_writing(fresh_database(cluster, "retention"))
    for rows in batches(now):
        store.add(rows)
    today = int(now // DAY)
    dropped = store.expire(now, retention_days=3, max_bytes=0)
    assert dropped == [day_table(today - age) for age in range(6, 2, -1)]
    kept = store.search(since=0, until=now + DAY, limit=1000)
    assert {int(r.time // DAY) for r in kept} == {today, today - 1, today - 2} and len(kept) == 360
    assert store.overview(0, now + DAY, 1).total == 360
    store.close()


def test_a_resolver_writes_its_queries_to_postgres(cluster: str, tmp_path: Path) -> None:
    url = fresh_database(cluster, "resolver")
    with run_upstream(Upstream()) as up:
        cfg = replace(config_for(up), query_store=QueryStoreConfig(path=url))
        with run_resolver(cfg, tmp_path / "q.log") as r:
            assert addresses(ask_from("www.example.com", r.port)) == [UPSTREAM_A]
            assert addresses(ask_from("o'brien.example.com", r.port)) == [UPSTREAM_A]
            r.service.pipeline.log.flush()
            store = QueryStore.open_for_reading(url)
            rows = eventually(
                lambda: store.search(since=time.time() - 60, until=time.time() + 1), done=lambda x: len(x) >= 2
            )
            store.close()
    assert sorted(row.qname for row in rows) == ["o'brien.example.com", "www.example.com"]
    assert {row.action for row in rows} == {"pass"} and {row.client for row in rows} == {"127.0.0.1"}


def test_an_unreachable_postgres_store_is_a_clear_error(cluster: str) -> None:
    missing = cluster.rsplit("/", 1)[0].replace("rg@", "rg:secret@") + "/no_such_database"
    with pytest.raises(StoreError, match="cannot connect to the query store") as raised:
        QueryStore.open_for_writing(missing)
    assert "secret" not in str(raised.value)  # a password never reaches a log line


def test_two_gateways_write_to_one_postgres_and_the_dashboard_tells_them_apart(cluster: str, tmp_path: Path) -> None:
    url = fresh_database(cluster, "fleet")
    asked = {"gw-a": ("a1.example.com", "a2.example.com"), "gw-b": ("b1.example.com",)}
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    with contextlib.ExitStack() as stack:
        served: dict[str, Served] = {}
        for gateway in asked:  # two resolverguard processes, each with its dashboard, one store
            (tmp_path / gateway).mkdir()
            policy = f"query_store:\n  path: {url}\n  gateway: {gateway}\n"
            served[gateway] = stack.enter_context(serve_dashboard(tmp_path / gateway, policy))
        for gateway, names in asked.items():
            for name in names:
                assert addresses(ask_from(name, served[gateway].dns_port)) == [UPSTREAM_A]
        for gateway, other in (("gw-a", "gw-b"), ("gw-b", "gw-a")):  # either dashboard shows the fleet
            api = served[gateway].client()

            def get(query: str, api: Http = api) -> list[dict[str, object]]:
                return list(api.open(f"/api/v1/queries?since=1h&{query}", headers=auth).json())

            every = eventually(lambda: get(""), done=lambda rows: len(rows) >= 3)  # the writers batch (~0.5 s)
            assert sorted((str(q["gateway"]), str(q["qname"])) for q in every) == sorted(
                (g, n) for g, names in asked.items() for n in names
            )
            assert sorted(str(q["qname"]) for q in get(f"gateway={other}")) == sorted(asked[other])
            assert get("gateway=gw-c") == []
            bad = api.open("/api/v1/queries?gateway=gw%20a", headers=auth)
            assert bad.status == 400 and bad.json()["field"] == "gateway"
            fleet = api.open("/api/v1/gateways?since=1h", headers=auth).json()
            assert [(g["gateway"], g["queries"], g["blocked"]) for g in fleet] == [("gw-a", 2, 0), ("gw-b", 1, 0)]
            assert all(time.time() - 3600 < g["last_active"] <= time.time() for g in fleet)
            past = api.open(f"/api/v1/gateways?since={int(time.time()) - 7200}&until={int(time.time()) - 3600}",
                            headers=auth).json()  # fmt: skip
            assert [(g["gateway"], g["queries"], g["last_active"]) for g in past] == [
                ("gw-a", 0, None),
                ("gw-b", 0, None),
            ]
            assert api.login().status == 303
            overview = api.get("/").body  # the fleet's table: each gateway, its count, a link to its queries
            assert "<h2>Gateways</h2>" in overview and 'href="/queries?gateway=gw-b&amp;since=24h">gw-b</a>' in overview
            page = api.get("/queries", gateway=other).body
            assert "<th>gateway</th>" in page and 'data-fleet="1"' in page
            assert all(name in page for name in asked[other]) and not any(name in page for name in asked[gateway])
            assert "<th>gateway</th>" in api.get("/clients").body  # the alert lists say whose watch raised them
