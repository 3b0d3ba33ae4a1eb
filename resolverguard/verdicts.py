"""The domain's decisions: what can happen to a query (Action), why (Reason), and the policy that
turns a score into an action.

Below everything else: config reads these, the steps decide them, the query log and metrics
report them. It imports nothing of ours, so any module may use it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum


class Action(str, Enum):
    """What happens to a query."""

    PASS = "pass"
    LOG = "log"
    SINKHOLE = "sinkhole"
    NXDOMAIN = "nxdomain"
    REFUSE = "refuse"
    SERVFAIL = "servfail"

    @property
    def blocks(self) -> bool:
        """True when the query is answered by us instead of the upstream."""
        return self is not Action.PASS and self is not Action.LOG  # identity: cheaper than enum equality


class Mode(str, Enum):
    ENFORCE = "enforce"
    MONITOR = "monitor"  # log what would be blocked, block nothing


class OnModelError(str, Enum):
    PASS = "pass"  # fail open: a broken model must not take the network down
    SERVFAIL = "servfail"


class Reason(str, Enum):
    """Why the verdict is what it is; written to the query log."""

    ALLOW_LIST = "allow list"
    DENY_LIST = "deny list"
    MODEL = "model"
    CACHE = "cache"
    NOT_SCORED = "not scored"
    MODEL_ERROR = "model error"
    LOCAL = "local"  # a local record or a private zone, answered by us (resolverguard.localnames)
    CLIENT_WATCH = "client watch"  # a flagged client's suspect name (quarantine)
    LIKELY_C2 = "likely c2"  # resolved for a flagged client during its NXDOMAIN burst: blocked for all


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action  # what was done
    reason: Reason
    would: Action | None = None  # monitor mode: what enforce mode would have done


@dataclass(frozen=True, slots=True)
class Threshold:
    """`score >= value` triggers `action`; `name` is the metadata threshold it came from, if any."""

    action: Action
    value: float | None
    name: str | None = None
    line: int | None = None


DEFAULT_THRESHOLDS = (Threshold(Action.LOG, None, "log"), Threshold(Action.SINKHOLE, None, "sinkhole"))


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
