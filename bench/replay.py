"""The end-to-end judge: of the C2 lookups an infected machine makes, how many does resolverguard
block, and what does it cost the benign clients?

    python bench/replay.py [--policy examples/home-gateway.yaml] [--model M.tflite] [--families a,b]
                           [--duration 120] [--seed N]      (writes bench/results/replay.{md,json})

A seeded trace (bench/traffic.py: benign clients browsing; infected clients of DGA families the model
never trained on, walking their lists to the registered C2, then beaconing) is played in real time
through a real `resolverguard serve` process, one 127.0.1.x source address per client, against an
upstream that answers from the trace's truth (bench/truth.py). The policy is the file given, as
deployed; only listen, upstreams and the query log path are changed. When the policy has a
`client_watch:` section the same trace is played through two resolvers at once (each lookup sent to
both at the same moment, each resolver with its own upstream): the policy as given ("watch on") and with
`client_watch.enabled: false` ("watch off"); without one, through one ("model only").

Blocked is judged from the answer the client receives: the policy's sinkhole address, REFUSED, or
NXDOMAIN for a name that exists. The query log is read for a cross-check (its blocking actions
counted) and for the `client_flagged` / `likely_c2` events of the client watch.
Bounded: the trace is capped at `max_queries` lookups; the run lasts the trace's duration (150 s by
default) plus the resolvers' start and at most 3 s of waiting for answers: under 3 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from dnslib import RCODE, DNSRecord

sys.path.insert(0, str(Path(__file__).resolve().parent))
from traffic import (  # noqa: E402  (bench/ is a folder of scripts, not a package)
    BENIGN_ROLES,
    DGA_ROLES,
    Trace,
    TraceParams,
    generate,
    load_benign,
    load_family,
)
from truth import TruthUpstream, address_of  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("RESOLVERGUARD_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_MODEL = ROOT / "models" / "default.tflite"
# What models/REPORT.md says the shipped model never trained on, for metadata that does not list it.
REPORT_HELD_OUT = ("charbot", "gozi", "suppobox", "nymaim2", "bigviktor")
MAX_DURATION = 270.0  # seconds of trace; with the resolvers' start and the last answers, under 5 minutes
ANSWER_TIMEOUT = 3.0  # seconds a client waits for an answer before counting the lookup as lost
BLOCKING_ACTIONS = ("sinkhole", "nxdomain", "refuse")


@dataclass
class Answer:
    rcode: int
    addresses: tuple[str, ...]
    latency: float


@dataclass
class PassRun:
    """What one pass saw: one answer (or None) per lookup, send times, the log, stderr; the upstream
    count is that pass's own upstream's."""

    name: str
    answers: list[Answer | None]
    sent_at: list[float]  # wall clock
    lag: list[float]  # seconds each lookup left later than the trace said
    log: list[dict[str, Any]]
    stderr: list[str]
    model_version: str
    wall_seconds: float
    upstream_queries: int


# ---------------------------------------------------------------- which families


def families_for(model: Path, data: Path, override: str | None) -> tuple[list[str], str]:
    """The families to replay and why those: only families the model never trained on mean anything."""
    available = sorted(p.name.removesuffix(".txt.gz") for p in (data / "dga").glob("*.txt.gz"))
    if override:
        chosen = [f.strip() for f in override.split(",") if f.strip()]
        why = "--families"
    else:
        meta = json.loads(model.with_suffix(".json").read_text())
        training = meta.get("training") or {}
        if training.get("held_out_families"):
            chosen, why = (
                list(training["held_out_families"]),
                f"{model.with_suffix('.json').name}: training.held_out_families",
            )
        elif training.get("families"):
            trained = set(training["families"])
            chosen = [f for f in available if f not in trained]
            why = f"{model.with_suffix('.json').name}: every family in {data / 'dga'} not in training.families"
        else:
            chosen = list(REPORT_HELD_OUT)
            why = "models/REPORT.md: never trained on (the model's metadata lists no families)"
    missing = [f for f in chosen if f not in available]
    if missing:
        raise SystemExit(f"no data for families {missing} in {data / 'dga'}")
    return chosen, why


# ---------------------------------------------------------------- the policy as deployed


def _absolute_paths(node: Any, base: Path) -> Any:
    """Relative file paths in the policy (lists, model) made absolute: the copy lives elsewhere."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("allow_files", "deny_files") and isinstance(value, list):
                value = [str(base / v) if isinstance(v, str) and not Path(v).is_absolute() else v for v in value]
            elif key in ("model", "family_model") and isinstance(value, str) and not Path(value).is_absolute():
                value = str(base / value)
            out[key] = _absolute_paths(value, base)
        return out
    if isinstance(node, list):
        return [_absolute_paths(v, base) for v in node]
    return node


