"""tract: the quick matrix with the recorded deviations, a non-square network, and each
deviation reproduced."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import RNNConfig

tract = need("tract")
need("onnx")
from onnx import numpy_helper  # noqa: E402

from rnn_ref.backends.onnx import convert as onnx_backend  # noqa: E402
from rnn_ref.backends.tract.backend import run_graph, unsupported  # noqa: E402

TARGET = "rnn_ref.backends.tract.backend:TractBackend"


def _x(n: int = 3, t: int = 7, d: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, t, d)).astype(np.float32)


def test_non_square_network_within_tolerance() -> None:
    # D=6, M=(9, 4), N=3, T=11, K=2: every axis different
    cfg = RNNConfig(6, (9, 4), direction="bidirectional", output_size=2,
                    output_activation="sigmoid", merge_mode=("concat", "sum"))
    params = rnn_ref.init(cfg, seed=5)
    x = _x(3, 11, 6, seed=6)
    rng = np.random.default_rng(7)
    h0 = [rng.standard_normal((3, m)).astype(np.float32) * 0.5 for m in (9, 9, 4, 4)]
    got = rnn_ref.get_backend(TARGET).forward(params, x, h0=h0)
    want = rnn_ref.forward(params, x, h0=h0)
    np.testing.assert_allclose(got.outputs, want.outputs, atol=2e-6)
    np.testing.assert_allclose(got.y, want.y, atol=2e-6)
    for g, w in zip(got.h_n, want.h_n, strict=True):
        np.testing.assert_allclose(g, w, atol=2e-6)


def test_reverse_computed_forward() -> None:
    params = rnn_ref.init(RNNConfig(5, 4, direction="reverse"), seed=1)
    x = _x(seed=2)
    got = rnn_ref.get_backend(TARGET).forward(params, x)
    as_forward = rnn_ref.forward(params.replace(direction="forward"), x)
    np.testing.assert_allclose(got.outputs, as_forward.outputs, atol=2e-6)  # the deviation
    assert np.abs(got.outputs - rnn_ref.forward(params, x).outputs).max() > 0.1


def test_empty_sequence_refused() -> None:
    params = rnn_ref.init(RNNConfig(5, 4), seed=0)
    with pytest.raises(tract.TractError):
        run_graph(onnx_backend.to_native(params), {"x": np.zeros((2, 0, 5), np.float32)})


@pytest.mark.parametrize("act", ["relu", "sigmoid", "softsign"])
def test_activations_computed_as_tanh(act: str) -> None:
    params = rnn_ref.init(RNNConfig(5, 4, activation=act), seed=3)
    assert unsupported(params.config) is not None  # so the backend refuses it
    x = _x(seed=4)
    got = run_graph(onnx_backend.to_native(params), {"x": x})["output"]
    as_tanh = rnn_ref.forward(params.replace(activation="tanh"), x).outputs
    np.testing.assert_allclose(got, as_tanh, atol=2e-6)  # the deviation
    assert np.abs(got - rnn_ref.forward(params, x).outputs).max() > 0.1


def test_clip_ignored() -> None:
    params = rnn_ref.init(RNNConfig(5, 4, clip=0.3), seed=3)
    assert unsupported(params.config) is not None
    x = _x(seed=4)
    got = run_graph(onnx_backend.to_native(params), {"x": x})["output"]
    np.testing.assert_allclose(got, rnn_ref.forward(params.replace(clip=None), x).outputs,
                               atol=2e-6)  # the deviation
    assert np.abs(got - rnn_ref.forward(params, x).outputs).max() > 0.1


def test_sequence_lens_refused() -> None:
    params = rnn_ref.init(RNNConfig(5, 4), seed=0)
    x, lengths = _x(), np.array([7, 3, 5], np.int32)
    model = onnx_backend.to_native(params, lengths=True)
    with pytest.raises(tract.TractError, match="Non constant seq_len is not supported"):
        run_graph(model, {"x": x, "lengths": lengths})
    model.graph.initializer.append(numpy_helper.from_array(lengths, "lengths"))
    del model.graph.input[1]
    with pytest.raises(tract.TractError, match="Non uniform seq_len is not supported"):
        run_graph(model, {"x": x})
    with pytest.raises(NotImplementedError, match="sequence_lens"):
        rnn_ref.get_backend(TARGET).forward(params, x, lengths=lengths)
