"""The zoo (issue 12): models as people build them in Keras and torch, each read by the oracle,
converted to every framework that can hold it, and run there.

For each model: ``rnn_ref.oracle(model)(x)`` must return what the model returns; then its
parameters go to Keras (``to_keras``), torch (``to_torch``), ONNX (``to_onnx``, run by ONNX
Runtime), the project's ``jax`` scan and the canonical file, and each converted model must
compute the oracle's result on the same input within the float32 tolerance. A target that
cannot hold the network must refuse it with a reason (``UnsupportedError``), never return
numbers. A target that converts the weights but computes padded steps otherwise warns
(``SemanticsWarning``); its result is then compared at the valid steps. Every Keras model
also goes through ``rnn-ref convert model.keras model.onnx
--verify``.

``RNN_REF_ZOO_TABLE=path ./dev test tests/test_zoo.py`` writes the model x target table of
largest errors (the one in the issue's closing note) as Markdown.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need, need_keras

import rnn_ref
from rnn_ref.conformance.compare import compare, tolerance
from rnn_ref.errors import SemanticsWarning, UnsupportedError
from rnn_ref.inputs import check_inputs

pytestmark = pytest.mark.slow

TARGETS = ("keras", "torch", "onnxruntime", "jax", "canonical")
_TABLE: dict[str, dict[str, str]] = {}


def _check(got: Any, want: np.ndarray, params: rnn_ref.RNNParams) -> tuple[bool, float]:
    """``got`` against the oracle's float64 result within the float32 tolerance for the
    network's depth and length: (passed, largest absolute error)."""
    cfg = params.config
    got = np.asarray(got, np.float64)
    acts = [a for layer in cfg.activations for a in layer]
    steps = max(int(np.shape(want)[1]) if np.ndim(want) == 3 else 8, 1)
    tol = tolerance("float32", steps, acts, layers=cfg.num_layers,
                    scale=float(np.abs(want).max()) if np.size(want) else 1.0)
    rep = compare(got, want, tol, time_axis=None)
    return rep.passed, rep.max_abs


def _run_keras(params: rnn_ref.RNNParams, x: np.ndarray) -> Any:
    model = rnn_ref.to_keras(params)
    return np.asarray(model(x))


def _run_torch(params: rnn_ref.RNNParams, x: np.ndarray) -> Any:
    import torch

    module = rnn_ref.to_torch(params)
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def _run_onnx(params: rnn_ref.RNNParams, x: np.ndarray) -> Any:
    """``to_onnx``'s graph in ONNX Runtime (through the backend, which refuses an input the
    graph cannot say, e.g. ids padded on the left: ``sequence_lens`` is right padding)."""
    return rnn_ref.get_backend("onnxruntime").forward(params, x).result


def _run_jax(params: rnn_ref.RNNParams, x: np.ndarray) -> Any:
    return rnn_ref.get_backend("jax").forward(params, x).result


def _run_canonical(params: rnn_ref.RNNParams, x: np.ndarray, tmp: Path) -> Any:
    back = rnn_ref.load(rnn_ref.save(params, tmp / "model.npz"))
    assert back == params  # bit-exact
    return rnn_ref.forward(back, x).result


RUNNERS: dict[str, Callable[..., Any]] = {
    "keras": _run_keras, "torch": _run_torch, "onnxruntime": _run_onnx, "jax": _run_jax,
}


def _target(name: str, params: rnn_ref.RNNParams, x: np.ndarray, want: np.ndarray,
            tmp: Path) -> str:
    """One cell of the table: the largest error, or why the target refused."""
    note = ""
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", SemanticsWarning)
            got = (_run_canonical(params, x, tmp) if name == "canonical"
                   else RUNNERS[name](params, x))
        if any(issubclass(w.category, SemanticsWarning) for w in seen):
            note = " (padded steps differ, warned)"
    except UnsupportedError as exc:
        # the oracle's own file and the project's scan hold every network
        assert name not in ("canonical", "jax"), f"{name} refused: {exc}"
        return f"refused: {str(exc).split(': ', 1)[-1][:70]}"
    if note and np.ndim(want) == 3:  # the target's padded steps, as warned: valid steps only
        valid = check_inputs(params.config, x).valid
        if params.config.output_order == "processing":
            valid = valid[:, ::-1]
        got, want = np.asarray(got)[valid], want[valid]
    passed, err = _check(got, want, params)
    assert passed, f"{name}: error {err:.2e} beyond the float32 tolerance"
    return f"{err:.1e}{note}"


