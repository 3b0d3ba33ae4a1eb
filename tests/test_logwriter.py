"""The query log's writer process (resolverguard.logwriter): the entries the event loop hands over
over a pipe become the lines a thread writer makes of them, nothing handed over is lost on a SIGHUP
reload or on SIGTERM under load, and a writer that dies is said and counted while DNS goes on."""

from __future__ import annotations

import concurrent.futures
import json
import marshal
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest
from dnsfixtures import Upstream, eventually, free_port, run_upstream, start_serving, wait_for
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_querylog import _RECORDS

from resolverguard.config import ClientPrivacy, LogWriter, QueryLogConfig
from resolverguard.logwriter import (
    FLUSH_SECONDS,
    FRAME,
    LOW_NICE,
    LineMaker,
    PipeSender,
    QueryEntry,
    RecordWriter,
    client_for_log,
    event_line,
    expand,
    frame_of,
    line_of_record,
    native_log,
)
from resolverguard.steps.querylog import QueryLog
from resolverguard.verdicts import Action

ROOT = Path(__file__).resolve().parent.parent
OTHER_CLIENT = "10.9.8.7"


def entry_of_record(record: tuple[Any, ...], serial: int | None) -> QueryEntry:
    """The entry the loop would hand over for a full record (record_of's layout)."""
    return (record[0], record[1], record[10], (*record[2:10], *record[11:], serial))  # type: ignore[return-value]


def batch_of(records: list[Any], serials: int | None = 1000) -> list[QueryEntry]:
    """Entries with the repeats a real batch has: each shape again (the same object, as the repeat
    shortcut hands it over) a second later, and once from another client; shapes with serials from
    `serials` on (the shortcut's) or without (the chain's)."""
    entries = [entry_of_record(r, None if serials is None else serials + n) for n, r in enumerate(records)]
    return (
        entries
        + [(wall + 1.0, client, latency, shape) for wall, client, latency, shape in entries]
        + [(wall, OTHER_CLIENT, latency, shape) for wall, _, latency, shape in entries]
    )


@settings(deadline=None)  # (a loaded machine: the first example can take long)
@given(
    st.lists(_RECORDS, min_size=1, max_size=20),
    st.sampled_from(list(ClientPrivacy)),
    st.sampled_from(["", ',"worker":1']),
)
def test_entry_lines_are_the_reference_lines(records: list[Any], privacy: ClientPrivacy, tail: str) -> None:
    """`LineMaker.entry_line` (memo by shape within a batch, by content across batches) gives
    `line_of_record`'s bytes for every entry, a shape met again from another client included, and
    a batch that meets the same serials again."""
    maker = LineMaker(privacy, tail)
    for serials in (1000, 1000, None, None):  # a second batch: new `seen`, the serial memo or the parts' memos
        seen: dict[int, tuple[str, str, str]] = {}
        for entry in batch_of(records, serials):
            reference = line_of_record(expand(entry), client_for_log(entry[1], privacy), tail)
            assert maker.entry_line(entry, seen) == reference


@settings(deadline=None)
@given(
    st.lists(_RECORDS, min_size=1, max_size=20),
    st.sampled_from(list(ClientPrivacy)),
    st.sampled_from(["", ',"worker":1']),
)
def test_a_batch_of_entries_makes_the_reference_lines(records: list[Any], privacy: ClientPrivacy, tail: str) -> None:
    """`LineMaker.lines` (the writer's one loop over a batch of queries) gives `line_of_record`'s
    bytes in order, across a change of second within the batch and from one batch to the next."""
    maker = LineMaker(privacy, tail)
    for serials in (1000, 1000, None):
        entries = batch_of(records, serials)
        out: list[str] = []
        maker.lines(entries, out)
        assert out == [line_of_record(expand(e), client_for_log(e[1], privacy), tail) for e in entries]


@settings(  # each example starts a writer process: few, and no shrinking
    max_examples=4, deadline=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(_RECORDS, min_size=1, max_size=40))
