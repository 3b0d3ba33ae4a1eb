"""resolverguard inside Unbound: the Python module Unbound loads (`python-script:` names
`unbound_module.py`, which loads this file from its cached bytecode), standard library only.

Unbound answers cached names before any module runs; every other query comes here first. The module
asks resolverguard's verdict service (`resolverguard unbound-service`, see
`resolverguard/unboundservice.py` for the one-line protocol) over a Unix socket and either hands the
query on to the iterator (pass) or answers it with the block the service wrote, built with Unbound's
own `DNSMessage` and, when the block holds for every client, stored in Unbound's message cache for
its TTL, so repeats of a blocked name never reach Python again.

Why it imports no numpy, no LiteRT and nothing of resolverguard (issue #17's prototype): Unbound
re-initialises Python on `unbound-control reload` and SIGHUP, and a process that has imported numpy
once dies importing it again (numpy/numpy#28271); one LiteRT interpreter shared by Unbound's threads
gives wrong scores. The standard library survives re-initialisation, and the model lives in the
service, where all of Unbound's threads share one batching event loop.

Only queries a client waits for are asked about, and Unbound's prefetches; Unbound's own lookups
(nameserver addresses while recursing, DNSSEC keys) pass, so recursion costs no extra round trips.
A prefetch (`prefetch: yes`: a hit in the last tenth of a cached answer's TTL looks the name up
again, no client waiting) is asked as for a client of the default group: passed unasked, it put
the real answer of a sinkholed name over the sinkhole in Unbound's cache (a test holds it).

Resolving while the service decides (issue #17: a round trip on Unbound's thread for every asked
name held never-seen names to ~0.2x plain Unbound): by default (RESOLVERGUARD_ASK=parallel) the
module sends the name to the service without waiting (one line on the thread's connection, numbered)
and hands the query on to the iterator at once; when the iterator is done (MODULE_EVENT_MODDONE) it
collects the verdict, by then usually there, waiting only for what is left of the timeout since it
asked. A block replaces the iterator's answer with the service's records. So that the real answer
of a name that will be blocked never reaches Unbound's cache (another client would get it from there),
the query is marked `no_cache_store` while it is asked, and the module stores the answer itself once
the verdict is known: the real one on pass, the block when it holds for every client. The cost: the
upstream sees a name that is then blocked (the client never gets its answer). Names the module knows
are on a deny list, and every name while there is no gate snapshot (the module cannot tell), are
asked first, as with RESOLVERGUARD_ASK=first for all names: the query waits for the verdict and a
blocked name is never resolved. When WINDOW names of the same thread (RESOLVERGUARD_WINDOW, default
64) wait for the service's answer, the thread waits for the next answer before it asks one more:
that holds Unbound to the service's pace (without it, a busy service fell behind, its answers came
after the timeout and names passed unscored). (It used to ask that name first instead, which waited
for the newest name's answer, the last of the window to come.)

Fail open: when the service is down, slow (no verdict RESOLVERGUARD_TIMEOUT, default 0.25 s, after
the name was asked) or answers nonsense, the name passes and is counted (`passed_unasked` when it
could not be asked, `late` when no verdict came; logged every 1,000 and at unload). A thread whose
connection broke or gave no verdict in time drops it (the names it still waits for pass) and tries
again after RETRY_SECONDS, not on every query, so a service that hangs costs one timeout a second.

First stage (issue #17): most never-seen names never reach the service. The service writes a
snapshot beside its socket (`<socket>.gate`: the linear n-gram gate, the deny keys of every list,
the public suffix rules); `resolverguard/unbound_gate.py` (standard library only too, loaded from
this file's folder) clears a name in this process when the service would certainly pass it, and the
name goes straight on to the iterator. Only when the service keeps a query log does a cleared name
cost anything more: one non-blocking datagram to `<socket>.log` (when the socket buffer is full the
line is dropped and counted as `log_dropped`, never waited for). Every other name is asked as before,
with "the gate said above" when it ran, so the service does not run it again. The module rereads the
snapshot when its file changes (checked every SNAPSHOT_CHECK_SECONDS), so a service reload reaches it.

Unbound calls the module's functions by name with no object of ours, so the one `VerdictClient` lives
in a global set by `init_standard` and dropped by `deinit` (a reload runs both).
"""

from __future__ import annotations

