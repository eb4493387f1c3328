"""mlx.nn.RNN: bit-exact converters, the two parameter layouts, the oracle against mlx, the
backend, refusals, the recorded deviations and the quick conformance matrix."""

from __future__ import annotations

import functools
import re
import warnings

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import Activation as Act
from rnn_ref import RNNConfig, UnsupportedError
from rnn_ref.conformance.compare import compare, tolerance

mx = need("mlx.core")
nn = need("mlx.nn")
mlx_backend = need("rnn_ref.backends.mlx.convert")

N, T, D, M = 3, 7, 5, 4  # all different, so a transpose cannot hide
BACKEND = "rnn_ref.backends.mlx.backend:MlxBackend"


def _x(seed: int = 0, n: int = N, t: int = T, d: int = D, dtype: object = np.float32
       ) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, t, d)).astype(dtype)


def _params(seed: int = 1, dtype: object = np.float32, **config: object) -> rnn_ref.RNNParams:
    """Seeded weights with non-zero b_h (so the one-bias merge shows)."""
    cfg = RNNConfig(D, config.pop("hidden_size", M), **config)  # type: ignore[arg-type]
    return rnn_ref.init(cfg, seed=seed, dtype=dtype)


def _user_rnn(seed: int, d: int = D, m: int = M, **kw: object) -> object:
    """An nn.RNN as a user builds it: mlx's own random init."""
    mx.random.seed(seed)
    return nn.RNN(d, m, **kw)


def _run_mlx(layers: list, x: np.ndarray, hidden: list | None = None) -> np.ndarray:
    out = mx.array(x)
    for i, rnn in enumerate(layers):
        out = rnn(out, None if hidden is None else mx.array(hidden[i]))
    return np.array(out)


def _assert_float32_close(got: np.ndarray, want: np.ndarray, acts: list, layers: int = 1
                          ) -> float:
    tol = tolerance(np.float32, got.shape[-2], acts, layers=layers,
                    scale=float(np.abs(want).max()))
    rep = compare(got, want, tol, time_axis=None)
    assert rep.passed, rep.summary()
    return float(rep.max_abs)


