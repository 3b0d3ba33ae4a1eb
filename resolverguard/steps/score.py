"""Score step: asks the model for P(DGA) of the scored name, and never lets a model fault escape.

Any exception from the scorer (a NaN, an interpreter error) is recorded on the request; the policy
step then applies `on_model_error`, so a broken model costs filtering, never name resolution.
Names are scored in micro-batches (resolverguard.batching): a burst of unseen names is one call.
"""

from __future__ import annotations

import time

from resolverguard.batching import MicroBatcher
from resolverguard.chain import Next, Reply, Request
from resolverguard.model import Scorer
from resolverguard.steps.names import InputForm


def batch_scorer(scorer: Scorer, max_batch: int = 64, max_delay: float = 0.0) -> MicroBatcher[float]:
    def scores(texts: list[str]) -> list[float]:
        return [float(x) for x in scorer.score(texts).tolist()]

    return MicroBatcher(scores, max_batch, max_delay)


class ScoreStep:
    def __init__(
        self, scorer: Scorer, form: InputForm = InputForm.LABEL, max_batch: int = 64, max_delay: float = 0.0
    ) -> None:
        self._batcher, self._form = batch_scorer(scorer, max_batch, max_delay), form

    async def __call__(self, request: Request, next_step: Next) -> Reply:
        text = request.name.model_input(self._form) if request.name else None
        if request.verdict is None and request.score is None and text is not None:
            started = time.perf_counter()
            try:
                request.score = await self._batcher.submit(text)
            except Exception as err:  # noqa: BLE001 - any scorer fault must fail safe, see module doc
                request.error = f"model error: {type(err).__name__}: {err}"
            request.inference_seconds = time.perf_counter() - started
        return await next_step(request)
