"""Block step: answers blocked queries ourselves (sinkhole, NXDOMAIN, REFUSED, SERVFAIL).

Sinkhole answers A with the configured IPv4, AAAA with the configured IPv6 and every other type
with NODATA, so clients fail fast instead of retrying. Negative answers carry a synthetic SOA whose
minimum is the sinkhole TTL, so stub resolvers cache the block (RFC 2308) for that long only.
"""

from __future__ import annotations

from resolverguard import replies
from resolverguard.chain import Outcome, Request
from resolverguard.config import SinkholeConfig
from resolverguard.verdicts import Action
from resolverguard.wire import AAAA, NOERROR, NXDOMAIN, REFUSED, SERVFAIL, A

_RCODES = {Action.NXDOMAIN: NXDOMAIN, Action.REFUSE: REFUSED, Action.SERVFAIL: SERVFAIL}


def block_reply(request: Request, action: Action, sinkhole: SinkholeConfig) -> bytes:
    """The answer for a blocking `action`; the synthetic SOA belongs to the registrable domain."""
    head = request.head
    if action is Action.SINKHOLE and head.qtype in (A, AAAA):
        return replies.address(head, sinkhole.ipv4 if head.qtype == A else sinkhole.ipv6, sinkhole.ttl)
    if action in (Action.SINKHOLE, Action.NXDOMAIN):
        zone = request.name.registrable if request.name else None
        labels = zone.count(".") + 1 if zone else 0
        return replies.negative(head, _RCODES.get(action, NOERROR), labels, sinkhole.ttl)
    return replies.empty(head, _RCODES[action])


class BlockStep:
    def __init__(self, sinkhole: SinkholeConfig) -> None:
        self._sinkhole = sinkhole

    def check(self, request: Request) -> Outcome:
        if request.verdict is None or not request.verdict.action.blocks:
            return None
        sinkhole = request.group.sinkhole if request.group is not None else self._sinkhole
        return block_reply(request, request.verdict.action, sinkhole)
