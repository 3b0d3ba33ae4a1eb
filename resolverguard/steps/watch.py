"""Client watch step: reads every answer a client gets, and blocks for the clients it flagged.

A `Watcher` (resolverguard.chain): its check runs after the decision checks, so it sees each
query's verdict (an allow-listed name is never touched) and can turn it into a block before the
block step answers; its `seen` reads the answer the check run ends with, whoever made it: the
upstream, the answer cache, or the model's sinkhole. It never waits on anything, and an answer
waits only for `seen` to read its rcode byte and answer count and, for a resolved name the network
already shares, a few dict operations; everything else (a new name, a beacon, the typo check and
the rule for an NXDOMAIN) goes to an inbox read once the answers have left, a turn of the loop's
answers in one callback (`_drain`); alerts leave through `resolverguard.alerts` on a thread.

When nobody is flagged and no likely C2 is known, the way in costs two empty-dict checks; the way
out, a few attribute reads and an append, and in the drain a name several clients use is two dict
operations (bench/results/watch_cost.md). With `workers: N` each client's queries all reach one
worker (resolverguard.reuseport), whose watch sees the whole of that client's walk.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import replace
from sys import intern
from typing import TYPE_CHECKING, Any, TextIO

from resolverguard.addresses import client_ip, networks, within
from resolverguard.alerts import AlertHook
from resolverguard.chain import Next, Outcome, Reply, Request
from resolverguard.config import ClientWatchConfig, WatchAction
from resolverguard.names import DYNAMIC_DNS_SUFFIXES
from resolverguard.steps.querylog import QueryLog, timestamp
from resolverguard.verdicts import Action, Mode, Reason, Verdict
from resolverguard.watch import Flag, LikelyC2, WatchLimits, WatchRule, WatchState, watch_key

if TYPE_CHECKING:
    from resolverguard.groups import ClientGroup
    from resolverguard.steps.family import FamilyHints
    from resolverguard.steps.metrics import Metrics

_NXDOMAIN, _NOERROR = 3, 0
_MODEL_REASONS = (Reason.MODEL, Reason.CACHE)
_PASS, _LOG = Action.PASS, Action.LOG
# What an answer tells the watch (`ClientWatchStep.repeat_of`): the watch key, the model's score,
# whether it resolved (else an NXDOMAIN or the model's sinkhole), the client's group
Repeat = tuple[str, "float | None", bool, "ClientGroup | None"]


def watch_rule(cfg: ClientWatchConfig, named: dict[str, float]) -> WatchRule:
    """The rule from the policy; "suspicious" is the model's log threshold unless the policy says."""
    suspicious = cfg.suspicious_score if cfg.suspicious_score is not None else named.get("log")
    return WatchRule(
        cfg.flag_at,
        cfg.alike_bonus,
        cfg.score_bonus,
        suspicious,
        cfg.window,
        cfg.window_names,
        cfg.quarantine_ttl,
        cfg.likely_c2_ttl,
        cfg.burst_gap,
        cfg.max_c2_per_flag,
        cfg.max_probes_per_flag,
        beacon_points=cfg.beacon_points,
    )


def watch_limits(cfg: ClientWatchConfig) -> WatchLimits:
    return WatchLimits(cfg.max_clients, cfg.max_flagged, cfg.known_names)


