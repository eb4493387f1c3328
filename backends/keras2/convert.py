"""Keras 2 (tf-keras): converters, oracle, the ``keras2-h5`` file format, ``keras2[tensorflow]``.

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
  {'time_major': False}", ``keras/src/layers/layer.py`` 295): this module reads them by name
  with h5py, through Keras 3's legacy reader (:class:`keras_backend._LegacyReader`) with
  Keras 2's activations, and checks the model's structure from its config.
* ``time_major=True`` layers hold the same weights; the oracle then takes and returns
  ``(T, N, ...)`` arrays.
* A model is read from its config (``model.get_config()``, or the ``model_config`` of an
  ``.h5`` file) and its weights by layer name, one walk for both (:func:`_walk`): Embedding
  (``mask_zero``) or Masking on the input, SimpleRNN / Bidirectional layers of any directions
  (a ``go_backwards`` layer only last: it hands on its outputs in processing order), the last
  one's ``return_sequences`` as the selection (``"sequence"`` / ``"final"``), Dense and
  ``TimeDistributed(Dense)`` layers (softmax too) as the head, and Dropout, SpatialDropout1D,
  GaussianNoise, GaussianDropout, AlphaDropout and SimpleRNN's ``dropout`` /
  ``recurrent_dropout`` recorded as identities where they sit. Any other layer is refused by
  name. ``to_native`` writes all of it back.

tf-keras and Keras 3 import side by side in one process (separate packages, separate layer
registries; checked by ``tests/test_backend_keras2.py``), so the converters and the file
functions run here; the ``keras2[tensorflow]`` backend runs in a worker process like
``keras[...]`` (:class:`Keras2ProcessBackend`), which keeps tf-keras out of the caller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends import file_limits
from rnn_ref.backends._common import raise_if
from rnn_ref.backends.keras.convert import (
    LegacyReader,
    quiet_import,
    readout_of,
    unsupported_dtype,
    unused_weights,
)
from rnn_ref.backends.keras.convert import list_arrays as _h5_arrays
from rnn_ref.backends.keras.graph import IDENTITY_LAYERS, KERAS2, read_cell
from rnn_ref.backends.keras.record import keras_masked_step_output, sniff_h5
from rnn_ref.backends.keras.worker import KerasProcessBackend, serve_with
from rnn_ref.backends.keras2.record import KERAS2_ACTIVATIONS, KERAS2_NAMES, unsupported
from rnn_ref.backends.keras2.record import unsupported as keras2_unsupported
from rnn_ref.backends.records import network_unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import FileFormatError, UnsupportedError
from rnn_ref.fileapi import Hints, NativeFile
from rnn_ref.inputs import check_inputs
from rnn_ref.network import Dense, Identity, Softmax
from rnn_ref.params import CellParams, Readout, RNNParams
from rnn_ref.reference import ForwardResult, forward, merge

__all__ = ["FORMAT", "KERAS2_ACTIVATIONS", "Keras2Backend", "Keras2ProcessBackend",
           "from_native", "import_tf_keras", "keras2_unsupported", "list_arrays",
           "load_native", "oracle", "owns", "read_file", "run_native", "serve", "sniff_h5",
           "tensorflow_backend", "to_native", "unsupported", "write_file"]

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


def _np(v: Any) -> np.ndarray[Any, Any]:
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v)


# --------------------------------------------------------------------------------------------
# from Keras 2
# --------------------------------------------------------------------------------------------
def _cell(layer: Any) -> tuple[CellParams, Activation]:
    """A Keras 2 ``SimpleRNN``'s cell and activation (:func:`keras_graph.read_cell`)."""
    return read_cell(layer, _tk().layers.SimpleRNN, KERAS2, _np)


@dataclass(frozen=True)
class _Structure:
    """How a bare Keras 2 RNN layer is called, for the oracle."""

    bidirectional: bool
    return_sequences: bool
    return_state: bool
    time_major: bool


