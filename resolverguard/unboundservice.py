"""The verdict service behind the Unbound module: resolverguard's decisions, asked over a Unix socket.

Why a separate process (measured in issue #17's prototype): a module that imports numpy dies on
`unbound-control reload` and SIGHUP (Unbound re-initialises Python and numpy cannot be imported twice
in one process, numpy/numpy#28271), and one LiteRT interpreter shared by Unbound's threads gives wrong
scores. So the module Unbound loads (`resolverguard/unbound_module.py`) imports only the standard
library and asks this service, which holds the same policy file, lists, thresholds, client groups,
verdict cache, model and query log as `resolverguard serve`, through the same decision steps
(`pipeline.decision_steps`). Requests from all of Unbound's threads arrive on one event loop, so
names asked in the same loop turn are scored in one batch (`resolverguard.batching`).

The protocol is one line each way per query, on one connection per Unbound thread:

    ask:    QNAME <TAB> QTYPE <TAB> CLIENT-ADDRESS-or-"-" [<TAB> GATE [<TAB> NUMBER]] <LF>
    answer: [NUMBER <TAB>] "P" <LF>                              pass: Unbound resolves as usual
            [NUMBER <TAB>] "B" <TAB> RCODE <TAB> CACHE <TAB> ANSWER <TAB> AUTHORITY <LF>

GATE is "a" when the module's first stage ran and the name is above its gate (the service does not
run the gate again), "a=REGISTRABLE" the same with the registrable name the module's gate found for
QNAME (its name rules are `NameParser`'s, a test holds them alike), so the service does not walk the
public suffix list again (a service older than that reads "a=..." as "-": it runs its own gate, and
still numbers its answers), "-" otherwise. The module numbers its lines (NUMBER) and asks without waiting
(it resolves the name meanwhile, see `unbound_module.py`); a numbered line's answer starts with its
number and may come before the answers to earlier lines (a verdict from a list or the verdict cache
does not wait for the model's batch). Answers to unnumbered lines come in no set order either: send
one at a time.

`ANSWER` and `AUTHORITY` are one resource record each in presentation form (or empty), what the
module hands to Unbound's `DNSMessage`; `CACHE` is 1 when the block holds for every client (no client
groups or client-scoped list rules), so the module may store it in Unbound's message cache for its
TTL and repeats never reach Python again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from resolverguard.chain import Check, Outcome, Request, Step, link
from resolverguard.config import Config, load_config
from resolverguard.errors import ConfigError, ResolverGuardError
from resolverguard.gatestage import GateModel, GateStep, load_gate, write_gate_snapshot
from resolverguard.groups import GroupDirectory
from resolverguard.lists import DomainLists
from resolverguard.model import TFLiteScorer, load_model
from resolverguard.names import RegistrableName
from resolverguard.pipeline import decision_steps, groups_for
from resolverguard.service import settle_memory
from resolverguard.steps.cache import VerdictCache
from resolverguard.steps.lists import ListStep
from resolverguard.steps.names import NameStep
from resolverguard.steps.querylog import HandOverTimer, QueryLog, QueryLogStep
from resolverguard.steps.score import ScoreStep
from resolverguard.unbound_gate import Gate
from resolverguard.unboundconf import DEFAULT_SOCKET
from resolverguard.verdicts import Action
from resolverguard.wire import AAAA, NOERROR, NXDOMAIN, REFUSED, SERVFAIL, A, QueryHead

PASS_LINE = b"P\n"
_RCODES = {Action.NXDOMAIN: NXDOMAIN, Action.REFUSE: REFUSED, Action.SERVFAIL: SERVFAIL}
_SOA_TAIL = "sinkhole.resolverguard.invalid. hostmaster.resolverguard.invalid. 1 3600 600 86400"
_RD = 0x0100


def block_line(request: Request, action: Action, cacheable: bool) -> bytes:
    """The answer line for a blocking verdict: the same records the standalone block step writes
    (`steps/block.py`): A/AAAA get the sinkhole address, other types NODATA with a SOA whose
    minimum is the sinkhole TTL, NXDOMAIN the same SOA; REFUSED and SERVFAIL no records."""
    group, qname = request.group, request.qname
    if group is None:  # the group step always runs first; a request without one is a bug
        raise ValueError("no client group on the request")
    sinkhole = group.sinkhole
    if action in (Action.REFUSE, Action.SERVFAIL):
        return f"B\t{_RCODES[action]}\t0\t\t\n".encode()
    cache = int(cacheable)
    if action is Action.SINKHOLE and request.qtype in (A, AAAA):
        kind, address = ("A", sinkhole.ipv4) if request.qtype == A else ("AAAA", sinkhole.ipv6)
        return f"B\t{NOERROR}\t{cache}\t{qname} {sinkhole.ttl} IN {kind} {address}\t\n".encode()
    zone = f"{request.name.registrable}." if request.name and request.name.registrable else qname
    soa = f"{zone} {sinkhole.ttl} IN SOA {_SOA_TAIL} {sinkhole.ttl}"
    rcode = NXDOMAIN if action is Action.NXDOMAIN else NOERROR
    return f"B\t{rcode}\t{cache}\t\t{soa}\n".encode()


class VerdictLine:
    """Last check of the service's chain: the verdict as the answer line (a block, or pass)."""

    def __init__(self, groups: GroupDirectory) -> None:
        # Only a decision that holds for every client may go into Unbound's shared cache.
        self._cacheable = not groups.groups and not groups.default.lists.scoped

    def check(self, request: Request) -> Outcome:
        verdict = request.verdict
        if verdict is None or not verdict.action.blocks:
            return PASS_LINE
        return block_line(request, verdict.action, self._cacheable)


