"""The repeat shortcut: a query whose bytes (all but the ID) were just answered from the caches gets
the same reply again, without walking the chain.

Why: a cached answer costs ~12 us of Python in the chain (header and question read into objects, a
Request, ten steps, two LRU caches) where the reply it ends with is bytes the answer cache already
reuses while its TTLs stand (`_Entry.serve`); bench/hotpath.py measures both. Most traffic is such
repeats (compare.py's hits: Zipf over 10k names). The shortcut keeps, per exact query (every byte
but the ID: flags, question with its letter case, EDNS), the reply the chain gave and the log
record it made, and serves `ID + reply[2:]` while nothing the chain read could change the reply:

- it learns only from replies that are the same for the same bytes for a while: answer-cache hits
  (until the end of the whole second their TTLs were counted in, the prefetch window or expiry,
  whichever is first, and only while that cache entry is not replaced) and blocks (constant for a
  policy); and only when the score, if any, came from the verdict cache (until that entry expires),
  with no error, no pause and no note but the answer cache's;
- it exists only for chains whose decisions do not depend on the client or on anything but the
  name (`build_pipeline` builds it without client groups, `$client=` list rules and metrics), and
  belongs to one pipeline: a reload or a list update starts an empty one;
- with the client watch: only while the watch's way in has nothing to do (nobody flagged in
  quarantine, no likely C2 to block: `ClientWatchStep.holds_queries`), and the watch is told of
  every repeat as of the chain's answer (`seen_repeat`, with what `repeat_of` read from the
  chain's answer once: a small tuple, not the chain's Request, which the collector would walk),
  so it reads every answer either way; a repeat the watch calls quiet for its client (a name
  that is no news but its time) has only that time noted here, by the next repeats of that
  client, until a known name leaves the watch (`WatchState.known_left`: the only way what
  `seen_repeat` said can change), and then from the next second on it is asked again;
- a pause (which turns blocks into passes) turns it off while it lasts.

What it does not redo: the caches' LRU order (a name served here is touched once a second, when
the chain answers it again) and, after an LRU eviction or a verdict-cache eviction, up to a second
of the reply the evicted entry would have given. Answers are byte-identical to the chain's
(tests/test_shortcut.py); the query log gets the record the chain would have made, with this
query's time, client and latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from resolverguard.chain import Request
from resolverguard.logwriter import QueryShape
from resolverguard.names import InputForm
from resolverguard.steps.answers import AnswerCache, _Entry
from resolverguard.steps.cache import VerdictCache
from resolverguard.steps.pause import PauseSwitch
from resolverguard.steps.querylog import QueryLog
from resolverguard.steps.watch import ClientWatchStep, Repeat

NEVER = float("inf")
CLOCK_MARGIN = 0.001  # a bound read from the verdict cache's clock ends this much earlier on ours
LEARNABLE_NOTES = frozenset(("answer_cache",))  # notes that depend on the name only
_MONOTONIC = time.monotonic  # the answer cache's clock unless a test drives its own (`reply`: the log's clocks in C)
_Kept = tuple[bytes, float, QueryShape | None, _Entry | None, float, Repeat | None, str | None, int]  # see _known


class ReplyShortcut:
    """Replies to exact repeats of queries the chain answered from its caches (see module doc).
    Time is the answer cache's clock (`answers.clock`, read on each use: tests drive it)."""

    def __init__(
        self,
        answers: AnswerCache,
        verdicts: VerdictCache,
        pause: PauseSwitch,
        log: QueryLog | None,
        form: InputForm,
        size: int = 16384,
        wall: Callable[[], float] = time.time,
        watch: ClientWatchStep | None = None,
    ) -> None:
        self._answers, self._verdicts, self._pause, self._log, self._form = answers, verdicts, pause, log, form
        self._size, self._wall, self._watch = size, wall, watch
        self._log_add = log.add_query if log is not None else None
        # the same with the clocks read in C, while they are time's own (tests drive theirs): `reply`
        self._log_since = log.add_since if log is not None and wall is time.time else None
        # asked before each repeat: only a watch that may block (quarantine) can hold queries back
        self._holds = watch.holds_queries if watch is not None and watch.blocks else None
        self._seen = watch.seen_repeat if watch is not None else None  # told of each repeat
        # a quiet repeat's time goes straight to the watch's last answers (`reply`)
        self._last_answer = watch.state.last_answer if watch is not None else {}
        self._last_bound = watch.last_bound if watch is not None else 0
        self._state = watch.state if watch is not None else None
        # packet[2:] -> (reply[2:], until, log shape of the chain's answer, answer-cache entry or
        # None, hard, what the answer tells the watch or None, the client it is quiet for or None,
        # the watch's `known_left` when it said so): the reply stands until `until`; an entry's
        # reply is re-served with its TTLs counted again (as the cache itself does) until `hard`
        self._known: dict[bytes, _Kept] = {}
        self.served = 0

    def __len__(self) -> int:
        return len(self._known)

    def reply(self, packet: bytes, client: tuple[str, int]) -> bytes | None:
        """The reply for a repeat (and its log record kept), or None: the chain answers."""
        key = packet[2:]
        found = self._known.get(key)
        if found is None or self._pause.until:
            return None
        holds = self._holds
        if holds is not None and holds():
            return None
        tail, until, shape, entry, hard, repeat, quiet, left = found
        clock = self._answers.clock
        started = clock()
        renew = False
        if started >= until:
            if entry is None or entry.retired or started >= hard:
                del self._known[key]
                return None
            elapsed = int(started - entry.stored)  # a new second: the TTLs counted again, as `get` would
            tail = entry.serve(packet, len(tail) + 2 != len(entry.layout.wire), elapsed)[2:]
            until, renew = min(entry.stored + elapsed + 1, hard), True
            if quiet is not None and self._state is not None and self._state.known_left != left:
                quiet = None  # a known name has left since: the watch is asked again
        elif entry is not None and entry.retired:
            del self._known[key]
            return None
        reply = packet[:2] + tail
        self.served += 1
        if entry is not None:
            self._answers.hits += 1
        if repeat is not None and self._seen is not None:
            host = client[0]
            if quiet is not None and host == quiet:
                # nothing for the watch but the time (`ClientWatchStep.seen_repeat`'s first lines)
                last = self._last_answer
                last[host] = started
                if len(last) > self._last_bound:
                    last.clear()
            elif self._seen(repeat, host, started) and quiet is None and self._state is not None:
                quiet, renew, left = host, True, self._state.known_left  # (the first quiet client keeps it)
        if renew:
            self._known[key] = (tail, until, shape, entry, hard, repeat, quiet, left)
        if shape is not None and self._log_add is not None:
            # the chain's shape (one shared object) with this query's time, client and latency
            if clock is _MONOTONIC and self._log_since is not None:
                self._log_since(client[0], started, shape)
            else:
                self._log_add(self._wall(), client[0], clock() - started, shape)
        return reply

    def learn(self, request: Request, reply: bytes | None) -> None:
        """Keeps the chain's reply to `request` when a repeat would get the same (module doc)."""
        verdict = request.verdict
        if reply is None or verdict is None or self._pause.until:
            return
        if self._holds is not None and self._holds():
            return
        if request.model_error is not None or request.upstream_error is not None or request.internal_error is not None:
            return
        notes = request.notes
        if notes and not LEARNABLE_NOTES.issuperset(notes):
            return
        if request.score is not None and not request.score_cached:
            return  # scored just now: a repeat is a verdict-cache hit, logged as such by the chain
        entry: _Entry | None = None
        if notes.get("answer_cache") == "hit":
            entry = self._answers.entry_for(request)
            bounds = self._answers.reuse_bounds(entry, reply) if entry is not None else None
            if bounds is None:
                return
            until, hard = bounds
        elif verdict.action.blocks:
            until = hard = NEVER
        else:
            return
        if request.score is not None:
            hard = min(hard, self._verdict_until(request))
            until = min(until, hard)
        if until <= self._answers.clock():
            return
        if len(self._known) >= self._size:
            self._forget_expired()
        shape = self._log.shape_of(request) if self._log is not None else None
        repeat = self._watch.repeat_of(request, reply) if self._watch is not None else None
        self._known[request.packet[2:]] = (reply[2:], until, shape, entry, hard, repeat, None, 0)

    def _verdict_until(self, request: Request) -> float:
        """When the score's verdict-cache entry expires, on the answer cache's clock."""
        key = request.name.model_input(self._form) if request.name is not None else None
        expires = self._verdicts.expires(key) if key is not None else None
        if expires is None:
            return 0.0
        return self._answers.clock() + (expires - self._verdicts.clock()) - CLOCK_MARGIN

    def _forget_expired(self) -> None:
        """At the size bound: drops what has expired, and everything when that is not enough."""
        now = self._answers.clock()
        self._known = {k: v for k, v in self._known.items() if v[4] > now}
        if len(self._known) >= self._size // 2:
            self._known.clear()
