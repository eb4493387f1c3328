"""``to_onnx`` of GRU and LSTM layers: what each node says, read back exactly by ``from_onnx``,
and computed by onnxruntime and by ``rnn_ref.oracle`` as the float64 oracle computes the
network.

Every switch is written: ``linear_before_reset`` (``reset_after``), ``input_forget`` (its
forget rows), peepholes ``P``, ``clip``, per-direction activations with alpha and beta,
``sequence_lens``, ``initial_h``/``initial_c`` (``h0``, ``c0``) and ``Y_h``/``Y_c`` (``h_n``,
``c_n``), ``layout=1``, time-major graphs; stacks that mix ``RNN``, ``GRU`` and ``LSTM`` nodes
of different widths; the network around them (embedding with ``mask_zero``, poolings, heads).
A projected LSTM has no ONNX form and is refused by name. Shapes: N=3, T=7, D=5, M=4 (6, 3
where layers differ); weights seeded, non-square, with non-zero biases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import Activation, GRUParams, LSTMParams, RNNConfig, UnsupportedError, cli
from rnn_ref import convert as rconvert
from rnn_ref.cells import unpack

onnx = need("onnx")
ort = need("onnxruntime")
from onnx import helper, numpy_helper  # noqa: E402

from rnn_ref.backends.onnx.backend import graph_feeds, graph_result  # noqa: E402
from rnn_ref.inputs import check_inputs  # noqa: E402

N, T, D, M = 3, 7, 5, 4
EPS32 = float(np.finfo(np.float32).eps)
HS16 = Activation("hard_sigmoid", 1 / 6, 0.5)  # Keras 3's: 1/6 is not a float32

#: name -> config: every switch of the gated cells, each at least once
CONFIGS: dict[str, RNNConfig] = {
    "gru_after_bidir": RNNConfig(D, M, num_layers=2, cell="gru", direction="bidirectional"),
    "gru_before_reverse": RNNConfig(D, M, cell="gru", reset_after=False, direction="reverse"),
    "gru_acts_clip": RNNConfig(D, M, cell="gru", direction="bidirectional", clip=1.5,
                               recurrent_activation=[HS16, "sigmoid"],
                               activation=[Activation("leaky_relu", 0.1), "softsign"]),
    "lstm_peep_bidir": RNNConfig(D, M, num_layers=2, cell="lstm", peepholes=True,
                                 direction="bidirectional"),
    "lstm_input_forget_rev": RNNConfig(D, M, cell="lstm", input_forget=True,
                                       peepholes=True, direction="reverse"),
    "lstm_acts": RNNConfig(D, M, cell="lstm", direction="bidirectional",
                           recurrent_activation=HS16, activation="tanh",
                           cell_activation=[Activation("scaled_tanh", 1.2, 0.7), "softsign"]),
    "lstm_no_bias": RNNConfig(D, M, cell="lstm", bias=False, merge_mode="sum",
                              direction="bidirectional"),
    "mixed_stack": RNNConfig(D, (6, 3, 3), num_layers=3, cell=["gru", "elman", "lstm"],
                             direction=["bidirectional", "reverse", "forward"],
                             reset_after=[False, None, None], input_forget=[None, None, True],
                             activation=[["tanh", "softsign"], ["relu"], ["tanh"]]),
    "lstm_sizes_differ": RNNConfig(D, (6, 3), num_layers=2, cell="lstm", peepholes=[True, False],
                                   direction="bidirectional", merge_mode=["concat", "ave"]),
}


def _params(cfg: RNNConfig, seed: int = 1) -> rnn_ref.RNNParams:
    """Seeded float32 parameters with non-zero biases (torch's init draws every array)."""
    return rnn_ref.init(cfg, seed=seed, scheme="torch", dtype=np.float32)


def _inputs(cfg: RNNConfig, seed: int = 2) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((N, T, cfg.input_size)).astype(np.float32),
            "h0": [(0.5 * rng.standard_normal((N, m))).astype(np.float32)
                   for m in cfg.state_sizes],
            "c0": [rng.standard_normal((N, m)).astype(np.float32)
                   for m in cfg.cell_state_sizes] or None,
            "lengths": np.array([T, 3, 5])}


