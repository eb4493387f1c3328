"""The whole network as one ONNX graph (issue 12): written by :func:`write_network`.

::

    x (N, T) int64 ids --Gather(embedding)--> (N, T, D) --Transpose--> (T, N, D)
        --RNN/GRU/LSTM node per layer (merged as below)--> (T, N, F)
        --selection--> (T, N, F) or (N, F) --head: MatMul [+ Add] + activation ...--> y

* The embedding is ``Gather(embedding (V, D), x)``. With ``mask_zero`` (Keras skips every step
  whose id is 0, wherever it stands: ``pad_sequences`` pads at the front by default) the ids
  are first **compacted**: each sample's non-zero ids move to the front in their order, the
  zeros after them (:func:`_compacted_ids`: ``CumSum`` ranks, then ``ScatterElements``),
  and the nodes' shared ``sequence_lens`` is the count of non-zero ids,
  ``ReduceSum(Cast(Not(Equal(ids, 0)), int32), axis=1)``. Every layer then steps through
  exactly the steps Keras steps through, in the same order, for any padding pattern (front,
  back, holes), so the final states are Keras'. The per-step outputs are in the compacted
  order, so a ``mask_zero`` graph is written only for selections of final states
  (``onnx_unsupported`` refuses the rest) and exposes no per-step outputs. A ``mask_zero``
  graph is batch-major (``time_major=True`` is refused).
* One ``RNN``, ``GRU`` or ``LSTM`` node per layer (:func:`node_weights`,
  :func:`node_attributes`), each with its own direction, time-major (``layout=0``) unless
  asked, and a dynamic sequence length. ``W``, ``R``, ``B`` (and an LSTM's ``P``) are packed
  in ONNX's gate orders by :func:`rnn_ref.cells.pack`; a GRU's ``reset_after`` is
  ``linear_before_reset=1``; an LSTM's ``input_forget`` is ``input_forget=1`` with forget
  rows that compute ``1 - i`` even where it is ignored (:func:`_gated_blocks`); an LSTM's
  initial and final cell states are the graph's ``c0`` input and ``c_n`` output (``Y_c``),
  indexed by ``config.cell_state_index`` as ``h0``/``h_n`` are by ``state_index``. A
  projected LSTM (``proj_size``) has no ONNX form and is refused
  (:func:`rnn_ref.backends.onnx.record.unsupported`). A layer's two directions are merged as
  Keras does:
  ``concat`` is ``Transpose(0, 2, 1, 3)`` + ``Reshape(0, 0, 2M)`` (as torch writes it), the
  others ``Split`` + ``Squeeze`` + ``Add`` / ``Mul`` / ``Add`` then ``Div`` by 2.
* The selection: ``last_step`` is ``Gather(index -1)`` on the time axis of the last layer's
  merged outputs; a pooling over time is :func:`_pool`; ``final`` is ``Gather`` of each
  direction from the last node's ``Y_h`` then merged (``Concat`` on the last axis for
  ``concat``, as torch's ``cat([h[-2], h[-1]], 1)``); ``final_forward`` / ``final_backward``
  one of them.
* The head: per layer ``MatMul`` with ``w (F, K)``, ``Add`` of ``b`` (left out without a
  bias), then the activation (``Softmax`` / ``LogSoftmax`` on axis -1).
* Identity layers (dropout, noise) compute nothing at inference and have no node; they, the
  padding index (no forward effect) and ``padded_output`` where no padded step can be seen
  are kept in the metadata (``rnn_ref.config``). Reading, the nodes are authoritative: the
  metadata only fills in what no node says (:mod:`rnn_ref.backends.onnx.reader`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from rnn_ref.activations import Activation
from rnn_ref.backends._common import raise_if
from rnn_ref.backends.onnx.nodes import ONNX_NAMES, GraphBuilder
from rnn_ref.backends.onnx.record import unsupported as onnx_unsupported
from rnn_ref.cells import pack
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.network import POOLINGS, HeadActivation, Softmax
from rnn_ref.params import GRUParams, LSTMParams, RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["graph_result", "write_network"]

NAME = "ONNX RNN"
OPSET = 17
_DTYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
           np.dtype(np.float16): TensorProto.FLOAT16}


def _i64(*values: int) -> np.ndarray[Any, Any]:
    return np.array(values, np.int64)


def _scalar(value: int) -> np.ndarray[Any, Any]:
    return np.array(value, np.int64)


#: The ONNX operator of each cell, and the activations one direction of it takes when the
#: node lists none (ONNX Operators.md: RNN ``Tanh``; GRU ``Sigmoid, Tanh``; LSTM ``Sigmoid,
#: Tanh, Tanh``).
ONNX_OPS = {"elman": "RNN", "gru": "GRU", "lstm": "LSTM"}
_DEFAULT_ACTS = {"elman": ("tanh",), "gru": ("sigmoid", "tanh"),
                 "lstm": ("sigmoid", "tanh", "tanh")}


def node_attributes(cfg: RNNConfig, layer: int) -> dict[str, Any]:
    """Layer ``layer``'s RNN, GRU or LSTM node attributes, written as most exporters write
    them: what equals the spec's default (``direction="forward"``, every activation the
    operator's default, ``linear_before_reset=0``, ``input_forget=0``) is left out.

    ``activations`` lists each direction's ``(f,)``, ``(f, g)`` or ``(f, g, h)``
    (:meth:`RNNConfig.activations_of`), ``linear`` written as ``Affine(1, 0)``; every alpha
    and beta follows in the order of the activations that take them. A GRU's ``reset_after``
    is ``linear_before_reset=1``, an LSTM's ``input_forget`` is ``input_forget=1``."""
    spec = cfg.cell_of(layer)
    acts = [a if a.name != "linear" else Activation("affine", 1.0, 0.0)
            for r in range(cfg.num_directions_of(layer))
            for a in cfg.activations_of(layer, r)]
    attrs: dict[str, Any] = {"hidden_size": cfg.hidden_sizes[layer]}
    if cfg.directions[layer] != "forward":
        attrs["direction"] = cfg.directions[layer]
    defaults = _DEFAULT_ACTS[spec.kind] * cfg.num_directions_of(layer)
    if any(a.name != d for a, d in zip(acts, defaults, strict=True)):
        attrs["activations"] = [ONNX_NAMES[a.name] for a in acts]
    alphas = [a.alpha for a in acts if a.alpha is not None]
    betas = [a.beta for a in acts if a.beta is not None]
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    if cfg.clips[layer] is not None:
        attrs["clip"] = cfg.clips[layer]
    if spec.kind == "gru" and spec.reset_after:
        attrs["linear_before_reset"] = 1
    if spec.kind == "lstm" and spec.input_forget:
        attrs["input_forget"] = 1
    return attrs


