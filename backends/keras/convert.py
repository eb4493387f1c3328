"""Keras 3: ``SimpleRNN``/``GRU``/``LSTM``/``Bidirectional`` converters and oracle (the files:
``files.py``; the backend in this process: ``backend.py``; the ``keras[...]`` backends:
``worker.py``). ``SimpleRNN``, ``GRU`` and ``LSTM`` layers are read (models, bare layers,
files) and written (:func:`to_native`, the backends: both GRU forms, ``go_backwards``,
``Bidirectional``, mixed stacks, ``return_state`` with an LSTM's ``c``); what Keras 3 cannot
hold (a clip, peepholes, ``input_forget``, a projection, a cell-state activation of its own,
activations outside Keras 3's, Keras 2's hard_sigmoid among them) is refused by name
(:func:`rnn_ref.backends.keras.record.unsupported`).

Keras fixes its backend once per process (``KERAS_BACKEND``), so this module describes
whatever Keras was imported with; :mod:`rnn_ref.backends.keras.worker` runs
``keras[tensorflow]``, ``keras[jax]`` and ``keras[torch]`` each in a worker process of its own.

How Keras differs from the reference (Keras 3.15.1 sources):

* One bias: ``kernel (D, M) = w_x``, ``recurrent_kernel (M, M) = w_h``, ``bias = b_x + b_h``;
  reading, ``b_x = bias, b_h = 0``. GRU and LSTM pack their gates on the last axis (spec 3.7,
  :func:`rnn_ref.backends.keras.graph.gated_cell_weights`, :func:`gated_keras_weights`): a
  reset-after GRU's ``bias (2, 3M)`` is ``b_x`` then ``b_h``; a reset-before GRU's and an
  LSTM's one bias is ``b_x`` read, ``b_x + b_h`` written (each bias there is added to its
  gate's input, ``b_h[n]`` included: the same function).
  No clip; the activation set of ``keras.activations`` (a GRU's and an LSTM's
  ``recurrent_activation`` and ``activation`` alike), where ``hard_sigmoid`` is
  ``relu6(x + 3) / 6`` (``alpha = 1/6, beta = 0.5``, not ONNX's 0.2 nor Keras 2's),
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
  source never pads, and records the default ``zeros``. ``GRU`` and ``LSTM`` take the same
  generic loop on masked inputs on every backend (measured, Keras 3.15.1 on CPU: the fused
  kernels of JAX and torch refuse masks), but for TensorFlow's cuDNN kernel on a GPU, whose
  padded steps output zeros (read from the source, ``_cudnn_gru``; recorded as ``zeros``
  when this process would run it: :func:`fused_layers`).
* ``return_sequences=False`` returns the last output in processing order: ``outputs[:, -1]``
  forward, and for ``Bidirectional`` the backward half at ``t = 0``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends._common import adopt_padded_output, raise_if
from rnn_ref.backends.keras.graph import (
    IDENTITY_LAYERS,
    KERAS3,
    Flavour,
    KerasNetwork,
    assemble,
    gated_cell_weights,
    parse_model,
    read_cell,
)
from rnn_ref.backends.keras.record import (
    KERAS_ACTIVATIONS,
    KERAS_REGISTERED,
    keras_masked_step_output,
    unsupported,
)
from rnn_ref.cells import pack
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.network import POOLINGS, Softmax, state_entry
from rnn_ref.params import AnyCellParams, CellParams, GRUParams, LSTMParams, RNNParams
from rnn_ref.reference import forward, merge, returned

__all__ = ["LayerCall", "TO_KERAS", "from_native", "fused_layer", "fused_layers",
           "gated_keras_weights", "import_keras",
           "layer_oracle", "model_network", "model_oracle", "oracle", "owns", "quiet_import",
           "read_bare_layer", "rnn_layers", "to_native", "unsupported"]

#: What reading one direction of a Keras layer gives: its cell, and its activation (Elman)
#: or its (gates' f, candidate's g) pair (GRU, LSTM)
CellRead = tuple[AnyCellParams, Activation | tuple[Activation, Activation]]

TO_KERAS: dict[Activation, Any] = {v: k for k, v in KERAS_ACTIVATIONS.items()}  # one name each
# rnn-ref's registered functions, as the config Keras deserialises by registered name (Keras'
# activations.get takes no registered name as a string)
TO_KERAS.update({v: {"module": "builtins", "class_name": "function", "config": k,
                     "registered_name": "function"} for k, v in KERAS_REGISTERED.items()})


def keras_module() -> Any:
    """Keras 3, with rnn-ref's activations registered (:data:`KERAS_REGISTERED`)."""
    import keras

    from rnn_ref.backends.keras2.keras3 import register

    register(keras)
    return keras


