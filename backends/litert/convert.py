"""LiteRT (TensorFlow Lite): the Keras 3 model of a network converted by TensorFlow's
``TFLiteConverter`` to a ``.tflite`` flatbuffer and run by ``ai_edge_litert``'s interpreter.

Backends: ``litert`` (the converter's ``WHILE`` loop) and ``litert[unrolled]`` (the layers
built with ``unroll=True``: one copy of the cell per step, no loop).

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
from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.backends.litert.record import unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.fileapi import Hints, NativeFile
from rnn_ref.inputs import check_inputs
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["LiteRtBackend", "LiteRtUnrolledBackend", "describe", "list_arrays",
           "load_native", "read_file", "run_native", "to_native", "unsupported",
           "write_file"]

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


# --------------------------------------------------------------------------------------------
# running a flatbuffer
# --------------------------------------------------------------------------------------------
def _interpreter(model: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model)


def _invoke(model: bytes, feeds: dict[str, Array]) -> list[Array]:
    """The graph's outputs in order for ``feeds`` by input name: each input resized to its
    feed's shape, the tensors allocated, one ``invoke``.

    The converter names things two ways: a graph with a ``WHILE`` keeps the function's
    signature (``serving_default``: inputs by their ``TensorSpec`` names, outputs
    ``output_0``, ``output_1``, ... in order); a graph without control flow (the unrolled
    one) goes through the frozen-graph path, has no signature, and names its inputs as the
    specs and its outputs ``Identity``, ``Identity_1``, ... in order."""
    it = _interpreter(model)
    if it.get_signature_list():
        runner = it.get_signature_runner()
        inputs = {k: d["index"] for k, d in runner.get_input_details().items()}
        outputs = {k: d["index"] for k, d in runner.get_output_details().items()}
        del runner  # it holds the interpreter, which refuses to resize while referenced
    else:
        inputs = {d["name"]: d["index"] for d in it.get_input_details()}
        outputs = {d["name"]: d["index"] for d in it.get_output_details()}
    if set(inputs) != set(feeds):
        raise ValueError(f"the graph takes {sorted(inputs)}, got {sorted(feeds)}")
    details = {d["index"]: d for d in it.get_input_details()}
    for name, index in inputs.items():
        it.resize_tensor_input(index, list(np.shape(feeds[name])))
    it.allocate_tensors()
    for name, index in inputs.items():
        it.set_tensor(index, np.ascontiguousarray(feeds[name], dtype=details[index]["dtype"]))
    it.invoke()
    return [np.array(it.get_tensor(outputs[k])) for k in sorted(outputs, key=_output_number)]


def _output_number(name: str) -> int:
    """``output_3`` or ``Identity_3`` -> 3, ``Identity`` -> 0."""
    head, _, tail = name.rpartition("_")
    if name == "Identity":
        return 0
    if head in ("output", "Identity") and tail.isdigit():
        return int(tail)
    raise ValueError(f"unexpected output name {name!r} in the converted graph")


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------
class LiteRtBackend:
    """The ``WHILE`` graph of :func:`to_native` run by LiteRT's interpreter (float32)."""

    name = "litert"
    unroll = False

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        reason = unsupported(config, padded=lengths or mask)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        if np.dtype(dtype) != np.float32:
            return f"dtype {np.dtype(dtype)}: {FLOAT32_ONLY}"
        return None

    def forward(self, params: RNNParams, x: Array, *, h0: Any = None, lengths: Any = None,
                mask: Any = None) -> ForwardResult:
        """The network on ``x (N, T, D)`` with ``h0`` and ``lengths`` or ``mask``, computed by
        LiteRT: ``outputs (N, T, F)`` (a pair for ``merge_mode=None``), ``h_n`` and ``y``,
        float32."""
        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name)
        valid = inputs.mask_or_none()
        problem = self.supports(cfg, dtype=params.dtype, lengths=valid is not None, mask=False)
        if problem is not None:
            raise UnsupportedError(self.name, problem)
        n, t = inputs.x.shape[:2]
        model = to_native(params, unroll=self.unroll, batch=n,
                          time=t if self.unroll else None, states=True,
                          initial_state=inputs.h0 is not None, mask=valid is not None)
        feeds = {"x": inputs.x}
        if inputs.h0 is not None:
            feeds.update({f"h0_{i}": h for i, h in enumerate(inputs.h0)})
        if valid is not None:
            feeds["mask"] = valid
        got = _invoke(model, feeds)
        n_out = 2 if cfg.num_directions == 2 and cfg.merge_modes[-1] is None else 1
        n_states = cfg.num_layers * cfg.num_directions
        outputs: Any = tuple(got[:n_out]) if n_out == 2 else got[0]
        states = got[n_out:n_out + n_states]
        y = got[n_out + n_states] if params.readout is not None else None
        h_n: Any = np.stack(states) if cfg.uniform_hidden else tuple(states)
        return ForwardResult(outputs, h_n, y)


