"""One ONNX recurrent node: the activation names, the graph builder both writers use, and an
``RNN``, ``GRU`` or ``LSTM`` node read, checked and computed as the ONNX spec defines it (every
opset version: RNN-1, -7, -14, -22; GRU-1, -3, -7, -14, -22; LSTM-1, -7, -14, -22).

The writer (:mod:`rnn_ref.backends.onnx.graph`), the reader
(:mod:`rnn_ref.backends.onnx.reader`) and the converters (:mod:`rnn_ref.backends.onnx.convert`)
all import it; it imports none of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rnn_ref.activations import ACTIVATIONS, Activation
from rnn_ref.cells import GATES, unpack
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import AnyCellParams, CellParams, GRUParams, LSTMParams, RNNParams
from rnn_ref.reference import forward

__all__ = ["ONNX_NAMES", "RECURRENT_OPS", "GraphBuilder", "RnnNode", "cell_fields",
           "input_size_of", "node_cells", "node_config", "opset_of", "read_node", "run_node"]

#: activation name -> its ONNX RNN name (shared by the whole-network writer, graph.py)
ONNX_NAMES = {
    "tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid", "affine": "Affine",
    "leaky_relu": "LeakyRelu", "thresholded_relu": "ThresholdedRelu",
    "scaled_tanh": "ScaledTanh", "hard_sigmoid": "HardSigmoid", "elu": "Elu",
    "softsign": "Softsign", "softplus": "Softplus",
}
_FROM_ONNX = {v.lower(): k for k, v in ONNX_NAMES.items()}
#: Defaults when a graph leaves a parameter out, by source.
_DEFAULTS: dict[str, dict[str, tuple[float | None, float | None]]] = {
    "onnx": {"leaky_relu": (0.01, None), "thresholded_relu": (1.0, None),
             "hard_sigmoid": (0.2, 0.5), "elu": (1.0, None), "affine": (1.0, 0.0)},
    "onnxruntime": {"leaky_relu": (0.01, None), "thresholded_relu": (0.0, None),
                    "hard_sigmoid": (0.2, 0.5), "elu": (1.0, None), "affine": (0.0, 0.0),
                    "scaled_tanh": (0.0, 0.0)},
}


class GraphBuilder:
    """A small builder that names nodes and values uniquely."""

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.dtype = dtype
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, name: str, value: np.ndarray[Any, Any]) -> str:
        value = np.asarray(value)  # np.ascontiguousarray would make a 0-d index 1-d
        self.initializers.append(numpy_helper.from_array(
            value if value.flags.c_contiguous else value.copy(), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], n_out: int = 1, **attrs: Any) -> list[str]:
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.name(op_type),
                                           **attrs))
        return outs

    def op1(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        return self.op(op_type, inputs, 1, **attrs)[0]

    def activation(self, x: str, act: Activation) -> str:
        """Apply a standalone activation (the readout's g) with ONNX ops."""
        scalar = np.dtype(self.dtype).type
        n = act.name
        if n == "linear":
            return x
        if n == "affine":
            y = self.op1("Mul", [x, self.const(self.name("alpha"), scalar(act.alpha))])
            return self.op1("Add", [y, self.const(self.name("beta"), scalar(act.beta))])
        if n == "scaled_tanh":
            y = self.op1("Mul", [x, self.const(self.name("beta"), scalar(act.beta))])
            y = self.op1("Tanh", [y])
            return self.op1("Mul", [y, self.const(self.name("alpha"), scalar(act.alpha))])
        attrs: dict[str, float] = {}
        if act.alpha is not None:
            attrs["alpha"] = act.alpha
        if act.beta is not None:
            attrs["beta"] = act.beta
        return self.op1(ONNX_NAMES[n], [x], **attrs)


# --------------------------------------------------------------------------------------------
# one RNN, GRU or LSTM node, read as the ONNX spec defines it (every opset version)
# --------------------------------------------------------------------------------------------
#: The ONNX operators of a recurrent layer.
RECURRENT_OPS = ("RNN", "GRU", "LSTM")


@dataclass(frozen=True)
class _Op:
    """What one recurrent operator has (ONNX ``Operators.md``)."""

    cell: str  # the rnn_ref cell
    order: str | None  # the packed gate order of W, R, B (rnn_ref.cells.GATE_ORDERS)
    defaults: tuple[str, ...]  # the activations of one direction when the node lists none
    roles: str  # what the activations of one direction are, for messages
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


_RNN_INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h")
_OPS = {
    "RNN": _Op("elman", None, ("Tanh",), "f", _RNN_INPUTS, ("Y", "Y_h")),
    "GRU": _Op("gru", "gru:onnx", ("Sigmoid", "Tanh"), "f, g", _RNN_INPUTS, ("Y", "Y_h")),
    "LSTM": _Op("lstm", "lstm:onnx", ("Sigmoid", "Tanh", "Tanh"), "f, g, h",
                (*_RNN_INPUTS, "initial_c", "P"), ("Y", "Y_h", "Y_c")),
}
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}
_COUNTS = {1: "one", 2: "two", 3: "three"}