class ModuleNameStep:
    """The name step, given the registrable name the module's gate found (`Request.notes["registrable"]`):
    the same `RegistrableName` `NameParser` makes for an ordinary name under an ICANN suffix (the
    label is the registrable name's first label), without a second public suffix walk (~5 us per
    asked name); every other name goes to the parser as before."""

    def __init__(self, parse: NameStep) -> None:
        self._parse = parse

    def check(self, request: Request) -> Outcome:
        registrable = request.notes.get("registrable")
        name = request.qname.lower().rstrip(".")
        if type(registrable) is not str or not (name == registrable or name.endswith("." + registrable)):
            return self._parse.check(request)  # (not from our module's gate: the parser decides)
        request.name = RegistrableName(name, registrable, registrable.split(".", 1)[0])
        return None


def no_list_rules(groups: GroupDirectory) -> bool:
    """No group has a single list rule: the list step can decide nothing (it cost ~2 us per name)."""
    every: list[DomainLists] = [groups.default.lists, *(group.lists for group in groups.groups)]
    return not any(lists.scoped or any(lists.tiers) for lists in every)


def service_steps(decision: list[Step | Check], groups: GroupDirectory) -> list[Step | Check]:
    """`pipeline.decision_steps` as the service runs them: the module's registrable name taken
    (`ModuleNameStep`), the list step left out when there are no list rules at all."""
    out: list[Step | Check] = []
    for step in decision:
        if isinstance(step, ListStep) and no_list_rules(groups):
            continue
        out.append(ModuleNameStep(step) if isinstance(step, NameStep) else step)
    return out


async def _never(request: Request) -> bytes | None:
    raise AssertionError("VerdictLine answers every query")  # pragma: no cover - link needs a last step


