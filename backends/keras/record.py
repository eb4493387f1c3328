"""Keras 3's record: its activations, what a Keras model holds, what a ``.weights.h5``
records, which Keras wrote an ``.h5``."""

from __future__ import annotations

import os
from typing import Any

from rnn_ref.activations import Activation
from rnn_ref.backends.records import (
    NETWORK_PIECES,
    BackendSpec,
    FileFormat,
    Framework,
    Reason,
    first_activation,
    network_unsupported,
)
from rnn_ref.config import RNNConfig
from rnn_ref.network import POOLINGS

KERAS_ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh"), "relu": Activation("relu"), "sigmoid": Activation("sigmoid"),
    "linear": Activation("linear"), "softsign": Activation("softsign"),
    "softplus": Activation("softplus"),
    "hard_sigmoid": Activation("hard_sigmoid", alpha=1 / 6, beta=0.5),
    "elu": Activation("elu", alpha=1.0), "leaky_relu": Activation("leaky_relu", alpha=0.2),
}
"""Keras 3's activations rnn-ref writes, one name per function (``keras/src/activations``)."""

#: Keras 3 activations that are one of rnn-ref's under another name, read only (the writers
#: and the conformance suite use :data:`KERAS_ACTIVATIONS`' names): ``celu`` with its default
#: ``alpha=1.0`` is ``elu`` (``max(x, 0) + alpha * expm1(min(x, 0) / alpha)``);
#: ``sparse_sigmoid`` is ``0.5 * (x + 1)`` clipped to [0, 1]
#: (``keras/src/backend/*/nn.py``). The others Keras has (``relu6``, ``selu``, ``gelu``,
#: ``silu``, ``hard_tanh``, ``mish``, ``exponential``, ...) are none of rnn-ref's.
KERAS_READ_ALIASES: dict[str, Activation] = {
    "celu": Activation("elu", alpha=1.0),
    "sparse_sigmoid": Activation("hard_sigmoid", alpha=0.5, beta=0.5),
}
#: rnn-ref's activations that Keras 3 has under no name, written into a Keras 3 model as a
#: function rnn-ref registers in Keras' serialization registry (the config holds the
#: registered name, never code; :mod:`rnn_ref.backends.keras2.keras3`): Keras 2's
#: ``hard_sigmoid``, ``0.2 x + 0.5``. A file of one loads where that module is imported
#: (:func:`keras_loading`).
KERAS_REGISTERED: dict[str, Activation] = {
    "rnn_ref>keras2_hard_sigmoid": Activation("hard_sigmoid", alpha=0.2, beta=0.5)}
#: every Keras 3 activation name rnn-ref reads (models, layers, hints)
KERAS_READ_ACTIVATIONS: dict[str, Activation] = {**KERAS_ACTIVATIONS, **KERAS_READ_ALIASES,
                                                 **KERAS_REGISTERED}


def _keras_name(act: Any) -> str:
    """The Keras name of a cell or Dense activation (``act`` itself if Keras has none)."""
    return next((k for k, v in {**KERAS_ACTIVATIONS, **KERAS_REGISTERED}.items() if v == act),
                str(act))


def keras_loading(config: RNNConfig) -> str | None:
    """What loading a Keras 3 file of ``config`` needs besides Keras: the module registering
    the rnn-ref activations it holds (:data:`KERAS_REGISTERED`), or ``None``."""
    acts = {a for li in range(config.num_layers) for r in range(config.num_directions_of(li))
            for a in config.activations_of(li, r)} | {d.activation for d in config.head}
    names = [k for k, v in KERAS_REGISTERED.items() if v in acts]
    if not names:
        return None
    return (f"holds {', '.join(repr(n) for n in names)} (Keras 2's hard_sigmoid, "
            f"0.2 x + 0.5; Keras 3's is x / 6 + 0.5): import rnn_ref.backends.keras2.keras3 "
            f"before keras.saving.load_model")


