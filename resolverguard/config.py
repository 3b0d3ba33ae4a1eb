"""The policy file: YAML parsed and validated once into frozen dataclasses.

Every problem is reported as `file:line: key: problem` (see `ConfigError`), unknown keys included,
so a typo such as `sinkhol:` is caught by `resolverguard check` instead of silently ignored.
Named thresholds (`fpr_1e-3`) are resolved against the model metadata in `resolve_thresholds`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from resolverguard.alerts import HookConfig
from resolverguard.errors import ConfigError
from resolverguard.steps.names import PrivateSuffixMode
from resolverguard.watch import WatchLimits, WatchRule
from resolverguard.yamlsource import LocatedDict, LocatedList, read_yaml

T = TypeVar("T")
D = TypeVar("D")


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


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Threshold:
    """`score >= value` triggers `action`; `name` is the metadata threshold it came from, if any."""

    action: Action
    value: float | None
    name: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class SinkholeConfig:
    ipv4: str = "0.0.0.0"
    ipv6: str = "::"
    ttl: int = 60


@dataclass(frozen=True, slots=True)
class CacheConfig:
    size: int = 100_000
    ttl: float = 3600.0


@dataclass(frozen=True, slots=True)
class ListsConfig:
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    allow_files: tuple[Path, ...] = ()
    deny_files: tuple[Path, ...] = ()
    deny_action: Action = Action.SINKHOLE


class ClientPrivacy(str, Enum):
    """How client addresses appear in the query log."""

    FULL = "full"
    TRUNCATE = "truncate"  # IPv4 /24, IPv6 /48
    OMIT = "omit"


@dataclass(frozen=True, slots=True)
class QueryLogConfig:
    path: str | None = "-"  # a file, "-" for standard output, None for off
    max_bytes: int = 50 * 1024 * 1024  # rotate when a file grows past this (0: never)
    keep: int = 5  # rotated files kept (queries.jsonl.1 ... .keep)
    clients: ClientPrivacy = ClientPrivacy.FULL


DEFAULT_ALLOWED_CLIENTS: tuple[str, ...] = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
)


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """Who may query us. The default admits only loopback and private ranges (no open resolver)."""

    allow_clients: tuple[str, ...] = DEFAULT_ALLOWED_CLIENTS
    refused: str = "refuse"  # or "drop"
    open_resolver: bool = False  # must be true to admit 0.0.0.0/0 or ::/0


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Per-client token bucket; qps 0 turns it off."""

    qps: float = 200.0
    burst: int = 400
    over_limit: str = "drop"  # or "refuse"; dropping does not reflect a spoofed flood at its victim


@dataclass(frozen=True, slots=True)
class AnswerCacheConfig:
    """The DNS answer cache (size 0 turns it off); TTLs in seconds."""

    size: int = 10_000
    min_ttl: int = 0
    max_ttl: int = 86_400
    negative_max_ttl: int = 3_600
    prefetch: bool = True  # refresh a popular answer in its last 10% of TTL, before it expires (Unbound's rule)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that make overload a DNS error instead of growing memory."""

    max_inflight: int = 2048  # queries being answered at once; beyond: SERVFAIL at once
    max_tcp_connections: int = 256  # beyond: new connections are closed
    tcp_idle_timeout: float = 10.0


class WatchAction(str, Enum):
    LOG = "log"  # alert only
    QUARANTINE = "quarantine"  # alert, and block the client's DGA-like and new names; block its C2 for all


@dataclass(frozen=True, slots=True)
class ClientWatchConfig:
    """The `client_watch:` section (docs/policy.md explains each key)."""

    enabled: bool = False
    action: WatchAction = WatchAction.QUARANTINE
    block_action: Action = Action.SINKHOLE
    rule: WatchRule = field(default_factory=WatchRule)
    limits: WatchLimits = field(default_factory=WatchLimits)
    exempt_clients: tuple[str, ...] = ()  # never watched (a mail server, a scanner)
    on_flag: HookConfig = field(default_factory=HookConfig)


DEFAULT_THRESHOLDS = (Threshold(Action.LOG, None, "log"), Threshold(Action.SINKHOLE, None, "sinkhole"))


