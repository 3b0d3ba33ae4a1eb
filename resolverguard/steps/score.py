"""Score step: asks the model for P(DGA) of the scored name, and never lets a model fault escape.

Any exception from the scorer (a NaN, an interpreter error) is recorded on the request; the policy
step then applies `on_model_error`, so a broken model costs filtering, never name resolution.
Names are scored in micro-batches (resolverguard.batching): a burst of unseen names is one call.
"""

from __future__ import annotations

import time

from resolverguard.batching import MicroBatcher
from resolverguard.chain import Outcome, Request
from resolverguard.model import Scorer
from resolverguard.names import InputForm
from resolverguard.steps.cache import VerdictCache


def batch_scorer(scorer: Scorer, max_batch: int = 64, max_delay: float = 0.0) -> MicroBatcher[float]:
    def scores(texts: list[str]) -> list[float]:
        return [float(x) for x in scorer.score(texts).tolist()]

    return MicroBatcher(scores, max_batch, max_delay)


class ScoreStep:
    """Scores names the lists and the verdict cache left open, and stores the score in the cache."""

    def __init__(
        self,
        scorer: Scorer,
        form: InputForm = InputForm.LABEL,
        cache: VerdictCache | None = None,
        max_batch: int = 64,
        max_delay: float = 0.0,
    ) -> None:
        self._batcher, self._form = batch_scorer(scorer, max_batch, max_delay), form
        self._cache = cache if cache is not None else VerdictCache(0, 0)  # (an empty cache is falsy)

    def check(self, request: Request) -> Outcome:
        if request.verdict is not None or request.score is not None or request.name is None:
            return None
        text = request.name.model_input(self._form)
        return self._score(request, text) if text is not None else None

    async def _score(self, request: Request, text: str) -> None:
        started = time.perf_counter()
        try:
            request.score = await self._batcher.submit(text)
            self._cache.put(text, request.score)
        except Exception as err:  # noqa: BLE001 - any scorer fault must fail safe, see module doc
            request.model_error = f"{type(err).__name__}: {err}"
        request.inference_seconds = time.perf_counter() - started
