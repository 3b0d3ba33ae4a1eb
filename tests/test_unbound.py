"""resolverguard as an Unbound module: Debian's Unbound started by the test on 127.0.0.1 (its own config,
port, pidfile and control socket, no root), forwarding to the test's stub upstream, with the module
asking a real `resolverguard unbound-service` process; dnspython is the client.

`.ci/run` installs unbound and python3-unbound; without them the tests that run Unbound are skipped
with that reason (the service's protocol and the module's imports are checked everywhere).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from dnsfixtures import ROOT, UPSTREAM_A, Upstream, eventually, free_port, run_upstream, wait_for
from systemdfixtures import UserManager, printed_unbound_units
from systemdfixtures import unavailable as systemd_unavailable

from resolverguard.unbound_gate import NATIVE_ENV, native_linear_type
from resolverguard.unboundconf import DIST_PACKAGES, MODULE_FILE, RELOAD_SETTLE, printed_files

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
UNBOUND_CONTROL = shutil.which("unbound-control") or "/usr/sbin/unbound-control"
needs_unbound = pytest.mark.skipif(
    not Path(UNBOUND).exists() or not Path(DIST_PACKAGES, "unboundmodule.py").exists(),
    reason="needs Debian's unbound and python3-unbound (apt-get install unbound python3-unbound; .ci/run does)",
)
DGA = "xkq3vbh7tzpq.com"  # the shipped model's sinkhole example (README)
CLEARED = "gardenshop.com"  # a name the shipped gate clears (tests/test_unbound_gate.py checks such names)


@dataclass
class Unbound:
    port: int
    conf: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def ask(self, name: str, qtype: str = "A", timeout: float = 2.0) -> dns.message.Message:
        return dns.query.udp(dns.message.make_query(name, qtype), "127.0.0.1", port=self.port, timeout=timeout)

    def control(self, *words: str) -> str:
        out = subprocess.run(
            [UNBOUND_CONTROL, "-c", str(self.conf), *words], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr + out.stdout
        return out.stdout

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def unbound_conf(work: Path, port: int, upstream: int, threads: int, extra: str = "") -> Path:
    conf = work / "unbound.conf"
    module = f'  module-config: "python iterator"\npython:\n  python-script: "{MODULE_FILE}"\n'
    conf.write_text(unbound_base(work, port, upstream, f"{extra}  num-threads: {threads}\n") + module)
    return conf


def unbound_base(work: Path, port: int, upstream: int, extra: str = "") -> str:
    """A config of the test's own (its port, directory, log, control socket, upstream), without the
    module; it ends in `server:` lines, `extra` among them."""
    return (
        f'remote-control:\n  control-enable: yes\n  control-interface: "{work}/control.sock"\n'
        f'forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@{upstream}\n'
        f'server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-daemonize: no\n  username: ""\n{extra}'
        f'  chroot: ""\n  directory: "{work}"\n  pidfile: "{work}/unbound.pid"\n  use-syslog: no\n'
        f'  logfile: "{work}/unbound.log"\n  verbosity: 1\n'
        "  do-not-query-localhost: no\n  access-control: 127.0.0.0/8 allow\n  qname-minimisation: no\n"
    )


@contextlib.contextmanager
def run_unbound(
    work: Path,
    upstream: int,
    socket_path: Path,
    threads: int = 1,
    timeout: float = 3.0,
    ask: str = "parallel",
    extra: str = "",
    window: int | None = None,
) -> Iterator[Unbound]:
    """`extra`: more `server:` lines, two-space indented; `window`: RESOLVERGUARD_WINDOW."""
    port = free_port()
    conf = unbound_conf(work, port, upstream, threads, extra)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": DIST_PACKAGES}
    env["RESOLVERGUARD_SOCKET"] = str(socket_path)
    env["RESOLVERGUARD_ASK"] = ask
    env["RESOLVERGUARD_TIMEOUT"] = str(timeout)  # 3 s: a busy test machine must not turn a slow verdict into a pass
    if NATIVE_ENV in os.environ:  # RESOLVERGUARD_GATE_C=off: the tests run the pure-Python first stage too
        env[NATIVE_ENV] = os.environ[NATIVE_ENV]
    if window is not None:
        env["RESOLVERGUARD_WINDOW"] = str(window)
    with started([UNBOUND, "-d", "-c", str(conf)], env, port, conf, work / "unbound.log") as unbound:
        yield unbound


@contextlib.contextmanager
def started(
    cmd: list[str], env: dict[str, str], port: int, conf: Path, log: Path, before: int = 0
) -> Iterator[Unbound]:
    """Runs `cmd` until the block ends, once its log says one more `start of service` than the
    `before` it had (processes may share one log file)."""
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    unbound = Unbound(port, conf, log, proc)
    try:
        deadline = time.monotonic() + 30
        while unbound.log_text().count("start of service") <= before:
            assert proc.poll() is None, f"unbound exited: {unbound.log_text()}"
            assert time.monotonic() < deadline, f"unbound did not start: {unbound.log_text()}"
            time.sleep(0.05)
        yield unbound
    finally:
        proc.terminate()
        proc.wait(15)


@contextlib.contextmanager
def run_service(work: Path, socket_path: Path, policy: str = "") -> Iterator[subprocess.Popen[str]]:
    """`resolverguard unbound-service` with the shipped model, its query log in work/queries.jsonl."""
    config = work / "policy.yaml"
    config.write_text(f"query_log: '{work}/queries.jsonl'\n{policy}")
    cmd = [
        sys.executable,
        "-m",
        "resolverguard",
        "unbound-service",
        "--config",
        str(config),
        "--socket",
        str(socket_path),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(proc, "verdict service for Unbound")
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)


def logged(work: Path) -> list[dict[str, object]]:
    """The service's query log, read after the service stopped (it writes every kept line when it stops)."""
    path = work / "queries.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def addresses(reply: dns.message.Message) -> list[str]:
    return [rr.to_text() for rrset in reply.answer for rr in rrset]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with run_upstream(Upstream()) as up:
        yield up