def policy_for_pass(policy: Path, log_path: Path, watch: bool | None) -> dict[str, Any]:
    """The policy with the query log in a file we read; `watch` False turns `client_watch` off
    (None: leave it as the file says)."""
    data = _absolute_paths(yaml.safe_load(policy.read_text()) or {}, policy.resolve().parent)
    log = data.get("query_log")
    data["query_log"] = {**log, "path": str(log_path)} if isinstance(log, dict) else str(log_path)
    if isinstance(log, dict):
        data["query_log"].pop("clients", None)  # full addresses: the replay tells clients apart by them
    if watch is False:
        data["client_watch"] = {**(data.get("client_watch") or {}), "enabled": False}
    data["control_socket"] = False  # the passes run side by side: none may take the user's control socket
    return data


def sinkhole_v4(policy: dict[str, Any]) -> str:
    sink = policy.get("sinkhole") or {}
    return str(sink.get("ipv4", "0.0.0.0"))


# ---------------------------------------------------------------- the resolver process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The server's own ready line; "listening on" alone also matched a control-socket error ("another server
# is listening on this control socket"), which gave replay.md its model version "?".
READY = re.compile(r"^resolverguard(?:\[\d+\])?: listening on .*, model ([^,\s]+)")


class Resolver:
    """`resolverguard serve` as a process; stderr drained by a thread (an alert per flagged client
    must never fill the pipe and stall the resolver)."""

    def __init__(self, policy: Path, port: int, upstream: int, model: Path | None, source: Path) -> None:
        cmd = [
            sys.executable,
            "-m",
            "resolverguard",
            "serve",
            "--config",
            str(policy),
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            f"127.0.0.1:{upstream}",
        ]
        if model is not None:
            cmd += ["--model", str(model)]
        # `python -m` puts the working directory first on sys.path: the checkout named runs, whatever the venv holds
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")]))}
        self.port = port
        self.proc = subprocess.Popen(
            cmd, cwd=source, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if READY.search(line):
                self.ready.set()
        self.ready.set()

    def wait_ready(self, timeout: float = 90.0) -> str:
        if not self.ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise SystemExit("resolverguard did not start:\n" + "\n".join(self.lines[-20:]))
        found = next((m for m in map(READY.search, self.lines) if m), None)
        return found.group(1) if found else "?"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ---------------------------------------------------------------- the replayer


def query_bytes(qid: int, name: str) -> bytes:
    """A plain A query with RD set, as a stub resolver sends it."""
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + wire + b"\x00\x01\x00\x01"


class _ClientSocket(asyncio.DatagramProtocol):
    """One client's socket: answers matched to lookups by query ID."""

    def __init__(self, answers: list[Answer | None], started: dict[int, float]) -> None:
        self.answers, self.started = answers, started
        self.pending: dict[int, int] = {}  # query ID -> lookup index
        self.next_id = 1
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, index: int, name: str) -> None:
        qid, self.next_id = self.next_id, (self.next_id % 0xFFFF) + 1
        self.pending[qid] = index
        assert self.transport is not None
        self.transport.sendto(query_bytes(qid, name))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        index = self.pending.pop(int.from_bytes(data[:2], "big"), None)
        if index is None:
            return
        try:
            reply = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - a garbled answer is counted as lost
            return
        addresses = tuple(str(rr.rdata) for rr in reply.rr if rr.rtype == 1)
        self.answers[index] = Answer(reply.header.rcode, addresses, time.perf_counter() - self.started[index])

    def error_received(self, exc: Exception) -> None:
        pass


async def _client_sockets(
    trace: Trace, port: int, answers: list[Answer | None], started: dict[int, float]
) -> dict[int, _ClientSocket]:
    """One socket per client, bound to the client's own 127.0.1.x address, talking to one resolver."""
    loop = asyncio.get_running_loop()
    sockets: dict[int, _ClientSocket] = {}
    for c in trace.clients:
        _, proto = await loop.create_datagram_endpoint(
            lambda: _ClientSocket(answers, started), local_addr=(c.address, 0), remote_addr=("127.0.0.1", port)
        )
        sockets[c.index] = proto
    return sockets


