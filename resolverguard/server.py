"""Sockets: UDP and TCP listeners that hand each query to the chain. No policy lives here.

Each query runs in its own task, so a slow upstream answer never stalls other clients. Anything
that goes wrong inside the chain becomes SERVFAIL for that one query; a packet we cannot parse gets
FORMERR (or is dropped when even the header is missing); the listener itself never dies of input.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
import sys
import time
import traceback
import types
from collections.abc import Callable, Coroutine, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from resolverguard.addresses import IPNetwork, client_ip, within
from resolverguard.chain import Gate, Next, Request
from resolverguard.config import Endpoint, Limits
from resolverguard.handoff import Handoff, ReplyHold
from resolverguard.proxyheader import FIXED, ProxyHeader, header_size, read_proxy_header
from resolverguard.replies import badvers, header_only, truncated
from resolverguard.reuseport import steer_by_client
from resolverguard.udpbatch import Address, UdpListener
from resolverguard.wire import IGNORE, NOTIMP, OPCODE_QUERY, REFUSED, SERVFAIL, parse_query, read_unusual

if TYPE_CHECKING:
    from resolverguard.shortcut import ReplyShortcut

UDP_DEFAULT_SIZE = 512
UDP_MAX_SIZE = 4096  # clamp of the client's advertised EDNS size (DNS flag day 2020 suggests 1232)
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024  # absorbs bursts so one client's burst does not drop another's query
TCP_MAX_PIPELINE = 32  # queries in flight on one TCP connection; the reader waits beyond that
BUG_REPORT_SECONDS = 10.0  # at most one traceback per this many seconds


class ReplySender(Protocol):
    """Where a UDP query's reply goes: the listener (`udpbatch.UdpListener`) or, in benches and
    tests that hand datagrams in themselves, anything with a transport's `sendto`."""

    def sendto(self, data: bytes, address: Any) -> None: ...

    def is_closing(self) -> bool: ...


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], waiting_on: Any) -> Generator[Any, Any, None]:
    """Hands the future a coroutine first waited on to the task, and drives the coroutine on."""
    while True:
        try:
            value = yield waiting_on
        except BaseException as err:  # cancellation and errors go into the coroutine, as a task would
            try:
                waiting_on = coro.throw(err)
            except StopIteration:
                return
        else:
            try:
                waiting_on = coro.send(value)
            except StopIteration:
                return


