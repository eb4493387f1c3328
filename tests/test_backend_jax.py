"""The jax backend (lax.scan) against the oracle, its gradient, and flax SimpleCell."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need
from hypothesis import given, settings
from strategies import cases
from strategies_gated import EVERY, gated_cases, gated_configs

import rnn_ref
from rnn_ref import RNNConfig, UnsupportedError

jax = need("jax")
jnp = jax.numpy


@settings(max_examples=25)
@given(cases())
def test_jax_backend_equals_oracle(case: dict) -> None:
    """Every feature: layers, directions, merge modes, masks, the three padded modes, clip,
    readout, activations; float64, so the agreement is to rounding."""
    backend = rnn_ref.get_backend("jax")
    got = backend.forward(**case)
    want = rnn_ref.forward(**case)
    outs = got.outputs if isinstance(got.outputs, tuple) else (got.outputs,)
    wants = want.outputs if isinstance(want.outputs, tuple) else (want.outputs,)
    for g, w in zip(outs, wants, strict=True):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)
    for g, w in zip(got.h_n, want.h_n, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)
    if want.y is not None:
        np.testing.assert_allclose(got.y, want.y, rtol=1e-9, atol=1e-9)


def _leaves(value: object) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


@settings(max_examples=20)
@given(gated_cases(gated_configs(acts=EVERY)))
def test_jax_backend_equals_oracle_on_gated_cells(case: dict) -> None:
    """GRU and LSTM layers with every switch (both reset placements, peepholes, input_forget,
    a projection, every activation with hard_sigmoid's two parameter sets, clip), mixed
    stacks, h0 and c0, the padded-output modes, selections and heads; float64."""
    kw = {k: case[k] for k in ("h0", "c0", "lengths", "mask") if case.get(k) is not None}
    got = rnn_ref.get_backend("jax").forward(case["params"], case["x"], **kw)
    want = rnn_ref.forward(case["params"], case["x"], **kw)
    for name in ("outputs", "h_n", "y", "selected", "c_n"):
        g, w = _leaves(getattr(got, name)), _leaves(getattr(want, name))
        assert len(g) == len(w), name
        for a, b in zip(g, w, strict=True):
            assert a.dtype == np.float64 and a.shape == b.shape, name
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)


def test_gated_float32_and_c0_layouts() -> None:
    """A float32 LSTM with a projection and a GRU beside it: the jax backend in float32
    against the oracle in float32; c_n's layout follows c0's (a tuple for different widths)."""
    cfg = RNNConfig(4, [5, 3], cell=["lstm", "lstm"], proj_size=[2, None],
                    direction="bidirectional", peepholes=True)
    params = rnn_ref.init(cfg, seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 7, 4)).astype(np.float32)
    c0 = [rng.standard_normal((3, m)).astype(np.float32) for m in cfg.cell_state_sizes]
    got = rnn_ref.get_backend("jax").forward(params, x, c0=c0, lengths=np.array([7, 0, 4]))
    want = rnn_ref.forward(params, x, c0=c0, lengths=np.array([7, 0, 4]),
                           compute_dtype=np.float32)
    assert got.outputs.dtype == np.float32
    np.testing.assert_allclose(got.outputs, want.outputs, atol=1e-5)
    assert isinstance(got.c_n, tuple) and len(got.c_n) == 4
    for a, b in zip(got.c_n, want.c_n, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(got.c_n[0][1], c0[0][1])  # length 0: c_n is c0


def test_processing_order_and_float32() -> None:
    cfg = RNNConfig(5, 4, direction="reverse", output_order="processing",
                    padded_output="carry_state", output_size=2)
    params = rnn_ref.init(cfg, seed=1)
    x = np.random.default_rng(2).standard_normal((3, 6, 5)).astype(np.float32)
    mask = np.random.default_rng(3).random((3, 6)) < 0.6
    got = rnn_ref.get_backend("jax").forward(params, x, mask=mask)
    want = rnn_ref.forward(params, x, mask=mask)
    assert got.outputs.dtype == np.float32
    np.testing.assert_allclose(got.outputs, want.outputs, atol=2e-6)
    np.testing.assert_allclose(got.y, want.y, atol=2e-6)
    assert not jax.config.jax_enable_x64  # float64 runs never leave x64 switched on


def test_grad_matches_central_differences_of_the_oracle() -> None:
    from rnn_ref.backends.jax import backend as jax_backend

    cfg = RNNConfig(3, 4, direction="bidirectional", activation=("tanh", "softplus"),
                    output_size=2)
    params = rnn_ref.init(cfg, seed=4, dtype=np.float64)
    x = np.random.default_rng(5).standard_normal((2, 5, 3))
    lengths = np.array([5, 3])

    def loss_np(p: rnn_ref.RNNParams) -> float:
        return float(np.sum(rnn_ref.forward(p, x, lengths=lengths).y ** 2))

    with jax.enable_x64(True):
        tree = jax_backend.pytree_of(params)

        def loss(t: dict) -> jax.Array:
            _, _, y, _, _ = jax_backend.apply(t, jnp.asarray(x), config=cfg, lengths=lengths)
            return jnp.sum(y**2)

        grad = jax.grad(loss)(tree)
    eps = 1e-6
    for name in ("w_h", "b_x"):
        for r in range(2):
            g = np.asarray(grad["layers"][0][r][name])
            base = getattr(params.layers[0][r], name)
            idx = (1, 2) if base.ndim == 2 else (3,)
            arrays = dict(params.named_arrays())
            key = f"layers.0.{r}.{name}"
            plus, minus = arrays[key].copy(), arrays[key].copy()
            plus[idx] += eps
            minus[idx] -= eps
            fd = (loss_np(rnn_ref.RNNParams.from_arrays(cfg, {**arrays, key: plus}))
                  - loss_np(rnn_ref.RNNParams.from_arrays(cfg, {**arrays, key: minus}))) / (2 * eps)
            assert g[idx] == pytest.approx(fd, rel=1e-6, abs=1e-9), key


def test_flax_round_trips_are_bit_exact_and_oracle_matches() -> None:
    nnx = need("flax.nnx")
    linen = need("flax.linen")
    cell = nnx.SimpleCell(5, 4, activation_fn=nnx.relu, rngs=nnx.Rngs(0))
    params = rnn_ref.from_flax(cell)
    assert params.config.activation == rnn_ref.Activation("relu")
    again = rnn_ref.to_flax(params)
    for a, b in zip(jax.tree.leaves(nnx.state(cell)), jax.tree.leaves(nnx.state(again)),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    lin = rnn_ref.to_flax(params, kind="linen")
    assert rnn_ref.from_flax(lin, activation="relu") == params
    assert rnn_ref.from_flax(nnx.state(cell), activation="relu") == params
    carry = np.random.default_rng(6).standard_normal((2, 4)).astype(np.float32)
    inputs = np.random.default_rng(7).standard_normal((2, 5)).astype(np.float32)
    want, _ = cell(jnp.asarray(carry), jnp.asarray(inputs))
    got, out = rnn_ref.oracle(cell)(carry, inputs)
    np.testing.assert_allclose(got, np.asarray(want), atol=2e-6)
    lw, _ = linen.SimpleCell(4, activation_fn=linen.relu).apply(lin, carry, inputs)
    np.testing.assert_allclose(np.asarray(lw), got, atol=2e-6)
    np.testing.assert_allclose(rnn_ref.oracle(lin, activation="relu")(carry, inputs)[0], got,
                               rtol=1e-12)
    # a two-layer bidirectional network as lists of cells
    cfg = RNNConfig(5, 3, num_layers=2, direction="bidirectional")
    p2 = rnn_ref.init(cfg, seed=8)
    cells = rnn_ref.to_flax(p2)
    assert len(cells) == 2 and len(cells[1]) == 2
    back = rnn_ref.from_flax(cells)
    assert back.config == cfg.replace()
    np.testing.assert_array_equal(back.layers[1][1].b_x, p2.layers[1][1].b_x + p2.layers[1][1].b_h)


def test_flax_refusals() -> None:
    nnx = need("flax.nnx")
    with pytest.raises(UnsupportedError, match="residual=True"):
        rnn_ref.from_flax(nnx.SimpleCell(3, 2, residual=True, rngs=nnx.Rngs(0)))
    with pytest.raises(UnsupportedError, match="flax SimpleCell cannot express clip"):
        rnn_ref.to_flax(rnn_ref.init(RNNConfig(3, 2, clip=1.0), seed=0))
    with pytest.raises(UnsupportedError, match="activation elu"):
        rnn_ref.to_flax(rnn_ref.init(RNNConfig(3, 2, activation={"name": "elu", "alpha": 1.0}),
                                     seed=0))
    with pytest.raises(ValueError, match="not SimpleCell, GRUCell or LSTMCell parameters"):
        rnn_ref.from_flax({"params": {"dense": {}}})


@pytest.mark.parametrize("kind", ["nnx", "linen"])
@pytest.mark.parametrize(("config", "feature"), [
    (RNNConfig(3, 2, direction="bidirectional", merge_mode="sum"), "merge_mode 'sum'"),
    (RNNConfig(3, 2, direction="reverse", output_order="processing"),
     "output_order 'processing'"),
], ids=["bidirectional-sum", "reverse-processing"])
def test_to_flax_refuses_what_a_cell_list_drops(config: RNNConfig, feature: str,
                                                kind: str) -> None:
    """A list of SimpleCells records neither how two directions merge nor the output order:
    to_flax raises instead of dropping them (it used to return cells that read back as
    merge_mode='concat' and output_order='aligned')."""
    need("flax.nnx")
    with pytest.raises(UnsupportedError, match=f"flax SimpleCell cannot express {feature}"):
        rnn_ref.to_flax(rnn_ref.init(config, seed=0), kind=kind)


def test_flax_unsupported_rules() -> None:
    """flax_backend.unsupported names the first thing a SimpleCell list cannot hold, and only
    that: per-layer sizes, mixed activations, reverse and bias=False are all expressible."""
    need("flax.nnx")
    from rnn_ref.backends.flax.convert import unsupported

    def feature(cfg: RNNConfig, kind: str = "nnx") -> str | None:
        reason = unsupported(cfg, kind=kind)
        return None if reason is None else reason[0]

    bidir = {"num_layers": 2, "direction": "bidirectional"}
    assert feature(RNNConfig(3, 2, clip=(None, 1.0), num_layers=2)) == "clip"
    assert feature(RNNConfig(3, 2, output_size=1)) == "a readout"
    assert feature(RNNConfig(3, 2, merge_mode=("ave", "concat"), **bidir)) == \
        "merge_mode 'ave' (layer 0)"
    assert feature(RNNConfig(3, 2, merge_mode=("concat", None), **bidir)) == \
        "merge_mode None (layer 1)"
    assert feature(RNNConfig(3, 2, direction="reverse", output_order="processing"),
                   "linen") == "output_order 'processing'"
    assert feature(RNNConfig(3, 2, activation="linear")) == \
        "activation linear (layer 0, direction 0)"
    assert feature(RNNConfig(3, 2, activation="linear"), "linen") is None
    for ok in (RNNConfig(3, (4, 2), activation=[("relu", "softsign"), ("sigmoid", "softplus")],
                         bias=False, padded_output="carry_state", **bidir),
               RNNConfig(3, 2, direction="reverse", num_layers=3)):
        assert unsupported(ok) is None
        p = rnn_ref.init(ok, seed=0)
        back = rnn_ref.from_flax(rnn_ref.to_flax(p), direction=ok.direction, bias=ok.bias)
        assert back.config == ok.replace(padded_output="zeros")  # a cell holds no padding
        for lp, lb in zip(p.layers, back.layers, strict=True):
            for cp, cb in zip(lp, lb, strict=True):
                np.testing.assert_array_equal(cb.w_h, cp.w_h)
                np.testing.assert_array_equal(cb.b_x, cp.b_x + cp.b_h)  # the bias rule
    with pytest.raises(ValueError, match="kind must be"):
        unsupported(RNNConfig(3, 2), kind="haiku")