def keras_weights_unrecorded(config: RNNConfig) -> dict[str, str]:
    """What a Keras 3 ``.weights.h5`` of ``config`` does not record (it holds arrays by
    position): each layer's activation (one name, or one per layer comma-separated; a GRU's
    or LSTM's candidate activation, and its gates' as ``recurrent_activation``, one per gated
    layer), the Dense head's activations, a reverse direction, a Bidirectional merge other
    than concat (concatenation shows in the next layer's width)."""
    names = [_keras_name(layer[0]) for layer in config.activations]
    out = {"activation": names[0] if len(set(names)) == 1 else ",".join(names)}
    gates = [_keras_name(config.activations_of(li, 0)[0]) for li in range(config.num_layers)
             if config.cell_of(li).kind != "elman"]
    if gates:
        out["recurrent_activation"] = gates[0] if len(set(gates)) == 1 else ",".join(gates)
    if config.directions[-1] == "reverse":
        out["direction"] = "reverse"
    merge = config.merge_modes[-1]
    if config.directions[-1] == "bidirectional" and merge not in (None, "concat"):
        out["merge_mode"] = merge
    if config.head:
        out["head_activation"] = ",".join(_keras_name(d.activation) for d in config.head)
    if config.select != "sequence":
        out["select"] = config.select
    return out


def keras_weights_refuses(config: RNNConfig) -> Reason:
    """What a Keras 3 ``.weights.h5`` cannot hold even where a Keras model can: it holds the
    arrays of SimpleRNN, GRU or LSTM layers or Bidirectional ones (all of one class, one
    direction and one merge mode) and of one Dense readout, so no embedding, Masking, mixed
    directions or cells (Keras numbers each class apart: the order of a mixed stack is lost),
    GRU without a bias (its ``reset_after`` shows only in the bias' shape), deeper or softmax
    head, and no selection but every step or the final state; reading it back would be
    another network."""
    from rnn_ref.network import Softmax

    kinds = [c.kind for c in config.cells]
    pieces = (
        (len(set(kinds)) > 1, f"layers of different cells {kinds}"),
        ("gru" in kinds and not config.bias, "a GRU without a bias (its reset_after shows "
         "only in its bias' shape)"),
        (config.vocab_size is not None, "an embedding"),
        (config.mask_value is not None, f"Masking(mask_value={config.mask_value})"),
        (len(set(config.directions)) > 1,
         f"layers of different directions {list(config.directions)}"),
        (len(set(config.merge_modes)) > 1, f"merge modes per layer {list(config.merge_modes)}"),
        (any(len({config.activations_of(li, r) for r in range(config.num_directions_of(li))})
             > 1 for li in range(config.num_layers)),
         "different activations per direction"),
        (len(config.head) > 1, f"a head of {len(config.head)} Dense layers"),
        (any(isinstance(d.activation, Softmax) for d in config.head), "a softmax head"),
        (config.select not in ("sequence", "final"), f"select={config.select!r}"),
        (config.returns != ("result",), f"several outputs (returns={list(config.returns)})"),
    )
    for present, what in pieces:
        if present:
            return what, ("a .weights.h5 file holds the arrays of SimpleRNN, GRU or LSTM "
                          "layers (or Bidirectional ones) of one class and one Dense only: "
                          "save the whole model (.keras)")
    return None


def keras_masked_step_output(backend: str, *, zero_output_for_mask: bool, unroll: bool,
                             fused: bool = False) -> str:
    """The padded-output variant of a Keras RNN layer on Keras ``backend``: the generic
    loop's (``keras/src/backend/*/rnn.py``; GRU and LSTM take it too on every backend with a
    mask, measured with Keras 3.15.1 on CPU), or zeros with ``zero_output_for_mask`` and for
    a layer run through TensorFlow's fused cuDNN kernel (``fused``: a GPU, tanh and sigmoid,
    a bias, no unroll or recurrent dropout; ``_cudnn_gru``/``_cudnn_lstm`` in
    ``keras/src/backend/tensorflow/rnn.py``: "the cudnn kernel will fill zeros for the
    output"; JAX's and torch's fused kernels refuse masks)."""
    if zero_output_for_mask or fused:
        return "zeros"
    if backend in ("jax", "numpy") and not unroll:
        return "carry_state"
    return "carry_output"


#: Why a Keras model cannot say a selection (:func:`_keras_select`).
_KERAS_SELECT_WHY = {
    "last_step": "the last step is the final state (return_sequences=False) only for a forward "
                 "last layer on inputs that are never padded (no lengths, mask, mask_zero or "
                 "Masking)",
    "mean_valid": "GlobalAveragePooling1D weighs a go_backwards layer's outputs, in processing "
                  "order, by the mask in time order",
    "mean_all": "GlobalAveragePooling1D takes the mean over the valid steps; the mean over all "
                "steps is written only for inputs that are never padded",
}


