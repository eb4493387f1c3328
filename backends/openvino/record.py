"""OpenVINO's record: ONNX's rules, the activations its CPU plugin computes and the LSTM
switches its ONNX frontend drops."""

from __future__ import annotations

from rnn_ref.backends.onnx.record import unsupported as onnx_unsupported
from rnn_ref.backends.records import BackendSpec, Framework
from rnn_ref.config import RNNConfig

#: the RNN activations OpenVINO's CPU plugin computes
OPENVINO_ACTIVATIONS = ("tanh", "relu", "sigmoid")


def unsupported(config: RNNConfig, *, padded: bool = True) -> tuple[str, str] | None:
    """``(feature, why)`` for the first part of ``config`` OpenVINO cannot run as the spec
    says, or ``None``: ONNX's rules; then per layer an activation other than tanh, relu and
    sigmoid (every activation of a GRU or LSTM direction, ``config.activations_of``),
    directions with different activations (computed with the first direction's), an LSTM's
    peepholes (dropped) and an LSTM's ``input_forget`` with a recurrent activation other than
    sigmoid (ignored: the forget rows rnn-ref writes compute ``1 - i`` only for a sigmoid)."""
    reason = onnx_unsupported(config, padded=padded)
    if reason is not None:
        return reason
    for li in range(config.num_layers):
        per_direction = [config.activations_of(li, r)
                         for r in range(config.num_directions_of(li))]
        for r, acts in enumerate(per_direction):
            for act in acts:
                if act.name not in OPENVINO_ACTIVATIONS:
                    return (f"activation {act} (layer {li}, direction {r})",
                            "OpenVINO's CPU plugin computes tanh, relu and sigmoid only "
                            "('Unknown activation function')")
        if len(set(per_direction)) > 1:
            shown = ", ".join("/".join(str(a) for a in acts) for acts in per_direction)
            return (f"different activations per direction (layer {li}: {shown})",
                    "OpenVINO's RNN, GRU and LSTM sequences apply the first direction's "
                    "activations to both")
        cell = config.cell_of(li)
        if cell.peepholes:
            return (f"an LSTM's peepholes (layer {li})",
                    "OpenVINO's ONNX frontend drops an LSTM node's P: its LSTMSequence has no "
                    "peephole input")
        if cell.input_forget and per_direction[0][0].name != "sigmoid":
            return (f"an LSTM's input_forget with recurrent_activation "
                    f"{per_direction[0][0]} (layer {li})",
                    "OpenVINO ignores input_forget and computes the forget gate from its "
                    "rows, which compute 1 - i only for a sigmoid")
    return None


FRAMEWORK = Framework(
    name="openvino", title="OpenVINO", module="rnn_ref.backends.openvino.backend",
    requires=("onnx", "openvino"), distributions=("openvino",),
    unsupported=unsupported,
    backends=(BackendSpec("openvino", "rnn_ref.backends.openvino.backend:OpenVinoBackend",
                          ("onnx", "openvino")),
              BackendSpec("openvino[f32]",
                          "rnn_ref.backends.openvino.backend:OpenVinoF32Backend",
                          ("onnx", "openvino"), precision="fp32")),
)
