"""Load time and memory of a large blocklist (default 1,000,000 entries in hosts format).

    python bench/lists.py [--entries 1000000]     -> bench/results/lists.{md,json}

Memory is the process's resident set before and after building the lists (and its peak), read
from /proc; the list file is generated into a temporary directory first.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resolverguard.lists import DomainLists  # noqa: E402


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def write_hosts(path: Path, entries: int, rng: random.Random) -> Path:
    """A hosts-format blocklist of `entries` unique made-up domains (shared with compare.py)."""
    with path.open("w") as handle:
        handle.write("# generated blocklist\n")
        for i in range(entries):
            label = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 14)))
            handle.write(f"0.0.0.0 {label}{i}.{rng.choice(['com', 'net', 'org', 'info', 'co.uk'])}\n")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=1_000_000)
    a = p.parse_args()
    path = write_hosts(Path(tempfile.mkdtemp()) / "hosts.txt", a.entries, random.Random(1))
    size_mb = path.stat().st_size / 1e6
    rss_before = status_kb("VmRSS")
    started = time.perf_counter()
    lists = DomainLists.build([], [], [], [path])
    seconds = time.perf_counter() - started
    rss_after, peak = status_kb("VmRSS"), status_kb("VmHWM")
    probe = [f"www.x{i}.example" for i in range(20_000)]
    started = time.perf_counter()
    for name in probe:
        lists.deny.match(name)
    lookup_us = (time.perf_counter() - started) / len(probe) * 1e6
    result = {
        "entries": len(lists.deny),
        "file_mb": round(size_mb, 1),
        "load_s": round(seconds, 2),
        "rss_growth_mb": round((rss_after - rss_before) / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "lookup_us_miss_3_labels": round(lookup_us, 2),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "lists.json").write_text(json.dumps(result, indent=2))
    (out / "lists.md").write_text(
        f"# Large blocklist (bench/lists.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n"
        + "| "
        + " | ".join(result)
        + " |\n|"
        + "---|" * len(result)
        + "\n| "
        + " | ".join(str(v) for v in result.values())
        + " |\n"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
