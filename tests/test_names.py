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


def _native() -> Any:
    return pytest.importorskip("resolverguard._namec", reason="the C extension is not built (setup.py)")


@given(st.sampled_from(["www.google.co.uk", "localhost", "abc.ddns.net", "a..b", "www.xn--bcher-kva.de"]) | st.text())
def test_native_name_is_the_dataclass_field_for_field(text: str) -> None:
    """`_namec.RegistrableName` (what serving uses where built) against the reference dataclass:
    the same fields, equality, hash, repr (but the class's name), answer of `model_input`, pickle."""
    import pickle

    from resolverguard.names import PyRegistrableName

    native = _native().RegistrableName
    made = parser.parse(text)
    fields = (made.qname, made.registrable, made.label, made.unscored)
    c, py = native(*fields), PyRegistrableName(*fields)
    assert type(made) is native and made == c and (made != c) is False and hash(c) == hash(py)
    assert repr(c) == repr(py).removeprefix("Py") and pickle.loads(pickle.dumps(c)) == c
    assert all(c.model_input(form) == py.model_input(form) for form in InputForm)
    assert c != py and c != fields  # (the dataclass's rule: the same class, then the fields)
    assert native(qname=made.qname, registrable=made.registrable, label=made.label) == native(*fields[:3], None)


def test_name_memo_values_are_not_tracked_by_the_collector() -> None:
    """What the name memo keeps per never-seen name is no work for the garbage collector (issue #17:
    as tracked dataclasses they were what every middle-generation collection walked)."""
    import gc

    _native()
    fresh = NameParser(memo=256)
    names = [fresh.parse(f"n{i}.example.com") for i in range(100)]
    assert not any(gc.is_tracked(n) for n in names)
    assert not any(gc.is_tracked(n) for n in fresh.parse._young.values())
    ids = {id(n) for n in names}
    assert not any(id(o) in ids for o in gc.get_objects())


def test_native_name_holds_only_text() -> None:
    """Untracked, it must not be able to hold a reference cycle: every field is str (Unscored is one)
    or None, qname a str."""
    native = _native().RegistrableName
    for bad in ([1], ({},), ("a", ["b"], None), ("a", None, None, 3)):
        with pytest.raises(TypeError):
            native(*bad, *(None,) * (3 - len(bad)))
    with pytest.raises(AttributeError):
        native("a", None, None).label = "x"  # type: ignore[misc]


def test_without_the_extension_names_are_the_dataclass() -> None:
    """Where `_namec` is not built (no C compiler), serving parses into the dataclass: same fields."""
    import subprocess
    import sys

    probe = (
        "import sys; sys.modules['resolverguard._namec'] = None\n"
        "from resolverguard.names import NameParser, PyRegistrableName, RegistrableName\n"
        "assert RegistrableName is PyRegistrableName\n"
        "n = NameParser().parse('www.Example.com.')\n"
        "assert type(n) is PyRegistrableName and (n.registrable, n.label) == ('example.com', 'example')\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
