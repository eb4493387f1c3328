"""Keras 3: ``SimpleRNN``/``Bidirectional`` converters, oracle, and the ``keras[...]`` backends.

Keras fixes its backend once per process (``KERAS_BACKEND``), so this module describes
whatever Keras was imported with; :mod:`rnn_ref.backends.keras.worker` runs
``keras[tensorflow]``, ``keras[jax]`` and ``keras[torch]`` each in a worker process of its own.

How Keras differs from the reference (Keras 3.15.1 sources):

* One bias: ``kernel (D, M) = w_x``, ``recurrent_kernel (M, M) = w_h``, ``bias = b_x + b_h``;
  reading, ``b_x = bias, b_h = 0``. No clip; the activation set of ``keras.activations``,
  where ``hard_sigmoid`` is ``relu6(x + 3) / 6`` (``alpha = 1/6, beta = 0.5``, not ONNX's 0.2),
  ``leaky_relu`` has slope 0.2 and ``elu`` alpha 1.0 (``keras/src/activations/activations.py``).
* ``go_backwards=True`` returns outputs in processing order (``output_order="processing"``);
  ``Bidirectional`` flips its backward half back when ``return_sequences=True``
  (``keras/src/layers/rnn/bidirectional.py``, ``call``).
* A masked step keeps the state and outputs, by backend (``keras/src/backend/*/rnn.py``):
  the previous output, zeros before the first valid step, on TensorFlow and torch and with
  ``unroll=True`` (``carry_output``); the carried state on JAX and NumPy's ``lax.scan``-style
  loop (``carry_state``: a leading masked step outputs ``h0``); zeros with
  ``zero_output_for_mask=True``, which ``Bidirectional`` forces to ``return_sequences``.
  :func:`from_native` records the variant of the Keras backend it runs on, for layers that can
  be given a mask (a bare layer, or a model with a ``Masking`` layer); a model without a mask
  source never pads, and records the default ``zeros``.
* ``return_sequences=False`` returns the last output in processing order: ``outputs[:, -1]``
  forward, and for ``Bidirectional`` the backward half at ``t = 0``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends import file_limits
from rnn_ref.backends._common import adopt_padded_output, raise_if
from rnn_ref.backends.keras.graph import (
    IDENTITY_LAYERS,
    KERAS2,
    KERAS3,
    Flavour,
    KerasNetwork,
    assemble,
    parse_model,
    read_cell,
)
from rnn_ref.backends.keras.record import KERAS_ACTIVATIONS, keras_masked_step_output, unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import FileFormatError, UnsupportedError
from rnn_ref.fileapi import (
    Hints,
    MissingHintError,
    NativeFile,
    hint_activation,
    hint_activations,
)
from rnn_ref.inputs import check_inputs
from rnn_ref.network import POOLINGS, Softmax, state_item
from rnn_ref.params import CellParams, Readout, RNNParams
from rnn_ref.reference import ForwardResult, forward, merge, returned

__all__ = ["TO_KERAS", "KerasBackend", "KerasSupport", "LayerCall", "LegacyReader",
           "from_native", "import_keras", "layer_oracle", "list_arrays", "load_native",
           "model_network", "model_oracle", "oracle", "owns", "quiet_import", "read_bare_layer",
           "read_file", "read_legacy_h5", "rnn_layers", "run_native", "to_native",
           "unsupported", "write_file"]

TO_KERAS = {v: k for k, v in KERAS_ACTIVATIONS.items()}


def _keras() -> Any:
    import keras

    return keras


def backend_name() -> str:
    return str(_keras().backend.backend())



def unsupported_dtype(dtype: Any, backend: str) -> str | None:
    """Why Keras on ``backend`` cannot compute in ``dtype``, or ``None``."""
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        return f"dtype {dt}: use float32 or float64"
    if dt == np.float64 and backend == "jax" and os.environ.get("JAX_ENABLE_X64") != "1":
        return "dtype float64: JAX truncates it to float32 unless JAX_ENABLE_X64=1"
    return None


# --------------------------------------------------------------------------------------------
# from Keras
# --------------------------------------------------------------------------------------------
def _cell(layer: Any) -> tuple[CellParams, Activation]:
    """A Keras 3 ``SimpleRNN``'s cell and activation (:func:`keras_graph.read_cell`)."""
    keras = _keras()
    return read_cell(layer, keras.layers.SimpleRNN, KERAS3, keras.ops.convert_to_numpy,
                     generic=(keras.layers.RNN, keras.layers.SimpleRNNCell))


@dataclass(frozen=True)
class LayerCall:
    """How a bare Keras RNN layer (of Keras 3 or Keras 2) is called, for its oracle."""

    bidirectional: bool
    return_sequences: bool
    return_state: bool
    time_major: bool = False  # Keras 2's (T, N, ...) layers