def _parse(obj: Any) -> tuple[RNNParams, _Structure]:
    """A bare ``SimpleRNN`` or ``Bidirectional`` layer and how it is called."""
    tk = _tk()
    if not isinstance(obj, (tk.layers.SimpleRNN, tk.layers.Bidirectional)):
        raise TypeError(f"from_native takes a tf_keras SimpleRNN, Bidirectional or Model, "
                        f"got {type(obj).__name__}")
    bidirectional = isinstance(obj, tk.layers.Bidirectional)
    inner = [obj.forward_layer, obj.backward_layer] if bidirectional else [obj]
    read = [_cell(x) for x in inner]
    if bidirectional:
        mode = keras_masked_step_output("tensorflow",
                                        zero_output_for_mask=bool(obj.return_sequences),
                                        unroll=bool(obj.forward_layer.unroll))
        direction = "bidirectional"
    else:
        mode = keras_masked_step_output("tensorflow",
                                        zero_output_for_mask=bool(obj.zero_output_for_mask),
                                        unroll=bool(obj.unroll))
        direction = "reverse" if obj.go_backwards else "forward"
    config = RNNConfig(
        input_size=int(read[0][0].w_x.shape[0]), hidden_size=read[0][0].hidden_size,
        direction=direction, activation=[[a for _, a in read]],
        bias=bool(inner[0].cell.use_bias),
        merge_mode=obj.merge_mode if bidirectional else "concat", padded_output=mode,
        output_order="processing" if direction == "reverse" else "aligned")
    time_major = {bool(x.time_major) for x in inner}
    structure = _Structure(bidirectional, bool(obj.return_sequences), bool(obj.return_state),
                           time_major.pop())
    return RNNParams(config, [[c for c, _ in read]]), structure


# --------------------------------------------------------------------------------------------
# a model's config (model.get_config(), or an .h5 file's model_config) and weights by layer
# --------------------------------------------------------------------------------------------
#: Keras 2 layers that are the identity at inference -> (rnn-ref kind, the config key of the rate)
_IDENTITY_LAYERS = IDENTITY_LAYERS  # the same layers as Keras 3
_IDENTITY_CLASSES = {kind: cls for cls, (kind, _) in _IDENTITY_LAYERS.items()}
_Weights = Callable[[str], list[np.ndarray[Any, Any]]]


@dataclass
class _Net:
    """What a walk along a model's layers has met so far."""

    embedding: np.ndarray[Any, Any] | None = None
    mask_zero: bool = False
    mask_value: float | None = None
    cells: list[list[CellParams]] = field(default_factory=list)
    acts: list[list[Activation]] = field(default_factory=list)
    directions: list[str] = field(default_factory=list)
    merges: list[str | None] = field(default_factory=list)
    biases: set[bool] = field(default_factory=set)
    seqs: list[bool] = field(default_factory=list)
    last_rnn: dict[str, Any] = field(default_factory=dict)
    head: list[tuple[Dense, Readout]] = field(default_factory=list)
    identities: list[Identity] = field(default_factory=list)

    @property
    def position(self) -> int:
        """Where an identity layer met now sits (:class:`rnn_ref.Identity`'s ``after``)."""
        return len(self.cells) + len(self.head)


def _simple_rnn(c: dict[str, Any], arrays: list[np.ndarray[Any, Any]], where: str
                ) -> tuple[CellParams, Activation]:
    """One SimpleRNN's cell from its config and ``[kernel, recurrent_kernel(, bias)]``."""
    for key in ("stateful", "return_state", "time_major", "unroll"):
        if c.get(key):
            raise UnsupportedError("rnn-ref", f"a SimpleRNN with {key}=True in a model ({where})",
                                   "a model's layers are read without it")
    _count(arrays, 2 + bool(c.get("use_bias", True)), where)
    kernel, rec = arrays[0], arrays[1]
    _fits(where, "units", c.get("units"), kernel.shape[-1])
    bias = arrays[2] if c.get("use_bias", True) else np.zeros(rec.shape[0], rec.dtype)
    act = c.get("activation", "tanh") or "linear"
    if act not in KERAS2_ACTIVATIONS:
        raise UnsupportedError("rnn-ref", f"the Keras 2 activation {act!r} ({where})",
                               f"rnn-ref reads {', '.join(KERAS2_ACTIVATIONS)}")
    return CellParams(kernel, rec, bias, np.zeros_like(bias)), KERAS2_ACTIVATIONS[act]


