"""mlx.nn.GRU and mlx.nn.LSTM (issue 24): bit-exact converters in mlx's packed layout, users'
modules and parameter files read and compared with mlx's own run, the oracle, the backend with
initial hidden and cell states, refusals by name, the recorded deviations, and the gated
conformance cases mlx can hold."""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import RNNConfig, UnsupportedError
from rnn_ref.cells import unpack
from rnn_ref.conformance.cases import Case
from rnn_ref.conformance.compare import compare, tolerance
from rnn_ref.conformance.runner import _equivalent, run

mx = need("mlx.core")
nn = need("mlx.nn")
mlx_backend = need("rnn_ref.backends.mlx.convert")

N, T, D, M = 3, 7, 5, 4  # all different, so a transpose cannot hide
BACKEND = "rnn_ref.backends.mlx.backend:MlxBackend"
GATED_ACTS = {"gru": ["sigmoid", "tanh"], "lstm": ["sigmoid", "tanh", "tanh"]}


def _x(seed: int = 0, t: int = T, d: int = D, dtype: Any = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, t, d)).astype(dtype)


def _params(seed: int = 1, dtype: Any = np.float32, **config: Any) -> rnn_ref.RNNParams:
    """Seeded weights, every bias non-zero (b_h too, so the one-bias merge shows)."""
    cfg = RNNConfig(config.pop("input_size", D), config.pop("hidden_size", M), **config)
    return rnn_ref.init(cfg, seed=seed, dtype=dtype)


def _user(cls: Any, seed: int, d: int = D, m: int = M, **kw: Any) -> Any:
    """An nn.GRU / nn.LSTM as a user builds it: mlx's own random init (every bias non-zero)."""
    mx.random.seed(seed)
    return cls(d, m, **kw)


def _close32(got: Any, want: np.ndarray, kinds: list[str]) -> float:
    acts = [a for k in kinds for a in GATED_ACTS.get(k, ["tanh"])]
    tol = tolerance(np.float32, want.shape[-2], acts, layers=len(kinds),
                    scale=float(np.abs(want).max()))
    rep = compare(np.asarray(got), want, tol, time_axis=None)
    assert rep.passed, rep.summary()
    return float(rep.max_abs)


# --------------------------------------------------------------------------------------------
# written bit-exact, in mlx's layout
# --------------------------------------------------------------------------------------------
CONFIGS: dict[str, dict[str, Any]] = {
    "gru": {"cell": "gru"},
    "lstm": {"cell": "lstm"},
    "gru-nobias": {"cell": "gru", "bias": False},
    "lstm-2layer-sizes": {"cell": "lstm", "hidden_size": (6, 3)},
    "mixed": {"cell": ["gru", "elman", "lstm"], "hidden_size": (6, 4, 3),
              "activation": [["tanh"], ["relu"], ["tanh"]]},
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_written_layout_and_round_trip(name: str, dtype: Any) -> None:
    """Wx = (w_x[r]|w_x[z]|w_x[n]).T (GRU; i, f, g, o for LSTM), b = b_x + b_h except the
    GRU's n gate, bhn = b_h[n]; read back equivalent (bit-exact up to the bias merge)."""
    params = _params(seed=len(name), dtype=dtype, **CONFIGS[name])
    native = mlx_backend.to_native(params)
    modules = native if isinstance(native, list) else [native]
    for li, module in enumerate(modules):
        cell = params.layers[li][0]
        kind = params.config.cell_of(li).kind
        if kind == "elman":
            assert isinstance(module, nn.RNN)
            continue
        assert type(module) is (nn.GRU if kind == "gru" else nn.LSTM)
        assert np.array(module.Wx).dtype == dtype
        for key, blocks in (("Wx", cell.w_x), ("Wh", cell.w_h)):
            got = unpack(np.array(getattr(module, key)), f"{kind}:mlx", cell=kind, axis=0)
            for g, w in blocks.items():
                np.testing.assert_array_equal(got[g], w.T)
        if not params.config.bias:
            assert module.b is None and module.bhn is None
            continue
        if kind == "gru":
            b = unpack(np.array(module.b), "gru:mlx", cell="gru")
            for g in "rz":
                np.testing.assert_array_equal(b[g], cell.b_x[g] + cell.b_h[g])
            np.testing.assert_array_equal(b["n"], cell.b_x["n"])
            np.testing.assert_array_equal(np.array(module.bhn), cell.b_h["n"])
        else:
            b = unpack(np.array(module.bias), "lstm:mlx", cell="lstm")
            for g in "ifgo":
                np.testing.assert_array_equal(b[g], cell.b_x[g] + cell.b_h[g])
    back = mlx_backend.from_native(native)
    assert _equivalent(params, back) == ""
    assert mlx_backend.from_native(mlx_backend.to_native(back)) == back  # mlx -> mlx: exact


# --------------------------------------------------------------------------------------------
# users' modules and files, against mlx's own run
# --------------------------------------------------------------------------------------------
def test_user_gru_read_and_run_with_and_without_hidden() -> None:
    gru = _user(nn.GRU, 11)
    params = mlx_backend.from_native(gru)
    cell = params.layers[0][0]
    np.testing.assert_array_equal(cell.b_h["n"], np.array(gru.bhn))
    assert not cell.b_h["r"].any() and not cell.b_h["z"].any()
    x = _x(12)
    h0 = np.random.default_rng(13).standard_normal((N, M)).astype(np.float32)
    _close32(gru(mx.array(x), mx.array(h0)), rnn_ref.forward(params, x, h0=h0[None]).outputs,
             ["gru"])
    _close32(gru(mx.array(x)), rnn_ref.forward(params, x).outputs, ["gru"])
    f = mlx_backend.oracle(gru)
    _close32(gru(mx.array(x), mx.array(h0)), f(x, h0), ["gru"])
    _close32(gru(mx.array(x[0])), f(x[0]), ["gru"])  # unbatched (T, D)


def test_gru_without_hidden_is_a_zero_state() -> None:
    """mlx #3249 (fixed in 0.31.2, PR #3252): gru(x) skipped bhn at step 0; in the pinned mlx
    gru(x) == gru(x, zeros) exactly, as the spec's default zero state."""
    gru = _user(nn.GRU, 14)
    x = mx.array(_x(15))
    np.testing.assert_array_equal(np.array(gru(x)), np.array(gru(x, mx.zeros((N, M)))))
    lstm = _user(nn.LSTM, 16)
    a, b = lstm(x), lstm(x, mx.zeros((N, M)), mx.zeros((N, M)))
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.array(u), np.array(v))


