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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends import file_limits
from rnn_ref.backends._common import raise_if
from rnn_ref.backends._frameworks import (
    KERAS2_ACTIVATIONS,
    KERAS2_NAMES,
    keras2_unsupported,
    keras_masked_step_output,
    sniff_h5,
)
from rnn_ref.backends._frameworks import keras2_unsupported as unsupported
from rnn_ref.backends.keras_backend import (
    LegacyReader,
    quiet_import,
    readout_of,
    unsupported_dtype,
)
from rnn_ref.backends.keras_backend import list_arrays as _h5_arrays
from rnn_ref.backends.keras_worker import KerasProcessBackend, serve_with
from rnn_ref.config import RNNConfig
from rnn_ref.convert import Hints, NativeFile
from rnn_ref.errors import FileFormatError, UnsupportedError
from rnn_ref.inputs import check_inputs
from rnn_ref.params import CellParams, Readout, RNNParams
from rnn_ref.reference import ForwardResult, forward, merge

__all__ = ["FORMAT", "KERAS2_ACTIVATIONS", "Keras2Backend", "Keras2ProcessBackend",
           "from_native", "import_tf_keras", "keras2_unsupported", "list_arrays",
           "load_native", "oracle", "owns", "read_file", "run_native", "serve", "sniff_h5",
           "tensorflow_backend", "to_native", "unsupported", "write_file"]

FORMAT = "keras2-h5"
TITLE = "Keras 2"
Reason = tuple[str, str] | None

_RNN_CLASSES = ("SimpleRNN", "Bidirectional")
_ALLOWED_CLASSES = ("InputLayer", "Masking", *_RNN_CLASSES, "Dense")


# --------------------------------------------------------------------------------------------
# tf_keras, imported on first use (what Keras 2 cannot hold: _frameworks.keras2_unsupported)
# --------------------------------------------------------------------------------------------
def import_tf_keras() -> Any:
    """tf-keras (:func:`rnn_ref.backends.keras_backend.quiet_import`)."""
    return quiet_import("tf_keras")


_tk = import_tf_keras


def _np(v: Any) -> np.ndarray[Any, Any]:
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v)


# --------------------------------------------------------------------------------------------
# from Keras 2
# --------------------------------------------------------------------------------------------
def _activation(fn: Any, where: str) -> Activation:
    name = getattr(fn, "__name__", str(fn))
    if name not in KERAS2_ACTIVATIONS:
        raise UnsupportedError("rnn-ref", f"the Keras 2 activation {name!r} ({where})",
                               f"rnn-ref reads {', '.join(KERAS2_ACTIVATIONS)}")
    return KERAS2_ACTIVATIONS[name]


def _cell(layer: Any) -> tuple[CellParams, Activation]:
    tk = _tk()
    if not isinstance(layer, tk.layers.SimpleRNN):
        raise UnsupportedError("rnn-ref", f"a Keras 2 {type(layer).__name__} layer",
                               "only SimpleRNN is an Elman RNN")
    if getattr(layer, "stateful", False):
        raise UnsupportedError("rnn-ref", "a stateful SimpleRNN",
                               "its state lives between calls, outside the weights")
    cell = layer.cell
    activation = _activation(cell.activation, layer.name)
    if not getattr(cell, "built", False) or getattr(cell, "kernel", None) is None:
        raise ValueError(f"the Keras 2 layer {layer.name!r} is not built and has no weights "
                         f"yet: call it on an input or build() it first")
    kernel, rec = _np(cell.kernel), _np(cell.recurrent_kernel)
    bias = _np(cell.bias) if cell.use_bias else np.zeros(rec.shape[0], rec.dtype)
    return CellParams(kernel, rec, bias, np.zeros_like(bias)), activation


@dataclass(frozen=True)
class _Structure:
    """What a Keras 2 object does around its RNN layers, for the oracle."""

    bidirectional: bool
    return_sequences: bool
    return_state: bool
    mask_value: float | None
    bare_layer: bool
    time_major: bool