def _add_rnn(net: _Net, cls: str, c: dict[str, Any], arrays: list[np.ndarray[Any, Any]]) -> None:
    """A SimpleRNN or Bidirectional(SimpleRNN) layer, with its own dropouts recorded."""
    where = c["name"]
    if net.head:
        raise UnsupportedError("rnn-ref", f"the RNN layer {where!r} after a Dense layer")
    if net.seqs and not net.seqs[-1]:
        raise UnsupportedError("rnn-ref", f"the RNN layer {where!r} after a layer with "
                               "return_sequences=False")
    if net.directions and net.directions[-1] == "reverse":
        raise UnsupportedError("rnn-ref", f"the RNN layer {where!r} after a go_backwards layer",
                               "go_backwards hands the next layer its outputs in processing "
                               "order, with the mask unflipped")
    subs = [c]
    if cls == "Bidirectional":
        subs = [c["layer"], c.get("backward_layer") or c["layer"]]
        for s in subs:
            if s.get("class_name") != "SimpleRNN":
                raise UnsupportedError("rnn-ref", f"a Keras 2 {s.get('class_name')} layer "
                                       f"({where})", "only SimpleRNN is an Elman RNN")
        if subs[0]["config"].get("go_backwards"):
            raise UnsupportedError("rnn-ref", f"a Bidirectional whose forward layer has "
                                   f"go_backwards=True ({where})")
        subs = [s["config"] for s in subs]
    half = len(arrays) // len(subs)
    read = [_simple_rnn(s, arrays[r * half:(r + 1) * half], where) for r, s in enumerate(subs)]
    li = len(net.cells)
    net.cells.append([cell for cell, _ in read])
    net.acts.append([act for _, act in read])
    net.directions.append("bidirectional" if cls == "Bidirectional" else
                          "reverse" if c.get("go_backwards") else "forward")
    net.merges.append(c.get("merge_mode", "concat") if cls == "Bidirectional" else "concat")
    net.biases.update(bool(s.get("use_bias", True)) for s in subs)
    net.seqs.append(bool(subs[0].get("return_sequences", False)))
    net.last_rnn = {"bidirectional": cls == "Bidirectional", **subs[0]}
    for key, kind in (("dropout", "input_dropout"), ("recurrent_dropout", "recurrent_dropout")):
        if subs[0].get(key):
            net.identities.append(Identity(kind, float(subs[0][key]), li))


def _add_dense(net: _Net, c: dict[str, Any], arrays: list[np.ndarray[Any, Any]]) -> None:
    where = c["name"]
    if not net.cells:
        raise UnsupportedError("rnn-ref", f"the Dense layer {where!r} before the RNN layers")
    act = c.get("activation", "linear") or "linear"
    if act not in KERAS2_ACTIVATIONS and act != "softmax":
        raise UnsupportedError("rnn-ref", f"the Keras 2 activation {act!r} ({where})",
                               f"rnn-ref reads softmax, {', '.join(KERAS2_ACTIVATIONS)}")
    use_bias = bool(c.get("use_bias", True))
    _count(arrays, 1 + use_bias, where)
    kernel = arrays[0]
    _fits(where, "units", c.get("units"), kernel.shape[-1])
    bias = arrays[1] if use_bias else np.zeros(kernel.shape[1], kernel.dtype)
    dense = Dense(int(kernel.shape[1]), act if act == "softmax" else KERAS2_ACTIVATIONS[act],
                  use_bias)
    net.head.append((dense, Readout(kernel, bias)))


