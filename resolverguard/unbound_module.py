"""resolverguard inside Unbound: the Python module Unbound loads (`python-script:`), standard library only.

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

Only queries a client waits for are asked about; Unbound's own lookups (nameserver addresses while
recursing, DNSSEC keys, prefetch of a name already decided) pass, so recursion costs no extra round trips.

Fail open: when the service is down, slow (RESOLVERGUARD_TIMEOUT, default 0.25 s) or answers
nonsense, the name passes and is counted (`passed_unasked`, logged every 1,000 and at unload); a
thread that could not connect tries again after RETRY_SECONDS, not on every query.

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

import importlib.util
import os
import socket
import struct
import sys
import threading
import time
from typing import Any

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

SOCKET_ENV, TIMEOUT_ENV = "RESOLVERGUARD_SOCKET", "RESOLVERGUARD_TIMEOUT"
DEFAULT_SOCKET = "/run/resolverguard/unbound.sock"
RETRY_SECONDS = 1.0
REPORT_EVERY = 1000
SNAPSHOT_CHECK_SECONDS = 1.0


def _load_gate_code() -> Any:
    """resolverguard/unbound_gate.py, from beside this file (Unbound runs this file as `__main__`
    with no package around it; the gate code is standard library only as well)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unbound_gate.py")
    spec = importlib.util.spec_from_file_location("resolverguard_unbound_gate", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    code = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = code  # (dataclasses look their module up while the file runs)
    spec.loader.exec_module(code)
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


class VerdictClient:
    """One connection per Unbound thread (keyed by thread id: `threading.local` is unreliable in
    Unbound's embedded Python), each used by its own thread only."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self._sockets: dict[int, socket.socket] = {}
        self._retry_at: dict[int, float] = {}
        self._warned: set[int] = set()  # threads that said their service is unreachable, this outage
        self.passed_unasked = self.asked = 0

    def ask(self, qname: str, qtype: int, client: str, above: bool = False) -> list[str] | None:
        """The service's answer fields (["P"] or ["B", rcode, cache, answer, authority]), or None
        when it could not be asked (the caller passes the name). `above`: the first stage ran and
        the name is above its gate (the service does not run it again)."""
        me = threading.get_ident()
        sock = self._sockets.get(me) or self._connect(me)
        if sock is None:
            self._unasked()
            return None
        try:
            flag = "\ta" if above else ""
            sock.sendall(f"{qname}\t{qtype}\t{client}{flag}\n".encode("ascii", "replace"))
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("verdict service closed the connection")
                data += chunk
        except OSError as err:  # timeout included: the connection is out of step now, drop it
            self._drop(me, f"{type(err).__name__}: {err}")
            self._unasked()
            return None
        self.asked += 1
        return data[:-1].decode("ascii", "replace").split("\t")

    def _connect(self, me: int) -> socket.socket | None:
        if time.monotonic() < self._retry_at.get(me, 0.0):
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The kernel's timeouts on a blocking socket, not Python's (settimeout polls before every
            # send and recv: two more system calls per name on the Unbound thread). A timeout is then
            # an OSError (EAGAIN) like any other failure: the name passes.
            timeval = struct.pack("ll", int(self.timeout), int(self.timeout % 1 * 1_000_000))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
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
        self._sockets[me] = sock
        return sock

    def _drop(self, me: int, why: str) -> None:
        sock = self._sockets.pop(me, None)
        if sock is not None:
            sock.close()
        self._retry_at[me] = time.monotonic() + RETRY_SECONDS
        log_warn(f"resolverguard: verdict service {self.path}: {why}; names pass unscored")

    def _unasked(self) -> None:
        self.passed_unasked += 1
        if self.passed_unasked % REPORT_EVERY == 1:
            log_info(f"resolverguard: passed_unasked={self.passed_unasked} (verdict service down)")

    def close(self) -> None:
        for sock in list(self._sockets.values()):
            sock.close()
        self._sockets.clear()


_client: VerdictClient | None = None  # see the module docstring: Unbound's API leaves no other home
_first: FirstStage | None = None


def init_standard(id: int, env: Any) -> bool:  # noqa: A002 - Unbound's signature
    global _client, _first
    timeout = float(os.environ.get(TIMEOUT_ENV, "0.25"))
    path = os.environ.get(SOCKET_ENV, DEFAULT_SOCKET)
    _client = VerdictClient(path, timeout)
    _first = FirstStage(path)
    log_info(f"resolverguard: module loaded, verdict service {_client.path}")
    return True


def deinit(id: int) -> bool:  # noqa: A002 - Unbound's signature
    global _client, _first
    if _client is not None and _first is not None:
        log_info(
            f"resolverguard: module unloaded, asked={_client.asked} passed_unasked={_client.passed_unasked} "
            f"cleared={_first.cleared} logged={_first.logged} log_dropped={_first.log_dropped}"
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
    if event == MODULE_EVENT_MODDONE:  # the iterator resolved a name we passed
        qstate.ext_state[id] = MODULE_FINISHED
        return True
    if event not in (MODULE_EVENT_NEW, MODULE_EVENT_PASS):
        qstate.ext_state[id] = MODULE_ERROR
        return True
    client = client_of(qstate)
    if client == "-" or _client is None or _first is None:
        # No client waits for it: Unbound's own lookups (nameserver addresses, DNSSEC keys, prefetch
        # of a name already decided). The client's own query is what is filtered; these pass unasked.
        qstate.ext_state[id] = MODULE_WAIT_MODULE
        return True
    qinfo = qstate.qinfo
    qname = qinfo.qname_str
    _first.refresh()
    gate = _first.gate
    decided = gate.decide(qname) if gate is not None else gatecode.ASK
    if decided == gatecode.CLEARED:  # the service would pass it: on to the iterator at once
        _first.cleared += 1
        if gate.log:
            _first.log(qname, qinfo.qtype, client)
        qstate.ext_state[id] = MODULE_WAIT_MODULE
        return True
    answer = _client.ask(qname, qinfo.qtype, client, decided == gatecode.ABOVE)
    if answer is None or answer[0] != "B" or len(answer) != 5:
        qstate.ext_state[id] = MODULE_WAIT_MODULE  # pass: on to the iterator
        return True
    qstate.ext_state[id] = block(qstate, int(answer[1]), answer[2] == "1", answer[3], answer[4])
    return True


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