# --------------------------------------------------------------------------------------------
# converters
# --------------------------------------------------------------------------------------------
CONFIGS = {
    "1layer-tanh": {},
    "2layer-relu": {"num_layers": 2, "activation": "relu"},
    "nobias-sigmoid": {"bias": False, "activation": "sigmoid"},
    "per-layer": {"hidden_size": (6, 3), "activation": [[Act("elu", alpha=1.0)], ["softsign"]]},
    "leaky-linear-softplus": {"hidden_size": (6, 3, 2), "activation": [
        [Act("leaky_relu", alpha=0.3)], ["linear"], ["softplus"]]},
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_round_trip_is_bit_exact(config: dict) -> None:
    for dtype in (np.float32, np.float64):
        params = _params(seed=5, dtype=dtype, **config)
        native = mlx_backend.to_native(params)
        layers = native if isinstance(native, list) else [native]
        assert len(layers) == params.config.num_layers
        for layer, rnn in zip(params.layers, layers, strict=True):
            cell = layer[0]
            wxh, whh = np.array(rnn.Wxh), np.array(rnn.Whh)
            assert wxh.dtype == dtype and wxh.shape == cell.w_x.T.shape
            np.testing.assert_array_equal(wxh, cell.w_x.T)
            np.testing.assert_array_equal(whh, cell.w_h.T)
            if params.config.bias:
                np.testing.assert_array_equal(np.array(rnn.bias), cell.b_x + cell.b_h)
            else:
                assert rnn.bias is None
        back = mlx_backend.from_native(native)
        assert back.config == params.config
        for lp, lb in zip(params.layers, back.layers, strict=True):
            np.testing.assert_array_equal(lb[0].w_x, lp[0].w_x)
            np.testing.assert_array_equal(lb[0].w_h, lp[0].w_h)
            np.testing.assert_array_equal(lb[0].b_x, lp[0].b_x + lp[0].b_h)  # one bias
            assert not lb[0].b_h.any()
        assert mlx_backend.from_native(mlx_backend.to_native(back)) == back  # now exact
        # the parameters, as mx arrays and as NumPy, read the same
        as_mx = [rnn.parameters() for rnn in layers]
        as_np = [{k: np.array(v) for k, v in p.items()} for p in as_mx]
        assert mlx_backend.from_native(as_mx, activation=params.config.activations) == back
        assert mlx_backend.from_native(as_np, activation=params.config.activations) == back


def test_native_module_read_by_from_native_matches_mlx() -> None:
    """A user's own nn.RNN (mlx's random init), read by from_native, run by the oracle."""
    rnn = _user_rnn(11)
    params = mlx_backend.from_native(rnn)
    assert params.config == RNNConfig(D, M)
    x = _x(12)
    h = np.random.default_rng(13).standard_normal((N, M)).astype(np.float32)
    want = rnn_ref.forward(params, x.astype(np.float64), h0=h[None].astype(np.float64))
    got = np.array(rnn(mx.array(x), mx.array(h)))
    _assert_float32_close(got, want.outputs, ["tanh"])
    np.testing.assert_allclose(want.h_n[0], want.outputs[:, -1])  # no separate final state
    f = mlx_backend.oracle(rnn)  # rnn_ref.oracle(rnn) once the framework is registered
    _assert_float32_close(got, f(x, h), ["tanh"])
    _assert_float32_close(np.array(rnn(mx.array(x))), f(x), ["tanh"])
    _assert_float32_close(np.array(rnn(mx.array(x[0]))), f(x[0]), ["tanh"])  # unbatched


def test_native_stack_read_by_from_native_matches_mlx() -> None:
    """A list and an nn.Sequential of nn.RNN with their own init, sizes and nonlinearities."""
    mx.random.seed(21)
    layers = [nn.RNN(D, 6, nonlinearity=nn.relu), nn.RNN(6, 3),
              nn.RNN(3, 2, nonlinearity=functools.partial(nn.elu, alpha=0.5))]
    params = mlx_backend.from_native(layers)
    assert params.config.hidden_sizes == (6, 3, 2)
    assert [a[0].name for a in params.config.activations] == ["relu", "tanh", "elu"]
    x = _x(22, t=9)
    hidden = [np.random.default_rng(23 + i).standard_normal((N, m)).astype(np.float32)
              for i, m in enumerate((6, 3, 2))]
    got = _run_mlx(layers, x, hidden)
    acts = ["relu", "tanh", "elu"]
    _assert_float32_close(got, mlx_backend.oracle(layers)(x, hidden), acts, layers=3)
    seq = nn.Sequential(*layers)
    assert mlx_backend.from_native(seq) == params
    assert mlx_backend.from_native(seq.parameters(), activation=[
        "relu", "tanh", Act("elu", alpha=0.5)]) == params
    _assert_float32_close(np.array(seq(mx.array(x))), mlx_backend.oracle(seq)(x), acts, layers=3)


def test_saved_file_keys_are_read(tmp_path: object) -> None:
    """What mx.save_safetensors of tree_flatten writes, read back by mx.load."""
    from mlx.utils import tree_flatten

    seq = nn.Sequential(_user_rnn(31), _user_rnn(32, d=M, m=3))
    path = str(tmp_path) + "/stack.safetensors"  # type: ignore[operator]
    mx.save_safetensors(path, dict(tree_flatten(seq.parameters())))
    flat = mx.load(path)
    assert sorted(flat) == sorted(f"layers.{i}.{k}" for i in (0, 1)
                                  for k in ("Wxh", "Whh", "bias"))
    assert mlx_backend.from_native(flat) == mlx_backend.from_native(seq)
    single = _user_rnn(33)
    mx.save_safetensors(path, dict(tree_flatten(single.parameters())))
    assert mlx_backend.from_native(mx.load(path)) == mlx_backend.from_native(single)


# --------------------------------------------------------------------------------------------
# the two layouts (mlx < 0.18.0: Wxh (I, H) used as x @ Wxh, h @ Whh)
# --------------------------------------------------------------------------------------------
def _old_file(params: rnn_ref.RNNParams) -> dict:
    cell = params.layers[0][0]
    return {"Wxh": cell.w_x, "Whh": cell.w_h, "bias": cell.b_x + cell.b_h}


def _new_file(params: rnn_ref.RNNParams) -> dict:
    cell = params.layers[0][0]
    return {"Wxh": cell.w_x.T, "Whh": cell.w_h.T, "bias": cell.b_x + cell.b_h}


def test_non_square_layout_is_detected_and_said() -> None:
    params = mlx_backend.from_native(mlx_backend.to_native(_params(seed=41)))  # one bias
    assert mlx_backend.from_native(_new_file(params)) == params  # today's: silent
    with pytest.warns(UserWarning, match=re.escape(
            "Wxh (5, 4) with Whh (4, 4) (layer 0) is the old mlx layout: read as "
            "layout='old' (mlx 0.7.0 to 0.17.x")):
        assert mlx_backend.from_native(_old_file(params)) == params
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mlx_backend.from_native(_old_file(params), layout="old") == params
        assert mlx_backend.from_native(_new_file(params), layout="new") == params
    with pytest.raises(ValueError, match=re.escape(
            "layout='new', but Wxh (5, 4) with Whh (4, 4) (layer 0) is the layout='old'")):
        mlx_backend.from_native(_old_file(params), layout="new")
    with pytest.raises(ValueError, match=re.escape(
            "layout='old', but Wxh (4, 5) with Whh (4, 4) (layer 0) is the layout='new' "
            "(mlx >= 0.18.0")):
        mlx_backend.from_native(_new_file(params), layout="old")


def test_square_layout_must_be_named() -> None:
    cfg = RNNConfig(M, M)  # I == H: the shapes cannot tell
    params = mlx_backend.from_native(mlx_backend.to_native(rnn_ref.init(cfg, seed=42)))
    for file in (_old_file(params), _new_file(params)):
        with pytest.raises(ValueError, match=r"the layout is ambiguous: every Wxh is square "
                           r"\(I == H, \(4, 4\)\).*pass layout='new' \(mlx >= 0\.18\.0.*"
                           r"or layout='old' \(mlx 0\.7\.0 to 0\.17\.x"):
            mlx_backend.from_native(file)
    assert mlx_backend.from_native(_old_file(params), layout="old") == params
    assert mlx_backend.from_native(_new_file(params), layout="new") == params
    # read the other way, the weights come out transposed: why it is never guessed
    assert mlx_backend.from_native(_old_file(params), layout="new") != params
    # a stack with one non-square layer decides for all
    stack = mlx_backend.to_native(rnn_ref.init(RNNConfig(M, (M, 3)), seed=43))
    old = [{"Wxh": np.array(r.Wxh).T, "Whh": np.array(r.Whh).T, "bias": np.array(r.bias)}
           for r in stack]
    with pytest.warns(UserWarning, match=r"Wxh \(4, 3\) with Whh \(3, 3\) \(layer 1\)"):
        assert mlx_backend.from_native(old) == mlx_backend.from_native(stack)


def test_layout_errors() -> None:
    rnn = _user_rnn(44)
    with pytest.raises(ValueError, match="layout='old' is for parameter files: a module of "
                       "the installed mlx .* computes with the new layout"):
        mlx_backend.from_native(rnn, layout="old")
    with pytest.raises(ValueError, match="layout must be 'old' or 'new', got 'torch'"):
        mlx_backend.from_native(rnn.parameters(), layout="torch")
    with pytest.raises(ValueError, match=r"Wxh \(3, 2\) does not fit Whh \(4, 4\)"):
        mlx_backend.from_native({"Wxh": np.zeros((3, 2)), "Whh": np.zeros((4, 4))})
    with pytest.raises(ValueError, match=r"Whh must be \(H, H\), got \(4, 3\)"):
        mlx_backend.from_native({"Wxh": np.zeros((4, 5)), "Whh": np.zeros((4, 3))})
    old, new = {"Wxh": np.zeros((5, 4)), "Whh": np.zeros((4, 4))}, {
        "Wxh": np.zeros((3, 4)), "Whh": np.zeros((3, 3))}
    with pytest.raises(ValueError, match="the layers disagree on the layout"):
        mlx_backend.from_native([old, new])


# --------------------------------------------------------------------------------------------
# reading other things, activations
# --------------------------------------------------------------------------------------------
def test_from_native_refuses_other_modules_and_bad_dicts() -> None:
    with pytest.raises(UnsupportedError, match="mlx.nn.Linear.*mlx.nn.RNN, mlx.nn.GRU and "
                       "mlx.nn.LSTM are the recurrent layers read"):
        mlx_backend.from_native(nn.Linear(D, M))
    with pytest.raises(UnsupportedError, match="mlx.nn.Linear"):
        mlx_backend.from_native(nn.Sequential(_user_rnn(51), nn.Linear(M, 2)))
    with pytest.raises(ValueError, match=r"not mlx.nn.RNN, GRU or LSTM parameters: keys "
                       r"\['W', 'Wx'\]; expected Wxh, Whh\[, bias\] \(RNN\)"):
        mlx_backend.from_native({"Wx": np.zeros((4, 5)), "W": np.zeros((4, 4))})
    with pytest.raises(UnsupportedError, match="layers with and without biases"):
        mlx_backend.from_native([_user_rnn(52), _user_rnn(53, d=M, bias=False)])
    with pytest.raises(TypeError, match="from_mlx takes an mlx.nn.RNN"):
        mlx_backend.from_native("model.safetensors")
    with pytest.raises(TypeError, match="modules or parameter dicts, not both"):
        mlx_backend.from_native([_user_rnn(54), _user_rnn(55, d=M).parameters()])


def test_nonlinearities_read() -> None:
    cases = [(nn.tanh, "tanh"), (mx.tanh, "tanh"), (nn.relu, "relu"), (mx.sigmoid, "sigmoid"),
             (nn.softplus, "softplus"), (nn.softsign, "softsign"),
             (mlx_backend.identity, "linear"), (nn.elu, Act("elu", alpha=1.0)),
             (functools.partial(nn.leaky_relu, negative_slope=0.2),
              Act("leaky_relu", alpha=0.2)),
             (nn.leaky_relu, Act("leaky_relu", alpha=0.01))]
    for fn, want in cases:
        got = mlx_backend.from_native(_user_rnn(61, nonlinearity=fn)).config.activations[0][0]
        assert got == RNNConfig(1, 1, activation=want).activations[0][0], fn
    rnn = _user_rnn(62)
    rnn.nonlinearity = nn.ELU(0.5)  # set after construction, a module does hold
    assert mlx_backend.from_native(rnn).config.activations[0][0] == rnn_ref.Activation(
        "elu", alpha=0.5)
    odd = _user_rnn(63, nonlinearity=nn.gelu)
    with pytest.raises(UnsupportedError, match=r"mlx nonlinearity gelu \(layer 0\).*pass "
                       r"activation="):
        mlx_backend.from_native(odd)
    with pytest.raises(ValueError, match="layer 0's nonlinearity computes relu"):
        mlx_backend.from_native(_user_rnn(64, nonlinearity=nn.relu), activation="tanh")
    # a parameter dict records none: mlx's default tanh, or what activation= says
    p = _user_rnn(65).parameters()
    assert mlx_backend.from_native(p).config.activations[0][0].name == "tanh"
    assert mlx_backend.from_native(p, activation="relu").config.activations[0][0].name == "relu"


# --------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------
REFUSED = [
    ({"direction": "reverse"}, "direction 'reverse'"),
    ({"direction": "bidirectional"}, "direction 'bidirectional'"),
    ({"clip": 1.0}, "clip"),
    ({"activation": Act("hard_sigmoid", 1 / 6, 0.5)}, "activation hard_sigmoid"),
    ({"activation": Act("scaled_tanh", 1.5, 0.7)}, "activation scaled_tanh"),
    ({"activation": Act("leaky_relu", 1.5)}, "activation leaky_relu(alpha=1.5)"),
    ({"num_layers": 2, "activation": [["tanh"], [Act("affine", 0.8, 0.1)]]},
     "activation affine(alpha=0.8, beta=0.1) (layer 1)"),
    ({"output_size": 2}, "a readout"),
]


@pytest.mark.parametrize(("changes", "feature"), REFUSED, ids=[f for _, f in REFUSED])
def test_what_mlx_cannot_hold_raises(changes: dict, feature: str) -> None:
    cfg = RNNConfig(D, M, **changes)
    reason = mlx_backend.unsupported(cfg)
    assert reason is not None and reason[0].startswith(feature)
    params = rnn_ref.init(cfg, seed=0)
    msg = f"mlx.nn.RNN cannot express {re.escape(feature)}"
    with pytest.raises(UnsupportedError, match=msg):
        mlx_backend.to_native(params)
    backend = rnn_ref.get_backend(BACKEND)
    assert backend.supports(cfg, dtype=np.float32, lengths=False, mask=False).startswith(feature)
    with pytest.raises(UnsupportedError, match=msg):
        backend.forward(params, _x())


def test_backend_refuses_lengths_masks_and_dtypes() -> None:
    backend = rnn_ref.get_backend(BACKEND)
    cfg = RNNConfig(D, M)
    assert "lengths or a mask" in backend.supports(cfg, dtype=np.float32, lengths=True,
                                                   mask=False)
    assert "lengths or a mask" in backend.supports(cfg, dtype=np.float32, lengths=False,
                                                   mask=True)
    assert "dtype float16" in backend.supports(cfg, dtype=np.float16, lengths=False, mask=False)
    params = rnn_ref.init(cfg, seed=0)
    with pytest.raises(UnsupportedError, match="cannot express lengths"):
        backend.forward(params, _x(), lengths=np.array([7, 3, 7]))
    with pytest.raises(UnsupportedError, match="cannot express mask"):
        backend.forward(params, _x(), mask=np.ones((N, T), bool))
    with pytest.raises(UnsupportedError, match="cannot express dtype float16"):
        backend.forward(params.astype(np.float16), _x())
    with pytest.raises(ValueError, match="x"):  # the one input boundary
        backend.forward(params, _x(d=D + 1))
    held = RNNConfig(D, (6, 3), activation=[["relu"], [Act("elu", alpha=0.5)]],
                     bias=False)
    assert mlx_backend.unsupported(held) is None  # per-layer sizes and activations, no bias


# --------------------------------------------------------------------------------------------
# the backend
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backend_with_h0_per_layer_sizes_and_dtypes(dtype: type) -> None:
    backend = rnn_ref.get_backend(BACKEND)
    params = _params(seed=71, dtype=dtype, hidden_size=(6, 3), activation=[["relu"], ["tanh"]])
    x = _x(72, t=11, dtype=dtype)
    h0 = [np.random.default_rng(73).standard_normal((N, m)).astype(dtype) for m in (6, 3)]
    got = backend.forward(params, x, h0=h0)
    want = rnn_ref.forward(params, x, h0=h0)
    assert got.outputs.dtype == dtype and got.y is None
    assert isinstance(got.h_n, tuple) and [h.shape for h in got.h_n] == [(N, 6), (N, 3)]
    if dtype == np.float64:  # mlx computes float64 on the CPU (without exp: see below)
        np.testing.assert_allclose(got.outputs, want.outputs, rtol=0, atol=1e-14)
    else:
        _assert_float32_close(got.outputs, want.outputs, ["relu", "tanh"], layers=2)
    for g, w in zip(got.h_n, want.h_n, strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-14 if dtype == np.float64 else 1e-5)
    uniform = backend.forward(_params(seed=74, num_layers=2), _x(75))
    assert uniform.h_n.shape == (2, N, M)
    np.testing.assert_array_equal(uniform.h_n[1], uniform.outputs[:, -1])


def test_no_h0_is_a_zero_state() -> None:
    """mlx's hidden=None skips h @ Whh.T at step 0: the same numbers as a zero state."""
    backend = rnn_ref.get_backend(BACKEND)
    params = _params(seed=81, num_layers=2)
    x = _x(82)
    a = backend.forward(params, x)
    b = backend.forward(params, x, h0=np.zeros((2, N, M), np.float32))
    np.testing.assert_array_equal(a.outputs, b.outputs)
    np.testing.assert_array_equal(a.h_n, b.h_n)


# --------------------------------------------------------------------------------------------
# the recorded deviations (backends/mlx/deviations/mlx.json), each still real
# --------------------------------------------------------------------------------------------
def test_deviation_file_is_well_formed() -> None:
    from rnn_ref.backends import deviations

    devs = {d.id: d for d in deviations.load("mlx")}
    assert set(devs) == {"empty-sequence-refused", "float64-exp-at-float32-precision",
                         "old-layout-square-loads-transposed", "activation-module-becomes-tanh"}
    for d in devs.values():
        assert d.what and d.spec and d.source and d.backend == "mlx"
        test = d.source.rsplit("::", 1)[1]
        assert callable(globals().get(test)), test


def test_deviation_empty_sequence_refused() -> None:
    with pytest.raises(ValueError, match=r"\[stack\] No arrays provided for stacking"):
        nn.RNN(D, M)(mx.zeros((2, 0, D)))


def test_deviation_old_square_file_loads_transposed(tmp_path: object) -> None:
    """mlx >= 0.18.0 refuses a non-square old-layout file but loads a square one silently."""
    path = str(tmp_path) + "/old.safetensors"  # type: ignore[operator]
    old = _old_file(mlx_backend.from_native(_user_rnn(91)))
    mx.save_safetensors(path, {k: mx.array(v) for k, v in old.items()})
    with pytest.raises(ValueError, match=r"Expected shape \(4, 5\) but received shape \(5, 4\) "
                       r"for parameter Wxh"):
        nn.RNN(D, M).load_weights(path)
    params = mlx_backend.from_native(
        mlx_backend.to_native(rnn_ref.init(RNNConfig(M, M), seed=92)))
    mx.save_safetensors(path, {k: mx.array(v) for k, v in _old_file(params).items()})
    rnn = nn.RNN(M, M)
    rnn.load_weights(path)  # no complaint
    x = _x(93, d=M)
    wrong = np.array(rnn(mx.array(x)))
    right = rnn_ref.forward(params, x).outputs
    assert np.abs(wrong - right).max() > 1e-2  # computes with the matrices transposed
    fixed = mlx_backend.from_native(mx.load(path), layout="old")
    assert fixed == params
    _assert_float32_close(np.array(mlx_backend.to_native(fixed)(mx.array(x))), right, ["tanh"])


def test_deviation_activation_module_becomes_tanh() -> None:
    for module in (nn.ReLU(), nn.Identity(), nn.ELU(0.5), nn.LeakyReLU(0.2), nn.Sigmoid()):
        rnn = nn.RNN(D, M, nonlinearity=module)
        assert rnn.nonlinearity is nn.tanh, type(module).__name__
        assert mlx_backend.from_native(rnn).config.activations[0][0].name == "tanh"
    assert nn.RNN(D, M, nonlinearity=nn.relu).nonlinearity is nn.relu  # a function is kept


def test_deviation_float64_exp_at_float32_precision() -> None:
    rng = np.random.default_rng(101)
    z = rng.standard_normal(1000) * 3
    with mx.stream(mx.cpu):
        exp = np.array(mx.exp(mx.array(z, dtype=mx.float64)))
        tanh = np.array(mx.tanh(mx.array(z, dtype=mx.float64)))
    assert exp.dtype == np.float64
    assert 1e-9 < np.abs(exp / np.exp(z) - 1).max() < 1e-6  # a float32 rounding
    assert np.abs(tanh - np.tanh(z)).max() < 1e-15
    backend = rnn_ref.get_backend(BACKEND)
    for act, err in (("sigmoid", (1e-10, 1e-6)), ("tanh", (0.0, 1e-14))):
        params = _params(seed=102, dtype=np.float64, activation=act)
        x = _x(103, dtype=np.float64)
        got = backend.forward(params, x).outputs
        error = np.abs(got - rnn_ref.forward(params, x).outputs).max()
        assert err[0] <= error < err[1], (act, error)


def test_a_leaky_slope_mlx_computes_differently_is_refused() -> None:
    """mlx's leaky_relu is max(a z, z): the leaky relu only for 0 <= a <= 1."""
    import mlx.nn as nn

    layer = nn.RNN(2, 3, nonlinearity=functools.partial(nn.leaky_relu, negative_slope=2.0))
    with pytest.raises(UnsupportedError, match="negative_slope 2.0.*slope in \\[0, 1\\]"):
        mlx_backend.from_native(layer)
