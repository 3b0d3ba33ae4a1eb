"""The HTTP API, `/api/v1/...` (docs/api.md): JSON in, JSON out. Reads go to the query store in a
worker thread; actions run on the loop through the same code as the dashboard's buttons."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from resolverguard.chain import Request
from resolverguard.explain import decide, decision_rows
from resolverguard.watch import WatchState
from resolverguard.web import actions, inputs
from resolverguard.web.context import Context, dash
from resolverguard.web.inputs import BadInput, TimeRange
from resolverguard.web.reads import StoreUnavailable, call, plain

V1 = "/api/v1"
MAX_BUCKETS = 500


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


Endpoint = Callable[[web.Request], Awaitable[Any]]


def json_endpoint(read: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Turns BadInput into 400 with the field, a missing store into 503, a result into JSON."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            result = await read(request)
        except BadInput as err:
            return error(400, err.problem, field=err.field)
        except NoStore:
            return error(503, "no query store: set query_store in the policy")
        except StoreUnavailable as err:
            return error(503, str(err))
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response(plain(result))  # store reads come back plain already

    return handle


class NoStore(Exception):
    """The running policy keeps no query store."""


def store(request: web.Request) -> Any:
    reads = dash(request).reads()
    if reads is None:
        raise NoStore
    return reads


async def health(request: web.Request) -> web.StreamResponse:
    """Unauthenticated, for probes: says only that the server answers."""
    return web.json_response({"status": "ok"})


async def status(request: web.Request) -> dict[str, Any]:
    service = dash(request).service
    switch = service.pipeline.pause
    lists = service.pipeline.groups.default.lists
    return {
        "blocking": not switch.active,
        "paused_seconds_left": round(switch.remaining(), 1) if switch.active else 0,
        "reloads": service.reloads,
        "mode": service.cfg.mode.value,
        "model": service.model.metadata.model_version,
        "allowed_rules": lists.allowed_count,
        "denied_rules": lists.denied_count,
        "query_store": dash(request).reads() is not None,
    }


async def stats(request: web.Request) -> Any:
    span = TimeRange.of(request.query)
    buckets = inputs.integer(request.query.get("buckets"), "buckets", 48, 1, MAX_BUCKETS)
    (view,) = await store(request)(call("overview", span.since, span.until, buckets), as_plain=True)
    return view


async def queries(request: web.Request) -> Any:
    search = inputs.search_filters(request.query).read()  # a bad input is a 400 even without a store
    (rows,) = await store(request)(search, as_plain=True)
    return rows


def _top(kind: str) -> Endpoint:
    async def read(request: web.Request) -> Any:
        span = TimeRange.of(request.query)
        limit = inputs.integer(request.query.get("limit"), "limit", 10, 1, inputs.MAX_LIMIT)
        raw = request.query.get("action", "sinkhole" if kind == "names" else "")
        act = inputs.action(raw) if raw != "any" else None
        method = "top_names" if kind == "names" else "top_clients"
        (rows,) = await store(request)(call(method, span.since, span.until, act, limit))
        key = "name" if kind == "names" else "client"
        return [{key: k, "queries": n} for k, n in rows]

    return read


async def flagged(request: web.Request) -> Any:
    span = TimeRange.of(request.query, default_span=7 * 86_400)
    (rows,) = await store(request)(call("flagged_clients", span.since), as_plain=True)
    return rows


async def likely_c2(request: web.Request) -> Any:
    span = TimeRange.of(request.query, default_span=7 * 86_400)
    (rows,) = await store(request)(call("likely_c2", span.since), as_plain=True)
    return rows


async def gateways(request: web.Request) -> Any:
    """The gateways that write to the store (a fleet on one PostgreSQL; their names are the values
    `gateway=` takes), each with its queries and blocks in the range, silent ones with 0."""
    span = TimeRange.of(request.query)
    (rows,) = await store(request)(call("gateway_counts", span.since, span.until), as_plain=True)
    return rows


async def explain(request: web.Request) -> Any:
    name = inputs.domain_name(request.query.get("name"))
    client = inputs.client_address(request.query.get("client")) or "127.0.0.1"
    return await explanation(dash(request), name, client)


async def explanation(d: Context, name: str, client: str) -> dict[str, Any]:
    """The decision for `name` from `client`, by the running lists and model, on the loop."""
    service = d.service
    groups = service.pipeline.groups
    request = await decide(name, await d.decision_chain(), client)
    policy = groups.group_for(client).policy
    verdict = request.verdict
    rows = decision_rows(name, request, service.model, groups, client)
    c2_until, flagged_until = watch_now(service.pipeline.watch, request, client)
    if c2_until is not None:
        rows.append(("likely C2", f"yes: the client watch blocks it for every client until {utc(c2_until)}"))
    if flagged_until is not None:
        rows.append(("client flagged", f"yes: {client} is quarantined until {utc(flagged_until)}"))
    return {
        "name": name,
        "client": client,
        "score": request.score,
        "action": verdict.action.value if verdict else None,
        "reason": verdict.reason.value if verdict else None,
        "would": verdict.would.value if verdict and verdict.would else None,
        "likely_c2_until": c2_until,
        "client_flagged_until": flagged_until,
        "thresholds": [{"action": t.action.value, "value": t.value, "name": t.name} for t in policy.thresholds],
        "rows": [{"label": k, "text": v} for k, v in rows],
    }


def watch_now(watch: WatchState | None, request: Request, client: str) -> tuple[float | None, float | None]:
    """(UNIX time a likely-C2 block of the name ends, time the client's flag ends), each None when
    there is none. The watch keeps both in the running resolver, not in the decision steps (it
    acts on answers), so `explain` reads its state. Monotonic deadlines become wall-clock times."""
    if watch is None:
        return None, None
    offset = time.time() - watch.clock()
    name = request.name
    key = name.registrable if name is not None else None
    c2 = watch.c2_until(key) if key else None
    flag = watch.flag_of(client)
    return (None if c2 is None else c2 + offset), (None if flag is None else flag.until + offset)


def utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


async def body(request: web.Request) -> Mapping[str, Any]:
    """JSON object or form fields."""
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadInput("body", "not JSON") from None
        if not isinstance(data, dict):
            raise BadInput("body", "must be a JSON object")
        return data
    return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}


def result(outcome: actions.ActionResult) -> web.Response:
    return web.json_response({"ok": outcome.ok, "message": outcome.message}, status=outcome.status)


def _listing(which: actions.Which) -> Endpoint:
    async def act(request: web.Request) -> web.Response:
        data = await body(request)
        name = inputs.domain_name(data.get("name") if isinstance(data.get("name"), str) else None)
        return result(await actions.add_to_list(dash(request).service, name, which))

    return act


async def pause(request: web.Request) -> web.Response:
    data = await body(request)
    raw = data.get("minutes")
    minutes = inputs.integer(
        str(raw) if isinstance(raw, int | str) else None, "minutes", 0, 1, inputs.MAX_PAUSE_MINUTES
    )
    if not minutes:
        raise BadInput("minutes", "missing")
    return result(await actions.pause(dash(request).service, minutes))


async def resume(request: web.Request) -> web.Response:
    return result(await actions.resume(dash(request).service))


async def reload(request: web.Request) -> web.Response:
    return result(await actions.reload(dash(request).service))


def routes(app: web.Application) -> None:
    app.router.add_get(f"{V1}/health", health)
    gets: dict[str, Endpoint] = {
        "status": status,
        "stats": stats,
        "queries": queries,
        "top/names": _top("names"),
        "top/clients": _top("clients"),
        "clients/flagged": flagged,
        "names/likely-c2": likely_c2,
        "gateways": gateways,
        "explain": explain,
    }
    for path, read in gets.items():
        app.router.add_get(f"{V1}/{path}", json_endpoint(read))
    posts: dict[str, Endpoint] = {
        "allow": _listing("allow"),
        "deny": _listing("deny"),
        "pause": pause,
        "resume": resume,
        "reload": reload,
    }
    for path, act in posts.items():
        app.router.add_post(f"{V1}/{path}", json_endpoint(act))