def _add_input(net: _Net, cls: str, c: dict[str, Any], arrays: list[np.ndarray[Any, Any]]
               ) -> None:
    """Embedding or Masking: only on the model's input."""
    if net.cells or net.embedding is not None or net.mask_value is not None or \
            net.identities:
        raise UnsupportedError("rnn-ref", f"the {cls} layer {c['name']!r} after another layer",
                               "it is read on the model's input only")
    if cls == "Masking":
        _count(arrays, 0, c["name"])
        net.mask_value = float(c.get("mask_value", 0.0))
    else:
        _count(arrays, 1, c["name"])
        _fits(c["name"], "input_dim", c.get("input_dim"), arrays[0].shape[0])
        _fits(c["name"], "output_dim", c.get("output_dim"), arrays[-1].shape[-1])
        net.embedding, net.mask_zero = arrays[0], bool(c.get("mask_zero", False))


def _count(arrays: list[np.ndarray[Any, Any]], want: int, where: str) -> None:
    """The file holds exactly the arrays the layer's config takes."""
    if len(arrays) != want:
        raise FileFormatError(f"layer {where!r} holds {len(arrays)} arrays, its config takes "
                              f"{want}")


def _fits(where: str, key: str, declared: Any, held: int) -> None:
    """A size the layer's config declares is the size of its weights."""
    if declared is not None and declared != held:
        raise FileFormatError(f"layer {where!r} declares {key}={declared!r} but its weights "
                              f"hold {held}")


def _walk(layers: list[dict[str, Any]], weights: _Weights) -> _Net:
    """Every layer of a chain model, each part of the network or refused by name."""
    net = _Net()
    for la in layers:
        cls, c = str(la.get("class_name")), la.get("config", {})
        if cls == "InputLayer":
            continue
        inbound = la.get("inbound_nodes")
        if inbound and (len(inbound) != 1 or len(inbound[0]) != 1):
            raise UnsupportedError("rnn-ref", f"the layer {c.get('name')!r} with several "
                                   "inputs or calls", "a model is a chain of layers")
        if cls == "TimeDistributed" and c["layer"].get("class_name") == "Dense":
            cls, c = "Dense", {**c["layer"]["config"], "name": c["name"]}
        if cls in _IDENTITY_LAYERS:
            kind, key = _IDENTITY_LAYERS[cls]
            net.identities.append(Identity(kind, float(c[key]), net.position))
        elif cls in ("Embedding", "Masking"):
            _add_input(net, cls, c, weights(c["name"]))
        elif cls in ("SimpleRNN", "Bidirectional"):
            _add_rnn(net, cls, c, weights(c["name"]))
        elif cls == "Dense":
            _add_dense(net, c, weights(c["name"]))
        else:
            raise UnsupportedError("rnn-ref", f"a Keras 2 {cls} layer ({c.get('name')})",
                                   "rnn-ref reads Embedding, Masking, SimpleRNN, "
                                   "Bidirectional, Dense, TimeDistributed(Dense) and "
                                   f"{', '.join(_IDENTITY_LAYERS)}")
    if not net.cells:
        raise ValueError("the Keras 2 model holds no SimpleRNN or Bidirectional layer")
    return net


def _params_of_net(net: _Net) -> RNNParams:
    """The network a walk met, with TensorFlow's masked steps when the model masks."""
    if len(net.biases) != 1:
        raise UnsupportedError("rnn-ref", "SimpleRNN layers with and without a bias")
    last = net.last_rnn
    zero = bool(net.seqs[-1]) if last["bidirectional"] else bool(
        last.get("zero_output_for_mask", False))
    masked = net.mask_zero or net.mask_value is not None
    if masked and zero and not net.seqs[-1] and not last["bidirectional"]:
        raise UnsupportedError("rnn-ref", f"the SimpleRNN layer {last['name']!r} with "
                               f"zero_output_for_mask=True and return_sequences=False on masked "
                               f"inputs", "its last output is zeros for a sample padded at the "
                               "end, not its final state")
    mode = keras_masked_step_output("tensorflow", zero_output_for_mask=zero, unroll=False)
    config = RNNConfig(
        int(net.cells[0][0].w_x.shape[0]), [layer[0].hidden_size for layer in net.cells],
        direction=net.directions, activation=net.acts, bias=net.biases.pop(),
        merge_mode=net.merges, padded_output=mode if masked else "zeros",
        output_order="processing" if net.directions[-1] == "reverse" else "aligned",
        vocab_size=None if net.embedding is None else int(net.embedding.shape[0]),
        mask_zero=net.mask_zero, mask_value=net.mask_value,
        select="sequence" if net.seqs[-1] else "final",
        head=[d for d, _ in net.head], identities=net.identities)
    return RNNParams(config, net.cells, embedding=net.embedding,
                     head=[r for _, r in net.head] or None)