def test_the_writer_process_writes_the_thread_writers_bytes(tmp_path_factory: Any, records: list[Any]) -> None:
    """The same entries and events through the pipe to a writer process and through the queue to a
    writer thread give the reference lines (`line_of_record`), byte for byte, chain and shortcut
    shapes alike; an event marshal refuses (an enum value) goes pickled."""
    work = tmp_path_factory.mktemp("writers")
    event = {"event": "client_flagged", "client": "192.0.2.7", "action": Action.LOG, "names": ["a.example"]}
    with pytest.raises(ValueError):
        __import__("marshal").dumps(event)
    assert frame_of(("batch", None, [event]))[4] == 1  # (the pickle codec)
    # (the fields written without escaping hold enum values: no arbitrary text there)
    records = [(*r[:11], "too_short" if r[11] else None, "sinkhole" if r[12] else None, *r[13:]) for r in records]
    entries = batch_of(records) + batch_of(records, None)
    expected = [line_of_record(expand(entry), entry[1], "") for entry in entries]
    expected.insert(1, event_line(event, None))
    for writer in (LogWriter.PROCESS, LogWriter.THREAD):
        path = work / f"{writer.value}.jsonl"
        log = QueryLog(QueryLogConfig(path=str(path), writer=writer, max_bytes=0))
        for n, entry in enumerate(entries):
            log.add(entry)
            if n == 0:
                log.write(event)
        log.close()
        assert log.lost == 0 and log.written == len(expected)
        assert path.read_bytes() == "".join(expected).encode(), writer


@pytest.mark.parametrize(
    "latency", [0.0, 0.0000005, 0.0000015, 0.0199994, 0.0199995, 0.02, 0.0200004, 0.123456, 31.0, -0.000001]
)
def test_a_batch_writes_every_latency_as_the_reference_does(latency: float) -> None:
    """`LineMaker.lines` takes latencies under LATENCY_TABLE us from a table: at its edges, at
    ties of the rounding, past it and below zero (a table index from the end) the text is
    `line_of_record`'s."""
    record = (1.7e9 + 0.25, "192.0.2.1", "udp", "a.example", "A", "a", 0.5, "pass", "scored", "NOERROR", latency)
    entries = batch_of([(*record, None, None, None, None)])
    out: list[str] = []
    LineMaker(ClientPrivacy.FULL).lines(entries, out)
    assert out == [line_of_record(expand(e), e[1], "") for e in entries]


def ask_until_stopped(port: int, worker: int, stopped: threading.Event, limit: int) -> tuple[int, set[str]]:
    """Queries (a name each, and each name again: the repeat shortcut's path) until `stopped`:
    how many were sent and the names of those answered."""
    sent, answered = 0, set()
    while not stopped.is_set() and sent < limit:
        name = f"w{worker}-{sent // 2}.example.com"
        query = dns.message.make_query(name, "A")
        sent += 1
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
            answered.add(name)
        except Exception:  # noqa: BLE001 - the server stopping mid-run is the point of these tests
            pass
    return sent, answered


