"""ONNX files (``.onnx``): read through :mod:`rnn_ref.backends.onnx.untrusted` (sizes and
external data checked before anything is read) and ``onnx.checker``, run by onnxruntime's CPU
provider; the file functions of :data:`rnn_ref.backends.records.FILE_API`, and
``external_files``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rnn_ref.backends.onnx import untrusted
from rnn_ref.backends.onnx.convert import from_native, to_native
from rnn_ref.backends.onnx.nodes import RECURRENT_OPS
from rnn_ref.errors import UnsupportedError
from rnn_ref.fileapi import Hints, NativeFile
from rnn_ref.params import RNNParams

__all__ = ["external_files", "list_arrays", "load_native", "read_file", "run_native", "write_file"]


# --------------------------------------------------------------------------------------------
# files (.onnx)
# --------------------------------------------------------------------------------------------
def read_file(path: Path, fmt: str, hints: Hints) -> RNNParams:
    """The parameters of an ``.onnx`` file, checked by ``onnx.checker`` first."""
    model = untrusted.load_path(path)
    onnx.checker.check_model(model)
    return from_native(model)


def write_file(params: RNNParams, path: Path, fmt: str) -> None:
    onnx.save(to_native(params), str(path))


def load_native(path: Path, fmt: str, params: RNNParams) -> NativeFile:
    """The file's graph; one whose only input is ``x`` runs as it is, others are rebuilt from
    ``params`` with a ``lengths`` input."""
    model = untrusted.load_path(path)
    if [i.name for i in model.graph.input if i.name not in
            {t.name for t in model.graph.initializer}] == ["x"]:
        return NativeFile(model, takes_lengths=False)
    return NativeFile(to_native(params, lengths=True), takes_lengths=True)


def run_native(model: onnx.ModelProto, x: np.ndarray[Any, Any], lengths: Any = None
               ) -> np.ndarray[Any, Any]:
    """The first output of an ONNX graph run by onnxruntime's CPU provider: ``x`` (features in
    the graph's floating type, or token ids) bound to the graph's first input whatever it is
    called, and ``lengths``, when given, to its second. The graph is checked first
    (:func:`untrusted.check_runnable`); onnxruntime gets its bytes, never a path. A graph
    whose ``RNN``, ``GRU`` or ``LSTM`` weights are not float32 is refused: onnxruntime's CPU
    kernels of those run float32 only."""
    import onnxruntime as ort

    consts = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in consts]
    if not inputs or (lengths is not None and len(inputs) < 2):
        raise UnsupportedError("onnxruntime", f"a graph with inputs {[i.name for i in inputs]}",
                               "it needs the sequence" + (" and its lengths" if lengths is
                                                          not None else ""))
    weights = {t.name: t.data_type for t in model.graph.initializer}
    rnn_types = {weights[n.input[1]] for n in model.graph.node
                 if n.op_type in RECURRENT_OPS and len(n.input) > 1 and n.input[1] in weights}
    if rnn_types - {onnx.TensorProto.FLOAT}:
        kinds = sorted(str(helper.tensor_dtype_to_np_dtype(t)) for t in rnn_types)
        raise UnsupportedError("onnxruntime", f"a {'/'.join(kinds)} RNN graph",
                               "its CPU RNN kernel runs float32 only (GRU and LSTM too), so "
                               "the file cannot be run or verified here")

    def feed(value: Any, spec: onnx.ValueInfoProto) -> np.ndarray[Any, Any]:
        elem = spec.type.tensor_type.elem_type
        return np.asarray(value, helper.tensor_dtype_to_np_dtype(elem) if elem else None)

    feeds = {inputs[0].name: feed(x, inputs[0])}
    if lengths is not None:
        feeds[inputs[1].name] = feed(lengths, inputs[1])
    untrusted.check_runnable(model, feeds)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feeds)[0])


def list_arrays(path: Path, fmt: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Every initializer of the file by its own name: ``(name, shape, dtype)``."""
    arrays = [(t.name, numpy_helper.to_array(t))
              for t in untrusted.load_path(path).graph.initializer]
    return [(name, a.shape, str(a.dtype)) for name, a in arrays]


def external_files(path: Path) -> list[tuple[str, str, int, str | None]]:
    """What reading ``path`` would read besides it (:func:`untrusted.external_files`)."""
    return untrusted.external_files(path)
