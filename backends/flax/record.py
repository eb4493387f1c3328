"""flax's record: what SimpleCell, GRUCell and LSTMCell lists and RNN modules hold."""

from __future__ import annotations

from rnn_ref.backends.records import Framework, network_unsupported
from rnn_ref.config import RNNConfig

FLAX_KINDS = ("nnx", "linen")


FLAX_LAYOUTS = ("cells", "rnn")

#: the LSTM cell classes ``to_flax(..., lstm=)`` writes (the same function, the same linen
#: params; nnx packs OptimizedLSTMCell's gates into one Dense each side)
FLAX_LSTM_CELLS = ("LSTMCell", "OptimizedLSTMCell")


#: the activations a flax cell module is built with here (linen params record none): the
#: SimpleCell's ``activation_fn``, the gated cells' ``gate_fn`` and ``activation_fn``
FLAX_NNX_ACTIVATIONS = ("tanh", "relu", "sigmoid", "softplus", "softsign")


def target(config: RNNConfig) -> str:
    """What an ``UnsupportedError`` of a flax conversion of ``config`` names."""
    if config.is_elman:
        return "flax SimpleCell"
    return "flax " + "/".join(dict.fromkeys(
        {"elman": "SimpleCell", "gru": "GRUCell", "lstm": "LSTMCell"}[c.kind]
        for c in config.cells))


def _gated_unsupported(config: RNNConfig) -> tuple[str, str] | None:
    """The first switch of a GRU or LSTM layer that flax's cells have no place for."""
    for li, spec in enumerate(config.cells):
        if spec.kind == "gru" and not spec.reset_after:
            return (f"reset_after=False (layer {li})",
                    "flax's GRUCell applies the reset gate after the recurrent product, "
                    "n = g(x W_in + b_in + r * (h W_hn + b_hn)): reset_after=True only")
        if spec.kind != "lstm":
            continue
        for switch, on in (("peepholes", spec.peepholes), ("input_forget", spec.input_forget),
                           (f"proj_size={spec.proj_size}", spec.proj_size is not None)):
            if on:
                return (f"{switch} (layer {li})",
                        "flax's LSTMCell and OptimizedLSTMCell have gates i, f, g, o with "
                        "kernels and one bias each, no peepholes, coupled forget gate or "
                        "projection")
        for r in range(config.num_directions_of(li)):
            _, g, h = config.activations_of(li, r)
            if h != g:
                return (f"cell_activation {h} (layer {li}, direction {r})",
                        f"flax's LSTMCell applies its one activation_fn to the candidate and "
                        f"to the cell state: the cell activation must be the activation ({g})")
    return None


def _module_activations(config: RNNConfig) -> tuple[str, str] | None:
    """The first activation (a gated cell's gate activation included) a flax cell module has
    no function for here."""
    for li in range(config.num_layers):
        for r in range(config.num_directions_of(li)):
            acts = config.activations_of(li, r)
            named = ([("activation", acts[0])] if len(acts) == 1
                     else [("gate activation", acts[0]), ("activation", acts[1])])
            for what, act in named:
                if act.name not in FLAX_NNX_ACTIVATIONS:
                    return (f"{what} {act} (layer {li}, direction {r})",
                            f"a flax cell module takes {', '.join(FLAX_NNX_ACTIVATIONS)} here")
    return None


def unsupported(config: RNNConfig, *, kind: str = "nnx", layout: str = "cells"
                     ) -> tuple[str, str] | None:
    """``(feature, why)`` for the first part of ``config`` that flax cannot hold.

    ``kind`` is ``"nnx"`` or ``"linen"``; ``layout`` is ``"cells"`` (lists of cells) or
    ``"rnn"`` (``RNN`` / ``Bidirectional`` modules in a ``Sequential``). In this order:
    the pieces around the stack (flax holds layers of mixed directions and of mixed cells,
    nothing else); a clip on any layer; a readout; a merge mode other than ``"concat"``
    (``Bidirectional``'s default concatenation is the one merge read back);
    ``output_order="processing"`` in ``"cells"`` (a list of cells has no place for it; an
    ``RNN(reverse=True, keep_order=False)`` holds it); a GRU with ``reset_after=False``; an
    LSTM with peepholes, ``input_forget`` or a projection, or whose cell activation is not its
    activation (flax applies ``activation_fn`` to both); in modules (nnx, or linen
    ``"rnn"``), an activation, gate activation included, other than tanh, relu, sigmoid,
    softplus, softsign (linen params record no activation, so every activation goes there).
    ``None`` when flax holds the whole network.

    Weights are not part of the config: an ``nnx.GRUCell`` has no ``b_hn`` (flax #5594), so
    ``to_flax(kind="nnx")`` also refuses a GRU whose ``b_h["n"]`` is not zero.
    """
    reason = network_unsupported(config, holds={"mixed_directions", "gru", "lstm"})
    if reason is not None:
        return reason
    if kind not in FLAX_KINDS:
        raise ValueError(f"kind must be 'nnx' or 'linen', got {kind!r}")
    if layout not in FLAX_LAYOUTS:
        raise ValueError(f"layout must be 'cells' or 'rnn', got {layout!r}")
    if any(c is not None for c in config.clips):
        return "clip", "a flax cell has no clip"
    if config.output_size is not None:
        return "a readout", "a cell has no output layer"
    for li, mm in enumerate(config.merge_modes):
        if config.num_directions_of(li) == 2 and mm != "concat":
            return (f"merge_mode {mm!r} (layer {li})",
                    "flax's Bidirectional concatenates by default and a merge_fn of one's "
                    "own cannot be read back; it reads back as concat")
    if config.output_order != "aligned" and layout == "cells":
        return (f"output_order {config.output_order!r}",
                "a list of cells records no output order; it reads back as time-aligned "
                "(layout='rnn' writes RNN(reverse=True, keep_order=False))")
    reason = _gated_unsupported(config)
    if reason is not None:
        return reason
    if kind == "nnx" or layout == "rnn":
        return _module_activations(config)
    return None


FRAMEWORK = Framework(
    name="flax", title="flax SimpleCell", module="rnn_ref.backends.flax.convert",
    requires=("flax", "jax"), distributions=("flax",), unsupported=unsupported,
    converters=("from_flax", "to_flax"), recognised_when="flax",
)