@dataclass(frozen=True)
class VerdictChain:
    """The decision chain for one policy, and the state a reload carries over."""

    chain: Any  # resolverguard.chain.Next
    log: QueryLog
    cache: VerdictCache
    gate: Gate | None  # the module's first stage, as written to the snapshot (None: off)
    pending: Path  # the snapshot written for this chain, renamed into place when it goes live

    @classmethod
    def build(
        cls,
        cfg: Config,
        model: TFLiteScorer,
        stderr: TextIO | None,
        old: VerdictChain | None,
        gate_model: GateModel | None = None,
        snapshot: Path | None = None,
    ) -> VerdictChain:
        """The query log, then the decision steps `resolverguard serve` runs (group, name, lists,
        verdict cache, gate, score, policy), and the answer line; the module's snapshot goes to
        `<snapshot>.pending` (`go_live` puts it in place). (No pause switch yet: the service has no
        control socket; stopping it lets every name pass.)"""
        groups = groups_for(cfg, model.metadata.thresholds)
        cache = VerdictCache.carried(old.cache if old else None, cfg.cache.size, cfg.cache.ttl, model)
        log = QueryLog.carried(
            old.log if old else None, cfg.query_log, cfg.query_store, lambda c, store: QueryLog(c, stderr, store=store)
        )
        pending = (snapshot or DEFAULT_SOCKET.with_name("unbound.sock.gate")).with_suffix(".pending")
        gate = write_gate_snapshot(pending, cfg, model, groups, gate_model, log.enabled) if snapshot else None
        steps: list[Step | Check] = [QueryLogStep(log)] if log.enabled else []
        decision = service_steps(decision_steps(cfg, model, groups, cache), groups)
        if gate is not None:  # the cascade: names under the gate never reach the CNN (resolverguard.gatestage)
            at = next(i for i, step in enumerate(decision) if isinstance(step, ScoreStep))
            decision.insert(at, GateStep(gate))
        steps += [*decision, VerdictLine(groups)]
        return cls(link(steps, _never), log, cache, gate, pending)

    def go_live(self, snapshot: Path) -> None:
        """Puts this chain's snapshot where the module reads it (an atomic rename)."""
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.pending, snapshot)


class VerdictService:
    """Answers the module's lines on a Unix socket; SIGHUP re-reads the policy (a broken one is
    rejected and the old stays, as `resolverguard serve` does)."""

    def __init__(
        self, cfg: Config, model: TFLiteScorer, path: Path, config_path: Path | None, stderr: TextIO | None = None
    ) -> None:
        self.cfg, self.model, self.path, self.config_path, self.stderr = cfg, model, path, config_path, stderr
        self.snapshot, self.log_path = gate_snapshot_path(path), path.with_name(path.name + ".log")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.gate_model = load_gate(model.path)
        self.current = VerdictChain.build(cfg, model, stderr, None, self.gate_model, self.snapshot)
        self.current.go_live(self.snapshot)
        self.asked = self.blocked = self.logged = 0
        self._server: asyncio.AbstractServer | None = None
        self._logs: asyncio.DatagramTransport | None = None
        self._flusher = HandOverTimer(lambda: self.current.log)

    def say(self, text: str) -> None:
        print(f"resolverguard: {text}", file=self.stderr or sys.stderr, flush=True)

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (self.path, self.log_path):  # sockets left by a service that was killed
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: ModuleConnection(self), str(self.path))
        os.chmod(self.path, 0o666)  # Unbound runs as its own user; the socket is the only way in
        logs = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        logs.bind(str(self.log_path))
        logs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # a burst of cleared names
        os.chmod(self.log_path, 0o666)
        self._logs, _ = await loop.create_datagram_endpoint(lambda: ClearedNames(self), sock=logs)
        self._flusher.start()

    def reload(self) -> bool:
        if self.config_path is None:
            self.say("reload: no policy file; nothing to reload")
            return False
        try:
            cfg = load_config(self.config_path)
            same = cfg.model == self.cfg.model
            model = self.model if same else load_model(cfg.model)
            gate_model = self.gate_model if same else load_gate(model.path)
            fresh = VerdictChain.build(cfg, model, self.stderr, self.current, gate_model, self.snapshot)
        except ConfigError as err:
            self.say(f"reload rejected, previous policy stays in force: {err.location()}")
            return False
        except ResolverGuardError as err:
            self.say(f"reload rejected, previous policy stays in force: {err}")
            return False
        old, self.current, self.cfg, self.model, self.gate_model = self.current, fresh, cfg, model, gate_model
        fresh.go_live(self.snapshot)
        if old.log is not fresh.log:
            old.log.close()
        self.say(f"reloaded {self.config_path}")
        return True

    def answer(self, line: bytes, reply: Any) -> None:
        """Runs one asked line through the chain; `reply(bytes)` gets the answer line, at once
        when nothing must wait (lists, cached verdicts) or when the model's batch is done."""
        self.asked += 1
        request, number = self.request(line)
        if number:
            reply = numbered(number, reply)
        if request is None:
            reply(PASS_LINE)  # a line we cannot read must never block a name: fail open
            return
        drive(self._decide(request, reply))

    async def _decide(self, request: Request, reply: Any) -> None:
        try:
            line = await self.current.chain(request)
        except Exception as err:  # noqa: BLE001 - a bug in one decision must pass the name, not stop the service
            self.say(f"internal error, name passed: {type(err).__name__}: {err}")
            line = PASS_LINE
        if line != PASS_LINE:
            self.blocked += 1
        reply(line or PASS_LINE)

    @staticmethod
    def request(line: bytes) -> tuple[Request | None, bytes]:
        """The request for one line, and its number (b"" when the line has none); a fourth field
        "a" says the module's gate ran and the name is above it (the gate is not run again here),
        "a=REGISTRABLE" the same with the registrable name the gate found (`ModuleNameStep`)."""
        fields = line.decode("ascii", "replace").split("\t")
        count = len(fields)
        number = fields[4].encode() if count == 5 and fields[4].isdigit() else b""
        if count < 3:
            return None, number
        qname, qtype, client = fields[0], fields[1], fields[2]
        try:
            head = QueryHead(0, _RD, qname if qname[-1:] == "." else qname + ".", int(qtype), 1, b"", False, 512, False)
        except ValueError:
            return None, number
        request = Request(head, b"", (client if client != "-" else "", 0), "unbound", time.monotonic())
        if count > 3 and fields[3][:1] == "a":
            gate, _, registrable = fields[3].partition("=")
            if gate == "a":
                request.notes["gate"] = "above"
                if registrable:
                    request.notes["registrable"] = registrable
        return request, number

    def log_cleared(self, data: bytes) -> None:
        """Names the module cleared by itself, for the query log: each runs the chain as if asked
        (the same verdict, pass), and the answer goes nowhere."""
        for line in data.split(b"\n"):
            if line:
                self.logged += 1
                self.answer(line, _discard)

    async def stop(self) -> None:
        self._flusher.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._logs is not None:
            self._logs.close()
        for path in (self.path, self.log_path, self.snapshot):  # no snapshot: the module asks (and fails open)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.current.log.close()