def _keras_select(config: RNNConfig, padded: bool) -> Reason:
    """The selections a Keras model says: every step (``return_sequences=True``), the final
    output (``False``), ``max_all`` (``GlobalMaxPooling1D``, which ignores the mask),
    ``mean_valid`` (``GlobalAveragePooling1D``; not over a padded go_backwards layer), and,
    on inputs never padded, ``mean_all`` (the same mean) and a forward layer's ``last_step``
    (its final state)."""
    sel, last = config.select, config.directions[-1]
    if sel in ("sequence", "final", "max_all") or (
            sel == "last_step" and not padded and last == "forward") or (
            sel == "mean_valid" and not (padded and last == "reverse")) or (
            sel == "mean_all" and not padded):
        return None
    return f"select={sel!r}", _KERAS_SELECT_WHY.get(
        sel, "a Keras model returns every step (return_sequences=True), the last layer's "
        "final output (return_sequences=False) or a pooling of its steps "
        "(GlobalAveragePooling1D, GlobalMaxPooling1D)")


def _keras_returns(config: RNNConfig) -> Reason:
    """Several outputs: final states ``h_n[k]`` (``return_state=True``), the result, and the
    last layer's sequence where Keras computes it (returning sequences, in its order)."""
    for name in config.returns:
        if name in ("h_n", "c_n"):
            return (f"returns {name!r}", "Keras returns each final state as a tensor of its "
                    f"own: name them {name}[k]")
        if name == "sequence" and (
                config.select not in ("sequence", *POOLINGS) or (
                config.directions[-1] == "reverse" and config.output_order == "aligned")):
            return (f"returns 'sequence' with select={config.select!r}",
                    "the Keras layer returns its sequence only with return_sequences=True, "
                    "and a go_backwards layer's in processing order")
    if config.returns != ("result",) and config.merge_modes[-1] is None:
        return "several outputs with merge_mode None", "Keras' Bidirectional returns the pair"
    return None


def _keras_layout(config: RNNConfig, padded: bool) -> Reason:
    """What a chain of Keras layers cannot say: selections (:func:`_keras_select`), several
    outputs (:func:`_keras_returns`), a reverse layer below another, a reverse layer's
    time-aligned outputs."""
    reason = _keras_select(config, padded) or _keras_returns(config)
    if reason is not None:
        return reason
    if "reverse" in config.directions[:-1]:
        return ("a reverse layer below another layer",
                "go_backwards hands the next layer its outputs in processing order")
    if config.directions[-1] == "reverse" and config.output_order != "processing" \
            and config.select == "sequence":
        return ("time-aligned outputs of a reverse direction",
                "go_backwards returns them in processing order; use "
                "params.replace(output_order='processing')")
    return None




def _gated_unsupported(config: RNNConfig) -> Reason:
    """What a Keras 3 ``GRU`` or ``LSTM`` cannot hold (``keras/src/layers/rnn/gru.py``,
    ``lstm.py``, 3.15.1): peepholes, ``input_forget``, a projection, a cell-state activation
    other than the candidate's (Keras applies ``activation`` to both), gate or candidate
    activations outside Keras 3's and rnn-ref's registered ones (:data:`KERAS_REGISTERED`:
    Keras 2's hard_sigmoid). Both GRU forms (``reset_after``) and their biases are held
    exactly."""
    keras_acts = [*KERAS_ACTIVATIONS.values(), *KERAS_REGISTERED.values()]
    for li, cell in enumerate(config.cells):
        where = f"layer {li}"
        if cell.kind == "elman":
            continue
        if cell.peepholes:
            return (f"peepholes ({where})", "Keras 3's LSTM has no peephole weights "
                    "(tf.keras 2's PeepholeLSTMCell is not in Keras 3)")
        if cell.input_forget:
            return (f"input_forget ({where})", "Keras' LSTM computes its forget gate from "
                    "weights of its own, never as 1 - i")
        if cell.proj_size is not None:
            return (f"proj_size={cell.proj_size} ({where})",
                    "Keras' LSTM has no projection of its state (torch's proj_size)")
        for r in range(config.num_directions_of(li)):
            acts = config.activations_of(li, r)
            roles = ("recurrent_activation", "activation", "cell_activation")
            if cell.kind == "lstm" and acts[2] != acts[1]:
                return (f"cell_activation {acts[2]} with activation {acts[1]} ({where}, "
                        f"direction {r})", "Keras' LSTM applies its one activation to the "
                        "candidate and to the cell state")
            for role, act in zip(roles, acts, strict=False):
                if act not in keras_acts:
                    return (f"{role} {act} ({where}, direction {r})",
                            f"Keras has {', '.join(str(a) for a in keras_acts)}")
    return None


