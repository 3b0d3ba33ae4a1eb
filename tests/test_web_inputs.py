"""What the dashboard accepts from a user (resolverguard.web.inputs): names that reach a list file,
times and ranges that reach the store."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolverguard.lists import read_list
from resolverguard.web.actions import append_name
from resolverguard.web.inputs import MAX_RANGE, BadInput, TimeRange, client_address, domain_name, search_filters

NOW = 1_800_000_000.0


@given(st.text(max_size=300))
def test_an_accepted_name_is_one_plain_list_line(text: str) -> None:
    try:
        name = domain_name(text)
    except BadInput as err:
        assert err.field == "name"
        return
    assert set(name) <= set(string.ascii_lowercase + string.digits + "-_.")
    assert 3 <= len(name) <= 253 and ".." not in name and not name.startswith(".") and not name.endswith(".")


def test_names_written_by_the_dashboard_read_back_from_the_list_file(tmp_path: Path) -> None:
    path = tmp_path / "allow.txt"
    path.write_text("kept.example")  # a user's file without a final newline
    names = [domain_name(x) for x in ("Example.COM.", "a-b.c_d.example", "xn--bcher-kva.example")]
    assert [append_name(path, n, "allow") for n in names] == [True, True, True]
    assert append_name(path, "example.com", "allow") is False  # already there
    entries, _ = read_list(path)
    assert [e.domain for e in entries] == ["kept.example", *names]
    assert path.read_text().count("# allowed from the dashboard") == 3


@pytest.mark.parametrize(
    "bad",
    ["", " ", "com", "a..b", "-a.com", "a-.com", "*.a.com", "a.com/x", "a.com#", "||a.com^", "a b.com", "a.com\n"],
)
def test_names_that_are_refused(bad: str) -> None:
    if bad == "a.com\n":  # surrounding whitespace is trimmed: one line, one name
        assert domain_name(bad) == "a.com"
        return
    with pytest.raises(BadInput):
        domain_name(bad)


def test_time_ranges() -> None:
    assert TimeRange.of({}, NOW) == TimeRange(NOW - 86_400, NOW)
    assert TimeRange.of({"since": "1h"}, NOW) == TimeRange(NOW - 3600, NOW)
    assert TimeRange.of({"since": str(NOW - 60), "until": str(NOW - 30)}, NOW) == TimeRange(NOW - 60, NOW - 30)
    for query in ({"since": "0"}, {"since": f"{MAX_RANGE + 1}s"}, {"since": "1h", "until": "2h"}, {"until": "nan"}):
        with pytest.raises(BadInput):
            TimeRange.of(query, NOW)


def test_client_addresses() -> None:
    assert client_address(" 192.168.1.20 ") == "192.168.1.20" and client_address("") is None
    assert client_address("2001:DB8::1") == "2001:db8::1"
    with pytest.raises(BadInput):
        client_address("192.168.1.0/24")


def test_gateway_filter_takes_what_the_policy_takes() -> None:
    assert search_filters({"gateway": " branch-12.lan "}).gateway == "branch-12.lan"
    assert search_filters({"gateway": ""}).gateway is None and search_filters({}).gateway is None
    assert search_filters({"gateway": "gw_1"}).read().kwargs["gateway"] == "gw_1"  # reaches the store call
    for bad in ("gw 1", "-gw", "gw;--", "g" * 64, "gw/1"):
        with pytest.raises(BadInput) as raised:
            search_filters({"gateway": bad})
        assert raised.value.field == "gateway"
