"""Lookups that fail under reloads for a client that retries, as stub resolvers do (issue #17).

    python bench/reload_retry.py [--qps 500] [--reloads 100] [--timeout 1] [--tries 3] [--tag run]

`bench/compare.py` counts dnsperf's lost queries under 100 reloads: dnsperf never asks again, so a
query Unbound 1.17 frees on a reload (docs/unbound.md, "What a reload loses") is lost for good, with
the module and without it alike. The clients people run do ask again: glibc's stub resolver after 5 s
(`options timeout:5 attempts:2`), dig after 5 s (3 tries), dnsmasq (Pi-hole) and systemd-resolved
sooner. What a user sees is whether a lookup fails after its retries, and that is what this counts:
a client at `--qps` on never-seen names, each lookup sent again with a new ID after `--timeout`
seconds without an answer, up to `--tries` times, while `unbound-control reload` and SIGHUP
alternate 0.1 s apart, for (b2) plain Unbound and (m2) Unbound with the module, 2 threads, NSD
upstream. Per row: lookups, answered at the first try, answered after a retry, SERVFAIL, failed
(no answer after every try). Written to bench/results/reload_retry_TAG.md; run it under the bench lock.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compare import (
    ROOT,
    Reload,
    control_or_hup,
    free_port,
    load_average,
    query_files,
    start_nsd,
    wait_ready,
)
from dnslib import DNSRecord
from reload_losses import unbound_two_threads


@dataclass
class Tally:
    """What the lookups came to (one per name)."""

    first: int = 0
    retried: int = 0
    servfail: int = 0
    failed: int = 0
    sends: int = 0
    failed_names: list[str] = field(default_factory=list)


class Client(asyncio.DatagramProtocol):
    """One UDP socket whose answers resolve the waiting lookups by query ID."""

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[int]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (3.11's is no DatagramTransport subclass)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 4:
            return
        future = self.waiting.pop(int.from_bytes(data[:2], "big"), None)
        if future is not None and not future.done():
            future.set_result(data[3] & 0x0F)  # the rcode


async def lookup(clients: list[Client], name: str, timeout: float, tries: int, tally: Tally) -> None:
    """One lookup as a stub resolver makes it: a new ID and a socket chosen again for every try."""
    loop = asyncio.get_running_loop()
    for attempt in range(tries):
        client = random.choice(clients)
        qid = random.randrange(1 << 16)
        while qid in client.waiting:
            qid = random.randrange(1 << 16)
        query = DNSRecord.question(name)
        query.header.id = qid
        future: asyncio.Future[int] = loop.create_future()
        client.waiting[qid] = future
        assert client.transport is not None
        client.transport.sendto(query.pack())
        tally.sends += 1
        try:
            rcode = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            client.waiting.pop(qid, None)
            continue
        if rcode == 2:
            tally.servfail += 1
        elif attempt == 0:
            tally.first += 1
        else:
            tally.retried += 1
        return
    tally.failed += 1
    tally.failed_names.append(name)


async def drive(port: int, names: list[str], qps: float, seconds: float, timeout: float, tries: int) -> Tally:
    """Lookups at `qps` for `seconds` (each on its own name), then waits for the last one's tries."""
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(16):
        _, client = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
        clients.append(client)
    tally, pending = Tally(), []
    start = loop.time()
    for i, name in enumerate(names[: int(qps * seconds)]):
        delay = start + i / qps - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.ensure_future(lookup(clients, name, timeout, tries, tally)))
    await asyncio.gather(*pending)
    for client in clients:
        assert client.transport is not None
        client.transport.close()
    return tally


def fresh_names(lines: list[str], prefix: str, count: int) -> list[str]:
    """`count` names of a query file's `lines` made new by `prefix` on the first label, leaving out
    any whose label would pass DNS's 63 bytes."""
    names = (f"{prefix}-{line.split()[0]}" for line in lines)
    return [n for n in names if len(n.split(".")[0]) <= 63][:count]


