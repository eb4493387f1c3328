"""Canonical parameters: :class:`CellParams` (Elman), :class:`GRUParams`, :class:`LSTMParams`,
:class:`Readout`, :class:`RNNParams`, :func:`init`.

Canonical storage (docs/spec.md section 3) is (in, out) orientation with **two biases** per
cell; an Elman cell:

* ``w_x``: shape ``(D_l, M)``, the input kernel (``D_l = D`` for layer 0, else the merged
  width of the layer below, ``R*M`` for ``concat``);
* ``w_h``: shape ``(M, M)``, the recurrent kernel, applied as ``h_{t-1} @ w_h``;
* ``b_x``, ``b_h``: shape ``(M,)``, the input and recurrent biases (torch's ``bias_ih`` and
  ``bias_hh``; Keras has one bias, which is ``b_x + b_h``).

A GRU or LSTM cell stores the same four arrays **per gate**, as named blocks
(``w_x["z"]``, ``b_h["n"]``, ``w_h["f"]``, ...; spec section 3.7), never a packed matrix in
one framework's order; an LSTM adds its peephole vectors ``p[i|f|o]`` ``(M,)`` and its
projection ``w_proj`` ``(M, P)`` when it has them, and its recurrent blocks are then
``(P, M)``.

Every array is copied on construction and made read-only, so an ``RNNParams`` never changes
after it has been validated. Non-finite values (nan, inf) anywhere in the weights are rejected:
every output of every step would be poisoned by them.

Around the cells: the embedding table ``(V, D)`` (row i is the vector of token id i), and one
:class:`Readout` ``(w (F, K), b (K,))`` per head layer, in the same (in, out) orientation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from rnn_ref.cells import GATES, CellSpec
from rnn_ref.config import RNNConfig

__all__ = ["AnyCellParams", "CellParams", "GRUParams", "LSTMParams", "RNNParams", "Readout",
           "init"]

Array = npt.NDArray[np.floating]


def _as_weight(value: Any, where: str) -> Array:
    """Copy to a read-only floating array; integers become float64, anything else raises."""
    try:
        arr = np.array(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{where}: cannot be read as an array ({exc})") from None
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    if arr.dtype.kind != "f":
        raise TypeError(f"{where}: expected a floating array, got dtype {arr.dtype}")
    arr.flags.writeable = False
    return arr


def _check_shape(arr: Array, shape: tuple[int, ...], where: str, meaning: str) -> None:
    """``meaning`` names the axes, e.g. ``"(M, M) with M=4 from w_x"``."""
    if arr.shape != shape:
        raise ValueError(f"{where} has shape {arr.shape}, expected {shape}: {meaning}")


def _check_finite(arr: Array, where: str) -> None:
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(
            f"{where} holds a non-finite value ({arr[bad].item()!r} at index {bad}); "
            f"it would poison every output"
        )


@dataclass(frozen=True)
class CellParams:
    """The weights of one layer in one direction, in canonical layout.

    Attributes:
        w_x: input kernel, shape ``(D_l, M)``.
        w_h: recurrent kernel, shape ``(M, M)``.
        b_x: input bias, shape ``(M,)``.
        b_h: recurrent bias, shape ``(M,)``.
    """

    w_x: Array
    w_h: Array
    b_x: Array
    b_h: Array

    def __post_init__(self) -> None:
        for name in ("w_x", "w_h", "b_x", "b_h"):
            object.__setattr__(self, name, _as_weight(getattr(self, name), name))
        if self.w_x.ndim != 2:
            raise ValueError(f"w_x must be 2-D (D_l, M), got shape {self.w_x.shape}")
        m = self.w_x.shape[1]
        _check_shape(self.w_h, (m, m), "w_h", f"(M, M) with M={m} from w_x")
        _check_shape(self.b_x, (m,), "b_x", f"(M,) with M={m} from w_x")
        _check_shape(self.b_h, (m,), "b_h", f"(M,) with M={m} from w_x")

    kind: ClassVar[str] = "elman"

    def arrays(self) -> dict[str, Array]:
        return {"w_x": self.w_x, "w_h": self.w_h, "b_x": self.b_x, "b_h": self.b_h}

    @property
    def hidden_size(self) -> int:
        return int(self.w_x.shape[1])


Blocks = Mapping[str, Array]
"""A gated cell's blocks of one kind, gate name to array (read-only)."""


