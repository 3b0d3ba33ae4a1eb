"""The client watch's own work on compare.py's misses, in process: two checkouts side by side.

    python bench/watch_micro.py [DIR ...] [--rounds 9] [--names 20000] [--pollute 4]

For each checkout (default this one; `DIR`: another, e.g. `git archive main | tar -x -C DIR`), in a
subprocess with that checkout first on the path: a `ClientWatchStep` (action log) on a fresh
`WatchState` with the bundled popular labels, its client flagged by a walk of DGA-looking NXDOMAINs,
its known names filled to their bound (60,000 never-seen names), then rounds of `--names`
never-seen names as compare.py --watch sends them: every other one the model's sinkhole (the
watch's NXDOMAIN), the rest resolved; `seen` for each answer, the loop turned every 32 answers (a
turn's datagrams: the step's drain runs), and between turns `--pollute` MB of memory walked (the
rest of the server: the model, the parser; 0: none), each answer's request read just before (as
the server has it hot). Each round is timed in this thread's CPU
time, with and without the watch's calls (the same requests, the same loop turns and walks), and
the difference per name is the watch's cost. Prints the median and the lowest of the rounds per
checkout, in one process after the other, alternated `--repeat` times. Why: end to end the watch's
2-5% drowns in the machine's noise; this measures what a change to its code saves. Bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, random, string, sys, time
from dnslib import DNSRecord
from resolverguard.chain import Request
from resolverguard.config import ClientWatchConfig, WatchAction
from resolverguard.names import NameParser
from resolverguard.steps.watch import ClientWatchStep, watch_limits, watch_rule
from resolverguard.verdicts import Action, Reason, Verdict
from resolverguard.watch import PopularNames, WatchState
from resolverguard.wire import parse_query

rounds, count, pollute = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
parser = NameParser()
rng = random.Random(5)
CLIENT = ("127.0.0.1", 5353)
RESOLVED = b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + b"\x00" * 20
SINKHOLE = b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + b"\x00" * 20
BLOCKED = Verdict(Action.SINKHOLE, Reason.MODEL)
PASSED = Verdict(Action.PASS, Reason.MODEL)


def make(i, tag):
    dga = i % 2 == 1
    label = "".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(8, 16)))
    name = f"{label}{tag}{i}.com"
    packet = bytes(DNSRecord.question(name).pack())
    request = Request(parse_query(packet), packet, CLIENT, "udp", time.monotonic())
    request.name = parser.parse(name)
    request.score = 0.99 if dga else 0.01
    request.verdict = BLOCKED if dga else PASSED
    return request, SINKHOLE if dga else RESOLVED


cfg = ClientWatchConfig(enabled=True, action=WatchAction.LOG)
state = WatchState(watch_rule(cfg, {"log": 0.5}), watch_limits(cfg), PopularNames.bundled())
step = ClientWatchStep(cfg, state, blocks=False)
junk = bytearray(pollute << 20)


def walk():
    junk[::64] = junk[64::64] + junk[:64:64]  # every cache line of it read and written


def touch(request, reply):  # what the server itself read of the answer and its request just before
    name, verdict = request.name, request.verdict
    return name.label, name.registrable, verdict.action, verdict.reason, request.client[0], request.group, reply[3]


async def run(requests, watch):
    seen = step.seen
    start = time.thread_time()
    for at in range(0, len(requests), 32):
        if watch:
            for request, reply in requests[at : at + 32]:
                touch(request, reply)
                seen(request, reply)
        else:
            for request, reply in requests[at : at + 32]:
                touch(request, reply)
        await asyncio.sleep(0)
        if pollute:
            walk()
    return (time.thread_time() - start) / len(requests) * 1e9


async def main():
    walk_names = [make(2 * i + 1, "w") for i in range(40)]
    for request, reply in walk_names:
        step.seen(request, reply)
        await asyncio.sleep(0)
    assert state.flagged, "the walk did not flag the client"
    await run([make(i, "k") for i in range(60_000)], True)
    on, off = [], []
    for r in range(rounds):
        requests = [make(i, f"r{r}x") for i in range(count)]
        blank = [make(i, f"r{r}y") for i in range(count)]
        if r % 2:
            on.append(await run(requests, True)); off.append(await run(blank, False))
        else:
            off.append(await run(blank, False)); on.append(await run(requests, True))
    print(json.dumps({"on": on, "off": off, "known": len(state.known), "clients": len(state.clients)}))


asyncio.run(main())
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("trees", nargs="*", type=Path, default=[ROOT])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--names", type=int, default=20_000)
    p.add_argument("--pollute", type=int, default=4, help="MB walked between turns")
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    results: dict[str, list[float]] = {str(t): [] for t in a.trees}
    for _ in range(a.repeat):
        for tree in a.trees:
            env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
            cmd = [sys.executable, "-c", CHILD, str(a.rounds), str(a.names), str(a.pollute)]
            out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, timeout=600)
            if out.returncode:
                sys.exit(out.stderr)
            got = json.loads(out.stdout)
            added = [x - y for x, y in zip(got["on"], got["off"], strict=True)]
            results[str(tree)] += added
            print(
                f"{tree}: watch adds {statistics.median(added):.0f} ns per name (median; lowest {min(added):.0f});"
                f" without it {statistics.median(got['off']):.0f} ns; known {got['known']}",
                flush=True,
            )
    print(f"load average {os.getloadavg()[0]:.2f}")
    for tree, added in results.items():
        print(f"{tree}: median {statistics.median(added):.0f} ns per name over {len(added)} rounds")


if __name__ == "__main__":
    main()
