"""What the query log costs per query, on the event loop and in its writer, without DNS around it.

    python bench/log_writer.py [--records 200000]

bench/compare.py --log measures the whole server under dnsperf, which a loaded machine distorts a
lot; this one feeds the real `QueryLog` records (`entry_of` of a real request, as the log step
makes them) and reads CPU time: the resolver's process (the loop's `entry_of` + `add` and the
hand-over, queue threads included) and the writer (a child process: its rusage once it exited; a
thread: the difference to a run with the file off). Rows: file only, file + store, both writers.
Results to bench/results/log_writer.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dnslib import DNSRecord  # noqa: E402

from resolverguard.chain import Request  # noqa: E402
from resolverguard.config import LogWriter, QueryLogConfig, QueryStoreConfig  # noqa: E402
from resolverguard.names import RegistrableName  # noqa: E402
from resolverguard.steps.querylog import QueryLog, entry_of  # noqa: E402
from resolverguard.verdicts import Action, Reason, Verdict  # noqa: E402
from resolverguard.wire import parse_query  # noqa: E402


def request(i: int) -> Request:
    packet = bytes(DNSRecord.question(f"www{i % 1000}.example.com", "A").pack())
    head = parse_query(packet)
    assert head is not None
    r = Request(head, packet, (f"192.168.1.{i % 50}", 5353), "udp", started=10.0)
    r.name = RegistrableName(f"www{i % 1000}.example.com", "example.com", "example", None)
    r.score, r.upstream_rcode = 0.0123, "NOERROR"
    r.verdict = Verdict(Action.PASS if i % 20 else Action.SINKHOLE, Reason.MODEL)
    return r


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(work: Path, writer: LogWriter, store: bool, records: int, requests: list[Request]) -> dict[str, Any]:
    log_cfg = QueryLogConfig(path=str(work / f"q-{writer.value}-{store}.jsonl"), writer=writer, max_bytes=0)
    store_cfg = QueryStoreConfig(path=work / f"s-{writer.value}.db") if store else None
    log = QueryLog(log_cfg, store=store_cfg)
    child_before, began, wall = children_cpu(), time.process_time(), time.perf_counter()
    for i in range(records):
        log.add(entry_of(requests[i % len(requests)], 10.0005, 1_800_000_000.0 + i * 0.001))
    loop_cpu = time.process_time() - began
    log.close()  # hands over the rest and waits until every line and row is written
    total_cpu = time.process_time() - began
    return {
        "writer": writer.value,
        "store": store,
        "loop_us": round(loop_cpu / records * 1e6, 2),  # on the loop: entry_of + add (+ queue threads)
        "process_us": round(total_cpu / records * 1e6, 2),  # all of the resolver's process
        "child_us": round((children_cpu() - child_before) / records * 1e6, 2),  # the writer process
        "seconds": round(time.perf_counter() - wall, 2),
        "lines": log.written,
        "lost": log.lost,
    }


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--records", type=int, default=200_000)
    args = a.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-logwriter-"))
    requests = [request(i) for i in range(1000)]
    load = os.getloadavg()
    try:
        rows = [
            run(work, writer, store, args.records, requests)
            for store in (False, True)
            for writer in (LogWriter.PROCESS, LogWriter.THREAD)
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "results"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (out / "log_writer.json").write_text(json.dumps({"date": stamp, "load": load, "rows": rows}, indent=2) + "\n")
    lines = [
        f"# Query log cost per query (bench/log_writer.py), {stamp}, {os.cpu_count()} cores, "
        f"{args.records:,} records; load average {' '.join(f'{x:.2f}' for x in load)}",
        "",
        "CPU microseconds per query. `loop`: what the event loop spends (entry_of + add, and the queue's",
        "threads); `resolver process`: everything in the resolver's process; `writer process`: the child",
        "that makes the lines and rows (0 for a thread writer: its work is in the resolver's process).",
        "",
        "| writer | store | loop us | resolver process us | writer process us | lines | lost |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['writer']} | {'file + store' if r['store'] else 'file'} | {r['loop_us']} | {r['process_us']} "
        f"| {r['child_us']} | {r['lines']} | {r['lost']} |"
        for r in rows
    ]
    lines.append("")
    (out / "log_writer.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
