"""resolverguard's Unbound module with timestamps per stage, for bench/module_stages.py (issue #17, mod6).

Unbound loads this file (`python-script:`) instead of resolverguard/unbound_module.py; it loads the
same `unbound_client.py` (from RESOLVERGUARD_CLIENT_DIR, default this checkout's resolverguard/) and
wraps, without changing them, the calls whose time makes a never-seen name's latency: `operate`
(each call: event, qname, entry and exit), `VerdictClient.send` (the asked line's number), the
answers read (`Line.take`), `VerdictClient.room` and `resolved` (the wait for the verdict at the
iterator's answer). Times are CLOCK_MONOTONIC nanoseconds, the clock the verdict service's trace uses
too, so the two line up. Written as tab-separated lines to RESOLVERGUARD_TRACE at `deinit`.
"""

from __future__ import annotations

import os
import sys
import time
from importlib.machinery import SourceFileLoader
from typing import Any

_DIR = os.environ.get(
    "RESOLVERGUARD_CLIENT_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "resolverguard")
)


def _load() -> Any:
    name, path = "resolverguard_unbound_client", os.path.join(_DIR, "unbound_client.py")
    loader = SourceFileLoader(name, path)
    code = type(sys)(name)
    code.__file__, code.__loader__ = path, loader
    sys.modules[name] = code
    loader.exec_module(code)
    return code


client = _load()
now = time.monotonic_ns
events: list[str] = []  # one line per event: kind, then its fields


def _send(original: Any) -> Any:
    def send(self: Any, qname: str, qtype: int, where: str, above: str | None = None) -> Any:
        start = now()
        ticket = original(self, qname, qtype, where, above)
        events.append(f"send\t{qname}\t{ticket[1] if ticket else -1}\t{start}\t{now()}")
        return ticket

    return send


def _take(original: Any) -> Any:
    def take(self: Any, data: bytes) -> None:
        before = set(self.answers)
        original(self, data)
        t = now()
        events.extend(f"take\t{n}\t{t}" for n in self.answers.keys() - before)

    return take


def _room(original: Any) -> Any:
    def room(self: Any) -> bool:
        start = now()
        ok = original(self)
        end = now()
        if end - start > 20_000:
            events.append(f"room\t{start}\t{end}")
        return bool(ok)

    return room


def _resolved(original: Any) -> Any:
    def resolved(qstate: Any, ticket: Any) -> int:
        start = now()
        out = original(qstate, ticket)
        events.append(f"resolved\t{ticket[1]}\t{start}\t{now()}")
        return int(out)

    return resolved


def _part(name: str, original: Any) -> Any:
    def part(*args: Any) -> Any:
        start = now()
        out = original(*args)
        events.append(f"part\t{name}\t{start}\t{now()}")
        return out

    return part


if os.environ.get("RESOLVERGUARD_TRACE_PARTS"):  # the NEW op's parts too (each adds its own timing cost)
    client.client_of = _part("client_of", client.client_of)
    if hasattr(client, "unwaited"):
        client.unwaited = _part("unwaited", client.unwaited)
    client.gatecode.Gate.judge = _part("judge", client.gatecode.Gate.judge)
    client.FirstStage.refresh = _part("refresh", client.FirstStage.refresh)
client.VerdictClient.send = _send(client.VerdictClient.send)
client.VerdictClient.room = _room(client.VerdictClient.room)
client.Line.take = _take(client.Line.take)
client.resolved = _resolved(client.resolved)
init_standard = client.init_standard
inform_super = client.inform_super
_operate = client.operate


def operate(id: int, event: int, qstate: Any, qdata: Any) -> bool:  # noqa: A002 - Unbound's signature
    start = now()
    out = _operate(id, event, qstate, qdata)
    events.append(f"op\t{event}\t{qstate.qinfo.qname_str}\t{start}\t{now()}")
    return bool(out)


def deinit(id: int) -> bool:  # noqa: A002
    path = os.environ.get("RESOLVERGUARD_TRACE")
    if path:
        with open(path, "a") as out:
            out.write("".join(line + "\n" for line in events))
    events.clear()
    return bool(client.deinit(id))