# What an `unbound-control reload` imports again each time, so the cheapest forms: `_socket` and
# `_thread` (no socket.py, selectors, threading), the loader without importlib.util, no typing at run time.
import _socket as socket
import math
import os
import select
import struct
import sys
import time
from _thread import get_ident
from importlib.machinery import SourceFileLoader

from unboundmodule import (  # Unbound's own, on its PYTHONPATH
    MODULE_ERROR,
    MODULE_EVENT_MODDONE,
    MODULE_EVENT_NEW,
    MODULE_EVENT_PASS,
    MODULE_FINISHED,
    MODULE_WAIT_MODULE,
    PKT_QR,
    PKT_RA,
    RCODE_NOERROR,
    RR_CLASS_IN,
    DNSMessage,
    log_info,
    log_warn,
    storeQueryInCache,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SOCKET_ENV, TIMEOUT_ENV, ASK_ENV = "RESOLVERGUARD_SOCKET", "RESOLVERGUARD_TIMEOUT", "RESOLVERGUARD_ASK"
WINDOW_ENV = "RESOLVERGUARD_WINDOW"
DEFAULT_SOCKET = "/run/resolverguard/unbound.sock"
RETRY_SECONDS = 1.0
REPORT_EVERY = 1000
SNAPSHOT_CHECK_SECONDS = 1.0
TICKET = "resolverguard"  # the key of a parallel ask's (line, number) in Unbound's per-query dict
WINDOW = 64  # names of one thread the service has not answered yet, at most (VerdictClient.room): one model batch
SWEEP_AT, SWEEP_GRACE = 4096, 5.0  # numbers held on one line before the stale are swept; their age then


def _load_gate_code() -> Any:
    """resolverguard/unbound_gate.py, from beside this file (loaded by `unbound_module.py` with no
    package around it; the gate code is standard library only as well)."""
    name, path = (
        "resolverguard_unbound_gate",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "unbound_gate.py"),
    )
    loader = SourceFileLoader(name, path)
    code = type(sys)(name)
    code.__file__, code.__loader__ = path, loader
    sys.modules[name] = code  # (a class defined while the file runs may look its module up)
    loader.exec_module(code)
    return code


gatecode = _load_gate_code()


class FirstStage:
    """The snapshot's gate, reread when the service writes a new snapshot; the log datagram socket."""

    def __init__(self, socket_path: str) -> None:
        self.path, self.log_path = socket_path + ".gate", socket_path + ".log"
        self.gate: Any = None
        self._seen: tuple[int, int] | None = None
        self._check_at = 0.0
        self._log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._log.setblocking(False)
        self.cleared = self.logged = self.log_dropped = 0
        self.refresh()

    def refresh(self) -> None:
        """Rereads the snapshot when its file changed (inode or mtime); at most every SNAPSHOT_CHECK_SECONDS."""
        now = time.monotonic()
        if now < self._check_at:
            return
        self._check_at = now + SNAPSHOT_CHECK_SECONDS
        try:
            stat = os.stat(self.path)
            seen: tuple[int, int] | None = (stat.st_ino, stat.st_mtime_ns)
        except OSError:
            seen = None
        if seen == self._seen:
            return
        self._seen = seen
        self.gate, why = gatecode.read_snapshot(self.path) if seen else (None, "no gate snapshot")
        log_info(f"resolverguard: {self.path}: {why}")

    def log(self, qname: str, qtype: int, client: str) -> None:
        """Sends a cleared name to the service's query log without waiting: dropped (and counted)
        when the service is gone or its buffer is full."""
        try:
            self._log.sendto(f"{qname}\t{qtype}\t{client}\n".encode("ascii", "replace"), self.log_path)
            self.logged += 1
        except OSError:
            self.log_dropped += 1

    def close(self) -> None:
        self._log.close()
        self.gate = None


class Line:
    """One Unbound thread's connection to the service: the numbers it asked and still waits for
    (with their deadlines), the answers read for them, and the bytes of an answer not read whole."""

    __slots__ = ("sock", "poller", "buffer", "waiting", "answers", "number", "closed")

    def __init__(self, sock: socket.socket, number: int) -> None:
        self.sock, self.number, self.closed = sock, number, False
        self.poller = select.poll()
        self.poller.register(sock.fileno(), select.POLLIN)
        self.buffer = b""
        self.waiting: dict[int, float] = {}  # number -> monotonic deadline
        self.answers: dict[int, list[str]] = {}

    def take(self, data: bytes) -> None:
        """Files the answer lines in `data` ("NUMBER <TAB> answer") under their numbers; answers
        nobody waits for any more (given up at the deadline) are dropped."""
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for raw in lines:
            number, _, answer = raw.partition(b"\t")
            try:
                n = int(number)
            except ValueError:
                continue
            if n in self.waiting:
                self.answers[n] = answer.decode("ascii", "replace").split("\t")

    def sweep(self, now: float) -> None:
        """Forgets numbers whose query never came back for its verdict (Unbound dropped it)."""
        for n in [n for n, deadline in self.waiting.items() if deadline + SWEEP_GRACE < now]:
            del self.waiting[n]
            self.answers.pop(n, None)