def _model_params(model: Any) -> RNNParams:
    """A tf-keras Sequential or functional chain model, through its config and weights."""
    conf = model.get_config()
    by_name = {la.name: la for la in model.layers}
    return _params_of_net(_walk(conf["layers"], lambda n: [_np(w) for w in
                                                           by_name[n].weights]))


def from_native(obj: Any) -> RNNParams:
    """Canonical parameters of a tf-keras ``SimpleRNN``, ``Bidirectional`` or a model
    (Sequential or a functional chain) of ``[Embedding | Masking] -> SimpleRNN /
    Bidirectional layers -> [Dense / TimeDistributed(Dense) layers]`` with Dropout,
    SpatialDropout1D, GaussianNoise, GaussianDropout and AlphaDropout anywhere (recorded as
    identities), bit-exact (Keras' one bias becomes ``b_x``, ``b_h = 0``). The config records
    TensorFlow's masked steps for objects that can be given a mask (a bare layer, a model with
    ``Masking`` or ``mask_zero``); the last layer's ``return_sequences`` is the selection
    (``"sequence"`` or ``"final"``).

    Raises:
        UnsupportedError: any other layer (named), stateful layers, a layer after a
            ``go_backwards`` one, activations outside :data:`KERAS2_ACTIVATIONS` (and
            softmax on a Dense).
    """
    if isinstance(obj, _tk().Model):
        return _model_params(obj)
    return _parse(obj)[0]


# --------------------------------------------------------------------------------------------
# to Keras 2
# --------------------------------------------------------------------------------------------
def _weights(cell: CellParams, bias: bool) -> list[np.ndarray[Any, Any]]:
    return [cell.w_x, cell.w_h] + ([cell.b_x + cell.b_h] if bias else [])


def rnn_layers(params: RNNParams, *, return_sequences: bool = True,
               return_state: bool = False) -> list[Any]:
    """The tf-keras RNN layers of ``params``, built and holding its weights (a layer's own
    ``input_dropout`` / ``recurrent_dropout`` as its ``dropout`` / ``recurrent_dropout``)."""
    tk = _tk()
    cfg, dtype = params.config, params.dtype.name
    out = []
    for li, layer in enumerate(params.layers):
        seqs = return_sequences if li == cfg.num_layers - 1 else True
        d_in = (None, None, layer[0].w_x.shape[0])
        drops = {("dropout" if i.kind == "input_dropout" else "recurrent_dropout"): i.rate
                 for i in cfg.identities
                 if i.after == li and i.kind in ("input_dropout", "recurrent_dropout")}

        def simple(r: int, backwards: bool, zero: bool, li: int = li, seqs: bool = seqs,
                   drops: dict[str, float] = drops) -> Any:
            return tk.layers.SimpleRNN(
                params.layers[li][r].hidden_size,
                activation=KERAS2_NAMES[cfg.activation_of(li, r)], use_bias=cfg.bias,
                return_sequences=seqs, return_state=return_state, go_backwards=backwards,
                zero_output_for_mask=zero, dtype=dtype, **drops)

        if cfg.num_directions_of(li) == 2:
            rnn = tk.layers.Bidirectional(simple(0, False, False),
                                          backward_layer=simple(1, True, False),
                                          merge_mode=cfg.merge_modes[li], dtype=dtype)
            rnn.build(d_in)  # Bidirectional copies the layers it wraps: set weights after
            rnn.forward_layer.set_weights(_weights(layer[0], cfg.bias))
            rnn.backward_layer.set_weights(_weights(layer[1], cfg.bias))
        else:
            # zero_output_for_mask only where the layer returns sequences: a last output of
            # zeros would replace the final state of a sample padded at the end
            rnn = simple(0, cfg.is_reverse(li, 0), cfg.padded_output == "zeros" and seqs)
            rnn.build(d_in)
            rnn.set_weights(_weights(layer[0], cfg.bias))
        out.append(rnn)
    return out


