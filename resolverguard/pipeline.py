"""Where the chain is assembled: `build_pipeline` is the one written order a query walks; the
README and `resolverguard.chain` point here rather than repeat it.

Adding a step touches three places:
1. `steps/<name>.py`: a class with `check(request) -> Outcome` when it decides from the request
   alone (answer with bytes, hand on with None, or return something to await), or
   `async __call__(request, next_step) -> Reply` when it must see the reply too;
2. its settings: one frozen dataclass with `key(...)` fields and one `section(...)` line in
   `Config` (see the `resolverguard.config` docstring), and its rows in docs/policy.md;
3. one line in `build_pipeline`, where its ordering constraint puts it (say why in a comment).
A step with state that must survive a reload (a cache, sockets) gets a `carried(old, ...)`
classmethod that returns the old object when what its state depends on is unchanged, and a field
on `Pipeline` (plus a line in `Pipeline.retire` when the object holds something to close).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from resolverguard.addresses import networks
from resolverguard.alerts import AlertHook
from resolverguard.chain import Check, Gate, Next, Refusal, Step, link
from resolverguard.config import (
    ClientGroupConfig,
    Config,
    Endpoint,
    ListsConfig,
    ListSource,
    QueryLogConfig,
    QueryStoreConfig,
    SubscriptionsConfig,
    WatchAction,
    resolve_thresholds,
)
from resolverguard.errors import ConfigError
from resolverguard.groups import ClientGroup, GroupDirectory
from resolverguard.lists import DomainLists, ListFile, ListFormat
from resolverguard.localnames import LocalZone, hosts_records
from resolverguard.model import TFLiteScorer, shipped
from resolverguard.names import NameParser
from resolverguard.shortcut import ReplyShortcut
from resolverguard.steps.acl import AclGate, ClientAcl, RateLimitGate, TokenBuckets
from resolverguard.steps.answers import AnswerCache, AnswerCacheStep
from resolverguard.steps.block import BlockStep
from resolverguard.steps.cache import CacheStep, VerdictCache
from resolverguard.steps.family import FamilyHints
from resolverguard.steps.groups import GroupStep
from resolverguard.steps.lists import ListStep
from resolverguard.steps.local import ConditionalForwarding, ConditionalForwardStep, LocalAnswerStep
from resolverguard.steps.metrics import Metrics, MetricsStep
from resolverguard.steps.names import NameStep
from resolverguard.steps.pause import PauseStep, PauseSwitch
from resolverguard.steps.policy import PolicyStep
from resolverguard.steps.querylog import QueryLog, QueryLogStep, open_log
from resolverguard.steps.score import ScoreStep
from resolverguard.steps.upstream import UpstreamForwarder, UpstreamStep
from resolverguard.steps.watch import ClientWatchStep, watch_limits, watch_rule
from resolverguard.store import StoreError
from resolverguard.subscriptions import ages, cached_path, default_cache_dir
from resolverguard.verdicts import Policy
from resolverguard.watch import WatchState


@dataclass(frozen=True)
class Pipeline:
    """The chain and the stateful parts it was built with; a reload hands it to `build_pipeline`
    as `previous`, and each stateful part decides itself whether it carries over (`carried`)."""

    chain: Next
    log: QueryLog
    groups: GroupDirectory
    cache: VerdictCache
    gates: tuple[Gate, ...]
    answers: AnswerCache
    forwarder: UpstreamForwarder  # owns pooled sockets: closed by whoever replaces the pipeline
    hints: FamilyHints | None = None
    conditional: ConditionalForwarding | None = None  # owns sockets, like forwarder
    pause: PauseSwitch = field(default_factory=PauseSwitch)  # the server's, carried across reloads
    watch: WatchState | None = None  # the client watch's evidence, flags and likely C2 names
    hook: AlertHook | None = None  # its alert hook's worker thread
    shortcut: ReplyShortcut | None = None  # exact repeats of cached answers, before the chain (the server's)

    def retire(self, successor: Pipeline, close_later: Callable[[Callable[[], None]], object]) -> None:
        """Closes (through `close_later`, after the queries in flight) what `successor` did not carry
        over: an open query log and pooled upstream sockets."""
        if self.log is not successor.log:
            close_later(self.log.close_soon)
        if self.forwarder is not successor.forwarder:
            close_later(self.forwarder.close)
        if self.conditional is not None and self.conditional is not successor.conditional:
            close_later(self.conditional.close)
        if self.hook is not None and self.hook is not successor.hook:
            self.hook.close()


def policy_for(group: ClientGroupConfig, named: dict[str, float], file: str = "<policy>", prefix: str = "") -> Policy:
    """The group's policy with named thresholds resolved against the model's calibrated ones."""
    return Policy(resolve_thresholds(group.thresholds, named, file, prefix), group.mode, group.on_model_error)


def lists_for(group: ClientGroupConfig, subs: SubscriptionsConfig | None = None) -> DomainLists:
    """The group's lists; a URL is read from its last good downloaded copy (empty before the first)."""
    lc, cache_dir = group.lists, (subs.cache_dir if subs else None) or default_cache_dir()

    def files(sources: tuple[ListSource, ...]) -> list[ListFile]:
        return [
            ListFile(cached_path(cache_dir, s.url), s.format, s.url) if s.url else ListFile(s.path or Path(), s.format)
            for s in sources
        ]

    urls = [s.url for s in (*lc.allow_files, *lc.deny_files) if s.url]
    return DomainLists.build(
        lc.allow, lc.deny, files(lc.allow_files), files(lc.deny_files), lc.deny_action, ages(cache_dir, urls)
    )


