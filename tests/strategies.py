"""Hypothesis strategies for configs, parameters and inputs (non-square, seeded)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

import rnn_ref

#: Every activation with parameters drawn where they are needed.
ACTIVATION_STRATEGY = st.one_of(
    st.sampled_from(["tanh", "relu", "sigmoid", "linear", "softsign", "softplus"]),
    st.builds(rnn_ref.Activation, st.just("affine"), st.floats(0.2, 1.5), st.floats(-0.5, 0.5)),
    st.builds(rnn_ref.Activation, st.just("leaky_relu"), st.floats(0.01, 0.5)),
    st.builds(rnn_ref.Activation, st.just("thresholded_relu"), st.floats(-0.5, 0.5)),
    st.builds(rnn_ref.Activation, st.just("scaled_tanh"), st.floats(0.5, 2.0),
              st.floats(0.5, 2.0)),
    st.builds(rnn_ref.Activation, st.just("hard_sigmoid"), st.floats(0.1, 0.5),
              st.floats(0.3, 0.7)),
    st.builds(rnn_ref.Activation, st.just("elu"), st.floats(0.5, 1.5)),
)


@st.composite
def configs(draw: st.DrawFn, *, max_layers: int = 3, directions: Any = None,
            readout: bool | None = None) -> rnn_ref.RNNConfig:
    direction = draw(st.sampled_from(directions or ["forward", "reverse", "bidirectional"]))
    R = 2 if direction == "bidirectional" else 1
    L = draw(st.integers(1, max_layers))
    hidden = draw(st.one_of(st.integers(1, 6), st.lists(st.integers(1, 6), min_size=L,
                                                          max_size=L)))
    acts = draw(st.lists(st.lists(ACTIVATION_STRATEGY, min_size=R, max_size=R),
                         min_size=L, max_size=L))
    clip = draw(st.one_of(st.none(), st.floats(0.3, 3.0)))
    has_readout = draw(st.booleans()) if readout is None else readout
    merge = "concat"
    if R == 2:
        merge = draw(st.sampled_from(["concat", "sum", "mul", "ave"]
                                     + ([] if has_readout else [None])))
        if merge is None:
            merge = ["concat"] * (L - 1) + [None]
    return rnn_ref.RNNConfig(
        input_size=draw(st.integers(1, 5)),
        hidden_size=hidden,
        num_layers=L,
        direction=direction,
        activation=acts,
        clip=clip,
        bias=draw(st.booleans()),
        output_size=draw(st.integers(1, 4)) if has_readout else None,
        output_activation=draw(st.sampled_from(["linear", "tanh", "sigmoid"]))
        if has_readout else None,
        merge_mode=merge,
        padded_output=draw(st.sampled_from(["zeros", "carry_output", "carry_state"])),
    )


HEAD_ACTIVATIONS = st.sampled_from(["linear", "tanh", "relu", "sigmoid", "softmax",
                                    "log_softmax"])


@st.composite
def networks(draw: st.DrawFn, *, max_layers: int = 3) -> rnn_ref.RNNConfig:
    """The whole network of docs/spec.md section 2.6: per-layer directions, an embedding, a
    selection, a head of dense layers (softmax included) and identity layers, each drawn or
    not."""
    L = draw(st.integers(1, max_layers))
    directions = draw(st.lists(st.sampled_from(["forward", "reverse", "bidirectional"]),
                               min_size=L, max_size=L))
    merges = [draw(st.sampled_from(["concat", "sum", "mul", "ave"]))
              if d == "bidirectional" else "concat" for d in directions]
    select = draw(st.sampled_from(
        ["sequence", "last_step", "final", "mean_valid", "mean_all", "max_all"]
        + (["final_forward", "final_backward"] if directions[-1] == "bidirectional" else [])))
    n_states = sum(2 if d == "bidirectional" else 1 for d in directions)
    returns = draw(st.one_of(st.just(["result"]), st.lists(st.sampled_from(
        ["result", "sequence", "h_n", "h_n[-1]"] + ([f"h_n[{n_states - 2}]"] if n_states > 1
                                                     else [])),
        min_size=1, max_size=3, unique=True)))
    head = draw(st.lists(st.tuples(st.integers(1, 4), HEAD_ACTIVATIONS, st.booleans()),
                         max_size=2))
    vocab = draw(st.one_of(st.none(), st.integers(2, 7)))
    n_ident = draw(st.integers(0, 2))
    identities = [("dropout", 0.25, draw(st.integers(0, L + len(head))))
                  for _ in range(n_ident)]
    return rnn_ref.RNNConfig(
        input_size=draw(st.integers(1, 5)),
        hidden_size=draw(st.lists(st.integers(1, 5), min_size=L, max_size=L)),
        direction=directions,
        activation=[[draw(ACTIVATION_STRATEGY) for _ in range(2 if d == "bidirectional" else 1)]
                    for d in directions],
        clip=draw(st.one_of(st.none(), st.floats(0.3, 3.0))),
        bias=draw(st.booleans()),
        merge_mode=merges,
        padded_output=draw(st.sampled_from(["zeros", "carry_output", "carry_state"])),
        output_order="processing" if directions[-1] == "reverse" and select != "mean_valid"
        and draw(st.booleans()) else "aligned",
        vocab_size=vocab,
        mask_zero=vocab is not None and draw(st.booleans()),
        padding_idx=draw(st.one_of(st.none(), st.integers(0, vocab - 1))) if vocab else None,
        select=select,
        head=head,
        identities=identities,
        returns=returns,
    )


@st.composite
def cases(draw: st.DrawFn, config_strategy: Any = None, *, padding: str | None = None
          ) -> dict[str, Any]:
    """A config, its params and inputs: x (N, T, D), h0 or None, lengths or mask or neither."""
    cfg = draw(config_strategy if config_strategy is not None else configs())
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    params = rnn_ref.init(cfg, seed=seed, dtype=np.float64)
    n = draw(st.integers(1, 4))
    t = draw(st.integers(1 if cfg.select in ("last_step", "max_all") else 0, 6))
    if cfg.vocab_size is None:
        x = rng.standard_normal((n, t, cfg.input_size))
    else:
        x = rng.integers(0, cfg.vocab_size, size=(n, t))
    h0 = None
    if draw(st.booleans()):
        h0 = [rng.standard_normal((n, m)) for m in cfg.state_sizes]
    kind = padding or draw(st.sampled_from(["none", "lengths", "mask"]))
    extra: dict[str, Any] = {}
    if kind == "lengths":
        extra["lengths"] = rng.integers(0, t + 1, size=n)
    elif kind == "mask":
        extra["mask"] = rng.random((n, t)) < 0.7
    return {"params": params, "x": x, "h0": h0, **extra}


def _parts(value: object) -> tuple:
    """``value``'s arrays as a tuple: none for ``None``, its items for a tuple, else itself."""
    if value is None:
        return ()
    return value if isinstance(value, tuple) else (value,)