def unsupported(config: RNNConfig, *, backend: str | None = None, padded: bool = True
                      ) -> Reason:
    """What a Keras model (``Embedding``/``Masking``, ``SimpleRNN``/``GRU``/``LSTM`` layers
    or a ``Bidirectional`` of them, dropout and noise layers, a pooling, a ``Dense`` head)
    cannot express, on Keras ``backend`` when given (the padded-step variant depends on it):
    a clip, the gated switches Keras lacks (:func:`_gated_unsupported`), activations outside
    Keras', the layouts of :func:`_keras_layout`. A network with ``mask_zero`` or
    ``mask_value`` pads by itself."""
    from rnn_ref.network import Softmax

    keras_acts = [*KERAS_ACTIVATIONS.values(), *KERAS_REGISTERED.values()]
    for li, clip in enumerate(config.clips):
        if clip is not None:
            return (f"clip={clip} (layer {li})",
                    "Keras' SimpleRNN, GRU and LSTM have no clip")
    reason = _gated_unsupported(config) or first_activation(
        config, lambda a: a in keras_acts, f"Keras has {', '.join(str(a) for a in keras_acts)}")
    if reason is not None:
        return reason
    for j, dense in enumerate(config.head):
        if not isinstance(dense.activation, Softmax) and dense.activation not in keras_acts:
            return f"head layer {j} activation {dense.activation}", "Dense takes Keras activations"
    reason = _keras_layout(config, padded or config.mask_zero or config.mask_value is not None) \
        or network_unsupported(config, holds=set(NETWORK_PIECES))
    if reason is not None:
        return reason
    mode = config.padded_output
    if not (padded or config.mask_zero or config.mask_value is not None) or mode == "zeros":
        return None
    if config.directions[-1] == "bidirectional":
        return (f"padded_output {mode!r} in a Bidirectional layer",
                "Bidirectional forces zero_output_for_mask when returning sequences")
    if backend is not None:
        native = keras_masked_step_output(backend, zero_output_for_mask=False, unroll=False)
        if mode != native:
            return (f"padded_output {mode!r} on Keras' {backend} backend",
                    f"its masked steps give {native!r} (or 'zeros')")
    return None


def sniff_h5(path: str | os.PathLike[str]) -> str | None:
    """Which Keras wrote a legacy ``.h5`` file: ``"keras2-h5"`` (Keras 2 / tf-keras / tf.keras
    of TF < 2.16), ``"keras-h5"`` (Keras 3), or ``None`` (not an HDF5 Keras file, or Keras 1).

    Reads only HDF5 attributes with h5py: ``keras_version`` (at the root for a whole model or a
    weights file, or on ``model_weights``), and when that is absent, whether any layer config
    records ``time_major`` (Keras 2 does, Keras 3 does not)."""
    import h5py

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version")
            if version is None and "model_weights" in f:
                version = f["model_weights"].attrs.get("keras_version")
            config = f.attrs.get("model_config")
    except (OSError, ValueError):
        return None
    if version is not None:
        major = text(version).split(".", 1)[0]
        return {"2": "keras2-h5", "3": "keras-h5"}.get(major)
    if config is not None and '"time_major"' in text(config):
        return "keras2-h5"
    return None


_KERAS_BACKENDS = tuple(
    BackendSpec(f"keras[{b}]", f"rnn_ref.backends.keras.worker:{b}_backend", ("keras", b))
    for b in ("tensorflow", "jax", "torch"))


FRAMEWORK = Framework(
    name="keras", title="Keras", module="rnn_ref.backends.keras.convert",
    requires=("keras", "h5py"), distributions=("keras", "tensorflow-cpu", "h5py"),
    unsupported=unsupported, converters=("from_keras", "to_keras"),
    recognised_when="keras",
    formats=(
        FileFormat("keras", (".keras",), "a whole Keras model; keras.saving.load_model("
                   "safe_mode=True, compile=False)", loading=keras_loading),
        FileFormat("keras-weights", (".weights.h5",), "Keras 3 weights by position; the "
                   "architecture from the layer names and shapes",
                   frozenset({"activation", "merge_mode", "direction",
                              "head_activation", "select", "recurrent_activation"}),
                   unrecorded=keras_weights_unrecorded, refuses=keras_weights_refuses,
                   loading=keras_loading),
        FileFormat("keras-h5", (".h5",), "legacy Keras HDF5 read by name with h5py: a "
                   "whole model or weights", frozenset({"activation", "merge_mode"}),
                   loading=keras_loading),
    ),
    files="rnn_ref.backends.keras.files",
    backends=_KERAS_BACKENDS,
)