def backend_name() -> str:
    return str(keras_module().backend.backend())


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
def _gated_kind(layer: Any) -> str | None:
    """``"gru"`` or ``"lstm"`` for a Keras 3 ``GRU``, ``LSTM`` or generic ``RNN`` around a
    ``GRUCell`` or ``LSTMCell`` (not a subclass, which may compute something else); else
    ``None``."""
    keras = keras_module()
    L = keras.layers
    if type(layer) not in (L.GRU, L.LSTM, L.RNN):
        return None
    cell = getattr(layer, "cell", None)
    return "gru" if type(cell) is L.GRUCell else "lstm" if type(cell) is L.LSTMCell else None


def _gated_cell(layer: Any, kind: str) -> tuple[GRUParams | LSTMParams,
                                                tuple[Activation, Activation]]:
    """A Keras 3 ``GRU``/``LSTM`` layer object's cell (:func:`keras_graph.gated_cell_weights`)
    and its (``recurrent_activation``, ``activation``).

    Raises:
        UnsupportedError: a stateful layer, an activation outside rnn-ref's set (named).
        ValueError: the layer is not built yet.
    """
    keras = keras_module()
    title = f"{type(layer).__name__} layer {layer.name!r}"
    if getattr(layer, "stateful", False):
        raise UnsupportedError("rnn-ref", f"the stateful {title}",
                               "its state lives between calls, outside the weights")
    cell = layer.cell
    acts = []
    for attr in ("recurrent_activation", "activation"):
        fn = getattr(cell, attr)
        name = getattr(fn, "__name__", str(fn))
        if name not in KERAS3.activations:
            raise UnsupportedError("rnn-ref", f"the Keras {attr} {name!r} ({layer.name})",
                                   f"rnn-ref reads {', '.join(KERAS3.activations)}")
        acts.append(KERAS3.activations[name])
    if not getattr(cell, "built", False) or getattr(cell, "kernel", None) is None:
        raise ValueError(f"the Keras {title} is not built and has no weights yet: call it "
                         f"on an input or build() it first")
    to_np = keras.ops.convert_to_numpy
    params = gated_cell_weights(
        kind, bool(getattr(cell, "reset_after", True)), to_np(cell.kernel),
        to_np(cell.recurrent_kernel), to_np(cell.bias) if cell.use_bias else None,
        where=f"the Keras {title}")
    return params, (acts[0], acts[1])


def _cell(layer: Any) -> CellRead:
    """One direction of a Keras 3 layer: a ``GRU``'s or ``LSTM``'s cell and (f, g)
    (:func:`_gated_cell`), a ``SimpleRNN``'s cell and activation
    (:func:`keras_graph.read_cell`)."""
    kind = _gated_kind(layer)
    if kind is not None:
        return _gated_cell(layer, kind)
    keras = keras_module()
    return read_cell(layer, keras.layers.SimpleRNN, KERAS3, keras.ops.convert_to_numpy,
                     generic=(keras.layers.RNN, keras.layers.SimpleRNNCell))


def fused_layers(layers: Any) -> frozenset[str]:
    """The names of the Keras 3 ``GRU``/``LSTM`` layers among ``layers`` that this process
    runs through TensorFlow's fused cuDNN kernel on masked inputs (``GRU.inner_loop``,
    ``LSTM.inner_loop``: ``use_cudnn`` "auto" or True, no ``recurrent_dropout``, and
    ``backend.cudnn_ok``: tanh and sigmoid, a bias, no unroll, reset_after for a GRU, and a
    GPU TensorFlow sees). Their padded steps output zeros. Empty on another backend (JAX's and
    torch's fused kernels refuse masks) and without a GPU."""
    keras = keras_module()
    if backend_name() != "tensorflow":
        return frozenset()
    from keras.src import backend as keras_backend

    out = set()
    for layer in layers:
        if type(layer) not in (keras.layers.GRU, keras.layers.LSTM):
            continue
        cell = layer.cell
        if layer.use_cudnn not in ("auto", True) or cell.recurrent_dropout:
            continue
        extra = {"reset_after": cell.reset_after} if type(layer) is keras.layers.GRU else {}
        if keras_backend.cudnn_ok(cell.activation, cell.recurrent_activation, layer.unroll,
                                  cell.use_bias, **extra):
            out.add(layer.name)
    return frozenset(out)


