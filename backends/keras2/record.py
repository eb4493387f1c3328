"""Keras 2's (tf-keras) record: its activations and what a tf-keras model holds."""

from __future__ import annotations

from rnn_ref.activations import Activation
from rnn_ref.backends.keras.record import KERAS_ACTIVATIONS, keras_masked_step_output
from rnn_ref.backends.records import (
    BackendSpec,
    FileFormat,
    Framework,
    Reason,
    first_activation,
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


def _keras2_gates(config: RNNConfig, allowed: list[Activation], why: str) -> Reason:
    """A GRU's or LSTM's gates' activation (``recurrent_activation``) outside ``allowed``."""
    for li, spec in enumerate(config.cells):
        if spec.kind == "elman":
            continue
        for r in range(config.num_directions_of(li)):
            f = config.activations_of(li, r)[0]
            if f not in allowed:
                return f"recurrent_activation {f} (layer {li}, direction {r})", why
    return None


def _keras2_cells(config: RNNConfig) -> Reason:
    """What tf-keras' ``GRU`` and ``LSTM`` cannot hold (tf-keras 2.21.0
    ``tf_keras/src/layers/rnn/gru.py``, ``lstm.py``): no peepholes (TF 2's
    ``tf.keras.experimental.PeepholeLSTMCell`` is not in tf-keras), no coupled input and
    forget gates, no projection, and one ``activation`` for the candidate and the cell state;
    both GRU forms (``reset_after``) are held."""
    for li, spec in enumerate(config.cells):
        if spec.kind != "lstm":
            continue
        where = f"LSTM layer {li}"
        if spec.peepholes:
            return (f"peepholes ({where})", "tf-keras' LSTMCell has none (TF 2's experimental "
                    "PeepholeLSTMCell is not in tf-keras 2.21)")
        if spec.input_forget:
            return (f"input_forget ({where})", "tf-keras' LSTMCell has its own forget gate "
                    "weights (no coupled input and forget gates)")
        if spec.proj_size is not None:
            return (f"proj_size={spec.proj_size} ({where})", "tf-keras' LSTMCell has no "
                    "projection")
        for r in range(config.num_directions_of(li)):
            _, g, h = config.activations_of(li, r)
            if h != g:
                return (f"cell_activation {h} != activation {g} ({where}, direction {r})",
                        "tf-keras' LSTM applies its one activation to the candidate and to "
                        "the cell state")
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
    SimpleRNN, GRU (either ``reset_after``) and LSTM layers without what tf-keras' cells lack
    (:func:`_keras2_cells`); no clip; every activation (a gated cell's ``recurrent_activation``
    too) of :data:`KERAS2_ACTIVATIONS`; TensorFlow's masked steps when ``padded``. Keras 2
    runs on TensorFlow only, so ``backend`` is ``"tensorflow"`` or ``None``."""
    if backend not in (None, "tensorflow"):
        raise ValueError(f"backend must be 'tensorflow' or None for Keras 2, got {backend!r}")
    reason = _keras2_pieces(config)
    if reason is not None:
        return reason
    if any(c is not None for c in config.clips):
        return "clip", "Keras' SimpleRNN, GRU and LSTM have no clip"
    allowed = list(KERAS2_ACTIVATIONS.values())
    why = f"Keras 2 has {', '.join(str(a) for a in allowed)}"
    reason = first_activation(config, lambda a: a in allowed, why) or _keras2_gates(
        config, allowed, why) or _keras2_cells(config)
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
                        frozenset({"activation", "merge_mode", "recurrent_activation"})),),
    files="rnn_ref.backends.keras2.files",
    backends=(BackendSpec("keras2[tensorflow]",
                          "rnn_ref.backends.keras2.backend:tensorflow_backend",
                          ("tf_keras", "tensorflow")),),
)
