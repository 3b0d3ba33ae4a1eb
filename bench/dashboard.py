"""What the dashboard costs DNS, and how fast its pages render (issue 16's targets: the API answers
20 concurrent clients without delaying DNS answers, p99 added latency reported; pages < 1 s on a
30-day, 10 M-row store).

    python bench/dashboard.py [--store PATH] [--clients 20] [--seconds 10] [--qps 200]
        -> bench/results/dashboard.{md,json}

`resolverguard serve` runs as a real process (the bench upstream behind it, the query log and the
query store on, the dashboard on with a password). A DNS client (bench/swap.py's) sends `--qps`
queries a second over 200 names and times each: first alone (`idle`), then while `--clients`
concurrent API clients (aiohttp, bearer token) loop over the read endpoints as fast as they are
answered (`hammered`, at most `--max-requests` requests), then over /api/v1/health only (what HTTP
serving and the load generator, on the same cores, cost without any store read), then alone again. Added
latency is hammered minus idle. Then each page is fetched `--renders` times by a logged-in client
and timed end to end (server render + transfer). `--store` points the server at an existing store
(e.g. the 10 M-row one bench/store_fill.py makes; the store helper's generator); without it the
store holds only what the bench itself sends, and the page figures say little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from swap import Client, free_port, percentile  # noqa: E402

from resolverguard.web.auth import PasswordHash  # noqa: E402

PASSWORD = "bench dashboard password"
READS = [
    "/api/v1/stats?since=24h",
    "/api/v1/queries?limit=100",
    "/api/v1/top/names?since=24h",
    "/api/v1/top/clients?since=24h",
    "/api/v1/clients/flagged",
    "/api/v1/explain?name=xkq3vbh7tz.com",
    "/api/v1/queries?since=24h&client=10.0.0.7&limit=50",
]


def latencies(client: Client, since: float, until: float) -> list[float]:
    return [lat * 1000 for sent, lat in client.samples if since <= sent < until]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "answers": len(values),
        "p50_ms": round(percentile(values, 0.50), 3),
        "p99_ms": round(percentile(values, 0.99), 3),
        "max_ms": round(max(values), 3) if values else float("nan"),
    }


async def hammer(base: str, clients: int, seconds: float, max_requests: int, reads: list[str]) -> dict[str, Any]:
    """`clients` tasks loop over READS until the time or the request budget runs out."""
    headers = {"Authorization": f"Bearer {PASSWORD}"}
    times: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds
    budget = [max_requests]

    async def one(session: aiohttp.ClientSession, index: int) -> None:
        i = index
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            path = reads[i % len(reads)]
            i += 1
            started = time.perf_counter()
            async with session.get(base + path, headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            times.append((time.perf_counter() - started) * 1000)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(one(session, k) for k in range(clients)))
    return {
        "requests": len(times),
        "statuses": statuses,
        "api_p50_ms": round(percentile(times, 0.5), 1),
        "api_p99_ms": round(percentile(times, 0.99), 1),
        "requests_per_s": round(len(times) / seconds, 1),
    }


async def busiest(base: str, what: str, action: str = "any") -> str:
    """The most asked name (or the most blocked one) or the busiest client of the last 24 hours."""
    headers = {"Authorization": f"Bearer {PASSWORD}"}
    url = f"{base}/api/v1/top/{what}s?since=24h&action={action}&limit=1"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session,
        session.get(url, headers=headers) as r,
    ):
        rows = await r.json()
    return str(rows[0][what]) if rows else ""


async def render_pages(base: str, renders: int, name: str, client: str) -> dict[str, dict[str, float]]:
    name = name or await busiest(base, "name") or "xkq3vbh7tz.com"
    client = client or await busiest(base, "client") or "10.0.0.7"
    blocked = await busiest(base, "name", "sinkhole") or name
    pages = {
        "overview (24h)": "/",
        "overview (30d)": "/?since=30d",
        "query log": "/queries",
        "query log, one client": f"/queries?client={client}",
        "query log, blocked": "/queries?action=sinkhole",
        "name (the most asked: the worst case)": f"/name/{name}",
        "name (the most blocked)": f"/name/{blocked}",
        "clients": "/clients",
        "lists and model": "/lists",
    }
    out: dict[str, dict[str, float]] = {}
    jar = aiohttp.CookieJar(unsafe=True)  # the default jar ignores cookies from IP addresses
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120), cookie_jar=jar) as session:
        async with session.post(base + "/login", data={"password": PASSWORD}, allow_redirects=False) as login:
            assert login.status == 303, login.status
        for label, path in pages.items():
            times = []
            for _ in range(renders):
                started = time.perf_counter()
                async with session.get(base + path, allow_redirects=False) as response:
                    body = await response.text()
                    assert response.status == 200 and "Log out" in body, (path, response.status, body[:300])
                times.append((time.perf_counter() - started) * 1000)
            out[label] = {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--store", type=Path, help="an existing query store to serve (copied? no: used in place)")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--qps", type=int, default=200)
    p.add_argument("--max-requests", type=int, default=50_000)
    p.add_argument("--renders", type=int, default=3)
    p.add_argument("--only", help="hammer only the read paths containing this text (e.g. explain)")
    p.add_argument("--name", default="", help="the name page to render (default: the most asked)")
    p.add_argument("--client", default="", help="the client to search for (default: the busiest)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dashboard")
    a = p.parse_args()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp())
    store = a.store or tmp / "store.sqlite"
    up_port, port, web_port = free_port(), free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(up_port)])
    policy = tmp / "policy.yaml"
    policy.write_text(
        f"listen: ['127.0.0.1:{port}']\nupstreams: ['127.0.0.1:{up_port}']\nrate_limit: {{qps: 0}}\n"
        f"query_log: {tmp / 'q.jsonl'}\nquery_store: {{path: {store}, max_mb: 0, retention_days: 31}}\n"
        f"control_socket: {tmp / 'control.sock'}\n"
        f"dashboard:\n  enabled: true\n  listen: 127.0.0.1:{web_port}\n"
        f"  password_hash: '{PasswordHash.make(PASSWORD).text}'\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(server.stderr or []), daemon=True).start()
    base = f"http://127.0.0.1:{web_port}"
    try:
        deadline = time.monotonic() + 120
        while not any("listening on" in line for line in lines):
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("server did not start: " + "".join(lines))
            time.sleep(0.1)
        client = Client(port, a.qps)
        client.start()
        time.sleep(2)  # warm: the answer cache holds the 200 names
        t0 = time.perf_counter()
        time.sleep(a.seconds)
        t1 = time.perf_counter()
        reads = [r for r in READS if a.only is None or a.only in r]
        load = asyncio.run(hammer(base, a.clients, a.seconds, a.max_requests, reads))
        t2 = time.perf_counter()
        health = asyncio.run(hammer(base, a.clients, a.seconds, a.max_requests, ["/api/v1/health"]))
        t2h = time.perf_counter()
        time.sleep(a.seconds)
        t3 = time.perf_counter()
        client.stop.set()
        client.join(5)
        pages = asyncio.run(render_pages(base, a.renders, a.name, a.client))
    finally:
        server.terminate()
        server.wait(20)
        upstream.terminate()
    spans = ((t0, t1), (t1, t2), (t2, t2h), (t2h, t3))
    idle, hammered, health_only, after = (summary(latencies(client, s, e)) for s, e in spans)
    result = {
        "store": str(a.store) if a.store else "filled by the bench only",
        "store_mb": round(store.stat().st_size / 2**20, 1) if store.exists() else 0,
        "qps": a.qps,
        "api_clients": a.clients,
        "seconds_per_phase": a.seconds,
        "dns_idle": idle,
        "dns_hammered": hammered,
        "dns_health_only": health_only,
        "dns_after": after,
        "api_health_only": health,
        "added_p99_ms": round(hammered["p99_ms"] - idle["p99_ms"], 3),
        "added_p50_ms": round(hammered["p50_ms"] - idle["p50_ms"], 3),
        "lost": client.lost,
        "api": load,
        "pages": pages,
        "cores": len(os.sched_getaffinity(0)),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    a.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    if not a.store:
        shutil.rmtree(tmp, ignore_errors=True)


def markdown(r: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = [f"# Dashboard cost and page times (bench/dashboard.py, {stamp})", ""]
    rows += [
        f"Store: {r['store']} ({r['store_mb']} MB). DNS at {r['qps']} qps; {r['api_clients']} concurrent API "
        f"clients; {r['seconds_per_phase']:g} s per phase; {r['cores']} cores; load average before "
        f"{r['load_before']}, after {r['load_after']} (a shared machine when these are high: rerun idle).",
        "",
        "| DNS phase | answers | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    phases = (
        ("dns_idle", "idle"),
        ("dns_hammered", "API hammered (store reads, explain)"),
        ("dns_health_only", "API hammered, /health only (HTTP serving + the load generator)"),
        ("dns_after", "idle again"),
    )
    for key, label in phases:
        s = r[key]
        rows.append(f"| {label} | {s['answers']} | {s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} |")
    api = r["api"]
    rows += [
        "",
        f"Added DNS latency while hammered: p99 {r['added_p99_ms']} ms, p50 {r['added_p50_ms']} ms; "
        f"lost answers {r['lost']}.",
        f"API: {api['requests']} requests ({api['requests_per_s']}/s), statuses {api['statuses']}, "
        f"p50 {api['api_p50_ms']} ms, p99 {api['api_p99_ms']} ms. /health only: "
        f"{r['api_health_only']['requests_per_s']}/s.",
        "",
        "| page | median ms | max ms |",
        "|---|---|---|",
    ]
    rows += [f"| {label} | {v['median_ms']} | {v['max_ms']} |" for label, v in r["pages"].items()]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
