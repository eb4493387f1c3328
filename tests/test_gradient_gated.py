"""rnn_ref.backward through GRU and LSTM layers: central differences of the oracle, torch
autograd (nn.GRU, nn.LSTM with proj_size) and JAX autodiff through the jax backend's scan."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import need
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import cotangents, loss_of
from strategies_gated import EVERY, gated_cases, gated_configs

import rnn_ref
from rnn_ref import Activation, RNNConfig, RNNParams
from rnn_ref.cells import unpack
from rnn_ref.params import GRUParams, LSTMParams


def _relative(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max(initial=0.0) / max(np.abs(b).max(initial=0.0), 1e-300))


def _parts(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (tuple, list)) else tuple(value)


def _all_cotangents(rng: np.random.Generator, res: rnn_ref.ForwardResult) -> dict[str, Any]:
    """Seeded cotangents of every result, the cell states' included."""
    cot = cotangents(rng, res)
    if res.c_n is not None:
        cot["grad_c_n"] = (tuple(rng.standard_normal(c.shape) for c in res.c_n)
                           if isinstance(res.c_n, tuple) else rng.standard_normal(res.c_n.shape))
    return cot


def _loss(res: rnn_ref.ForwardResult, cot: dict[str, Any]) -> float:
    total = loss_of(res, cot)
    if "grad_c_n" in cot:
        total += sum(float(np.sum(a * b)) for a, b in zip(_parts(res.c_n),
                                                          _parts(cot["grad_c_n"]), strict=True))
    return total


def _directional_check(case: dict[str, Any], seed: int, eps: float = 1e-6) -> tuple[float, float]:
    """``(analytic, central difference)`` of the loss along a random direction in every
    parameter, x, h0 and c0."""
    rng = np.random.default_rng(seed)
    params: RNNParams = case["params"]
    cfg = params.config
    x = case["x"]
    n = x.shape[0]
    h0 = case["h0"] or [np.zeros((n, m)) for m in cfg.state_sizes]
    c0 = case["c0"] or [np.zeros((n, m)) for m in cfg.cell_state_sizes]
    kw = {k: case[k] for k in ("lengths", "mask") if k in case}
    c0_kw = {"c0": c0} if cfg.num_cell_states else {}
    res = rnn_ref.forward(params, x, h0=h0, **c0_kw, **kw)
    cot = _all_cotangents(rng, res)
    grads = rnn_ref.backward(params, x, h0=h0, **c0_kw, **kw, **cot)

    fixed = {f"head.{j}.b" for j, dense in enumerate(cfg.head) if not dense.bias}
    if not cfg.bias:  # biases are not parameters there
        fixed |= {k for k, _ in params.named_arrays() if ".b_x" in k or ".b_h" in k}
    names = {k: v for k, v in params.named_arrays() if k not in fixed}
    direction = {k: rng.standard_normal(v.shape) for k, v in names.items()}
    dx = rng.standard_normal(x.shape)
    dh0 = [rng.standard_normal(h.shape) for h in h0]
    dc0 = [rng.standard_normal(c.shape) for c in c0]

    def loss_at(s: float) -> float:
        arrays = {**dict(params.named_arrays()),
                  **{k: v + s * direction[k] for k, v in names.items()}}
        p = RNNParams.from_arrays(cfg, arrays)
        moved = {"c0": [c + s * d for c, d in zip(c0, dc0, strict=True)]} if c0_kw else {}
        return _loss(rnn_ref.forward(p, x + s * dx, **moved, **kw,
                                     h0=[h + s * d for h, d in zip(h0, dh0, strict=True)]), cot)

    fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    g = dict(grads.params.named_arrays())
    analytic = sum(float(np.sum(g[k] * direction[k])) for k in names)
    analytic += float(np.sum(grads.x * dx))
    analytic += sum(float(np.sum(a * b)) for a, b in zip(_parts(grads.h0), dh0, strict=True))
    if cfg.num_cell_states:
        analytic += sum(float(np.sum(a * b)) for a, b in zip(_parts(grads.c0), dc0, strict=True))
    else:
        assert grads.c0 is None
    return analytic, fd


