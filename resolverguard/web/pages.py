"""The dashboard's pages, rendered on the server as plain HTML (no template engine, no front-end
build): every value goes through `esc`, every action is a POST form carrying the CSRF token, so
the pages work without JavaScript; /static/dashboard.js only adds the query log's live tail.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from aiohttp import web

from resolverguard.model import shipped
from resolverguard.verdicts import Action, Reason
from resolverguard.web import actions, charts, inputs
from resolverguard.web.api import NoStore, explanation
from resolverguard.web.context import Context, dash
from resolverguard.web.inputs import BadInput, TimeRange
from resolverguard.web.reads import StoreUnavailable, call

if TYPE_CHECKING:
    from resolverguard.web.auth import Session

NAV = (("/", "Overview"), ("/queries", "Query log"), ("/clients", "Clients"), ("/lists", "Lists & model"))
RANGES = (("1h", "1 hour"), ("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days"))
WHICH: tuple[actions.Which, ...] = ("allow", "deny")
BLOCKING = {a.value for a in Action if a.blocks}


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def clock(ts: float, seconds: bool = True) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.gmtime(ts))


def page(title: str, body: str, session: Session | None, status: int = 200, active: str = "") -> web.Response:
    nav = "".join(f'<a href="{href}"{" class=on" if href == active else ""}>{esc(label)}</a>' for href, label in NAV)
    csrf = esc(session.csrf) if session else ""
    logout = (
        f'<form method="post" action="/logout" class="logout"><input type="hidden" name="csrf" value="{csrf}">'
        '<button type="submit">Log out</button></form>'
        if session
        else ""
    )
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{csrf}">
<title>{esc(title)} - resolverguard</title>
<link rel="stylesheet" href="/static/style.css">
</head><body>
<header><a class="brand" href="/">resolverguard</a><nav>{nav if session else ""}</nav>{logout}</header>
<main>
{body}
</main>
<script src="/static/dashboard.js" defer></script>
</body></html>
"""
    return web.Response(text=text, content_type="text/html", status=status)


def table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "", attrs: str = "") -> str:
    """`rows` cells are already HTML (escaped by the caller)."""
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(head)}" class="empty">nothing in this range</td></tr>'
    inner = f"<thead><tr>{th}</tr></thead><tbody>{body}</tbody>"
    return f'<div class="scroll"><table class="{cls}"{attrs}>{inner}</table></div>'


def name_link(name: str) -> str:
    return f'<a href="/name/{quote(name)}">{esc(name)}</a>'


def client_link(client: str) -> str:
    return f'<a href="/queries?{urlencode({"client": client})}">{esc(client)}</a>'


def action_form(target: str, fields: Mapping[str, object], label: str, session: Session, cls: str = "") -> str:
    hidden = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in fields.items())
    return (
        f'<form method="post" action="{esc(target)}" class="inline">'
        f'<input type="hidden" name="csrf" value="{esc(session.csrf)}">{hidden}'
        f'<button type="submit" class="{cls}">{esc(label)}</button></form>'
    )


def flash(request: web.Request) -> str:
    msg, ok = request.query.get("msg"), request.query.get("ok") != "0"
    return f'<p class="flash {"ok" if ok else "bad"}" role="status">{esc(msg[:300])}</p>' if msg else ""


def pause_bar(d: Context, session: Session, back: str) -> str:
    switch = d.service.pipeline.pause
    if switch.active:
        left = switch.remaining()
        state = f'<span class="state paused" id="blocking-state">Blocking paused: {left / 60:.0f} min left</span>'
        buttons = action_form("/action/resume", {"back": back}, "Resume blocking", session, "primary")
    else:
        state = '<span class="state on" id="blocking-state">Blocking is on</span>'
        buttons = "".join(
            action_form("/action/pause", {"minutes": m, "back": back}, f"Pause {label}", session)
            for m, label in ((5, "5 min"), (30, "30 min"), (60, "1 h"))
        )
    return f'<div class="pausebar">{state}{buttons}</div>'


def no_store() -> str:
    return (
        '<p class="flash bad">No query store: set <code>query_store:</code> in the policy to see history '
        "(docs/policy.md).</p>"
    )


def forbidden() -> web.Response:
    return page("Forbidden", "<h1>Forbidden</h1><p>The form was stale (CSRF token). Reload the page.</p>", None, 403)


# -- login ---------------------------------------------------------------------------------------


