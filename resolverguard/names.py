"""Names: which part of a query name the model scores (the chain's name step applies it).

DGA malware registers fresh second-level domains (or fresh labels under a dynamic-DNS provider), so
the model looks at the label just left of the public suffix, never at hostnames a site is free to
pick (`cdn-12.example.com`) and never at the suffix itself (the TLD a family happens to use says
nothing about the next family, and ccTLD-heavy benign traffic must not be penalised for it).
Training (`convert/`) derives its inputs through the same `NameParser`, so the two cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from publicsuffixlist import PublicSuffixList

from resolverguard.memo import BoundedMemo

# Dynamic-DNS providers (all in the PSL's private section or well known): anybody can create
# `<anything>.<provider>` for free, which is exactly what corebot, symmi, kraken and vidro do.
DYNAMIC_DNS_SUFFIXES: frozenset[str] = frozenset(
    [
        "ddns.net",
        "duckdns.org",
        "dyndns.org",
        "dyndns.biz",
        "dyndns.info",
        "dyndns.tv",
        "dynserv.com",
        "dynu.net",
        "dynv6.net",
        "hopto.org",
        "zapto.org",
        "sytes.net",
        "serveftp.com",
        "servebeer.com",
        "servehttp.com",
        "serveblog.net",
        "servegame.com",
        "no-ip.org",
        "no-ip.biz",
        "no-ip.info",
        "no-ip.co.uk",
        "noip.me",
        "myftp.org",
        "myftp.biz",
        "mooo.com",
        "yi.org",
        "afraid.org",
        "chickenkiller.com",
        "strangled.net",
        "ignorelist.com",
        "dns-dns.com",
        "changeip.com",
        "freeddns.org",
        "ddnsking.com",
        "3utilities.com",
        "bounceme.net",
        "gotdns.ch",
        "webhop.me",
        "myvnc.com",
        "redirectme.net",
        "freedynamicdns.net",
        "freedynamicdns.org",
        "dnsfor.me",
        "dnsalias.com",
        "dnsalias.net",
        "dnsalias.org",
        "homeip.net",
        "is-a-geek.com",
    ]
)

_DYNAMIC_DNS_DEPTHS = tuple(sorted({suffix.count(".") + 1 for suffix in DYNAMIC_DNS_SUFFIXES}))

# Names that never leave the site (RFC 6761, RFC 6762, RFC 8375, common home-router suffixes).
LOCAL_SUFFIXES: frozenset[str] = frozenset(
    [
        "local",
        "localhost",
        "lan",
        "home",
        "internal",
        "intranet",
        "corp",
        "localdomain",
        "home.arpa",
        "test",
        "invalid",
        "example",
        "onion",
    ]
)

_LDH_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


class PrivateSuffixMode(str, Enum):
    """How names under a private (non-ICANN) public suffix are scored."""

    DYNAMIC_DNS = "dynamic-dns"  # score the label under a known dynamic-DNS provider
    ALL = "all"  # score the label under any private PSL suffix (github.io, cloudfront.net, ...)
    NONE = "none"  # ICANN suffixes only: x.ddns.net is scored as "ddns"


class InputForm(str, Enum):
    """What string of a name the model reads; fixed at training time and stored in the metadata."""

    LABEL = "label"  # "google" for www.google.co.uk (the shipped default)
    REGISTRABLE = "registrable"  # "google.co.uk"


class Unscored(str, Enum):
    """Why a name is not given to the model; logged so that "not scored" is never silent."""

    NOT_HOSTNAME = "not a valid hostname"
    SINGLE_LABEL = "single label"
    REVERSE = "reverse lookup (arpa)"
    LOCAL = "local name"
    IS_SUFFIX = "name is a public suffix"
    PUNYCODE = "internationalized label (punycode): outside the model's domain"


def is_punycode(label: str) -> bool:
    """Is this label an IDNA A-label (`xn--...`)? The model reads LDH characters; an A-label is Unicode
    encoded into them, random-looking by construction (`xn--38jxbj0vre5b1otb0ex220...`), and no DGA
    family in the training data uses them, so a score of one measures the encoding, not the name.
    #13 found such names among the few that set the linear stage's sinkhole threshold."""
    return label.startswith("xn--")


@dataclass(frozen=True, slots=True)
class PyRegistrableName:
    """What the name step learned about one query name.

    Served as `RegistrableName`: `resolverguard._namec.RegistrableName` where the extension is
    built, the same fields, equality, hash, repr and `model_input`, but an object the garbage
    collector does not track. The name memo keeps one per never-seen name, and as this dataclass
    they were nearly all of what the middle generation's collections walked: 0.5-1.9 ms each, a
    few times in 4 s at ~1,500 never-seen names/s, the event loop held meanwhile (issue #17,
    bench/results/p99_gc12.md). This class is the reference (tests compare the two) and what
    serving uses without a C compiler."""

    qname: str  # lowercased, no trailing dot
    registrable: str | None  # eTLD+1 (or label + private suffix), None when not scored
    label: str | None  # the string the model scores
    unscored: Unscored | None = None

    def model_input(self, form: InputForm) -> str | None:
        """The string the model scores for this name, or None when it is not scored."""
        if self.label is None:
            return None
        return self.label if form is InputForm.LABEL else self.registrable


