"""The HTTP API's guard over a real server: authentication, CSRF, input validation, the login
rate limit, and actions that change what the resolver answers (checked with dnspython)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest
from dashfixtures import PASSWORD, PASSWORD_HASH, Served, serve_dashboard
from dnsfixtures import UPSTREAM_A, eventually

from resolverguard.config import host_gateway_name, load_config
from resolverguard.errors import ConfigError
from resolverguard.web.auth import LoginLimiter, PasswordHash


def answer(s: Served, name: str) -> str:
    reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=s.dns_port, timeout=5)
    return reply.answer[0][0].to_text()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_dashboard(tmp_path_factory.mktemp("dash")) as s:
        yield s


def test_no_credentials_is_401_and_health_is_open(served: Served) -> None:
    anonymous = served.client()
    for path in ("/api/v1/status", "/api/v1/queries", "/api/v1/stats", "/api/v1/explain?name=example.com"):
        reply = anonymous.get(path)
        assert reply.status == 401, path
        assert "error" in reply.json()
    assert anonymous.post_json("/api/v1/pause", {"minutes": 5}).status == 401
    assert anonymous.get("/api/v1/health").json() == {"status": "ok"}
    page = anonymous.get("/")
    assert page.status == 303 and page.headers["Location"].startswith("/login")


def test_login_goes_back_to_the_page_asked_for_and_never_elsewhere(served: Served) -> None:
    for target, landing in (("/clients", "/clients"), ("//evil.example/x", "/"), ("https://evil.example/", "/")):
        browser = served.client()
        reply = browser.form("/login", {"password": PASSWORD, "next": target})
        assert reply.status == 303 and reply.headers["Location"] == landing, target
    asked = served.client().get("/queries", since="1h", client="10.0.0.1")
    where = urllib.parse.urlsplit(asked.headers["Location"])
    assert asked.status == 303 and where.path == "/login"
    assert urllib.parse.parse_qs(where.query) == {"next": ["/queries?since=1h&client=10.0.0.1"]}


def test_bearer_token_and_a_wrong_one(served: Served) -> None:
    script = served.client()
    assert script.open("/api/v1/status", headers={"Authorization": "Bearer not-it"}).status == 401
    reply = script.open("/api/v1/status", headers={"Authorization": f"Bearer {PASSWORD}"})
    assert reply.status == 200 and reply.json()["blocking"] is True
    assert "Content-Security-Policy" in reply.headers and reply.headers["Cache-Control"] == "no-store"


def test_session_actions_need_the_csrf_token(served: Served) -> None:
    browser = served.client()
    assert browser.login().status == 303
    assert browser.get("/api/v1/status").status == 200  # reads need only the cookie
    assert browser.post_json("/api/v1/pause", {"minutes": 5}).status == 403
    assert browser.post_json("/api/v1/pause", {"minutes": 5}, csrf="forged" + browser.csrf[6:]).status == 403
    assert browser.form("/action/pause", {"minutes": 5, "back": "/"}).status == 403  # the form without its token
    assert browser.get("/api/v1/status").json()["blocking"] is True  # none of them paused
    other = served.client()
    other.login()
    assert browser.post_json("/api/v1/resume", {}, csrf=other.csrf).status == 403  # another session's token
    assert browser.post_json("/api/v1/resume", {}, csrf=browser.csrf).status == 200
    logged_out = browser.form("/logout", {}, csrf=browser.csrf)
    assert logged_out.status == 303
    assert browser.get("/api/v1/status").status == 401


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/explain?name=bad..name", "name"),
        ("/api/v1/explain?name=x'%3B%20DROP%20TABLE%20queries%3B--", "name"),
        ("/api/v1/explain?name=" + "a" * 64 + ".com", "name"),
        ("/api/v1/explain?name=example.com&client=1.2.3.4'%20OR%201=1", "client"),
        ("/api/v1/queries?since=0", "since"),  # 56 years: a huge range
        ("/api/v1/queries?since=40d", "since"),
        ("/api/v1/queries?since=yesterday", "since"),
        ("/api/v1/queries?limit=100000", "limit"),
        ("/api/v1/queries?limit=-1", "limit"),
        ("/api/v1/queries?action=sinkhole'--", "action"),
        ("/api/v1/queries?name=%25", "name"),
        ("/api/v1/stats?buckets=1e9", "buckets"),
        ("/api/v1/top/names?until=99999999999", "until"),
    ],
)
def test_bad_input_is_400_naming_the_field(served: Served, path: str, field: str) -> None:
    reply = served.client().open(path, headers={"Authorization": f"Bearer {PASSWORD}"})
    assert reply.status == 400, (path, reply.body)
    assert reply.json()["field"] == field


def test_explain_answers_from_the_running_policy(served: Served) -> None:
    script = served.client()
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    denied = script.open("/api/v1/explain?name=www.blocked.example", headers=auth).json()
    assert (denied["action"], denied["reason"]) == ("sinkhole", "deny list")
    scored = script.open("/api/v1/explain?name=xkq3vbh7tz.com", headers=auth).json()
    assert scored["action"] == "sinkhole" and scored["reason"] == "model" and scored["score"] > 0.5
    assert {t["action"] for t in scored["thresholds"]} >= {"sinkhole"}


def test_allow_and_deny_write_the_list_file_and_take_effect(served: Served) -> None:
    script = served.client()
    token = PASSWORD
    bad = ["evil.com\n0.0.0.0 other.com", "||ads.example^", "*.example.com", "http://x.com/", "", "com"]
    for name in bad:
        reply = script.post_json("/api/v1/allow", {"name": name}, token=token)
        assert reply.status == 400, name
    assert "evil" not in served.allow_file.read_text()
    assert answer(served, "xkq3vbh7tz.com") == "0.0.0.0"
    reply = script.post_json("/api/v1/allow", {"name": "xkq3vbh7tz.com"}, token=token)
    assert reply.status == 200 and reply.json()["ok"], reply.body
    assert "xkq3vbh7tz.com" in served.allow_file.read_text().splitlines()
    assert answer(served, "xkq3vbh7tz.com") == UPSTREAM_A
    again = script.post_json("/api/v1/allow", {"name": "XKQ3VBH7TZ.com."}, token=token)
    assert again.json()["message"].endswith("was already in " + str(served.allow_file))
    assert served.allow_file.read_text().count("xkq3vbh7tz.com") == 1
    assert answer(served, "wikipedia.org") == UPSTREAM_A
    assert script.post_json("/api/v1/deny", {"name": "wikipedia.org"}, token=token).status == 200
    assert answer(served, "wikipedia.org") == "0.0.0.0"


def test_pause_through_the_api_lets_blocked_names_pass_until_resumed(served: Served) -> None:
    script = served.client()
    assert answer(served, "blocked.example") == "0.0.0.0"
    for minutes in (0, -5, 100_000, "ten"):
        assert script.post_json("/api/v1/pause", {"minutes": minutes}, token=PASSWORD).status == 400
    reply = script.post_json("/api/v1/pause", {"minutes": 5}, token=PASSWORD)
    assert reply.status == 200 and reply.json()["message"] == "ok: blocking paused for 300 s"
    assert answer(served, "blocked.example") == UPSTREAM_A
    status = script.open("/api/v1/status", headers={"Authorization": f"Bearer {PASSWORD}"}).json()
    assert status["blocking"] is False and 280 < status["paused_seconds_left"] <= 300
    assert script.post_json("/api/v1/resume", {}, token=PASSWORD).status == 200
    assert answer(served, "blocked.example") == "0.0.0.0"


def test_login_is_rate_limited_per_client(tmp_path: Path) -> None:
    extra = "  login_attempts: 3\n  login_window: 60\n"
    with serve_dashboard(tmp_path, extra) as s:
        guesser = s.client()
        for guess in ("a", "b", "c"):
            assert guesser.login(guess).status == 401
        limited = guesser.login(PASSWORD)  # even the right password: the hash is not even tried
        assert limited.status == 429 and int(limited.headers["Retry-After"]) > 50
        bearer = guesser.open("/api/v1/status", headers={"Authorization": f"Bearer {PASSWORD}"})
        assert bearer.status == 401  # the API is not a way around the limit


def test_limiter_forgets_failures_after_the_window() -> None:
    now = [1000.0]
    limiter = LoginLimiter(2, 60, clock=lambda: now[0])
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 60 and limiter.retry_after("10.0.0.2") == 0
    now[0] += 61
    assert limiter.retry_after("10.0.0.1") == 0


def test_password_hash_round_trip_and_bad_values() -> None:
    made = PasswordHash.parse(PASSWORD_HASH)
    assert made.matches(PASSWORD) and not made.matches(PASSWORD + "x")
    for bad in ("", "plain-password", "scrypt$3$8$1$AAAA$AAAA", "pbkdf2$1$2$3$4$5", "scrypt$16384$8$1$!!$??"):
        with pytest.raises(ValueError):
            PasswordHash.parse(bad)


def test_config_refuses_a_public_address_without_a_password(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("mode: enforce\ndashboard:\n  enabled: true\n  listen: 0.0.0.0:8053\n")
    with pytest.raises(ConfigError) as err:
        load_config(policy)
    assert err.value.location().startswith(f"{policy}:4: dashboard.listen: 0.0.0.0:8053 is not a loopback address")
    policy.write_text("dashboard:\n  enabled: true\n")
    with pytest.raises(ConfigError) as err:
        load_config(policy)
    assert err.value.key == "dashboard.password_hash" and err.value.line == 2
    policy.write_text("dashboard:\n  enabled: true\n  password_hash: hunter2\n")
    with pytest.raises(ConfigError) as err:
        load_config(policy)
    assert err.value.line == 3 and "dashboard-password" in err.value.problem
    policy.write_text(f"dashboard:\n  enabled: true\n  listen: '[::]:9000'\n  password_hash: '{PASSWORD_HASH}'\n")
    assert load_config(policy).dashboard.listen.port == 9000  # public, but with a password: allowed


def test_reload_through_the_api_and_a_broken_policy_kept_out(served: Served) -> None:
    script = served.client()
    reply = script.post_json("/api/v1/reload", {}, token=PASSWORD)
    assert reply.status == 200 and reply.json()["ok"]
    good = served.policy.read_text()
    try:
        served.policy.write_text(good + "sinkhol: {}\n")
        rejected = script.post_json("/api/v1/reload", {}, token=PASSWORD)
        assert rejected.status == 409 and not rejected.json()["ok"]
        assert answer(served, "blocked.example") == "0.0.0.0"  # the old policy stays in force
    finally:
        served.policy.write_text(good)


def test_reads_answer_from_the_store_the_resolver_fills(tmp_path: Path) -> None:
    with serve_dashboard(tmp_path, f"query_store: {tmp_path / 'store.sqlite'}\n") as s:
        for name in ("www.blocked.example", "blocked.example", "wikipedia.org", "xkq3vbh7tz.com"):
            answer(s, name)
        script = s.client()
        auth = {"Authorization": f"Bearer {PASSWORD}"}

        def stats() -> dict[str, object]:
            return dict(script.open("/api/v1/stats?since=1h&buckets=4", headers=auth).json())

        view = eventually(stats, 15, lambda view: view["total"] == 4, 0.2)  # the writer batches (~0.5 s)
        assert view["total"] == 4 and view["by_action"] == {"sinkhole": 3, "pass": 1} and view["clients"] == 1
        assert len(view["series"]) == 4 and sum(b["blocked"] for b in view["series"]) == 3  # type: ignore[attr-defined]
        under = script.open("/api/v1/queries?name=blocked.example", headers=auth).json()
        assert sorted(q["qname"] for q in under) == ["blocked.example", "www.blocked.example"]
        assert all(q["reason"] == "deny list" and q["client"] == "127.0.0.1" for q in under)
        model = script.open("/api/v1/queries?reason=model&action=sinkhole", headers=auth).json()
        assert [q["qname"] for q in model] == ["xkq3vbh7tz.com"] and model[0]["score"] > 0.9
        page = script.open("/api/v1/queries?limit=2", headers=auth).json()
        older = script.open(f"/api/v1/queries?limit=2&before_id={page[-1]['id']}", headers=auth).json()
        assert len(page) == len(older) == 2 and {q["id"] for q in page}.isdisjoint(q["id"] for q in older)
        top = script.open("/api/v1/top/names?since=1h", headers=auth).json()
        assert sorted((t["name"], t["queries"]) for t in top) == [
            ("blocked.example", 1),
            ("www.blocked.example", 1),
            ("xkq3vbh7tz.com", 1),
        ]
        clients = script.open("/api/v1/top/clients?action=any", headers=auth).json()
        assert clients == [{"client": "127.0.0.1", "queries": 4}]
        assert script.open("/api/v1/clients/flagged", headers=auth).json() == []
        none = script.open("/api/v1/queries?client=10.9.9.9", headers=auth).json()
        assert none == []
        # One gateway (named after the host by default): its name on every row, no gateway column.
        assert {q["gateway"] for q in page} == {host_gateway_name()}
        (one,) = script.open("/api/v1/gateways?since=1h", headers=auth).json()
        assert (one["gateway"], one["queries"], one["blocked"]) == (host_gateway_name(), 4, 3)
        assert script.login().status == 303 and "<th>gateway</th>" not in script.get("/queries").body
        assert "<h2>Gateways</h2>" not in script.get("/").body  # one gateway: no fleet table


def test_a_new_password_by_reload_ends_sessions_and_old_tokens(tmp_path: Path) -> None:
    with serve_dashboard(tmp_path) as s:
        browser, script = s.client(), s.client()
        browser.login()
        old = {"Authorization": f"Bearer {PASSWORD}"}
        assert script.open("/api/v1/status", headers=old).status == 200
        new_password = "a different passphrase"
        text = s.policy.read_text().replace(PASSWORD_HASH, PasswordHash.make(new_password).text)
        s.policy.write_text(text)
        assert script.post_json("/api/v1/reload", {}, token=PASSWORD).status == 200
        assert browser.get("/api/v1/status").status == 401
        assert script.open("/api/v1/status", headers=old).status == 401
        assert script.open("/api/v1/status", headers={"Authorization": f"Bearer {new_password}"}).status == 200


def test_without_a_store_reads_are_503_and_pages_say_what_to_set(served: Served) -> None:
    script, browser = served.client(), served.client()
    reply = script.open("/api/v1/stats", headers={"Authorization": f"Bearer {PASSWORD}"})
    assert reply.status == 503 and "query_store" in reply.json()["error"]
    browser.login()
    for path in ("/", "/queries", "/clients", "/name/example.com"):
        page = browser.get(path)
        assert page.status == 200 and "No query store" in page.body, path
    assert "Lists and model" in browser.get("/lists").body
    assert browser.get("/static/style.css").status == 200
    bad = browser.get("/name/not_a..name")
    assert bad.status == 400 and "not a domain name" in bad.body


def test_reloads_through_the_api_do_not_grow_memory(tmp_path: Path) -> None:
    """As tests/test_adversarial.py holds SIGHUP to it: a reload unfreezes what start froze."""
    with serve_dashboard(tmp_path) as s:
        script = s.client()

        def reloads(n: int) -> None:
            for _ in range(n):
                assert script.post_json("/api/v1/reload", {}, token=PASSWORD).json()["ok"]

        reloads(10)  # allocator arenas and caches warm up first
        before = rss_kb(s.proc.pid)
        reloads(100)
        grown_mb = (rss_kb(s.proc.pid) - before) / 1024
    assert grown_mb < 5, f"{grown_mb:.1f} MB after 100 reloads"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