class ClientWatchStep:
    def __init__(
        self,
        cfg: ClientWatchConfig,
        state: WatchState,
        log: QueryLog | None = None,
        metrics: Metrics | None = None,
        hints: FamilyHints | None = None,
        hook: AlertHook | None = None,
        stderr: TextIO | None = None,
        resolve_aside: Next | None = None,
        wall: Callable[[], float] = time.time,
        blocks: bool = True,
    ) -> None:
        """`resolve_aside`: how a probe reaches the upstream (the upstream step), None: no probes.
        `blocks`: whether any client's watch quarantines (False: every group's action is log, and
        the way in has nothing to do)."""
        self.cfg, self.state, self._log, self._metrics, self._hints = cfg, state, log, metrics, hints
        self._hook, self._stderr, self._wall, self._resolve_aside = hook, stderr, wall, resolve_aside
        self._exempt = networks(cfg.exempt_clients)
        self.last_bound = 2 * state.limits.max_clients  # last_answer's bound (WatchState.answered)
        self.blocks = blocks
        self._probes: set[asyncio.Task[None]] = set()
        self._inbox: list[tuple[str, str, float | None, float | None, ClientGroup | None]] = []  # see _drain

    @property
    def changes_way_in(self) -> bool:
        """False when no group quarantines: the chain then leaves `check` out (resolverguard.chain)."""
        return self.blocks

    def check(self, request: Request) -> Outcome:
        """On the way in: nothing to do unless someone is flagged or a likely C2 is known
        (`holds_queries`, written out: this runs for every answer the chain makes)."""
        if self.blocks:
            state = self.state
            if state.flagged or state.likely_c2:
                self._decide(request)
        return None

    def holds_queries(self) -> bool:
        """Whether the way in may change an answer now (a flagged client or a likely C2 to block):
        then every query walks the chain (the repeat shortcut asks this first)."""
        state = self.state
        return self.blocks and bool(state.flagged or state.likely_c2)

    def seen(self, request: Request, reply: Reply) -> None:
        """On the way out: what the answer says (a name resolved, an NXDOMAIN, the model's sinkhole).
        Runs for every answer the chain makes (the repeat shortcut's: `seen_repeat`), so for every
        never-seen name: `_read` and `seen_repeat` are written out here, without the Repeat tuple
        between them (keep the three alike). Through them it was ~175 bytecodes and five calls per
        never-seen name; this, ~135 and none (with `WatchState._flagged_nx` and the chain leaving out
        the idle `check`: -3.6k of the watch's ~17k instructions per never-seen name, counted by
        bench/watch_grind.py; bench/results/watch_cost_watch7.md)."""
        name = request.name
        if reply is None or name is None or name.label is None or len(reply) < 12:
            return
        verdict = request.verdict
        action = verdict.action if verdict is not None else _PASS
        if action is _PASS or action is _LOG:  # an answer we did not make ourselves
            rcode = reply[3] & 0x0F
            if rcode == _NOERROR and (reply[6] or reply[7]):  # records: it resolved (NODATA says nothing)
                key = name.registrable
                if key in DYNAMIC_DNS_SUFFIXES:
                    key = watch_key(name)
                if key is None:
                    return
                client, started, state = request.client[0], request.started, self.state
                last = state.last_answer  # WatchState.answered, as in seen_repeat
                last[client] = started
                if len(last) > self.last_bound:
                    last.clear()
                first = state.known.get(key)  # None, the common case (a never-seen name): no == with None
                if first is not None and (
                    first == "" or (first == client and self._own_again(client, key, started) is not None)
                ):
                    return
                group, inbox = request.group, self._inbox  # (`_tag`, written out)
                if not inbox:
                    asyncio.get_running_loop().call_soon(self._drain)
                inbox.append(
                    (client, key, request.score, started, None if group is None or group.watch is self.cfg else group)
                )
                return
            if rcode != _NXDOMAIN:
                return
        elif verdict is None or verdict.reason not in _MODEL_REASONS:
            return  # the model's sinkhole (below) is evidence as good as an NXDOMAIN
        group = request.group
        if not (self.cfg if group is None else group.watch).enabled:
            return
        key = name.registrable  # (`watch_key`: the label is there)
        if key in DYNAMIC_DNS_SUFFIXES:
            key = watch_key(name)
        if key is None:
            return
        client = request.client[0]
        if self._exempt and _exempt(client, self._exempt):
            return
        inbox = self._inbox  # the model's sinkholes: half of compare.py's misses
        if not inbox:
            asyncio.get_running_loop().call_soon(self._drain)
        inbox.append((client, key, request.score, None, None if group is None or group.watch is self.cfg else group))

    def repeat_of(self, request: Request, reply: Reply) -> Repeat | None:
        """What this answer tells the watch, kept by the repeat shortcut for each repeat of it
        (`seen_repeat`: the same name, verdict, rcode and records every time), or None: nothing
        (NODATA, an answer of ours, a name with no registrable, a group whose watch is off).
        The key is interned: the string the name parser made (and its memo hands out again), so
        mostly the very string the known names hold, and a lookup compares identities. Only
        here, once per kept answer: interning every answer's key (`seen`, `_read`) was, for a
        never-seen name, an insert into the interpreter's big dict of interned strings, and a
        delete when the name left the known names, both out of the CPU cache; with quiet
        repeats (`seen_repeat`) a cached answer looks its name up at most once a second.
        Why not the chain's Request: ~6 objects the collector walks per kept answer (Request,
        head, name, verdict, notes): with them the server tracked ~20k objects more and ran 5x
        the young collections on cached answers (bench/results/watch_cost.md); this tuple the
        collector stops tracking at its first pass."""
        repeat = self._read(request, reply)
        return None if repeat is None else (intern(repeat[0]), repeat[1], repeat[2], repeat[3])

    def _read(self, request: Request, reply: Reply) -> Repeat | None:
        """`repeat_of`, the key as the name parser made it."""
        name = request.name
        if reply is None or name is None or name.label is None or len(reply) < 12:
            return None
        verdict = request.verdict
        action = verdict.action if verdict is not None else _PASS
        if action is _PASS or action is _LOG:  # an answer we did not make ourselves
            rcode = reply[3] & 0x0F
            if rcode == _NOERROR and (reply[6] or reply[7]):  # records: it resolved (NODATA says nothing)
                key = name.registrable
                if key in DYNAMIC_DNS_SUFFIXES:
                    key = watch_key(name)
                return None if key is None else (key, request.score, True, self._tag(request))
            if rcode != _NXDOMAIN:
                return None
        elif verdict is None or verdict.reason not in _MODEL_REASONS:
            return None  # the model's sinkhole (below) is evidence as good as an NXDOMAIN
        if not self._group_watch(request).enabled:
            return None
        key = watch_key(name)
        return None if key is None else (key, request.score, False, self._tag(request))

    def _tag(self, request: Request) -> ClientGroup | None:
        """The client's group, None for the default one (whose watch is this step's `cfg`): a
        tuple of a string, a float, a bool and None is one the collector stops walking."""
        group = request.group
        return None if group is None or group.watch is self.cfg else group

    def seen_repeat(self, repeat: Repeat, client: str, started: float) -> bool:
        """An answer as `repeat_of` read it, for `client` at `started`: a resolved name's common
        cases read at once (`WatchState.answered`'s dict operations, written out here: this runs
        for every cached answer, and the call was ~70 ns of ~250, measured in process); the
        rest to the inbox, read after the answer has left (`_drain`): an NXDOMAIN's typo check
        costs ~10-40 us. True when this client's next repeats of the answer have nothing to tell
        but their time (`last_answer`: the repeat shortcut then notes it itself, `ReplyShortcut.reply`,
        ~120 ns of ~250-550 saved per cached answer, measured in process): a name several clients resolve, or one
        of this client's own that is no longer new (out of its ring, or asked again already).
        That lasts until the name leaves the known names (the oldest of `known_names` new ones)
        or another client resolves it first after that; the repeat shortcut asks again at the
        next second once any known name has left (`WatchState.known_left`), so what it skips is
        at most a second of that."""
        key, score, resolved, group = repeat
        if resolved:  # WatchState.answered
            state = self.state
            last = state.last_answer
            last[client] = started
            if len(last) > self.last_bound:
                last.clear()  # bounded, crudely (WatchState.answered)
            first = state.known.get(key)
            if first == "":
                return True  # several clients resolve it: nothing more to read
            if first == client:  # this client's own new name: a beacon? (`_own_again`, written out)
                evidence = state.clients.get(client)
                if evidence is None or key not in evidence.resolved:
                    return True
                entry = evidence.entry(key)
                if entry is None or entry.lookups >= 2:
                    return True
                if entry.asked_soon(started):
                    return False  # (its time noted: not quiet, the next one may be a beacon)
        elif self._exempt and _exempt(client, self._exempt):
            return False
        inbox = self._inbox
        if not inbox:
            asyncio.get_running_loop().call_soon(self._drain)
        inbox.append((client, key, score, started if resolved else None, group))
        return False

    def _own_again(self, client: str, key: str, started: float) -> bool | None:
        """A client's own new name resolved for it again (`WatchState.answered`'s last lines): True
        when nothing is left to read (out of its ring, or asked again already), False when only its
        time was noted (not quiet: the next lookup may be a beacon), None: for the drain. (The
        same lines are written out in `seen_repeat`, where they are the cached answers' common
        case: one client's names on compare.py's hits.)"""
        evidence = self.state.clients.get(client)
        if evidence is None or key not in evidence.resolved:
            return True
        entry = evidence.entry(key)
        if entry is None or entry.lookups >= 2:
            return True
        if entry.asked_soon(started):
            return False
        return None

    def _drain(self) -> None:
        """What the answers of a turn of the loop said, read in their order once they have left
        (`WatchState.observe`): the watch never delays an answer, and a turn's answers cost one
        callback, not one each."""
        events, self._inbox = self._inbox, []
        pending = iter(events)
        found: list[LikelyC2] = []
        raised: list[tuple[Flag, ClientGroup | None]] = []
        while True:
            try:
                stopped = self.state.observe(pending, found, raised)
                break
            except Exception as err:  # noqa: BLE001 - the watch must never take DNS down; read the rest
                self._complain(err)
        if stopped is not None:  # a long backlog of labels to count first: the rest on the next turn
            self._inbox = [stopped, *pending, *self._inbox]
            asyncio.get_running_loop().call_soon(self._drain)
        try:
            for flag, group in raised:
                self._announce_flag(flag, self._watch_of(group).action is WatchAction.QUARANTINE)
            if found:
                self._announce_c2(found)
        except Exception as err:  # noqa: BLE001
            self._complain(err)

    def _complain(self, err: Exception) -> None:
        print(f"resolverguard: client watch: {type(err).__name__}: {err}", file=self._stderr or sys.stderr)

    def _watch_of(self, group: ClientGroup | None) -> ClientWatchConfig:
        return group.watch if group is not None else self.cfg

    def _group_watch(self, request: Request) -> ClientWatchConfig:
        """The client's group's `client_watch` (enabled, action, block_action may differ per group)."""
        return self._watch_of(request.group)

    def _decide(self, request: Request) -> None:
        """Blocks a likely C2 for everyone, and a flagged client's suspect names (quarantine). The
        cheap questions first: with a client flagged somewhere, another client's query costs one
        dict lookup here."""
        name, verdict, state = request.name, request.verdict, self.state
        if name is None or (verdict is not None and verdict.reason is Reason.ALLOW_LIST):  # allow wins
            return
        mine = self._group_watch(request)
        if mine.action is not WatchAction.QUARANTINE or not mine.enabled:
            return  # `log`: the watch blocks nothing for this client
        flag = state.flag_of(request.client[0]) if state.flagged else None
        if flag is None and not state.likely_c2:
            return
        key = watch_key(name)
        if key is None:
            return
        reason = None
        if state.likely_c2 and state.c2_until(key) is not None:
            reason, flag = Reason.LIKELY_C2, None
        elif flag is not None and not (self._exempt and _exempt(request.client[0], self._exempt)):
            reason = Reason.CLIENT_WATCH if state.quarantines(flag, key) else None
        if reason is None:
            return
        if reason is Reason.CLIENT_WATCH and flag is not None:
            probe, found = state.quarantined(flag, key, request.score)
            if probe and self._resolve_aside is not None:
                self._probe(request, self._resolve_aside)
            if found:
                self._announce_c2(found)
        group = request.group
        if group is not None and group.policy.mode is Mode.MONITOR:
            request.verdict = Verdict(Action.LOG, reason, would=mine.block_action)
        else:
            request.verdict = Verdict(mine.block_action, reason)

    def _probe(self, request: Request, next_step: Next) -> None:
        """Resolves a quarantined look-alike name in the background (the client already has its
        block answer) straight at the upstream; if it resolves, it is recorded as the likely C2."""
        copy = replace(request, verdict=Verdict(Action.PASS, Reason.CLIENT_WATCH), notes={}, upstream_error=None)
        task = asyncio.ensure_future(self._resolve(copy, next_step))
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _resolve(self, request: Request, next_step: Next) -> None:
        try:
            reply = await next_step(request)
        except Exception:  # noqa: BLE001 - a probe is best effort
            return
        if reply is None or len(reply) < 12 or request.name is None:
            return
        key = watch_key(request.name)
        if reply[3] & 0x0F == _NOERROR and (reply[6] or reply[7]) and key is not None:
            found = self.state.probe_resolved(request.client[0], key)
            if found:
                self._announce_c2(found)

    # -- telling people --------------------------------------------------------------------
    def _until(self, until: float) -> str:
        return timestamp(self._wall() + until - self.state.clock())

    def _alert(self, event: dict[str, Any], line: str) -> None:
        """An alert as the user meets it: one event line in the query log and one line on stderr."""
        if self._log is not None:
            self._log.write(event)
        print(f"resolverguard: ALERT {line}", file=self._stderr or sys.stderr, flush=True)

    def _announce_flag(self, flag: Flag, quarantine: bool) -> None:
        names = [f.key for f in flag.names]
        hint = self._family_hint([f.label for f in flag.names])
        until = self._until(flag.until) if quarantine else None
        event: dict[str, Any] = {
            "time": timestamp(self._wall()),
            "event": "client_flagged",
            "client": flag.client,
            "names": names,
            "family_hint": hint,
            "until": until,
            "action": "quarantine" if quarantine else "log",
            "points": round(flag.points, 2),
            "cluster": flag.describe(),
        }
        shown = ", ".join(names[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")
        self._alert(
            dict(event),
            f"client {flag.client} flagged by the client watch: {len(names)} NXDOMAIN names "
            f"like a DGA ({flag.describe()}{', like ' + hint if hint else ''}): {shown}; "
            f"{'quarantined until ' + until if until else 'logged only'}",
        )
        if self._metrics is not None:
            self._metrics.watch_flags.inc()
        if self._hook is not None:
            self._hook.submit(event)
        if self.state.on_found is not None:
            self.state.on_found(flag)
        found = self.state.c2_at_flag(flag)
        if found:
            self._announce_c2(found)

    def _announce_c2(self, found: list[LikelyC2]) -> None:
        blocks = self.cfg.action is WatchAction.QUARANTINE  # the top level's action: the C2 is the network's
        for c2 in found:
            until = self._until(c2.until) if blocks else None
            event: dict[str, Any] = {"time": timestamp(self._wall()), "event": "likely_c2", "name": c2.name}
            event.update(client=c2.client, until=until)
            self._alert(
                event,
                f"likely C2 {c2.name} (resolved for {c2.client} during its NXDOMAIN burst); "
                f"{'blocked for every client until ' + until if until else 'logged only'}",
            )
            if self._metrics is not None:
                self._metrics.watch_c2.inc()
            if self.state.on_found is not None:
                self.state.on_found(c2)

    def _family_hint(self, labels: list[str]) -> str | None:
        """The family most of the names resemble (the family head's vote per name; a hint only
        with a majority, since an unseen family spreads its votes)."""
        if self._hints is None or not labels:
            return None
        try:
            votes = Tally(family for family, _ in self._hints.hints(labels))
        except Exception:  # noqa: BLE001 - a hint must never cost the alert
            return None
        family, count = votes.most_common(1)[0]
        return f"{family} ({count}/{len(labels)})" if count * 2 >= len(labels) else None  # no majority: no hint


def _exempt(client: str, nets: tuple[Any, ...]) -> bool:
    ip = client_ip(client)
    return ip is not None and within(ip, nets)