def local_path(target: object, default: str = "/") -> str:
    """`target` when it is a path on this server (no `//host` or scheme): no open redirect."""
    ok = isinstance(target, str) and target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if ok and isinstance(target, str) else default


def login_page_with(
    message: str = "", status: int = 200, headers: Mapping[str, str] | None = None, next_path: str = "/"
) -> web.Response:
    note = f'<p class="flash bad" role="alert">{esc(message)}</p>' if message else ""
    body = f"""<section class="login"><h1>Log in</h1>{note}
<form method="post" action="/login">
<input type="hidden" name="next" value="{esc(local_path(next_path))}">
<label>Password <input type="password" name="password" autocomplete="current-password" required autofocus></label>
<button type="submit" class="primary">Log in</button></form></section>"""
    response = page("Log in", body, None, status)
    response.headers.update(headers or {})
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    return login_page_with(next_path=request.query.get("next", "/"))


# -- pages ---------------------------------------------------------------------------------------


def session_of(request: web.Request) -> Session:
    session = request.get("session")
    if session is None:  # a bearer token: the API's way in, not a browser's
        raise web.HTTPSeeOther("/login")
    return session  # type: ignore[no-any-return]


def range_links(path: str, current: str, extra: Mapping[str, str] | None = None) -> str:
    links = []
    for value, label in RANGES:
        query = urlencode({**(extra or {}), "since": value})
        links.append(f'<a href="{path}?{query}"{" class=on" if value == current else ""}>{label}</a>')
    return '<nav class="ranges">' + "".join(links) + "</nav>"


async def overview(request: web.Request) -> web.StreamResponse:
    d, session = dash(request), session_of(request)
    since_text = request.query.get("since", "24h")
    span = TimeRange.of({"since": since_text})
    parts = [flash(request), pause_bar(d, session, "/"), "<h1>Overview</h1>", range_links("/", since_text)]
    reads = d.reads()
    if reads is None:
        parts.append(no_store())
        return page("Overview", "".join(parts), session, active="/")
    started = time.perf_counter()
    view, names, clients, flagged, fleet = await reads(
        call("overview", span.since, span.until, 48),
        call("top_names", span.since, span.until, "sinkhole", 10),
        call("top_clients", span.since, span.until, None, 10),
        call("flagged_clients", span.since),
        call("gateway_counts", span.since, span.until),
    )
    blocked = sum(n for a, n in view.by_action.items() if a in BLOCKING)
    share = f"{100 * blocked / view.total:.1f}%" if view.total else "-"
    cards = [("Queries", view.total), ("Blocked", blocked), ("Blocked share", share), ("Clients", view.clients)]
    parts.append(
        '<div class="cards">'
        + "".join(
            f'<div class="card"><b id="card-{i}">{esc(v)}</b><span>{esc(k)}</span></div>'
            for i, (k, v) in enumerate(cards)
        )
        + "</div>"
    )
    if flagged:
        who = ", ".join(client_link(f.client) for f in flagged[:5])
        parts.append(
            f'<p class="flash bad">Flagged clients (possible infection): {who}. <a href="/clients">Details</a></p>'
        )
    parts.append("<h2>Queries and blocks over time</h2>" + charts.series_chart(view.series))
    if len(fleet) > 1:  # several gateways write to this store: each one's share of the range
        parts.append("<h2>Gateways</h2>" + table(GATEWAY_HEAD, gateway_rows(fleet, since_text), "gateways"))
    parts.append('<div class="cols"><section><h2>Top blocked names</h2>')
    parts.append(table(["name", "blocked"], [(name_link(n), esc(c)) for n, c in names]))
    parts.append("</section><section><h2>Top clients</h2>")
    parts.append(table(["client", "queries"], [(client_link(c), esc(n)) for c, n in clients]))
    parts.append("</section></div>")
    parts.append(f'<p class="muted">read in {1000 * (time.perf_counter() - started):.0f} ms</p>')
    return page("Overview", "".join(parts), session, active="/")


def options(values: Iterable[str], chosen: str) -> str:
    return "".join(
        f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(v or "any")}</option>' for v in values
    )


def gateway_text(name: str) -> str:
    """A gateway as a cell shows it; '' marks rows written before gateways were recorded."""
    return esc(name) if name else '<span class="muted">-</span>'


GATEWAY_HEAD = ["gateway", "queries", "blocked", "blocked share", "last active (UTC)"]


