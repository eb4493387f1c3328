"""OpenVINO (``openvino`` at the default precision, ``openvino[f32]``): the quick matrix with
the recorded deviations, a non-square network, and each deviation reproduced."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import Activation, RNNConfig
from rnn_ref.backends.openvino import backend as openvino_backend

if importlib.util.find_spec("openvino") is not None:
    openvino_backend.import_openvino()  # first, so that no test process starts its telemetry
ov = need("openvino")
need("onnx")
from rnn_ref.backends.onnx import convert as onnx_backend  # noqa: E402
from rnn_ref.backends.openvino.backend import compile_graph, unsupported  # noqa: E402

DEFAULT = "rnn_ref.backends.openvino.backend:OpenVinoBackend"
F32 = "rnn_ref.backends.openvino.backend:OpenVinoF32Backend"


def _run(model: object, feeds: dict, *, static: bool = True, hint: str | None = "f32") -> dict:
    shapes = {k: v.shape for k, v in feeds.items()} if static else {}
    compiled = compile_graph(model.SerializeToString(), shapes, hint)
    return {o.get_any_name(): np.asarray(v) for o, v in compiled(feeds).items()}


def _x(n: int = 3, t: int = 7, d: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, t, d)).astype(np.float32)


def test_non_square_network_f32_within_float32_precision() -> None:
    # D=6, M=(9, 4), N=3, T=11, K=2: every axis different
    cfg = RNNConfig(6, (9, 4), direction="bidirectional", activation=[("relu", "relu"),
                    ("sigmoid", "sigmoid")], output_size=2, output_activation="tanh")
    params = rnn_ref.init(cfg, seed=5)
    x = _x(3, 11, 6, seed=6)
    rng = np.random.default_rng(7)
    h0 = [rng.standard_normal((3, m)).astype(np.float32) * 0.5 for m in (9, 9, 4, 4)]
    lengths = np.array([11, 4, 8])
    got = rnn_ref.get_backend(F32).forward(params, x, h0=h0, lengths=lengths)
    want = rnn_ref.forward(params, x, h0=h0, lengths=lengths)
    np.testing.assert_allclose(got.outputs, want.outputs, atol=2e-6)
    np.testing.assert_allclose(got.y, want.y, atol=2e-6)
    for g, w in zip(got.h_n, want.h_n, strict=True):
        np.testing.assert_allclose(g, w, atol=2e-6)


def test_default_precision_is_bf16() -> None:
    """bf16-default-precision: on a CPU with AVX512-BF16 or AMX the default backend is off by
    about 1e-2, the f32 one by about 1e-7."""
    from rnn_ref.backends.deviations import CONDITIONS

    backend = rnn_ref.get_backend(DEFAULT)
    # the entry is recorded "when": "cpu_bf16": that condition must say what OpenVINO picks
    assert CONDITIONS["cpu_bf16"]() == (backend.precision == "bf16"), backend.precision
    if backend.precision != "bf16":
        pytest.skip(f"this CPU's default inference precision is {backend.precision}")
    params = rnn_ref.init(RNNConfig(5, 16, num_layers=2), seed=1)
    x = _x(4, 20)
    want = rnn_ref.forward(params, x).outputs
    err_default = np.abs(backend.forward(params, x).outputs - want).max()
    err_f32 = np.abs(rnn_ref.get_backend(F32).forward(params, x).outputs - want).max()
    assert err_default > 1e-3  # the deviation: bf16 products
    assert err_f32 < 2e-6


def test_zero_length_final_state_is_zeros() -> None:
    params = rnn_ref.init(RNNConfig(3, 4), seed=0)
    x = _x(2, 5, 3)
    h0 = np.full((1, 2, 4), 0.5, np.float32)
    got = rnn_ref.get_backend(F32).forward(params, x, lengths=np.array([0, 5]), h0=h0)
    want = rnn_ref.forward(params, x, lengths=np.array([0, 5]), h0=h0)
    np.testing.assert_array_equal(got.h_n[0, 0], 0.0)  # the deviation (the spec: h0, 0.5)
    np.testing.assert_allclose(got.h_n[0, 1], want.h_n[0, 1], atol=2e-6)


def test_empty_sequence_refused() -> None:
    model = onnx_backend.to_native(rnn_ref.init(RNNConfig(5, 4), seed=0))
    with pytest.raises(RuntimeError, match="could not create a primitive descriptor"):
        _run(model, {"x": np.zeros((2, 0, 5), np.float32)})


def test_dynamic_shapes_ignore_sequence_lens() -> None:
    params = rnn_ref.init(RNNConfig(5, 4), seed=0)
    model = onnx_backend.to_native(params, lengths=True)
    x, lengths = _x(), np.array([7, 3, 5], np.int32)
    want = rnn_ref.forward(params, x, lengths=lengths).outputs
    dynamic = _run(model, {"x": x, "lengths": lengths}, static=False)["output"]
    static = _run(model, {"x": x, "lengths": lengths})["output"]
    np.testing.assert_allclose(static, want, atol=2e-6)  # what the backends do
    # the deviation: with dynamic shapes every sample runs all T steps
    np.testing.assert_allclose(dynamic, rnn_ref.forward(params, x).outputs, atol=2e-6)
    assert np.abs(dynamic - want).max() > 0.1


def test_bidirectional_relu_tanh_uses_relu_twice() -> None:
    params = rnn_ref.init(RNNConfig(5, 4, direction="bidirectional",
                                    activation=("relu", "tanh")), seed=3)
    model = onnx_backend.to_native(params)
    x = _x(seed=4)
    got = _run(model, {"x": x})["output"]
    as_relu = rnn_ref.forward(params.replace(activation="relu"), x).outputs
    np.testing.assert_allclose(got, as_relu, atol=2e-6)  # the deviation
    assert np.abs(got - rnn_ref.forward(params, x).outputs).max() > 0.1
    assert unsupported(params.config) is not None  # so the backends refuse it


REFUSED = ["softsign", "softplus", "linear", Activation("elu", 1.0),
           Activation("leaky_relu", 0.2), Activation("hard_sigmoid", 0.2, 0.5),
           Activation("affine", 0.8, 0.1), Activation("thresholded_relu", 0.1),
           Activation("scaled_tanh", 1.5, 0.7)]


@pytest.mark.parametrize("act", REFUSED, ids=str)
def test_other_activations_refused_at_compile(act: object) -> None:
    params = rnn_ref.init(RNNConfig(5, 4, activation=act), seed=0)
    assert unsupported(params.config) is not None
    with pytest.raises(RuntimeError, match="(Unknown|Unsupported) activation function"):
        _run(onnx_backend.to_native(params), {"x": _x()})


def test_tanh_relu_sigmoid_supported() -> None:
    for act in ("tanh", "relu", "sigmoid"):
        params = rnn_ref.init(RNNConfig(5, 4, direction="bidirectional", activation=act), seed=0)
        assert unsupported(params.config) is None
        got = _run(onnx_backend.to_native(params), {"x": _x()})["output"]
        np.testing.assert_allclose(got, rnn_ref.forward(params, _x()).outputs, atol=2e-6)


def test_layout_1_is_wrong() -> None:
    """layout-1-wrong-and-crashes: run in a child process (the heap corruption aborts it)."""
    code = ("import numpy as np, rnn_ref\n"
            "from rnn_ref.backends.onnx import convert as onnx_backend\n"
            "from rnn_ref.backends.openvino.backend import compile_graph\n"
            "p = rnn_ref.init(rnn_ref.RNNConfig(5, 4), seed=0)\n"
            "x = np.random.default_rng(0).standard_normal((3, 7, 5)).astype(np.float32)\n"
            "m = onnx_backend.to_native(p, layout=1)\n"
            "c = compile_graph(m.SerializeToString(), {'x': x.shape}, 'f32')\n"
            "out = np.asarray(c({'x': x})[0])\n"
            "print('ERR', float(np.abs(out - rnn_ref.forward(p, x).outputs).max()), flush=True)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("ERR")]
    wrong = bool(lines) and float(lines[0].split()[1]) > 0.1
    assert wrong or res.returncode != 0, (res.returncode, res.stdout, res.stderr[-500:])


def test_no_usage_telemetry_is_started() -> None:
    """OpenVINO's import starts openvino_telemetry, which sends usage events from a forked
    process; through rnn-ref it is never imported and nothing forks."""
    code = ("import os, sys, numpy as np, rnn_ref\n"
            "forks = []\n"
            "os.register_at_fork(before=lambda: forks.append(1))\n"
            "b = rnn_ref.get_backend('openvino')\n"
            "p = rnn_ref.init(rnn_ref.RNNConfig(5, 4), seed=0)\n"
            "b.forward(p, np.zeros((2, 3, 5), np.float32))\n"
            "print('TELEMETRY', sys.modules.get('openvino_telemetry'), 'FORKS', len(forks))\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "CI"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    assert "TELEMETRY None FORKS 0" in res.stdout, (res.stdout, res.stderr[-500:])
