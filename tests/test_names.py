from __future__ import annotations

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
        ("xn--bcher-kva.de", "xn--bcher-kva.de", "xn--bcher-kva"),
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
    ],
)
def test_unscored_names_say_why(qname: str, why: Unscored) -> None:
    name = parser.parse(qname)
    assert name.label is None and name.unscored is why


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