def read_bare_layer(obj: Any, *, bidirectional: bool,
                    cell: Callable[[Any], tuple[CellParams, Activation]], backend: str
                    ) -> tuple[RNNParams, LayerCall]:
    """A bare ``SimpleRNN`` (or ``RNN(SimpleRNNCell)``) or ``Bidirectional`` layer of Keras 3
    or Keras 2 (``cell`` reads one direction): its parameters, with the masked-step output of
    ``backend`` (see the module docstring), and how it is called.

    Raises:
        UnsupportedError: directions with and without a bias; what ``cell`` refuses.
    """
    inner = [obj.forward_layer, obj.backward_layer] if bidirectional else [obj]
    read = [cell(x) for x in inner]
    zero = obj.return_sequences if bidirectional else obj.zero_output_for_mask
    mode = keras_masked_step_output(backend, zero_output_for_mask=bool(zero),
                                    unroll=bool(inner[0].unroll))
    reverse = not bidirectional and bool(obj.go_backwards)
    bias = {bool(x.cell.use_bias) for x in inner}
    if len(bias) != 1:
        raise UnsupportedError("rnn-ref", "layers with and without a bias")
    config = RNNConfig(
        input_size=int(read[0][0].w_x.shape[0]), hidden_size=read[0][0].hidden_size,
        direction="bidirectional" if bidirectional else ("reverse" if reverse else "forward"),
        activation=[[a for _, a in read]], bias=bias.pop(),
        merge_mode=obj.merge_mode if bidirectional else "concat", padded_output=mode,
        output_order="processing" if reverse else "aligned",
        # return_sequences=False: the last output in processing order, the final state
        select="sequence" if obj.return_sequences else "final",
    )
    time_major = {bool(getattr(x, "time_major", False)) for x in inner}
    call = LayerCall(bidirectional, bool(obj.return_sequences), bool(obj.return_state),
                     time_major.pop())
    return RNNParams(config, [[c for c, _ in read]]), call


def _bare_layer(obj: Any) -> tuple[RNNParams, LayerCall]:
    """A bare Keras 3 ``SimpleRNN``, ``RNN(SimpleRNNCell)`` or ``Bidirectional`` layer."""
    return read_bare_layer(obj, bidirectional=isinstance(obj, _keras().layers.Bidirectional),
                           cell=_cell, backend=backend_name())


def _model_config(model: Any) -> dict[str, Any]:
    """``{"class_name", "config"}`` of a ``Sequential`` or functional model."""
    try:
        config = model.get_config()
    except NotImplementedError:
        raise UnsupportedError("rnn-ref", f"a subclassed keras.Model ({type(model).__name__})",
                               "rnn-ref reads Sequential and functional models") from None
    return {"class_name": type(model).__name__, "config": config}


def model_network(model: Any, flavour: Flavour = KERAS3, backend: str | None = None
                  ) -> tuple[KerasNetwork, RNNParams]:
    """The parsed network of a Keras 3 (or, with :data:`KERAS2`, a tf-keras) model
    (:func:`keras_graph.parse_model`) and its parameters, read from the model's layers;
    ``backend`` defaults to the one this process runs Keras on."""
    net = parse_model(_model_config(model), flavour=flavour,
                      backend=backend or backend_name())
    by_name = {layer.name: layer for layer in model.layers}

    def fetch(name: str, index: int) -> np.ndarray[Any, Any]:
        weights = by_name[name].get_weights()
        if index >= len(weights):
            raise ValueError(f"the {flavour.name} layer {name!r} is not built and has no "
                             f"weights yet: call the model on an input or build() it first")
        return np.asarray(weights[index])

    return net, assemble(net, fetch)


def from_native(obj: Any) -> RNNParams:
    """Canonical parameters of a ``SimpleRNN``, a ``Bidirectional``, or a ``Sequential`` or
    functional model (see :mod:`rnn_ref.backends.keras.graph` for the layers read). The
    config records the masked-step behaviour of the Keras backend this process runs (see the
    module docstring).

    Raises:
        UnsupportedError: any other layer or operation, named; stateful layers;
            ``go_backwards`` below another layer; activations outside rnn-ref's set.
    """
    keras = _keras()
    if isinstance(obj, keras.Model):
        return model_network(obj)[1]
    if isinstance(obj, (keras.layers.RNN, keras.layers.Bidirectional)):
        return _bare_layer(obj)[0]  # an RNN around another cell is refused, named
    raise TypeError(f"from_keras takes a SimpleRNN, an RNN(SimpleRNNCell), a Bidirectional or "
                    f"a keras.Model, got {type(obj).__name__}")


# --------------------------------------------------------------------------------------------
# to Keras
# --------------------------------------------------------------------------------------------
_IDENTITY_CLASSES = {kind: (cls, key) for cls, (kind, key) in IDENTITY_LAYERS.items()}


def _cell_weights(cell: CellParams, bias: bool) -> list[np.ndarray[Any, Any]]:
    return [cell.w_x, cell.w_h] + ([cell.b_x + cell.b_h] if bias else [])


def rnn_layer(params: RNNParams, li: int, *, return_sequences: bool, return_state: bool = False,
              zero_output: bool = False) -> Any:
    """Keras' layer for recurrent layer ``li`` of ``params`` (``SimpleRNN``, with
    ``go_backwards`` for a reverse layer, or ``Bidirectional``), built and holding its
    weights, with its input and recurrent dropout rates."""
    keras = _keras()
    cfg = params.config
    dtype = params.dtype.name
    rates = {i.kind: i.rate for i in cfg.identities if i.after == li
             and i.kind in ("input_dropout", "recurrent_dropout")}

    def simple(r: int, backwards: bool) -> Any:
        return keras.layers.SimpleRNN(
            cfg.hidden_sizes[li], activation=TO_KERAS[cfg.activation_of(li, r)],
            use_bias=cfg.bias, return_sequences=return_sequences, return_state=return_state,
            go_backwards=backwards, zero_output_for_mask=zero_output, dtype=dtype,
            dropout=rates.get("input_dropout", 0.0),
            recurrent_dropout=rates.get("recurrent_dropout", 0.0))

    cells = params.layers[li]
    if cfg.directions[li] == "bidirectional":
        layer = keras.layers.Bidirectional(simple(0, False), backward_layer=simple(1, True),
                                           merge_mode=cfg.merge_modes[li], dtype=dtype)
    else:
        layer = simple(0, cfg.directions[li] == "reverse")
    layer.build((None, None, cfg.layer_input_size(li)))
    # set after building: building a Bidirectional may initialise its layers again
    layer.set_weights([w for cell in cells for w in _cell_weights(cell, cfg.bias)])
    return layer


