"""What DNS over TLS and over HTTPS add to a forwarded query, against plain UDP to the same server.

    sudo apt-get install -y unbound openssl
    python bench/encrypted.py [--queries 2000]

Starts the bench upstream (bench/upstream.py) and Unbound in front of it serving plain DNS, DoT
(tls-port) and DoH (https-port, HTTP/2) on 127.0.0.1 with a throwaway CA and certificate, then
sends the same sequence of never-seen names through resolverguard's own forwarder (the
`UpstreamForwarder` the upstream step uses) over each transport, one query at a time, the
transports taking turns query by query so that drift in the machine's load hits them alike. The
first query of each encrypted transport opens its connection (TCP + TLS handshake) and is reported
apart; the rest reuse it. Also a burst of 200 concurrent queries per transport (pipelining on one
connection). Results go to bench/results/encrypted.{md,json}; the issue #15 target is an added p50
under 1 ms over UDP with connection reuse.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compare import free_port, start_unbound, wait_ready

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dnslib import DNSRecord  # noqa: E402

from resolverguard.config import EncryptedUpstream, EncryptedUpstreamsConfig, Endpoint, Upstream  # noqa: E402
from resolverguard.steps.upstream import UpstreamForwarder  # noqa: E402
from resolverguard.wire import parse_query  # noqa: E402


def certificates(work: Path) -> tuple[Path, Path, Path]:
    """(CA, server certificate for bench.test and 127.0.0.1, its key), made with openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ca_key, ca, key, csr, cert, ext = (work / n for n in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem", "s.ext"))
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *curve, "-days", "1", "-subj", "/CN=bench CA", "-keyout", str(ca_key), "-out", str(ca),
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    openssl("req", "-new", *curve, "-subj", "/CN=bench.test", "-keyout", str(key), "-out", str(csr))
    ext.write_text("subjectAltName=DNS:bench.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "1", "-out", str(cert), "-extfile", str(ext))  # fmt: skip
    return ca, cert, key


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(servers: dict[str, Upstream], ca: Path, count: int) -> dict[str, dict[str, float]]:
    forwarders = {}
    for label, server in servers.items():
        settings = EncryptedUpstreamsConfig(ca_file=ca, doh_method="get" if label.endswith("GET") else "post")
        forwarders[label] = UpstreamForwarder((server,), 2.0, encrypted=settings)
    samples: dict[str, list[float]] = {label: [] for label in servers}
    first: dict[str, float] = {}
    for i in range(count + 1):
        for label, forwarder in forwarders.items():
            packet = DNSRecord.question(f"q{i}-{label.replace(' ', '-').lower()}.bench.example").pack()
            started = time.perf_counter()
            await forwarder.resolve(packet, None, parse_query(packet))
            took = (time.perf_counter() - started) * 1000
            if i == 0:
                first[label] = took
            else:
                samples[label].append(took)
    burst: dict[str, float] = {}
    for label, forwarder in forwarders.items():
        packets = [DNSRecord.question(f"b{i}-{label[:3].lower()}.bench.example").pack() for i in range(200)]
        started = time.perf_counter()
        await asyncio.gather(*(forwarder.resolve(p, None, parse_query(p)) for p in packets))
        burst[label] = (time.perf_counter() - started) * 1000
        forwarder.close()
    await asyncio.sleep(0.2)  # let the DoH client's close run
    base = statistics.median(samples["UDP"])
    return {
        label: {
            "p50_ms": statistics.median(values),
            "p99_ms": percentile(values, 0.99),
            "added_p50_ms": statistics.median(values) - base,
            "first_query_ms": first[label],
            "burst_200_ms": burst[label],
        }
        for label, values in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ca, cert, key = certificates(work)
        up, plain, dot, doh = free_port(), free_port(), free_port(), free_port()
        stub = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(up)])
        extra = (
            f"  interface: 127.0.0.1@{dot}\n  interface: 127.0.0.1@{doh}\n  tls-port: {dot}\n  https-port: {doh}\n"
            f'  tls-service-key: "{key}"\n  tls-service-pem: "{cert}"\n  http-endpoint: "/dns-query"\n'
            "  msg-cache-size: 0\n  rrset-cache-size: 0\n"
        )
        unbound = start_unbound(work, plain, up, extra)
        try:
            wait_ready(plain)
            servers: dict[str, Upstream] = {
                "UDP": Endpoint("127.0.0.1", plain),
                "DoT": EncryptedUpstream("tls", "bench.test", "127.0.0.1", dot),
                "DoH POST": EncryptedUpstream("https", "bench.test", "127.0.0.1", doh, "/dns-query"),
                "DoH GET": EncryptedUpstream("https", "bench.test", "127.0.0.1", doh, "/dns-query"),
            }
            load = os.getloadavg()[0]
            results = asyncio.run(measure(servers, ca, args.queries))
        finally:
            for proc in (unbound, stub):
                proc.terminate()
                proc.wait(10)
    write(results, args.queries, load)


def write(results: dict[str, Any], count: int, load: float) -> None:
    out = ROOT / "bench" / "results"
    (out / "encrypted.json").write_text(
        json.dumps({"queries": count, "load_average": load, "results": results}, indent=2) + "\n"
    )
    lines = [
        "# Encrypted upstreams: added latency over UDP (bench/encrypted.py)",
        "",
        f"`python bench/encrypted.py --queries {count}`: resolverguard's forwarder -> Unbound (no cache) -> "
        "bench/upstream.py, all on 127.0.0.1; one query at a time, the transports taking turns; the first "
        "query of each transport (connection + handshake) apart; then 200 concurrent queries. "
        f"Load average at the start: {load:.1f} ({os.cpu_count()} CPUs).",
        "",
        "| transport | p50 ms | p99 ms | added p50 over UDP, ms | first query ms | 200 concurrent, ms |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        lines.append(
            f"| {label} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['added_p50_ms']:+.3f} | "
            f"{r['first_query_ms']:.1f} | {r['burst_200_ms']:.1f} |"
        )
    worst = max(r["added_p50_ms"] for r in results.values())
    verdict = "met" if worst < 1.0 else "NOT met"
    lines += ["", f"Target (issue #15): added p50 < 1 ms with connection reuse: {verdict} (worst {worst:+.3f} ms)."]
    (out / "encrypted.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
