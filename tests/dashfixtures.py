"""A real `resolverguard serve` process with the dashboard on, and a small HTTP client for it.

The client is urllib with a cookie jar: it logs in through the login form as a browser does, reads
the CSRF token from the page's <meta name="csrf">, and sends what a test gives it, so the tests
drive the same requests a browser or a script would.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnsfixtures import DIGITS_MODEL, ROOT, Upstream, free_port, run_upstream, wait_for

from resolverguard.web.auth import PasswordHash

PASSWORD = "correct horse battery"
PASSWORD_HASH = PasswordHash.make(PASSWORD, salt=b"tests-fixed-salt").text


@dataclass
class Reply:
    status: int
    body: str
    headers: Mapping[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a test sees each 303 itself
        return None


@dataclass
class Http:
    """One browser-like client of the dashboard (its own cookies)."""

    base: str
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)
    csrf: str = ""

    def open(self, path: str, data: bytes | None = None, headers: Mapping[str, str] | None = None) -> Reply:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())
        request = urllib.request.Request(self.base + path, data=data, headers=dict(headers or {}))
        try:
            with opener.open(request, timeout=30) as response:
                return Reply(response.status, response.read().decode(), dict(response.headers))
        except urllib.error.HTTPError as err:
            return Reply(err.code, err.read().decode(), dict(err.headers))

    def get(self, path: str, **params: str) -> Reply:
        return self.open(path + ("?" + urllib.parse.urlencode(params) if params else ""))

    def form(self, path: str, fields: Mapping[str, object], csrf: str | None = None) -> Reply:
        data = {**{k: str(v) for k, v in fields.items()}, **({"csrf": csrf} if csrf is not None else {})}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self.open(path, urllib.parse.urlencode(data).encode(), headers)

    def post_json(self, path: str, body: object, csrf: str | None = None, token: str | None = None) -> Reply:
        headers = {"Content-Type": "application/json"}
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.open(path, json.dumps(body).encode(), headers)

    def login(self, password: str = PASSWORD) -> Reply:
        reply = self.form("/login", {"password": password, "next": "/lists"})
        if reply.status == 303:
            page = self.get("/lists")
            found = re.search(r'<meta name="csrf" content="([^"]+)"', page.body)
            assert found, page.body[:500]
            self.csrf = found.group(1)
        return reply


@dataclass
class Served:
    proc: subprocess.Popen[str]
    dns_port: int
    web: str
    policy: Path
    allow_file: Path
    deny_file: Path
    log: Path
    upstream: Upstream

    def client(self) -> Http:
        return Http(self.web)


def policy_text(tmp: Path, up: Upstream, web_port: int, extra: str = "") -> str:
    return (
        f"upstreams: ['127.0.0.1:{up.port}']\n"
        f"control_socket: {tmp / 'run' / 'control.sock'}\n"
        f"query_log: {tmp / 'q.jsonl'}\n"
        "answer_cache: {size: 0}\n"
        "lists:\n"
        f"  allow_files: [{tmp / 'allow.txt'}]\n"
        f"  deny_files: [{tmp / 'deny.txt'}]\n"
        "dashboard:\n"
        "  enabled: true\n"
        f"  listen: 127.0.0.1:{web_port}\n"
        f"  password_hash: '{PASSWORD_HASH}'\n"
        f"{extra}"
    )


@contextlib.contextmanager
def serve_dashboard(tmp: Path, extra: str = "", upstream: Upstream | None = None) -> Iterator[Served]:
    """A resolver process with the dashboard on; `extra`: more policy lines (e.g. query_store)."""
    with run_upstream(upstream or Upstream()) as up:
        allow, deny = tmp / "allow.txt", tmp / "deny.txt"
        allow.write_text("# allowed\n")
        deny.write_text("blocked.example\n")
        web_port, dns_port = free_port(), free_port()
        policy = tmp / "policy.yaml"
        policy.write_text(policy_text(tmp, up, web_port, extra))
        cmd = [sys.executable, "-m", "resolverguard", "serve", "--config", str(policy)]
        cmd += ["--listen", f"127.0.0.1:{dns_port}", "--model", str(DIGITS_MODEL)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(proc, "listening on", lines=40)
            yield Served(proc, dns_port, f"http://127.0.0.1:{web_port}", policy, allow, deny, tmp / "q.jsonl", up)
        finally:
            proc.terminate()
            proc.wait(15)
