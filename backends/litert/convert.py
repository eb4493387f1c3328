"""LiteRT (TensorFlow Lite): the Keras 3 model of a network converted by TensorFlow's
``TFLiteConverter`` to a ``.tflite`` flatbuffer and run by ``ai_edge_litert``'s interpreter.

The converter is here; the ``.tflite`` files are ``files.py``; the backends, ``backend.py``:
``litert`` (the converter's ``WHILE`` loop) and ``litert[unrolled]`` (the layers built with
``unroll=True``: one copy of the cell per step, no loop).

How the conversion goes (ai-edge-litert 2.3.0, tensorflow-cpu 2.21.0, keras 3.15.1; the ops
and the deviations are reproduced by ``tests/test_backend_litert.py``, the shape and freezing
errors were seen while writing this module):

* **No fused RNN op.** A Keras 3 ``SimpleRNN`` runs ``keras/src/backend/tensorflow/rnn.py``'s
  ``tf.while_loop`` over ``TensorArray`` s; the converter lowers it to a ``WHILE`` op whose
  cond and body are subgraphs of their own (the cell's ``FULLY_CONNECTED``/``TANH``... in the
  body), plus ``REVERSE_V2`` for ``go_backwards`` and two loops and a ``CONCATENATION`` for a
  ``Bidirectional``. It never emits ``UNIDIRECTIONAL_SEQUENCE_RNN`` (users asking for it:
  tensorflow/tensorflow#56767, #58854; only Keras' LSTM is fused). That fused kernel would
  not be stateless anyway: its hidden state is input 4, read with ``GetVariableInput`` ("The
  hidden_state is a variable input tensor that can be modified",
  ``tensorflow/lite/kernels/unidirectional_sequence_rnn.cc``), so it carries over from one
  ``invoke`` to the next. ``unroll=True`` gives a graph of per-step ops and no ``WHILE``.
* **Shapes.** The ``TensorArray`` of the loop is lowered to a tensor list whose element shape
  ``(N, M)`` must be static ("'tf.TensorListReserve' op requires element_shape to be static
  during TF Lite transformation pass"), so the batch N is fixed at conversion; the time axis
  stays dynamic in the ``WHILE`` graph (the input is resized to the call's T), and is fixed
  too in the unrolled graph (``unroll`` needs a known T). Each backend call converts once,
  for its (N, T).
* **Weights are frozen** (``convert_variables_to_constants_v2``) before conversion: the
  Keras variables otherwise become ``VAR_HANDLE``/``READ_VARIABLE`` ops which the interpreter
  cannot run without an initialiser ("read_variable.cc:67 variable != nullptr was not
  true").
* The conversion needs Keras on TensorFlow; a process whose Keras runs another backend
  converts in a child interpreter (:func:`to_native` does that by itself): parameters go on
  its stdin as the canonical file's members in an ``.npz`` read with ``allow_pickle=False``,
  the flatbuffer comes back on its stdout.
* **float32 only**: a float64 graph does not convert (TFLite's builtins have no float64
  MatMul, Tanh...).
* **Deviations** (``litert/deviations/litert_unrolled.json``; ``litert`` has none on the quick
  matrix): with ``unroll=True`` Keras zeroes a masked backward layer's outputs at the mirror
  image of its padded steps (``keras/src/backend/tensorflow/rnn.py``, the unroll branch
  zeroes outputs in processing order with the unreversed mask), and cannot trace T = 0.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any

import numpy as np

from rnn_ref.backends.litert.record import unsupported
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import RNNParams

__all__ = ["to_native", "unsupported"]

NAME = "LiteRT"
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
def _keras_model(params: RNNParams, *, unroll: bool, states: bool, initial_state: bool,
                 mask: bool) -> Any:
    """The Keras model to convert: :func:`rnn_ref.backends.keras.convert.to_native`'s (one
    output: the sequences, or the readout's), or with ``states`` one that also returns every
    layer's final states and takes ``h0`` and a mask when asked (for the backends)."""
    from rnn_ref.backends.keras import convert as keras_backend

    keras = keras_backend.import_keras()
    cfg = params.config
    if not states:
        if initial_state or mask:
            raise ValueError("initial_state and mask need states=True")
        model = keras_backend.to_native(params)
        _set_unroll(model.layers, unroll)
        return model
    dtype = params.dtype.name
    R = cfg.num_directions
    x = keras.Input((None, cfg.input_size), dtype=dtype, name="x")
    inputs = [x]
    h0 = [keras.Input((cfg.hidden_sizes[li],), dtype=dtype, name=f"h0_{li * R + r}")
          for li in range(cfg.num_layers) for r in range(R)] if initial_state else []
    inputs += h0
    m = keras.Input((None,), dtype="bool", name="mask") if mask else None
    if m is not None:
        inputs.append(m)
    layers = keras_backend.rnn_layers(params, return_state=True)
    _set_unroll(layers, unroll)
    h: Any = x
    h_n = []
    for li, layer in enumerate(layers):
        kwargs: dict[str, Any] = {}
        if m is not None:
            kwargs["mask"] = m
        if h0:
            kwargs["initial_state"] = h0[li * R:(li + 1) * R]
        out = layer(h, **kwargs)
        merged = out[: len(out) - R]
        h = merged[0] if len(merged) == 1 else tuple(merged)
        h_n.extend(out[len(out) - R:])
    outputs = list(h) if isinstance(h, tuple) else [h]
    y = []
    if params.readout is not None:
        y = [keras_backend.head_layer(params, 0)(h)]
    return keras.Model(inputs, [*outputs, *h_n, *y])


