"""A Keras model's configuration (JSON) read into the network of the spec, without Keras.

:func:`parse_model` takes what ``model.get_config()`` returns, what a ``.keras`` archive's
``config.json`` and a legacy ``.h5`` file's ``model_config`` attribute hold (a ``Sequential``
layer list or a functional graph), and returns a :class:`KerasNetwork`: the
:class:`~rnn_ref.RNNConfig` and, for each canonical array, where its weights are (a layer name
and the position in that layer's weights, ``layer.get_weights()`` order). :func:`assemble`
then builds the :class:`~rnn_ref.RNNParams` from any ``fetch(layer, index)``.

Every layer and operation met is accounted for: it is a piece of the network or the model is
refused naming it (``UnsupportedError``). A functional graph must be one chain from one input
to one output. What is read (Keras 3.15 ``keras/src/layers``; Keras 2 writes the same keys,
with ``batch_input_shape`` and list-form inbound nodes):

* ``InputLayer``; ``Embedding`` (``mask_zero``); ``Masking`` (``mask_value``);
* ``SimpleRNN`` and ``Bidirectional(SimpleRNN)``, every layer its own direction; ``dropout``
  and ``recurrent_dropout`` are recorded as identities of the layer; ``go_backwards`` only on
  the last recurrent layer (Keras hands the next layer its outputs flipped);
* ``Dropout``, ``SpatialDropout1D``, ``GaussianNoise``, ``GaussianDropout``, ``AlphaDropout``
  (identities with their rate and position);
* ``Dense`` and ``TimeDistributed(Dense)`` (the head), and ``Activation`` (or ``Softmax``
  on the last axis) folded into the ``Dense`` just before it when that one is linear.

The flavour says which Keras wrote the config: its activation set (Keras 2's
``hard_sigmoid`` is ``0.2 x + 0.5``) and its name in messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends.keras.record import KERAS_ACTIVATIONS, keras_masked_step_output
from rnn_ref.backends.keras2.record import KERAS2_ACTIVATIONS
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.network import Dense, HeadActivation, Identity, Softmax
from rnn_ref.params import CellParams, RNNParams

__all__ = ["IDENTITY_LAYERS", "KERAS2", "KERAS3", "Flavour", "KerasNetwork", "Source",
           "assemble", "layer_chain", "parse_model", "read_cell"]


@dataclass(frozen=True)
class Flavour:
    """Which Keras wrote a config: its name in messages and its activation set."""

    name: str
    activations: Mapping[str, Activation]


KERAS3 = Flavour("Keras", KERAS_ACTIVATIONS)
KERAS2 = Flavour("Keras 2", KERAS2_ACTIVATIONS)


def read_cell(layer: Any, simple_rnn: type[Any], flavour: Flavour,
              to_numpy: Callable[[Any], np.ndarray[Any, Any]]
              ) -> tuple[CellParams, Activation]:
    """A built ``SimpleRNN`` layer object (of the class ``simple_rnn`` of Keras 3 or Keras 2)
    as one canonical cell (its one bias in ``b_x``) and its activation; ``to_numpy`` turns the
    framework's variables into arrays.

    Raises:
        UnsupportedError: another layer, a stateful one, or an activation outside the
            flavour's set (named).
        ValueError: the layer is not built yet.
    """
    if not isinstance(layer, simple_rnn):
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

#: Keras layers that are the identity at inference: (the Identity kind, its rate's key)
IDENTITY_LAYERS: Mapping[str, tuple[str, str]] = {
    "Dropout": ("dropout", "rate"), "SpatialDropout1D": ("spatial_dropout_1d", "rate"),
    "GaussianNoise": ("gaussian_noise", "stddev"), "GaussianDropout": ("gaussian_dropout", "rate"),
    "AlphaDropout": ("alpha_dropout", "rate"),
}
_RNN = ("SimpleRNN", "Bidirectional")


@dataclass(frozen=True)
class Source:
    """Where one canonical array is: position ``index`` in the weights of layer ``layer``."""

    layer: str
    index: int


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


def _refs(spec: Any) -> list[str]:
    """Layer names of ``input_layers``/``output_layers`` (``[name, 0, 0]`` or a list of them)."""
    if isinstance(spec, list) and spec and isinstance(spec[0], str):
        return [spec[0]]
    return [str(s[0]) for s in spec or []]


def _tensors(obj: Any) -> list[str]:
    """The layer names of the Keras tensors among a Keras 3 node's arguments."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return [str(obj["config"]["keras_history"][0])]
        return [n for v in obj.values() for n in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [n for v in obj for n in _tensors(v)]
    return []


def _node_inputs(layer: Mapping[str, Any]) -> list[str]:
    """The names of the layers feeding ``layer``'s one call (refused: a shared layer, a call
    with arguments beyond its input)."""
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise _refuse(f"layer {_name(layer)!r} called {len(nodes)} times (a shared layer)")
    if not nodes:
        return []
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        kwargs = {k: v for k, v in node.get("kwargs", {}).items()
                  if not (k == "training" or (k == "mask" and v is None))}
        if kwargs:
            raise _refuse(f"layer {_name(layer)!r} called with {sorted(kwargs)}")
        return _tensors(node.get("args", []))
    names = []  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
    for entry in node:
        if len(entry) > 3 and entry[3]:
            raise _refuse(f"layer {_name(layer)!r} called with {sorted(entry[3])}")
        names.append(str(entry[0]))
    return names


def _functional_chain(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    layers = {_name(layer): layer for layer in config.get("layers", [])}
    inputs, outputs = _refs(config.get("input_layers")), _refs(config.get("output_layers"))
    if len(inputs) != 1 or len(outputs) != 1:
        raise _refuse(f"a model with {len(inputs)} inputs and {len(outputs)} outputs",
                      "rnn-ref reads a chain from one input to one output")
    chain: list[Mapping[str, Any]] = []
    name = outputs[0]
    while True:
        if name not in layers:
            raise _refuse(f"a graph naming the unknown layer {name!r}")
        layer = layers[name]
        chain.insert(0, layer)
        parents = _node_inputs(layer)
        if not parents:
            break
        if len(parents) != 1:
            raise _refuse(f"{_what(layer)} taking {len(parents)} inputs {parents}",
                          "rnn-ref reads a chain of layers")
        name = parents[0]
    if _name(chain[0]) != inputs[0]:
        raise _refuse(f"a graph whose output does not come from its input {inputs[0]!r}")
    unused = sorted(set(layers) - {_name(layer) for layer in chain})
    if unused:
        raise _refuse(f"layers {unused} off the path from the input to the output")
    return chain


def layer_chain(model_config: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], Any]:
    """The layers of a ``Sequential`` or functional config, input to output, and the input
    shape it records (``None`` when it has none).

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
        return _functional_chain(config), None
    return list(config["layers"]), config.get("build_input_shape")


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

    # -- activations ---------------------------------------------------------------------
    def activation(self, name: Any, where: str, head: bool = False) -> HeadActivation:
        if head and name in ("softmax", "log_softmax"):
            return Softmax(str(name))
        if isinstance(name, str) and name in self.flavour.activations:
            return self.flavour.activations[name]
        extra = ", softmax, log_softmax" if head else ""
        raise _refuse(f"the {self.flavour.name} activation {name!r} ({where})",
                      f"rnn-ref reads {', '.join(self.flavour.activations)}{extra}")

    # -- the layers ------------------------------------------------------------------------
    def take(self, layer: Mapping[str, Any]) -> None:
        cls, conf = str(layer.get("class_name")), layer.get("config", {})
        self.names.append(_name(layer))
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
        elif cls in _RNN:
            self.recurrent(layer, conf)
        elif cls in ("Dense", "TimeDistributed"):
            self.dense(layer, conf)
        elif cls in ("Activation", "Softmax"):
            self.fold(layer, conf)
        else:
            raise _refuse(_what(layer), "rnn-ref reads Embedding, Masking, SimpleRNN, "
                          "Bidirectional, Dense, TimeDistributed(Dense), Activation and the "
                          f"dropout and noise layers {', '.join(IDENTITY_LAYERS)}")
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
        if self.head:
            raise _refuse(f"{_what(layer)} after a Dense layer", "the head comes last")
        if self.rnn:
            below = self.rnn[-1]
            if not below["return_sequences"]:
                raise _refuse(f"{_what(layer)} after {below['name']!r}, which returns its last "
                              f"output only (return_sequences=False)")
            if below["direction"] == "reverse":
                raise _refuse(f"the SimpleRNN layer {below['name']!r} with go_backwards=True "
                              f"below another recurrent layer",
                              "Keras hands the next layer its outputs flipped in time (with "
                              "the mask unflipped), which the spec cannot say")
        cells = self.cells(layer, conf)
        direction = ("bidirectional" if len(cells) == 2 else
                     "reverse" if cells[0].get("go_backwards") else "forward")
        entry = {"name": name, "direction": direction, "cells": cells,
                 "merge": conf.get("merge_mode", "concat") if len(cells) == 2 else "concat",
                 "return_sequences": bool(cells[0].get("return_sequences", False))}
        li = len(self.rnn)
        self.rnn.append(entry)
        for r, cell in enumerate(cells):
            bias = bool(cell.get("use_bias", True))
            base = r * (3 if bias else 2)
            for k, n in enumerate(("w_x", "w_h")):
                self.sources[f"layers.{li}.{r}.{n}"] = Source(name, base + k)
            self.sources[f"layers.{li}.{r}.b_x"] = Source(name, base + 2) if bias else None
            self.sources[f"layers.{li}.{r}.b_h"] = None
        for kind, key in (("input_dropout", "dropout"), ("recurrent_dropout",
                                                        "recurrent_dropout")):
            rates = {float(c.get(key, 0.0) or 0.0) for c in cells}
            if len(rates) > 1:
                raise _refuse(f"{_what(layer)} whose directions have different {key} {rates}")
            if rates != {0.0}:
                self.idents.append((kind, rates.pop(), "cell", li))

    def cells(self, layer: Mapping[str, Any], conf: Mapping[str, Any]
              ) -> list[Mapping[str, Any]]:
        """The SimpleRNN config of each direction (forward first), checked."""
        if layer.get("class_name") == "Bidirectional":
            inner = conf.get("layer", {})
            back = conf.get("backward_layer") or {
                **inner, "config": {**inner.get("config", {}),
                                    "go_backwards": not inner.get("config", {}).get(
                                        "go_backwards", False)}}
            for part in (inner, back):
                if part.get("class_name") != "SimpleRNN":
                    raise _refuse(f"{_what(layer)} around a {part.get('class_name')} layer",
                                  "only SimpleRNN is an Elman RNN")
            fwd, bwd = inner.get("config", {}), back.get("config", {})
            if fwd.get("go_backwards") or not bwd.get("go_backwards"):
                raise _refuse(f"{_what(layer)} whose forward layer goes backwards")
            cells = [fwd, bwd]
        else:
            cells = [conf]
        for cell in cells:
            for flag in ("stateful", "return_state"):
                if cell.get(flag):
                    raise _refuse(f"{_what(layer)} with {flag}=True",
                                  "a model returns one output and keeps no state between "
                                  "calls")
        return cells

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
            raise _refuse(f"the SimpleRNN layer {last['name']!r} with zero_output_for_mask=True "
                          f"and return_sequences=False on masked inputs",
                          "its last output is zeros for a sample padded at the end, not its "
                          "final state")
        return keras_masked_step_output(self.backend, zero_output_for_mask=zero,
                                        unroll=bool(cell.get("unroll", False)))

    def network(self, input_size: int | None) -> KerasNetwork:
        if not self.rnn:
            raise _refuse("a model without a SimpleRNN or Bidirectional layer")
        d = self.input_size or input_size
        if d is None:
            raise ValueError("the model does not record its input width: build it first")
        biases = {bool(c.get("use_bias", True)) for e in self.rnn for c in e["cells"]}
        if len(biases) > 1:
            raise _refuse("recurrent layers with and without a bias",
                          "the spec has one bias flag for the stack")
        last = self.rnn[-1]
        acts = [[cast(Activation, self.activation(c.get("activation", "tanh"), e["name"]))
                 for c in e["cells"]] for e in self.rnn]
        config = RNNConfig(
            d, [int(e["cells"][0]["units"]) for e in self.rnn],
            direction=[e["direction"] for e in self.rnn], activation=acts,
            bias=biases.pop(), merge_mode=[e["merge"] for e in self.rnn],
            padded_output=self.padded_output(),
            output_order="processing" if last["direction"] == "reverse" else "aligned",
            vocab_size=None if self.vocab is None else self.vocab[0],
            mask_zero=self.vocab is not None and self.vocab[1], mask_value=self.mask_value,
            select="sequence" if last["return_sequences"] else "final",
            head=self.head, identities=self.identities())
        return KerasNetwork(config, dict(self.sources), tuple(self.names))


def _first_build_shape(chain: list[Mapping[str, Any]]) -> int | None:
    """The input width from the first layer's ``build_config`` (Keras 3), if any."""
    for layer in chain:
        if layer.get("class_name") == "InputLayer":
            continue
        shape = (layer.get("build_config") or {}).get("input_shape")
        if layer.get("class_name") == "Embedding" or not shape:
            return None
        return int(shape[-1]) if shape[-1] is not None else None
    return None


def parse_model(model_config: Mapping[str, Any], *, flavour: Flavour = KERAS3,
                backend: str = "tensorflow", input_size: int | None = None) -> KerasNetwork:
    """The network of a model config (see the module docstring).

    Args:
        model_config: ``model.get_config()``, or ``{"class_name", "config"}`` from a file.
        flavour: :data:`KERAS3` or :data:`KERAS2`.
        backend: the Keras backend the model runs on (its masked steps' output).
        input_size: D, when the config does not record it.

    Raises:
        UnsupportedError: a layer, an operation or an arrangement the spec does not have,
            named.
        ValueError: no input width anywhere.
    """
    chain, build_shape = layer_chain(model_config)
    reader = _Reader(flavour, backend)
    for layer in chain:
        if not isinstance(layer, Mapping):
            raise _refuse(f"a layer entry of type {type(layer).__name__}")
        reader.take(layer)
    if build_shape and len(build_shape) == 3 and build_shape[-1] is not None:
        input_size = input_size or int(build_shape[-1])
    return reader.network(input_size or _first_build_shape(chain))


def assemble(net: KerasNetwork, fetch: Callable[[str, int], Any]) -> RNNParams:
    """The parameters of ``net``, each array ``fetch(layer_name, index)`` (zeros where the
    model has none), checked by :class:`~rnn_ref.RNNParams`."""
    arrays: dict[str, Any] = {}
    missing: list[str] = []
    for key, src in net.sources.items():
        if src is None:
            missing.append(key)
        else:
            arrays[key] = np.asarray(fetch(src.layer, src.index))
    dtype = next(iter(arrays.values())).dtype
    cfg = net.config
    for key in missing:  # b_x of a bias-free layer, every b_h, b of a Dense without bias
        parts = key.split(".")
        size = cfg.hidden_sizes[int(parts[1])] if parts[0] == "layers" \
            else cfg.head[int(parts[1])].units
        arrays[key] = np.zeros(size, dtype)
    return RNNParams.from_arrays(cfg, arrays)
