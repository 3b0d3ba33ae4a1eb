"""Name step: attaches the parsed name (`resolverguard.names`) to the request."""

from __future__ import annotations

from resolverguard.chain import Outcome, Request
from resolverguard.names import NameParser


class NameStep:
    """Chain step: attaches the parsed name to the request; never answers by itself."""

    def __init__(self, parser: NameParser) -> None:
        self._parser = parser

    def check(self, request: Request) -> Outcome:
        request.name = self._parser.parse(request.qname)
        return None
