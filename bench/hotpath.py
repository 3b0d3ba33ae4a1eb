"""The resolver's own CPU per query on the hit path and the miss path, without dnsperf around it.

    python bench/hotpath.py [--rounds 5] [--names 4000] [--out NAME]
    HOTPATH_TREE=/work/main python bench/hotpath.py --no-shortcut     # another checkout's code

bench/compare.py measures the whole server under dnsperf, which a machine shared with other jobs
distorts a lot (both compete for 2 cores). This runs the real `DnsServer` and pipeline (the
default policy: full chain, shipped model) in this process, with NSD as the upstream in its own
process, and hands it datagrams the way uvloop's read callback does (`accept_udp`, a transport
that only keeps the replies): what is timed is the Python work per query plus the upstream
socket's syscalls, not the client socket's. Process CPU time (time spent preempted by other jobs
is not counted), best of `--rounds` rounds, the variants alternated round by round so that load
drift hits all alike:

- hits: every name in the answer cache and verdict cache (Zipf over the names, as compare's hits);
- misses: never-seen registrable names, each scored and forwarded (in bursts of 64, as dnsperf's
  8 clients keep many in flight);
- variants: the chain alone, with the repeat shortcut (resolverguard.shortcut), and each with the
  query log to a file (lines written by its writer: a process's CPU is counted per line once it
  exits, a thread's is in the rounds' process time).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TREE = os.environ.get("HOTPATH_TREE")  # another checkout's resolverguard to measure (its own bench/ not needed)
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, TREE or str(ROOT))

import compare as C  # noqa: E402
from dnslib import DNSRecord  # noqa: E402

from resolverguard.config import load_config  # noqa: E402
from resolverguard.model import load_model  # noqa: E402
from resolverguard.pipeline import build_pipeline  # noqa: E402
from resolverguard.server import DnsServer  # noqa: E402

CLIENT = ("127.0.0.1", 40000)


class Replies:
    """A datagram transport that keeps count of what was sent (the client side of uvloop's)."""

    def __init__(self) -> None:
        self.count, self.last = 0, b""
        self.done: asyncio.Future[None] | None = None
        self.expect = 0

    def sendto(self, data: bytes, addr: Any) -> None:
        self.count += 1
        self.last = data
        if self.done is not None and self.count >= self.expect and not self.done.done():
            self.done.set_result(None)

    def is_closing(self) -> bool:
        return False


def packets(names: list[str]) -> list[bytes]:
    return [bytes(DNSRecord.question(n, "A").pack()) for n in names]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


VARIANTS = {  # name: (shortcut, query log to a file: None, or its writer)
    "chain": (False, None),
    "chain + log (process)": (False, "process"),
    "chain + log (thread)": (False, "thread"),
    "shortcut": (True, None),
    "shortcut + log (process)": (True, "process"),
    "shortcut + log (thread)": (True, "thread"),
}


async def main_async(args: argparse.Namespace, work: Path, upstream: int) -> dict[str, dict[str, float]]:
    rng = random.Random(7)
    names = C.benign_names(args.names, rng)
    hit_names = rng.choices(names, weights=[1 / (r + 1) ** 1.1 for r in range(len(names))], k=20_000)
    hits = packets(hit_names)
    model = None
    targets = {}
    for name, (fast, log) in VARIANTS.items():
        if fast and not args.shortcut:
            continue
        policy = work / f"policy-{len(targets)}.yaml"
        query_log = f"{{path: '{work}/q{len(targets)}.jsonl', writer: {log}}}" if log else "off"
        policy.write_text(
            f"upstreams: ['127.0.0.1:{upstream}']\nquery_log: {query_log}\nrate_limit: {{qps: 0}}\n"
            "limits: {max_inflight: 8192}\n" + ("family_model: false\n" if args.no_family else "")
        )
        cfg = load_config(policy)
        model = model or load_model(cfg.model)
        pipeline = build_pipeline(cfg, model)
        server = DnsServer(pipeline.chain, cfg.listen, cfg.limits, pipeline.gates)
        server.shortcut = getattr(pipeline, "shortcut", None) if fast else None  # (older trees have none)
        out = Replies()
        await burst(server, out, packets(names))  # every name answered once: the timed queries are hits
        targets[name] = (pipeline, server, out)
        if log and os.environ.get("HOTPATH_NO_WRITES"):  # (diagnosis: the loop's side of the log alone)
            pipeline.log.hand_over = pipeline.log._pending.clear
    best: dict[str, dict[str, float]] = {name: {} for name in targets}
    for round_ in range(args.rounds):
        misses = packets(C.miss_names(names, args.names, rng, f"r{round_}x"))
        for name, (_, server, out) in targets.items():  # alternated: load drift hits all alike
            gc.collect()
            began = time.process_time()
            for packet in hits:
                server.accept_udp(out, packet, CLIENT)  # type: ignore[arg-type]
            hit_us = (time.process_time() - began) / len(hits) * 1e6
            gc.collect()
            began = time.process_time()
            await burst(server, out, misses)
            miss_us = (time.process_time() - began) / len(misses) * 1e6
            best[name]["hits"] = min(best[name].get("hits", 1e9), hit_us)
            best[name]["misses"] = min(best[name].get("misses", 1e9), miss_us)
    for name, (pipeline, _, _) in targets.items():
        if pipeline.log.enabled:  # a writer process's CPU, counted once it has exited, per line
            child, began = children_cpu(), time.process_time()
            pipeline.log.close()
            spent = children_cpu() - child + time.process_time() - began
            best[name]["writer us per line"] = spent / max(1, pipeline.log.written) * 1e6
        pipeline.forwarder.close()
    return best


async def burst(server: DnsServer, out: Replies, batch: list[bytes], size: int = 64) -> None:
    """Sends `batch` in bursts of `size` and waits for each burst's replies."""
    loop = asyncio.get_running_loop()
    for at in range(0, len(batch), size):
        chunk = batch[at : at + size]
        out.done, out.expect = loop.create_future(), out.count + len(chunk)
        for packet in chunk:
            server.accept_udp(out, packet, CLIENT)  # type: ignore[arg-type]
        await asyncio.wait_for(out.done, 10)
        out.done = None


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--rounds", type=int, default=5)
    a.add_argument("--names", type=int, default=4000)
    a.add_argument("--no-shortcut", dest="shortcut", action="store_false", help="a tree without one")
    a.add_argument("--no-family", action="store_true", help="family_model: false (no hint step with the log)")
    a.add_argument("--out", help="also write the table to bench/results/OUT.md")
    args = a.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-hotpath-"))
    port = C.free_port()
    nsd = C.start_nsd(work, port)
    before = os.getloadavg()
    try:
        C.wait_ready(port)
        import uvloop

        best = uvloop.run(main_async(args, work, port))
    finally:
        nsd.terminate()
        nsd.wait(10)
    after = os.getloadavg()
    base = best["chain"]
    lines = [
        "# CPU per query in the resolver's process (bench/hotpath.py), "
        + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "",
        f"Tree {ROOT.name if TREE is None else TREE}; best of {args.rounds} alternated rounds; 20,000 hits (Zipf over "
        f"{args.names} names) and {args.names} never-seen names per round; load average before "
        f"{' '.join(f'{x:.2f}' for x in before)}, after {' '.join(f'{x:.2f}' for x in after)}.",
        "",
        "| variant | hits us | misses us | log writer us per line (off the loop) | hits vs chain | misses vs chain |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in best.items():
        writer = f"{row['writer us per line']:.2f}" if "writer us per line" in row else "-"
        lines.append(
            f"| {name} | {row['hits']:.2f} | {row['misses']:.2f} | {writer} | {row['hits'] / base['hits']:.3f} "
            f"| {row['misses'] / base['misses']:.3f} |"
        )
    print("\n".join(lines))
    if args.out:
        (ROOT / "bench" / "results" / f"{args.out}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