def prebuilt_lists(cfg: Config) -> dict[ListsConfig, DomainLists]:
    """Every distinct lists section of the policy, read once (what `groups_for` takes as `built`)."""
    out: dict[ListsConfig, DomainLists] = {}
    for group in (cfg.default_group(), *cfg.groups):
        if group.lists not in out:
            out[group.lists] = lists_for(group, cfg.subscriptions)
    return out


def list_copies(cfg: Config) -> tuple[tuple[str, int], ...]:
    """(URL, modification time of its cached copy, 0 if none) for every list URL: lists built from
    these copies need no rebuild while they are unchanged (another worker may have replaced one)."""
    cache_dir = cfg.subscriptions.cache_dir or default_cache_dir()
    out = []
    for url, _ in subscribed(cfg):
        try:
            out.append((url, cached_path(cache_dir, url).stat().st_mtime_ns))
        except OSError:
            out.append((url, 0))
    return tuple(out)


def subscribed(cfg: Config) -> list[tuple[str, ListFormat]]:
    """Every list URL of the policy (top level and groups), once each, with its format."""
    lists = [cfg.lists, *(g.lists for g in cfg.groups)]
    found = [(s.url, s.format) for lc in lists for s in (*lc.allow_files, *lc.deny_files) if s.url]
    return list(dict.fromkeys(found))


def groups_for(
    cfg: Config, named: dict[str, float], built: Mapping[ListsConfig, DomainLists] | None = None
) -> GroupDirectory:
    """Every client group with its resolved policy and loaded lists (lists shared when unchanged;
    `built`: lists already read, e.g. by `prebuilt_lists` in another process)."""

    def lists_of(group: ClientGroupConfig) -> DomainLists:
        found = built.get(group.lists) if built else None
        return found if found is not None else lists_for(group, cfg.subscriptions)

    default_cfg = cfg.default_group()
    default = ClientGroup(
        "default",
        (),
        policy_for(default_cfg, named, cfg.source),
        lists_of(default_cfg),
        cfg.sinkhole,
        cfg.client_watch,
    )
    groups = []
    for index, g in enumerate(cfg.groups):
        lists = default.lists if g.lists == cfg.lists else lists_of(g)
        policy = policy_for(g, named, cfg.source, f"groups[{index}].")
        groups.append(ClientGroup(g.name, networks(g.clients), policy, lists, g.sinkhole, g.client_watch))
    return GroupDirectory(groups, default)