@settings(max_examples=40)
@given(gated_cases(), st.integers(0, 2**31 - 1))
def test_directional_derivative_matches_central_differences(case: dict, seed: int) -> None:
    """Every switch of both cells, mixed stacks, clip, the selections, heads, padding."""
    analytic, fd = _directional_check(case, seed)
    assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-6)


#: One network per variant, each checked against central differences (kinks included:
#: hard_sigmoid, clip; away from them with these seeds).
VARIANTS = {
    "gru-reset-after": RNNConfig(3, 4, cell="gru"),
    "gru-reset-before-clip": RNNConfig(3, 4, cell="gru", reset_after=False, clip=0.8),
    "gru-hard-sigmoid-keras2": RNNConfig(
        3, 4, cell="gru", reset_after=False,
        recurrent_activation=Activation("hard_sigmoid", alpha=0.2, beta=0.5)),
    "lstm": RNNConfig(3, 4, cell="lstm"),
    "lstm-peepholes-clip": RNNConfig(3, 4, cell="lstm", peepholes=True, clip=0.9),
    "lstm-input-forget-peepholes": RNNConfig(3, 4, cell="lstm", input_forget=True,
                                             peepholes=True),
    "lstm-proj": RNNConfig(3, 5, cell="lstm", proj_size=2),
    "lstm-hard-sigmoid-keras3-softplus-h": RNNConfig(
        3, 4, cell="lstm", activation="softsign", cell_activation="softplus",
        recurrent_activation=Activation("hard_sigmoid", alpha=1 / 6, beta=0.5)),
    "mixed-stack-bidir-head": RNNConfig(
        3, [4, 3, 5], cell=["lstm", "elman", "gru"],
        direction=["bidirectional", "reverse", "bidirectional"],
        merge_mode=["mul", "concat", "ave"], proj_size=[2, None, None], peepholes=True,
        output_size=2, output_activation="tanh", padded_output="carry_output"),
    "lstm-final-select-nobias": RNNConfig(3, 4, cell="lstm", direction="bidirectional",
                                          select="final", head=[(3, "softmax")], bias=False),
}


@pytest.mark.parametrize("cfg", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_variant_against_central_differences(cfg: RNNConfig) -> None:
    rng = np.random.default_rng(7)
    n, t = 3, 6
    case = {"params": rnn_ref.init(cfg, seed=11, dtype=np.float64),
            "x": rng.standard_normal((n, t, cfg.input_size)),
            "h0": [rng.standard_normal((n, m)) for m in cfg.state_sizes],
            "c0": [rng.standard_normal((n, m)) for m in cfg.cell_state_sizes] or None,
            "lengths": np.array([6, 2, 4])}
    analytic, fd = _directional_check(case, 12)
    assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-8)


# -- torch autograd ---------------------------------------------------------------------------
def _torch_params(module: Any, cfg: RNNConfig) -> RNNParams:
    """The canonical parameters of a torch nn.GRU / nn.LSTM (float64), blocks by
    ``rnn_ref.cells.unpack`` in torch's gate order; or its gradients, from ``.grad``."""
    return _from_torch_tensors({k: v.detach().numpy() for k, v in module.named_parameters()},
                               cfg)


def _torch_blocks(tensors: dict[str, np.ndarray], name: str, cfg: RNNConfig, li: int
                  ) -> dict[str, np.ndarray]:
    """torch's packed ``name`` (``weight_ih_l0_reverse``, ...) split into canonical gate
    blocks in torch's order; zero biases for a module without them."""
    kind = cfg.cell_of(li).kind
    if name not in tensors:  # bias=False
        return {k: np.zeros(cfg.hidden_sizes[li]) for k in cfg.cell_of(li).gates}
    return unpack(tensors[name], f"{kind}:torch", cell=kind, axis=0)


