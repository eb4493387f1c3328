"""LiteRT's record: a .tflite of the Keras model holds what Keras on TensorFlow does."""

from __future__ import annotations

from rnn_ref.backends.keras.record import unsupported as keras_unsupported
from rnn_ref.backends.records import BackendSpec, FileFormat, Framework, Reason, network_unsupported
from rnn_ref.config import RNNConfig


def unsupported(config: RNNConfig, *, padded: bool = False) -> Reason:
    """``(feature, why)`` for the first part of ``config`` the ``.tflite`` graph of a Keras 3
    model cannot express, or ``None``: Keras' rules on its TensorFlow backend (clip,
    activations outside Keras' set, stacks of reverse layers, time-aligned reverse outputs;
    with ``padded``, the padded-step outputs that Keras on TensorFlow does not give). The
    pieces around the stack wait for its converter (:func:`network_unsupported`)."""
    reason = network_unsupported(config)
    if reason is not None:
        return reason
    return keras_unsupported(config, backend="tensorflow", padded=padded)


FRAMEWORK = Framework(
    name="litert", title="LiteRT", module="rnn_ref.backends.litert.convert",
    requires=("ai_edge_litert", "tensorflow", "keras"), distributions=("ai-edge-litert",),
    unsupported=unsupported,
    formats=(FileFormat("tflite", (".tflite",), "a TFLite flatbuffer of the Keras model "
                        "(batch 1, dynamic T); written and run, not read back as "
                        "parameters", readable=False),),
    files="rnn_ref.backends.litert.files",
    backends=(BackendSpec("litert", "rnn_ref.backends.litert.backend:LiteRtBackend",
                          ("ai_edge_litert", "tensorflow", "keras")),
              BackendSpec("litert[unrolled]",
                          "rnn_ref.backends.litert.backend:LiteRtUnrolledBackend",
                          ("ai_edge_litert", "tensorflow", "keras"))),
)
