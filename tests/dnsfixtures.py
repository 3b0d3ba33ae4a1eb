"""Real DNS parts for the tests: a small upstream server and an in-process resolverguard.

The upstream is a plain socket server (UDP + TCP on 127.0.0.1, ephemeral port) answering fixed
records with dnslib. Its knobs reproduce the faults a forwarder meets: never answering, truncating
every UDP answer, sending a forged answer with a wrong ID before the real one, and the hostile or
broken answers of issue #14: huge answers, replies cut mid-record, SERVFAIL/REFUSED, records out of
the question's bailiwick, TTLs >= 2^31, authoritative-server flags (AA=1, RA=0), slow answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO, TypeVar

from dnslib import AAAA, EDNS0, MX, QTYPE, RCODE, RR, SOA, A, DNSError, DNSRecord

from resolverguard.config import Config, Endpoint, QueryLogConfig
from resolverguard.model import Scorer, load_model
from resolverguard.service import Service

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
DIGITS_MODEL = DATA / "digits.tflite"
UPSTREAM_A = "192.0.2.10"
T = TypeVar("T")


@dataclass
class Upstream:
    """A test upstream; `queries` counts what it received."""

    silent: bool = False
    truncate_udp: bool = False
    forge_first: bool = False  # send an answer with the wrong ID before the real one
    lie_first: bool = False  # send an answer for another question (same ID) before the real one
    garbage_first: bool = False  # send bytes that are not DNS (same ID) before the real one
    only_lies: bool = False  # never send the real answer
    big: bool = False  # pad answers with many A records (over 512 bytes)
    missing: frozenset[str] = frozenset()  # names (and their subdomains) answered NXDOMAIN, besides "nx..."
    tld_soa: bool = False  # NXDOMAIN with the SOA of the name's TLD, as the Internet answers (cacheable)
    huge: bool = False  # ~4 KB answers (250 A records): the amplification/truncation case
    rcode: int | None = None  # answer every query with this rcode and no records (SERVFAIL, REFUSED)
    cut: bool = False  # send the reply cut in the middle of its last record
    out_of_bailiwick: bool = False  # add `victim.com A 6.6.6.6` to the answer and additional sections
    ttl: int = 300  # TTL of the address records
    soa_ttl: int = 60  # TTL of the NXDOMAIN answer's SOA record
    soa_minimum: int = 30  # its MINIMUM field
    aa: bool = True  # AA flag in answers (dnslib's default reply is authoritative)
    ra: bool = True  # RA flag in answers
    delay: float = 0.0  # UDP answers sent this many seconds late (from a timer, so others are not held)
    queries: list[str] = field(default_factory=list)
    sources: list[tuple[str, int]] = field(default_factory=list)  # (address, port) each UDP query came from
    port: int = 0

    def answer(self, data: bytes) -> bytes:
        try:
            query = DNSRecord.parse(data)
        except DNSError:  # names dnslib rejects (non-UTF-8 labels) are legal DNS: answer with dnspython
            return self._answer_unusual(data)
        self.queries.append(str(query.q.qname))
        reply = query.reply(ra=int(self.ra), aa=int(self.aa))
        opt = next((rr for rr in query.ar if rr.rtype == QTYPE.OPT), None)
        if opt is not None:  # like a real server: EDNS answered with EDNS, DO copied (RFC 3225)
            reply.add_ar(EDNS0(udp_len=1232, flags="do" if opt.ttl & 0x8000 else ""))
        name, qtype = query.q.qname, query.q.qtype
        if self.rcode is not None:
            reply.header.rcode = self.rcode
            return reply.pack()
        text = str(name).rstrip(".").lower()
        missing = text.startswith("nx") or any(text == m or text.endswith("." + m) for m in self.missing)
        if missing:  # NXDOMAIN with a SOA: negative TTL min(60, 30) = 30 s by default
            reply.header.rcode = RCODE.NXDOMAIN
            soa = SOA("ns.example.", "hostmaster.example.", (1, 3600, 600, 86400, self.soa_minimum))
            zone = text.rsplit(".", 1)[-1] if self.tld_soa else "example.com"
            reply.add_auth(RR(zone, QTYPE.SOA, rdata=soa, ttl=self.soa_ttl))
            return reply.pack()
        if qtype == QTYPE.A:
            count = 250 if self.huge else 60 if self.big else 1
            for i in range(count):
                address = UPSTREAM_A if i == 0 else f"198.51.{100 + i // 250}.{i % 250}"
                reply.add_answer(RR(name, QTYPE.A, rdata=A(address), ttl=self.ttl))
        elif qtype == QTYPE.AAAA:
            reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA("2001:db8::10"), ttl=self.ttl))
        elif qtype == QTYPE.MX:
            reply.add_answer(RR(name, QTYPE.MX, rdata=MX("mail." + str(name)), ttl=self.ttl))
        elif qtype == QTYPE.ANY:  # a name with many record types: what an amplification attack asks for
            for i in range(20):
                reply.add_answer(RR(name, QTYPE.A, rdata=A(f"198.51.100.{i + 1}"), ttl=self.ttl))
                reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(f"2001:db8::{i + 1:x}"), ttl=self.ttl))
                reply.add_answer(RR(name, QTYPE.MX, rdata=MX(f"mx{i}." + str(name)), ttl=self.ttl))
        if self.out_of_bailiwick:
            reply.add_answer(RR("victim.com", QTYPE.A, rdata=A("6.6.6.6"), ttl=86400))
            reply.add_ar(RR("victim.com", QTYPE.A, rdata=A("6.6.6.6"), ttl=86400))
        wire = reply.pack()
        return wire[:-3] if self.cut else wire

    def _answer_unusual(self, data: bytes) -> bytes:
        import dns.message
        import dns.rrset

        query = dns.message.from_wire(data)
        self.queries.append(query.question[0].name.to_text())
        reply = dns.message.make_response(query)
        reply.answer.append(dns.rrset.from_text(query.question[0].name, self.ttl, "IN", "A", UPSTREAM_A))
        return bytes(reply.to_wire())


def _bind_pair(port: int) -> tuple[socket.socket, socket.socket, int]:
    """A UDP and a TCP socket on the same port; with port 0, retried until both get one."""
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", port))
        chosen = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", chosen))
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
            continue
        tcp.listen(16)
        return udp, tcp, chosen
    raise OSError("no free UDP+TCP port pair")


def _send_quietly(sock: socket.socket, data: bytes, addr: tuple[str, int]) -> None:
    with contextlib.suppress(OSError):  # the upstream may have stopped meanwhile
        sock.sendto(data, addr)


@contextlib.contextmanager
def run_upstream(upstream: Upstream) -> Iterator[Upstream]:
    udp, tcp, port = _bind_pair(upstream.port)
    upstream.port = port
    stop = threading.Event()

    def serve_udp() -> None:
        udp.settimeout(0.1)
        while not stop.is_set():
            try:
                data, addr = udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            upstream.sources.append(addr[:2])
            try:
                if upstream.silent:
                    upstream.queries.append(str(DNSRecord.parse(data).q.qname))
                    continue
                reply = upstream.answer(data)
            except Exception:  # noqa: BLE001 - a test upstream must survive whatever it is sent
                continue
            if upstream.forge_first:
                udp.sendto(struct.pack("!H", (reply[0] << 8 | reply[1]) ^ 0xFFFF) + reply[2:], addr)
            if upstream.lie_first:
                lie = DNSRecord.parse(data)
                lie.q.qname = "evil.example.net"
                lie = lie.reply()
                lie.add_answer(RR("evil.example.net", QTYPE.A, rdata=A("203.0.113.66"), ttl=86400))
                udp.sendto(lie.pack(), addr)
            if upstream.garbage_first:
                udp.sendto(data[:2] + b"\x81\x80\xff\xff" + bytes(range(40)), addr)
            if upstream.only_lies:
                continue
            if upstream.truncate_udp:
                cut = DNSRecord.parse(reply)
                cut.rr, cut.header.tc = [], 1
                reply = cut.pack()
            if upstream.delay:
                threading.Timer(upstream.delay, _send_quietly, (udp, reply, addr)).start()
            else:
                udp.sendto(reply, addr)

    def serve_tcp() -> None:
        tcp.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    size = struct.unpack("!H", conn.recv(2))[0]
                    data = b""
                    while len(data) < size:
                        data += conn.recv(size - len(data))
                    if not upstream.silent:
                        reply = upstream.answer(data)
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, struct.error):
                    pass
                except Exception:  # noqa: BLE001 - a test upstream must survive whatever it is sent
                    pass

    threads = [threading.Thread(target=serve_udp, daemon=True), threading.Thread(target=serve_tcp, daemon=True)]
    for t in threads:
        t.start()
    try:
        yield upstream
    finally:
        stop.set()
        for t in threads:
            t.join(2)
        udp.close()
        tcp.close()


@dataclass
class RunningResolver:
    host: str
    port: int
    log_path: Path
    service: Service
    loop: asyncio.AbstractEventLoop

    def log_lines(self) -> list[dict[str, object]]:
        """The query log so far (its buffer flushed first, in the resolver's own loop)."""
        import json

        if self.loop.is_running():
            done = threading.Event()
            self.loop.call_soon_threadsafe(lambda: (self.service.pipeline.log.flush(), done.set()))
            done.wait(5)
        text = self.log_path.read_text() if self.log_path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@contextlib.contextmanager
def run_resolver(
    cfg: Config, log_path: Path, scorer: Scorer | None = None, host: str = "127.0.0.1", stderr: TextIO | None = None
) -> Iterator[RunningResolver]:
    """resolverguard in a thread with its own event loop, on an ephemeral port of `host`."""
    cfg = replace(cfg, listen=(Endpoint(host, 0),), query_log=QueryLogConfig(path=str(log_path)))
    model = load_model(cfg.model or DIGITS_MODEL)
    if scorer is not None:
        model.score = scorer.score  # type: ignore[method-assign]
    loop = asyncio.new_event_loop()
    service = Service(cfg, model, stderr=stderr)
    loop.run_until_complete(service.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield RunningResolver(*service.server.bound[0], log_path, service, loop)
    finally:
        asyncio.run_coroutine_threadsafe(service.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def stop_server(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 5 s: a server a test started never outlives the test."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1, below the kernel's ephemeral range: a port the
    kernel handed out (bind to 0) could be taken again, before the server binds it, as the source
    port of any outgoing socket (the resolvers' upstream pools open hundreds): 'address already in use'."""
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ranges.read_text().split()[0]) if ranges.exists() else 32768
    pick = random.SystemRandom()
    for _ in range(200):
        port = pick.randrange(10_000, max(10_001, low))
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
                u.bind(("127.0.0.1", port))
                t.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port below the ephemeral range")


def eventually(read: Callable[[], T], timeout: float = 10.0, done: Callable[[T], bool] = bool, step: float = 0.02) -> T:
    """Reads until `done(value)` or `timeout` seconds, and returns the last value read (the caller
    asserts on it, so a failure shows what was there). For what another thread or process does in
    its own time: a writer's batch, a reload on the resolver's loop, a connection to Redis."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(step)


def wait_for(proc: subprocess.Popen[str], text: str, lines: int = 10, timeout: float = 60.0, count: int = 1) -> str:
    """Reads the process's stderr until `text` has appeared `count` times (LiteRT may print an INFO line first).

    Occurrences are counted in the text read, not per line: with `workers: 2` two processes share the
    pipe and LiteRT's C logger writes its line in pieces, so one worker's "listening on" can land in
    the middle of the other's line, leaving a bare newline after it. The reads run in a helper thread
    joined with a deadline, so a server that is stuck (or never prints the line) fails the test after
    `timeout` seconds instead of hanging the suite."""
    found: list[str] = []
    seen: list[str] = []

    def read() -> None:
        for _ in range(lines):
            line = proc.stderr.readline() if proc.stderr else ""
            seen.append(line)
            if "".join(seen).count(text) >= count:
                found.append(line)
                return
            if not line:
                return  # end of stream: the process exited

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if found:
        return found[0]
    if reader.is_alive():
        raise AssertionError(f"no {text!r} x{count} within {timeout:g} s; stderr so far: {''.join(seen)!r}")
    raise AssertionError(f"never saw {text!r}; stderr: {''.join(seen)!r}")


def start_serving(policy: Path, port: int, model: Path = DIGITS_MODEL, workers: int = 1) -> subprocess.Popen[str]:
    """`resolverguard serve` as a real process on 127.0.0.1:port, once each of its `workers` says it is listening."""
    cmd = [
        sys.executable,
        "-m",
        "resolverguard",
        "serve",
        "--config",
        str(policy),
        "--listen",
        f"127.0.0.1:{port}",
        "--model",
        str(model),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    wait_for(proc, "listening on", lines=10 * workers, count=workers)
    return proc