def _model_chain(model: Any) -> tuple[list[Any], float | None, Any]:
    """The RNN layers, the ``Masking`` value (or ``None``) and the final ``Dense`` (or
    ``None``) of a tf-keras model; anything else is refused."""
    tk = _tk()
    mask_value: float | None = None
    dense: Any = None
    layers: list[Any] = []
    chain = [la for la in model.layers if not isinstance(la, tk.layers.InputLayer)]
    for i, layer in enumerate(chain):
        if isinstance(layer, tk.layers.Masking):
            if layers or i:
                raise UnsupportedError("rnn-ref", "a Masking layer after another layer")
            mask_value = float(layer.mask_value)
        elif isinstance(layer, (tk.layers.SimpleRNN, tk.layers.Bidirectional)):
            if dense is not None:
                raise UnsupportedError("rnn-ref", "an RNN layer after the Dense readout")
            layers.append(layer)
        elif isinstance(layer, tk.layers.Dense) and i == len(chain) - 1 and layers:
            dense = layer
        else:
            raise UnsupportedError("rnn-ref", f"a Keras 2 {type(layer).__name__} layer in the "
                                   "model", "a model is [Masking,] SimpleRNN or "
                                   "Bidirectional layers [, Dense]")
    if not layers:
        raise ValueError("the Keras 2 model holds no SimpleRNN or Bidirectional layer")
    return layers, mask_value, dense


def _check_chain(kinds: list[bool], backwards: list[bool], seqs: list[bool]) -> str:
    """The direction of a chain of RNN layers (``kinds``: bidirectional or not, per layer),
    refusing what one :class:`RNNConfig` cannot hold (shared by the converter and the file
    reader)."""
    if len(set(kinds)) != 1:
        raise UnsupportedError("rnn-ref", "a mix of SimpleRNN and Bidirectional layers",
                               "every layer of a network has the same directions")
    if any(not s for s in seqs[:-1]):
        raise UnsupportedError("rnn-ref", "a layer with return_sequences=False below another "
                               "RNN layer")
    if any(backwards) and len(backwards) > 1:
        raise UnsupportedError("rnn-ref", "stacked layers with go_backwards=True",
                               "each hands the next its outputs in processing order, with the "
                               "mask unflipped")
    return "bidirectional" if kinds[0] else ("reverse" if any(backwards) else "forward")


def _parse(obj: Any) -> tuple[RNNParams, _Structure]:
    tk = _tk()
    if isinstance(obj, (tk.layers.SimpleRNN, tk.layers.Bidirectional)):
        layers, bare, mask_value, dense = [obj], True, None, None
    elif isinstance(obj, tk.Model):
        bare = False
        layers, mask_value, dense = _model_chain(obj)
    else:
        raise TypeError(f"from_native takes a tf_keras SimpleRNN, Bidirectional or Model, "
                        f"got {type(obj).__name__}")
    kinds = [isinstance(la, tk.layers.Bidirectional) for la in layers]
    inner = [[la.forward_layer, la.backward_layer] if k else [la]
             for la, k in zip(layers, kinds, strict=True)]
    direction = _check_chain(kinds, [bool(la.go_backwards) for la, k in zip(layers, kinds,
                                                                             strict=True)
                                     if not k],
                             [bool(la.return_sequences) for la in layers])
    cells, acts = [], []
    for pair in inner:
        read = [_cell(x) for x in pair]
        cells.append([c for c, _ in read])
        acts.append([a for _, a in read])
    biases = {bool(x.cell.use_bias) for pair in inner for x in pair}
    if len(biases) != 1:
        raise UnsupportedError("rnn-ref", "layers with and without a bias")
    last = layers[-1]
    if kinds[0]:
        mode = keras_masked_step_output("tensorflow",
                                        zero_output_for_mask=bool(last.return_sequences),
                                        unroll=bool(last.forward_layer.unroll))
    else:
        mode = keras_masked_step_output("tensorflow",
                                        zero_output_for_mask=bool(last.zero_output_for_mask),
                                        unroll=bool(last.unroll))
    readout, out_size, out_act = None, None, Activation("linear")
    if dense is not None:
        kernel = _np(dense.kernel)
        bias = _np(dense.bias) if dense.use_bias else np.zeros(kernel.shape[1], kernel.dtype)
        readout, out_size = Readout(kernel, bias), int(kernel.shape[1])
        out_act = _activation(dense.activation, dense.name)
    config = RNNConfig(
        input_size=int(cells[0][0].w_x.shape[0]),
        hidden_size=tuple(c[0].hidden_size for c in cells), direction=direction,
        activation=acts, bias=biases.pop(), output_size=out_size, output_activation=out_act,
        merge_mode=tuple(la.merge_mode if k else "concat" for la, k in zip(layers, kinds,
                                                                            strict=True)),
        padded_output=mode if (bare or mask_value is not None) else "zeros",
        output_order="processing" if direction == "reverse" else "aligned",
    )
    time_major = {bool(x.time_major) for pair in inner for x in pair}
    if len(time_major) != 1:
        raise UnsupportedError("rnn-ref", "a mix of time-major and batch-major layers")
    structure = _Structure(kinds[0], bool(last.return_sequences), bool(last.return_state),
                           mask_value, bare, time_major.pop())
    return RNNParams(config, cells, readout), structure


