"""`resolverguard explain NAME`: the whole decision for one name, as the running resolver makes it.

It runs the same decision steps as serving (`pipeline.decision_steps`), stopping before anything
would be sent upstream, and prints what each step found, so a user can see why a name was blocked.
"""

from __future__ import annotations

import asyncio
import time
from typing import TextIO

from dnslib import DNSRecord

from resolverguard.chain import Reply, Request, link
from resolverguard.config import Config
from resolverguard.model import TFLiteScorer
from resolverguard.pipeline import decision_steps, groups_for
from resolverguard.steps.cache import VerdictCache
from resolverguard.wire import head_of, parse_query


def explain(name: str, cfg: Config, model: TFLiteScorer, out: TextIO, client: str = "127.0.0.1") -> Request:
    groups = groups_for(cfg, model.metadata.thresholds)
    group = groups.group_for(client)
    policy, lists = group.policy, group.lists

    async def stop_here(_: Request) -> Reply:
        return None

    chain = link(decision_steps(cfg, model, groups, VerdictCache(0, 0)), stop_here)
    query = DNSRecord.question(name.rstrip(".") or ".")
    packet = query.pack()
    head = parse_query(packet) or head_of(query, packet)
    request = Request(head, packet, (client, 0), "udp", time.monotonic(), parsed=query)

    async def decide() -> None:
        await chain(request)

    asyncio.run(decide())
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
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:
        out.write(f"{key + ':':<{width}} {value}\n")
    return request
