"""GRU and LSTM graphs of ``to_onnx`` on the ONNX runtimes: onnxruntime, OpenVINO (float32;
its default precision is bf16, ``bf16-default-precision``) and tract.

Each backend runs a non-square stack of GRU and LSTM layers within float32's precision; every
deviation its runtime shows on gated nodes is reproduced here (``backends/*/deviations/*.json``
name these tests), and every rule by which its backend refuses a network is shown to guard a
silent wrong answer. Shapes: N=3, T=7, D=5, M=4 unless a test says otherwise; weights seeded,
non-square, with non-zero biases.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import Activation, GRUParams, LSTMParams, RNNConfig

if importlib.util.find_spec("openvino") is not None:
    from rnn_ref.backends.openvino import backend as _openvino_backend

    _openvino_backend.import_openvino()  # first: no test process starts its telemetry
onnx = need("onnx")
from onnx import numpy_helper  # noqa: E402

from rnn_ref.backends.onnx.backend import graph_feeds, graph_result  # noqa: E402
from rnn_ref.backends.onnx.record import unsupported as onnx_unsupported  # noqa: E402
from rnn_ref.backends.openvino.record import unsupported as openvino_unsupported  # noqa: E402
from rnn_ref.backends.tract.record import unsupported as tract_unsupported  # noqa: E402
from rnn_ref.inputs import check_inputs  # noqa: E402

N, T, D, M = 3, 7, 5, 4
BACKENDS = {"onnxruntime": "onnxruntime", "openvino[f32]": "openvino", "tract": "tract"}


def _run(runtime: str, model: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph's outputs by name, run by ``runtime`` (OpenVINO in float32, static shapes)."""
    if runtime == "onnxruntime":
        ort = need("onnxruntime")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
        return dict(zip([o.name for o in model.graph.output], sess.run(None, feeds),
                        strict=True))
    if runtime == "openvino":
        need("openvino")
        from rnn_ref.backends.openvino.backend import compile_graph

        compiled = compile_graph(model.SerializeToString(),
                                 {k: v.shape for k, v in feeds.items()}, "f32")
        got = {}
        for out, value in compiled(feeds).items():
            for name in out.get_names():
                got[name] = np.asarray(value)
        return got
    need("tract")
    from rnn_ref.backends.tract.backend import run_graph

    return run_graph(model, feeds)


def _params(cfg: RNNConfig, seed: int = 1) -> rnn_ref.RNNParams:
    return rnn_ref.init(cfg, seed=seed, scheme="torch", dtype=np.float32)


def _x(n: int = N, t: int = T, d: int = D, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, t, d)).astype(np.float32)


def _feeds(params: rnn_ref.RNNParams, x: np.ndarray, **kw: Any) -> dict[str, np.ndarray]:
    """Feeds of a ``to_onnx(..., initial_state=True[, lengths=True])`` graph."""
    lengths = kw.pop("lengths", None)
    inputs = check_inputs(params.config, x, lengths=lengths, **kw)
    return graph_feeds(params.config, inputs, lengths, initial_state=True)


def _oracle(params: rnn_ref.RNNParams, x: np.ndarray, **kw: Any) -> rnn_ref.ForwardResult:
    return rnn_ref.forward(params.astype(np.float64), x.astype(np.float64), **kw)


