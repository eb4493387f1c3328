"""LiteRT (TensorFlow Lite): the Keras 3 model of a network (or, ``keras=2``, its tf-keras
model) converted by TensorFlow's ``TFLiteConverter`` to a ``.tflite`` flatbuffer and run by
``ai_edge_litert``'s interpreter.

The converter is here; the ``.tflite`` files are ``files.py`` (``tflite``: of the Keras 3
model; ``tflite-keras2``: of the tf-keras model); the backends, ``backend.py``: ``litert``
(the converter's ``WHILE`` loop), ``litert[unrolled]`` (the layers built with
``unroll=True``: one copy of the cell per step, no loop) and ``litert[keras2]`` (the tf-keras
model's graph).

Which op a recurrent layer becomes depends on the Keras that built it (measured with
tensorflow 2.21.0, tf-keras 2.21.0, keras 3.15.1; tensorflow/tensorflow#73254, #126061):

* **Keras 3**: every ``SimpleRNN``, ``GRU`` and ``LSTM`` (and ``Bidirectional``) is a
  ``WHILE`` loop over the steps.
* **tf-keras**: an ``LSTM`` whose layer runs tf-keras' cuDNN-compatible function (tanh,
  sigmoid gates, a bias, no recurrent dropout or unroll: ``_could_use_gpu_kernel`` in
  ``tf_keras/src/layers/rnn/lstm.py``, a function marked as implementing an LSTM) becomes the
  fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (two and a ``REVERSE_V2`` for a ``Bidirectional``
  or ``go_backwards``), unless the graph gives it a mask or returns its final cell state;
  ``recurrent_activation="hard_sigmoid"``, ``GRU`` and ``SimpleRNN`` are ``WHILE`` loops.
  :func:`rnn_ref.backends.litert.record.fused_lstm_layers` predicts it,
  :func:`rnn_ref.backends.litert.files.lowering` reads it from a file's ops, and
  ``rnn-ref inspect`` prints it. The fused op keeps its state in variable tensors between
  invokes (``deviations/litert_keras2.json``); a graph whose initial states are inputs does
  not. That graph must not be frozen before conversion (freezing inlines the marked
  function: a ``WHILE`` loop again); the converter freezes tf-keras' variables itself.

How the conversion goes (ai-edge-litert 2.3.0, tensorflow-cpu 2.21.0, keras 3.15.1; the ops
and the deviations are reproduced by ``tests/test_backend_litert.py``, the shape and freezing
errors were seen while writing this module):

* **No fused RNN op** (of Keras 3). A Keras 3 ``SimpleRNN`` runs
  ``keras/src/backend/tensorflow/rnn.py``'s ``tf.while_loop`` over ``TensorArray`` s; the
  converter lowers it to a ``WHILE`` op whose cond and body are subgraphs of their own (the
  cell's ``FULLY_CONNECTED``/``TANH``... in the body), plus ``REVERSE_V2`` for
  ``go_backwards`` and two loops and a ``CONCATENATION`` for a ``Bidirectional``. It never
  emits ``UNIDIRECTIONAL_SEQUENCE_RNN`` (users asking for it: tensorflow/tensorflow#56767,
  #58854; only Keras' LSTM is fused). That fused kernel would not be stateless anyway: its
  hidden state is input 4, read with ``GetVariableInput`` ("The hidden_state is a variable
  input tensor that can be modified",
  ``tensorflow/lite/kernels/unidirectional_sequence_rnn.cc``), so it carries over from one
  ``invoke`` to the next. ``unroll=True`` gives a graph of per-step ops and no ``WHILE``.
* **Shapes.** The ``TensorArray`` of the loop is lowered to a tensor list whose element shape
  ``(N, M)`` must be static ("'tf.TensorListReserve' op requires element_shape to be static
  during TF Lite transformation pass"), so the batch N is fixed at conversion; the time axis
  stays dynamic in the ``WHILE`` graph (the input is resized to the call's T), and is fixed
  too in the unrolled graph (``unroll`` needs a known T). Each backend call converts once,
  for its (N, T).
* **Keras 3's weights are frozen** (``convert_variables_to_constants_v2``) before
  conversion: the Keras variables otherwise become ``VAR_HANDLE``/``READ_VARIABLE`` ops which
  the interpreter cannot run without an initialiser ("read_variable.cc:67 variable != nullptr
  was not true"); tf-keras' are not (above). The converter is handed a bare ``tf.Module``
  holding the variables as its trackable object: it exports that object as a SavedModel
  first, which takes a second for the module and about twenty for a tf-keras model.
* The conversion needs Keras on TensorFlow; a process whose Keras runs another backend
  converts in a child interpreter (:func:`to_native` does that by itself): parameters go on
  its stdin as the canonical file's members in an ``.npz`` read with ``allow_pickle=False``,
  the flatbuffer comes back on its stdout.
* **float32 only**: a float64 graph does not convert (TFLite's builtins have no float64
  MatMul, Tanh...).
* **Deviations** (``litert/deviations/litert_unrolled.json``, ``litert_keras2.json``;
  ``litert`` has none on the quick matrix): with ``unroll=True`` Keras zeroes a masked
  backward layer's outputs at the mirror image of its padded steps
  (``keras/src/backend/tensorflow/rnn.py``, the unroll branch zeroes outputs in processing
  order with the unreversed mask), and cannot trace T = 0.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnn_ref.backends.litert.record import keras2_unsupported, unsupported
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import RNNParams

__all__ = ["KERAS_VERSIONS", "keras2_unsupported", "to_native", "unsupported"]

NAME = "LiteRT"
NAME_KERAS2 = "LiteRT (through tf-keras)"
Array = np.ndarray[Any, Any]
#: the batch size of a .tflite written by write_file (the converter fixes it); run_native
#: runs a batch of another size one sample at a time
FILE_BATCH = 1


#: why only float32 (tensorflow 2.21.0: a float64 graph fails to convert)
FLOAT32_ONLY = ("TFLite's builtin kernels take no float64 (the converter: \"'tf.MatMul' op is "
                "neither a custom op nor a flex op\")")


# --------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------
#: which Keras builds the model the converter lowers: 3 (Keras 3) or 2 (tf-keras)
KERAS_VERSIONS = (3, 2)


@dataclass(frozen=True)
class _Keras:
    """What one Keras offers the converter: its module, the whole model of ``params``
    (``to_native``), its RNN layers returning their states (``rnn_layers``), the readout."""

    module: Any
    model: Callable[[RNNParams], Any]
    layers: Callable[[RNNParams], list[Any]]
    head: Callable[[RNNParams], Any]


def _keras(keras: int) -> _Keras:
    if keras == 2:
        from rnn_ref.backends.keras2 import convert as k2

        return _Keras(k2.import_tf_keras(), k2.to_native,
                      lambda p: k2.rnn_layers(p, return_state=True),
                      lambda p: k2.head_layers(p)[0])
    from rnn_ref.backends.keras import convert as k3

    return _Keras(k3.import_keras(), k3.to_native, lambda p: k3.rnn_layers(p, return_state=True),
                  lambda p: k3.head_layer(p, 0))


def _keras_model(params: RNNParams, *, unroll: bool, states: bool, initial_state: bool,
                 mask: bool, keras: int = 3) -> Any:
    """The Keras model to convert (Keras 3's, or with ``keras=2`` tf-keras'): the whole
    model of ``to_native`` (one output: the sequences, or the readout's), or with ``states``,
    ``initial_state`` or ``mask`` the backends' functional model: inputs ``x``, then
    ``h0_{i}`` (S, ``h_n`` order) and ``c0_{j}`` (C, an LSTM's cell states in ``c_n``
    order) with ``initial_state``, then a boolean ``mask``; outputs the sequences (two for
    ``merge_mode=None``), with ``states`` every layer's final ``h`` then every LSTM's ``c``,
    then the readout's."""
    k = _keras(keras)
    cfg = params.config
    if not (states or initial_state or mask):
        model = k.model(params)
        _set_unroll(model.layers, unroll)
        return model
    dtype = params.dtype.name
    x = k.module.Input((None, cfg.input_size), dtype=dtype, name="x")
    h0 = [k.module.Input((cfg.state_sizes[i],), dtype=dtype, name=f"h0_{i}")
          for i in range(len(cfg.state_sizes))] if initial_state else []
    c0 = [k.module.Input((cfg.hidden_sizes[li],), dtype=dtype,
                         name=f"c0_{cfg.cell_state_index(li, r)}")
          for li in range(cfg.num_layers) if cfg.cell_of(li).kind == "lstm"
          for r in range(cfg.num_directions_of(li))] if initial_state else []
    m = k.module.Input((None,), dtype="bool", name="mask") if mask else None
    layers = k.layers(params)
    _set_unroll(layers, unroll)
    h: Any = x
    h_n: list[Any] = []
    c_n: list[Any] = []
    for li, layer in enumerate(layers):
        R = cfg.num_directions_of(li)
        lstm = cfg.cell_of(li).kind == "lstm"
        kwargs: dict[str, Any] = {}
        if m is not None:
            kwargs["mask"] = m
        if initial_state:  # each direction's [h] or an LSTM's [h, c]
            kwargs["initial_state"] = [s for r in range(R) for s in (
                [h0[cfg.state_index(li, r)], c0[cfg.cell_state_index(li, r)]] if lstm
                else [h0[cfg.state_index(li, r)]])]
        out = layer(h, **kwargs)
        per = 2 if lstm else 1
        merged = out[: len(out) - R * per]
        h = merged[0] if len(merged) == 1 else tuple(merged)
        got = list(out[len(out) - R * per:])
        h_n += got[::per]
        c_n += got[1::per] if lstm else []
    outputs = list(h) if isinstance(h, tuple) else [h]
    y = [k.head(params)(h)] if params.readout is not None else []
    inputs = [x, *h0, *c0, *([m] if m is not None else [])]
    return k.module.Model(inputs, [*outputs, *(h_n + c_n if states else []), *y])


def _set_unroll(layers: Any, unroll: bool) -> None:
    """``unroll`` on every RNN layer (the inner layers of a ``Bidirectional`` too)."""
    for layer in layers:
        for inner in (layer, getattr(layer, "forward_layer", None),
                      getattr(layer, "backward_layer", None)):
            if inner is not None and hasattr(inner, "unroll"):
                inner.unroll = unroll


def _convert_here(params: RNNParams, *, batch: int | None, time: int | None, unroll: bool,
                  states: bool, initial_state: bool, mask: bool, keras: int = 3) -> bytes:
    """The conversion: Keras 3's graph frozen first (its variables otherwise stay
    ``VAR_HANDLE`` ops); tf-keras' not (freezing inlines the functions that tf-keras' LSTM
    marks as implementing an LSTM, which the converter fuses; it freezes the variables
    itself)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    cfg = params.config
    model = _keras_model(params, unroll=unroll, states=states, initial_state=initial_state,
                         mask=mask, keras=keras)
    dt = tf.as_dtype(params.dtype.name)
    specs = [tf.TensorSpec((batch, time, cfg.input_size), dt, name="x")]
    if initial_state:
        specs += [tf.TensorSpec((batch, m), dt, name=f"h0_{i}")
                  for i, m in enumerate(cfg.state_sizes)]
        specs += [tf.TensorSpec((batch, cfg.hidden_sizes[li]), dt,
                                name=f"c0_{cfg.cell_state_index(li, r)}")
                  for li in range(cfg.num_layers) if cfg.cell_of(li).kind == "lstm"
                  for r in range(cfg.num_directions_of(li))]
    if mask:
        specs.append(tf.TensorSpec((batch, time), tf.bool, name="mask"))

    def call(*args: Any) -> Any:
        out = model(list(args) if len(args) > 1 else args[0])
        out = out if isinstance(out, (list, tuple)) else [out]
        return {f"out_{i:02d}": o for i, o in enumerate(out)}

    fn = tf.function(call).get_concrete_function(*specs)
    if keras == 3:
        fn = convert_variables_to_constants_v2(fn)
    # the converter exports its trackable object as a SavedModel first: a bare module holding
    # the variables takes a second where the Keras model takes 20 (tensorflow 2.21, measured)
    holder = tf.Module()
    holder.variables_ = list(model.variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], holder)
    return bytes(converter.convert())


def _keras_on_tensorflow() -> bool:
    """Whether this process's Keras runs (or, not imported yet, will run) on TensorFlow."""
    if "keras" in sys.modules:
        return str(sys.modules["keras"].backend.backend()) == "tensorflow"
    return os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"


_OPTIONS = ("batch", "time", "unroll", "states", "initial_state", "mask", "keras")


def to_native(params: RNNParams, *, unroll: bool = False, batch: int | None = FILE_BATCH,
              time: int | None = None, states: bool = False, initial_state: bool = False,
              mask: bool = False, keras: int = 3) -> bytes:
    """A ``.tflite`` flatbuffer of the Keras model of ``params``, converted by
    ``TFLiteConverter``: Keras 3's (:func:`rnn_ref.backends.keras.convert.to_native`; every
    recurrent layer a ``WHILE`` loop) or, with ``keras=2``, tf-keras'
    (:func:`rnn_ref.backends.keras2.convert.to_native`: an LSTM layer with sigmoid gates,
    tanh, a bias and no mask becomes the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM``, the others a
    ``WHILE`` loop; :func:`rnn_ref.backends.litert.files.lowering` says which a graph took).
    The model takes ``x (batch, T, D)`` and returns the sequences, or the readout's.

    Args:
        unroll: build the layers with ``unroll=True`` (no ``WHILE``; needs ``time``).
        batch: the batch size, fixed by the converter (see the module docstring).
        time: the sequence length; ``None`` leaves it dynamic (``WHILE`` graphs only).
        states, initial_state, mask: the backends' graph (:func:`_keras_model`): with
            ``states`` the outputs are followed by each layer and direction's final ``h``,
            then each LSTM direction's ``c``; ``initial_state`` adds the inputs ``h0_*`` and
            ``c0_*``; ``mask`` a boolean ``(batch, T)`` mask.
        keras: 3 or 2, the Keras that builds the model.

    Keras 3's conversion runs where Keras uses TensorFlow: in this process when its Keras
    does (or is not imported yet, and ``KERAS_BACKEND`` does not say otherwise), else in a
    child process; tf-keras' always here (it runs on TensorFlow only).

    Raises:
        UnsupportedError: what :func:`unsupported` (``keras=3``) or
            :func:`~rnn_ref.backends.litert.record.keras2_unsupported` names.
        ValueError: ``unroll`` without ``time``, a batch below 1, another ``keras``.
    """
    if not isinstance(params, RNNParams):
        raise TypeError(f"params must be rnn_ref.RNNParams, got {type(params).__name__}")
    if keras not in KERAS_VERSIONS:
        raise ValueError(f"keras must be 3 (Keras 3) or 2 (tf-keras), got {keras!r}")
    reason = (unsupported if keras == 3 else keras2_unsupported)(params.config, padded=mask)
    if reason is not None:
        raise UnsupportedError(NAME if keras == 3 else NAME_KERAS2, *reason)
    if params.dtype != np.float32:
        raise UnsupportedError(NAME, f"dtype {params.dtype}", FLOAT32_ONLY)
    if unroll and time is None:
        raise ValueError("unroll=True needs a fixed time (Keras unrolls a known number of "
                         "steps)")
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    options = {"batch": batch, "time": time, "unroll": unroll, "states": states,
               "initial_state": initial_state, "mask": mask, "keras": keras}
    if keras == 2 or _keras_on_tensorflow():
        return _convert_here(params, batch=batch, time=time, unroll=unroll, states=states,
                             initial_state=initial_state, mask=mask, keras=keras)
    return _convert_in_child(params, options)


def _convert_in_child(params: RNNParams, options: dict[str, Any]) -> bytes:
    """:func:`to_native` in ``python -c`` with ``KERAS_BACKEND=tensorflow``: the request (the
    canonical members and the options as JSON) on its stdin as an ``.npz``, the flatbuffer
    on its stdout, a failure as JSON ``{"type", "message"}`` on its stderr's last line."""
    from rnn_ref.io import to_members

    buf = io.BytesIO()
    members: dict[str, Any] = {f"params.{k}": v for k, v in to_members(params).items()}
    members["options"] = np.array(json.dumps(options))
    np.savez(buf, **members)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    code = "from rnn_ref.backends.litert.convert import _child; _child()"
    try:
        res = subprocess.run([sys.executable, "-c", code], input=buf.getvalue(),
                             capture_output=True, env=env, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError("the LiteRT conversion (a child process) took over 600 s and was "
                           "stopped") from None
    if res.returncode == 0:
        return res.stdout
    tail = res.stderr.decode(errors="replace").strip().splitlines()
    try:
        err = json.loads(tail[-1])
        kind, message = str(err["type"]), str(err["message"])
    except (IndexError, ValueError, KeyError, TypeError):
        raise RuntimeError("the LiteRT conversion process failed (exit code "
                           f"{res.returncode}): {' | '.join(tail[-5:])}") from None
    if kind == "UnsupportedError":
        raise UnsupportedError(message)
    raise {"ValueError": ValueError, "TypeError": TypeError}.get(kind, RuntimeError)(message)


def _child() -> None:
    """The child of :func:`_convert_in_child` (data in, bytes out; nothing is executed)."""
    from rnn_ref.io import from_members

    # the flatbuffer goes to a private copy of the original stdout; descriptor 1 itself now
    # points at stderr, so stray prints, Python's or the converter's C++, cannot corrupt it
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        with np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False) as archive:
            request = {k: archive[k] for k in archive.files}
        params = from_members({k[len("params."):]: v for k, v in request.items()
                               if k.startswith("params.")}, source="LiteRT conversion request")
        raw = json.loads(str(request["options"]))
        options = {k: raw[k] for k in _OPTIONS}
        for k in ("batch", "time", "keras"):
            if options[k] is not None:
                options[k] = int(options[k])
        for k in ("unroll", "states", "initial_state", "mask"):
            options[k] = bool(options[k])
        data = to_native(params, **options)
    except Exception as exc:  # reported to the parent, typed
        sys.stderr.write("\n" + json.dumps({"type": type(exc).__name__,
                                            "message": str(exc)}) + "\n")
        sys.exit(1)
    stdout.write(data)
    stdout.flush()
