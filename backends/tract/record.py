"""tract's record: ONNX's rules and what tract computes differently."""

from __future__ import annotations

from rnn_ref.backends.onnx.record import unsupported as onnx_unsupported
from rnn_ref.backends.records import BackendSpec, Framework
from rnn_ref.config import RNNConfig

#: the activations tract computes for each cell, whatever the node says (the operators'
#: defaults: ONNX Operators.md)
TRACT_ACTIVATIONS = {"elman": ("tanh",), "gru": ("sigmoid", "tanh"),
                     "lstm": ("sigmoid", "tanh", "tanh")}


def unsupported(config: RNNConfig, *, padded: bool = True) -> tuple[str, str] | None:
    """``(feature, why)`` for the first part of ``config`` tract cannot run as the spec says
    (ONNX's rules; ``mask_zero``, whose lengths are computed; an activation other than the
    operator's default, computed as the default: tanh for an RNN node, sigmoid and tanh for a
    GRU or LSTM; a clip, ignored), or ``None``. A reverse direction is not here: tract
    computes it forward, a recorded deviation. Nor is an LSTM's ``input_forget``: tract
    ignores it, but the forget rows rnn-ref writes compute ``1 - i`` for a sigmoid, the only
    recurrent activation tract computes."""
    reason = onnx_unsupported(config, padded=padded)
    if reason is not None:
        return reason
    if config.mask_zero:
        return ("Embedding(mask_zero=True)",
                "its graph derives sequence_lens from the ids, and tract refuses a "
                "sequence_lens that is not constant ('Non constant seq_len is not supported')")
    for li, cell in enumerate(config.cells):
        defaults = TRACT_ACTIVATIONS[cell.kind]
        for r in range(config.num_directions_of(li)):
            for act, default in zip(config.activations_of(li, r), defaults, strict=True):
                if act.name != default:
                    node = {"elman": "RNN", "gru": "GRU", "lstm": "LSTM"}[cell.kind]
                    return (f"activation {act} (layer {li}, direction {r})",
                            f"tract computes every {node} activation as the operator's "
                            f"default ({', '.join(defaults)})")
    if any(c is not None for c in config.clips):
        return "clip", "tract ignores an RNN, GRU or LSTM node's clip"
    return None


FRAMEWORK = Framework(
    name="tract", title="tract", module="rnn_ref.backends.tract.backend",
    requires=("onnx", "tract"), distributions=("tract",), unsupported=unsupported,
    backends=(BackendSpec("tract", "rnn_ref.backends.tract.backend:TractBackend",
                          ("onnx", "tract")),),
)
