"""Client groups: which policy applies to which client (guests stricter than servers, say).

A group is matched by the client's address, first match in file order, else the default group (the
top-level policy). The group carries everything policy-dependent (lists, thresholds, mode,
sinkhole), so the later steps read it from the request; the verdict cache is shared, because a
score does not depend on who asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resolverguard.addresses import IPNetwork, client_ip, within
from resolverguard.config import ClientWatchConfig, SinkholeConfig
from resolverguard.lists import DomainLists
from resolverguard.memo import BoundedMemo
from resolverguard.verdicts import Policy


@dataclass(frozen=True)
class ClientGroup:
    name: str
    networks: tuple[IPNetwork, ...]
    policy: Policy
    lists: DomainLists
    sinkhole: SinkholeConfig
    watch: ClientWatchConfig = ClientWatchConfig()  # enabled / action / block_action for this group


class GroupDirectory:
    def __init__(self, groups: Sequence[ClientGroup], default: ClientGroup) -> None:
        self.groups, self.default = tuple(groups), default
        self.group_for = BoundedMemo(self._match)

    def list_summaries(self) -> list[str]:
        """One line per list file or URL of every group (`resolverguard check` and the log)."""
        own = [(f"groups[{i}].lists", g.lists) for i, g in enumerate(self.groups) if g.lists is not self.default.lists]
        return [
            f"{prefix}.{item.kind}: {item.source}: {item.summary()}"
            for prefix, lists in [("lists", self.default.lists), *own]
            for item in lists.reports
        ]

    def _match(self, address: str) -> ClientGroup:
        ip = client_ip(address)
        return next((g for g in self.groups if ip is not None and within(ip, g.networks)), self.default)
