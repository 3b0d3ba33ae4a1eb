"""The policy file: YAML parsed and validated once into frozen dataclasses.

Every problem is reported as `file:line: key: problem` (see `ConfigError`), unknown keys included,
so a typo such as `sinkhol:` is caught by `resolverguard check` instead of silently ignored.
Named thresholds (`fpr_1e-3`) are resolved against the model metadata in `resolve_thresholds`.

The dataclasses are the schema. Each field that a policy may set says, in its `key(...)`, once:
its default, how a YAML value is read (type and bounds) and what it means; `read_section` reads any
section from that, and `schema_keys` lists every key with its default (a test holds docs/policy.md
to it). Adding a section for a new step (say `client_watch:`) is therefore:

    @dataclass(frozen=True, slots=True)
    class ClientWatchConfig:
        window: float = key(60.0, _real(1, 3600), "seconds a client's names are counted over")
        max_names: int = key(500, _number(1, 10**6, integer=True), "distinct names before a warning")

plus one line in `Config`:

        client_watch: ClientWatchConfig = section(ClientWatchConfig, "what the client watch step looks for")

and a row per key in docs/policy.md. A cross-key rule goes in the section's `problem()` method
(see `AnswerCacheConfig`), which names the key to blame.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import Field, dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from resolverguard.errors import ConfigError
from resolverguard.lists import ListFormat
from resolverguard.localnames import LocalRecord, make_record, parse_record, reverse_zones
from resolverguard.names import PrivateSuffixMode
from resolverguard.verdicts import DEFAULT_THRESHOLDS, Action, Mode, OnModelError, Threshold
from resolverguard.yamlsource import LocatedDict, LocatedList, read_yaml

T = TypeVar("T")
D = TypeVar("D")
S = TypeVar("S")

Read = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Key:
    """How one policy key is read and documented, written once beside the field it fills."""

    read: Read | None  # YAML value -> field value (raises ValueError); None: read by `from_mapping` itself
    doc: str
    yaml: str = ""  # the key in the file when it is not the field's name
    shown: str | None = None  # the default as docs/policy.md shows it, when it is not the value itself
    relative: bool = False  # `read` takes the policy file's folder first (paths relative to the file)


def key(default: Any, read: Read | None, doc: str, *, yaml: str = "", shown: str | None = None) -> Any:
    return field(default=default, metadata={"key": Key(read, doc, yaml, shown)})


def path_key(default: Any, read: Callable[[Path], Read], doc: str, *, shown: str | None = None) -> Any:
    """A key whose value is read relative to the policy file's folder."""
    return field(default=default, metadata={"key": Key(read, doc, "", shown, relative=True)})


def section(cls: type[Any], doc: str, *, scalar: str = "") -> Any:
    """A nested mapping read by `read_section`; `scalar`: the key a plain value stands for
    (`query_log: /var/log/q.jsonl` means `query_log: {path: ...}`)."""
    return field(default_factory=cls, metadata={"section": cls, "doc": doc, "scalar": scalar})


def parse_endpoint(text: Any, default_port: int, what: str = "") -> Endpoint:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address; hosts must be IP addresses."""
    if not isinstance(text, str | int) or isinstance(text, bool):
        raise ValueError(f"{what or 'address'} must be a string like 127.0.0.1:53")
    raw, port = str(text).strip(), default_port
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest:
            port = _port(rest.removeprefix(":"))
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
        port = _port(port_text)
    else:
        host = raw
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{raw!r} is not an IP address (with an optional :port)") from None
    return Endpoint(host, port)


def parse_upstream(text: Any, what: str = "") -> Upstream:
    """A plain resolver (`9.9.9.9`, `[2620:fe::fe]:53`), DNS over TLS (`tls://name@ip[:port]`,
    `tls://ip`, `tls://name` with a bootstrap) or DNS over HTTPS (`https://name/dns-query`, with a
    bootstrap or a pinned address: `https://name@ip/dns-query`)."""
    if isinstance(text, str) and text.strip().lower().startswith(("tls://", "https://")):
        return _encrypted(text.strip())
    return parse_endpoint(text, 53, what)


def _encrypted(text: str) -> EncryptedUpstream:
    """`tls://` or `https://` upstreams. The name (SNI and the name the certificate must carry) is
    the host, or what stands before `@`; the address after `@` saves the bootstrap lookup."""
    parts = urlsplit(text)
    scheme, default_port = ("tls", 853) if parts.scheme.lower() == "tls" else ("https", 443)
    if parts.query or parts.fragment or parts.password is not None:
        raise ValueError(f"{text!r}: no query, fragment or password may follow the address")
    if scheme == "tls" and parts.path not in ("", "/"):
        raise ValueError(f"{text!r}: a tls:// upstream has no path")
    try:
        port = parts.port or default_port
        host = parts.hostname or ""
    except ValueError as err:
        raise ValueError(f"{text!r}: {err}") from None
    name, address = (parts.username, host) if parts.username else (host, None)
    if _is_ip(host) and not parts.username:
        address = host
    if address is not None and not _is_ip(address):
        raise ValueError(f"{text!r}: {address!r} after @ must be an IP address")
    if not name or " " in name or (not _is_ip(name) and "." not in name and name != "localhost"):
        raise ValueError(f"{text!r} has no host name")
    path = (parts.path or "/dns-query") if scheme == "https" else ""
    return EncryptedUpstream(scheme, name.lower().rstrip("."), address, port, path)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"port {text!r} is not between 1 and 65535")
    return int(text)


def _enum(kind: type[Enum]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        try:
            return kind(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in kind)
            raise ValueError(f"{value!r} is not one of: {choices}") from None

    return convert


def _number(low: float, high: float, integer: bool = False) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
            raise ValueError(f"must be {'an integer' if integer else 'a number'}, not {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}, not {value!r}")
        return value

    return convert


def _megabytes(low: float, high: float) -> Callable[[Any], int]:
    """A size the YAML gives in MB (`max_mb`, `backlog_mb`), kept in bytes."""
    number = _number(low, high)
    return lambda value: int(number(value) * 1024 * 1024)


def _list_of(convert: Callable[[Any], T]) -> Callable[[Any], tuple[T, ...]]:
    def each(value: Any) -> tuple[T, ...]:
        if isinstance(value, str):
            value = LocatedList([value])
            value.lines = [0]
        if not isinstance(value, LocatedList):
            raise ValueError("must be a list")
        out = []
        for item, line in zip(value, value.lines, strict=False):
            try:
                out.append(convert(item))
            except (TypeError, ValueError) as err:
                raise ConfigError(str(err), line=line or None, key=f"[{len(out)}]") from None
        return tuple(out)

    return each


def _domain(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or " " in value.strip():
        raise ValueError(f"{value!r} is not a domain name")
    return value.strip().lower().rstrip(".")


def _ip(version: int) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        try:
            address = ipaddress.ip_address(str(value))
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv{version} address") from None
        if address.version != version:
            raise ValueError(f"{value!r} is not an IPv{version} address")
        return str(address)

    return convert


def _real(low: float, high: float) -> Read:
    number = _number(low, high)
    return lambda value: float(number(value))


def _blocking_action(value: Any) -> Action:
    action: Action = _enum(Action)(value)
    if not action.blocks:
        raise ValueError("must be sinkhole, nxdomain, refuse or servfail")
    return action


def _path(base: Path) -> Callable[[Any], Path]:
    def convert(value: Any) -> Path:
        if not isinstance(value, str) or not value:
            raise ValueError("must be a file path")
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    return convert


def _log_target(base: Path) -> Callable[[Any], str | None]:
    def convert(value: Any) -> str | None:
        if value in (False, "off", "none", None):
            return None
        if not isinstance(value, str) or not value:
            raise ValueError("must be a file path, '-' for standard output, or off")
        return value if value == "-" or Path(value).is_absolute() else str(base / value)

    return convert


def _store_target(base: Path) -> Callable[[Any], Path | str | None]:
    """An SQLite file (relative to the policy's folder) or a PostgreSQL URL, kept as written."""

    def convert(value: Any) -> Path | str | None:
        if value in (False, "off", "none", None):
            return None
        if isinstance(value, str) and value.startswith(("postgresql://", "postgres://")):
            return value
        return _path(base)(value)

    return convert


GATEWAY_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})$")