async def play(trace: Trace, ports: list[int]) -> tuple[list[list[Answer | None]], list[float], list[float]]:
    """Sends every lookup at its time from its client's address, to every resolver at once (the passes
    see the same lookups at the same moments); waits for the stragglers. Returns the answers per
    resolver, the wall-clock send time and the send lag of each lookup."""
    loop = asyncio.get_running_loop()
    answers: list[list[Answer | None]] = [[None] * len(trace.lookups) for _ in ports]
    started: list[dict[int, float]] = [{} for _ in ports]
    sockets = [await _client_sockets(trace, port, answers[k], started[k]) for k, port in enumerate(ports)]
    sent_at = [0.0] * len(trace.lookups)
    lag = [0.0] * len(trace.lookups)
    t0 = loop.time() + 0.2
    for i, q in enumerate(trace.lookups):
        delay = t0 + q.t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lag[i], sent_at[i] = max(0.0, loop.time() - (t0 + q.t)), time.time()
        for k in range(len(ports)):
            started[k][i] = time.perf_counter()
            sockets[k][q.client].send(i, q.qname)
    deadline = loop.time() + ANSWER_TIMEOUT
    everyone = [s for per_port in sockets for s in per_port.values()]
    while loop.time() < deadline and any(s.pending for s in everyone):
        await asyncio.sleep(0.05)
    for s in everyone:
        if s.transport:
            s.transport.close()
    return answers, sent_at, lag


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@dataclass(frozen=True)
class PassSetup:
    name: str
    policy: dict[str, Any]
    log_path: Path


async def run_passes(trace: Trace, setups: list[PassSetup], plan: Plan) -> list[PassRun]:
    """One resolver process per pass, each with its own truth upstream, all started first; then the
    trace through all of them at once; then their logs."""
    loop = asyncio.get_running_loop()
    upstreams = [TruthUpstream(trace.exists) for _ in setups]
    resolvers: list[Resolver] = []
    try:
        for setup, upstream in zip(setups, upstreams, strict=True):
            await upstream.start()
            policy_path = setup.log_path.with_suffix(".yaml")
            policy_path.write_text(yaml.safe_dump(setup.policy, sort_keys=False))
            resolvers.append(Resolver(policy_path, free_port(), upstream.port, plan.model, plan.source))
        versions = [await loop.run_in_executor(None, r.wait_ready) for r in resolvers]
        started = time.perf_counter()
        answers, sent_at, lag = await play(trace, [r.port for r in resolvers])
        wall = time.perf_counter() - started
    finally:
        for r in resolvers:
            r.stop()
        for u in upstreams:
            if u.port:
                await u.stop()
    return [
        PassRun(s.name, a, sent_at, lag, read_log(s.log_path), r.lines, v, wall, u.queries)
        for s, a, r, v, u in zip(setups, answers, resolvers, versions, upstreams, strict=True)
    ]


