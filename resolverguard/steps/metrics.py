"""Prometheus metrics: what the resolver decided and how long it took, for dashboards and alerts.

Opt-in (`metrics: {listen: 127.0.0.1:9153}`), on its own registry (no process-global state), served
by prometheus-client's HTTP server on localhost by default. The step sits just inside the query
log, so it sees each query's final verdict, score, upstream rcode and timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from resolverguard.chain import Next, Reply, Request

SCORE_BUCKETS = (0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 1.0)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INFERENCE_BUCKETS = (0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.005)


class LogState(Protocol):
    """What the metrics read of the query log (resolverguard.steps.querylog.QueryLog)."""

    @property
    def lost(self) -> int: ...

    @property
    def backlog(self) -> int: ...


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.queries = Counter(
            "resolverguard_queries", "Queries answered, by action and reason", ["action", "reason"], registry=r
        )
        self.cache_lookups = Counter(
            "resolverguard_verdict_cache_lookups",
            "Scored names looked up in the verdict cache, by result",
            ["result"],
            registry=r,
        )
        self.score = Histogram(
            "resolverguard_score", "Model scores of names scored by the model", buckets=SCORE_BUCKETS, registry=r
        )
        self.inference = Histogram(
            "resolverguard_model_inference_seconds",
            "Time in the model per scored name",
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.upstream = Histogram(
            "resolverguard_upstream_seconds", "Time waiting for upstream answers", buckets=LATENCY_BUCKETS, registry=r
        )
        self.upstream_errors = Counter("resolverguard_upstream_errors", "Queries no upstream answered", registry=r)
        self.model_errors = Counter("resolverguard_model_errors", "Queries whose scoring failed", registry=r)
        self.watch_flags = Counter("resolverguard_clients_flagged", "Clients flagged by the client watch", registry=r)
        self.watch_c2 = Counter(
            "resolverguard_likely_c2", "Names recorded as likely C2 by the client watch (blocked for all)", registry=r
        )
        self.latency = Histogram(
            "resolverguard_query_seconds", "Time from arrival to answer", buckets=LATENCY_BUCKETS, registry=r
        )

    def watch_log(self, log_of: Callable[[], LogState]) -> None:
        """Gauges of the query log read when scraped (`log_of`: a reload may swap the log), so that a
        log line dropped is never silent (issue #17: the writer at a low priority falls behind in a
        burst; past `query_log.backlog_mb` lines are dropped rather than answers held)."""
        r = self.registry
        Gauge(
            "resolverguard_query_log_lost_lines",
            "Query log lines lost by the current log (dropped while its writer was behind or gone, or not written)",
            registry=r,
        ).set_function(lambda: log_of().lost)
        Gauge(
            "resolverguard_query_log_backlog_bytes",
            "Bytes of query log lines held for a writer process that is behind (beyond its pipe)",
            registry=r,
        ).set_function(lambda: log_of().backlog)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, host, registry=self.registry)

    def observe(self, request: Request, seconds: float) -> None:
        verdict = request.verdict
        self.queries.labels(
            verdict.action.value if verdict else "servfail", verdict.reason.value if verdict else "error"
        ).inc()
        self.latency.observe(seconds)
        if request.score is not None:
            self.cache_lookups.labels("hit" if request.score_cached else "miss").inc()
            if not request.score_cached:
                self.score.observe(request.score)
        if request.inference_seconds is not None:
            self.inference.observe(request.inference_seconds)
        if request.upstream_seconds is not None:
            self.upstream.observe(request.upstream_seconds)
        if request.upstream_error is not None:
            self.upstream_errors.inc()
        if request.model_error is not None:
            self.model_errors.inc()


class MetricsStep:
    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics, self._clock = metrics, clock

    async def __call__(self, request: Request, next_step: Next) -> Reply:
        try:
            return await next_step(request)
        finally:
            self._metrics.observe(request, self._clock() - request.started)