def _identity_layers(cfg: RNNConfig, after: int, dtype: str) -> list[Any]:
    """The Keras layers of the identities recorded at position ``after``."""
    tk = _tk()
    out = []
    for ident in cfg.identities:
        if ident.after == after and ident.kind in _IDENTITY_CLASSES:
            cls = _IDENTITY_CLASSES[ident.kind]
            key = _IDENTITY_LAYERS[cls][1]
            out.append(getattr(tk.layers, cls)(**{key: ident.rate}, dtype=dtype))
    return out


def _head_layers(params: RNNParams) -> list[Any]:
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
    for j, dense in enumerate(_head_layers(params)):
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
    return isinstance(model, (tk.layers.SimpleRNN, tk.layers.Bidirectional, tk.Model))


def _initial_state(initial_state: Any, R: int) -> list[np.ndarray[Any, Any]] | None:
    if initial_state is None:
        return None
    states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
    if len(states) != R:
        raise ValueError(f"initial_state needs {R} array(s), got {len(states)}")
    return [np.asarray(s, np.float64) for s in states]


def oracle(model: Any) -> Callable[..., Any]:
    """A NumPy function returning what the tf-keras ``model(inputs, ...)`` returns, in float64:
    ``(inputs, mask=None, initial_state=None)`` as Keras 3's oracle
    (:func:`rnn_ref.backends.keras.convert.oracle`); for ``time_major`` layers the inputs and
    outputs are ``(T, N, ...)`` (a mask is refused there). A model takes ``(inputs,
    mask=None)`` (token ids with an Embedding) and masks as its Masking / ``mask_zero`` say."""
    if isinstance(model, _tk().Model):
        params = _model_params(model)

        def call_model(inputs: Any, mask: Any = None) -> Any:
            x = np.asarray(inputs) if params.config.vocab_size is not None else np.asarray(
                inputs, np.float64)
            return forward(params.astype(np.float64), x, mask=mask).result

        return call_model
    params, st = _parse(model)
    cfg = params.config
    bare = RNNParams(cfg.replace(output_size=None, output_activation="linear",
                                 merge_mode=(*cfg.merge_modes[:-1], None) if st.bidirectional
                                 else "concat"), params.layers)
    R = cfg.num_directions

    def call(inputs: Any, mask: Any = None, initial_state: Any = None) -> Any:
        x = np.asarray(inputs, np.float64)
        if st.time_major:
            if mask is not None:
                raise UnsupportedError("the Keras 2 oracle", "a mask with time_major=True")
            x = x.swapaxes(0, 1)
        h0 = _initial_state(initial_state, R)
        res = forward(bare, x, h0=h0, mask=None if mask is None else np.asarray(mask, bool))
        h_n = res.h_n if isinstance(res.h_n, tuple) else tuple(res.h_n)
        if st.bidirectional:
            f, b = res.outputs
            if not st.return_sequences:
                f, b = f[:, -1], b[:, 0]
            merged = merge(f, b, cfg.merge_modes[-1])
        else:
            merged = res.outputs if st.return_sequences else res.outputs[:, -1]
        main: tuple[np.ndarray[Any, Any], ...] | np.ndarray[Any, Any] = (
            merged if isinstance(merged, tuple) else readout_of(params, merged))
        if st.time_major and st.return_sequences:
            main = (tuple(m.swapaxes(0, 1) for m in main) if isinstance(main, tuple)
                    else main.swapaxes(0, 1))
        if st.return_state:
            head = main if isinstance(main, tuple) else (main,)
            return (*head, *h_n[-R:])
        return main

    return call