def _err(a: Any, b: Any) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# --------------------------------------------------------------------------------------------
# every backend: a non-square stack of GRU and LSTM layers
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(BACKENDS))
def test_backend_runs_a_gated_stack_within_float32(name: str) -> None:
    """GRU (reset before) then LSTM (input_forget) then GRU, M = 6, 3, 3, T = 9, with h0 and
    c0 (and lengths where the runtime takes them); OpenVINO and tract only run what their
    rules allow (bidirectional layers: tract computes reverse as forward)."""
    need(BACKENDS[name])
    cfg = RNNConfig(D, (6, 3, 3), num_layers=3, cell=["gru", "lstm", "gru"],
                    direction="bidirectional", reset_after=[False, None, True],
                    input_forget=[None, True, None], merge_mode=["concat", "sum", "concat"],
                    output_size=2)
    params = _params(cfg, seed=11)
    rng = np.random.default_rng(12)
    x = _x(t=9, seed=13)
    h0 = [(0.5 * rng.standard_normal((N, m))).astype(np.float32) for m in cfg.state_sizes]
    c0 = [rng.standard_normal((N, m)).astype(np.float32) for m in cfg.cell_state_sizes]
    lengths = None if name == "tract" else np.array([9, 4, 6])
    backend = rnn_ref.get_backend(name)
    assert backend.supports(cfg, dtype=np.float32, lengths=lengths is not None,
                            mask=False) is None
    got = backend.forward(params, x, h0=h0, c0=c0, lengths=lengths)
    want = _oracle(params, x, h0=h0, c0=c0, lengths=lengths)
    assert _err(got.y, want.y) < 2e-6
    assert _err(got.outputs, want.outputs) < 2e-6
    for g, w in [*zip(got.h_n, want.h_n, strict=True), *zip(got.c_n, want.c_n, strict=True)]:
        assert _err(g, w) < 2e-6


def test_the_rules_refuse_by_name() -> None:
    """What ONNX, OpenVINO and tract cannot run as the spec says, refused with its name."""
    lstm = RNNConfig(D, M, cell="lstm")
    assert "proj_size=2" in onnx_unsupported(lstm.replace(proj_size=2))[0]  # type: ignore[index]
    cases = [
        (openvino_unsupported, lstm.replace(peepholes=True), "peepholes"),
        (openvino_unsupported, lstm.replace(input_forget=True, recurrent_activation="tanh"),
         "input_forget"),
        (openvino_unsupported, RNNConfig(D, M, cell="gru", direction="bidirectional",
                                         activation=["tanh", "relu"]), "per direction"),
        (openvino_unsupported, lstm.replace(cell_activation=Activation("hard_sigmoid", 0.2,
                                                                       0.5)), "hard_sigmoid"),
        (tract_unsupported, lstm.replace(activation="relu"), "relu"),
        (tract_unsupported, RNNConfig(D, M, cell="gru", recurrent_activation="tanh"), "tanh"),
        (tract_unsupported, RNNConfig(D, M, cell="gru", clip=1.0), "clip"),
    ]
    for rule, cfg, name in cases:
        reason = rule(cfg)
        assert reason is not None and name in reason[0], (cfg, reason)
    for rule in (openvino_unsupported, tract_unsupported):
        assert rule(lstm.replace(input_forget=True)) is None  # sigmoid: the rows compute 1 - i
        assert rule(RNNConfig(D, M, cell="gru", reset_after=False, direction="bidirectional")) \
            is None


# --------------------------------------------------------------------------------------------
# onnxruntime and tract: saturated gates
# --------------------------------------------------------------------------------------------
def _one_gate(cell: str, bias: float) -> rnn_ref.RNNParams:
    """A GRU or LSTM whose output at step 1 is one saturated gate's sigmoid(bias) times a
    known factor: all kernels zero; GRU ``z = sigmoid(bias)``, ``n = 0``, so with ``h0 = 1``
    ``h_1 = z``; LSTM ``i = sigmoid(bias)``, ``g = tanh(1)``, ``o = sigmoid(30)`` and ``c0 =
    0``, so ``h_1 = o * tanh(i * g)``."""
    cfg = RNNConfig(2, 3, cell=cell)
    cell_params = _params(cfg).layers[0][0]
    assert isinstance(cell_params, (GRUParams, LSTMParams))
    zero = {k: np.zeros_like(v) for k, v in cell_params.w_x.items()}
    rec = {k: np.zeros_like(v) for k, v in cell_params.w_h.items()}
    b_h = {k: np.zeros(3, np.float32) for k in cell_params.b_h}
    if cell == "gru":
        b_x = {"z": np.full(3, bias, np.float32), "r": np.zeros(3, np.float32),
               "n": np.zeros(3, np.float32)}
        layer: Any = GRUParams(zero, rec, b_x, b_h)
    else:
        b_x = {"i": np.full(3, bias, np.float32), "f": np.zeros(3, np.float32),
               "g": np.ones(3, np.float32), "o": np.full(3, 30.0, np.float32)}
        layer = LSTMParams(zero, rec, b_x, b_h)
    return rnn_ref.RNNParams(cfg, [[layer]])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("runtime", ["onnxruntime", "tract"])
