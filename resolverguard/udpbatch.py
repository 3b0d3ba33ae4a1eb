"""The UDP listener's socket, read and written many datagrams at a time (issue #17).

asyncio's datagram transport (and uvloop's) makes one `recvfrom` per datagram and one `sendto` per
reply, and each reply is sent the moment it is ready, between the Python work of other queries: on
never-seen names the reply's `sendto` alone was a fifth of the server's samples
(bench/results/miss_spy_handoff.md), since on loopback a send runs the receiver's side of the stack
and wakes the client in the sender's own system call. Here the loop's reader callback reads up to
`BATCH` datagrams with one `recvmmsg`, and the replies it makes are sent together with one `sendmmsg`
(`resolverguard/_udpbatch.c`, Linux; elsewhere, without the compiled module, or with
RESOLVERGUARD_NO_MMSG set, the same loop one system call per datagram). Measured (bench/results/
miss_mmsg8.md): the hits' CPU per query 10-40% lower at the peak; the misses' within the noise (a
miss is ~100 us of Python, of which these system calls are a few).

Which replies are batched, so that batching costs no latency:
- the replies the read callback's own datagrams make at once (hits, blocks, refusals) are queued
  and sent together at its end;
- the replies of the queries the upstream's reader resumes (`resolverguard.handoff`), while it
  reads the answers that are there, are queued between its `hold` and `release` and sent together
  at its end (one answer per wake-up at light load: sent right after its own work);
- a reply made anywhere else (a query resumed by the model's batch) is sent at once, as the
  transport did. Queued for a `call_soon` flush
  instead, it waited behind whatever the ready queue held before it, the model's next batch
  included: at 20% load the misses' added p99 was worse in 9 of 11 paired runs
  (bench/results/miss_mmsg8.md), for a saving that only shows at the peak.
A send buffer that is full (EAGAIN) keeps the rest queued until the socket is writable again; past
`max_queued` the oldest are dropped and counted (`dropped`). A datagram the kernel refuses (an
unreachable address) is counted in `failed` and the others still go; an error on the socket when
reading (as an ICMP error reported late) is ignored, as asyncio's `error_received` was.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Any

try:
    from resolverguard._udpbatch import recv_connected, recv_many, send_connected, send_many
except ImportError:  # no C compiler at install time (setup.py), or not Linux: one system call per datagram
    recv_many = send_many = send_connected = recv_connected = None

# Datagrams read per wake-up. 64, not libuv's 32 (uvloop's transport): at the peak on never-seen names
# (with a model batch's upstream queries sharing a socket, steps/upstream.py) `workers: 2` answered
# 17.5k against 14.0k qps at 32 (bench/miss_cpu.py, bench/results/miss_miss11.md): bigger model
# batches, fewer loop turns per query. At light load a read holds a datagram or two either way.
BATCH = 64
SLOT = 4096  # bytes per datagram read; longer ones are dropped (counted): no DNS query over UDP is that long
MAX_QUEUED = 8192  # replies kept while the send buffer is full (the server's own max_inflight default)
NO_MMSG = "RESOLVERGUARD_NO_MMSG"  # set (not "" or "0"): the one-call-per-datagram path, even where C is built

Address = Any  # (host, port) or (host, port, flowinfo, scope_id), as the socket module writes them; None: connected
Datagrams = list[tuple[bytes, Address]]


def batched() -> bool:
    """Do recvmmsg/sendmmsg serve here (the compiled module is there, on Linux, and not turned off)?"""
    return recv_many is not None and os.environ.get(NO_MMSG, "") in ("", "0")


def send_all(
    sock: socket.socket, datagrams: list[bytes], start: int = 0, native: bool | None = None
) -> tuple[int, int]:
    """Sends datagrams[start:] on a connected non-blocking socket, in order, with one `sendmmsg` per
    64 (`_udpbatch.send_connected`) or one `send` each (`native=False`, or without the C module):
    (the index of the first datagram not sent, its errno), or (len(datagrams), 0) when all went.
    Each datagram's fate is known, as with a `send` each (the upstream forwarder's batches,
    `steps.upstream.UpstreamForwarder.hold`, fail that one query and send the rest)."""
    if batched() if native is None else native and send_connected is not None:
        return send_connected(sock.fileno(), datagrams, start)  # type: ignore[no-any-return]
    for at in range(start, len(datagrams)):
        try:
            sock.send(datagrams[at])
        except OSError as err:
            return at, err.errno or 0
    return len(datagrams), 0


ANY_SIZE = 65536  # bytes per datagram read by `receive_all`: any UDP datagram fits


def receive_all(
    sock: socket.socket, buffer: bytearray, count: int, native: bool | None = None
) -> tuple[list[bytes], OSError | None]:
    """Up to `count` datagrams waiting on a connected non-blocking socket, with one `recvmmsg`
    (`_udpbatch.recv_connected`, into `buffer` of count * ANY_SIZE bytes) or one `recv` each
    (`native=False`, or without the C module), and the error the socket reported (an ICMP port
    unreachable), if any: before them from the C module (the kernel keeps an error met after a
    datagram for the next call), wherever it came in the loop of `recv`s."""
    if batched() if native is None else native and recv_connected is not None:
        try:
            return recv_connected(sock.fileno(), buffer, ANY_SIZE, count), None
        except OSError as err:
            return [], err
    out: list[bytes] = []
    for _ in range(count):
        try:
            out.append(sock.recv(ANY_SIZE))
        except BlockingIOError:
            break
        except OSError as err:
            return out, err
    return out, None


class DatagramIO:
    """Reads and writes one non-blocking UDP socket in batches: the C module's recvmmsg/sendmmsg, or
    the same contract in Python, one system call per datagram (`native=False`)."""

    def __init__(self, sock: socket.socket, batch: int = BATCH, native_io: bool | None = None) -> None:
        self.sock, self.batch, self.fd, self.family = sock, batch, sock.fileno(), int(sock.family)
        self.native = batched() if native_io is None else native_io and recv_many is not None
        self._buffer = bytearray(SLOT * batch) if self.native else bytearray()

    def receive(self) -> tuple[Datagrams, int]:
        """(the datagrams waiting, up to `batch`; how many were too long and left out). OSError
        when the socket reports an error before any datagram."""
        if self.native:
            return recv_many(self.fd, self._buffer, SLOT, self.batch)  # type: ignore[no-any-return]
        out: Datagrams = []
        too_large = 0
        for _ in range(self.batch):
            try:
                data, address = self.sock.recvfrom(65535)
            except BlockingIOError:
                break
            except OSError:
                if out:
                    break  # (the error is the next call's, as recvmmsg leaves it)
                raise
            if len(data) > SLOT:
                too_large += 1
            else:
                out.append((data, address))
        return out, too_large

    def send(self, items: Datagrams) -> tuple[int, int]:
        """Sends `items` in order: (how many are done, sent or failed; how many failed). Fewer than
        all are done only when the send buffer is full."""
        if self.native:
            return send_many(self.fd, self.family, items, 0)  # type: ignore[no-any-return]
        failed, sock = 0, self.sock
        for at, (data, address) in enumerate(items):
            try:
                if address is None:  # (the connected peer, as the C module's None)
                    sock.send(data)
                else:
                    sock.sendto(data, address)
            except BlockingIOError:
                return at, failed
            except (OSError, TypeError, ValueError, OverflowError):  # refused, or not an address
                failed += 1
        return len(items), failed


class UdpListener:
    """One UDP listening socket served by the loop's reader callback (see the module's docstring).
    `on_datagram(listener, packet, address)` is called for each datagram; it answers with
    `listener.sendto`, at once or later, as with an asyncio datagram transport."""

    def __init__(
        self,
        sock: socket.socket,
        on_datagram: Callable[[UdpListener, bytes, Address], None],
        batch: int = BATCH,
        max_queued: int = MAX_QUEUED,
        native_io: bool | None = None,
    ) -> None:
        sock.setblocking(False)
        self.sock, self._on_datagram, self.max_queued = sock, on_datagram, max_queued
        self.io = DatagramIO(sock, batch, native_io)
        self._loop = asyncio.get_running_loop()
        self._queue: Datagrams = []
        self._reading = self._writable_wait = self._closed = False
        self._held = 0  # `hold` calls not yet released (handoff.ReplyHold: the upstream's reader)
        self.too_large = self.failed = self.dropped = 0  # datagrams: left out, refused by the kernel, not sent
        self._loop.add_reader(sock.fileno(), self._readable)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The socket and its address, as a transport's `get_extra_info` says them."""
        if name == "socket":
            return self.sock
        if name == "sockname":
            return self.sock.getsockname()
        return default

    def is_closing(self) -> bool:
        return self._closed

    def sendto(self, data: bytes, address: Address) -> None:
        """Sends one reply: with the others of the read callback that made it, else at once (see
        the module); behind the ones already waiting for room in the send buffer."""
        if self._closed:
            return
        queue = self._queue
        if self._reading or self._held or queue:
            queue.append((data, address))
            if len(queue) > self.max_queued + self.max_queued // 4:  # (in steps: each trim moves the list)
                self._trim()
            return
        done, failed = self.io.send([(data, address)])
        self.failed += failed
        if not done:  # the send buffer is full
            self._queue.append((data, address))
            self._wait_for_room()

    def _readable(self) -> None:
        try:
            datagrams, too_large = self.io.receive()
        except OSError:  # an error the socket reports (ICMP for an earlier reply): nothing to answer
            return
        self.too_large += too_large
        self._reading = True
        try:
            for data, address in datagrams:
                try:
                    self._on_datagram(self, data, address)
                except Exception as err:  # noqa: BLE001 - one datagram's bug must not stop the reading
                    self._loop.call_exception_handler({"message": "a UDP datagram failed", "exception": err})
        finally:
            self._reading = False
        if self._queue and not self._writable_wait:
            self.flush()

    def hold(self) -> None:
        """Keeps the replies sent from now to the matching `release` (handoff.ReplyHold), as for
        the read callback's own datagrams."""
        self._held += 1

    def release(self) -> None:
        """Ends a `hold`; at the last one, sends what was kept (one `sendmmsg`)."""
        self._held -= 1
        if not self._held and self._queue and not self._writable_wait:
            self.flush()

    def flush(self) -> None:
        """Sends what is queued; what the send buffer cannot take now waits for it to drain."""
        queue = self._queue
        if not queue or self._closed:
            return
        done, failed = self.io.send(queue)
        self.failed += failed
        if done >= len(queue):
            queue.clear()
            if self._writable_wait:
                self._writable_wait = False
                self._loop.remove_writer(self.sock.fileno())
            return
        del queue[:done]
        self._trim()
        self._wait_for_room()

    def _trim(self) -> None:
        """A send buffer that stays full (a client that does not read its replies): the oldest
        replies beyond `max_queued` are dropped, and counted."""
        over = len(self._queue) - self.max_queued
        if over > 0:
            self.dropped += over
            del self._queue[:over]

    def _wait_for_room(self) -> None:
        if not self._writable_wait:
            self._writable_wait = True
            self._loop.add_writer(self.sock.fileno(), self.flush)

    def close(self) -> None:
        """Stops reading; replies still queued get one last try, then the socket is closed."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        fd = self.sock.fileno()
        self._loop.remove_reader(fd)
        if self._writable_wait:
            self._loop.remove_writer(fd)
        self.sock.close()
