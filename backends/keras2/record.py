"""Keras 2's (tf-keras) record: its activations and what a tf-keras model holds."""

from __future__ import annotations

from rnn_ref.activations import Activation
from rnn_ref.backends.keras.record import KERAS_ACTIVATIONS, keras_masked_step_output
from rnn_ref.backends.records import (
    GATED,
    NETWORK_PIECES,
    BackendSpec,
    FileFormat,
    Framework,
    Reason,
    first_activation,
    network_unsupported,
)
from rnn_ref.config import RNNConfig

#: Keras 2's activations by name: Keras 3's, except ``hard_sigmoid`` (0.2 x + 0.5)
KERAS2_ACTIVATIONS: dict[str, Activation] = {
    **KERAS_ACTIVATIONS, "hard_sigmoid": Activation("hard_sigmoid", alpha=0.2, beta=0.5)}


#: Keras 2 activation -> its name in Keras 2
KERAS2_NAMES = {v: k for k, v in KERAS2_ACTIVATIONS.items()}


def _keras2_pieces(config: RNNConfig) -> Reason:
    """What a Keras 2 model cannot hold of the pieces around its RNN layers."""
    from rnn_ref.network import Softmax

    gated = network_unsupported(config, holds=set(NETWORK_PIECES) - set(GATED))
    if gated is not None:
        return gated
    if config.padding_idx is not None:
        return (f"padding_idx={config.padding_idx}",
                "Keras' Embedding has no padding row (mask_zero masks id 0)")
    if config.select not in ("sequence", "final"):
        return (f"select={config.select!r}", "a Keras RNN layer returns every step or its "
                "final states (return_sequences); 'sequence' or 'final'")
    if config.returns != ("result",):
        return (f"several outputs (returns={list(config.returns)})",
                "rnn-ref's Keras 2 reader and writer hold one-output models")
    allowed = list(KERAS2_ACTIVATIONS.values())
    for j, dense in enumerate(config.head):
        g = dense.activation
        if (isinstance(g, Softmax) and g.name != "softmax") or (
                not isinstance(g, Softmax) and g not in allowed):
            return (f"head activation {g} (Dense {j})",
                    "a Keras 2 Dense takes softmax and Keras 2's activations")
    return None


def _keras2_directions(config: RNNConfig, padded: bool) -> Reason:
    """go_backwards below another layer, time-aligned reverse outputs, padded steps."""
    L = config.num_layers
    for li, d in enumerate(config.directions):
        if d == "reverse" and li < L - 1:
            return (f"a reverse layer (layer {li}) below another layer",
                    "go_backwards hands the next layer its outputs in processing order")
    last = config.directions[-1]
    if last == "reverse" and config.select == "sequence" and config.output_order != "processing":
        return ("time-aligned outputs of a reverse direction",
                "go_backwards returns them in processing order; use "
                "params.replace(output_order='processing')")
    mode = config.padded_output
    if not padded or mode == "zeros" or config.select != "sequence":
        return None
    if last == "bidirectional":
        return (f"padded_output {mode!r} in a Bidirectional layer",
                "Bidirectional forces zero_output_for_mask when returning sequences")
    native = keras_masked_step_output("tensorflow", zero_output_for_mask=False, unroll=False)
    if mode != native:
        return (f"padded_output {mode!r} on Keras 2 (TensorFlow)",
                f"its masked steps give {native!r} (or 'zeros')")
    return None


def unsupported(config: RNNConfig, *, backend: str | None = None, padded: bool = True
                       ) -> Reason:
    """What a tf-keras model cannot hold: an embedding without ``padding_idx``, Masking,
    per-layer directions (a ``go_backwards`` layer only last), ``select`` ``"sequence"`` or
    ``"final"``, a head of Dense layers with Keras 2 activations or softmax, identity layers;
    no clip; cell activations of :data:`KERAS2_ACTIVATIONS`; TensorFlow's masked steps when
    ``padded``. Keras 2 runs on TensorFlow only, so ``backend`` is ``"tensorflow"`` or
    ``None``."""
    if backend not in (None, "tensorflow"):
        raise ValueError(f"backend must be 'tensorflow' or None for Keras 2, got {backend!r}")
    reason = _keras2_pieces(config)
    if reason is not None:
        return reason
    if any(c is not None for c in config.clips):
        return "clip", "Keras' SimpleRNN has no clip"
    allowed = list(KERAS2_ACTIVATIONS.values())
    reason = first_activation(config, lambda a: a in allowed,
                               f"Keras 2 has {', '.join(str(a) for a in allowed)}")
    if reason is not None:
        return reason
    return _keras2_directions(config, padded or config.mask_zero or
                              config.mask_value is not None)


FRAMEWORK = Framework(
    name="keras2", title="Keras 2", module="rnn_ref.backends.keras2.convert",
    requires=("tf_keras", "tensorflow", "h5py"), distributions=("tf-keras",),
    unsupported=unsupported, converters=("from_keras2", "to_keras2"),
    recognised_when="tf_keras",
    formats=(FileFormat("keras2-h5", (".h5",), "Keras 2 (tf-keras) legacy HDF5, "
                        "model.save('x.h5') or save_weights; read by name with h5py",
                        frozenset({"activation", "merge_mode"})),),
    files="rnn_ref.backends.keras2.files",
    backends=(BackendSpec("keras2[tensorflow]",
                          "rnn_ref.backends.keras2.backend:tensorflow_backend",
                          ("tf_keras", "tensorflow")),),
)