def _state_inputs(cfg: RNNConfig, elem: int, which: str) -> tuple[list[onnx.ValueInfoProto],
                                                                    list[str]]:
    """The graph inputs of the initial states ``h0`` (``which="h"``, S states) or the LSTM
    layers' cell states ``c0`` (``"c"``, C states): one ``(S, N, M)`` input when they share
    a width, else one ``{which}0_l{l} (R_l, N, M_l)`` per layer that has them; and the name
    of each layer's input (``""`` where it has none)."""
    if which == "h":
        uniform, widths, count = cfg.uniform_hidden, cfg.output_sizes, cfg.num_states
    else:
        uniform, widths, count = cfg.uniform_cell, cfg.hidden_sizes, cfg.num_cell_states
    has = [cfg.cell_of(li).kind == "lstm" or which == "h" for li in range(cfg.num_layers)]
    if not count:
        return [], []
    if uniform:
        width = next(w for w, h in zip(widths, has, strict=True) if h)
        return [helper.make_tensor_value_info(f"{which}0", elem, [count, "N", width])], []
    inputs, names = [], []
    for li in range(cfg.num_layers):
        names.append(f"{which}0_l{li}" if has[li] else "")
        if has[li]:
            inputs.append(helper.make_tensor_value_info(
                names[-1], elem, [cfg.num_directions_of(li), "N", widths[li]]))
    return inputs, names


