"""Names that belong to the local network: our own records, zones forwarded to the router, and the
private zones that must never leave the network (RFC 6303).

A home network's `router.lan`, `nas.home.arpa` and the PTR of `192.168.1.20` mean nothing to a
public resolver: asking 9.9.9.9 leaks the network's layout and gets NXDOMAIN anyway. So:

1. `local_records` (A, AAAA, CNAME, PTR; and hosts files) are answered here; every A/AAAA also
   gets its PTR unless one is given.
2. A name under a `conditional_forwarding` zone (a domain such as `lan`, a reverse zone, or a
   network standing for its reverse zones) is sent to that zone's upstream only.
3. Otherwise a name under a private zone (RFC 6303's reverse zones of private, loopback, link-local
   and documentation ranges; `.lan`, `.home.arpa` (RFC 8375), `.local`, `.internal`, `.localdomain`)
   is answered NXDOMAIN here (`private_zones: false` forwards them as any other name).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

RECORD_TYPES = ("A", "AAAA", "CNAME", "PTR")

PRIVATE_NETWORKS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",  # shared address space, RFC 6598 / 7793
    "127.0.0.0/8",
    "169.254.0.0/16",
    "0.0.0.0/8",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "2001:db8::/32",
)
PRIVATE_DOMAINS = ("lan", "home.arpa", "local", "internal", "localdomain")


@dataclass(frozen=True, slots=True)
class LocalRecord:
    name: str
    rtype: str  # one of RECORD_TYPES
    value: str  # an address, or a target name

    def __str__(self) -> str:
        return f"{self.name} {self.rtype} {self.value}"


def normal(name: str) -> str:
    return name.strip().lower().rstrip(".")


def parse_record(text: str) -> LocalRecord:
    """`name TYPE value` (`router.lan A 192.168.1.1`), checked; ValueError says what is wrong."""
    parts = text.split()
    if len(parts) != 3:
        raise ValueError(f"{text!r}: a record is 'name TYPE value', e.g. 'router.lan A 192.168.1.1'")
    return make_record(*parts)


def make_record(name: str, rtype: str, value: str) -> LocalRecord:
    rtype = rtype.upper()
    if rtype not in RECORD_TYPES:
        raise ValueError(f"{rtype!r} is not one of: {', '.join(RECORD_TYPES)}")
    if not normal(name) or " " in normal(name):
        raise ValueError(f"{name!r} is not a name")
    if rtype in ("A", "AAAA"):
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
        if address.version != (4 if rtype == "A" else 6):
            raise ValueError(f"{value!r} is not an IPv{4 if rtype == 'A' else 6} address (type {rtype})")
        value = str(address)
    else:
        value = normal(value)
        if not value:
            raise ValueError(f"{rtype} needs a target name")
    return LocalRecord(normal(name), rtype, value)


def hosts_records(lines: Iterable[str]) -> Iterator[LocalRecord]:
    """A/AAAA records from hosts-file lines (`192.168.1.10 nas nas.lan`); localhost lines skipped."""
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ipaddress.ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            continue
        if address.is_loopback or address.is_unspecified:
            continue
        for name in fields[1:]:
            yield LocalRecord(normal(name), "A" if address.version == 4 else "AAAA", str(address))


def reverse_zones(network: str) -> tuple[str, ...]:
    """The in-addr.arpa / ip6.arpa zones that hold the PTRs of `network`: octet (IPv4) or nibble
    (IPv6) aligned, so a /20 is its sixteen /24 zones (at most 256 zones)."""
    net = ipaddress.ip_network(network, strict=False)
    step = 8 if net.version == 4 else 4
    prefix = -(-net.prefixlen // step) * step
    if prefix - net.prefixlen > 8:
        raise ValueError(f"{network}: too wide to split into reverse zones")
    out = []
    for sub in net.subnets(new_prefix=prefix) if prefix > net.prefixlen else [net]:
        labels = sub.network_address.reverse_pointer.split(".")
        keep = prefix // step
        host_labels = (32 if net.version == 4 else 128) // step
        out.append(".".join(labels[host_labels - keep :]))
    return tuple(out)


def private_zones() -> tuple[str, ...]:
    """RFC 6303's zones (and the private domain names) answered locally by default."""
    zones = [z for net in PRIVATE_NETWORKS for z in reverse_zones(net)]
    return (*dict.fromkeys(zones), *PRIVATE_DOMAINS)


def within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def covering(name: str, zones: frozenset[str], tlds: frozenset[str]) -> str | None:
    """The longest of `zones` that `name` is in (itself or a parent): one set lookup per label,
    since this runs for every query (scanning ~100 private zones with endswith cost ~6 us); a name
    whose last label ends no zone (`tlds`: every `com` query) costs one lookup."""
    if name[name.rfind(".") + 1 :] not in tlds:
        return None
    while True:
        if name in zones:
            return name
        dot = name.find(".")
        if dot < 0:
            return None
        name = name[dot + 1 :]


@dataclass(frozen=True)
class LocalZone:
    """Local records by name, the forwarded zones, and the private zones answered here."""

    records: dict[str, tuple[LocalRecord, ...]] = field(default_factory=dict)
    forwarded: frozenset[str] = frozenset()  # zones sent to their own upstream
    private: frozenset[str] = frozenset()  # zones answered NXDOMAIN here unless forwarded
    forwarded_tlds: frozenset[str] = field(init=False)
    private_tlds: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "forwarded_tlds", frozenset(z.rsplit(".", 1)[-1] for z in self.forwarded))
        object.__setattr__(self, "private_tlds", frozenset(z.rsplit(".", 1)[-1] for z in self.private))

    @classmethod
    def build(cls, records: Iterable[LocalRecord], forwarded: Iterable[str], private: bool) -> LocalZone:
        by_name: dict[str, list[LocalRecord]] = {}
        given = list(records)
        for record in given:
            by_name.setdefault(record.name, []).append(record)
        given_ptr = {r.name for r in given if r.rtype == "PTR"}
        for record in given:  # the PTR of every address (first name wins), unless one is given
            if record.rtype in ("A", "AAAA"):
                pointer = ipaddress.ip_address(record.value).reverse_pointer
                if pointer not in given_ptr and pointer not in by_name:
                    by_name[pointer] = [LocalRecord(pointer, "PTR", record.name)]
        return cls(
            {k: tuple(v) for k, v in by_name.items()},
            frozenset(forwarded),
            frozenset(private_zones()) if private else frozenset(),
        )

    def forward_zone(self, name: str) -> str | None:
        return covering(name, self.forwarded, self.forwarded_tlds) if self.forwarded else None

    def private_zone(self, name: str) -> str | None:
        return covering(name, self.private, self.private_tlds) if self.private else None

    def zone_of(self, name: str) -> str:
        """The zone a local answer's SOA is written for: the longest private zone covering the
        name, else its parent domain."""
        return self.private_zone(name) or (name.partition(".")[2] or name)