def gateway_rows(counts: Iterable[Any], since_text: str) -> list[list[str]]:
    """One row per gateway (store.GatewayCount), its name linking to its queries in the same range."""
    out = []
    for g in counts:
        query = esc(urlencode({"gateway": g.gateway, "since": since_text}))
        link = f'<a href="/queries?{query}">{esc(g.gateway)}</a>'
        share = f"{100 * g.blocked / g.queries:.1f}%" if g.queries else "-"
        active = "-" if g.last_active is None else clock(g.last_active, seconds=False)
        out.append([link if g.gateway else gateway_text(""), esc(g.queries), esc(g.blocked), esc(share), esc(active)])
    return out


def query_rows(rows: Iterable[Any], fleet: bool = False) -> list[list[str]]:
    """`fleet`: the store holds more than one gateway, so each row says which one answered."""
    out = []
    for r in rows:
        score = "-" if r.score is None else f"{r.score:.3f}"
        act = f'<span class="act {esc(r.action)}">{esc(r.action)}</span>'
        out.append(
            [
                esc(clock(r.time)),
                client_link(r.client) if r.client else "-",
                name_link(r.qname),
                esc(r.qtype),
                act,
                esc(r.reason or ""),
                esc(score),
                *([gateway_text(r.gateway)] if fleet else []),
            ]
        )
    return out


QUERY_HEAD = ["time (UTC)", "client", "name", "type", "action", "reason", "score"]
FLEET_QUERY_HEAD = [*QUERY_HEAD, "gateway"]


async def query_log(request: web.Request) -> web.StreamResponse:
    d, session = dash(request), session_of(request)
    q = request.query
    fields = {k: q.get(k, "") for k in ("name", "client", "action", "reason", "gateway")}
    since_text = q.get("since", "24h")
    form = f"""<form method="get" action="/queries" class="search">
<label>Name <input name="name" value="{esc(fields["name"])}" placeholder="example.com"></label>
<label>Client <input name="client" value="{esc(fields["client"])}" placeholder="192.168.1.20"></label>
<label>Action <select name="action">{options(["", *(a.value for a in Action)], fields["action"])}</select></label>
<label>Reason <select name="reason">{options(["", *(r.value for r in Reason)], fields["reason"])}</select></label>
<label>Gateway <input name="gateway" value="{esc(fields["gateway"])}" size="10" placeholder="any"></label>
<label>Since <input name="since" value="{esc(since_text)}" size="5"></label>
<button type="submit" class="primary">Search</button></form>"""
    parts = [flash(request), "<h1>Query log</h1>", form]
    reads = d.reads()
    if reads is None:
        return page("Query log", "".join(parts) + no_store(), session, active="/queries")
    try:  # the page's own fields only: the form has no `until` or `limit`
        search = inputs.search_filters({**fields, "since": since_text, "before_id": q.get("before_id", "")})
    except BadInput as err:
        parts.append(f'<p class="flash bad">{esc(err)}</p>')
        return page("Query log", "".join(parts), session, 400, active="/queries")
    rows, gateways = await reads(search.read(), call("gateways"))
    before, fleet = search.before_id, len(gateways) > 1
    filters = {k: v for k, v in fields.items() if v}
    tail = "" if before else f' data-tail="{esc(urlencode({**filters, "since": since_text}))}"'
    tail += ' data-fleet="1"' if tail and fleet else ""  # the live tail adds the gateway cell too
    live = '<p class="muted" id="tail-state">Live: new queries appear at the top.</p>' if tail else ""
    head = FLEET_QUERY_HEAD if fleet else QUERY_HEAD
    parts.append(live + table(head, query_rows(rows, fleet), "queries", tail))
    if len(rows) == 100:
        older = urlencode({**filters, "since": since_text, "before_id": rows[-1].id})
        parts.append(f'<p><a href="/queries?{older}">Older</a></p>')
    return page("Query log", "".join(parts), session, active="/queries")