def _graph_inputs(cfg: RNNConfig, elem: int, dims: tuple[str, str], *, lengths: bool,
                  initial_state: bool) -> tuple[list[onnx.ValueInfoProto], dict[str, list[str]]]:
    """``x`` (``(N, T, D)``, or int64 ids ``(N, T)`` with an embedding; ``dims`` names the first
    two axes), then int32 ``lengths (N,)``, then ``h0 (S, N, M)`` or one ``h0_l{l} (R_l, N,
    M_l)`` per layer when the widths differ, then the LSTM layers' ``c0 (C, N, M)`` or
    ``c0_l{l}``; and each layer's own state input names (``{"h": [...], "c": [...]}``)."""
    if cfg.vocab_size is not None:
        inputs = [helper.make_tensor_value_info("x", TensorProto.INT64, list(dims))]
    else:
        inputs = [helper.make_tensor_value_info("x", elem, [*dims, cfg.input_size])]
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["N"]))
    names: dict[str, list[str]] = {"h": [], "c": []}
    if initial_state:
        for which in ("h", "c"):
            more, names[which] = _state_inputs(cfg, elem, which)
            inputs += more
    return inputs, names


def _compacted_ids(g: Any) -> tuple[str, str]:
    """The batch-major ids ``x (N, T)`` compacted, and their lengths for ``sequence_lens``::

        z        = [x == 0]                              (N, T) the padded steps
        dest     = cumsum(1 - z) - 1                     where the id is not 0: 0, 1, ...
                   count + cumsum(z) - 1                 where it is: count, count + 1, ...
        ids      = ScatterElements(x, dest, x, axis=1)   ids[n, dest[n, t]] = x[n, t]
        lens[n]  = sum_t [ids[n, t] != 0]                int32 (N,), count = sum_t (1 - z)

    ``dest`` is a permutation of each row, so every position is written once: the non-zero
    ids first in their order, then the zeros. Every size is the input's (shape inference
    bounds them before the graph runs)."""
    zero = g.const(g.name("zero"), _scalar(0))
    is_zero = g.op1("Equal", ["x", zero])
    pad = g.op1("Cast", [is_zero], to=TensorProto.INT64)
    valid = g.op1("Cast", [g.op1("Not", [is_zero])], to=TensorProto.INT64)
    axis = g.const(g.name("axis"), _scalar(1))
    count = g.op1("ReduceSum", [valid, g.const(g.name("axes"), _i64(1))], keepdims=1)
    dest = g.op1("Where", [is_zero, g.op1("Add", [g.op1("CumSum", [pad, axis]), count]),
                           g.op1("CumSum", [valid, axis])])
    dest = g.op1("Sub", [dest, g.const(g.name("one"), _scalar(1))])
    ids = g.op1("ScatterElements", ["x", dest, "x"], axis=1)
    valid_c = g.op1("Not", [g.op1("Equal", [ids, zero])])
    lens = g.op1("ReduceSum", [g.op1("Cast", [valid_c], to=TensorProto.INT32),
                               g.const(g.name("axes"), _i64(1))], keepdims=0)
    return ids, lens


def _network_input(g: Any, params: RNNParams, *, time_major: bool, layout: int) -> tuple[str, str]:
    """The first node's ``X`` (the embedded ids or ``x``, transposed to time-major unless the
    graph or the nodes are), and the ``sequence_lens`` ``mask_zero`` derives (``""``: none)."""
    ids, lens = _compacted_ids(g) if params.config.mask_zero else ("x", "")
    x = ids
    if params.embedding is not None:
        x = g.op1("Gather", [g.const("embedding", params.embedding), ids], axis=0)
    if not (time_major or layout):
        x = g.op1("Transpose", [x], perm=[1, 0, 2])
    return x, lens


def _mirrors_sigmoid(act: Activation) -> bool:
    """True when ``act(-x) = 1 - act(x)``: sigmoid, and hard_sigmoid with beta 1/2."""
    return act.name == "sigmoid" or (act.name == "hard_sigmoid" and act.beta == 0.5)


