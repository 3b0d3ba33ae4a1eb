"""Pause step: `resolverguard pause 5m` turns blocking off for a while, as Pi-hole's "disable for
5 minutes" does, for the moment a blocked site must work now and the list is fixed later.

While paused, a name that would be blocked passes and is logged as monitor mode logs it (action
`log`, `would` the blocking action), so the log still shows what the pause let through. Local
names and everything else work as usual. The switch belongs to the running server, not to a policy:
it survives a reload (`carried`), and it ends by itself at its deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from resolverguard.chain import Outcome, Request
from resolverguard.verdicts import Action, Verdict


class PauseSwitch:
    """Blocking is paused until a monotonic deadline (0: not paused)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock, self.until = clock, 0.0

    @property
    def active(self) -> bool:
        return self.until > 0.0 and self.clock() < self.until

    def remaining(self) -> float:
        return max(0.0, self.until - self.clock()) if self.until else 0.0

    def pause(self, seconds: float) -> None:
        self.until = self.clock() + seconds

    def resume(self) -> bool:
        """Ends a pause; True when one was in force."""
        was = self.active
        self.until = 0.0
        return was

    @classmethod
    def carried(cls, old: PauseSwitch | None) -> PauseSwitch:
        return old if old is not None else cls()


class PauseStep:
    """After the decisions, before the block step: while paused, a block becomes a logged pass."""

    def __init__(self, switch: PauseSwitch) -> None:
        self.switch = switch

    def check(self, request: Request) -> Outcome:
        if not self.switch.until:  # the usual case first: one attribute read per query
            return None
        verdict = request.verdict
        if verdict is not None and verdict.action.blocks and self.switch.active:
            request.verdict = Verdict(Action.LOG, verdict.reason, would=verdict.action)
            request.notes["paused"] = True
        return None