def _gateway(value: Any) -> str:
    """A gateway's name in the query store: what a fleet's dashboard shows and filters by, so it is
    short, printable and unambiguous (a host name's characters), never empty."""
    if not isinstance(value, str | int) or isinstance(value, bool) or not GATEWAY_NAME.match(str(value)):
        raise ValueError(
            f"{value!r} is not a gateway name (1-63 letters, digits, '.', '_' or '-', starting with a letter or digit)"
        )
    return str(value)


def host_gateway_name() -> str:
    """The host name as a gateway name (`query_store.gateway`'s default): its first label, cut to
    what `_gateway` accepts, so the default is always a valid name."""
    label = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]).lstrip("._-")[:63]
    return label or "resolverguard"


def _refusal(value: Any) -> str:
    if value not in ("refuse", "drop"):
        raise ValueError(f"{value!r} is not one of: refuse, drop")
    return str(value)


def _network(value: Any) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an address or CIDR network") from None


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EncryptedUpstream:
    """DNS over TLS (RFC 7858) or over HTTPS (RFC 8484). `name` is what the certificate must be
    valid for (and the SNI and HTTP host); `address` is where to connect, None when the
    bootstrap resolvers look the name up (never ourselves: we would ask ourselves the way out)."""

    scheme: str  # "tls" or "https"
    name: str
    address: str | None
    port: int
    path: str = ""  # the DoH URL's path

    def __str__(self) -> str:
        def bracketed(host: str) -> str:
            return f"[{host}]" if ":" in host else host

        pinned = f"@{bracketed(self.address)}" if self.address and self.address != self.name else ""
        port = "" if self.port == (853 if self.scheme == "tls" else 443) else f":{self.port}"
        return f"{self.scheme}://{bracketed(self.name)}{pinned}{port}{self.path}"


Upstream = Endpoint | EncryptedUpstream


@dataclass(frozen=True, slots=True)
class EncryptedUpstreamsConfig:
    """What tls:// and https:// upstreams share: how their names are found and trusted."""

    bootstrap: tuple[Endpoint, ...] = key(
        (), _list_of(lambda v: parse_endpoint(v, 53)), "plain resolvers that look up tls:// and https:// host names"
    )
    ca_file: Path | None = path_key(None, _path, "CA certificates (PEM) to trust", shown="the system's")
    doh_method: str = key("post", lambda v: _one_of(v, ("post", "get")), "post or get (RFC 8484 4.1)")
    padding: bool = key(True, _boolean, "pad queries to a multiple of 128 octets (RFC 8467)")
    idle_timeout: float = key(30.0, _real(1, 3600), "seconds an unused connection is kept open")

    def problem(self) -> tuple[str, str] | None:
        if self.ca_file is not None and not self.ca_file.is_file():
            return "ca_file", f"{self.ca_file}: no such file"
        return None