def rnn_layers(params: RNNParams, *, return_sequences: bool = True,
               return_state: bool = False) -> list[Any]:
    """Keras' layers for the recurrent stack of ``params`` (each returning sequences but the
    last, which returns them when ``return_sequences``), built and holding its weights."""
    cfg = params.config
    last = cfg.num_layers - 1
    return [rnn_layer(params, li, return_sequences=return_sequences or li < last,
                      return_state=return_state,
                      zero_output=li == last and cfg.padded_output == "zeros")
            for li in range(cfg.num_layers)]


def head_layer(params: RNNParams, j: int) -> Any:
    """Keras' ``Dense`` for head layer ``j``, built and holding its weights."""
    keras = _keras()
    dense = params.config.head[j]
    act = dense.activation
    name = act.name if isinstance(act, Softmax) else TO_KERAS[act]
    layer = keras.layers.Dense(dense.units, activation=name, use_bias=dense.bias,
                               dtype=params.dtype.name)
    layer.build((None, params.config.head_input_size(j)))
    w = params.head[j]
    layer.set_weights([w.w, w.b] if dense.bias else [w.w])
    return layer


def identity_layers(params: RNNParams, after: int) -> list[Any]:
    """Keras' dropout and noise layers at position ``after`` (``Identity.after``)."""
    keras = _keras()
    out = []
    for ident in params.config.identities:
        if ident.after == after and ident.kind in _IDENTITY_CLASSES:
            cls, key = _IDENTITY_CLASSES[ident.kind]
            out.append(getattr(keras.layers, cls)(**{key: ident.rate},
                                                  dtype=params.dtype.name))
    return out


def _input_layers(params: RNNParams) -> list[Any]:
    """``Input``, then ``Embedding`` (with its table) or ``Masking`` when the network has
    one."""
    keras = _keras()
    cfg = params.config
    dtype = params.dtype.name
    if cfg.vocab_size is not None:
        emb = keras.layers.Embedding(cfg.vocab_size, cfg.input_size, mask_zero=cfg.mask_zero,
                                     dtype=dtype)
        emb.build((None, None))
        emb.set_weights([params.embedding])
        return [keras.Input((None,), dtype="int32"), emb]
    layers = [keras.Input((None, cfg.input_size), dtype=dtype)]
    if cfg.mask_value is not None:
        layers.append(keras.layers.Masking(mask_value=cfg.mask_value, dtype=dtype))
    return layers


def pooling_layer(params: RNNParams) -> Any:
    """Keras' pooling over time for ``select``: ``GlobalAveragePooling1D`` for
    ``mean_valid`` (it weighs by the mask) and ``mean_all`` (written only where nothing is
    padded), ``GlobalMaxPooling1D`` for ``max_all`` (it ignores the mask)."""
    keras = _keras()
    cls = (keras.layers.GlobalMaxPooling1D if params.config.select == "max_all"
           else keras.layers.GlobalAveragePooling1D)
    return cls(dtype=params.dtype.name)


def _returns_states(cfg: RNNConfig) -> bool:
    return any(state_item(name) is not None for name in cfg.returns)


def network_layers(params: RNNParams) -> list[Any]:
    """Every layer of the Keras model of ``params``, input to output, built with their
    weights (see :func:`to_native`); every recurrent layer returns its states when the
    network returns a final state."""
    cfg = params.config
    L = cfg.num_layers
    layers = [*_input_layers(params), *identity_layers(params, 0)]
    for li in range(L):
        last = li == L - 1
        seqs = not last or cfg.select in ("sequence", *POOLINGS)  # last_step: see to_native
        layers.append(rnn_layer(params, li, return_sequences=seqs,
                                return_state=_returns_states(cfg),
                                zero_output=last and seqs and cfg.padded_output == "zeros"))
        if last and cfg.select in POOLINGS:
            layers.append(pooling_layer(params))
        layers += identity_layers(params, li + 1)
    for j in range(len(cfg.head)):
        layers.append(head_layer(params, j))
        layers += identity_layers(params, L + 1 + j)
    return layers


def _adopt_padding(params: RNNParams, strict: bool) -> RNNParams:
    """``params`` under the padded-step output the Keras model of it gives (a Bidirectional
    last layer: zeros; a SimpleRNN: zeros or this backend's own), warning when that changes
    (:func:`~rnn_ref.backends._common.adopt_padded_output`)."""
    cfg = params.config
    mode = cfg.padded_output
    if cfg.directions[-1] == "bidirectional":
        return adopt_padded_output(params, "zeros", "Keras' Bidirectional", strict=strict)
    native = keras_masked_step_output(backend_name(), zero_output_for_mask=False, unroll=False)
    if mode in ("zeros", native):
        return params
    return adopt_padded_output(params, native, f"Keras on {backend_name()}", strict=strict)