# --------------------------------------------------------------------------------------------
# files: keras2-h5
# --------------------------------------------------------------------------------------------
class _Keras2Reader(LegacyReader):
    """Keras 3's legacy reader, with Keras 2's activations."""

    def _act(self, conf: dict[str, Any] | None) -> Activation:
        if conf is None:
            from rnn_ref.fileapi import hint_activation

            return hint_activation(self.hints, FORMAT, KERAS2_ACTIVATIONS)
        name = conf.get("activation", "tanh") or "linear"
        if name not in KERAS2_ACTIVATIONS:
            raise UnsupportedError("rnn-ref", f"the Keras 2 activation {name!r}",
                                   f"rnn-ref reads {', '.join(KERAS2_ACTIVATIONS)}")
        return KERAS2_ACTIVATIONS[name]


def _h5_contents(path: Path) -> tuple[list[str], dict[str, dict[str, Any]], list[dict[str, Any]]
                                      | None]:
    """(layer names, each layer's weights by name, the model config's layers or ``None``)."""
    import h5py

    def text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise FileFormatError(f"{path}: no layer_names: not a legacy Keras .h5 file")
        names = [text(n) for n in root.attrs["layer_names"]]
        weights = {}
        for name in names:
            g = root[name]
            weights[name] = {text(w): np.asarray(g[text(w)])
                             for w in g.attrs.get("weight_names", [])}
        config_json = f.attrs.get("model_config")
    layers = None
    if config_json is not None:
        cfg = json.loads(text(config_json))
        if cfg.get("class_name") not in ("Sequential", "Functional", "Model"):
            raise UnsupportedError("rnn-ref", f"a Keras 2 {cfg.get('class_name')} model")
        layers = cfg.get("config", {}).get("layers", [])
    return names, weights, layers


def read_file(path: Path, fmt: str, hints: Hints) -> RNNParams:
    """The parameters of a Keras 2 ``.h5`` file (a whole model, or ``save_weights``' file,
    which needs the hints), read by weight name with h5py: nothing from the file is run."""
    file_limits.check_h5(path, str(path))
    names, weights, layers = _h5_contents(path)
    if layers is None:  # save_weights' file: the hints say what the weights cannot
        return _Keras2Reader(path, hints).params(names, weights, {})
    used: set[str] = set()

    def fetch(name: str) -> list[np.ndarray[Any, Any]]:
        used.add(name)
        return list(weights.get(name, {}).values())

    net = _walk(layers, fetch)
    unused_weights(path, [f"{n}/{w}" for n, ws in weights.items() if n not in used for w in ws])
    _check_input_width(layers, net)
    return _params_of_net(net)


def _check_input_width(layers: list[dict[str, Any]], net: _Net) -> None:
    """The input width the config declares (``batch_input_shape``) is the first kernel's."""
    for la in layers[:1]:
        shape = la.get("config", {}).get("batch_input_shape")
        if net.embedding is None and shape and shape[-1] is not None and net.cells and \
                shape[-1] != net.cells[0][0].w_x.shape[0]:
            raise FileFormatError(f"the model's input declares width {shape[-1]} but the first "
                                  f"kernel takes {net.cells[0][0].w_x.shape[0]}")


