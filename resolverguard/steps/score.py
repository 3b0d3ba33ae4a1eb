"""Score step: asks the model for P(DGA) of the scored name, and never lets a model fault escape.

Any exception from the scorer (a NaN, an interpreter error) is recorded on the request; the policy
step then applies `on_model_error`, so a broken model costs filtering, never name resolution.

Names are scored in micro-batches: every query that reaches this step in the same turn of the event
loop joins one interpreter call (a burst of unseen names costs one invoke, not one each). A lone
query is flushed on the next loop turn, so batching adds no waiting of its own; `max_delay` can
hold a batch open a little longer (bounded) to gather more names under load.
"""

from __future__ import annotations

import asyncio
import time

from resolverguard.chain import Next, Reply, Request
from resolverguard.model import Scorer
from resolverguard.steps.names import InputForm


class MicroBatcher:
    """Collects texts and scores them together; each caller awaits its own score, in order."""

    def __init__(self, scorer: Scorer, max_batch: int = 64, max_delay: float = 0.0) -> None:
        self.scorer, self.max_batch, self.max_delay = scorer, max_batch, max_delay
        self._texts: list[str] = []
        self._futures: list[asyncio.Future[float]] = []
        self._timer: asyncio.Handle | asyncio.TimerHandle | None = None
        self.batches = self.names = 0

    def score(self, text: str) -> asyncio.Future[float]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
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
            scores = self.scorer.score(texts)
            if len(scores) != len(texts):
                raise ValueError(f"{len(scores)} scores for {len(texts)} names")
        except Exception as err:  # noqa: BLE001 - handed to every waiting query, see module doc
            for future in futures:
                if not future.done():
                    future.set_exception(err)
            return
        for future, value in zip(futures, scores.tolist(), strict=True):
            if not future.done():
                future.set_result(float(value))


class ScoreStep:
    def __init__(
        self, scorer: Scorer, form: InputForm = InputForm.LABEL, max_batch: int = 64, max_delay: float = 0.0
    ) -> None:
        self._batcher, self._form = MicroBatcher(scorer, max_batch, max_delay), form

    async def __call__(self, request: Request, next_step: Next) -> Reply:
        text = request.name.model_input(self._form) if request.name else None
        if request.verdict is None and request.score is None and text is not None:
            started = time.perf_counter()
            try:
                request.score = await self._batcher.score(text)
            except Exception as err:  # noqa: BLE001 - any scorer fault must fail safe, see module doc
                request.error = f"model error: {type(err).__name__}: {err}"
            request.inference_seconds = time.perf_counter() - started
        return await next_step(request)