def to_native(params: RNNParams, *, mask_value: float | None = None,
              strict: bool = False) -> Any:
    """The whole network as a ``keras.Sequential``: ``Input``, ``Embedding`` or
    ``Masking`` when it has one, the recurrent layers (``return_sequences`` by the
    selection: ``"final"`` is ``return_sequences=False``), the dropout and noise layers where
    they sit, the ``Dense`` head; in the params' dtype on the Keras backend of this process.

    A pooling over time is ``GlobalAveragePooling1D`` (``mean_valid``; ``mean_all`` where
    nothing is padded) or ``GlobalMaxPooling1D`` (``max_all``) after the last layer's
    sequence; several outputs (``config.returns``) make a functional model whose recurrent
    layers return their states (``return_state=True``).

    ``select="last_step"`` (torch ``out[:, -1]``) is written as ``return_sequences=False``
    when the last layer is forward and the network has no mask source (no ``mask_zero``,
    ``Masking`` or ``mask_value``): the model then never pads, and a forward layer's output
    at ``T - 1`` is its final state, exactly. Reading the model back gives ``"final"``.
    A masked network or a reverse or bidirectional last layer is refused (its last step is
    not its final state).

    Args:
        mask_value: add ``Masking(mask_value)`` to a network without one, so steps whose
            features all equal it are padding.
        strict: refuse (rather than warn about, and record) padded steps that this Keras
            computes differently from ``params.config.padded_output``.

    Raises:
        UnsupportedError: what Keras cannot hold (:func:`unsupported`), with the reason.
    """
    keras = _keras()
    if mask_value is not None:
        if params.config.mask_value is not None or params.config.vocab_size is not None:
            raise ValueError(f"mask_value={mask_value!r}: the network already has "
                             f"{'an embedding' if params.config.vocab_size else 'a Masking'}")
        params = params.replace(mask_value=mask_value)
    params = _adopt_padding(params, strict)
    raise_if(unsupported(params.config, backend=backend_name(), padded=False), "Keras")
    layers = network_layers(params)
    with warnings.catch_warnings():  # GlobalMaxPooling1D ignores the mask, as max_all does
        warnings.filterwarnings("ignore", message=".*does not support masking")
        if params.config.returns != ("result",):
            return _several_outputs(params.config, layers)
        if params.config.merge_modes[-1] is None:  # a pair of outputs: a functional model
            h = inputs = layers[0]
            for layer in layers[1:]:
                h = layer(h)
            return keras.Model(inputs, h)
        return keras.Sequential(layers)


def _several_outputs(cfg: RNNConfig, layers: list[Any]) -> Any:
    """A functional model of ``layers`` (``Input`` first) returning ``cfg.returns``: the
    result, the last recurrent layer's sequence, final states (every recurrent layer
    returns its states then, in h_n order)."""
    keras = _keras()
    h = inputs = layers[0]
    states: list[Any] = []
    sequence = None
    for layer in layers[1:]:
        out = layer(h)
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            if layer.return_state:
                out, states = out[0], [*states, *out[1:]]
            sequence = out
        h = out
    named = {"result": h, "sequence": sequence}
    outputs = []
    for name in cfg.returns:
        k = state_item(name)
        outputs.append(named[name] if k is None else states[k])
    return keras.Model(inputs, outputs)


# --------------------------------------------------------------------------------------------
# oracle
# --------------------------------------------------------------------------------------------
def owns(model: Any) -> bool:
    keras = _keras()
    return isinstance(model, (keras.layers.RNN, keras.layers.Bidirectional, keras.Model))


def model_oracle(params: RNNParams) -> Callable[..., Any]:
    """What a Keras 3 or Keras 2 model of ``params`` returns, in float64."""

    def call(inputs: Any, mask: Any = None) -> Any:
        """What ``model(inputs)`` returns: ``(N, K)``, ``(N, T, K)``, ... in float64; a list
        for a model of several outputs (``config.returns``). Token ids with an Embedding;
        ``mask`` (N, T) masks on top of what the model's Masking / ``mask_zero`` say."""
        res = forward(params, inputs, mask=None if mask is None else np.asarray(mask, bool))
        if params.config.returns == ("result",):
            return res.result
        return list(returned(params.config, res))

    return call


def _initial_states(initial_state: Any, R: int) -> list[np.ndarray[Any, Any]] | None:
    """A bare layer's ``initial_state`` (one array or a list of ``R``) in float64."""
    if initial_state is None:
        return None
    states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [
        initial_state]
    if len(states) != R:
        raise ValueError(f"initial_state needs {R} array(s), got {len(states)}")
    return [np.asarray(s, np.float64) for s in states]


def layer_oracle(params: RNNParams, st: LayerCall, where: str = "the Keras oracle"
                 ) -> Callable[..., Any]:
    """What a bare Keras 3 or Keras 2 layer of ``params`` called as ``st`` says returns, in
    float64: ``(inputs, mask=None, initial_state=None)``, ``(T, N, ...)`` arrays for a
    ``time_major`` layer (which takes no mask)."""
    cfg = params.config
    bare = RNNParams(cfg.replace(merge_mode=None if st.bidirectional else "concat"),
                     params.layers)
    R = cfg.num_directions

    def call(inputs: Any, mask: Any = None, initial_state: Any = None) -> Any:
        x = np.asarray(inputs, np.float64)
        if st.time_major:
            if mask is not None:
                raise UnsupportedError(where, "a mask with time_major=True")
            x = x.swapaxes(0, 1)
        res = forward(bare, x, h0=_initial_states(initial_state, R),
                      mask=None if mask is None else np.asarray(mask, bool))
        h_n = res.h_n if isinstance(res.h_n, tuple) else tuple(res.h_n)
        main: tuple[np.ndarray[Any, Any], ...] | np.ndarray[Any, Any]
        if st.bidirectional:
            f, b = res.outputs
            if not st.return_sequences:
                f, b = f[:, -1], b[:, 0]
            main = merge(f, b, cfg.merge_modes[-1])
        else:
            main = res.outputs if st.return_sequences else res.outputs[:, -1]
        if st.time_major and st.return_sequences:
            main = (tuple(m.swapaxes(0, 1) for m in main) if isinstance(main, tuple)
                    else main.swapaxes(0, 1))
        if st.return_state:
            head = main if isinstance(main, tuple) else (main,)
            return (*head, *h_n)
        return main

    return call


