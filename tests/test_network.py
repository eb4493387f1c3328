"""The network around the recurrent stack (docs/spec.md section 2.6): embedding, per-layer
directions, selection, head, identity layers. The clear loop against the fast path, the
gradient against finite differences, and each piece against its definition written out here."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import cases, cotangents, loss_of, networks

import rnn_ref
from rnn_ref import Activation, RNNConfig, RNNParams


def _parts(value: object) -> tuple:
    if value is None:
        return ()
    if isinstance(value, tuple):
        return value
    return (value,)


def _assert_close(a: rnn_ref.ForwardResult, b: rnn_ref.ForwardResult, tol: float) -> None:
    for field in ("outputs", "h_n", "selected", "y"):
        pa, pb = _parts(getattr(a, field)), _parts(getattr(b, field))
        assert len(pa) == len(pb), field
        for xa, xb in zip(pa, pb, strict=True):
            np.testing.assert_allclose(xa, xb, rtol=tol, atol=tol, err_msg=field)


@given(cases(networks()))
def test_clear_loop_equals_fast_path_on_whole_networks(case: dict) -> None:
    _assert_close(rnn_ref.forward(**case), rnn_ref.forward_loop(**case), 1e-10)


SMOOTH_CELLS = ["tanh", "sigmoid", "linear", "softsign"]


@st.composite
def smooth_networks(draw: st.DrawFn) -> RNNConfig:
    """Networks without kinks (cells, head, a maximum over time) near which a finite difference
    would straddle two branches."""
    base = draw(networks())
    if base.select == "max_all":
        base = base.replace(select="mean_all")
    acts = [[draw(st.sampled_from(SMOOTH_CELLS)) for _ in range(base.num_directions_of(i))]
            for i in range(base.num_layers)]
    head = [(d.units, draw(st.sampled_from(["linear", "tanh", "softmax", "log_softmax"])),
             d.bias) for d in base.head]
    return base.replace(activation=acts, clip=None, head=head)


@settings(max_examples=40)
@given(cases(smooth_networks()), st.integers(0, 2**31 - 1))
def test_network_gradient_matches_central_differences(case: dict, seed: int) -> None:
    rng = np.random.default_rng(seed)
    params: RNNParams = case["params"]
    cfg = params.config
    kw = {k: case[k] for k in ("lengths", "mask", "h0") if k in case}
    res = rnn_ref.forward(**case)
    cot = cotangents(rng, res)
    grads = rnn_ref.backward(**case, **cot)

    names = dict(params.named_arrays())
    if not cfg.bias:  # the cells' biases are not parameters there
        names = {k: v for k, v in names.items() if not k.endswith(("b_x", "b_h"))}
    names = {k: v for k, v in names.items()
             if not (k.startswith("head.") and k.endswith(".b")
                     and not cfg.head[int(k.split(".")[1])].bias)}
    direction = {k: rng.standard_normal(v.shape) for k, v in names.items()}
    if cfg.padding_idx is not None:  # torch's padding_idx row gets no gradient, by definition
        direction["embedding"][cfg.padding_idx] = 0.0
    dx = None if cfg.vocab_size is not None else rng.standard_normal(case["x"].shape)
    eps = 1e-6

    def loss_at(s: float) -> float:
        arrays = {**dict(params.named_arrays()),
                  **{k: v + s * direction[k] for k, v in names.items()}}
        p = RNNParams.from_arrays(cfg, arrays)
        x = case["x"] if dx is None else case["x"] + s * dx
        return loss_of(rnn_ref.forward(p, x, **kw), cot)

    fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    g = dict(grads.params.named_arrays())
    analytic = sum(float(np.sum(g[k] * direction[k])) for k in names)
    if dx is not None:
        analytic += float(np.sum(grads.x * dx))
    assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-6)


# -- each piece against its definition --------------------------------------------------------
def _net(**kw: object) -> RNNParams:
    base = {"input_size": 3, "hidden_size": 4}
    return rnn_ref.init(RNNConfig(**{**base, **kw}), seed=7, dtype=np.float64)


def test_embedding_is_a_row_lookup_and_mask_zero_masks_id_zero() -> None:
    p = _net(vocab_size=6, mask_zero=True, padded_output="carry_output")
    ids = np.array([[3, 1, 0, 0, 0], [0, 5, 2, 4, 1]])
    plain = rnn_ref.init(RNNConfig(3, 4, padded_output="carry_output"), seed=7, dtype=np.float64)
    plain = RNNParams(plain.config, p.layers)
    want = rnn_ref.forward(plain, p.embedding[ids], mask=ids != 0)
    got = rnn_ref.forward(p, ids)
    np.testing.assert_array_equal(got.outputs, want.outputs)
    np.testing.assert_array_equal(got.h_n, want.h_n)
    # a mask given with the ids is combined with the one the ids make
    extra = np.array([[True] * 5, [True, True, False, True, True]])
    np.testing.assert_array_equal(rnn_ref.forward(p, ids, mask=extra).h_n,
                                  rnn_ref.forward(plain, p.embedding[ids],
                                                  mask=extra & (ids != 0)).h_n)


def test_selections_are_what_torch_code_takes() -> None:
    cfg = dict(num_layers=2, direction="bidirectional")
    full = rnn_ref.forward(_net(**cfg), np.random.default_rng(1).standard_normal((2, 5, 3)))
    x = np.random.default_rng(1).standard_normal((2, 5, 3))
    for how, want in (("last_step", full.outputs[:, -1]),
                      ("final", np.concatenate([full.h_n[-2], full.h_n[-1]], axis=1)),
                      ("final_forward", full.h_n[-2]), ("final_backward", full.h_n[-1])):
        got = rnn_ref.forward(_net(**cfg, select=how), x)
        np.testing.assert_array_equal(got.selected, want, err_msg=how)
        assert got.result is got.selected
    # a bidirectional out[:, -1] is not the final state of its backward half
    assert not np.allclose(full.outputs[:, -1, 4:], full.h_n[-1])


def test_head_layers_apply_in_order_with_softmax_on_the_last_axis() -> None:
    p = _net(select="final", head=[(5, "relu"), (3, "softmax")])
    x = np.random.default_rng(2).standard_normal((4, 6, 3))
    res = rnn_ref.forward(p, x)
    hidden = np.maximum(res.selected @ p.head[0].w + p.head[0].b, 0)
    logits = hidden @ p.head[1].w + p.head[1].b
    want = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(res.y, want, rtol=1e-14)
    np.testing.assert_allclose(res.y.sum(axis=1), 1.0, rtol=1e-14)
    assert res.result is res.y and res.y.shape == (4, 3)
    seq = rnn_ref.forward(_net(head=[(3, "log_softmax")]), x)  # per step
    assert seq.y.shape == (4, 6, 3)
    np.testing.assert_allclose(np.exp(seq.y).sum(axis=-1), 1.0, rtol=1e-13)


def test_mixed_directions_run_each_layer_its_own_way() -> None:
    mixed = _net(hidden_size=[4, 2], direction=["bidirectional", "reverse"])
    x = np.random.default_rng(3).standard_normal((2, 5, 3))
    res = rnn_ref.forward(mixed, x)
    assert isinstance(res.h_n, tuple)  # widths 4 and 2: one (N, M_l) array per state
    assert [h.shape for h in res.h_n] == [(2, 4), (2, 4), (2, 2)]
    first = RNNParams(RNNConfig(3, 4, direction="bidirectional"), mixed.layers[:1])
    second = RNNParams(RNNConfig(8, 2, direction="reverse"), mixed.layers[1:])
    np.testing.assert_array_equal(
        res.outputs, rnn_ref.forward(second, rnn_ref.forward(first, x).outputs).outputs)


def test_identity_layers_change_nothing() -> None:
    x = np.random.default_rng(4).standard_normal((2, 5, 3))
    plain = _net(num_layers=2, output_size=2)
    noisy = RNNParams(plain.config.replace(identities=[("dropout", 0.5, 1),
                                                       ("gaussian_noise", 0.3, 0)]),
                      plain.layers, plain.readout)
    np.testing.assert_array_equal(rnn_ref.forward(noisy, x).y, rnn_ref.forward(plain, x).y)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"select": "final_backward"}, "picks one direction of a bidirectional last layer"),
    ({"head": [(2, "softmax")], "output_size": 2}, "either as head"),
    ({"output_activation": "tanh"}, "needs output_size"),
    ({"mask_zero": True}, "needs an embedding"),
    ({"vocab_size": 5, "padding_idx": 5}, r"padding_idx must be an int in \[-5, 5\)"),
    ({"direction": ["forward", "reverse"]}, "gives 2 values but there are 1 layers"),
    ({"identities": [("dropout", 1.5, 0)]}, r"rate must be in \[0, 1\)"),
    ({"identities": [("dropout", 0.1, 4)]}, "is not a position of the network"),
    ({"head": [(2, "softmax2")]}, "a head layer also allows 'softmax'"),
    ({"activation": "softmax"}, "unknown name 'softmax'"),
    ({"num_layers": 2, "direction": ["bidirectional", "forward"],
      "activation": ["tanh", "relu"]}, "ambiguous"),
])
def test_bad_networks_are_refused_by_name(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RNNConfig(3, 4, **kwargs)


def test_token_ids_are_checked() -> None:
    p = _net(vocab_size=5)
    with pytest.raises(ValueError, match=r"ids in \[0, 5\)"):
        rnn_ref.forward(p, np.array([[1, 5]]))
    with pytest.raises(TypeError, match="integer token ids"):
        rnn_ref.forward(p, np.zeros((1, 2)))


def test_config_and_file_round_trip_every_piece(tmp_path: object) -> None:
    cfg = RNNConfig(3, [4, 2], direction=["bidirectional", "reverse"], vocab_size=9,
                    mask_zero=True, select="final", head=[(5, "relu", False), (2, "softmax")],
                    identities=[("spatial_dropout_1d", 0.2, 0), ("dropout", 0.5, 3)],
                    output_order="processing")
    assert RNNConfig.from_dict(cfg.to_dict()) == cfg
    p = rnn_ref.init(cfg, seed=3)
    path = rnn_ref.save(p, tmp_path / "net.npz")  # type: ignore[operator]
    assert rnn_ref.load(path) == p
    assert Activation("linear") == RNNConfig(3, 4).output_activation