def logged_names(path: Path) -> list[str]:
    return [json.loads(line)["qname"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("reloads", [0, 3])
def test_nothing_handed_to_the_writer_process_is_lost_on_sighup_and_sigterm(tmp_path: Path, reloads: int) -> None:
    """With the writer in a process, every query answered before SIGTERM has its line (both times
    a name was asked: once through the chain, once through the repeat shortcut), across SIGHUP
    reloads that keep the log, and no line is written twice."""
    port, policy, log = free_port(), tmp_path / "policy.yaml", tmp_path / "q.jsonl"
    stopped = threading.Event()
    with run_upstream(Upstream()) as up:
        text = (
            f"upstreams: ['127.0.0.1:{up.port}']\nquery_log: {{path: '{log}', writer: process}}\n"
            "rate_limit: {qps: 0}\n"
        )
        policy.write_text(text)
        proc = start_serving(policy, port)
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(ask_until_stopped, port, w, stopped, 3000) for w in range(6)]
            time.sleep(0.5)
            for n in range(reloads):
                policy.write_text(text + f"lists:\n  deny: [reload{n}.example]\n")  # a reload that keeps the log
                proc.send_signal(signal.SIGHUP)
                wait_for(proc, "reloaded")
                time.sleep(0.3)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            stopped.set()
            results = [f.result() for f in futures]
    sent = sum(r[0] for r in results)
    answered = set().union(*(r[1] for r in results))
    logged = logged_names(log)
    assert len(answered) > 0 and sum(r[0] for r in results) < 6 * 3000  # the stop came under load
    assert answered <= set(logged)  # every answered query was logged
    assert len(logged) <= sent and max(logged.count(n) for n in set(logged)) <= 2  # each query once at most
    assert sum(logged.count(n) == 2 for n in answered) > len(answered) // 2  # repeats logged too


def writer_pid(server: int) -> int:
    """The query log's writer process among the server's children (the other is multiprocessing's
    resource tracker)."""
    for child in Path(f"/proc/{server}/task/{server}/children").read_text().split():
        command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in command:
            return int(child)
    raise AssertionError("no writer process")


def test_a_writer_process_that_dies_is_said_and_counted_and_dns_goes_on(tmp_path: Path) -> None:
    """SIGKILL to the writer: answers go on, the resolver says once that the writer is gone, and
    `status` counts the lines lost."""
    port, policy, log, sock = free_port(), tmp_path / "policy.yaml", tmp_path / "q.jsonl", tmp_path / "c.sock"
    with run_upstream(Upstream()) as up:
        policy.write_text(
            f"upstreams: ['127.0.0.1:{up.port}']\nquery_log: {{path: '{log}', writer: process}}\n"
            f"control_socket: {sock}\nrate_limit: {{qps: 0}}\n"
        )
        proc = start_serving(policy, port)
        try:
            for n in range(20):
                dns.query.udp(dns.message.make_query(f"before{n}.example.com", "A"), "127.0.0.1", port=port, timeout=5)
            os.kill(writer_pid(proc.pid), signal.SIGKILL)
            for n in range(3000):  # past a batch, so that a hand-over meets the broken pipe
                query = dns.message.make_query(f"a{n}.example.com", "A")
                assert dns.query.udp(query, "127.0.0.1", port=port, timeout=5).answer
            said = wait_for(proc, "the writer is gone", timeout=10)
            assert "DNS service continues" in said
            status = subprocess.run(
                [sys.executable, "-m", "resolverguard", "status", "--socket", str(sock)],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=ROOT,
            ).stdout
            lost = re.search(r"query log (\d+) lines lost", status)
            assert lost is not None and int(lost.group(1)) >= 2048, status
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0


def scrape(port: int) -> dict[str, float]:
    """The query log's gauges from the server's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r"^(resolverguard_query_log_\w+) (\S+)$", text, re.M)}


def ask_names(port: int, names: list[str]) -> None:
    """Asks each name once; every one must be answered (the log must never hold an answer back)."""
    for name in names:
        assert dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5).answer


def serve_logged(tmp_path: Path, upstream: int, log: Path, extra: str) -> tuple[subprocess.Popen[str], int, int]:
    """A server with a query log file written by a writer process (`extra`: more query_log keys) and
    metrics: (process, DNS port, metrics port)."""
    port, metrics, policy = free_port(), free_port(), tmp_path / "policy.yaml"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream}']\nquery_log: {{path: '{log}', writer: process{extra}}}\n"
        f"rate_limit: {{qps: 0}}\nmetrics:\n  listen: 127.0.0.1:{metrics}\n"
    )
    return start_serving(policy, port), port, metrics


CHUNK = 300  # names asked between two looks at the metrics (each look waits for a hand-over)


def test_a_burst_the_writer_cannot_take_is_held_and_written_in_full(tmp_path: Path) -> None:
    """A writer given no CPU during a burst (stopped: what `priority: idle` amounts to on busy cores):
    the resolver holds what the pipe cannot take (the backlog gauge shows it), answers every query,
    and once the writer runs again every line is written, none twice, none lost."""
    log = tmp_path / "q.jsonl"
    with run_upstream(Upstream()) as up:
        proc, port, metrics = serve_logged(tmp_path, up.port, log, ", priority: idle, backlog_mb: 0.25")
        asked: list[str] = []
        try:
            writer = writer_pid(proc.pid)
            os.kill(writer, signal.SIGSTOP)
            try:
                while len(asked) < 20 * CHUNK:
                    names = [f"burst{len(asked) + n}.example.com" for n in range(CHUNK)]
                    ask_names(port, names)
                    asked += names
                    time.sleep(2 * FLUSH_SECONDS)  # a hand-over
                    gauges = scrape(metrics)
                    assert gauges["resolverguard_query_log_lost_lines"] == 0
                    if gauges["resolverguard_query_log_backlog_bytes"] > 0:  # the pipe is full: held here
                        break
                else:
                    raise AssertionError(f"the pipe took {len(asked)} queries without a backlog: {gauges}")
            finally:
                os.kill(writer, signal.SIGCONT)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
    logged = logged_names(log)
    assert sorted(logged) == sorted(asked)


def test_past_its_bound_the_backlog_drops_lines_and_counts_them(tmp_path: Path) -> None:
    """`backlog_mb` bounds what the resolver holds for a stopped writer: past it new lines are
    dropped, said on stderr and counted in the metrics, the backlog stops growing, and DNS goes on;
    when the writer has room again it is said with the count, and lines written + lines lost = queries."""
    log = tmp_path / "q.jsonl"
    backlog = int(0.05 * 1024 * 1024)
    with run_upstream(Upstream()) as up:
        proc, port, metrics = serve_logged(tmp_path, up.port, log, ", backlog_mb: 0.05")
        asked: list[str] = []
        held: list[float] = []  # the backlog at each look once lines are being dropped
        try:
            writer = writer_pid(proc.pid)
            os.kill(writer, signal.SIGSTOP)
            try:
                while len(held) < 3 and len(asked) < 20 * CHUNK:
                    names = [f"full{len(asked) + n}.example.com" for n in range(CHUNK)]
                    ask_names(port, names)
                    asked += names
                    time.sleep(2 * FLUSH_SECONDS)
                    gauges = scrape(metrics)
                    if gauges["resolverguard_query_log_lost_lines"] > 0:
                        held.append(gauges["resolverguard_query_log_backlog_bytes"])
                assert len(held) == 3, f"{len(asked)} queries and no line dropped: {gauges}"
                assert "the writer is behind" in wait_for(proc, "query log:")
            finally:
                os.kill(writer, signal.SIGCONT)
            assert held[0] == held[-1] > 0  # bounded: once dropping, it no longer grows
            left = eventually(
                lambda: scrape(metrics)["resolverguard_query_log_backlog_bytes"], 30, lambda b: b == 0, 0.2
            )
            assert left == 0, "the writer never caught up"
            after = [f"after{n}.example.com" for n in range(CHUNK)]
            ask_names(port, after)  # the next hand-over says the episode is over
            caught_up = wait_for(proc, "has room again")
            lost = int(scrape(metrics)["resolverguard_query_log_lost_lines"])
            assert f"{lost} lines were dropped" in caught_up
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
    logged = logged_names(log)
    assert len(logged) == len(set(logged)) == len(asked) + len(after) - lost
    assert set(after) <= set(logged) and set(logged) <= set(asked + after)
    assert held[0] < backlog + batch_bytes(log, CHUNK)  # the bound, overshot by the batch that reached it at most


def batch_bytes(log: Path, count: int) -> int:
    """What the loop hands over for the last `count` lines of `log` (each name asked once: the chain's
    entries, their shapes in full): the most one hand-over between two looks adds to the backlog."""
    fields = ("transport", "qname", "qtype", "scored", "score", "action", "reason", "upstream_rcode")
    rows = [json.loads(line) for line in log.read_text().splitlines()[-count:]]
    extra = ("unscored", "would", "error")
    entries = [(0.0, r["client"], 0.0, (*(r[f] for f in fields), *map(r.get, extra), None, None)) for r in rows]
    return len(frame_of(("batch", None, entries)))


@pytest.mark.parametrize("priority", ["low", "idle"])
def test_the_writer_process_runs_at_the_priority_asked(tmp_path: Path, priority: str) -> None:
    """`query_log.priority`: low is nice +10 to the resolver's, idle is SCHED_IDLE; the resolver
    itself keeps its own."""
    with run_upstream(Upstream()) as up:
        proc, port, _ = serve_logged(tmp_path, up.port, tmp_path / "q.jsonl", f", priority: {priority}")
        try:
            ask_names(port, ["one.example.com"])
            writer, own = writer_pid(proc.pid), os.getpriority(os.PRIO_PROCESS, proc.pid)
            wanted = (os.SCHED_IDLE, own) if priority == "idle" else (os.SCHED_OTHER, own + LOW_NICE)
            found = eventually(  # the writer sets it once started (spawned: its imports first)
                lambda: (os.sched_getscheduler(writer), os.getpriority(os.PRIO_PROCESS, writer)),
                30,
                wanted.__eq__,
                0.1,
            )
            assert found == wanted, f"writer at (policy, nice) {found}, not {wanted}"
            assert os.sched_getscheduler(proc.pid) == os.SCHED_OTHER and own == os.getpriority(os.PRIO_PROCESS, 0)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
    assert logged_names(tmp_path / "q.jsonl") == ["one.example.com"]


NATIVES = [None, *([native_log()] if native_log() is not None else [])]  # the pure-Python paths, and C where built


def packed_lines(
    batches: list[list[Any]], privacy: ClientPrivacy, tail: str, native: Any, work: Path, max_known: int = 3
) -> bytes:
    """The file a writer (`native`: C or None) makes of the batches the loop's end of the pipe packs
    (C where built: the writer also reads a packed batch without it), with a table of serials small
    enough to start over mid-way (`max_known`)."""
    reading, writing = os.pipe()
    sender = PipeSender(writing, native=native_log(), max_known=max_known)
    path = work / f"{'c' if native else 'py'}-{privacy.value}.jsonl"
    writer = RecordWriter(QueryLogConfig(path=str(path), clients=privacy, max_bytes=0), None, print, native=native)
    for batch in batches:
        message = marshal.loads(sender.frame(("batch", {"worker": 1} if tail else None, batch))[FRAME.size :])
        if message[0] == "entries":
            writer.write_packed(*message[1:])
        else:
            writer.write(message[1], message[2])
    writer.close()
    os.close(reading)
    os.close(writing)
    return path.read_bytes()


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(_RECORDS, min_size=1, max_size=20),
    st.sampled_from(list(ClientPrivacy)),
    st.sampled_from(["", ',"worker":1']),
)
def test_packed_batches_make_the_reference_lines_with_and_without_c(
    tmp_path_factory: Any, records: list[Any], privacy: ClientPrivacy, tail: str
) -> None:
    """A packed batch (`_logc.pack`: a shape once per batch, a shortcut's shape by serial once sent,
    the writer's table of them started over) becomes `line_of_record`'s bytes, made in C
    (`_logc.render`) and in Python alike; shapes met again in later batches, from another client."""
    work = tmp_path_factory.mktemp("packed")
    batches = [batch_of(records), batch_of(records), batch_of(records, None), batch_of(records, 5000)]
    expected = "".join(
        line_of_record(expand(e), client_for_log(e[1], privacy), tail) for batch in batches for e in batch
    ).encode()
    for native in NATIVES:
        assert packed_lines(batches, privacy, tail, native, work) == expected, native


@pytest.mark.parametrize(
    ("wall", "latency"),
    [(1.7e9 + 0.9995, 0.0199995), (0.0, 0.0), (-1.25, 0.001), (1.7e9, -0.000001), (1.7e9, 1e12), (2.5e9 + 0.001, 31.0)],
)
def test_packed_lines_outside_what_c_takes_are_pythons(tmp_path: Path, wall: float, latency: float) -> None:
    """What `_logc.render` leaves to Python (a wall clock below 0, a latency below 0, past its table
    or a large one) and what it takes at its edges make the reference line either way."""
    record = (wall, "192.0.2.1", "udp", "a.example", "A", "a", 0.5, "pass", "scored", "NOERROR", latency)
    batches = [batch_of([(*record, None, None, None, None)])]
    expected = "".join(line_of_record(expand(e), e[1], "") for e in batches[0]).encode()
    for native in NATIVES:
        assert packed_lines(batches, ClientPrivacy.FULL, "", native, tmp_path) == expected, native


def test_a_packed_batch_rotates_the_file_where_a_line_passes_its_size(tmp_path: Path) -> None:
    """A batch of queries (one write) is cut where a line takes the file past max_bytes, as lines
    one at a time were: each file outgrows it by one line at most, every line is kept, in order."""
    path = tmp_path / "q.jsonl"
    log = QueryLog(QueryLogConfig(path=str(path), max_bytes=8000, keep=20), stderr=sys.stderr)
    shape = ("udp", "a.example", "A", "a", 0.5, "pass", "scored", "NOERROR", None, None, None, None, 7)
    for n in range(300):
        log.add((1.7e9 + n, "192.0.2.1", 0.001, shape))
    log.close()
    files = [Path(f"{path}.{n}") for n in range(20, 0, -1)] + [path]
    kept = [f for f in files if f.exists()]
    lines = [line for f in kept for line in f.read_text().splitlines(keepends=True)]
    assert log.written == 300 and log.lost == 0 and len(lines) == 300 and len(kept) > 3
    assert [json.loads(line)["time"] for line in lines] == sorted(json.loads(line)["time"] for line in lines)
    for f in kept[:-1]:  # (the last one is still being written)
        size, last = f.stat().st_size, f.read_text().splitlines(keepends=True)[-1]
        assert 8000 <= size < 8000 + len(last)


@settings(  # each example starts a writer process: few, and no shrinking
    max_examples=3,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(_RECORDS, min_size=1, max_size=30))
def test_the_loop_without_the_c_extension_hands_over_the_same_lines(
    tmp_path_factory: Any, monkeypatch: pytest.MonkeyPatch, records: list[Any]
) -> None:
    """As if `_logc` was never built (setup.py without a compiler) in the resolver: queries kept as
    tuples and marshalled (`add_query` is `add`), to a writer process (which has it) and to a writer
    thread (no C at all): the reference lines, with an event in order among them, as with it."""
    work = tmp_path_factory.mktemp("no-c")
    records = [(*r[:11], "too_short" if r[11] else None, "sinkhole" if r[12] else None, *r[13:]) for r in records]
    entries = batch_of(records) + batch_of(records, None)
    event = {"event": "client_flagged", "client": "192.0.2.7", "names": ["a.example"]}
    expected = [line_of_record(expand(entry), entry[1], "") for entry in entries]
    expected.insert(2, event_line(event, None))
    for hidden in (False, True):
        with monkeypatch.context() as patch:
            if hidden:
                patch.setitem(sys.modules, "resolverguard._logc", None)
            for writer in (LogWriter.PROCESS, LogWriter.THREAD):
                path = work / f"{writer.value}-{hidden}.jsonl"
                log = QueryLog(QueryLogConfig(path=str(path), writer=writer, max_bytes=0))
                assert (log.add_query == log._add_entry) == (
                    hidden or writer is LogWriter.THREAD or native_log() is None
                )  # noqa: SLF001
                for n, entry in enumerate(entries):
                    log.add_query(*entry)
                    if n == 1:
                        log.write(event)
                log.close()
                assert log.lost == 0 and log.written == len(expected)
                assert path.read_bytes() == "".join(expected).encode(), (writer, hidden)


_ANY_TEXT = st.one_of(st.none(), st.text(st.characters(max_codepoint=0x80), max_size=8), st.text(max_size=4))
_SCORES = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 1),
    st.floats(-1e-4, 1e-4),
    st.integers(0, 10**7).map(lambda n: n / 1e6),
    st.integers(0, 10**7).map(lambda n: n / 1e6 + 5e-7),
    st.integers(-1, 1),
)
_NOTE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    _ANY_TEXT,
    st.lists(st.integers()),
)
_SHAPES = st.tuples(
    st.sampled_from(["udp", "tcp", "dot"]),
    st.text(st.characters(max_codepoint=0x80), max_size=20),
    st.sampled_from(["A", "AAAA", "TYPE65280"]),
    _ANY_TEXT,
    _SCORES,
    st.sampled_from(["pass", "sinkhole", "log"]),
    st.sampled_from(["model", "cache", "error"]),
    _ANY_TEXT,
    st.one_of(st.none(), st.just(""), st.just("too_short")),
    st.one_of(st.none(), st.just(""), st.just("sinkhole")),
    _ANY_TEXT,
    st.one_of(
        st.none(), st.dictionaries(st.text(st.characters(max_codepoint=0x80), max_size=5), _NOTE_VALUES, max_size=3)
    ),
    st.one_of(st.none(), st.integers(0, 2**40)),
)


@pytest.mark.skipif(native_log() is None, reason="the C extension is not built")
@settings(max_examples=2000, deadline=None)
@given(_SHAPES, st.sampled_from(["", ',"worker":1']))
def test_a_new_shapes_texts_in_c_are_pythons(shape: Any, tail: str) -> None:
    """`_logc.shape_texts` (a shape the writer meets the first time: every never-seen name) gives
    the parts `line_of_record` makes, byte for byte: control characters and quotes escaped as
    json's encoder escapes them, the score as repr(round(score, 6)) (below 1e-4 with an exponent,
    ties, huge ones), a note's value of any JSON type; what it leaves to Python (not ASCII, a
    list) is None."""
    made = native_log().shape_texts(shape, tail)  # type: ignore[union-attr]
    python = LineMaker(ClientPrivacy.FULL, tail, None)._python_texts(shape)  # noqa: SLF001
    if made is not None:
        assert made == python
    texts = [x for x in (*shape[:4], *shape[5:11]) if x is not None]
    score = shape[4]
    if (
        all(x.isascii() for x in texts)
        and (score is None or (type(score) is float and not abs(score) >= 1e9))
        and not shape[11]
    ):
        assert made is not None  # (the common shapes are C's)


def test_a_repeat_logged_with_the_clocks_read_in_c_has_its_time_and_latency(tmp_path: Path) -> None:
    """A repeat the shortcut answers is logged by `Packer.add_since` (the wall clock and the latency
    read in C, not by Python's time calls) where a writer process takes the log: each repeat's line has
    a time within the moments its query was sent and answered, a latency within that span, and the
    rest of the chain's line for the name."""
    port, policy, log = free_port(), tmp_path / "policy.yaml", tmp_path / "q.jsonl"
    with run_upstream(Upstream()) as up:
        policy.write_text(
            f"upstreams: ['127.0.0.1:{up.port}']\nquery_log: {{path: '{log}', writer: process}}\n"
            "rate_limit: {qps: 0}\n"
        )
        proc = start_serving(policy, port)
        try:
            spans = []
            for _ in range(6):  # the first through the chain, the next once the shortcut has learnt it
                before = time.time()
                dns.query.udp(dns.message.make_query("repeat.example", "A"), "127.0.0.1", port=port, timeout=5)
                spans.append((before, time.time()))
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == len(spans)
    for line, (before, after) in zip(lines, spans, strict=True):
        when = datetime.fromisoformat(line["time"]).timestamp()
        assert before - 0.001 <= when <= after  # (the line's time is truncated to the millisecond)
        assert 0 <= line["latency_ms"] <= (after - before) * 1000
    assert any(line.get("answer_cache") == "hit" for line in lines[1:])  # repeats the shortcut answered
    keep = ("client", "qname", "qtype", "action", "reason", "upstream_rcode", "transport")
    assert all({k: line[k] for k in keep} == {k: lines[0][k] for k in keep} for line in lines)


@pytest.mark.parametrize("parts", [1, 2, 5])
def test_packed_lines_are_the_reference_when_the_memos_start_over_mid_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: int
) -> None:
    """The line maker's memos started over while a batch is made (MAX_PARTS small: `_logc.render`'s
    table of serials' texts cleared by the Python that makes a new shape's, after render looked a
    serial up): the batch goes the Python way or C's, and makes the reference lines either way."""
    monkeypatch.setattr("resolverguard.logwriter.MAX_PARTS", parts)
    records = [
        (1.7e9 + n, "192.0.2.1", "udp", f"n{n}.example", "A", f"n{n}", n / 10, "pass", "model", "NOERROR", 0.001)
        + (None, None, None, None)
        for n in range(6)
    ]
    batches = [batch_of(records), batch_of(records), batch_of(records)[::-1], batch_of(records, None)]
    expected = "".join(line_of_record(expand(e), e[1], "") for batch in batches for e in batch).encode()
    for native in NATIVES:
        assert packed_lines(batches, ClientPrivacy.FULL, "", native, tmp_path, max_known=1000) == expected, native