def oracle(model: Any) -> Callable[..., Any]:
    """A NumPy function returning what ``model(inputs, ...)`` returns, computed in float64.

    For a model it takes ``inputs`` (features ``(N, T, D)``, or token ids ``(N, T)`` with an
    ``Embedding``; a ``Masking`` layer or ``mask_zero`` derives the mask from them). For a bare
    layer it takes ``(inputs, mask=None, initial_state=None)`` (``[h0]`` for ``SimpleRNN``,
    ``[h_forward, h_backward]`` for ``Bidirectional``). It returns the same structure: an
    array, or a tuple (``return_state``, ``merge_mode=None``).
    """
    if isinstance(model, _keras().Model):
        return model_oracle(from_native(model))
    return layer_oracle(*_bare_layer(model))


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------
class KerasSupport:
    """What Keras on ``self.backend`` can run (shared by the in-process and worker backends)."""

    backend: str

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        reason = unsupported(config, backend=self.backend, padded=lengths or mask)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        return unsupported_dtype(dtype, self.backend)


class KerasBackend(KerasSupport):
    """The whole network in Keras' own layers (those of :func:`to_native`), on the backend
    this process imported Keras with, called eagerly."""

    def __init__(self) -> None:
        self.backend = backend_name()
        self.name = f"keras[{self.backend}]"

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None) -> ForwardResult:
        """Keras' layers on ``x`` (``(N, T, D)``, or token ids ``(N, T)``), ``h0`` (S arrays
        ``(N, M_l)``), and ``lengths (N,)`` or ``mask (N, T)`` (with the network's own mask,
        given to every recurrent layer): ``outputs (N, T, F)`` of the last recurrent layer
        (a pair for ``merge_mode=None``), ``h_n (S, N, M)`` (or S ``(N, M_l)``), ``y`` the
        head's output (``None`` without a head), ``selected`` what the last layer hands on;
        in the parameters' dtype. Bad inputs raise as
        :func:`rnn_ref.inputs.check_inputs` says."""
        keras = _keras()
        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name)
        m = inputs.mask_or_none()  # (N, T), or None when nothing is padded
        raise_if(unsupported(cfg, backend=self.backend, padded=m is not None), self.name)
        dtype_problem = unsupported_dtype(params.dtype, self.backend)
        if dtype_problem is not None:
            raise UnsupportedError(self.name, dtype_problem)
        to_np = keras.ops.convert_to_numpy
        mask_t = None if m is None else keras.ops.convert_to_tensor(m)
        h = _embedded(params, inputs.x)
        for layer in identity_layers(params, 0):
            h = layer(h)
        h_n: list[np.ndarray[Any, Any]] = []
        outputs: Any = None
        for li in range(cfg.num_layers):
            h0s = None if inputs.h0 is None else [keras.ops.convert_to_tensor(
                np.asarray(inputs.h0[cfg.state_index(li, r)], params.dtype))
                for r in range(cfg.num_directions_of(li))]
            below = h
            outputs, states = _run_layer(params, li, h, mask_t, h0s)
            h_n += [to_np(s) for s in states]
            h = outputs
            if li == cfg.num_layers - 1 and cfg.select in ("final", "last_step"):
                h = _call(rnn_layer(params, li, return_sequences=False), below, mask_t, h0s)
            elif li == cfg.num_layers - 1 and cfg.select in POOLINGS:
                pooled = pooling_layer(params)  # the maximum ignores the mask
                h = pooled(h) if mask_t is None or cfg.select == "max_all" else pooled(
                    h, mask=mask_t)
            for layer in identity_layers(params, li + 1):
                h = layer(h)
        selected = h
        for j in range(len(cfg.head)):
            h = head_layer(params, j)(h)
            for layer in identity_layers(params, cfg.num_layers + 1 + j):
                h = layer(h)
        out: Any = tuple(to_np(o) for o in outputs) if isinstance(outputs, tuple) \
            else to_np(outputs)
        if cfg.directions[-1] == "reverse" and cfg.output_order == "aligned":
            out = np.ascontiguousarray(out[:, ::-1])  # go_backwards: in processing order
        sel = tuple(to_np(s) for s in selected) if isinstance(selected, tuple) \
            else to_np(selected)
        return ForwardResult(out, np.stack(h_n) if cfg.uniform_hidden else tuple(h_n),
                             to_np(h) if cfg.head else None, sel)


def _embedded(params: RNNParams, x: np.ndarray[Any, Any]) -> Any:
    """The network's input in Keras: the ``Embedding`` of token ids, or the features (a
    ``Masking`` layer computes nothing else)."""
    keras = _keras()
    if params.config.vocab_size is None:
        return keras.ops.convert_to_tensor(x.astype(params.dtype))
    return _input_layers(params)[1](keras.ops.convert_to_tensor(x.astype(np.int32)))


def _call(layer: Any, h: Any, mask: Any, h0s: Any) -> Any:
    kwargs: dict[str, Any] = {}
    if mask is not None:
        kwargs["mask"] = mask
    if h0s is not None:
        kwargs["initial_state"] = h0s
    return layer(h, **kwargs)


def _run_layer(params: RNNParams, li: int, h: Any, mask: Any, h0s: Any
               ) -> tuple[Any, list[Any]]:
    """Recurrent layer ``li`` returning sequences and states: its (merged) outputs (a pair for
    ``merge_mode=None``) and its R final states."""
    cfg = params.config
    R = cfg.num_directions_of(li)
    last = li == cfg.num_layers - 1
    layer = rnn_layer(params, li, return_sequences=True, return_state=True,
                      zero_output=last and cfg.padded_output == "zeros")
    out = _call(layer, h, mask, h0s)
    merged = out[: len(out) - R]
    return (merged[0] if len(merged) == 1 else tuple(merged)), list(out[len(out) - R:])

