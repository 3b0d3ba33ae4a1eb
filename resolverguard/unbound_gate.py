"""The Unbound module's first stage: clears most never-seen benign names inside Unbound, standard library only.

Why (issue #17): asking the verdict service about every name blocks Unbound's thread for a round trip
(py-spy: ~70% of its time), which held never-seen names through the module to ~0.2x plain Unbound.
Most names need no CNN: the linear n-gram stage (`resolverguard/ngrams.py`) trained beside it clears a
name whose logit is under a gate calibrated at benign FPR 0.05 (`convert/gate.py`); #13 measured that
such a cascade flags exactly what the CNN flags and hands only ~5-8% of benign names on to the CNN.
This file is that gate in pure Python, so it survives `unbound-control reload` (numpy does not,
numpy/numpy#28271), plus everything else that could make a cleared name's verdict differ from the
service's: the lists (their deny keys), the name rules (public suffixes, unscored names) and the
thresholds. The service (`resolverguard/unboundservice.py`) writes it all into one snapshot file;
the module reads it and clears a name only when the service, asked, would certainly answer "pass":

* the gate is on (a gate ships with the model, no deny regex anywhere, every threshold above 0,
  private suffixes not scored as `all`);
* the name is an ordinary hostname under an ICANN suffix whose rules have no wildcard or exception,
  not under a dynamic-DNS suffix, and neither it nor a parent domain is on any deny list of any group;
* the linear stage's logit of the scored text is below the gate.

Everything else (listed, unscored, uncertain names) is asked as before and the CNN decides. The service
scores with the same cascade (`CascadeScorer`), so a cleared name gets the same verdict either way:
a test holds the two to it. The featurizer here repeats `NgramHasher` step by step; a parity test
holds it to the numpy one. Where the package's C extension is built (`_ngramc.c`, beside this file)
the featurizer's logit runs in C from the snapshot's own buffers, the same float bit for bit (gate6:
~0.4 us instead of ~15-50 us a name on Unbound's thread; `native_linear_type`).

The snapshot (little-endian): MAGIC, a u32 header length, a header (a dict in `marshal`'s format 4:
no `json` to import again on every Unbound reload, ~10 ms there), then at the offsets the header
names, the float32 weights (2**bits) and the sorted int64 deny keys (`resolverguard.lists.domain_key`).
It is read whole (a few MB for a million-entry list) instead of mapped, so a reload has nothing to unmap.
"""

from __future__ import annotations

import marshal
import math
import os
import struct
import sys
from _bisect import bisect_left  # (bisect.py only re-exports it)
from _blake2 import blake2b  # hashlib's blake2b without hashlib's OpenSSL import (~4 ms on every reload)
from _operator import itemgetter  # (operator.py only re-exports it)

TYPE_CHECKING = False  # no typing at run time: the module imports this file again on every Unbound reload
if TYPE_CHECKING:
    from array import array
    from typing import Any

MAGIC = b"RGGATE2\0"  # 2: the header is marshal's (1 was JSON)
_HEADER_VERSION = 4  # marshal's format version, the same in every Python 3 from 3.4
_M64 = (1 << 64) - 1
_MULT = 0x9E3779B97F4A7C15  # = resolverguard.ngrams: the featurizer's constants
_ORDER_SALT = 0x632BE59BD9B4E019
_SUFFIX_SALT = 0x2545F4914F6CDD1D
_LDH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-"  # = resolverguard.names._LDH_LABEL (ldh_label)
CLEARED, ABOVE, ASK, LISTED = "cleared", "above", "ask", "listed"  # Gate.decide
_FLOAT32 = struct.Struct("5f")  # the dense features, rounded to float32 (no `array`: it imports collections)
_LETTERS, _DIGITS, _VOWELS = "abcdefghijklmnopqrstuvwxyz", "0123456789", "aeiou"
_HAVE_GC = 1 << 14  # Py_TPFLAGS_HAVE_GC
# = resolverguard.ngrams' shape n-grams: classes by character (others 3, padding 0, the end mark 7),
# base, salt (a shape n-gram of order k is salted as order k + 16)
_SHAPE_CLASSES = (("aeiou", 1), ("tnshrdlcm", 2), ("bfgjkpqvwxyz", 3), ("0123456789", 4), ("-", 5), (".", 6))
_SHAPE_OTHER, _SHAPE_END, _SHAPE_BASE, _SHAPE_SALT = 3, 7, 8, 16
NATIVE_ENV = "RESOLVERGUARD_GATE_C"  # "off": the pure-Python featurizer even where the C one is built


