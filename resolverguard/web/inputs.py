"""What the dashboard and the API accept from a user, checked once, before anything is read or
written: a bad value is a 400 with the parameter's name, never a query or a list line.

Store queries bind these values as parameters (the store contract), so this is not what keeps SQL
safe; it keeps nonsense out of the list files and bounds what one request may ask the store to do.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from resolverguard.config import GATEWAY_NAME
from resolverguard.logtop import parse_span
from resolverguard.verdicts import Action, Reason
from resolverguard.web.reads import Read, call

MAX_RANGE = 31 * 86_400  # the store keeps 30 days by default; a wider range is a mistake or an attack
MAX_LIMIT = 1_000
MAX_PAUSE_MINUTES = 7 * 24 * 60  # as the control socket's `pause`
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class BadInput(ValueError):
    """A request parameter that cannot be used; `field` names it in the 400 answer."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def domain_name(text: str | None, field: str = "name") -> str:
    """A DNS name as list files hold it: lower case, no trailing dot, LDH (and `_`) labels, at
    least two labels, <= 253 characters. Rejects wildcards, spaces, URLs and anything else a list
    line could be misread as (`#`, `||`, `/`)."""
    name = (text or "").strip().lower().rstrip(".")
    if not name:
        raise BadInput(field, "missing")
    if len(name) > 253:
        raise BadInput(field, "longer than 253 characters")
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise BadInput(field, f"{name[:80]!r} is not a domain name (letters, digits, - and _ in dotted labels)")
    return name


def client_address(text: str | None, field: str = "client") -> str | None:
    if text is None or not text.strip():
        return None
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise BadInput(field, f"{text[:80]!r} is not an IP address") from None


def when(text: str | None, field: str, now: float, default: float) -> float:
    """UNIX seconds, or a span back from now (`30m`, `24h`, `7d`)."""
    if text is None or not text.strip():
        return default
    raw = text.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            return now - parse_span(raw).total_seconds()
        except ValueError:
            raise BadInput(field, f"{raw[:40]!r} is neither UNIX seconds nor a span like 30m, 24h, 7d") from None
    if value != value or not 0 <= value <= now + 86_400:
        raise BadInput(field, "out of range")
    return value


@dataclass(frozen=True, slots=True)
class TimeRange:
    since: float
    until: float

    @classmethod
    def of(cls, query: Mapping[str, str], now: float | None = None, default_span: float = 86_400) -> TimeRange:
        now = time.time() if now is None else now
        until = when(query.get("until"), "until", now, now)
        since = when(query.get("since"), "since", now, until - default_span)
        if since >= until:
            raise BadInput("since", "must be before until")
        if until - since > MAX_RANGE:
            raise BadInput("since", f"the range is longer than {MAX_RANGE // 86_400} days")
        return cls(since, until)


def integer(text: str | None, field: str, default: int, low: int, high: int) -> int:
    if text is None or text == "":
        return default
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise BadInput(field, f"must be a whole number from {low} to {high}")
    return int(text)


def action(text: str | None, field: str = "action") -> str | None:
    if not text:
        return None
    if text not in {a.value for a in Action}:
        raise BadInput(field, f"not one of: {', '.join(a.value for a in Action)}")
    return text


def reason(text: str | None, field: str = "reason") -> str | None:
    if not text:
        return None
    if text not in {r.value for r in Reason}:
        raise BadInput(field, f"not one of: {', '.join(r.value for r in Reason)}")
    return text


def gateway(text: str | None, field: str = "gateway") -> str | None:
    """A gateway's name as `query_store.gateway` accepts it (the policy's rule, not a second one)."""
    if text is None or not text.strip():
        return None
    if not GATEWAY_NAME.match(text.strip()):
        raise BadInput(field, f"{text[:80]!r} is not a gateway name (letters, digits, '.', '_' and '-')")
    return text.strip()


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """A query-log search as the API (`/api/v1/queries`) and the dashboard's query log both take it:
    one parser, so the two cannot drift in what they accept or how they call the store."""

    span: TimeRange
    name: str | None
    client: str | None
    action: str | None
    reason: str | None
    limit: int
    before_id: int | None
    gateway: str | None = None  # the instance that answered (a fleet writing to one store)

    def read(self) -> Read:
        """The store call (`QueryStore.search`) these filters make."""
        return call(
            "search",
            since=self.span.since,
            until=self.span.until,
            client=self.client,
            name=self.name,
            action=self.action,
            reason=self.reason,
            limit=self.limit,
            before_id=self.before_id,
            gateway=self.gateway,
        )


def search_filters(query: Mapping[str, str], default_limit: int = 100) -> SearchFilters:
    """`since`/`until`, `name`, `client`, `action`, `reason`, `gateway`, `limit`, `before_id` from a
    request's query; raises BadInput naming the first bad parameter."""
    return SearchFilters(
        span=TimeRange.of(query),
        name=domain_name(query["name"]) if query.get("name") else None,
        client=client_address(query.get("client")),
        action=action(query.get("action")),
        reason=reason(query.get("reason")),
        limit=integer(query.get("limit"), "limit", default_limit, 1, MAX_LIMIT),
        before_id=integer(query.get("before_id"), "before_id", 0, 0, 2**62) or None,
        gateway=gateway(query.get("gateway")),
    )