if TYPE_CHECKING:
    RegistrableName = PyRegistrableName
else:
    try:
        from resolverguard._namec import RegistrableName
    except ImportError:
        RegistrableName = PyRegistrableName


class NameParser:
    """Reduces a query name to the label the model scores, using the bundled Public Suffix List."""

    def __init__(
        self,
        private_suffixes: PrivateSuffixMode = PrivateSuffixMode.DYNAMIC_DNS,
        memo: int = 16384,
        punycode: bool = False,
    ) -> None:
        """`punycode` True: punycode labels are returned for scoring like any other (training data
        keeps them, so the splits of runs already trained stay the same; `convert.evaluate.Scores`
        then leaves them out of every benign pool). Serving leaves it False: they are `Unscored.PUNYCODE`."""
        self._mode, self._punycode = private_suffixes, punycode
        self._all = PublicSuffixList(accept_unknown=False)
        self._icann = PublicSuffixList(accept_unknown=False, only_icann=True)
        # Two PSL walks cost ~30 us and popular names repeat all day: keep recent answers (bounded).
        self.parse = BoundedMemo(self._parse, memo)

    def _parse(self, qname: str) -> RegistrableName:
        name = qname.lower().rstrip(".")
        why = self._why_unscored(name)
        if why is not None:
            return RegistrableName(name, None, None, why)
        registrable = self._registrable(name)
        if registrable is None:
            if self._icann.publicsuffix(name) is not None:
                return RegistrableName(name, None, None, Unscored.IS_SUFFIX)
            # Unknown TLD (OpenNIC/EmerDNS `.bazar`, a typo): the last label stands in for the suffix.
            registrable = ".".join(name.rsplit(".", 2)[-2:])
        label = registrable.split(".", 1)[0]
        if not _LDH_LABEL.match(label):
            return RegistrableName(name, registrable, None, Unscored.NOT_HOSTNAME)
        if is_punycode(label) and not self._punycode:
            return RegistrableName(name, registrable, None, Unscored.PUNYCODE)
        return RegistrableName(name, registrable, label)

    def model_input(self, name: str, form: InputForm = InputForm.LABEL) -> str | None:
        """The string the model scores for `name`, or None; what training builds its inputs from."""
        return self.parse(name).model_input(form)

    def _why_unscored(self, name: str) -> Unscored | None:
        if not name or len(name) > 253 or "" in name.split("."):  # (an empty label: "a..b", ".a")
            return Unscored.NOT_HOSTNAME
        if "." not in name:
            return Unscored.SINGLE_LABEL
        tld = name.rsplit(".", 1)[1]
        if tld == "arpa" and not name.endswith("home.arpa"):
            return Unscored.REVERSE
        if tld in LOCAL_SUFFIXES or name.endswith(".home.arpa"):
            return Unscored.LOCAL
        return None

    def _registrable(self, name: str) -> str | None:
        icann = self._icann.privatesuffix(name)
        if self._mode is PrivateSuffixMode.NONE:
            return icann
        if self._mode is PrivateSuffixMode.DYNAMIC_DNS and not self._under_dynamic_dns(name):
            # The second PSL walk can only change the answer when a dynamic-DNS suffix ends the name
            # (the kept suffix is a tail of it): skipping it saves ~2.5 us per never-seen name.
            return icann
        private = self._all.privatesuffix(name)
        if private is None or private == icann:
            return icann
        if self._mode is PrivateSuffixMode.ALL:
            return private
        suffix = private.split(".", 1)[1]
        return private if suffix in DYNAMIC_DNS_SUFFIXES else icann

    @staticmethod
    def _under_dynamic_dns(name: str) -> bool:
        """Is the name at or under a dynamic-DNS suffix? (Its last labels, as many as a suffix has.)
        The tails are cut with `rfind`, not by splitting the name and joining labels in a generator:
        every never-seen name comes here (0.90 -> 0.75 us for a 3-label name; py-spy put the
        generator at ~4% of a miss's samples in bench/hotpath.py, which timeit does not confirm)."""
        end = len(name)
        for depth in range(1, _DYNAMIC_DNS_DEPTHS[-1] + 1):
            end = name.rfind(".", 0, end)
            if depth in _DYNAMIC_DNS_DEPTHS and name[end + 1 :] in DYNAMIC_DNS_SUFFIXES:
                return True
            if end < 0:  # (the whole name was that tail)
                return False
        return False