def _ort(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in model.graph.output], sess.run(None, feeds), strict=True))


def _flat(value: Any) -> list[np.ndarray]:
    if value is None:
        return []
    if isinstance(value, (tuple, list)):
        return [np.asarray(v, np.float64) for v in value]
    return [np.asarray(value, np.float64)]


def _assert_result(got: Any, want: Any, scale: float = 1.0) -> float:
    """Outputs, ``h_n``, ``c_n`` and ``y`` within a float32 tolerance (relative to the
    largest value, at least 1); the largest error."""
    err = 0.0
    for name in ("outputs", "h_n", "c_n", "y"):
        g, w = _flat(getattr(got, name)), _flat(getattr(want, name))
        assert len(g) == len(w), name
        for a, b in zip(g, w, strict=True):
            assert a.shape == b.shape, name
            top = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
            np.testing.assert_allclose(a, b, rtol=0, atol=64 * EPS32 * scale * top,
                                       err_msg=name)
            err = max(err, float(np.abs(a - b).max()) if a.size else 0.0)
    return err


def _same(p: rnn_ref.RNNParams, q: rnn_ref.RNNParams) -> None:
    """``q`` is ``p``: the config and every array bit-exact."""
    assert q.config == p.config
    mine, theirs = dict(p.named_arrays()), dict(q.named_arrays())
    assert mine.keys() == theirs.keys()
    for k, a in mine.items():
        np.testing.assert_array_equal(theirs[k], a, err_msg=k)


def _node(model: Any, op: str) -> Any:
    return next(n for n in model.graph.node if n.op_type == op)


def _attrs(node: Any) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _init(model: Any, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


# --------------------------------------------------------------------------------------------
# read back exactly, run by onnxruntime and the ONNX oracle as the oracle runs the network
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONFIGS))
def test_round_trip_and_onnxruntime_against_the_oracle(name: str) -> None:
    cfg = CONFIGS[name]
    params = _params(cfg)
    model = rnn_ref.to_onnx(params, lengths=True, initial_state=True, expose_outputs=True)
    onnx.checker.check_model(model, full_check=True)
    _same(params, rnn_ref.from_onnx(model.SerializeToString()))
    inp = _inputs(cfg)
    checked = check_inputs(cfg, inp["x"], h0=inp["h0"], c0=inp["c0"], lengths=inp["lengths"])
    feeds = graph_feeds(cfg, checked, inp["lengths"])
    got = graph_result(cfg, _ort(model, feeds))
    want = rnn_ref.forward(params.astype(np.float64), inp["x"].astype(np.float64),
                           h0=inp["h0"], c0=inp["c0"], lengths=inp["lengths"])
    _assert_result(got, want)
    names = [o.name for o in model.graph.output]
    oracle = dict(zip(names, rnn_ref.oracle(model)(**feeds), strict=True))
    _assert_result(graph_result(cfg, oracle), want, scale=0.01)  # float32 alpha, beta


def test_input_names_and_shapes_of_the_states() -> None:
    """``h0 (S, N, M)`` and ``c0 (C, N, M)`` when widths agree, else one per layer; ``h_n``
    and ``c_n`` the same way, after the result."""
    model = rnn_ref.to_onnx(_params(CONFIGS["mixed_stack"]), initial_state=True)
    ins = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim]
           for i in model.graph.input}
    assert ins == {"x": ["N", "T", D], "h0_l0": [2, "N", 6], "h0_l1": [1, "N", 3],
                   "h0_l2": [1, "N", 3], "c0": [1, "N", 3]}
    assert [o.name for o in model.graph.output] == ["output", "h_n_l0", "h_n_l1", "h_n_l2",
                                                    "c_n"]
    model = rnn_ref.to_onnx(_params(CONFIGS["lstm_sizes_differ"]), initial_state=True)
    assert [i.name for i in model.graph.input] == ["x", "h0_l0", "h0_l1", "c0_l0", "c0_l1"]
    assert [o.name for o in model.graph.output] == ["output", "h_n_l0", "h_n_l1", "c_n_l0",
                                                    "c_n_l1"]
    model = rnn_ref.to_onnx(_params(CONFIGS["gru_after_bidir"]), initial_state=True)
    assert [i.name for i in model.graph.input] == ["x", "h0"]  # no c0 without an LSTM
    assert [o.name for o in model.graph.output] == ["output", "h_n"]