def _set_unroll(layers: Any, unroll: bool) -> None:
    """``unroll`` on every RNN layer (the inner layers of a ``Bidirectional`` too)."""
    for layer in layers:
        for inner in (layer, getattr(layer, "forward_layer", None),
                      getattr(layer, "backward_layer", None)):
            if inner is not None and hasattr(inner, "unroll"):
                inner.unroll = unroll


def _convert_here(params: RNNParams, *, batch: int | None, time: int | None, unroll: bool,
                  states: bool, initial_state: bool, mask: bool) -> bytes:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    cfg = params.config
    model = _keras_model(params, unroll=unroll, states=states, initial_state=initial_state,
                         mask=mask)
    dt = tf.as_dtype(params.dtype.name)
    specs = [tf.TensorSpec((batch, time, cfg.input_size), dt, name="x")]
    if initial_state:
        specs += [tf.TensorSpec((batch, m), dt, name=f"h0_{i}")
                  for i, m in enumerate(m for m in cfg.hidden_sizes
                                        for _ in range(cfg.num_directions))]
    if mask:
        specs.append(tf.TensorSpec((batch, time), tf.bool, name="mask"))

    def call(*args: Any) -> Any:
        out = model(list(args) if len(args) > 1 else args[0])
        out = out if isinstance(out, (list, tuple)) else [out]
        return {f"out_{i:02d}": o for i, o in enumerate(out)}

    fn = tf.function(call).get_concrete_function(*specs)
    frozen = convert_variables_to_constants_v2(fn)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], model)
    return bytes(converter.convert())


def _keras_on_tensorflow() -> bool:
    """Whether this process's Keras runs (or, not imported yet, will run) on TensorFlow."""
    if "keras" in sys.modules:
        return str(sys.modules["keras"].backend.backend()) == "tensorflow"
    return os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"


_OPTIONS = ("batch", "time", "unroll", "states", "initial_state", "mask")


def to_native(params: RNNParams, *, unroll: bool = False, batch: int | None = FILE_BATCH,
              time: int | None = None, states: bool = False, initial_state: bool = False,
              mask: bool = False) -> bytes:
    """A ``.tflite`` flatbuffer of the Keras 3 model of ``params``
    (:func:`rnn_ref.backends.keras.convert.to_native`: ``x (batch, T, D)`` -> the sequences,
    or the readout's), converted by ``TFLiteConverter``.

    Args:
        unroll: build the layers with ``unroll=True`` (no ``WHILE``; needs ``time``).
        batch: the batch size, fixed by the converter (see the module docstring).
        time: the sequence length; ``None`` leaves it dynamic (``WHILE`` graphs only).
        states, initial_state, mask: the backends' graph: outputs (two arrays for
            ``merge_mode=None``), then each layer and direction's final state, then the
            readout; inputs ``x``, then ``h0`` (one per layer and direction) with
            ``initial_state``, then a boolean ``(batch, T)`` mask with ``mask``.

    Conversion runs where Keras uses TensorFlow: in this process when its Keras does (or is
    not imported yet, and ``KERAS_BACKEND`` does not say otherwise), else in a child process.

    Raises:
        UnsupportedError: what :func:`unsupported` names.
        ValueError: ``unroll`` without ``time``, a batch below 1.
    """
    if not isinstance(params, RNNParams):
        raise TypeError(f"params must be rnn_ref.RNNParams, got {type(params).__name__}")
    reason = unsupported(params.config, padded=mask)
    if reason is not None:
        raise UnsupportedError(NAME, *reason)
    if params.dtype != np.float32:
        raise UnsupportedError(NAME, f"dtype {params.dtype}", FLOAT32_ONLY)
    if unroll and time is None:
        raise ValueError("unroll=True needs a fixed time (Keras unrolls a known number of "
                         "steps)")
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if _keras_on_tensorflow():
        from rnn_ref.backends.keras.convert import import_keras

        import_keras()
        return _convert_here(params, batch=batch, time=time, unroll=unroll, states=states,
                             initial_state=initial_state, mask=mask)
    return _convert_in_child(params, {"batch": batch, "time": time, "unroll": unroll,
                                      "states": states, "initial_state": initial_state,
                                      "mask": mask})


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
        for k in ("batch", "time"):
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