class LiteRtUnrolledBackend(LiteRtBackend):
    """``litert[unrolled]``: the layers built with ``unroll=True`` (no ``WHILE``)."""

    name = "litert[unrolled]"
    unroll = True


# --------------------------------------------------------------------------------------------
# files: .tflite
# --------------------------------------------------------------------------------------------
def write_file(params: RNNParams, path: Path, fmt: str) -> None:
    """The ``WHILE`` graph of :func:`to_native` (batch :data:`FILE_BATCH`, dynamic T)."""
    Path(path).write_bytes(to_native(params))


def read_file(path: Path, fmt: str, hints: Hints) -> RNNParams:
    """Refused: a ``.tflite`` holds a graph, not rnn-ref's parameters."""
    ops = describe(path)  # a file that is not a flatbuffer fails here, as FileFormatError
    loop = "a WHILE loop's body subgraph" if "WHILE" in ops else "an unrolled graph"
    raise UnsupportedError(NAME, f"reading parameters back from {Path(path).name}",
                           f"a .tflite holds the converted graph ({', '.join(sorted(set(ops)))}"
                           f"), not the config; the weights live in {loop}, transposed and "
                           f"with the biases merged; convert from the source model instead")


def _flatbuffer(path: Path) -> Any:
    from ai_edge_litert import schema_py_generated as schema

    from rnn_ref.errors import FileFormatError

    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise FileFormatError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        return schema, schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:
        raise FileFormatError(f"{path}: not a valid TFLite flatbuffer "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None


def describe(path: Path) -> list[str]:
    """The op names of every subgraph of a ``.tflite`` file, in order, subgraph by subgraph
    (``WHILE``, ``REVERSE_V2``, ``FULLY_CONNECTED``, ``UNIDIRECTIONAL_SEQUENCE_RNN``, ...;
    a custom op by its custom code)."""
    schema, model = _flatbuffer(path)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items()
             if not k.startswith("_") and isinstance(v, int)}
    out = []
    for sg in model.subgraphs or []:
        for op in sg.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            if builtin == schema.BuiltinOperator.CUSTOM:
                custom = code.customCode
                out.append(custom.decode() if isinstance(custom, bytes) else str(custom))
            else:
                out.append(names.get(builtin, f"builtin {builtin}"))
    return out


def list_arrays(path: Path, fmt: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Every tensor of every subgraph (the interpreter's ``get_tensor_details``), named
    ``subgraph/tensor``; shapes as the graph declares them (-1: dynamic)."""
    it = _interpreter(Path(path).read_bytes())
    out = []
    for sg in range(it.num_subgraphs()):
        for d in it.get_tensor_details(subgraph_index=sg):
            shape = tuple(int(s) for s in d.get("shape_signature", d["shape"]))
            out.append((f"{sg}/{d['name']}", shape, np.dtype(d["dtype"]).name))
    return out


def load_native(path: Path, fmt: str, params: RNNParams) -> NativeFile:
    """The flatbuffer's bytes (what :func:`run_native` runs); lengths are not taken."""
    _flatbuffer(path)
    return NativeFile(Path(path).read_bytes(), takes_lengths=False)


def run_native(model: bytes, x: Array, lengths: Any = None) -> Array:
    """The graph's output on ``x (N, T, D)``, a sample at a time when the graph's batch is
    fixed at another size."""
    if lengths is not None:
        raise UnsupportedError(NAME, "lengths", "the .tflite graph takes no mask")
    x = np.asarray(x, np.float32)
    details = _interpreter(model).get_input_details()
    if len(details) != 1:
        raise ValueError(f"the graph takes {len(details)} inputs; run_native feeds x only")
    batch = int(details[0]["shape_signature"][0])
    if batch in (-1, x.shape[0]):
        return _invoke(model, {"x": x})[0]
    if batch != 1:
        raise ValueError(f"the graph's batch is fixed at {batch}; x has {x.shape[0]} samples")
    return np.concatenate([_invoke(model, {"x": x[i:i + 1]})[0] for i in range(x.shape[0])])
