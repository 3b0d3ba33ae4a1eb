"""Real fleet parts for the tests: Debian's `redis-server` and `dnsdist` as processes on 127.0.0.1.

Both are installed by `.ci/run` (apt-get install redis-server dnsdist); a test that needs one
skips, saying so, when the binary is missing on a developer's machine. Redis runs without
persistence, as a cache: when it is killed and started again it comes back empty, which is the
hard case for convergence (every instance must write back what it knows).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dnsfixtures import free_port, stop_server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def need(binary: str) -> str:
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if found is None:
        pytest.skip(f"{binary} is not installed (.ci/run installs it: apt-get install redis-server dnsdist)")
    return found


def tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


@dataclass
class RedisServer:
    """A `redis-server` the test can kill and start again on the same port."""

    port: int = field(default_factory=tcp_port)
    password: str | None = None
    tls: Path | None = None  # a folder with ca.pem, server.pem, server.key (`make_certificates`): TLS only
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        port = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        cmd = [need("redis-server"), *port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.tls:
            cmd += ["--tls-cert-file", str(self.tls / "server.pem"), "--tls-key-file", str(self.tls / "server.key")]
            cmd += ["--tls-ca-cert-file", str(self.tls / "ca.pem"), "--tls-auth-clients", "no"]
        if self.password:
            cmd += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_listening(self.port)

    def pause(self) -> None:
        """SIGSTOP: a hung Redis. Its connections stay open and new ones are still accepted (the
        kernel's backlog), but nothing is answered: only timeouts and pings can tell."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash: connections reset, nothing saved."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None


def make_certificates(folder: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run([need("openssl"), *args], cwd=folder, check=True, capture_output=True)

    subject = ["-nodes", "-newkey", "rsa:2048"]
    openssl("req", "-x509", *subject, "-days", "2", "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", *subject, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    sign = ["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "san.ext"]
    openssl("x509", "-req", "-in", "server.csr", *sign, "-out", "server.pem")
    return folder


@contextlib.contextmanager
def run_redis(password: str | None = None, tls: Path | None = None) -> Iterator[RedisServer]:
    server = RedisServer(password=password, tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def dnsdist_config(listen: int, backends: Sequence[tuple[str, int]]) -> str:
    """examples/dnsdist.conf with the test's addresses: its first newServer line is the template
    of every backend (address and name replaced), so the example's settings are what is tested."""
    text = (EXAMPLES / "dnsdist.conf").read_text(encoding="utf-8")
    start, end = text.index("-- BACKENDS BEGIN"), text.index("-- BACKENDS END")
    template = next(line for line in text[start:end].splitlines() if line.startswith("newServer("))
    address = re.search(r'address="[^"]*"', template)
    name = re.search(r'name="[^"]*"', template)
    assert address and name, template
    servers = [
        template.replace(address.group(), f'address="{host}:{port}"').replace(name.group(), f'name="rg{i}"')
        for i, (host, port) in enumerate(backends)
    ]
    text = text[:start] + "\n".join(servers) + "\n" + text[end:]
    return text.replace('setLocal("0.0.0.0:53")', f'setLocal("127.0.0.1:{listen}")')


@contextlib.contextmanager
def run_dnsdist(backends: Sequence[tuple[str, int]], workdir: Path) -> Iterator[int]:
    """dnsdist in the foreground (`--supervised`) on a free UDP/TCP port in front of `backends`."""
    port = free_port()
    conf = workdir / "dnsdist.conf"
    conf.write_text(dnsdist_config(port, backends), encoding="utf-8")
    check = subprocess.run([need("dnsdist"), "--check-config", "-C", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    log = (workdir / "dnsdist.log").open("wb")
    cmd = [need("dnsdist"), "--supervised", "--disable-syslog", "-C", str(conf)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_listening(port)
        yield port
    finally:
        stop_server(proc)
        log.close()
