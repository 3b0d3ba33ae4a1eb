"""An RFC 8906-style check table: how a resolver answers odd but legal (and some illegal) queries.

RFC 8906 ("A Common Operational Problem in DNS Servers: Failure to Communicate") lists what a
server must do with EDNS versions, unknown options and flags, unknown opcodes and header bits; the
ISC EDNS compliance tester runs the same kind of table. Each check here sends one query (raw wire,
so that even illegal combinations can be sent) and judges the reply with dnspython. The same table
runs in the tests (resolverguard on fresh, cached and sinkholed names) and in
`bench/adversarial.py` (side by side with Unbound).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype

BADVERS = 16
UNKNOWN_OPTION = 100  # unassigned EDNS option code
Z_HEADER = 0x0040  # the reserved header bit
Z_EDNS = 0x4000  # an unassigned bit of the OPT record's flags


@dataclass(frozen=True)
class Reply:
    wire: bytes | None
    message: dns.message.Message | None
    problem: str = ""


def exchange(wire: bytes, host: str, port: int, tcp: bool = False, timeout: float = 2.0) -> Reply:
    """Sends raw bytes and reads one reply (None after `timeout`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if tcp:
            with socket.create_connection((host, port), timeout=timeout) as s:
                s.sendall(struct.pack("!H", len(wire)) + wire)
                size = struct.unpack("!H", _read(s, 2))[0]
                data = _read(s, size)
        else:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.sendto(wire, (host, port))
                data = s.recv(65535)
    except (TimeoutError, ConnectionError, struct.error):
        return Reply(None, None, "no reply")
    try:
        return Reply(data, dns.message.from_wire(data))
    except Exception as err:  # noqa: BLE001 - an unparseable reply is a finding, not a crash
        return Reply(data, None, f"unparseable reply: {type(err).__name__}")


def _read(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def opt_record(payload: int = 1232, version: int = 0, flags: int = 0, options: bytes = b"") -> bytes:
    """An OPT pseudo-record: root owner, type 41, class = UDP size, TTL = ext-rcode/version/flags."""
    return b"\x00" + struct.pack("!HHBBHH", 41, payload, 0, version, flags, len(options)) + options


def query_wire(
    name: str, qtype: int = 1, flags: int = 0x0100, opts: tuple[bytes, ...] = (), qid: int = 0x4A4A
) -> bytes:
    qname = b"".join(bytes([len(x)]) + x.encode() for x in name.rstrip(".").split(".")) + b"\x00"
    return (
        struct.pack("!HHHHHH", qid, flags, 1, 0, 0, len(opts)) + qname + struct.pack("!HH", qtype, 1) + b"".join(opts)
    )


def _opt_version(message: dns.message.Message) -> int | None:
    return message.edns if message.edns >= 0 else None


Verdict = tuple[bool, str]


def _expect(reply: Reply, rcode: int | None = None, answered: bool | None = None) -> Verdict:
    """Common part: a reply came, parses, has QR set and the expected rcode (and answer or not)."""
    if reply.message is None:
        return False, reply.problem
    m = reply.message
    if not m.flags & dns.flags.QR:
        return False, "QR not set"
    if rcode is not None and m.rcode() != rcode:
        return False, f"rcode {dns.rcode.to_text(m.rcode())}"
    if answered is True and not m.answer:
        return False, "no answer records"
    if answered is False and m.answer:
        return False, "answer records on an error"
    return True, dns.rcode.to_text(m.rcode())


def _answers(reply: Reply) -> Verdict:
    """The reply a resolver gives a normal query for a name that exists: NOERROR with records."""
    return _expect(reply, dns.rcode.NOERROR, answered=True)


def check_plain(host: str, port: int, name: str) -> Verdict:
    reply = exchange(query_wire(name), host, port)
    ok, why = _answers(reply)
    if ok and reply.message is not None and reply.message.edns >= 0:
        return False, "OPT in the reply to a query without EDNS"
    return ok, why


def check_edns0(host: str, port: int, name: str) -> Verdict:
    reply = exchange(query_wire(name, opts=(opt_record(),)), host, port)
    ok, why = _answers(reply)
    if ok and reply.message is not None and _opt_version(reply.message) != 0:
        return False, "no EDNS version 0 OPT in the reply"
    return ok, why


def _badvers(reply: Reply) -> Verdict:
    ok, why = _expect(reply, BADVERS, answered=False)
    if ok and reply.message is not None and _opt_version(reply.message) != 0:
        return False, "BADVERS without an OPT of version 0"
    return ok, why


def check_edns1(host: str, port: int, name: str) -> Verdict:
    return _badvers(exchange(query_wire(name, opts=(opt_record(version=1),)), host, port))


def check_edns1_tcp(host: str, port: int, name: str) -> Verdict:
    return _badvers(exchange(query_wire(name, opts=(opt_record(version=1),)), host, port, tcp=True))


def check_edns1_option(host: str, port: int, name: str) -> Verdict:
    option = struct.pack("!HH", UNKNOWN_OPTION, 0)
    return _badvers(exchange(query_wire(name, opts=(opt_record(version=1, options=option),)), host, port))


def check_unknown_option(host: str, port: int, name: str) -> Verdict:
    option = struct.pack("!HH", UNKNOWN_OPTION, 4) + b"abcd"
    reply = exchange(query_wire(name, opts=(opt_record(options=option),)), host, port)
    ok, why = _answers(reply)
    if ok and reply.message is not None:
        if _opt_version(reply.message) != 0:
            return False, "no OPT in the reply"
        if any(o.otype == UNKNOWN_OPTION for o in reply.message.options):
            return False, "unknown option echoed"
    return ok, why


def check_unknown_flag(host: str, port: int, name: str) -> Verdict:
    reply = exchange(query_wire(name, opts=(opt_record(flags=Z_EDNS),)), host, port)
    ok, why = _answers(reply)
    if ok and reply.message is not None:
        if _opt_version(reply.message) != 0:
            return False, "no OPT in the reply"
        if reply.message.ednsflags & Z_EDNS:
            return False, "unknown EDNS flag echoed"
    return ok, why


def check_do(host: str, port: int, name: str) -> Verdict:
    reply = exchange(query_wire(name, opts=(opt_record(flags=0x8000),)), host, port)
    ok, why = _answers(reply)
    if ok and reply.message is not None and not reply.message.ednsflags & dns.flags.DO:
        return False, "DO not copied into the reply (RFC 3225)"
    return ok, why


def check_small_payload(host: str, port: int, name: str) -> Verdict:
    """An advertised UDP size under 512 is treated as 512 (RFC 6891 6.2.5)."""
    return _answers(exchange(query_wire(name, opts=(opt_record(payload=100),)), host, port))


def check_two_opts(host: str, port: int, name: str) -> Verdict:
    """Read from the header bytes: a FORMERR may echo the offending query's records (Unbound
    does), which dnspython then refuses to parse."""
    reply = exchange(query_wire(name, opts=(opt_record(), opt_record())), host, port)
    if reply.wire is None or len(reply.wire) < 12:
        return False, "no reply"
    if not reply.wire[2] & 0x80 or reply.wire[:2] != b"\x4a\x4a":
        return False, "not a reply to the query"
    rcode = reply.wire[3] & 0x0F
    return rcode == dns.rcode.FORMERR, dns.rcode.to_text(rcode)


def check_cd(host: str, port: int, name: str) -> Verdict:
    reply = exchange(query_wire(name, flags=0x0100 | dns.flags.CD), host, port)
    ok, why = _answers(reply)
    if ok and reply.message is not None and not reply.message.flags & dns.flags.CD:
        return False, "CD not copied into the reply"
    return ok, why


def check_ra(host: str, port: int, name: str) -> Verdict:
    reply = exchange(query_wire(name), host, port)
    ok, why = _answers(reply)
    if ok and reply.message is not None and not reply.message.flags & dns.flags.RA:
        return False, "RA not set by a recursive service"
    return ok, why


def check_aa_query(host: str, port: int, name: str) -> Verdict:
    """AA in a query means nothing; a forwarder's reply is never authoritative."""
    reply = exchange(query_wire(name, flags=0x0100 | dns.flags.AA), host, port)
    ok, why = _answers(reply)
    if ok and reply.message is not None and reply.message.flags & dns.flags.AA:
        return False, "AA set in a forwarder's reply"
    return ok, why


def check_header_z(host: str, port: int, name: str) -> Verdict:
    reply = exchange(query_wire(name, flags=0x0100 | Z_HEADER), host, port)
    ok, why = _answers(reply)
    if ok and reply.wire is not None and struct.unpack_from("!H", reply.wire, 2)[0] & Z_HEADER:
        return False, "Z bit echoed"
    return ok, why


def check_qr_set(host: str, port: int, name: str) -> Verdict:
    """A message with QR=1 is a response: a server must not answer it (no reflection loops)."""
    reply = exchange(query_wire(name, flags=0x8100), host, port, timeout=0.5)
    return (reply.wire is None, "silent" if reply.wire is None else "answered a response")


def _notimp(host: str, port: int, name: str, opcode: int) -> Verdict:
    reply = exchange(query_wire(name, flags=opcode << 11), host, port)
    return _expect(reply, dns.rcode.NOTIMP)


def check_opcode_iquery(host: str, port: int, name: str) -> Verdict:
    return _notimp(host, port, name, 1)


def check_opcode_unknown(host: str, port: int, name: str) -> Verdict:
    return _notimp(host, port, name, 15)


def check_unknown_type(host: str, port: int, name: str) -> Verdict:
    return _expect(exchange(query_wire(name, qtype=1000), host, port), dns.rcode.NOERROR)


def check_tcp(host: str, port: int, name: str) -> Verdict:
    return _answers(exchange(query_wire(name, opts=(opt_record(),)), host, port, tcp=True))


Check = Callable[[str, int, str], Verdict]
CHECKS: tuple[tuple[str, str, Check], ...] = (
    ("plain", "query without EDNS: NOERROR with records, no OPT", check_plain),
    ("edns0", "EDNS 0: OPT version 0 in the reply", check_edns0),
    ("edns1", "EDNS version 1: BADVERS with an OPT of version 0 (RFC 6891 6.1.3)", check_edns1),
    ("edns1-tcp", "EDNS version 1 over TCP: BADVERS", check_edns1_tcp),
    ("edns1-option", "EDNS version 1 with an unknown option: BADVERS", check_edns1_option),
    ("edns-option", "unknown EDNS option: ignored, not echoed", check_unknown_option),
    ("edns-flag", "unknown EDNS flag: ignored, not echoed", check_unknown_flag),
    ("edns-do", "DO=1: DO copied into the reply (RFC 3225)", check_do),
    ("edns-payload-100", "UDP size under 512: answered as if 512", check_small_payload),
    ("two-opt", "two OPT records: FORMERR (RFC 6891 6.1.1)", check_two_opts),
    ("cd", "CD=1: copied into the reply (RFC 4035 3.2.2)", check_cd),
    ("ra", "RA=1 in a recursive service's reply", check_ra),
    ("aa", "AA=1 in the query: reply AA=0 (not authoritative)", check_aa_query),
    ("header-z", "header Z bit: ignored, not echoed", check_header_z),
    ("qr", "QR=1 (a response): no reply", check_qr_set),
    ("opcode-1", "opcode IQUERY: NOTIMP", check_opcode_iquery),
    ("opcode-15", "unassigned opcode 15: NOTIMP", check_opcode_unknown),
    ("type-1000", "unknown query type: NOERROR", check_unknown_type),
    ("tcp", "EDNS query over TCP: NOERROR with records", check_tcp),
)
