"""ONNX: graphs of RNN nodes, torch's exported graphs, onnxruntime, the reference oracle."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import Activation, RNNConfig, UnsupportedError

onnx = need("onnx")
ort = need("onnxruntime")
from onnx import helper, numpy_helper  # noqa: E402

N, T, D = 3, 6, 5
ALL_ACTIVATIONS = [
    "tanh", "relu", "sigmoid", "linear", "softsign", "softplus",
    Activation("affine", 0.8, -0.1), Activation("leaky_relu", 0.1),
    Activation("thresholded_relu", 0.2), Activation("scaled_tanh", 1.5, 0.7),
    Activation("hard_sigmoid", 1 / 6, 0.5), Activation("elu", 0.9),
]


def _x(seed: int = 0, d: int = D) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, T, d)).astype(np.float32)


def _session_run(model: object, feeds: dict) -> list:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


@pytest.mark.parametrize("act", ALL_ACTIVATIONS, ids=str)
def test_every_activation_on_onnxruntime(act: object) -> None:
    cfg = RNNConfig(D, 4, num_layers=2, direction="bidirectional",
                    activation=[(act, "tanh"), ("sigmoid", act)], clip=(3.0, None))
    params = rnn_ref.init(cfg, seed=1)
    x, lengths = _x(2), np.array([6, 3, 1])
    h0 = np.random.default_rng(3).standard_normal((4, N, 4)).astype(np.float32)
    got = rnn_ref.get_backend("onnxruntime").forward(params, x, h0=h0, lengths=lengths)
    want = rnn_ref.forward(params, x, h0=h0, lengths=lengths)
    np.testing.assert_allclose(got.outputs, want.outputs, atol=2e-6)
    np.testing.assert_allclose(got.h_n, want.h_n, atol=2e-6)


@pytest.mark.parametrize("merge", ["sum", "mul", "ave", None])
def test_merge_modes_readout_and_narrowing(merge: str | None) -> None:
    cfg = RNNConfig(D, (5, 3), direction="bidirectional", merge_mode=("concat", merge),
                    output_size=None if merge is None else 2,
                    output_activation=None if merge is None else "tanh")
    params = rnn_ref.init(cfg, seed=4)
    x = _x(5)
    got = rnn_ref.get_backend("onnxruntime").forward(params, x)
    want = rnn_ref.forward(params, x)
    outs = got.outputs if merge is None else (got.outputs,)
    wants = want.outputs if merge is None else (want.outputs,)
    for g, w in zip(outs, wants, strict=True):
        np.testing.assert_allclose(g, w, atol=2e-6)
    for g, w in zip(got.h_n, want.h_n, strict=True):
        np.testing.assert_allclose(g, w, atol=2e-6)
    if merge is not None:
        np.testing.assert_allclose(got.y, want.y, atol=2e-6)


def test_reverse_with_sequence_lens_processing_order_and_oracle() -> None:
    cfg = RNNConfig(D, 4, direction="reverse", output_order="processing", output_size=2)
    params = rnn_ref.init(cfg, seed=6)
    model = rnn_ref.to_onnx(params, lengths=True, initial_state=True, time_major=True)
    x = _x(7).transpose(1, 0, 2).copy()  # time-major
    lengths = np.array([6, 2, 4], np.int32)
    h0 = np.random.default_rng(8).standard_normal((1, N, 4)).astype(np.float32)
    y, h_n = _session_run(model, {"x": x, "lengths": lengths, "h0": h0})
    want = rnn_ref.forward(params, x.transpose(1, 0, 2), lengths=lengths, h0=h0)
    np.testing.assert_allclose(y, want.y.transpose(1, 0, 2), atol=2e-6)
    o_y, o_h = rnn_ref.oracle(model)(x, lengths, h0=h0)  # by position and by name
    np.testing.assert_allclose(o_y, y, atol=2e-6)
    np.testing.assert_allclose(o_h, h_n, atol=2e-6)
    assert o_y.dtype == np.float64


def test_round_trip_is_bit_exact() -> None:
    cfg = RNNConfig(D, 4, num_layers=2, direction="bidirectional", bias=False,
                    activation=[("relu", Activation("elu", 0.5)), ("tanh", "linear")],
                    output_size=3, padded_output="zeros")
    model = rnn_ref.to_onnx(rnn_ref.init(cfg, seed=9))
    again = rnn_ref.to_onnx(rnn_ref.from_onnx(model))
    for a, b in zip(model.graph.initializer, again.graph.initializer, strict=True):
        assert a.name == b.name
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
    assert [n.op_type for n in model.graph.node] == [n.op_type for n in again.graph.node]


def _torch_export(module: object, x: np.ndarray) -> object:
    torch = need("torch")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(module, (torch.from_numpy(x),), buf, dynamo=False,
                          input_names=["input"], output_names=["output", "h_n"],
                          opset_version=17, dynamic_axes={"input": {0: "N"}})
    return onnx.load_from_string(buf.getvalue())


def test_reads_torch_export_of_multilayer_bidirectional_rnn() -> None:
    torch = need("torch")
    torch.manual_seed(0)
    module = torch.nn.RNN(D, 4, num_layers=2, bidirectional=True, nonlinearity="relu",
                          batch_first=True).eval()
    x = _x(10)
    model = _torch_export(module, x)
    params = rnn_ref.from_onnx(model)
    assert params == rnn_ref.from_torch(module)
    out, h = _session_run(model, {"input": x})
    o_out, o_h = rnn_ref.oracle(model)(x)
    np.testing.assert_allclose(o_out, out, atol=2e-6)
    np.testing.assert_allclose(o_h, h, atol=2e-6)


def _graph_with(node: object, w: np.ndarray, r: np.ndarray) -> object:
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [T, N, D])],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_missing_activation_parameters_must_be_resolved() -> None:
    rng = np.random.default_rng(11)
    w = rng.standard_normal((1, 4, D)).astype(np.float32)
    r = rng.standard_normal((1, 4, 4)).astype(np.float32)
    node = helper.make_node("RNN", ["X", "W", "R"], ["Y"], hidden_size=4,
                            activations=["ThresholdedRelu"])
    model = _graph_with(node, w, r)
    with pytest.raises(ValueError, match="gives no alpha for ThresholdedRelu.*'onnx' or "
                                         "'onnxruntime'"):
        rnn_ref.from_onnx(model)
    as_onnx = rnn_ref.from_onnx(model, missing_parameters="onnx")
    as_ort = rnn_ref.from_onnx(model, missing_parameters="onnxruntime")
    assert as_onnx.config.activation == Activation("thresholded_relu", 1.0)
    assert as_ort.config.activation == Activation("thresholded_relu", 0.0)
    # and onnxruntime really uses 0.0: compare its output with the oracle under each reading
    x = _x(12).transpose(1, 0, 2).copy()
    (y,) = _session_run(model, {"X": x})
    ort_reading = rnn_ref.forward(as_ort, x.transpose(1, 0, 2)).outputs
    np.testing.assert_allclose(y[:, 0].transpose(1, 0, 2), ort_reading, atol=2e-6)


def test_refusals() -> None:
    rng = np.random.default_rng(13)
    lstm = helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=4)
    model = _graph_with(lstm, rng.standard_normal((1, 16, D)).astype(np.float32),
                        rng.standard_normal((1, 16, 4)).astype(np.float32))
    assert rnn_ref.from_onnx(model).config.cell == "lstm"  # a layer (tests/test_onnx_gated.py)
    loop = helper.make_node("Loop", ["", "", "X"], ["Y"], name="steps")
    with pytest.raises(UnsupportedError, match="an ONNX Loop node"):
        rnn_ref.from_onnx(_graph_with(loop, rng.standard_normal((1, 4, D)).astype(np.float32),
                                      rng.standard_normal((1, 4, 4)).astype(np.float32)))
    backend = rnn_ref.get_backend("onnxruntime")
    p64 = rnn_ref.init(RNNConfig(D, 4), seed=0, dtype=np.float64)
    with pytest.raises(UnsupportedError, match="float64"):
        backend.forward(p64, _x().astype(np.float64))
    carry = rnn_ref.init(RNNConfig(D, 4, padded_output="carry_state"), seed=0)
    with pytest.raises(UnsupportedError, match="padded_output 'carry_state'"):
        rnn_ref.to_onnx(carry, lengths=True)
    rnn_ref.to_onnx(carry)  # without lengths nothing is padded: fine
    mask = np.ones((N, T), bool)
    mask[0, 0] = False
    with pytest.raises(UnsupportedError, match="a mask with holes or left padding"):
        backend.forward(rnn_ref.init(RNNConfig(D, 4), seed=0), _x(), mask=mask)
    with pytest.raises(TypeError, match="the graph has no input 'z'"):
        rnn_ref.oracle(rnn_ref.to_onnx(p64.astype(np.float32)))(z=_x())