def test_user_lstm_read_and_run_with_states() -> None:
    lstm = _user(nn.LSTM, 21)
    params = mlx_backend.from_native(lstm)
    x = _x(22)
    rng = np.random.default_rng(23)
    h0, c0 = (rng.standard_normal((N, M)).astype(np.float32) for _ in range(2))
    hs, cs = lstm(mx.array(x), mx.array(h0), mx.array(c0))
    want = rnn_ref.forward(params, x, h0=h0[None], c0=c0[None])
    _close32(hs, want.outputs, ["lstm"])
    _close32(np.array(cs)[:, -1], want.c_n[0], ["lstm"])
    ohs, ocs = mlx_backend.oracle(lstm)(x, h0, c0)
    _close32(hs, ohs, ["lstm"])
    _close32(cs, ocs, ["lstm"])


def test_user_stack_and_sequential_read() -> None:
    layers = [_user(nn.GRU, 31, m=6), nn.RNN(6, 4, nonlinearity=nn.relu), _user(nn.LSTM, 32, 4, 3)]
    params = mlx_backend.from_native(layers)
    assert [c.kind for c in params.config.cells] == ["gru", "elman", "lstm"]
    assert params.config.activation_of(1, 0).name == "relu"
    x = _x(33)
    out = mx.array(x)
    for layer in layers:
        out = layer(out)
        out = out[0] if isinstance(out, tuple) else out
    _close32(out, rnn_ref.forward(params, x).outputs, ["gru", "elman", "lstm"])
    assert mlx_backend.from_native(nn.Sequential(*layers)) == params
    assert mlx_backend.from_native(nn.Sequential(*layers).parameters(),
                                   activation=["tanh", "relu", "tanh"]) == params
    hs, _ = mlx_backend.oracle(layers)(x)  # the last layer is an LSTM: (hidden, cell) states
    _close32(out, hs, ["gru", "elman", "lstm"])


def test_saved_files_and_both_layouts(tmp_path: Any) -> None:
    """A saved tree_flatten (flat keys) reads as the modules; the old layout (mlx < 0.18.0:
    Wx (I, G*H), Wh (H, G*H)) is told by Wh's shape, never square, and said."""
    from mlx.utils import tree_flatten

    seq = nn.Sequential(_user(nn.LSTM, 41), _user(nn.GRU, 42, M, M))  # the GRU's Wx square-ish
    path = str(tmp_path) + "/stack.safetensors"
    mx.save_safetensors(path, dict(tree_flatten(seq.parameters())))
    flat = mx.load(path)
    assert sorted(flat) == sorted(["layers.0.Wx", "layers.0.Wh", "layers.0.bias",
                                   "layers.1.Wx", "layers.1.Wh", "layers.1.b", "layers.1.bhn"])
    params = mlx_backend.from_native(seq)
    assert mlx_backend.from_native(flat) == params
    old = [{k: np.array(v).T if k in ("Wx", "Wh") else np.array(v)
            for k, v in layer.parameters().items()} for layer in seq.layers]
    with pytest.warns(UserWarning, match=re.escape("Wx (5, 16) with Wh (4, 16) (layer 0) is "
                                                   "the old mlx layout")):
        assert mlx_backend.from_native(old) == params
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mlx_backend.from_native(old, layout="old") == params
    with pytest.raises(ValueError, match=re.escape("layout='new', but Wx (5, 16) with Wh "
                                                   "(4, 16) (layer 0) is the layout='old'")):
        mlx_backend.from_native(old, layout="new")
    # bias-free: the cell is told by Wh's blocks (3 a GRU, 4 an LSTM)
    nob = _user(nn.GRU, 43, bias=False)
    assert mlx_backend.from_native(nob.parameters()) == mlx_backend.from_native(nob)
    assert mlx_backend.from_native(nob).config.bias is False