# --------------------------------------------------------------------------------------------
# files: .keras, .weights.h5 (Keras 3, by position), legacy .h5 (by name)
# --------------------------------------------------------------------------------------------
def quiet_import(module: str) -> Any:
    """Import ``module`` (one that imports TensorFlow) with torch imported first when installed
    (the other order can crash) and TensorFlow's import-time banners held back: its C++
    logging prints to the process's stderr whatever TF_CPP_MIN_LOG_LEVEL says (absl logs
    before it is initialised), so they are shown only if the import fails."""
    import importlib
    import importlib.util

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if module in sys.modules:
        return sys.modules[module]
    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (before TensorFlow)
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            return importlib.import_module(module)
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_keras() -> Any:
    """Keras for reading and writing files: on TensorFlow unless ``KERAS_BACKEND`` says
    otherwise (:func:`quiet_import`)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    return quiet_import("keras")


def _load_model(keras: Any, path: Path) -> Any:
    """``keras.saving.load_model`` in safe mode, without compiling; quiet about the one
    warning a model rnn-ref reads may give: a ``GlobalMaxPooling1D`` after a mask ignores it,
    which is what ``max_all`` means."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not support masking")
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)


def read_file(path: Path, fmt: str, hints: Hints) -> RNNParams:
    """The parameters of a Keras file (the hints only for weights-only files), once what it
    declares is within the limits (:mod:`file_limits`)."""
    _check_declared(path, fmt)
    if fmt == "keras":
        return from_native(_load_model(import_keras(), path))
    if fmt == "keras-weights":
        return _read_weights_h5(path, hints)
    return read_legacy_h5(path, hints)


def _check_declared(path: Path, fmt: str) -> None:
    """A ``.keras`` archive's config and weights, or an HDF5 file's datasets, against the
    limits, before Keras or h5py reads any of it."""
    if fmt == "keras":
        file_limits.check_keras_archive(path, str(path))
    else:
        file_limits.check_h5(path, str(path))


_SUFFIX = re.compile(r"^(.*?)(?:_(\d+))?$")


def _layer_order(name: str) -> tuple[int, str]:
    m = _SUFFIX.match(name)
    base, index = (m.group(1), int(m.group(2) or 0)) if m else (name, 0)
    return index, base


_Arrays = list[list[np.ndarray[Any, Any]]]
#: the groups Keras' ``save_weights`` writes for the layers read (snake-case class names)
_KERAS_NAME = re.compile(r"^(simple_rnn|bidirectional|dense)(_\d+)?$")


def _weights_h5_groups(path: Path) -> tuple[list[str], list[str], dict[str, _Arrays]]:
    """(RNN layer names in Keras' order, Dense layer names, every layer's arrays: one list
    per cell, one list for a Dense)."""
    import h5py

    def vars_of(group: Any) -> list[np.ndarray[Any, Any]]:
        v = group["vars"]
        return [np.asarray(v[str(i)]) for i in range(len(v))]

    with h5py.File(path, "r") as f:
        if "layers" not in f:
            raise FileFormatError(f"{path}: no 'layers' group: not a Keras 3 .weights.h5 file")
        rnn, dense, other = [], [], []
        arrays: dict[str, _Arrays] = {}
        for name, group in f["layers"].items():
            held = "cell" in group or "forward_layer" in group or len(group.get("vars", ()))
            if held and not _KERAS_NAME.match(name):  # Keras names it after the layer's class
                other.append(name)
            elif "forward_layer" in group:
                rnn.append(name)
                arrays[name] = [vars_of(group["forward_layer"]["cell"]),
                                vars_of(group["backward_layer"]["cell"])]
            elif "cell" in group:
                rnn.append(name)
                arrays[name] = [vars_of(group["cell"])]
            elif "vars" in group and len(group["vars"]) in (1, 2):
                dense.append(name)
                arrays[name] = [vars_of(group)]
            elif not ("vars" in group and len(group["vars"]) == 0):  # Masking, InputLayer
                other.append(name)
    if other:
        raise UnsupportedError("rnn-ref", f"layers {sorted(other)} in {path.name}",
                               "a weights file of SimpleRNN/Bidirectional [+ Dense] only")
    if len(dense) > 1:
        raise UnsupportedError("rnn-ref", f"{len(dense)} Dense layers",
                               "one final Dense is the readout")
    if not rnn:
        raise FileFormatError(f"{path}: no SimpleRNN or Bidirectional layer")
    return sorted(rnn, key=_layer_order), dense, arrays


def _one_bias_cell(path: Path, name: str, v: list[np.ndarray[Any, Any]]) -> CellParams:
    if len(v) not in (2, 3):
        raise FileFormatError(f"{path}: layer {name!r} holds {len(v)} arrays; a SimpleRNN cell "
                              f"has 2 or 3")
    bias = v[2] if len(v) == 3 else np.zeros(v[1].shape[0], v[1].dtype)
    return CellParams(v[0], v[1], bias, np.zeros_like(bias))


