"""Client addresses matched against CIDR networks: the one way the ACL and client groups do it."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from cachetools import LRUCache

T = TypeVar("T")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(items: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n for n in items)


def client_ip(address: str) -> IPAddress | None:
    """The address as the kernel gave it, with a zone index dropped and IPv4-mapped IPv6 unwrapped
    (a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d); None if it is not an address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def within(ip: IPAddress, nets: Sequence[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in nets)


class PerAddress(Generic[T]):
    """Memoises a function of the client address in a bounded LRU: the ACL and the client groups
    answer the same question for every query of a client, and a flood must not make it costly."""

    def __init__(self, compute: Callable[[str], T], size: int = 65536) -> None:
        self._compute = compute
        self._seen: LRUCache[str, T] = LRUCache(maxsize=size)

    def __call__(self, address: str) -> T:
        found = self._seen.get(address)
        if found is None:
            found = self._seen[address] = self._compute(address)
        return found