def judge(answer: Answer | None, qname: str, exists: bool, sinkhole: str) -> str:
    """ok, blocked, error (SERVFAIL or a wrong answer) or lost (no answer in time)."""
    if answer is None:
        return "lost"
    if sinkhole in answer.addresses or answer.rcode == RCODE.REFUSED:
        return "blocked"
    if exists:
        if answer.rcode == RCODE.NOERROR and address_of(qname) in answer.addresses:
            return "ok"
        return "blocked" if answer.rcode == RCODE.NXDOMAIN else "error"
    return "ok" if answer.rcode == RCODE.NXDOMAIN else "error"


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _log_time(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def flags_from_log(trace: Trace, log: list[dict[str, Any]]) -> dict[str, Any]:
    """Per client: when it was first flagged, and how many of its DGA lookups the log holds before
    that (log order: the resolver writes it in one process, in order)."""
    by_address = {c.address: c for c in trace.clients}
    dga_names = {c.address: {*c.walk, c.c2} for c in trace.clients if c.family}
    seen: Counter[str] = Counter()
    flagged: dict[str, dict[str, Any]] = {}
    likely_c2: list[dict[str, Any]] = []
    for line in log:
        event, client = line.get("event"), str(line.get("client"))
        if event is None:
            if line.get("qname") in dga_names.get(client, ()):
                seen[client] += 1
        elif event == "client_flagged" and client in by_address and client not in flagged:
            flagged[client] = {
                "dga_lookups_before": seen[client],
                "time": _log_time(line.get("time")),
                "names": line.get("names"),
                "family_hint": line.get("family_hint"),
            }
        elif event == "likely_c2":
            likely_c2.append({"name": line.get("name"), "client": client})
    return {"flagged": flagged, "likely_c2": likely_c2}


def summarize(trace: Trace, run: PassRun, sinkhole: str, families: list[str]) -> dict[str, Any]:
    verdicts = [
        judge(a, q.qname, q.qname in trace.exists, sinkhole) for a, q in zip(run.answers, trace.lookups, strict=True)
    ]
    clients = {c.index: c for c in trace.clients}
    events = flags_from_log(trace, run.log)
    flagged = events["flagged"]
    out: dict[str, Any] = {"families": {}, "pace": {}}

    def count(select: Any) -> tuple[int, int]:
        picked = [v for v, q in zip(verdicts, trace.lookups, strict=True) if select(q)]
        return sum(v == "blocked" for v in picked), len(picked)

    for family in families:
        members = [c for c in trace.clients if c.family == family]
        out["families"][family] = _family_row(trace, verdicts, members, flagged, run)
    for pace in ("fast", "slow"):
        members = [c for c in trace.clients if c.pace == pace]
        out["pace"][pace] = _family_row(trace, verdicts, members, flagged, run)
    benign_ids = {c.index for c in trace.clients if not c.family}
    blocked, total = count(lambda q: q.client in benign_ids)
    by_role = {
        role: dict(
            zip(("blocked", "lookups"), count(lambda q, r=role: q.client in benign_ids and q.role == r), strict=True)
        )
        for role in BENIGN_ROLES
    }
    blocked_names = Counter(
        (q.qname, q.role)
        for v, q in zip(verdicts, trace.lookups, strict=True)
        if v == "blocked" and not clients[q.client].family
    )
    benign_flagged = sorted(a for a in flagged if not clients[_index(trace, a)].family)
    out["benign"] = {
        "clients": len(benign_ids),
        "lookups": total,
        "blocked": blocked,
        "blocked_share": _share(blocked, total),
        "by_role": by_role,
        "blocked_names": [{"name": n, "role": r, "times": k} for (n, r), k in blocked_names.most_common(20)],
        "flagged": len(benign_flagged),
        "flagged_clients": benign_flagged,
    }
    rows = [r for r in out["families"].values() if r["c2_all_share"] is not None]
    out["mean_c2_all_share"] = round(statistics.mean(r["c2_all_share"] for r in rows), 4) if rows else None
    out["min_c2_all_share"] = min((r["c2_all_share"] for r in rows), default=None)
    answered_blocked = verdicts.count("blocked")
    log_lines = [x for x in run.log if "event" not in x]
    log_blocked = [x for x in log_lines if x.get("action") in BLOCKING_ACTIONS]
    out["health"] = {
        "lookups": len(verdicts),
        "verdicts": dict(Counter(verdicts)),
        "blocked_by_answers": answered_blocked,
        "blocked_by_log": len(log_blocked),
        "log_lines": len(log_lines),
        "log_block_reasons": dict(Counter(str(x.get("reason")) for x in log_blocked)),
        "log_actions": dict(Counter(str(x.get("action")) for x in log_lines)),
        "likely_c2_events": events["likely_c2"][:50],
        "likely_c2_right": sum(1 for e in events["likely_c2"] if _is_c2(trace, str(e["name"]))),
        "likely_c2_wrong": sorted({str(e["name"]) for e in events["likely_c2"] if not _is_c2(trace, str(e["name"]))}),
        "lag_p99_ms": _quantile(run.lag, 0.99),
        "lag_max_ms": round(1000 * max(run.lag), 1) if run.lag else None,
        "latency_p50_ms": _quantile([a.latency for a in run.answers if a], 0.5),
        "latency_p99_ms": _quantile([a.latency for a in run.answers if a], 0.99),
        "upstream_queries": run.upstream_queries,
        "wall_seconds": round(run.wall_seconds, 1),
        "stderr_alerts": sum("flag" in line.lower() for line in run.stderr),
    }
    return out


def _is_c2(trace: Trace, name: str) -> bool:
    """A likely-C2 event names a registrable name: right when it is a C2 of the trace or one's parent."""
    return any(c.c2 == name or c.c2.endswith("." + name) for c in trace.clients if c.family)


def _quantile(values: list[float], q: float) -> float | None:
    """In milliseconds. Informative only: the replay shares the CPU with everything else running."""
    return round(1000 * sorted(values)[int(q * (len(values) - 1))], 2) if values else None


def _index(trace: Trace, address: str) -> int:
    return next(c.index for c in trace.clients if c.address == address)


def _family_row(
    trace: Trace, verdicts: list[str], members: list[Any], flagged: dict[str, Any], run: PassRun
) -> dict[str, Any]:
    ids = {c.index for c in members}
    first_c2: dict[int, str] = {}
    c2_blocked = c2_total = browse_blocked = browse_total = walk = walk_blocked = 0
    first_walk_time: dict[int, float] = {}
    for i, (v, q) in enumerate(zip(verdicts, trace.lookups, strict=True)):
        if q.client not in ids:
            continue
        if q.role in ("c2", "beacon"):
            c2_total += 1
            c2_blocked += v == "blocked"
            first_c2.setdefault(q.client, v)
        elif q.role == "walk":
            walk += 1
            walk_blocked += v == "blocked"
        else:
            browse_total += 1
            browse_blocked += v == "blocked"
        if q.role in DGA_ROLES:
            first_walk_time.setdefault(q.client, run.sent_at[i])
    until = []
    for c in members:
        f = flagged.get(c.address)
        seconds = None
        if f and f["time"] is not None and c.index in first_walk_time:
            seconds = round(f["time"] - first_walk_time[c.index], 2)
        until.append(
            {
                "client": c.address,
                "pace": c.pace,
                "walk": len(c.walk),
                "dga_lookups_before_flag": f["dga_lookups_before"] if f else None,
                "seconds_to_flag": seconds,
            }
        )
    first_blocked = sum(v == "blocked" for v in first_c2.values())
    return {
        "clients": len(members),
        "walk_lookups": walk,
        "walk_blocked": walk_blocked,
        "c2_first_blocked": first_blocked,
        "c2_first_total": len(first_c2),
        "c2_first_share": _share(first_blocked, len(first_c2)),
        "c2_all_blocked": c2_blocked,
        "c2_all_total": c2_total,
        "c2_all_share": _share(c2_blocked, c2_total),
        "browsing_blocked": browse_blocked,
        "browsing_total": browse_total,
        "flagged": sum(1 for c in members if c.address in flagged),
        "until_flagged": until,
    }


# ---------------------------------------------------------------- results


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _until(row: dict[str, Any]) -> str:
    """Per client: DGA lookups before the flag / NXDOMAIN names walked before the C2 ("-" never flagged)."""
    return ", ".join(
        f"{'-' if u['dga_lookups_before_flag'] is None else u['dga_lookups_before_flag']}/{u['walk']}"
        for u in row["until_flagged"]
    )


TABLE_HEAD = (
    "| clients | walk lookups, NX (blocked) | C2 first blocked | C2 all blocked | own browsing blocked | flagged "
    "| lookups until flagged |"
)


def _row(label: str, r: dict[str, Any]) -> str:
    first = f"{r['c2_first_blocked']}/{r['c2_first_total']} ({_pct(r['c2_first_share'])})"
    every = f"{r['c2_all_blocked']}/{r['c2_all_total']} ({_pct(r['c2_all_share'])})"
    return (
        f"| {label} | {r['clients']} | {r['walk_lookups']} ({r['walk_blocked']}) | {first} | {every} | "
        f"{r['browsing_blocked']}/{r['browsing_total']} | {r['flagged']}/{r['clients']} | {_until(r)} |"
    )


def _header(result: dict[str, Any]) -> list[str]:
    t, m = result["trace"], result["model"]
    cut = " (cut at --max-queries)" if t["truncated"] else ""
    return [
        "# Replay: C2 lookups blocked, and the cost to benign clients",
        "",
        f"`{result['command']}`",
        "",
        f"Model `{m['path']}` version {m['version']}; policy `{result['policy']}` as deployed (listen, upstream, "
        f"query log path changed, control socket off). Families ({result['families_why']}): "
        f"{', '.join(result['families'])}.",
        "",
        f"Trace: seed {t['params']['seed']}, {t['params']['duration']:.0f} s, {t['benign_clients']} benign clients, "
        f"{t['infected_clients']} infected ({t['params']['infected_per_family']} per family, alternately fast and "
        f"slow walkers), {t['lookups']} lookups{cut} ({t['by_role']}); {t['exists']} names exist, the rest NXDOMAIN. "
        f"Whole run {result['wall_seconds']:.0f} s.",
        "",
        "Blocked = the answer the client got was the sinkhole address, REFUSED, or NXDOMAIN for a name that "
        'exists. "C2 first" = each infected client\'s first lookup of its C2 (the end of its walk); "C2 all" = '
        'that and every beacon. "Lookups until flagged" = the client\'s DGA lookups in the query log before its '
        '`client_flagged` event / the NXDOMAIN names it walked before its C2, one pair per client ("-": never '
        "flagged; a client whose C2 came first, /0, has nothing to give it away before the C2).",
        "",
    ]


def _pass_section(name: str, p: dict[str, Any]) -> list[str]:
    b, h = p["benign"], p["health"]
    lines = [f"## {name}", "", "| family " + TABLE_HEAD, "|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += [_row(fam, r) for fam, r in p["families"].items()]
    lines += [_row(f"*{pace} walkers*", r) for pace, r in p["pace"].items()]
    lines.append(
        f"| *benign clients* | {b['clients']} | - | - | - | {b['blocked']}/{b['lookups']} | "
        f"{b['flagged']}/{b['clients']} | |"
    )
    roles = ", ".join(f"{r} {v['blocked']}/{v['lookups']}" for r, v in b["by_role"].items())
    flagged = f" ({', '.join(b['flagged_clients'])})" if b["flagged_clients"] else ""
    lines += [
        "",
        f"C2 lookups blocked, mean over families: {_pct(p['mean_c2_all_share'])}; "
        f"lowest family: {_pct(p['min_c2_all_share'])}.",
        "",
        f"Benign clients: {b['blocked']} of {b['lookups']} lookups blocked ({100 * (b['blocked_share'] or 0):.3f}%); "
        f"{b['flagged']} of {b['clients']} clients flagged{flagged}. Blocked by role: {roles}.",
    ]
    if b["blocked_names"]:
        names = ", ".join(f"`{x['name']}` ({x['role']}, {x['times']}x)" for x in b["blocked_names"])
        lines.append(f"Benign names blocked: {names}.")
    return [
        *lines,
        "",
        f"Health: answers {h['verdicts']}; blocked by the answers {h['blocked_by_answers']}, by the log "
        f"{h['blocked_by_log']} ({h['log_block_reasons']}); {h['log_lines']} log lines, actions "
        f"{h['log_actions']}; likely-C2 events "
        f"{len(h['likely_c2_events'])} ({h['likely_c2_right']} a C2 of the trace; not: "
        f"{h['likely_c2_wrong'] or 'none'}); send lag p99 {h['lag_p99_ms']} ms (max {h['lag_max_ms']}); answer "
        f"latency p50 {h['latency_p50_ms']} / p99 {h['latency_p99_ms']} ms; upstream asked "
        f"{h['upstream_queries']} times; pass {h['wall_seconds']} s.",
        "",
    ]


def markdown(result: dict[str, Any]) -> str:
    lines = _header(result)
    if result.get("pending"):
        lines += [f"**{result['pending']}**", ""]
    for name, p in result["passes"].items():
        lines += _pass_section(name, p)
    return "\n".join(lines)


def trace_summary(trace: Trace) -> dict[str, Any]:
    return {
        "params": asdict(trace.params),
        "benign_clients": sum(1 for c in trace.clients if not c.family),
        "infected_clients": sum(1 for c in trace.clients if c.family),
        "lookups": len(trace.lookups),
        "by_role": dict(Counter(q.role for q in trace.lookups)),
        "exists": len(trace.exists),
        "truncated": trace.truncated,
        "infected": [
            {
                "client": c.address,
                "family": c.family,
                "pace": c.pace,
                "walk": len(c.walk),
                "c2": c.c2,
                "beacon_every": c.beacon_every,
            }
            for c in trace.clients
            if c.family
        ],
    }


@dataclass(frozen=True)
class Plan:
    """What to run: the policy and model as deployed, the families, the checkout, which passes."""

    policy: Path
    model: Path | None
    families: list[str]
    families_why: str
    command: str
    source: Path = ROOT
    passes: str = "both"  # with a client_watch section: both, on or off


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


async def replay(plan: Plan, trace: Trace) -> dict[str, Any]:
    started = time.perf_counter()
    raw = yaml.safe_load(plan.policy.read_text()) or {}
    has_watch = isinstance(raw.get("client_watch"), dict)
    passes = [("watch on", None), ("watch off", False)] if has_watch else [("model only", None)]
    if has_watch and plan.passes != "both":
        passes = [x for x in passes if x[0] == f"watch {plan.passes}"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        setups = []
        for name, watch in passes:
            log_path = Path(tmp) / f"{name.replace(' ', '-')}.log"
            setups.append(PassSetup(name, policy_for_pass(plan.policy, log_path, watch), log_path))
        runs = await run_passes(trace, setups, plan)
    for setup, run in zip(setups, runs, strict=True):
        results[run.name] = (summarize(trace, run, sinkhole_v4(setup.policy), plan.families), run.model_version)
        print(f"{run.name}: {json.dumps(_headline(results[run.name][0]))}", file=sys.stderr)
    model_path = plan.model or DEFAULT_MODEL
    return {
        "command": plan.command,
        "source": str(plan.source),
        "policy": _shown(plan.policy),
        "model": {
            "path": _shown(model_path),
            "version": next(iter(results.values()))[1],
        },
        "families": plan.families,
        "families_why": plan.families_why,
        "trace": trace_summary(trace),
        "passes": {k: v[0] for k, v in results.items()},
        "pending": None
        if has_watch
        else "Watch-on pass pending: the policy has no `client_watch:` section yet "
        "(only the model and lists are judged here).",
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def _headline(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "c2_all": {f: r["c2_all_share"] for f, r in p["families"].items()},
        "c2_first": {f: r["c2_first_share"] for f, r in p["families"].items()},
        "benign_blocked": p["benign"]["blocked"],
        "benign_lookups": p["benign"]["lookups"],
        "benign_flagged": p["benign"]["flagged"],
        "flagged": {f: r["flagged"] for f, r in p["families"].items()},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", type=Path, default=ROOT / "examples" / "home-gateway.yaml")
    p.add_argument("--model", type=Path, default=None, help="a .tflite (metadata beside it); default: the shipped one")
    p.add_argument("--families", default=None, help="comma-separated; default: the model's held-out families")
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder (benign_sources.tsv.gz, dga/)")
    p.add_argument("--seed", type=int, default=TraceParams.seed)
    p.add_argument("--duration", type=float, default=TraceParams.duration)
    p.add_argument("--benign-clients", type=int, default=TraceParams.benign_clients)
    p.add_argument("--infected-per-family", type=int, default=TraceParams.infected_per_family)
    p.add_argument("--max-queries", type=int, default=TraceParams.max_queries)
    p.add_argument("--passes", choices=("both", "on", "off"), default="both", help="with a client_watch section")
    p.add_argument("--source", type=Path, default=ROOT, help="the checkout whose resolverguard is run")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "replay", help="writes OUT.md and OUT.json")
    a = p.parse_args(argv)
    if not 0 < a.duration <= MAX_DURATION:
        p.error(f"--duration must be in (0, {MAX_DURATION:.0f}] s: the whole run stays under 5 minutes")
    families, why = families_for(a.model or DEFAULT_MODEL, a.data, a.families)
    print(f"families: {', '.join(families)} ({why})", file=sys.stderr)
    params = TraceParams(
        seed=a.seed,
        duration=a.duration,
        benign_clients=a.benign_clients,
        infected_per_family=a.infected_per_family,
        max_queries=a.max_queries,
    )
    benign = load_benign(a.data / "benign_sources.tsv.gz", a.seed)
    trace = generate(params, benign, {f: load_family(a.data / "dga" / f"{f}.txt.gz") for f in families})
    print(
        f"trace: {len(trace.lookups)} lookups, {len(trace.clients)} clients, {params.duration:.0f} s", file=sys.stderr
    )
    command = "python bench/replay.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    plan = Plan(a.policy.resolve(), a.model, families, why, command.strip(), a.source.resolve(), a.passes)
    result = asyncio.run(replay(plan, trace))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    a.out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {a.out.with_suffix('.md')} ({result['wall_seconds']:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