def _gated_blocks(cell: GRUParams | LSTMParams, f_act: Activation
                  ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any],
                             dict[str, Any] | None]:
    """``(w_x, w_h, b_x, b_h, p)`` of a gated cell by gate, each block in ONNX's orientation
    (``W`` and ``R`` rows: ``(M, D_l)``, ``(M, M)``), ``p`` ``None`` without peepholes.

    An LSTM with ``input_forget`` has no forget-gate weights, but ONNX's ``W``, ``R``, ``B``
    and ``P`` still hold four gate blocks (three in ``P``), which a runtime that honours
    ``input_forget=1`` never reads. They are written as the input gate's blocks negated when
    ``f_act(-x) = 1 - f_act(x)`` (sigmoid; hard_sigmoid with beta 1/2): then
    ``f = f_act(-(a_i + u_i + p_i c)) = 1 - i`` (clip is symmetric), so a runtime that ignores
    ``input_forget`` (OpenVINO, ``onnx.reference``) computes the same numbers. Otherwise no
    rows compute ``1 - i`` and they are written as zeros."""
    w: dict[str, Any] = {k: v.T for k, v in cell.w_x.items()}
    u: dict[str, Any] = {k: v.T for k, v in cell.w_h.items()}
    bx: dict[str, Any] = dict(cell.b_x)
    bh: dict[str, Any] = dict(cell.b_h)
    p: dict[str, Any] | None = None
    if isinstance(cell, LSTMParams) and cell.p is not None:
        p = dict(cell.p)
    if isinstance(cell, LSTMParams) and "f" not in cell.w_x:
        mirror = _mirrors_sigmoid(f_act)
        for b in (w, u, bx, bh, *([p] if p is not None else [])):
            b["f"] = -b["i"] if mirror else np.zeros_like(b["i"])
    return w, u, bx, bh, p


def node_weights(params: RNNParams, li: int) -> dict[str, np.ndarray[Any, Any] | None]:
    """Layer ``li``'s node inputs ``W [R, G*M, D_l]``, ``R [R, G*M, M]``, ``B [R, 2*G*M]``
    (Wb then Rb; ``None`` without biases) and an LSTM's ``P [R, 3*M]`` (``None`` without
    peepholes), packed in ONNX's gate orders (z, r, h; i, o, f, c; ``P`` in i, o, f) by
    :func:`rnn_ref.cells.pack` (G = 1 for an RNN node)."""
    cfg = params.config
    kind = cfg.cell_of(li).kind
    nd = cfg.num_directions_of(li)
    if kind == "elman":
        cells = [params.elman_cell(li, r) for r in range(nd)]
        return {"W": np.stack([c.w_x.T for c in cells]),
                "R": np.stack([c.w_h.T for c in cells]),
                "B": np.stack([np.concatenate([c.b_x, c.b_h]) for c in cells])
                if cfg.bias else None, "P": None}
    order = "gru:onnx" if kind == "gru" else "lstm:onnx"
    out: dict[str, list[np.ndarray[Any, Any]]] = {"W": [], "R": [], "B": [], "P": []}
    for r in range(nd):
        cell = params.layers[li][r]
        assert isinstance(cell, (GRUParams, LSTMParams))
        w, u, bx, bh, p = _gated_blocks(cell, cfg.activations_of(li, r)[0])
        out["W"].append(pack(w, order, cell=kind, axis=0))
        out["R"].append(pack(u, order, cell=kind, axis=0))
        out["B"].append(np.concatenate([pack(bx, order, cell=kind),
                                        pack(bh, order, cell=kind)]))
        if p is not None:
            out["P"].append(pack(p, "lstm:onnx_peepholes", cell=kind))
    return {"W": np.stack(out["W"]), "R": np.stack(out["R"]),
            "B": np.stack(out["B"]) if cfg.bias else None,
            "P": np.stack(out["P"]) if out["P"] else None}


