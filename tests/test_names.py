from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolverguard.names import InputForm, NameParser, PrivateSuffixMode, Unscored

parser = NameParser()


@pytest.mark.parametrize(
    ("qname", "registrable", "label"),
    [
        ("WWW.Google.COM.", "google.com", "google"),
        ("a.b.bbc.co.uk", "bbc.co.uk", "bbc"),
        ("0o21xilej5pqpk.ddns.net", "0o21xilej5pqpk.ddns.net", "0o21xilej5pqpk"),
        ("deep.sub.abc.duckdns.org", "abc.duckdns.org", "abc"),
        ("d3ihxdd7hx1jxn.cloudfront.net", "cloudfront.net", "cloudfront"),  # CDN names are not DGA
        ("uhegidiq.bazar", "uhegidiq.bazar", "uhegidiq"),  # unknown TLD: last label stands in
        ("_dmarc.example.com", "example.com", "example"),
        ("sberbank.xn--p1ai", "sberbank.xn--p1ai", "sberbank"),  # an IDN suffix: the label is LDH
    ],
)
def test_registrable_label(qname: str, registrable: str, label: str) -> None:
    name = parser.parse(qname)
    assert (name.registrable, name.label, name.unscored) == (registrable, label, None)
    assert name.model_input(InputForm.REGISTRABLE) == registrable


@pytest.mark.parametrize(
    ("qname", "why"),
    [
        ("localhost", Unscored.SINGLE_LABEL),
        ("printer.local", Unscored.LOCAL),
        ("nas.home.arpa", Unscored.LOCAL),
        ("router.lan", Unscored.LOCAL),
        ("4.3.2.1.in-addr.arpa", Unscored.REVERSE),
        ("co.uk", Unscored.IS_SUFFIX),
        ("b`eigjbgfrpq.bazaar", Unscored.NOT_HOSTNAME),
        ("a..b.com", Unscored.NOT_HOSTNAME),
        ("", Unscored.NOT_HOSTNAME),
        ("x" * 64 + ".com", Unscored.NOT_HOSTNAME),
        ("www.xn--bcher-kva.de", Unscored.PUNYCODE),
    ],
)
def test_unscored_names_say_why(qname: str, why: Unscored) -> None:
    name = parser.parse(qname)
    assert name.label is None and name.unscored is why


def test_training_keeps_punycode_labels_serving_does_not() -> None:
    """Training data keeps them (the splits of trained runs stay the same); only serving passes them."""
    name = NameParser(punycode=True).parse("www.xn--bcher-kva.de")
    assert (name.registrable, name.label, name.unscored) == ("xn--bcher-kva.de", "xn--bcher-kva", None)
    assert parser.parse("www.xn--bcher-kva.de").registrable == "xn--bcher-kva.de"


def test_private_suffix_modes() -> None:
    assert NameParser(PrivateSuffixMode.NONE).parse("abc.ddns.net").label == "ddns"
    assert NameParser(PrivateSuffixMode.ALL).parse("d3ih.cloudfront.net").label == "d3ih"
    assert NameParser(PrivateSuffixMode.DYNAMIC_DNS).parse("d3ih.cloudfront.net").label == "cloudfront"


@given(st.text(max_size=300))
def test_parse_never_raises_and_label_is_a_hostname_label(text: str) -> None:
    name = parser.parse(text)
    if name.label is not None:
        assert 0 < len(name.label) <= 63 and name.label == name.label.lower()
        assert name.registrable is not None and name.registrable.startswith(name.label + ".")
    else:
        assert name.unscored is not None


@functools.cache
def suffix_lists() -> tuple[Any, Any, NameParser]:
    from publicsuffixlist import PublicSuffixList

    icann, every = PublicSuffixList(accept_unknown=False, only_icann=True), PublicSuffixList(accept_unknown=False)
    return icann, every, NameParser(PrivateSuffixMode.DYNAMIC_DNS, memo=0)


def two_walks(name: str) -> str | None:
    """The registrable name as `dynamic-dns` mode defined it before the one-walk shortcut: both
    PSL walks on every name (the reference the shortcut must match exactly)."""
    from resolverguard.names import DYNAMIC_DNS_SUFFIXES

    icann = suffix_lists()[0].privatesuffix(name)
    private = suffix_lists()[1].privatesuffix(name)
    if private is None or private == icann:
        return icann
    return private if private.split(".", 1)[1] in DYNAMIC_DNS_SUFFIXES else icann


def test_dynamic_dns_mode_with_one_psl_walk_matches_two_walks_on_every_kind_of_name() -> None:
    from resolverguard.names import DYNAMIC_DNS_SUFFIXES

    parser = suffix_lists()[2]
    suffixes = [*DYNAMIC_DNS_SUFFIXES, "github.io", "blogspot.com", "co.uk", "com", "s3.amazonaws.com", "bazar"]
    names = [f"{a}{b}" for a in ("", "x7k2.", "www.x7k2.", "a.b.c.") for b in suffixes]
    names += [s.split(".", 1)[1] for s in DYNAMIC_DNS_SUFFIXES if "." in s]  # the provider's own zone
    for name in names:
        assert parser._registrable(name) == two_walks(name), name


@given(st.lists(st.sampled_from(["ddns", "net", "no-ip", "co", "uk", "github", "io", "x9", "com", "www"]), max_size=5))
def test_dynamic_dns_shortcut_matches_two_walks_on_label_mixes(labels: list[str]) -> None:
    name = ".".join(labels)
    if name:
        assert suffix_lists()[2]._registrable(name) == two_walks(name)
