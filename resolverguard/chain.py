"""The chain: a query walks one way through small steps, each of which answers or hands on.

The order is written in one place only, `build_pipeline` in `resolverguard.pipeline` (read it top
to bottom like CoreDNS's plugin.cfg); this module holds what every step shares.

Two kinds of step. A `Step` wraps the rest of the chain, `(request, next_step) -> reply`, for the
steps that act on the reply too (query log, metrics, answer cache). A `Check` only decides from the
request: it fills in what it learns and hands on (None), answers (bytes), or hands back something
to wait for first (the model's batch); consecutive checks run in one loop, so the decision steps
of a cached query cost no coroutine each. A `Gate` decides from the source address alone and is
asked by the server before the packet is even parsed.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from dnslib import DNSRecord

from resolverguard.groups import ClientGroup
from resolverguard.names import RegistrableName
from resolverguard.verdicts import Verdict
from resolverguard.wire import Message, QueryHead


@dataclass(slots=True)
class Request:
    """One query on its way through the chain; steps fill in what they learn."""

    head: QueryHead  # what the wire says: ID, flags, question, EDNS (see resolverguard.wire)
    packet: bytes
    client: tuple[str, int]
    transport: str  # "udp" or "tcp"
    started: float  # monotonic seconds
    max_size: int = 65535  # largest reply the client accepts on this transport
    name: RegistrableName | None = None
    group: ClientGroup | None = None  # set by the group step
    score: float | None = None
    score_cached: bool = False
    verdict: Verdict | None = None
    upstream_rcode: str | None = None
    upstream_seconds: float | None = None  # time spent waiting for upstreams
    inference_seconds: float | None = None  # time spent in the model
    model_error: str | None = None  # scoring failed ("ExcType: message"); policy applies on_model_error
    upstream_error: str | None = None  # no upstream answered; the client got SERVFAIL
    internal_error: str | None = None  # a bug below the query log; the server answers SERVFAIL
    notes: dict[str, object] = field(default_factory=dict)
    parsed: DNSRecord | None = None  # the full dnslib parse, made only when a step needs it
    # The upstream's answer as passed on and its records, as the forwarder read them (the answer
    # cache reads them from here instead of reading the answer again)
    answer_read: tuple[bytes, Message] | None = None

    @property
    def query(self) -> DNSRecord:
        """The query as a dnslib record (to build answers from); parsed on first use."""
        if self.parsed is None:
            self.parsed = DNSRecord.parse(self.packet)
        return self.parsed

    @property
    def error(self) -> str | None:
        """The failure as the query log and `explain` show it: what the client felt first."""
        if self.upstream_error is not None:
            return f"upstream: {self.upstream_error}"
        if self.model_error is not None:
            return f"model error: {self.model_error}"
        return f"internal: {self.internal_error}" if self.internal_error is not None else None

    @property
    def qname(self) -> str:
        return self.head.qname

    @property
    def qtype(self) -> int:
        return self.head.qtype


@dataclass(frozen=True)
class Refusal:
    """How a turned-away query is answered: REFUSED, or nothing at all (`drop`, which also keeps a
    spoofed-source flood from being reflected at its victim)."""

    drop: bool = False


class Gate(Protocol):
    """Decides from the source address alone, before the packet is parsed (see steps/acl.py): under
    a flood, a turned-away datagram costs a dictionary lookup, not a DNS parse."""

    refusal: Refusal
    at_accept: bool  # asked once per TCP connection as well (the ACL), not only per message

    def admit(self, client: str) -> bool: ...


Reply = bytes | None  # wire-format answer, or None to send nothing
Next = Callable[[Request], Awaitable[Reply]]


class Step(Protocol):
    async def __call__(self, request: Request, next_step: Next) -> Reply: ...


Outcome = bytes | Awaitable[None] | None  # an answer, something to wait for, or hand on


@runtime_checkable
class Check(Protocol):
    def check(self, request: Request) -> Outcome: ...


@runtime_checkable
class Watcher(Check, Protocol):
    """A check that also reads the reply its run ends with (whoever made it: a later check, the
    cache, the upstream), without a coroutine of its own: `seen` is called in the same run, once
    the reply is there (the client watch: a Step there cost ~1 us more per cached answer)."""

    def seen(self, request: Request, reply: Reply) -> None: ...


def link(steps: Sequence[Step | Check], last: Next) -> Next:
    """Folds the steps into one callable; `last` answers whatever reaches the end."""
    handler: Next = last
    checks: list[Check] = []
    for step in reversed(steps):
        if isinstance(step, Check):
            checks.insert(0, step)
            continue
        if checks:
            handler, checks = _bind_checks(checks, handler), []
        handler = _bind(step, handler)
    return _bind_checks(checks, handler) if checks else handler


def _bind(step: Step, next_step: Next) -> Next:
    # A partial, not a wrapper coroutine: one coroutine frame per step and query, not two.
    return functools.partial(step, next_step=next_step)


def _bind_checks(checks: Sequence[Check], next_step: Next) -> Next:
    # a watcher that changes nothing on the way in (`changes_way_in` False: the client watch when no
    # group quarantines) is only told of the replies: a call less per answer the chain makes
    run = tuple(check.check for check in checks if getattr(check, "changes_way_in", True))
    seen = tuple(check.seen for check in checks if isinstance(check, Watcher))
    if seen:
        return functools.partial(_run_checks_seen, run, seen, next_step)
    return functools.partial(_run_checks, run, next_step)


async def _run_checks(checks: tuple[Callable[[Request], Outcome], ...], next_step: Next, request: Request) -> Reply:
    for check in checks:
        outcome = check(request)
        if outcome is None:
            continue
        if isinstance(outcome, bytes):
            return outcome
        await outcome
    return await next_step(request)


async def _run_checks_seen(
    checks: tuple[Callable[[Request], Outcome], ...],
    seen: tuple[Callable[[Request, Reply], None], ...],
    next_step: Next,
    request: Request,
) -> Reply:
    """`_run_checks`, then the watchers read the reply."""
    reply: Reply = None
    for check in checks:
        outcome = check(request)
        if outcome is None:
            continue
        if isinstance(outcome, bytes):
            reply = outcome
            break
        await outcome
    else:
        reply = await next_step(request)
    for watcher in seen:
        watcher(request, reply)
    return reply