@needs_unbound
@pytest.mark.parametrize(("ask", "threads"), [("parallel", 1), ("parallel", 2), ("first", 1)])
def test_a_benign_name_resolves_and_a_dga_name_gets_the_sinkhole_stored_in_unbounds_cache(
    tmp_path: Path, upstream: Upstream, ask: str, threads: int
) -> None:
    """parallel (the default): the name is resolved while the service decides, and the block
    replaces the answer; first: the query waits for the verdict and a blocked name is never resolved.
    Either way the repeat is the sinkhole from Unbound's cache (never the real answer)."""
    sock = tmp_path / "verdicts.sock"
    with run_service(tmp_path, sock), run_unbound(tmp_path, upstream.port, sock, threads, ask=ask) as unbound:
        assert addresses(unbound.ask("example.com")) == [UPSTREAM_A]
        assert addresses(unbound.ask(DGA)) == ["0.0.0.0"]
        assert addresses(unbound.ask(f"www.{DGA}", "AAAA")) == ["::"]
        mx = unbound.ask(DGA, "MX")  # other types: NODATA with the sinkhole SOA, as `serve` answers
        assert mx.rcode() == dns.rcode.NOERROR and not mx.answer
        assert [rrset.rdtype for rrset in mx.authority] == [dns.rdatatype.SOA]
        assert mx.authority[0].ttl == 60
        again = unbound.ask(DGA)
        assert addresses(again) == ["0.0.0.0"] and 0 < again.answer[0].ttl <= 60
    lines = logged(tmp_path)
    assert "example.com." in upstream.queries
    if ask == "first":
        assert f"{DGA}." not in upstream.queries
    else:  # resolved once for A and once for MX, while the service decided; the repeat came from the cache
        assert upstream.queries.count(f"{DGA}.") == 2
    dga_a = [x for x in lines if x["qname"] == DGA and x["qtype"] == "A"]
    assert len(dga_a) == 1, "the repeat was answered from Unbound's cache, never reaching Python"
    assert dga_a[0]["action"] == "sinkhole" and dga_a[0]["reason"] == "model"
    assert dga_a[0]["transport"] == "unbound" and dga_a[0]["client"] == "127.0.0.1"
    benign = next(x for x in lines if x["qname"] == "example.com")
    assert benign["action"] == "pass"