def _blocks(value: Any, gates: tuple[str, ...], where: str) -> Blocks:
    """``value`` as a read-only mapping of exactly ``gates`` to read-only arrays."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be a mapping of gate name to array {list(gates)}, got "
                        f"{type(value).__name__} (a packed matrix is never read: split it "
                        f"with rnn_ref.cells.unpack, naming its gate order)")
    if set(value) != set(gates):
        raise ValueError(f"{where} has gates {sorted(value)}, expected {list(gates)}")
    return MappingProxyType({g: _as_weight(value[g], f"{where}[{g!r}]") for g in gates})


@dataclass(frozen=True)
class _GatedParams:
    """The per-gate blocks both gated cells have (spec 3.7)."""

    w_x: Blocks
    w_h: Blocks
    b_x: Blocks
    b_h: Blocks
    kind: ClassVar[str]

    def _check_blocks(self, gates: tuple[str, ...], p: int | None = None) -> int:
        """Validate the four block mappings over ``gates``; returns M. ``p`` is the recurrent
        blocks' row count (P of a projected LSTM; default M)."""
        for name in ("w_x", "w_h", "b_x", "b_h"):
            object.__setattr__(self, name, _blocks(getattr(self, name), gates, name))
        first = self.w_x[gates[0]]
        if first.ndim != 2:
            raise ValueError(f"w_x[{gates[0]!r}] must be 2-D (D_l, M), got shape {first.shape}")
        d, m = first.shape
        rows = m if p is None else p
        for g in gates:
            _check_shape(self.w_x[g], (d, m), f"w_x[{g!r}]", f"(D_l, M) = ({d}, {m}) from "
                         f"w_x[{gates[0]!r}]")
            _check_shape(self.w_h[g], (rows, m), f"w_h[{g!r}]",
                         f"({'P' if p is not None else 'M'}, M) with M={m} from w_x")
            _check_shape(self.b_x[g], (m,), f"b_x[{g!r}]", f"(M,) with M={m} from w_x")
            _check_shape(self.b_h[g], (m,), f"b_h[{g!r}]", f"(M,) with M={m} from w_x")
        return int(m)

    def arrays(self) -> dict[str, Array]:
        """``{"w_x.z": ..., "w_h.z": ..., ...}``: every block, named ``kind.gate``."""
        return {f"{name}.{g}": arr for name in ("w_x", "w_h", "b_x", "b_h")
                for g, arr in getattr(self, name).items()}

    @property
    def gates(self) -> tuple[str, ...]:
        return tuple(self.w_x)

    @property
    def hidden_size(self) -> int:
        """M."""
        return int(next(iter(self.w_x.values())).shape[1])


@dataclass(frozen=True)
class GRUParams(_GatedParams):
    """The weights of one GRU layer in one direction (spec 2.7.1, 3.7).

    Attributes:
        w_x: ``{"z", "r", "n"}`` input kernels, each ``(D_l, M)``.
        w_h: recurrent kernels, each ``(M, M)``, applied as ``h_{t-1} @ w_h[g]``.
        b_x: input biases, each ``(M,)``.
        b_h: recurrent biases, each ``(M,)``; ``b_h["n"]`` sits inside ``r *`` in a
            reset-after GRU, so it is not interchangeable with ``b_x["n"]`` there.
    """

    kind: ClassVar[str] = "gru"

    def __post_init__(self) -> None:
        self._check_blocks(GATES["gru"])