async def finish(coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """The rest of a coroutine that was started eagerly, as a task.

    Most queries never wait (answer-cache hits, blocks, cached verdicts): run to completion in the
    read callback they cost no task and no extra loop turn. Only a query that must wait (for the
    model's batch, for an upstream) becomes a task, from the point where it first waits; what it
    waited on is passed to the task unchanged, as asyncio's own eager tasks (Python 3.12) do."""
    await _resume(coro, waiting_on)


class Resumed:
    """The rest of a UDP query's coroutine after it first waits, driven from the done callback of
    what it waits on, without a Task.

    `finish` (a Task) cost ~8 us per waiting query against ~2.6 here (bench/missprofile.py, under
    load): the Task, its registration in asyncio's weak set of all tasks, `ensure_future`'s checks,
    a wrapper frame per resume, and its done callback's own loop turn; a never-seen name's miss is
    ~60-100 us of Python, most of it the forwarding. What a Task does that matters here is small:
    resume the coroutine when the future it yielded is done (`await future` reads the result
    itself), or on the next loop turn after a bare `yield`. A `handoff.Handoff` (the model's
    batch, the upstream's answer) resumes it itself, in the callback that settles it. The query's
    coroutine never raises (`DnsServer.answer` turns errors into SERVFAIL); anything that
    escapes anyway goes to the loop's exception handler, as an unretrieved Task exception would.
    Nothing on the UDP path needs `asyncio.current_task()` (None here)."""

    __slots__ = ("_coro", "_done", "_hold")

    def __init__(
        self, coro: Coroutine[Any, Any, None], done: Callable[[], None], hold: ReplyHold | None = None
    ) -> None:
        self._coro, self._done, self._hold = coro, done, hold  # `hold`: where its reply goes (a listener)

    def wait(self, waiting_on: Any) -> None:
        """Resumes the coroutine once `waiting_on` (what its `send` yielded) allows."""
        if type(waiting_on) is Handoff:  # resumed by whoever settles it, in that same callback
            waiting_on._asyncio_future_blocking = False
            waiting_on.direct = self._step
            waiting_on.reply_hold = self._hold
        elif getattr(waiting_on, "_asyncio_future_blocking", False):  # `await future` yields the future
            waiting_on._asyncio_future_blocking = False
            waiting_on.add_done_callback(self._step)
        elif waiting_on is None:  # a bare yield (`asyncio.sleep(0)`): the next loop turn
            asyncio.get_running_loop().call_soon(self._step, None)
        else:
            self._advance(RuntimeError(f"a query's coroutine yielded {waiting_on!r}, not a future"))

    def _step(self, _: object) -> None:
        self._advance(None)

    def _advance(self, err: BaseException | None) -> None:
        """Sends the coroutine on (or throws `err` into it, as a Task does with what it cannot
        wait on) up to its next wait, or its end."""
        try:
            waiting_on = self._coro.send(None) if err is None else self._coro.throw(err)
        except StopIteration:
            self._done()
            return
        except BaseException as escaped:  # noqa: BLE001 - reported, as asyncio reports a Task's
            self._done()
            if isinstance(escaped, (KeyboardInterrupt, SystemExit)):
                raise
            asyncio.get_running_loop().call_exception_handler(
                {"message": "a UDP query failed outside its error handling", "exception": escaped}
            )
            return
        self.wait(waiting_on)


class DnsServer:
    """Listens on every endpoint (UDP and TCP on the same port). `chain` may be replaced at any
    time (reload): each query uses the chain that was current when it arrived."""

    def __init__(
        self,
        chain: Next,
        endpoints: Iterable[Endpoint],
        limits: Limits | None = None,
        gates: Sequence[Gate] = (),
        reuse_port: bool = False,
        stderr: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        proxies: Sequence[IPNetwork] = (),
        steer: int = 0,
        shortcut: ReplyShortcut | None = None,
    ) -> None:
        """`proxies`: load balancers whose queries carry a PROXY v2 header naming the real client
        (resolverguard.proxyheader); a query from one of them without a valid header is dropped.
        `steer`: with reuse_port, the number of processes sharing the ports; when over 1, each
        client's queries are steered to one of them (resolverguard.reuseport).
        `shortcut`: answers exact repeats of cached answers before the chain (resolverguard.shortcut);
        replaced with the chain on a reload."""
        self.shortcut = shortcut
        self.chain, self._endpoints, self._stderr, self._clock = chain, tuple(endpoints), stderr, clock
        self.limits, self.gates, self.reuse_port = limits or Limits(), tuple(gates), reuse_port
        self.proxies = tuple(proxies)
        self.proxy_errors = 0  # queries from a proxy without a valid PROXY v2 header (dropped)
        self.steer = steer if reuse_port else 0
        self.shed = 0  # queries answered SERVFAIL at once because max_inflight was reached
        self._inflight = 0  # UDP queries waiting (for an upstream, the model's batch), see `Resumed`
        self._drained: asyncio.Future[None] | None = None  # set when `_inflight` drops to 0 (stop)
        self._udp: list[UdpListener] = []
        self._tcp: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._tcp_clients: dict[str, int] = {}  # open TCP connections per client address
        self._bug_reported: float | None = None  # when a traceback was last printed
        self._bugs_unreported = 0
        self.bound: list[tuple[str, int]] = []

    async def start(self) -> None:
        for ep in self._endpoints:
            # Port 0 (tests, ad-hoc runs) picks a UDP port first; if TCP finds that number taken,
            # try another pair rather than fail, as a fixed port would.
            for attempt in range(20):
                try:
                    await self._listen(ep)
                    break
                except OSError as err:
                    if ep.port != 0 or err.errno != errno.EADDRINUSE or attempt == 19:
                        raise

    async def _listen(self, ep: Endpoint) -> None:
        family = socket.AF_INET6 if ":" in ep.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((ep.host, ep.port))
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            transport = UdpListener(sock, self._datagram)
        except BaseException:
            sock.close()
            raise
        port = sock.getsockname()[1]
        try:
            tcp = await asyncio.start_server(self._serve_tcp, ep.host, port, family=family, reuse_port=self.reuse_port)
        except OSError:
            transport.close()
            raise
        if self.steer > 1:
            for each in (sock, *tcp.sockets):
                self._steer_clients(each)
        self._udp.append(transport)
        self._tcp.append(tcp)
        self.bound.append((ep.host, port))

    def _steer_clients(self, sock: Any) -> None:
        """One client, one worker (resolverguard.reuseport); where the kernel refuses, its own
        spreading stays, and the user is told: the client watch needs the steering."""
        try:
            steer_by_client(sock, self.steer)
        except OSError as err:
            self._say(f"cannot steer each client to one worker ({err.strerror or err}): queries are spread by port")

    def _say(self, text: str) -> None:
        print(f"resolverguard: {text}", file=self._stderr or sys.stderr, flush=True)

    async def stop(self, grace: float = 5.0) -> None:
        """Stops listening, then waits (bounded) for queries already in flight."""
        for transport in self._udp:
            transport.close()
        for server in self._tcp:
            server.close()
        if self._inflight:
            self._drained = asyncio.get_running_loop().create_future()
            await asyncio.wait((self._drained,), timeout=grace)
        for connection in list(self._connections):  # idle keep-alive connections: close them now
            connection.cancel()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=grace)

    @property
    def inflight(self) -> int:
        """UDP queries started and not answered yet (they wait for an upstream or the model)."""
        return self._inflight

    def _resumed_done(self) -> None:
        self._inflight -= 1
        if not self._inflight and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def turned_away(self, packet: bytes, address: str) -> tuple[bool, bytes | None]:
        """Asks the gates (ACL, rate limit) about the source address: (refused?, reply to send)."""
        for gate in self.gates:
            if not gate.admit(address):
                return True, None if gate.refusal.drop else header_only(packet, REFUSED)
        return False, None

    def from_proxy(self, address: str) -> bool:
        ip = client_ip(address)
        return ip is not None and within(ip, self.proxies)

    def _datagram(self, listener: UdpListener, packet: bytes, address: Address) -> None:
        self.accept_udp(listener, packet, address[:2])

    def accept_udp(self, transport: ReplySender, packet: bytes, client: tuple[str, int]) -> None:
        """Starts answering one datagram, or sheds it with SERVFAIL when too many are in flight.
        From a proxy, the client is the one its header names; the reply goes to the proxy."""
        sender = client
        if self.proxies and self.from_proxy(client[0]):
            header = read_proxy_header(packet)
            if header is None:
                self.proxy_errors += 1
                return
            packet = packet[header.size :]
            client = header.client or client
        refused, reply = self.turned_away(packet, client[0])
        if refused:
            if reply is not None:
                transport.sendto(reply, sender)
            return
        if self._inflight >= self.limits.max_inflight:
            self.shed += 1
            reply = header_only(packet, SERVFAIL)
            if reply is not None:
                transport.sendto(reply, sender)
            return
        shortcut = self.shortcut
        if shortcut is not None:
            reply = shortcut.reply(packet, client)
            if reply is not None:
                transport.sendto(reply, sender)
                return
        answering = self._answer_udp(transport, packet, client, sender)
        try:  # run it here, in the read callback, until it first has to wait (see `Resumed`)
            waiting_on = answering.send(None)
        except StopIteration:
            return  # answered without waiting (a cache hit, a block): nothing to keep
        self._inflight += 1
        Resumed(answering, self._resumed_done, transport if type(transport) is UdpListener else None).wait(waiting_on)

    async def answer(self, packet: bytes, client: tuple[str, int], transport: str) -> bytes | None:
        """The reply to one packet, or None to stay silent. Never raises: a bug anywhere below
        becomes SERVFAIL for this one query and a traceback on stderr."""
        try:
            return await self._answer(packet, client, transport)
        except Exception:  # noqa: BLE001 - one query's bug must not take the listener down
            self._report_bug()
            return header_only(packet, SERVFAIL)

    def _report_bug(self) -> None:
        """The current exception's traceback, at most one per BUG_REPORT_SECONDS: a bug that every
        query hits must not flood stderr (issue #14); the ones left out are counted in the next."""
        now = self._clock()
        if self._bug_reported is not None and now - self._bug_reported < BUG_REPORT_SECONDS:
            self._bugs_unreported += 1
            return
        out = self._stderr or sys.stderr
        if self._bugs_unreported:
            print(f"resolverguard: {self._bugs_unreported} more failed queries (tracebacks left out)", file=out)
        traceback.print_exc(file=out)
        self._bug_reported, self._bugs_unreported = now, 0

    async def _answer(self, packet: bytes, client: tuple[str, int], transport: str) -> bytes | None:
        started, chain, shortcut = self._clock(), self.chain, self.shortcut if transport == "udp" else None
        head, parsed = parse_query(packet), None
        if head is None:  # unusual: the full parser decides between an answer and FORMERR
            unusual = read_unusual(packet)
            if isinstance(unusual, int):
                return None if unusual == IGNORE else header_only(packet, unusual)
            head, parsed = unusual
        if head.is_response:
            return None
        if head.opcode != OPCODE_QUERY:
            return header_only(packet, NOTIMP)
        if head.edns_version:  # before any step: the same answer for fresh, cached and blocked names
            return badvers(head)
        max_size = max(UDP_DEFAULT_SIZE, min(head.udp_size, UDP_MAX_SIZE)) if transport == "udp" else 65535
        request = Request(head, packet, client, transport, started, max_size, parsed=parsed)
        try:
            reply = await chain(request)
        except Exception:  # noqa: BLE001 - one query's bug must not take the listener down
            self._report_bug()
            return header_only(packet, SERVFAIL)
        if reply is not None and len(reply) > max_size:
            reply = truncated(reply, request.head)
        if shortcut is not None:
            shortcut.learn(request, reply)
        return reply

    async def _answer_udp(
        self, transport: ReplySender, packet: bytes, client: tuple[str, int], sender: tuple[str, int]
    ) -> None:
        reply = await self.answer(packet, client, "udp")
        if reply is not None and not transport.is_closing():
            transport.sendto(reply, sender)

    def admits_connection(self, address: str) -> bool:
        """May this address open one more TCP connection? Global and per-client slots, and the
        gates that decide per client rather than per message (the ACL): a refused client must not
        hold a slot until its idle timeout (issue #14: refused connections locked allowed ones out)."""
        if len(self._connections) >= self.limits.max_tcp_connections:
            return False
        if self._tcp_clients.get(address, 0) >= self.limits.max_tcp_per_client:
            return False
        return all(gate.admit(address) for gate in self.gates if gate.at_accept)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        peer = writer.get_extra_info("peername")  # None when the client reset before we got here
        client: tuple[str, int] | None = peer[:2] if peer else None
        if client is not None and self.proxies and self.from_proxy(client[0]):
            client = await self._proxied_client(reader, client)
        if me is None or client is None or not self.admits_connection(client[0]):
            writer.close()
            return
        self._connections.add(me)
        self._tcp_clients[client[0]] = self._tcp_clients.get(client[0], 0) + 1
        me.add_done_callback(lambda _: self._tcp_closed(me, client[0]))
        idle = self.limits.tcp_idle_timeout
        lock, slots = asyncio.Lock(), asyncio.Semaphore(TCP_MAX_PIPELINE)
        pending: set[asyncio.Task[None]] = set()

        async def one(packet: bytes) -> None:
            try:
                refused, reply = self.turned_away(packet, client[0])
                if not refused:
                    reply = await self.answer(packet, client, "tcp")
                if reply is None:
                    return
                async with lock:
                    if writer.is_closing():
                        return
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    # A client that stops reading blocks this write: the idle timeout holds here too
                    # (issue #14: such clients kept their slot for minutes).
                    await asyncio.wait_for(writer.drain(), idle)
            except TimeoutError:
                writer.transport.abort()
            except (ConnectionError, OSError, RuntimeError):  # uvloop: RuntimeError once the handle is closed
                pass
            finally:
                slots.release()

        try:
            while not writer.is_closing():
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), idle))[0]
                packet = await asyncio.wait_for(reader.readexactly(size), idle)
                await slots.acquire()
                if writer.is_closing():
                    break
                task = asyncio.ensure_future(one(packet))
                pending.add(task)
                task.add_done_callback(pending.discard)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            if pending:
                await asyncio.wait(pending, timeout=idle)
            for task in pending:  # still not done after another idle timeout: give up on them
                task.cancel()
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                await writer.wait_closed()

    async def _proxied_client(self, reader: asyncio.StreamReader, proxy: tuple[str, int]) -> tuple[str, int] | None:
        """The client a proxy's connection speaks for (its PROXY v2 header), or None when the
        header is missing, malformed or slower than the idle timeout (the connection is closed)."""
        idle = self.limits.tcp_idle_timeout
        header: ProxyHeader | None = None
        try:
            fixed = await asyncio.wait_for(reader.readexactly(FIXED), idle)
            size = header_size(fixed)
            if size is not None:
                header = read_proxy_header(fixed + await asyncio.wait_for(reader.readexactly(size - FIXED), idle))
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            header = None
        if header is None:
            self.proxy_errors += 1
            return None
        return header.client or proxy

    def _tcp_closed(self, task: asyncio.Task[None], address: str) -> None:
        self._connections.discard(task)
        left = self._tcp_clients.get(address, 0) - 1
        if left > 0:
            self._tcp_clients[address] = left
        else:
            self._tcp_clients.pop(address, None)