@dataclass(frozen=True)
class LayerCall:
    """How a bare Keras RNN layer (of Keras 3 or Keras 2) is called, for its oracle;
    ``states`` is each direction's number of states (2 for an LSTM: ``[h, c]``)."""

    bidirectional: bool
    return_sequences: bool
    return_state: bool
    time_major: bool = False  # Keras 2's (T, N, ...) layers
    states: int = 1


def read_bare_layer(obj: Any, *, bidirectional: bool, cell: Callable[[Any], CellRead],
                    backend: str, fused: bool = False) -> tuple[RNNParams, LayerCall]:
    """A bare ``SimpleRNN``, ``GRU``, ``LSTM`` (or ``RNN`` around one of their cells) or
    ``Bidirectional`` layer of Keras 3, or a bare ``SimpleRNN`` or ``Bidirectional`` of Keras
    2 (``cell`` reads one direction): its parameters, with the masked-step output of
    ``backend`` (see the module docstring; ``fused``: TensorFlow's cuDNN kernel runs it), and
    how it is called.

    Raises:
        UnsupportedError: directions with and without a bias, or of different cells; what
            ``cell`` refuses.
    """
    inner = [obj.forward_layer, obj.backward_layer] if bidirectional else [obj]
    read = [cell(x) for x in inner]
    zero = obj.return_sequences if bidirectional else obj.zero_output_for_mask
    mode = keras_masked_step_output(backend, zero_output_for_mask=bool(zero),
                                    unroll=bool(inner[0].unroll), fused=fused)
    reverse = not bidirectional and bool(obj.go_backwards)
    bias = {bool(x.cell.use_bias) for x in inner}
    if len(bias) != 1:
        raise UnsupportedError("rnn-ref", "layers with and without a bias")
    kinds = {c.kind for c, _ in read}
    resets = {bool(getattr(x.cell, "reset_after", True)) for x in inner}
    if len(kinds) != 1 or len(resets) != 1:
        raise UnsupportedError("rnn-ref", f"a Bidirectional layer {obj.name!r} whose directions "
                               f"differ in their cell or reset_after",
                               "the spec's layer has one cell for both directions")
    kind = kinds.pop()
    acts = [a[1] if isinstance(a, tuple) else a for _, a in read]
    gates = [a[0] for _, a in read if isinstance(a, tuple)]
    config = RNNConfig(
        input_size=int(_input_width(read[0][0])), hidden_size=read[0][0].hidden_size,
        direction="bidirectional" if bidirectional else ("reverse" if reverse else "forward"),
        activation=[acts], bias=bias.pop(),
        merge_mode=obj.merge_mode if bidirectional else "concat", padded_output=mode,
        output_order="processing" if reverse else "aligned",
        # return_sequences=False: the last output in processing order, the final state
        select="sequence" if obj.return_sequences else "final",
        cell=kind, recurrent_activation=[gates] if gates else None,
        reset_after=resets.pop() if kind == "gru" else True,
    )
    time_major = {bool(getattr(x, "time_major", False)) for x in inner}
    call = LayerCall(bidirectional, bool(obj.return_sequences), bool(obj.return_state),
                     time_major.pop(), 2 if kind == "lstm" else 1)
    return RNNParams(config, [[c for c, _ in read]]), call


def _input_width(cell: AnyCellParams) -> int:
    """D_l of one cell."""
    w_x = cell.w_x if isinstance(cell, CellParams) else next(iter(cell.w_x.values()))
    return int(w_x.shape[0])


def _bare_layer(obj: Any) -> tuple[RNNParams, LayerCall]:
    """A bare Keras 3 ``SimpleRNN``, ``GRU``, ``LSTM``, ``RNN`` around one of their cells, or
    ``Bidirectional`` layer."""
    bidirectional = isinstance(obj, keras_module().layers.Bidirectional)
    return read_bare_layer(obj, bidirectional=bidirectional, cell=_cell, backend=backend_name(),
                           fused=not bidirectional and bool(fused_layers([obj])))


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
                      backend=backend or backend_name(),
                      fused=fused_layers(model.layers) if flavour is KERAS3 else frozenset())
    by_name = {layer.name: layer for layer in model.layers}

    def fetch(name: str, index: int) -> np.ndarray[Any, Any]:
        weights = by_name[name].get_weights()
        if index >= len(weights):
            raise ValueError(f"the {flavour.name} layer {name!r} is not built and has no "
                             f"weights yet: call the model on an input or build() it first")
        return np.asarray(weights[index])

    return net, assemble(net, fetch)