@dataclass(frozen=True)
class LSTMParams(_GatedParams):
    """The weights of one LSTM layer in one direction (spec 2.7.2, 3.7).

    Attributes:
        w_x: ``{"i", "f", "g", "o"}`` input kernels, each ``(D_l, M)`` (no ``"f"`` for a
            cell with ``input_forget``, whose forget gate is ``1 - i``).
        w_h: recurrent kernels, each ``(M, M)``, or ``(P, M)`` with a projection.
        b_x, b_h: input and recurrent biases, each ``(M,)``.
        p: the peephole vectors ``{"i", "f", "o"}`` (no ``"f"`` with ``input_forget``), each
            ``(M,)``; ``None`` without peepholes.
        w_proj: the projection ``(M, P)``, ``h_t = (o * h(c_t)) @ w_proj`` (torch's
            ``weight_hr`` transposed); ``None`` without one.
    """

    p: Blocks | None = None
    w_proj: Array | None = None
    kind: ClassVar[str] = "lstm"

    def __post_init__(self) -> None:
        if not isinstance(self.w_x, Mapping):
            _blocks(self.w_x, GATES["lstm"], "w_x")  # raises the packed-matrix message
        gates = ("i", "g", "o") if set(self.w_x) == {"i", "g", "o"} else GATES["lstm"]
        proj = None
        if self.w_proj is not None:
            object.__setattr__(self, "w_proj", _as_weight(self.w_proj, "w_proj"))
            assert self.w_proj is not None
            if self.w_proj.ndim != 2:
                raise ValueError(f"w_proj must be 2-D (M, P), got shape {self.w_proj.shape}")
            proj = int(self.w_proj.shape[1])
        m = self._check_blocks(gates, proj)
        if self.w_proj is not None:
            _check_shape(self.w_proj, (m, proj or 0), "w_proj", f"(M, P) with M={m} from w_x")
        if self.p is not None:
            peeps = ("i", "o") if "f" not in gates else ("i", "f", "o")
            object.__setattr__(self, "p", _blocks(self.p, peeps, "p"))
            assert self.p is not None
            for g, arr in self.p.items():
                _check_shape(arr, (m,), f"p[{g!r}]", f"(M,) with M={m} from w_x")

    def arrays(self) -> dict[str, Array]:
        """Every block named ``kind.gate`` (``p.i``, ...), then ``w_proj``."""
        out = super().arrays()
        if self.p is not None:
            out.update({f"p.{g}": arr for g, arr in self.p.items()})
        if self.w_proj is not None:
            out["w_proj"] = self.w_proj
        return out

    @property
    def output_size(self) -> int:
        """P with a projection, else M: the width of the state h."""
        return self.hidden_size if self.w_proj is None else int(self.w_proj.shape[1])


AnyCellParams = CellParams | GRUParams | LSTMParams
"""One layer's weights in one direction, of whichever cell."""
_CELL_CLASSES: Mapping[str, type[CellParams] | type[GRUParams] | type[LSTMParams]] = {
    "elman": CellParams, "gru": GRUParams, "lstm": LSTMParams}


@dataclass(frozen=True)
class Readout:
    """The weights of one dense layer of the head: ``y = g(s @ w + b)`` (the first one is
    Elman's readout).

    Attributes:
        w: shape ``(F, K)``, F the selection's width for the first layer (the last layer's
            merged width, ``R*M`` for ``concat``), else the units of the layer below.
        b: shape ``(K,)``.
    """

    w: Array
    b: Array

    def __post_init__(self) -> None:
        object.__setattr__(self, "w", _as_weight(self.w, "readout.w"))
        object.__setattr__(self, "b", _as_weight(self.b, "readout.b"))
        if self.w.ndim != 2:
            raise ValueError(f"readout.w must be 2-D (F, K), got shape {self.w.shape}")
        _check_shape(self.b, (self.w.shape[1],), "readout.b", "(K,) with K from readout.w")

    def arrays(self) -> dict[str, Array]:
        return {"w": self.w, "b": self.b}


def _checked_layer(cfg: RNNConfig, li: int, layer: Any) -> tuple[AnyCellParams, ...]:
    """Layer ``li`` of ``cfg`` as a tuple of its R cells, each checked by :func:`_check_cell`.

    Raises:
        ValueError: ``layer`` is not a sequence of R (the config's directions) entries.
    """
    R = cfg.num_directions_of(li)
    if not isinstance(layer, Sequence) or len(layer) != R:
        n = len(layer) if isinstance(layer, Sequence) else type(layer).__name__
        raise ValueError(
            f"layers[{li}] must hold {R} CellParams (one per direction of a "
            f"{cfg.directions[li]} layer), got {n}"
        )
    for r, cell in enumerate(layer):
        _check_cell(cfg, li, r, cell)
    return tuple(layer)


