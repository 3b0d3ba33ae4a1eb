"""List step: decides allow- and deny-listed names (`resolverguard.lists`) before any scoring."""

from __future__ import annotations

from resolverguard.chain import Outcome, Request
from resolverguard.lists import DomainLists


class ListStep:
    """Chain step: decides allow-/deny-listed names before any scoring happens."""

    def __init__(self, lists: DomainLists) -> None:
        self._lists = lists

    def check(self, request: Request) -> Outcome:
        if request.verdict is None:
            lists = request.group.lists if request.group is not None else self._lists
            request.verdict = lists.listed(request.name.qname if request.name else request.qname)
        return None