def drive(coro: Coroutine[Any, Any, None]) -> None:
    """Runs a decision to its end without a task: at once when nothing must wait (lists, cached
    verdicts), else resumed from the done callback of each future it waits for (the model's batch).
    A task per name cost the service ~10% of its time per asked name (it answers thousands a
    second), and `_decide` lets no exception out, so a task had nothing to catch."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return
    waiting_on._asyncio_future_blocking = False  # what a task does with a future its coroutine yields
    waiting_on.add_done_callback(lambda _: drive(coro))


def numbered(number: bytes, reply: Any) -> Any:
    """`reply`, with the asked line's number in front of the answer (the module matches them up)."""
    prefix = number + b"\t"
    return lambda line: reply(prefix + line)


def _discard(line: bytes) -> None:
    """Where the answers to cleared names' log lines go: the module did not wait for them."""


def gate_snapshot_path(socket_path: Path) -> Path:
    """Where the service writes the module's snapshot: beside the socket (the module derives it the same way)."""
    return socket_path.with_name(socket_path.name + ".gate")


class ClearedNames(asyncio.DatagramProtocol):
    """The module's fire-and-forget datagrams: names it cleared, one line each, for the query log."""

    def __init__(self, service: VerdictService) -> None:
        self._service = service

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._service.log_cleared(data)


class ModuleConnection(asyncio.Protocol):
    """One Unbound thread's connection: lines in, answer lines out. The answers of one loop turn go
    out in one write (the module asks many names before it reads: one system call each way for all)."""

    def __init__(self, service: VerdictService) -> None:
        self._service, self._buffer = service, b""
        self._transport: asyncio.WriteTransport | None = None
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
            self._service.answer(line, self._write)
        if len(self._buffer) > 4096 and self._transport is not None:  # no name is that long: not the module
            self._transport.close()

    def _write(self, line: bytes) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(line)

    def _flush(self) -> None:
        out, self._out = b"".join(self._out), []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(out)


async def run_service(service: VerdictService) -> None:
    """Serves until SIGTERM or SIGINT; SIGHUP reloads the policy."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def reload() -> None:
        if service.reload():
            settle_memory()

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await service.start()
        settle_memory()
        service.say(
            f"verdict service for Unbound on {service.path}, model {service.model.metadata.model_version}, "
            f"mode {service.cfg.mode.value}"
        )
        await stop.wait()
    finally:
        await service.stop()
