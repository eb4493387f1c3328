"""Keras 3: ``SimpleRNN``/``Bidirectional`` converters, oracle, and the ``keras[...]`` backends.

Keras fixes its backend once per process (``KERAS_BACKEND``), so this module describes
whatever Keras was imported with; :mod:`rnn_ref.backends.keras_worker` runs
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.backends import file_limits
from rnn_ref.backends._common import raise_if
from rnn_ref.backends._frameworks import KERAS_ACTIVATIONS, keras_masked_step_output
from rnn_ref.backends._frameworks import keras_unsupported as unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.convert import Hints, MissingHintError, NativeFile, hint_activation
from rnn_ref.errors import FileFormatError, UnsupportedError
from rnn_ref.inputs import check_inputs
from rnn_ref.params import CellParams, Readout, RNNParams
from rnn_ref.reference import ForwardResult, forward, merge

__all__ = ["TO_KERAS", "KerasBackend", "KerasSupport", "LegacyReader", "from_native",
           "import_keras", "list_arrays", "load_native", "oracle", "owns", "quiet_import",
           "read_file", "readout_of", "rnn_layers", "run_native", "to_native", "unsupported",
           "write_file"]

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
def _activation(fn: Any, where: str) -> Activation:
    name = getattr(fn, "__name__", str(fn))
    if name not in KERAS_ACTIVATIONS:
        raise UnsupportedError("rnn-ref", f"the Keras activation {name!r} ({where})",
                               f"rnn-ref reads {', '.join(KERAS_ACTIVATIONS)}")
    return KERAS_ACTIVATIONS[name]


def _cell(layer: Any) -> tuple[CellParams, Activation]:
    keras = _keras()
    if not isinstance(layer, keras.layers.SimpleRNN):
        raise UnsupportedError("rnn-ref", f"a Keras {type(layer).__name__} layer",
                               "only SimpleRNN is an Elman RNN")
    if getattr(layer, "stateful", False):
        raise UnsupportedError("rnn-ref", "a stateful SimpleRNN",
                               "its state lives between calls, outside the weights")
    cell = layer.cell
    activation = _activation(cell.activation, layer.name)
    if not getattr(cell, "built", False) or not hasattr(cell, "kernel"):
        raise ValueError(f"the Keras layer {layer.name!r} is not built and has no weights yet: "
                         f"call it on an input or build() it first")
    kernel = keras.ops.convert_to_numpy(cell.kernel)
    rec = keras.ops.convert_to_numpy(cell.recurrent_kernel)
    if cell.use_bias:
        bias = keras.ops.convert_to_numpy(cell.bias)
    else:
        bias = np.zeros(rec.shape[0], rec.dtype)
    return CellParams(kernel, rec, bias, np.zeros_like(bias)), activation


@dataclass(frozen=True)
class _Structure:
    """What a Keras object does around its RNN layers, for the oracle."""

    bidirectional: bool
    return_sequences: bool
    return_state: bool
    mask_value: float | None
    bare_layer: bool


def _model_chain(model: Any) -> tuple[list[Any], float | None, Any]:
    """The RNN layers of a ``keras.Model``, its ``Masking`` layer's mask value (or ``None``)
    and its final ``Dense`` layer (or ``None``).

    Raises:
        UnsupportedError: a layer other than [Masking,] SimpleRNN or Bidirectional [, Dense],
            or those in another order.
        ValueError: no RNN layer.
    """
    keras = _keras()
    mask_value: float | None = None
    dense: Any = None
    layers: list[Any] = []
    for i, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.Masking):
            if layers:
                raise UnsupportedError("rnn-ref", "a Masking layer after an RNN layer")
            mask_value = float(layer.mask_value)
        elif isinstance(layer, (keras.layers.SimpleRNN, keras.layers.Bidirectional)):
            if dense is not None:
                raise UnsupportedError("rnn-ref", "an RNN layer after the Dense readout")
            layers.append(layer)
        elif isinstance(layer, keras.layers.Dense) and i == len(model.layers) - 1:
            dense = layer
        else:
            raise UnsupportedError("rnn-ref", f"a Keras {type(layer).__name__} layer in the "
                                   f"model", "a model is [Masking,] SimpleRNN or "
                                   "Bidirectional layers [, Dense]")
    if not layers:
        raise ValueError("the Keras model holds no SimpleRNN or Bidirectional layer")
    return layers, mask_value, dense


def _read_layer(layer: Any, is_bidi: bool, backend: str
                ) -> tuple[list[CellParams], tuple[Activation, ...], str | None, str, bool | None]:
    """One RNN layer's cells (one per direction) and their activations, its merge mode, its
    masked-step output on ``backend`` (see the module docstring) and, for a ``SimpleRNN``,
    whether it goes backwards (``None`` for a ``Bidirectional``)."""
    if is_bidi:
        (cf, af), (cb, ab) = _cell(layer.forward_layer), _cell(layer.backward_layer)
        inner = layer.forward_layer
        mode = keras_masked_step_output(backend, zero_output_for_mask=bool(layer.return_sequences),
                                        unroll=bool(inner.unroll))
        return [cf, cb], (af, ab), layer.merge_mode, mode, None
    c, a = _cell(layer)
    mode = keras_masked_step_output(backend, zero_output_for_mask=bool(layer.zero_output_for_mask),
                                    unroll=bool(layer.unroll))
    return [c], (a,), "concat", mode, bool(layer.go_backwards)


def _dense_readout(dense: Any) -> tuple[Readout | None, int | None, Activation]:
    """The readout of a ``Dense`` layer (``w`` of shape (F, K), ``b`` of shape (K,)), its
    output size K and its activation; ``(None, None, linear)`` without one."""
    if dense is None:
        return None, None, Activation("linear")
    keras = _keras()
    kernel = keras.ops.convert_to_numpy(dense.kernel)
    bias = (keras.ops.convert_to_numpy(dense.bias) if dense.use_bias
            else np.zeros(kernel.shape[1], kernel.dtype))
    return Readout(kernel, bias), kernel.shape[1], _activation(dense.activation, dense.name)


def _parse(obj: Any) -> tuple[RNNParams, _Structure]:
    keras = _keras()
    backend = backend_name()
    if isinstance(obj, (keras.layers.SimpleRNN, keras.layers.Bidirectional)):
        layers, bare, mask_value, dense = [obj], True, None, None
    elif isinstance(obj, keras.Model):
        bare = False
        layers, mask_value, dense = _model_chain(obj)
    else:
        raise TypeError(f"from_keras takes a SimpleRNN, a Bidirectional or a keras.Model, "
                        f"got {type(obj).__name__}")

    bidi = {isinstance(layer, keras.layers.Bidirectional) for layer in layers}
    if len(bidi) != 1:
        raise UnsupportedError("rnn-ref", "a mix of SimpleRNN and Bidirectional layers",
                               "every layer of a network has the same directions")
    is_bidi = bidi.pop()
    cells: list[list[CellParams]] = []
    acts: list[tuple[Activation, ...]] = []
    merges: list[str | None] = []
    modes: list[str] = []
    backwards: set[bool] = set()
    for li, layer in enumerate(layers):
        if li < len(layers) - 1 and not layer.return_sequences:
            raise UnsupportedError("rnn-ref", f"layer {layer.name!r} with return_sequences=False "
                                   "below another RNN layer")
        c, a, merge, mode, back = _read_layer(layer, is_bidi, backend)
        cells.append(c)
        acts.append(a)
        merges.append(merge)
        modes.append(mode)
        if back is not None:
            backwards.add(back)
    if True in backwards and len(layers) > 1:
        raise UnsupportedError("rnn-ref", "stacked layers with go_backwards=True",
                               "each hands the next its outputs in processing order, with the "
                               "mask unflipped")
    reverse = backwards == {True}
    has_mask_source = bare or mask_value is not None
    readout, out_size, out_act = _dense_readout(dense)
    last = layers[-1]
    config = RNNConfig(
        input_size=int(cells[0][0].w_x.shape[0]),
        hidden_size=tuple(c[0].hidden_size for c in cells),
        direction="bidirectional" if is_bidi else ("reverse" if reverse else "forward"),
        activation=[list(a) for a in acts], bias=_uses_bias(layers),
        output_size=out_size, output_activation=out_act, merge_mode=tuple(merges),
        padded_output=modes[-1] if has_mask_source else "zeros",
        output_order="processing" if reverse else "aligned",
    )
    params = RNNParams(config, cells, readout)
    structure = _Structure(is_bidi, bool(last.return_sequences), bool(last.return_state),
                           mask_value, bare)
    return params, structure


def _uses_bias(layers: Sequence[Any]) -> bool:
    keras = _keras()
    flags = set()
    for layer in layers:
        inner = [layer.forward_layer, layer.backward_layer] if isinstance(
            layer, keras.layers.Bidirectional) else [layer]
        flags |= {bool(x.cell.use_bias) for x in inner}
    if len(flags) != 1:
        raise UnsupportedError("rnn-ref", "layers with and without a bias")
    return flags.pop()


def from_native(obj: Any) -> RNNParams:
    """Canonical parameters of a ``SimpleRNN``, a ``Bidirectional``, or a model of them.

    A model is a chain: an optional ``Masking``, one or more ``SimpleRNN`` (or one or more
    ``Bidirectional``) layers, and an optional final ``Dense`` (the readout). The config
    records the masked-step behaviour of the Keras backend this process runs (see the module
    docstring).

    Raises:
        UnsupportedError: other layers (LSTM, GRU, ...), stateful layers, stacked
            ``go_backwards`` layers, activations outside rnn-ref's set.
    """
    return _parse(obj)[0]


# --------------------------------------------------------------------------------------------
# to Keras
# --------------------------------------------------------------------------------------------
def rnn_layers(params: RNNParams, *, return_sequences: bool = True,
                return_state: bool = False) -> list[Any]:
    """The Keras RNN layers of ``params``, built and holding its weights."""
    keras = _keras()
    cfg = params.config
    dtype = params.dtype.name
    layers = []
    for li, layer in enumerate(params.layers):
        last = li == cfg.num_layers - 1

        def simple(cell: CellParams, act: Activation, backwards: bool, zero: bool,
                   seqs: bool = return_sequences if last else True) -> Any:
            rnn = keras.layers.SimpleRNN(
                cell.hidden_size, activation=TO_KERAS[act], use_bias=cfg.bias,
                return_sequences=seqs, return_state=return_state, go_backwards=backwards,
                zero_output_for_mask=zero, dtype=dtype)
            rnn.build((None, None, cell.w_x.shape[0]))
            weights = [cell.w_x, cell.w_h] + ([cell.b_x + cell.b_h] if cfg.bias else [])
            rnn.set_weights(weights)
            return rnn

        if cfg.num_directions == 2:
            fwd = simple(layer[0], cfg.activation_of(li, 0), False, False)
            bwd = simple(layer[1], cfg.activation_of(li, 1), True, False)
            bi = keras.layers.Bidirectional(fwd, backward_layer=bwd,
                                            merge_mode=cfg.merge_modes[li], dtype=dtype)
            bi.build((None, None, layer[0].w_x.shape[0]))
            # building may re-initialise the wrapped layers: set the weights again
            for inner, cell in ((bi.forward_layer, layer[0]), (bi.backward_layer, layer[1])):
                inner.set_weights([cell.w_x, cell.w_h] + ([cell.b_x + cell.b_h]
                                                          if cfg.bias else []))
            layers.append(bi)
        else:
            layers.append(simple(layer[0], cfg.activation_of(li, 0),
                                 cfg.direction == "reverse", cfg.padded_output == "zeros"))
    return layers


def to_native(params: RNNParams, *, return_sequences: bool = True,
              mask_value: float | None = None) -> Any:
    """A functional ``keras.Model``: ``Input((None, D))`` [-> ``Masking``] -> the RNN layers
    [-> ``Dense``], built in the params' dtype on the Keras backend of this process.

    Args:
        return_sequences: the last RNN layer's; ``False`` returns the last output only.
        mask_value: add ``Masking(mask_value)``, so steps whose features all equal it are
            padding.

    Raises:
        UnsupportedError: clip, activations Keras does not have, a stack of reverse layers,
            time-aligned outputs of a reverse layer, or (with ``mask_value``) padded outputs
            this backend does not produce.
    """
    keras = _keras()
    cfg = params.config
    raise_if(unsupported(cfg, backend=backend_name(), padded=mask_value is not None), "Keras")
    inputs = keras.Input((None, cfg.input_size), dtype=params.dtype.name)
    h = inputs
    if mask_value is not None:
        h = keras.layers.Masking(mask_value=mask_value, dtype=params.dtype.name)(h)
    for layer in rnn_layers(params, return_sequences=return_sequences):
        h = layer(h)
    if params.readout is not None:
        dense = keras.layers.Dense(params.readout.w.shape[1],
                                   activation=TO_KERAS[cfg.output_activation],
                                   dtype=params.dtype.name)
        h = dense(h)
        dense.set_weights([params.readout.w, params.readout.b])
    return keras.Model(inputs, h)


# --------------------------------------------------------------------------------------------
# oracle
# --------------------------------------------------------------------------------------------
def owns(model: Any) -> bool:
    keras = _keras()
    return isinstance(model, (keras.layers.SimpleRNN, keras.layers.Bidirectional, keras.Model))


def readout_of(params: RNNParams, o: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    ro = params.readout
    if ro is None:
        return o
    g = cast(Activation, params.config.output_activation)  # softmax: refused by unsupported
    return g(o @ ro.w.astype(np.float64) + ro.b.astype(np.float64))


def oracle(model: Any) -> Callable[..., Any]:
    """A NumPy function returning what ``model(inputs, ...)`` returns, computed in float64.

    It takes ``(inputs, mask=None, initial_state=None)`` (``mask`` and ``initial_state`` for a
    bare layer: ``[h0]`` for ``SimpleRNN``, ``[h_forward, h_backward]`` for
    ``Bidirectional``); a model with ``Masking`` derives its mask from the inputs. It returns
    the same structure: an array, or a tuple (``return_state``, ``merge_mode=None``).
    """
    params, st = _parse(model)
    cfg = params.config
    bare_cfg = cfg.replace(output_size=None, output_activation="linear",
                           merge_mode=(*cfg.merge_modes[:-1], None) if st.bidirectional
                           else "concat")
    bare = RNNParams(bare_cfg, params.layers)
    R = cfg.num_directions

    def call(inputs: Any, mask: Any = None, initial_state: Any = None) -> Any:
        x = np.asarray(inputs, np.float64)
        if st.mask_value is not None:
            if mask is not None:
                raise ValueError("the model derives its mask from Masking; do not pass mask")
            mask = np.any(x != st.mask_value, axis=-1)
        h0 = None
        if initial_state is not None:
            if not st.bare_layer:
                raise ValueError("initial_state is taken by a bare layer's oracle only")
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [
                initial_state]
            if len(states) != R:
                raise ValueError(f"initial_state needs {R} array(s), got {len(states)}")
            h0 = [np.asarray(s, np.float64) for s in states]
        res = forward(bare, x, h0=h0, mask=None if mask is None else np.asarray(mask, bool))
        h_n = res.h_n if isinstance(res.h_n, tuple) else tuple(res.h_n)
        last_states = h_n[-R:]
        if st.bidirectional:
            f, b = res.outputs
            if not st.return_sequences:
                f, b = f[:, -1], b[:, 0]
            merged = merge(f, b, cfg.merge_modes[-1])
        else:
            merged = res.outputs if st.return_sequences else res.outputs[:, -1]
        main = merged if isinstance(merged, tuple) else readout_of(params, merged)
        if st.bare_layer and st.return_state:
            head = main if isinstance(main, tuple) else (main,)
            return (*head, *last_states)
        return main

    return call


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
    """Keras' own layers on the backend this process imported Keras with, called eagerly."""

    def __init__(self) -> None:
        self.backend = backend_name()
        self.name = f"keras[{self.backend}]"

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None) -> ForwardResult:
        """Keras' layers on ``x (N, T, D)``, ``h0 (L*R, N, M)`` (or L*R ``(N, M_l)``), and
        ``lengths (N,)`` or ``mask (N, T)`` (lengths become the mask ``t < lengths[n]``):
        ``outputs (N, T, F)`` (a pair of ``(N, T, M)`` for ``merge_mode=None``), ``h_n
        (L*R, N, M)`` (or L*R ``(N, M_l)``) and ``y (N, T, K)`` or ``None``, in the parameters'
        dtype. Bad inputs raise as :func:`rnn_ref.inputs.check_inputs` says."""
        keras = _keras()
        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name)
        mask = inputs.mask_or_none()  # (N, T), or None when neither lengths nor mask is given
        padded = mask is not None
        raise_if(unsupported(cfg, backend=self.backend, padded=padded), self.name)
        dtype_problem = unsupported_dtype(params.dtype, self.backend)
        if dtype_problem is not None:
            raise UnsupportedError(self.name, dtype_problem)
        R = cfg.num_directions
        h = keras.ops.convert_to_tensor(inputs.x.astype(params.dtype))
        m = None if mask is None else keras.ops.convert_to_tensor(mask)
        h_n: list[np.ndarray[Any, Any]] = []
        for li, layer in enumerate(rnn_layers(params, return_state=True)):
            kwargs: dict[str, Any] = {}
            if m is not None:
                kwargs["mask"] = m
            if inputs.h0 is not None:
                kwargs["initial_state"] = [keras.ops.convert_to_tensor(
                    np.asarray(inputs.h0[li * R + r], params.dtype)) for r in range(R)]
            out = layer(h, **kwargs)
            merged = out[: len(out) - R]
            h = merged[0] if len(merged) == 1 else tuple(merged)
            h_n.extend(keras.ops.convert_to_numpy(s) for s in out[len(out) - R:])
        y = None
        if params.readout is not None:
            y = _readout_keras(params, h)
        to_np = keras.ops.convert_to_numpy
        outputs = tuple(to_np(o) for o in h) if isinstance(h, tuple) else to_np(h)
        return ForwardResult(outputs, np.stack(h_n) if cfg.uniform_hidden else tuple(h_n), y)