@dataclass(frozen=True, slots=True)
class ClientGroupConfig:
    """A named set of clients with its own policy. Keys a group does not set are inherited from the
    top level; a group's lists replace the top-level lists for its clients."""

    name: str
    clients: tuple[str, ...]
    mode: Mode = Mode.ENFORCE
    thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS
    on_model_error: OnModelError = OnModelError.PASS
    sinkhole: SinkholeConfig = field(default_factory=SinkholeConfig)
    lists: ListsConfig = field(default_factory=ListsConfig)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything `serve` needs; built from a file, from defaults, or both plus CLI overrides."""

    source: str = "<built-in defaults>"
    listen: tuple[Endpoint, ...] = (Endpoint("127.0.0.1", 5353),)
    upstreams: tuple[Endpoint, ...] = ()
    upstream_timeout: float = 2.0
    model: Path | None = None  # None: the shipped default model
    scoring: bool = True  # False: lists only, no model (a plain filtering forwarder; benchmarks' baseline)
    workers: int = 1  # processes sharing the listen ports (SO_REUSEPORT); changes need a restart
    mode: Mode = Mode.ENFORCE
    thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS
    on_model_error: OnModelError = OnModelError.PASS
    sinkhole: SinkholeConfig = field(default_factory=SinkholeConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    lists: ListsConfig = field(default_factory=ListsConfig)
    private_suffixes: PrivateSuffixMode = PrivateSuffixMode.DYNAMIC_DNS
    query_log: QueryLogConfig = field(default_factory=QueryLogConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    limits: Limits = field(default_factory=Limits)
    groups: tuple[ClientGroupConfig, ...] = ()  # per-client policies; first match wins, else the above
    metrics: Endpoint | None = None  # Prometheus /metrics listener; off unless set
    answer_cache: AnswerCacheConfig = field(default_factory=AnswerCacheConfig)
    family_model: Path | None | bool = True  # True: the shipped family head if present; False: off
    client_watch: ClientWatchConfig = field(default_factory=ClientWatchConfig)

    def default_group(self) -> ClientGroupConfig:
        """The top-level policy, as the group every client falls back to."""
        return ClientGroupConfig(
            "default", (), self.mode, self.thresholds, self.on_model_error, self.sinkhole, self.lists
        )

    def with_overrides(self, listen: list[str] | None, upstreams: list[str] | None) -> Config:
        """Applies `serve --listen/--upstream`; flags win over the file."""
        out = self
        if listen:
            out = replace(out, listen=tuple(parse_endpoint(x, 5353, "--listen") for x in listen))
        if upstreams:
            out = replace(out, upstreams=tuple(parse_endpoint(x, 53, "--upstream") for x in upstreams))
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


def _path(base: Path) -> Callable[[Any], Path]:
    def convert(value: Any) -> Path:
        if not isinstance(value, str) or not value:
            raise ValueError("must be a file path")
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    return convert


def _sinkhole(sink: _Reader) -> SinkholeConfig:
    out = SinkholeConfig(
        sink.get("ipv4", "0.0.0.0", _ip(4)),
        sink.get("ipv6", "::", _ip(6)),
        sink.get("ttl", 60, _number(0, 86400, integer=True)),
    )
    sink.finish()
    return out


def _cache(cache: _Reader) -> CacheConfig:
    out = CacheConfig(
        cache.get("size", 100_000, _number(0, 10**8, integer=True)),
        float(cache.get("ttl", 3600.0, _number(0, 7 * 86400))),
    )
    cache.finish()
    return out


def _lists(lists: _Reader, base: Path) -> ListsConfig:
    out = ListsConfig(
        lists.get("allow", (), _list_of(_domain)),
        lists.get("deny", (), _list_of(_domain)),
        lists.get("allow_files", (), _list_of(_path(base))),
        lists.get("deny_files", (), _list_of(_path(base))),
        lists.get("deny_action", Action.SINKHOLE, _enum(Action)),
    )
    if not out.deny_action.blocks:
        raise lists.fail("deny_action", "must be sinkhole, nxdomain, refuse or servfail")
    lists.finish()
    return out


def _policy_fields(r: _Reader, base: Path, defaults: Config | ClientGroupConfig) -> dict[str, Any]:
    """The keys a client group may override: mode, thresholds, on_model_error, sinkhole, lists."""
    fields: dict[str, Any] = {
        "mode": r.get("mode", defaults.mode, _enum(Mode)),
        "on_model_error": r.get("on_model_error", defaults.on_model_error, _enum(OnModelError)),
    }
    table, sink, lists = r.section("thresholds"), r.section("sinkhole"), r.section("lists")
    fields["thresholds"] = _threshold_table(table) if table is not None else defaults.thresholds
    fields["sinkhole"] = _sinkhole(sink) if sink is not None else defaults.sinkhole
    fields["lists"] = _lists(lists, base) if lists is not None else defaults.lists
    return fields


def _groups(value: Any, file: str, base: Path, top: dict[str, Any]) -> tuple[ClientGroupConfig, ...]:
    if not isinstance(value, LocatedList):
        raise ValueError("must be a list of groups (name, clients, and what they change)")
    out: list[ClientGroupConfig] = []
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
        inherited = ClientGroupConfig("default", (), **top)
        out.append(ClientGroupConfig(name, clients, **_policy_fields(g, base, inherited)))
        g.finish()
    return tuple(out)


def _fail(problem: str) -> Any:
    raise ValueError(problem)


def from_mapping(data: Any, file: str, base: Path) -> Config:
    """Builds a Config from parsed YAML; relative paths are taken relative to the policy file."""
    if data is None:
        return Config(source=file)
    if not isinstance(data, LocatedDict):
        raise ConfigError("the policy must be a YAML mapping (key: value)", file=file, line=1)
    r = _Reader(data, file)
    defaults = Config()
    top = _policy_fields(r, base, defaults)
    cache = r.section("cache")
    cfg = Config(
        source=file,
        listen=r.get("listen", defaults.listen, _list_of(lambda v: parse_endpoint(v, 5353))),
        upstreams=r.get("upstreams", defaults.upstreams, _list_of(lambda v: parse_endpoint(v, 53))),
        upstream_timeout=r.get("upstream_timeout", defaults.upstream_timeout, _number(0.05, 30.0)),
        model=r.get("model", None, _path(base)),
        scoring=r.get("scoring", True, _boolean),
        workers=r.get("workers", 1, _number(1, 64, integer=True)),
        private_suffixes=r.get("private_suffixes", defaults.private_suffixes, _enum(PrivateSuffixMode)),
        query_log=_query_log(r, base),
        access=_access(r.section("access")),
        rate_limit=_rate_limit(r.section("rate_limit")),
        limits=_limits(r.section("limits")),
        cache=_cache(cache) if cache is not None else defaults.cache,
        groups=r.get("groups", (), lambda v: _groups(v, file, base, top)),
        metrics=_metrics(r.section("metrics")),
        answer_cache=_answer_cache(r.section("answer_cache")),
        family_model=r.get("family_model", True, lambda v: v if isinstance(v, bool) else _path(base)(v)),
        client_watch=_client_watch(r.section("client_watch")),
        **top,
    )
    r.finish()
    return cfg


def _log_target(base: Path) -> Callable[[Any], str | None]:
    def convert(value: Any) -> str | None:
        if value in (False, "off", "none", None):
            return None
        if not isinstance(value, str) or not value:
            raise ValueError("must be a file path, '-' for standard output, or off")
        return value if value == "-" or Path(value).is_absolute() else str(base / value)

    return convert


def _query_log(r: _Reader, base: Path) -> QueryLogConfig:
    """`query_log: PATH` (or `-`, `off`), or a mapping with path, max_mb, keep and clients."""
    if not isinstance(r.data.get("query_log"), LocatedDict):
        return QueryLogConfig(path=r.get("query_log", "-", _log_target(base)))
    q = r.section("query_log")
    assert q is not None
    out = QueryLogConfig(
        q.get("path", "-", _log_target(base)),
        int(q.get("max_mb", 50, _number(0, 100_000)) * 1024 * 1024),
        q.get("keep", 5, _number(0, 1000, integer=True)),
        q.get("clients", ClientPrivacy.FULL, _enum(ClientPrivacy)),
    )
    q.finish()
    return out


def _refusal(value: Any) -> str:
    if value not in ("refuse", "drop"):
        raise ValueError(f"{value!r} is not one of: refuse, drop")
    return str(value)


def _network(value: Any) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an address or CIDR network") from None


def _access(a: _Reader | None) -> AccessConfig:
    if a is None:
        return AccessConfig()
    out = AccessConfig(
        a.get("allow_clients", DEFAULT_ALLOWED_CLIENTS, _list_of(_network)),
        a.get("refused", "refuse", _refusal),
        a.get("open_resolver", False, _boolean),
    )
    if any(ipaddress.ip_network(n).prefixlen == 0 for n in out.allow_clients) and not out.open_resolver:
        raise a.fail(
            "allow_clients",
            "admits every address on the Internet; set access.open_resolver: true "
            "if you really mean to run an open resolver",
        )
    a.finish()
    return out


def _rate_limit(r: _Reader | None) -> RateLimitConfig:
    if r is None:
        return RateLimitConfig()
    out = RateLimitConfig(
        float(r.get("qps", 200.0, _number(0, 1e6))),
        r.get("burst", 400, _number(1, 10**7, integer=True)),
        r.get("over_limit", "drop", _refusal),
    )
    r.finish()
    return out


def _answer_cache(r: _Reader | None) -> AnswerCacheConfig:
    if r is None:
        return AnswerCacheConfig()
    out = AnswerCacheConfig(
        r.get("size", 10_000, _number(0, 10**7, integer=True)),
        r.get("min_ttl", 0, _number(0, 86_400, integer=True)),
        r.get("max_ttl", 86_400, _number(0, 7 * 86_400, integer=True)),
        r.get("negative_max_ttl", 3_600, _number(0, 86_400, integer=True)),
        r.get("prefetch", True, _boolean),
    )
    if out.min_ttl > out.max_ttl:
        raise r.fail("min_ttl", "must not be larger than max_ttl")
    r.finish()
    return out


def _metrics(r: _Reader | None) -> Endpoint | None:
    """`metrics: {listen: 127.0.0.1:9153}`; absent or `listen: off` means no metrics endpoint."""
    if r is None:
        return None
    out = r.get("listen", None, lambda v: None if v in (False, "off") else parse_endpoint(v, 9153))
    r.finish()
    return out


def _limits(r: _Reader | None) -> Limits:
    if r is None:
        return Limits()
    out = Limits(
        r.get("max_inflight", 2048, _number(1, 10**6, integer=True)),
        r.get("max_tcp_connections", 256, _number(1, 10**5, integer=True)),
        float(r.get("tcp_idle_timeout", 10.0, _number(0.1, 3600))),
    )
    r.finish()
    return out


def _client_watch(r: _Reader | None) -> ClientWatchConfig:
    """`client_watch:`: the rule's numbers, what a flag does, and the alert hook."""
    if r is None:
        return ClientWatchConfig()
    d, dr, dl = ClientWatchConfig(), WatchRule(), WatchLimits()
    rule = WatchRule(
        flag_at=float(r.get("flag_at", dr.flag_at, _number(1, 1000))),
        alike_bonus=float(r.get("alike_bonus", dr.alike_bonus, _number(0, 100))),
        score_bonus=float(r.get("score_bonus", dr.score_bonus, _number(0, 100))),
        suspicious_score=r.get("suspicious_score", None, lambda v: float(_number(0.0, 1.0)(v))),
        window_seconds=float(r.get("window", dr.window_seconds, _number(1, 86400))),
        window_names=r.get("window_names", dr.window_names, _number(1, 1000, integer=True)),
        quarantine_seconds=float(r.get("quarantine_ttl", dr.quarantine_seconds, _number(1, 30 * 86400))),
        c2_seconds=float(r.get("likely_c2_ttl", dr.c2_seconds, _number(1, 30 * 86400))),
        burst_gap=float(r.get("burst_gap", dr.burst_gap, _number(0, 3600))),
        max_c2_per_flag=r.get("max_c2_per_flag", dr.max_c2_per_flag, _number(0, 100, integer=True)),
    )
    limits = WatchLimits(
        max_clients=r.get("max_clients", dl.max_clients, _number(1, 10**7, integer=True)),
        max_flagged=r.get("max_flagged", dl.max_flagged, _number(1, 10**6, integer=True)),
        known_names=r.get("known_names", dl.known_names, _number(1, 10**7, integer=True)),
    )
    out = ClientWatchConfig(
        enabled=r.get("enabled", True, _boolean),
        action=r.get("action", d.action, _enum(WatchAction)),
        block_action=r.get("block_action", d.block_action, _enum(Action)),
        rule=rule,
        limits=limits,
        exempt_clients=r.get("exempt_clients", (), _list_of(_network)),
        on_flag=_hook(r.section("on_flag")),
    )
    if not out.block_action.blocks:
        raise r.fail("block_action", "must be sinkhole, nxdomain, refuse or servfail")
    r.finish()
    return out


def _hook(r: _Reader | None) -> HookConfig:
    """`on_flag: {command: [argv...]}` or `on_flag: {url: http://...}`, and `timeout`."""
    if r is None:
        return HookConfig()
    out = HookConfig(
        r.get("command", (), _list_of(lambda v: v if isinstance(v, str) and v else _fail("must be a string"))),
        r.get("url", None, _url),
        float(r.get("timeout", 5.0, _number(0.1, 60))),
    )
    if out.command and out.url:
        raise r.fail("url", "set either command or url, not both")
    r.finish()
    return out


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


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
