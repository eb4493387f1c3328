"""Keras 3: ``SimpleRNN``/``Bidirectional`` converters, oracle, and the ``keras[...]`` backends.

Keras fixes its backend once per process (``KERAS_BACKEND``), so this module describes
whatever Keras was imported with; :class:`KerasProcessBackend` runs ``keras[tensorflow]``,
``keras[jax]`` and ``keras[torch]`` each in a worker process of its own.

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

import atexit
import io
import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rnn_ref.backends._common import raise_if

from rnn_ref.activations import Activation
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import CellParams, Readout, RNNParams
from rnn_ref.reference import ForwardResult, _merge, forward

__all__ = ["KerasBackend", "KerasProcessBackend", "from_native", "oracle", "owns",
           "to_native", "unsupported"]

_KERAS_ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh"), "relu": Activation("relu"), "sigmoid": Activation("sigmoid"),
    "linear": Activation("linear"), "softsign": Activation("softsign"),
    "softplus": Activation("softplus"),
    "hard_sigmoid": Activation("hard_sigmoid", alpha=1 / 6, beta=0.5),
    "elu": Activation("elu", alpha=1.0), "leaky_relu": Activation("leaky_relu", alpha=0.2),
}
_TO_KERAS = {v: k for k, v in _KERAS_ACTIVATIONS.items()}


def _keras() -> Any:
    import keras

    return keras


def backend_name() -> str:
    return str(_keras().backend.backend())


def masked_step_output(backend: str, *, zero_output_for_mask: bool, unroll: bool) -> str:
    """The padded-output variant of a Keras RNN layer on ``backend``."""
    if zero_output_for_mask:
        return "zeros"
    if backend in ("jax", "numpy") and not unroll:
        return "carry_state"
    return "carry_output"


def unsupported_dtype(dtype: Any, backend: str) -> str | None:
    """Why Keras on ``backend`` cannot compute in ``dtype``, or ``None``."""
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        return f"dtype {dt}: use float32 or float64"
    if dt == np.float64 and backend == "jax" and os.environ.get("JAX_ENABLE_X64") != "1":
        return "dtype float64: JAX truncates it to float32 unless JAX_ENABLE_X64=1"
    return None


def unsupported(config: RNNConfig, *, backend: str | None = None, padded: bool = True
                ) -> tuple[str, str] | None:
    """``(feature, why)`` for what a Keras model cannot express, else ``None``."""
    if any(c is not None for c in config.clips):
        return "clip", "Keras' SimpleRNN has no clip"
    for li, layer in enumerate(config.activations):
        for r, act in enumerate(layer):
            if act not in _TO_KERAS:
                return (f"activation {act} (layer {li}, direction {r})",
                        f"Keras has {', '.join(str(a) for a in _TO_KERAS)}")
    if config.output_size is not None and config.output_activation not in _TO_KERAS:
        return f"readout activation {config.output_activation}", "Dense takes Keras activations"
    if config.direction == "reverse":
        if config.num_layers > 1:
            return ("a stack of reverse layers",
                    "go_backwards hands the next layer its outputs in processing order")
        if config.output_order != "processing":
            return ("time-aligned outputs of a reverse direction",
                    "go_backwards returns them in processing order; use "
                    "params.replace(output_order='processing')")
    if padded:
        mode = config.padded_output
        if config.direction == "bidirectional":
            if mode != "zeros":
                return (f"padded_output {mode!r} in a Bidirectional layer",
                        "Bidirectional forces zero_output_for_mask when returning sequences")
        elif backend is not None and mode != "zeros":
            native = masked_step_output(backend, zero_output_for_mask=False, unroll=False)
            if mode != native:
                return (f"padded_output {mode!r} on Keras' {backend} backend",
                        f"its masked steps give {native!r} (or 'zeros')")
    return None


# --------------------------------------------------------------------------------------------
# from Keras
# --------------------------------------------------------------------------------------------
def _activation(fn: Any, where: str) -> Activation:
    name = getattr(fn, "__name__", str(fn))
    if name not in _KERAS_ACTIVATIONS:
        raise UnsupportedError("rnn-ref", f"the Keras activation {name!r} ({where})",
                               f"rnn-ref reads {', '.join(_KERAS_ACTIVATIONS)}")
    return _KERAS_ACTIVATIONS[name]


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


def _parse(obj: Any) -> tuple[RNNParams, _Structure]:
    keras = _keras()
    backend = backend_name()
    if isinstance(obj, (keras.layers.SimpleRNN, keras.layers.Bidirectional)):
        layers, bare, mask_value, dense = [obj], True, None, None
    elif isinstance(obj, keras.Model):
        bare, mask_value, dense, layers = False, None, None, []
        for i, layer in enumerate(obj.layers):
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
            elif isinstance(layer, keras.layers.Dense) and i == len(obj.layers) - 1:
                dense = layer
            else:
                raise UnsupportedError("rnn-ref", f"a Keras {type(layer).__name__} layer in the "
                                       f"model", "a model is [Masking,] SimpleRNN or "
                                       "Bidirectional layers [, Dense]")
        if not layers:
            raise ValueError("the Keras model holds no SimpleRNN or Bidirectional layer")
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
    sizes: list[int] = []
    merges: list[str | None] = []
    modes: list[str] = []
    backwards: set[bool] = set()
    for li, layer in enumerate(layers):
        last = li == len(layers) - 1
        if not last and not layer.return_sequences:
            raise UnsupportedError("rnn-ref", f"layer {layer.name!r} with return_sequences=False "
                                   "below another RNN layer")
        if is_bidi:
            (cf, af), (cb, ab) = _cell(layer.forward_layer), _cell(layer.backward_layer)
            cells.append([cf, cb])
            acts.append((af, ab))
            merges.append(layer.merge_mode)
            inner = layer.forward_layer
            modes.append(masked_step_output(
                backend, zero_output_for_mask=bool(layer.return_sequences),
                unroll=bool(inner.unroll)))
        else:
            c, a = _cell(layer)
            cells.append([c])
            acts.append((a,))
            merges.append("concat")
            backwards.add(bool(layer.go_backwards))
            modes.append(masked_step_output(
                backend, zero_output_for_mask=bool(layer.zero_output_for_mask),
                unroll=bool(layer.unroll)))
        sizes.append(cells[-1][0].hidden_size)
    if True in backwards and len(layers) > 1:
        raise UnsupportedError("rnn-ref", "stacked layers with go_backwards=True",
                               "each hands the next its outputs in processing order, with the "
                               "mask unflipped")
    reverse = backwards == {True}
    has_mask_source = bare or mask_value is not None
    readout = None
    out_size, out_act = None, Activation("linear")
    if dense is not None:
        kernel = keras.ops.convert_to_numpy(dense.kernel)
        bias = (keras.ops.convert_to_numpy(dense.bias) if dense.use_bias
                else np.zeros(kernel.shape[1], kernel.dtype))
        readout = Readout(kernel, bias)
        out_size, out_act = kernel.shape[1], _activation(dense.activation, dense.name)
    last = layers[-1]
    config = RNNConfig(
        input_size=int(cells[0][0].w_x.shape[0]), hidden_size=tuple(sizes),
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
def _rnn_layers(params: RNNParams, *, return_sequences: bool = True,
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
                cell.hidden_size, activation=_TO_KERAS[act], use_bias=cfg.bias,
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
    for layer in _rnn_layers(params, return_sequences=return_sequences):
        h = layer(h)
    if params.readout is not None:
        dense = keras.layers.Dense(params.readout.w.shape[1],
                                   activation=_TO_KERAS[cfg.output_activation],  # type: ignore[index]
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


def _readout(params: RNNParams, o: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    ro = params.readout
    if ro is None:
        return o
    g: Activation = params.config.output_activation  # type: ignore[assignment]
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
            merged = _merge(f, b, cfg.merge_modes[-1])
        else:
            merged = res.outputs if st.return_sequences else res.outputs[:, -1]
        main = merged if isinstance(merged, tuple) else _readout(params, merged)
        if st.bare_layer and st.return_state:
            head = main if isinstance(main, tuple) else (main,)
            return (*head, *last_states)
        return main

    return call


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------
class _KerasSupport:
    """What Keras on ``self.backend`` can run (shared by the in-process and worker backends)."""

    backend: str

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        reason = unsupported(config, backend=self.backend, padded=lengths or mask)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        return unsupported_dtype(dtype, self.backend)


class KerasBackend(_KerasSupport):
    """Keras' own layers on the backend this process imported Keras with, called eagerly."""

    def __init__(self) -> None:
        self.backend = backend_name()
        self.name = f"keras[{self.backend}]"

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None) -> ForwardResult:
        keras = _keras()
        cfg = params.config
        x = np.asarray(x)
        n, t = x.shape[:2]
        if lengths is not None and mask is not None:
            raise ValueError("give lengths or mask, not both")
        if lengths is not None:
            mask = np.arange(t)[None, :] < np.asarray(lengths)[:, None]
        padded = mask is not None
        raise_if(unsupported(cfg, backend=self.backend, padded=padded), self.name)
        dtype_problem = unsupported_dtype(params.dtype, self.backend)
        if dtype_problem is not None:
            raise UnsupportedError(self.name, dtype_problem)
        R = cfg.num_directions
        h = keras.ops.convert_to_tensor(x.astype(params.dtype))
        m = None if mask is None else keras.ops.convert_to_tensor(np.asarray(mask, bool))
        h_n: list[np.ndarray[Any, Any]] = []
        for li, layer in enumerate(_rnn_layers(params, return_state=True)):
            kwargs: dict[str, Any] = {}
            if m is not None:
                kwargs["mask"] = m
            if h0 is not None:
                kwargs["initial_state"] = [keras.ops.convert_to_tensor(
                    np.asarray(h0[li * R + r], params.dtype)) for r in range(R)]
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
                               activation=_TO_KERAS[params.config.output_activation],  # type: ignore[index]
                               dtype=params.dtype.name)
    dense.build((None, None, ro.w.shape[0]))  # type: ignore[union-attr]
    dense.set_weights([ro.w, ro.b])  # type: ignore[union-attr]
    return np.asarray(keras.ops.convert_to_numpy(dense(h)))