def _one_of(value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{value!r} is not one of: {', '.join(choices)}")
    return str(value)


@dataclass(frozen=True, slots=True)
class SinkholeConfig:
    ipv4: str = key("0.0.0.0", _ip(4), "address in sinkhole answers to A queries")
    ipv6: str = key("::", _ip(6), "address in sinkhole answers to AAAA queries")
    ttl: int = key(60, _number(0, 86400, integer=True), "TTL of sinkhole answers, and their SOA's negative TTL")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    size: int = key(100_000, _number(0, 10**8, integer=True), "scores kept in the verdict cache")
    ttl: float = key(3600.0, _real(0, 7 * 86400), "seconds a score is kept")


@dataclass(frozen=True, slots=True)
class ListSource:
    """One entry of `allow_files`/`deny_files`: a file or directory, or a URL (a subscription)."""

    path: Path | None = None
    url: str | None = None
    format: ListFormat = ListFormat.AUTO

    def __str__(self) -> str:
        return self.url or str(self.path)


def _list_source(base: Path) -> Callable[[Any], ListSource]:
    """`path`, `https://...`, or `{url: ..., format: adblock}` / `{path: ..., format: hosts}`."""

    def convert(value: Any) -> ListSource:
        fmt = ListFormat.AUTO
        if isinstance(value, LocatedDict):
            unknown = set(value) - {"url", "path", "format"}
            if unknown or ("url" in value) == ("path" in value):
                raise ValueError("a list is a path, a URL, or a mapping with url or path (and format)")
            fmt = _enum(ListFormat)(value.get("format", "auto"))
            value = value.get("url", value.get("path"))
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return ListSource(url=value, format=fmt)
        if isinstance(value, str) and "://" in value:
            raise ValueError(f"{value!r}: only http:// and https:// lists can be downloaded")
        return ListSource(path=_path(base)(value), format=fmt)

    return convert


@dataclass(frozen=True, slots=True)
class SubscriptionsConfig:
    """Lists given by URL: where their last good copies are kept and how they are fetched."""

    cache_dir: Path | None = path_key(
        None,
        _path,
        "where downloaded lists are kept",
        shown="$STATE_DIRECTORY/lists, else ~/.cache/resolverguard/lists",
    )
    refresh: float = key(86_400.0, _real(0, 30 * 86_400), "seconds between downloads; 0: only on demand")
    timeout: float = key(60.0, _real(1, 3600), "seconds one download may take")
    max_bytes: int = key(
        100 * 2**20,
        lambda v: int(_number(1, 4096)(v) * 2**20),
        "largest list downloaded, in MB",
        yaml="max_mb",
        shown="100",
    )


def _local_record(value: Any) -> LocalRecord:
    """`router.lan A 192.168.1.1`, or `{name: ..., type: ..., value: ...}`."""
    if isinstance(value, LocatedDict):
        if set(value) != {"name", "type", "value"}:
            raise ValueError("a record mapping has exactly name, type and value")
        return make_record(str(value["name"]), str(value["type"]), str(value["value"]))
    if not isinstance(value, str):
        raise ValueError("a record is 'name TYPE value', e.g. 'router.lan A 192.168.1.1'")
    return parse_record(value)


@dataclass(frozen=True, slots=True)
class LocalRecordsConfig:
    """Names answered by us (local DNS records), as Pi-hole's Local DNS and custom.list do."""

    records: tuple[LocalRecord, ...] = key((), _list_of(_local_record), "'name TYPE value' (A, AAAA, CNAME, PTR)")
    hosts_files: tuple[Path, ...] = path_key((), lambda base: _list_of(_path(base)), "hosts files (A/AAAA + PTR)")
    ttl: int = key(300, _number(0, 86_400, integer=True), "TTL of local answers, and of their SOA's negative TTL")


def _forward_zones(value: Any) -> tuple[tuple[str, Endpoint], ...]:
    """`{lan: 192.168.1.1, 192.168.1.0/24: 192.168.1.1:53, 168.192.in-addr.arpa: ...}`: a domain, a
    reverse zone, or a network that stands for its reverse zones -> the upstream for it."""
    if not isinstance(value, LocatedDict):
        raise ValueError("must be a mapping of domain, reverse zone or network -> upstream")
    out: list[tuple[str, Endpoint]] = []
    for zone, target in value.items():
        try:
            upstream = parse_endpoint(target, 53)
            zones = reverse_zones(str(zone)) if "/" in str(zone) else (_domain(str(zone)),)
        except ValueError as err:
            raise ConfigError(str(err), line=value.lines.get(zone), key=f".{zone}") from None
        out.extend((z, upstream) for z in zones)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ListsConfig:
    allow: tuple[str, ...] = key((), _list_of(_domain), "domains always passed (with their subdomains)")
    deny: tuple[str, ...] = key((), _list_of(_domain), "domains always blocked (with their subdomains)")
    allow_files: tuple[ListSource, ...] = path_key(
        (), lambda base: _list_of(_list_source(base)), "list files or URLs of allowed domains"
    )
    deny_files: tuple[ListSource, ...] = path_key(
        (), lambda base: _list_of(_list_source(base)), "list files or URLs of denied domains"
    )
    deny_action: Action = key(Action.SINKHOLE, _blocking_action, "what a denied name gets")


class ClientPrivacy(str, Enum):
    """How client addresses appear in the query log."""

    FULL = "full"
    TRUNCATE = "truncate"  # IPv4 /24, IPv6 /48
    OMIT = "omit"


class LogWriter(str, Enum):
    """Where the query log's writer runs (bench/standalone.py and bench/log_writer.py measure them)."""

    AUTO = "auto"  # a process for a file or a query store, a thread for standard output alone
    PROCESS = "process"  # a child process: formatting and disk never take the resolver's GIL
    THREAD = "thread"  # a thread in the resolver's process


class LogPriority(str, Enum):
    """The CPU priority of a writer process (issue #17: the log is worth less than the answers; on a
    machine whose cores are busy the writer's CPU is taken from the resolver and its clients)."""

    NORMAL = "normal"  # the resolver's own
    LOW = "low"  # nice +10 (resolverguard.logwriter.LOW_NICE)
    IDLE = "idle"  # SCHED_IDLE: CPU time no other process wants; it catches up when a burst ends


@dataclass(frozen=True, slots=True)
class QueryLogConfig:
    path: str | None = path_key("-", _log_target, "a file, '-' for standard output, off for none")
    max_bytes: int = key(
        50 * 1024 * 1024,
        _megabytes(0, 100_000),
        "rotate when a file grows past this many MB (0: never)",
        yaml="max_mb",
        shown="50",
    )
    keep: int = key(5, _number(0, 1000, integer=True), "rotated files kept (queries.jsonl.1 ... .keep)")
    clients: ClientPrivacy = key(ClientPrivacy.FULL, _enum(ClientPrivacy), "full, truncate (/24, /48) or omit")
    writer: LogWriter = key(
        LogWriter.AUTO, _enum(LogWriter), "auto, process or thread: where lines (and store rows) are made and written"
    )
    priority: LogPriority = key(
        LogPriority.LOW, _enum(LogPriority), "normal, low or idle: the CPU priority of a writer process"
    )
    backlog_bytes: int = key(
        64 * 1024 * 1024,
        _megabytes(0.01, 16_384),
        "MB the resolver holds for a writer process that is behind (its pipe included); past it lines are dropped",
        yaml="backlog_mb",
        shown="64",
    )


@dataclass(frozen=True, slots=True)
class QueryStoreConfig:
    """The query store (resolverguard.store): the queries and alerts the dashboard reads."""

    path: Path | str | None = path_key(
        None, lambda base: _store_target(base), "an SQLite file, a postgresql:// URL, or off", shown="off"
    )
    retention_days: int = key(30, _number(1, 3660, integer=True), "days kept; older days are dropped whole")
    max_bytes: int = key(
        1024 * 1024 * 1024,
        _megabytes(0, 10_000_000),
        "drop the oldest days while the store holds more than this many MB (0: no bound)",
        yaml="max_mb",
        shown="1024",
    )
    gateway: str = key("", _gateway, "this instance's name on the rows and alerts it writes", shown="the host name")

    @property
    def gateway_name(self) -> str:
        """The name the writer puts on rows: `gateway` as set, else the host name (read when the
        writer opens the store, in the writer's process)."""
        return self.gateway or host_gateway_name()


DEFAULT_ALLOWED_CLIENTS: tuple[str, ...] = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
)


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """Who may query us. The default admits only loopback and private ranges (no open resolver)."""

    allow_clients: tuple[str, ...] = key(
        DEFAULT_ALLOWED_CLIENTS, _list_of(_network), "clients we answer", shown="loopback and private ranges"
    )
    refused: str = key("refuse", _refusal, "refuse (REFUSED) or drop (silence) for other clients")
    open_resolver: bool = key(
        False, _boolean, "must be true to admit more public addresses than an IPv4 /8 or an IPv6 /32"
    )

    def problem(self) -> tuple[str, str] | None:
        if not self.open_resolver and admits_much_of_the_internet(self.allow_clients):
            return (
                "allow_clients",
                "admits a large part of the Internet (more public addresses than an IPv4 /8 or an IPv6 /32); "
                "set access.open_resolver: true if you really mean to run an open resolver",
            )
        return None


