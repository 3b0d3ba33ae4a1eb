"""Where the chain is assembled, in the one order a query walks (see `resolverguard.chain`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from resolverguard.addresses import networks
from resolverguard.alerts import AlertHook
from resolverguard.chain import Check, Next, Step, link
from resolverguard.config import ClientGroupConfig, Config, Endpoint, resolve_thresholds
from resolverguard.model import TFLiteScorer, load_model, shipped
from resolverguard.steps.acl import AclGate, ClientAcl, Gate, RateLimitGate, Refusal, TokenBuckets
from resolverguard.steps.answers import AnswerCache, AnswerCacheStep
from resolverguard.steps.block import BlockStep
from resolverguard.steps.cache import CacheStep, VerdictCache
from resolverguard.steps.family import FamilyHints, FamilyHintStep
from resolverguard.steps.groups import ClientGroup, GroupDirectory, GroupStep
from resolverguard.steps.lists import DomainLists, ListStep
from resolverguard.steps.metrics import Metrics, MetricsStep
from resolverguard.steps.names import NameParser, NameStep
from resolverguard.steps.policy import Policy, PolicyStep
from resolverguard.steps.querylog import QueryLog, QueryLogStep
from resolverguard.steps.score import ScoreStep
from resolverguard.steps.upstream import UpstreamForwarder, UpstreamStep
from resolverguard.steps.watch import ClientWatchStep
from resolverguard.watch import PopularNames, WatchState


@dataclass(frozen=True)
class Pipeline:
    chain: Next
    log: QueryLog
    groups: GroupDirectory
    cache: VerdictCache
    gates: tuple[Gate, ...]
    answers: AnswerCache
    forwarder: UpstreamForwarder  # owns pooled sockets: closed by whoever replaces the pipeline
    watch: WatchState | None = None  # the client watch's evidence and flags, carried across reloads
    hook: AlertHook | None = None  # its alert hook's worker thread


def policy_for(group: ClientGroupConfig, named: dict[str, float], file: str = "<policy>", prefix: str = "") -> Policy:
    """The group's policy with named thresholds resolved against the model's calibrated ones."""
    return Policy(resolve_thresholds(group.thresholds, named, file, prefix), group.mode, group.on_model_error)


def lists_for(group: ClientGroupConfig) -> DomainLists:
    lc = group.lists
    return DomainLists.build(lc.allow, lc.deny, lc.allow_files, lc.deny_files, lc.deny_action)


def groups_for(cfg: Config, named: dict[str, float]) -> GroupDirectory:
    """Every client group with its resolved policy and loaded lists (lists shared when unchanged)."""
    default_cfg = cfg.default_group()
    default = ClientGroup(
        "default", (), policy_for(default_cfg, named, cfg.source), lists_for(default_cfg), cfg.sinkhole
    )
    groups = []
    for index, g in enumerate(cfg.groups):
        lists = default.lists if g.lists == cfg.lists else lists_for(g)
        policy = policy_for(g, named, cfg.source, f"groups[{index}].")
        groups.append(ClientGroup(g.name, networks(g.clients), policy, lists, g.sinkhole))
    return GroupDirectory(groups, default)


def decision_steps(cfg: Config, model: TFLiteScorer, groups: GroupDirectory, cache: VerdictCache) -> list[Step | Check]:
    """The steps that decide a verdict (shared by serving and `resolverguard explain`)."""
    form = model.metadata.input_form
    scoring: list[Step | Check] = [CacheStep(cache, form), ScoreStep(model, form, cache)] if cfg.scoring else []
    return [
        GroupStep(groups),
        NameStep(NameParser(cfg.private_suffixes)),
        ListStep(groups.default.lists),
        *scoring,
        PolicyStep(groups.default.policy),
    ]


def family_hints_for(cfg: Config) -> FamilyHints | None:
    """The family head: the configured file, else the shipped one if there is one, else none."""
    if cfg.family_model is False:
        return None
    path = cfg.family_model if isinstance(cfg.family_model, Path) else shipped("family.tflite")
    return FamilyHints(load_model(path)) if path is not None else None


def build_pipeline(
    cfg: Config,
    model: TFLiteScorer,
    log: QueryLog,
    cache: VerdictCache | None = None,
    metrics: Metrics | None = None,
    hints: FamilyHints | None = None,
    answers: AnswerCache | None = None,
    forwarder: UpstreamForwarder | None = None,
    watch: WatchState | None = None,
    hook: AlertHook | None = None,
    stderr: TextIO | None = None,
) -> Pipeline:
    """The chain for `cfg`. A reload passes the old verdict cache on: scores do not depend on the
    policy, so a new policy need not re-score every popular name (and the answer cache and upstream
    sockets, when the upstreams did not change)."""
    groups = groups_for(cfg, model.metadata.thresholds)
    cache = cache if cache is not None else VerdictCache(cfg.cache.size, cfg.cache.ttl)
    access, limit = cfg.access, cfg.rate_limit
    gates: list[Gate] = [AclGate(ClientAcl(access.allow_clients), Refusal(drop=access.refused == "drop"))]
    if limit.qps > 0:
        gates.append(RateLimitGate(TokenBuckets(limit.qps, limit.burst), Refusal(drop=limit.over_limit == "drop")))
    steps: list[Step | Check] = [QueryLogStep(log)] if log.enabled else []
    if metrics is not None:
        steps.append(MetricsStep(metrics))
    steps += decision_steps(cfg, model, groups, cache)
    watch = watch_state_for(cfg, model.metadata.thresholds, watch)
    if watch is not None:  # after the verdict, before the block step and the answer cache: sees every answer
        hook = hook or (AlertHook(cfg.client_watch.on_flag, stderr) if cfg.client_watch.on_flag.enabled else None)
        watch_log = log if log.enabled else None
        steps.append(ClientWatchStep(cfg.client_watch, watch, watch_log, metrics, hints, hook, stderr))
    if hints is not None and cfg.scoring and log.enabled:  # a hint is only ever read in the log
        steps.append(FamilyHintStep(hints))
    steps.append(BlockStep(cfg.sinkhole))
    answers = answers if answers is not None else AnswerCache(cfg.answer_cache)
    steps.append(AnswerCacheStep(answers))
    forwarder = forwarder or UpstreamForwarder(cfg.upstreams, cfg.upstream_timeout)
    upstream = UpstreamStep(forwarder)
    return Pipeline(link(steps, upstream), log, groups, cache, tuple(gates), answers, forwarder, watch, hook)


def watch_state_for(cfg: Config, named: dict[str, float], old: WatchState | None) -> WatchState | None:
    """The client watch's state: the old one when reloading (flags and evidence survive a reload),
    with the new rule; None when the watch is off. The model's log threshold is what makes a name
    "suspicious" to the rule unless the policy sets its own."""
    watch_cfg = cfg.client_watch
    if not watch_cfg.enabled:
        return None
    rule = watch_cfg.rule
    if rule.suspicious_score is None and "log" in named:
        rule = replace(rule, suspicious_score=named["log"])
    if old is None:
        return WatchState(rule, watch_cfg.limits, PopularNames.bundled())
    old.rule, old.limits = rule, watch_cfg.limits
    return old


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
