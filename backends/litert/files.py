"""LiteRT files (``.tflite``): written as the ``WHILE`` graph of
:func:`rnn_ref.backends.litert.convert.to_native`, described and run (never read back as
parameters: the file holds the converted graph); the file functions of
:data:`rnn_ref.backends.records.FILE_API`, and ``describe``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.backends.litert.backend import interpreter, invoke
from rnn_ref.backends.litert.convert import NAME, Array, to_native
from rnn_ref.errors import UnsupportedError
from rnn_ref.fileapi import Hints, NativeFile
from rnn_ref.params import RNNParams

__all__ = ["RECURRENT_OPS", "describe", "list_arrays", "load_native", "lowering", "read_file",
           "run_native", "write_file"]


# --------------------------------------------------------------------------------------------
# files: .tflite
# --------------------------------------------------------------------------------------------
def write_file(params: RNNParams, path: Path, fmt: str) -> None:
    """The graph of :func:`to_native` (batch
    :data:`~rnn_ref.backends.litert.convert.FILE_BATCH`, dynamic T): of the Keras 3 model
    (``tflite``: ``WHILE`` loops), or of the tf-keras model (``tflite-keras2``: fused LSTMs
    where tf-keras fuses them)."""
    Path(path).write_bytes(to_native(params, keras=2 if fmt == "tflite-keras2" else 3))


#: the ops a recurrent layer becomes, and what each means
RECURRENT_OPS = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "the fused LSTM (its state a variable tensor)",
    "BIDIRECTIONAL_SEQUENCE_LSTM": "the fused bidirectional LSTM",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "the fused RNN (its state a variable tensor)",
    "WHILE": "a loop over the steps",
}


def lowering(ops: list[str]) -> str:
    """What the recurrent layers of a graph (its ops, :func:`describe`) became: each fused
    op and ``WHILE`` loop with its count, or an unrolled graph (neither)."""
    found = [f"{op} x{ops.count(op)} ({what})" if ops.count(op) > 1 else f"{op} ({what})"
             for op, what in RECURRENT_OPS.items() if op in ops]
    return ", ".join(found) if found else "unrolled: one copy of the cell per step"


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
    it = interpreter(Path(path).read_bytes())
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
    details = interpreter(model).get_input_details()
    if len(details) != 1:
        raise ValueError(f"the graph takes {len(details)} inputs; run_native feeds x only")
    batch = int(details[0]["shape_signature"][0])
    if batch in (-1, x.shape[0]):
        return invoke(model, {"x": x})[0]
    if batch != 1:
        raise ValueError(f"the graph's batch is fixed at {batch}; x has {x.shape[0]} samples")
    return np.concatenate([invoke(model, {"x": x[i:i + 1]})[0] for i in range(x.shape[0])])