def _readout_keras(params: RNNParams, h: Any) -> np.ndarray[Any, Any]:
    keras = _keras()
    ro = params.readout
    dense = keras.layers.Dense(ro.w.shape[1],  # type: ignore[union-attr]
                               activation=TO_KERAS[params.config.output_activation],
                               dtype=params.dtype.name)
    dense.build((None, None, ro.w.shape[0]))  # type: ignore[union-attr]
    dense.set_weights([ro.w, ro.b])  # type: ignore[union-attr]
    return np.asarray(keras.ops.convert_to_numpy(dense(h)))



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


def read_file(path: Path, fmt: str, hints: Hints) -> RNNParams:
    """The parameters of a Keras file (the hints only for weights-only files), once what it
    declares is within the limits (:mod:`file_limits`)."""
    _check_declared(path, fmt)
    if fmt == "keras":
        model = import_keras().saving.load_model(str(path), compile=False, safe_mode=True)
        return from_native(model)
    if fmt == "keras-weights":
        return _read_weights_h5(path, hints)
    return _read_legacy_h5(path, hints)


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
            if "forward_layer" in group:
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
    act = hint_activation(hints, "keras-weights", KERAS_ACTIVATIONS)
    layers = [[_one_bias_cell(path, name, v) for v in arrays[name]] for name in rnn]
    if len({len(row) for row in layers}) > 1:
        raise UnsupportedError("rnn-ref", "a mix of SimpleRNN and Bidirectional layers")
    if len({len(arrays[name][0]) for name in rnn}) > 1:
        raise UnsupportedError("rnn-ref", "layers with and without a bias")
    readout = None
    if dense:
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
    config = RNNConfig(
        input_size=int(layers[0][0].w_x.shape[0]), hidden_size=tuple(sizes),
        direction=direction, activation=act, bias=len(arrays[rnn[0]][0]) == 3,
        output_size=None if readout is None else int(readout.w.shape[1]), merge_mode=merge,
        output_order="processing" if direction == "reverse" else "aligned",
    )
    return RNNParams(config, layers, readout)


