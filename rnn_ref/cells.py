r"""The three cells and their switches: :class:`CellSpec`, the gate names, and the frameworks'
gate orders (docs/spec.md section 2.7).

A layer's cell is one of :data:`CELLS`:

``"elman"``  ``h_t = f(x_t W_x + b_x + h_{t-1} W_h + b_h)``                (spec 2.1)
``"gru"``    gates z (update), r (reset), candidate n                     (spec 2.7.1)
``"lstm"``   gates i (input), f (forget), g (candidate), o (output)     (spec 2.7.2)

The canonical parameters name every gate's block (``w_x["z"]``, ``w_h["f"]``, ...), never a
packed matrix in one framework's order, so a missed permutation is a refusal rather than a
silent transpose. Frameworks pack the blocks on one axis in their own order;
:data:`GATE_ORDERS` records each order with its source, and :func:`unpack` / :func:`pack` are
the only way in and out of a packed matrix: they take the order by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CELLS", "GATES", "GATE_ORDERS", "CellSpec", "pack", "unpack"]

Array = npt.NDArray[np.floating]

#: The cells a layer may have.
CELLS: tuple[str, ...] = ("elman", "gru", "lstm")

#: The canonical gate blocks of each cell, in canonical order: the GRU's update gate z, reset
#: gate r and candidate n (ONNX calls it h); the LSTM's input gate i, forget gate f, candidate g
#: (ONNX and Keras call it c) and output gate o. An Elman cell is one block, ``"h"``.
GATES: Mapping[str, tuple[str, ...]] = {
    "elman": ("h",),
    "gru": ("z", "r", "n"),
    "lstm": ("i", "f", "g", "o"),
}

#: How each framework packs the blocks on its gate axis, in canonical gate names, with the
#: source of each fact (../shared/GATED.md has the measurements).
GATE_ORDERS: Mapping[str, tuple[tuple[str, ...], str]] = {
    "gru:onnx": (("z", "r", "n"), "onnx/docs/Operators.md, GRU: W = [Wz, Wr, Wh]"),
    "gru:keras": (("z", "r", "n"), "keras/src/layers/rnn/gru.py: kernel[:, :units] is z, "
                                   "then r, then h"),
    "gru:torch": (("r", "z", "n"), "torch.nn.GRU docs: weight_ih_l[k] = (W_ir|W_iz|W_in)"),
    "gru:mlx": (("r", "z", "n"), "mlx/python/mlx/nn/layers/recurrent.py, GRU: Wx is r, z, n"),
    "gru:flax_nnx": (("r", "z", "n"), "flax/nnx/nn/recurrent.py, GRUCell: dense_i and dense_h "
                                      "of 3 * hidden_features split into r, z, n (flax 0.12.8)"),
    "gru:cudnn": (("r", "z", "n"), "cuDNN cudnnRNNForward, CUDNN_GRU: r, z, h'"),
    "gru:openvino": (("z", "r", "n"), "OpenVINO GRUSequence-5: W = [Wz, Wr, Wh]"),
    "lstm:onnx": (("i", "o", "f", "g"), "onnx/docs/Operators.md, LSTM: W = [Wi, Wo, Wf, Wc]"),
    "lstm:torch": (("i", "f", "g", "o"), "torch.nn.LSTM docs: weight_ih_l[k] = "
                                         "(W_ii|W_if|W_ig|W_io)"),
    "lstm:keras": (("i", "f", "g", "o"), "keras/src/layers/rnn/lstm.py: i, f, c, o"),
    "lstm:mlx": (("i", "f", "g", "o"), "mlx/python/mlx/nn/layers/recurrent.py, LSTM: i, f, g, o"),
    "lstm:flax_optimized": (("i", "f", "g", "o"), "flax/nnx/nn/recurrent.py, OptimizedLSTMCell: "
                                                  "dense_i and dense_h of 4 * hidden_features "
                                                  "split into i, f, g, o (flax 0.12.8)"),
    "lstm:cudnn": (("i", "f", "g", "o"), "cuDNN cudnnRNNForward, CUDNN_LSTM: i, f, g, o"),
    "lstm:openvino": (("f", "i", "g", "o"), "OpenVINO LSTMSequence-5: gate order fico"),
    "lstm:tf1": (("i", "g", "f", "o"), "tensorflow BasicLSTMCell: i, j, f, o "
                                       "(tensorflow #29308)"),
    "lstm:coreml": (("i", "f", "o", "g"), "coremltools MIL lstm: i, f, o, z"),
    "lstm:onnx_peepholes": (("i", "o", "f"), "onnx/docs/Operators.md, LSTM: P = [Pi, Po, Pf]"),
}


def _order(order: str | Sequence[str], cell: str) -> tuple[str, ...]:
    """An order given by name (``"gru:torch"``) or as gate names, checked against ``cell``."""
    if isinstance(order, str):
        if order not in GATE_ORDERS:
            known = sorted(k for k in GATE_ORDERS if k.startswith(f"{cell}:"))
            raise ValueError(f"gate order {order!r} is not recorded; known for {cell}: {known}")
        names = GATE_ORDERS[order][0]
    else:
        names = tuple(order)
    gates = set(GATES[cell]) | ({"i", "o", "f"} if cell == "lstm" else set())
    if len(set(names)) != len(names) or not set(names) <= gates:
        raise ValueError(f"gate order {list(names)} is not an order of {cell} gates "
                         f"{list(GATES[cell])}")
    return names


def unpack(packed: Any, order: str | Sequence[str], *, cell: str, axis: int = -1
           ) -> dict[str, Array]:
    """Split a framework's packed gate matrix into named blocks.

    Args:
        packed: an array whose ``axis`` holds G equal blocks (G the gates of ``order``).
        order: a key of :data:`GATE_ORDERS` (``"lstm:onnx"``) or the gate names in the packed
            order.
        cell: ``"gru"`` or ``"lstm"``.
        axis: the gate axis (of size G*M).

    Returns:
        ``{gate: block}`` with each block of size M on ``axis`` (copies).

    Raises:
        ValueError: an unknown order, or an axis that does not split into G blocks.
    """
    names = _order(order, cell)
    arr = np.asarray(packed)
    size = arr.shape[axis]
    if size % len(names):
        raise ValueError(f"a packed {cell} matrix of {size} on its gate axis does not split into "
                         f"{len(names)} gates {list(names)}")
    blocks = np.split(arr, len(names), axis=axis)
    return {name: np.array(block) for name, block in zip(names, blocks, strict=True)}


def pack(blocks: Mapping[str, Any], order: str | Sequence[str], *, cell: str, axis: int = -1
         ) -> Array:
    """The inverse of :func:`unpack`: the blocks concatenated on ``axis`` in ``order``.

    Raises:
        ValueError: a gate of ``order`` missing from ``blocks``.
    """
    names = _order(order, cell)
    missing = [n for n in names if n not in blocks]
    if missing:
        raise ValueError(f"cannot pack {cell} gates {list(names)}: {missing} not given")
    return np.concatenate([np.asarray(blocks[n]) for n in names], axis=axis)


@dataclass(frozen=True)
class CellSpec:
    """One layer's cell and its switches (spec 2.7), validated.

    Attributes:
        kind: one of :data:`CELLS`.
        reset_after: GRU only: the reset gate multiplies the recurrent product and its bias
            (``r * (h W_hn + b_hn)``: torch, cuDNN, Keras ``reset_after=True``, ONNX
            ``linear_before_reset=1``) rather than the state before the product
            (``(r * h) W_hn + b_hn``: Keras ``reset_after=False``, ONNX's default 0).
        peepholes: LSTM only: the gates i, f see ``c_{t-1}`` and o sees ``c_t`` through the
            diagonal weights ``p`` (ONNX ``P``).
        input_forget: LSTM only: the forget gate is ``1 - i`` (ONNX ``input_forget=1``); the
            forget gate then has no weights.
        proj_size: LSTM only: P, the state is projected ``h_t = (o * h(c_t)) W_proj`` to P
            units (torch ``proj_size``); ``None`` for none.
    """

    kind: str
    reset_after: bool = True
    peepholes: bool = False
    input_forget: bool = False
    proj_size: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in CELLS:
            raise ValueError(f"cell must be one of {list(CELLS)}, got {self.kind!r}")
        for name in ("reset_after", "peepholes", "input_forget"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        p = self.proj_size
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, np.integer))
                              or p < 1):
            raise ValueError(f"proj_size must be a positive int or None, got {p!r}")
        if p is not None:
            object.__setattr__(self, "proj_size", int(p))

    @property
    def gates(self) -> tuple[str, ...]:
        """The gate blocks this cell has weights for (an LSTM with ``input_forget`` has no f)."""
        if self.kind == "lstm" and self.input_forget:
            return ("i", "g", "o")
        return GATES[self.kind]

    @property
    def peephole_gates(self) -> tuple[str, ...]:
        """The gates with a peephole weight (none without peepholes; no f with
        ``input_forget``)."""
        if not self.peepholes:
            return ()
        return ("i", "o") if self.input_forget else ("i", "f", "o")

    @property
    def num_activations(self) -> int:
        """How many activations the cell applies: f (Elman); f, g (GRU); f, g, h (LSTM)."""
        return {"elman": 1, "gru": 2, "lstm": 3}[self.kind]

    def describe(self) -> str:
        """``"lstm, peepholes, proj 3"``, the switches that differ from the plain cell."""
        parts = [self.kind]
        if self.kind == "gru":
            parts.append("reset after" if self.reset_after else "reset before")
        if self.peepholes:
            parts.append("peepholes")
        if self.input_forget:
            parts.append("input_forget")
        if self.proj_size is not None:
            parts.append(f"proj {self.proj_size}")
        return ", ".join(parts)
