from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolverguard.lists import (
    DomainLists,
    DomainSet,
    ListEntry,
    ListFile,
    ListFormat,
    Skip,
    parse_line,
    read_list,
    regex_problem,
)

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
tld = st.from_regex(r"[a-z][a-z0-9]{1,5}", fullmatch=True)  # a TLD is never all digits (that is an address)
domain = st.tuples(st.lists(label, min_size=1, max_size=3), tld).map(lambda parts: ".".join([*parts[0], parts[1]]))


def test_formats() -> None:
    assert parse_line("example.com") == [ListEntry("example.com")]
    assert parse_line("0.0.0.0 ads.example.com tracker.net # comment") == [
        ListEntry("ads.example.com", exact=True),
        ListEntry("tracker.net", exact=True),
    ]
    assert parse_line("127.0.0.1 localhost") == []
    assert parse_line("||ads.x.com^$third-party") is Skip.BROWSER_MODIFIER
    assert parse_line("||ads.x.com^$important") == [ListEntry("ads.x.com", important=True)]
    assert parse_line("@@||good.com^") == [ListEntry("good.com", exception=True)]
    assert parse_line("! adblock comment") == [] and parse_line("   ") == []
    assert parse_line("/banner/ads/") is Skip.URL and parse_line("two words") is Skip.NOT_A_NAME


@given(domain)
def test_every_format_yields_the_same_domain(name: str) -> None:
    for line in (name, f"||{name}^", f"{name.upper()}  # note", f"*.{name}"):
        assert parse_line(line) == [ListEntry(name)]
    for line in (f"0.0.0.0 {name}", f"127.0.0.1\t{name}", f"|{name}^"):
        assert parse_line(line) == [ListEntry(name, exact=True)]


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
    deny.write_text(
        "# my list\n||bad.example^\n0.0.0.0 worse.example\n@@||fine.bad.example^\n##.ad-banner\n/^ads[0-9]+\\./\n"
    )
    entries, report = read_list(deny)
    assert report.entries == 4 and report.skipped == 1 and report.first_skipped == [5]
    assert report.skipped_by == {"cosmetic rule": 1}
    lists = DomainLists.build([], [], [], [deny])
    assert lists.deny.match("a.bad.example") == "bad.example"
    assert lists.allow.match("fine.bad.example") == "fine.bad.example"
    assert lists.deny.match("worse.example") and lists.deny.match("a.worse.example") is None
    assert lists.deny.match("ads12.example") == "/^ads[0-9]+\\./" and lists.deny.match("ads.example") is None


def test_list_directory_is_every_file_in_it(tmp_path: Path) -> None:
    lists_dir = tmp_path / "deny.d"
    lists_dir.mkdir()
    (lists_dir / "a.txt").write_text("ads.example\n")
    (lists_dir / "b.hosts").write_text("0.0.0.0 tracker.example\n")
    (lists_dir / ".hidden").write_text("not.read.example\n")
    lists = DomainLists.build([], [], [], [lists_dir])
    assert lists.deny.match("x.ads.example") and lists.deny.match("tracker.example")
    assert lists.deny.match("not.read.example") is None and len(lists.deny) == 2
    assert lists.deny.match("x.tracker.example") is None  # a hosts entry is that name only


@given(st.lists(domain, max_size=30), domain)
def test_domain_set_matches_exactly_its_members_and_their_subdomains(members: list[str], other: str) -> None:
    s = DomainSet(members)
    for m in members:
        assert s.match(m) == m
    covered = any(other == m or other.endswith("." + m) for m in members)
    assert (s.match(other) is not None) == covered


LISTS = Path(__file__).resolve().parent / "data" / "lists"


def excerpt(name: str, fmt: str) -> DomainLists:
    return DomainLists.build([], [], [], [ListFile(LISTS / name, ListFormat(fmt))])


def decision(lists: DomainLists, name: str, client: str = "127.0.0.1") -> str:
    verdict = lists.listed(name, client)
    return "-" if verdict is None else verdict.action.value


def test_adguard_cosmetic_rules_never_block_the_site() -> None:
    lists = excerpt("adguard.txt", "adblock")
    for site in ("youtube.com", "reddit.com", "wikipedia.org", "github.com", "example.com", "news.example"):
        assert decision(lists, site) == "-", site
        assert decision(lists, "www." + site) == "-", site
    assert decision(lists, "shop.example") == "-"
    report = lists.reports[0].report
    assert report.skipped_by["cosmetic rule"] == 8
    assert report.skipped_by == {
        "cosmetic rule": 8,
        "URL or path rule": 1,
        "browser-only modifier": 2,
        "unsupported modifier": 1,
        "regex with nested repeats": 1,
    }
    assert "8 cosmetic rule" in lists.reports[0].summary()


