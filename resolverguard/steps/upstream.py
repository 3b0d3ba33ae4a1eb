"""Upstream step: forwards a query to the first upstream that answers, or SERVFAILs.

Guards against cache poisoning the way stub forwarders should: every upstream query gets a fresh
random ID on one of a pool of sockets with random source ports that are replaced as they are used
(see `UpstreamForwarder`), the UDP sockets are connected (the kernel drops datagrams from other
sources), and a reply whose ID or question does not match is ignored while we keep waiting. A
truncated UDP reply is retried over TCP. The client's own packet is forwarded with only the ID
changed, so its EDNS options (buffer size, DO bit, cookies) pass on.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence

from dnslib import QTYPE, DNSError, DNSRecord

from resolverguard import replies
from resolverguard.chain import Reply, Request
from resolverguard.config import EncryptedUpstream, EncryptedUpstreamsConfig, Endpoint, Upstream
from resolverguard.errors import UpstreamError
from resolverguard.handoff import Handoff, ReplyHold
from resolverguard.steps.encrypted import DohClient, DotClient, padded, tls_context
from resolverguard.udpbatch import ANY_SIZE, batched, receive_all, send_all
from resolverguard.wire import ANY, RCODE_MASK, REFUSED, SERVFAIL, Flag, Message, QueryHead, rcode_name

_TC = int(Flag.TC) >> 8  # the bit in byte 2 of the header (a plain int)
_QR = int(Flag.QR) >> 8


def question_section(packet: bytes) -> bytes | None:
    """The raw question (name, type, class) of a one-question message, or None if malformed.
    The first name of a message is never compressed, so its bytes can be compared directly."""
    end = 12
    while end < len(packet):
        length = packet[end]
        if length == 0:
            return packet[12 : end + 5] if end + 5 <= len(packet) else None
        if length & 0xC0:
            return None
        end += length + 1
    return None


def matches_python(answer: bytes, qid: int, question: bytes) -> bool:
    """Is `answer` a reply to our query `qid` for the same question (name compared without case)?
    Anything else is dropped while we keep waiting: the cache-poisoning defence. `matches` is this
    in C where `resolverguard/_wirec.c` is built (tests/test_wirec.py holds the two to one answer)."""
    if len(answer) < 12 or answer[0] << 8 | answer[1] != qid or not answer[2] & _QR:
        return False
    if answer[4:6] == b"\x00\x00":
        return bool(answer[3] & RCODE_MASK)  # FORMERR/REFUSED/NOTIMP may echo no question
    return answer[4:6] == b"\x00\x01" and answer[12 : 12 + len(question)].lower() == question.lower()


try:  # every upstream answer is asked this (~0.5 us in Python)
    from resolverguard._wirec import matches as _matches_c
except ImportError:  # no C compiler at install time (setup.py)
    _matches_c = None

matches: Callable[[bytes, int, bytes], bool] = matches_python if _matches_c is None else _matches_c

_NOT_WAITING: tuple[bytes, object, bool] = (b"", None, False)


class RandomIds:
    """16-bit query IDs and pool picks from the OS CSPRNG, read in bulk (one urandom call per
    2048 draws instead of one each)."""

    def __init__(self, chunk: int = 4096) -> None:
        self._chunk, self._bytes, self._at = chunk, b"", 0

    def draw(self) -> int:
        if self._at + 2 > len(self._bytes):
            self._bytes, self._at = os.urandom(self._chunk), 0
        self._at += 2
        return self._bytes[self._at - 2] << 8 | self._bytes[self._at - 1]


READ_BATCH = 16  # answers read per system call (`udpbatch.receive_all`)


class ReadBuffer:
    """Where a forwarder's sockets read their answers with one `recvmmsg` (`udpbatch.receive_all`):
    READ_BATCH datagrams of any size, 1 MiB, made at the first read and shared by the forwarder's
    sockets (a read is over before another starts: it runs in one callback)."""

    def __init__(self, native: bool) -> None:
        self.native, self._buffer = native, bytearray()

    def read(self, sock: socket.socket) -> tuple[list[bytes], OSError | None]:
        if self.native and not self._buffer:
            self._buffer = bytearray(READ_BATCH * ANY_SIZE)
        return receive_all(sock, self._buffer, READ_BATCH, self.native)


class Channel:
    """One connected UDP socket to one upstream, shared by up to `max_uses` queries in turn and
    matched by ID and question; the kernel drops datagrams from any other address."""

    def __init__(self, server: Endpoint, reader: ReadBuffer) -> None:
        self.reader = reader  # the forwarder's, shared by its pool
        self.loop = asyncio.get_running_loop()
        self.sock = socket.socket(socket.AF_INET6 if ":" in server.host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        # qid -> (question, future, whether a bad reply fails over at once: another upstream is left),
        # while its query waits for an answer: the reader takes out the ones it answers
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes], bool]] = {}
        self.uses, self.retired = 0, False
        try:
            self.sock.connect((server.host, server.port))  # binds a fresh random source port
            self.loop.add_reader(self.sock.fileno(), self._readable)
        except OSError:
            self.sock.close()
            raise

    def _readable(self) -> None:
        """Reads the answers that are there and hands each to its query, which runs on to its
        reply from here (`handoff.Handoff`). Stops once nobody waits here any more, or when a read
        got fewer answers than it could take (the socket was empty then), rather than on an empty
        read: its BlockingIOError cost ~1.6 us per wake-up (bench/missprofile.py), and the loop's
        readiness is level-triggered, so a datagram left (late, stray) wakes it again. A model
        batch's queries share a socket (`UpstreamForwarder.hold`): their answers are read with one
        `recvmmsg` each READ_BATCH (`udpbatch.receive_all`)."""
        held: list[ReplyHold] = []
        try:
            self._read(held)
        finally:
            for hold in held:
                hold.release()

    def _read(self, held: list[ReplyHold]) -> None:
        """`_readable`'s loop; the reply senders of the queries it resumes are held (`held`), so
        their replies go out together when it ends (`handoff.ReplyHold`)."""
        sock, pending, reader = self.sock, self.pending, self.reader
        while True:
            datagrams, err = reader.read(sock)
            for data in datagrams:
                self._answered(data, held)
            if err is not None:  # ICMP port unreachable: everyone waiting here fails over at once
                for _, future, _ in list(pending.values()):
                    if not future.done():
                        future.set_exception(err)
                return
            if not pending or len(datagrams) < READ_BATCH:  # (also when a query resumed here closed this socket)
                return

    def _answered(self, data: bytes, held: list[ReplyHold]) -> None:
        """Hands one datagram to the query it answers, if any waits for it."""
        pending = self.pending
        if len(data) >= 12:
            qid = data[0] << 8 | data[1]
            waiting = pending.get(qid)
            if waiting is not None and not waiting[1].done():
                if matches(data, qid, waiting[0]):
                    del pending[qid]  # answered: a second reply finds no one
                    future = waiting[1]
                    hold = getattr(future, "reply_hold", None)
                    if hold is not None and hold not in held:
                        hold.hold()
                        held.append(hold)
                    future.set_result(data)  # its query runs on from here (a Handoff)
                elif waiting[2]:  # our ID, from the upstream's address, but not an answer to our question
                    del pending[qid]
                    waiting[1].set_exception(UpstreamError("reply that is not an answer to the question"))

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


CLOCK_SLACK = 0.001  # a deadline this close counts as reached (asyncio's own clock resolution)


class Deadlines:
    """The UDP queries' timeouts, kept by one timer instead of one per query.

    Every query of a forwarder waits the same `timeout`, so deadlines come in the order the
    queries were sent: a FIFO of (deadline, ticket) and one timer armed for the oldest one expire
    each query at its own deadline, as a timer per query would. A query's future is held by its
    ticket only while it waits (`done` drops it): the FIFO holds floats and ints alone, which the
    garbage collector stops tracking, so the answered queries it keeps until their deadline pass
    are never walked by a collection (holding the futures there promoted thousands of them into
    the old generations). A timer per query (`call_later` and its `cancel`) also cost more than
    an append and a dict entry (bench/missprofile.py: 0.53 against 0.35 us under load).

    The answered queries at the head of the FIFO are dropped as new ones come (`expire`), not
    all at the sweep: left to the sweep, the timer found `timeout` seconds of them there (~4,000
    at 2,000 qps) and held the loop ~2.3 ms every 2 s for it, a stall in the p99 at 20% load
    (issue #17, bench/results/p99_p99s11.md). A query still waiting at the head keeps the
    ones behind it until its own deadline, as before."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._queue: deque[tuple[float, int]] = deque()
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._tickets = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def expire(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[bytes]) -> int:
        """Fails `future` with TimeoutError `timeout` seconds from now unless `done` is called
        first with the ticket returned."""
        if loop is not self._loop:  # (a forwarder used from another loop: that loop's timer)
            self._reset()
            self._loop = loop
        self._tickets += 1
        ticket, queue, waiting = self._tickets, self._queue, self._waiting
        while queue and queue[0][1] not in waiting:  # the answered oldest, dropped a few at a time
            queue.popleft()
        waiting[ticket] = future
        queue.append((loop.time() + self.timeout, ticket))
        if self._timer is None:
            self._timer = loop.call_at(self._queue[0][0], self._sweep)
        return ticket

    def done(self, ticket: int) -> None:
        """The query no longer waits (answered, failed, or timed out)."""
        self._waiting.pop(ticket, None)

    def _sweep(self) -> None:
        self._timer = None
        loop, queue, waiting = self._loop, self._queue, self._waiting
        if loop is None:
            return
        now = loop.time() + CLOCK_SLACK  # loops round timers to their resolution (uvloop: 1 ms)
        while queue and (queue[0][0] <= now or queue[0][1] not in waiting):
            future = waiting.pop(queue.popleft()[1], None)
            if future is not None and not future.done():
                future.set_exception(TimeoutError(f"no answer in {self.timeout:g} s"))
        if queue:
            self._timer = loop.call_at(queue[0][0], self._sweep)

    def __len__(self) -> int:
        return len(self._queue)

    def _reset(self) -> None:
        """Forgets the queries of a loop no longer used (a forwarder outlives its loop in tests).
        Not called on `UpstreamForwarder.close`: queries still waiting then time out as before."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._waiting.clear()


class UpstreamHealth:
    """Which upstreams failed lately: one that timed out or refused is tried last until its
    backoff ends (1 s, doubling to 60 s while it keeps failing), so a dead first upstream costs
    one timeout, not one per query. A success clears it. Servers are never dropped: when every
    one is failing, all are still tried in the configured order."""

    FIRST_BACKOFF, MAX_BACKOFF = 1.0, 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._down: dict[Upstream, tuple[float, float]] = {}  # server -> (retry after, backoff)

    def order(self, servers: tuple[Upstream, ...]) -> tuple[Upstream, ...]:
        if not self._down:
            return servers
        now = self._clock()
        healthy = tuple(s for s in servers if s not in self._down or self._down[s][0] <= now)
        return healthy + tuple(s for s in servers if s not in healthy)

    def failed(self, server: Upstream) -> None:
        backoff = min(self.MAX_BACKOFF, self._down[server][1] * 2) if server in self._down else self.FIRST_BACKOFF
        self._down[server] = (self._clock() + backoff, backoff)

    def answered(self, server: Upstream) -> None:
        if self._down:
            self._down.pop(server, None)


class UpstreamForwarder:
    """Forwards over a small pool of UDP sockets per upstream, the way dnsmasq keeps its random
    ports: each socket has its own random source port and is replaced after `max_uses` queries, and
    every query gets a fresh random ID. A spoofed answer must guess the ID, which of the pool's
    ports is in use and the question; a socket per query would cost a socket, a connect and a
    reader registration each time, more than the rest of the forwarding.

    tls:// and https:// upstreams (steps/encrypted.py) keep one shared connection each and go
    through the same order, health and failover as plain ones.

    Held (`hold`/`release`: the model's batch holds it while it resumes its queries,
    `batching.MicroBatcher`), the UDP queries made meanwhile to one upstream all take ONE socket
    of its pool, drawn at random once for the batch, and leave together in one `sendmmsg` at the
    release (`udpbatch.send_all`); their answers come back on that socket, read in one wake-up,
    and their replies leave in one `sendmmsg` too (`handoff.ReplyHold`). Why (issue #17): at the
    peak a never-seen name's upstream `send` (a system call that, on loopback, runs the
    upstream's receive path and wakes it) and its answer's own wake-up and reply `sendmmsg` of one
    datagram were the largest items left on the miss path (bench/results/miss_miss11.md).
    What it costs the anti-spoofing defence: every query still has its own random ID, and the
    socket is still a random one of the pool, whose ports are random and replaced after
    `max_uses` queries; only the queries of one batch share it. A blind spoofer's chance per
    forged datagram is (queries waiting on the port it hits) / 65536 per port, so summed over the
    pool it is the same as with a socket per query; what changes is that the queries of one
    batch stand or fall together against a spoofer who somehow learnt their port (one on the path
    sees everything anyway). A socket may pass `max_uses` by up to a batch (checked when drawn).
    Not held (a query that did not wait for the model, a retry on the next upstream), a query
    takes a random socket of its own and is sent at once, as before."""

    def __init__(
        self,
        servers: Sequence[Upstream],
        timeout: float,
        pool: int = 32,
        max_uses: int = 256,
        encrypted: EncryptedUpstreamsConfig | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        if not servers:
            raise UpstreamError("no upstream servers configured")
        self.servers, self.timeout, self.pool_size, self.max_uses = tuple(servers), timeout, pool, max_uses
        self.encrypted, self._say = encrypted or EncryptedUpstreamsConfig(), say
        self._pools: dict[Endpoint, list[Channel]] = {}
        self._ids = RandomIds()
        self.health = UpstreamHealth()
        self._clients: dict[EncryptedUpstream, DotClient | DohClient] = {}
        bootstrap = self.encrypted.bootstrap
        self._bootstrap = Bootstrap(bootstrap, timeout) if bootstrap else None
        self._told: dict[Upstream, str] = {}  # the last problem said of each encrypted upstream
        self._deadlines = Deadlines(timeout)
        self._held = 0  # `hold` calls not yet released
        # while held: per upstream, the batch's socket, its queries as sent, and their futures
        self._outbox: dict[Endpoint, tuple[Channel, list[bytes], list[asyncio.Future[bytes]]]] = {}
        self._native = batched()
        self._reader = ReadBuffer(self._native)  # shared by the pool's sockets

    @classmethod
    def carried(
        cls,
        old: UpstreamForwarder | None,
        servers: Sequence[Upstream],
        timeout: float,
        encrypted: EncryptedUpstreamsConfig | None = None,
        say: Callable[[str], None] | None = None,
    ) -> UpstreamForwarder:
        """The running forwarder (its sockets and what it knows of the upstreams' health) across a
        reload that keeps the same upstreams; the one it replaces is closed by the pipeline."""
        encrypted = encrypted or EncryptedUpstreamsConfig()
        if old is not None and (old.servers, old.timeout, old.encrypted) == (tuple(servers), timeout, encrypted):
            return old
        return cls(servers, timeout, encrypted=encrypted, say=say)

    async def resolve(self, packet: bytes, question: bytes | None = None, head: QueryHead | None = None) -> bytes:
        """The first usable answer, with the client's ID restored; UpstreamError if none.
        `question`: the packet's raw question section, when the caller has already read it.
        `head`: the client's query, to pass the answer on as ours (`replies.forwarded`)."""
        return (await self.resolve_read(packet, question, head))[0]

    async def resolve_read(
        self, packet: bytes, question: bytes | None = None, head: QueryHead | None = None
    ) -> tuple[bytes, Message | None]:
        """`resolve`, and with `head` the answer's records as read on the way (for the answer
        cache: `Request.answer_read`), else None.

        The next upstream is tried at once (issue #14) after a reply that is malformed or cut
        mid-record, one with our ID that answers another question (while another upstream is
        left; the last one is waited for until its timeout), and after SERVFAIL or REFUSED; the
        last upstream's SERVFAIL or REFUSED is passed on."""
        question = question or question_section(packet)
        if question is None:
            raise UpstreamError("query has no well-formed question")
        problems, servers = [], self.health.order(self.servers)
        for index, server in enumerate(servers):
            more = index + 1 < len(servers)
            try:
                if isinstance(server, EncryptedUpstream):
                    answer = await asyncio.wait_for(self._encrypted(server, packet, question, head), self.timeout)
                else:
                    answer, wire, qid = await self._udp(server, packet, question, more)
                    if answer[2] & _TC:
                        answer = await asyncio.wait_for(self._tcp(server, wire, qid, question), self.timeout)
                answer, message = packet[:2] + answer[2:], None
                if head is not None:
                    read = replies.forwarded_read(answer, head, self._native)
                    if read is None:
                        raise UpstreamError("malformed reply")
                    answer, message = read
            except (TimeoutError, OSError, UpstreamError, asyncio.IncompleteReadError) as err:
                self.health.failed(server)
                problems.append(f"{server}: {type(err).__name__} {err}".strip())
                self._tell(server, err)
                continue
            rcode = answer[3] & RCODE_MASK
            if more and rcode in (SERVFAIL, REFUSED):
                if rcode == REFUSED:  # a server that refuses us is misconfigured; SERVFAIL may be one name's
                    self.health.failed(server)
                problems.append(f"{server}: {rcode_name(answer)}")
                continue
            self.health.answered(server)
            if server in self._told:
                del self._told[server]
                self._say_line(f"upstream {server} answers again")
            return answer, message
        raise UpstreamError("; ".join(problems))

    async def _encrypted(
        self, server: EncryptedUpstream, packet: bytes, question: bytes, head: QueryHead | None
    ) -> bytes:
        """One exchange with a tls:// or https:// upstream (bounded by the caller's timeout)."""
        client = self._client(server)
        query = padded(packet, head is not None) if self.encrypted.padding else packet
        if isinstance(client, DohClient):
            wire = b"\x00\x00" + query[2:]
            return await client.exchange(wire, lambda answer: matches(answer, 0, question))
        return await client.exchange(query, self._ids.draw, lambda answer, qid: matches(answer, qid, question))

    def _client(self, server: EncryptedUpstream) -> DotClient | DohClient:
        client = self._clients.get(server)
        if client is None:
            context, idle = tls_context(self.encrypted.ca_file), self.encrypted.idle_timeout
            if server.scheme == "tls":
                client = DotClient(server, context, self._lookup, idle, self.timeout)
            else:
                client = DohClient(server, context, self._lookup, idle, self.encrypted.doh_method, self.timeout)
            self._clients[server] = client
        return client

    async def _lookup(self, name: str) -> str:
        if self._bootstrap is None:
            raise UpstreamError(f"{name}: no address and no encrypted_upstreams.bootstrap to look it up")
        return await self._bootstrap.address(name)

    def _tell(self, server: Upstream, err: BaseException) -> None:
        """Says (once, until it changes) why an encrypted upstream failed: a refused certificate
        must be found in the log, not only in each query's log line."""
        if not isinstance(server, EncryptedUpstream):
            return
        # A timeout reads the same whether the query's or the handshake's fired first (both are
        # `timeout`): one line for a dead upstream, not two taking turns.
        problem = (
            f"no answer in {self.timeout:g} s" if isinstance(err, TimeoutError) else str(err) or type(err).__name__
        )
        if self._told.get(server) != problem:
            self._told[server] = problem
            self._say_line(f"upstream {server}: {problem}")

    def _say_line(self, text: str) -> None:
        if self._say is not None:
            self._say(text)

    def _channel(self, server: Endpoint) -> Channel:
        """A socket of the server's pool: a new one while the pool is not full, else a random one;
        a socket that has had its `max_uses` leaves the pool and a new port takes its place."""
        pool = self._pools.setdefault(server, [])
        if len(pool) < self.pool_size:
            pool.append(Channel(server, self._reader))
            return pool[-1]
        at = self._ids.draw() % len(pool)
        if pool[at].uses >= self.max_uses:
            used_up, pool[at] = pool[at], Channel(server, self._reader)
            used_up.retired = True
            self._close_when_idle(used_up)
        return pool[at]

    def hold(self) -> None:
        """From now to the matching `release`, UDP queries to one upstream share one socket and
        are sent together at the release (see the class docstring)."""
        self._held += 1

    def release(self) -> None:
        """Ends a `hold`; at the last one, sends each upstream's batch (one `sendmmsg` each)."""
        self._held -= 1
        if self._held or not self._outbox:
            return
        outbox, self._outbox = self._outbox, {}
        for channel, wires, futures in outbox.values():
            self._send_batch(channel, wires, futures)

    def _send_batch(self, channel: Channel, wires: list[bytes], futures: list[asyncio.Future[bytes]]) -> None:
        """Sends a batch; a datagram the kernel refuses fails its own query (as its own `send`
        raising would have), and the rest still go."""
        at, native = 0, self._native
        while at < len(wires):
            at, err = send_all(channel.sock, wires, at, native)
            if at < len(wires):
                if not futures[at].done():
                    futures[at].set_exception(OSError(err, os.strerror(err)))  # (BlockingIOError for EAGAIN)
                at += 1

    def _batch_channel(self, server: Endpoint) -> tuple[Channel, list[bytes], list[asyncio.Future[bytes]]]:
        """The held batch's socket for `server` (drawn once per batch) and its queue."""
        batch = self._outbox.get(server)
        if batch is None:
            batch = self._outbox[server] = (self._channel(server), [], [])
        return batch

    @staticmethod
    def _close_when_idle(channel: Channel) -> None:
        if channel.retired and not channel.pending:
            channel.close()

    async def _udp(
        self, server: Endpoint, packet: bytes, question: bytes, fail_fast: bool = False
    ) -> tuple[bytes, bytes, int]:
        """One UDP exchange: (answer, the query as sent, its ID). Held, the query joins the
        batch's socket and is sent at the release (see the class docstring)."""
        batch = self._batch_channel(server) if self._held else None
        channel = self._channel(server) if batch is None else batch[0]
        qid = self._ids.draw()
        while qid in channel.pending:
            qid = self._ids.draw()
        wire = struct.pack("!H", qid) + packet[2:]
        future: asyncio.Future[bytes] = Handoff(loop=channel.loop)
        channel.pending[qid] = (question, future, fail_fast)
        channel.uses += 1
        ticket = self._deadlines.expire(channel.loop, future)
        try:
            if batch is None:
                channel.sock.send(wire)
            else:
                batch[1].append(wire)
                batch[2].append(future)
            return await future, wire, qid
        finally:
            # a reply after this (a late one) finds no one and is dropped; the reader took out the
            # one it answered, and its ID may already be another query's
            if channel.pending.get(qid, _NOT_WAITING)[1] is future:
                del channel.pending[qid]
            self._deadlines.done(ticket)
            self._close_when_idle(channel)

    def close(self) -> None:
        """Closes every pooled socket and encrypted connection (a reload that replaced this
        forwarder, or shutdown)."""
        for pool in self._pools.values():
            for channel in pool:
                channel.close()
        self._pools.clear()
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self._bootstrap is not None:
            self._bootstrap.close()

    async def _tcp(self, server: Endpoint, wire: bytes, qid: int, question: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()
            while True:  # a well-behaved server sends one reply; skip anything that does not match
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                answer = await reader.readexactly(size)
                if matches(answer, qid, question):
                    return answer
        finally:
            writer.close()


class Bootstrap:
    """The addresses of encrypted upstreams' names, asked of the plain `bootstrap` resolvers (never
    of ourselves: a resolver that needs itself to reach its upstream cannot start) and kept for
    the answer's TTL, at least a minute and at most a day. IPv4 first, then IPv6."""

    MIN_TTL, MAX_TTL = 60.0, 86_400.0

    def __init__(
        self, servers: Sequence[Endpoint], timeout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._forwarder = UpstreamForwarder(servers, timeout)
        self._clock = clock
        self._known: dict[str, tuple[str, float]] = {}  # name -> (address, until)

    async def address(self, name: str) -> str:
        known = self._known.get(name)
        if known is not None and known[1] > self._clock():
            return known[0]
        for qtype in ("A", "AAAA"):
            try:
                answer = DNSRecord.parse(await self._forwarder.resolve(DNSRecord.question(name, qtype).pack()))
            except DNSError as err:
                raise UpstreamError(f"bootstrap: {name}: {err}") from None
            found = [rr for rr in answer.rr if rr.rtype == getattr(QTYPE, qtype)]
            if found:
                ttl = min(self.MAX_TTL, max(self.MIN_TTL, found[0].ttl))
                self._known[name] = (str(found[0].rdata), self._clock() + ttl)
                return str(found[0].rdata)
        raise UpstreamError(f"bootstrap: no address for {name}")

    def close(self) -> None:
        self._forwarder.close()


class UpstreamStep:
    """The last link: whatever reaches it is forwarded."""

    def __init__(self, forwarder: UpstreamForwarder) -> None:
        self._forwarder = forwarder

    async def __call__(self, request: Request) -> Reply:
        started = time.perf_counter()
        try:
            # The wire reader's question is the packet's own bytes; an unusual query that dnslib
            # parsed (request.parsed) is checked by the forwarder itself.
            if request.head.qtype == ANY:
                return replies.minimal_any(request.head)
            question = request.head.question if request.parsed is None else None
            answer, message = await self._forwarder.resolve_read(request.packet, question, request.head)
        except UpstreamError as err:
            request.upstream_error, request.upstream_rcode = str(err), "SERVFAIL"
            return replies.empty(request.head, SERVFAIL)
        finally:
            request.upstream_seconds = time.perf_counter() - started
        request.upstream_rcode = rcode_name(answer)
        if message is not None:
            request.answer_read = answer, message
        return answer