def _check_cell(cfg: RNNConfig, li: int, r: int, cell: Any) -> None:
    """Check the cell of layer ``li``, direction ``r`` against ``cfg``: the class of the
    layer's cell; ``w_x`` of shape ``(D_l, M)`` and ``w_h`` of shape ``(M, M)`` (per gate for
    a gated cell, ``(P, M)`` when projected); the gates, peepholes and projection the switches
    call for; finite arrays; zero biases when ``cfg.bias`` is False.

    Raises:
        TypeError: ``cell`` is not the layer's cell class.
        ValueError: a shape, a gate set, a non-finite value or a non-zero bias of a bias-free
            config.
    """
    where = f"layers[{li}][{r}]"
    spec = cfg.cell_of(li)
    cls = _CELL_CLASSES[spec.kind]
    if not isinstance(cell, cls):
        got = type(cell).__name__
        raise TypeError(f"{where} must be rnn_ref.{cls.__name__} (layer {li} is "
                        f"{spec.kind!r}), got {got}")
    d, m, p = cfg.layer_input_size(li), cfg.hidden_sizes[li], cfg.output_sizes[li]
    if isinstance(cell, CellParams):
        _check_shape(cell.w_x, (d, m), f"{where}.w_x", "(D_l, M)")
        _check_shape(cell.w_h, (m, m), f"{where}.w_h", "(M, M)")
    else:
        _check_gated(spec, cell, where, d, m, p)
    for name, arr in cell.arrays().items():
        _check_finite(arr, f"{where}.{name}")
    if not cfg.bias and any(np.any(a) for n, a in cell.arrays().items() if n.startswith("b_")):
        raise ValueError(
            f"{where} has non-zero biases but config.bias is False; "
            f"a bias-free network must have zero biases"
        )


def _check_gated(spec: CellSpec, cell: GRUParams | LSTMParams, where: str, d: int, m: int,
                 p: int) -> None:
    """A gated cell's gates, shapes, peepholes and projection against its layer's switches."""
    if set(cell.gates) != set(spec.gates):
        why = (" (input_forget: the forget gate is 1 - i and has no weights)"
               if spec.input_forget else "")
        raise ValueError(f"{where} has gates {list(cell.gates)}, the layer's cell "
                         f"({spec.describe()}) has {list(spec.gates)}{why}")
    if isinstance(cell, LSTMParams):
        if (cell.p is not None) != spec.peepholes:
            raise ValueError(f"{where}: the layer {'has' if spec.peepholes else 'has no'} "
                             f"peepholes (config.peepholes), the cell "
                             f"{'has none' if cell.p is None else 'has p'}")
        if (cell.w_proj is not None) != (spec.proj_size is not None):
            raise ValueError(f"{where}: config.proj_size is {spec.proj_size}, the cell "
                             f"{'has no w_proj' if cell.w_proj is None else 'has a w_proj'}")
    first = spec.gates[0]
    _check_shape(cell.w_x[first], (d, m), f"{where}.w_x[{first!r}]", "(D_l, M)")
    _check_shape(cell.w_h[first], (p, m), f"{where}.w_h[{first!r}]",
                 "(P, M), P the projection" if spec.proj_size is not None else "(M, M)")


def _check_head(cfg: RNNConfig, head: tuple[Any, ...]) -> None:
    """Check one :class:`Readout` per head layer of ``cfg``, layer j's ``w`` of shape
    ``(F_j, K_j)`` (F_0 the selection's width, then the previous layer's units), finite arrays,
    a zero ``b`` where the layer has no bias.

    Raises:
        TypeError: an entry is not a :class:`Readout`.
        ValueError: a count, a shape, a non-finite value or a non-zero bias.
    """
    if len(head) != len(cfg.head):
        raise ValueError(f"head has {len(head)} layer(s) of weights, config.head has "
                         f"{len(cfg.head)}")
    for j, (dense, weights) in enumerate(zip(cfg.head, head, strict=True)):
        where = f"head[{j}]"
        if not isinstance(weights, Readout):
            raise TypeError(f"{where} must be rnn_ref.Readout(w, b), got {type(weights).__name__}")
        f, k = cfg.head_input_size(j), dense.units
        meaning = "(F, K), F the selection's width" if j == 0 else "(F, K), F the layer below"
        _check_shape(weights.w, (f, k), f"{where}.w", meaning)
        _check_shape(weights.b, (k,), f"{where}.b", "(K,)")
        for name, arr in weights.arrays().items():
            _check_finite(arr, f"{where}.{name}")
        if not dense.bias and np.any(weights.b):
            raise ValueError(f"{where}.b is non-zero but config.head[{j}] has no bias")


