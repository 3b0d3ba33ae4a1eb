"""The Prometheus endpoint, scraped over HTTP and parsed with prometheus-client's own parser."""

from __future__ import annotations

import socket
import urllib.request
from dataclasses import replace
from pathlib import Path

import dns.message
import dns.query
from dnsfixtures import Upstream, run_resolver, run_upstream
from prometheus_client.parser import text_string_to_metric_families

from resolverguard.config import Config, Endpoint, ListsConfig


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_endpoint_counts_actions_cache_and_timings(tmp_path: Path) -> None:
    port = free_tcp_port()
    with run_upstream(Upstream()) as up:
        cfg = replace(
            Config(upstreams=(Endpoint("127.0.0.1", up.port),)),
            metrics=Endpoint("127.0.0.1", port),
            lists=ListsConfig(deny=("bad.example",)),
        )
        with run_resolver(cfg, tmp_path / "q.log") as r:
            for name in ("a.example.com", "b.example.com", "xkq3vbh7tz.com", "bad.example"):
                dns.query.udp(dns.message.make_query(name, "A"), r.host, port=r.port, timeout=3)
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("resolverguard_queries_total", (("action", "pass"), ("reason", "model")))] == 1
    assert samples[("resolverguard_queries_total", (("action", "pass"), ("reason", "cache")))] == 1
    assert samples[("resolverguard_queries_total", (("action", "sinkhole"), ("reason", "model")))] == 1
    assert samples[("resolverguard_queries_total", (("action", "sinkhole"), ("reason", "deny list")))] == 1
    assert samples[("resolverguard_verdict_cache_lookups_total", (("result", "hit"),))] == 1
    assert samples[("resolverguard_verdict_cache_lookups_total", (("result", "miss"),))] == 2
    assert samples[("resolverguard_score_count", ())] == 2
    assert samples[("resolverguard_model_inference_seconds_count", ())] == 2
    assert samples[("resolverguard_upstream_seconds_count", ())] == 2
    assert samples[("resolverguard_query_seconds_count", ())] == 4


def test_failures_are_counted_by_kind(tmp_path: Path) -> None:
    """A model error and an upstream error are told apart by their own fields, not by parsing text."""

    class Broken:
        def score(self, texts):
            raise RuntimeError("interpreter exploded")

    port = free_tcp_port()
    with run_upstream(Upstream(silent=True)) as up:
        cfg = replace(
            Config(upstreams=(Endpoint("127.0.0.1", up.port),), upstream_timeout=0.2),
            metrics=Endpoint("127.0.0.1", port),
        )
        with run_resolver(cfg, tmp_path / "q.log", scorer=Broken()) as r:
            for name in ("xkq3vbh7tz.com", "printer.lan"):  # scored (model error + upstream error), not scored
                dns.query.udp(dns.message.make_query(name, "A"), r.host, port=r.port, timeout=3)
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples["resolverguard_model_errors_total"] == 1
    assert samples["resolverguard_upstream_errors_total"] == 2


def test_metrics_config(tmp_path: Path) -> None:
    from resolverguard.config import load_config

    path = tmp_path / "p.yaml"
    path.write_text("metrics:\n  listen: 127.0.0.1:9999\n")
    assert load_config(path).metrics == Endpoint("127.0.0.1", 9999)
    path.write_text("upstreams: [127.0.0.1]\n")
    assert load_config(path).metrics is None
