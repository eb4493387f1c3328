"""One ONNX ``RNN`` node: the activation names, the graph builder both writers use, and a node
read, checked and computed as the ONNX spec defines it (every opset version: 1, 7, 14, 22).

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
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import CellParams, RNNParams
from rnn_ref.reference import forward

__all__ = ["ONNX_NAMES", "GraphBuilder", "RnnNode", "node_cells", "node_config", "opset_of",
           "read_node", "run_node"]

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
# one RNN node, read as the ONNX spec defines it (every opset version: 1, 7, 14, 22)
# --------------------------------------------------------------------------------------------
_INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h")
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


@dataclass(frozen=True)
class RnnNode:
    """One ``RNN`` node with the spec's defaults applied and every rule checked.

    ``inputs`` maps each of ``X, W, R, B, sequence_lens, initial_h`` to its value name, ``""``
    where the node leaves it out (absent or empty-named, the two ways the spec allows).
    ``outputs`` holds the names of ``Y`` and ``Y_h``, ``""`` for one that is skipped.
    """

    name: str
    opset: int
    direction: str
    activations: tuple[Activation, ...]
    clip: float | None
    hidden_size: int | None
    layout: int
    inputs: dict[str, str]
    outputs: tuple[str, str]

    @property
    def num_directions(self) -> int:
        return _DIRECTIONS[self.direction]


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain opset the model imports (RNN lives there)."""
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise ValueError("the model imports no version of the default ONNX domain, where RNN "
                         "is defined")
    return versions[0]


def _attribute_rules(node: onnx.NodeProto, opset: int) -> dict[str, Any]:
    """The node's attributes as Python values, each checked against RNN's schema at ``opset``
    (known at that version, of the declared type, given once)."""
    try:
        schema = onnx.defs.get_schema("RNN", opset)
    except onnx.defs.SchemaError:
        raise ValueError(f"RNN node {node.name!r}: opset {opset} defines no RNN operator "
                         f"(RNN exists from opset 1)") from None
    allowed = schema.attributes
    found: dict[str, Any] = {}
    for a in node.attribute:
        if a.name not in allowed:
            raise ValueError(f"RNN node {node.name!r}: attribute {a.name!r} is not defined for "
                             f"RNN-{schema.since_version} (opset {opset}); it takes "
                             f"{', '.join(sorted(allowed))}")
        if a.type != allowed[a.name].type:
            raise ValueError(f"RNN node {node.name!r}: attribute {a.name!r} must be of type "
                             f"{onnx.AttributeProto.AttributeType.Name(allowed[a.name].type)}, "
                             f"got {onnx.AttributeProto.AttributeType.Name(a.type)}")
        if a.name in found:
            raise ValueError(f"RNN node {node.name!r}: attribute {a.name!r} is given twice")
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        found[a.name] = value
    return found