def _check_embedding(cfg: RNNConfig, embedding: Any) -> Array | None:
    """The ``(V, D)`` table, given exactly when ``cfg.vocab_size`` is set, finite."""
    if cfg.vocab_size is None:
        if embedding is not None:
            raise ValueError("embedding is given but config.vocab_size is None")
        return None
    if embedding is None:
        raise ValueError(f"config.vocab_size={cfg.vocab_size} needs embedding, a "
                         f"({cfg.vocab_size}, {cfg.input_size}) table")
    table = _as_weight(embedding, "embedding")
    _check_shape(table, (cfg.vocab_size, cfg.input_size), "embedding", "(V, D)")
    _check_finite(table, "embedding")
    return table


@dataclass(frozen=True, init=False)
class RNNParams:
    """A config plus its canonical arrays, validated on construction and immutable.

    Args:
        config: the architecture.
        layers: L sequences (one per layer) of R_l cells (one per direction:
            0 forward, 1 backward; a reverse layer has its one cell at index 0).
        readout: shorthand for a one-layer ``head``.
        embedding: the ``(V, D)`` table, exactly when ``config.vocab_size`` is set.
        head: one :class:`Readout` ``(w, b)`` per layer of ``config.head``.

    Every array must have the same floating dtype. Shapes are checked against the config
    (``w_x`` of layer l is ``(config.layer_input_size(l), M_l)``), a bias-free config requires
    all-zero biases, and non-finite weights are rejected.

    ``params.layers[l][r]`` is the cell of layer l, direction r; ``params.head[j]`` the weights
    of head layer j.
    """

    config: RNNConfig
    layers: tuple[tuple[AnyCellParams, ...], ...]
    embedding: Array | None
    head: tuple[Readout, ...]

    def __init__(self, config: RNNConfig, layers: Sequence[Sequence[AnyCellParams]],
                 readout: Readout | None = None, *, embedding: Any = None,
                 head: Sequence[Readout] | None = None) -> None:
        cfg = config
        if not isinstance(cfg, RNNConfig):
            raise TypeError(f"config must be an rnn_ref.RNNConfig, got {type(cfg).__name__}")
        if not isinstance(layers, Sequence) or isinstance(layers, (str, bytes)):
            raise TypeError(f"layers must be a sequence of layers, got {type(layers).__name__}")
        L = cfg.num_layers
        if len(layers) != L:
            raise ValueError(f"layers has {len(layers)} entries, config has {L} layer(s)")
        checked = tuple(_checked_layer(cfg, li, layer) for li, layer in enumerate(layers))
        if readout is not None and head is not None:
            raise ValueError("give the head weights either as readout= or as head=, not both")
        if head is None:
            if readout is None and cfg.head:
                raise ValueError(
                    f"config.head has {len(cfg.head)} layer(s) ({', '.join(map(str, cfg.head))}) "
                    f"and no weights were given: pass head=[rnn_ref.Readout(w, b), ...] (or "
                    f"readout=rnn_ref.Readout(w, b) for one layer)")
            head = () if readout is None else (readout,)
        if isinstance(head, (str, bytes)) or not isinstance(head, Sequence):
            raise TypeError(f"head must be a sequence of rnn_ref.Readout, got {head!r}")
        head = tuple(head)
        if head and not cfg.head:
            raise ValueError("head weights are given but the config has no head "
                             "(config.output_size is None)")
        _check_head(cfg, head)
        table = _check_embedding(cfg, embedding)
        for name, value in (("config", cfg), ("layers", checked), ("embedding", table),
                            ("head", head)):
            object.__setattr__(self, name, value)
        dtypes = {arr.dtype for _, arr in self.named_arrays()}
        if len(dtypes) != 1:
            listing = ", ".join(f"{n}: {a.dtype}" for n, a in self.named_arrays())
            raise TypeError(f"all arrays must share one dtype, got {listing}")

    # -- access ---------------------------------------------------------------------------
    @property
    def readout(self) -> Readout | None:
        """The weights of a one-layer head (the readout); ``None`` without a head.

        Raises:
            ValueError: the head has several layers (read :attr:`head`).
        """
        if len(self.head) > 1:
            raise ValueError(f"the head has {len(self.head)} layers; read params.head")
        return self.head[0] if self.head else None

    def elman_cell(self, layer: int, direction: int) -> CellParams:
        """The Elman cell of layer ``layer``, direction ``direction``, for code that writes
        Elman cells only.

        Raises:
            TypeError: that layer is a GRU or an LSTM (a writer reached it without checking
                ``config.cells``).
        """
        cell = self.layers[layer][direction]
        if not isinstance(cell, CellParams):
            raise TypeError(f"layers[{layer}][{direction}] is a {cell.kind.upper()} cell; this "
                            f"code writes Elman cells only")
        return cell

    @property
    def dtype(self) -> np.dtype[Any]:
        """The one dtype of every array."""
        return next(iter(self.layers[0][0].arrays().values())).dtype

    def named_arrays(self) -> Iterator[tuple[str, Array]]:
        """``("embedding", table)`` with an embedding, then
        ``("layers.{l}.{r}.{w_x|w_h|b_x|b_h}", array)`` of an Elman cell (of a gated cell
        ``layers.{l}.{r}.w_x.{gate}`` and so on, ``layers.{l}.{r}.p.{gate}`` and
        ``layers.{l}.{r}.w_proj``), then ``("head.{j}.{w|b}", array)``."""
        if self.embedding is not None:
            yield "embedding", self.embedding
        for li, layer in enumerate(self.layers):
            for r, cell in enumerate(layer):
                for name, arr in cell.arrays().items():
                    yield f"layers.{li}.{r}.{name}", arr
        for j, weights in enumerate(self.head):
            for name, arr in weights.arrays().items():
                yield f"head.{j}.{name}", arr

    @classmethod
    def from_arrays(cls, config: RNNConfig, arrays: Mapping[str, Any]) -> RNNParams:
        """Inverse of :meth:`named_arrays`: missing or extra names raise ``ValueError``. The
        names of the first format, ``readout.w`` and ``readout.b``, are read as ``head.0``."""
        arrays = dict(arrays)
        if len(config.head) == 1 and {"readout.w", "readout.b"} <= set(arrays) \
                and not {"head.0.w", "head.0.b"} & set(arrays):
            arrays["head.0.w"] = arrays.pop("readout.w")
            arrays["head.0.b"] = arrays.pop("readout.b")
        expected = set(_array_names(config))
        missing, extra = expected - set(arrays), set(arrays) - expected
        if missing or extra:
            raise ValueError(
                f"arrays do not match the config: missing {sorted(missing)}, "
                f"unexpected {sorted(extra)}"
            )
        layers = [
            [_cell_from_arrays(config.cell_of(li), arrays, f"layers.{li}.{r}")
             for r in range(config.num_directions_of(li))]
            for li in range(config.num_layers)
        ]
        head = [Readout(arrays[f"head.{j}.w"], arrays[f"head.{j}.b"])
                for j in range(len(config.head))]
        return cls(config, layers, embedding=arrays.get("embedding"), head=head)

    def astype(self, dtype: npt.DTypeLike) -> RNNParams:
        """A copy with every array cast to ``dtype`` (a floating dtype)."""
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"dtype must be a floating dtype, got {dt}")
        return RNNParams.from_arrays(
            self.config, {n: a.astype(dt) for n, a in self.named_arrays()}
        )

    def replace(self, **config_changes: Any) -> RNNParams:
        """The same arrays under a config with some fields changed, validated again.

        For the semantic fields (``padded_output``, ``output_order``, ``activation``, ...),
        e.g. ``params.replace(padded_output="zeros")`` to accept a target's padding.
        """
        return RNNParams(self.config.replace(**config_changes), self.layers,
                         embedding=self.embedding, head=self.head)

    def num_parameters(self, convention: Literal["keras", "torch"] = "torch") -> int:
        """See :meth:`RNNConfig.num_parameters`."""
        return self.config.num_parameters(convention)

    def __eq__(self, other: object) -> bool:
        """Same config and bit-identical arrays of the same dtypes."""
        if not isinstance(other, RNNParams) or other.config != self.config:
            return False
        mine, theirs = dict(self.named_arrays()), dict(other.named_arrays())
        return mine.keys() == theirs.keys() and all(
            mine[k].dtype == theirs[k].dtype and np.array_equal(mine[k], theirs[k])
            for k in mine
        )

    __hash__ = None  # type: ignore[assignment]


