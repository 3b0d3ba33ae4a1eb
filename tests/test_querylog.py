"""The query log's own mechanics: timestamps, buffering, batches handed over by worker processes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolverguard.config import LogWriter, QueryLogConfig
from resolverguard.logwriter import RecordWriter
from resolverguard.steps.querylog import QueryLog, timestamp


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_timestamp_is_isoformat_with_milliseconds(wall: float) -> None:
    expected = datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")
    got = timestamp(wall)
    assert len(got) == len(expected) and got.endswith("+00:00")
    apart = datetime.fromisoformat(got) - datetime.fromisoformat(expected)
    assert abs(apart.total_seconds()) <= 0.001  # datetime rounds to microseconds first; we truncate


@pytest.mark.parametrize("writer", list(LogWriter))
def test_lines_are_buffered_until_flushed(tmp_path: Path, writer: LogWriter) -> None:
    path = tmp_path / "q.jsonl"
    log = QueryLog(QueryLogConfig(path=str(path), writer=writer))
    for i in range(10):
        log.write({"qname": f"n{i}.example", "client": "192.0.2.1"})
    log.flush()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["qname"] for x in lines] == [f"n{i}.example" for i in range(10)] and log.written == 10
    log.close()


def test_worker_records_go_to_the_writer_in_batches(tmp_path: Path) -> None:
    batches: list[tuple[Any, ...]] = []
    log = QueryLog(QueryLogConfig(path="unused.jsonl"), forward=batches.append, extra={"worker": 1})
    for i in range(300):
        log.write({"qname": f"n{i}.example"})
    assert len(batches) == 1 and len(batches[0][2]) == 256  # one message per 256 records
    log.close()  # stopping hands over the rest
    path = tmp_path / "q.jsonl"
    writer = RecordWriter(QueryLogConfig(path=str(path)), None, print)  # the parent's writer
    for _, extra, items in batches:
        writer.write(extra, items)
    writer.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 300 and all(x["worker"] == 1 for x in lines)


def test_query_line_is_valid_json_with_every_field(tmp_path: Path) -> None:
    from dnslib import DNSRecord

    from resolverguard.chain import Request
    from resolverguard.config import ClientPrivacy
    from resolverguard.names import RegistrableName, Unscored
    from resolverguard.verdicts import Action, Reason, Verdict
    from resolverguard.wire import parse_query

    packet = bytes(DNSRecord.question('we"ird\\\\x.example.com', "TXT").pack())
    head = parse_query(packet)
    assert head is not None
    request = Request(head, packet, ("192.0.2.77", 5335), "udp", started=10.0)
    request.name = RegistrableName('we"ird\\\\x.example.com', "example.com", "example", Unscored.NOT_HOSTNAME)
    request.score, request.upstream_rcode, request.upstream_error = 0.1234567, None, '"dead"\n'
    request.verdict = Verdict(Action.LOG, Reason.MODEL, would=Action.SINKHOLE)
    request.notes.update({"family_hint": "conficker", "family_p": 0.5})
    log = QueryLog(QueryLogConfig(path=str(tmp_path / "q.jsonl"), clients=ClientPrivacy.TRUNCATE), extra={"worker": 3})
    from resolverguard.steps.querylog import line_of

    line = line_of(request, now=10.0125, wall=1700000000.5, log=log)
    log.close()
    assert line.endswith("}\n") and line.count("\n") == 1
    record = json.loads(line)
    assert record == {
        "time": "2023-11-14T22:13:20.500+00:00",
        "client": "192.0.2.0/24",
        "transport": "udp",
        "qname": 'we"ird\\\\x.example.com',
        "qtype": "TXT",
        "scored": "example",
        "score": 0.123457,
        "action": "log",
        "reason": "model",
        "upstream_rcode": None,
        "latency_ms": 12.5,
        "unscored": "not a valid hostname",
        "would": "sinkhole",
        "error": 'upstream: "dead"\n',
        "family_hint": "conficker",
        "family_p": 0.5,
        "worker": 3,
    }