def read_node(node: onnx.NodeProto, opset: int, *, missing_parameters: str = "raise"
              ) -> RnnNode:
    """Read one ``RNN`` node of a model that imports ``opset``, with the spec's defaults.

    The defaults (ONNX ``Operators.md``, ``RNN``): ``direction="forward"``; ``activations``
    ``Tanh`` for every direction (the schema lists ``["Tanh", "Tanh"]`` as the default value
    for the bidirectional case; a one-direction node takes one); ``layout=0``; no clip;
    ``hidden_size`` taken from ``W``. RNN-1's ``output_sequence`` only makes ``Y`` optional,
    which every version allows, so it does not change what is computed.

    Raises:
        ValueError: anything the spec forbids, naming the rule.
        UnsupportedError: an activation outside the RNN set.
    """
    attrs = _attribute_rules(node, opset)
    where = f"RNN node {node.name!r}"
    direction = attrs.get("direction", "forward")
    if direction not in _DIRECTIONS:
        raise ValueError(f"{where}: direction must be 'forward', 'reverse' or "
                         f"'bidirectional', got {direction!r}")
    nd = _DIRECTIONS[direction]
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise ValueError(f"{where}: layout must be 0 (time-major) or 1 (batch-major), "
                         f"got {layout}")
    if attrs.get("output_sequence", 0) not in (0, 1):
        raise ValueError(f"{where}: output_sequence must be 0 or 1, "
                         f"got {attrs['output_sequence']}")
    clip = attrs.get("clip")
    if clip is not None and not (np.isfinite(clip) and clip > 0):
        raise ValueError(f"{where}: clip must be a positive threshold, got {clip}")
    hidden = attrs.get("hidden_size")
    if hidden is not None and hidden < 1:
        raise ValueError(f"{where}: hidden_size must be at least 1, got {hidden}")
    names = attrs.get("activations", ["Tanh"] * nd)
    if len(names) != nd:
        raise ValueError(f"{where}: activations lists {len(names)} function(s) {names}; the "
                         f"spec wants one per direction ({nd} for {direction!r})")
    if not 3 <= len(node.input) <= len(_INPUTS) or "" in node.input[:3]:
        raise ValueError(f"{where}: takes inputs X, W, R and optionally B, sequence_lens, "
                         f"initial_h; got {list(node.input)}")
    if len(node.output) > 2:
        raise ValueError(f"{where}: has outputs Y and Y_h, got {len(node.output)}")
    inputs = dict(zip(_INPUTS, [*node.input, *[""] * (len(_INPUTS) - len(node.input))],
                      strict=True))
    outputs = (*node.output, "", "")[:2]
    return RnnNode(
        name=node.name, opset=opset, direction=direction,
        activations=_activations(where, names, attrs, missing_parameters), clip=clip,
        hidden_size=hidden, layout=layout, inputs=inputs,
        outputs=(outputs[0], outputs[1]),
    )


def _activations(where: str, names: Sequence[str], attrs: Mapping[str, Any],
                 missing: str) -> tuple[Activation, ...]:
    """The node's activations with their parameters: ``activation_alpha``/``_beta`` are
    consumed in the order of the activations, only by those that take them (onnxruntime's
    ``rnn_helpers.cc``, ``NormalizeActivationArgumentAndGetAlphaBetaCount``); a value left
    over is an error. A parameter left out takes the default ``missing`` names."""
    # float32 attributes, read as the shortest decimal that gives them back (0.7, as written)
    alphas = [float(str(np.float32(a))) for a in attrs.get("activation_alpha", [])]
    betas = [float(str(np.float32(b))) for b in attrs.get("activation_beta", [])]
    acts = []
    for raw in names:
        name = _FROM_ONNX.get(raw.lower())
        if name is None:
            raise UnsupportedError("rnn-ref", f"activation {raw!r} in {where}",
                                   f"RNN takes {', '.join(ONNX_NAMES.values())}")
        params: list[float | None] = []
        for pname, values in (("alpha", alphas), ("beta", betas)):
            if pname not in ACTIVATIONS[name]:
                params.append(None)
            elif values:
                params.append(values.pop(0))
            elif missing in _DEFAULTS and name in _DEFAULTS[missing]:
                params.append(_DEFAULTS[missing][name][0 if pname == "alpha" else 1])
            elif missing == "raise":
                raise ValueError(f"{where} gives no {pname} for {raw}; ONNX's operator "
                                 f"default and onnxruntime's differ: pass "
                                 f"missing_parameters='onnx' or 'onnxruntime'")
            else:
                raise ValueError(f"{where} gives no {pname} for {raw} and {missing} has no "
                                 f"default for it")
        act = Activation(name, params[0], params[1])
        acts.append(Activation("linear") if act == Activation("affine", 1.0, 0.0) else act)
    if alphas or betas:
        raise ValueError(f"{where}: {len(alphas)} activation_alpha and {len(betas)} "
                         f"activation_beta value(s) left over after {list(names)} took theirs")
    return tuple(acts)