async def name_page(request: web.Request) -> web.StreamResponse:
    d, session = dash(request), session_of(request)
    try:
        name = inputs.domain_name(request.match_info["name"])
        client = inputs.client_address(request.query.get("client")) or "127.0.0.1"
    except BadInput as err:
        return page("Name", f'<h1>Name</h1><p class="flash bad">{esc(err)}</p>', session, 400)
    found = await explanation(d, name, client)
    back = f"/name/{quote(name)}"
    c2_until = found["likely_c2_until"]
    blocked = (found["action"] in BLOCKING) or (found["would"] in BLOCKING) or c2_until is not None
    buttons = action_form("/action/allow", {"name": name, "back": back}, f"Allow {name}", session, "primary")
    if not blocked:
        buttons += action_form("/action/deny", {"name": name, "back": back}, f"Block {name}", session, "danger")
    score = "-" if found["score"] is None else f"{found['score']:.4f}"
    verdict = f'<span class="act {esc(found["action"])}" id="verdict">{esc(found["action"])}</span>'
    parts = [
        flash(request),
        f"<h1>{esc(name)}</h1>",
        f'<div class="cards"><div class="card"><b id="score">{esc(score)}</b><span>model score</span></div>'
        f'<div class="card"><b>{verdict}</b><span>{esc(found["reason"] or "")}</span></div></div>',
        (
            f'<p class="flash bad" id="watch-note">The client watch found this name to be a likely C2 (command and '
            f"control server of malware): it is blocked for every client until {esc(clock(c2_until))} UTC. "
            "Allowing it overrides that.</p>"
            if c2_until is not None
            else ""
        ),
        f'<div class="actions">{buttons}</div>',
        charts.score_bar(found["score"], found["thresholds"]),
        "<h2>Why</h2>",
        table(["step", "found"], [(esc(r["label"]), esc(r["text"])) for r in found["rows"]], "why"),
    ]
    reads = d.reads()
    if reads is None:
        parts.append(no_store())
    else:
        span = TimeRange.of({"since": "7d"})
        askers, recent = await reads(
            call("clients_of", name, span.since, span.until, 20),
            call("search", since=span.since, until=span.until, name=name, limit=20),
        )
        parts.append("<h2>Who asked (7 days)</h2>")
        parts.append(table(["client", "queries"], [(client_link(c), esc(n)) for c, n in askers]))
        parts.append("<h2>Recent queries</h2>" + table(QUERY_HEAD, query_rows(recent)))
    return page(name, "".join(parts), session)


async def clients_page(request: web.Request) -> web.StreamResponse:
    d, session = dash(request), session_of(request)
    parts = [flash(request), "<h1>Clients</h1>"]
    reads = d.reads()
    if reads is None:
        return page("Clients", "".join(parts) + no_store(), session, active="/clients")
    week, day = TimeRange.of({"since": "7d"}), TimeRange.of({"since": "24h"})
    flagged, c2, top, gateways = await reads(
        call("flagged_clients", week.since),
        call("likely_c2", week.since),
        call("top_clients", day.since, day.until, None, 50),
        call("gateways"),
    )
    fleet = len(gateways) > 1  # which gateway's watch raised an alert, when there are several
    parts.append("<h2>Flagged clients (7 days)</h2>")
    parts.append(
        '<p class="muted">A client is flagged when the names it asks for fail (NXDOMAIN) in the pattern of a DGA '
        "walk: it is probably infected. The names below are the ones that flagged it.</p>"
    )
    parts.append(
        table(
            ["client", "flagged (UTC)", "until", "family", "mode", "NXDOMAIN names", *(["gateway"] if fleet else [])],
            [
                (
                    client_link(f.client),
                    esc(clock(f.time)),
                    esc(clock(f.until) if f.until else "-"),
                    esc(f.family or "-"),
                    esc(f.mode or "-"),
                    " ".join(f"<code>{esc(n)}</code>" for n in (f.names or [])),
                    *([gateway_text(f.gateway)] if fleet else []),
                )
                for f in flagged
            ],
            "flagged",
        )
    )
    parts.append("<h2>Likely C2 names (blocked for every client)</h2>")
    parts.append(
        table(
            ["name", "found (UTC)", "blocked until", "clients", *(["gateways"] if fleet else [])],
            [
                (
                    name_link(c.name),
                    esc(clock(c.time)),
                    esc(clock(c.until) if c.until else "-"),
                    " ".join(map(client_link, c.clients or [])),
                    *([" ".join(map(gateway_text, c.gateways))] if fleet else []),
                )
                for c in c2
            ],
            "c2",
        )
    )
    parts.append("<h2>All clients (24 hours)</h2>")
    parts.append(table(["client", "queries"], [(client_link(c), esc(n)) for c, n in top]))
    return page("Clients", "".join(parts), session, active="/clients")


