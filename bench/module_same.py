"""Same verdicts from two Unbound modules: one fixed set of never-seen names through Unbound with the
module and verdict service of this checkout and of a baseline checkout, with 1 and 2 threads, each
name asked twice (the second answer comes from Unbound's cache), on 127.0.0.1 only.

    python bench/module_same.py --baseline /path/to/old/checkout [--names 2000]

Why: asking the service in parallel with the resolution (issue #17) changes when the verdict is
taken and who stores the answer in Unbound's cache; the answers must not change. Every answer is
compared with the baseline's first answer (1 thread); results go to bench/results/module_TAG.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import random
import tempfile
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
from compare import (
    ROOT,
    benign_names,
    free_port,
    load_average,
    miss_names,
    start_nsd,
    start_unbound,
    start_verdicts,
    wait_ready,
)


def ask(port: int, name: str) -> str:
    """The A answer as text (sorted addresses, else the rcode), "lost" after 3 tries."""
    for _ in range(3):
        try:
            reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)
        except (dns.exception.Timeout, OSError):
            continue
        return ",".join(sorted(rr.to_text() for rrset in reply.answer for rr in rrset)) or f"rcode {reply.rcode()}"
    return "lost"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", type=Path, required=True, help="the other checkout (its module and service)")
    p.add_argument("--names", type=int, default=2000)
    p.add_argument("--tag", default="v2_same")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-same-"))
    names = miss_names(benign_names(2000, random.Random(3)), a.names, random.Random(4), "s")
    rows = {"old1": (a.baseline, 1), "new1": (ROOT, 1), "old2": (a.baseline, 2), "new2": (ROOT, 2)}
    ports = {k: free_port() for k in ("nsd", *rows)}
    procs = [start_nsd(work, ports["nsd"])]
    answers: dict[tuple[str, int], list[str]] = {}
    load_before = load_average()
    try:
        wait_ready(ports["nsd"])
        for key, (root, threads) in rows.items():
            service, sock = start_verdicts(work, key, root)
            module = root / "resolverguard" / "unbound_module.py"
            procs += [service, start_unbound(work, ports[key], ports["nsd"], "", threads, sock, module)]
            wait_ready(ports[key])
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            for key in rows:
                for turn in (1, 2):
                    answers[(key, turn)] = list(pool.map(lambda name, k=key: ask(ports[k], name), names))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    base = answers[("old1", 1)]
    lines = [
        f"# Same verdicts, this checkout against {a.baseline} (bench/module_same.py), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average before {load_before}, "
        f"after {load_average()}",
        "",
        f"{len(names)} never-seen names (half DGA-looking), each asked twice (the second from Unbound's cache).",
        "",
        "| module, threads, ask | sinkholed | lost | differ from the baseline's first answers |",
        "|---|---|---|---|",
    ]
    for (key, turn), got in answers.items():
        differ = [name for name, x, y in zip(names, base, got, strict=True) if x != y]
        label = f"{'baseline' if key.startswith('old') else 'this checkout'}, {key[-1]}, {turn}"
        lines.append(
            f"| {label} | {got.count('0.0.0.0')} | {got.count('lost')} | {len(differ)} {' '.join(differ[:5])} |"
        )
    out = ROOT / "bench" / "results" / f"module_{a.tag}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