def _read_legacy_h5(path: Path, hints: Hints) -> RNNParams:
    import h5py

    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise FileFormatError(f"{path}: no layer_names: not a legacy Keras .h5 file")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs["layer_names"]]
        config_json = f.attrs.get("model_config")
        weights: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
        for name in names:
            g = root[name]
            wn = [w.decode() if isinstance(w, bytes) else str(w)
                  for w in g.attrs.get("weight_names", [])]
            weights[name] = {w: np.asarray(g[w]) for w in wn}
    layer_cfgs: dict[str, dict[str, Any]] = {}
    if config_json is not None:
        cfg = json.loads(config_json if isinstance(config_json, str) else config_json.decode())
        for layer in cfg.get("config", {}).get("layers", []):
            layer_cfgs[layer["config"]["name"]] = layer
    return LegacyReader(path, hints).params(names, weights, layer_cfgs)


class LegacyReader:
    """Legacy ``.h5`` layers, read by weight name: SimpleRNN/Bidirectional layers then one
    Dense readout."""

    def __init__(self, path: Path, hints: Hints) -> None:
        self.path, self.hints = path, hints
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
        if conf is None:
            return hint_activation(self.hints, "keras-h5", KERAS_ACTIVATIONS)
        name = conf.get("activation", "tanh")
        if name not in KERAS_ACTIVATIONS:
            raise UnsupportedError("rnn-ref", f"the Keras activation {name!r}")
        return KERAS_ACTIVATIONS[name]

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
        model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    else:
        model = to_native(params)
        model.load_weights(str(path))
    return NativeFile(model, takes_lengths=False, oracle=oracle(model))


def run_native(model: Any, x: np.ndarray[Any, Any], lengths: Any = None
               ) -> np.ndarray[Any, Any]:
    """The model's output on ``x``; with ``lengths``, padded steps are zeroed in the input,
    which a model of ``to_native(..., mask_value=0.0)`` masks."""
    if lengths is not None:
        valid = np.arange(x.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None]
        x = x * valid
    return np.asarray(_keras().ops.convert_to_numpy(model(x)))


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