@dataclass(frozen=True)
class RnnNode:
    """One ``RNN``, ``GRU`` or ``LSTM`` node with the spec's defaults applied and every rule
    checked.

    ``activations`` lists the node's functions as ONNX orders them: per direction, its ``f``
    (RNN), ``f, g`` (GRU) or ``f, g, h`` (LSTM); :meth:`activations_of` gives one direction's.
    ``inputs`` maps each input of the operator (``X, W, R, B, sequence_lens, initial_h``, and
    ``initial_c, P`` for an LSTM) to its value name, ``""`` where the node leaves it out (absent
    or empty-named, the two ways the spec allows). ``outputs`` holds the names of ``Y``,
    ``Y_h`` (and ``Y_c``), ``""`` for one that is skipped. ``linear_before_reset`` (GRU-3 and
    later) and ``input_forget`` (LSTM) are 0 for the other operators.
    """

    name: str
    opset: int
    direction: str
    activations: tuple[Activation, ...]
    clip: float | None
    hidden_size: int | None
    layout: int
    inputs: dict[str, str]
    outputs: tuple[str, ...]
    op: str = "RNN"
    linear_before_reset: int = 0
    input_forget: int = 0

    @property
    def num_directions(self) -> int:
        return _DIRECTIONS[self.direction]

    @property
    def cell(self) -> str:
        """The rnn_ref cell: ``"elman"``, ``"gru"`` or ``"lstm"``."""
        return _OPS[self.op].cell

    @property
    def num_gates(self) -> int:
        """G, the blocks W, R and half of B pack: 1, 3 or 4."""
        return len(GATES[self.cell])

    @property
    def where(self) -> str:
        return f"{self.op} node {self.name!r}"

    def activations_of(self, direction: int) -> tuple[Activation, ...]:
        """Direction ``direction``'s activations, in ONNX's order (``(f,)``, ``(f, g)`` or
        ``(f, g, h)``: what ``RNNConfig.activations_of`` gives)."""
        k = len(_OPS[self.op].defaults)
        return self.activations[direction * k:(direction + 1) * k]


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain opset the model imports (RNN, GRU and LSTM live there)."""
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise ValueError("the model imports no version of the default ONNX domain, where RNN, "
                         "GRU and LSTM are defined")
    return versions[0]


def _attribute_rules(node: onnx.NodeProto, opset: int) -> tuple[dict[str, Any], Any]:
    """The node's attributes as Python values, each checked against its operator's schema at
    ``opset`` (known at that version, of the declared type, given once), and the schema."""
    op = node.op_type
    try:
        schema = onnx.defs.get_schema(op, opset)
    except onnx.defs.SchemaError:
        raise ValueError(f"{op} node {node.name!r}: opset {opset} defines no {op} operator "
                         f"({op} exists from opset 1)") from None
    allowed = schema.attributes
    found: dict[str, Any] = {}
    for a in node.attribute:
        if a.name not in allowed:
            raise ValueError(f"{op} node {node.name!r}: attribute {a.name!r} is not defined "
                             f"for {op}-{schema.since_version} (opset {opset}); it takes "
                             f"{', '.join(sorted(allowed))}")
        if a.type != allowed[a.name].type:
            raise ValueError(f"{op} node {node.name!r}: attribute {a.name!r} must be of type "
                             f"{onnx.AttributeProto.AttributeType.Name(allowed[a.name].type)}, "
                             f"got {onnx.AttributeProto.AttributeType.Name(a.type)}")
        if a.name in found:
            raise ValueError(f"{op} node {node.name!r}: attribute {a.name!r} is given twice")
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        found[a.name] = value
    return found, schema


def _flag(where: str, attrs: Mapping[str, Any], name: str) -> int:
    value = attrs.get(name, 0)
    if value not in (0, 1):
        raise ValueError(f"{where}: {name} must be 0 or 1, got {value}")
    return int(value)


def read_node(node: onnx.NodeProto, opset: int, *, missing_parameters: str = "raise"
              ) -> RnnNode:
    """Read one ``RNN``, ``GRU`` or ``LSTM`` node of a model that imports ``opset``, with the
    spec's defaults.

    Every version is read: RNN-1, -7, -14, -22; GRU-1, -3, -7, -14, -22; LSTM-1, -7, -14,
    -22 (ONNX ``Operators.md`` and ``Changelog.md``). The defaults: ``direction="forward"``
    (GRU-1's schema spells its default value ``"foward"``; its text says forward);
    ``activations`` per direction ``Tanh`` (RNN: the schema lists ``["Tanh", "Tanh"]`` as the
    default value for the bidirectional case; a one-direction node takes one), ``Sigmoid,
    Tanh`` (GRU) or ``Sigmoid, Tanh, Tanh`` (LSTM: the equations' defaults); ``layout=0``
    (version 14 and later have it); no clip; ``hidden_size`` taken from ``W``;
    ``linear_before_reset=0`` (GRU-3 and later; GRU-1 computes the 0 form);
    ``input_forget=0``. The ``output_sequence`` of RNN-1, GRU-1, GRU-3 and LSTM-1 only makes
    ``Y`` optional, which every version allows, so it does not change what is computed. GRU-1
    requires ``Y_h`` (the only output any version requires).

    Raises:
        ValueError: anything the spec forbids, naming the rule.
        UnsupportedError: an operator other than RNN, GRU, LSTM; an activation outside ONNX's
            set.
    """
    if node.op_type not in _OPS:
        raise UnsupportedError("rnn-ref", f"an ONNX {node.op_type} node ({node.name!r}) as a "
                                          f"layer", f"a layer is one of {', '.join(RECURRENT_OPS)}")
    op = _OPS[node.op_type]
    attrs, schema = _attribute_rules(node, opset)
    where = f"{node.op_type} node {node.name!r}"
    direction = attrs.get("direction", "forward")
    if direction not in _DIRECTIONS:
        raise ValueError(f"{where}: direction must be 'forward', 'reverse' or "
                         f"'bidirectional', got {direction!r}")
    nd = _DIRECTIONS[direction]
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise ValueError(f"{where}: layout must be 0 (time-major) or 1 (batch-major), "
                         f"got {layout}")
    _flag(where, attrs, "output_sequence")
    clip = attrs.get("clip")
    if clip is not None and not (np.isfinite(clip) and clip > 0):
        raise ValueError(f"{where}: clip must be a positive threshold, got {clip}")
    hidden = attrs.get("hidden_size")
    if hidden is not None and hidden < 1:
        raise ValueError(f"{where}: hidden_size must be at least 1, got {hidden}")
    k = len(op.defaults)
    names = attrs.get("activations", list(op.defaults) * nd)
    if len(names) != k * nd:
        per = "one per direction" if k == 1 else f"{_COUNTS[k]} per direction ({op.roles})"
        raise ValueError(f"{where}: activations lists {len(names)} function(s) {names}; the "
                         f"spec wants {per} ({k * nd} for {direction!r})")
    n_in = len(op.inputs)
    if not 3 <= len(node.input) <= n_in or "" in node.input[:3]:
        raise ValueError(f"{where}: takes inputs X, W, R and optionally "
                         f"{', '.join(op.inputs[3:])}; got {list(node.input)}")
    if len(node.output) > len(op.outputs):
        raise ValueError(f"{where}: has outputs {_and(op.outputs)}, got {len(node.output)}")
    outputs = (*node.output, *[""] * len(op.outputs))[:len(op.outputs)]
    for spec_out, name in zip(schema.outputs, outputs, strict=False):
        if spec_out.option == onnx.defs.OpSchema.FormalParameterOption.Single and not name:
            raise ValueError(f"{where}: {node.op_type}-{schema.since_version} requires the "
                             f"output {spec_out.name} (optional from later versions)")
    inputs = dict(zip(op.inputs, [*node.input, *[""] * (n_in - len(node.input))], strict=True))
    return RnnNode(
        name=node.name, opset=opset, direction=direction,
        activations=_activations(where, node.op_type, names, attrs, missing_parameters),
        clip=clip, hidden_size=hidden, layout=layout, inputs=inputs, outputs=outputs,
        op=node.op_type, linear_before_reset=_flag(where, attrs, "linear_before_reset"),
        input_forget=_flag(where, attrs, "input_forget"),
    )


def _and(names: Sequence[str]) -> str:
    """``Y and Y_h``; ``Y, Y_h and Y_c``."""
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"


def _activations(where: str, op: str, names: Sequence[str], attrs: Mapping[str, Any],
                 missing: str) -> tuple[Activation, ...]:
    """The node's activations with their parameters: ``activation_alpha``/``_beta`` are
    consumed in the order of the activations, only by those that take them (onnxruntime's
    ``rnn_helpers.cc``, ``NormalizeActivationArgumentAndGetAlphaBetaCount``); a value left
    over is an error. A parameter left out takes the default ``missing`` names (``"raise"``:
    none is assumed, spec 2.3, even where ONNX and onnxruntime agree)."""
    # float32 attributes, read as the shortest decimal that gives them back (0.7, as written)
    alphas = [float(str(np.float32(a))) for a in attrs.get("activation_alpha", [])]
    betas = [float(str(np.float32(b))) for b in attrs.get("activation_beta", [])]
    acts = []
    for raw in names:
        name = _FROM_ONNX.get(raw.lower())
        if name is None:
            raise UnsupportedError("rnn-ref", f"activation {raw!r} in {where}",
                                   f"{op} takes {', '.join(ONNX_NAMES.values())}")
        params: list[float | None] = []
        for pname, values in (("alpha", alphas), ("beta", betas)):
            if pname not in ACTIVATIONS[name]:
                params.append(None)
            elif values:
                params.append(values.pop(0))
            elif missing in _DEFAULTS and name in _DEFAULTS[missing]:
                params.append(_DEFAULTS[missing][name][0 if pname == "alpha" else 1])
            elif missing == "raise":
                raise ValueError(f"{where} gives no {pname} for {raw}; rnn-ref assumes no "
                                 f"default (ONNX's operator defaults and onnxruntime's differ "
                                 f"for some activations): pass missing_parameters='onnx' or "
                                 f"'onnxruntime'")
            else:
                raise ValueError(f"{where} gives no {pname} for {raw} and {missing} has no "
                                 f"default for it")
        act = Activation(name, params[0], params[1])
        acts.append(Activation("linear") if act == Activation("affine", 1.0, 0.0) else act)
    if alphas or betas:
        raise ValueError(f"{where}: {len(alphas)} activation_alpha and {len(betas)} "
                         f"activation_beta value(s) left over after {list(names)} took theirs")
    return tuple(acts)


def node_cells(node: RnnNode, W: Any, R: Any, B: Any = None, P: Any = None
               ) -> list[AnyCellParams]:
    """The node's cells (one per direction), their shapes checked against the spec.

    ``W [R, G*M, D]``, ``R [R, G*M, M]``, ``B [R, 2*G*M]`` (``None``: no bias, zeros) and, for
    an LSTM, ``P [R, 3*M]`` (``None``: no peepholes), with G the gates the operator packs (1
    RNN; 3 GRU, in z, r, h; 4 LSTM, in i, o, f, c; P in i, o, f), unpacked by name with
    :func:`rnn_ref.cells.unpack`. An RNN node gives :class:`~rnn_ref.CellParams`, a GRU
    :class:`~rnn_ref.GRUParams`, an LSTM :class:`~rnn_ref.LSTMParams`.

    With ``input_forget=1`` the forget gate is ``1 - i`` (onnxruntime computes that too;
    ``tests/test_onnx_gated.py`` measures it), so the forget-gate rows of ``W``, ``R``, ``B``
    and ``P`` take no part in what the node computes: they are dropped, and a cell read from
    such a node has no ``"f"`` blocks (a graph written back from it holds zeros there).
    """
    W, Rm = np.asarray(W), np.asarray(R)
    nd, where, g = node.num_directions, node.where, node.num_gates
    rows = "hidden_size" if g == 1 else f"{g}*hidden_size"
    if W.ndim != 3 or W.shape[0] != nd or W.shape[1] % g:
        raise ValueError(f"{where}: W must be [num_directions={nd}, {rows}, input_size], got "
                         f"shape {W.shape}")
    m = W.shape[1] // g
    if node.hidden_size is not None and node.hidden_size != m:
        raise ValueError(f"{where}: hidden_size is {node.hidden_size} but W has "
                         f"{W.shape[1]} rows" + ("" if g == 1 else f" ({g} gates of {m})"))
    if Rm.shape != (nd, g * m, m):
        raise ValueError(f"{where}: R must be [{nd}, {g * m}, {m}], got shape {Rm.shape}")
    bias = np.zeros((nd, 2 * g * m), W.dtype) if B is None else np.asarray(B)
    if bias.shape != (nd, 2 * g * m):
        raise ValueError(f"{where}: B must be [{nd}, {2 * g * m}] (Wb then Rb), got shape "
                         f"{bias.shape}")
    if node.cell == "elman":
        return [CellParams(W[r].T, Rm[r].T, bias[r, :m], bias[r, m:]) for r in range(nd)]
    peep = None if P is None else np.asarray(P)
    if peep is not None and peep.shape != (nd, 3 * m):
        raise ValueError(f"{where}: P must be [{nd}, {3 * m}] (Pi, Po, Pf), got shape "
                         f"{peep.shape}")
    order = _OPS[node.op].order
    assert order is not None
    cell = node.cell
    gates = ("i", "g", "o") if node.input_forget else GATES[cell]
    out: list[AnyCellParams] = []
    for r in range(nd):
        w = unpack(W[r], order, cell=cell, axis=0)  # {gate: (M, D)}
        u = unpack(Rm[r], order, cell=cell, axis=0)
        bx = unpack(bias[r, :g * m], order, cell=cell)
        bh = unpack(bias[r, g * m:], order, cell=cell)
        blocks = ({k: w[k].T for k in gates}, {k: u[k].T for k in gates},
                  {k: bx[k] for k in gates}, {k: bh[k] for k in gates})
        if cell == "gru":
            out.append(GRUParams(*blocks))
            continue
        p = None
        if peep is not None:
            p_all = unpack(peep[r], "lstm:onnx_peepholes", cell="lstm")
            p = {k: p_all[k] for k in (("i", "o") if node.input_forget else ("i", "f", "o"))}
        out.append(LSTMParams(*blocks, p=p))
    return out


def input_size_of(cell: AnyCellParams) -> int:
    """D_l of a cell of any kind (the rows of its input kernel)."""
    w_x = cell.w_x
    return int((w_x if isinstance(w_x, np.ndarray) else next(iter(w_x.values()))).shape[0])


def cell_fields(node: RnnNode, cells: Sequence[AnyCellParams],
                acts: Sequence[tuple[Activation, ...]] | None = None) -> dict[str, Any]:
    """The :class:`~rnn_ref.RNNConfig` fields of the node's layer, one value (a list per
    direction for the activations): ``activation`` (Elman's f; the candidate's g) and, for a
    GRU or LSTM, ``cell``, ``recurrent_activation`` (f), ``cell_activation`` (h),
    ``reset_after`` (``linear_before_reset``), ``peepholes`` (``P`` given) and
    ``input_forget``. ``acts``: each direction's activations in ONNX's order, when the caller
    refined the node's float32 parameters (default: the node's)."""
    if acts is None:
        acts = [node.activations_of(r) for r in range(node.num_directions)]
    if node.cell == "elman":
        return {"activation": [a[0] for a in acts]}
    fields: dict[str, Any] = {
        "cell": node.cell, "recurrent_activation": [a[0] for a in acts],
        "activation": [a[1] for a in acts]}
    if node.cell == "gru":
        fields["reset_after"] = bool(node.linear_before_reset)
    else:
        first = cells[0]
        assert isinstance(first, LSTMParams)
        fields.update(cell_activation=[a[2] for a in acts], peepholes=first.p is not None,
                      input_forget=bool(node.input_forget))
    return fields


def node_config(node: RnnNode, cells: Sequence[AnyCellParams], *, bias: bool) -> RNNConfig:
    """The one-layer config of ``node`` (cells from :func:`node_cells`)."""
    return RNNConfig(input_size_of(cells[0]), cells[0].hidden_size, direction=node.direction,
                     clip=node.clip, bias=bias, **cell_fields(node, cells))


def _state(node: RnnNode, value: Any, what: str, n: int, m: int) -> np.ndarray[Any, Any]:
    """``initial_h`` or ``initial_c`` as ``(R, N, M)``, its shape checked in the layout."""
    s = np.asarray(value, np.float64)
    nd = node.num_directions
    want = (n, nd, m) if node.layout == 1 else (nd, n, m)
    if s.shape != want:
        raise ValueError(f"{node.where}: {what} must have shape {list(want)} with "
                         f"layout={node.layout}, got {list(s.shape)}")
    return s.transpose(1, 0, 2) if node.layout == 1 else s


def run_node(node: RnnNode, X: Any, W: Any, R: Any, B: Any = None, sequence_lens: Any = None,
             initial_h: Any = None, initial_c: Any = None, P: Any = None
             ) -> tuple[np.ndarray[Any, Any], ...]:
    """``(Y, Y_h)`` of one ``RNN`` or ``GRU`` node, ``(Y, Y_h, Y_c)`` of an ``LSTM``, computed
    by the oracle in float64.

    Shapes as the spec gives them: ``layout=0`` takes ``X [T, N, D]`` and ``initial_h``,
    ``initial_c [R, N, M]`` and returns ``Y [T, R, N, M]``, ``Y_h``, ``Y_c [R, N, M]``;
    ``layout=1`` takes ``X [N, T, D]``, ``initial_h``, ``initial_c [N, R, M]`` and returns
    ``Y [N, T, R, M]``, ``Y_h``, ``Y_c [N, R, M]``. ``sequence_lens [N]`` are right-padded
    lengths: padded outputs are zeros, the final states are the last valid ones (``h0`` and
    ``c0`` for a zero length). ``initial_c`` and ``P`` are an LSTM's only.
    """
    where = node.where
    if node.cell != "lstm" and (initial_c is not None or P is not None):
        raise ValueError(f"{where}: only an LSTM node takes initial_c and P")
    x = np.asarray(X, np.float64)
    if x.ndim != 3:
        raise ValueError(f"{where}: X must be 3-D ([seq_length, batch_size, input_size], or "
                         f"batch first with layout=1), got shape {x.shape}")
    x = x if node.layout == 1 else x.transpose(1, 0, 2)  # now (N, T, D)

    def f64(a: Any) -> Any:
        return None if a is None else np.asarray(a, np.float64)

    cells = node_cells(node, f64(W), f64(R), f64(B), f64(P))
    if x.shape[2] != input_size_of(cells[0]):
        raise ValueError(f"{where}: X has {x.shape[2]} features, W takes "
                         f"{input_size_of(cells[0])}")
    n, nd, m = x.shape[0], node.num_directions, cells[0].hidden_size
    h0 = None if initial_h is None else _state(node, initial_h, "initial_h", n, m)
    c0 = None if initial_c is None else _state(node, initial_c, "initial_c", n, m)
    lengths = None
    if sequence_lens is not None:
        lengths = np.asarray(sequence_lens)
        if lengths.dtype.kind not in "iu" or lengths.shape != (n,):
            raise ValueError(f"{where}: sequence_lens must be {n} integers (int32), got "
                             f"{lengths.dtype} of shape {list(lengths.shape)}")
    params = RNNParams(node_config(node, cells, bias=B is not None), [cells])
    res = forward(params, x, h0=h0, lengths=lengths, padded_output="zeros",
                  c0=c0 if node.cell == "lstm" else None)
    y = res.outputs.reshape(n, x.shape[1], nd, m)  # (N, T, R, M)
    states = [np.asarray(res.h_n)]  # (R, N, M)
    if node.cell == "lstm":
        states.append(np.asarray(res.c_n))
    if node.layout == 1:
        return (y, *(s.transpose(1, 0, 2) for s in states))
    return (y.transpose(1, 2, 0, 3), *states)