def decision_steps(
    cfg: Config,
    model: TFLiteScorer,
    groups: GroupDirectory,
    cache: VerdictCache,
    forwarder: UpstreamForwarder | None = None,
) -> list[Step | Check]:
    """The steps that decide a verdict (shared by serving and `resolverguard explain`). `forwarder`:
    the upstream forwarder the scored queries go on to, held while a model batch's queries run on,
    so they leave together (`UpstreamForwarder.hold`)."""
    form = model.metadata.input_form
    holds = (forwarder,) if forwarder is not None else ()
    scoring: list[Step | Check] = (
        [CacheStep(cache, form), ScoreStep(model, form, cache, holds=holds)] if cfg.scoring else []
    )
    return [
        GroupStep(groups),
        NameStep(NameParser(cfg.private_suffixes)),
        ListStep(groups.default.lists),
        *scoring,
        PolicyStep(groups.default.policy),
    ]


def family_model_path(cfg: Config) -> Path | None:
    """The family head's file: the configured one, else the shipped one if there is one, else none."""
    if cfg.family_model is False:
        return None
    return cfg.family_model if isinstance(cfg.family_model, Path) else shipped("family.tflite")


def family_hints_for(cfg: Config, previous: FamilyHints | None = None) -> FamilyHints | None:
    """The family head, loaded (the client watch names a flagged client's family with it)."""
    return FamilyHints.carried(previous, family_model_path(cfg))


def local_zone_for(cfg: Config) -> LocalZone:
    """Local records (inline and from hosts files), forwarded zones and the private-zone default."""
    records = list(cfg.local_records.records)
    for path in cfg.local_records.hosts_files:
        try:
            records.extend(hosts_records(path.read_text(encoding="utf-8", errors="replace").splitlines()))
        except OSError as err:
            raise ConfigError(f"cannot read hosts file: {err.strerror}", file=str(path)) from None
    return LocalZone.build(records, (zone for zone, _ in cfg.conditional_forwarding), cfg.private_zones)


def query_log_for(
    cfg: Config, old: QueryLog | None, make: Callable[[QueryLogConfig, QueryStoreConfig | None], QueryLog]
) -> QueryLog:
    """The query log (and the store it feeds): carried over while its settings stay; a store that
    cannot be opened is a policy error (at start the server does not start, a reload is rejected)."""
    try:
        return QueryLog.carried(old, cfg.query_log, cfg.query_store, make)
    except StoreError as err:
        raise ConfigError(str(err), file=cfg.source, key="query_store.path") from None


def _say(text: str, stderr: TextIO | None) -> None:
    print(f"resolverguard: {text}", file=stderr or sys.stderr, flush=True)