def from_native(obj: Any) -> RNNParams:
    """Canonical parameters of a tf-keras ``SimpleRNN``, ``Bidirectional`` or model of
    ``[Masking,] SimpleRNN or Bidirectional layers [, Dense]`` (bit-exact; Keras' one bias
    becomes ``b_x``, ``b_h = 0``). The config records TensorFlow's masked steps for objects that
    can be given a mask (a bare layer, a model with ``Masking``).

    Raises:
        UnsupportedError: other layers, stateful layers, a mix of SimpleRNN and Bidirectional,
            stacked ``go_backwards``, activations outside :data:`KERAS2_ACTIVATIONS`.
    """
    return _parse(obj)[0]


# --------------------------------------------------------------------------------------------
# to Keras 2
# --------------------------------------------------------------------------------------------
def _weights(cell: CellParams, bias: bool) -> list[np.ndarray[Any, Any]]:
    return [cell.w_x, cell.w_h] + ([cell.b_x + cell.b_h] if bias else [])


def rnn_layers(params: RNNParams, *, return_sequences: bool = True,
                return_state: bool = False) -> list[Any]:
    """The tf-keras RNN layers of ``params``, built and holding its weights."""
    tk = _tk()
    cfg, dtype = params.config, params.dtype.name
    out = []
    for li, layer in enumerate(params.layers):
        seqs = return_sequences if li == cfg.num_layers - 1 else True
        d_in = (None, None, layer[0].w_x.shape[0])

        def simple(r: int, backwards: bool, zero: bool, li: int = li, seqs: bool = seqs
                   ) -> Any:
            return tk.layers.SimpleRNN(
                params.layers[li][r].hidden_size,
                activation=KERAS2_NAMES[cfg.activation_of(li, r)], use_bias=cfg.bias,
                return_sequences=seqs, return_state=return_state, go_backwards=backwards,
                zero_output_for_mask=zero, dtype=dtype)

        if cfg.num_directions == 2:
            rnn = tk.layers.Bidirectional(simple(0, False, False),
                                          backward_layer=simple(1, True, False),
                                          merge_mode=cfg.merge_modes[li], dtype=dtype)
            rnn.build(d_in)  # Bidirectional copies the layers it wraps: set weights after
            rnn.forward_layer.set_weights(_weights(layer[0], cfg.bias))
            rnn.backward_layer.set_weights(_weights(layer[1], cfg.bias))
        else:
            rnn = simple(0, cfg.direction == "reverse", cfg.padded_output == "zeros")
            rnn.build(d_in)
            rnn.set_weights(_weights(layer[0], cfg.bias))
        out.append(rnn)
    return out


def _dense(params: RNNParams) -> Any:
    tk = _tk()
    ro = params.readout
    assert ro is not None
    dense = tk.layers.Dense(ro.w.shape[1], activation=KERAS2_NAMES[params.config.output_activation],
                            dtype=params.dtype.name)
    dense.build((None, None, ro.w.shape[0]))
    dense.set_weights([ro.w, ro.b])
    return dense


def to_native(params: RNNParams, *, return_sequences: bool = True,
              mask_value: float | None = None) -> Any:
    """A functional ``tf_keras.Model``: ``Input((None, D))`` [-> ``Masking``] -> the RNN layers
    [-> ``Dense``], in the params' dtype, holding its weights bit-exact (``b_x + b_h`` as the
    bias).

    Raises:
        UnsupportedError: what :func:`keras2_unsupported` names (with ``mask_value``, padded
            outputs TensorFlow does not produce).
    """
    tk = _tk()
    cfg = params.config
    raise_if(keras2_unsupported(cfg, backend="tensorflow", padded=mask_value is not None),
             TITLE)
    inputs = tk.Input((None, cfg.input_size), dtype=params.dtype.name)
    h = inputs
    if mask_value is not None:
        h = tk.layers.Masking(mask_value=mask_value, dtype=params.dtype.name)(h)
    for layer in rnn_layers(params, return_sequences=return_sequences):
        h = layer(h)
    if params.readout is not None:
        h = _dense(params)(h)
    return tk.Model(inputs, h)


