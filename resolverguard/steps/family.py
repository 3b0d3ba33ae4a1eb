"""Family hint: for a name the detector flagged, the known DGA family it most resembles.

Runs a second small model (`models/family.tflite`, a softmax over the training families) only for
names whose verdict is log or a block (or would be, in monitor mode), so its cost stays off the path
of ordinary queries; flagged names arriving together share one (micro-batched) call. The hint is
logged (`family_hint`, `family_p`), so the step is in the chain only when the query log is on; it
never changes the verdict, and a failure here is ignored rather than allowed to touch the answer.
"""

from __future__ import annotations

from pathlib import Path

from resolverguard.batching import MicroBatcher
from resolverguard.chain import Outcome, Request
from resolverguard.errors import ModelError
from resolverguard.model import TFLiteScorer, load_model
from resolverguard.verdicts import Action


class FamilyHints:
    @staticmethod
    def carried(old: FamilyHints | None, path: Path | None) -> FamilyHints | None:
        """The loaded family head across a reload that names the same file (None: no hints)."""
        if old is not None and old.model.path == path:
            return old
        return FamilyHints(load_model(path)) if path is not None else None

    def __init__(self, model: TFLiteScorer) -> None:
        families = (model.metadata.extra or {}).get("families")
        if not isinstance(families, list) or not all(isinstance(f, str) for f in families) or not families:
            raise ModelError(f"{model.path}: family metadata needs a non-empty 'families' list")
        self.model, self.families = model, families

    def hints(self, texts: list[str]) -> list[tuple[str, float]]:
        """The most likely family and its probability, per text."""
        probs = self.model.outputs(texts)
        if probs.shape[1] != len(self.families):
            raise ModelError(f"{self.model.path}: {probs.shape[1]} outputs for {len(self.families)} families")
        best = probs.argmax(axis=1)
        return [(self.families[int(b)], float(row[b])) for b, row in zip(best, probs, strict=True)]


class FamilyHintStep:
    def __init__(self, hints: FamilyHints) -> None:
        self._batcher = MicroBatcher(hints.hints)

    def check(self, request: Request) -> Outcome:
        verdict = request.verdict
        flagged = verdict is not None and (verdict.action is not Action.PASS or verdict.would is not None)
        text = request.name.label if request.name else None
        return self._hint(request, text) if flagged and text and request.score is not None else None

    async def _hint(self, request: Request, text: str) -> None:
        try:
            family, p = await self._batcher.submit(text)
            request.notes["family_hint"], request.notes["family_p"] = family, round(p, 4)
        except Exception:  # noqa: BLE001 - a hint must never cost the answer
            pass
