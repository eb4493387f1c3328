"""flax's record: what SimpleCell lists and RNN modules hold."""

from __future__ import annotations

from rnn_ref.backends.records import Framework, first_activation, network_unsupported
from rnn_ref.config import RNNConfig

FLAX_KINDS = ("nnx", "linen")


FLAX_LAYOUTS = ("cells", "rnn")


#: the activations a flax SimpleCell module is built with here (linen params record none)
FLAX_NNX_ACTIVATIONS = ("tanh", "relu", "sigmoid", "softplus", "softsign")


def unsupported(config: RNNConfig, *, kind: str = "nnx", layout: str = "cells"
                     ) -> tuple[str, str] | None:
    """``(feature, why)`` for the first part of ``config`` that flax cannot hold.

    ``kind`` is ``"nnx"`` or ``"linen"``; ``layout`` is ``"cells"`` (lists of ``SimpleCell``
    s) or ``"rnn"`` (``RNN`` / ``Bidirectional`` modules in a ``Sequential``). In this order:
    the pieces around the stack (flax holds layers of mixed directions, nothing else); a clip on
    any layer; a readout; a merge mode other than ``"concat"`` (``Bidirectional``'s default
    concatenation is the one merge read back); ``output_order="processing"`` in ``"cells"``
    (a list of cells has no place for it; an ``RNN(reverse=True, keep_order=False)`` holds
    it); in modules (nnx, or linen ``"rnn"``), an activation other than tanh, relu, sigmoid,
    softplus, softsign (linen params record no activation, so every activation goes there).
    ``None`` when flax holds the whole network.
    """
    reason = network_unsupported(config, holds={"mixed_directions"})
    if reason is not None:
        return reason
    if kind not in FLAX_KINDS:
        raise ValueError(f"kind must be 'nnx' or 'linen', got {kind!r}")
    if layout not in FLAX_LAYOUTS:
        raise ValueError(f"layout must be 'cells' or 'rnn', got {layout!r}")
    if any(c is not None for c in config.clips):
        return "clip", "a SimpleCell has no clip"
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
    if kind == "nnx" or layout == "rnn":
        return first_activation(config, lambda a: a.name in FLAX_NNX_ACTIVATIONS,
                                 f"a flax SimpleCell module takes "
                                 f"{', '.join(FLAX_NNX_ACTIVATIONS)} here")
    return None


FRAMEWORK = Framework(
    name="flax", title="flax SimpleCell", module="rnn_ref.backends.flax.convert",
    requires=("flax", "jax"), distributions=("flax",), unsupported=unsupported,
    converters=("from_flax", "to_flax"), recognised_when="flax",
)