def _read_weights_h5(path: Path, hints: Hints) -> RNNParams:
    rnn, dense, arrays = _weights_h5_groups(path)
    acts = hint_activations(hints, "keras-weights", KERAS_ACTIVATIONS, len(rnn))
    layers = [[_one_bias_cell(path, name, v) for v in arrays[name]] for name in rnn]
    if len({len(row) for row in layers}) > 1:
        raise UnsupportedError("rnn-ref", "a mix of SimpleRNN and Bidirectional layers")
    if len({len(arrays[name][0]) for name in rnn}) > 1:
        raise UnsupportedError("rnn-ref", "layers with and without a bias")
    readout, head_act = None, "linear"
    if dense:
        if hints.head_activation is None:
            raise MissingHintError("head_activation", "a keras-weights file does not record "
                                   "its Dense layer's activation: give the head_activation "
                                   f"hint (one of {', '.join(KERAS_ACTIVATIONS)})")
        head_act = hints.head_activation.strip()
        if head_act not in KERAS_ACTIVATIONS:
            raise ValueError(f"head_activation hint {hints.head_activation!r} is not one of "
                             f"{', '.join(KERAS_ACTIVATIONS)}")
        dv = arrays[dense[0]][0]
        readout = Readout(dv[0], dv[1] if len(dv) == 2 else np.zeros(dv[0].shape[1],
                                                                    dv[0].dtype))
    sizes = [row[0].hidden_size for row in layers]
    is_bidi = len(layers[0]) == 2
    merge = "concat"
    if is_bidi:
        merge = hints.merge_mode or "concat"
        widths = [layers[i + 1][0].w_x.shape[0] for i in range(len(layers) - 1)]
        if readout is not None:
            widths.append(readout.w.shape[0])
        if any(w == sizes[0] for w in widths) and hints.merge_mode is None:
            raise MissingHintError("merge_mode", "the Bidirectional layers merge their "
                                   "directions without concatenating, and the file does not "
                                   "say how: give the merge_mode hint (sum, mul or ave)")
    direction = "bidirectional" if is_bidi else (hints.direction or "forward")
    select = (hints.select or "sequence").strip()
    if select not in ("sequence", "final"):
        raise ValueError(f"select hint {hints.select!r}: a keras-weights file's last layer "
                         f"returns every step ('sequence') or its final state ('final')")
    config = RNNConfig(
        input_size=int(layers[0][0].w_x.shape[0]), hidden_size=tuple(sizes),
        direction=direction, activation=[[a] * len(layers[0]) for a in acts],
        bias=len(arrays[rnn[0]][0]) == 3,
        output_size=None if readout is None else int(readout.w.shape[1]),
        output_activation=None if readout is None else KERAS_ACTIVATIONS[head_act],
        merge_mode=merge,
        output_order="processing" if direction == "reverse" else "aligned", select=select,
    )
    return RNNParams(config, layers, readout)


def _legacy_h5_contents(path: Path) -> tuple[list[str], dict[str, dict[str, Any]], Any]:
    """(layer names, each layer's weights by name, the model config's JSON or ``None``) of a
    legacy Keras 3 or Keras 2 ``.h5`` file, read with h5py."""
    import h5py

    def text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise FileFormatError(f"{path}: no layer_names: not a legacy Keras .h5 file")
        names = [text(n) for n in root.attrs["layer_names"]]
        config_json = f.attrs.get("model_config")
        weights: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
        for name in names:
            g = root[name]
            weights[name] = {text(w): np.asarray(g[text(w)])
                             for w in g.attrs.get("weight_names", [])}
    return names, weights, None if config_json is None else json.loads(text(config_json))


def read_legacy_h5(path: Path, hints: Hints, flavour: Flavour = KERAS3) -> RNNParams:
    """The parameters of a legacy ``.h5`` file written by Keras 3 or (with :data:`KERAS2`)
    tf-keras: a whole model through its config (:func:`keras_graph.parse_model`), or
    ``save_weights``' file by weight name with the hints (:class:`LegacyReader`).

    Raises:
        FileFormatError: a layer holding fewer arrays than its config takes, or weights of
            another size than its config declares.
        UnsupportedError: what the parser refuses; weights no layer of the config reads.
    """
    names, weights, config = _legacy_h5_contents(path)
    if config is None:  # weights only: read by weight name, with the hints
        return LegacyReader(path, hints, flavour).params(names, weights, {})
    net = parse_model(config, flavour=flavour, backend="tensorflow")
    takes: dict[str, int] = {}
    for src in net.sources.values():
        if src is not None:
            takes[src.layer] = takes.get(src.layer, 0) + 1
    for name, count in takes.items():
        if len(weights.get(name, {})) < count:
            raise FileFormatError(f"{path}: layer {name!r} holds {len(weights.get(name, {}))} "
                                  f"arrays, its config takes {count}")
    used: set[tuple[str, int]] = set()

    def fetch(name: str, index: int) -> np.ndarray[Any, Any]:
        used.add((name, index))
        return list(weights[name].values())[index]

    params = assemble(net, fetch)
    unused_weights(path, [f"{name}/{w}" for name, ws in weights.items()
                          for i, w in enumerate(ws) if (name, i) not in used])
    return params


def unused_weights(path: Path, names: list[str]) -> None:
    """Refuse a legacy ``.h5`` with weights (``names``, ``layer/weight``) that no layer of
    its model config reads: a layer missing from the config, or more arrays than its layer
    takes (they would be dropped without a word)."""
    if names:
        raise UnsupportedError("rnn-ref", f"the weights {sorted(names)[:8]} of {path.name}",
                               "no layer of the model config reads them (a layer missing from "
                               "the config, or more arrays than its layer takes)")


