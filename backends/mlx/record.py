"""MLX's record: what a list of mlx.nn.RNN layers holds."""

from __future__ import annotations

from rnn_ref.activations import Activation
from rnn_ref.backends.records import BackendSpec, Framework, network_unsupported
from rnn_ref.config import RNNConfig

#: the activations mlx.nn computes for an RNN layer (leaky_relu: alpha in [0, 1])
MLX_ACTIVATIONS = ("tanh", "relu", "sigmoid", "softplus", "softsign", "linear", "elu",
                   "leaky_relu")


def _mlx_can_apply(act: Activation) -> bool:
    if act.name == "leaky_relu":
        return act.alpha is not None and 0.0 <= act.alpha <= 1.0
    return act.name in MLX_ACTIVATIONS


def unsupported(config: RNNConfig) -> tuple[str, str] | None:
    """``(feature, why)`` for the first part of ``config`` a list of ``mlx.nn.RNN`` layers
    cannot hold, or ``None``.

    In this order: a direction other than forward (reverse, bidirectional: so also merge
    modes and ``output_order="processing"``); a clip; an activation outside
    :data:`MLX_ACTIVATIONS` (leaky_relu only with ``0 <= alpha <= 1``); a readout.
    Per-layer hidden sizes and activations, and ``bias=False``, are expressible (each layer
    is its own module). ``padded_output`` is not a property of the layers (they take no
    lengths) and is not checked; the backend refuses lengths and masks.
    """
    reason = network_unsupported(config)
    if reason is not None:
        return reason
    if config.direction != "forward":
        return (f"direction {config.direction!r}",
                "mlx.nn.RNN runs forward only (no reverse, no bidirectional layer)")
    if any(c is not None for c in config.clips):
        return "clip", "mlx.nn.RNN has no clip"
    for li, layer in enumerate(config.activations):
        act = layer[0]
        if not _mlx_can_apply(act):
            return (f"activation {act} (layer {li})",
                    f"mlx.nn has {', '.join(MLX_ACTIVATIONS)} here; leaky_relu with "
                    f"0 <= alpha <= 1 (mlx computes max(alpha z, z))")
    if config.output_size is not None:
        return "a readout", "mlx.nn.RNN has no output layer"
    return None


FRAMEWORK = Framework(
    name="mlx", title="mlx.nn.RNN", module="rnn_ref.backends.mlx.convert",
    requires=("mlx",), distributions=("mlx",), unsupported=unsupported,
    converters=("from_mlx", "to_mlx"), recognised_when="mlx",
    backends=(BackendSpec("mlx", "rnn_ref.backends.mlx.backend:MlxBackend", ("mlx",)),),
)