def _from_torch_tensors(tensors: dict[str, np.ndarray], cfg: RNNConfig) -> RNNParams:
    kind = cfg.cell_of(0).kind
    layers = []
    for li in range(cfg.num_layers):
        cells = []
        for r in range(cfg.num_directions_of(li)):
            sfx = f"l{li}" + ("_reverse" if r else "")
            blocks = {name: _torch_blocks(tensors, f"{name}_{sfx}", cfg, li)
                      for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            w_x = {k: v.T for k, v in blocks["weight_ih"].items()}
            w_h = {k: v.T for k, v in blocks["weight_hh"].items()}
            b_x, b_h = blocks["bias_ih"], blocks["bias_hh"]
            if kind == "gru":
                cells.append(GRUParams(w_x=w_x, w_h=w_h, b_x=b_x, b_h=b_h))
            else:
                proj = tensors.get(f"weight_hr_{sfx}")
                cells.append(LSTMParams(w_x=w_x, w_h=w_h, b_x=b_x, b_h=b_h,
                                        w_proj=None if proj is None else proj.T))
        layers.append(cells)
    return RNNParams(cfg, layers)


TORCH_CASES = {
    "gru-bidir-2layer-lengths-h0": (RNNConfig(5, 4, num_layers=2, direction="bidirectional",
                                              cell="gru"), True),
    "gru-1layer-nobias": (RNNConfig(5, 4, cell="gru", bias=False), False),
    "lstm-bidir-2layer-proj-lengths-h0-c0": (
        RNNConfig(5, 4, num_layers=2, direction="bidirectional", cell="lstm", proj_size=3), True),
    "lstm-2layer": (RNNConfig(5, 3, num_layers=2, cell="lstm"), False),
}


@pytest.mark.parametrize("case", TORCH_CASES.values(), ids=TORCH_CASES.keys())
def test_matches_torch_autograd(case: tuple[RNNConfig, bool]) -> None:
    """Weights from a seeded torch module, through unpack in torch's gate order; the
    gradients of every weight, x, h0 and c0 for one random cotangent of each result."""
    torch = need("torch")
    cfg, with_lengths = case
    kind = cfg.cell_of(0).kind
    torch.manual_seed(0)
    extra = {"proj_size": cfg.cell_of(0).proj_size or 0} if kind == "lstm" else {}
    module = getattr(torch.nn, kind.upper())(
        cfg.input_size, cfg.hidden_sizes[0], num_layers=cfg.num_layers, bias=cfg.bias,
        batch_first=True, bidirectional=cfg.directions[0] == "bidirectional", **extra).double()
    params = _torch_params(module, cfg)
    rng = np.random.default_rng(4)
    n, t = 3, 6
    S, C = cfg.num_states, cfg.num_cell_states
    x = rng.standard_normal((n, t, cfg.input_size))
    h0 = rng.standard_normal((S, n, cfg.state_sizes[0]))
    c0 = rng.standard_normal((C, n, cfg.hidden_sizes[0])) if C else None
    lengths = np.array([6, 2, 4]) if with_lengths else None
    res = rnn_ref.forward(params, x, h0=h0, c0=c0, lengths=lengths)
    cot = _all_cotangents(rng, res)
    ours = rnn_ref.backward(params, x, h0=h0, c0=c0, lengths=lengths, **cot)

    xt = torch.tensor(x, requires_grad=True)
    ht = torch.tensor(h0, requires_grad=True)
    ct = torch.tensor(c0, requires_grad=True) if C else None
    inp = xt if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    out, state = module(inp, ht if kind == "gru" else (ht, ct))
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
    hn = state if kind == "gru" else state[0]
    np.testing.assert_allclose(out.detach().numpy(), res.outputs, rtol=1e-12, atol=1e-13)
    loss = ((out * torch.tensor(cot["grad_outputs"])).sum()
            + (hn * torch.tensor(cot["grad_h_n"])).sum())
    if kind == "lstm":
        loss = loss + (state[1] * torch.tensor(cot["grad_c_n"])).sum()
    loss.backward()
    theirs = _from_torch_tensors(
        {k: v.grad.numpy() for k, v in module.named_parameters()}, cfg)
    errors = {name: _relative(a, b) for (name, a), (_, b) in
              zip(ours.params.named_arrays(), theirs.named_arrays(), strict=True)}
    errors["x"] = _relative(ours.x, xt.grad.numpy())
    errors["h0"] = _relative(ours.h0, ht.grad.numpy())
    if ct is not None:
        errors["c0"] = _relative(ours.c0, ct.grad.numpy())
    worst = max(errors, key=lambda k: errors[k])
    assert errors[worst] < 1e-10, (worst, errors[worst])


# -- JAX autodiff through the jax backend's scan ---------------------------------------------
def _against_jax(case: dict[str, Any], seed: int) -> dict[str, float]:
    """Relative error of every gradient of rnn_ref.backward against jax.vjp through
    :func:`rnn_ref.backends.jax.backend.apply` (the jax backend's ``backward``)."""
    need("jax")
    params: RNNParams = case["params"]
    kw = {k: case[k] for k in ("h0", "c0", "lengths", "mask") if case.get(k) is not None}
    res = rnn_ref.forward(params, case["x"], **kw)
    cot = _all_cotangents(np.random.default_rng(seed), res)
    ours = rnn_ref.backward(params, case["x"], **kw, **cot)
    theirs = rnn_ref.get_backend("jax").backward(params, case["x"], **kw, **cot)
    errors = {name: _relative(a, b) for (name, a), (_, b) in
              zip(ours.params.named_arrays(), theirs.params.named_arrays(), strict=True)}
    errors["x"] = _relative(ours.x, theirs.x)
    for name in ("h0", "c0"):
        for i, (a, b) in enumerate(zip(_parts(getattr(ours, name)),
                                       _parts(getattr(theirs, name)), strict=True)):
            errors[f"{name}[{i}]"] = _relative(a, b)
    return errors


JAX_CASES = {
    "gru-both-resets-hard-sigmoid-clip": RNNConfig(
        3, [4, 5], cell="gru", reset_after=[True, False], direction=["bidirectional", "reverse"],
        merge_mode=["sum", "concat"], clip=0.9, output_order="processing",
        recurrent_activation=Activation("hard_sigmoid", alpha=0.2, beta=0.5)),
    "lstm-every-switch": RNNConfig(
        3, [5, 4], cell="lstm", direction="bidirectional", peepholes=True,
        input_forget=[True, False], proj_size=[3, None], clip=1.2, select="final",
        recurrent_activation=Activation("hard_sigmoid", alpha=1 / 6, beta=0.5),
        cell_activation="softsign", head=[(2, "log_softmax")], padded_output="carry_state"),
}


@pytest.mark.parametrize("cfg", JAX_CASES.values(), ids=JAX_CASES.keys())
def test_matches_jax_autodiff(cfg: RNNConfig) -> None:
    rng = np.random.default_rng(21)
    n, t = 3, 7
    case = {"params": rnn_ref.init(cfg, seed=22, dtype=np.float64),
            "x": rng.standard_normal((n, t, cfg.input_size)),
            "h0": [rng.standard_normal((n, m)) for m in cfg.state_sizes],
            "c0": [rng.standard_normal((n, m)) for m in cfg.cell_state_sizes] or None,
            "mask": rng.random((n, t)) < 0.7}
    errors = _against_jax(case, 23)
    worst = max(errors, key=lambda k: errors[k])
    assert errors[worst] < 1e-9, (worst, errors[worst])


@pytest.mark.slow
@settings(max_examples=30)
@given(gated_cases(gated_configs(acts=EVERY)), st.integers(0, 2**31 - 1))
def test_matches_jax_autodiff_on_every_switch(case: dict, seed: int) -> None:
    """Kinks included (relu, hard_sigmoid, clip): both sides take the same branch."""
    errors = _against_jax(case, seed)
    worst = max(errors, key=lambda k: errors[k], default="")
    assert not errors or errors[worst] < 1e-8, (worst, errors[worst])


def test_refusals_are_named() -> None:
    lstm = rnn_ref.init(RNNConfig(3, 4, cell="lstm"), seed=0)
    gru = rnn_ref.init(RNNConfig(3, 4, cell="gru"), seed=0)
    x = np.zeros((2, 5, 3))
    with pytest.raises(ValueError, match=r"grad_c_n must have shape \(1, 2, 4\)"):
        rnn_ref.backward(lstm, x, grad_c_n=np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="grad_c_n lists 2 arrays, expected C = 1"):
        rnn_ref.backward(lstm, x, grad_c_n=[np.zeros((2, 4))] * 2)
    with pytest.raises(ValueError, match="grad_c_n is given, but the network has no LSTM"):
        rnn_ref.backward(gru, x, grad_c_n=np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="c0 is given, but the network has no LSTM"):
        rnn_ref.backward(gru, x, c0=np.zeros((1, 2, 4)))
    assert rnn_ref.backward(gru, x).c0 is None
    assert rnn_ref.backward(lstm, x).c0.shape == (1, 2, 4)