def test_adguard_rule_semantics() -> None:
    lists = excerpt("adguard.txt", "adblock")
    assert decision(lists, "ads.example.com") == "sinkhole" and decision(lists, "a.b.ads.example.com") == "sinkhole"
    assert decision(lists, "cdn.ads.example.com") == "pass"  # @@ exception
    assert decision(lists, "x.cdn.ads.example.com") == "pass"
    assert decision(lists, "allowed.tracker.example.net") == "sinkhole"  # $important beats @@
    assert decision(lists, "exact-only.example.org") == "sinkhole"
    assert decision(lists, "sub.exact-only.example.org") == "-"  # |x^ is the name only
    assert decision(lists, "banner42.example.io") == "sinkhole" and decision(lists, "x.banner.example.io") == "sinkhole"
    assert decision(lists, "nobanner.example.io") == "-"
    assert decision(lists, "ad12.example.dev") == "sinkhole" and decision(lists, "ad.example.dev") == "-"
    assert decision(lists, "cdn.example.org") == "-" and decision(lists, "rewrite.example") == "-"


def test_adguard_client_rules_apply_to_their_clients_only() -> None:
    lists = excerpt("adguard.txt", "adblock")
    assert decision(lists, "kids-blocked.example", "192.168.77.20") == "sinkhole"
    assert decision(lists, "www.kids-blocked.example", "192.168.77.20") == "sinkhole"
    assert decision(lists, "kids-blocked.example", "192.168.1.20") == "-"
    assert decision(lists, "phone-tracker.example", "10.9.8.7") == "sinkhole"
    assert decision(lists, "phone-tracker.example", "::ffff:10.9.8.7") == "sinkhole"
    assert decision(lists, "phone-tracker.example", "10.9.8.6") == "-"
    assert decision(lists, "ads.example.com", "10.9.8.7") == "sinkhole"  # the global rules still apply


def test_hosts_entries_match_exactly_as_pihole_does() -> None:
    lists = excerpt("hosts.txt", "hosts")
    for name in ("telemetry.example.com", "metrics.example.net", "pixel.example.org", "v6only.example.com"):
        assert decision(lists, name) == "sinkhole"
        assert decision(lists, "sub." + name) == "-"
    assert decision(lists, "localhost") == "-" and lists.reports[0].report.entries == 5
    assert lists.reports[0].report.skipped == 0


def test_pihole_regex_list() -> None:
    lists = excerpt("pihole-regex.txt", "regex")
    for name in ("ads.tracker.example", "ad3-x.example.com", "a.telemetry.example", "analytic-x.example"):
        assert decision(lists, name) == "sinkhole", name
    assert (
        decision(lists, "doubleclick.example") == "sinkhole" and decision(lists, "x.doubleclick.example") == "sinkhole"
    )
    for name in ("adobe.com", "loads.example.com", "notdoubleclick.example"):
        assert decision(lists, name) == "-", name
    assert lists.reports[0].report.skipped_by == {"regex with nested repeats": 1, "invalid regex": 1}


def test_blocky_wildcards() -> None:
    lists = excerpt("blocky.txt", "wildcard")
    assert decision(lists, "a.wild.example") == "sinkhole" and decision(lists, "wild.example") == "sinkhole"
    assert decision(lists, "x.plain.example") == "sinkhole" and decision(lists, "track7.example") == "sinkhole"
    assert decision(lists, "unwild.example") == "-"


def test_the_policys_allow_beats_important_rules() -> None:
    lists = DomainLists.build(["tracker.example.net"], [], [], [ListFile(LISTS / "adguard.txt", ListFormat.ADBLOCK)])
    assert decision(lists, "tracker.example.net") == "pass"


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"^(.*)*x", r"(x|xy)*(x|xy)*z(\w+)*", r"((ab)*)+c", r"(?:[a-z]+\.?)+$"])
def test_catastrophic_patterns_are_refused(pattern: str) -> None:
    assert regex_problem(pattern) is Skip.UNSAFE_REGEX


@pytest.mark.parametrize("pattern", [r"^ad[0-9]*\.", r"([^.]+\.)+example$", r"^(www\.)?ads?\.", r"[a-z]{3,12}\d+"])
def test_ordinary_patterns_are_accepted(pattern: str) -> None:
    assert regex_problem(pattern) is None


@given(st.text(max_size=200), st.sampled_from(list(ListFormat)))
def test_parse_line_never_raises_in_any_format(text: str, fmt: ListFormat) -> None:
    parse_line(text, fmt)