def test_reading_refusals_name_what_they_met() -> None:
    gru = _user(nn.GRU, 51)
    with pytest.raises(ValueError, match="an mlx.nn.GRU holds both biases b and bhn or "
                       "neither, got b alone"):
        mlx_backend.from_native({"Wx": gru.Wx, "Wh": gru.Wh, "b": gru.b})
    with pytest.raises(ValueError, match=r"activation=\['relu', 'tanh'\] but layer 0 is an "
                       r"mlx.nn.GRU, whose candidate activation is tanh \(fixed\)"):
        mlx_backend.from_native([gru, _user(nn.LSTM, 52, M)], activation=["relu", "tanh"])
    with pytest.raises(ValueError, match=r"Wh \(12, 5\) is neither \(3H, H\)"):
        mlx_backend.from_native({"Wx": np.zeros((12, 5)), "Wh": np.zeros((12, 5))})
    with pytest.raises(ValueError, match=r"GRU Wx \(10, 3\) does not fit Wh \(12, 4\)"):
        mlx_backend.from_native({"Wx": np.zeros((10, 3)), "Wh": np.zeros((12, 4)),
                                 "b": np.zeros(12), "bhn": np.zeros(4)})
    with pytest.raises(UnsupportedError, match="mlx.nn.Linear"):
        mlx_backend.from_native(nn.Linear(D, M))


# --------------------------------------------------------------------------------------------
# refusals by name
# --------------------------------------------------------------------------------------------
REFUSED = [
    ({"cell": "gru", "reset_after": False}, "mlx.nn.GRU", "reset_after=False (layer 0)"),
    ({"cell": "lstm", "peepholes": True}, "mlx.nn.LSTM", "peepholes (layer 0)"),
    ({"cell": "lstm", "input_forget": True}, "mlx.nn.LSTM", "input_forget (layer 0)"),
    ({"cell": "lstm", "proj_size": 2}, "mlx.nn.LSTM", "proj_size=2 (layer 0)"),
    ({"cell": "gru", "recurrent_activation": "relu"}, "mlx.nn.GRU",
     "recurrent_activation relu (layer 0)"),
    ({"cell": "lstm", "activation": "relu", "cell_activation": "tanh"}, "mlx.nn.LSTM",
     "activation relu (layer 0)"),
    ({"cell": "lstm", "cell_activation": "relu"}, "mlx.nn.LSTM",
     "cell_activation relu (layer 0)"),
    ({"cell": "gru", "direction": "reverse"}, "mlx.nn.GRU", "direction 'reverse'"),
    ({"cell": "lstm", "direction": "bidirectional"}, "mlx.nn.LSTM",
     "direction 'bidirectional'"),
    ({"cell": ["gru", "lstm"], "num_layers": 2, "clip": 1.0}, "mlx.nn.GRU/LSTM", "clip"),
]


@pytest.mark.parametrize(("changes", "target", "feature"), REFUSED,
                         ids=[f for _, _, f in REFUSED])
def test_what_mlx_cannot_hold_is_refused_by_name(changes: dict[str, Any], target: str,
                                                 feature: str) -> None:
    cfg = RNNConfig(D, M, **changes)
    reason = mlx_backend.unsupported(cfg)
    assert reason is not None and reason[0].startswith(feature), reason
    params = rnn_ref.init(cfg, seed=0)
    with pytest.raises(UnsupportedError, match=re.escape(f"{target} cannot express {feature}")):
        mlx_backend.to_native(params)
    backend = rnn_ref.get_backend(BACKEND)
    assert backend.supports(cfg, dtype=np.float32, lengths=False, mask=False).startswith(feature)
    with pytest.raises(UnsupportedError, match=re.escape(feature)):
        backend.forward(params, _x(), c0=None)


