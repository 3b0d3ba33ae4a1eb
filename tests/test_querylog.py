"""The query log's own mechanics: timestamps, buffering, batches handed over by worker processes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolverguard.config import ClientPrivacy, LogWriter, QueryLogConfig
from resolverguard.logwriter import LineMaker, RecordWriter, client_for_log, line_of_record, millis
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


_TEXT = st.one_of(st.none(), st.text(max_size=12))
_NUMBER = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1))
_NOTES = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["answer_cache", "family_hint", "family_p", "paused", "watch"]),
        st.one_of(st.text(max_size=6), st.booleans(), st.floats(0, 1), st.lists(st.integers(), max_size=2)),
        max_size=3,
    ),
)
_RECORDS = st.tuples(
    st.floats(1.5e9, 2.5e9),
    st.sampled_from(["127.0.0.1", "192.168.1.9", "2001:db8::7", "fe80::1%eth0", "not-an-address"]),
    st.sampled_from(["udp", "tcp"]),
    st.text(max_size=20),
    st.sampled_from(["A", "AAAA", "TXT", "65280"]),
    _TEXT,
    _NUMBER,
    st.sampled_from(["pass", "sinkhole", "log"]),
    st.sampled_from(["model", "cache", "list"]),
    _TEXT,
    st.floats(0, 30),
    _TEXT,
    _TEXT,
    _TEXT,
    _NOTES,
)


@given(
    st.lists(_RECORDS, min_size=1, max_size=30),
    st.sampled_from(list(ClientPrivacy)),
    st.sampled_from(["", ',"worker":1']),
)
def test_line_maker_writes_the_reference_line(records: list[Any], privacy: ClientPrivacy, tail: str) -> None:
    """The memoised line maker (the writer's) gives `line_of_record`'s bytes, repeats included."""
    maker = LineMaker(privacy, tail)
    for record in records + records:  # the second time from the memo
        assert maker.line(record) == line_of_record(record, client_for_log(record[1], privacy), tail)


@pytest.mark.parametrize("seconds", [0.0, 0.0000004, 0.0000005, 0.0123456, 0.5, 1.0, 2.25, 1234.5678])
def test_latency_is_milliseconds_to_the_microsecond(seconds: float) -> None:
    assert float(millis(seconds)) == pytest.approx(seconds * 1000, abs=0.0005)
    assert millis(seconds) == repr(round(seconds * 1000, 3)) or seconds == 0.0000005  # (a tie: rounded to even)


@pytest.mark.parametrize("writer", [LogWriter.PROCESS, LogWriter.THREAD])
def test_the_writer_adds_family_hints_to_flagged_lines_only(tmp_path: Path, writer: LogWriter) -> None:
    """Hints are made by the writer for a whole batch (no step on the loop): a blocked or logged
    scored name gets one, a passed name and an unscored block do not; a broken family head costs
    the hints, not the lines."""
    from dnsfixtures import DATA, DIGITS_MODEL

    def record(qname: str, label: str | None, score: float | None, action: str, would: str | None = None) -> Any:
        notes = {"answer_cache": "hit"} if action == "pass" else None
        shape = ("udp", qname, "A", label, score, action, "model", "NOERROR", None, would, None, notes, None)
        return (1.8e9, "127.0.0.1", 0.001, shape)  # an entry, as the log step hands it over

    lines = {}
    for family in (DATA / "family2.tflite", DIGITS_MODEL):  # (a detector is not a family head)
        path = tmp_path / f"{family.stem}-{writer.value}.jsonl"
        log = QueryLog(QueryLogConfig(path=str(path), writer=writer))
        log.use_family(family)
        log.add(record("xkq3vbh7tz.com", "xkq3vbh7tz", 0.99, "sinkhole"))
        log.add(record("www.example.com", "example", 0.01, "pass"))
        log.add(record("kq3vbh7tzx.com", "kq3vbh7tzx", 0.98, "log", would="sinkhole"))
        log.add(record("ads.example", "example", None, "sinkhole"))  # listed, never scored
        log.close()
        lines[family.stem] = [json.loads(x) for x in path.read_text().splitlines()]
    hinted = [x.get("family_hint") for x in lines["family2"]]
    assert hinted == ["with-digits", None, "with-digits", None] and lines["family2"][0]["family_p"] > 0.99
    assert lines["family2"][1]["answer_cache"] == "hit"
    assert [x.get("family_hint") for x in lines["digits"]] == [None] * 4
