"""tract's record: ONNX's rules and what tract computes differently."""

from __future__ import annotations

from rnn_ref.backends.onnx.record import unsupported as onnx_unsupported
from rnn_ref.backends.records import BackendSpec, Framework
from rnn_ref.config import RNNConfig


def unsupported(config: RNNConfig, *, padded: bool = True) -> tuple[str, str] | None:
    """``(feature, why)`` for the first part of ``config`` tract cannot run as the spec says
    (ONNX's rules; an activation other than tanh, computed as tanh; a clip, ignored), or
    ``None``. A reverse direction is not here: tract computes it forward, a recorded
    deviation."""
    reason = onnx_unsupported(config, padded=padded)
    if reason is not None:
        return reason
    if config.mask_zero:
        return ("Embedding(mask_zero=True)",
                "its graph derives sequence_lens from the ids, and tract refuses a "
                "sequence_lens that is not constant ('Non constant seq_len is not supported')")
    for li, layer in enumerate(config.activations):
        for r, act in enumerate(layer):
            if act.name != "tanh":
                return (f"activation {act} (layer {li}, direction {r})",
                        "tract computes every RNN activation as tanh")
    if any(c is not None for c in config.clips):
        return "clip", "tract ignores an RNN node's clip"
    return None


FRAMEWORK = Framework(
    name="tract", title="tract", module="rnn_ref.backends.tract.backend",
    requires=("onnx", "tract"), distributions=("tract",), unsupported=unsupported,
    backends=(BackendSpec("tract", "rnn_ref.backends.tract.backend:TractBackend",
                          ("onnx", "tract")),),
)