def write_snapshot(path: str | os.PathLike[str], header: dict[str, Any], sections: dict[str, bytes]) -> None:
    """Writes the snapshot atomically (a rename), so the module never reads half of one. `sections`:
    named byte strings (each 8-byte aligned in the file); the header says where each one lies."""
    head = plain(header)
    start, blob = 0, b""
    for _ in range(3):  # the offsets depend on the header's own length: settle them
        blob = marshal.dumps(head, _HEADER_VERSION)
        start = -(-(len(MAGIC) + 4 + len(blob)) // 8) * 8
        at, places = start, {}
        for name, data in sections.items():
            places[name] = [at, len(data)]
            at += -(-len(data) // 8) * 8
        head["sections"] = places
    blob = marshal.dumps(head, _HEADER_VERSION)
    if len(MAGIC) + 4 + len(blob) > start:
        raise ValueError("snapshot header grew while placing its sections")
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "wb") as out:
        out.write(MAGIC + struct.pack("<I", len(blob)) + blob)
        out.write(b"\0" * (start - len(MAGIC) - 4 - len(blob)))
        for data in sections.values():
            out.write(data + b"\0" * (-len(data) % 8))
    os.replace(tmp, path)


def plain(value: Any) -> Any:
    """The header with plain Python values only: marshal takes no subclass (numpy's float64 is one,
    which json took), so a float, int or str subclass becomes its base type; tuples become lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if hasattr(value, "item"):  # a numpy scalar that is no float subclass (float32)
        return plain(value.item())
    raise TypeError(f"snapshot header: {type(value).__name__} is no plain value")


def blake_key(domain: str) -> int:
    """`resolverguard.lists._key`, repeated: the 64-bit key a listed domain is stored under."""
    digest = blake2b(domain.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def gram_index(code: int, order: int, bits: int) -> int:
    """The bucket of the n-gram with this code (`NgramHasher`: Fibonacci hashing of the salted code)."""
    return (((code + order * _ORDER_SALT) & _M64) * _MULT & _M64) >> (64 - bits)


class Featurizer:
    """`resolverguard.ngrams.NgramHasher` + `LinearWeights.logits` for one name, in pure Python.

    Speed is the point (it runs on Unbound's thread for every never-seen name): n-grams of order 1-3
    are looked up in per-order tables of weights by code (`tables`, 64**order entries, written by the
    service), orders 4 and 5 are hashed in list comprehensions, and the label's counts come from
    `bytes.translate`. (A plain class, not a dataclass: this file is imported again on every Unbound
    reload, and `dataclasses` costs milliseconds to import there.)"""

    __slots__ = (
        "charset", "maxlen", "orders", "bits", "weights", "dense", "bias", "tables", "low", "_table", "_dot", "_end",
        "_shift", "_classes", "_entropy_terms", "_high", "_lanes", "_suffixes", "_raw_logit",
        "shapes", "shape_bits", "shape_table", "_shape_classes", "_shape_mask",
    )  # fmt: skip

    def __init__(
        self,
        charset: str,
        maxlen: int,
        orders: tuple[int, ...],
        bits: int,
        weights: Any,
        dense: tuple[float, ...],
        bias: float,
        tables: tuple[Any, ...] = (),
        low: Any = None,
        native: Any = None,
        shapes: tuple[int, ...] = (),
        shape_bits: int = 14,
        shape_table: Any = None,
    ) -> None:
        """`weights`: a float32 sequence of 2**bits (memoryview or array); `tables`: weights by code
        for orders 1, 2, 3; `low`: their sums by trigram code (`low_table`); both made here, slowly,
        when not given (the service writes them into the snapshot). `native`: `_ngramc.Linear`
        (`native_linear_type`), given only when the weights are float16 values (see `_native_logit`);
        `logit` then runs in C, the same float. `shapes`: the stage's shape n-gram orders (their
        weights follow the 2**bits in `weights`); `shape_table`: their sums by window
        (`ngrams.shape_table`), made here, slowly, when not given."""
        self.charset, self.maxlen, self.orders, self.bits = charset, maxlen, orders, bits
        self.shapes, self.shape_bits, self.shape_table = shapes, shape_bits, shape_table
        shape_classes = bytearray([_SHAPE_OTHER] * 256)
        shape_classes[0] = 0
        for chars, klass in _SHAPE_CLASSES:
            for char in chars:
                if char in charset:
                    shape_classes[charset.index(char) + 2] = klass
        self._shape_classes = bytes(shape_classes)
        self._shape_mask = _SHAPE_BASE ** max(shapes, default=0) - 1
        self.weights, self.dense, self.bias, self.tables, self.low = weights, dense, bias, tables, low
        if shapes and shape_table is None:
            self.shape_table = self._make_shape_table()
        table = bytearray([1] * 256)  # 1 = UNKNOWN, 0 = padding, charset from 2 (resolverguard.encoding)
        for index, char in enumerate(self.charset, start=2):
            table[ord(char)] = index
        self._table = bytes(table)
        self._dot = self.charset.index(".") + 2 if "." in self.charset else -1
        classes = bytearray(b"o" * 256)  # code -> its class: vowel, other letter, digit, hyphen, other
        for index, char in enumerate(self.charset, start=2):
            if char in _LETTERS:
                classes[index] = ord("v") if char in _VOWELS else ord("l")
            elif char in _DIGITS or char == "-":
                classes[index] = ord("d") if char in _DIGITS else ord("h")
        self._classes = bytes(classes)
        # p * log2(p) for a character seen n times in a label of length L, by L then n: the same
        # float the sum would compute on the spot, without the division and the logarithm
        # (list comprehensions, not generators: built on every snapshot read, i.e. on every Unbound reload)
        log2 = math.log2
        self._entropy_terms = tuple(
            (0.0, *[(n / max(length, 1)) * log2(n / max(length, 1)) for n in range(1, length + 1)])
            for length in range(self.maxlen + 1)
        )
        self._end = len(self.charset) + 2
        if not self.tables:
            self.tables = make_tables(self.weights, self.bits, self.orders)
        if self.low is None and self.orders == (1, 2, 3, 4, 5):
            self.low = low_table(*self.tables)
        shift = 64 - self.bits
        high = [(o, (o * _ORDER_SALT * _MULT) & _M64) for o in self.orders if o > 3]
        self._high: tuple[tuple[int, int], ...] = tuple(high)  # (order, salt * mult) above order 3
        self._shift = shift
        lanes = self.orders == (1, 2, 3, 4, 5) and self.bits <= 32 and sys.byteorder == "little"  # (32-bit words)
        self._lanes = _Lanes(self.maxlen, self._high, self.bits) if lanes else None
        self._suffixes: dict[bytes, int] = {}
        self._raw_logit = self.logit_of_raw
        if native is not None and self._lanes is not None and self.low is not None and self._end < 64:
            self._raw_logit = self._native_logit(native)

    def _native_logit(self, native: Any) -> Any:
        """`logit_of_raw` in C (`resolverguard/_ngramc.c`): ~0.4 us a name instead of ~10-60 us.

        Why (#17): this stage runs on Unbound's thread for every never-seen name, and its pure-Python
        featurizer was the biggest piece of the module's own Python there (bench/results/module_mod6.md).
        The C type copies this featurizer's own tables from their buffers (the snapshot's memoryviews;
        no numpy, which a reload of Unbound's Python would not survive) and gives the very float
        `logit_of_raw` gives, provided every weight is a float16 value (its sums are then exact in
        any order: the service says so in the snapshot); names it cannot take (maxlen characters or
        more, codes of 64 and up) it hands back to `logit_of_raw`."""
        width = self.maxlen + 1
        flat: list[float] = []
        for row in self._entropy_terms:  # the featurizer's own floats, by length then count
            flat += row
            flat += [0.0] * (width - len(row))
        return native(
            self.low,
            self.weights[: 1 << self.bits],
            struct.pack(f"={len(flat)}d", *flat),
            self._classes,
            tuple(self.dense),
            self.bias,
            self.maxlen,
            self.bits,
            self._end,
            self._dot,
            self.logit_of_raw,
            **self.native_shapes(),
        ).logit

    def native_shapes(self) -> dict[str, Any]:
        """The C type's shape arguments: the window table, the classes by code and the window's width."""
        if not self.shapes:
            return {}
        return {"shape_table": self.shape_table, "shape_classes": self._shape_classes, "shape_width": max(self.shapes)}

    def _make_shape_table(self) -> Any:
        """`ngrams.shape_table` in pure Python (~1 s: tests and stages without a service's snapshot)."""
        from array import array

        width, base, offset = max(self.shapes), _SHAPE_BASE, 1 << self.bits
        out = array("d", bytes(8 * base**width))
        for code in range(base**width):
            total = 0.0
            for order in self.shapes:
                second = (code // base ** (order - 1 - min(1, order - 1))) % base
                if second:
                    total += float(self.weights[offset + self._shape_index(code % base**order, order)])
            out[code] = total
        return out

    def _shape_index(self, code: int, order: int) -> int:
        salted = (code + (order + _SHAPE_SALT) * _ORDER_SALT) & _M64
        return ((salted * _MULT) & _M64) >> (64 - self.shape_bits)

    def _shape_sum(self, raw: bytes) -> float:
        """The shape n-grams' weights: by the window table for a padded name (one lookup per
        position), one by one for a name of maxlen characters or more (no padding column: no
        n-gram starts before it, which the table cannot tell)."""
        classes = raw.translate(self._shape_classes) + bytes([_SHAPE_END])
        total = 0.0
        if len(raw) < self.maxlen:
            table, mask, code = self.shape_table, self._shape_mask, 0
            for c in classes:
                code = ((code << 3) | c) & mask
                total += table[code]
            return total
        offset = 1 << self.bits
        for order in self.shapes:
            for i in range(len(classes) - order + 1):
                code = 0
                for c in classes[i : i + order]:
                    code = code * _SHAPE_BASE + c
                total += float(self.weights[offset + self._shape_index(code, order)])
        return total

    def logit(self, text: str) -> float:
        """The linear stage's logit of `text`, as `LinearWeights.logits` computes it (the float32
        weights summed in float64; float32-rounded dense features)."""
        return self._raw_logit(text.encode("ascii", "replace")[: self.maxlen].translate(self._table))

    def logit_of_raw(self, raw: bytes) -> float:
        """`logit` of a name already encoded (`NameEncoder.raw`: the same table, so the same bytes)."""
        return self._hashed(raw) + self._dense_sum(raw) + self.bias

    def _hashed(self, raw: bytes) -> float:
        if self._lanes is not None and self.low is not None and len(raw) < self.maxlen:
            total = self._hashed_fast(raw, self._lanes)
        else:
            total = self._hashed_any(raw)
        return total + self._shape_sum(raw) if self.shapes else total

    def _hashed_fast(self, raw: bytes, lanes: _Lanes) -> float:
        """Orders 1-5 of a padded name (shorter than maxlen, the usual case), every position at once.

        Each character ends a unigram, a bigram and a trigram, whose weights `low` holds summed by
        the trigram's code, so orders 1-3 cost one lookup per character; g starts with two padding
        columns, and the trigram (pad, pad, c) stands for the first character's unigram and (pad, c)
        bigram, which no real trigram can be (an n-gram never starts two columns into the padding).
        Orders 4 and 5 are hashed for all positions in a few operations on one big integer whose
        96-bit lanes hold one position each (`_Lanes`): the codes are the lanes of g shifted and
        or-ed, one multiplication makes every lane's product (under 2**95: lanes never carry into
        each other), and the buckets are bits 46-63 of each lane, read back as 32-bit words. That
        is ~2x cheaper than a Python expression per position (#17: the ensemble's lone miss). The
        sum is the same float as any other order of it: the weights are float16 values (the stage's
        file stores them so), multiples of 2**-24 under 2**16, whose float64 sums are exact."""
        n = len(raw)
        g = bytearray(12 * n + 36)  # lanes 0, 1: padding; 2 .. n+1: the name; n+2: the end mark
        g[24 : 12 * n + 24 : 12] = raw
        g[12 * n + 24] = self._end
        g0 = int.from_bytes(g, "little")
        g1, g2 = g0 >> 96, g0 >> 192
        found = ((g0 << 12) | (g1 << 6) | g2) & lanes.mask[n + 1]  # the n + 1 trigram codes
        n4 = max(n - 1, 0)  # 4-grams from one padding column on; 5-grams: one fewer
        if n4:
            x4 = (g1 << 18) | (g2 << 12) | ((g0 >> 288) << 6) | (g0 >> 384)
            x5 = ((x4 << 6) | (g0 >> 480)) & lanes.mask[n4 - 1]
            products = ((x4 & lanes.mask[n4]) * _MULT + lanes.k4[n4]) | ((x5 * _MULT + lanes.k5[n4 - 1]) << (96 * n4))
            found |= ((products >> self._shift) & lanes.bucket[2 * n4 - 1]) << (96 * (n + 1))
        words = memoryview(found.to_bytes(12 * (n + 2 * n4 if n4 else n + 1), "little")).cast("I")[::3]
        if n < 3:  # (itemgetter of one index gives no tuple)
            total = sum(map(self.low.__getitem__, words[: n + 1])) + sum(map(self.weights.__getitem__, words[n + 1 :]))
        else:  # (~0.3 us faster than map over 50 indices)
            total = sum(itemgetter(*words[: n + 1])(self.low)) + sum(itemgetter(*words[n + 1 :])(self.weights))
        return float(total + self.weights[self._suffix_index(raw, True)])

    def _hashed_any(self, raw: bytes) -> float:
        """Any orders, any length: each order's codes in turn (names of maxlen or more have no padding column)."""
        padded = len(raw) < self.maxlen  # one padding column marks the start of the name
        g = [0, *raw, self._end] if padded else [*raw, self._end]
        t1, t2, t3 = self.tables
        orders = self.orders
        total = 0.0
        if 1 in orders:  # a unigram of the padding column is no n-gram
            total += sum(map(t1.__getitem__, g[1:] if padded else g))
        c2 = [(a << 6) | b for a, b in zip(g, g[1:], strict=False)]
        if 2 in orders:
            total += sum(map(t2.__getitem__, c2))
        c3 = [(a << 6) | b for a, b in zip(c2, g[2:], strict=False)]
        if 3 in orders:
            total += sum(map(t3.__getitem__, c3))
        code, weights, shift, m64, mult = c3, self.weights, self._shift, _M64, _MULT
        for order, salt in self._high:
            code = [(a << 6) | b for a, b in zip(code, g[order - 1 :], strict=False)]
            total += sum([weights[((c * mult + salt) & m64) >> shift] for c in code])
        return float(total + weights[self._suffix_index(raw, padded)])

    def _suffix_index(self, raw: bytes, padded: bool) -> int:
        """The hashed token of everything after the first dot (`NgramHasher._suffix_code`): the
        suffix's codes as a base-64 number, of which only the last 11 digits survive modulo 2**64."""
        first = raw.find(self._dot)
        tail = raw[max(first, len(raw) - 11) :] if first >= 0 else b""
        index = self._suffixes.get(tail)  # (a few suffixes carry most names: remembered, a bounded few)
        if index is None:
            code = 0
            for c in tail:
                code = (code << 6) | c
            index = ((((code + _SUFFIX_SALT) & _M64) * _MULT) & _M64) >> self._shift
            if len(self._suffixes) >= 4096:
                self._suffixes.clear()
            self._suffixes[tail] = index
        return index

    def _dense_sum(self, raw: bytes) -> float:
        """The label's shape features (length, entropy, digit, vowel and hyphen shares), each rounded
        to float32 as the numpy featurizer stores them, times their weights."""
        dot = raw.find(self._dot)
        label = raw[:dot] if dot >= 0 else raw
        length = len(label)
        safe = max(length, 1)
        entropy = 0.0
        terms = self._entropy_terms[length]
        for n in map(label.count, sorted(set(label))):  # (the numpy featurizer's order: by code)
            entropy -= terms[n]
        classes = label.translate(self._classes)
        vowels = classes.count(b"v")
        letters = vowels + classes.count(b"l")
        digits, hyphens = classes.count(b"d"), classes.count(b"h")
        features: tuple[float, ...] = _FLOAT32.unpack(
            _FLOAT32.pack(length / 32.0, entropy / 5.0, digits / safe, vowels / max(letters, 1), hyphens / safe)
        )  # (the C cast array("f") made: the same float32 values, faster too)
        d = self.dense
        return features[0] * d[0] + features[1] * d[1] + features[2] * d[2] + features[3] * d[3] + features[4] * d[4]


def native_linear_type() -> Any:
    """`resolverguard._ngramc.Linear` (`Featurizer._native_logit`), loaded from beside this file as
    the module loads this file (no package around it inside Unbound), or None: not built (no C
    compiler at install time), or turned off (RESOLVERGUARD_GATE_C=off). The extension keeps no
    state across Unbound's reloads of Python (multi-phase init, a heap type: see `_ngramc.c`)."""
    if os.environ.get(NATIVE_ENV, "").lower() == "off":
        return None
    from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader, ModuleSpec  # (imported already)

    here = os.path.dirname(os.path.abspath(__file__))
    for suffix in EXTENSION_SUFFIXES:
        path = os.path.join(here, "_ngramc" + suffix)
        if not os.path.isfile(path):
            continue
        try:
            loader = ExtensionFileLoader("resolverguard._ngramc", path)
            module = loader.create_module(ModuleSpec("resolverguard._ngramc", loader, origin=path))
            loader.exec_module(module)
        except (ImportError, OSError):
            return None
        linear = getattr(module, "Linear", None)
        # Only a build that takes part in GC (Py_TPFLAGS_HAVE_GC): the featurizer and its C object hold
        # each other, and an older build (ens6's) leaked that cycle, the snapshot with it, on every reread.
        return linear if linear is not None and linear.__flags__ & _HAVE_GC else None
    return None


class _Lanes:
    """`Featurizer._hashed_fast`'s constants by lane count k (k < 2 * maxlen): `mask[k]` keeps k
    96-bit lanes, `k4[k]`/`k5[k]` put the order's salted multiplier in each of k lanes, `bucket[k]`
    keeps the low `bits` of each of k lanes. (~1 ms to build, on every Unbound reload.)"""

    __slots__ = ("mask", "k4", "k5", "bucket")

    def __init__(self, maxlen: int, high: tuple[tuple[int, int], ...], bits: int) -> None:
        ones = [0]  # ones[k]: 1 in each of k lanes
        for k in range(1, 2 * maxlen + 2):
            ones.append(ones[-1] | (1 << (96 * (k - 1))))
        (_, k4), (_, k5) = high
        self.mask = [(1 << (96 * k)) - 1 for k in range(len(ones))]
        self.k4, self.k5 = [k4 * one for one in ones], [k5 * one for one in ones]
        self.bucket = [((1 << bits) - 1) * one for one in ones]


def make_tables(weights: Any, bits: int, orders: tuple[int, ...]) -> tuple[Any, ...]:
    """Weights by n-gram code for orders 1-3 (64**order entries each; an order not used: empty).
    The service writes these into the snapshot (`table_bytes`): slow in pure Python (~0.1 s)."""
    from array import array  # (not at the top: the module never runs this, and array imports collections)

    return tuple(
        array("f", [weights[gram_index(c, order, bits)] for c in range(64**order)] if order in orders else [])
        for order in (1, 2, 3)
    )


def low_table(t1: Any, t2: Any, t3: Any) -> array[float]:
    """Orders 1-3 summed by trigram code (a, b, c): the weights of the unigram c, the bigram (b, c)
    and the trigram; for (0, 0, c), only the unigram and the bigram (pad, c) (see `_hashed_fast`).
    Float64: the three float32 weights add exactly. The service makes the same table with numpy."""
    from array import array

    out = array("d", bytes(8 * 64**3))
    for code in range(64**3):
        c, bc = code & 63, code & 4095
        out[code] = float(t1[c]) + float(t2[bc]) + (float(t3[code]) if code >> 6 else 0.0)
    return out


class Gate:
    """What the module decides alone: `decide(qname)` says CLEARED only when the service would pass it.
    (A plain class, not a NamedTuple: no typing at run time.)"""

    __slots__ = (
        "featurizer", "threshold", "form", "check_dynamic_dns", "rules", "tricky_tlds", "dynamic_dns",
        "dynamic_depths", "local", "deny", "log",
    )  # fmt: skip

    def __init__(
        self,
        featurizer: Featurizer,
        threshold: float,  # logit: below it the name is cleared
        form: str,  # "registrable" or "label": what the model scores
        check_dynamic_dns: bool,
        rules: frozenset[str],  # ICANN public suffix rules without wildcard or exception
        tricky_tlds: frozenset[str],  # TLDs with wildcard or exception rules: asked, not cleared
        dynamic_dns: frozenset[str],
        dynamic_depths: tuple[int, ...],
        local: frozenset[str],
        deny: Any,  # sorted int64 keys (memoryview)
        log: bool,  # the service keeps a query log: cleared names are sent to it
    ) -> None:
        self.featurizer, self.threshold, self.form, self.check_dynamic_dns = (
            featurizer,
            threshold,
            form,
            check_dynamic_dns,
        )
        self.rules, self.tricky_tlds, self.dynamic_dns, self.dynamic_depths = (
            rules,
            tricky_tlds,
            dynamic_dns,
            dynamic_depths,
        )
        self.local, self.deny, self.log = local, deny, log

    def registrable(self, qname: str) -> str | None:
        """The registrable name `NameParser` finds for `qname` (the longest ICANN public suffix that
        leaves a label in front, and that label), or None when the name is not an ordinary one (those
        are asked: the service's name rules decide)."""
        return self._registrable(qname.lower().rstrip("."))

    def _registrable(self, name: str) -> str | None:
        # One pass of str.find over the dots instead of split and a join per suffix (the same
        # suffixes, longest first: `labels[i:]` joined is the text after the i-th dot).
        if not name or len(name) > 253 or ".." in name or name[0] == ".":
            return None
        last = name.rfind(".")
        if last < 0:
            return None
        tld = name[last + 1 :]
        if tld == "arpa" or tld in self.local or tld in self.tricky_tlds or name.endswith(".home.arpa"):
            return None
        starts, dot = [0], name.find(".")
        while dot >= 0:
            starts.append(dot + 1)
            dot = name.find(".", dot + 1)
        if self.check_dynamic_dns:  # the last n labels (the whole name when it has fewer)
            dynamic, count = self.dynamic_dns, len(starts)
            if any(name[starts[max(count - n, 0)] :] in dynamic for n in self.dynamic_depths):
                return None
        rules = self.rules
        for i in range(1, len(starts)):
            if name[starts[i] :] in rules:
                front = starts[i - 1]
                label = name[front : starts[i] - 1]
                if not ldh_label(label) or label.startswith("xn--"):  # (= NameParser: unscored)
                    return None
                return name[front:]
        return None  # the name is a suffix itself, or its TLD is unknown: asked

    def text(self, qname: str) -> str | None:
        """The text the model would score for `qname` (`NameParser`), or None when the name is not
        an ordinary one (those are asked: the service's name rules decide)."""
        registrable = self.registrable(qname)
        if registrable is None or self.form == "registrable":
            return registrable
        return registrable.partition(".")[0]

    def listed(self, qname: str) -> bool:
        """Is the name or a parent domain on any deny list (any group, exact or covering)?"""
        return self._listed(qname.lower().rstrip("."))

    def _listed(self, name: str) -> bool:
        keys = self.deny
        if not len(keys):
            return False
        while name:
            key = blake_key(name)
            i = bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                return True
            name = name.partition(".")[2]
        return False

    def judge(self, qname: str) -> tuple[str, str | None]:
        """`decide`, and the registrable name when the gate ran (the module sends it with ABOVE, so
        the service need not walk the public suffix list again); the name is lowered once for both."""
        name = qname.lower().rstrip(".")
        if self._listed(name):
            return LISTED, None
        registrable = self._registrable(name)
        if registrable is None:
            return ASK, None
        text = registrable if self.form == "registrable" else registrable.partition(".")[0]
        return (CLEARED if self.featurizer.logit(text) < self.threshold else ABOVE), registrable

    def decide(self, qname: str) -> str:
        """CLEARED (pass: the service would), ABOVE (the gate ran and the CNN must decide), LISTED
        (on a deny list: the service decides, and the module asks before resolving it) or ASK (not an
        ordinary name: the service decides everything)."""
        return self.judge(qname)[0]


def ldh_label(label: str) -> bool:
    """`resolverguard.names._LDH_LABEL.match(label)` without `re` (imported again on every Unbound
    reload): 1-63 of [a-z0-9_-], no hyphen first or last; `$` also matches before a final newline."""
    if label[-1:] == "\n":
        label = label[:-1]
    return 0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-" and not label.strip(_LDH_CHARS)


def read_snapshot(path: str | os.PathLike[str], native: bool = True) -> tuple[Gate | None, str]:
    """(the gate, why) from a snapshot file: (None, why) when there is none, it is unreadable or
    the service said the gate is off; the module then asks about every name, as before. `native`:
    the featurizer runs in C where the extension is built and the service wrote float16 weights
    (`native_linear_type`); the pure-Python one otherwise (or with native=False), the same floats."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        return None, f"no gate snapshot ({err.strerror})"
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        return None, "not a gate snapshot"
    try:
        (size,) = struct.unpack_from("<I", data, len(MAGIC))
        head = marshal.loads(data[len(MAGIC) + 4 : len(MAGIC) + 4 + size])
        if type(head) is not dict:
            raise ValueError("the header is no table")
        if not head.get("enabled"):
            return None, f"gate off: {head.get('why_off', 'no reason given')}"
        view = memoryview(data)
        places = head["sections"]

        def section(name: str, kind: Any) -> Any:
            at, size = places[name]
            if at + size > len(data):
                raise ValueError(f"section {name} runs past the end of the file")
            return view[at : at + size].cast(kind)

        weights, deny, table_view = section("weights", "f"), section("deny", "q"), section("tables", "f")
        shapes, shape_bits = tuple(head.get("shapes", ())), int(head.get("shape_bits", 14))
        n_weights = (1 << int(head["bits"])) + ((1 << shape_bits) if shapes else 0)
        if len(weights) != n_weights or len(table_view) != 64 + 64**2 + 64**3:
            raise ValueError("section sizes do not match the header")
        shape_view = section("shapes", "d") if shapes else None
        if shape_view is not None and len(shape_view) != _SHAPE_BASE ** max(shapes):
            raise ValueError("section sizes do not match the header")
        tables = (table_view[:64], table_view[64 : 64 + 64**2], table_view[64 + 64**2 :])
        low = section("low", "d") if places.get("low", [0, 0])[1] else None
        if low is not None and len(low) != 64**3:
            raise ValueError("section sizes do not match the header")
        featurizer = Featurizer(
            head["charset"],
            int(head["maxlen"]),
            tuple(head["orders"]),
            int(head["bits"]),
            weights,
            tuple(head["dense"]),
            float(head["bias"]),
            tables,
            low,
            native_linear_type() if native and head.get("weights_float16") is True else None,
            shapes,
            shape_bits,
            shape_view,
        )
        gate = Gate(
            featurizer,
            float(head["threshold"]),
            head["form"],
            bool(head["check_dynamic_dns"]),
            frozenset(head["rules"]),
            frozenset(head["tricky_tlds"]),
            frozenset(head["dynamic_dns"]),
            tuple(head["dynamic_depths"]),
            frozenset(head["local"]),
            deny,
            bool(head["log"]),
        )
    except (KeyError, ValueError, TypeError, EOFError, struct.error) as err:
        return None, f"unreadable gate snapshot: {type(err).__name__}: {err}"
    c = "C" if featurizer._raw_logit != featurizer.logit_of_raw else "Python"
    return gate, f"gate on (model {head.get('model_version', '?')}, {len(deny)} deny keys, featurizer in {c})"