def from_native(obj: Any) -> RNNParams:
    """Canonical parameters of a ``SimpleRNN``, ``GRU``, ``LSTM``, a ``Bidirectional``, or a
    ``Sequential`` or functional model (see :mod:`rnn_ref.backends.keras.graph` for the
    layers read). The config records the masked-step behaviour of the Keras backend this
    process runs (see the module docstring).

    Raises:
        UnsupportedError: any other layer or operation, named; stateful layers;
            ``go_backwards`` below another layer; activations outside rnn-ref's set.
    """
    keras = keras_module()
    if isinstance(obj, keras.Model):
        return model_network(obj)[1]
    if isinstance(obj, (keras.layers.RNN, keras.layers.Bidirectional)):
        return _bare_layer(obj)[0]  # an RNN around another cell is refused, named
    raise TypeError(f"from_keras takes a SimpleRNN, GRU or LSTM layer, an RNN around one of "
                    f"their cells, a Bidirectional or a keras.Model, got {type(obj).__name__}")


# --------------------------------------------------------------------------------------------
# to Keras
# --------------------------------------------------------------------------------------------
_IDENTITY_CLASSES = {kind: (cls, key) for cls, (kind, key) in IDENTITY_LAYERS.items()}


def _cell_weights(cell: CellParams, bias: bool) -> list[np.ndarray[Any, Any]]:
    return [cell.w_x, cell.w_h] + ([cell.b_x + cell.b_h] if bias else [])


def gated_keras_weights(cell: GRUParams | LSTMParams, reset_after: bool, bias: bool
                        ) -> list[np.ndarray[Any, Any]]:
    """A Keras 3 ``GRU``'s or ``LSTM``'s arrays of one cell, the inverse of
    :func:`keras_graph.gated_cell_weights`: ``kernel (D, G*M)``, ``recurrent_kernel (M, G*M)``
    packed in Keras' gate order (``gru:keras`` z, r, h; ``lstm:keras`` i, f, c, o), and with
    ``bias`` a reset-after GRU's ``(2, 3M)`` (``b_x``, ``b_h``: ``b_h[n]`` stays inside
    ``r *``) or one ``(G*M,)`` ``b_x + b_h`` (an LSTM's, a reset-before GRU's: every bias
    there is added to its gate's input, so the sum is the same function).

    Raises:
        ValueError: a cell without one of the gates Keras packs (an LSTM without ``f``:
            ``input_forget``), from :func:`rnn_ref.cells.pack`.
    """
    kind = cell.kind
    order = f"{kind}:keras"
    out = [pack(cell.w_x, order, cell=kind), pack(cell.w_h, order, cell=kind)]
    if bias:
        b_x, b_h = pack(cell.b_x, order, cell=kind), pack(cell.b_h, order, cell=kind)
        out.append(np.stack([b_x, b_h]) if kind == "gru" and reset_after else b_x + b_h)
    return out


