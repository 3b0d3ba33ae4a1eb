"""List subscriptions: block and allow lists by URL, downloaded and kept on disk.

Pi-hole adlists, AdGuard filters and Blocky `lists:` are URLs; a resolver that restarts without
network must still block what it blocked before, so every download lands in a cache directory and
the lists are always read from there (`cached_path`). A download replaces the cached copy only when
it looks like a list: not empty, not an HTML page (a captive portal or an error page), not ten
times smaller than the copy it would replace (a truncated or emptied list); otherwise the last
good copy stays and the reason is reported. Conditional requests (ETag / Last-Modified) make an
unchanged list cost one round trip; every download is bounded in size and time.

The HTTP client is urllib3 (well kept, already what requests is built on); this module runs in a
worker thread or in the `resolverguard lists update` command, never on the event loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

from resolverguard.lists import ListFormat, ParseReport, iter_list

CHUNK = 64 * 1024
SHRINK_LIMIT = 10  # a new copy more than this many times smaller than the old one is refused


@dataclass(frozen=True)
class FetchResult:
    url: str
    status: str  # "updated", "not modified", "kept" (a suspicious download was refused), "failed"
    detail: str = ""
    entries: int | None = None

    @property
    def changed(self) -> bool:
        return self.status == "updated"

    def __str__(self) -> str:
        text = f"{self.url}: {self.status}"
        if self.entries is not None:
            text += f" ({self.entries} entries)"
        return text + (f": {self.detail}" if self.detail else "")


def default_cache_dir() -> Path:
    """systemd's StateDirectory= when set, else the user's cache directory."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":", 1)[0]) / "lists"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "resolverguard" / "lists"


def cached_path(cache_dir: Path, url: str) -> Path:
    """Where the last good copy of `url` is kept (the name is a digest: any URL is a safe file name)."""
    return cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".list")


def _meta_path(body: Path) -> Path:
    return body.with_suffix(".json")


