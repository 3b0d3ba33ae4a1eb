"""Encrypted DNS servers for the tests: Debian's Unbound serving DoT (`tls-port`) and DoH
(`https-port`, HTTP/2 through nghttp2) on 127.0.0.1 with a certificate the test makes, forwarding
to the plain test upstream of dnsfixtures. The CA and certificates are made with the `openssl`
command line (a throwaway CA, a server certificate for a name and 127.0.0.1)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dnsfixtures import free_port, stop_server

SERVER_NAME = "dns.test"


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA certificate the client trusts
    cert: Path  # the server's certificate (for `name` and 127.0.0.1), signed by `ca`
    key: Path
    name: str


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(folder: Path, name: str = SERVER_NAME, tag: str = "ca") -> Certificates:
    """A fresh CA and a server certificate for `name` (and IP 127.0.0.1) that it signed."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / f"{tag}{x}" for x in ("-ca.key", "-ca.pem", ".key", ".csr", ".pem"))
    ext = folder / f"{tag}.ext"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", f"/CN=resolverguard test CA {tag}", "-keyout", str(ca_key), "-out", str(ca),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    ext.write_text(
        f"subjectAltName=DNS:{name},IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-out", str(cert), "-extfile", str(ext),
    )  # fmt: skip
    return Certificates(ca, cert, key, name)


@dataclass(frozen=True)
class EncryptedServer:
    dot_port: int
    doh_port: int
    plain_port: int
    process: subprocess.Popen[bytes]
    log: Path


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def run_unbound_tls(work: Path, certs: Certificates, upstream_port: int) -> Iterator[EncryptedServer]:
    """Unbound serving plain DNS, DoT and DoH (path /dns-query) on 127.0.0.1, forwarding to the
    test upstream; no cache, so every query reaches the upstream. It answers the certificate's
    name with 127.0.0.1 itself, so its plain port can be the bootstrap resolver."""
    if shutil.which("unbound") is None:
        pytest.skip("unbound is not installed (apt-get install unbound)")
    plain, dot, doh = free_port(), free_port(), free_port()
    conf, log = work / "unbound-tls.conf", work / "unbound-tls.log"
    conf.write_text(
        "server:\n"
        f"  interface: 127.0.0.1@{plain}\n  interface: 127.0.0.1@{dot}\n  interface: 127.0.0.1@{doh}\n"
        f"  port: {plain}\n  tls-port: {dot}\n  https-port: {doh}\n"
        f'  tls-service-key: "{certs.key}"\n  tls-service-pem: "{certs.cert}"\n'
        '  http-endpoint: "/dns-query"\n  http-notls-downstream: no\n'
        f'  do-daemonize: no\n  username: ""\n  chroot: ""\n  directory: "{work}"\n'
        f'  pidfile: "{work}/unbound.pid"\n  use-syslog: no\n  logfile: "{log}"\n'
        "  num-threads: 1\n  do-not-query-localhost: no\n  access-control: 127.0.0.0/8 allow\n"
        '  module-config: "iterator"\n  qname-minimisation: no\n  verbosity: 1\n'
        "  msg-cache-size: 0\n  rrset-cache-size: 0\n  incoming-num-tcp: 100\n"
        f'  local-data: "{certs.name}. 60 IN A 127.0.0.1"\n'  # its plain port is the tests' bootstrap
        f'forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@{upstream_port}\n'
    )
    check = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True)
    if check.returncode != 0:
        raise AssertionError(f"unbound-checkconf: {check.stdout}{check.stderr}")
    proc = subprocess.Popen(["unbound", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not all(_listening(p) for p in (plain, dot, doh)):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                raise AssertionError(f"unbound did not start: {err} {log.read_text() if log.exists() else ''}")
            time.sleep(0.05)
        yield EncryptedServer(dot, doh, plain, proc, log)
    finally:
        stop_server(proc)