def rnn_layer(params: RNNParams, li: int, *, return_sequences: bool, return_state: bool = False,
              zero_output: bool = False) -> Any:
    """Keras' layer for recurrent layer ``li`` of ``params`` (``SimpleRNN``, ``GRU`` or
    ``LSTM``, with ``go_backwards`` for a reverse layer, or ``Bidirectional`` of two),
    built and holding its weights, with its input and recurrent dropout rates. A GRU's
    ``reset_after`` is the cell's; the gates' activation is ``recurrent_activation``, the
    candidate's (and an LSTM's cell state's, which Keras shares) ``activation``."""
    keras = keras_module()
    cfg = params.config
    spec = cfg.cell_of(li)
    dtype = params.dtype.name
    rates = {i.kind: i.rate for i in cfg.identities if i.after == li
             and i.kind in ("input_dropout", "recurrent_dropout")}

    def one(r: int, backwards: bool) -> Any:
        acts = cfg.activations_of(li, r)
        common: dict[str, Any] = dict(
            use_bias=cfg.bias, return_sequences=return_sequences, return_state=return_state,
            go_backwards=backwards, zero_output_for_mask=zero_output, dtype=dtype,
            dropout=rates.get("input_dropout", 0.0),
            recurrent_dropout=rates.get("recurrent_dropout", 0.0))
        if spec.kind == "elman":
            return keras.layers.SimpleRNN(cfg.hidden_sizes[li], activation=TO_KERAS[acts[0]],
                                          **common)
        gated = dict(activation=TO_KERAS[acts[1]], recurrent_activation=TO_KERAS[acts[0]],
                     **common)
        if spec.kind == "gru":
            return keras.layers.GRU(cfg.hidden_sizes[li], reset_after=spec.reset_after,
                                    **gated)
        return keras.layers.LSTM(cfg.hidden_sizes[li], **gated)

    def weights(r: int) -> list[np.ndarray[Any, Any]]:
        if spec.kind == "elman":
            return _cell_weights(params.elman_cell(li, r), cfg.bias)
        cell = params.layers[li][r]
        assert isinstance(cell, (GRUParams, LSTMParams))  # the config says so (RNNParams)
        return gated_keras_weights(cell, spec.reset_after, cfg.bias)

    if cfg.directions[li] == "bidirectional":
        layer = keras.layers.Bidirectional(one(0, False), backward_layer=one(1, True),
                                           merge_mode=cfg.merge_modes[li], dtype=dtype)
    else:
        layer = one(0, cfg.directions[li] == "reverse")
    layer.build((None, None, cfg.layer_input_size(li)))
    # set after building: building a Bidirectional may initialise its layers again
    layer.set_weights([w for r in range(cfg.num_directions_of(li)) for w in weights(r)])
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
    keras = keras_module()
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
    keras = keras_module()
    out = []
    for ident in params.config.identities:
        if ident.after == after and ident.kind in _IDENTITY_CLASSES:
            cls, key = _IDENTITY_CLASSES[ident.kind]
            out.append(getattr(keras.layers, cls)(**{key: ident.rate},
                                                  dtype=params.dtype.name))
    return out


def input_layers(params: RNNParams) -> list[Any]:
    """``Input``, then ``Embedding`` (with its table) or ``Masking`` when the network has
    one."""
    keras = keras_module()
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
    keras = keras_module()
    cls = (keras.layers.GlobalMaxPooling1D if params.config.select == "max_all"
           else keras.layers.GlobalAveragePooling1D)
    return cls(dtype=params.dtype.name)


def _returns_states(cfg: RNNConfig) -> bool:
    return any(state_entry(name) is not None for name in cfg.returns)


def network_layers(params: RNNParams) -> list[Any]:
    """Every layer of the Keras model of ``params``, input to output, built with their
    weights (see :func:`to_native`); every recurrent layer returns its states when the
    network returns a final state."""
    cfg = params.config
    L = cfg.num_layers
    layers = [*input_layers(params), *identity_layers(params, 0)]
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


def fused_layer(cfg: RNNConfig, li: int) -> bool:
    """Whether this process runs layer ``li`` of the model :func:`to_native` writes through
    TensorFlow's fused cuDNN kernel (:func:`fused_layers`, from the config: a GRU or LSTM of
    tanh and sigmoid with a bias, a reset-after GRU, no recurrent dropout, a GPU
    TensorFlow sees), whose padded steps output zeros."""
    spec = cfg.cell_of(li)
    if spec.kind == "elman" or backend_name() != "tensorflow" or any(
            i.kind == "recurrent_dropout" and i.after == li for i in cfg.identities):
        return False
    from keras.src import backend as keras_backend

    get = keras_module().activations.get
    extra = {"reset_after": spec.reset_after} if spec.kind == "gru" else {}
    for r in range(cfg.num_directions_of(li)):
        f, g = (TO_KERAS.get(a) for a in cfg.activations_of(li, r)[:2])
        if f is None or g is None or not keras_backend.cudnn_ok(get(g), get(f), False,
                                                                 cfg.bias, **extra):
            return False
    return True


