"""The model: a `.tflite` file plus the metadata JSON beside it, loaded and checked once at start-up.

Everything serving needs to know about a model lives in the metadata (charset, max length, input
form, calibrated thresholds) and is read here only, so a model cannot be served with the wrong
encoder. Anything missing, corrupt or inconsistent is a `ModelError` before the first query.
"""

from __future__ import annotations

import hashlib
import json
import math
import site
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from resolverguard.encoding import PAD, NameEncoder
from resolverguard.errors import ModelError
from resolverguard.names import InputForm

METADATA_FORMAT = "resolverguard-model/1"


class Scorer(Protocol):
    """Anything that turns model-input strings into P(DGA) scores (the score step needs no more)."""

    def score(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True)
class ModelMetadata:
    """The contents of `<model>.json`: read here (`from_json`) and written here (`write`), by the
    detector's ship step and the family head alike, so the file has one definition. Keys serving
    does not interpret (training figures, the family list) travel in `extra`."""

    model_version: str
    architecture: str
    encoder: NameEncoder
    input_form: InputForm
    thresholds: dict[str, float]
    tflite_sha256: str | None = None
    extra: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any], where: str) -> ModelMetadata:
        def need(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
            if key not in mapping or not isinstance(mapping[key], kind):
                raise ModelError(f"{where}: metadata key {key!r} is missing or not {getattr(kind, '__name__', kind)}")
            return mapping[key]

        if raw.get("format") != METADATA_FORMAT:
            raise ModelError(f"{where}: not a resolverguard model metadata file (format != {METADATA_FORMAT!r})")
        spec = need(raw, "input", dict)
        try:
            encoder = NameEncoder(need(spec, "charset", str), need(spec, "maxlen", int))
            form = InputForm(spec.get("form", "label"))
        except ValueError as err:
            raise ModelError(f"{where}: bad input spec: {err}") from None
        if spec.get("padding", "pre") != "pre":
            raise ModelError(f"{where}: only padding 'pre' is supported")
        thresholds = need(raw, "thresholds", dict)
        for name, value in thresholds.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ModelError(f"{where}: threshold {name!r} must be a number in [0, 1]")
        return cls(
            need(raw, "model_version", str),
            str(raw.get("architecture", "unknown")),
            encoder,
            form,
            {k: float(v) for k, v in thresholds.items()},
            raw.get("tflite_sha256"),
            raw,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object `from_json` reads back; keys of `extra` come first, the checked ones win."""
        raw = {k: v for k, v in (self.extra or {}).items() if k not in _OWN_KEYS}
        return {
            "format": METADATA_FORMAT,
            "model_version": self.model_version,
            "architecture": self.architecture,
            **{k: v for k, v in raw.items() if k in _LEADING_KEYS},
            "input": {
                "form": self.input_form.value,
                "charset": self.encoder.charset,
                "maxlen": self.encoder.maxlen,
                "padding": "pre",
                "dtype": "int32",
            },
            "thresholds": dict(self.thresholds),
            **{k: v for k, v in raw.items() if k not in _LEADING_KEYS},
            "tflite_sha256": self.tflite_sha256,
        }

    def write(self, model_path: Path, content: bytes) -> None:
        """Writes the metadata beside `model_path` with the sha256 of `content`, the model's bytes."""
        meta = replace(self, tflite_sha256=hashlib.sha256(content).hexdigest())
        metadata_path(model_path).write_text(json.dumps(meta.to_json(), indent=2) + "\n", encoding="utf-8")


_OWN_KEYS = frozenset({"format", "model_version", "architecture", "input", "thresholds", "tflite_sha256"})
_LEADING_KEYS = frozenset({"quantization"})


def load_metadata(path: Path) -> ModelMetadata:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: model metadata not found (expected next to the .tflite file)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: cannot read model metadata: {err}") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{path}: model metadata must be a JSON object")
    return ModelMetadata.from_json(raw, str(path))


def metadata_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def _interpreter_class() -> Any:
    """LiteRT (`ai-edge-litert`) first, the older `tflite-runtime` where only that is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError:
        raise ModelError("no TFLite interpreter: install ai-edge-litert (pip install ai-edge-litert)") from None


MAX_CHUNK = 64  # the largest batch one interpreter runs (the micro-batcher's default batch)


def chunks(n: int) -> list[int]:
    """`n` rows as batches of powers of two, largest first (13 -> [8, 4, 1]): at most seven
    interpreters, none resized, and no padding rows to run."""
    out = [MAX_CHUNK] * (n // MAX_CHUNK)
    n %= MAX_CHUNK
    size = MAX_CHUNK
    while n:
        size >>= 1
        if n & size:
            out.append(size)
            n -= size
    return out


class TFLiteScorer:
    """Runs the character model in the LiteRT interpreter on one thread (the resolver's own)."""

    def __init__(self, model_path: Path, metadata: ModelMetadata) -> None:
        self.path, self.metadata, self.encoder = model_path, metadata, metadata.encoder
        try:
            content = model_path.read_bytes()
        except OSError as err:
            raise ModelError(f"{model_path}: cannot read model: {err.strerror}") from None
        if metadata.tflite_sha256 and hashlib.sha256(content).hexdigest() != metadata.tflite_sha256:
            raise ModelError(f"{model_path}: file does not match the sha256 in its metadata (corrupt or mismatched)")
        self._content = content
        try:
            self._interp = _interpreter_class()(model_content=content, num_threads=1)
            self._interp.allocate_tensors()
        except ModelError:
            raise
        except Exception as err:  # the interpreter raises plain ValueError/RuntimeError on bad flatbuffers
            raise ModelError(f"{model_path}: not a valid TFLite model: {err}") from None
        self._check_signature()
        self._interp.resize_tensor_input(self._in, [1, self.encoder.maxlen])
        self._interp.allocate_tensors()
        self._sized: dict[int, Any] = {1: self._interp}  # batch size (a power of two) -> its interpreter

    def _check_signature(self) -> None:
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{self.path}: expected one input and one output tensor")
        shape, dtype = list(inputs[0]["shape"]), inputs[0]["dtype"]
        if len(shape) != 2 or shape[1] != self.encoder.maxlen or dtype != np.int32:
            raise ModelError(f"{self.path}: input is {shape} {dtype}, metadata says [n, {self.encoder.maxlen}] int32")
        self._in, self._out = inputs[0]["index"], outputs[0]["index"]
        self._width = int(outputs[0]["shape"][-1])  # outputs per row

    def _sized_interpreter(self, n: int) -> Any:
        """The interpreter whose input holds exactly `n` rows (a power of two up to MAX_CHUNK), made
        on first use. Why one per size (#17): resizing one interpreter (`resize_tensor_input` +
        `allocate_tensors`, which plans XNNPACK again) cost 4-22 us a batch, twice when a batch came
        between lone names (7% of the Unbound verdict service's busy time at peak). All seven of the
        shipped model's took ~0.3 MB together (RSS, measured)."""
        interp = self._sized.get(n)
        if interp is None:
            interp = _interpreter_class()(model_content=self._content, num_threads=1)
            interp.resize_tensor_input(self._in, [n, self.encoder.maxlen])
            interp.allocate_tensors()
            self._sized[n] = interp
        return interp

    def outputs(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The model's output rows, (n, k); ModelError on non-finite output (never a silent NaN)."""
        rows = np.zeros((len(texts), self.encoder.maxlen), dtype=np.int32)
        for row, text in zip(rows, texts, strict=True):
            self.encoder.encode_one(text, row)
        return self._invoke(rows)

    def outputs_of_rows(self, rows: npt.NDArray[np.int32]) -> npt.NDArray[np.float32]:
        """`outputs` of rows already encoded by this model's encoder (the ensemble encodes once for both stages)."""
        return self._invoke(np.ascontiguousarray(rows, dtype=np.int32))

    def _invoke(self, rows: npt.NDArray[np.int32]) -> npt.NDArray[np.float32]:
        """Runs the rows in chunks of fixed sizes (`chunks`): no interpreter is ever resized, and a
        row's output does not depend on the rows beside it (tests hold batch and lone scores equal)."""
        if not len(rows):
            return np.zeros((0, self._width), dtype=np.float32)
        parts, at = [], 0
        for size in chunks(len(rows)):
            interp = self._sized_interpreter(size)
            interp.set_tensor(self._in, rows[at : at + size])
            interp.invoke()
            parts.append(np.array(interp.get_tensor(self._out), dtype=np.float32).reshape(size, -1))
            at += size
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if not np.all(np.isfinite(out)):
            raise ModelError("model returned a non-finite output")
        return out

    def score(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """P(DGA) per text (a one-output model)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        scores = self.outputs(texts)
        if scores.shape[1] != 1:
            raise ModelError(f"{self.path}: a detector has one output per name, this one has {scores.shape[1]}")
        return scores[:, 0]


ENSEMBLE_HOW = "cascade-mean"


def linear_digest(stage: Any) -> str:
    """sha256 of the linear stage's weights as serving holds them (the `.npz` zip is not byte-stable)."""
    h = hashlib.sha256()
    for part in (stage.weights.astype(np.float16), stage.dense.astype(np.float32), np.float64(stage.bias)):
        h.update(np.ascontiguousarray(part).tobytes())
    if stage.hasher.shapes:  # same-sized weights under other shape orders are another stage
        h.update(f"shapes={list(stage.hasher.shapes)},{stage.hasher.shape_bits}".encode())
    return h.hexdigest()


def cnn_logits(p: npt.NDArray[np.float32], temperature: float) -> npt.NDArray[np.float64]:
    """The CNN's logit from its tempered float32 output: T * logit(p), p kept off 0 and 1 in float32."""
    one = np.float32(1.0)
    q = np.clip(p, np.nextafter(np.float32(0.0), one), np.nextafter(one, np.float32(0.0))).astype(np.float64)
    return temperature * (np.log(q) - np.log1p(-q))


def ensemble_scores(
    cnn_p: npt.NDArray[np.float32], linear: npt.NDArray[np.float64], gate: float, temperature: float
) -> npt.NDArray[np.float32]:
    """The shipped combination (#13, models/REPORT.md): names whose linear-stage logit is under the gate
    score 0 (pass, as the Unbound gate clears them); the others sigmoid of the mean of the two logits.
    `cnn_p` is read only where the gate lets a name through. Training (convert.ship) calibrates the
    thresholds with this very function."""
    out = np.zeros(len(linear), dtype=np.float32)
    reach = linear >= gate
    if reach.any():
        z = (cnn_logits(cnn_p[reach], temperature) + linear[reach]) / 2.0
        out[reach] = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    return out


_P_LOW = float(np.nextafter(np.float32(0.0), np.float32(1.0)))  # (cnn_logits' clip, as Python floats)
_P_HIGH = float(np.nextafter(np.float32(1.0), np.float32(0.0)))


def _featurizer(stage: Any, shapes_table: bytes | None = None) -> Any:
    """The pure-Python featurizer of the Unbound gate over this stage, its order 1-3 tables made in
    numpy (`ngrams.gram_tables`, ~50 ms; in pure Python they cost seconds)."""
    from resolverguard.ngrams import gram_tables, low_table, shape_table
    from resolverguard.unbound_gate import Featurizer

    tables = gram_tables(stage)
    view = memoryview(tables).cast("f")
    split = (view[:64], view[64 : 64 + 64**2], view[64 + 64**2 :])
    low = memoryview(low_table(tables)).cast("d") if stage.hasher.orders == (1, 2, 3, 4, 5) else None
    h = stage.hasher
    weights = memoryview(stage.weights.astype(np.float32).tobytes()).cast("f")
    dense = tuple(float(x) for x in stage.dense)
    table = shapes_table if shapes_table is not None or not h.shapes else shape_table(stage)
    shapes = memoryview(table).cast("d") if table is not None else None
    return Featurizer(
        h.encoder.charset, h.encoder.maxlen, h.orders, h.bits, weights, dense, stage.bias, split, low,
        shapes=h.shapes, shape_bits=h.shape_bits, shape_table=shapes,
    )  # fmt: skip


class EnsembleScorer(TFLiteScorer):
    """The CNN and the linear n-gram stage (`models/default.gate.npz`) as one scorer, when the metadata
    has `ensemble`: measured ahead of the CNN alone on families never seen and on the random split
    (models/REPORT.md, #13 session 7). The linear stage runs first on every name (for one name in C,
    `ngrams.native_linear`, else the pure-Python `resolverguard.unbound_gate.Featurizer`, the same float;
    for a batch the C stage name by name where it is built, else numpy's `ngrams.RowLinear`); only
    names at or above its gate (~5% of benign names) reach the CNN. A name is encoded once for both
    stages (#17: the second encoding, the reference numpy featurizer's orders 1-3 and the batch checks of a lone call: a
    random-looking name 34.1 -> 23.5 us alone, 13.6 -> 9.0 in batches of 64, bench/results/ensemble_std5.md);
    `ngrams.RowLinear` reads the CNN's rows, and
    the scores are the ones the reference computes, bit for bit (tests/test_shipped_model.py). With the
    C stage a lone random-looking name costs 10.5-12.8 us instead of 20.9-24.4, a popular one 1.4-1.9
    instead of 9.6-10.6 (bench/results/ensemble_ens6.md; tests/test_ngramc.py holds it to the old path
    with `==`)."""

    def __init__(self, model_path: Path, metadata: ModelMetadata) -> None:
        super().__init__(model_path, metadata)
        from resolverguard.ngrams import LinearWeights, RowLinear, native_linear, shape_table

        spec = (metadata.extra or {}).get("ensemble", {})
        where = str(metadata_path(model_path))
        if spec.get("how") != ENSEMBLE_HOW or not isinstance(spec.get("linear"), str):
            raise ModelError(f"{where}: ensemble: 'how' must be {ENSEMBLE_HOW!r} with a 'linear' file")
        try:
            self.gate, self.temperature = float(spec["gate_logit"]), float(spec["cnn_temperature"])
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{where}: ensemble: 'gate_logit' and 'cnn_temperature' must be numbers") from None
        self.linear = LinearWeights.load(model_path.parent / spec["linear"])
        if linear_digest(self.linear) != spec.get("linear_sha256"):
            raise ModelError(f"{where}: ensemble: {spec['linear']} is not the linear stage it was calibrated with")
        shapes = shape_table(self.linear) if self.linear.hasher.shapes else None  # (~50 ms: made once for both)
        self.featurizer = _featurizer(self.linear, shapes)
        # one encoding for both stages when they read the same rows (the shipped pair does)
        self.rows = RowLinear(self.linear, shapes) if self.linear.hasher.encoder == self.encoder else None
        self.linear_one = native_linear(self.linear, self.featurizer)  # featurizer.logit_of_raw, in C when built
        # the batch's linear stage one name at a time in C, where it is built (see `score`)
        self._linear_c = self.rows is not None and self.linear_one != self.featurizer.logit_of_raw
        # a lone name's CNN input: its codes in the low byte of each int32 (no array made per name)
        self._one = bytearray(4 * self.encoder.maxlen)
        self._one_row = np.frombuffer(self._one, dtype=np.int32).reshape(1, self.encoder.maxlen)
        self._one_low = 0 if sys.byteorder == "little" else 3

    def _score_one(self, text: str) -> float:
        """`ensemble_scores` for one name in Python floats: a lone miss (the usual case on a lightly
        loaded resolver) pays no numpy call overhead. A test holds it to the batch path."""
        if self.rows is None:
            linear = self.linear_one(self.linear.hasher.encoder.raw(text))
            if linear < self.gate:
                return 0.0
            p = float(super().score([text])[0])
        else:  # one encoding for both stages, and the interpreter's output read as one float
            raw = self.encoder.raw(text)
            linear = self.linear_one(raw)
            if linear < self.gate:
                return 0.0
            p = self._cnn_one(raw)
        p = min(max(p, _P_LOW), _P_HIGH)
        z = (self.temperature * (math.log(p) - math.log1p(-p)) + linear) / 2.0
        return 1.0 / (1.0 + math.exp(-z))

    def _cnn_one(self, raw: bytes) -> float:
        """`TFLiteScorer.score` of one encoded name (`NameEncoder.raw`), the same float, without
        the batch path's array checks (~3 us of a ~12 us call): the codes go into a row kept for
        it (a bytearray under an int32 view: one slice assignment, no array made per name)."""
        self._one[self._one_low :: 4] = raw.rjust(self.encoder.maxlen, bytes([PAD]))
        self._interp.set_tensor(self._in, self._one_row)
        self._interp.invoke()
        out = self._interp.get_tensor(self._out)
        if out.size != 1:
            raise ModelError(f"{self.path}: a detector has one output per name, this one has {out.size}")
        p = float(out.item())
        if not math.isfinite(p):
            raise ModelError("model returned a non-finite output")
        return p

    def linear_logits(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        if len(texts) == 1:  # numpy's per-call overhead is ~4x the pure-Python featurizer for one name
            return np.array([self.linear_one(self.linear.hasher.encoder.raw(texts[0]))], dtype=np.float64)
        return self.linear.logits(texts)

    def score(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        if len(texts) == 1:
            return np.array([self._score_one(texts[0])], dtype=np.float32)
        if self.rows is None:
            linear = self.linear_logits(texts)
            reach = linear >= self.gate
            cnn_p = np.zeros(len(texts), dtype=np.float32)
            if reach.any():
                cnn_p[reach] = super().score([t for t, r in zip(texts, reach.tolist(), strict=True) if r])
            return ensemble_scores(cnn_p, linear, self.gate, self.temperature)
        if self._linear_c:
            raws = [self.encoder.raw(text) for text in texts]
            if max(map(len, raws)) < self.encoder.maxlen:  # (else RowLinear: it reads those its own way)
                return self._score_raws(raws)
        rows = self.encoder.encode(texts)
        linear = self.rows.logits(texts, rows)
        reach = linear >= self.gate
        cnn_p = np.zeros(len(texts), dtype=np.float32)
        if reach.any():
            cnn_p[reach] = self._detector(self.outputs_of_rows(rows[reach]))
        return ensemble_scores(cnn_p, linear, self.gate, self.temperature)

    def _score_raws(self, raws: list[bytes]) -> npt.NDArray[np.float32]:
        """`score` of a batch with the linear stage in C, one name at a time: the same floats as
        `RowLinear` (both are the reference's bit for bit, tests/test_shipped_model.py), at ~0.5-1 us a
        name against numpy's 3.6 (batches of 64) to 25 (of 4) us (#17, bench/results/miss_rd12b.md);
        only the names that reach the CNN are made into rows."""
        one, gate = self.linear_one, self.gate
        logits = [one(raw) for raw in raws]
        reach = [i for i, logit in enumerate(logits) if logit >= gate]  # (Python floats: no numpy call)
        cnn_p = np.zeros(len(raws), dtype=np.float32)
        if reach:
            cnn_p[reach] = self._detector(self.outputs_of_rows(self.encoder.rows_of_raw([raws[i] for i in reach])))
        return ensemble_scores(cnn_p, np.array(logits, dtype=np.float64), gate, self.temperature)

    def _detector(self, scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if scores.shape[1] != 1:
            raise ModelError(f"{self.path}: a detector has one output per name, this one has {scores.shape[1]}")
        return scores[:, 0]


def shipped(filename: str) -> Path | None:
    """A file of the shipped `models/`: in the source tree, or where `pip install .` put the
    package's data files (`<base>/share/resolverguard/models`, see pyproject's data-files)."""
    for base in model_dirs():
        if (base / filename).exists():
            return base / filename
    return None


def model_dirs() -> list[Path]:
    """Where the shipped models may be, first match wins. The install base is found from this
    file's own place (`<base>/lib/pythonX.Y/site-packages/resolverguard/`), which covers a venv,
    `--prefix`, `--user` (`~/.local`) and the system alike; sys.prefix, the user base and
    sysconfig's data path are asked too, for layouts where that walk does not fit."""
    here = Path(__file__).resolve().parent
    bases = [here.parents[3]] if len(here.parents) > 3 else []
    bases += [Path(sys.prefix), Path(site.getuserbase()), Path(sysconfig.get_path("data"))]
    out = [here.parent / "models"]
    for base in bases:
        candidate = base / "share" / "resolverguard" / "models"
        if candidate not in out:
            out.append(candidate)
    return out


def default_model_path() -> Path:
    found = shipped("default.tflite")
    if found is None:
        raise ModelError("no model: models/default.tflite is not shipped with this install; pass --model FILE")
    return found


def load_model(path: Path | None = None) -> TFLiteScorer:
    model_path = path or default_model_path()
    if not model_path.exists():
        raise ModelError(f"{model_path}: model file not found")
    metadata = load_metadata(metadata_path(model_path))
    if (metadata.extra or {}).get("ensemble"):
        return EnsembleScorer(model_path, metadata)
    return TFLiteScorer(model_path, metadata)
