"""MLX's record: what a list of mlx.nn.RNN, GRU and LSTM layers holds."""

from __future__ import annotations

from rnn_ref.activations import Activation
from rnn_ref.backends.records import BackendSpec, Framework, network_unsupported
from rnn_ref.config import RNNConfig

#: the activations mlx.nn computes for an RNN layer (leaky_relu: alpha in [0, 1])
MLX_ACTIVATIONS = ("tanh", "relu", "sigmoid", "softplus", "softsign", "linear", "elu",
                   "leaky_relu")

#: the one set of activations mlx.nn.GRU and mlx.nn.LSTM compute: (gates, candidate[, cell])
MLX_GATED_ACTIVATIONS = {"gru": (Activation("sigmoid"), Activation("tanh")),
                         "lstm": (Activation("sigmoid"), Activation("tanh"), Activation("tanh"))}


def _mlx_can_apply(act: Activation) -> bool:
    if act.name == "leaky_relu":
        return act.alpha is not None and 0.0 <= act.alpha <= 1.0
    return act.name in MLX_ACTIVATIONS


def target(config: RNNConfig) -> str:
    """What an ``UnsupportedError`` of an MLX conversion of ``config`` names."""
    kinds = dict.fromkeys(c.kind for c in config.cells)
    return "mlx.nn." + "/".join({"elman": "RNN", "gru": "GRU", "lstm": "LSTM"}[k]
                                for k in kinds)


def _gated_unsupported(config: RNNConfig, li: int) -> tuple[str, str] | None:
    """What of GRU or LSTM layer ``li`` mlx.nn.GRU / mlx.nn.LSTM cannot hold."""
    spec = config.cell_of(li)
    if spec.kind == "gru" and not spec.reset_after:
        return (f"reset_after=False (layer {li})",
                "mlx.nn.GRU applies the reset gate after the recurrent product, "
                "r * (h Wh_n + bhn): reset_after=True only")
    for switch, on in (("peepholes", spec.peepholes), ("input_forget", spec.input_forget),
                       (f"proj_size={spec.proj_size}", spec.proj_size is not None)):
        if on:
            return (f"{switch} (layer {li})",
                    "mlx.nn.LSTM has gates i, f, g, o with kernels and one bias, no "
                    "peepholes, coupled forget gate or projection")
    acts = config.activations_of(li, 0)
    fixed = MLX_GATED_ACTIVATIONS[spec.kind]
    if acts != fixed:
        names = ("recurrent_activation", "activation", "cell_activation")
        k = next(i for i, (a, b) in enumerate(zip(acts, fixed, strict=True)) if a != b)
        return (f"{names[k]} {acts[k]} (layer {li})",
                f"mlx.nn.{spec.kind.upper()} computes sigmoid gates and tanh "
                f"{'candidate' if spec.kind == 'gru' else 'candidate and cell state'} only")
    return None


def unsupported(config: RNNConfig) -> tuple[str, str] | None:
    """``(feature, why)`` for the first part of ``config`` a list of ``mlx.nn.RNN``,
    ``mlx.nn.GRU`` and ``mlx.nn.LSTM`` layers cannot hold, or ``None``.

    In this order: a direction other than forward (reverse, bidirectional: so also merge
    modes and ``output_order="processing"``); a clip; per layer, an Elman activation outside
    :data:`MLX_ACTIVATIONS` (leaky_relu only with ``0 <= alpha <= 1``), a reset-before GRU,
    an LSTM's peepholes, ``input_forget`` or projection, a gated layer's activations other
    than sigmoid gates and tanh (GRU and LSTM compute those only); a readout.
    Per-layer hidden sizes, cells and activations, and ``bias=False``, are expressible (each
    layer is its own module). ``padded_output`` is not a property of the layers (they take no
    lengths) and is not checked; the backend refuses lengths and masks.
    """
    reason = network_unsupported(config, holds={"gru", "lstm"})
    if reason is not None:
        return reason
    if config.direction != "forward":
        return (f"direction {config.direction!r}",
                f"{target(config)} runs forward only (no reverse, no bidirectional layer)")
    if any(c is not None for c in config.clips):
        return "clip", f"{target(config)} has no clip"
    for li, cell in enumerate(config.cells):
        if cell.kind != "elman":
            reason = _gated_unsupported(config, li)
            if reason is not None:
                return reason
            continue
        act = config.activations[li][0]
        if not _mlx_can_apply(act):
            return (f"activation {act} (layer {li})",
                    f"mlx.nn has {', '.join(MLX_ACTIVATIONS)} here; leaky_relu with "
                    f"0 <= alpha <= 1 (mlx computes max(alpha z, z))")
    if config.output_size is not None:
        return "a readout", f"{target(config)} has no output layer"
    return None


FRAMEWORK = Framework(
    name="mlx", title="mlx.nn.RNN", module="rnn_ref.backends.mlx.convert",
    requires=("mlx",), distributions=("mlx",), unsupported=unsupported,
    converters=("from_mlx", "to_mlx"), recognised_when="mlx",
    backends=(BackendSpec("mlx", "rnn_ref.backends.mlx.backend:MlxBackend", ("mlx",)),),
)
