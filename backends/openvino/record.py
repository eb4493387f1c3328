"""OpenVINO's record: ONNX's rules and the activations its CPU plugin computes."""

from __future__ import annotations

from rnn_ref.backends.onnx.record import unsupported as onnx_unsupported
from rnn_ref.backends.records import BackendSpec, Framework
from rnn_ref.config import RNNConfig

#: the RNN activations OpenVINO's CPU plugin computes
OPENVINO_ACTIVATIONS = ("tanh", "relu", "sigmoid")


def unsupported(config: RNNConfig, *, padded: bool = True) -> tuple[str, str] | None:
    """``(feature, why)`` for the first part of ``config`` OpenVINO cannot run as the spec
    says, or ``None``: ONNX's rules, then activations other than tanh, relu and sigmoid, then
    different activations for the two directions of a layer (computed with the first)."""
    reason = onnx_unsupported(config, padded=padded)
    if reason is not None:
        return reason
    for li, layer in enumerate(config.activations):
        for r, act in enumerate(layer):
            if act.name not in OPENVINO_ACTIVATIONS:
                return (f"activation {act} (layer {li}, direction {r})",
                        "OpenVINO's CPU plugin computes tanh, relu and sigmoid only "
                        "('Unknown activation function')")
        if len(set(layer)) > 1:
            return (f"different activations per direction (layer {li}: "
                    f"{', '.join(str(a) for a in layer)})",
                    "OpenVINO's RNNSequence applies the first direction's activation to both")
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