def _zoo_row(label: str, params: rnn_ref.RNNParams, x: np.ndarray, native: Any,
             oracle_out: Any, tmp: Path) -> None:
    """The oracle against the model, then every target against the oracle."""
    want = np.asarray(rnn_ref.forward(params, x).result, np.float64)
    ok, err = _check(oracle_out, np.asarray(native, np.float64), params)
    assert ok, f"{label}: the oracle differs from the model by {err:.2e}"
    row = {"oracle vs model": f"{err:.1e}"}
    for name in TARGETS:
        need({"keras": "keras", "torch": "torch", "onnxruntime": "onnxruntime",
              "jax": "jax", "canonical": "numpy"}[name])
        row[name] = _target(name, params, x, want, tmp)
    _TABLE[label] = row


def _keras_zoo() -> dict[str, Any]:
    import zoo_keras

    return zoo_keras.ZOO


def _torch_zoo() -> dict[str, Any]:
    import zoo_torch

    return zoo_torch.ZOO


KERAS_MODELS = ["imdb", "imdb-mask-zero", "dropout-stack", "bidi-then-simple", "mlp-head",
                "tagger", "noisy", "go-backwards", "masked-bidi-backwards", "masked-bidi-final",
                "rnn-cell", "hand-made-bidi"]
TORCH_MODELS = ["last_step_classifier", "softmax_on_final", "bidirectional_final", "tagger",
                "time_major", "mixed_stack", "forward_half", "per_step_head",
                "zero_state_classifier"]


@pytest.mark.parametrize("name", KERAS_MODELS)
def test_keras_model(name: str, tmp_path: Path) -> None:
    keras = need_keras()
    model, x = _keras_zoo()[name](0)
    native = keras.ops.convert_to_numpy(model(x))
    params = rnn_ref.from_keras(model)
    _zoo_row(f"keras: {name}", params, x, native, rnn_ref.oracle(model)(x), tmp_path)
    # the command line: a .keras file to ONNX, verified against Keras itself
    from rnn_ref import cli
    from rnn_ref.convert import convertible

    src, dst = tmp_path / "model.keras", tmp_path / "model.onnx"
    model.save(src)
    why = convertible(params)["onnx"]
    code = cli.main(["convert", str(src), str(dst), "--verify"])
    assert code == (0 if why is None else 2) and dst.exists() == (why is None)
    _TABLE[f"keras: {name}"]["convert .keras -> .onnx --verify"] = (
        "ok" if why is None else f"refused: {why.split(': ', 1)[0][-60:]}")


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_torch_model(name: str, tmp_path: Path) -> None:
    torch = need("torch")
    module, xt = _torch_zoo()[name]()
    with torch.no_grad():
        native = module(xt).numpy()
    oracle_out = rnn_ref.oracle(module)(xt.numpy())
    params = rnn_ref.from_torch(module, example=xt)
    x = xt.numpy()
    if name == "time_major":  # the module takes (T, N, D); the network batch-first input
        x = np.ascontiguousarray(np.swapaxes(x, 0, 1))
        native = np.asarray(native)
    _zoo_row(f"torch: {name}", params, x, native, oracle_out, tmp_path)


def teardown_module() -> None:
    """Write the table when ``RNN_REF_ZOO_TABLE`` names a file."""
    path = os.environ.get("RNN_REF_ZOO_TABLE")
    if not path or not _TABLE:
        return
    cols = ["oracle vs model", *TARGETS, "convert .keras -> .onnx --verify"]
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, row in _TABLE.items():
        lines.append(f"| {label} | " + " | ".join(row.get(c, "-") for c in cols) + " |")
    Path(path).write_text("\n".join(lines) + "\n")
