"""Hypothesis strategies for networks of GRU and LSTM layers with every switch (spec 2.7), and
their inputs (non-square sizes, seeded weights; D, M, P, N and T drawn apart)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from strategies import ACTIVATION_STRATEGY

import rnn_ref

#: Activations without a kink near which a central difference would straddle two branches.
SMOOTH = st.one_of(
    st.sampled_from(["tanh", "sigmoid", "linear", "softplus", "softsign"]),
    st.builds(rnn_ref.Activation, st.just("scaled_tanh"), st.floats(0.5, 2), st.floats(0.5, 2)),
    st.builds(rnn_ref.Activation, st.just("affine"), st.floats(0.5, 1.5), st.floats(-0.5, 0.5)),
    st.just(rnn_ref.Activation("elu", 1.0)),
)

#: Every activation, hard_sigmoid with Keras 2's and Keras 3's parameters among them.
EVERY = st.one_of(
    ACTIVATION_STRATEGY,
    st.just(rnn_ref.Activation("hard_sigmoid", alpha=0.2, beta=0.5)),
    st.just(rnn_ref.Activation("hard_sigmoid", alpha=1 / 6, beta=0.5)),
)


@st.composite
def gated_configs(draw: st.DrawFn, *, acts: Any = SMOOTH, max_layers: int = 2,
                  clip: bool = True, head: bool | None = None) -> rnn_ref.RNNConfig:
    """A stack of 1 to ``max_layers`` layers, at least one a GRU or an LSTM (an Elman layer
    may sit among them), each with its own direction, sizes and switches (reset placement,
    peepholes, input_forget, a projection), activations per layer and direction (the gates',
    the candidate's, the cell state's) drawn from ``acts``; merge modes, a selection, a head
    of up to two dense layers, padded-output mode, output order, bias and clip drawn too."""
    L = draw(st.integers(1, max_layers))
    kinds = draw(st.lists(st.sampled_from(["gru", "lstm", "elman"]), min_size=L, max_size=L)
                 .filter(lambda ks: any(k != "elman" for k in ks)))
    directions = draw(st.lists(st.sampled_from(["forward", "reverse", "bidirectional"]),
                               min_size=L, max_size=L))
    counts = [2 if d == "bidirectional" else 1 for d in directions]

    def per_direction(li: int) -> list[Any]:
        return [draw(acts) for _ in range(counts[li])]

    def switch(kind: str, values: Any) -> Any:
        """One value per layer (``None`` where the cell lacks the switch); ``None`` when no
        layer has it."""
        if kind not in kinds:
            return None
        return [draw(values) if k == kind else None for k in kinds]

    has_head = draw(st.booleans()) if head is None else head
    select = draw(st.sampled_from(
        ["sequence", "last_step", "final", "mean_valid", "mean_all", "max_all"]
        + (["final_forward", "final_backward"] if counts[-1] == 2 else [])))
    merges = [draw(st.sampled_from(["concat", "sum", "mul", "ave"])) if c == 2 else "concat"
              for c in counts]
    if counts[-1] == 2 and not has_head and select in ("sequence", "final") and draw(
            st.integers(0, 3)) == 0:
        merges[-1] = None
    head_layers = draw(st.lists(st.tuples(st.integers(1, 3), st.sampled_from(
        ["linear", "tanh", "sigmoid", "softmax", "log_softmax"]), st.booleans()),
        min_size=1, max_size=2)) if has_head else []
    return rnn_ref.RNNConfig(
        input_size=draw(st.integers(1, 4)),
        hidden_size=draw(st.lists(st.integers(1, 5), min_size=L, max_size=L)),
        direction=directions,
        cell=kinds,
        activation=[per_direction(li) for li in range(L)],
        recurrent_activation=[per_direction(li) if k != "elman" else None
                              for li, k in enumerate(kinds)],
        cell_activation=([per_direction(li) if k == "lstm" else None
                          for li, k in enumerate(kinds)] if "lstm" in kinds else None),
        reset_after=switch("gru", st.booleans()),
        peepholes=switch("lstm", st.booleans()),
        input_forget=switch("lstm", st.booleans()),
        proj_size=switch("lstm", st.one_of(st.none(), st.integers(1, 4))),
        clip=draw(st.one_of(st.none(), st.floats(0.5, 3.0))) if clip else None,
        bias=draw(st.booleans()),
        merge_mode=merges,
        padded_output=draw(st.sampled_from(["zeros", "carry_output", "carry_state"])),
        output_order="processing" if directions[-1] == "reverse" and select != "mean_valid"
        and draw(st.booleans()) else "aligned",
        select=select,
        head=head_layers,
    )


@st.composite
def gated_cases(draw: st.DrawFn, config_strategy: Any = None) -> dict[str, Any]:
    """A config of :func:`gated_configs`, float64 params and inputs: ``x (N, T, D)``, ``h0``
    and ``c0`` (each given or ``None``), and ``lengths``, ``mask`` or neither."""
    cfg = draw(config_strategy if config_strategy is not None else gated_configs())
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    params = rnn_ref.init(cfg, seed=seed, dtype=np.float64)
    n = draw(st.integers(1, 3))
    t = draw(st.integers(1 if cfg.select in ("last_step", "max_all") else 0, 5))
    x = rng.standard_normal((n, t, cfg.input_size))
    h0 = [rng.standard_normal((n, m)) for m in cfg.state_sizes] if draw(st.booleans()) else None
    c0 = None
    if cfg.num_cell_states and draw(st.booleans()):
        c0 = [rng.standard_normal((n, m)) for m in cfg.cell_state_sizes]
    kind = draw(st.sampled_from(["none", "lengths", "mask"]))
    extra: dict[str, Any] = {}
    if kind == "lengths":
        extra["lengths"] = rng.integers(0, t + 1, size=n)
    elif kind == "mask":
        extra["mask"] = rng.random((n, t)) < 0.7
    return {"params": params, "x": x, "h0": h0, "c0": c0, **extra}