def _initial_state(g: Any, cfg: RNNConfig, li: int, which: str, names: Sequence[str],
                   layout: int) -> str:
    """Layer ``li``'s ``initial_h`` (``which="h"``) or ``initial_c`` (``"c"``): a ``Slice``
    of the graph input ``h0``/``c0`` from the layer's first state (``state_index``,
    ``cell_state_index``), or its own input ``h0_l{l}``/``c0_l{l}`` (``names``) when the
    widths differ; transposed to ``[N, R, M]`` for a batch-major node."""
    uniform = cfg.uniform_hidden if which == "h" else cfg.uniform_cell
    if uniform:
        start = cfg.state_index(li, 0) if which == "h" else cfg.cell_state_index(li, 0)
        state = g.op1("Slice", [f"{which}0", g.const(g.name("start"), _i64(start)),
                                g.const(g.name("end"),
                                        _i64(start + cfg.num_directions_of(li))),
                                g.const(g.name("axes"), _i64(0))])
    else:
        state = names[li]
    return str(g.op1("Transpose", [state], perm=[1, 0, 2])) if layout else str(state)


def _layer_node(g: Any, params: RNNParams, li: int, x: str, *, seq_lens: str,
                initial_state: bool, state_names: Mapping[str, Sequence[str]], layout: int
                ) -> tuple[str, str, str]:
    """Layer ``li``'s ``RNN``, ``GRU`` or ``LSTM`` node on ``x`` (:func:`node_weights`,
    :func:`node_attributes`); returns its ``Y`` (``[T, R, N, M]``, ``[N, T, R, M]`` with
    layout 1), its final states ``Y_h`` and an LSTM's final cell states ``Y_c`` (``""`` for
    the other cells), ``[R, N, M]`` whatever the layout."""
    cfg = params.config
    kind = cfg.cell_of(li).kind
    weights = node_weights(params, li)
    names = {k: g.const(f"layers.{li}.{k}", v) if v is not None else ""
             for k, v in weights.items()}
    node_in = [x, names["W"], names["R"], names["B"], seq_lens]
    if initial_state:
        node_in.append(_initial_state(g, cfg, li, "h", state_names["h"], layout))
        if kind == "lstm":
            node_in.append(_initial_state(g, cfg, li, "c", state_names["c"], layout))
    if kind == "lstm" and names["P"]:
        node_in += [""] * (7 - len(node_in)) + [names["P"]]
    while node_in[-1] == "":
        node_in.pop()
    attrs = node_attributes(cfg, li) | ({"layout": 1} if layout else {})
    outs = g.op(ONNX_OPS[kind], node_in, 3 if kind == "lstm" else 2, **attrs)
    states = [g.op1("Transpose", [s], perm=[1, 0, 2]) if layout else s for s in outs[1:]]
    return outs[0], states[0], (states[1] if kind == "lstm" else "")


def _merge(g: Any, merge: str | None, parts: Sequence[str], dtype: np.dtype[Any]) -> list[str]:
    """Two directions' values merged by ``merge`` (``None``: left apart)."""
    fwd, bwd = parts
    if merge is None:
        return [fwd, bwd]
    if merge == "sum":
        return [g.op1("Add", [fwd, bwd])]
    if merge == "mul":
        return [g.op1("Mul", [fwd, bwd])]
    if merge == "ave":  # as Keras: (f + b) / 2
        return [g.op1("Div", [g.op1("Add", [fwd, bwd]), g.const(g.name("two"),
                                                                  np.array(2, dtype))])]
    return [g.op1("Concat", [fwd, bwd], axis=-1)]


def _merged(g: Any, cfg: RNNConfig, li: int, y: str, layout: int, dtype: np.dtype[Any]
            ) -> list[str]:
    """Layer ``li``'s outputs from its ``Y``: one merged ``[T, N, F]`` (``[N, T, F]`` with
    layout 1), or for ``merge_mode=None`` the two directions' ``[T, N, M]``."""
    r_axis = 2 if layout else 1
    merge = cfg.merge_modes[li]
    if merge == "concat":
        t = y if layout else g.op1("Transpose", [y], perm=[0, 2, 1, 3])
        width = cfg.layer_output_size(li)  # static: -1 is ambiguous for an empty sequence
        return [g.op1("Reshape", [t, g.const(g.name("shape"), _i64(0, 0, width))])]
    halves = g.op("Split", [y, g.const(g.name("split"), _i64(1, 1))], 2, axis=r_axis)
    one = g.const(g.name("axes"), _i64(r_axis))
    return _merge(g, merge, [g.op1("Squeeze", [h, one]) for h in halves], dtype)