OPEN_RESOLVER_V4, OPEN_RESOLVER_V6 = 2**24, 2**96  # public addresses in an IPv4 /8 and an IPv6 /32


def admits_much_of_the_internet(items: tuple[str, ...]) -> bool:
    """Does the allow list admit more public addresses than one IPv4 /8 or one IPv6 /32?

    Counting addresses, not looking for a /0, is what catches `0.0.0.0/1` + `128.0.0.0/1` (the
    whole Internet in two lines) or a /2 (a quarter of it); private ranges do not count."""
    nets = [ipaddress.ip_network(n, strict=False) for n in items]
    for version, limit in ((4, OPEN_RESOLVER_V4), (6, OPEN_RESOLVER_V6)):
        same = [n for n in nets if n.version == version]
        collapsed = ipaddress.collapse_addresses(same)  # type: ignore[type-var]
        if sum(n.num_addresses for n in collapsed if not n.is_private) > limit:
            return True
    return False


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Per-client token bucket; qps 0 turns it off."""

    qps: float = key(200.0, _real(0, 1e6), "queries per second per client; 0 turns the limit off")
    burst: int = key(400, _number(1, 10**7, integer=True), "queries a client may send at once")
    over_limit: str = key("drop", _refusal, "drop (no reflection of a spoofed flood) or refuse")


@dataclass(frozen=True, slots=True)
class AnswerCacheConfig:
    """The DNS answer cache (size 0 turns it off); TTLs in seconds."""

    size: int = key(10_000, _number(0, 10**7, integer=True), "answers kept; 0 turns the answer cache off")
    min_ttl: int = key(0, _number(0, 86_400, integer=True), "lowest TTL an answer is kept and served with")
    max_ttl: int = key(86_400, _number(0, 7 * 86_400, integer=True), "highest TTL an answer is kept with")
    negative_max_ttl: int = key(3_600, _number(0, 86_400, integer=True), "longest NXDOMAIN/NODATA is kept")
    prefetch: bool = key(True, _boolean, "refresh a popular answer in its last 10% of TTL (Unbound's rule)")
    repeat_shortcut: bool = key(
        True,
        _boolean,
        "exact repeats of a cached answer or a block skip the chain where its decisions depend on the name alone",
    )

    def problem(self) -> tuple[str, str] | None:
        return ("min_ttl", "must not be larger than max_ttl") if self.min_ttl > self.max_ttl else None


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that make overload a DNS error instead of growing memory."""

    max_inflight: int = key(2048, _number(1, 10**6, integer=True), "queries answered at once; beyond: SERVFAIL")
    max_tcp_connections: int = key(256, _number(1, 10**5, integer=True), "beyond: new connections are closed")
    max_tcp_per_client: int = key(
        16, _number(1, 10**5, integer=True), "TCP connections one client address may hold; beyond: closed"
    )
    tcp_idle_timeout: float = key(10.0, _real(0.1, 3600), "seconds an idle TCP connection is kept")