class LegacyReader:
    """Legacy ``.h5`` layers, read by weight name: SimpleRNN/Bidirectional layers then one
    Dense readout."""

    def __init__(self, path: Path, hints: Hints, flavour: Flavour = KERAS3) -> None:
        self.path, self.hints, self.flavour = path, hints, flavour
        self.layers: list[list[CellParams]] = []
        self.acts: list[tuple[Activation, ...]] = []
        self.merges: list[str | None] = []
        self.kinds: set[bool] = set()
        self.backwards: set[bool] = set()
        self.readout: Readout | None = None
        self.out_act = Activation("linear")

    @staticmethod
    def _by(w: dict[str, Any], prefix: str, key: str) -> Any:
        found = [v for k, v in w.items()
                 if k.startswith(prefix) and k.split("/")[-1].split(":")[0] == key]
        return found[0] if found else None

    def _act(self, conf: dict[str, Any] | None) -> Activation:
        acts = self.flavour.activations
        if conf is None:
            fmt = "keras2-h5" if self.flavour is KERAS2 else "keras-h5"
            return hint_activation(self.hints, fmt, dict(acts))
        name = conf.get("activation", "tanh") or "linear"
        if name not in acts:
            raise UnsupportedError("rnn-ref", f"the {self.flavour.name} activation {name!r}",
                                   f"rnn-ref reads {', '.join(acts)}")
        return acts[name]

    def _dense(self, name: str, cls: str | None, w: dict[str, Any],
               lc: dict[str, Any] | None) -> None:
        if self.readout is not None or cls not in (None, "Dense"):
            raise UnsupportedError("rnn-ref", f"layer {name} ({cls})")
        kernel, bias = self._by(w, "", "kernel"), self._by(w, "", "bias")
        self.readout = Readout(kernel, bias if bias is not None else np.zeros(kernel.shape[1]))
        if lc:
            self.out_act = self._act(lc["config"])

    def _rnn(self, name: str, cls: str | None, w: dict[str, Any],
             lc: dict[str, Any] | None) -> None:
        is_bidi = cls == "Bidirectional" or any("forward_" in k for k in w)
        self.kinds.add(is_bidi)
        stems = sorted({k.split("simple_rnn_cell")[0] for k in w})
        prefixes = ([p for p in stems if "forward" in p] + [p for p in stems if "backward" in p]
                    if is_bidi else [""])
        row = []
        for prefix in prefixes:
            k, r = self._by(w, prefix, "kernel"), self._by(w, prefix, "recurrent_kernel")
            b = self._by(w, prefix, "bias")
            if k is None or r is None:
                raise FileFormatError(f"{self.path}: layer {name} misses its kernel or "
                                      f"recurrent_kernel")
            b = b if b is not None else np.zeros(r.shape[0], r.dtype)
            row.append(CellParams(k, r, b, np.zeros_like(b)))
        self.layers.append(row)
        inner = (lc or {}).get("config", {})
        if is_bidi:
            self.merges.append(inner.get("merge_mode", self.hints.merge_mode or "concat"))
            sub = inner.get("layer", {}).get("config")
            self.acts.append((self._act(sub),
                              self._act(inner.get("backward_layer", {}).get("config", sub))))
        else:
            self.merges.append("concat")
            self.acts.append((self._act(inner if lc else None),))
            self.backwards.add(bool(inner.get("go_backwards", False)))

    def params(self, names: list[str], weights: dict[str, dict[str, Any]],
               layer_cfgs: dict[str, dict[str, Any]]) -> RNNParams:
        for name in names:
            w, lc = weights[name], layer_cfgs.get(name)
            cls = lc["class_name"] if lc else None
            if not w:
                continue
            if cls in ("LSTM", "GRU") or any("lstm" in k or "gru" in k for k in w):
                raise UnsupportedError("rnn-ref", f"a Keras {cls or 'LSTM/GRU'} layer ({name})",
                                       "only SimpleRNN is an Elman RNN")
            if self._by(w, "", "recurrent_kernel") is None:
                self._dense(name, cls, w, lc)
            else:
                self._rnn(name, cls, w, lc)
        if len(self.kinds) != 1:
            raise UnsupportedError("rnn-ref", "this mix of layers" if self.kinds else
                                   "a file without SimpleRNN layers")
        reverse = self.backwards == {True}
        config = RNNConfig(
            input_size=int(self.layers[0][0].w_x.shape[0]),
            hidden_size=tuple(row[0].hidden_size for row in self.layers),
            direction="bidirectional" if self.kinds.pop() else (
                "reverse" if reverse else "forward"),
            activation=[list(a) for a in self.acts], merge_mode=tuple(self.merges),
            output_size=None if self.readout is None else int(self.readout.w.shape[1]),
            output_activation=self.out_act, output_order="processing" if reverse else "aligned",
        )
        return RNNParams(config, self.layers, self.readout)


def write_file(params: RNNParams, path: Path, fmt: str) -> None:
    import warnings

    import_keras()
    model = to_native(params)
    if fmt == "keras":
        model.save(str(path))
    elif fmt == "keras-weights":
        model.save_weights(str(path))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras calls the legacy format legacy
            model.save(str(path))


def load_native(path: Path, fmt: str, params: RNNParams) -> NativeFile:
    """A ``.keras`` model as saved; for weights files, the weights loaded into the model of
    ``params``' architecture."""
    keras = import_keras()
    _check_declared(path, fmt)
    if fmt == "keras":
        model = _load_model(keras, path)
    else:
        model = to_native(params)
        model.load_weights(str(path))
    return NativeFile(model, takes_lengths=False, oracle=oracle(model))


def run_native(model: Any, x: np.ndarray[Any, Any], lengths: Any = None) -> Any:
    """The model's output on ``x`` (a list of arrays for a model of several outputs); with
    ``lengths``, padded steps are zeroed in the input, which a model of ``to_native(...,
    mask_value=0.0)`` masks."""
    if lengths is not None:
        valid = np.arange(x.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None]
        x = x * valid
    with warnings.catch_warnings():  # GlobalMaxPooling1D ignores the mask, as max_all does
        warnings.filterwarnings("ignore", message=".*does not support masking")
        out = model(x)
    to_np = _keras().ops.convert_to_numpy
    if isinstance(out, (list, tuple)):
        return [np.asarray(to_np(o)) for o in out]
    return np.asarray(to_np(out))


def list_arrays(path: Path, fmt: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Every HDF5 dataset of the file (of a ``.keras`` archive's weights) by its path."""
    import io
    import zipfile

    import h5py

    out: list[tuple[str, tuple[int, ...], str]] = []
    source: Any = path
    if fmt == "keras":
        with zipfile.ZipFile(path) as zf:
            source = io.BytesIO(zf.read("model.weights.h5"))

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out.append((name, obj.shape, str(obj.dtype)))

    with h5py.File(source, "r") as f:
        f.visititems(visit)
    return out