def test_each_switch_is_the_node_attribute_or_input_onnx_names() -> None:
    """Defaults are left out (``Sigmoid, Tanh[, Tanh]``, ``linear_before_reset=0``); the rest
    is written as ONNX names it, alpha and beta in the order of the activations."""
    gru = _node(rnn_ref.to_onnx(_params(CONFIGS["gru_after_bidir"])), "GRU")
    assert _attrs(gru) == {"hidden_size": M, "direction": b"bidirectional",
                           "linear_before_reset": 1}
    gru = _node(rnn_ref.to_onnx(_params(CONFIGS["gru_before_reverse"])), "GRU")
    assert _attrs(gru) == {"hidden_size": M, "direction": b"reverse"}
    acts = _attrs(_node(rnn_ref.to_onnx(_params(CONFIGS["gru_acts_clip"])), "GRU"))
    assert acts["activations"] == [b"HardSigmoid", b"LeakyRelu", b"Sigmoid", b"Softsign"]
    np.testing.assert_allclose(acts["activation_alpha"], [1 / 6, 0.1], rtol=1e-7)
    np.testing.assert_allclose(acts["activation_beta"], [0.5], rtol=1e-7)
    assert acts["clip"] == pytest.approx(1.5)
    model = rnn_ref.to_onnx(_params(CONFIGS["lstm_input_forget_rev"]), initial_state=True)
    lstm = _node(model, "LSTM")
    assert _attrs(lstm) == {"hidden_size": M, "direction": b"reverse", "input_forget": 1}
    assert list(lstm.input)[4:] == ["", *lstm.input[5:7], "layers.0.P"]  # no sequence_lens
    assert len(lstm.output) == 3
    no_bias = _node(rnn_ref.to_onnx(_params(CONFIGS["lstm_no_bias"])), "LSTM")
    assert list(no_bias.input) == [no_bias.input[0], "layers.0.W", "layers.0.R"]


def test_gate_blocks_are_packed_in_onnx_orders() -> None:
    """``W``, ``R``, ``B`` in z, r, h and i, o, f, c; ``P`` in i, o, f: unpacked by those
    names they are the canonical blocks, transposed."""
    params = _params(CONFIGS["lstm_peep_bidir"])
    model = rnn_ref.to_onnx(params)
    W, B, P = (_init(model, f"layers.1.{k}") for k in "WBP")
    cell = params.layers[1][1]
    assert isinstance(cell, LSTMParams) and cell.p is not None
    for k, block in unpack(W[1], "lstm:onnx", cell="lstm", axis=0).items():
        np.testing.assert_array_equal(block, cell.w_x[k].T)
    for k, block in unpack(B[1, 4 * M:], "lstm:onnx", cell="lstm").items():
        np.testing.assert_array_equal(block, cell.b_h[k])
    for k, block in unpack(P[1], "lstm:onnx_peepholes", cell="lstm").items():
        np.testing.assert_array_equal(block, cell.p[k])
    params = _params(CONFIGS["gru_after_bidir"])
    R = _init(rnn_ref.to_onnx(params), "layers.0.R")
    gcell = params.layers[0][0]
    assert isinstance(gcell, GRUParams)
    for k, block in unpack(R[0], "gru:onnx", cell="gru", axis=0).items():
        np.testing.assert_array_equal(block, gcell.w_h[k].T)


