"""`resolverguard explain NAME`: the whole decision for one name, as the running resolver makes it.

It runs the same decision steps as serving (`pipeline.decision_steps`), stopping before anything
would be sent upstream, and prints what each step found, so a user can see why a name was blocked.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from dnslib import DNSRecord

from resolverguard.chain import Next, Reply, Request, link
from resolverguard.config import ClientWatchConfig, Config
from resolverguard.groups import GroupDirectory
from resolverguard.logtop import watch_events
from resolverguard.model import TFLiteScorer
from resolverguard.pipeline import decision_steps, groups_for
from resolverguard.steps.cache import VerdictCache
from resolverguard.wire import head_of, parse_query


def watch_rows(
    cfg: Config, watch: ClientWatchConfig, client: str, registrable: str | None, now: datetime | None = None
) -> list[tuple[str, str]]:
    """What the client watch says about this client and name. Its state lives in the running
    resolver, so this reads the events it wrote to the query log (a file, when the policy has one)."""
    if not watch.enabled:
        return [("client watch", "off for this client's group")]
    rows = [("client watch", f"on ({watch.action.value})")]
    path = cfg.query_log.path
    if path in (None, "-") or not Path(str(path)).exists():
        return [*rows, ("client flagged", "unknown (the query log is not a file this command can read)")]
    now = now or datetime.now(UTC)
    events = watch_events([Path(str(path))])

    def current(e: dict[str, Any]) -> bool:
        until = e.get("until")
        try:
            return until is None or datetime.fromisoformat(str(until)) > now
        except ValueError:
            return False

    flags = [e for e in events if e.get("event") == "client_flagged" and e.get("client") == client and current(e)]
    if flags:
        last = flags[-1]
        until = f"quarantined until {last['until']}" if last.get("until") else "logged only"
        names = ", ".join(map(str, (last.get("names") or [])[:6]))
        rows.append(("client flagged", f"yes, at {last.get('time')}; {until}; NXDOMAIN names: {names}"))
    else:
        rows.append(("client flagged", "no (per the query log)"))
    c2 = [e for e in events if e.get("event") == "likely_c2" and e.get("name") == registrable and current(e)]
    if c2:
        rows.append(
            ("likely C2", f"yes: resolved for {c2[-1].get('client')} in its burst; blocked until {c2[-1].get('until')}")
        )
    return rows


def decision_chain(cfg: Config, model: TFLiteScorer, groups: GroupDirectory) -> Next:
    """The decision steps, ending before anything would be sent upstream. Building it costs ~70 ms
    (the name parser loads the Public Suffix List), so the dashboard builds one per running
    pipeline, in a worker thread, and keeps it."""

    async def stop_here(_: Request) -> Reply:
        return None

    return link(decision_steps(cfg, model, groups, VerdictCache(0, 0)), stop_here)


async def decide(name: str, chain: Next, client: str = "127.0.0.1") -> Request:
    """Runs `chain` (a `decision_chain`) for one query of `name` from `client`. A coroutine, so the
    dashboard runs it on the resolver's own loop with the running lists and model; the CLI runs it
    with `asyncio.run`."""
    query = DNSRecord.question(name.rstrip(".") or ".")
    packet = query.pack()
    head = parse_query(packet) or head_of(query, packet)
    request = Request(head, packet, (client, 0), "udp", time.monotonic(), parsed=query)
    await chain(request)
    return request


def decision_rows(
    name: str, request: Request, model: TFLiteScorer, groups: GroupDirectory, client: str
) -> list[tuple[str, str]]:
    """What each decision step found, as (label, text) rows: printed by `explain`, shown by the dashboard."""
    group = groups.group_for(client)
    policy, lists = group.policy, group.lists
    n, v = request.name, request.verdict
    rows = [
        ("name", n.qname if n else name),
        ("client group", f"{group.name} (client {client})"),
        ("registrable", (n.registrable if n else None) or "-"),
        (
            "scored",
            (n.model_input(model.metadata.input_form) if n else None)
            or f"- ({n.unscored.value if n and n.unscored else '?'})",
        ),
        ("list rule", " ".join(lists.why(name.rstrip(".").lower(), client) or ("none",))),
        ("score", "-" if request.score is None else f"{request.score:.6f}"),
        (
            "thresholds",
            "; ".join(
                f"{t.action.value} >= {t.value:.6f}"
                + (f" ({t.name})" if t.name else "")
                + (" <- reached" if request.score is not None and policy.threshold_for(request.score) is t else "")
                for t in policy.thresholds
            ),
        ),
        ("action", f"{v.action.value} (reason: {v.reason.value})" if v else "-"),
        ("mode", policy.mode.value + (f" (would {v.would.value})" if v and v.would else "")),
        ("model", model.metadata.model_version),
    ]
    if request.error:
        rows.append(("error", request.error))
    return rows


def explain(name: str, cfg: Config, model: TFLiteScorer, out: TextIO, client: str = "127.0.0.1") -> Request:
    groups = groups_for(cfg, model.metadata.thresholds)
    request = asyncio.run(decide(name, decision_chain(cfg, model, groups), client))
    n = request.name
    rows = decision_rows(name, request, model, groups, client)
    error = rows.pop() if request.error else None
    rows += watch_rows(cfg, groups.group_for(client).watch, client, n.registrable if n else None)
    if error is not None:
        rows.append(error)
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:
        out.write(f"{key + ':':<{width}} {value}\n")
    return request
