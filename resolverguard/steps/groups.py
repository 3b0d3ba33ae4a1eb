"""Group step: which client group (`resolverguard.groups`) a query's client belongs to."""

from __future__ import annotations

from resolverguard.chain import Outcome, Request
from resolverguard.groups import GroupDirectory


class GroupStep:
    def __init__(self, directory: GroupDirectory) -> None:
        self._directory = directory

    def check(self, request: Request) -> Outcome:
        request.group = self._directory.group_for(request.client[0])
        return None