def test_saturated_gate_has_an_absolute_error(runtime: str, cell: str) -> None:
    """``saturated-gates-absolute-error``: the gate's sigmoid is off by about 1e-7 (4e-7 in
    tract) in absolute terms, so sigmoid(-15) = 3.1e-7 comes out 17% (46%) wrong; at
    sigmoid(-4) the same absolute error is a few float32 roundings."""
    rel = {}
    for bias in (-4.0, -15.0):
        params = _one_gate(cell, bias)
        x = np.zeros((1, 1, 2), np.float32)
        feeds = _feeds(params, x, h0=np.ones((1, 1, 3), np.float32))
        got = _run(runtime, rnn_ref.to_onnx(params, initial_state=True), feeds)["output"]
        want = _oracle(params, x, h0=np.ones((1, 1, 3))).outputs
        assert 0 < want[0, 0, 0] < 0.02
        rel[bias] = _err(got, want) / float(want[0, 0, 0])
        assert _err(got, want) < 6e-7
    assert rel[-4.0] < 1e-5
    assert rel[-15.0] > 0.1


# --------------------------------------------------------------------------------------------
# onnxruntime and OpenVINO: an LSTM's clip
# --------------------------------------------------------------------------------------------
def _lstm_h_unclipped(params: rnn_ref.RNNParams, x: np.ndarray, c0: np.ndarray, clip: float
                      ) -> np.ndarray:
    """A forward one-layer LSTM in float64 that clips every activation's input but h's:
    what onnxruntime computes (onnxruntime #27224); outputs ``(N, T, M)``."""
    cell = params.layers[0][0]
    assert isinstance(cell, LSTMParams)

    def sig(v: np.ndarray) -> np.ndarray:
        return np.asarray(1 / (1 + np.exp(-v)))

    def gate(k: str, xt: np.ndarray, h: np.ndarray) -> np.ndarray:
        return np.asarray(np.clip(xt @ cell.w_x[k] + cell.b_x[k] + h @ cell.w_h[k]
                                  + cell.b_h[k], -clip, clip))

    h, c = np.zeros((x.shape[0], M)), c0.astype(np.float64)
    out = []
    for t in range(x.shape[1]):
        xt = x[:, t].astype(np.float64)
        i, f, g, o = (gate(k, xt, h) for k in "ifgo")
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)  # no clip here
        out.append(h)
    return np.stack(out, axis=1)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_lstm_clip_skips_the_cell_activation(runtime: str) -> None:
    """``lstm-clip-cell-activation``: with ``|c_t|`` beyond the clip, both runtimes compute
    ``o * h(c_t)`` unclipped; the spec (and rnn_ref) clip h's input too."""
    cfg = RNNConfig(D, M, cell="lstm", clip=0.5)
    params = _params(cfg, seed=21)
    x = _x(seed=22)
    c0 = (3 * np.random.default_rng(23).standard_normal((1, N, M))).astype(np.float32)
    got = _run(runtime, rnn_ref.to_onnx(params, initial_state=True),
               _feeds(params, x, c0=c0))["output"]
    want = _oracle(params, x, c0=c0).outputs
    assert _err(got, _lstm_h_unclipped(params, x, c0[0], 0.5)) < 2e-6
    assert _err(got, want) > 0.1


