"""ONNX: one ``RNN``, ``GRU`` or ``LSTM`` node per layer, converters and oracle (the files:
``files.py``; the onnxruntime backend: ``backend.py``).

How ONNX differs from the reference (ONNX ``Operators.md``, section ``RNN``; onnxruntime
``core/providers/cpu/rnn/rnn_helpers.cc``):

* ``W[r] = w_x.T`` ``(M, D_l)``, ``R[r] = w_h.T``, ``B[r] = [b_x, b_h]`` (Wb then Rb); ``W``
  is ``[R, M, D_l]``. Inputs are time-major ``X [T, N, D]``; ``Y`` is ``[T, R, N, M]`` and
  ``Y_h`` is ``[R, N, M]``. onnxruntime rejects ``layout=1``, so batch-first graphs transpose
  around the RNN nodes.
* Activation names are capitalised (``Tanh``, ``HardSigmoid``); there is no ``linear``, so it
  is written as ``Affine(alpha=1, beta=0)`` (exact) and read back as ``linear``.
  ``activation_alpha``/``activation_beta`` are consumed in the order of the activations, only
  by those that take them (``rnn_helpers.cc``, ``NormalizeActivationArgumentAndGetAlphaBetaCount``);
  every parameter is written explicitly. A graph that leaves one out is ambiguous: ONNX's
  operator defaults (ThresholdedRelu 1.0, Affine 1.0/0.0) are not onnxruntime's (0.0 for
  everything but LeakyRelu 0.01, HardSigmoid 0.2/0.5 and Elu 1.0), so :func:`from_native`
  and :func:`oracle` ask which to use.
* ``sequence_lens`` (int32, right padding) zeroes padded outputs (``padded_output="zeros"``);
  no masks with holes. onnxruntime returns zeros instead of ``h0`` as the final state of a
  zero-length sequence (a recorded deviation). onnxruntime's CPU RNN runs float32 only.
* Every valid ``RNN`` node of every version (RNN-1, -7, -14, -22) is read (:func:`read_node`):
  attributes absent take the spec's defaults (one ``Tanh`` per direction, although the schema
  lists ``["Tanh", "Tanh"]`` as the default value), optional inputs may be absent or
  empty-named, either output may be skipped, ``layout=1`` is computed (:func:`run_node`), and
  what the spec forbids is refused naming the rule. onnxruntime refuses ``layout=1`` and nodes
  without ``hidden_size`` (recorded deviations); :func:`to_native` writes ``layout=1`` only
  when asked.
* ``GRU`` (GRU-1, -3, -7, -14, -22) and ``LSTM`` (LSTM-1, -7, -14, -22) nodes are read,
  computed and written the same way (:func:`oracle`, :func:`from_native`, :func:`to_native`,
  which writes GRU-14 and LSTM-14 nodes of opset 17): ``W``, ``R``, ``B`` unpacked by gate
  name from ONNX's orders (z, r, h; i, o, f, c; ``P`` in i, o, f) with
  :func:`rnn_ref.cells.unpack` (and packed by :func:`rnn_ref.cells.pack`); ``activations``
  ``(f, g)`` or ``(f, g, h)`` per direction (default ``Sigmoid, Tanh[, Tanh]``) into
  ``recurrent_activation``, ``activation`` and ``cell_activation``; ``linear_before_reset=1``
  is ``reset_after=True`` (GRU-1, which has no such attribute, computes the 0 form);
  ``input_forget=1`` is ``f = 1 - i``, as onnxruntime computes it, and the forget rows of
  ``W``, ``R``, ``B`` and ``P``, which then compute nothing, are dropped; ``P`` given is
  ``peepholes=True``; ``initial_c`` is ``c0`` and ``Y_c`` is ``c_n``. onnxruntime does not
  clip the input of an LSTM's ``h`` (onnxruntime #27224), a recorded deviation: the reference
  clips every activation's input, as the spec says. The writer writes an ``input_forget``
  LSTM's forget rows as the input gate's rows negated (with a sigmoid-like ``f``, so that
  ``f(-x) = 1 - i`` even for a runtime that ignores the attribute; zeros otherwise), and
  refuses a projected LSTM (ONNX's LSTM has no projection).
* Graphs written by :func:`to_native` carry the config as metadata (``rnn_ref.config``), so
  merge modes, the readout activation and the padding semantics survive a round trip.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from rnn_ref import limits
from rnn_ref.backends.onnx import untrusted
from rnn_ref.backends.onnx.graph import write_network
from rnn_ref.backends.onnx.nodes import (
    ONNX_NAMES,
    RECURRENT_OPS,
    GraphBuilder,
    RnnNode,
    opset_of,
    read_node,
    run_node,
)
from rnn_ref.backends.onnx.reader import UNROLLED, read_network
from rnn_ref.backends.onnx.record import unsupported
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import RNNParams

__all__ = ["GraphBuilder", "NAME", "ONNX_NAMES", "RnnNode", "from_native", "oracle", "owns",
           "read_node", "run_node", "to_native", "unsupported"]

NAME = "ONNX RNN"
OPSET = 17
_DTYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
           np.dtype(np.float16): TensorProto.FLOAT16}

def owns(model: Any) -> bool:
    """True for the models :func:`oracle` takes."""
    return isinstance(model, onnx.ModelProto)


# --------------------------------------------------------------------------------------------
# to ONNX
# --------------------------------------------------------------------------------------------
def to_native(params: RNNParams, *, time_major: bool = False, lengths: bool = False,
              initial_state: bool = False, expose_outputs: bool = False, layout: int = 0
              ) -> onnx.ModelProto:
    """An ONNX model (opset 17) with one ``RNN``, ``GRU`` or ``LSTM`` node per layer.

    Args:
        params: the network.
        time_major: inputs and outputs ``(T, N, ...)`` instead of batch-major ``(N, T, ...)``.
        layout: the RNN nodes' ``layout`` attribute. ``0`` (default) writes time-major nodes
            (what onnxruntime runs; a batch-major graph transposes around them); ``1`` writes
            batch-major nodes fed straight from ``x (N, T, D)``, which onnxruntime refuses but
            the spec, OpenVINO and :func:`rnn_ref.oracle` accept. ``1`` needs a batch-major
            graph (``time_major=False``).
        lengths: add an int32 input ``lengths (N,)`` fed to every node's ``sequence_lens``.
        initial_state: add an input ``h0 (L*R, N, M)`` (with hidden sizes that differ: one
            input ``h0_l{l} (R, N, M_l)`` per layer), and with LSTM layers ``c0 (C, N, M)``
            (``c0_l{l}`` per LSTM layer when their sizes differ).
        expose_outputs: with a readout, also output the last layer's outputs (``output``)
            after ``y``.

    Inputs are ``x`` then ``lengths`` then ``h0`` [then ``c0``] as asked. Outputs:
    ``output`` (the last layer, merged; ``output_forward`` and ``output_backward`` for
    ``merge_mode=None``), or ``y`` with a readout; then ``h_n (L*R, N, M)`` (or ``h_n_l{l}
    (R, N, M_l)`` per layer), then with LSTM layers ``c_n (C, N, M)`` (or ``c_n_l{l}``).

    Raises:
        UnsupportedError: ``padded_output`` other than zeros with ``lengths=True``; an LSTM
            with a projection (``proj_size``).
    """
    return write_network(params, time_major=time_major, lengths=lengths,
                         initial_state=initial_state, expose_outputs=expose_outputs,
                         layout=layout)


# --------------------------------------------------------------------------------------------
# from ONNX
# --------------------------------------------------------------------------------------------
def _load(obj: Any) -> onnx.ModelProto:
    """The model ``obj`` is or holds, through :mod:`~rnn_ref.backends.onnx.untrusted`: sizes
    checked, external data only as allowed (a path's owned files; never for bytes or a
    ModelProto)."""
    if isinstance(obj, onnx.ModelProto):
        untrusted.check_sizes(obj, "from_onnx")
        untrusted.embed_external_data(obj, None, "from_onnx")
        return obj
    if isinstance(obj, (bytes, bytearray)):
        return untrusted.load_bytes(bytes(obj))
    if isinstance(obj, (str, os.PathLike)):
        return untrusted.load_path(obj)
    raise TypeError(f"from_onnx takes an onnx.ModelProto, bytes or a path, "
                    f"got {type(obj).__name__}")


def from_native(model: Any, *, missing_parameters: str = "raise",
                allow_external_data: bool | None = None) -> RNNParams:
    """Canonical parameters of an ONNX graph made of ``RNN``, ``GRU`` and ``LSTM`` nodes.

    Reads graphs written by :func:`to_native` (their metadata gives the config) and graphs of
    other exporters, e.g. ``torch.onnx.export`` of a multi-layer bidirectional ``nn.RNN``,
    ``nn.GRU`` or ``nn.LSTM``: each recurrent node is a layer in graph order, the directions
    of a layer are concatenated, and a ``MatMul`` (+ ``Add``) or ``Gemm`` after the last
    layer is the readout. An LSTM node's ``initial_c`` is zeros or the graph's ``c0`` input
    (``(C, N, M)``, indexed as ``config.cell_state_index``), never the ``h0`` input.

    Args:
        model: an ``onnx.ModelProto``, its bytes, or a path.
        missing_parameters: what to do when a node leaves out an activation parameter:
            ``"raise"`` (default), ``"onnx"`` (ONNX's operator defaults) or
            ``"onnxruntime"`` (what onnxruntime uses).
        allow_external_data: read tensors kept in external files, only from files a model
            path owns (:mod:`rnn_ref.limits`); ``None``: as in force (off by default).

    Raises:
        UnsupportedError: Scan/Loop/If nodes, or nodes that are not the network's plumbing.
        ValueError: weights that are not initializers or constants, inconsistent nodes.
    """
    _check_missing(missing_parameters)
    with limits.using(allow_external_data=allow_external_data):
        m = _load(model)
    _rnn_nodes(m)
    return read_network(m, opset_of(m), missing_parameters=missing_parameters)


def _rnn_nodes(m: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The graph's recurrent nodes (``RNN``, ``GRU``, ``LSTM``) in graph order.

    Raises:
        UnsupportedError: a Scan, Loop or If node.
        UnsupportedError: no recurrent node (torch's dynamo exporter unrolls nn.RNN).
    """
    for node in m.graph.node:
        if node.op_type in ("Scan", "Loop", "If"):
            raise UnsupportedError("rnn-ref", f"an ONNX {node.op_type} node ({node.name!r})",
                                   "the layers are RNN, GRU and LSTM nodes, never a loop")
    rnn_nodes = [n for n in m.graph.node if n.op_type in RECURRENT_OPS]
    if not rnn_nodes:
        raise UnsupportedError("rnn-ref", "an ONNX graph with no RNN node", UNROLLED)
    return rnn_nodes


# --------------------------------------------------------------------------------------------
# oracle: the graph evaluated by onnx.reference, with every RNN node computed by rnn_ref
# --------------------------------------------------------------------------------------------
def _oracle_ops(opset: int, missing_parameters: str = "raise") -> list[type]:
    """``onnx.reference`` operators computing every ``RNN``, ``GRU`` and ``LSTM`` node with
    :func:`run_node`.

    The node is read from its ``NodeProto`` by :func:`read_node`, not from the attributes
    ``onnx.reference`` hands over: those have the schema's defaults filled in (two
    activations for a one-direction RNN node), which hides what the node really says.
    """
    from onnx.reference.op_run import OpRun

    def _run(self: OpRun, *inputs: Any, **attributes: Any) -> tuple[np.ndarray[Any, Any], ...]:
        node = read_node(self.onnx_node, opset, missing_parameters=missing_parameters)
        return run_node(node, *inputs)[:len(self.onnx_node.output)]

    return [type(op, (OpRun,), {"op_domain": "", "_run": _run}) for op in RECURRENT_OPS]


_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def _as_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose floating tensors, constants, casts and value types are all float64."""
    m = onnx.ModelProto()
    m.CopyFrom(model)

    def promote(t: onnx.TensorProto) -> None:
        if t.data_type in _FLOATS:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64),
                                               t.name))

    for t in m.graph.initializer:
        promote(t)
    for node in m.graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                promote(a.t)
            elif node.op_type == "Cast" and a.name == "to" and a.i in _FLOATS:
                a.i = TensorProto.DOUBLE
    for vi in [*m.graph.input, *m.graph.output, *m.graph.value_info]:
        if vi.type.tensor_type.elem_type in _FLOATS:
            vi.type.tensor_type.elem_type = TensorProto.DOUBLE
    return m


def _check_missing(missing_parameters: str) -> None:
    if missing_parameters not in ("raise", "onnx", "onnxruntime"):
        raise ValueError(f"missing_parameters must be 'raise', 'onnx' or 'onnxruntime', "
                         f"got {missing_parameters!r}")


def oracle(model: onnx.ModelProto, *, missing_parameters: str = "raise"
           ) -> Callable[..., list[np.ndarray[Any, Any]]]:
    """A NumPy function returning what onnxruntime returns for ``model``, in float64.

    It takes the graph's inputs by position or by name, as NumPy arrays, and returns the list
    of the graph's outputs in order (as ``InferenceSession.run`` does). The graph is evaluated
    by ``onnx.reference`` with every ``RNN``, ``GRU`` and ``LSTM`` node computed by the rnn-ref
    oracle in float64 (a zero-length sequence's final states are ``initial_h`` and
    ``initial_c``, and an LSTM's clip applies to h's input too, as the spec says).
    ``missing_parameters`` fills activation parameters a node leaves out, as in
    :func:`from_native`.
    """
    from onnx.reference import ReferenceEvaluator

    _check_missing(missing_parameters)
    m = _load(model)
    _rnn_nodes(m)  # a graph with no recurrent node is not a network (an unrolled export)
    evaluator = ReferenceEvaluator(_as_float64(m),
                                   new_ops=_oracle_ops(opset_of(m), missing_parameters))
    names = [i.name for i in m.graph.input
             if i.name not in {t.name for t in m.graph.initializer}]

    def call(*args: Any, **kwargs: Any) -> list[np.ndarray[Any, Any]]:
        if len(args) > len(names):
            raise TypeError(f"the graph takes {len(names)} inputs {names}, got {len(args)}")
        feeds = dict(zip(names, args, strict=False))
        for k, v in kwargs.items():
            if k not in names:
                raise TypeError(f"the graph has no input {k!r}; inputs: {names}")
            if k in feeds:
                raise TypeError(f"input {k!r} given twice")
            feeds[k] = v
        missing = [n for n in names if n not in feeds]
        if missing:
            raise TypeError(f"missing graph inputs {missing}")
        arrays = {k: np.asarray(v) for k, v in feeds.items()}
        arrays = {k: v.astype(np.float64) if v.dtype.kind == "f" else v
                  for k, v in arrays.items()}
        return [np.asarray(o) for o in evaluator.run(None, arrays)]

    return call
