"""Keras 2 (tf-keras): converters and oracle (the ``keras2-h5`` files: ``files.py``; the
``keras2[tensorflow]`` backend: ``backend.py``).

tf-keras is Keras 2 as a package of its own (``import tf_keras``; ``tf.keras`` with
``TF_USE_LEGACY_KERAS=1``). Its ``SimpleRNN`` is Keras 3's layer with the same weights
(``kernel (D, M)``, ``recurrent_kernel (M, M)``, one ``bias``), the same ``go_backwards`` and
``Bidirectional`` semantics and, on TensorFlow, the same masked steps (``carry_output``; zeros
with ``zero_output_for_mask``, which ``Bidirectional`` forces when returning sequences:
``tf_keras/src/layers/rnn/bidirectional.py`` 162-168, ``tf_keras/src/backend.py`` 5085-5100).
How it differs (tf-keras 2.21.0 sources):

* ``hard_sigmoid`` is ``clip(0.2 x + 0.5, 0, 1)`` (``tf_keras/src/activations.py`` 426-450,
  ``tf_keras/src/backend.py`` 5930-5944), not Keras 3's ``relu6(x + 3) / 6``: the activation
  set is :data:`KERAS2_ACTIVATIONS`. ``leaky_relu`` is ``tf.nn.leaky_relu`` (slope 0.2,
  ``tf_keras/src/activations.py`` 583), ``elu`` alpha 1.0, as in Keras 3.
* Legacy ``.h5`` files (``model.save("x.h5")``) name weights after TensorFlow variables, with a
  ``:0`` suffix (``bidirectional/forward_simple_rnn/simple_rnn_cell/kernel:0``:
  ``tf_keras/src/saving/legacy/hdf5_format.py`` 684, 726, written by
  ``save_weights_to_hdf5_group`` 737-760 with ``keras_version`` "2.x" in the attributes), and
  every RNN layer's config records ``time_major`` (``tf_keras/src/layers/rnn/base_rnn.py``
  955). Keras 3 refuses to load them ("Unrecognized keyword arguments passed to SimpleRNN:
  {'time_major': False}", ``keras/src/layers/layer.py`` 295): ``files.py`` reads them by name
  with h5py, through Keras 3's parser and legacy reader in their Keras 2 flavour
  (:data:`rnn_ref.backends.keras.graph.KERAS2`: Keras 2's activations).
* ``time_major=True`` layers hold the same weights; the oracle of a bare one then takes and
  returns ``(T, N, ...)`` arrays (in a model they are refused).
* ``GRU`` and ``LSTM`` (``tf_keras/src/layers/rnn/gru.py``, ``lstm.py``) hold Keras 3's
  arrays: ``kernel (D, G*M)``, ``recurrent_kernel (M, G*M)`` in the gate orders z, r, h and
  i, f, c, o, a reset-after GRU's ``bias (2, 3M)`` (input, recurrent), one ``(G*M,)`` bias
  otherwise; ``recurrent_activation`` is the gates' f, ``activation`` the candidate's g and
  the LSTM cell state's h. The GRU's ``reset_after`` defaults to True since TF 2 (False in
  Keras <= 2.2, whose configs before 2.1.3 do not record it: read as False,
  :data:`rnn_ref.backends.keras.graph.KERAS2`), and Keras <= 2.2.5 defaulted
  ``recurrent_activation`` to ``hard_sigmoid`` (Keras 2's, above; the config records it).
  Layers whose activations tf-keras' cuDNN kernel takes run a function of the same result
  on the CPU (``standard_gru``/``standard_lstm``, tensorflow-cpu never runs cuDNN), with the
  same masked steps as the generic loop. What tf-keras cannot hold (peepholes: TF 2's
  experimental ``PeepholeLSTMCell`` is not in tf-keras; ``input_forget``, projection, clip,
  a cell activation of its own) is refused by name (:func:`unsupported`).
* A model is read from its config (``model.get_config()``, or the ``model_config`` of an
  ``.h5`` file) by :func:`rnn_ref.backends.keras.graph.parse_model` in the ``KERAS2``
  flavour, the layers it reads, then refused where a Keras 2 model cannot hold the network
  (:func:`unsupported`: one output, ``select`` ``"sequence"`` or ``"final"``). ``to_native``
  writes all of it back.

tf-keras and Keras 3 import side by side in one process (separate packages, separate layer
registries; checked by ``tests/test_backend_keras2.py``), so the converters and the file
functions run in the caller's process; the ``keras2[tensorflow]`` backend runs in a worker
process like ``keras[...]`` (:class:`~rnn_ref.backends.keras2.backend.Keras2ProcessBackend`),
which keeps tf-keras out of the caller.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends._common import raise_if
from rnn_ref.backends.keras.convert import (
    CellRead,
    LayerCall,
    layer_oracle,
    model_network,
    model_oracle,
    quiet_import,
    read_bare_layer,
)
from rnn_ref.backends.keras.graph import IDENTITY_LAYERS, KERAS2, gated_cell_weights, read_cell
from rnn_ref.backends.keras.record import sniff_h5
from rnn_ref.backends.keras2.record import KERAS2_ACTIVATIONS, KERAS2_NAMES, unsupported
from rnn_ref.backends.keras2.record import unsupported as keras2_unsupported
from rnn_ref.cells import CellSpec, pack
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.network import Softmax
from rnn_ref.params import AnyCellParams, CellParams, GRUParams, LSTMParams, RNNParams

__all__ = ["FORMAT", "KERAS2_ACTIVATIONS", "from_native", "import_tf_keras", "keras2_unsupported",
           "oracle", "owns", "sniff_h5", "to_native", "unsupported"]

FORMAT = "keras2-h5"
TITLE = "Keras 2"
Reason = tuple[str, str] | None


# --------------------------------------------------------------------------------------------
# tf_keras, imported on first use (what Keras 2 cannot hold: record.unsupported)
# --------------------------------------------------------------------------------------------
def import_tf_keras() -> Any:
    """tf-keras (:func:`rnn_ref.backends.keras.convert.quiet_import`)."""
    return quiet_import("tf_keras")


_tk = import_tf_keras


def numpy_of(v: Any) -> np.ndarray[Any, Any]:
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v)


# --------------------------------------------------------------------------------------------
# from Keras 2
# --------------------------------------------------------------------------------------------
def _gated_kind(layer: Any) -> str | None:
    """``"gru"`` or ``"lstm"`` for a tf-keras ``GRU``, ``LSTM`` or generic ``RNN`` around a
    ``GRUCell`` or ``LSTMCell`` (exactly those classes: a subclass may compute something
    else); else ``None``."""
    L = _tk().layers
    if type(layer) not in (L.GRU, L.LSTM, L.RNN):
        return None
    cell = getattr(layer, "cell", None)
    return "gru" if type(cell) is L.GRUCell else "lstm" if type(cell) is L.LSTMCell else None


def _gated_cell(layer: Any, kind: str) -> tuple[GRUParams | LSTMParams,
                                                tuple[Activation, Activation]]:
    """A tf-keras ``GRU``/``LSTM`` layer object's cell (its packed ``kernel``,
    ``recurrent_kernel`` and ``bias`` split by :func:`keras_graph.gated_cell_weights`: the
    same layout as Keras 3's) and its (``recurrent_activation``, ``activation``) in Keras 2's
    activation set (``hard_sigmoid`` is ``0.2 x + 0.5``).

    Raises:
        UnsupportedError: a stateful or time-major-in-a-model layer, an activation outside
            :data:`KERAS2_ACTIVATIONS` (named).
        ValueError: the layer is not built yet.
    """
    title = f"{type(layer).__name__} layer {layer.name!r}"
    if getattr(layer, "stateful", False):
        raise UnsupportedError("rnn-ref", f"the stateful Keras 2 {title}",
                               "its state lives between calls, outside the weights")
    cell = layer.cell
    acts = []
    for attr in ("recurrent_activation", "activation"):
        fn = getattr(cell, attr)
        name = getattr(fn, "__name__", str(fn))
        if name not in KERAS2.activations:
            raise UnsupportedError("rnn-ref", f"the Keras 2 {attr} {name!r} ({layer.name})",
                                   f"rnn-ref reads {', '.join(KERAS2.activations)}")
        acts.append(KERAS2.activations[name])
    if not getattr(cell, "built", False) or getattr(cell, "kernel", None) is None:
        raise ValueError(f"the Keras 2 {title} is not built and has no weights yet: call it "
                         f"on an input or build() it first")
    params = gated_cell_weights(
        kind, bool(getattr(cell, "reset_after", False)), numpy_of(cell.kernel),
        numpy_of(cell.recurrent_kernel), numpy_of(cell.bias) if cell.use_bias else None,
        where=f"the Keras 2 {title}")
    return params, (acts[0], acts[1])


def _cell(layer: Any) -> CellRead:
    """One direction of a tf-keras layer: a ``GRU``'s or ``LSTM``'s cell and (f, g)
    (:func:`_gated_cell`), a ``SimpleRNN``'s cell and activation
    (:func:`keras_graph.read_cell`; also the generic ``RNN`` around a ``SimpleRNNCell``)."""
    kind = _gated_kind(layer)
    if kind is not None:
        return _gated_cell(layer, kind)
    L = _tk().layers
    return read_cell(layer, L.SimpleRNN, KERAS2, numpy_of, generic=(L.RNN, L.SimpleRNNCell))


def _bare(obj: Any) -> tuple[RNNParams, LayerCall]:
    """A bare ``SimpleRNN``, ``GRU``, ``LSTM`` (or ``RNN`` around one of their cells) or
    ``Bidirectional`` layer and how it is called
    (:func:`rnn_ref.backends.keras.convert.read_bare_layer`, on TensorFlow: tensorflow-cpu
    never runs the cuDNN kernel, so masked steps are the generic loop's)."""
    tk = _tk()
    if not isinstance(obj, (tk.layers.RNN, tk.layers.Bidirectional)):
        raise TypeError(f"from_native takes a tf_keras SimpleRNN, GRU, LSTM, RNN, "
                        f"Bidirectional or Model, got {type(obj).__name__}")
    return read_bare_layer(obj, bidirectional=isinstance(obj, tk.layers.Bidirectional),
                           cell=_cell, backend="tensorflow")


# --------------------------------------------------------------------------------------------
# a model's config (model.get_config(), or an .h5 file's model_config), read by Keras 3's
# parser in its Keras 2 flavour (rnn_ref.backends.keras.graph)
# --------------------------------------------------------------------------------------------
_IDENTITY_CLASSES = {kind: cls for cls, (kind, _) in IDENTITY_LAYERS.items()}


def held_by_keras2(params: RNNParams) -> RNNParams:
    """``params`` of a tf-keras model, once a Keras 2 model holds them (:func:`unsupported`:
    one output, ``select`` ``"sequence"`` or ``"final"``, softmax or Keras 2's activations
    on the head): what the reader gives back, the writer writes."""
    raise_if(keras2_unsupported(params.config, backend="tensorflow", padded=False), TITLE)
    return params


def _model_params(model: Any) -> RNNParams:
    """A tf-keras Sequential or functional model, through its config and weights."""
    return held_by_keras2(model_network(model, KERAS2, "tensorflow")[1])


def from_native(obj: Any) -> RNNParams:
    """Canonical parameters of a tf-keras ``SimpleRNN``, ``GRU``, ``LSTM`` (or ``RNN`` around
    one of their cells), ``Bidirectional`` or a model (Sequential or functional) of the layers
    :mod:`rnn_ref.backends.keras.graph` reads, bit-exact (Keras' one bias becomes ``b_x``,
    ``b_h = 0``; a reset-after GRU's two rows are ``b_x``, ``b_h``), with the Dropout, noise and
    recurrent dropouts recorded as identities. The config records TensorFlow's masked steps
    for objects that can be given a mask (a bare layer, a model with ``Masking`` or
    ``mask_zero``); the last layer's ``return_sequences`` is the selection (``"sequence"``
    or ``"final"``).

    Raises:
        UnsupportedError: any other layer (named), stateful or time_major layers in a model,
            a layer after a ``go_backwards`` one, activations outside
            :data:`KERAS2_ACTIVATIONS` (and softmax on a Dense), what a Keras 2 model cannot
            hold (:func:`unsupported`).
    """
    if isinstance(obj, _tk().Model):
        return _model_params(obj)
    return _bare(obj)[0]


# --------------------------------------------------------------------------------------------
# to Keras 2
# --------------------------------------------------------------------------------------------
def _weights(cell: AnyCellParams, reset_after: bool, bias: bool) -> list[np.ndarray[Any, Any]]:
    """One direction's arrays in tf-keras' ``get_weights()`` order: ``kernel``,
    ``recurrent_kernel`` and with ``bias`` the bias. A ``SimpleRNN``'s one bias is
    ``b_x + b_h``; a ``GRU``'s or ``LSTM``'s blocks are packed in Keras' gate order
    (:func:`rnn_ref.cells.pack`, ``gru:keras`` z, r, h; ``lstm:keras`` i, f, c, o, as Keras 3),
    with a reset-after GRU's ``(2, 3M)`` bias (``b_x``, ``b_h``: ``b_h[n]`` stays inside
    ``r *``) or one ``(G*M,)`` ``b_x + b_h`` (an LSTM's and a reset-before GRU's: every bias
    there is added to its gate's input)."""
    if isinstance(cell, CellParams):
        return [cell.w_x, cell.w_h] + ([cell.b_x + cell.b_h] if bias else [])
    kind = cell.kind
    order = f"{kind}:keras"
    out = [pack(cell.w_x, order, cell=kind), pack(cell.w_h, order, cell=kind)]
    if bias:
        b_x, b_h = pack(cell.b_x, order, cell=kind), pack(cell.b_h, order, cell=kind)
        out.append(np.stack([b_x, b_h]) if kind == "gru" and reset_after else b_x + b_h)
    return out


def rnn_layers(params: RNNParams, *, return_sequences: bool = True,
               return_state: bool = False) -> list[Any]:
    """The tf-keras RNN layers of ``params`` (``SimpleRNN``, ``GRU`` with the cell's
    ``reset_after``, ``LSTM``; ``go_backwards`` for a reverse layer, ``Bidirectional`` of
    two), built and holding its weights (:func:`_weights`), a layer's own ``input_dropout``
    / ``recurrent_dropout`` as its ``dropout`` / ``recurrent_dropout``. A gated layer's
    ``recurrent_activation`` is the gates' f, its ``activation`` the candidate's g (and an
    LSTM's cell state's h, which :func:`unsupported` requires to be g)."""
    tk = _tk()
    cfg, dtype = params.config, params.dtype.name
    out = []
    for li in range(cfg.num_layers):
        seqs = return_sequences if li == cfg.num_layers - 1 else True
        d_in = (None, None, cfg.layer_input_size(li))
        spec = cfg.cell_of(li)
        drops = {("dropout" if i.kind == "input_dropout" else "recurrent_dropout"): i.rate
                 for i in cfg.identities
                 if i.after == li and i.kind in ("input_dropout", "recurrent_dropout")}

        def one(r: int, backwards: bool, zero: bool, li: int = li, seqs: bool = seqs,
                drops: dict[str, float] = drops, spec: CellSpec = spec) -> Any:
            acts = cfg.activations_of(li, r)
            common: dict[str, Any] = dict(
                use_bias=cfg.bias, return_sequences=seqs, return_state=return_state,
                go_backwards=backwards, zero_output_for_mask=zero, dtype=dtype, **drops)
            units = cfg.hidden_sizes[li]
            if spec.kind == "elman":
                return tk.layers.SimpleRNN(units, activation=KERAS2_NAMES[acts[0]], **common)
            gated = dict(activation=KERAS2_NAMES[acts[1]],
                         recurrent_activation=KERAS2_NAMES[acts[0]], **common)
            if spec.kind == "gru":
                return tk.layers.GRU(units, reset_after=spec.reset_after, **gated)
            return tk.layers.LSTM(units, **gated)

        def weights(r: int, li: int = li, spec: CellSpec = spec) -> list[np.ndarray[Any, Any]]:
            return _weights(params.layers[li][r], spec.reset_after, cfg.bias)

        if cfg.num_directions_of(li) == 2:
            rnn = tk.layers.Bidirectional(one(0, False, False), backward_layer=one(1, True, False),
                                          merge_mode=cfg.merge_modes[li], dtype=dtype)
            rnn.build(d_in)  # Bidirectional copies the layers it wraps: set weights after
            rnn.forward_layer.set_weights(weights(0))
            rnn.backward_layer.set_weights(weights(1))
        else:
            # zero_output_for_mask only where the layer returns sequences: a last output of
            # zeros would replace the final state of a sample padded at the end
            rnn = one(0, cfg.is_reverse(li, 0), cfg.padded_output == "zeros" and seqs)
            rnn.build(d_in)
            rnn.set_weights(weights(0))
        out.append(rnn)
    return out


def _identity_layers(cfg: RNNConfig, after: int, dtype: str) -> list[Any]:
    """The Keras layers of the identities recorded at position ``after``."""
    tk = _tk()
    out = []
    for ident in cfg.identities:
        if ident.after == after and ident.kind in _IDENTITY_CLASSES:
            cls = _IDENTITY_CLASSES[ident.kind]
            key = IDENTITY_LAYERS[cls][1]
            out.append(getattr(tk.layers, cls)(**{key: ident.rate}, dtype=dtype))
    return out


def head_layers(params: RNNParams) -> list[Any]:
    """The head's Dense layers, built and holding their weights."""
    tk = _tk()
    out = []
    for dense, ro in zip(params.config.head, params.head, strict=True):
        act = "softmax" if isinstance(dense.activation, Softmax) else KERAS2_NAMES[
            dense.activation]
        layer = tk.layers.Dense(dense.units, activation=act, use_bias=dense.bias,
                                dtype=params.dtype.name)
        layer.build((None, None, ro.w.shape[0]))
        layer.set_weights([ro.w, ro.b] if dense.bias else [ro.w])
        out.append(layer)
    return out


def _input(params: RNNParams, mask_value: float | None) -> tuple[Any, Any]:
    """The model's Input and what the recurrent layers read: an Embedding's output, or the
    features through Masking when there is a mask value."""
    tk = _tk()
    cfg, dtype = params.config, params.dtype.name
    if cfg.vocab_size is not None:
        inputs = tk.Input((None,), dtype="int32")
        emb = tk.layers.Embedding(cfg.vocab_size, cfg.input_size, mask_zero=cfg.mask_zero,
                                  dtype=dtype)
        emb.build((None, None))
        emb.set_weights([params.embedding])
        return inputs, emb(inputs)
    inputs = tk.Input((None, cfg.input_size), dtype=dtype)
    if mask_value is None:
        return inputs, inputs
    return inputs, tk.layers.Masking(mask_value=mask_value, dtype=dtype)(inputs)


def to_native(params: RNNParams, *, mask_value: float | None = None) -> Any:
    """A functional ``tf_keras.Model`` of the whole network: ``Input`` [-> ``Embedding`` |
    ``Masking``] -> the RNN layers (``return_sequences`` on the last from ``select``) -> the
    head's ``Dense`` layers, with every identity layer (Dropout, ...) where it sits, in the
    params' dtype, holding its weights bit-exact (``b_x + b_h`` as the bias).

    Args:
        mask_value: a ``Masking`` value for a network that has none (``config.mask_value``
            is written anyway; giving another is an error).

    Raises:
        UnsupportedError: what :func:`keras2_unsupported` names (with a mask, padded outputs
            TensorFlow does not produce).
    """
    cfg = params.config
    if cfg.mask_value is not None and mask_value not in (None, cfg.mask_value):
        raise ValueError(f"mask_value={mask_value!r} but the network masks "
                         f"mask_value={cfg.mask_value}")
    masking = cfg.mask_value if cfg.mask_value is not None else mask_value
    raise_if(keras2_unsupported(cfg, backend="tensorflow",
                                padded=masking is not None or cfg.mask_zero), TITLE)
    inputs, h = _input(params, masking)
    dtype = params.dtype.name
    for li, rnn in enumerate([None, *rnn_layers(params,
                                                return_sequences=cfg.select == "sequence")]):
        h = h if rnn is None else rnn(h)
        for layer in _identity_layers(cfg, li, dtype):
            h = layer(h)
    for j, dense in enumerate(head_layers(params)):
        h = dense(h)
        for layer in _identity_layers(cfg, cfg.num_layers + 1 + j, dtype):
            h = layer(h)
    return _tk().Model(inputs, h)


# --------------------------------------------------------------------------------------------
# oracle
# --------------------------------------------------------------------------------------------
def owns(model: Any) -> bool:
    """Whether ``model`` is a tf-keras object (checked without importing tf-keras)."""
    if "tf_keras" not in sys.modules:
        return False
    tk = sys.modules["tf_keras"]
    return isinstance(model, (tk.layers.RNN, tk.layers.Bidirectional, tk.Model))


def oracle(model: Any) -> Callable[..., Any]:
    """A NumPy function returning what the tf-keras ``model(inputs, ...)`` returns, in float64:
    ``(inputs, mask=None, initial_state=None)`` for a bare layer
    (:func:`rnn_ref.backends.keras.convert.layer_oracle`; ``(T, N, ...)`` arrays for a
    ``time_major`` layer, which takes no mask); ``(inputs, mask=None)`` for a model (token
    ids with an Embedding), masked as its Masking / ``mask_zero`` say
    (:func:`rnn_ref.backends.keras.convert.model_oracle`)."""
    if isinstance(model, _tk().Model):
        return model_oracle(_model_params(model))
    return layer_oracle(*_bare(model), where="the Keras 2 oracle")