def write_file(params: RNNParams, path: Path, fmt: str) -> None:
    """``to_native(params).save(path)`` by tf-keras, as legacy HDF5 (``.h5``)."""
    import warnings

    model = to_native(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf-keras calls HDF5 legacy
        model.save(str(path), save_format="h5")


def load_native(path: Path, fmt: str, params: RNNParams) -> NativeFile:
    """The file's weights loaded by tf-keras (``load_weights``, in layer order) into the model
    of ``params``' architecture: the file's config is never deserialised (a legacy ``.h5`` can
    hold a ``Lambda`` layer's marshalled code)."""
    model = to_native(params)
    model.load_weights(str(path))
    return NativeFile(model, takes_lengths=False, oracle=oracle(model))


def run_native(model: Any, x: np.ndarray[Any, Any], lengths: Any = None
               ) -> np.ndarray[Any, Any]:
    """The model's output on ``x``; with ``lengths``, padded steps are zeroed in the input
    (which a model of ``to_native(..., mask_value=0.0)`` masks)."""
    if lengths is not None:
        valid = np.arange(x.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None]
        x = x * valid
    return _np(model(x))


def list_arrays(path: Path, fmt: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Every HDF5 dataset of the file by its path (``.../kernel:0``)."""
    return _h5_arrays(path, "keras-h5")


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------
class _Keras2Support:
    name: str

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        reason = network_unsupported(config) or keras2_unsupported(
            config, backend="tensorflow", padded=lengths or mask)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        return unsupported_dtype(dtype, "tensorflow")


class Keras2Backend(_Keras2Support):
    """tf-keras' own layers in this process, called eagerly."""

    name = "keras2[tensorflow]"

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None) -> ForwardResult:
        """As :meth:`rnn_ref.backends.keras.convert.KerasBackend.forward`, in tf-keras."""
        import tensorflow as tf

        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name)
        m = inputs.mask_or_none()
        raise_if(network_unsupported(cfg) or keras2_unsupported(
            cfg, backend="tensorflow", padded=m is not None), self.name)
        problem = unsupported_dtype(params.dtype, "tensorflow")
        if problem is not None:
            raise UnsupportedError(self.name, problem)
        R = cfg.num_directions
        h: Any = tf.convert_to_tensor(inputs.x.astype(params.dtype))
        tm = None if m is None else tf.convert_to_tensor(m)
        h_n: list[np.ndarray[Any, Any]] = []
        for li, layer in enumerate(rnn_layers(params, return_state=True)):
            kwargs: dict[str, Any] = {}
            if tm is not None:
                kwargs["mask"] = tm
            if inputs.h0 is not None:
                kwargs["initial_state"] = [tf.convert_to_tensor(
                    np.asarray(inputs.h0[li * R + r], params.dtype)) for r in range(R)]
            out = layer(h, **kwargs)
            merged = out[: len(out) - R]
            h = merged[0] if len(merged) == 1 else tuple(merged)
            h_n.extend(_np(s) for s in out[len(out) - R:])
        y = None
        if params.readout is not None:
            y = _np(_head_layers(params)[0](h))
        outputs = tuple(_np(o) for o in h) if isinstance(h, tuple) else _np(h)
        return ForwardResult(outputs, np.stack(h_n) if cfg.uniform_hidden else tuple(h_n), y)


def serve() -> None:
    """The worker loop of ``keras2[tensorflow]`` (the protocol of
    :mod:`rnn_ref.backends.keras.worker`)."""
    import_tf_keras()
    serve_with(Keras2Backend(), (from_native, to_native))


class Keras2ProcessBackend(_Keras2Support, KerasProcessBackend):
    """``keras2[tensorflow]``: tf-keras' layers in a worker process (``TF_USE_LEGACY_KERAS=1``,
    so ``tf.keras`` there is tf-keras too), with keras_worker's protocol and lifetime."""

    _proc: subprocess.Popen[bytes] | None
    _log: Any

    def __init__(self) -> None:
        super().__init__("tensorflow")
        self.name = "keras2[tensorflow]"

    worker_code = "from rnn_ref.backends.keras2.convert import serve; serve()"

    def worker_env(self) -> dict[str, str]:
        """tf-keras in the worker: ``TF_USE_LEGACY_KERAS=1``."""
        return {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def tensorflow_backend() -> Keras2ProcessBackend:
    """``keras2[tensorflow]``."""
    return Keras2ProcessBackend()