def _pool(g: Any, how: str, out: str, t_axis: int, seq_lens: str, dtype: np.dtype[Any]) -> str:
    """A pooling over time of the merged outputs ``out``: ``ReduceMax`` (``max_all``),
    ``ReduceMean`` (``mean_all``, and ``mean_valid`` without lengths), or for ``mean_valid``
    with ``sequence_lens`` (whose padded outputs are zeros, and the compacted ids' too)
    ``ReduceSum(out) / Unsqueeze(Max(Cast(lens), 1), 1)``."""
    if how == "max_all":
        return str(g.op1("ReduceMax", [out], axes=[t_axis], keepdims=0))
    if how == "mean_all" or not seq_lens:
        return str(g.op1("ReduceMean", [out], axes=[t_axis], keepdims=0))
    total = g.op1("ReduceSum", [out, g.const(g.name("axes"), _i64(t_axis))], keepdims=0)
    count = g.op1("Max", [g.op1("Cast", [seq_lens], to=_DTYPES[np.dtype(dtype)]),
                          g.const(g.name("one"), np.array(1, dtype))])
    count = g.op1("Unsqueeze", [count, g.const(g.name("axes"), _i64(1))])
    return str(g.op1("Div", [total, count]))


def _selection(g: Any, cfg: RNNConfig, outputs: list[str], y_h: str, t_axis: int,
               dtype: np.dtype[Any], seq_lens: str) -> list[str]:
    """What ``cfg.select`` hands on: ``outputs`` themselves, or ``(N, F)`` values."""
    sel = cfg.select
    if sel == "sequence":
        return outputs
    if sel in POOLINGS:
        return [_pool(g, sel, outputs[0], t_axis, seq_lens, dtype)]
    if sel == "last_step":
        return [g.op1("Gather", [outputs[0], g.const(g.name("last"), _scalar(-1))],
                      axis=t_axis)]
    states = [g.op1("Gather", [y_h, g.const(g.name("index"), _scalar(r))], axis=0)
              for r in range(cfg.num_directions_of(cfg.num_layers - 1))]
    if sel == "final_forward":
        return states[:1]
    if sel == "final_backward":
        return states[1:]
    return states if len(states) == 1 else _merge(g, cfg.merge_modes[-1], states, dtype)


def _head_activation(g: Any, s: str, act: HeadActivation) -> str:
    if isinstance(act, Softmax):
        return g.op1("Softmax" if act.name == "softmax" else "LogSoftmax", [s], axis=-1)
    return str(g.activation(s, act))


def _head(g: Any, params: RNNParams, s: str) -> str:
    """The head's dense layers on ``s``: ``MatMul``, ``Add`` (with a bias), activation."""
    for j, (dense, weights) in enumerate(zip(params.config.head, params.head, strict=True)):
        s = g.op1("MatMul", [s, g.const(f"head.{j}.w", weights.w)])
        if dense.bias:
            s = g.op1("Add", [s, g.const(f"head.{j}.b", weights.b)])
        s = _head_activation(g, s, dense.activation)
    return s


def _output_values(g: Any, params: RNNParams, outputs: list[str], y_hs: list[str],
                   t_axis: int, expose_outputs: bool, seq_lens: str
                   ) -> list[tuple[str, str, bool]]:
    """``(name, value, is_sequence)`` of the graph's outputs before ``h_n``: the result (``y``
    with a head, else ``output`` / ``selected``, or their ``_forward``/``_backward`` pair), then
    with ``expose_outputs`` also ``output`` and ``selected`` where they differ from it
    (``output`` not with ``mask_zero``: it is in the compacted order)."""
    cfg = params.config
    pair = ("_forward", "_backward") if len(outputs) == 2 else ("",)
    named = [(f"output{p}", o, True) for p, o in zip(pair, outputs, strict=True)]
    selected = _selection(g, cfg, outputs, y_hs[-1], t_axis, params.dtype, seq_lens)
    if cfg.select != "sequence":
        named = [(f"selected{p}", o, False) for p, o in zip(pair, selected, strict=False)]
        if expose_outputs and not cfg.mask_zero:
            named += [(f"output{p}", o, True) for p, o in zip(pair, outputs, strict=True)]
    if params.head:
        y = _head(g, params, selected[0])
        named = [("y", y, cfg.select == "sequence"), *(named if expose_outputs else [])]
    return named


