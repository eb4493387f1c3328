"""LiteRT's record: a .tflite of the Keras model holds what Keras on TensorFlow does; of the
tf-keras model, what tf-keras does."""

from __future__ import annotations

from rnn_ref.activations import Activation
from rnn_ref.backends.keras.record import unsupported as keras_unsupported
from rnn_ref.backends.keras2.record import unsupported as tf_keras_unsupported
from rnn_ref.backends.records import (
    GATED,
    BackendSpec,
    FileFormat,
    Framework,
    Reason,
    network_unsupported,
)
from rnn_ref.config import RNNConfig

#: the network pieces both graphs hold: GRU and LSTM layers, and layers of different
#: directions (each Keras layer its own; Keras' rules refuse a reverse one below another)
HELD = frozenset({*GATED, "mixed_directions"})


def unsupported(config: RNNConfig, *, padded: bool = False) -> Reason:
    """``(feature, why)`` for the first part of ``config`` the ``.tflite`` graph of a Keras 3
    model cannot express, or ``None``: Keras' rules on its TensorFlow backend (clip,
    activations outside Keras' set, stacks of reverse layers, time-aligned reverse outputs;
    with ``padded``, the padded-step outputs that Keras on TensorFlow does not give). The
    pieces around the stack wait for its converter (:func:`network_unsupported`; GRU and LSTM
    layers as Keras 3 holds them, and layers of different directions: :data:`HELD`)."""
    reason = network_unsupported(config, holds=HELD)
    if reason is not None:
        return reason
    return keras_unsupported(config, backend="tensorflow", padded=padded)


def keras2_unsupported(config: RNNConfig, *, padded: bool = False) -> Reason:
    """As :func:`unsupported`, for the graph of the tf-keras model (``to_native(...,
    keras=2)``): tf-keras' rules (:func:`rnn_ref.backends.keras2.record.unsupported`:
    SimpleRNN, GRU and LSTM layers, Keras 2's activations, no peepholes, projection, coupled
    gates or clip)."""
    reason = network_unsupported(config, holds=HELD)
    if reason is not None:
        return reason
    return tf_keras_unsupported(config, backend="tensorflow", padded=padded)


def either_unsupported(config: RNNConfig) -> Reason:
    """What neither graph holds (Keras 3's reason): each file format narrows it to its own
    (:data:`FRAMEWORK`)."""
    reason = unsupported(config)
    return reason if reason is None or keras2_unsupported(config) is not None else None


def fused_lstm_layers(config: RNNConfig) -> list[int]:
    """The LSTM layers tf-keras hands the converter as one fused LSTM (``UNIDIRECTIONAL_
    SEQUENCE_LSTM``, one a direction) in a graph of ``x`` alone: tanh, sigmoid gates, a
    bias, no recurrent dropout, no mask (tf-keras 2.21.0 ``tf_keras/src/layers/rnn/lstm.py``
    ``_could_use_gpu_kernel``, the function the converter fuses; a mask, or the final ``c``
    as an output, gives a ``WHILE`` loop: measured, tests/test_litert_gated.py)."""
    if config.mask_value is not None or config.mask_zero:
        return []
    tanh, sigmoid = Activation("tanh"), Activation("sigmoid")
    dropped = {i.after for i in config.identities if i.kind == "recurrent_dropout"}
    return [li for li, c in enumerate(config.cells)
            if c.kind == "lstm" and config.bias and li not in dropped and all(
                config.activations_of(li, r)[:2] == (sigmoid, tanh)
                for r in range(config.num_directions_of(li)))]


def tflite_keras2_loading(config: RNNConfig) -> str | None:
    """What running a ``tflite-keras2`` file of ``config`` needs: the fused LSTM's state is a
    variable tensor that keeps the last invoke's final state
    (``litert/deviations/litert_keras2.json``)."""
    fused = fused_lstm_layers(config)
    if not fused:
        return None
    return (f"its LSTM layer{'s' if len(fused) > 1 else ''} {', '.join(map(str, fused))} "
            "became the fused UNIDIRECTIONAL_SEQUENCE_LSTM, which starts each invoke from the "
            "last one's final state: call the interpreter's reset_all_variables() before "
            "every invoke")


FRAMEWORK = Framework(
    name="litert", title="LiteRT", module="rnn_ref.backends.litert.convert",
    requires=("ai_edge_litert", "tensorflow", "keras"), distributions=("ai-edge-litert",),
    unsupported=either_unsupported,
    formats=(FileFormat("tflite", (".tflite",), "a TFLite flatbuffer of the Keras model "
                        "(batch 1, dynamic T; every recurrent layer a WHILE loop); written "
                        "and run, not read back as parameters", readable=False,
                        refuses=unsupported),
             FileFormat("tflite-keras2", (".tflite",), "a TFLite flatbuffer of the tf-keras "
                        "model (batch 1, dynamic T): an LSTM with sigmoid gates, tanh and a "
                        "bias becomes the fused UNIDIRECTIONAL_SEQUENCE_LSTM, other layers a "
                        "WHILE loop; written and run, not read back as parameters",
                        requires=("tf_keras",), readable=False, refuses=keras2_unsupported,
                        loading=tflite_keras2_loading)),
    files="rnn_ref.backends.litert.files",
    backends=(BackendSpec("litert", "rnn_ref.backends.litert.backend:LiteRtBackend",
                          ("ai_edge_litert", "tensorflow", "keras")),
              BackendSpec("litert[unrolled]",
                          "rnn_ref.backends.litert.backend:LiteRtUnrolledBackend",
                          ("ai_edge_litert", "tensorflow", "keras")),
              BackendSpec("litert[keras2]",
                          "rnn_ref.backends.litert.backend:LiteRtKeras2Backend",
                          ("ai_edge_litert", "tensorflow", "tf_keras"))),
)
