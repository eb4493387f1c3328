"""A Keras model's configuration (JSON) read into the network of the spec, without Keras.

:func:`parse_model` takes what ``model.get_config()`` returns, what a ``.keras`` archive's
``config.json`` and a legacy ``.h5`` file's ``model_config`` attribute hold (a ``Sequential``
layer list or a functional graph), and returns a :class:`KerasNetwork`: the
:class:`~rnn_ref.RNNConfig` and, for each canonical array, where its weights are (a layer name
and the position in that layer's weights, ``layer.get_weights()`` order). :func:`assemble`
then builds the :class:`~rnn_ref.RNNParams` from any ``fetch(layer, index)``.

Every layer and operation met is accounted for: it is a piece of the network or the model is
refused naming it (``UnsupportedError``). A functional graph must be one chain from one input
to one output, but for a Bidirectional layer made by hand (below) and the mask: Keras 3
records a functional model's mask as operations (``NotEqual(ids, 0)`` for
``Embedding(mask_zero=True)``, ``Any(NotEqual(x, v), axis=-1)`` for ``Masking(v)``) passed
to each layer as ``mask=``; those are read as the mask of that layer, any other mask is
refused. What is read (Keras 3.15 ``keras/src/layers``; Keras 2 writes the same keys, with
``batch_input_shape`` and list-form inbound nodes):

* ``InputLayer``; ``Embedding`` (``mask_zero``); ``Masking`` (``mask_value``);
* ``SimpleRNN``, ``GRU`` and ``LSTM`` (of Keras 3 and Keras 2), the generic ``RNN``
  around one ``SimpleRNNCell``, ``GRUCell`` or ``LSTMCell`` (the same layers: ``SimpleRNN``
  is that ``RNN``; an ``RNN`` around a list of cells is refused) and ``Bidirectional`` of
  any, every layer its own direction and cell (a stack may mix
  them); ``dropout`` and ``recurrent_dropout`` are recorded as identities of the layer;
  ``go_backwards`` only on the last recurrent layer (Keras hands the next layer its outputs
  flipped). A GRU's or LSTM's packed ``kernel (D, G*M)`` and ``recurrent_kernel (M, G*M)``
  are split by :func:`rnn_ref.cells.unpack` in Keras' gate order (``gru:keras`` z, r, h;
  ``lstm:keras`` i, f, c, o); a GRU with ``reset_after=True`` holds ``bias (2, 3M)``, row 0
  the input biases ``b_x``, row 1 the recurrent ``b_h``; ``reset_after=False`` and the LSTM
  hold one bias ``(G*M,)``, read as ``b_x`` with ``b_h = 0``. ``recurrent_activation`` is the
  gates' f, ``activation`` the candidate's g (and the LSTM's h: Keras uses one for both);
  ``unit_forget_bias`` only initialises, ``use_cudnn`` and ``implementation`` choose a kernel
  of the same function;
* a Bidirectional layer made by hand: ``Concatenate()([f, b])`` (or ``Add``, ``Average``,
  ``Multiply``, which give ``sum``, ``ave``, ``mul``) of a forward layer ``f`` and a
  ``go_backwards`` layer ``b`` called on one input, both with ``return_sequences=False``: the
  two final states merged, exactly ``Bidirectional``'s. With ``return_sequences=True`` it is
  refused: ``b``'s sequence is in processing order (reversed in time), which
  ``Bidirectional`` flips back and a merge layer does not, and the spec's bidirectional layer
  holds time-aligned halves only. A ``Concatenate`` needs the forward branch first;
* ``Dropout``, ``SpatialDropout1D``, ``GaussianNoise``, ``GaussianDropout``, ``AlphaDropout``
  (identities with their rate and position);
* ``GlobalAveragePooling1D`` (``select="mean_valid"``: Keras weighs the steps by the mask;
  refused over a ``go_backwards`` layer on masked inputs, whose outputs are in processing
  order while the mask is in time order) and ``GlobalMaxPooling1D`` (``"max_all"``: it
  ignores the mask, so padded steps count with what the layer outputs there) right after the
  last recurrent layer's sequence;
* several outputs of a functional model (``RNNConfig.returns``): the deepest one is the
  result, the others final states of ``return_state=True`` layers (``h_n[k]``, k < 0) or the
  last recurrent layer's sequence; a state fed to another layer is refused;
* ``Dense`` and ``TimeDistributed(Dense)`` (the head), and ``Activation`` (or ``Softmax``
  on the last axis) folded into the ``Dense`` just before it when that one is linear.

The flavour says which Keras wrote the config: its activation set (Keras 2's
``hard_sigmoid`` is ``0.2 x + 0.5``) and its name in messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends.keras.record import KERAS_READ_ACTIVATIONS, keras_masked_step_output
from rnn_ref.backends.keras2.record import KERAS2_ACTIVATIONS
from rnn_ref.cells import GATE_ORDERS, GATES, unpack
from rnn_ref.config import RNNConfig
from rnn_ref.errors import FileFormatError, UnsupportedError
from rnn_ref.network import Dense, HeadActivation, Identity, Softmax
from rnn_ref.params import CellParams, GRUParams, LSTMParams, RNNParams

__all__ = ["CELL_CLASSES", "IDENTITY_LAYERS", "KERAS2", "KERAS3", "LAYER_CELLS", "Flavour",
           "KerasNetwork", "Source", "assemble", "gated_cell_weights", "layer_chain",
           "parse_model", "read_cell", "recurrent_config"]


@dataclass(frozen=True)
class Flavour:
    """Which Keras wrote a config: its name in messages, its activation set, and what a GRU
    config without ``reset_after`` computes (Keras 2 before 2.1.3 had no such key and only
    the reset-before GRU: keras-team/keras PR #9112 added it)."""

    name: str
    activations: Mapping[str, Activation]
    reset_after_default: bool = True


KERAS3 = Flavour("Keras", KERAS_READ_ACTIVATIONS)
KERAS2 = Flavour("Keras 2", KERAS2_ACTIVATIONS, reset_after_default=False)


def read_cell(layer: Any, simple_rnn: type[Any], flavour: Flavour,
              to_numpy: Callable[[Any], np.ndarray[Any, Any]],
              generic: tuple[type[Any], type[Any]] | None = None
              ) -> tuple[CellParams, Activation]:
    """A built ``SimpleRNN`` layer object (of the class ``simple_rnn`` of Keras 3 or Keras 2)
    as one canonical cell (its one bias in ``b_x``) and its activation; ``to_numpy`` turns the
    framework's variables into arrays. With ``generic = (RNN, SimpleRNNCell)`` the generic
    ``RNN`` layer around one ``SimpleRNNCell`` is read too (it computes what ``SimpleRNN``
    does: ``SimpleRNN`` is that layer).

    Raises:
        UnsupportedError: another layer (an ``RNN`` around another cell), a stateful one, or
            an activation outside the flavour's set (named).
        ValueError: the layer is not built yet.
    """
    if not isinstance(layer, simple_rnn):
        if generic is not None and type(layer) is generic[0]:  # not LSTM, GRU (subclasses)
            if not isinstance(getattr(layer, "cell", None), generic[1]):
                raise UnsupportedError(
                    "rnn-ref", f"the {flavour.name} RNN layer {layer.name!r} around a "
                    f"{type(getattr(layer, 'cell', None)).__name__}",
                    "rnn-ref reads RNN(SimpleRNNCell(...)): only SimpleRNNCell is an Elman cell")
        else:
            raise UnsupportedError("rnn-ref", f"a {flavour.name} {type(layer).__name__} layer",
                                   "only SimpleRNN is an Elman RNN")
    if getattr(layer, "stateful", False):
        raise UnsupportedError("rnn-ref", "a stateful SimpleRNN",
                               "its state lives between calls, outside the weights")
    cell = layer.cell
    name = getattr(cell.activation, "__name__", str(cell.activation))
    if name not in flavour.activations:
        raise UnsupportedError("rnn-ref", f"the {flavour.name} activation {name!r} "
                               f"({layer.name})", f"rnn-ref reads {', '.join(flavour.activations)}")
    if not getattr(cell, "built", False) or getattr(cell, "kernel", None) is None:
        raise ValueError(f"the {flavour.name} layer {layer.name!r} is not built and has no "
                         f"weights yet: call it on an input or build() it first")
    kernel, rec = to_numpy(cell.kernel), to_numpy(cell.recurrent_kernel)
    bias = to_numpy(cell.bias) if cell.use_bias else np.zeros(rec.shape[0], rec.dtype)
    return CellParams(kernel, rec, bias, np.zeros_like(bias)), flavour.activations[name]


def gated_cell_weights(kind: str, reset_after: bool, kernel: Any, recurrent_kernel: Any,
                       bias: Any = None, where: str = "a Keras layer"
                       ) -> GRUParams | LSTMParams:
    """One Keras 3 ``GRU`` or ``LSTM`` cell (``kind`` ``"gru"`` or ``"lstm"``) from its
    packed arrays: ``kernel (D, G*M)``, ``recurrent_kernel (M, G*M)`` in Keras' gate order
    (:data:`rnn_ref.cells.GATE_ORDERS` ``gru:keras``, ``lstm:keras``), and ``bias``: a
    reset-after GRU's ``(2, 3M)`` (row 0 ``b_x``, row 1 ``b_h``), one ``(G*M,)`` otherwise
    (``b_x``, with ``b_h = 0``), ``None`` without a bias (zeros).

    Raises:
        FileFormatError: arrays whose shapes are not those of a ``kind`` cell, naming
            ``where``.
    """
    order = f"{kind}:keras"
    G = len(GATE_ORDERS[order][0])
    kernel, rec = np.asarray(kernel), np.asarray(recurrent_kernel)
    m = rec.shape[0] if rec.ndim == 2 else -1
    for name, arr in (("kernel", kernel), ("recurrent_kernel", rec)):
        if arr.ndim != 2 or arr.shape[1] != G * m:
            raise FileFormatError(f"{where}: a {kind.upper()} {name} of shape {arr.shape}; "
                                  f"expected (rows, {G} gates x M) with M = {m} from its "
                                  f"recurrent_kernel (M, {G}*M)")
    two = kind == "gru" and reset_after
    zeros = np.zeros(G * m, rec.dtype)
    if bias is None:
        b_x, b_h = zeros, zeros
    else:
        b = np.asarray(bias)
        want = (2, G * m) if two else (G * m,)
        if b.shape != want:
            raise FileFormatError(f"{where}: a {kind.upper()} bias of shape {b.shape}; "
                                  f"expected {want}"
                                  + (" (reset_after=True: input and recurrent biases)"
                                     if kind == "gru" else ""))
        b_x, b_h = (b[0], b[1]) if two else (b, zeros)
    w_x, w_h, bx, bh = (unpack(arr, order, cell=kind, axis=-1) for arr in (kernel, rec, b_x, b_h))
    if kind == "gru":
        return GRUParams(w_x=w_x, w_h=w_h, b_x=bx, b_h=bh)
    return LSTMParams(w_x=w_x, w_h=w_h, b_x=bx, b_h=bh)

#: Keras layers that are the identity at inference: (the Identity kind, its rate's key)
IDENTITY_LAYERS: Mapping[str, tuple[str, str]] = {
    "Dropout": ("dropout", "rate"), "SpatialDropout1D": ("spatial_dropout_1d", "rate"),
    "GaussianNoise": ("gaussian_noise", "stddev"), "GaussianDropout": ("gaussian_dropout", "rate"),
    "AlphaDropout": ("alpha_dropout", "rate"),
}
#: the recurrent layer classes and the cell each computes (``RNN``: by its cell)
LAYER_CELLS: Mapping[str, str] = {"SimpleRNN": "elman", "GRU": "gru", "LSTM": "lstm"}
#: the cells a generic ``RNN`` layer may hold, and the cell each is
CELL_CLASSES: Mapping[str, str] = {"SimpleRNNCell": "elman", "GRUCell": "gru",
                                   "LSTMCell": "lstm"}
_RNN = (*LAYER_CELLS, "RNN", "Bidirectional")
#: Keras' pooling layers over time and the selection each is
_POOLS = {"GlobalAveragePooling1D": "mean_valid", "GlobalMaxPooling1D": "max_all"}
#: the keys of a generic ``RNN`` layer's own config (the others are its cell's)
_RNN_KEYS = ("name", "return_sequences", "return_state", "go_backwards", "stateful", "unroll",
             "zero_output_for_mask")


@dataclass(frozen=True)
class Source:
    """Where one canonical array is: position ``index`` in the weights of layer ``layer``;
    of that array, row ``row`` when given (a reset-after GRU's ``bias (2, 3M)``), and the
    block of gate ``gate`` when given, in the packed gate order ``order`` (a key of
    :data:`rnn_ref.cells.GATE_ORDERS`, ``"gru:keras"``) on the last axis."""

    layer: str
    index: int
    row: int | None = None
    gate: str | None = None
    order: str | None = None


@dataclass(frozen=True)
class KerasNetwork:
    """A parsed model: its config, where each canonical array comes from (``None``: zeros,
    a bias the model does not have, or ``b_h``), and every layer name in the order met."""

    config: RNNConfig
    sources: Mapping[str, Source | None]
    layers: tuple[str, ...]


def _refuse(what: str, why: str = "") -> UnsupportedError:
    return UnsupportedError("rnn-ref", what, why)


# --------------------------------------------------------------------------------------------
# the chain of layers
# --------------------------------------------------------------------------------------------
def _name(layer: Mapping[str, Any]) -> str:
    return str(layer.get("name") or layer.get("config", {}).get("name", "?"))


def _refs(spec: Any) -> list[tuple[str, int]]:
    """(layer name, tensor index) of each entry of ``input_layers``/``output_layers``
    (``[name, 0, k]`` or a list of them): k > 0 is a state of a ``return_state`` layer."""
    if isinstance(spec, list) and spec and isinstance(spec[0], str):
        spec = [spec]
    return [(str(s[0]), int(s[2]) if len(s) > 2 else 0) for s in spec or []]


def _tensor_refs(obj: Any) -> list[tuple[str, int]]:
    """(layer name, tensor index) of the Keras tensors among a Keras 3 node's arguments."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            history = obj["config"]["keras_history"]
            return [(str(history[0]), int(history[2]) if len(history) > 2 else 0)]
        return [n for v in obj.values() for n in _tensor_refs(v)]
    if isinstance(obj, (list, tuple)):
        return [n for v in obj for n in _tensor_refs(v)]
    return []


def _tensors(obj: Any) -> list[str]:
    """The layer names of the Keras tensors among a Keras 3 node's arguments."""
    return [name for name, _ in _tensor_refs(obj)]


def _first_outputs(layer: Mapping[str, Any], refs: list[tuple[str, int]]) -> list[str]:
    """The layer names of ``refs``, each a layer's first output (refused: a state that a
    ``return_state`` layer gives, fed to another layer)."""
    for parent, k in refs:
        if k != 0:
            raise _refuse(f"layer {_name(layer)!r} taking output {k} of {parent!r} (a state "
                          f"of a return_state=True layer)",
                          "rnn-ref reads a chain of the layers' first outputs; states may be "
                          "outputs of the model")
    return [name for name, _ in refs]


def _node_call(layer: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """The names of the layers feeding ``layer``'s one call, and of the layer computing the
    mask it is called with (``None``: no mask). Refused: a shared layer, a call with
    arguments beyond its input and its mask."""
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise _refuse(f"layer {_name(layer)!r} called {len(nodes)} times (a shared layer)")
    if not nodes:
        return [], None
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        kwargs = {k: v for k, v in node.get("kwargs", {}).items()
                  if not (k == "training" or (k == "mask" and v is None))}
        masks = _tensors(kwargs.pop("mask", None))
        if kwargs or len(masks) > 1:
            raise _refuse(f"layer {_name(layer)!r} called with {sorted(kwargs) or ['mask']}")
        return _first_outputs(layer, _tensor_refs(node.get("args", []))), \
            masks[0] if masks else None
    refs = []  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
    for entry in node:
        if len(entry) > 3 and entry[3]:
            raise _refuse(f"layer {_name(layer)!r} called with {sorted(entry[3])}")
        refs.append((str(entry[0]), int(entry[2]) if len(entry) > 2 else 0))
    return _first_outputs(layer, refs), None


#: Keras merge layers and the merge mode of a Bidirectional layer made with them by hand
_MERGES = {"Concatenate": "concat", "Add": "sum", "Average": "ave", "Multiply": "mul"}
_BRANCH_SEQUENCES = (
    "a go_backwards layer returns its sequence in processing order (position t holds the "
    "state after x[T-1-t]), which Bidirectional flips back to time-aligned and a merge layer "
    "does not; the spec's bidirectional layer merges time-aligned halves, so only the final "
    "states (return_sequences=False on both branches) are a Bidirectional layer")


def _hand_made(merge: Mapping[str, Any], parents: list[str],
               layers: Mapping[str, Mapping[str, Any]]
               ) -> tuple[dict[str, Any], list[str], str | None] | None:
    """A merge layer of a forward and a ``go_backwards`` recurrent branch on one input (a
    Bidirectional layer made by hand) as one recurrent entry (``"pair"``: the branches'
    names, forward first), the input's layer and the branches' mask layer; ``None`` when
    ``merge`` is no merge of two recurrent layers. Refused, named: branches on different
    inputs, two branches of one direction, the backward branch first in a ``Concatenate``,
    branches returning sequences (``_BRANCH_SEQUENCES``)."""
    cls = str(merge.get("class_name"))
    branches = [layers.get(p, {}) for p in parents]
    if not _is_layer(merge, cls) or cls not in _MERGES or len(branches) != 2 or any(
            b.get("class_name") not in (*LAYER_CELLS, "RNN") for b in branches):
        return None
    calls = [_node_call(b) for b in branches]
    if calls[0] != calls[1] or len(calls[0][0]) != 1:
        raise _refuse(f"{_what(merge)} of {parents}, which are not called on one input",
                      "a Bidirectional layer made by hand runs both directions on one input")
    confs = [recurrent_config(b)[1] for b in branches]
    back = [bool(c.get("go_backwards", False)) for c in confs]
    if back == [True, False] and cls != "Concatenate":
        branches.reverse()  # sum, product and mean do not depend on the order
    elif back != [False, True]:
        raise _refuse(f"{_what(merge)} of {parents} (go_backwards {back})",
                      "a Bidirectional layer made by hand merges a forward branch and a "
                      "go_backwards branch, forward first (Bidirectional's concat order)")
    if any(c.get("return_sequences") for c in confs):
        raise _refuse(f"{_what(merge)} of the sequences of {parents}", _BRANCH_SEQUENCES)
    if merge.get("config", {}).get("axis", -1) not in (-1, 1):
        raise _refuse(f"{_what(merge)} on axis {merge['config']['axis']}",
                      "the directions concatenate on the feature axis")
    entry = {**merge, "pair": [_name(b) for b in branches],
             "config": {"name": _name(merge), "layer": branches[0],
                        "backward_layer": branches[1], "merge_mode": _MERGES[cls]}}
    return entry, calls[0][0], calls[0][1]


def _mask_ops(source: Mapping[str, Any] | None, layers: Mapping[str, Mapping[str, Any]]
              ) -> dict[str, set[str]]:
    """The operation layers that compute the mask of ``source`` (an ``Embedding`` with
    ``mask_zero`` or a ``Masking`` layer) in a functional graph: ``NotEqual(ids, 0)``, or
    ``Any(NotEqual(x, mask_value), axis=-1)``; by the name of the layer giving the mask, the
    names of the operations computing it."""
    if source is None:
        return {}
    embedding = source.get("class_name") == "Embedding"
    value = 0 if embedding else source.get("config", {}).get("mask_value", 0.0)
    x = _node_call(source)[0]
    out: dict[str, set[str]] = {}
    for name, op in layers.items():
        args = ((op.get("inbound_nodes") or [{}])[0] or {})
        args = args.get("args", []) if isinstance(args, dict) else []
        if op.get("class_name") == "NotEqual" and len(args) == 2 and _tensors(args[0]) == x \
                and args[1] == value:
            out[name] = {name}
    if embedding:
        return out
    anys = {}
    for name, op in layers.items():
        conf = op.get("config", {})
        parents = _node_call(op)[0] if op.get("class_name") == "Any" else []
        if len(parents) == 1 and parents[0] in out and conf.get("axis") in (-1, [-1]) \
                and not conf.get("keepdims", False):
            anys[name] = {name, parents[0]}
    return anys


def _checked_masks(chain: list[Mapping[str, Any]], masked: list[tuple[str, str]],
                   layers: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The operation layers computing the masks the layers of ``chain`` are called with
    (``masked``: (layer, mask layer) names), each checked to be the mask of the chain's
    ``Embedding(mask_zero=True)`` or ``Masking`` layer."""
    source = next((la for la in chain if (_is_layer(la, "Embedding") and la.get(
        "config", {}).get("mask_zero")) or _is_layer(la, "Masking")), None)
    allowed = _mask_ops(source, layers)
    ops: set[str] = set()
    for name, mask in masked:
        if mask not in allowed:
            maker = _what(layers[mask]) if mask in layers else repr(mask)
            raise _refuse(f"layer {name!r} called with a mask computed by {maker}",
                          "rnn-ref reads the mask of an Embedding(mask_zero=True) or a "
                          "Masking layer")
        ops |= allowed[mask]
    return ops


def _walk(layers: Mapping[str, Mapping[str, Any]], name: str, start: str
          ) -> tuple[list[Mapping[str, Any]], list[tuple[str, str]]]:
    """The chain of layers from the input layer ``start`` to layer ``name``, and the
    (layer, mask layer) names of the calls given a mask."""
    chain: list[Mapping[str, Any]] = []
    masked: list[tuple[str, str]] = []
    while True:
        if name not in layers:
            raise _refuse(f"a graph naming the unknown layer {name!r}")
        layer: Mapping[str, Any] = layers[name]
        parents, mask = _node_call(layer)
        pair = _hand_made(layer, parents, layers)
        if pair is not None:
            layer, parents, mask = pair
        if mask is not None:
            masked.append((name, mask))
        chain.insert(0, layer)
        if not parents:
            break
        if len(parents) != 1:
            raise _refuse(f"{_what(layer)} taking {len(parents)} inputs {parents}",
                          "rnn-ref reads a chain of layers (and Bidirectional layers made "
                          "by hand: a merge of a forward and a go_backwards layer)")
        name = parents[0]
    if _name(chain[0]) != start:
        raise _refuse(f"a graph whose output does not come from its input {start!r}")
    return chain, masked


@dataclass(frozen=True)
class _Outputs:
    """A functional model's outputs, ``(layer name, tensor index)`` each, in order, and which
    one ends the chain (the longest path from the input)."""

    refs: tuple[tuple[str, int], ...]
    main: int


def _functional_chain(config: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], _Outputs]:
    """The chain to the model's deepest output; every other output must be a tensor of a
    layer on it (read by :meth:`_Reader.returns`)."""
    layers = {_name(layer): layer for layer in config.get("layers", [])}
    inputs, outputs = _refs(config.get("input_layers")), _refs(config.get("output_layers"))
    if len(inputs) != 1 or not outputs:
        raise _refuse(f"a model with {len(inputs)} inputs and {len(outputs)} outputs",
                      "rnn-ref reads a chain from one input to its outputs")
    walks = [_walk(layers, name, inputs[0][0]) for name, _ in outputs]
    main = max(range(len(walks)), key=lambda i: len(walks[i][0]))
    chain, masked = walks[main]
    met = {n for la in chain for n in (_name(la), *la.get("pair", ()))}
    for name, _ in outputs:
        if name not in met:
            raise _refuse(f"the output of layer {name!r}, off the path to the output "
                          f"{outputs[main][0]!r}",
                          "rnn-ref reads one chain; a model's other outputs are states or the "
                          "sequence of its recurrent layers")
    unused = sorted(set(layers) - met - _checked_masks(chain, masked, layers))
    if unused:
        raise _refuse(f"layers {unused} off the path from the input to the output")
    return chain, _Outputs(tuple(outputs), main)


def layer_chain(model_config: Mapping[str, Any]
                ) -> tuple[list[Mapping[str, Any]], Any, _Outputs | None]:
    """The layers of a ``Sequential`` or functional config, input to output, the input
    shape it records (``None`` when it has none) and a functional model's outputs (``None``
    for a ``Sequential``).

    ``model_config`` is ``{"class_name": ..., "config": {...}}`` (a file's) or the inner
    ``config`` itself (``model.get_config()``)."""
    if not isinstance(model_config, Mapping):
        raise _refuse(f"a model config of type {type(model_config).__name__}")
    config = model_config.get("config", model_config) if "class_name" in model_config \
        else model_config
    if not isinstance(config, Mapping) or not isinstance(config.get("layers"), list):
        raise _refuse(f"a model of class {model_config.get('class_name')!r} without a layer list",
                      "rnn-ref reads Sequential and functional models")
    if "input_layers" in config:
        chain, outputs = _functional_chain(config)
        return chain, None, outputs
    return list(config["layers"]), config.get("build_input_shape"), None


# --------------------------------------------------------------------------------------------
# the layers, one by one
# --------------------------------------------------------------------------------------------
def _what(layer: Mapping[str, Any]) -> str:
    cls = layer.get("class_name", "?")
    module = str(layer.get("module") or "")
    if ".ops" in module or cls in ("TFOpLambda", "SlicingOpLambda"):
        fn = layer.get("config", {}).get("function", cls)
        return f"the operation {fn} ({_name(layer)!r})"
    return f"the {cls} layer {_name(layer)!r}"


def _is_layer(layer: Mapping[str, Any], cls: str) -> bool:
    module = str(layer.get("module") or "keras.layers")
    return layer.get("class_name") == cls and ".ops" not in module


def recurrent_config(layer: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The cell (:data:`LAYER_CELLS`: ``"elman"``, ``"gru"``, ``"lstm"``) and the config of a
    ``SimpleRNN``, ``GRU`` or ``LSTM`` layer, or of a generic ``RNN`` layer around one
    ``SimpleRNNCell``, ``GRUCell`` or ``LSTMCell`` (its cell's config under the layer's own
    keys, ``_RNN_KEYS``: that layer computes what ``SimpleRNN``, ``GRU`` or ``LSTM`` does).

    Raises:
        UnsupportedError: another layer, or an ``RNN`` around another cell (named).
    """
    conf = layer.get("config", {})
    cls = str(layer.get("class_name"))
    if cls in LAYER_CELLS and _is_layer(layer, cls):
        return LAYER_CELLS[cls], conf
    if not _is_layer(layer, "RNN"):
        raise _refuse(_what(layer), "rnn-ref reads SimpleRNN, GRU, LSTM and RNN around one "
                      "of their cells")
    cell = conf.get("cell")
    name = cell.get("class_name") if isinstance(cell, Mapping) else None
    if isinstance(cell, Mapping) and name in CELL_CLASSES and _is_layer(cell, str(name)):
        return CELL_CLASSES[str(name)], {**cell.get("config", {}),
                                         **{k: conf[k] for k in _RNN_KEYS if k in conf}}
    inner = (f"a {name}" if isinstance(cell, Mapping) else
             f"{len(cell)} cells" if isinstance(cell, list) else repr(cell))
    raise _refuse(f"{_what(layer)} around {inner}",
                  f"rnn-ref reads RNN around one of {', '.join(CELL_CLASSES)}; a stack of "
                  f"cells is a stack of layers")


@dataclass
class _Reader:
    """The state of one pass over the chain."""

    flavour: Flavour
    backend: str
    input_size: int | None = None
    vocab: tuple[int, bool] | None = None  # (V, mask_zero)
    mask_value: float | None = None
    rnn: list[Mapping[str, Any]] = field(default_factory=list)  # (name, config, kind)
    head: list[Dense] = field(default_factory=list)
    head_names: list[str] = field(default_factory=list)
    idents: list[tuple[str, float, str, int]] = field(default_factory=list)  # kind rate stage k
    sources: dict[str, Source | None] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    previous: Mapping[str, Any] | None = None
    functional: bool = False  # return_state=True is read only in a functional graph
    pooling: tuple[str, str] | None = None  # (the selection, the pooling layer's name)
    #: (recurrent layer name, tensor index) of each final state -> ("h_n" or "c_n", its
    #: index there)
    state_of: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    #: the recurrent layers whose fused (cuDNN) kernel this process runs on masked inputs
    fused: frozenset[str] = frozenset()

    # -- activations ---------------------------------------------------------------------
    def activation(self, name: Any, where: str, head: bool = False) -> HeadActivation:
        if head and name in ("softmax", "log_softmax"):
            return Softmax(str(name))
        if isinstance(name, Mapping) and name.get("class_name") == "function" and ">" in str(
                name.get("config")):  # a registered function, by its name "package>name"
            name = name.get("config")
        if isinstance(name, str) and name in self.flavour.activations:
            return self.flavour.activations[name]
        extra = ", softmax, log_softmax" if head else ""
        raise _refuse(f"the {self.flavour.name} activation {name!r} ({where})",
                      f"rnn-ref reads {', '.join(self.flavour.activations)}{extra}")

    # -- the layers ------------------------------------------------------------------------
    def take(self, layer: Mapping[str, Any]) -> None:
        cls, conf = str(layer.get("class_name")), layer.get("config", {})
        _check_dtype(layer, conf)
        self.names += [*layer.get("pair", ()), _name(layer)]
        if ".ops" in str(layer.get("module") or ""):
            raise _refuse(_what(layer), "rnn-ref reads Keras layers of the network only")
        if cls == "InputLayer":
            self.input_layer(layer, conf)
        elif cls == "Embedding":
            self.embedding(layer, conf)
        elif cls == "Masking":
            self.before_rnn(layer)
            self.mask_value = float(conf.get("mask_value", 0.0))
        elif cls in IDENTITY_LAYERS:
            kind, key = IDENTITY_LAYERS[cls]
            stage = "head" if self.head else ("rnn" if self.rnn else "input")
            self.idents.append((kind, float(conf.get(key, 0.0)), stage,
                                len(self.head) - 1 if self.head else len(self.rnn)))
        elif cls in _RNN or "pair" in layer:
            self.recurrent(layer, conf)
        elif cls in ("Dense", "TimeDistributed"):
            self.dense(layer, conf)
        elif cls in ("Activation", "Softmax"):
            self.fold(layer, conf)
        elif cls in _POOLS and _is_layer(layer, cls):
            self.pool(layer, conf)
        else:
            raise _refuse(_what(layer), "rnn-ref reads Embedding, Masking, SimpleRNN, GRU, "
                          "LSTM, RNN(SimpleRNNCell|GRUCell|LSTMCell), Bidirectional (or a "
                          "Concatenate, Add, Average "
                          "or Multiply of a forward and a go_backwards layer's final states), "
                          "GlobalAveragePooling1D, GlobalMaxPooling1D, Dense, "
                          "TimeDistributed(Dense), Activation and the dropout and noise "
                          f"layers {', '.join(IDENTITY_LAYERS)}")
        if cls not in IDENTITY_LAYERS:
            self.previous = layer

    def input_layer(self, layer: Mapping[str, Any], conf: Mapping[str, Any]) -> None:
        if len(self.names) > 1:
            raise _refuse(f"{_what(layer)} inside the model")
        shape = conf.get("batch_shape") or conf.get("batch_input_shape")
        if shape and shape[-1] is not None and len(shape) == 3:
            self.input_size = int(shape[-1])

    def before_rnn(self, layer: Mapping[str, Any]) -> None:
        if self.rnn or self.head:
            raise _refuse(f"{_what(layer)} after a recurrent or Dense layer",
                          "it must come before the first recurrent layer")

    def embedding(self, layer: Mapping[str, Any], conf: Mapping[str, Any]) -> None:
        self.before_rnn(layer)
        if self.vocab is not None or self.mask_value is not None or self.idents:
            raise _refuse(f"{_what(layer)} after other layers", "it must be the first layer")
        self.vocab = (int(conf["input_dim"]), bool(conf.get("mask_zero", False)))
        self.input_size = int(conf["output_dim"])
        self.sources["embedding"] = Source(_name(layer), 0)

    def recurrent(self, layer: Mapping[str, Any], conf: Mapping[str, Any]) -> None:
        name = _name(layer)
        if self.head or self.pooling:
            raise _refuse(f"{_what(layer)} after a {'Dense' if self.head else 'pooling'} "
                          f"layer", "the recurrent layers come first, then a pooling, then "
                          "the head")
        if self.rnn:
            below = self.rnn[-1]
            if not below["return_sequences"]:
                raise _refuse(f"{_what(layer)} after {below['name']!r}, which returns its last "
                              f"output only (return_sequences=False)")
            if below["direction"] == "reverse":
                raise _refuse(f"the {below['class']} layer {below['name']!r} with "
                              f"go_backwards=True below another recurrent layer",
                              "Keras hands the next layer its outputs flipped in time (with "
                              "the mask unflipped), which the spec cannot say")
        kind, cells = self.cells(layer, conf)
        direction = ("bidirectional" if len(cells) == 2 else
                     "reverse" if cells[0].get("go_backwards") else "forward")
        inner = layer.get("config", {}).get("layer", {}) if len(cells) == 2 else layer
        entry = {"name": name, "direction": direction, "cells": cells, "kind": kind,
                 "class": inner.get("class_name", "SimpleRNN"),
                 "reset_after": bool(cells[0].get("reset_after",
                                                  self.flavour.reset_after_default)),
                 "merge": conf.get("merge_mode", "concat") if len(cells) == 2 else "concat",
                 "return_sequences": bool(cells[0].get("return_sequences", False))}
        li = len(self.rnn)
        first_state = sum(len(e["cells"]) for e in self.rnn)
        first_cell = sum(len(e["cells"]) for e in self.rnn if e["kind"] == "lstm")
        self.rnn.append(entry)
        pair = layer.get("pair")  # a Bidirectional made by hand: each direction its own layer
        per = 2 if kind == "lstm" else 1  # the states of one direction: [h] or [h, c]
        for r in range(len(cells)):  # Keras' outputs: [output, *states_0[, *states_1]]
            owner, at = (pair[r], 1) if pair else (name, 1 + per * r)
            self.state_of[(owner, at)] = ("h_n", first_state + r)
            if kind == "lstm":
                self.state_of[(owner, at + 1)] = ("c_n", first_cell + r)
        for r, cell in enumerate(cells):
            bias = bool(cell.get("use_bias", True))
            owner, base = (pair[r], 0) if pair else (name, r * (3 if bias else 2))
            self.cell_sources(f"layers.{li}.{r}", kind, entry["reset_after"], owner, base,
                              bias)
        for kind_, key in (("input_dropout", "dropout"), ("recurrent_dropout",
                                                         "recurrent_dropout")):
            rates = {float(c.get(key, 0.0) or 0.0) for c in cells}
            if len(rates) > 1:
                raise _refuse(f"{_what(layer)} whose directions have different {key} {rates}")
            if rates != {0.0}:
                self.idents.append((kind_, rates.pop(), "cell", li))

    def cell_sources(self, prefix: str, kind: str, reset_after: bool, owner: str, base: int,
                     bias: bool) -> None:
        """Where each canonical array of one cell (``prefix`` ``layers.{l}.{r}``) is: the
        layer ``owner``'s weights from ``base`` on, ``kernel``, ``recurrent_kernel``[,
        ``bias``]; a gated cell's blocks split in Keras' gate order, a reset-after GRU's two
        bias rows; ``None`` (zeros) for a bias the layer does not hold."""
        if kind == "elman":
            self.sources[f"{prefix}.w_x"] = Source(owner, base)
            self.sources[f"{prefix}.w_h"] = Source(owner, base + 1)
            self.sources[f"{prefix}.b_x"] = Source(owner, base + 2) if bias else None
            self.sources[f"{prefix}.b_h"] = None
            return
        order = f"{kind}:keras"
        two = kind == "gru" and reset_after  # bias (2, 3M): b_x, b_h
        for g in GATES[kind]:
            self.sources[f"{prefix}.w_x.{g}"] = Source(owner, base, gate=g, order=order)
            self.sources[f"{prefix}.w_h.{g}"] = Source(owner, base + 1, gate=g, order=order)
            self.sources[f"{prefix}.b_x.{g}"] = Source(
                owner, base + 2, row=0 if two else None, gate=g, order=order) if bias else None
            self.sources[f"{prefix}.b_h.{g}"] = Source(
                owner, base + 2, row=1, gate=g, order=order) if bias and two else None

    def cells(self, layer: Mapping[str, Any], conf: Mapping[str, Any]
              ) -> tuple[str, list[Mapping[str, Any]]]:
        """The layer's cell (``"elman"``, ``"gru"``, ``"lstm"``) and the config of each
        direction (forward first), checked."""
        if layer.get("class_name") == "Bidirectional" or "pair" in layer:
            parts = [conf.get("layer", {}), conf.get("backward_layer")]
            for part in parts:
                if part and part.get("class_name") not in (*LAYER_CELLS, "RNN"):
                    raise _refuse(f"{_what(layer)} around a {part.get('class_name')} layer",
                                  "rnn-ref reads SimpleRNN, GRU, LSTM and RNN layers")
            kind, fwd = recurrent_config(parts[0])
            kind_b, bwd = recurrent_config(parts[1]) if parts[1] else (kind, {
                **fwd, "go_backwards": not fwd.get("go_backwards", False)})
            if fwd.get("go_backwards") or not bwd.get("go_backwards"):
                raise _refuse(f"{_what(layer)} whose forward layer goes backwards")
            if kind_b != kind:
                raise _refuse(f"{_what(layer)} of a {kind} and a {kind_b} direction",
                              "the spec's layer has one cell for both directions")
            cells = [fwd, bwd]
        else:
            kind, conf0 = recurrent_config(layer)
            cells = [conf0]
        default = self.flavour.reset_after_default
        if kind == "gru" and len({bool(c.get("reset_after", default)) for c in cells}) > 1:
            raise _refuse(f"{_what(layer)} whose directions differ in reset_after",
                          "the spec's layer has one reset_after for both directions")
        for cell in cells:
            self.check_cell(layer, conf, cell)
        return kind, cells

    def check_cell(self, layer: Mapping[str, Any], conf: Mapping[str, Any],
                   cell: Mapping[str, Any]) -> None:
        """Refuse what one direction's config says that a model of the spec cannot:
        ``time_major``, ``stateful``, ``return_state`` where it cannot be an output."""
        if cell.get("time_major"):  # Keras 2's: the layer takes (T, N, ...) arrays
            raise _refuse(f"{_what(layer)} with time_major=True",
                          "a model's layers take (N, T, ...) arrays")
        if cell.get("stateful"):
            raise _refuse(f"{_what(layer)} with stateful=True",
                          "a model keeps no state between calls")
        if cell.get("return_state") and not self.functional:
            raise _refuse(f"{_what(layer)} with return_state=True in a Sequential model",
                          "a Sequential layer hands on one tensor; a functional model "
                          "may return the states")
        if cell.get("return_state") and conf.get("merge_mode", "concat") is None:
            raise _refuse(f"{_what(layer)} with return_state=True and merge_mode=None")

    def dense(self, layer: Mapping[str, Any], conf: Mapping[str, Any]) -> None:
        if layer.get("class_name") == "TimeDistributed":
            inner = conf.get("layer", {})
            if not _is_layer(inner, "Dense"):
                raise _refuse(f"{_what(layer)} around a {inner.get('class_name')} layer",
                              "rnn-ref reads TimeDistributed(Dense)")
            conf = inner.get("config", {})
        if not self.rnn:
            raise _refuse(f"{_what(layer)} before the first recurrent layer")
        name, j = _name(layer), len(self.head)
        bias = bool(conf.get("use_bias", True))
        self.head.append(Dense(int(conf["units"]), self.activation(
            conf.get("activation", "linear"), name, head=True), bias))
        self.head_names.append(name)
        self.sources[f"head.{j}.w"] = Source(name, 0)
        self.sources[f"head.{j}.b"] = Source(name, 1) if bias else None

    def fold(self, layer: Mapping[str, Any], conf: Mapping[str, Any]) -> None:
        """An ``Activation`` (or a ``Softmax`` layer on the last axis) into the linear Dense
        just before it."""
        if layer.get("class_name") == "Softmax":
            axis = conf.get("axis", -1)
            if axis not in (-1, [-1]):
                raise _refuse(f"{_what(layer)} over axis {axis}", "softmax over the last axis")
            act: HeadActivation = Softmax("softmax")
        else:
            act = self.activation(conf.get("activation"), _name(layer), head=True)
        prev = self.previous
        if prev is None or prev.get("class_name") not in ("Dense", "TimeDistributed") \
                or self.head[-1].activation != Activation("linear"):
            after = "the input" if prev is None else _what(prev)
            raise _refuse(f"{_what(layer)} ({act}) after {after}",
                          "an activation layer folds only into a linear Dense just before it")
        last = self.head[-1]
        self.head[-1] = Dense(last.units, act, last.bias)

    def pool(self, layer: Mapping[str, Any], conf: Mapping[str, Any]) -> None:
        """``GlobalAveragePooling1D`` (the mean over the valid steps: Keras weighs by the
        mask) or ``GlobalMaxPooling1D`` (the maximum over all steps: Keras ignores the mask)
        right after the last recurrent layer's sequence."""
        if not self.rnn or self.head or self.pooling:
            where = ("before the first recurrent layer" if not self.rnn else
                     "after a Dense layer" if self.head else "after another pooling layer")
            raise _refuse(f"{_what(layer)} {where}",
                          "it pools the last recurrent layer's sequence")
        below = self.rnn[-1]
        if not below["return_sequences"]:
            raise _refuse(f"{_what(layer)} after {below['name']!r}, which returns its last "
                          f"output only (return_sequences=False)")
        fmt, keep = conf.get("data_format", "channels_last"), conf.get("keepdims", False)
        if fmt not in (None, "channels_last") or keep:
            raise _refuse(f"{_what(layer)} with data_format={fmt!r}, keepdims={keep!r}",
                          "rnn-ref pools over the time axis of (N, T, F) into (N, F)")
        self.pooling = (_POOLS[str(layer.get("class_name"))], _name(layer))

    def selection(self) -> tuple[str, str]:
        """The selection and the output order of the last layer."""
        last = self.rnn[-1]
        order = "processing" if last["direction"] == "reverse" else "aligned"
        if self.pooling is None:
            return ("sequence" if last["return_sequences"] else "final"), order
        how, name = self.pooling
        if how == "mean_valid" and order == "processing":
            if (self.vocab is not None and self.vocab[1]) or self.mask_value is not None:
                raise _refuse(f"the GlobalAveragePooling1D layer {name!r} over the "
                              f"go_backwards layer {last['name']!r} on masked inputs",
                              "Keras weighs outputs in processing order by the mask in time "
                              "order: a mean over other steps than the valid ones")
            order = "aligned"  # unmasked: the mean over all steps, in either order
        return how, order

    def returns(self, outputs: _Outputs | None, order: str) -> tuple[str, ...]:
        """What a functional model returns (``RNNConfig.returns``): the main output is the
        result; the others are final states (``h_n[k]``, k < 0) or the last recurrent
        layer's sequence."""
        if outputs is None:
            return ("result",)
        totals = {"h_n": sum(len(e["cells"]) for e in self.rnn),
                  "c_n": sum(len(e["cells"]) for e in self.rnn if e["kind"] == "lstm")}
        last = self.rnn[-1]
        out = []
        for i, (name, k) in enumerate(outputs.refs):
            if (name, k) in self.state_of:
                which, index = self.state_of[(name, k)]
                out.append(f"{which}[{index - totals[which]}]")
            elif i == outputs.main and k == 0:
                out.append("result")
            elif (name, k) == (last["name"], 0) and last["return_sequences"] and not (
                    last["direction"] == "reverse" and order == "aligned"):
                out.append("sequence")
            else:
                raise _refuse(f"the model output {k} of layer {name!r}",
                              "a model's other outputs are final states (return_state=True: "
                              "h, and c of an LSTM) or the last recurrent layer's sequence")
        return tuple(out)

    # -- the network -----------------------------------------------------------------------
    def identities(self) -> list[Identity]:
        L = len(self.rnn)
        out = []
        for kind, rate, stage, k in self.idents:
            after = {"input": 0, "rnn": k, "cell": k, "head": L + 1 + k}[stage]
            out.append(Identity(kind, rate, after))
        return out

    def padded_output(self) -> str:
        """What the last layer's masked steps output on this Keras backend ("zeros" without a
        mask source: the model never pads)."""
        masked = (self.vocab is not None and self.vocab[1]) or self.mask_value is not None
        last = self.rnn[-1]
        if not masked or last["direction"] == "bidirectional":
            return "zeros"  # Bidirectional forces zero_output_for_mask when it returns sequences
        cell = last["cells"][0]
        zero = bool(cell.get("zero_output_for_mask", False))
        if zero and not last["return_sequences"]:
            raise _refuse(f"the {last['class']} layer {last['name']!r} with "
                          f"zero_output_for_mask=True and return_sequences=False on masked "
                          f"inputs", "its last output is zeros for a sample padded at the "
                          "end, not its final state")
        return keras_masked_step_output(self.backend, zero_output_for_mask=zero,
                                        unroll=bool(cell.get("unroll", False)),
                                        fused=last["name"] in self.fused)

    def network(self, input_size: int | None, outputs: _Outputs | None = None
                ) -> KerasNetwork:
        if not self.rnn:
            raise _refuse("a model without a recurrent layer (SimpleRNN, GRU, LSTM, RNN or "
                          "Bidirectional)")
        d = self.input_size or input_size
        if d is None:
            raise ValueError("the model does not record its input width: build it first")
        biases = {bool(c.get("use_bias", True)) for e in self.rnn for c in e["cells"]}
        if len(biases) > 1:
            raise _refuse("recurrent layers with and without a bias",
                          "the spec has one bias flag for the stack")
        select, order = self.selection()
        returns = self.returns(outputs, order)
        if select == "max_all" and "sequence" not in returns:
            order = "aligned"  # the maximum over all steps, in either order
        acts = [[cast(Activation, self.activation(c.get("activation", "tanh"), e["name"]))
                 for c in e["cells"]] for e in self.rnn]
        kinds = [str(e["kind"]) for e in self.rnn]
        gates = [None if e["kind"] == "elman" else [cast(Activation, self.activation(
            c.get("recurrent_activation", "sigmoid"), f"{e['name']}, recurrent_activation"))
            for c in e["cells"]] for e in self.rnn]
        config = RNNConfig(
            d, [int(e["cells"][0]["units"]) for e in self.rnn],
            direction=[e["direction"] for e in self.rnn], activation=acts, cell=kinds,
            recurrent_activation=None if set(kinds) == {"elman"} else gates,
            reset_after=[bool(e["reset_after"]) if e["kind"] == "gru" else None
                         for e in self.rnn] if "gru" in kinds else True,
            bias=biases.pop(), merge_mode=[e["merge"] for e in self.rnn],
            padded_output=self.padded_output(),
            output_order=order, vocab_size=None if self.vocab is None else self.vocab[0],
            mask_zero=self.vocab is not None and self.vocab[1], mask_value=self.mask_value,
            select=select, head=self.head, identities=self.identities(),
            returns=returns)
        return KerasNetwork(config, dict(self.sources), tuple(self.names))


#: the dtype (or dtype policy) names a Keras layer config may hold: plain dtypes, mixed
#: precision, quantized policies (``int8_from_float32``)
_DTYPE_NAME = re.compile(r"(mixed_)?(b?float(8\w*|16|32|64)|u?int(4|8|16|32|64)|bool)"
                         r"(_from_\w+)?")


def _check_dtype(layer: Mapping[str, Any], conf: Any) -> None:
    """Refuse a layer whose ``dtype`` names no dtype (a damaged file: Keras could not build
    it); Keras 3 writes a ``DTypePolicy`` object, Keras 2 a name or a ``Policy``."""
    dtype = conf.get("dtype") if isinstance(conf, Mapping) else None
    if isinstance(dtype, Mapping):
        dtype = (dtype.get("config") or {}).get("name")
    if dtype is not None and not (isinstance(dtype, str) and _DTYPE_NAME.fullmatch(dtype)):
        raise _refuse(f"{_what(layer)} with dtype {str(dtype)[:40]!r}",
                      "that names no dtype Keras computes in")


def _first_build_shape(chain: list[Mapping[str, Any]]) -> int | None:
    """The input width from the first layer's ``build_config`` (Keras 3), if any."""
    for layer in chain:
        if layer.get("class_name") == "InputLayer":
            continue
        if "pair" in layer:  # a Bidirectional made by hand: its forward layer's input
            layer = layer["config"]["layer"]
        shape = (layer.get("build_config") or {}).get("input_shape")
        if layer.get("class_name") == "Embedding" or not shape:
            return None
        return int(shape[-1]) if shape[-1] is not None else None
    return None


def parse_model(model_config: Mapping[str, Any], *, flavour: Flavour = KERAS3,
                backend: str = "tensorflow", input_size: int | None = None,
                fused: frozenset[str] = frozenset()) -> KerasNetwork:
    """The network of a model config (see the module docstring).

    Args:
        model_config: ``model.get_config()``, or ``{"class_name", "config"}`` from a file.
        flavour: :data:`KERAS3` or :data:`KERAS2`.
        backend: the Keras backend the model runs on (its masked steps' output).
        input_size: D, when the config does not record it.
        fused: the names of the recurrent layers that Keras runs through its fused cuDNN
            kernel on masked inputs in the process the model runs in (their padded steps
            output zeros: :func:`~rnn_ref.backends.keras.record.keras_masked_step_output`).

    Raises:
        UnsupportedError: a layer, an operation or an arrangement the spec does not have,
            named.
        ValueError: no input width anywhere.
    """
    chain, build_shape, outputs = layer_chain(model_config)
    reader = _Reader(flavour, backend, functional=outputs is not None, fused=fused)
    for layer in chain:
        if not isinstance(layer, Mapping):
            raise _refuse(f"a layer entry of type {type(layer).__name__}")
        reader.take(layer)
    if build_shape and len(build_shape) == 3 and build_shape[-1] is not None:
        input_size = input_size or int(build_shape[-1])
    return reader.network(input_size or _first_build_shape(chain), outputs)


def _declared(config: RNNConfig, key: str) -> list[tuple[str, int, int]]:
    """What the layer config declares of the array ``key``'s shape: (config key, size,
    axis) each."""
    parts = key.split(".")
    if parts[0] == "embedding":
        return [("input_dim", config.vocab_size or 0, 0), ("output_dim", config.input_size, -1)]
    if parts[0] == "layers" and parts[3] in ("w_x", "w_h"):
        return [("units", config.hidden_sizes[int(parts[1])], -1)]
    if parts[0] == "head" and parts[2] == "w":
        return [("units", config.head[int(parts[1])].units, -1)]
    return []


def _check_fits(config: RNNConfig, key: str, layer: str, array: np.ndarray[Any, Any]) -> None:
    """The sizes a layer's config declares are those of its weights (a file whose config
    says ``Dense(units=4)`` over a ``(6, 3)`` kernel is refused, not read by either).

    Raises:
        FileFormatError: naming the layer, the config key, what it declares and holds.
    """
    for name, size, axis in _declared(config, key):
        held = array.shape[axis] if array.ndim else 0
        if held != size:
            raise FileFormatError(f"layer {layer!r} declares {name}={size} but its weights "
                                  f"hold {held}")


def _part(config: RNNConfig, key: str, src: Source, array: np.ndarray[Any, Any]
          ) -> np.ndarray[Any, Any]:
    """The canonical array ``key`` out of the layer's array ``array``: its row ``src.row``,
    then its block of gate ``src.gate`` (:func:`rnn_ref.cells.unpack` in ``src.order``).

    Raises:
        FileFormatError: an array that does not hold the rows or the G blocks of M units
            its layer's config declares, naming the layer.
    """
    if src.row is not None:
        if array.ndim != 2 or array.shape[0] != 2:
            raise FileFormatError(f"layer {src.layer!r}: its bias of shape {array.shape} is "
                                  f"not the (2, 3*units) of a GRU with reset_after=True")
        array = array[src.row]
    if src.gate is None or src.order is None:
        return array
    cell = src.order.split(":")[0]
    G = len(GATE_ORDERS[src.order][0])
    m = config.hidden_sizes[int(key.split(".")[1])]
    is_bias = key.split(".")[3] in ("b_x", "b_h")
    if array.ndim != (1 if is_bias else 2) or array.shape[-1] != G * m:
        raise FileFormatError(f"layer {src.layer!r} declares units={m} but its "
                              f"{'bias' if is_bias else 'kernel'} has shape {array.shape}, "
                              f"not {G} {cell.upper()} gates of {m} on the last axis")
    return unpack(array, src.order, cell=cell, axis=-1)[src.gate]


def assemble(net: KerasNetwork, fetch: Callable[[str, int], Any]) -> RNNParams:
    """The parameters of ``net``, each array ``fetch(layer_name, index)`` (a gated cell's
    blocks split out of it, :class:`Source`; zeros where the model has none), checked by
    :class:`~rnn_ref.RNNParams`."""
    arrays: dict[str, Any] = {}
    missing: list[str] = []
    fetched: dict[tuple[str, int], np.ndarray[Any, Any]] = {}
    for key, src in net.sources.items():
        if src is None:
            missing.append(key)
        else:
            where = (src.layer, src.index)
            if where not in fetched:
                fetched[where] = np.asarray(fetch(src.layer, src.index))
            arrays[key] = _part(net.config, key, src, fetched[where])
            _check_fits(net.config, key, src.layer, arrays[key])
    dtype = next(iter(arrays.values())).dtype
    cfg = net.config
    for key in missing:  # b_x of a bias-free layer, every b_h, b of a Dense without bias
        parts = key.split(".")
        size = cfg.hidden_sizes[int(parts[1])] if parts[0] == "layers" \
            else cfg.head[int(parts[1])].units
        arrays[key] = np.zeros(size, dtype)
    return RNNParams.from_arrays(cfg, arrays)