async def lists_page(request: web.Request) -> web.StreamResponse:
    d, session = dash(request), session_of(request)
    service = d.service
    meta = service.model.metadata
    lists = service.pipeline.groups.default.lists
    policy = service.pipeline.groups.default.policy
    files = [(w, actions.list_file(service.cfg, w)) for w in WHICH]
    parts = [
        flash(request),
        pause_bar(d, session, "/lists"),
        "<h1>Lists and model</h1>",
        f"<p>Policy <code>{esc(service.config_path or 'built-in defaults')}</code>, mode "
        f"<b>{esc(service.cfg.mode.value)}</b>, {service.reloads} reloads.</p>",
        action_form("/action/reload", {"back": "/lists"}, "Reload the policy", session),
        "<h2>Lists</h2>",
        f"<p>{lists.allowed_count} allowed and {lists.denied_count} denied rules.</p>",
        table(
            ["list", "entries"],
            [(esc(s.split(": ", 1)[0]), esc(s.split(": ", 1)[-1])) for s in service.pipeline.groups.list_summaries()],
        ),
        "<p>One-click allow and block write to: "
        + ", ".join(
            f"{w}: <code>{esc(p) if p else 'none (add a file to lists.' + w + '_files)'}</code>" for w, p in files
        )
        + "</p>",
        "<h2>Model</h2>",
        table(
            ["model", ""],
            [
                ("version", esc(meta.model_version)),
                ("architecture", esc(meta.architecture)),
                ("input", esc(meta.input_form.value)),
                (
                    "thresholds",
                    esc(
                        "; ".join(
                            f"{t.action.value} >= {t.value:.6f}" + (f" ({t.name})" if t.name else "")
                            for t in policy.thresholds
                        )
                    ),
                ),
                ("calibrated", esc(", ".join(f"{k} = {v:.6f}" for k, v in sorted(meta.thresholds.items())))),
            ],
            "model",
        ),
        '<p><a href="/model/report">Model report</a> (how it was trained and measured)</p>',
    ]
    return page("Lists & model", "".join(parts), session, active="/lists")


def report_path(d: Context) -> Path | None:
    """REPORT.md beside the model in use (the shipped model's report only when it is the shipped model)."""
    model = d.service.cfg.model or shipped("default.tflite")
    report = model.parent / "REPORT.md" if model is not None else None
    return report if report is not None and report.exists() else None


async def model_report(request: web.Request) -> web.StreamResponse:
    session_of(request)
    path = report_path(dash(request))
    if path is None:
        raise web.HTTPNotFound(text="no REPORT.md beside the model")
    return web.Response(text=path.read_text(encoding="utf-8", errors="replace"), content_type="text/plain")


# -- actions from forms (POST, CSRF checked by the guard) ----------------------------------------


def back_to(form: Mapping[str, Any], outcome: actions.ActionResult) -> web.HTTPSeeOther:
    target = local_path(form.get("back"))
    sep = "&" if "?" in target else "?"
    return web.HTTPSeeOther(f"{target}{sep}{urlencode({'msg': outcome.message, 'ok': int(outcome.ok)})}")


async def form_action(request: web.Request) -> web.StreamResponse:
    d = dash(request)
    session_of(request)
    form = await request.post()
    what = request.match_info["what"]
    try:
        if what in ("allow", "deny"):
            value = form.get("name")
            name = inputs.domain_name(value if isinstance(value, str) else None)
            outcome = await actions.add_to_list(d.service, name, "allow" if what == "allow" else "deny")
        elif what == "pause":
            value = form.get("minutes")
            minutes = inputs.integer(
                value if isinstance(value, str) else None, "minutes", 5, 1, inputs.MAX_PAUSE_MINUTES
            )
            outcome = await actions.pause(d.service, minutes)
        elif what == "resume":
            outcome = await actions.resume(d.service)
        elif what == "reload":
            outcome = await actions.reload(d.service)
        else:
            raise web.HTTPNotFound()
    except BadInput as err:
        outcome = actions.ActionResult(False, str(err), 400)
    raise back_to(form, outcome)


def store_missing(handler: Any) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            result: web.StreamResponse = await handler(request)
        except NoStore:
            return page("No store", no_store(), request.get("session"))
        except StoreUnavailable as err:
            return page("Store unavailable", f'<p class="flash bad">{esc(err)}</p>', request.get("session"), 503)
        except BadInput as err:
            return page("Bad request", f'<p class="flash bad">{esc(err)}</p>', request.get("session"), 400)
        return result

    return handle


def routes(app: web.Application) -> None:
    for path, handler in (
        ("/", overview),
        ("/queries", query_log),
        ("/name/{name}", name_page),
        ("/clients", clients_page),
        ("/lists", lists_page),
        ("/model/report", model_report),
    ):
        app.router.add_get(path, store_missing(handler))
    app.router.add_post("/action/{what}", form_action)