def _state_outputs(g: Any, cfg: RNNConfig, elem: int, which: str, finals: Sequence[str]
                   ) -> list[onnx.ValueInfoProto]:
    """The final states ``h_n`` (``which="h"``, every node's ``Y_h``) or the LSTM layers'
    cell states ``c_n`` (``"c"``, their ``Y_c``; ``""`` for the other layers in ``finals``):
    one ``Concat`` ``(S, N, M)`` / ``(C, N, M)`` when they share a width, else one
    ``{which}_n_l{l} (R_l, N, M_l)`` per layer that has them."""
    if which == "h":
        uniform, widths, count = cfg.uniform_hidden, cfg.output_sizes, cfg.num_states
    else:
        uniform, widths, count = cfg.uniform_cell, cfg.hidden_sizes, cfg.num_cell_states
    layers = [(li, f) for li, f in enumerate(finals) if f]
    if not layers:
        return []
    if uniform:
        g.nodes.append(helper.make_node("Concat", [f for _, f in layers], [f"{which}_n"],
                                        axis=0, name=g.name(f"{which}_n")))
        return [helper.make_tensor_value_info(f"{which}_n", elem,
                                              [count, "N", widths[layers[0][0]]])]
    result = []
    for li, final in layers:
        g.nodes.append(helper.make_node("Identity", [final], [f"{which}_n_l{li}"],
                                        name=g.name(which)))
        result.append(helper.make_tensor_value_info(
            f"{which}_n_l{li}", elem, [cfg.num_directions_of(li), "N", widths[li]]))
    return result


def _graph_outputs(g: Any, cfg: RNNConfig, elem: int, dims: tuple[str, str],
                   named: Sequence[tuple[str, str, bool]], y_hs: Sequence[str],
                   y_cs: Sequence[str], transpose: bool) -> list[onnx.ValueInfoProto]:
    """The graph's outputs: each of ``named`` (a sequence ``(N, T, .)``, time-major as
    ``dims`` says; else ``(N, .)``), then ``h_n (S, N, M)`` or ``h_n_l{l}`` per layer, then
    the LSTM layers' ``c_n (C, N, M)`` or ``c_n_l{l}``."""
    widths = {"output": cfg.output_features, "selected": cfg.selected_features,
              "y": cfg.output_size or 0}
    result = []
    for name, value, seq in named:
        width = widths.get(name, cfg.output_sizes[-1])
        if seq and transpose:
            g.nodes.append(helper.make_node("Transpose", [value], [name], name=g.name("out"),
                                            perm=[1, 0, 2]))
        else:
            g.nodes.append(helper.make_node("Identity", [value], [name], name=g.name("out")))
        shape: list[str | int] = [*dims, width] if seq else ["N", width]
        result.append(helper.make_tensor_value_info(name, elem, shape))
    return [*result, *_state_outputs(g, cfg, elem, "h", y_hs),
            *_state_outputs(g, cfg, elem, "c", y_cs)]


def _check_request(params: RNNParams, *, time_major: bool, lengths: bool, layout: int) -> None:
    cfg = params.config
    raise_if(onnx_unsupported(cfg, padded=lengths or cfg.mask_zero), NAME)
    if lengths and cfg.mask_zero:
        raise UnsupportedError(NAME, "a lengths input with mask_zero",
                               "the graph derives sequence_lens from the ids; put id 0 at the "
                               "padded steps instead")
    if time_major and cfg.mask_zero:
        raise UnsupportedError(NAME, "time_major=True with mask_zero",
                               "the graph compacts the ids batch-major; use time_major=False")
    if layout not in (0, 1) or (layout == 1 and time_major):
        raise ValueError(f"layout must be 0, or 1 with a batch-major graph (time_major=False); "
                         f"got layout={layout!r}, time_major={time_major}")
    if params.dtype not in _DTYPES:
        raise UnsupportedError(NAME, f"dtype {params.dtype}", "use float16, float32 or float64")


