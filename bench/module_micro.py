"""The Unbound module's costs in process, one part at a time (issue #17, mod4).

    python bench/module_micro.py [--parts gate,service,reload] [--names 20000] [--reloads 10]

* gate: `Gate.decide` per never-seen name on Unbound's thread (the misses of bench/compare.py),
  best of 5 passes, us per name;
* service: the verdict service's cost per asked name, in process: lines of 64 names (one model batch)
  fed to a `ModuleConnection` as the module writes them, answered through the real chain and model,
  best of 3 passes; us per name and the writes per name (one system call each);
* reload: Unbound with the module and the service, `unbound-control reload` N times while idle and
  the time from the reload until a never-seen name is answered (reload-to-ready), median and max;
  plus the time a fresh `python3 -S -I` takes to exec unbound_gate.py (min of 10: what a reload runs again).

Prints one line per part with the load average; run it under the bench lock.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compare import (
    ROOT,
    benign_names,
    free_port,
    load_average,
    miss_names,
    query_files,
    reload_under_load,
    start_nsd,
    start_unbound,
    start_verdicts,
    unbound_conf,
    wait_ready,
)

from resolverguard.config import load_config
from resolverguard.model import load_model
from resolverguard.unbound_gate import read_snapshot
from resolverguard.unboundservice import ModuleConnection, VerdictService


def names(n: int, tag: str) -> list[str]:
    rng = random.Random(7)
    return miss_names(benign_names(5000, rng), n, rng, tag)


def gate_part(work: Path, n: int) -> str:
    service = service_in(work)
    gate, why = read_snapshot(service.snapshot)
    assert gate is not None, why
    asked = names(n, "g")
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for name in asked:
            gate.decide(name)
        best = min(best, time.perf_counter() - start)
    return f"gate: {best / n * 1e6:.2f} us per name (decide, best of 5, {n} names)"


def service_in(work: Path) -> VerdictService:
    policy = work / "policy.yaml"
    policy.write_text("query_log: off\n")
    cfg = load_config(policy)
    return VerdictService(cfg, load_model(cfg.model), work / "micro.sock", policy)


class Counting:
    """A transport that counts writes (each one system call on a real socket) and answer lines."""

    def __init__(self) -> None:
        self.writes = self.lines = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.lines += data.count(b"\n")

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def drive_service(service: VerdictService, batches: list[bytes], total: int) -> tuple[float, int]:
    conn = ModuleConnection(service)
    transport = Counting()
    conn.connection_made(transport)  # type: ignore[arg-type]
    start = time.perf_counter()
    for batch in batches:
        conn.data_received(batch)
        await asyncio.sleep(0)
    while transport.lines < total:
        await asyncio.sleep(0)
    return time.perf_counter() - start, transport.writes


def service_part(work: Path, n: int, bare: bool = False) -> str:
    service = service_in(work)
    best, writes = float("inf"), 0
    for round_ in range(3):  # new names each pass: none from the verdict cache
        asked = names(n, f"s{round_}x")
        gate = "a" if bare else "a={}"  # the module sends the registrable name its gate found (here: the name)
        lines = [f"{name}.\t1\t127.0.0.1\t{gate.format(name)}\t{i + 1}\n".encode() for i, name in enumerate(asked)]
        batches = [b"".join(lines[i : i + 64]) for i in range(0, n, 64)]
        seconds, writes = asyncio.run(drive_service(service, batches, n))
        best = min(best, seconds)
    what = "service (lines without the registrable name)" if bare else "service"
    return f"{what}: {best / n * 1e6:.1f} us per asked name, {writes / n:.3f} writes per name (best of 3, {n} names)"


def reload_part(work: Path, reloads: int) -> str:
    nsd_port = free_port()
    procs = [start_nsd(work, nsd_port)]
    said = []
    try:
        wait_ready(nsd_port)
        service, sock = start_verdicts(work, "micro")
        procs.append(service)
        for name, verdicts in (("plain", None), ("module", sock)):
            port = free_port()
            procs.append(start_unbound(work, port, nsd_port, "", 1, verdicts=verdicts))
            wait_ready(port)
            took = []
            control = ["unbound-control", "-c", str(unbound_conf(work, port)), "reload"]
            for i in range(reloads):
                start = time.monotonic()
                subprocess.run(control, capture_output=True, timeout=30, check=True)
                ask_until_answered(port, f"ready{i}x{random.random():.6f}".replace(".", "") + ".com")
                took.append(time.monotonic() - start)
            said.append(f"{name} median {statistics.median(took):.3f} s, max {max(took):.3f} s")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    gate_file = ROOT / "resolverguard" / "unbound_gate.py"
    execs = []
    for _ in range(10):
        code = (  # the file's own imports and definitions, as the module's loader runs them
            "import time;t=time.perf_counter();"
            f"exec(compile(open({str(gate_file)!r}).read(),'g','exec'),{{'__name__':'g'}});"
            "print(time.perf_counter()-t)"
        )
        out = subprocess.run([sys.executable, "-S", "-I", "-c", code], capture_output=True, text=True, check=True)
        execs.append(float(out.stdout))
    return (
        f"reload: reload-to-ready {'; '.join(said)} ({reloads} reloads, "
        f"idle, 1 thread); unbound_gate.py exec in a fresh interpreter min {min(execs) * 1000:.1f} ms (of 10)"
    )


def lost_part(work: Path, reloads: int, qps: float) -> str:
    """Answers lost while `reloads` reloads (bench/compare.py's reload_under_load) hit plain Unbound
    and Unbound with the module, 2 threads each, one after the other, on never-seen names at `qps`."""
    files = query_files(work, 1000, random.Random(11), int((reloads * 0.2 + 6) * qps * 1.5))
    nsd_port = free_port()
    procs = [start_nsd(work, nsd_port)]
    said = []
    try:
        wait_ready(nsd_port)
        service, sock = start_verdicts(work, "lost")
        procs.append(service)
        for name, verdicts in (("unbound2", None), ("module2", sock)):
            port = free_port()
            unbound = start_unbound(work, port, nsd_port, "", 2, verdicts=verdicts)
            procs.append(unbound)
            got = reload_under_load(work, port, unbound, files["misses"], qps, reloads)
            said.append(f"{name} lost {got['lost']} of {got['sent']} (alive {got['alive']})")
            unbound.terminate()
            unbound.wait(10)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    return f"lost: {reloads} reloads at {qps:.0f} qps: " + ", ".join(said)


def ask_until_answered(port: int, name: str) -> None:
    import socket

    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    query = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.01)
        while time.monotonic() < deadline:
            s.sendto(query, ("127.0.0.1", port))
            try:
                s.recv(512)
                return
            except OSError:
                continue
    raise RuntimeError("no answer 10 s after the reload")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="gate,service,reload")
    p.add_argument("--names", type=int, default=20000)
    p.add_argument("--reloads", type=int, default=10)
    p.add_argument("--qps", type=float, default=1200.0, help="lost: dnsperf's rate while reloading")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-micro-"))
    parts: dict[str, Any] = {
        "gate": lambda: gate_part(work, a.names),
        "service": lambda: service_part(work, a.names),
        "service-bare": lambda: service_part(work, a.names, bare=True),
        "reload": lambda: reload_part(work, a.reloads),
        "lost": lambda: lost_part(work, a.reloads, a.qps),
    }
    for part in a.parts.split(","):
        print(f"{parts[part]()}; load {load_average()}", flush=True)


if __name__ == "__main__":
    main()
