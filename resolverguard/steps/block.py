"""Block step: answers blocked queries ourselves (sinkhole, NXDOMAIN, REFUSED, SERVFAIL).

Sinkhole answers A with the configured IPv4, AAAA with the configured IPv6 and every other type
with NODATA, so clients fail fast instead of retrying. Negative answers carry a synthetic SOA whose
minimum is the sinkhole TTL, so stub resolvers cache the block (RFC 2308) for that long only.
"""

from __future__ import annotations

from dnslib import AAAA, EDNS0, QTYPE, RCODE, RR, SOA, A, DNSHeader, DNSRecord

from resolverguard.chain import Next, Reply, Request
from resolverguard.config import Action, SinkholeConfig

_RCODES = {Action.NXDOMAIN: RCODE.NXDOMAIN, Action.REFUSE: RCODE.REFUSED, Action.SERVFAIL: RCODE.SERVFAIL}


def empty_reply(query: DNSRecord, rcode: int) -> DNSRecord:
    """A reply to `query` with no records, echoing the question and the client's EDNS."""
    reply = DNSRecord(header=DNSHeader(id=query.header.id, qr=1, ra=1, rd=query.header.rd, rcode=rcode), q=query.q)
    if any(rr.rtype == QTYPE.OPT for rr in query.ar):
        reply.add_ar(EDNS0(udp_len=1232))
    return reply


def block_reply(query: DNSRecord, action: Action, sinkhole: SinkholeConfig, zone: str | None) -> DNSRecord:
    """The answer for a blocking `action`; `zone` (the registrable domain) owns the synthetic SOA."""
    reply = empty_reply(query, _RCODES.get(action, RCODE.NOERROR))
    qname, qtype = query.q.qname, query.q.qtype
    if action is Action.SINKHOLE and qtype in (QTYPE.A, QTYPE.AAAA):
        data = A(sinkhole.ipv4) if qtype == QTYPE.A else AAAA(sinkhole.ipv6)
        reply.add_answer(RR(qname, qtype, rdata=data, ttl=sinkhole.ttl))
    elif action in (Action.SINKHOLE, Action.NXDOMAIN):
        owner = zone or str(qname)
        soa = SOA(
            "sinkhole.resolverguard.invalid.", "hostmaster.resolverguard.invalid.", (1, 3600, 600, 86400, sinkhole.ttl)
        )
        reply.add_auth(RR(owner, QTYPE.SOA, rdata=soa, ttl=sinkhole.ttl))
    return reply


class BlockStep:
    def __init__(self, sinkhole: SinkholeConfig) -> None:
        self._sinkhole = sinkhole

    async def __call__(self, request: Request, next_step: Next) -> Reply:
        if request.verdict is None or not request.verdict.action.blocks:
            return await next_step(request)
        zone = request.name.registrable if request.name else None
        sinkhole = request.group.sinkhole if request.group is not None else self._sinkhole
        return bytes(block_reply(request.query, request.verdict.action, sinkhole, zone).pack())
