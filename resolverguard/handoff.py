"""Futures that hand their result straight to the UDP query waiting on them, one loop turn sooner.

A never-seen name waits twice: for the model's batch and for its upstream answer. With a plain
future, `set_result` only schedules the waiter's callback (`call_soon`), and the query goes on in
a later loop turn, behind every datagram that arrived meanwhile (each ~50 us of first steps) and
every other callback: bench/miss_stages.py found those two waits for a turn (the batch's end to
the resume, the upstream reader to the resume) to make up much of the slowest 1% at 20% load
(issue #17, bench/results/miss_std6.md). A `Handoff` is an asyncio future (a Task awaits it as
any other: the TCP path is unchanged) that a `server.Resumed` query registers itself on
(`direct`) instead of adding a done callback; `set_result` then resumes that query at once, in
the caller's own callback: queries in flight finish before new ones start, and no loop turn or
handle is spent on them.

An exception or a cancellation resumes it on the next loop turn instead (`call_soon`), as a plain
future's callback would: they are rare, and whoever sets them may be walking its own tables
(the forwarder's timeouts, a socket's waiters) that the resumed query would change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class ReplyHold(Protocol):
    """Where a resumed query's reply is sent (`udpbatch.UdpListener`), asked to keep the replies
    made between `hold` and `release` and send them together (one `sendmmsg`) at the release.

    The upstream's reader (`steps.upstream.Channel`) holds the reply senders of the queries it
    resumes while it reads the answers that are there: at the peak it reads several per wake-up,
    and each reply's own `sendto` was a fifth of the server's samples on never-seen names
    (bench/results/miss_spy_miss9_before.md). A wake-up with one answer (light load) sends it at
    the release, right after that query's own work: no wait behind a later loop turn."""

    def hold(self) -> None: ...

    def release(self) -> None: ...


class Handoff(asyncio.Future[T]):
    """A future with one more attribute: the resume callback of the `server.Resumed` waiting on it.

    No `__init__` and no slots: asyncio's own (C) constructor, and `direct` a class default until a
    query sets it (a Python `__init__` made each one ~0.3 us dearer to make)."""

    direct: Callable[[Any], None] | None = None
    reply_hold: ReplyHold | None = None  # where the waiting query's reply goes, set with `direct`

    def set_result(self, result: T) -> None:
        _set_result(self, result)
        direct = self.direct
        if direct is not None:
            self.direct = None
            direct(None)

    def set_exception(self, exception: type | BaseException) -> None:
        _set_exception(self, exception)
        self._resume_soon()

    def cancel(self, msg: Any | None = None) -> bool:
        cancelled = _cancel(self, msg)
        if cancelled:
            self._resume_soon()
        return cancelled

    def _resume_soon(self) -> None:
        direct = self.direct
        if direct is not None:
            self.direct = None
            self.get_loop().call_soon(direct, None)


_set_result, _set_exception, _cancel = asyncio.Future.set_result, asyncio.Future.set_exception, asyncio.Future.cancel
