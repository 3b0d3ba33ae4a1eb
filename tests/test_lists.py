from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from resolverguard.lists import DomainLists, DomainSet, ListEntry, parse_line, read_list

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
tld = st.from_regex(r"[a-z][a-z0-9]{1,5}", fullmatch=True)  # a TLD is never all digits (that is an address)
domain = st.tuples(st.lists(label, min_size=1, max_size=3), tld).map(lambda parts: ".".join([*parts[0], parts[1]]))


def test_formats() -> None:
    assert parse_line("example.com") == [ListEntry("example.com")]
    assert parse_line("0.0.0.0 ads.example.com tracker.net # comment") == [
        ListEntry("ads.example.com"),
        ListEntry("tracker.net"),
    ]
    assert parse_line("127.0.0.1 localhost") == []
    assert parse_line("||ads.x.com^$third-party") == [ListEntry("ads.x.com")]
    assert parse_line("@@||good.com^") == [ListEntry("good.com", exception=True)]
    assert parse_line("! adblock comment") == [] and parse_line("   ") == []
    assert parse_line("/banner/ads/") is None and parse_line("two words") is None


@given(domain)
def test_every_format_yields_the_same_domain(name: str) -> None:
    for line in (name, f"0.0.0.0 {name}", f"||{name}^", f"{name.upper()}  # note", f"127.0.0.1\t{name}"):
        assert parse_line(line) == [ListEntry(name)]


@given(domain, st.lists(label, max_size=3))
def test_listed_domain_covers_subdomains(name: str, prefix: list[str]) -> None:
    s = DomainSet([name])
    sub = ".".join([*prefix, name])
    assert s.match(sub) == name and s.match(sub.upper() + ".") == name
    assert s.match("x" + name) is None or ("x" + name).endswith("." + name)


@given(st.text(max_size=200))
def test_parse_line_never_raises(text: str) -> None:
    parse_line(text)


def test_files_and_exceptions(tmp_path: Path) -> None:
    deny = tmp_path / "deny.txt"
    deny.write_text("# my list\n||bad.example^\n0.0.0.0 worse.example\n@@||fine.bad.example^\n##.ad-banner\n/x/\n")
    entries, report = read_list(deny)
    assert report.entries == 3 and report.skipped == 1 and report.first_skipped == [6]
    lists = DomainLists.build([], [], [], [deny])
    assert lists.deny.match("a.bad.example") == "bad.example"
    assert lists.allow.match("fine.bad.example") == "fine.bad.example"


def test_list_directory_is_every_file_in_it(tmp_path: Path) -> None:
    lists_dir = tmp_path / "deny.d"
    lists_dir.mkdir()
    (lists_dir / "a.txt").write_text("ads.example\n")
    (lists_dir / "b.hosts").write_text("0.0.0.0 tracker.example\n")
    (lists_dir / ".hidden").write_text("not.read.example\n")
    lists = DomainLists.build([], [], [], [lists_dir])
    assert lists.deny.match("x.ads.example") and lists.deny.match("tracker.example")
    assert lists.deny.match("not.read.example") is None and len(lists.deny) == 2


@given(st.lists(domain, max_size=30), domain)
def test_domain_set_matches_exactly_its_members_and_their_subdomains(members: list[str], other: str) -> None:
    s = DomainSet(members)
    for m in members:
        assert s.match(m) == m
    covered = any(other == m or other.endswith("." + m) for m in members)
    assert (s.match(other) is not None) == covered
