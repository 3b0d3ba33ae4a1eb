"""How fast the query store answers the dashboard at scale (issue #16 target: a 30-day, 10 M-row
store answers the overview and a client search in < 200 ms each).

    python bench/store_scale.py [--rows 10000000] [--days 30] [--db /tmp/rg-store-scale/queries.db]

Fills a store through its own write path (`QueryStore.add`, the batches the log writer commits:
day tables, minute and hour counts) with `--rows` queries spread over `--days` UTC days ending now:
200 clients (a few busy, most quiet), a Zipf mix of 50,000 benign names, and 5% DGA-like names
that are each asked once and sinkholed. Then times each read the dashboard makes, from a fresh
read-only connection: the first call (cold cache) and the median of five more. The database goes
under /tmp and is never committed; `--reuse` times an existing one without filling it again.
Results to bench/results/store_scale.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resolverguard.store import DAY, QueryStore, StoredQuery  # noqa: E402

BATCH = 50_000
ACTIONS = (("pass", "model", 0.90), ("pass", "cache", 0.03), ("log", "model", 0.02))  # the rest: sinkhole


def pools(rng: random.Random) -> tuple[list[str], list[float], list[str], list[float]]:
    """Clients with Zipf-like weights (a few busy ones) and 50k benign names with Zipf weights."""
    clients = [f"192.168.{i // 250}.{i % 250 + 2}" for i in range(200)]
    client_w = [1 / (r + 1) for r in range(len(clients))]
    words = ["shop", "news", "mail", "cloud", "green", "river", "blue", "city", "home", "garden", "book", "play"]
    prefixes = ["www.", "api.", "cdn.", ""]
    names = [f"{rng.choice(prefixes)}{rng.choice(words)}{rng.choice(words)}{i}.com" for i in range(50_000)]
    name_w = [1 / (r + 1) ** 1.1 for r in range(len(names))]
    return clients, client_w, names, name_w


def batch_of(start: float, step: float, count: int, rng: random.Random, p: tuple[Any, ...]) -> list[StoredQuery]:
    clients, client_w, names, name_w = p
    who = rng.choices(clients, weights=client_w, k=count)
    what = rng.choices(names, weights=name_w, k=count)
    rows: list[StoredQuery] = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.95:
            action, reason = ("pass", "model") if roll < 0.9 else ("pass", "cache") if roll < 0.93 else ("log", "model")
            name, score = what[i], 0.01
        else:
            label = "".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(10, 18)))
            action, reason, name, score = "sinkhole", "model", f"{label}.net", 0.97
        rows.append((start + i * step, who[i], name, "A", action, reason, score, "NOERROR", 0.4))
    return rows


def fill(path: Path, rows: int, days: int, now: float) -> float:
    """Writes `rows` queries evenly over `days` days ending at `now`; returns the seconds it took."""
    rng = random.Random(16)
    p = pools(rng)
    store = QueryStore.open_for_writing(path)
    first = (int(now // DAY) - days + 1) * DAY
    step = (now - first) / rows
    began = time.perf_counter()
    for done in range(0, rows, BATCH):
        count = min(BATCH, rows - done)
        store.add(batch_of(first + done * step, step, count, rng, p))
        if done // BATCH % 20 == 0:
            print(f"  {done + count:,} rows, {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    store.index_finished_days(now)  # what the log writer does within a minute of midnight
    store.close()
    return time.perf_counter() - began


def timed(call: Callable[[], Any]) -> dict[str, Any]:
    first = time.perf_counter()
    result = call()
    cold = (time.perf_counter() - first) * 1000
    runs = []
    for _ in range(5):
        began = time.perf_counter()
        call()
        runs.append((time.perf_counter() - began) * 1000)
    size = len(result.series) if hasattr(result, "series") else len(result) if hasattr(result, "__len__") else 1
    return {"first_ms": round(cold, 1), "median_ms": round(statistics.median(runs), 1), "rows": size}


def reads(store: QueryStore, now: float, days: int, popular: str) -> dict[str, dict[str, Any]]:
    month, day = now - days * DAY, now - DAY
    busy, quiet = "192.168.0.2", "192.168.0.201"

    def search(**filters: Any) -> Callable[[], Any]:
        return lambda: store.search(since=month, until=now, **filters)

    def page_two() -> Any:
        return store.search(since=month, until=now, before_id=store.search(since=month, until=now)[-1].id)

    cases: dict[str, Callable[[], Any]] = {
        f"overview, {days} days, 48 buckets": lambda: store.overview(month, now, 48),
        "overview, 24 h, 48 buckets": lambda: store.overview(day, now, 48),
        f"search client (the busiest), {days} days, 100 rows": search(client=busy),
        f"search client (a quiet one), {days} days, 100 rows": search(client=quiet),
        f"search client + action sinkhole, {days} days": search(client=quiet, action="sinkhole"),
        f"search a name and the names under it, {days} days": search(name=popular.removeprefix("www.")),
        f"search page 2 (before_id), {days} days": page_two,
        "top blocked names, 24 h": lambda: store.top_names(day, now),
        f"top blocked names, {days} days": lambda: store.top_names(month, now),
        f"top clients, {days} days": lambda: store.top_clients(month, now),
        f"clients of a popular name, {days} days": lambda: store.clients_of(popular, month, now),
        f"flagged clients + likely C2, {days} days": lambda: (store.flagged_clients(month), store.likely_c2(month)),
    }
    return {name: timed(call) for name, call in cases.items()}


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--rows", type=int, default=10_000_000)
    a.add_argument("--days", type=int, default=30)
    a.add_argument("--db", type=Path, default=Path("/tmp/rg-store-scale/queries.db"))
    a.add_argument("--reuse", action="store_true", help="time an existing store without filling it")
    args = a.parse_args()
    now = time.time()
    load_before = os.getloadavg()
    fill_s = None
    if not args.reuse:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.db}{suffix}").unlink(missing_ok=True)
        fill_s = fill(args.db, args.rows, args.days, now)
    store = QueryStore.open_for_reading(args.db)
    results = reads(store, now, args.days, pools(random.Random(16))[2][0])
    overview = store.overview(now - args.days * DAY, now, 1)
    store.close()
    load_after = os.getloadavg()
    size_mb = sum(Path(f"{args.db}{s}").stat().st_size for s in ("", "-wal") if Path(f"{args.db}{s}").exists()) / 2**20
    payload = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": overview.total,
        "days": args.days,
        "fill_seconds": None if fill_s is None else round(fill_s, 1),
        "size_mb": round(size_mb, 1),
        "load": [load_before, load_after],
        "reads": results,
    }
    out = ROOT / "bench" / "results"
    (out / "store_scale.json").write_text(json.dumps(payload, indent=2) + "\n")
    fill_text = "reused"
    if fill_s:
        fill_text = f"filled in {fill_s:.0f} s ({overview.total / fill_s:,.0f} rows/s through QueryStore.add)"
    lines = [
        f"# Query store at scale (bench/store_scale.py), {payload['date']}, {os.cpu_count()} cores",
        "",
        f"{overview.total:,} queries over {args.days} UTC days, 200 clients, {size_mb:,.0f} MB on disk; {fill_text}.",
        f"Load average before: {' '.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{' '.join(f'{x:.2f}' for x in load_after)} (a shared machine: to be rerun idle).",
        "",
        "| read (QueryStore) | first call ms | median of 5 ms | rows |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {r['first_ms']} | {r['median_ms']} | {r['rows']} |" for name, r in results.items()]
    lines += ["", "Target (#16): the overview and a client search each < 200 ms.", ""]
    (out / "store_scale.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
