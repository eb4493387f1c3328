"""Reading one ONNX graph of the whole network back: :func:`read_network`.

The graph is interpreted node by node in graph order. Every value gets a role (:class:`_Val`:
the token ids, a sequence of features and which layer made it, a node's ``Y`` or ``Y_h``, one
direction's final state, the selected vector, a head layer in progress, a shape computation,
zeros) and every node must turn the roles of its inputs into a role the network has: an
embedding ``Gather``, the transposes and reshapes around ``RNN`` nodes, a merge of two
directions, a selection, a head layer's ``MatMul``/``Gemm``/``Add``/activation. A node that
does anything else (a ``Mul`` before the first ``RNN`` node, a constant ``initial_h`` that is
not zeros, a constant ``sequence_lens``), an unused graph input and an unused initializer are
refused by name, never skipped: what is read computes what the graph computes.

Read: the graphs of :func:`rnn_ref.backends.onnx.graph.write_network` and of
``torch.onnx.export(..., dynamo=False)`` of modules made of ``nn.Embedding``, ``nn.RNN``,
``nn.GRU``, ``nn.LSTM`` (batch first or not), ``out[:, -1]``, ``h_n[-1]``,
``cat([h_n[-2], h_n[-1]], 1)`` and ``nn.Linear`` with activations and ``softmax``. A ``GRU``
or ``LSTM`` node is a layer as an ``RNN`` node is (:func:`_on_rnn`); an LSTM's ``Y_c`` has the
role of final cell states (concatenated, squeezed, gathered and output as ``Y_h`` is), and
its ``initial_c`` is zeros or the graph's ``c0`` input, sliced as ``h0`` is.

Zero initial states: an ``initial_h`` that provably is all zeros is the spec's default state,
however it is computed. torch writes an omitted ``h0`` as ``Expand`` of a zero constant or
``ConstantOfShape`` to ``[L*R, N, M]`` with ``N`` from ``Shape(x)``, and
``torch.zeros(L, x.size(0), M).to(x.device)`` as ``Shape``, ``Gather``, ``Unsqueeze``,
``Concat``, ``ConstantOfShape``, ``Cast``. The reader tracks the role ``zeros``:
``ConstantOfShape`` with no value or 0, and any reshaping, selection, broadcast or cast of
zeros (:data:`_ZERO_FLOW`) whose other inputs are shape arithmetic (constants, ``Shape``, and
``Gather``/``Unsqueeze``/``Squeeze``/``Concat``/``Cast``/``Slice`` of those). Shape arithmetic
is accounted for only as the computation of such zeros: a shape any other node takes is
refused there, and a shape or zeros nothing takes is refused by :func:`_check_zeros_used`. A
state filled with anything else (``ConstantOfShape`` of 1, zeros plus 1, an ``Expand`` of a
non-zero constant) is refused by name. The metadata ``rnn_ref.config`` never overrides
a node: it only fills in what no node says (identity layers, the padding index, the merge mode
of a last layer whose merged outputs are not used, ``padded_output`` where no padded step is
seen, ``output_order`` where only final states are).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rnn_ref.activations import ACTIVATIONS, Activation
from rnn_ref.backends.onnx.nodes import (
    RnnNode,
    cell_fields,
    input_size_of,
    node_cells,
    read_node,
)
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.network import SHOWS_PADDED_STEPS, Dense, HeadActivation, Identity, Softmax
from rnn_ref.params import AnyCellParams, Readout, RNNParams

__all__ = ["UNROLLED", "read_network"]

WHO = "rnn-ref"
#: Why a graph without an RNN node is refused.
UNROLLED = ("torch.onnx.export's default exporter (dynamo=True, torch 2.9 and later) unrolls "
            "nn.RNN into a fixed-length graph of per-step MatMul/Tanh nodes with no RNN node, "
            "so the sequence length is fixed and there is no recurrent layer to read; export "
            "with torch.onnx.export(..., dynamo=False), or let rnn-ref write the graph: "
            "`rnn-ref convert model.pt model.onnx`")
_ACT_OPS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "elu": "Elu",
            "leaky_relu": "LeakyRelu", "hard_sigmoid": "HardSigmoid", "softsign": "Softsign",
            "softplus": "Softplus", "thresholded_relu": "ThresholdedRelu"}
_OP_ACTS = {v: k for k, v in _ACT_OPS.items()}
#: standalone operators' attribute defaults (ONNX Operators.md; onnxruntime agrees for these)
_OP_DEFAULTS = {"elu": (1.0, None), "leaky_relu": (0.01, None), "hard_sigmoid": (0.2, 0.5),
                "thresholded_relu": (1.0, None)}


class _Refused(Exception):
    """A node the network does not have."""


@dataclass(frozen=True)
class _Val:
    """The role of one value of the graph."""

    kind: str  # const shape zeros ids seq Y Yr states state vec head idmask idlens lens h0 input
    layer: int = -1  # seq: -1 the network input, l layer l's merged outputs; Y, Yr: the node
    tm: bool | None = None  # time-major axes (None: not known yet, the graph input)
    merge: str = ""  # seq: how a layer's directions were merged; vec: the selection
    part: int = 0  # Yr, state: the direction; h0: the first state
    parts: tuple[tuple[int, int], ...] = ()  # states: (layer, direction) along axis 0
    rev: bool = False  # seq: in processing order; Y: layout 1
    name: str = ""  # input, h0: the graph input
    head: tuple[Any, ...] = ()  # head: (j, w, b or None, ops, per_step)
    compact: bool = False  # ids, idzero, idmask, idlens: of the compacted ids (_on_compact)


@dataclass
class _State:
    """What the interpretation has learnt so far."""

    consts: dict[str, np.ndarray[Any, Any]]
    vals: dict[str, _Val] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    layers: list[tuple[RnnNode, list[AnyCellParams], bool]] = field(default_factory=list)
    merges: dict[int, str | None] = field(default_factory=dict)
    lens: set[str] = field(default_factory=set)
    compacted: bool = False  # the ids were compacted (mask_zero: _on_compact)
    lens_names: set[str] = field(default_factory=set)  # the RNN nodes' sequence_lens
    pool_lens: set[str] = field(default_factory=set)  # the lengths a mean_valid divides by
    time_major: bool | None = None
    embedding: np.ndarray[Any, Any] | None = None
    heads: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None, HeadActivation]] = \
        field(default_factory=list)
    opset: int = 17
    missing: str = "raise"
    state_inputs: dict[str, str] = field(default_factory=dict)  # graph input: initial_h/_c


def _where(node: onnx.NodeProto) -> str:
    return f"ONNX {node.op_type} node {node.name!r}"


#: why a node, input or output that is not part of the network is refused
_WHY = ("every node, initializer, input and output must be part of the network: the embedding "
        "Gather, RNN nodes and the plumbing around them, the selection, the dense head")


def _refuse(node: onnx.NodeProto, what: str) -> _Refused:
    return _Refused(f"{_where(node)} ({what})")


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _float(value: Any) -> float | None:
    """A float32 attribute or constant as the shortest decimal that gives it back (what the
    writer wrote: 0.7, not 0.699999988079071); float64 values as they are."""
    if value is None:
        return None
    value = np.asarray(value).ravel()[0]
    return float(str(value)) if value.dtype == np.float32 else float(value)


def _const(st: _State, name: str) -> np.ndarray[Any, Any] | None:
    if name in st.consts and st.vals.get(name, _Val("const")).kind == "const":
        st.used.add(name)
        return st.consts[name]
    return None


def _ints(st: _State, node: onnx.NodeProto, index: int, attr: str) -> list[int] | None:
    """An int list given as input ``index`` (a constant) or attribute ``attr`` (older opsets);
    ``None`` where neither is given (the operator's default). An input that is not a constant
    (a computed shape) gives ``[]``, which no handler's pattern matches: never the default."""
    if len(node.input) > index and node.input[index]:
        value = _const(st, node.input[index])
        return [] if value is None else [int(v) for v in np.ravel(value)]
    got = _attr(node, attr)
    return None if got is None else [int(v) for v in got]


# --------------------------------------------------------------------------------------------
# node handlers: the roles of a node's outputs from its inputs' roles, or _Refused
# --------------------------------------------------------------------------------------------
def _in(st: _State, node: onnx.NodeProto) -> list[_Val]:
    vals = []
    for name in node.input:
        if name == "":
            vals.append(_Val("none"))
            continue
        if name not in st.vals:
            raise _refuse(node, f"its input {name!r} is not a value of the graph")
        st.used.add(name)
        vals.append(st.vals[name])
    return vals


def _plumbing(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val] | None:
    """Shape computations: any node whose inputs are all shapes or constants and whose output
    is consumed only as a shape (checked where it is consumed: only a zero-producer takes a
    shape, and :func:`_check_zeros_used` refuses one nothing takes)."""
    if vals and all(v.kind in _SHAPE_KINDS for v in vals) and \
            node.op_type in ("Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice"):
        return [_Val("shape")] * len(node.output)
    return None


def _on_constant(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    value = next((helper.get_attribute_value(a) for a in node.attribute), None)
    if isinstance(value, onnx.TensorProto):
        st.consts[node.output[0]] = numpy_helper.to_array(value)
    elif value is not None:
        st.consts[node.output[0]] = np.asarray(value)
    else:
        raise _refuse(node, "a Constant without a value")
    return [_Val("const")]


def _on_shape(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    return [_Val("shape")]


def _on_constant_of_shape(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    """Zeros of a computed shape (``value`` absent means a float 0): with any other value, a
    constant the network has no place for (a non-zero initial state)."""
    value = _attr(node, "value")
    if value is not None and np.any(numpy_helper.to_array(value)):
        got = numpy_helper.to_array(value).ravel()[:1].tolist()
        raise _refuse(node, f"a constant filled with {got}, not zeros: an initial state the "
                            f"network has only as zeros or the graph's h0 input")
    if not vals or vals[0].kind not in _SHAPE_KINDS:
        got = _describe(vals[0]) if vals else "nothing"
        raise _refuse(node, f"zeros of the shape {got}, not of a shape computed from "
                            f"constants and the input's shape")
    return [_Val("zeros")]


# ---- zeros: the default initial state, however the exporter computes it --------------------
#: roles of values that are shape arithmetic: constants, shapes of values, and computations
#: of them (:func:`_plumbing`); they are accounted for only where a zero-producer takes them
_SHAPE_KINDS = ("const", "shape", "none")
#: operators whose result is all zeros when their data inputs are (``None``: every input is
#: data; else the data inputs' positions), whatever their other inputs (shapes, axes, indices,
#: a target type) say: a reshaping, selection, broadcast or type change of zeros is zeros
_ZERO_FLOW: dict[str, tuple[int, ...] | None] = {
    "Identity": (0,), "Cast": (0,), "Expand": (0,), "Tile": (0,), "Reshape": (0,),
    "Flatten": (0,), "Unsqueeze": (0,), "Squeeze": (0,), "Transpose": (0,), "Slice": (0,),
    "Gather": (0,), "Concat": None}
#: the operators of :data:`_ZERO_FLOW` that are not also shape arithmetic
_ZERO_ONLY = ("Expand", "Tile", "Flatten")


def _is_zero(st: _State, name: str, v: _Val) -> bool:
    """``v`` is all zeros: computed zeros, or a constant every element of which is 0."""
    if v.kind == "zeros":
        return True
    value = st.consts.get(name) if v.kind == "const" else None
    return value is not None and value.dtype.kind in "biuf" and not np.any(value)


def _zero_flow(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val] | None:
    """``[zeros]`` when ``node`` provably computes all zeros (see :data:`_ZERO_FLOW`): its data
    inputs are zeros (computed, or constants of zeros: for shape-arithmetic operators, at least
    one computed or floating-point, since an integer 0 there is a shape) and its other inputs
    are shape arithmetic; else ``None`` (the node's own handler decides)."""
    if node.op_type not in _ZERO_FLOW or len(node.output) != 1:
        return None
    at = _ZERO_FLOW[node.op_type]
    data = range(len(vals)) if at is None else at
    if not data or any(k >= len(vals) for k in data):
        return None
    if not all(_is_zero(st, node.input[k], vals[k]) for k in data):
        return None
    # a zero integer constant through shape arithmetic (Unsqueeze, Concat...) is a shape
    if node.op_type not in _ZERO_ONLY and not any(
            vals[k].kind == "zeros" or st.consts[node.input[k]].dtype.kind == "f" for k in data):
        return None
    if any(v.kind not in _SHAPE_KINDS for k, v in enumerate(vals) if k not in data):
        return None
    return [_Val("zeros")]


def _on_zeros_only(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    """Operators the network has only inside the computation of a zero initial state."""
    raise _refuse(node, f"{node.op_type} of {', '.join(_describe(v) for v in vals)}: the "
                        f"network has it only in computing an all-zero initial state")


def _on_identity(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    if vals[0].kind == "const":
        st.consts[node.output[0]] = st.consts[node.input[0]]
    return [vals[0]]


def _on_transpose(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    v, perm = vals[0], list(_attr(node, "perm", []))
    if v.kind in ("seq", "ids") and perm == [1, 0, 2][:len(perm)] and len(perm) in (2, 3):
        if v.tm is None:  # the graph's input, batch-major
            st.time_major = False
        return [replace(v, tm=not v.tm)]
    if v.kind == "Y" and not v.rev and perm == [0, 2, 1, 3]:
        return [replace(v, kind="YT")]
    if v.kind in ("statesNRM", "cstatesNRM", "h0") and perm == [1, 0, 2]:
        return [replace(v, kind=v.kind[:-3] if v.kind.endswith("NRM") else "h0NRM")]
    if v.kind in ("half", "head") and perm == [1, 0, 2]:
        return [replace(v, tm=not v.tm) if v.kind == "half" else v]
    raise _refuse(node, f"a transpose {perm} of {_describe(v)}")


def _describe(v: _Val) -> str:
    names = {"seq": "a sequence", "Y": "an RNN node's Y", "YT": "an RNN node's Y",
             "states": "final states", "state": "a final state", "vec": "the selection",
             "cstates": "final cell states", "cstate": "a final cell state",
             "head": "a head layer", "ids": "the token ids", "const": "a constant",
             "input": "a graph input", "shape": "a shape", "zeros": "zeros"}
    return names.get(v.kind, v.kind)


def _on_reshape(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    v = vals[0]
    shape = _const(st, node.input[1])
    if (v.kind == "YT" or (v.kind == "Y" and v.rev)) and shape is not None:
        cells = st.layers[v.layer][1]
        width = len(cells) * cells[0].hidden_size
        if list(shape[:2]) == [0, 0] and len(shape) == 3 and int(shape[2]) in (-1, width) \
                and not _attr(node, "allowzero", 0):
            return [_Val("seq", layer=v.layer, tm=not v.rev, merge="concat")]
    raise _refuse(node, f"a reshape of {_describe(v)}")


def _on_squeeze(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    v, axes = vals[0], _ints(st, node, 1, "axes")
    if v.kind == "Y" and axes == [2 if v.rev else 1] and len(st.layers[v.layer][1]) == 1:
        return [_Val("seq", layer=v.layer, tm=not v.rev, merge="concat")]
    if v.kind == "Yr" and axes == [2 if v.rev else 1]:
        return [_Val("half", layer=v.layer, tm=not v.rev, part=v.part)]
    if v.kind in ("states", "cstates") and axes == [0] and len(v.parts) == 1:
        return [_Val(v.kind[:-1], parts=v.parts)]
    plumbing = _plumbing(st, node, vals)
    if plumbing is not None:
        return plumbing
    raise _refuse(node, f"a squeeze {axes} of {_describe(v)}")


def _on_split(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    v = vals[0]
    split = _ints(st, node, 1, "split")
    axis = _attr(node, "axis", 0)
    if v.kind == "Y" and len(node.output) == 2 and axis == (2 if v.rev else 1) \
            and split in (None, [1, 1]) and len(st.layers[v.layer][1]) == 2:
        return [replace(v, kind="Yr", part=r) for r in (0, 1)]
    raise _refuse(node, f"a split of {_describe(v)}")


def _on_slice(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    v = vals[0]
    args = [_ints(st, node, i, "") for i in range(1, 5)]
    if v.kind == "h0" and args[2] == [0] and args[3] in (None, [1]) and args[0] and args[1]:
        return [replace(v, part=args[0][0], parts=((args[0][0], args[1][0]),))]
    t_axis = 0 if v.tm else 1
    if v.kind == "seq" and v.tm is not None and args == [[-1], [np.iinfo(np.int64).min],
                                                         [t_axis], [-1]] and not v.rev:
        return [replace(v, rev=True)]
    plumbing = _plumbing(st, node, vals)
    if plumbing is not None:
        return plumbing
    raise _refuse(node, f"a slice of {_describe(v)}")


def _on_gather(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    data, idx = vals[0], vals[1]
    axis = _attr(node, "axis", 0)
    if data.kind == "const" and idx.kind == "ids" and axis == 0 and st.embedding is None:
        table = st.consts[node.input[0]]
        if table.ndim == 2 and table.dtype.kind == "f":
            st.embedding = table
            return [_Val("seq", layer=-1, tm=idx.tm)]
    index = _const(st, node.input[1]) if idx.kind == "const" else None
    if index is not None and index.ndim == 0:
        i = int(index)
        if data.kind in ("states", "cstates") and axis == 0 and \
                -len(data.parts) <= i < len(data.parts):
            return [_Val(data.kind[:-1], parts=(data.parts[i],))]
        if data.kind == "seq" and data.tm is not None and axis == (0 if data.tm else 1) \
                and i == -1 and data.layer == len(st.layers) - 1:
            _merged_use(st, node, data)
            return [_Val("vec", merge="last_step:processing" if data.rev else "last_step")]
    plumbing = _plumbing(st, node, vals)
    if plumbing is not None:
        return plumbing
    raise _refuse(node, f"a gather of {_describe(data)}")


def _merged_use(st: _State, node: onnx.NodeProto, v: _Val) -> None:
    """Record how layer ``v.layer``'s directions were merged where they are used."""
    if v.layer < 0:
        return
    mode: str | None = v.merge or None
    if st.merges.setdefault(v.layer, mode) != mode:
        raise _refuse(node, f"layer {v.layer}'s outputs merged both as "
                            f"{st.merges[v.layer]!r} and {mode!r}")


def _pair_merge(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val] | None:
    """Add / Mul / Concat of a layer's two directions: a merge of its outputs (halves) or of
    the last layer's final states (a ``final`` selection)."""
    a, b = vals[0], vals[1] if len(vals) > 1 else _Val("none")
    mode = {"Add": "sum", "Mul": "mul", "Concat": "concat"}[node.op_type]
    if len(vals) != 2:
        return None
    if a.kind == b.kind == "half" and a.layer == b.layer and (a.part, b.part) == (0, 1) \
            and a.tm == b.tm:
        if mode == "concat" and _attr(node, "axis") not in (-1, 2):
            return None
        return [_Val("seq", layer=a.layer, tm=a.tm, merge=mode)]
    last = len(st.layers) - 1
    if a.kind == b.kind == "state" and a.parts == ((last, 0),) and b.parts == ((last, 1),):
        if mode == "concat" and _attr(node, "axis") not in (-1, 1):
            return None
        st.merges.setdefault(last, mode)
        return [_Val("vec", merge=f"final:{mode}")]
    return None


def _on_add_mul(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    if node.op_type == "Add" and sorted(v.kind for v in vals) == ["count", "cumpad"]:
        return [_Val("padrank")]
    merged = _pair_merge(st, node, vals)
    if merged is not None:
        return merged
    head = [v for v in vals if v.kind == "head"]
    if len(head) == 1 and len(vals) == 2:
        other = node.input[1] if vals[0].kind == "head" else node.input[0]
        value = _const(st, other)
        if value is not None:
            return [_head_step(st, node, head[0], value)]
    raise _refuse(node, f"{node.op_type} of {', '.join(_describe(v) for v in vals)}")


def _on_div(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    v = vals[0]
    if v.kind == "seqsum" and [x.kind for x in vals[1:]] == ["count"]:
        return [_Val("vec", merge="mean_valid")]
    two = _const(st, node.input[1])
    if two is not None and two.size == 1 and float(two.ravel()[0]) == 2.0:
        if v.kind == "seq" and v.merge == "sum" and v.layer >= 0:
            return [replace(v, merge="ave")]
        if v.kind == "vec" and v.merge == "final:sum":
            st.merges[len(st.layers) - 1] = "ave"
            return [replace(v, merge="final:ave")]
    raise _refuse(node, f"a division of {_describe(v)}")


def _on_concat(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    if vals and vals[0].kind in ("states", "cstates") and \
            all(v.kind == vals[0].kind for v in vals) and _attr(node, "axis") == 0:
        return [_Val(vals[0].kind, parts=tuple(p for v in vals for p in v.parts))]
    merged = _pair_merge(st, node, vals)
    if merged is not None:
        return merged
    plumbing = _plumbing(st, node, vals)
    if plumbing is not None:
        return plumbing
    raise _refuse(node, f"a concatenation of {', '.join(_describe(v) for v in vals)}")


# ---- the head ----------------------------------------------------------------------------
def _head_input(st: _State, node: onnx.NodeProto, v: _Val) -> tuple[str, bool]:
    """The selection the first head layer reads, and whether it applies per step."""
    last = len(st.layers) - 1
    if v.kind == "seq" and v.layer == last and v.layer >= 0:
        _merged_use(st, node, v)
        return ("sequence:processing" if v.rev else "sequence"), True
    if v.kind == "vec":
        return v.merge, False
    if v.kind == "state" and v.parts[0][0] == last:
        r, nd = v.parts[0][1], len(st.layers[last][1])
        return ("final" if nd == 1 else ("final_forward", "final_backward")[r]), False
    raise _refuse(node, f"a product of {_describe(v)}")


def _finish_head(st: _State, node: onnx.NodeProto | None, v: _Val) -> None:
    """Close head layer ``v`` (``(j, w, b, ops, per_step)``): its ops make one activation."""
    j, w, b, ops, _ = v.head
    if len(st.heads) != j:
        raise _Refused(f"head layer {j} (used twice or out of order)")
    st.heads.append((w, b, _activation_of(ops, node)))


def _activation_of(ops: tuple[Any, ...], node: onnx.NodeProto | None) -> HeadActivation:
    """The activation a head layer's ops after its product make."""
    kinds = tuple(op[0] for op in ops)
    if kinds == ():
        return Activation("linear")
    if kinds == ("softmax",) or kinds == ("log_softmax",):
        return Softmax(kinds[0])
    if len(ops) == 1 and kinds[0] in ACTIVATIONS:
        return Activation(kinds[0], ops[0][1], ops[0][2])
    if kinds == ("mul", "add"):
        return Activation("affine", ops[0][1], ops[1][1])
    if kinds == ("mul", "tanh", "mul"):
        return Activation("scaled_tanh", ops[2][1], ops[0][1])
    raise _Refused(f"the ops {list(kinds)} after a head layer's product (not one activation"
                   + ("" if node is None else f", at {_where(node)}") + ")")


def _head_step(st: _State, node: onnx.NodeProto, v: _Val, value: np.ndarray[Any, Any]) -> _Val:
    """``v`` after an Add or Mul with the constant ``value``: its bias, or part of an
    activation (affine, scaled_tanh: a scalar)."""
    j, w, b, ops, per_step = v.head
    if node.op_type == "Add" and b is None and not ops and value.shape == (w.shape[1],):
        return replace(v, head=(j, w, value, ops, per_step))
    if value.size == 1 and value.ndim <= 1:
        op = ("add" if node.op_type == "Add" else "mul", _float(value))
        return replace(v, head=(j, w, b, (*ops, op), per_step))
    raise _refuse(node, f"a {node.op_type} with a constant of shape {list(value.shape)} in a "
                        f"head layer")


def _start_head(st: _State, node: onnx.NodeProto, v: _Val, w: np.ndarray[Any, Any],
                b: np.ndarray[Any, Any] | None) -> _Val:
    if v.kind == "head":
        _finish_head(st, node, v)
        j, per_step = v.head[0] + 1, v.head[4]
    else:
        select, per_step = _head_input(st, node, v)
        st.merges.setdefault(-1, select)  # -1: what the head reads
        j = 0
    return _Val("head", head=(j, w, b, (), per_step))


def _on_matmul(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    w = _const(st, node.input[1])
    if w is None or w.ndim != 2 or w.dtype.kind != "f":
        raise _refuse(node, "a product whose right side is not a constant matrix")
    return [_start_head(st, node, vals[0], w, None)]


def _on_gemm(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    w = _const(st, node.input[1])
    b = _const(st, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if w is None or w.ndim != 2 or _attr(node, "transA", 0) or \
            _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0:
        raise _refuse(node, "a Gemm that is not x @ W (+ b) with constant W, b")
    w = w.T if _attr(node, "transB", 0) else w
    if b is not None:
        b = b.reshape(-1) if b.shape in ((1, w.shape[1]), (w.shape[1],)) else None
        if b is None:
            raise _refuse(node, "a Gemm whose bias is not one value per unit")
    if vals[0].kind == "head" or vals[0].kind in ("vec", "state"):
        return [_start_head(st, node, vals[0], w, b)]
    raise _refuse(node, f"a product of {_describe(vals[0])}")


def _on_activation(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    v = vals[0]
    if v.kind != "head":
        raise _refuse(node, f"an activation of {_describe(v)}")
    if node.op_type in ("Softmax", "LogSoftmax"):
        axis = _attr(node, "axis", -1 if st.opset >= 13 else 1)
        rank = 3 if v.head[4] else 2
        if axis not in (-1, rank - 1):
            raise _refuse(node, f"a {node.op_type} over axis {axis}, not the last axis")
        op: tuple[Any, ...] = ("softmax" if node.op_type == "Softmax" else "log_softmax",)
    else:
        name = _OP_ACTS[node.op_type]
        alpha, beta = _OP_DEFAULTS.get(name, (None, None))
        op = (name, _float32_attr(node, "alpha", alpha), _float32_attr(node, "beta", beta))
        if name == "tanh" and v.head[3] and v.head[3][-1][0] == "mul":
            op = ("tanh",)
    return [replace(v, head=(*v.head[:3], (*v.head[3], op), v.head[4]))]


def _float32_attr(node: onnx.NodeProto, name: str, default: float | None) -> float | None:
    """A float attribute (float32 in the file) as :func:`_float` reads it, else ``default``."""
    value = _attr(node, name)
    return default if value is None or default is None else _float(np.float32(value))


# ---- the mask_zero lengths -----------------------------------------------------------------
def _on_mask(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    """Equal(ids, 0) -> Not -> Cast -> ReduceSum over time: the lengths mask_zero says."""
    v = vals[0]
    op = node.op_type
    if op == "Equal" and v.kind == "ids":
        zero = _const(st, node.input[1])
        if zero is not None and zero.size == 1 and int(zero.ravel()[0]) == 0:
            return [_Val("idzero", tm=v.tm, compact=v.compact)]
    if op == "Not" and v.kind == "idzero":
        return [_Val("idmask", tm=v.tm, compact=v.compact)]
    if op == "Cast" and v.kind in ("lens", "idlens") and (v.kind == "lens" or v.compact) and \
            _attr(node, "to") in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
        st.pool_lens.add(v.name or v.kind)
        return [_Val("lensf")]
    if op == "Cast" and v.kind == "idzero" and not v.compact and v.tm is None and \
            _attr(node, "to") == TensorProto.INT64:
        return [_Val("idpad")]
    if op == "Cast" and v.kind in ("idmask", "idlens") and \
            _attr(node, "to") in (TensorProto.INT32, TensorProto.INT64):
        return [v]
    tm = st.time_major if v.tm is None else v.tm
    if op == "ReduceSum" and v.kind == "idmask" and tm is not None \
            and _ints(st, node, 1, "axes") == [0 if tm else 1] \
            and _attr(node, "keepdims", 1) == 0:
        return [_Val("idlens", compact=v.compact)]
    if op == "ReduceSum" and v.kind == "idmask" and not v.compact and v.tm is None \
            and _ints(st, node, 1, "axes") == [1] and _attr(node, "keepdims", 1) == 1:
        return [_Val("count")]
    plumbing = _plumbing(st, node, vals)
    if plumbing is not None:
        return plumbing
    raise _refuse(node, f"{op} of {_describe(v)}")


# ---- pooling over time (graph._pool) ---------------------------------------------------
def _on_pool(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    """``ReduceMean`` / ``ReduceMax`` over the time axis of the last layer's merged outputs
    (``mean_all`` / ``max_all``); ``ReduceSum`` there, divided by ``Unsqueeze(Max(Cast(the
    lengths), 1), 1)`` (``mean_valid``); the lengths' ``Cast`` to a float, ``Max`` with 1 and
    ``Unsqueeze`` on axis 1 on the way."""
    op, v = node.op_type, vals[0]
    if v.kind == "seq" and v.layer == len(st.layers) - 1 and v.tm is not None:
        axes = _ints(st, node, 1, "axes")
        if axes == [0 if v.tm else 1] and _attr(node, "keepdims", 1) == 0:
            _merged_use(st, node, v)
            if op == "ReduceSum" and not v.rev:
                return [_Val("seqsum")]
            # the order of the steps does not change a mean or a maximum over all of them
            how = "mean_all" if op == "ReduceMean" else "max_all"
            return [_Val("vec", merge=f"{how}:processing" if v.rev else how)]
    one = _const(st, node.input[1]) if op == "Max" and len(vals) == 2 else None
    if v.kind == "lensf" and one is not None and np.array_equal(one, np.array(1)):
        return [_Val("lensf1")]
    if op == "Unsqueeze" and v.kind == "lensf1" and _ints(st, node, 1, "axes") == [1]:
        return [_Val("count")]
    if op == "ReduceSum":
        return _on_mask(st, node, vals)
    if op == "Unsqueeze":
        return _plumbing(st, node, vals) or _fail(node, vals)
    raise _refuse(node, f"{op} of {', '.join(_describe(v) for v in vals)}")


# ---- mask_zero: the compacted ids (graph._compacted_ids) --------------------------------
def _on_compact(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    """The compaction of the graph's batch-major ids (``graph._compacted_ids``): the
    ranks ``CumSum(1 - z)`` and ``CumSum(z)`` (z = [id == 0]) along time, the destination
    ``Where(z, cumsum(z) + count, cumsum(1 - z)) - 1``, and ``ScatterElements(ids, dest,
    ids, axis=1)``: each sample's non-zero ids moved to the front in their order, which is
    what Keras steps through. Anything else of these operators is refused."""
    op, kinds = node.op_type, [v.kind for v in vals]
    one_axis = op == "CumSum" and len(vals) == 2 and _ints(st, node, 1, "") == [1] and \
        not _attr(node, "exclusive", 0) and not _attr(node, "reverse", 0)
    if one_axis and vals[0].kind == "idmask" and not vals[0].compact and vals[0].tm is None:
        return [_Val("cumvalid")]
    if one_axis and vals[0].kind == "idpad":
        return [_Val("cumpad")]
    if op == "Where" and kinds == ["idzero", "padrank", "cumvalid"] and not vals[0].compact \
            and vals[0].tm is None:
        return [_Val("rank")]
    one = _const(st, node.input[1]) if op == "Sub" and len(vals) == 2 else None
    if kinds == ["rank", "const"] and one is not None and np.array_equal(one, np.array(1)):
        return [_Val("dest")]
    if op == "ScatterElements" and kinds == ["ids", "dest", "ids"] and \
            node.input[0] == node.input[2] and vals[0].tm is None and not vals[0].compact \
            and _attr(node, "axis", 0) in (1, -1) and _attr(node, "reduction", "none") == "none" \
            and st.time_major is not True:
        st.compacted, st.time_major = True, False  # the graph's ids are batch-major
        return [replace(vals[0], compact=True)]
    raise _refuse(node, f"{op} of {', '.join(_describe(v) for v in vals)}")


# ---- the RNN nodes -------------------------------------------------------------------------
def _check_x(st: _State, node: onnx.NodeProto, li: int, x: _Val, layout: int) -> None:
    """Layer ``li``'s ``X`` must be the network's input (layer 0) or the layer below's merged
    outputs, in the node's layout."""
    if x.kind != "seq" or x.rev or x.layer != li - 1:
        what = "the network's input" if li == 0 else f"layer {li - 1}'s merged outputs"
        raise _refuse(node, f"its X is {_describe(x)}, not {what}")
    _merged_use(st, node, x)
    if x.tm is None:  # the graph's input straight into the node
        st.time_major = layout == 0
    elif x.tm != (layout == 0):
        raise _refuse(node, f"its X is {'time' if x.tm else 'batch'}-major but its layout is "
                            f"{layout}")


def _check_state_inputs(st: _State, node: onnx.NodeProto, vals: list[_Val], rn: RnnNode
                        ) -> None:
    """``sequence_lens``: absent, the graph's lengths or the lengths ``mask_zero`` derives;
    ``initial_h`` (and an LSTM's ``initial_c``): absent, zeros, or the graph's initial states
    for this layer's directions (``initial_h`` indexed as ``h0``, ``initial_c`` as the cell
    states ``c0``: only LSTM layers have one); one graph input is never both."""
    lens = vals[4] if len(vals) > 4 else _Val("none")
    if lens.kind not in ("none", "lens", "idlens"):
        raise _refuse(node, f"its sequence_lens is {_describe(lens)}, not the lengths input "
                            f"or the ids' lengths")
    if lens.kind == "idlens" and not lens.compact:
        raise _refuse(node, "its sequence_lens counts the non-zero ids of ids that were not "
                            "compacted: that is Keras' mask only when the zeros trail (rnn-ref "
                            "wrote such graphs before it compacted the ids); convert the "
                            "source model again")
    if st.compacted and lens.kind != "idlens":
        raise _refuse(node, f"its sequence_lens is {_describe(lens)}, but the ids were "
                            f"compacted: only the count of non-zero ids steps through them")
    st.lens.add(lens.kind)
    st.lens_names.add(lens.name or lens.kind)
    nd = rn.num_directions
    starts = {"initial_h": sum(len(cells) for _, cells, _ in st.layers),
              "initial_c": sum(len(cells) for r, cells, _ in st.layers if r.cell == "lstm")}
    for k, what in ((5, "initial_h"), (6, "initial_c")):
        v = vals[k] if len(vals) > k else _Val("none")
        start = starts[what]
        if v.kind in ("none", "zeros") or (v.kind == "const" and
                                           not np.any(st.consts[node.input[k]])):
            continue
        want = "h0NRM" if rn.layout else "h0"
        if v.kind == want and v.parts in ((), ((start, start + nd),)):
            if st.state_inputs.setdefault(v.name, what) != what:
                raise _refuse(node, f"its {what} is the graph input {v.name!r}, which is "
                                    f"also an {st.state_inputs[v.name]}")
            continue
        states = "states" if what == "initial_h" else "cell states"
        raise _refuse(node, f"its {what} is {_describe(v)}, not zeros or the graph's "
                            f"initial {states[:-1]} for {states} {start}..{start + nd - 1}")


def _on_rnn(st: _State, node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    """An ``RNN``, ``GRU`` or ``LSTM`` node: a layer. Its weights (``W``, ``R``, ``B``, an
    LSTM's ``P``) must be constants; its outputs are the layer's ``Y``, its final states
    ``Y_h`` and an LSTM's final cell states ``Y_c``."""
    li = len(st.layers)
    rn = read_node(node, st.opset, missing_parameters=st.missing)
    _check_x(st, node, li, vals[0], rn.layout)
    names = {k: rn.inputs[k] for k in ("W", "R", "B", "P") if k in rn.inputs}
    weights = {k: _const(st, name) if name else None for k, name in names.items()}
    for what, w in weights.items():
        v = st.vals[names[what]] if names[what] else _Val("none")
        if w is None and v.kind != "none":
            raise _refuse(node, f"its {what} is {_describe(v)}, not a constant")
    cells = node_cells(rn, weights["W"], weights["R"], weights["B"], weights.get("P"))
    _check_state_inputs(st, node, vals, rn)
    st.layers.append((rn, cells, weights["B"] is not None))
    parts = tuple((li, r) for r in range(rn.num_directions))
    nrm = "NRM" if rn.layout else ""
    out = [_Val("Y", layer=li, rev=rn.layout == 1), _Val(f"states{nrm}", parts=parts),
           _Val(f"cstates{nrm}", parts=parts)]
    return out[:len(node.output)]


_HANDLERS: dict[str, Callable[[_State, onnx.NodeProto, list[_Val]], list[_Val]]] = {
    "Constant": _on_constant, "Shape": _on_shape, "ConstantOfShape": _on_constant_of_shape,
    "Identity": _on_identity, "Transpose": _on_transpose, "Reshape": _on_reshape,
    "Squeeze": _on_squeeze, "Split": _on_split, "Slice": _on_slice, "Gather": _on_gather,
    "Add": _on_add_mul, "Mul": _on_add_mul, "Div": _on_div, "Concat": _on_concat,
    "MatMul": _on_matmul, "Gemm": _on_gemm, "RNN": _on_rnn, "GRU": _on_rnn, "LSTM": _on_rnn,
    "Softmax": _on_activation, "LogSoftmax": _on_activation,
    **{op: _on_activation for op in _OP_ACTS},
    "Equal": _on_mask, "Not": _on_mask, "Cast": _on_mask, "ReduceSum": _on_pool,
    "ReduceMean": _on_pool, "ReduceMax": _on_pool, "Max": _on_pool, "Unsqueeze": _on_pool,
    "CumSum": _on_compact, "Where": _on_compact, "Sub": _on_compact,
    "ScatterElements": _on_compact,
    **{op: _on_zeros_only for op in _ZERO_ONLY},
}


def _fail(node: onnx.NodeProto, vals: list[_Val]) -> list[_Val]:
    raise _refuse(node, f"{node.op_type} of {', '.join(_describe(v) for v in vals)}")


def _graph_inputs(st: _State, m: onnx.ModelProto) -> list[str]:
    """Give each graph input its role: the first is ``x`` (token ids or features), then int
    lengths, then initial states."""
    initializers = {t.name for t in m.graph.initializer}
    names = []
    ints = (TensorProto.INT32, TensorProto.INT64)
    for k, vi in enumerate(i for i in m.graph.input if i.name not in initializers):
        t = vi.type.tensor_type
        rank = len(t.shape.dim) if t.HasField("shape") else -1
        if k == 0 and t.elem_type in ints and rank in (2, -1):
            val = _Val("ids")
        elif k == 0 and rank in (3, -1):
            val = _Val("seq", layer=-1)
        elif t.elem_type in ints and rank in (1, -1):
            val = _Val("lens", name=vi.name)
        elif rank in (3, -1) and t.elem_type not in ints:
            val = _Val("h0", name=vi.name)
        else:
            raise _Refused(f"graph input {vi.name!r} (rank {rank}: not the network's input, "
                           f"lengths or initial state)")
        st.vals[vi.name] = val
        names.append(vi.name)
    for name in initializers:
        st.vals[name] = _Val("const")
    return names


def _interpret(st: _State, m: onnx.ModelProto) -> None:
    for node in m.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise _refuse(node, f"an operator of domain {node.domain!r}")
        handler = _HANDLERS.get(node.op_type)
        if handler is None:
            raise _refuse(node, "an operator the network has no place for")
        vals = _in(st, node) if node.op_type != "Constant" else []
        outs = _zero_flow(st, node, vals) or handler(st, node, vals)
        for name, val in zip(node.output, outs, strict=False):
            if name:
                st.vals[name] = val
    _check_zeros_used(st, m)


def _check_zeros_used(st: _State, m: onnx.ModelProto) -> None:
    """Shape arithmetic and zeros are part of the network only as the computation of a zero
    initial state: a node whose results are shapes or zeros that no node and no graph output
    takes computes nothing the network has (the handlers refuse them anywhere but in
    zero-producers and ``initial_h``)."""
    taken = {name for node in m.graph.node for name in node.input}
    taken |= {o.name for o in m.graph.output}
    for node in m.graph.node:
        outs = [name for name in node.output if name]
        if outs and node.op_type != "Constant" and \
                all(st.vals.get(name, _Val("none")).kind in ("shape", "zeros") for name in outs) \
                and \
                not any(name in taken for name in outs):
            raise _refuse(node, f"{_describe(st.vals[outs[0]])} that nothing uses")


# ---- the graph's outputs and the network they make -----------------------------------------
def _output_level(st: _State, v: _Val) -> int:
    """3 the head, 2 a selection, 1 the last layer's sequence, 0 final states (and cell
    states); -1 none."""
    last = len(st.layers) - 1
    if v.kind == "head":
        return 3
    if v.kind == "vec" or (v.kind == "state" and v.parts[0][0] == last):
        return 2
    if v.kind in ("seq", "half", "Y", "YT") and v.layer == last:
        return 1  # Y: a bare node's output, its directions side by side
    return 0 if v.kind in ("states", "state", "statesNRM", "cstates", "cstate",
                           "cstatesNRM") else -1


def _result(st: _State, m: onnx.ModelProto) -> str:
    """The selection the graph's result says (``"sequence"``, ``"final"``, ...), after
    checking every output is part of the network; records the head and merge modes."""
    vals = []
    for o in m.graph.output:
        if o.name not in st.vals or _output_level(st, st.vals[o.name]) < 0:
            raise _Refused(f"graph output {o.name!r} (not a value of the network)")
        vals.append(st.vals[o.name])
    top = max(_output_level(st, v) for v in vals)
    result = [v for v in vals if _output_level(st, v) == top]
    last = len(st.layers) - 1
    if top == 3:
        if len(result) != 1:
            raise _Refused("two head outputs")
        _finish_head(st, None, result[0])
        return str(st.merges[-1])
    if top == 2:
        vecs = [v for v in result if v.kind == "vec"]
        if vecs:
            return vecs[0].merge
        if len(result) == 2 and len(st.layers[last][1]) == 2:
            st.merges[last] = None
            return "final"
        return _head_input(st, m.graph.node[-1], result[0])[0]
    if top == 1:
        if [v.kind for v in result] == ["half", "half"]:
            st.merges[last] = None
        elif result[0].kind == "seq":
            _merged_use(st, m.graph.node[-1], result[0])
        return "sequence:processing" if result[0].kind == "seq" and result[0].rev \
            else "sequence"
    return "sequence"  # only final states: the stack itself


def _metadata(m: onnx.ModelProto) -> dict[str, Any]:
    meta = {p.key: p.value for p in m.metadata_props}
    if "rnn_ref.config" not in meta:
        return {}
    try:
        data = json.loads(meta["rnn_ref.config"])
    except ValueError:
        raise ValueError("the graph's metadata rnn_ref.config is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the graph's metadata rnn_ref.config is not a mapping")
    return data


def _merge_modes(st: _State, meta: Mapping[str, Any]) -> list[str | None]:
    """Each layer's merge mode: how its outputs were merged where used; for a last layer whose
    merged outputs are not used, the metadata's (else concat)."""
    last = len(st.layers) - 1
    meta_modes = meta.get("merge_mode", "concat")
    meta_last = meta_modes[-1] if isinstance(meta_modes, list) else meta_modes
    modes: list[str | None] = []
    for li, (rn, _, _) in enumerate(st.layers):
        if rn.num_directions == 1:
            modes.append("concat")
        elif li in st.merges:
            mode = st.merges[li]
            modes.append(mode.split(":")[-1] if isinstance(mode, str) else None)
        else:
            modes.append(meta_last if li == last else "concat")
    return modes


def _refined_activations(st: _State, meta: Mapping[str, Any]
                         ) -> list[list[tuple[Activation, ...]]]:
    """Each layer's activations per direction, in ONNX's order (``(f,)``, ``(f, g)``,
    ``(f, g, h)``); where the metadata's activation is the same function with parameters that
    round to the node's float32 attributes (``1/6`` for ``0.16666667``), the metadata's exact
    parameters. The node decides the function; the metadata only restores precision the
    float32 attribute could not hold (for a metadata whose layers are the nodes' cells and
    directions)."""
    nodes = [rn for rn, _, _ in st.layers]
    acts = [[rn.activations_of(r) for r in range(rn.num_directions)] for rn in nodes]
    try:
        written = RNNConfig.from_dict({**meta, "head": []}) if meta else None
    except (TypeError, ValueError):
        written = None
    if written is None or written.num_layers != len(nodes) or any(
            written.cell_of(li).kind != rn.cell
            or written.num_directions_of(li) != rn.num_directions
            for li, rn in enumerate(nodes)):
        return acts

    def same(a: Activation, b: Activation) -> bool:
        return a.name == b.name and all(
            (x is None and y is None) or (x is not None and y is not None
                                          and np.float32(x) == np.float32(y))
            for x, y in ((a.alpha, b.alpha), (a.beta, b.beta)))

    return [[tuple(w if same(n, w) else n
                   for n, w in zip(direction, written.activations_of(li, r), strict=True))
             for r, direction in enumerate(layer)] for li, layer in enumerate(acts)]


def _cell_config(st: _State, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The layers' cells, switches and activations as :class:`RNNConfig` fields: only
    ``activation`` for a stack of ``RNN`` nodes, else one value per layer (``None`` at a
    layer whose cell lacks the field); activations refined by the metadata
    (:func:`_refined_activations`)."""
    nodes = [rn for rn, _, _ in st.layers]
    acts = _refined_activations(st, meta)
    if all(rn.cell == "elman" for rn in nodes):
        return {"activation": [[a[0] for a in layer] for layer in acts]}
    per_layer = [cell_fields(rn, cells, acts[li]) for li, (rn, cells, _) in enumerate(st.layers)]
    names = ("cell", "activation", "recurrent_activation", "cell_activation", "reset_after",
             "peepholes", "input_forget")
    out = {name: [fields.get(name, "elman" if name == "cell" else None)
                  for fields in per_layer] for name in names}
    return {name: values for name, values in out.items() if any(v is not None for v in values)}


def _config(st: _State, select: str, meta: Mapping[str, Any]) -> RNNConfig:
    nodes = [rn for rn, _, _ in st.layers]
    if len({b for _, _, b in st.layers}) != 1:
        raise UnsupportedError(WHO, "some RNN layers with a bias and some without")
    if len(st.lens) != 1:
        raise UnsupportedError(WHO, "RNN nodes with different sequence_lens",
                               "every layer reads the same lengths")
    sel = select.split(":")[0]
    if st.pool_lens and st.pool_lens != st.lens_names:
        raise UnsupportedError(WHO, "a mean over time divided by other lengths than the RNN "
                                    "nodes' sequence_lens", "the mean is over the valid steps")
    if sel == "mean_all" and st.lens == {"none"} and meta.get("select") == "mean_valid":
        sel = "mean_valid"  # equal without padding: the metadata says which
    seen = sel in SHOWS_PADDED_STEPS and st.lens != {"none"}
    if st.compacted and sel in SHOWS_PADDED_STEPS:
        raise UnsupportedError(WHO, f"per-step outputs (select={sel!r}) of compacted ids",
                               "they are in the compacted order, which no framework returns")
    head = [Dense(w.shape[1], act, b is not None) for w, b, act in st.heads]
    return RNNConfig(
        input_size=input_size_of(st.layers[0][1][0]),
        hidden_size=[cells[0].hidden_size for _, cells, _ in st.layers],
        direction=[rn.direction for rn in nodes],
        **_cell_config(st, meta),
        clip=[rn.clip for rn in nodes],
        bias=st.layers[0][2], merge_mode=_merge_modes(st, meta),
        padded_output="zeros" if seen else meta.get("padded_output", "zeros"),
        output_order="processing" if select.endswith(":processing") else
        meta.get("output_order", "aligned")
        if sel.startswith("final") and nodes[-1].direction == "reverse" else "aligned",
        vocab_size=None if st.embedding is None else st.embedding.shape[0],
        mask_zero=st.lens == {"idlens"},
        padding_idx=meta.get("padding_idx") if st.embedding is not None else None,
        select=sel, head=head,
        identities=[Identity.parse(i, "metadata identities") for i in
                    meta.get("identities", [])],
    )


def read_network(model: onnx.ModelProto, opset: int, *, missing_parameters: str = "raise"
                 ) -> RNNParams:
    """The network one ONNX graph computes, every node, initializer and input accounted for.

    Raises:
        UnsupportedError: a node, input, initializer or output that is not part of the
            network (named), or a graph with no RNN node (:data:`UNROLLED`).
        ValueError: an RNN node the spec forbids.
    """
    st = _State(consts={t.name: numpy_helper.to_array(t) for t in model.graph.initializer},
                opset=opset, missing=missing_parameters)
    try:
        inputs = _graph_inputs(st, model)
        _interpret(st, model)
        if not st.layers:
            raise UnsupportedError(WHO, "an ONNX graph with no RNN node", UNROLLED)
        select = _result(st, model)
    except _Refused as exc:
        raise UnsupportedError(WHO, str(exc), _WHY) from None
    unused = [n for n in [*inputs, *(t.name for t in model.graph.initializer)]
              if n not in st.used]
    if unused:
        raise UnsupportedError(WHO, f"graph input or initializer {unused[0]!r}",
                               "the network does not use it")
    config = _config(st, select, _metadata(model))
    heads = [Readout(w, b if b is not None else np.zeros(w.shape[1], w.dtype))
             for w, b, _ in st.heads]
    return RNNParams(config, [cells for _, cells, _ in st.layers], embedding=st.embedding,
                     head=heads)
