"""Policy step: turns the score (or its absence) into a verdict, honouring monitor mode."""

from __future__ import annotations

from resolverguard.chain import Outcome, Request
from resolverguard.verdicts import Action, Mode, OnModelError, Policy, Reason, Verdict


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
        if request.model_error is not None:
            servfail = policy.on_model_error is OnModelError.SERVFAIL
            return Verdict(Action.SERVFAIL if servfail else Action.PASS, Reason.MODEL_ERROR)
        return Verdict(Action.PASS, Reason.NOT_SCORED)