# --------------------------------------------------------------------------------------------
# OpenVINO
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_openvino_zero_length_final_states_are_zeros(cell: str) -> None:
    """``zero-length-final-state``: a zero-length sample's h_n (and c_n) are zeros, not h0
    (c0)."""
    params = _params(RNNConfig(D, M, cell=cell), seed=31)
    x, lengths = _x(seed=32), np.array([0, T, 3])
    h0 = np.full((1, N, M), 0.5, np.float32)
    c0 = np.full((1, N, M), 0.7, np.float32) if cell == "lstm" else None
    model = rnn_ref.to_onnx(params, initial_state=True, lengths=True)
    got = _run("openvino", model, _feeds(params, x, h0=h0, c0=c0, lengths=lengths))
    want = _oracle(params, x, h0=h0, c0=c0, lengths=lengths)
    finals = [("h_n", want.h_n)] + ([("c_n", want.c_n)] if cell == "lstm" else [])
    for name, w in finals:
        np.testing.assert_array_equal(got[name][:, 0], 0.0)  # the deviation
        assert _err(got[name][:, 1:], w[:, 1:]) < 2e-6


def test_openvino_gated_directions_share_the_first_activations() -> None:
    """``per-direction-activations-collapsed``: a bidirectional GRU with candidate
    activations (tanh, relu) computes tanh in both directions."""
    params = _params(RNNConfig(D, M, cell="gru", direction="bidirectional",
                               activation=["tanh", "relu"]), seed=41)
    x = _x(seed=42)
    got = _run("openvino", rnn_ref.to_onnx(params), {"x": x})["output"]
    assert _err(got, _oracle(params.replace(activation="tanh"), x).outputs) < 2e-6
    assert _err(got, _oracle(params, x).outputs) > 0.1
    assert openvino_unsupported(params.config) is not None


@pytest.mark.parametrize(("cell", "kw"), [
    ("gru", {"recurrent_activation": Activation("hard_sigmoid", 0.2, 0.5)}),
    ("lstm", {"cell_activation": Activation("affine", 0.8, 0.1)}),
], ids=["gru-hard_sigmoid", "lstm-affine"])
def test_openvino_other_gated_activations_refused_at_compile(cell: str, kw: dict[str, Any]
                                                             ) -> None:
    """``activations-refused``: loud, at compile time; the backends refuse them first."""
    params = _params(RNNConfig(D, M, cell=cell, **kw), seed=51)
    assert openvino_unsupported(params.config) is not None
    with pytest.raises(RuntimeError, match="(?i)activation|Decomposition|TensorIterator"):
        _run("openvino", rnn_ref.to_onnx(params), {"x": _x()})


def test_openvino_drops_peepholes() -> None:
    """``lstm-peepholes-dropped``: the LSTM is computed as if P were zero."""
    params = _params(RNNConfig(D, M, cell="lstm", peepholes=True, direction="bidirectional"),
                     seed=61)
    x = _x(seed=62)
    got = _run("openvino", rnn_ref.to_onnx(params), {"x": x})["output"]
    layers = [[LSTMParams(c.w_x, c.w_h, c.b_x, c.b_h,
                          p={k: 0 * v for k, v in (c.p or {}).items()})
               for c in layer if isinstance(c, LSTMParams)] for layer in params.layers]
    without = rnn_ref.RNNParams(params.config, layers)
    assert _err(got, _oracle(without, x).outputs) < 2e-6
    assert _err(got, _oracle(params, x).outputs) > 0.01
    assert openvino_unsupported(params.config) is not None


