"""Micro-batching: every caller that asks in the same turn of the event loop joins one model call.

A burst of unseen names costs one interpreter invoke, not one each. A lone name is flushed on the
next loop turn, so batching adds no waiting of its own; `max_delay` can hold a batch open a little
longer (bounded) to gather more names under load. The futures are `handoff.Handoff`s: a UDP query
runs on from the flush itself, not a loop turn later, to its upstream query; `holds` (the upstream
forwarder) are held while the batch's queries run on, so those queries leave together
(`steps.upstream.UpstreamForwarder.hold`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from resolverguard.handoff import Handoff, ReplyHold

T = TypeVar("T")


class MicroBatcher(Generic[T]):
    """Collects texts and runs `run` on them together; each caller awaits its own result, in order."""

    def __init__(
        self,
        run: Callable[[list[str]], Sequence[T]],
        max_batch: int = 64,
        max_delay: float = 0.0,
        holds: Sequence[ReplyHold] = (),
    ) -> None:
        self.run, self.max_batch, self.max_delay, self.holds = run, max_batch, max_delay, tuple(holds)
        self._texts: list[str] = []
        self._futures: list[asyncio.Future[T]] = []
        self._timer: asyncio.Handle | asyncio.TimerHandle | None = None
        self.batches = self.names = 0

    def submit(self, text: str) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = Handoff(loop=loop)
        self._texts.append(text)
        self._futures.append(future)
        if len(self._texts) >= self.max_batch:
            self.flush()
        elif self._timer is None:
            self._timer = (
                loop.call_later(self.max_delay, self.flush) if self.max_delay > 0 else loop.call_soon(self.flush)
            )
        return future

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        texts, futures = self._texts, self._futures
        self._texts, self._futures = [], []
        if not texts:
            return
        self.batches, self.names = self.batches + 1, self.names + len(texts)
        try:
            results = self.run(texts)
            if len(results) != len(texts):
                raise ValueError(f"{len(results)} results for {len(texts)} names")
        except Exception as err:  # noqa: BLE001 - handed to every waiting caller; each step decides
            for future in futures:
                if not future.done():
                    future.set_exception(err)
            return
        holds = self.holds
        for hold in holds:
            hold.hold()
        try:
            for future, value in zip(futures, results, strict=True):
                if not future.done():
                    future.set_result(value)  # a UDP query runs on from here to its upstream query (a Handoff)
        finally:
            for hold in holds:
                hold.release()