class WatchAction(str, Enum):
    """What a client watch flag does (docs/client-watch.md)."""

    LOG = "log"  # alert only
    QUARANTINE = "quarantine"  # alert; block the client's DGA-like and new names; block its C2 for every client


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


@dataclass(frozen=True, slots=True)
class AlertHookConfig:
    """`client_watch.on_flag`: who is told, once per flag, off the event loop."""

    command: tuple[str, ...] = key((), _list_of(_text), "argv run once per flag, the alert JSON on stdin", shown="none")
    url: str | None = key(None, _url, "http(s) URL the alert JSON is POSTed to once per flag", shown="none")
    timeout: float = key(5.0, _real(0.1, 60), "seconds the command or the POST may take")

    @property
    def enabled(self) -> bool:
        return bool(self.command) or self.url is not None

    def problem(self) -> tuple[str, str] | None:
        return ("url", "set either command or url, not both") if self.command and self.url else None


@dataclass(frozen=True, slots=True)
class ClientWatchConfig:
    """`client_watch:`, the rule and what a flag does (docs/client-watch.md has the measurements).
    `enabled`, `action` and `block_action` may differ per client group; the rest is network-wide."""

    enabled: bool = key(False, _boolean, "watch each client's answers for a DGA walk")
    action: WatchAction = key(WatchAction.QUARANTINE, _enum(WatchAction), "log (alert only) or quarantine")
    block_action: Action = key(Action.SINKHOLE, _blocking_action, "what a name the watch blocks gets")
    flag_at: float = key(2.5, _real(1, 1000), "points in a client's window that flag it")
    alike_bonus: float = key(0.5, _real(0, 100), "extra points for a name like one already in the window")
    score_bonus: float = key(1.0, _real(0, 100), "extra points for a name the model scores as suspicious")
    beacon_points: float = key(1.5, _real(0, 100), "points for a new name of the burst's suffix the client asks again")
    suspicious_score: float | None = key(None, _real(0, 1), "what suspicious means", shown="the model's log threshold")
    window: float = key(120.0, _real(1, 86400), "seconds a client's NXDOMAIN names are counted over")
    window_names: int = key(16, _number(1, 1000, integer=True), "NXDOMAIN names kept per client")
    quarantine_ttl: float = key(3600.0, _real(1, 30 * 86400), "seconds a flag lasts")
    likely_c2_ttl: float = key(86400.0, _real(1, 30 * 86400), "seconds a likely C2 stays blocked for every client")
    burst_gap: float = key(60.0, _real(0, 3600), "seconds from an NXDOMAIN of the burst a C2 may resolve")
    max_c2_per_flag: int = key(3, _number(0, 100, integer=True), "likely C2 names one flag may record")
    max_probes_per_flag: int = key(32, _number(0, 1000, integer=True), "blocked look-alikes resolved aside per flag")
    max_clients: int = key(10_000, _number(1, 10**7, integer=True), "clients with evidence kept (oldest forgotten)")
    max_flagged: int = key(1_000, _number(1, 10**6, integer=True), "flags kept")
    known_names: int = key(50_000, _number(1, 10**7, integer=True), "resolved registrable names remembered")
    exempt_clients: tuple[str, ...] = key((), _list_of(_network), "clients never watched (a mail server, a scanner)")
    on_flag: AlertHookConfig = section(AlertHookConfig, "the alert hook")


def _redis_url(value: Any) -> str | None:
    """`redis://[user:password@]host[:port][/db]`, `rediss://` (TLS) or `unix:///path`; off: no sync."""
    if value in (False, "off", None):
        return None
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"{value!r} is not a redis://, rediss:// or unix:// URL")
    parsed = urlsplit(value)
    try:
        port = parsed.port
    except ValueError:
        raise ValueError(f"{_redacted(value)!r}: the port is not a number between 0 and 65535") from None
    if parsed.scheme == "unix" and not parsed.path:
        raise ValueError(f"{value!r}: a unix:// URL needs the socket's path")
    if parsed.scheme != "unix" and (not parsed.hostname or port == 0):
        raise ValueError(f"{_redacted(value)!r}: a redis URL needs a host (and a port from 1 to 65535)")
    if parsed.path.strip("/") and parsed.scheme != "unix" and not parsed.path.strip("/").isdigit():
        raise ValueError(f"{_redacted(value)!r}: the path is a database number, e.g. /0")
    return value


def _redacted(url: str) -> str:
    """The URL without its password, for errors and log lines."""
    parsed = urlsplit(url)
    if parsed.password is None:
        return url
    host = parsed.netloc.rpartition("@")[2]
    return parsed._replace(netloc=f"{parsed.username or ''}:***@{host}").geturl()


def _key_prefix(value: Any) -> str:
    text = _text(value)
    if any(c in text for c in " *?[]"):
        raise ValueError(f"{text!r}: a key prefix may not hold spaces or glob characters (* ? [ ])")
    return text


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """`sync:`, what instances share through Redis (docs/scale-out.md); off unless `redis` is set."""

    redis: str | None = key(None, _redis_url, "Redis URL the instances share state through", shown="off")
    prefix: str = key("resolverguard", _key_prefix, "prefix of every Redis key and channel (one per fleet)")
    timeout: float = key(0.5, _real(0.01, 30), "seconds one Redis call may take before it counts as down")
    tls_ca: Path | None = path_key(
        None, _path, "CA file a rediss:// server's certificate is checked with", shown="the system's CAs"
    )
    share_verdicts: bool = key(
        False, _boolean, "publish this instance's model scores and take the fleet's into the verdict cache"
    )
    verdict_budget: int = key(
        100_000, _number(0, 10**7, integer=True), "most shared scores Redis keeps for instances that (re)start"
    )

    @property
    def enabled(self) -> bool:
        return self.redis is not None

    def problem(self) -> tuple[str, str] | None:
        if self.tls_ca is not None and not (self.redis or "").startswith("rediss://"):
            return ("tls_ca", "is only used with a rediss:// (TLS) URL in redis")
        return None

    def redacted(self) -> str:
        return _redacted(self.redis or "off")