def read_meta(body: Path) -> dict[str, Any]:
    try:
        raw = json.loads(_meta_path(body).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def age(cache_dir: Path, url: str, now: Callable[[], float] = time.time) -> float | None:
    """Seconds since the cached copy of `url` was last confirmed (downloaded or 304); None if never."""
    fetched = read_meta(cached_path(cache_dir, url)).get("checked")
    return now() - float(fetched) if isinstance(fetched, int | float) else None


def ages(cache_dir: Path, urls: Iterable[str]) -> dict[str, float]:
    return {u: a for u in urls if (a := age(cache_dir, u)) is not None}


class Downloader:
    """Fetches list URLs into `cache_dir`, bounded by `max_bytes` and `timeout` seconds each."""

    def __init__(
        self,
        cache_dir: Path,
        max_bytes: int,
        timeout: float,
        pool: urllib3.PoolManager | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache_dir, self.max_bytes, self.timeout, self.clock = cache_dir, max_bytes, timeout, clock
        self.pool = pool or urllib3.PoolManager(
            retries=urllib3.Retry(total=2, redirect=5, backoff_factor=0.5, status_forcelist=(502, 503, 504)),
            headers={"User-Agent": "resolverguard (list subscription)"},
        )

    def fetch(self, url: str, fmt: ListFormat = ListFormat.AUTO) -> FetchResult:
        """Downloads `url` if it changed; the cached copy is replaced only by a plausible list."""
        body = cached_path(self.cache_dir, url)
        meta = read_meta(body) if body.exists() else {}
        headers = {}
        if meta.get("etag"):
            headers["If-None-Match"] = str(meta["etag"])
        if meta.get("last_modified"):
            headers["If-Modified-Since"] = str(meta["last_modified"])
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            response = self.pool.request(
                "GET",
                url,
                headers=headers,
                preload_content=False,
                timeout=urllib3.Timeout(connect=min(10.0, self.timeout), read=self.timeout),
            )
        except (urllib3.exceptions.HTTPError, OSError) as err:
            return FetchResult(url, "failed", _why(err))
        try:
            return self._receive(url, fmt, response, body, meta)
        finally:
            response.release_conn()

    def _receive(self, url: str, fmt: ListFormat, response: Any, body: Path, meta: dict[str, Any]) -> FetchResult:
        if response.status == 304 and body.exists():
            self._write_meta(body, {**meta, "checked": self.clock()})
            return FetchResult(url, "not modified", entries=meta.get("entries"))
        if response.status != 200:
            return FetchResult(url, "failed", f"HTTP {response.status}")
        partial = body.with_suffix(f".part{os.getpid()}")  # workers of one server may fetch at once
        started, size = time.monotonic(), 0
        try:
            with partial.open("wb") as out:
                for chunk in response.stream(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        return FetchResult(url, "failed", f"larger than {self.max_bytes // 2**20} MB")
                    if time.monotonic() - started > self.timeout:
                        return FetchResult(url, "failed", f"took longer than {self.timeout:g} s")
                    out.write(chunk)
            problem = suspicious(partial, size, body, response.headers.get("Content-Type", ""), fmt)
            if problem is not None:
                return FetchResult(url, "kept", problem)
            report = ParseReport()
            for _ in iter_list(partial, report, fmt):
                pass
            if report.entries == 0:
                return FetchResult(url, "kept", "no usable entries in the download")
            os.replace(partial, body)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            return FetchResult(url, "failed", _why(err))
        finally:
            partial.unlink(missing_ok=True)
        self._write_meta(
            body,
            {
                "url": url,
                "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
                "checked": self.clock(),
                "bytes": size,
                "entries": report.entries,
            },
        )
        return FetchResult(url, "updated", entries=report.entries)

    def _write_meta(self, body: Path, meta: dict[str, Any]) -> None:
        temp = _meta_path(body).with_suffix(f".json.part{os.getpid()}")
        temp.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(temp, _meta_path(body))

    def fetch_all(self, urls: Iterable[tuple[str, ListFormat]]) -> list[FetchResult]:
        return [self.fetch(url, fmt) for url, fmt in dict.fromkeys(urls)]

    def close(self) -> None:
        self.pool.clear()


def read_copy(cache_dir: Path, url: str) -> tuple[bytes, dict[str, Any]] | None:
    """The cached copy of `url` and its metadata (what resolverguard.sync shares with other
    instances), or None when there is none."""
    body = cached_path(cache_dir, url)
    try:
        return body.read_bytes(), read_meta(body)
    except OSError:
        return None


def store_copy(cache_dir: Path, url: str, data: bytes, meta: dict[str, Any]) -> None:
    """Puts a copy another instance downloaded in place of ours (body then metadata, each
    replaced atomically, as a download does)."""
    body = cached_path(cache_dir, url)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = body.with_suffix(f".shared{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, body)
    temp = _meta_path(body).with_suffix(f".json.shared{os.getpid()}")
    temp.write_text(json.dumps(meta), encoding="utf-8")
    os.replace(temp, _meta_path(body))


def suspicious(new: Path, size: int, old: Path, content_type: str, fmt: ListFormat) -> str | None:
    """Why a downloaded copy must not replace the cached one, or None when it looks like a list."""
    if size == 0:
        return "empty download"
    with new.open("rb") as handle:
        head = handle.read(512).lstrip().lower()
    if "html" in content_type.lower() or head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")):
        return "an HTML page, not a list (captive portal or error page?)"
    if old.exists():
        previous = old.stat().st_size
        if previous > 0 and size * SHRINK_LIMIT < previous:
            return f"{size} bytes, over {SHRINK_LIMIT}x smaller than the last good copy ({previous} bytes)"
    return None


def _why(err: BaseException) -> str:
    reason = getattr(err, "reason", None)
    return f"{type(err).__name__}: {reason or err}"
