"""Family hint: for a name the detector flagged, the known DGA family it most resembles.

A second small model (`models/family.tflite`, a softmax over the training families), asked only for
names whose verdict is log or a block (or would be, in monitor mode). The hint is logged
(`family_hint`, `family_p`): the query log's writer asks it for a whole batch of lines at once
(resolverguard.logwriter, `RecordWriter.use_family`; issue #17: a step on the event loop cost a
model call per flagged name before its answer), and the client watch names a flagged client's
family with it. It never changes a verdict, and a failure costs the hint, never the answer or the line.
"""

from __future__ import annotations

from pathlib import Path

from resolverguard.errors import ModelError
from resolverguard.model import TFLiteScorer, load_model


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