# --------------------------------------------------------------------------------------------
# one worker process per Keras backend
# --------------------------------------------------------------------------------------------
def _pack(arrays: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    return struct.pack(">Q", len(data)) + data


def _unpack(stream: Any) -> dict[str, np.ndarray[Any, Any]] | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    (size,) = struct.unpack(">Q", head)
    data = stream.read(size)
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def _request(params: RNNParams, x: Any, h0: Any, lengths: Any, mask: Any) -> dict[str, Any]:
    req: dict[str, Any] = {"__config__": np.array(params.config.to_json()), "x": np.asarray(x)}
    req.update({f"p.{k}": v for k, v in params.named_arrays()})
    if h0 is not None:
        if isinstance(h0, (list, tuple)):
            req.update({f"h0.{i}": np.asarray(h) for i, h in enumerate(h0)})
        else:
            req["h0"] = np.asarray(h0)
    if lengths is not None:
        req["lengths"] = np.asarray(lengths)
    if mask is not None:
        req["mask"] = np.asarray(mask)
    return req


def _answer(backend: KerasBackend, req: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
    """One request: ``forward`` (the default) or ``round_trip``."""
    config = RNNConfig.from_dict(json.loads(str(req["__config__"])))
    params = RNNParams.from_arrays(config, {k[2:]: v for k, v in req.items()
                                            if k.startswith("p.")})
    out: dict[str, Any]
    if str(req.get("__op__", "forward")) == "round_trip":
        back = from_native(to_native(params))
        out = {"__config__": np.array(back.config.to_json())}
        out.update({f"p.{k}": v for k, v in back.named_arrays()})
        return out
    h0_list = sorted((int(k[3:]), v) for k, v in req.items() if k.startswith("h0."))
    h0 = req.get("h0", [v for _, v in h0_list] or None)
    res = backend.forward(params, req["x"], h0=h0, lengths=req.get("lengths"),
                          mask=req.get("mask"))
    out = {"__name__": np.array(backend.name)}
    outputs = res.outputs if isinstance(res.outputs, tuple) else (res.outputs,)
    out.update({f"outputs.{i}": o for i, o in enumerate(outputs)})
    h_n = res.h_n if isinstance(res.h_n, tuple) else (res.h_n,)
    out.update({f"h_n.{i}": h for i, h in enumerate(h_n)})
    out["__h_n_tuple__"] = np.array(isinstance(res.h_n, tuple))
    if res.y is not None:
        out["y"] = res.y
    return out


def serve() -> None:
    """The worker loop: read requests on stdin, answer on stdout, until stdin closes."""
    import warnings

    warnings.simplefilter("ignore")  # Keras' and JAX's notices would only clutter the log
    backend = KerasBackend()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the answers
    while (req := _unpack(stdin)) is not None:
        try:
            out = _answer(backend, req)
        except Exception as exc:  # every error goes back to the caller, typed
            out = {"__error__": np.array(json.dumps({"type": type(exc).__name__,
                                                     "message": str(exc)}))}
        stdout.write(_pack(out))
        stdout.flush()


_ERRORS: dict[str, type[Exception]] = {"UnsupportedError": UnsupportedError,
                                       "ValueError": ValueError, "TypeError": TypeError}


class KerasProcessBackend(_KerasSupport):
    """``keras[<backend>]``: a worker process with ``KERAS_BACKEND`` set runs Keras' layers.

    The worker starts on first use (TensorFlow's import takes a few seconds) and is reused
    until :meth:`close` or the interpreter exits.
    """

    def __init__(self, backend: str) -> None:
        if backend not in ("tensorflow", "jax", "torch"):
            raise ValueError(f"Keras backend must be 'tensorflow', 'jax' or 'torch', "
                             f"got {backend!r}")
        self.backend = backend
        self.name = f"keras[{backend}]"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None  # the worker's stderr, quoted when it dies
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            env = {**os.environ, "KERAS_BACKEND": self.backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
            code = "from rnn_ref.backends.keras_backend import serve; serve()"
            import tempfile

            self._log = tempfile.TemporaryFile()
            self._proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=self._log, env=env)
            atexit.register(self.close)
        return self._proc

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None and proc.stdin is not None:
            proc.stdin.close()
            proc.wait(timeout=30)

    def _ask(self, request: dict[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
        with self._lock:
            proc = self._start()
            if proc.stdin is None or proc.stdout is None:
                raise RuntimeError(f"the {self.name} worker has no pipes")
            proc.stdin.write(_pack(request))
            proc.stdin.flush()
            res = _unpack(proc.stdout)
        if res is None:
            tail = ""
            if self._log is not None:
                self._log.seek(0)
                tail = self._log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the {self.name} worker died (exit code {proc.wait()}); its "
                               f"last words:\n{tail}")
        if "__error__" in res:
            err = json.loads(str(res["__error__"]))
            raise _ERRORS.get(err["type"], RuntimeError)(err["message"])
        return res

    def round_trip(self, params: RNNParams) -> RNNParams:
        """Through a Keras model built by the worker (``to_keras`` then ``from_keras``)."""
        req = {"__op__": np.array("round_trip"), "__config__": np.array(params.config.to_json())}
        req.update({f"p.{k}": v for k, v in params.named_arrays()})
        res = self._ask(req)
        config = RNNConfig.from_dict(json.loads(str(res["__config__"])))
        return RNNParams.from_arrays(config, {k[2:]: v for k, v in res.items()
                                              if k.startswith("p.")})

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None) -> ForwardResult:
        res = self._ask(_request(params, x, h0, lengths, mask))
        outs = [res[k] for k in sorted((k for k in res if k.startswith("outputs.")),
                                       key=lambda k: int(k.split(".")[1]))]
        hs = [res[k] for k in sorted((k for k in res if k.startswith("h_n.")),
                                     key=lambda k: int(k.split(".")[1]))]
        h_n: Any = tuple(hs) if bool(res["__h_n_tuple__"]) else hs[0]
        return ForwardResult(outs[0] if len(outs) == 1 else tuple(outs), h_n, res.get("y"))


def tensorflow_backend() -> KerasProcessBackend:
    return KerasProcessBackend("tensorflow")


def jax_backend() -> KerasProcessBackend:
    return KerasProcessBackend("jax")


def torch_backend() -> KerasProcessBackend:
    return KerasProcessBackend("torch")
