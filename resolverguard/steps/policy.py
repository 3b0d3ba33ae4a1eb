"""Policy step: turns the score (or its absence) into a verdict, honouring monitor mode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resolverguard.chain import Outcome, Reason, Request, Verdict
from resolverguard.config import Action, Mode, OnModelError, Threshold


@dataclass(frozen=True)
class Policy:
    """Resolved thresholds (strictest first), mode and fault handling."""

    thresholds: Sequence[Threshold]
    mode: Mode = Mode.ENFORCE
    on_model_error: OnModelError = OnModelError.PASS

    def threshold_for(self, score: float) -> Threshold | None:
        """The strictest threshold `score` reaches, if any."""
        for threshold in self.thresholds:
            if threshold.value is not None and score >= threshold.value:
                return threshold
        return None

    def action_for(self, score: float) -> Action:
        threshold = self.threshold_for(score)
        return threshold.action if threshold else Action.PASS


class PolicyStep:
    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def check(self, request: Request) -> Outcome:
        policy = request.group.policy if request.group is not None else self._policy
        if request.verdict is None:
            request.verdict = self._decide(request, policy)
        if policy.mode is Mode.MONITOR and request.verdict.action.blocks:
            request.verdict = Verdict(Action.LOG, request.verdict.reason, would=request.verdict.action)
        return None

    @staticmethod
    def _decide(request: Request, policy: Policy) -> Verdict:
        if request.score is not None:
            reason = Reason.CACHE if request.score_cached else Reason.MODEL
            return Verdict(policy.action_for(request.score), reason)
        if request.error is not None:
            servfail = policy.on_model_error is OnModelError.SERVFAIL
            return Verdict(Action.SERVFAIL if servfail else Action.PASS, Reason.MODEL_ERROR)
        return Verdict(Action.PASS, Reason.NOT_SCORED)