def write_network(params: RNNParams, *, time_major: bool = False, lengths: bool = False,
                  initial_state: bool = False, expose_outputs: bool = False, layout: int = 0
                  ) -> onnx.ModelProto:
    """The whole network as one ONNX model (opset 17); arguments as
    :func:`rnn_ref.backends.onnx.convert.to_native` documents them."""
    _check_request(params, time_major=time_major, lengths=lengths, layout=layout)
    cfg = params.config
    g = GraphBuilder(params.dtype)
    elem = _DTYPES[params.dtype]
    dims = ("T", "N") if time_major else ("N", "T")
    inputs, state_names = _graph_inputs(cfg, elem, dims, lengths=lengths,
                                        initial_state=initial_state)
    x, seq_lens = _network_input(g, params, time_major=time_major, layout=layout)
    seq_lens = seq_lens or ("lengths" if lengths else "")
    y_hs: list[str] = []
    y_cs: list[str] = []
    outputs: list[str] = []
    for li in range(cfg.num_layers):
        y, y_h, y_c = _layer_node(g, params, li, x, seq_lens=seq_lens,
                                  initial_state=initial_state, state_names=state_names,
                                  layout=layout)
        y_hs.append(y_h)
        y_cs.append(y_c)
        outputs = _merged(g, cfg, li, y, layout, params.dtype)
        x = outputs[0]
    t_axis = 1 if layout else 0
    if cfg.output_order == "processing":
        outputs = [g.op1("Slice", [o, g.const(g.name("start"), _i64(-1)),
                                   g.const(g.name("end"), _i64(np.iinfo(np.int64).min)),
                                   g.const(g.name("axes"), _i64(t_axis)),
                                   g.const(g.name("step"), _i64(-1))]) for o in outputs]
    named = _output_values(g, params, outputs, y_hs, t_axis, expose_outputs, seq_lens)
    graph_outputs = _graph_outputs(g, cfg, elem, dims, named, y_hs, y_cs,
                                   transpose=not (time_major or layout))
    graph = helper.make_graph(g.nodes, "rnn_ref", inputs, graph_outputs,
                              initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="rnn-ref")
    model.ir_version = 8
    helper.set_model_props(model, {"rnn_ref.config": cfg.to_json(),
                                   "rnn_ref.time_major": str(time_major)})
    onnx.checker.check_model(model)
    return model


def graph_result(cfg: RNNConfig, got: dict[str, np.ndarray[Any, Any]]) -> ForwardResult:
    """A :class:`ForwardResult` from the outputs (by name) of a :func:`write_network` graph
    written with ``expose_outputs=True`` (``outputs`` is ``None`` where the graph shows no
    per-step outputs: ``mask_zero``; ``c_n`` is ``None`` without LSTM layers)."""
    def states(which: str, uniform: bool, has: Sequence[bool]) -> Any:
        if not any(has):
            return None
        if uniform:
            return np.asarray(got[f"{which}_n"])
        return tuple(np.asarray(h) for li in range(cfg.num_layers) if has[li]
                     for h in got[f"{which}_n_l{li}"])

    h_n = states("h", cfg.uniform_hidden, [True] * cfg.num_layers)
    c_n = states("c", cfg.uniform_cell, [c.kind == "lstm" for c in cfg.cells])

    def one_or_pair(name: str) -> Any:
        if name in got:
            return np.asarray(got[name])
        return np.asarray(got[f"{name}_forward"]), np.asarray(got[f"{name}_backward"])

    outputs = one_or_pair("output") if any(k.startswith("output") for k in got) else None
    selected = outputs if cfg.select == "sequence" else one_or_pair("selected")
    y = got.get("y")
    return ForwardResult(outputs, h_n, None if y is None else np.asarray(y), selected, c_n)
