"""Fuzz the whole request path over UDP and TCP: whatever arrives, the server answers FORMERR or
another well-formed reply, or stays silent, and keeps answering real queries afterwards."""

from __future__ import annotations

import io
import os
import socket
import struct
from dataclasses import replace

import dns.message
import dns.query
import pytest
from dnsfixtures import UPSTREAM_A, Upstream, run_resolver, run_upstream
from fuzzing import CRAFTED, packets
from hypothesis import HealthCheck, given, settings

from resolverguard.config import Config, Endpoint, RateLimitConfig

COUNT = {"udp": 0, "tcp": 0}
# CI runs a few hundred inputs; a longer campaign: RG_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py -s
EXAMPLES = int(os.environ.get("RG_FUZZ_EXAMPLES", "300"))
STDERR = io.StringIO()


@pytest.fixture(scope="module")
def resolver(tmp_path_factory: pytest.TempPathFactory):
    with run_upstream(Upstream()) as up:
        cfg = replace(
            Config(upstreams=(Endpoint("127.0.0.1", up.port),), upstream_timeout=0.3), rate_limit=RateLimitConfig(qps=0)
        )
        with run_resolver(cfg, tmp_path_factory.mktemp("fuzz") / "q.log", stderr=STDERR) as r:
            yield r


def check_reply(sent: bytes, data: bytes | None) -> None:
    if data is None:
        return
    assert len(data) >= 12 and data[:2] == sent[:2]  # a reply always answers the ID it was given
    assert data[2] & 0x80  # QR
    dns.message.from_wire(data, question_only=True)  # well-formed, whatever the rcode


def udp_exchange(r, packet: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(packet, (r.host, r.port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def tcp_exchange(r, packet: bytes) -> bytes | None:
    with socket.create_connection((r.host, r.port), timeout=2) as s:
        s.settimeout(1.0)
        s.sendall(struct.pack("!H", len(packet) & 0xFFFF) + packet[:65535])
        try:
            size = s.recv(2)
            if len(size) < 2:
                return None
            want, data = struct.unpack("!H", size)[0], b""
            while len(data) < want:
                chunk = s.recv(want - len(data))
                if not chunk:
                    break
                data += chunk
            return data
        except (TimeoutError, ConnectionResetError):
            return None


def still_serving(r) -> None:
    reply = dns.query.udp(dns.message.make_query("www.example.com", "A"), r.host, port=r.port, timeout=3)
    assert [rd.to_text() for rr in reply.answer for rd in rr] == [UPSTREAM_A]


@pytest.mark.parametrize("packet", CRAFTED, ids=range(len(CRAFTED)))
def test_crafted_packets(resolver, packet: bytes) -> None:
    check_reply(packet, udp_exchange(resolver, packet))
    check_reply(packet, tcp_exchange(resolver, packet))
    still_serving(resolver)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(packets)
def test_fuzz_udp(resolver, packet: bytes) -> None:
    COUNT["udp"] += 1
    check_reply(packet, udp_exchange(resolver, packet))


@settings(max_examples=max(1, EXAMPLES // 3), deadline=None, suppress_health_check=list(HealthCheck))
@given(packets)
def test_fuzz_tcp(resolver, packet: bytes) -> None:
    COUNT["tcp"] += 1
    check_reply(packet, tcp_exchange(resolver, packet))


def test_still_serving_after_fuzzing(resolver) -> None:
    still_serving(resolver)
    assert "Traceback" not in STDERR.getvalue(), STDERR.getvalue()[-3000:]  # no input reached a bug
    print(f"fuzzed {COUNT['udp']} UDP and {COUNT['tcp']} TCP packets")