class VerdictClient:
    """One connection per Unbound thread (keyed by thread id: `threading.local` is unreliable in
    Unbound's embedded Python), each used by its own thread only. `send` asks without waiting and
    returns a ticket; `collect` gets the verdict for a ticket; `ask` does both at once."""

    def __init__(self, path: str, timeout: float, window: int = WINDOW) -> None:
        self.path, self.timeout, self.window = path, timeout, window
        self._lines: dict[int, Line] = {}
        self._retry_at: dict[int, float] = {}
        self._numbers: dict[int, int] = {}  # the last number each thread used (a new connection goes on from it)
        self._warned: set[int] = set()  # threads that said their service is unreachable, this outage
        self.passed_unasked = self.asked = self.late = 0
        # Client queries handed on to the iterator (`handed`) and back from it (`returned`): the
        # difference at `deinit` is what Unbound held when a reload hit. Unbound 1.17 frees those
        # queries unanswered before it unloads the module (daemon_cleanup, then modstack_setup), as
        # plain Unbound does, so the module can neither answer nor pass them: this count is the
        # reload's lost answers (issue #17: it matched dnsperf's lost count on every reload probed).
        self.handed = self.returned = 0

    def send(self, qname: str, qtype: int, client: str, above: str | None = None) -> tuple[Line, int] | None:
        """Asks about a name without waiting for the answer: (line, number) to collect it with, or
        None when it could not be asked (the caller passes the name). `above`: the first stage ran,
        the name is above its gate and this is its registrable name (the service runs neither the
        gate nor its public suffix walk again)."""
        me = get_ident()
        line = self._lines.get(me) or self._connect(me)
        if line is None:
            self._unasked()
            return None
        line.number += 1
        gate = f"a={above}" if above else "-"
        try:
            line.sock.sendall(f"{qname}\t{qtype}\t{client}\t{gate}\t{line.number}\n".encode("ascii", "replace"))
        except OSError as err:  # the kernel's send timeout included: the service stopped reading
            self._drop(me, line, f"{type(err).__name__}: {err}")
            self._unasked()
            return None
        now = time.monotonic()
        if len(line.waiting) >= SWEEP_AT:
            line.sweep(now)
        line.waiting[line.number] = now + self.timeout
        self.asked += 1
        return line, line.number

    def room(self) -> bool:
        """Makes room to ask one more name without waiting: when WINDOW of this thread's names wait
        for the service's answer (answers read but not yet collected do not count: those names wait
        for the upstream), waits for the next answer, at most until the oldest name's deadline. That
        holds Unbound to the pace of the service instead of queueing names faster than it decides
        them. (Asking that one name first instead, as before, waited for the newest name's answer,
        always the last of the window to come: py-spy put ~15% of Unbound's thread there.) False
        when the connection broke or the service was too slow (the caller asks first and fails open)."""
        line = self._lines.get(get_ident())
        if line is None:
            return True
        while len(line.waiting) - len(line.answers) >= self.window:
            answers = line.answers
            deadline = next((d for n, d in line.waiting.items() if n not in answers), 0.0)
            if not self._read(line, deadline):
                if not line.closed:
                    self._drop(get_ident(), line, f"no verdict within {self.timeout} s")
                return False
        return True

    def collect(self, line: Line, number: int) -> list[str] | None:
        """The service's answer fields (["P"] or ["B", rcode, cache, answer, authority]) for a
        ticket, waiting at most until its deadline; None when there is none (the caller passes)."""
        answers = line.answers
        while number not in answers:
            deadline = line.waiting.get(number)
            if deadline is None or line.closed:  # swept, or its connection broke or was dropped
                self._late()
                return None
            if not self._read(line, deadline):
                if not line.closed:  # a service this slow is treated as down, as one that stopped
                    self._drop(get_ident(), line, f"no verdict within {self.timeout} s")
                self._late()
                return None
        del line.waiting[number]
        return answers.pop(number)

    def ask(self, qname: str, qtype: int, client: str, above: str | None = None) -> list[str] | None:
        """`send` and `collect` at once: the query waits for its verdict."""
        ticket = self.send(qname, qtype, client, above)
        return self.collect(*ticket) if ticket is not None else None

    def _read(self, line: Line, deadline: float) -> bool:
        """Reads what the service has answered so far, or waits for more until `deadline`: False
        at the deadline or when the connection broke (then dropped)."""
        try:
            data = line.sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            line.poller.poll(math.ceil(left * 1000))
            return True
        except OSError as err:
            self._drop(get_ident(), line, f"{type(err).__name__}: {err}")
            return False
        if not data:
            self._drop(get_ident(), line, "the verdict service closed the connection")
            return False
        line.take(data)
        return True

    def _connect(self, me: int) -> Line | None:
        if time.monotonic() < self._retry_at.get(me, 0.0):
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The kernel's send timeout on a blocking socket, not Python's (settimeout polls before
            # every send: one more system call per name on the Unbound thread). Reads never block
            # (MSG_DONTWAIT, then poll for what is left of the deadline).
            timeval = struct.pack("ll", int(self.timeout), int(self.timeout % 1 * 1_000_000))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            sock.connect(self.path)
        except OSError as err:
            sock.close()
            self._retry_at[me] = time.monotonic() + RETRY_SECONDS
            if me not in self._warned:  # once per outage and thread, not per query
                log_warn(f"resolverguard: verdict service {self.path} unreachable ({err}); names pass unscored")
                self._warned.add(me)
            return None
        self._warned.discard(me)
        line = self._lines[me] = Line(sock, self._numbers.get(me, 0))
        return line

    def _drop(self, me: int, line: Line, why: str) -> None:
        """Closes a broken connection; the names it waits for pass (`collect` sees it closed)."""
        line.closed = True
        line.sock.close()
        self._numbers[me] = line.number
        if self._lines.get(me) is line:
            del self._lines[me]
        self._retry_at[me] = time.monotonic() + RETRY_SECONDS
        log_warn(f"resolverguard: verdict service {self.path}: {why}; names pass unscored")

    def _unasked(self) -> None:
        self.passed_unasked += 1
        if self.passed_unasked % REPORT_EVERY == 1:
            log_info(f"resolverguard: passed_unasked={self.passed_unasked} (verdict service down)")

    def _late(self) -> None:
        self.late += 1
        if self.late % REPORT_EVERY == 1:
            log_info(f"resolverguard: late={self.late} (no verdict within {self.timeout} s: names passed)")

    def close(self) -> None:
        for line in list(self._lines.values()):
            line.closed = True
            line.sock.close()
        self._lines.clear()


_client: VerdictClient | None = None  # see the module docstring: Unbound's API leaves no other home
_first: FirstStage | None = None
_parallel = True  # RESOLVERGUARD_ASK: resolve while the service decides (see the module docstring)


def init_standard(id: int, env: Any) -> bool:  # noqa: A002 - Unbound's signature
    global _client, _first, _parallel
    timeout = float(os.environ.get(TIMEOUT_ENV, "0.25"))
    path = os.environ.get(SOCKET_ENV, DEFAULT_SOCKET)
    ask = os.environ.get(ASK_ENV, "parallel")
    if ask not in ("parallel", "first"):
        log_warn(f"resolverguard: {ASK_ENV}={ask!r}: not 'parallel' or 'first'; asking first")
    _parallel = ask == "parallel"
    _client = VerdictClient(path, timeout, max(1, int(os.environ.get(WINDOW_ENV, WINDOW))))
    _first = FirstStage(path)
    how = "in parallel" if _parallel else "first"
    log_info(f"resolverguard: module loaded, verdict service {_client.path}, asking {how}")
    return True


def deinit(id: int) -> bool:  # noqa: A002 - Unbound's signature
    global _client, _first
    if _client is not None and _first is not None:
        log_info(
            f"resolverguard: module unloaded, asked={_client.asked} passed_unasked={_client.passed_unasked} "
            f"late={_client.late} cleared={_first.cleared} logged={_first.logged} log_dropped={_first.log_dropped} "
            f"in_flight={_client.handed - _client.returned}"
        )
        _client.close()
        _first.close()
    _client = _first = None
    return True


def inform_super(id: int, qstate: Any, superqstate: Any, qdata: Any) -> bool:  # noqa: A002
    return True


def client_of(qstate: Any) -> str:
    """The address of the first client waiting for this query ("-" for Unbound's own queries)."""
    replies = qstate.mesh_info.reply_list if qstate.mesh_info is not None else None
    address = replies.query_reply.addr if replies is not None and replies.query_reply is not None else None
    return str(address) if address else "-"


def operate(id: int, event: int, qstate: Any, qdata: Any) -> bool:  # noqa: A002 - Unbound's signature
    if event == MODULE_EVENT_MODDONE:  # the iterator resolved a name we passed (or asked about in parallel)
        if _client is not None:
            _client.returned += 1
        ticket = qdata.get(TICKET) if qdata else None
        qstate.ext_state[id] = resolved(qstate, ticket) if ticket is not None else MODULE_FINISHED
        return True
    if event not in (MODULE_EVENT_NEW, MODULE_EVENT_PASS):
        qstate.ext_state[id] = MODULE_ERROR
        return True
    client = client_of(qstate)
    if (client == "-" and not qstate.prefetch_leeway) or _client is None or _first is None:
        # No client waits for it and it is no prefetch: Unbound's own lookups (nameserver addresses,
        # DNSSEC keys). The client's own query is what is filtered; these pass unasked.
        if _client is not None:
            _client.handed += 1
        qstate.ext_state[id] = MODULE_WAIT_MODULE
        return True
    qinfo = qstate.qinfo
    qname = qinfo.qname_str
    _first.refresh()
    gate = _first.gate
    decided, registrable = gate.judge(qname) if gate is not None else (gatecode.ASK, None)
    if decided == gatecode.CLEARED:  # the service would pass it: on to the iterator at once
        _first.cleared += 1
        if gate.log:
            _first.log(qname, qinfo.qtype, client)
        _client.handed += 1
        qstate.ext_state[id] = MODULE_WAIT_MODULE
        return True
    if _parallel and gate is not None and decided != gatecode.LISTED and _client.room():
        ticket = _client.send(qname, qinfo.qtype, client, registrable if decided == gatecode.ABOVE else None)
        if ticket is not None:  # the verdict is collected when the iterator is done (`resolved`)
            qstate.no_cache_store = 1
            qdata[TICKET] = ticket
        _client.handed += 1
        qstate.ext_state[id] = MODULE_WAIT_MODULE
        return True
    answer = _client.ask(qname, qinfo.qtype, client, registrable if decided == gatecode.ABOVE else None)
    if answer is None or answer[0] != "B" or len(answer) != 5:
        _client.handed += 1
        qstate.ext_state[id] = MODULE_WAIT_MODULE  # pass: on to the iterator
        return True
    qstate.ext_state[id] = block(qstate, int(answer[1]), answer[2] == "1", answer[3], answer[4])
    return True


def resolved(qstate: Any, ticket: tuple[Line, int]) -> int:
    """The iterator is done with a name asked in parallel: its verdict decides the answer. A block
    replaces the iterator's; on pass (or no verdict in time) the iterator's answer goes out and into
    Unbound's cache, which the iterator left alone (`no_cache_store`)."""
    answer = _client.collect(*ticket) if _client is not None else None
    if answer is not None and answer[0] == "B" and len(answer) == 5:
        return block(qstate, int(answer[1]), answer[2] == "1", answer[3], answer[4])
    msg = qstate.return_msg
    if msg is not None and msg.rep is not None and qstate.return_rcode == RCODE_NOERROR:
        storeQueryInCache(qstate, msg.qinfo, msg.rep, 0)
    return int(MODULE_FINISHED)


def block(qstate: Any, rcode: int, cache: bool, answer: str, authority: str) -> int:
    """Answers the query with the service's records; REFUSED and SERVFAIL go out as bare rcodes."""
    if not answer and not authority:
        qstate.return_rcode = rcode
        return int(MODULE_FINISHED)
    qinfo = qstate.qinfo
    msg = DNSMessage(qinfo.qname_str, qinfo.qtype, RR_CLASS_IN, PKT_QR | PKT_RA | rcode)
    if answer:
        msg.answer.append(answer)
    if authority:
        msg.authority.append(authority)
    if not msg.set_return_msg(qstate):
        return int(MODULE_ERROR)
    if cache:
        storeQueryInCache(qstate, qstate.return_msg.qinfo, qstate.return_msg.rep, 0)
    qstate.return_rcode = RCODE_NOERROR
    return int(MODULE_FINISHED)