def unit_command(unit: str) -> tuple[list[str], dict[str, str]]:
    """A systemd unit's ExecStart as argv and its Environment= lines, to run it as systemd would."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    cmd: list[str] = []
    for line in unit.splitlines():
        if line.startswith("Environment="):
            key, value = line[len("Environment=") :].split("=", 1)
            env[key] = value
        elif line.startswith("ExecStart="):
            cmd = shlex.split(line[len("ExecStart=") :])
    return cmd, env


def run_exec_reload(unit: str, pid: int) -> None:
    """A unit's ExecReload= lines, in order, as systemd runs them for `systemctl reload` (the "+"
    prefix only lifts the sandbox, the empty line resets the list)."""
    commands = [line[len("ExecReload=") :] for line in unit.splitlines() if line.startswith("ExecReload=")]
    for command in filter(None, commands):
        argv = shlex.split(command.lstrip("+").replace("$MAINPID", str(pid)))
        subprocess.run(argv, check=True, timeout=10)


@needs_unbound
@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze (apt-get install systemd)")
def test_two_unbound_processes_from_the_printed_config_and_unit_share_a_port_and_each_blocks(
    tmp_path: Path, upstream: Upstream
) -> None:
    """`unbound-module --processes 2` (docs/unbound.md, "More than one core"): the first process's
    config is the test's own plus the printed lines, the second is the printed file and is run as its
    printed unit runs it; Unbound and systemd accept both. Queries from 40 client sockets reach both
    processes (the kernel spreads sockets by address); each asks the service for the DGA name once,
    then answers it from its own cache. The control socket stays the first's; a reload of each (the
    first with unbound-control, the second by running its unit's ExecReload lines: SIGHUP, then the
    pause that keeps reloads apart) empties both caches, so each asks once more. The first unit's
    drop-in, printed as comments, reloads the same way."""
    sock, port, conf = tmp_path / "verdicts.sock", free_port(), tmp_path / "unbound.conf"
    argv = ["unbound-module", "--processes", "2", "--socket", str(sock), "--unbound-conf", str(conf)]
    out = subprocess.run([sys.executable, "-m", "resolverguard", *argv], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    files = printed_files(out.stdout)
    second, unit = tmp_path / "unbound-2.conf", "/etc/systemd/system/unbound-2.service"
    assert set(files) == {"", str(second), unit}
    drop_in = [line.removeprefix("#   ") for line in files[""].splitlines() if line.startswith("#   ExecReload=")]
    assert drop_in == ["ExecReload=", *(line for line in files[unit].splitlines() if line.startswith("ExecReload="))]
    conf.write_text(unbound_base(tmp_path, port, upstream.port) + files[""])
    second.write_text(files[str(second)])
    (tmp_path / "unbound-2.service").write_text(files[unit])
    verify = ["systemd-analyze", "verify", str(tmp_path / "unbound-2.service")]
    checked = subprocess.run(verify, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr
    cmd, env = unit_command(files[unit])
    assert cmd == ["/usr/sbin/unbound", "-d", "-p", "-c", str(second)] and env["RESOLVERGUARD_SOCKET"] == str(sock)
    for path in (conf, second):
        check = subprocess.run(["unbound-checkconf", str(path)], capture_output=True, text=True, env=env)
        assert check.returncode == 0, check.stderr + check.stdout
    env["RESOLVERGUARD_TIMEOUT"] = "3"  # a busy test machine must not turn a slow verdict into a pass
    log = tmp_path / "unbound.log"
    with (
        run_service(tmp_path, sock),
        started([UNBOUND, "-d", "-p", "-c", str(conf)], env, port, conf, log) as a,
        started([UNBOUND, *cmd[1:]], env, port, second, log, before=1) as b,
    ):
        assert f"pid {a.proc.pid}" in a.control("status")
        for round_ in range(2):
            for _ in range(40):  # dns.query.udp: a new socket (a new source port) for every query
                assert addresses(a.ask(DGA)) == ["0.0.0.0"]
                assert addresses(a.ask("example.com")) == [UPSTREAM_A]
            if round_ == 0:
                a.control("reload")
                started_at = time.monotonic()
                run_exec_reload(files[unit], b.proc.pid)
                assert time.monotonic() - started_at >= RELOAD_SETTLE  # the job holds for the pause
                wait_for_log(a, "resolverguard: module loaded", count=4)
        assert a.proc.poll() is None and b.proc.poll() is None
        assert log.read_text().count("resolverguard: module loaded") == 4
    dga_a = [x for x in logged(tmp_path) if x["qname"] == DGA and x["qtype"] == "A"]
    assert len(dga_a) == 4 and {x["action"] for x in dga_a} == {"sinkhole"}


def starts(log: Path) -> int:
    return log.read_text(errors="replace").count("start of service") if log.exists() else 0


@needs_unbound
@pytest.mark.skipif(bool(systemd_unavailable()), reason=str(systemd_unavailable()))
def test_systemd_runs_the_printed_units_and_keeps_a_storm_of_reloads_apart(upstream: Upstream) -> None:
    """systemd itself (a user manager, tests/systemdfixtures.py) runs both units `unbound-module
    --processes 2` prints: both processes start (Type=notify), answer and block; `systemctl reload
    unbound` runs the printed ExecReload= lines (SIGHUP, then the pause) and reloads the second
    process too (ReloadPropagatedFrom=); 8 reload requests 0.1 s apart are merged into at most 5
    reloads per process, and a config change made before the last request still reaches both
    processes (docs/unbound.md, "What a reload loses"). (The spacing of the reloads is measured by
    bench/systemd_reloads.py, not asserted here.)"""
    work = Path(tempfile.mkdtemp(prefix="rg-systemd-"))  # (pytest's tmp_path is root's alone)
    work.chmod(0o755)
    sock, port = work / "verdicts.sock", free_port()
    manager = None
    try:
        with run_service(work, sock):
            manager = UserManager(work)
            for name, text in printed_unbound_units(work, port, upstream.port, sock).items():
                manager.install(name, text)
            manager.give(work, *work.iterdir())
            manager.ctl("daemon-reload", check=True)
            manager.ctl("start", "unbound.service", "unbound-2.service", check=True)  # returns at READY=1
            logs = [work / "unbound-1.log", work / "unbound-2.log"]
            assert eventually(lambda: [starts(log) for log in logs] == [1, 1], 30)  # (logged just after READY=1)

            def ask(name: str) -> list[str]:
                query = dns.message.make_query(name, "A")
                return addresses(dns.query.udp(query, "127.0.0.1", port=port, timeout=3))

            for _ in range(20):  # a new source port per query: both processes get some
                assert ask(DGA) == ["0.0.0.0"] and ask("example.com") == [UPSTREAM_A]
            began = time.monotonic()
            manager.ctl("reload", "unbound.service", check=True)  # waits for its job: SIGHUP, then the pause
            assert time.monotonic() - began >= RELOAD_SETTLE
            assert eventually(lambda: [starts(log) for log in logs] == [2, 2], 30)
            for i in range(8):
                if i == 7:  # a change only the last request can bring (process 2's config includes it)
                    with (work / "unbound.conf").open("a") as conf:
                        conf.write('server:\n  local-data: "marker.test. 300 IN A 10.9.9.9"\n')
                manager.ctl("--no-block", "reload", "unbound.service", check=True)
                time.sleep(0.1)
            assert eventually(lambda: "No jobs running" in manager.ctl("list-jobs").stdout, 30, step=0.1)
            done = [starts(log) - 2 for log in logs]
            assert 1 <= done[0] <= 5 and 1 <= done[1] <= 5, done  # 8 requests, merged into fewer reloads
            for _ in range(20):  # both processes have the last change
                assert ask("marker.test") == ["10.9.9.9"]
                assert ask(DGA) == ["0.0.0.0"] and ask("example.com") == [UPSTREAM_A]
            assert manager.ctl("is-active", "unbound.service", "unbound-2.service").stdout.split() == ["active"] * 2
    finally:
        if manager is not None:
            manager.close()
        shutil.rmtree(work, ignore_errors=True)


@needs_unbound
@pytest.mark.parametrize("ask", ["parallel", "first"])
def test_unbounds_prefetch_of_a_sinkholed_name_keeps_the_sinkhole(tmp_path: Path, upstream: Upstream, ask: str) -> None:
    """With `prefetch: yes` (Pi-hole's Unbound guide sets it) a query in the last tenth of a cached
    answer's TTL makes Unbound look the name up again, with no client waiting: that lookup must be
    decided too, or the real answer would replace the sinkhole in the cache."""
    sock = tmp_path / "verdicts.sock"
    with (
        run_service(tmp_path, sock, "sinkhole:\n  ttl: 10\n"),
        run_unbound(tmp_path, upstream.port, sock, ask=ask, extra="  prefetch: yes\n") as unbound,
    ):
        assert addresses(unbound.ask(DGA)) == ["0.0.0.0"]
        time.sleep(9.3)  # into the last second of the sinkhole's 10 s: the next hit prefetches
        assert addresses(unbound.ask(DGA)) == ["0.0.0.0"]
        time.sleep(1.0)  # the prefetch is done by now (the stub upstream answers at once)
        again = unbound.ask(DGA)
    assert addresses(again) == ["0.0.0.0"], "the prefetch put the real answer in Unbound's cache"


@needs_unbound
def test_a_client_group_in_monitor_mode_is_logged_not_blocked_and_not_cached_for_others(
    tmp_path: Path, upstream: Upstream
) -> None:
    policy = "groups:\n  - name: lab\n    clients: [127.0.0.0/8]\n    mode: monitor\n"
    sock = tmp_path / "verdicts.sock"
    with run_service(tmp_path, sock, policy), run_unbound(tmp_path, upstream.port, sock) as unbound:
        assert addresses(unbound.ask(DGA)) == [UPSTREAM_A]
    lines = logged(tmp_path)
    assert [(x["action"], x.get("would")) for x in lines if x["qname"] == DGA] == [("log", "sinkhole")]


def module_counts(unbound: Unbound) -> dict[str, int]:
    """The module's counters from its unload line (a reload unloads it): asked, cleared, logged, ..."""
    unbound.control("reload")
    return unload_counts(unbound)


@needs_unbound
def test_a_name_the_first_stage_clears_resolves_without_asking_the_service_and_is_still_logged(
    tmp_path: Path, upstream: Upstream
) -> None:
    sock = tmp_path / "verdicts.sock"
    with run_service(tmp_path, sock), run_unbound(tmp_path, upstream.port, sock) as unbound:
        assert "gate on" in unbound.log_text()
        assert addresses(unbound.ask(CLEARED)) == [UPSTREAM_A]
        assert addresses(unbound.ask(f"www.{CLEARED}", "AAAA")) != ["::"]
        assert addresses(unbound.ask(DGA)) == ["0.0.0.0"]  # above the gate: the service's CNN sinkholes it
        counts = module_counts(unbound)
    lines = logged(tmp_path)
    assert counts["cleared"] == 2 and counts["logged"] == 2 and counts["log_dropped"] == 0
    assert counts["asked"] == 1, "only the DGA name went to the service"
    assert [(x["qname"], x["qtype"], x["action"]) for x in lines if CLEARED in str(x["qname"])] == [
        (CLEARED, "A", "pass"),
        (f"www.{CLEARED}", "AAAA", "pass"),
    ]
    assert all(x["client"] == "127.0.0.1" and x["transport"] == "unbound" for x in lines)
    assert [(x["qname"], x["action"]) for x in lines if x["qname"] == DGA] == [(DGA, "sinkhole")]


@needs_unbound
def test_a_name_asked_in_parallel_that_passes_is_stored_in_unbounds_cache_by_the_module(
    tmp_path: Path, upstream: Upstream
) -> None:
    """The iterator does not cache a name asked in parallel (its real answer must not be served
    before the verdict); the module stores it once the service says pass, so the repeat is Unbound's."""
    sock = tmp_path / "verdicts.sock"
    with (
        run_service(tmp_path, sock, f"lists:\n  allow: [{DGA}]\n"),
        run_unbound(tmp_path, upstream.port, sock) as unbound,
    ):
        assert addresses(unbound.ask(DGA)) == [UPSTREAM_A]  # above the gate: asked; allowed: passed
        assert addresses(unbound.ask(DGA)) == [UPSTREAM_A]
        counts = module_counts(unbound)
    assert upstream.queries.count(f"{DGA}.") == 1
    assert counts["asked"] == 1 and counts["late"] == 0 and counts["passed_unasked"] == 0


@needs_unbound
def test_a_full_window_waits_for_room_and_every_name_is_still_resolved_while_the_service_decides(
    tmp_path: Path, upstream: Upstream
) -> None:
    """RESOLVERGUARD_WINDOW=1 and names asked at once: while one name waits for the service, the next
    waits for that answer and is then asked in parallel, so every name reaches the upstream, blocked
    ones too (asked first instead, as the module did before, a blocked name never would), and every
    answer is the service's verdict: none late, none passed unasked."""
    rng = random.Random(5)
    names = ["".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(14)) + ".com" for _ in range(40)]
    sock = tmp_path / "verdicts.sock"
    with run_service(tmp_path, sock), run_unbound(tmp_path, upstream.port, sock, window=1) as unbound:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            got = pool.map(lambda name: addresses(unbound.ask(name, timeout=10)), names)
            answers = dict(zip(names, got, strict=True))
        counts = module_counts(unbound)
    actions = {x["qname"]: x["action"] for x in logged(tmp_path)}
    blocked = {name for name, answer in answers.items() if answer == ["0.0.0.0"]}
    assert blocked == {name for name in names if actions.get(name) == "sinkhole"}
    assert all(actions.get(name) in ("pass", "log") for name in set(names) - blocked)  # log: flagged, not blocked
    assert all(answer in (["0.0.0.0"], [UPSTREAM_A]) for answer in answers.values())
    assert len(blocked) >= 5  # blocked names were among them
    assert all(f"{name}." in upstream.queries for name in names)  # resolved while the service decided
    assert counts["late"] == 0 and counts["passed_unasked"] == 0
    assert counts["asked"] + counts["cleared"] == len(names)