# --------------------------------------------------------------------------------------------
# input_forget's forget rows
# --------------------------------------------------------------------------------------------
def _without_input_forget(model: Any) -> Any:
    """A copy whose LSTM nodes ignore ``input_forget``: what OpenVINO and ``onnx.reference``
    compute."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        keep = [a for a in node.attribute if a.name != "input_forget"]
        del node.attribute[:]
        node.attribute.extend(keep)
    return copy


@pytest.mark.parametrize(("f_act", "mirrored"), [("sigmoid", True), (HS16, True),
                                                 (Activation("hard_sigmoid", 0.2, 0.4), False),
                                                 ("tanh", False)], ids=str)
def test_input_forget_rows_compute_one_minus_i_where_an_activation_can(f_act: Any,
                                                                       mirrored: bool) -> None:
    """The forget rows of ``W``, ``R``, ``B`` and ``P`` are the input gate's negated when
    ``f(-x) = 1 - f(x)``, so the node computes the same numbers with ``input_forget`` ignored;
    zeros otherwise. onnxruntime honours the attribute either way."""
    # with f = tanh, |c_t| outgrows a clip, where onnxruntime skips h's clip
    # (lstm-clip-cell-activation)
    cfg = RNNConfig(D, M, cell="lstm", input_forget=True, peepholes=True,
                    clip=None if f_act == "tanh" else 2.0, recurrent_activation=f_act,
                    direction="bidirectional")
    params = _params(cfg, seed=7)
    model = rnn_ref.to_onnx(params, initial_state=True, expose_outputs=True)
    blocks = {k: unpack(_init(model, f"layers.0.{k}")[1], "lstm:onnx", cell="lstm", axis=0)
              for k in "WR"}
    blocks["B"] = unpack(_init(model, "layers.0.B")[1, :4 * M], "lstm:onnx", cell="lstm")
    blocks["P"] = unpack(_init(model, "layers.0.P")[1], "lstm:onnx_peepholes", cell="lstm")
    for k, b in blocks.items():
        np.testing.assert_array_equal(b["f"], -b["i"] if mirrored else 0 * b["i"], err_msg=k)
    inp = _inputs(cfg, seed=8)
    feeds = graph_feeds(cfg, check_inputs(cfg, inp["x"], h0=inp["h0"], c0=inp["c0"]), None)
    want = rnn_ref.forward(params.astype(np.float64), inp["x"].astype(np.float64),
                           h0=inp["h0"], c0=inp["c0"])
    _assert_result(graph_result(cfg, _ort(model, feeds)), want)
    ignored = graph_result(cfg, _ort(_without_input_forget(model), feeds))
    if mirrored:
        _assert_result(ignored, want)
    else:
        assert np.abs(ignored.outputs - want.outputs).max() > 0.05


# --------------------------------------------------------------------------------------------
# layouts, time-major graphs, the network around the nodes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lstm_peep_bidir", "mixed_stack"])
def test_layout_1_nodes_compute_what_layout_0_nodes_do(name: str) -> None:
    """Batch-major nodes (onnxruntime refuses them: ``layout-1-refused``), run by the ONNX
    oracle, transpose ``initial_c`` and ``Y_c`` as they do ``initial_h`` and ``Y_h``."""
    cfg = CONFIGS[name]
    params = _params(cfg)
    m0 = rnn_ref.to_onnx(params, initial_state=True, lengths=True)
    m1 = rnn_ref.to_onnx(params, initial_state=True, lengths=True, layout=1)
    assert all(_attrs(n).get("layout") == 1 for n in m1.graph.node
               if n.op_type in ("RNN", "GRU", "LSTM"))
    _same(params, rnn_ref.from_onnx(m1))
    inp = _inputs(cfg)
    feeds = graph_feeds(cfg, check_inputs(cfg, inp["x"], h0=inp["h0"], c0=inp["c0"],
                                          lengths=inp["lengths"]), inp["lengths"])
    for a, b in zip(rnn_ref.oracle(m1)(**feeds), rnn_ref.oracle(m0)(**feeds), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    with pytest.raises(Exception, match="(?i)batchwise|layout"):
        _ort(m1, feeds)


def test_time_major_graph() -> None:
    cfg = CONFIGS["lstm_input_forget_rev"]
    params = _params(cfg)
    model = rnn_ref.to_onnx(params, time_major=True, initial_state=True)
    _same(params, rnn_ref.from_onnx(model))
    inp = _inputs(cfg)
    got = _ort(model, {"x": inp["x"].transpose(1, 0, 2), "h0": np.stack(inp["h0"]),
                       "c0": np.stack(inp["c0"])})
    want = rnn_ref.forward(params.astype(np.float64), inp["x"].astype(np.float64),
                           h0=inp["h0"], c0=inp["c0"])
    np.testing.assert_allclose(got["output"].transpose(1, 0, 2), want.outputs, atol=1e-6)
    np.testing.assert_allclose(got["c_n"], want.c_n, atol=1e-6)


NETWORKS = {
    "embedding_mask_zero_final": dict(vocab_size=11, mask_zero=True, select="final",
                                      output_size=2, output_activation="softmax"),
    "mean_valid_head_stack": dict(select="mean_valid",
                                  head=[(5, "relu"), (2, "sigmoid")]),
    "last_step_processing": dict(select="last_step", output_order="processing"),
}


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("net", list(NETWORKS))
def test_network_pieces_around_gated_layers(cell: str, net: str) -> None:
    kw: dict[str, Any] = dict(NETWORKS[net])
    direction = ["bidirectional", "reverse"] if net == "last_step_processing" else \
        "bidirectional"
    cfg = RNNConfig(D if "vocab_size" not in kw else 6, M, num_layers=2, cell=[cell, "elman"],
                    direction=direction, **kw)
    params = _params(cfg, seed=3)
    padded = net != "last_step_processing"
    model = rnn_ref.to_onnx(params, lengths=padded and not cfg.mask_zero)
    _same(params, rnn_ref.from_onnx(model))
    rng = np.random.default_rng(4)
    if cfg.vocab_size is not None:
        x = rng.integers(1, cfg.vocab_size, size=(N, T))
        x[1, :2] = 0  # front padding: Keras skips it wherever it stands
        x[2, 4:] = 0
        feeds: dict[str, np.ndarray] = {"x": x}
        want = rnn_ref.forward(params.astype(np.float64), x)
    else:
        x = rng.standard_normal((N, T, D)).astype(np.float32)
        lengths = np.array([T, 3, 5]) if padded else None
        feeds = {"x": x} | ({"lengths": lengths.astype(np.int32)} if padded else {})
        want = rnn_ref.forward(params.astype(np.float64), x.astype(np.float64),
                               lengths=lengths)
    got = list(_ort(model, feeds).values())[0]
    np.testing.assert_allclose(got, want.result, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# what ONNX cannot hold; rnn-ref convert --verify
# --------------------------------------------------------------------------------------------
def test_projected_lstm_is_refused_by_name() -> None:
    params = _params(RNNConfig(D, M, cell="lstm", proj_size=3))
    with pytest.raises(UnsupportedError, match="proj_size=3"):
        rnn_ref.to_onnx(params)
    assert "projection" in (rconvert.convertible(params)["onnx"] or "")


@pytest.mark.parametrize("name", ["mixed_stack", "lstm_acts"])
def test_convert_verify_to_onnx_and_back(name: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    params = _params(CONFIGS[name])
    src = tmp_path / "net.npz"
    rnn_ref.save(params, src)
    dst = tmp_path / "net.onnx"
    assert cli.main(["convert", str(src), str(dst), "--verify"]) == 0
    assert "verified: ok" in capsys.readouterr().out
    back = tmp_path / "back.npz"
    assert cli.main(["convert", str(dst), str(back), "--verify"]) == 0
    assert "verified: ok" in capsys.readouterr().out
    _same(params, rnn_ref.load(back))