# --------------------------------------------------------------------------------------------
# oracle
# --------------------------------------------------------------------------------------------
def owns(model: Any) -> bool:
    """Whether ``model`` is a tf-keras object (checked without importing tf-keras)."""
    if "tf_keras" not in sys.modules:
        return False
    tk = sys.modules["tf_keras"]
    return isinstance(model, (tk.layers.SimpleRNN, tk.layers.Bidirectional, tk.Model))


def _initial_state(st: _Structure, initial_state: Any, R: int
                   ) -> list[np.ndarray[Any, Any]] | None:
    if initial_state is None:
        return None
    if not st.bare_layer:
        raise ValueError("initial_state is taken by a bare layer's oracle only")
    states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
    if len(states) != R:
        raise ValueError(f"initial_state needs {R} array(s), got {len(states)}")
    return [np.asarray(s, np.float64) for s in states]


def oracle(model: Any) -> Callable[..., Any]:
    """A NumPy function returning what the tf-keras ``model(inputs, ...)`` returns, in float64:
    ``(inputs, mask=None, initial_state=None)`` as Keras 3's oracle
    (:func:`rnn_ref.backends.keras_backend.oracle`); for ``time_major`` layers the inputs and
    outputs are ``(T, N, ...)`` (a mask is refused there)."""
    params, st = _parse(model)
    cfg = params.config
    bare = RNNParams(cfg.replace(output_size=None, output_activation="linear",
                                 merge_mode=(*cfg.merge_modes[:-1], None) if st.bidirectional
                                 else "concat"), params.layers)
    R = cfg.num_directions

    def call(inputs: Any, mask: Any = None, initial_state: Any = None) -> Any:
        x = np.asarray(inputs, np.float64)
        if st.time_major:
            if mask is not None or st.mask_value is not None:
                raise UnsupportedError("the Keras 2 oracle", "a mask with time_major=True")
            x = x.swapaxes(0, 1)
        if st.mask_value is not None:
            if mask is not None:
                raise ValueError("the model derives its mask from Masking; do not pass mask")
            mask = np.any(x != st.mask_value, axis=-1)
        h0 = _initial_state(st, initial_state, R)
        res = forward(bare, x, h0=h0, mask=None if mask is None else np.asarray(mask, bool))
        h_n = res.h_n if isinstance(res.h_n, tuple) else tuple(res.h_n)
        if st.bidirectional:
            f, b = res.outputs
            if not st.return_sequences:
                f, b = f[:, -1], b[:, 0]
            merged = merge(f, b, cfg.merge_modes[-1])
        else:
            merged = res.outputs if st.return_sequences else res.outputs[:, -1]
        main = merged if isinstance(merged, tuple) else readout_of(params, merged)
        if st.time_major and st.return_sequences:
            main = (tuple(m.swapaxes(0, 1) for m in main) if isinstance(main, tuple)
                    else main.swapaxes(0, 1))
        if st.bare_layer and st.return_state:
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
            from rnn_ref.convert import hint_activation

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