def build_pipeline(
    cfg: Config,
    model: TFLiteScorer,
    make_log: Callable[[QueryLogConfig, QueryStoreConfig | None], QueryLog] = open_log,
    metrics: Metrics | None = None,
    previous: Pipeline | None = None,
    built: Mapping[ListsConfig, DomainLists] | None = None,
    stderr: TextIO | None = None,
) -> Pipeline:
    """The chain for `cfg`: the one written order of the steps (README "How a query is handled"
    and `resolverguard.chain` point here). On a reload `previous` is the running pipeline: each
    stateful part carries its state over when what it depends on did not change (the verdict
    cache while the model is the same, the answer cache and upstream sockets while the upstreams
    are, the query log while its settings are)."""
    old = previous
    groups = groups_for(cfg, model.metadata.thresholds, built)
    cache = VerdictCache.carried(old.cache if old else None, cfg.cache.size, cfg.cache.ttl, model)
    log = query_log_for(cfg, old.log if old else None, make_log)
    # Flagged names' lines get a family hint, made by the log's writer in bulk (no step on the loop)
    log.use_family(family_model_path(cfg) if cfg.scoring else None)
    hints = family_hints_for(cfg, old.hints if old else None)
    upstreams = (cfg.upstreams, cfg.upstream_timeout)
    answers = AnswerCache.carried(old.answers if old else None, cfg.answer_cache, upstreams)
    forwarder = UpstreamForwarder.carried(
        old.forwarder if old else None, *upstreams, cfg.encrypted_upstreams, lambda text: _say(text, stderr)
    )
    access, limit = cfg.access, cfg.rate_limit
    # Gates run before the chain, on the source address alone (see DnsServer.turned_away).
    gates: list[Gate] = [AclGate(ClientAcl(access.allow_clients), Refusal(drop=access.refused == "drop"))]
    if limit.qps > 0:
        gates.append(RateLimitGate(TokenBuckets(limit.qps, limit.burst), Refusal(drop=limit.over_limit == "drop")))
    # The chain. Each line's place is a constraint: the query log and metrics wrap everything, so they
    # see the final verdict and the upstream's rcode; decisions come before any answer; the block step
    # answers before the answer cache, so a sinkhole answer is never cached as an upstream answer.
    steps: list[Step | Check] = [QueryLogStep(log)] if log.enabled else []
    if metrics is not None:
        steps.append(MetricsStep(metrics))
    local = local_zone_for(cfg)
    if local.records or local.private:  # local names are answered before any decision: never scored
        steps.append(LocalAnswerStep(local, cfg.local_records.ttl))
    steps += decision_steps(cfg, model, groups, cache, forwarder)  # group, name, lists, verdict cache, score, policy
    watch, hook, watch_step = None, None, None
    if cfg.client_watch.enabled or any(g.client_watch.enabled for g in cfg.groups):
        # After the verdict (an allow-listed name is never touched, and the watch may block), before the
        # block step and the answer cache: it sees every answer, cached ones and the model's sinkholes too.
        watch = WatchState.carried(
            old.watch if old else None,
            watch_rule(cfg.client_watch, model.metadata.thresholds),
            watch_limits(cfg.client_watch),
        )
        hook = AlertHook.carried(old.hook if old else None, cfg.client_watch.on_flag, stderr)
        watch_log = log if log.enabled else None
        aside = UpstreamStep(forwarder)  # a probe goes straight to the upstream, past the block step
        watches = (cfg.client_watch, *(g.client_watch for g in cfg.groups))
        quarantines = any(w.enabled and w.action is WatchAction.QUARANTINE for w in watches)
        watch_step = ClientWatchStep(
            cfg.client_watch, watch, watch_log, metrics, hints, hook, stderr, aside, blocks=quarantines
        )
        steps.append(watch_step)
    pause = PauseSwitch.carried(old.pause if old else None)
    steps.append(PauseStep(pause))  # after the verdict, before anything acts on it
    steps.append(BlockStep(cfg.sinkhole))
    steps.append(AnswerCacheStep(answers))
    old_routes = old.conditional if old else None
    conditional = ConditionalForwarding.carried(old_routes, cfg.conditional_forwarding, cfg.upstream_timeout)
    if conditional is not None:  # last before the upstream: a forwarded zone is filtered and cached as any name
        steps.append(ConditionalForwardStep(conditional, local))
    chain = link(steps, UpstreamStep(forwarder))  # whatever reaches the end is forwarded
    # The shortcut past all of it, for exact repeats of cached answers: only where every decision
    # above depends on the name alone (no client groups, no `$client=` rules; with the client watch,
    # only while its way in has nothing to do, and it is told of every repeat) and every query is
    # seen by the log alone (no metrics step). See resolverguard.shortcut.
    shortcut = None
    if cfg.answer_cache.repeat_shortcut and not cfg.groups and not groups.default.lists.scoped and metrics is None:
        form = model.metadata.input_form
        shortcut = ReplyShortcut(answers, cache, pause, log if log.enabled else None, form, watch=watch_step)
    return Pipeline(
        chain, log, groups, cache, tuple(gates), answers, forwarder, hints, conditional, pause, watch, hook, shortcut
    )


def resolv_conf_upstreams(listen: tuple[Endpoint, ...], path: Path = Path("/etc/resolv.conf")) -> tuple[Endpoint, ...]:
    """The first nameserver of resolv.conf that is not this resolver itself (no forwarding loop)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ()
    ours = {(ep.host, ep.port) for ep in listen}
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            candidate = Endpoint(fields[1].split("%", 1)[0], 53)
            wildcard = any(ep.port == 53 and ep.host in ("0.0.0.0", "::") for ep in listen)
            if (candidate.host, candidate.port) not in ours and not wildcard:
                return (candidate,)
    return ()