def node_cells(node: RnnNode, W: Any, R: Any, B: Any = None) -> list[CellParams]:
    """The node's cells (one per direction) from ``W [R, M, D]``, ``R [R, M, M]`` and
    ``B [R, 2M]`` (``None``: no bias), their shapes checked against the spec."""
    W, Rm = np.asarray(W), np.asarray(R)
    nd, where = node.num_directions, f"RNN node {node.name!r}"
    if W.ndim != 3 or W.shape[0] != nd:
        raise ValueError(f"{where}: W must be [num_directions={nd}, hidden_size, input_size], "
                         f"got shape {W.shape}")
    m = W.shape[1]
    if node.hidden_size is not None and node.hidden_size != m:
        raise ValueError(f"{where}: hidden_size is {node.hidden_size} but W has {m} rows")
    if Rm.shape != (nd, m, m):
        raise ValueError(f"{where}: R must be [{nd}, {m}, {m}], got shape {Rm.shape}")
    bias = np.zeros((nd, 2 * m), W.dtype) if B is None else np.asarray(B)
    if bias.shape != (nd, 2 * m):
        raise ValueError(f"{where}: B must be [{nd}, {2 * m}] (Wb then Rb), got shape "
                         f"{bias.shape}")
    return [CellParams(W[r].T, Rm[r].T, bias[r, :m], bias[r, m:]) for r in range(nd)]


def node_config(node: RnnNode, cells: Sequence[CellParams], *, bias: bool) -> RNNConfig:
    """The one-layer config of ``node`` (cells from :func:`node_cells`)."""
    return RNNConfig(cells[0].w_x.shape[0], cells[0].hidden_size, direction=node.direction,
                     activation=list(node.activations), clip=node.clip, bias=bias)


def run_node(node: RnnNode, X: Any, W: Any, R: Any, B: Any = None, sequence_lens: Any = None,
             initial_h: Any = None) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``(Y, Y_h)`` of one ``RNN`` node, computed by the oracle in float64.

    Shapes as the spec gives them: ``layout=0`` takes ``X [T, N, D]`` and
    ``initial_h [R, N, M]`` and returns ``Y [T, R, N, M]``, ``Y_h [R, N, M]``; ``layout=1``
    takes ``X [N, T, D]``, ``initial_h [N, R, M]`` and returns ``Y [N, T, R, M]``,
    ``Y_h [N, R, M]``. ``sequence_lens [N]`` are right-padded lengths: padded outputs are
    zeros, the final state is the last valid state (``h0`` for a zero length).
    """
    where = f"RNN node {node.name!r}"
    x = np.asarray(X, np.float64)
    if x.ndim != 3:
        raise ValueError(f"{where}: X must be 3-D ([seq_length, batch_size, input_size], or "
                         f"batch first with layout=1), got shape {x.shape}")
    x = x if node.layout == 1 else x.transpose(1, 0, 2)  # now (N, T, D)
    cells = node_cells(node, np.asarray(W, np.float64), np.asarray(R, np.float64),
                       None if B is None else np.asarray(B, np.float64))
    if x.shape[2] != cells[0].w_x.shape[0]:
        raise ValueError(f"{where}: X has {x.shape[2]} features, W takes "
                         f"{cells[0].w_x.shape[0]}")
    n, nd, m = x.shape[0], node.num_directions, cells[0].hidden_size
    h0 = None
    if initial_h is not None:
        h0 = np.asarray(initial_h, np.float64)
        want = (n, nd, m) if node.layout == 1 else (nd, n, m)
        if h0.shape != want:
            raise ValueError(f"{where}: initial_h must have shape {list(want)} with "
                             f"layout={node.layout}, got {list(h0.shape)}")
        h0 = h0.transpose(1, 0, 2) if node.layout == 1 else h0
    lengths = None
    if sequence_lens is not None:
        lengths = np.asarray(sequence_lens)
        if lengths.dtype.kind not in "iu" or lengths.shape != (n,):
            raise ValueError(f"{where}: sequence_lens must be {n} integers (int32), got "
                             f"{lengths.dtype} of shape {list(lengths.shape)}")
    params = RNNParams(node_config(node, cells, bias=B is not None), [cells])
    res = forward(params, x, h0=h0, lengths=lengths, padded_output="zeros")
    y = res.outputs.reshape(n, x.shape[1], nd, m)  # (N, T, R, M)
    h_n = np.asarray(res.h_n)  # (R, N, M)
    if node.layout == 1:
        return y, h_n.transpose(1, 0, 2)
    return y.transpose(1, 2, 0, 3), h_n