def _adopt_padding(params: RNNParams, strict: bool) -> RNNParams:
    """``params`` under the padded-step output the Keras model of it gives (a Bidirectional
    last layer: zeros; a SimpleRNN, GRU or LSTM: zeros or this backend's own, zeros through
    TensorFlow's cuDNN kernel: :func:`fused_layer`), warning when that changes
    (:func:`~rnn_ref.backends._common.adopt_padded_output`)."""
    cfg = params.config
    mode = cfg.padded_output
    if cfg.directions[-1] == "bidirectional":
        return adopt_padded_output(params, "zeros", "Keras' Bidirectional", strict=strict)
    native = keras_masked_step_output(backend_name(), zero_output_for_mask=False, unroll=False,
                                      fused=fused_layer(cfg, cfg.num_layers - 1))
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
    keras = keras_module()
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
    returns its states then: each direction's ``h``, and an LSTM's ``c`` after it, which
    fall in ``h_n`` and ``c_n`` order)."""
    keras = keras_module()
    h = inputs = layers[0]
    states: dict[str, list[Any]] = {"h_n": [], "c_n": []}
    sequence = None
    li = 0
    for layer in layers[1:]:
        out = layer(h)
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            if layer.return_state:
                R = cfg.num_directions_of(li)
                per = 2 if cfg.cell_of(li).kind == "lstm" else 1
                main = len(out) - R * per  # a merged output, or merge_mode None's pair
                got = list(out[main:])
                out = out[0] if main == 1 else list(out[:main])
                for r in range(R):
                    states["h_n"].append(got[r * per])
                    if per == 2:
                        states["c_n"].append(got[r * per + 1])
            sequence = out
            li += 1
        h = out
    named = {"result": h, "sequence": sequence}
    outputs = []
    for name in cfg.returns:
        entry = state_entry(name)
        outputs.append(named[name] if entry is None else states[entry[0]][entry[1]])
    return keras.Model(inputs, outputs)


# --------------------------------------------------------------------------------------------
# oracle
# --------------------------------------------------------------------------------------------
def owns(model: Any) -> bool:
    keras = keras_module()
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


_Arrays = list[np.ndarray[Any, Any]]


def _initial_states(initial_state: Any, R: int, per: int = 1
                    ) -> tuple[_Arrays | None, _Arrays | None]:
    """A bare layer's ``initial_state`` (one array, or a list of ``R * per``: each
    direction's ``[h]``, or an LSTM's ``[h, c]``) in float64, as (h0, c0)."""
    if initial_state is None:
        return None, None
    states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [
        initial_state]
    if len(states) != R * per:
        what = "[h, c] per direction" if per == 2 else "one per direction"
        raise ValueError(f"initial_state needs {R * per} array(s) ({what}), got {len(states)}")
    arrays = [np.asarray(s, np.float64) for s in states]
    return arrays[::per], (arrays[1::per] if per == 2 else None)


def layer_oracle(params: RNNParams, st: LayerCall, where: str = "the Keras oracle"
                 ) -> Callable[..., Any]:
    """What a bare Keras 3 or Keras 2 layer of ``params`` called as ``st`` says returns, in
    float64: ``(inputs, mask=None, initial_state=None)``, ``(T, N, ...)`` arrays for a
    ``time_major`` layer (which takes no mask). With ``return_state`` the states follow the
    output(s), each direction's ``h`` (and an LSTM's ``c``) in turn, as Keras returns them."""
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
        h0, c0 = _initial_states(initial_state, R, st.states)
        res = forward(bare, x, h0=h0, c0=c0,
                      mask=None if mask is None else np.asarray(mask, bool))
        h_n = res.h_n if isinstance(res.h_n, tuple) else tuple(res.h_n)
        if res.c_n is not None:  # Keras' order: h, c of each direction in turn
            h_n = tuple(s for r in range(R) for s in (h_n[r], res.c_n[r]))
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
    layer it takes ``(inputs, mask=None, initial_state=None)`` (``[h0]`` for ``SimpleRNN`` and
    ``GRU``, ``[h0, c0]`` for ``LSTM``, ``[h_forward, h_backward]`` for ``Bidirectional``, or
    ``[h_f, c_f, h_b, c_b]`` around an ``LSTM``). It returns the same structure: an array, or
    a tuple (``return_state``, ``merge_mode=None``).
    """
    if isinstance(model, keras_module().Model):
        return model_oracle(from_native(model))
    return layer_oracle(*_bare_layer(model))


# --------------------------------------------------------------------------------------------
# importing Keras quietly, on TensorFlow (for files, LiteRT and tf-keras)
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
    quiet_import("keras")
    return keras_module()