@pytest.mark.skipif(native_log() is None, reason="the C extension is not built")
def test_the_texts_table_keeps_what_a_dict_would_for_64_bit_serials() -> None:
    """`_logc.Texts` (the serials' line parts as render reads them): set, get, replaced, counted and
    cleared as a dict; a serial past 64 bits or a value that is not two str is not kept."""
    texts = native_log().Texts()  # type: ignore[union-attr]
    serials = [0, 1, -5, 2**63 - 1, -(2**63), *range(10**15, 10**15 + 3000)]
    for n, serial in enumerate(serials):
        texts[serial] = (f"m{n}", "rest\u00e9" if n % 7 == 0 else "}\n")
    texts[1] = ("again", "}\n")
    texts[2**64] = ("big", "}\n")
    assert len(texts) == len(serials) and texts.get(2**64) is None and texts.get(7) is None
    assert texts.get(1) == ("again", "}\n") and texts.get(serials[7]) == ("m7", "rest\u00e9")
    kept = [(n, s) for n, s in enumerate(serials) if n != 1]
    assert all(texts.get(s) == (f"m{n}", "rest\u00e9" if n % 7 == 0 else "}\n") for n, s in kept)
    with pytest.raises(TypeError):
        texts[3] = ("only one",)  # type: ignore[assignment]
    texts.clear()
    assert len(texts) == 0 and texts.get(0) is None