GROUP_WATCH_KEYS = ("enabled", "action", "block_action")  # what a client group may set in its client_watch


def _password_hash(value: Any) -> str:
    """What `resolverguard dashboard-password` prints (resolverguard.web.auth has the format)."""
    from resolverguard.web.auth import PasswordHash

    return PasswordHash.parse(value).text


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """`dashboard:`, the web dashboard and HTTP API (docs/api.md). Off by default; whenever it is on,
    a password is required, and a non-loopback address is refused without one."""

    enabled: bool = key(False, _boolean, "serve the dashboard and the HTTP API")
    listen: Endpoint = key(
        Endpoint("127.0.0.1", 8053), lambda v: parse_endpoint(v, 8053), "address of the dashboard and /api/v1"
    )
    password_hash: str | None = key(
        None, _password_hash, "the login password, hashed (`resolverguard dashboard-password`)", shown="none"
    )
    session_hours: float = key(12.0, _real(0.1, 24 * 30), "hours a login lasts")
    login_attempts: int = key(5, _number(1, 1000, integer=True), "failed logins a client may make per window")
    login_window: float = key(300.0, _real(1, 86_400), "seconds failed logins are counted over")

    def problem(self) -> tuple[str, str] | None:
        if not self.enabled or self.password_hash is not None:
            return None
        if not ipaddress.ip_address(self.listen.host).is_loopback:
            return ("listen", f"{self.listen} is not a loopback address: refusing to serve it without password_hash")
        return ("password_hash", "needed when the dashboard is on (make one with `resolverguard dashboard-password`)")


THRESHOLDS_SHOWN = "{log: log, sinkhole: sinkhole}"
# Not 5353: that is mDNS, held by avahi on most desktops. 5335 is what Pi-hole's Unbound guide uses.
DEFAULT_PORT = 5335


@dataclass(frozen=True, slots=True)
class ClientGroupConfig:
    """A named set of clients with its own policy. Keys a group does not set are inherited from the
    top level (whose schema in `Config` they share); a group's lists replace the top-level lists."""

    name: str
    clients: tuple[str, ...]
    mode: Mode
    thresholds: tuple[Threshold, ...]
    on_model_error: OnModelError
    sinkhole: SinkholeConfig
    lists: ListsConfig
    client_watch: ClientWatchConfig


GROUP_POLICY_KEYS = (
    "mode",
    "thresholds",
    "on_model_error",
    "sinkhole",
    "lists",
    "client_watch",
)  # a group may override


@dataclass(frozen=True, slots=True)
class Config:
    """Everything `serve` needs; built from a file, from defaults, or both plus CLI overrides."""

    source: str = "<built-in defaults>"
    listen: tuple[Endpoint, ...] = key(
        (Endpoint("127.0.0.1", DEFAULT_PORT),),
        _list_of(lambda v: parse_endpoint(v, DEFAULT_PORT)),
        "addresses to serve on",
    )
    upstreams: tuple[Upstream, ...] = key(
        (),
        _list_of(parse_upstream),
        "resolvers to forward to: ip[:port], tls://name@ip[:853], https://name/dns-query",
        shown="first nameserver of /etc/resolv.conf that is not us",
    )
    upstream_timeout: float = key(2.0, _real(0.05, 30.0), "seconds per upstream before the next is tried")
    encrypted_upstreams: EncryptedUpstreamsConfig = section(EncryptedUpstreamsConfig, "tls:// and https:// upstreams")
    model: Path | None = path_key(None, _path, "a .tflite model", shown="the shipped models/default.tflite")
    scoring: bool = key(True, _boolean, "false: lists only, no model (a plain filtering forwarder)")
    workers: int = key(1, _number(1, 64, integer=True), "processes sharing the listen ports; restart to change")
    mode: Mode = key(Mode.ENFORCE, _enum(Mode), "monitor logs what it would block and blocks nothing")
    thresholds: tuple[Threshold, ...] = key(DEFAULT_THRESHOLDS, None, "action -> score", shown=THRESHOLDS_SHOWN)
    on_model_error: OnModelError = key(OnModelError.PASS, _enum(OnModelError), "pass (fail open) or servfail")
    sinkhole: SinkholeConfig = section(SinkholeConfig, "sinkhole answers")
    cache: CacheConfig = section(CacheConfig, "the verdict cache")
    lists: ListsConfig = section(ListsConfig, "allow and deny lists")
    subscriptions: SubscriptionsConfig = section(SubscriptionsConfig, "lists downloaded by URL")
    local_records: LocalRecordsConfig = section(LocalRecordsConfig, "names we answer ourselves")
    conditional_forwarding: tuple[tuple[str, Endpoint], ...] = key(
        (), _forward_zones, "domain, reverse zone or network -> the upstream for it", shown="{}"
    )
    private_zones: bool = key(True, _boolean, "answer private reverse zones and .lan/.home.arpa/.local here")
    control_socket: Path | bool = path_key(
        True,
        lambda base: lambda v: False if v in (False, "off") else _path(base)(v),
        "Unix socket for pause/resume/status/lists update; off for none",
        shown="$RUNTIME_DIRECTORY/control.sock, else $XDG_RUNTIME_DIR/resolverguard/control.sock",
    )
    private_suffixes: PrivateSuffixMode = key(
        PrivateSuffixMode.DYNAMIC_DNS, _enum(PrivateSuffixMode), "which private suffixes count as public"
    )
    query_log: QueryLogConfig = section(QueryLogConfig, "the query log", scalar="path")
    query_store: QueryStoreConfig = section(QueryStoreConfig, "the query store", scalar="path")
    access: AccessConfig = section(AccessConfig, "who may query us")
    rate_limit: RateLimitConfig = section(RateLimitConfig, "per-client rate limit")
    limits: Limits = section(Limits, "overload bounds")
    groups: tuple[ClientGroupConfig, ...] = key((), None, "per-client policies; first match wins", shown="[]")
    metrics: Endpoint | None = key(None, None, "Prometheus /metrics listener", yaml="metrics.listen", shown="off")
    answer_cache: AnswerCacheConfig = section(AnswerCacheConfig, "the DNS answer cache")
    family_model: Path | None | bool = path_key(
        True,
        lambda base: lambda v: v if isinstance(v, bool) else _path(base)(v),
        "the family head; false turns it off",
        shown="the shipped models/family.tflite",
    )
    client_watch: ClientWatchConfig = section(ClientWatchConfig, "the client watch: DGA walks seen in the answers")
    dashboard: DashboardConfig = section(DashboardConfig, "the web dashboard and HTTP API")
    proxy_protocol: tuple[str, ...] = key(
        (), _list_of(_network), "load balancers (dnsdist) whose queries carry a PROXY v2 header with the real client"
    )
    sync: SyncConfig = section(SyncConfig, "state shared with other instances through Redis", scalar="redis")

    def default_group(self) -> ClientGroupConfig:
        """The top-level policy, as the group every client falls back to."""
        return ClientGroupConfig(
            "default", (), self.mode, self.thresholds, self.on_model_error, self.sinkhole, self.lists, self.client_watch
        )

    def with_overrides(self, listen: list[str] | None, upstreams: list[str] | None) -> Config:
        """Applies `serve --listen/--upstream`; flags win over the file."""
        out = self
        if listen:
            out = replace(out, listen=tuple(parse_endpoint(x, DEFAULT_PORT, "--listen") for x in listen))
        if upstreams:
            out = replace(out, upstreams=tuple(parse_upstream(x, "--upstream") for x in upstreams))
            bootstrap = out.encrypted_upstreams.bootstrap
            for upstream in out.upstreams:
                if isinstance(upstream, EncryptedUpstream) and not (upstream.address or bootstrap):
                    raise ConfigError(
                        f"{upstream} needs an address: {upstream.scheme}://{upstream.name}@IP, or a bootstrap "
                        "in the policy's encrypted_upstreams",
                        file="--upstream",
                    )
        return out