# --------------------------------------------------------------------------------------------
# the backend, and the conformance cases mlx holds
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backend_with_h0_c0_per_layer_sizes(dtype: Any) -> None:
    backend = rnn_ref.get_backend(BACKEND)
    params = _params(seed=61, dtype=dtype, cell=["lstm", "gru", "lstm"], hidden_size=(6, 4, 3))
    x = _x(62, t=9, dtype=dtype)
    rng = np.random.default_rng(63)
    h0 = [rng.standard_normal((N, m)).astype(dtype) for m in (6, 4, 3)]
    c0 = [rng.standard_normal((N, m)).astype(dtype) for m in (6, 3)]
    got = backend.forward(params, x, h0=h0, c0=c0)
    want = rnn_ref.forward(params, x, h0=h0, c0=c0)
    assert got.outputs.dtype == dtype and isinstance(got.c_n, tuple)
    assert [c.shape for c in got.c_n] == [(N, 6), (N, 3)]
    # float64: mx.sigmoid rounds to float32 (the recorded deviation): float32-accurate
    atol = 1e-6 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got.outputs, want.outputs, rtol=0, atol=atol)
    for g, w in zip((*got.h_n, *got.c_n), (*want.h_n, *want.c_n), strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=atol)
    uniform = backend.forward(_params(seed=64, cell="lstm", num_layers=2), _x(65))
    assert uniform.c_n.shape == (2, N, M)


def _cases() -> list[Case]:
    """GRU and LSTM cases of what mlx holds (forward, no padding), both dtypes, with and
    without initial states, per-layer sizes and a stack of mixed cells, and saturated gates."""
    configs = {
        "gru": RNNConfig(D, M, cell="gru"),
        "lstm": RNNConfig(D, M, cell="lstm"),
        "gru-2layer": RNNConfig(D, (6, 3), cell="gru"),
        "lstm-nobias": RNNConfig(D, M, cell="lstm", bias=False),
        "mixed": RNNConfig(D, (6, 4, 3), cell=["lstm", "elman", "gru"]),
    }
    cases = []
    for name, cfg in configs.items():
        for dtype in ("float32", "float64"):
            for h0 in (False, True):
                cases.append(Case(f"{name}_{dtype}_{'h0' if h0 else 'zero'}", cfg, N, T,
                                  dtype, h0, "none", seed=len(name)))
        cases.append(Case(f"{name}_saturated", cfg, 2, 9, "float32", True, "none", seed=5,
                          weight_scale=12.0))
    cases.append(Case("lstm_empty", configs["lstm"], N, 0, "float32", False, "none", seed=6))
    return cases


def test_conformance_of_the_gated_cases_mlx_holds() -> None:
    """Every case passes, or fails as a recorded deviation says (float64: float32 sigmoid;
    T = 0: refused); the round trip is bit-exact up to the bias merge."""
    from rnn_ref.backends import deviations

    report = run(rnn_ref.get_backend("mlx"), _cases(), deviations=deviations.load("mlx"))
    bad = [r for r in report.results if r.status not in ("pass", "known")]
    assert not bad, [(r.case, r.category, r.status, r.detail) for r in bad]
    known = {(r.case, r.deviation) for r in report.results if r.status == "known"}
    assert {d for _, d in known} == {"float64-exp-at-float32-precision",
                                     "empty-sequence-refused"}
    assert all("float64" in c or c == "lstm_empty" for c, _ in known)
    conversions = [r for r in report.results if r.category == "conversion"]
    assert conversions and all(r.status == "pass" for r in conversions)


# --------------------------------------------------------------------------------------------
# the recorded deviations, for the gated layers
# --------------------------------------------------------------------------------------------
def test_deviation_gated_empty_sequence() -> None:
    for layer in (_user(nn.GRU, 71), _user(nn.LSTM, 72)):
        with pytest.raises(ValueError, match=r"\[stack\] No arrays provided for stacking"):
            layer(mx.zeros((2, 0, D)))


def test_deviation_gated_float64_sigmoid_at_float32_precision() -> None:
    """Every GRU and LSTM gate goes through mx.sigmoid, computed in float32 in float64: the
    layers are float32-accurate there; an Elman tanh stack of the same run is exact."""
    backend = rnn_ref.get_backend(BACKEND)
    x = _x(81, dtype=np.float64)
    for changes, bounds in (({"cell": "gru"}, (1e-10, 1e-6)), ({"cell": "lstm"}, (1e-10, 1e-6)),
                            ({"cell": "elman"}, (0.0, 1e-14))):
        params = _params(seed=82, dtype=np.float64, **changes)
        got = backend.forward(params, x).outputs
        error = np.abs(got - rnn_ref.forward(params, x).outputs).max()
        assert bounds[0] <= error < bounds[1], (changes, error)
