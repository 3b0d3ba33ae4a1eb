"""The Python work of a never-seen name, outside the sockets, for several checkouts in one run.

A miss costs the name step (PSL walks), the upstream answer's checks (`replies.forwarded`: read in
full, bailiwick, header and OPT rewritten) and the answer cache's read of it (`wire_layout`). Each
is timed per checkout in its own process (PYTHONPATH=tree) on the same inputs: unique names, and
NSD's answer to a wildcard query (answer + NS + glue, as bench/compare.py's upstream sends). Best of
7 rounds of process CPU time (not wall time: time spent preempted by other jobs is not counted),
trees alternated round by round, so a loaded machine slows every tree alike and the
minimum is the work itself (trees.py, over real sockets, is what a user sees but swings with load).

    python bench/misspath.py ../before-checkout .      # per-step us, to results/misspath.md
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROUNDS, NAMES = 7, 4000

PROBE = r"""
import json, sys, time
import dns.message, dns.rrset
from resolverguard import replies
from resolverguard.names import NameParser
from resolverguard.steps.answers import wire_layout
from resolverguard.wire import parse_query

round_ = int(sys.argv[1])
names = [f"shop{round_}x{i}q7.com." for i in range({n})]
query = dns.message.make_query("shopnews123.com", "A", use_edns=False)
reply = dns.message.make_response(query)
reply.flags |= 0x0400
reply.answer.append(dns.rrset.from_text("shopnews123.com.", 3600, "IN", "A", "192.0.2.1"))
reply.authority.append(dns.rrset.from_text(".", 3600, "IN", "NS", "ns."))
reply.additional.append(dns.rrset.from_text("ns.", 3600, "IN", "A", "127.0.0.1"))
answer, head = reply.to_wire(), parse_query(query.to_wire())
parser = NameParser()
out = {}
start = time.process_time()
for name in names:
    parser.parse(name)
out["name step (PSL, memo miss)"] = (time.process_time() - start) / len(names) * 1e6
start = time.process_time()
for _ in names:
    ours = replies.forwarded(answer, head)
out["replies.forwarded"] = (time.process_time() - start) / len(names) * 1e6
start = time.process_time()
for _ in names:
    wire_layout(ours)
out["answer cache wire_layout"] = (time.process_time() - start) / len(names) * 1e6
print(json.dumps(out))
""".replace("{n}", str(NAMES))


def probe(tree: str, round_: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(round_)],
        cwd=tree,
        env={"PYTHONPATH": tree, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    trees = [str(Path(t).resolve()) for t in sys.argv[1:]]
    best: dict[str, dict[str, float]] = {t: {} for t in trees}
    for round_ in range(ROUNDS):
        for tree in trees:
            for step, us in probe(tree, round_).items():
                best[tree][step] = min(best[tree].get(step, float("inf")), us)
    steps = list(best[trees[0]])
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    lines = [
        f"# Python work per never-seen name (bench/misspath.py), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"CPU microseconds per name (process time), best of {ROUNDS} rounds of {NAMES} names, trees alternated; "
        f"load after: "
        f"{load}. Each tree in its own process with PYTHONPATH=tree.",
        "",
        "| tree | " + " | ".join(steps) + " | sum |",
        "|---|" + "---:|" * (len(steps) + 1),
    ]
    for tree in trees:
        cells = [f"{best[tree][s]:.2f}" for s in steps]
        lines.append(f"| {tree} | " + " | ".join(cells) + f" | {sum(best[tree].values()):.2f} |")
    out = Path(__file__).resolve().parent / "results" / "misspath.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
