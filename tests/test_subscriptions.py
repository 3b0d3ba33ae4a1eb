"""List subscriptions over real HTTP: a stdlib http.server on 127.0.0.1 serves the lists, with
ETag/Last-Modified, errors, HTML pages, slow and huge answers; resolverguard downloads with urllib3."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dns.message
import dns.query
import pytest
from dnsfixtures import UPSTREAM_A, Upstream, eventually, run_resolver, run_upstream
from listserver import ListServer, Served, serve_lists

from resolverguard.config import Config, Endpoint, ListsConfig, ListSource, SubscriptionsConfig, load_config
from resolverguard.lists import ListFormat
from resolverguard.pipeline import lists_for
from resolverguard.subscriptions import Downloader, age, cached_path

LISTS = Path(__file__).resolve().parent / "data" / "lists"


@pytest.fixture
def lists_http() -> Iterator[ListServer]:
    with serve_lists() as server:
        yield server


def downloader(tmp_path: Path, max_bytes: int = 2**20, timeout: float = 5.0) -> Downloader:
    return Downloader(tmp_path / "cache", max_bytes, timeout)


ADGUARD = (LISTS / "adguard.txt").read_bytes()


def test_download_then_conditional_request_then_not_modified(tmp_path: Path, lists_http: ListServer) -> None:
    lists_http.files["/filter.txt"] = Served(ADGUARD, etag='"v1"')
    fetch = downloader(tmp_path)
    url = lists_http.url("/filter.txt")
    first = fetch.fetch(url, ListFormat.ADBLOCK)
    assert first.status == "updated" and first.entries == 9
    assert cached_path(tmp_path / "cache", url).read_bytes() == ADGUARD
    second = fetch.fetch(url, ListFormat.ADBLOCK)
    assert second.status == "not modified"
    assert lists_http.requests[-1][1].get("If-None-Match") == '"v1"'
    assert age(tmp_path / "cache", url) is not None and age(tmp_path / "cache", url) < 60  # type: ignore[operator]


@pytest.mark.parametrize(
    ("served", "reason"),
    [
        (Served(b""), "empty download"),
        (Served(b"<!DOCTYPE html><html><body>Login to the hotel Wi-Fi</body></html>", "text/html"), "HTML page"),
        (Served(b"<html><body>captive</body></html>", "text/plain"), "HTML page"),
        (Served(b"||one.example^\n"), "smaller than the last good copy"),
        (Served(b"! only comments\n##.cosmetic\n" * 100), "no usable entries"),
    ],
)
def test_a_suspicious_download_never_replaces_the_good_copy(
    tmp_path: Path, lists_http: ListServer, served: Served, reason: str
) -> None:
    url = lists_http.url("/filter.txt")
    lists_http.files["/filter.txt"] = Served(ADGUARD)
    fetch = downloader(tmp_path)
    assert fetch.fetch(url).status == "updated"
    lists_http.files["/filter.txt"] = served
    result = fetch.fetch(url)
    assert result.status == "kept" and reason in result.detail, result
    assert cached_path(tmp_path / "cache", url).read_bytes() == ADGUARD


@pytest.mark.parametrize(
    ("served", "reason"),
    [
        (Served(b"x", status=500), "HTTP 500"),
        (Served(b"||a.example^\n" * 20000), "larger than"),
        (Served(ADGUARD, delay=3.0), "Timeout"),
    ],
)
def test_failures_are_bounded_and_keep_the_copy(
    tmp_path: Path, lists_http: ListServer, served: Served, reason: str
) -> None:
    url = lists_http.url("/filter.txt")
    lists_http.files["/filter.txt"] = Served(ADGUARD)
    fetch = Downloader(tmp_path / "cache", 100_000, 1.0)
    assert fetch.fetch(url).status == "updated"
    lists_http.files["/filter.txt"] = served
    started = time.monotonic()
    result = Downloader(tmp_path / "cache", 100_000, 1.0, pool=_no_retry_pool()).fetch(url)
    assert result.status == "failed" and reason in result.detail, result
    assert time.monotonic() - started < 2.9  # the 3 s answer was abandoned at the 1 s bound
    assert cached_path(tmp_path / "cache", url).read_bytes() == ADGUARD


def _no_retry_pool():  # type: ignore[no-untyped-def]
    import urllib3

    return urllib3.PoolManager(retries=False)


def test_a_restart_without_network_serves_the_last_good_copy(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with serve_lists() as server:
        url = server.url("/hosts")
        server.files["/hosts"] = Served((LISTS / "hosts.txt").read_bytes())
        assert Downloader(cache, 2**20, 5).fetch(url, ListFormat.HOSTS).status == "updated"
    # the server is gone now: the lists are read from the cache
    source = ListSource(url=url, format=ListFormat.HOSTS)
    cfg = Config()
    group = replace(cfg.default_group(), lists=ListsConfig(deny_files=(source,)))
    lists = lists_for(group, SubscriptionsConfig(cache_dir=cache))
    assert lists.listed("telemetry.example.com") is not None and lists.denied_count == 5
    assert lists.reports[0].source == url and lists.reports[0].age is not None
    assert "downloaded" in lists.reports[0].summary()
    offline = Downloader(cache, 2**20, 1.0, pool=_no_retry_pool()).fetch(url, ListFormat.HOSTS)
    assert offline.status == "failed" and cached_path(cache, url).exists()


def test_policy_reads_urls_with_formats(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "lists:\n"
        "  deny_files:\n"
        "    - https://lists.example/hosts.txt\n"
        "    - {url: 'https://lists.example/filter.txt', format: adblock}\n"
        "    - {path: local.txt, format: regex}\n"
        "subscriptions: {refresh: 3600, max_mb: 5, cache_dir: cache}\n"
    )
    cfg = load_config(policy)
    assert cfg.lists.deny_files == (
        ListSource(url="https://lists.example/hosts.txt"),
        ListSource(url="https://lists.example/filter.txt", format=ListFormat.ADBLOCK),
        ListSource(path=tmp_path / "local.txt", format=ListFormat.REGEX),
    )
    assert cfg.subscriptions.cache_dir == tmp_path / "cache" and cfg.subscriptions.max_bytes == 5 * 2**20


def query(port: int, name: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)


def test_serving_downloads_refreshes_and_swaps_lists(tmp_path: Path, lists_http: ListServer) -> None:
    """The resolver starts with no copy, downloads the list, blocks by it (and never blocks a site
    for a cosmetic rule), then picks up a changed list on its refresh schedule."""
    lists_http.files["/filter.txt"] = Served(ADGUARD, etag='"v1"')
    source = ListSource(url=lists_http.url("/filter.txt"), format=ListFormat.ADBLOCK)
    subs = SubscriptionsConfig(cache_dir=tmp_path / "cache", refresh=1.0, timeout=5.0)
    stderr = io.StringIO()
    with run_upstream(Upstream()) as up:
        cfg = Config(
            upstreams=(Endpoint("127.0.0.1", up.port),),
            scoring=False,
            lists=ListsConfig(deny_files=(source,)),
            subscriptions=subs,
        )
        with run_resolver(cfg, tmp_path / "q.jsonl", stderr=stderr) as r:
            eventually(lambda: r.service.pipeline.groups.default.lists.denied_count, 20, step=0.05)
            assert query(r.port, "ads.example.com").answer[0].to_text().endswith("0.0.0.0")
            youtube = query(r.port, "youtube.com")
            assert youtube.answer[0].to_text().endswith(UPSTREAM_A)
            assert "youtube.com." in up.queries
            lists_http.files["/filter.txt"] = Served(ADGUARD + b"||newly-listed.example^\n", etag='"v2"')
            eventually(lambda: r.service.pipeline.groups.default.lists.denied_count >= 8, 20, step=0.05)
            assert query(r.port, "newly-listed.example").answer[0].to_text().endswith("0.0.0.0")
    log = stderr.getvalue()
    assert f"list update: {source.url}: updated (9 entries)" in log
    assert f"list update: {source.url}: updated (10 entries)" in log
    assert "8 cosmetic rule" in log and "downloaded" in log
    assert any(h.get("If-None-Match") == '"v1"' for _, h in lists_http.requests)


def test_lists_update_command(tmp_path: Path, lists_http: ListServer) -> None:
    import subprocess
    import sys

    lists_http.files["/blocky.txt"] = Served((LISTS / "blocky.txt").read_bytes())
    policy = tmp_path / "p.yaml"
    url = lists_http.url("/blocky.txt")
    policy.write_text(
        f"lists:\n  deny_files:\n    - {{url: '{url}', format: wildcard}}\n"
        f"    - {lists_http.url('/missing.txt')}\nsubscriptions: {{cache_dir: cache}}\n"
        "control_socket: off\n"  # no server: a live one on the default path would do the update instead
    )
    cmd = [sys.executable, "-m", "resolverguard", "lists", "update", "--config", str(policy)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1  # one of the two failed
    assert f"{url}: updated (3 entries)" in result.stdout and "missing.txt: failed: HTTP 404" in result.stdout
    assert cached_path(tmp_path / "cache", url).exists()
    check = subprocess.run(
        [sys.executable, "-m", "resolverguard", "check", str(policy)], capture_output=True, text=True
    )
    assert f"lists.deny_files: {url}: 3 entries, 0 lines skipped; downloaded" in check.stdout, check.stdout
    assert "missing.txt: 0 entries, 0 lines skipped; never downloaded yet" in check.stdout


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("ftp://lists.example/hosts.txt", "only http:// and https://"),
        ("{url: 'https://a.example/x', path: x.txt}", "a mapping with url or path"),
        ("{url: 'https://a.example/x', format: ublock}", "is not one of: auto, hosts"),
    ],
)
def test_list_source_errors_say_where(tmp_path: Path, entry: str, problem: str) -> None:
    from resolverguard.errors import ConfigError

    policy = tmp_path / "p.yaml"
    policy.write_text(f"lists:\n  deny_files:\n    - local.txt\n    - {entry}\n")
    with pytest.raises(ConfigError) as err:
        load_config(policy)
    assert (err.value.line, err.value.key) == (4, "lists.deny_files[1]") and problem in err.value.problem, err.value


def test_a_copy_replaced_by_another_worker_is_read_even_when_the_server_says_not_modified(
    tmp_path: Path, lists_http: ListServer
) -> None:
    """With `workers`, one worker's download makes the others' conditional requests answer 304:
    they must still read the new copy (the lists are rebuilt when the cached file changed)."""
    lists_http.files["/filter.txt"] = Served(ADGUARD, etag='"v1"')
    source = ListSource(url=lists_http.url("/filter.txt"), format=ListFormat.ADBLOCK)
    cache = tmp_path / "cache"
    with run_upstream(Upstream()) as up:
        cfg = Config(
            upstreams=(Endpoint("127.0.0.1", up.port),),
            scoring=False,
            lists=ListsConfig(deny_files=(source,)),
            subscriptions=SubscriptionsConfig(cache_dir=cache, refresh=1.0, timeout=5.0),
        )
        with run_resolver(cfg, tmp_path / "q.jsonl", stderr=io.StringIO()) as r:
            eventually(lambda: r.service.pipeline.groups.default.lists.denied_count, 20, step=0.05)
            assert r.service.pipeline.groups.default.lists.denied_count == 5
            copy = cached_path(cache, source.url)  # "another worker" stores a newer copy (same ETag meta)
            copy.write_bytes(ADGUARD + b"||from-another-worker.example^\n")
            eventually(lambda: r.service.pipeline.groups.default.lists.denied_count != 5, 20, step=0.05)
            assert query(r.port, "from-another-worker.example").answer[0].to_text().endswith("0.0.0.0")
    assert [h.get("If-None-Match") for _, h in lists_http.requests][1:2] == ['"v1"']


def test_an_update_that_cannot_read_a_list_keeps_the_lists_in_force(tmp_path: Path, lists_http: ListServer) -> None:
    import asyncio

    local = tmp_path / "local.txt"
    local.write_text("local-blocked.example\n")
    lists_http.files["/filter.txt"] = Served(ADGUARD, etag='"v1"')
    source = ListSource(url=lists_http.url("/filter.txt"), format=ListFormat.ADBLOCK)
    stderr = io.StringIO()
    with run_upstream(Upstream()) as up:
        cfg = Config(
            upstreams=(Endpoint("127.0.0.1", up.port),),
            scoring=False,
            lists=ListsConfig(deny_files=(source, ListSource(path=local))),
            subscriptions=SubscriptionsConfig(cache_dir=tmp_path / "cache", refresh=0),
        )
        with run_resolver(cfg, tmp_path / "q.jsonl", stderr=stderr) as r:
            local.unlink()  # the download changes, then reading the lists fails on the missing file
            update = asyncio.run_coroutine_threadsafe(r.service.update_lists(), r.loop).result(60)
            assert update == []
            assert query(r.port, "local-blocked.example").answer[0].to_text().endswith("0.0.0.0")
            assert "list update failed, the lists in force stay: ConfigError" in stderr.getvalue()
            local.write_text("local-blocked.example\n")
            update = asyncio.run_coroutine_threadsafe(r.service.update_lists(), r.loop).result(60)
            assert [u.status for u in update] == ["not modified"]  # downloaded by the failed attempt
            assert query(r.port, "ads.example.com").answer[0].to_text().endswith("0.0.0.0")
