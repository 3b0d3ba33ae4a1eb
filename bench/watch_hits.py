"""The client watch's cost on compare.py's traffic, in process: Zipf hits (answered by the repeat
shortcut) and never-seen misses (the chain and the upstream), watch off and on.

    python bench/watch_hits.py [--rounds 7]                  # this checkout
    WATCH_TREE=/path/to/other/checkout python bench/watch_hits.py   # another one (a before)

As bench/hotpath.py: the real `DnsServer` and pipeline (shipped model, query log off) in this
process, NSD as the upstream, datagrams handed in as uvloop's read callback does; the loop turns
every 32 hits (as dnsperf's 8 x 500 in flight: ~30 datagrams per turn, bench/watch_profile.py), so
the watch's inbox is read as in the server. The watch's client is flagged first (a prelude of
DGA-looking names, action log), as in `compare.py --watch`. Process CPU per query, best of
`--rounds`, off and on alternated. Prints the figures; bench/results/watch_cost.md quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TREE = os.environ.get("WATCH_TREE")
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, TREE or str(ROOT))

import compare as C  # noqa: E402
import hotpath as H  # noqa: E402
import uvloop  # noqa: E402

from resolverguard.config import load_config  # noqa: E402
from resolverguard.model import load_model  # noqa: E402
from resolverguard.pipeline import build_pipeline  # noqa: E402
from resolverguard.server import DnsServer  # noqa: E402


async def measure(work: Path, upstream: int, rounds: int) -> dict[str, dict[str, float]]:
    rng = random.Random(7)
    names = C.benign_names(4000, rng)
    hits = H.packets(rng.choices(names, weights=[1 / (r + 1) ** 1.1 for r in range(len(names))], k=20_000))
    prelude = H.packets(C.miss_names(names, 2000, rng, "p")[1::2])  # DGA-looking: flags the client
    model, targets = None, {}
    for label in ("off", "on"):
        policy = work / f"policy-{label}.yaml"
        policy.write_text(
            f"upstreams: ['127.0.0.1:{upstream}']\nquery_log: off\nrate_limit: {{qps: 0}}\n"
            "limits: {max_inflight: 8192}\n"
            + ("client_watch:\n  enabled: true\n  action: log\n" if label == "on" else "")
        )
        cfg = load_config(policy)
        model = model or load_model(cfg.model)
        pipeline = build_pipeline(cfg, model)
        server = DnsServer(pipeline.chain, cfg.listen, cfg.limits, pipeline.gates, shortcut=pipeline.shortcut)
        out = H.Replies()
        await H.burst(server, out, prelude)
        for _ in range(2):  # answered, then answered from the caches (the shortcut learns them)
            await H.burst(server, out, H.packets(names))
        if pipeline.watch is not None and not pipeline.watch.flagged:
            sys.exit("the prelude did not flag the client: not compare.py --watch's case")
        targets[label] = (server, out)
    best: dict[str, dict[str, float]] = {label: {} for label in targets}
    for r in range(rounds):
        misses = H.packets(C.miss_names(names, 2000, rng, f"r{r}x"))
        for label, (server, out) in targets.items():
            gc.collect()
            began = time.process_time()
            for i, packet in enumerate(hits):
                server.accept_udp(out, packet, H.CLIENT)  # type: ignore[arg-type]
                if i % 32 == 31:
                    await asyncio.sleep(0)
            hit_us = (time.process_time() - began) / len(hits) * 1e6
            gc.collect()
            began = time.process_time()
            await H.burst(server, out, misses)
            miss_us = (time.process_time() - began) / len(misses) * 1e6
            best[label]["hits"] = min(best[label].get("hits", 1e9), hit_us)
            best[label]["misses"] = min(best[label].get("misses", 1e9), miss_us)
    return best


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--rounds", type=int, default=7)
    args = a.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-watchhits-"))
    port = C.free_port()
    nsd = C.start_nsd(work, port)
    try:
        C.wait_ready(port)
        best: Any = uvloop.run(measure(work, port, args.rounds))
    finally:
        nsd.terminate()
        nsd.wait(10)
    print(f"tree {TREE or ROOT}, load average {os.getloadavg()[0]:.1f}, best of {args.rounds} rounds, us per query:")
    for kind in ("hits", "misses"):
        off, on = best["off"][kind], best["on"][kind]
        print(f"  {kind}: watch off {off:.2f}, on {on:.2f}, added {on - off:+.2f}")


if __name__ == "__main__":
    main()
