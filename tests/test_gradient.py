"""rnn_ref.backward: finite differences, and torch, JAX and TensorFlow autodiff."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need, need_keras
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import cases, configs, cotangents, loss_of

import rnn_ref
from rnn_ref import Activation, RNNConfig, RNNParams

SMOOTH = st.one_of(
    st.sampled_from(["tanh", "sigmoid", "linear", "softplus", "softsign"]),
    st.builds(Activation, st.just("scaled_tanh"), st.floats(0.5, 2), st.floats(0.5, 2)),
    st.builds(Activation, st.just("affine"), st.floats(0.5, 1.5), st.floats(-0.5, 0.5)),
    st.just(Activation("elu", 1.0)),
)


@st.composite
def smooth_configs(draw: st.DrawFn) -> RNNConfig:
    """Configs without kinks near which a finite difference would straddle two branches."""
    base = draw(configs())
    L, R = base.num_layers, base.num_directions
    acts = [[draw(SMOOTH) for _ in range(R)] for _ in range(L)]
    if not base.head:
        return base.replace(activation=[list(a) for a in acts], clip=None)
    return base.replace(activation=[list(a) for a in acts], clip=None,
                        output_activation=draw(st.sampled_from(["linear", "tanh"])))


@settings(max_examples=40)
@given(cases(smooth_configs()), st.integers(0, 2**31 - 1))
def test_directional_derivative_matches_central_differences(case: dict, seed: int) -> None:
    rng = np.random.default_rng(seed)
    params: RNNParams = case["params"]
    kw = {k: case[k] for k in ("lengths", "mask") if k in case}
    h0 = case["h0"] if case["h0"] is not None else [
        np.zeros((case["x"].shape[0], m)) for m in params.config.hidden_sizes
        for _ in range(params.config.num_directions)]
    res = rnn_ref.forward(params, case["x"], h0=h0, **kw)
    cot = cotangents(rng, res)
    grads = rnn_ref.backward(params, case["x"], h0=h0, **kw, **cot)

    names = dict(params.named_arrays())
    if not params.config.bias:  # biases are not parameters there
        names = {k: v for k, v in names.items() if not k.endswith(("b_x", "b_h"))}
    direction = {k: rng.standard_normal(v.shape) for k, v in names.items()}
    dx = rng.standard_normal(case["x"].shape)
    dh0 = [rng.standard_normal(h.shape) for h in h0]
    eps = 1e-6

    def loss_at(s: float) -> float:
        arrays = {**dict(params.named_arrays()),
                  **{k: v + s * direction[k] for k, v in names.items()}}
        p = RNNParams.from_arrays(params.config, arrays)
        return loss_of(rnn_ref.forward(p, case["x"] + s * dx,
                                     h0=[h + s * d for h, d in zip(h0, dh0, strict=True)],
                                     **kw), cot)

    fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    g = dict(grads.params.named_arrays())
    analytic = sum(float(np.sum(g[k] * direction[k])) for k in names)
    analytic += float(np.sum(grads.x * dx))
    g_h0 = grads.h0 if isinstance(grads.h0, tuple) else tuple(grads.h0)
    analytic += sum(float(np.sum(a * b)) for a, b in zip(g_h0, dh0, strict=True))
    assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-6)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


TORCH_CASES = {
    "bidir-2layer-relu-lengths-h0-readout": (
        RNNConfig(5, 4, num_layers=2, direction="bidirectional", activation="relu",
                  output_size=3), True, True),
    "fwd-3layer-tanh-nobias": (RNNConfig(5, 4, num_layers=3, bias=False), False, True),
    "bidir-tanh-full": (RNNConfig(5, 3, direction="bidirectional", output_size=2), True, False),
}


@pytest.mark.parametrize("case", TORCH_CASES.values(), ids=TORCH_CASES.keys())
def test_matches_torch_autograd(case: tuple) -> None:
    torch = need("torch")
    cfg, with_lengths, with_h0 = case
    params = rnn_ref.init(cfg, seed=3, dtype=np.float64)
    rng = np.random.default_rng(4)
    n, t = 3, 6
    x = rng.standard_normal((n, t, 5))
    L, R, m = cfg.num_layers, cfg.num_directions, cfg.hidden_sizes[0]
    h0 = rng.standard_normal((L * R, n, m)) if with_h0 else np.zeros((L * R, n, m))
    lengths = np.array([6, 2, 4]) if with_lengths else None
    res = rnn_ref.forward(params, x, h0=h0, lengths=lengths)
    cot = cotangents(rng, res)
    if lengths is not None:  # torch's padded outputs are constant zeros, like ours
        cot["grad_outputs"] = cot["grad_outputs"] * (np.arange(t) < lengths[:, None])[..., None]
    ours = rnn_ref.backward(params, x, h0=h0, lengths=lengths, **cot)

    module = rnn_ref.to_torch(params)
    rnn = module.rnn if hasattr(module, "rnn") else module
    xt = torch.tensor(x, requires_grad=True)
    ht = torch.tensor(h0, requires_grad=True)
    inp = xt if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    out, hn = rnn(inp, ht)
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
    loss = ((out * torch.tensor(cot["grad_outputs"])).sum()
            + (hn * torch.tensor(cot["grad_h_n"])).sum())
    if hasattr(module, "readout"):
        loss = loss + (module.readout(out) * torch.tensor(cot["grad_y"])).sum()
    loss.backward()
    theirs = rnn_ref.from_torch({k: v.grad for k, v in rnn.named_parameters()},
                                nonlinearity=rnn.nonlinearity)
    for (name, a), (_, b) in zip(ours.params.named_arrays(), theirs.named_arrays(), strict=False):
        assert _relative(a, b) < 1e-9, name
    if hasattr(module, "readout"):
        assert _relative(ours.params.readout.w, module.readout.weight.grad.numpy().T) < 1e-9
    assert _relative(ours.x, xt.grad.numpy()) < 1e-9
    assert _relative(ours.h0, ht.grad.numpy()) < 1e-9


@pytest.mark.slow
@settings(max_examples=25)
@given(cases(), st.integers(0, 2**31 - 1))
def test_matches_jax_grad_on_every_feature(case: dict, seed: int) -> None:
    jax = need("jax")
    jnp = jax.numpy
    from rnn_ref.backends.jax import backend as jax_backend

    params: RNNParams = case["params"]
    cfg = params.config
    kw = {k: case[k] for k in ("lengths", "mask") if k in case}
    res = rnn_ref.forward(params, case["x"], h0=case["h0"], **kw)
    cot = cotangents(np.random.default_rng(seed), res)
    ours = rnn_ref.backward(params, case["x"], h0=case["h0"], **kw, **cot)
    with jax.enable_x64(True):
        tree = jax_backend.pytree_of(params)

        def loss(t: dict, x: jax.Array) -> jax.Array:
            out, h_n, y, _, _ = jax_backend.apply(t, x, config=cfg, h0=None if case["h0"] is None
                                            else [jnp.asarray(h) for h in case["h0"]], **kw)
            total = sum(jnp.sum(a * b) for a, b in zip(
                out if isinstance(out, tuple) else (out,),
                cot["grad_outputs"] if isinstance(out, tuple) else (cot["grad_outputs"],),
                strict=True))
            hs = h_n if isinstance(h_n, tuple) else tuple(h_n)
            g_hn = cot["grad_h_n"] if isinstance(cot["grad_h_n"], tuple) else tuple(
                cot["grad_h_n"])
            total += sum(jnp.sum(a * b) for a, b in zip(hs, g_hn, strict=True))
            if y is not None:
                total += jnp.sum(y * cot["grad_y"])
            return total

        g_tree, g_x = jax.grad(loss, argnums=(0, 1))(tree, jnp.asarray(case["x"]))
    for li, layer in enumerate(ours.params.layers):
        for r, cell in enumerate(layer):
            for name in ("w_x", "w_h") + (("b_x",) if cfg.bias else ()):
                np.testing.assert_allclose(getattr(cell, name),
                                           np.asarray(g_tree["layers"][li][r][name]),
                                           rtol=1e-9, atol=1e-12, err_msg=f"{li}.{r}.{name}")
    if ours.params.readout is not None:
        np.testing.assert_allclose(ours.params.readout.w, np.asarray(g_tree["head"][0]["w"]),
                                   rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.x, np.asarray(g_x), rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_matches_tensorflow_gradient_tape() -> None:
    need_keras()
    tf = need("tensorflow")
    from rnn_ref.backends.keras import convert as keras_backend

    cfg = RNNConfig(5, 4, num_layers=2, direction="bidirectional",
                    activation=[("relu", "tanh"), ("sigmoid", "softsign")],
                    merge_mode=("sum", "concat"), output_size=2)
    params = rnn_ref.init(cfg, seed=5, dtype=np.float64)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 6, 5))
    res = rnn_ref.forward(params, x)
    gy = rng.standard_normal(res.y.shape)
    ours = rnn_ref.backward(params, x, grad_y=gy)
    layers = keras_backend.rnn_layers(params)
    dense = tf.keras.layers.Dense(2, dtype="float64")
    dense.build((None, None, cfg.output_features))
    dense.set_weights([params.readout.w, params.readout.b])
    with tf.GradientTape() as tape:
        h = tf.constant(x)
        for layer in layers:
            h = layer(h)
        loss = tf.reduce_sum(dense(h) * gy)
    weights = [w for layer in layers for w in layer.trainable_weights]
    grads = {w.path: g.numpy() for w, g in zip(weights, tape.gradient(loss, weights), strict=True)}
    kernels = [v for k, v in grads.items() if k.endswith("/kernel") and "recurrent" not in k]
    recurrents = [v for k, v in grads.items() if k.endswith("recurrent_kernel")]
    biases = [v for k, v in grads.items() if k.endswith("/bias")]
    mine = [c for layer in ours.params.layers for c in layer]
    for cell, k, rk, b in zip(mine, kernels, recurrents, biases, strict=True):
        assert _relative(cell.w_x, k) < 1e-9
        assert _relative(cell.w_h, rk) < 1e-9
        assert _relative(cell.b_x, b) < 1e-9  # Keras' one bias: d/d(b_x + b_h) = d/d b_x


def test_bad_cotangents_are_named() -> None:
    params = rnn_ref.init(RNNConfig(3, 4), seed=0)
    x = np.zeros((2, 5, 3))
    with pytest.raises(ValueError, match=r"grad_outputs must have shape \(2, 5, 4\)"):
        rnn_ref.backward(params, x, grad_outputs=np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match="grad_y is given but the network has no head"):
        rnn_ref.backward(params, x, grad_y=np.zeros((2, 5, 1)))