def _structure_of(path: Path, layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Config changes the weights cannot tell (bias, padded steps), after refusing what one
    RNNConfig cannot hold: layers other than [Masking,] RNN layers [, Dense], a functional
    model that is not a chain, stateful layers, a stacked or mixed go_backwards."""
    chain = [la for la in layers if la.get("class_name") != "InputLayer"]
    for i, la in enumerate(chain):
        cls = la.get("class_name")
        if cls not in _ALLOWED_CLASSES:
            raise UnsupportedError("rnn-ref", f"a Keras 2 {cls} layer ({la['config'].get('name')})"
                                   f" in {path.name}", "a model is [Masking,] SimpleRNN or "
                                   "Bidirectional layers [, Dense]")
        if cls == "Masking" and i:
            raise UnsupportedError("rnn-ref", "a Masking layer after another layer")
        if cls == "Dense" and i != len(chain) - 1:
            raise UnsupportedError("rnn-ref", "a Dense layer before the last layer")
        inbound = la.get("inbound_nodes")
        if inbound and sum(len(node) for node in inbound) != 1:
            raise UnsupportedError("rnn-ref", f"layer {la['config'].get('name')} with several "
                                   "inputs or calls", "a model is a chain of layers")
    rnn = [la for la in chain if la["class_name"] in _RNN_CLASSES]
    if not rnn:
        raise FileFormatError(f"{path}: no SimpleRNN or Bidirectional layer")
    kinds = [la["class_name"] == "Bidirectional" for la in rnn]
    inner = []
    for la, k in zip(rnn, kinds, strict=True):
        c = la["config"]
        subs = [c["layer"], c.get("backward_layer", c["layer"])] if k else [la]
        for s in subs:
            if s.get("class_name") != "SimpleRNN":
                raise UnsupportedError("rnn-ref", f"a Keras 2 {s.get('class_name')} layer "
                                       f"({c.get('name')})", "only SimpleRNN is an Elman RNN")
            if s["config"].get("stateful"):
                raise UnsupportedError("rnn-ref", "a stateful SimpleRNN",
                                       "its state lives between calls, outside the weights")
        inner.append([s["config"] for s in subs])
    seqs = [bool(c[0].get("return_sequences", False)) for c in inner]
    _check_chain(kinds, [bool(c[0].get("go_backwards")) for c, k in zip(inner, kinds,
                                                                         strict=True) if not k],
                 seqs)
    biases = {bool(s.get("use_bias", True)) for c in inner for s in c}
    if len(biases) != 1:
        raise UnsupportedError("rnn-ref", "layers with and without a bias")
    masked = any(la["class_name"] == "Masking" for la in chain)
    last = inner[-1][0]
    zero = seqs[-1] if kinds[-1] else bool(last.get("zero_output_for_mask", False))
    mode = keras_masked_step_output("tensorflow", zero_output_for_mask=zero,
                                    unroll=bool(last.get("unroll", False)))
    return {"bias": biases.pop(), "padded_output": mode if masked else "zeros"}


def read_file(path: Path, fmt: str, hints: Hints) -> RNNParams:
    """The parameters of a Keras 2 ``.h5`` file (a whole model, or ``save_weights``' file,
    which needs the hints), read by weight name with h5py: nothing from the file is run."""
    file_limits.check_h5(path, str(path))
    names, weights, layers = _h5_contents(path)
    if layers is None:  # save_weights' file: the hints say what the weights cannot
        return _Keras2Reader(path, hints).params(names, weights, {})
    changes = _structure_of(path, layers)  # refuse first what the weights would hide
    cfgs = {la["config"]["name"]: la for la in layers}
    return _Keras2Reader(path, hints).params(names, weights, cfgs).replace(**changes)


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
        reason = keras2_unsupported(config, backend="tensorflow", padded=lengths or mask)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        return unsupported_dtype(dtype, "tensorflow")


class Keras2Backend(_Keras2Support):
    """tf-keras' own layers in this process, called eagerly."""

    name = "keras2[tensorflow]"

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None) -> ForwardResult:
        """As :meth:`rnn_ref.backends.keras_backend.KerasBackend.forward`, in tf-keras."""
        import tensorflow as tf

        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name)
        m = inputs.mask_or_none()
        raise_if(keras2_unsupported(cfg, backend="tensorflow", padded=m is not None), self.name)
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
            y = _np(_dense(params)(h))
        outputs = tuple(_np(o) for o in h) if isinstance(h, tuple) else _np(h)
        return ForwardResult(outputs, np.stack(h_n) if cfg.uniform_hidden else tuple(h_n), y)


def serve() -> None:
    """The worker loop of ``keras2[tensorflow]`` (the protocol of
    :mod:`rnn_ref.backends.keras_worker`)."""
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

    worker_code = "from rnn_ref.backends.keras2_backend import serve; serve()"

    def worker_env(self) -> dict[str, str]:
        """tf-keras in the worker: ``TF_USE_LEGACY_KERAS=1``."""
        return {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def tensorflow_backend() -> Keras2ProcessBackend:
    """``keras2[tensorflow]``."""
    return Keras2ProcessBackend()