def _cell_names(spec: CellSpec) -> list[str]:
    """The array names of one cell of ``spec``, relative to ``layers.{l}.{r}``."""
    if spec.kind == "elman":
        return ["w_x", "w_h", "b_x", "b_h"]
    names = [f"{n}.{g}" for n in ("w_x", "w_h", "b_x", "b_h") for g in spec.gates]
    names += [f"p.{g}" for g in spec.peephole_gates]
    return names + (["w_proj"] if spec.proj_size is not None else [])


def _cell_from_arrays(spec: CellSpec, arrays: Mapping[str, Any], prefix: str) -> AnyCellParams:
    """One cell of ``spec`` from the named arrays under ``prefix`` (``layers.{l}.{r}``)."""
    def get(name: str) -> Any:
        return arrays[f"{prefix}.{name}"]

    if spec.kind == "elman":
        return CellParams(*(get(n) for n in ("w_x", "w_h", "b_x", "b_h")))
    blocks = {n: {g: get(f"{n}.{g}") for g in spec.gates} for n in ("w_x", "w_h", "b_x", "b_h")}
    if spec.kind == "gru":
        return GRUParams(**blocks)
    peeps = {g: get(f"p.{g}") for g in spec.peephole_gates} if spec.peepholes else None
    return LSTMParams(**blocks, p=peeps,
                      w_proj=get("w_proj") if spec.proj_size is not None else None)