def reload_loop(reload: Reload, reloads: int, failed: list[int], interval: float = 0.1) -> None:
    """`compare.reloads_under_load`'s reloads: a second after the start, `interval` s apart."""
    time.sleep(1.0)
    for i in range(reloads):
        failed[0] += not reload(i)
        time.sleep(interval)


def retry_under_reloads(
    port: int,
    procs: list[subprocess.Popen[bytes]],
    reload: Reload,
    names: list[str],
    qps: float,
    reloads: int,
    timeout: float = 1.0,
    tries: int = 3,
    interval: float = 0.1,
) -> dict[str, Any]:
    """`reloads` reloads of the Unbound `procs` (answering on `port`), `interval` s apart, while the
    retrying client asks `names` at `qps`: the tally (`Tally` as a dict), failed reloads, whether
    every one is still up."""
    wait_ready(port)
    seconds = reloads * (interval + 0.1) + 4  # as compare.reloads_under_load: the reloads and a second either side
    failed = [0]
    reloader = threading.Thread(target=reload_loop, args=(reload, reloads, failed, interval))
    reloader.start()
    tally = asyncio.run(drive(port, names, qps, seconds, timeout, tries))
    reloader.join()
    out = dict(vars(tally), lookups=tally.first + tally.retried + tally.servfail + tally.failed)
    alive = all(proc.poll() is None for proc in procs)
    return out | {"control_failures": failed[0], "alive": alive, "timeout": timeout, "tries": tries}


def one_row(work: Path, upstream: int, module: bool, names: list[str], a: argparse.Namespace) -> dict[str, Any]:
    with unbound_two_threads(work, upstream, module) as (port, proc):
        reload = control_or_hup(work, port, proc)
        return retry_under_reloads(port, [proc], reload, names, a.qps, a.reloads, a.timeout, a.tries)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--qps", type=float, default=500.0)
    p.add_argument("--reloads", type=int, default=100)
    p.add_argument("--timeout", type=float, default=1.0, help="seconds before a lookup is sent again")
    p.add_argument("--tries", type=int, default=3)
    p.add_argument("--tag", default="run")
    a = p.parse_args()
    os.environ["TZ"] = "UTC"
    time.tzset()
    work = Path(tempfile.mkdtemp(prefix="rg-retry-"))
    count = int(a.qps * (a.reloads * 0.2 + 4)) + 10
    files = query_files(work, 1000, random.Random(13), 2 * count)
    names = [line.split()[0] for line in files["misses"].read_text().splitlines()]
    before = load_average()
    nsd_port = free_port()
    nsd = start_nsd(work, nsd_port)
    rows = []
    try:
        wait_ready(nsd_port)
        for label, module, part in (("(b2) Unbound, 2 threads", False, 0), ("(m2) + module, 2 threads", True, 1)):
            rows.append((label, one_row(work, nsd_port, module, names[part * count : (part + 1) * count], a)))
            print(label, rows[-1][1], flush=True)
    finally:
        nsd.terminate()
        nsd.wait(10)
    lines = [
        f"# Lookups under {a.reloads} reloads for a client that retries ({time.strftime('%Y-%m-%d %H:%M UTC')};"
        f" bench/reload_retry.py --qps {a.qps:g} --reloads {a.reloads} --timeout {a.timeout:g} --tries {a.tries};"
        f" NSD upstream; load before {before}, after {load_average()})",
        "",
        "Each lookup is a never-seen name, sent again with a new ID after the timeout, up to the tries; the"
        " reloads (`unbound-control reload` and SIGHUP alternated, 0.1 s apart) run while the lookups go on.",
        "",
        "| row | lookups | answered at once | answered after a retry | SERVFAIL | failed after every try | sends |"
        " control failed | alive after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, row in rows:
        lines.append(
            f"| {label} | {row['lookups']} | {row['first']} | {row['retried']} | {row['servfail']} | {row['failed']}"
            f" | {row['sends']} | {row['control_failures']} | {row['alive']} |"
        )
    out = ROOT / "bench" / "results" / f"reload_retry_{a.tag}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
