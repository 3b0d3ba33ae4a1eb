"""Encrypted upstreams: DNS over TLS (RFC 7858) and DNS over HTTPS (RFC 8484).

Both keep their connection open and share it: a DoT connection carries every query in flight at
once, matched by ID as RFC 7766 6.2.1.1 allows (a connection per query would cost a TCP and a TLS
handshake, several round trips, each time); DoH rides HTTP/2 streams on one connection. The
certificate must be valid for the upstream's name (the SNI we send) and chain to the system's CAs
or `encrypted_upstreams.ca_file`; a refused certificate fails the exchange with the verifier's
reason, so the forwarder tries the next upstream and says why once.

DoH goes through httpx with h2 rather than a hand-written client: Unbound (and most public DoH
servers) speak DoH over HTTP/2 only, and HTTP/2 framing, HPACK and flow control are a lot to get
right. httpx is the maintained asyncio client that does HTTP/2 (aiohttp does not), and its
`sni_hostname` extension lets us connect to a bootstrap address while verifying the name. (sniffio
is a dependency of ours for httpcore: without it, httpcore's `import sniffio` fails, and so scans
sys.path, four times per request: measured +0.2 ms of DoH latency, bench/results/encrypted.md.)

Queries are padded to a multiple of 128 octets with the EDNS(0) Padding option (RFC 7830), the
block size RFC 8467 recommends for clients, so their sizes tell an observer less about the names.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

from resolverguard.config import EncryptedUpstream
from resolverguard.errors import UpstreamError
from resolverguard.wire import OPT

Lookup = Callable[[str], Awaitable[str]]  # a host name -> an address to connect to (the bootstrap)
PADDING_OPTION = 12  # RFC 7830
PAD_BLOCK = 128  # RFC 8467 4.1: clients pad queries to a multiple of 128 octets
DNS_MESSAGE = "application/dns-message"


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verifying client context: the name is checked, TLS 1.2 at least (RFC 7858 3.2, RFC 8310)."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def padded(query: bytes, add_opt: bool, block: int = PAD_BLOCK) -> bytes:
    """The query with an EDNS(0) Padding option that makes it a multiple of `block` octets.

    A query with its OPT record last gets the option appended to it; a query without one gets an
    OPT only when `add_opt` (the caller strips the OPT from the answer for a client that sent
    none). Anything unusual (other records, an OPT that already pads) is sent as it is."""
    end = _question_end(query)
    if end is None or query[6:10] != b"\x00\x00\x00\x00":
        return query
    additional = query[10] << 8 | query[11]
    if additional == 0 and end == len(query) and add_opt:
        query = query[:10] + b"\x00\x01" + query[12:] + b"\x00" + struct.pack("!HHIH", OPT, 1232, 0, 0)
    elif not (additional == 1 and _opt_last(query, end)):
        return query
    rdata = query[end + 11 :]
    at = 0
    while at + 4 <= len(rdata):
        code, length = struct.unpack_from("!HH", rdata, at)
        if code == PADDING_OPTION:
            return query
        at += 4 + length
    pad = -(len(query) + 4) % block
    rdlength = len(rdata) + 4 + pad
    return query[: end + 9] + struct.pack("!H", rdlength) + rdata + struct.pack("!HH", PADDING_OPTION, pad) + bytes(pad)


def _question_end(query: bytes) -> int | None:
    if len(query) < 17 or query[4:6] != b"\x00\x01":
        return None
    at = 12
    while at < len(query):
        length = query[at]
        if length == 0:
            return at + 5 if at + 5 <= len(query) else None
        if length & 0xC0:
            return None
        at += length + 1
    return None


def _opt_last(query: bytes, end: int) -> bool:
    """Is the one additional record an OPT that ends the message?"""
    if end + 11 > len(query) or query[end] != 0:
        return False
    rtype, _, _, rdlength = struct.unpack_from("!HHIH", query, end + 1)
    return bool(rtype == OPT and end + 11 + rdlength == len(query))


def refused_certificate(err: BaseException, server: EncryptedUpstream) -> UpstreamError | None:
    """A clear error for a certificate the verifier refused, wherever in the chain of causes it is."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            why = seen.verify_message or str(seen)
            return UpstreamError(f"TLS certificate of {server} refused ({server.name!r} expected): {why}")
        seen = seen.__cause__ or seen.__context__
    return None