def test_openvino_gated_layout_1_is_wrong() -> None:
    """``layout-1-wrong-and-crashes`` for a GRU: the outputs come out misshapen (or wrong),
    then the heap is corrupted; run in a child process."""
    need("openvino")
    code = ("import numpy as np, rnn_ref\n"
            "from rnn_ref.backends.openvino.backend import compile_graph\n"
            "p = rnn_ref.init(rnn_ref.RNNConfig(5, 4, cell='gru'), seed=0, dtype=np.float32)\n"
            "x = np.random.default_rng(0).standard_normal((3, 7, 5)).astype(np.float32)\n"
            "m = rnn_ref.to_onnx(p, layout=1)\n"
            "c = compile_graph(m.SerializeToString(), {'x': x.shape}, 'f32')\n"
            "out = np.asarray(c({'x': x})['output'])\n"
            "want = rnn_ref.forward(p, x).outputs\n"
            "bad = out.shape != want.shape or float(np.abs(out - want).max()) > 0.1\n"
            "print('SHAPE', out.shape, 'WRONG', bad, flush=True)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("SHAPE")]
    assert (bool(lines) and lines[0].endswith("True")) or res.returncode != 0, \
        (res.returncode, res.stdout, res.stderr[-500:])


# --------------------------------------------------------------------------------------------
# OpenVINO and tract: input_forget
# --------------------------------------------------------------------------------------------
def _forget_rows_zeroed(model: Any) -> Any:
    """A copy whose LSTM forget rows (W, R, Wb, Rb in i, o, f, c; P in i, o, f) are zeros:
    what another exporter might write under ``input_forget=1``."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for t in copy.graph.initializer:
        kind = t.name.rsplit(".", 1)[-1]
        if kind not in ("W", "R", "B", "P"):
            continue
        a = numpy_helper.to_array(t).copy()
        blocks = [2] if kind != "B" else [2, 6]
        for b in blocks:
            a[:, b * M:(b + 1) * M] = 0
        t.CopyFrom(numpy_helper.from_array(a, t.name))
    return copy


def _attribute_dropped(model: Any, name: str) -> Any:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        keep = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend(keep)
    return copy


@pytest.mark.parametrize("runtime", ["openvino", "tract"])
def test_openvino_and_tract_ignore_input_forget(runtime: str) -> None:
    """``lstm-input-forget-ignored``: with zero forget rows the runtime computes ``f =
    sigmoid(0) = 1/2`` (onnxruntime, without the attribute, agrees); with the rows rnn-ref
    writes (the input gate's negated) it computes ``1 - i`` all the same."""
    params = _params(RNNConfig(D, M, cell="lstm", input_forget=True), seed=71)
    x = _x(seed=72)
    feeds = _feeds(params, x)
    written = rnn_ref.to_onnx(params, initial_state=True)
    want = _oracle(params, x).outputs
    assert _err(_run(runtime, written, feeds)["output"], want) < 2e-6
    zeroed = _forget_rows_zeroed(written)
    got = _run(runtime, zeroed, feeds)["output"]
    assert _err(_run("onnxruntime", zeroed, feeds)["output"], want) < 2e-6  # honours it
    ignored = _run("onnxruntime", _attribute_dropped(zeroed, "input_forget"), feeds)["output"]
    assert _err(got, ignored) < 2e-6
    assert _err(got, want) > 0.01


# --------------------------------------------------------------------------------------------
# tract
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_tract_computes_reverse_gated_forward(cell: str) -> None:
    """``reverse-computed-forward``: a reverse GRU or LSTM node is computed forward."""
    params = _params(RNNConfig(D, M, cell=cell, direction="reverse"), seed=81)
    x = _x(seed=82)
    got = _run("tract", rnn_ref.to_onnx(params, initial_state=True), _feeds(params, x))
    assert _err(got["output"], _oracle(params.replace(direction="forward"), x).outputs) < 2e-6
    assert _err(got["output"], _oracle(params, x).outputs) > 0.1


@pytest.mark.parametrize(("cell", "kw"), [
    ("gru", {"recurrent_activation": Activation("hard_sigmoid", 0.2, 0.5)}),
    ("gru", {"activation": "relu"}),
    ("lstm", {"recurrent_activation": "tanh"}),
    ("lstm", {"cell_activation": "relu"}),
], ids=["gru-hard_sigmoid", "gru-relu", "lstm-tanh", "lstm-h-relu"])
def test_tract_computes_gated_activations_as_the_defaults(cell: str, kw: dict[str, Any]
                                                          ) -> None:
    """``activations-computed-as-tanh``: a GRU's or LSTM's activations are the operator's
    defaults (sigmoid, tanh[, tanh]) whatever the node says (tract #2751)."""
    params = _params(RNNConfig(D, M, cell=cell, **kw), seed=91)
    x = _x(seed=92)
    got = _run("tract", rnn_ref.to_onnx(params, initial_state=True), _feeds(params, x))
    default = {"recurrent_activation": "sigmoid", "activation": "tanh"}
    default |= {"cell_activation": "tanh"} if cell == "lstm" else {}
    assert _err(got["output"], _oracle(params.replace(**default), x).outputs) < 2e-6
    assert _err(got["output"], _oracle(params, x).outputs) > 0.02
    assert tract_unsupported(params.config) is not None


def test_tract_ignores_gated_clip() -> None:
    """``clip-ignored``: a GRU's clip is not applied."""
    params = _params(RNNConfig(D, M, cell="gru", clip=0.5), seed=101)
    x = 3 * _x(seed=102)
    got = _run("tract", rnn_ref.to_onnx(params), {"x": x})["output"]
    assert _err(got, _oracle(params.replace(clip=None), x).outputs) < 2e-6
    assert _err(got, _oracle(params, x).outputs) > 0.1
    assert tract_unsupported(params.config) is not None


def test_tract_refuses_y_c_without_initial_c() -> None:
    """``lstm-y-c-without-initial-c-refused``: for N > 1 (N = 1 runs); the backend feeds
    zero initial states and runs it."""
    need("tract")
    params = _params(RNNConfig(D, M, cell="lstm"), seed=111)
    model = rnn_ref.to_onnx(params)  # outputs output, h_n and c_n; no initial states
    x = _x(seed=112)
    assert _err(_run("tract", model, {"x": x[:1]})["output"],
                _oracle(params, x[:1]).outputs) < 2e-6
    with pytest.raises(Exception, match="Clashing resolution"):
        _run("tract", model, {"x": x})
    got = rnn_ref.get_backend("tract").forward(params, x)
    want = _oracle(params, x)
    assert _err(got.outputs, want.outputs) < 2e-6 and _err(got.c_n, want.c_n) < 2e-6


def test_graph_feeds_and_result_name_the_cell_states() -> None:
    """The backends' feeds and results: ``c0``/``c_n`` by ``cell_state_index``, one input per
    layer when the widths differ (the LSTM layers only)."""
    cfg = RNNConfig(D, (6, 3), num_layers=2, cell=["lstm", "lstm"], direction="bidirectional")
    rng = np.random.default_rng(5)
    c0 = [rng.standard_normal((N, m)).astype(np.float32) for m in cfg.cell_state_sizes]
    feeds = graph_feeds(cfg, check_inputs(cfg, _x(), c0=c0), None)
    assert sorted(feeds) == ["c0_l0", "c0_l1", "h0_l0", "h0_l1", "x"]
    np.testing.assert_array_equal(feeds["c0_l1"][1], c0[cfg.cell_state_index(1, 1)])
    np.testing.assert_array_equal(feeds["h0_l0"], 0.0)  # h0 not given: zeros
    outs = {f"h_n_l{li}": np.zeros((2, N, m)) for li, m in enumerate((6, 3))}
    outs |= {"c_n_l0": np.ones((2, N, 6)), "c_n_l1": np.full((2, N, 3), 2.0),
             "output": np.zeros((N, T, 6))}
    res = graph_result(cfg, outs)
    assert [c.shape for c in res.c_n] == [(N, 6), (N, 6), (N, 3), (N, 3)]
    assert res.c_n[2][0, 0] == 2.0
