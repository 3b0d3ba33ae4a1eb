"""Score step: asks the model for P(DGA) of the scored name, and never lets a model fault escape.

Any exception from the scorer (a NaN, an interpreter error) is recorded on the request; the policy
step then applies `on_model_error`, so a broken model costs filtering, never name resolution.
Names are scored in micro-batches (resolverguard.batching): a burst of unseen names is one call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from resolverguard.batching import MicroBatcher
from resolverguard.chain import Outcome, Request
from resolverguard.handoff import ReplyHold
from resolverguard.model import Scorer
from resolverguard.names import InputForm
from resolverguard.steps.cache import VerdictCache

# Batches smaller than this are scored one name at a time. Measured on the shipped ensemble
# (compare's never-seen names, CPU per call, load ~4): one name 19 us; 2 names 219 us as a batch
# against 75 one by one, 4: 136 / 82, 6: 155 / 120, 8: 159 / 165, 16: 226 / 344. A batch pays
# numpy's and the interpreter's fixed costs (then also a resize for each new batch size: gone since
# session 22, `TFLiteScorer._invoke`; measured again then, batches of 6 still cost more than 6 lone
# names, 8 about the same), a lone name takes the pure-Python path (`EnsembleScorer._score_one`). At
# 20% load most batches are one name, and the few of 2-6 (datagrams that piled up while the process
# was not running) were the dearest model calls at the p99 (bench/results/miss_std6.md). A faster
# lone name moves the crossover up.
SINGLES_BELOW = 8


def batch_scorer(
    scorer: Scorer,
    max_batch: int = 64,
    max_delay: float = 0.0,
    singles_below: int = SINGLES_BELOW,
    holds: Sequence[ReplyHold] = (),
) -> MicroBatcher[float]:
    def scores(texts: list[str]) -> list[float]:
        if len(texts) < singles_below:
            return [float(scorer.score([text])[0]) for text in texts]
        return [float(x) for x in scorer.score(texts).tolist()]

    return MicroBatcher(scores, max_batch, max_delay, holds)


class ScoreStep:
    """Scores names the lists and the verdict cache left open, and stores the score in the cache."""

    def __init__(
        self,
        scorer: Scorer,
        form: InputForm = InputForm.LABEL,
        cache: VerdictCache | None = None,
        max_batch: int = 64,
        max_delay: float = 0.0,
        holds: Sequence[ReplyHold] = (),
    ) -> None:
        """`holds`: held while a batch's queries run on (the upstream forwarder: `MicroBatcher`)."""
        self._batcher, self._form = batch_scorer(scorer, max_batch, max_delay, holds=holds), form
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