class ConnectionLost(UpstreamError):
    """The connection closed while a query waited on it (the server's idle timeout, a reset)."""


class TlsConnection:
    """One open DoT connection: queries are written as they come, answers read by one task and
    handed to whoever waits for that ID (they may come out of order, RFC 7766 7). The connection
    closes itself after `idle` seconds with nothing in flight."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle: float) -> None:
        self.reader, self.writer, self.idle = reader, writer, idle
        self.loop = asyncio.get_running_loop()
        self.pending: dict[int, asyncio.Future[bytes]] = {}  # ID -> who waits for its answer
        self.closed, self.used = False, 0
        self._idle_timer: asyncio.TimerHandle | None = self.loop.call_later(idle, self.close)
        self._reading = asyncio.ensure_future(self._read())

    async def exchange(self, query: bytes, ids: Callable[[], int], matches: Callable[[bytes, int], bool]) -> bytes:
        """Sends `query` under a fresh random ID no other query in flight here has."""
        if self.closed:
            raise ConnectionLost("connection closed")
        qid = ids()
        while qid in self.pending:
            qid = ids()
        wire = struct.pack("!H", qid) + query[2:]
        future: asyncio.Future[bytes] = self.loop.create_future()
        self.pending[qid] = future
        self.used += 1
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        try:
            self.writer.write(struct.pack("!H", len(wire)) + wire)
            answer = await future
            if not matches(answer, qid):
                raise UpstreamError("reply that is not an answer to the question")
            return answer
        finally:
            self.pending.pop(qid, None)
            if not self.pending and not self.closed:
                self._idle_timer = self.loop.call_later(self.idle, self.close)

    async def _read(self) -> None:
        reason: BaseException = ConnectionLost("closed by the server")
        try:
            while True:
                size = struct.unpack("!H", await self.reader.readexactly(2))[0]
                answer = await self.reader.readexactly(size)
                waiting = self.pending.get(answer[0] << 8 | answer[1]) if size >= 12 else None
                if waiting is not None and not waiting.done():
                    waiting.set_result(answer)
        except asyncio.IncompleteReadError:
            pass
        except (OSError, ssl.SSLError) as err:
            reason = ConnectionLost(f"connection lost: {type(err).__name__} {err}")
        finally:
            self.closed = True
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(reason)
            self.close()

    def close(self) -> None:
        self.closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if not self._reading.done() and asyncio.current_task() is not self._reading:
            self._reading.cancel()
        with contextlib.suppress(RuntimeError):  # the loop is already closed at shutdown
            self.writer.close()


class DotClient:
    """One DoT upstream: its shared connection, opened on first use and again after it closed.
    Queries that arrive while it is being opened wait for the same handshake."""

    def __init__(
        self, server: EncryptedUpstream, context: ssl.SSLContext, lookup: Lookup, idle: float, timeout: float
    ) -> None:
        self.server, self.context, self.lookup, self.idle = server, context, lookup, idle
        self.timeout = timeout  # for the connection and handshake, which outlive the query that started them
        self.connection: TlsConnection | None = None
        self._opening: asyncio.Future[TlsConnection] | None = None
        self.connects = 0  # how many connections were opened (connection reuse is tested by it)

    async def exchange(self, query: bytes, ids: Callable[[], int], matches: Callable[[bytes, int], bool]) -> bytes:
        """The answer over the open connection; a connection found closed under a query that was
        sent on it (the server's idle close raced us) is replaced once, then the error stands."""
        for attempt in range(2):
            connection = await self._open()
            fresh = connection.used == 0
            try:
                return await connection.exchange(query, ids, matches)
            except ConnectionLost:
                if fresh or attempt:
                    raise
        raise AssertionError("unreachable")

    async def _open(self) -> TlsConnection:
        if self.connection is not None and not self.connection.closed:
            return self.connection
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._connect())
            self._opening.add_done_callback(lambda f: f.cancelled() or f.exception())  # read once, never lost
        return await asyncio.shield(self._opening)

    async def _connect(self) -> TlsConnection:
        address = self.server.address or await self.lookup(self.server.name)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address, self.server.port, ssl=self.context, server_hostname=self.server.name),
                self.timeout,
            )
        except TimeoutError:
            raise TimeoutError(f"no TLS connection in {self.timeout:g} s") from None
        except (OSError, ssl.SSLError) as err:
            raise refused_certificate(err, self.server) or UpstreamError(
                f"connect: {type(err).__name__} {err}"
            ) from err
        self.connects += 1
        self.connection = TlsConnection(reader, writer, self.idle)
        return self.connection

    def close(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        if self.connection is not None:
            self.connection.close()


class DohClient:
    """One DoH upstream through an httpx client with HTTP/2: one connection, a stream per query.
    The request goes to the upstream's (pinned or bootstrapped) address with the name as Host and
    SNI, so a DoH URL never needs this resolver to find its own way out."""

    def __init__(
        self,
        server: EncryptedUpstream,
        context: ssl.SSLContext,
        lookup: Lookup,
        idle: float,
        method: str,
        timeout: float,
    ) -> None:
        import httpx  # here, not at the top: it costs ~6 MB and ~0.2 s at start, for DoH users only

        self.server, self.lookup, self.method = server, lookup, method
        self.client = httpx.AsyncClient(
            http2=True,
            verify=context,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2, keepalive_expiry=idle),
            trust_env=False,  # no proxy from the environment: the resolver talks to its upstream directly
            follow_redirects=False,
        )
        self.connects = 0  # TCP connections opened (counted through httpcore's trace hook)
        self.http_version = ""  # of the last answer: "HTTP/2" when the server speaks it
        port = "" if server.port == 443 else f":{server.port}"
        self.host = f"[{server.name}]{port}" if ":" in server.name else f"{server.name}{port}"

    async def exchange(self, wire: bytes, matches: Callable[[bytes], bool]) -> bytes:
        """POST (or GET) one query with ID 0 (RFC 8484 4.1: cache friendly); the answer's bytes."""
        address = self.server.address or await self.lookup(self.server.name)
        url = f"https://{f'[{address}]' if ':' in address else address}:{self.server.port}{self.server.path}"
        headers = {"host": self.host, "accept": DNS_MESSAGE}
        extensions = {"sni_hostname": self.server.name, "trace": self._trace}
        import httpx

        try:
            if self.method == "get":
                encoded = base64.urlsafe_b64encode(wire).rstrip(b"=").decode("ascii")
                response = await self.client.get(url, params={"dns": encoded}, headers=headers, extensions=extensions)
            else:
                headers["content-type"] = DNS_MESSAGE
                response = await self.client.post(url, content=wire, headers=headers, extensions=extensions)
        except httpx.HTTPError as err:
            raise refused_certificate(err, self.server) or UpstreamError(f"{type(err).__name__} {err}") from err
        self.http_version = response.http_version
        if response.status_code != 200:
            raise UpstreamError(f"HTTP {response.status_code}")
        if response.headers.get("content-type", "").split(";")[0].strip() != DNS_MESSAGE:
            raise UpstreamError(f"answer of type {response.headers.get('content-type')!r}, not {DNS_MESSAGE}")
        if not matches(response.content):
            raise UpstreamError("reply that is not an answer to the question")
        return response.content

    async def _trace(self, event: str, info: object) -> None:
        if event == "connection.connect_tcp.complete":
            self.connects += 1

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop at shutdown: the sockets go with it
            asyncio.get_running_loop().create_task(self.client.aclose())