class _Reader:
    """Pulls typed values out of a LocatedDict, raising ConfigError with the key's line."""

    def __init__(self, data: LocatedDict, file: str, prefix: str = "") -> None:
        self.data, self.file, self.prefix = data, file, prefix
        self.used: set[str] = set()

    def fail(self, key: str, problem: str, line: int | None = None) -> ConfigError:
        where = line if line is not None else self.data.lines.get(key, self.data.line)
        return ConfigError(problem, file=self.file, line=where, key=self.prefix + key)

    def get(self, key: str, default: D, convert: Callable[[Any], T]) -> T | D:
        self.used.add(key)
        if key not in self.data or self.data[key] is None and default is None:
            return default
        try:
            return convert(self.data[key])
        except ConfigError as err:
            raise ConfigError(
                err.problem, file=self.file, line=err.line or self.data.lines[key], key=self.prefix + key + err.key
            ) from None
        except (TypeError, ValueError) as err:
            raise self.fail(key, str(err)) from None

    def section(self, key: str) -> _Reader | None:
        self.used.add(key)
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, LocatedDict):
            raise self.fail(key, "must be a mapping")
        return _Reader(value, self.file, f"{self.prefix}{key}.")

    def finish(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise self.fail(str(key), "unknown key")


def _reader_of(f: Field[Any], base: Path) -> Read:
    spec: Key = f.metadata["key"]
    assert spec.read is not None
    return spec.read(base) if spec.relative else spec.read


def read_keys(cls: type[Any], r: _Reader, base: Path, defaults: Any, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values of `cls`'s plain keys and sections found in `r` (the defaults' where absent)."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if only and f.name not in only:
            continue
        default = getattr(defaults, f.name)
        if "section" in f.metadata:
            out[f.name] = read_section(f.metadata["section"], r, f.name, base, default, f.metadata["scalar"])
        elif "key" in f.metadata and f.metadata["key"].read is not None:
            out[f.name] = r.get(f.metadata["key"].yaml or f.name, default, _reader_of(f, base))
    return out


def read_section(cls: type[S], r: _Reader, name: str, base: Path, default: S, scalar: str = "") -> S:
    """Section `name` of `r` as a `cls`: every key by its schema, then the section's own
    cross-key `problem()`, then unknown keys; `default` when the section is absent."""
    if scalar and name in r.data and not isinstance(r.data[name], LocatedDict):
        f = next(f for f in fields(cls) if f.name == scalar)  # type: ignore[arg-type]
        return replace(default, **{scalar: r.get(name, getattr(default, scalar), _reader_of(f, base))})  # type: ignore[type-var]
    sub = r.section(name)
    if sub is None:
        return default
    out: S = replace(default, **read_keys(cls, sub, base, default))  # type: ignore[type-var]
    problem = getattr(out, "problem", lambda: None)()
    if problem is not None:
        raise sub.fail(*problem)
    sub.finish()
    return out


def shown(value: Any) -> str:
    """A default as docs/policy.md writes it (YAML spelling)."""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def schema_keys(cls: type[Any] = Config, prefix: str = "") -> Iterator[tuple[str, Any, Key | str]]:
    """(dotted key, default, Key or the section's doc) for every key a policy may set; what
    docs/policy.md must list."""
    defaults = cls()
    for f in fields(cls):
        if "section" in f.metadata:
            yield from schema_keys(f.metadata["section"], f"{prefix}{f.name}.")
        elif "key" in f.metadata:
            spec: Key = f.metadata["key"]
            yield prefix + (spec.yaml or f.name), getattr(defaults, f.name), spec


def _threshold_value(value: Any) -> float | str:
    if isinstance(value, str):
        return value
    return float(_number(0.0, 1.0)(value))


def _threshold_table(reader: _Reader) -> tuple[Threshold, ...]:
    out = []
    for key in list(reader.data):
        reader.used.add(key)
        try:
            action = _enum(Action)(key)
        except ValueError as err:
            raise reader.fail(str(key), str(err)) from None
        if action is Action.PASS:
            raise reader.fail(key, "'pass' takes no threshold: names below every threshold pass")
        bound = reader.get(key, 0.0, _threshold_value)
        line = reader.data.lines[key]
        out.append(
            Threshold(action, bound, None, line) if isinstance(bound, float) else Threshold(action, None, bound, line)
        )
    if not out:
        raise reader.fail("", "needs at least one action: threshold")
    return tuple(out)


def _fail(problem: str) -> Any:
    raise ValueError(problem)


def _groups(value: Any, file: str, base: Path, top: Config) -> tuple[ClientGroupConfig, ...]:
    if not isinstance(value, LocatedList):
        raise ValueError("must be a list of groups (name, clients, and what they change)")
    out: list[ClientGroupConfig] = []
    inherited = top.default_group()
    for index, (item, line) in enumerate(zip(value, value.lines, strict=True)):
        if not isinstance(item, LocatedDict):
            raise ConfigError("a group must be a mapping", line=line, key=f"[{index}]")
        g = _Reader(item, file, f"[{index}].")  # the outer reader puts "groups" in front
        name = g.get("name", "", lambda v: v if isinstance(v, str) and v else _fail("must be a non-empty name"))
        if not name or any(existing.name == name for existing in out):
            raise g.fail("name", f"{name!r}: every group needs a unique name")
        clients = g.get("clients", (), _list_of(_network))
        if not clients:
            raise g.fail("clients", "a group needs at least one address or CIDR network")
        group = replace(inherited, name=name, clients=clients, **_policy_fields(g, base, inherited))
        _network_wide_watch_keys(g, group.client_watch, inherited.client_watch)
        out.append(group)
        g.finish()
    return tuple(out)


def _network_wide_watch_keys(g: _Reader, mine: ClientWatchConfig, top: ClientWatchConfig) -> None:
    """The watch's rule and bounds are one for the network (its evidence is network-wide): a group
    may only turn it on or off and choose what a flag does (GROUP_WATCH_KEYS)."""
    for f in fields(ClientWatchConfig):
        if f.name not in GROUP_WATCH_KEYS and getattr(mine, f.name) != getattr(top, f.name):
            sub = g.section("client_watch")
            assert sub is not None
            raise sub.fail(
                f.name,
                f"is network-wide: set it in the top-level client_watch (a group may set "
                f"{', '.join(GROUP_WATCH_KEYS)})",
            )


def _policy_fields(r: _Reader, base: Path, defaults: Config | ClientGroupConfig) -> dict[str, Any]:
    """The keys a client group may override (GROUP_POLICY_KEYS), read by the group schema."""
    out = read_keys(Config, r, base, defaults, only=GROUP_POLICY_KEYS)
    table = r.section("thresholds")
    out["thresholds"] = _threshold_table(table) if table is not None else defaults.thresholds
    return out


def _metrics(r: _Reader | None) -> Endpoint | None:
    """`metrics: {listen: 127.0.0.1:9153}`; absent or `listen: off` means no metrics endpoint."""
    if r is None:
        return None
    out = r.get("listen", None, lambda v: None if v in (False, "off") else parse_endpoint(v, 9153))
    r.finish()
    return out


def from_mapping(data: Any, file: str, base: Path) -> Config:
    """Builds a Config from parsed YAML; relative paths are taken relative to the policy file."""
    if data is None:
        return Config(source=file)
    if not isinstance(data, LocatedDict):
        raise ConfigError("the policy must be a YAML mapping (key: value)", file=file, line=1)
    r = _Reader(data, file)
    defaults = Config(source=file)
    top = replace(defaults, **_policy_fields(r, base, defaults))
    cfg = replace(top, **read_keys(Config, r, base, top))
    cfg = replace(
        cfg,
        groups=r.get("groups", (), lambda v: _groups(v, file, base, top)),
        metrics=_metrics(r.section("metrics")),
    )
    r.finish()
    _check_bootstrap(cfg, data, file)
    return cfg


def _check_bootstrap(cfg: Config, data: LocatedDict, file: str) -> None:
    """An encrypted upstream named without an address needs a bootstrap resolver to find it."""
    if cfg.encrypted_upstreams.bootstrap:
        return
    for index, upstream in enumerate(cfg.upstreams):
        if isinstance(upstream, EncryptedUpstream) and upstream.address is None:
            items = data.get("upstreams")
            line = items.lines[index] if isinstance(items, LocatedList) else data.lines.get("upstreams")
            raise ConfigError(
                f"{upstream} needs an address: write {upstream.scheme}://{upstream.name}@IP, "
                "or list plain resolvers in encrypted_upstreams.bootstrap",
                file=file,
                line=line,
                key=f"upstreams[{index}]",
            )


def load_config(path: Path) -> Config:
    """Reads and validates a policy file; raises ConfigError naming file:line:key."""
    return from_mapping(read_yaml(path), str(path), path.resolve().parent)


def resolve_thresholds(
    thresholds: tuple[Threshold, ...], named: dict[str, float], file: str = "<policy>", prefix: str = ""
) -> tuple[Threshold, ...]:
    """Replaces named thresholds by the model's calibrated values; strictest action first."""
    out = []
    for t in thresholds:
        if t.value is not None:
            out.append(t)
            continue
        if t.name not in named:
            raise ConfigError(
                f"{t.name!r} is not a threshold of the model (it has: {', '.join(sorted(named)) or 'none'})",
                file=file,
                line=t.line,
                key=f"{prefix}thresholds.{t.action.value}",
            )
        out.append(replace(t, value=named[t.name]))
    return tuple(sorted(out, key=lambda t: -(t.value or 0.0)))