@needs_unbound
def test_a_deny_listed_name_the_gate_would_clear_is_blocked_and_a_service_reload_reaches_the_module(
    tmp_path: Path, upstream: Upstream
) -> None:
    sock = tmp_path / "verdicts.sock"
    policy = f"lists:\n  deny: [{CLEARED}]\n"
    with run_service(tmp_path, sock, policy) as service, run_unbound(tmp_path, upstream.port, sock) as unbound:
        assert addresses(unbound.ask(f"www.{CLEARED}")) == ["0.0.0.0"]
        assert addresses(unbound.ask("riverbooks.net")) == [UPSTREAM_A]  # cleared by the gate
        (tmp_path / "policy.yaml").write_text(
            f"query_log: '{tmp_path}/queries.jsonl'\nlists:\n  deny: [riverbooks.net]\n"
        )
        service.send_signal(signal.SIGHUP)
        wait_for(service, "reloaded")
        time.sleep(1.2)  # the module looks at the snapshot's file once a second
        assert addresses(unbound.ask("shop.riverbooks.net")) == ["0.0.0.0"]
        assert addresses(unbound.ask(f"mail.{CLEARED}")) == [UPSTREAM_A]  # off the list now
    assert f"www.{CLEARED}." not in upstream.queries and "shop.riverbooks.net." not in upstream.queries