def _array_names(config: RNNConfig) -> Iterator[str]:
    if config.vocab_size is not None:
        yield "embedding"
    for li in range(config.num_layers):
        for r in range(config.num_directions_of(li)):
            for n in _cell_names(config.cell_of(li)):
                yield f"layers.{li}.{r}.{n}"
    for j in range(len(config.head)):
        yield f"head.{j}.w"
        yield f"head.{j}.b"


def _orthogonal(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    """Keras' ``Orthogonal`` initializer for a square matrix: Q of a Gaussian, signs fixed."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def init(
    config: RNNConfig,
    seed: int = 0,
    scheme: Literal["torch", "keras"] = "torch",
    dtype: npt.DTypeLike = np.float32,
) -> RNNParams:
    """Random parameters for ``config``, reproducible from ``seed``.

    Args:
        config: the architecture.
        seed: seed of ``numpy.random.default_rng``.
        scheme: ``"torch"``, every weight and both biases uniform in ``[-k, k]`` with
            ``k = 1/sqrt(M)`` (``torch.nn.RNN.reset_parameters``; the same for every gate
            block, peephole and projection of a GRU or LSTM) and the readout uniform in
            ``[-1/sqrt(F), 1/sqrt(F)]`` (``nn.Linear``), the embedding N(0, 1) with a zero
            ``padding_idx`` row; ``"keras"``, ``w_x`` Glorot-uniform, ``w_h`` orthogonal,
            biases zero (an LSTM's forget bias one: ``unit_forget_bias``), head layers
            Glorot-uniform with zero biases, the embedding uniform in ``[-0.05, 0.05]``
            (Keras 3 ``SimpleRNN``, ``GRU``, ``LSTM``, ``Dense`` and ``Embedding`` defaults).
        dtype: floating dtype of the arrays; draws are made in float64 and cast.

    Returns:
        An :class:`RNNParams`. A bias-free config gets zero biases under either scheme.
    """
    if not isinstance(config, RNNConfig):
        raise TypeError(f"config must be an rnn_ref.RNNConfig, got {type(config).__name__}")
    if scheme not in ("torch", "keras"):
        raise ValueError(f"scheme must be 'torch' or 'keras', got {scheme!r}")
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {dt}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    rng = np.random.default_rng(seed)

    def uniform(limit: float, shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
        return rng.uniform(-limit, limit, size=shape)

    layers = []
    for li, m in enumerate(config.hidden_sizes):
        d = config.layer_input_size(li)
        cells: list[AnyCellParams] = []
        for _ in range(config.num_directions_of(li)):
            if config.cell_of(li).kind != "elman":
                cells.append(_init_gated(config, li, rng, scheme, dt))
                continue
            if scheme == "torch":
                k = 1.0 / np.sqrt(m)
                w_x, w_h = uniform(k, (d, m)), uniform(k, (m, m))
                b_x, b_h = uniform(k, (m,)), uniform(k, (m,))
            else:
                w_x = uniform(np.sqrt(6.0 / (d + m)), (d, m))
                w_h = _orthogonal(rng, m)
                b_x, b_h = np.zeros(m), np.zeros(m)
            if not config.bias:
                b_x, b_h = np.zeros(m), np.zeros(m)
            cells.append(CellParams(*(a.astype(dt) for a in (w_x, w_h, b_x, b_h))))
        layers.append(tuple(cells))
    head, embedding = _init_head_and_embedding(config, rng, scheme, dt)
    return RNNParams(config, tuple(layers), embedding=embedding, head=head)


def _init_gated(config: RNNConfig, li: int, rng: np.random.Generator, scheme: str,
                dt: np.dtype[Any]) -> GRUParams | LSTMParams:
    """:func:`init`'s draw of one gated cell of layer ``li``: gate by gate in canonical order,
    then the peepholes and the projection."""
    spec = config.cell_of(li)
    d, m, p = config.layer_input_size(li), config.hidden_sizes[li], config.output_sizes[li]
    gates = spec.gates
    k = 1.0 / np.sqrt(m)
    blocks: dict[str, dict[str, npt.NDArray[np.float64]]] = {
        n: {} for n in ("w_x", "w_h", "b_x", "b_h")}
    for g in gates:
        if scheme == "torch":
            blocks["w_x"][g] = rng.uniform(-k, k, (d, m))
            blocks["w_h"][g] = rng.uniform(-k, k, (p, m))
            blocks["b_x"][g] = rng.uniform(-k, k, (m,))
            blocks["b_h"][g] = rng.uniform(-k, k, (m,))
        else:
            lim = np.sqrt(6.0 / (d + len(gates) * m))
            blocks["w_x"][g] = rng.uniform(-lim, lim, (d, m))
            blocks["w_h"][g] = _orthogonal(rng, max(p, m))[:p, :m]
            blocks["b_x"][g] = np.full(m, 1.0 if (spec.kind, g) == ("lstm", "f") else 0.0)
            blocks["b_h"][g] = np.zeros(m)
        if not config.bias:
            blocks["b_x"][g], blocks["b_h"][g] = np.zeros(m), np.zeros(m)
    cast = {n: {g: a.astype(dt) for g, a in b.items()} for n, b in blocks.items()}
    if spec.kind == "gru":
        return GRUParams(**cast)
    peeps = {g: rng.uniform(-k, k, (m,)).astype(dt) for g in spec.peephole_gates}
    proj = (rng.uniform(-k, k, (m, p)).astype(dt) if spec.proj_size is not None else None)
    return LSTMParams(**cast, p=peeps if spec.peepholes else None, w_proj=proj)


def _init_head_and_embedding(config: RNNConfig, rng: np.random.Generator, scheme: str,
                             dt: np.dtype[Any]) -> tuple[list[Readout], Array | None]:
    """:func:`init`'s head layers and embedding table (see its ``scheme``)."""

    def uniform(limit: float, shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
        return rng.uniform(-limit, limit, size=shape)

    head = []
    for j, dense in enumerate(config.head):
        f, k_out = config.head_input_size(j), dense.units
        if scheme == "torch":
            lim = 1.0 / np.sqrt(f)
            w, b = uniform(lim, (f, k_out)), uniform(lim, (k_out,))
        else:
            w, b = uniform(np.sqrt(6.0 / (f + k_out)), (f, k_out)), np.zeros(k_out)
        head.append(Readout(w.astype(dt), (b if dense.bias else np.zeros(k_out)).astype(dt)))
    embedding = None
    if config.vocab_size is not None:  # torch N(0, 1); Keras uniform(-0.05, 0.05)
        shape = (config.vocab_size, config.input_size)
        table = rng.standard_normal(shape) if scheme == "torch" else uniform(0.05, shape)
        if config.padding_idx is not None and scheme == "torch":
            table[config.padding_idx] = 0.0
        embedding = table.astype(dt)
    return head, embedding