def cotangents(rng: np.random.Generator, res: rnn_ref.ForwardResult) -> dict[str, Any]:
    """Seeded cotangents for every result of a forward pass: outputs, h_n, the head's y
    when there is one, and the selection when it is not the outputs themselves."""
    def like(a: object) -> object:
        if isinstance(a, tuple):
            return tuple(rng.standard_normal(b.shape) for b in a)
        return rng.standard_normal(np.shape(a))

    out = {"grad_outputs": like(res.outputs), "grad_h_n": like(res.h_n)}
    if res.y is not None:
        out["grad_y"] = like(res.y)
    if res.selected is not None and res.selected is not res.outputs:
        out["grad_selected"] = like(res.selected)
    return out


def loss_of(res: rnn_ref.ForwardResult, cot: dict[str, Any]) -> float:
    """The scalar loss whose gradient :func:`cotangents` gives: the sum of each result times
    its cotangent."""
    total = 0.0
    for field, key in (("outputs", "grad_outputs"), ("h_n", "grad_h_n"), ("y", "grad_y"),
                       ("selected", "grad_selected")):
        if key in cot:
            for a, b in zip(_parts(getattr(res, field)), _parts(cot[key]), strict=True):
                total += float(np.sum(np.asarray(a) * np.asarray(b)))
    return total
