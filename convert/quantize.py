"""Quantize a trained Keras model to `.tflite` variants and check each against the Keras scores.

    python -m convert.quantize --run runs/cnn            # writes runs/cnn/tflite/<variant>.tflite + parity.json

Variants: float32, float16, dynamic-range int8 and full int8 (representative dataset from the
training names). The parity check runs every variant in the LiteRT interpreter on the run's
validation and test names and compares with the Keras scores saved by training: max and mean
|difference| and the share of names whose action (pass/log/sinkhole) changes at the calibrated
thresholds. A variant outside the tolerance is marked failed, and `--require` makes that fatal.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert.evaluate import DEFAULT_ACTIONS, Scores
from convert.splits import VAL
from resolverguard.encoding import NameEncoder

VARIANTS = ("float32", "float16", "dynamic-int8", "full-int8")
MAX_MEAN_DIFF = 0.01
MAX_ACTION_CHANGES = 0.005


def convert(model: Any, variant: str, representative: npt.NDArray[np.int32]) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "full-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

        def samples() -> Any:
            for row in representative:
                yield [row[None, :]]

        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return bytes(converter.convert())


def interpreter(content: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content, num_threads=1)


def run_tflite(content: bytes, x: npt.NDArray[np.int32], batch: int = 1024) -> npt.NDArray[np.float32]:
    interp = interpreter(content)
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    scores = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        interp.resize_tensor_input(inp, list(chunk.shape))
        interp.allocate_tensors()
        interp.set_tensor(inp, chunk)
        interp.invoke()
        scores.append(np.array(interp.get_tensor(out)).reshape(-1))
    return np.concatenate(scores).astype(np.float32)


def microseconds_per_name(content: bytes, x: npt.NDArray[np.int32], batch: int, seconds: float = 1.5) -> float:
    """Wall time per name of repeated invokes at a fixed batch size, one interpreter thread."""
    interp = interpreter(content)
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    interp.resize_tensor_input(inp, [batch, x.shape[1]])
    interp.allocate_tensors()
    rows, names, started = x[:batch], 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        interp.set_tensor(inp, rows)
        interp.invoke()
        interp.get_tensor(out)
        names += batch
    return (time.perf_counter() - started) / names * 1e6


def actions(score: npt.NDArray[np.float32], thresholds: dict[str, float]) -> npt.NDArray[np.int8]:
    return (score >= thresholds["log"]).astype(np.int8) + (score >= thresholds["sinkhole"]).astype(np.int8)


def parity(
    keras_scores: npt.NDArray[np.float32], lite: npt.NDArray[np.float32], thresholds: dict[str, float]
) -> dict[str, Any]:
    diff = np.abs(keras_scores - lite)
    changed = float((actions(keras_scores, thresholds) != actions(lite, thresholds)).mean())
    ok = float(diff.mean()) <= MAX_MEAN_DIFF and changed <= MAX_ACTION_CHANGES
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "action_changes": changed, "ok": ok}


def logit_model(model: Any) -> Any:
    """The trained model without its final sigmoid: same weights, outputs the logit."""
    import keras

    head = model.layers[-1]
    if isinstance(head, keras.layers.Activation):  # a separate sigmoid (cnn_ngram): its input is the logit
        return keras.Model(model.inputs, head.input)
    linear = keras.layers.Dense(1, activation=None, name="logit")
    out = linear(head.input)
    linear.set_weights(head.get_weights())
    return keras.Model(model.inputs, out)


def fit_temperature(logits: npt.NDArray[np.float64], y: npt.NDArray[Any], benign_fpr_logit: float) -> float:
    """Temperature scaling (Guo et al. 2017): the T minimising validation log-loss of sigmoid(z / T),
    raised if needed so that the strictest calibrated threshold stays below float32's last steps
    before 1.0 (a saturated sigmoid cannot tell 0.9999999 from 1.0, and thresholds would collapse)."""

    def nll(t: float) -> float:
        z = logits / t
        return float(np.mean(np.logaddexp(0.0, -z) * y + np.logaddexp(0.0, z) * (1 - y)))

    grid = np.exp(np.linspace(np.log(0.5), np.log(50.0), 400))
    best = float(grid[int(np.argmin([nll(t) for t in grid]))])
    return max(best, benign_fpr_logit / 9.0)  # sigmoid(9) = 0.99988: room above the sinkhole threshold


def tempered(model: Any, temperature: float) -> Any:
    """The model served: sigmoid(logit / T). Ranking (AUC, TPR at any FPR) is unchanged."""
    import keras

    base = logit_model(model)
    scaled = keras.layers.Rescaling(1.0 / temperature, name="temperature")(base.output)
    return keras.Model(base.inputs, keras.layers.Activation("sigmoid", name="p_dga")(scaled))


def quantize_run(
    run: Path, variants: tuple[str, ...] = VARIANTS, log: Callable[[str], None] = print, bench_seconds: float = 1.5
) -> dict[str, Any]:
    import keras

    info = json.loads((run / "run.json").read_text())
    encoder = NameEncoder(info["charset"], info["maxlen"])
    trained = keras.models.load_model(run / "model.keras")
    s = Scores.load(run)
    x = encoder.encode(s.labels.tolist())
    val = s.rows(VAL)
    logits = logit_model(trained).predict(x, batch_size=4096, verbose=0).reshape(-1).astype(np.float64)
    cal = s.calibration()
    strictest = np.sort(logits[cal])[::-1][int(1e-4 * cal.sum())]
    temperature = fit_temperature(logits[val], s.y[val], float(strictest))
    model = tempered(trained, temperature)
    reference = (1.0 / (1.0 + np.exp(-logits / temperature))).astype(np.float32)  # Keras scores, tempered
    np.save(run / "tempered.scores.npy", reference)
    keras_thresholds = s.thresholds(reference)  # action changes are counted at the shipped rule's thresholds
    named = {a: keras_thresholds[n] for a, n in DEFAULT_ACTIONS.items()}
    val_rows = np.flatnonzero(s.part == VAL)  # activation ranges from validation names, never test names
    representative = x[np.random.default_rng(0).choice(val_rows, min(500, len(val_rows)), replace=False)]
    out_dir = run / "tflite"
    out_dir.mkdir(exist_ok=True)
    report: dict[str, Any] = {}
    (out_dir / "temperature.json").write_text(json.dumps({"temperature": temperature}))
    log(f"temperature {temperature:.3f}")
    for variant in variants:
        try:
            content = convert(model, variant, representative)
        except Exception as err:  # noqa: BLE001 - a variant that does not convert is reported, not fatal
            report[variant] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
            log(f"{variant}: conversion failed: {err}")
            continue
        (out_dir / f"{variant}.tflite").write_bytes(content)
        lite = run_tflite(content, x)
        np.save(out_dir / f"{variant}.scores.npy", lite)
        report[variant] = {
            "bytes": len(content),
            **parity(reference, lite, named),
            "us_per_name_batch1": microseconds_per_name(content, x, 1, bench_seconds),
            "us_per_name_batch64": microseconds_per_name(content, x, 64, bench_seconds),
        }
        log(f"{variant}: {json.dumps(report[variant])}")
    (out_dir / "parity.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m convert.quantize", description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--variants", default=",".join(VARIANTS), help="'' = only fit the temperature")
    p.add_argument("--require", default="", help="variant that must pass parity (exit 1 otherwise)")
    a = p.parse_args(argv)
    report = quantize_run(a.run, tuple(v for v in a.variants.split(",") if v))
    if a.require and not report.get(a.require, {}).get("ok"):
        raise SystemExit(f"parity check failed for {a.require}: {report.get(a.require)}")


if __name__ == "__main__":
    main()