@needs_unbound
def test_with_the_service_down_names_pass_and_are_counted_then_blocking_resumes(
    tmp_path: Path, upstream: Upstream
) -> None:
    sock = tmp_path / "verdicts.sock"
    with run_unbound(tmp_path, upstream.port, sock) as unbound:
        assert addresses(unbound.ask(f"a.{DGA}")) == [UPSTREAM_A]  # fail open: resolution never waits on us
        assert "unreachable" in unbound.log_text() and "passed_unasked=1" in unbound.log_text()
        with run_service(tmp_path, sock):
            time.sleep(1.1)  # the module tries again after RETRY_SECONDS
            assert addresses(unbound.ask(f"b.{DGA}")) == ["0.0.0.0"]


def answer_ok(unbound: Unbound, name: str, want: str) -> bool:
    """One query as a stub resolver asks: three tries, 1 s apart."""
    for _ in range(3):
        with contextlib.suppress(dns.exception.Timeout):
            return addresses(unbound.ask(name, timeout=1.0)) == [want]
    return False


@needs_unbound
@pytest.mark.parametrize("threads", [1, 2])
def test_reload_and_sighup_under_queries_keep_unbound_up_and_every_answer_right(
    tmp_path: Path, upstream: Upstream, threads: int
) -> None:
    sock = tmp_path / "verdicts.sock"
    results: list[bool] = []
    stop = threading.Event()
    with run_service(tmp_path, sock), run_unbound(tmp_path, upstream.port, sock, threads) as unbound:

        def ask_forever(worker: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                benign = answer_ok(unbound, f"host{worker}-{i}.example.com", UPSTREAM_A)
                results.append(benign and answer_ok(unbound, f"w{worker}n{i}.{DGA}", "0.0.0.0"))

        askers = [threading.Thread(target=ask_forever, args=(w,)) for w in range(4)]
        for t in askers:
            t.start()
        try:
            for n in range(6):
                time.sleep(0.3)
                if n % 2:
                    unbound.proc.send_signal(signal.SIGHUP)
                else:
                    unbound.control("reload")
                # the next signal only once this reload is done: Unbound merges a signal that comes
                # while it reloads into that reload (a busy machine made 6 signals 5 reloads)
                deadline = time.monotonic() + 30
                while unbound.log_text().count("start of service") < n + 2:
                    assert time.monotonic() < deadline, unbound.log_text()
                    time.sleep(0.05)
        finally:
            time.sleep(0.5)
            stop.set()
            for t in askers:
                t.join(20)
        assert unbound.proc.poll() is None, unbound.log_text()
        assert unbound.log_text().count("resolverguard: module loaded") == 7  # started, then 6 reloads
        assert unbound.log_text().count("gate on") == 7  # the first stage too, after every reload
        # in C where the extension is built (gate6): a new module and type in every new interpreter
        featurizer = "featurizer in C" if native_linear_type() is not None else "featurizer in Python"
        assert unbound.log_text().count(featurizer) == 7
        assert addresses(unbound.ask(f"after.{DGA}")) == ["0.0.0.0"]
    wrong = f"{results.count(False)} of {len(results)} wrong or lost; unbound log: {unbound.log_text()[-3000:]}"
    assert len(results) >= 20 and all(results), wrong
    assert "fatal" not in unbound.log_text()


def wait_for_log(unbound: Unbound, text: str, count: int = 1, timeout: float = 30.0) -> None:
    def done(log: str) -> bool:
        assert unbound.proc.poll() is None, log[-3000:]
        return log.count(text) >= count

    assert done(eventually(unbound.log_text, timeout, done=done)), unbound.log_text()[-3000:]


def unload_counts(unbound: Unbound) -> dict[str, int]:
    """The counters of the module's first unload line (the first reload's)."""
    wait_for_log(unbound, "module unloaded")
    line = next(x for x in unbound.log_text().splitlines() if "module unloaded" in x)
    return {k: int(v) for k, v in (word.split("=") for word in line.split() if "=" in word)}


@needs_unbound
@pytest.mark.parametrize("threads", [1, 2])
def test_a_reload_answers_a_name_that_awaits_its_verdict_with_the_verdict(
    tmp_path: Path, upstream: Upstream, threads: int
) -> None:
    """Issue #17's guess for the answers lost under reloads: a query waiting for its verdict when
    the reload hits is dropped with the module. It is not: the upstream has answered, the Unbound
    thread waits for the verdict (here: the service is stopped) and finishes that query, with the
    service's verdict, before it takes the reload; the module counts nothing in flight."""
    sock = tmp_path / "verdicts.sock"
    with run_service(tmp_path, sock) as service, run_unbound(tmp_path, upstream.port, sock, threads) as unbound:
        assert addresses(unbound.ask(f"warm.{DGA}")) == ["0.0.0.0"]  # the service is up and connected
        service.send_signal(signal.SIGSTOP)
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pending = pool.submit(lambda: addresses(unbound.ask(f"pending.{DGA}", timeout=10)))
                deadline = time.monotonic() + 10
                while f"pending.{DGA}." not in upstream.queries:  # resolved: now it waits for its verdict
                    assert time.monotonic() < deadline and not pending.done()
                    time.sleep(0.02)
                time.sleep(0.3)
                unbound.proc.send_signal(signal.SIGHUP)
                time.sleep(0.5)
                assert not pending.done(), "answered while the service was stopped"
                service.send_signal(signal.SIGCONT)
                assert pending.result() == ["0.0.0.0"]  # the verdict, not a pass for want of one
        finally:
            service.send_signal(signal.SIGCONT)
        wait_for_log(unbound, "start of service", 2)
        counts = unload_counts(unbound)
        assert addresses(unbound.ask(f"after.{DGA}")) == ["0.0.0.0"]
    assert counts["in_flight"] == 0 and counts["late"] == 0 and counts["passed_unasked"] == 0


@needs_unbound
def test_the_answers_a_reload_loses_are_the_queries_unbound_held_and_the_module_counts_them(
    tmp_path: Path,
) -> None:
    """What a reload does lose: queries Unbound still resolves (here the upstream answers 2 s late).
    Unbound 1.17 frees them unanswered before it unloads the module (plain Unbound too), so no module
    can answer them; the module's unload line says how many there were (`in_flight`), which is how
    the bench's lost answers were traced to them."""
    names = [f"held{i}.{DGA}" for i in range(3)] + [f"held{i}.{CLEARED}" for i in range(3)]
    sock = tmp_path / "verdicts.sock"
    with (
        run_upstream(Upstream(delay=2.0)) as slow,
        run_service(tmp_path, sock),
        run_unbound(tmp_path, slow.port, sock) as unbound,
        concurrent.futures.ThreadPoolExecutor(len(names)) as pool,
    ):
        asked = [pool.submit(unbound.ask, name, "A", 6.0) for name in names]
        assert eventually(lambda: all(f"{name}." in slow.queries for name in names)), slow.queries
        unbound.control("reload")
        wait_for_log(unbound, "start of service", 2)
        counts = unload_counts(unbound)
        lost = 0
        for query in asked:
            with contextlib.suppress(dns.exception.Timeout):
                query.result()
                continue
            lost += 1
        assert unbound.proc.poll() is None
    assert lost == len(names) and counts["in_flight"] == len(names)


@needs_unbound
def test_unbound_module_prints_lines_that_unbound_checkconf_accepts(tmp_path: Path) -> None:
    sock = tmp_path / "v.sock"
    out = subprocess.run(
        [sys.executable, "-m", "resolverguard", "unbound-module", "--socket", str(sock)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(MODULE_FILE) in out and MODULE_FILE.exists() and f"RESOLVERGUARD_SOCKET={sock}" in out
    conf = tmp_path / "unbound.conf"
    base = f'server:\n  username: ""\n  chroot: ""\n  directory: "{tmp_path}"\n'
    conf.write_text(base + "\n".join(line for line in out.splitlines() if not line.startswith("server:")) + "\n")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": DIST_PACKAGES}
    check = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True, env=env)
    assert check.returncode == 0, check.stderr + check.stdout


def test_docs_show_the_second_process_as_unbound_module_prints_it() -> None:
    """docs/unbound.md quotes the printed files for the default paths; they must not drift apart."""
    from resolverguard.unboundconf import DEFAULT_SOCKET, module_config

    printed = module_config(DEFAULT_SOCKET, processes=2)
    block = printed[printed.index("# ==> process 2 of 2") :].split("# then:")[0]
    doc = (ROOT / "docs" / "unbound.md").read_text()
    assert "\n".join("    " + line for line in block.splitlines()) in doc


def test_a_relative_unbound_conf_is_printed_as_the_absolute_path_unbound_can_include(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "resolverguard",
        "unbound-module",
        "--processes",
        "3",
        "--unbound-conf",
        "u/main.conf",
    ]
    out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    files = printed_files(out.stdout)
    assert set(files) - {""} == {
        str(tmp_path / "u" / "main-2.conf"),
        str(tmp_path / "u" / "main-3.conf"),
        "/etc/systemd/system/unbound-2.service",
        "/etc/systemd/system/unbound-3.service",
    }
    assert f'include-toplevel: "{tmp_path / "u" / "main.conf"}"' in files[str(tmp_path / "u" / "main-3.conf")]
    assert f"-c {tmp_path / 'u' / 'main-3.conf'}" in files["/etc/systemd/system/unbound-3.service"]


@pytest.mark.parametrize("count", ["0", "65", "two"])
def test_unbound_module_refuses_a_process_count_it_cannot_print(count: str) -> None:
    argv = [sys.executable, "-m", "resolverguard", "unbound-module", "--processes", count]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and not out.stdout
    assert f"argument --processes: '{count}' is not a number of processes from 1 to 64" in out.stderr


@pytest.mark.parametrize(
    "path", [MODULE_FILE, MODULE_FILE.with_name("unbound_client.py"), MODULE_FILE.with_name("unbound_gate.py")]
)
def test_the_module_imports_only_the_standard_library_and_unbounds_own(path: Path) -> None:
    """What keeps `unbound-control reload` safe: Unbound re-initialises Python, and numpy (or anything
    that loads it: LiteRT, resolverguard itself) cannot be imported twice in one process. The module
    loads its first stage (unbound_gate.py) from beside it: that file is held to the same rule."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported - {"unboundmodule"} <= set(sys.stdlib_module_names), imported


def ask_service(sock_path: Path, *lines: bytes) -> list[bytes]:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock_path))
        answers = []
        for line in lines:
            s.sendall(line)
            data = b""
            while not data.endswith(b"\n"):
                data += s.recv(4096)
            answers.append(data)
    return answers


def test_the_service_answers_the_modules_lines_pass_block_and_fail_open_on_nonsense(tmp_path: Path) -> None:
    sock = tmp_path / "verdicts.sock"
    policy = "lists:\n  deny: [bad.example]\nsinkhole:\n  ttl: 30\n"
    with run_service(tmp_path, sock, policy):
        benign, dga, mx, denied, nonsense = ask_service(
            sock,
            b"example.com.\t1\t192.0.2.7\n",
            f"{DGA}.\t1\t-\n".encode(),
            f"{DGA}.\t15\t-\n".encode(),
            b"www.bad.example.\t28\t::1\n",
            b"no tabs here\n",
        )
    assert benign == b"P\n" and nonsense == b"P\n"
    assert dga == f"B\t0\t1\t{DGA}. 30 IN A 0.0.0.0\t\n".encode()
    soa = f"{DGA}. 30 IN SOA sinkhole.resolverguard.invalid. hostmaster.resolverguard.invalid. 1 3600 600 86400 30"
    assert mx == f"B\t0\t1\t\t{soa}\n".encode()
    assert denied == b"B\t0\t1\twww.bad.example. 30 IN AAAA ::\t\n"


def test_numbered_lines_are_answered_under_their_numbers_when_many_are_asked_at_once(tmp_path: Path) -> None:
    """What the module does by default: it sends names without waiting (numbered), then collects."""
    import socket

    sock = tmp_path / "verdicts.sock"
    names = [(f"{DGA}.", "a"), ("example.com.", "-"), ("www.bad.example.", "-"), (f"mail.{DGA}.", "a")] * 5
    with run_service(tmp_path, sock, "lists:\n  deny: [bad.example]\n"), socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(sock))
        s.sendall(b"".join(f"{name}\t1\t-\t{gate}\t{n}\n".encode() for n, (name, gate) in enumerate(names, 100)))
        data = b""
        while data.count(b"\n") < len(names):
            data += s.recv(65536)
    answers = dict(line.split(b"\t", 1) for line in data.splitlines())
    assert sorted(answers) == sorted(str(n).encode() for n in range(100, 100 + len(names)))
    for n, (name, _) in enumerate(names, 100):
        want = b"P" if name == "example.com." else b"B\t0\t1\t" + name.encode()
        assert answers[str(n).encode()].startswith(want), (name, answers[str(n).encode()])


@needs_unbound
def test_a_service_that_never_answers_costs_one_timeout_then_names_pass(tmp_path: Path, upstream: Upstream) -> None:
    import socket

    sock = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(sock))
        silent.listen(8)  # accepts (the kernel's backlog) and never reads or answers
        with run_unbound(tmp_path, upstream.port, sock, timeout=0.3) as unbound:
            started = time.monotonic()
            assert addresses(unbound.ask(f"a.{DGA}", timeout=5)) == [UPSTREAM_A]
            assert 0.3 <= time.monotonic() - started < 3
            assert addresses(unbound.ask(f"b.{DGA}", timeout=5)) == [UPSTREAM_A]  # within RETRY_SECONDS: not asked
            assert "names pass unscored" in unbound.log_text()


def test_sighup_rereads_the_services_policy_and_a_broken_one_keeps_the_old(tmp_path: Path) -> None:
    sock = tmp_path / "verdicts.sock"
    with run_service(tmp_path, sock) as service:
        assert ask_service(sock, f"{DGA}.\t1\t-\n".encode())[0].startswith(b"B\t")
        (tmp_path / "policy.yaml").write_text(f"lists:\n  allow: [{DGA}]\n")
        service.send_signal(signal.SIGHUP)
        wait_for(service, "reloaded")
        assert ask_service(sock, f"www.{DGA}.\t1\t-\n".encode()) == [b"P\n"]
        (tmp_path / "policy.yaml").write_text("thresholds:\n  sinkhole: 7\n")
        service.send_signal(signal.SIGHUP)
        assert "policy.yaml:2: thresholds.sinkhole" in wait_for(service, "reload rejected")
        assert ask_service(sock, f"www.{DGA}.\t1\t-\n".encode()) == [b"P\n"]  # the allow list stays in force


def test_a_name_the_first_stage_clears_the_service_passes_and_a_name_above_it_gets_one_verdict(
    tmp_path: Path,
) -> None:
    """The cascade's verdict equals the service's: on a set of benign and random names, every name the
    module's gate (read from the service's own snapshot) clears, the service passes when asked without
    the gate's word; a name above the gate gets the same answer with and without it."""
    import random
    import string

    from resolverguard.unbound_gate import ABOVE, CLEARED, read_snapshot

    rng = random.Random(5)
    words = ["shop", "news", "mail", "cloud", "green", "river", "blue", "city", "home", "garden", "book", "travel"]
    names = [f"{rng.choice(words)}{rng.choice(words)}.{rng.choice(['com', 'de', 'net'])}" for _ in range(60)]
    alphabet = string.ascii_lowercase + string.digits
    names += ["".join(rng.choice(alphabet) for _ in range(rng.randint(8, 20))) + ".com" for _ in range(60)]
    sock = tmp_path / "verdicts.sock"
    with run_service(tmp_path, sock):
        gate, why = read_snapshot(sock.with_name(sock.name + ".gate"))
        assert gate is not None, why
        decided = {name: gate.decide(name) for name in names}
        plain = ask_service(sock, *(f"{n}.\t1\t-\n".encode() for n in names))
        flagged = ask_service(sock, *(f"{n}.\t1\t-\ta\n".encode() for n in names if decided[n] == ABOVE))
    answers = dict(zip(names, plain, strict=True))
    cleared = [n for n in names if decided[n] == CLEARED]
    above = [n for n in names if decided[n] == ABOVE]
    assert len(cleared) >= 20 and len(above) >= 20, decided
    assert all(answers[n] == b"P\n" for n in cleared)
    assert [answers[n] for n in above] == flagged
    assert any(a.startswith(b"B\t") for a in flagged)  # some of the names above the gate are sinkholed
