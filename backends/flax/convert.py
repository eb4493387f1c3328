"""flax: ``SimpleCell``, ``GRUCell`` and ``LSTMCell`` networks (``flax.nnx`` and
``flax.linen``): converters and oracle.

How flax differs from the reference (``flax/nnx/nn/recurrent.py`` and
``flax/linen/recurrent.py``, flax 0.12.8, classes ``SimpleCell``, ``GRUCell``, ``LSTMCell``,
``OptimizedLSTMCell``, ``RNN``, ``Bidirectional``):

* Two APIs, one layout per cell. An nnx cell (``nnx.SimpleCell(in_features,
  hidden_features, ...)``) is a module holding its ``Linear`` layers; its state
  (``nnx.state(cell)``) is the same tree of arrays. A linen cell (``linen.SimpleCell(features,
  ...)``) holds no weights: its params are a tree of ``Dense`` params. Kernels are (in, out),
  as the reference's: ``x @ kernel``. ``nnx.SimpleCell``'s computation ``dtype`` defaults to
  float32 whatever its ``param_dtype`` (the gated cells' to ``None``: the parameters'), so it
  is written with ``dtype`` = the parameters' dtype.
* ``SimpleCell``: ``h' = f(x @ kernel_i + bias + h @ kernel_h)``; nnx ``dense_i`` (kernel
  ``w_x (D, M)``, bias) and ``dense_h`` (kernel ``w_h (M, M)``, no bias), linen ``i`` and
  ``h``. One bias: writing, ``bias = b_x + b_h``; reading, ``b_x = bias, b_h = 0`` (the bias
  rule). A cell always holds a bias: a bias-free network is written with a zero one and read
  with ``bias=False``.
* ``GRUCell`` computes the reset-after GRU (spec 2.7.1, ``reset_after=True`` only) with
  ``gate_fn`` (default sigmoid) and ``activation_fn`` (default tanh). linen's params are one
  ``Dense`` a gate and side: ``ir``, ``iz``, ``in`` (kernel, bias: the input side) and ``hr``,
  ``hz`` (kernel) and ``hn`` (kernel, bias: ``b_hn``, inside ``r *``). Reading, ``b_x[k] =
  i{k}.bias``, ``b_h = (0, 0, hn.bias)``; writing, ``ir.bias = b_x[r] + b_h[r]`` (likewise
  z), ``in.bias = b_x[n]``, ``hn.bias = b_h[n]``: exact. nnx's packs the gates r, z, n
  (``"gru:flax_nnx"``) into ``dense_i`` (kernel ``(D, 3M)``, bias ``(3M,)``) and ``dense_h``
  (kernel ``(M, 3M)``) **without a bias** (flax #5594, PR #5595): it is the GRU with
  ``b_h[n] = 0``. It is read so (``b_h = 0``), and ``to_flax(kind="nnx")`` refuses a GRU whose
  ``b_h[n]`` is not zero (``kind="linen"`` holds it).
* ``LSTMCell`` and ``OptimizedLSTMCell`` compute the same LSTM (spec 2.7.2 without
  peepholes, ``input_forget`` or projection) with ``gate_fn`` for i, f, o and one
  ``activation_fn`` for the candidate **and** the cell state (so ``cell_activation`` must be
  the activation). Their biases are on the hidden side only: reading, ``b_x = bias``, ``b_h =
  0`` (the bias rule, as for every one-bias cell here); writing, ``bias = b_x + b_h``. linen's
  params (both classes) are ``ii``, ``if``, ``ig``, ``io`` (kernel) and ``hi``, ``hf``,
  ``hg``, ``ho`` (kernel, bias); nnx ``LSTMCell`` the same with ``if_`` for ``if``; nnx
  ``OptimizedLSTMCell`` packs i, f, g, o (``"lstm:flax_optimized"``) into ``dense_i``
  (kernel ``(D, 4M)``) and ``dense_h`` (kernel ``(M, 4M)``, bias ``(4M,)``). The carry is
  ``(c, h)``.
* A layer is ``RNN(cell)`` (forward), ``RNN(cell, reverse=True, keep_order=True)`` (the spec's
  reverse layer, time-aligned), ``RNN(cell, reverse=True)`` (``keep_order=False``: outputs in
  processing order, the spec's ``output_order="processing"``, which only a last layer may
  have), or ``Bidirectional(RNN, RNN)`` (concatenated, the backward RNN run with
  ``reverse=True, keep_order=True`` whatever its own flags). A stack is a ``Sequential`` or a
  module of one's own that applies them in turn; layers may have different cells.
* Where linen writes the params (flax 0.12.8): ``nn.RNN`` at the top ``{"cell": ...}``;
  ``nn.Bidirectional`` ``{"forward_rnn": {"cell"}, "backward_rnn": {"cell"}}``;
  ``nn.Sequential`` ``layers_i``; in a ``@compact`` module the cells are adopted by that module
  and written as ``SimpleCell_0``, ``GRUCell_0`` ... with nothing saying which pair was a
  ``Bidirectional`` (cells built with ``parent=None`` stay in ``RNN_i``); ``setup`` attributes
  under their names. flax writes them in call order, and ``jax.tree.map`` or a serializer
  sorts the keys: :func:`from_native` reads auto-names in index order, groups the cells into
  layers by their widths (layer l's input is layer l-1's output), tries the other orders of the
  top-level entries when the written one does not chain, and asks for ``direction=`` (or a
  list in call order) when more than one stack fits.
* Variables record neither ``reverse`` / ``keep_order`` nor the functions: they are hints
  (``direction=``, ``output_order=``, ``activation=``, ``recurrent_activation=``; flax's
  defaults tanh and sigmoid); modules record all of them and are read.
* What flax cannot hold (:func:`unsupported`): the pieces around the stack (embedding, head,
  selection; layers of mixed directions and cells it holds), clip, merge modes other than
  concat (a ``merge_fn`` of one's own cannot be read back), ``output_order="processing"`` in a
  list of cells, a reset-before GRU, an LSTM's peepholes, ``input_forget``, projection or a
  cell activation of its own, and, in modules, activations other than tanh, relu, sigmoid,
  softplus and softsign. ``padded_output`` is not a property of flax: ``RNN(seq_lengths=...)``
  keeps computing at padded steps (flax/deviations/flax.json).
* ``residual=True`` adds the input to the pre-activation: not an Elman cell, refused.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen, nnx

from rnn_ref.activations import Activation
from rnn_ref.backends._common import raise_if
from rnn_ref.backends.flax.record import FLAX_LSTM_CELLS, target, unsupported
from rnn_ref.cells import GATES, pack, unpack
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import AnyCellParams, CellParams, GRUParams, LSTMParams, RNNParams

__all__ = ["LSTM_CELLS", "NAME", "from_native", "oracle", "owns", "to_native", "unsupported"]

NAME = "flax SimpleCell"
LSTM_CELLS = FLAX_LSTM_CELLS
#: ``activation_fn.__name__`` -> rnn-ref name, for reading a module's functions
_FLAX_FN_NAMES = {"tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid", "softplus": "softplus",
                  "soft_sign": "softsign"}
#: rnn-ref name -> the flax function a module is built with
_FNS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh, "relu": nnx.relu, "sigmoid": nnx.sigmoid, "softplus": nnx.softplus,
    "softsign": nnx.soft_sign}
#: each cell module class -> (the cell it computes, its name in messages)
_CELL_MODULES: dict[type, tuple[str, str]] = {
    nnx.SimpleCell: ("elman", "SimpleCell"), linen.SimpleCell: ("elman", "SimpleCell"),
    nnx.GRUCell: ("gru", "GRUCell"), linen.GRUCell: ("gru", "GRUCell"),
    nnx.LSTMCell: ("lstm", "LSTMCell"), linen.LSTMCell: ("lstm", "LSTMCell"),
    nnx.OptimizedLSTMCell: ("lstm", "OptimizedLSTMCell"),
    linen.OptimizedLSTMCell: ("lstm", "OptimizedLSTMCell"),
}
#: linen GRUCell's Dense layers: (name, gate, side, has a bias), in flax's call order
_LINEN_GRU = (("ir", "r", "i", True), ("hr", "r", "h", False), ("iz", "z", "i", True),
              ("hz", "z", "h", False), ("in", "n", "i", True), ("hn", "n", "h", True))
#: an LSTMCell's input-side Dense names per gate (nnx names the forget gate's ``if_``)
_LSTM_I = {"linen": {"i": "ii", "f": "if", "g": "ig", "o": "io"},
           "nnx": {"i": "ii", "f": "if_", "g": "ig", "o": "io"}}
_CELL_HINT = ("expected dense_i and dense_h (nnx SimpleCell, GRUCell, OptimizedLSTMCell), "
              "i and h (linen SimpleCell), ir/iz/in/hr/hz/hn (linen GRUCell) or ii/if/ig/io/"
              "hi/hf/hg/ho (LSTMCell; nnx: if_)")


# --------------------------------------------------------------------------------------------
# from flax: the layers a model, its variables or its state hold, in call order
# --------------------------------------------------------------------------------------------
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class _Cell:
    """One flax cell read: its canonical weights, and the names of its functions where a
    module records them (``(activation_fn,)`` of a SimpleCell, ``(gate_fn, activation_fn)``
    of a gated cell; ``None`` from variables)."""

    params: AnyCellParams
    fns: tuple[str, ...] | None = None

    @property
    def kind(self) -> str:
        return self.params.kind

    @property
    def in_size(self) -> int:
        w_x = self.params.w_x
        first = w_x if isinstance(w_x, np.ndarray) else next(iter(w_x.values()))
        return int(first.shape[0])

    @property
    def out_size(self) -> int:
        return self.params.hidden_size


@dataclass
class _Unit:
    """One recurrent layer, or one cell whose layer is not known yet.

    ``cells``: one or two (forward, backward) cells; ``direction``: known from a module
    (``nn.RNN(reverse=...)``, ``Bidirectional``), else ``None`` (one cell read from variables:
    forward unless told, or one half of a bidirectional pair); ``processing``: a reverse
    ``RNN`` with ``keep_order=False`` (outputs in processing order); ``loose``: a cell that may
    pair with the next into a bidirectional layer (not one the caller listed as a layer).
    """

    where: str
    cells: list[_Cell]
    direction: str | None = None
    processing: bool = False
    loose: bool = True

    @property
    def sizes(self) -> tuple[int, int]:
        """(D, F): the input width and the output width (concat of the cells)."""
        return self.cells[0].in_size, sum(c.out_size for c in self.cells)

    @property
    def kind(self) -> str:
        return self.cells[0].kind


_AUTO_NAME = re.compile(r"^(.*?)_?(\d+)$")


def _ordered(tree: Mapping[Any, Any]) -> list[Any]:
    """The keys of one level of a variables tree in call order: flax writes them in call
    order; auto-names (``RNN_10`` after ``RNN_9``, nnx ``Sequential``'s ints) are put back in
    their index order within each prefix, which a serializer that sorts keys breaks."""
    keys = [k for k in tree if k != "rngs"]  # nnx's RNG state, not a layer
    groups: dict[str, list[tuple[int, Any]]] = {}
    for k in keys:
        m = _AUTO_NAME.match(str(k))
        if m:
            groups.setdefault(m.group(1), []).append((int(m.group(2)), k))
    fill = {p: iter(k for _, k in sorted(g)) for p, g in groups.items()}
    out = []
    for k in keys:
        m = _AUTO_NAME.match(str(k))
        out.append(next(fill[m.group(1)]) if m else k)
    return out


def _dense(node: Mapping[str, Any], key: str, where: str, what: str, bias: bool
           ) -> tuple[Array, Array | None]:
    """The ``(kernel, bias)`` of the Dense ``key`` of a cell, checked to hold a bias exactly
    when the cell's has one."""
    dense = node[key]
    if not isinstance(dense, Mapping) or "kernel" not in dense or set(dense) - {"kernel",
                                                                                "bias"}:
        got = sorted(dense) if isinstance(dense, Mapping) else type(dense).__name__
        raise ValueError(f"{where}/{key}: a flax Dense holds kernel and bias, got {got}")
    if ("bias" in dense) != bias:
        raise ValueError(f"{where}: the Dense {key!r} of a {what} has "
                         f"{'a' if bias else 'no'} bias, but "
                         f"{'none is' if bias else 'one is'} given")
    return np.asarray(dense["kernel"]), (np.asarray(dense["bias"]) if bias else None)


def _no_extra(node: Mapping[str, Any], keys: set[str], where: str, what: str) -> None:
    extra = sorted(map(str, set(node) - keys - {"rngs"}))
    if extra:
        raise ValueError(f"{where}: a {what} holds {sorted(keys)} only, got also {extra}")


def _gated(kind: str, where: str, w_x: Mapping[str, Array], w_h: Mapping[str, Array],
           b_x: Mapping[str, Array], b_h: Mapping[str, Array]) -> AnyCellParams:
    try:
        return (GRUParams if kind == "gru" else LSTMParams)(w_x, w_h, b_x, b_h)
    except ValueError as exc:
        raise ValueError(f"{where}: the {kind.upper()} cell's arrays do not fit: {exc}"
                         ) from None


def _fused_cell(node: Mapping[str, Any], where: str) -> _Cell:
    """An nnx ``SimpleCell``, ``GRUCell`` or ``OptimizedLSTMCell`` (``dense_i``, ``dense_h``),
    told apart by the recurrent kernel's width (M, 3M, 4M) and where the bias is."""
    _no_extra(node, {"dense_i", "dense_h"}, where, "cell of dense_i and dense_h")
    h = node["dense_h"]
    kh = np.asarray(h["kernel"]) if isinstance(h, Mapping) and "kernel" in h else None
    if kh is None or kh.ndim != 2 or kh.shape[1] not in (kh.shape[0], 3 * kh.shape[0],
                                                           4 * kh.shape[0]):
        shape = None if kh is None else kh.shape
        raise ValueError(f"{where}: dense_h's kernel {shape} is none of (M, M) (SimpleCell), "
                         f"(M, 3M) (GRUCell), (M, 4M) (OptimizedLSTMCell)")
    m = kh.shape[0]
    if kh.shape[1] == m:
        if isinstance(h, Mapping) and "bias" in h:
            raise ValueError(f"{where}: the recurrent Dense of a SimpleCell has no bias, but "
                             f"one is given")
        k_i, b = _dense(node, "dense_i", where, "SimpleCell", True)
        assert b is not None
        return _Cell(_elman(k_i, kh, b, where))
    if kh.shape[1] == 3 * m:
        k_i, b = _dense(node, "dense_i", where, "GRUCell", True)
        _dense(node, "dense_h", where, "GRUCell (flax #5594: nnx has no b_hn)", False)
        assert b is not None
        blocks = [unpack(a, "gru:flax_nnx", cell="gru", axis=-1) for a in (k_i, kh, b)]
        zeros = {g: np.zeros_like(v) for g, v in blocks[2].items()}
        return _Cell(_gated("gru", where, blocks[0], blocks[1], blocks[2], zeros))
    k_i, _ = _dense(node, "dense_i", where, "OptimizedLSTMCell", False)
    _, b = _dense(node, "dense_h", where, "OptimizedLSTMCell", True)
    assert b is not None
    blocks = [unpack(a, "lstm:flax_optimized", cell="lstm", axis=-1) for a in (k_i, kh, b)]
    zeros = {g: np.zeros_like(v) for g, v in blocks[2].items()}
    return _Cell(_gated("lstm", where, blocks[0], blocks[1], blocks[2], zeros))


def _elman(k_i: Array, k_h: Array, b: Array, where: str) -> CellParams:
    try:
        return CellParams(k_i, k_h, b, np.zeros_like(b))
    except ValueError as exc:
        raise ValueError(f"{where}: the SimpleCell's arrays do not fit: {exc}") from None


def _linen_gru(node: Mapping[str, Any], where: str) -> _Cell:
    _no_extra(node, {k for k, *_ in _LINEN_GRU}, where, "linen GRUCell")
    blocks: dict[str, dict[str, Array]] = {"w_x": {}, "w_h": {}, "b_x": {}, "b_h": {}}
    for key, gate, side, bias in _LINEN_GRU:
        kernel, b = _dense(node, key, where, "GRUCell", bias)
        blocks["w_x" if side == "i" else "w_h"][gate] = kernel
        if b is not None:
            blocks["b_x" if side == "i" else "b_h"][gate] = b
    for gate in ("r", "z"):
        blocks["b_h"][gate] = np.zeros_like(blocks["b_x"][gate])
    return _Cell(_gated("gru", where, blocks["w_x"], blocks["w_h"], blocks["b_x"],
                        blocks["b_h"]))


def _lstm(node: Mapping[str, Any], where: str, api: str) -> _Cell:
    names = _LSTM_I[api]
    _no_extra(node, {*names.values(), *(f"h{g}" for g in names)}, where, f"{api} LSTMCell")
    w_x, w_h, b_x = {}, {}, {}
    for g, key in names.items():
        w_x[g], _ = _dense(node, key, where, "LSTMCell", False)
        w_h[g], b = _dense(node, f"h{g}", where, "LSTMCell", True)
        assert b is not None
        b_x[g] = b
    return _Cell(_gated("lstm", where, w_x, w_h, b_x,
                        {g: np.zeros_like(b) for g, b in b_x.items()}))


def _cell_of(node: Mapping[str, Any], where: str) -> _Cell | None:
    """The cell ``node`` holds (nnx ``dense_i``/``dense_h``; linen ``i``/``h``; a linen
    GRUCell's six Dense; an LSTMCell's eight), else ``None``."""
    keys = set(node)
    if {"dense_i", "dense_h"} <= keys:
        return _fused_cell(node, where)
    if {"i", "h"} <= keys:
        _no_extra(node, {"i", "h"}, where, "SimpleCell")
        k_i, b = _dense(node, "i", where, "SimpleCell", True)
        if isinstance(node["h"], Mapping) and "bias" in node["h"]:
            raise ValueError(f"{where}: the recurrent Dense of a SimpleCell has no bias, but "
                             f"one is given")
        k_h, _ = _dense(node, "h", where, "SimpleCell", False)
        assert b is not None
        return _Cell(_elman(k_i, k_h, b, where))
    if {"ir", "hn"} & keys:
        return _linen_gru(node, where)
    if {"ii", "hi"} & keys:
        return _lstm(node, where, "nnx" if "if_" in keys else "linen")
    return None


def _tree_units(node: Any, where: str) -> list[_Unit]:
    """The cells and bidirectional pairs of a variables (or nnx state) tree, in call order."""
    if not isinstance(node, Mapping):
        raise ValueError(f"{where}: expected a mapping of flax parameters, got "
                         f"{type(node).__name__}")
    cell = _cell_of(node, where)
    if cell is not None:
        return [_Unit(where, [cell])]
    if "forward_rnn" in node and "backward_rnn" in node:  # Bidirectional
        halves = [_tree_units(node[k], f"{where}/{k}") for k in ("forward_rnn", "backward_rnn")]
        if any(len(h) != 1 or len(h[0].cells) != 1 for h in halves):
            raise ValueError(f"{where}: each RNN of a Bidirectional must hold one cell")
        return [_pair(where, halves[0][0].cells[0], halves[1][0].cells[0])]
    units: list[_Unit] = []
    for key in _ordered(node):
        child, path = node[key], f"{where}/{key}" if where else str(key)
        if isinstance(child, Mapping) and "kernel" in child:
            raise UnsupportedError("rnn-ref", f"the flax Dense layer {path!r}",
                                   "from_flax reads the recurrent layers (SimpleCell, GRUCell, "
                                   "LSTMCell) only; give the variables of the recurrent part")
        if isinstance(child, Mapping) and "embedding" in child:
            raise UnsupportedError("rnn-ref", f"the flax Embed layer {path!r}",
                                   "from_flax reads the recurrent layers (SimpleCell, GRUCell, "
                                   "LSTMCell) only")
        if not isinstance(child, Mapping):
            raise ValueError(f"not SimpleCell, GRUCell or LSTMCell parameters: {path!r} is a "
                             f"{type(child).__name__}; {_CELL_HINT}, under an RNN's cell")
        units.extend(_tree_units(child, path))
    if not units:
        raise ValueError(f"not SimpleCell, GRUCell or LSTMCell parameters: keys "
                         f"{sorted(map(str, node))} at {where or 'the top'}; {_CELL_HINT}, "
                         f"under an RNN's cell or a Bidirectional")
    return units


def _pair(where: str, forward: _Cell, backward: _Cell) -> _Unit:
    """A ``Bidirectional``'s two cells as one layer (one cell kind a layer)."""
    if forward.kind != backward.kind:
        raise UnsupportedError("rnn-ref", f"the Bidirectional {where!r} of a {forward.kind} "
                               f"and a {backward.kind} cell",
                               "a layer has one cell for both directions")
    return _Unit(where, [forward, backward], "bidirectional")


def _fn_name(fn: Any, what: str) -> str:
    """The rnn-ref name of a module's ``activation_fn`` or ``gate_fn``."""
    name = getattr(fn, "__name__", "")
    mapped = _FLAX_FN_NAMES.get(name)
    if mapped is None:
        raise UnsupportedError("rnn-ref", f"the flax {what} {name or fn!r}",
                               "give activation= (recurrent_activation= for a gate_fn) "
                               "explicitly for a function not known here")
    return mapped


def _merge_is_concat(module: Any, where: str) -> None:
    fn = module.merge_fn
    if getattr(fn, "__name__", None) != "_concatenate" or "flax" not in getattr(
            fn, "__module__", ""):
        raise UnsupportedError("rnn-ref", f"the merge_fn {getattr(fn, '__name__', fn)!r} of "
                               f"the Bidirectional {where!r}",
                               "flax's default concatenation is read (a function's meaning "
                               "cannot be read from it)")


def _sub(tree: Mapping[str, Any] | None, key: str, where: str) -> Mapping[str, Any] | None:
    """The linen variables under ``key`` (``None`` for nnx, whose modules hold their arrays)."""
    if tree is None:
        return None
    if not isinstance(tree, Mapping) or key not in tree:
        have = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
        raise ValueError(f"the variables at {where!r} have no {key!r} (got {have}): they are "
                         f"not this module's; give the variables alone to read them in order")
    return cast(Mapping[str, Any], tree[key])


def _module_cell(module: Any, tree: Mapping[str, Any] | None, where: str) -> _Cell:
    """A cell module (nnx, or linen with its variables ``tree``) with its functions."""
    kind, what = _CELL_MODULES[type(module)] if type(module) in _CELL_MODULES else next(
        v for k, v in _CELL_MODULES.items() if isinstance(module, k))
    if kind == "elman" and module.residual:
        raise UnsupportedError("rnn-ref", "a flax SimpleCell with residual=True",
                               "a pre-activation residual is not an Elman cell")
    node = nnx.state(module).to_pure_dict() if tree is None else tree
    cell = _cell_of(node, where) if isinstance(node, Mapping) else None
    if cell is None or cell.kind != kind:
        keys = sorted(node) if isinstance(node, Mapping) else type(node).__name__
        raise ValueError(f"{where}: the variables are not a {what}'s (keys {keys})")
    fns = ((_fn_name(module.activation_fn, "activation_fn"),) if kind == "elman" else
           (_fn_name(module.gate_fn, "gate_fn"),
            _fn_name(module.activation_fn, "activation_fn")))
    return _Cell(cell.params, fns)


def _module_units(module: Any, tree: Mapping[str, Any] | None, where: str) -> list[_Unit]:
    """The layers of a flax module (nnx, or linen with its variables ``tree``) in call order:
    cells, ``RNN``, ``Bidirectional`` and ``Sequential`` of those."""
    if isinstance(module, tuple(_CELL_MODULES)):
        return [_Unit(where, [_module_cell(module, tree, where)])]
    if isinstance(module, (nnx.RNN, linen.RNN)):
        (unit,) = _module_units(module.cell, _sub(tree, "cell", where), f"{where}/cell")
        unit.where, unit.direction = where, "reverse" if module.reverse else "forward"
        unit.processing = bool(module.reverse and not module.keep_order)
        return [unit]
    if isinstance(module, (nnx.Bidirectional, linen.Bidirectional)):
        _merge_is_concat(module, where)
        halves = [_module_units(getattr(module, k), _sub(tree, k, where), f"{where}/{k}")
                  for k in ("forward_rnn", "backward_rnn")]
        if any(len(h) != 1 or len(h[0].cells) != 1 for h in halves):
            raise ValueError(f"{where}: each RNN of a Bidirectional must hold one cell")
        (f,), (b,) = halves
        return [_pair(where, f.cells[0], b.cells[0])]
    if isinstance(module, (nnx.Sequential, linen.Sequential)):
        names = [f"layers_{i}" if tree is not None else str(i)
                 for i in range(len(module.layers))]
        return [u for name, layer in zip(names, module.layers, strict=True)
                for u in _module_units(layer, _sub(tree, name, where), f"{where}/{name}")]
    api = "nnx" if isinstance(module, nnx.Module) else "linen"
    raise UnsupportedError("rnn-ref", f"flax.{api}.{type(module).__name__}",
                           "from_flax reads SimpleCell, GRUCell, LSTMCell, OptimizedLSTMCell, "
                           "RNN, Bidirectional and Sequential modules; give a list of a "
                           "model's recurrent layers in call order, or its variables")


def _units(obj: Any, variables: Any) -> list[_Unit]:
    """The units of whatever ``from_flax`` was given (one item of a list of layers)."""
    if isinstance(obj, linen.Module):
        if variables is None:
            raise ValueError(f"a linen {type(obj).__name__} holds no weights: give "
                             f"variables= (what its init returned)")
        return _module_units(obj, _params_of(variables), "")
    if variables is not None:
        raise ValueError("variables= goes with a linen module; an nnx module, its state or "
                         "variables are read alone")
    if isinstance(obj, nnx.Module):
        return _module_units(obj, None, type(obj).__name__)
    return _tree_units(_params_of(obj), "")


def _params_of(obj: Any) -> Mapping[str, Any]:
    """The ``params`` collection of linen variables, or an nnx state as a plain mapping."""
    if isinstance(obj, nnx.State):
        obj = obj.to_pure_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a flax module, its state or its variables, got "
                        f"{type(obj).__name__}")
    if "params" in obj:
        others = sorted(set(obj) - {"params"})
        if others:
            raise UnsupportedError("rnn-ref", f"the flax variable collections {others}",
                                   "a recurrent network of flax cells holds params only")
        return cast(Mapping[str, Any], obj["params"])
    return obj


def _items(obj: Any, variables: Any) -> list[_Unit]:
    """Every unit, in order, of one model or of a list of layers (each a list of one or two
    cells, or anything :func:`_units` reads)."""
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], linen.Module):
        obj, variables = obj  # what to_flax(kind="linen", layout="rnn") returns
    if not isinstance(obj, (list, tuple)):
        return _units(obj, variables)
    out: list[_Unit] = []
    for li, layer in enumerate(obj):
        if not isinstance(layer, (list, tuple)):
            out.extend(_units(layer, variables))
            continue
        cells = [u for c in layer for u in _units(c, variables)]
        if len(cells) not in (1, 2) or any(len(u.cells) != 1 for u in cells):
            raise ValueError(f"layer {li} must list one or two cells (forward, then backward)")
        if len(cells) == 2:
            unit = _pair(f"[{li}]", cells[0].cells[0], cells[1].cells[0])
        else:
            unit = _Unit(f"[{li}]", [cells[0].cells[0]], cells[0].direction,
                         cells[0].processing)
        unit.loose = False
        out.append(unit)
    return out


def _groupings(units: list[_Unit], i: int, d_in: int | None) -> Iterator[list[_Unit]]:
    """Every way to make layers of ``units[i:]`` whose widths chain (layer l's input is layer
    l-1's output), pairing two loose cells of one shape and kind into a bidirectional layer or
    not."""
    if i == len(units):
        yield []
        return
    options = [(units[i], 1)]
    pair = units[i:i + 2]
    if len(pair) == 2 and all(u.loose and u.direction is None and len(u.cells) == 1
                              for u in pair) and pair[0].sizes == pair[1].sizes and (
            pair[0].kind == pair[1].kind):
        options.append((_Unit(pair[0].where, [*pair[0].cells, *pair[1].cells],
                              "bidirectional", loose=False), 2))
    for layer, step in options:
        d, f = layer.sizes
        if d_in is None or d == d_in:
            for rest in _groupings(units, i + step, f):
                yield [layer, *rest]


def _fits(layers: list[_Unit], direction: Any) -> bool:
    if direction is None:
        return True
    wanted = list(direction) if isinstance(direction, (list, tuple)) else [direction] * len(
        layers)
    return len(wanted) == len(layers) and all(
        (w == "bidirectional") == (len(u.cells) == 2) for w, u in zip(wanted, layers,
                                                                        strict=True))


def _layers(units: list[_Unit], direction: Any) -> list[_Unit]:
    """The one grouping of ``units`` into layers that chains and fits ``direction``."""
    found = [g for g in _groupings(units, 0, None) if _fits(g, direction)]
    shapes = ", ".join(f"{u.where or 'cell'} {u.sizes[0]}->{u.sizes[1]}" for u in units)
    if not found:
        hint = (f"direction={direction!r} does not fit them" if direction is not None else
                "their order was lost (jax.tree.map and serializers sort keys): give a list "
                "of the layers in call order")
        raise _Unchained(f"the flax cells do not make a stack whose widths chain ({shapes}); "
                         f"{hint}")
    if len(found) > 1:
        options = [[_direction_of(u, None) for u in g] for g in found]
        raise ValueError(f"the flax cells ({shapes}) make more than one stack: give "
                         f"direction= one of {options}")
    return found[0]


class _Unchained(ValueError):
    """No grouping of the cells, in the order given, chains."""


#: at most this many top-level layers are tried in every order when their order was lost
_MAX_REORDER = 7


def _reordered(obj: Any, direction: Any, error: _Unchained) -> list[_Unit]:
    """The layers of variables whose top-level order was lost (``jax.tree.map`` sorts dict
    keys): the one order of the top-level entries (auto-names kept in index order) whose
    widths chain; ``error`` again when there is none, or more than one."""
    if isinstance(obj, (list, tuple)) or isinstance(obj, (nnx.Module, linen.Module)):
        raise error
    tree = _params_of(obj)
    keys = _ordered(tree)
    if len(keys) > _MAX_REORDER:
        raise error
    found = []
    for perm in itertools.permutations(keys):
        if _ordered(dict.fromkeys(perm)) != list(perm):
            continue  # RNN_1 before RNN_0 is never flax's order
        units = [u for k in perm for u in _tree_units(tree[k], str(k))]
        try:
            found.append(_layers(units, direction))
        except _Unchained:
            continue
    if len(found) != 1:
        raise error
    return found[0]


def _direction_of(unit: _Unit, given: str | None) -> str:
    """A layer's direction: what its module says, else ``given``, else from its cell count."""
    inferred = unit.direction or ("bidirectional" if len(unit.cells) == 2 else "forward")
    if given is None:
        return inferred
    if unit.direction is not None and given != unit.direction:
        raise ValueError(f"direction={given!r} but the flax module {unit.where!r} is "
                         f"{unit.direction}")
    return given


def _output_order(layers: list[_Unit], given: str | None) -> str:
    """``"processing"`` when the last layer is a reverse ``RNN`` with ``keep_order=False``."""
    for unit in layers[:-1]:
        if unit.processing:
            raise UnsupportedError("rnn-ref", f"the reverse RNN {unit.where!r} with "
                                   f"keep_order=False below another layer",
                                   "its outputs, in processing order, feed the next layer; "
                                   "the spec hands time-aligned outputs between layers")
    if layers[-1].processing:
        if given not in (None, "processing"):
            raise ValueError(f"output_order={given!r} but the flax module "
                             f"{layers[-1].where!r} is a reverse RNN with keep_order=False "
                             f"(outputs in processing order)")
        return "processing"
    return given or "aligned"


_Acts = list[list[Activation]]


def _activations(layers: list[_Unit], kinds: list[str], directions: list[str],
                 activation: Any, recurrent_activation: Any
                 ) -> tuple[_Acts, list[list[Activation] | None] | None]:
    """Each cell's activation (and each gated cell's gate activation): what its module
    records, else the hint, else flax's default (tanh; sigmoid for the gates); a module's and
    a hint given for it must agree."""
    wanted = RNNConfig(1, 1, num_layers=len(layers), direction=directions, cell=kinds,
                       activation="tanh" if activation is None else activation,
                       recurrent_activation=recurrent_activation)
    acts: _Acts = []
    gates: list[list[Activation] | None] = []
    for li, unit in enumerate(layers):
        la, lg = [], []
        for r, cell in enumerate(unit.cells):
            want = wanted.activations_of(li, r)
            elman = kinds[li] == "elman"
            own: tuple[str | None, ...] = (
                (None, None) if cell.fns is None else
                (None, cell.fns[0]) if elman else (cell.fns[0], cell.fns[1]))
            given = (None, want[0]) if elman else (want[0], want[1])
            for o, g, hint, name, what in (
                    (own[1], given[1], activation, "activation", "uses"),
                    (own[0], given[0], recurrent_activation, "recurrent_activation",
                     "has the gate_fn")):
                if o is not None and hint is not None and Activation(o) != g:
                    raise ValueError(f"{name}={hint!r} but cell [{li}][{r}] {what} {o!r}")
            la.append(Activation(own[1]) if own[1] is not None else given[1])
            if not elman:
                gate = given[0]
                assert gate is not None
                lg.append(Activation(own[0]) if own[0] is not None else gate)
        acts.append(la)
        gates.append(None if kinds[li] == "elman" else lg)
    return acts, (gates if any(k != "elman" for k in kinds) else None)


def from_native(obj: Any, *, variables: Any = None, activation: Any = None,
                direction: Any = None, output_order: str | None = None,
                bias: bool = True, recurrent_activation: Any = None) -> RNNParams:
    """Canonical parameters of a flax network of ``SimpleCell``, ``GRUCell``, ``LSTMCell``
    and ``OptimizedLSTMCell`` cells.

    Args:
        obj: any of
            * a module: a cell (nnx, or linen with ``variables=``), ``RNN``,
              ``Bidirectional``, ``Sequential`` of those (or the pair ``(module, variables)``
              that ``to_flax(kind="linen", layout="rnn")`` returns);
            * an nnx module's ``nnx.State``, or linen variables ``{"params": ...}`` of any
              module built of those: ``{"cell": ...}`` (``nn.RNN``), ``{"forward_rnn",
              "backward_rnn"}`` (``nn.Bidirectional``), ``layers_i`` (``nn.Sequential``),
              a module's own ``RNN_i`` / ``SimpleCell_i`` / ``GRUCell_i`` / attribute names
              (read in call order, the order flax writes them), down to a bare cell's
              (``{"i", "h"}``, a GRUCell's ``ir`` ... ``hn``, an LSTMCell's ``ii`` ... ``ho``);
            * a list of layers, each one of the above or a list of one or two cells
              (forward, then backward).
        variables: a linen module's variables.
        activation: the cell activation (a SimpleCell's ``activation_fn``, a gated cell's
            ``activation_fn``); variables do not record it, so it defaults to flax's default
            ``"tanh"``; a module's is read, and must agree. The forms of ``RNNConfig``'s.
        direction: one value, or one per layer. Variables do not record ``reverse``: a
            one-cell layer is forward unless told; two cells of one shape in a row from
            variables may be a bidirectional layer or two layers, decided by the widths
            chaining, else by this (the error lists the choices). A module's own must agree.
        output_order: ``"processing"`` for variables whose last layer is ``nn.RNN(...,
            reverse=True)`` without ``keep_order=True``; read from a module.
        bias: a cell always holds a bias; ``False`` reads a bias-free network (the biases
            must then be zero).
        recurrent_activation: a gated cell's ``gate_fn``, as ``activation`` (default
            sigmoid, flax's); only for networks with GRU or LSTM cells.

    The biases: a SimpleCell's, an LSTM cell's (hidden side) and nnx GRUCell's (input side)
    are read as ``b_x`` with ``b_h = 0``; a linen GRUCell's ``hn`` bias is ``b_h["n"]``.
    """
    try:
        layers = _layers(_items(obj, variables), direction)
    except _Unchained as exc:
        layers = _reordered(obj, direction, exc)
    given = list(direction) if isinstance(direction, (list, tuple)) else [direction] * len(
        layers)
    directions = [_direction_of(u, g) for u, g in zip(layers, given, strict=True)]
    order = _output_order(layers, output_order)
    kinds = [u.kind for u in layers]
    acts, gates = _activations(layers, kinds, directions, activation, recurrent_activation)
    config = RNNConfig(layers[0].sizes[0], [u.cells[0].out_size for u in layers],
                       direction=directions, activation=acts, bias=bias, output_order=order,
                       cell=kinds, recurrent_activation=gates)
    return RNNParams(config, [[c.params for c in u.cells] for u in layers])


# --------------------------------------------------------------------------------------------
# to flax
# --------------------------------------------------------------------------------------------
def to_native(params: RNNParams, *, kind: str = "nnx", layout: str = "cells",
              seed: int = 0, lstm: str = "LSTMCell") -> Any:
    """The network as flax holds it.

    Args:
        kind: ``"nnx"`` (modules) or ``"linen"`` (variables, and with ``layout="rnn"`` the
            module that applies them).
        layout: ``"cells"``: one cell, or a list per layer of a list per direction (nnx
            cell modules with their functions set; linen ``{"params": ...}`` of each cell:
            ``{"i", "h"}``, a GRUCell's ``ir`` ... ``hn``, an LSTMCell's ``ii`` ... ``ho``).
            ``"rnn"``: what a flax model applies: an ``RNN`` (``reverse=True`` for a reverse
            layer, ``keep_order=True`` unless the outputs are in processing order), a
            ``Bidirectional`` of two, a ``Sequential`` of the layers; nnx gives the module,
            linen the pair ``(module, variables)``.
        seed: the seed nnx needs to build a module (every weight is then overwritten).
        lstm: the class of an LSTM layer's cells, ``"LSTMCell"`` or ``"OptimizedLSTMCell"``
            (the same function; nnx's packs the gates, linen's params are the same).

    Biases: ``bias = b_x + b_h`` where a cell has one bias per gate (SimpleCell, LSTM
    cells, a GRUCell's r and z gates, and nnx GRUCell's n gate, whose ``b_h["n"]`` must be
    zero); a linen GRUCell holds ``in.bias = b_x["n"]`` and ``hn.bias = b_h["n"]``.

    Raises:
        UnsupportedError: anything flax cannot hold (see :func:`unsupported`): clip, the
            pieces around the stack, merge modes other than concat, in ``"cells"``
            ``output_order="processing"``, a reset-before GRU, an LSTM's peepholes,
            ``input_forget``, projection or own cell activation, in modules an activation
            flax has no function for; with ``kind="nnx"``, a GRU whose ``b_h["n"]`` is not
            zero (nnx.GRUCell has no b_hn, flax #5594).
        ValueError: ``lstm`` not one of :data:`LSTM_CELLS`.
    """
    cfg = params.config
    raise_if(unsupported(cfg, kind=kind, layout=layout), target(cfg))
    if lstm not in LSTM_CELLS:
        raise ValueError(f"lstm must be one of {list(LSTM_CELLS)}, got {lstm!r}")
    if kind == "nnx":
        _check_b_hn(params)
    with jax.enable_x64(params.dtype == np.float64):
        if layout == "rnn":
            return _to_rnn(params, kind, seed, lstm)
        cells = [[_cell(params, li, r, kind, seed, lstm) for r in range(len(layer))]
                 for li, layer in enumerate(params.layers)]
    if len(cells) == 1 and len(cells[0]) == 1:
        return cells[0][0]
    return cells


def _check_b_hn(params: RNNParams) -> None:
    """nnx.GRUCell has no ``b_hn`` (flax #5594): refuse a GRU cell whose ``b_h["n"]`` is not
    zero, naming it."""
    for li, layer in enumerate(params.layers):
        for r, cell in enumerate(layer):
            if isinstance(cell, GRUParams) and cell.b_h["n"].any():
                worst = float(np.abs(cell.b_h["n"]).max())
                raise UnsupportedError(
                    "flax nnx.GRUCell", f"a non-zero b_h['n'] (layer {li}, direction {r}, "
                    f"max |b_h['n']| = {worst:.3g})",
                    "its dense_h has no bias, so r * (h W_hn + b_hn) cannot be written "
                    "(flax #5594); kind='linen' holds it (GRUCell's hn bias), or give a "
                    "GRU with b_h['n'] = 0")


def _fn(act: Activation) -> Callable[[jax.Array], jax.Array]:
    return _FNS[act.name]


def _set(dense: Any, name: str, value: Array) -> None:
    getattr(dense, name).value = jnp.asarray(value)


def _cell(params: RNNParams, li: int, r: int, kind: str, seed: int, lstm: str) -> Any:
    """Layer ``li``, direction ``r`` as an nnx cell module or linen cell params."""
    cell = params.layers[li][r]
    if isinstance(cell, GRUParams):
        return _gru_cell(params, cell, li, r, kind, seed)
    if isinstance(cell, LSTMParams):
        return _lstm_cell(params, cell, li, r, kind, seed, lstm)
    cell = params.elman_cell(li, r)
    bias = cell.b_x + cell.b_h
    if kind == "linen":
        return {"params": {"i": {"kernel": jnp.asarray(cell.w_x), "bias": jnp.asarray(bias)},
                           "h": {"kernel": jnp.asarray(cell.w_h)}}}
    dtype = jnp.dtype(params.dtype.name)  # nnx.SimpleCell computes in float32 unless told
    module = nnx.SimpleCell(cell.w_x.shape[0], cell.hidden_size,
                            activation_fn=_fn(params.config.activation_of(li, r)),
                            rngs=nnx.Rngs(seed), param_dtype=dtype, dtype=dtype)
    _set(module.dense_i, "kernel", cell.w_x)
    _set(module.dense_i, "bias", bias)
    _set(module.dense_h, "kernel", cell.w_h)
    return module


def _gru_cell(params: RNNParams, cell: GRUParams, li: int, r: int, kind: str, seed: int
              ) -> Any:
    """A GRU cell: linen ``ir`` ... ``hn`` params (``b_h[r]``, ``b_h[z]`` folded into the
    input biases, ``b_h[n]`` in ``hn``), or an ``nnx.GRUCell`` (r, z, n packed; ``b_h[n]``
    checked zero by :func:`_check_b_hn`)."""
    folded = {g: cell.b_x[g] + cell.b_h[g] for g in ("r", "z")} | {"n": cell.b_x["n"]}
    if kind == "linen":
        tree: dict[str, Any] = {}
        for key, gate, side, has_bias in _LINEN_GRU:
            dense = {"kernel": jnp.asarray((cell.w_x if side == "i" else cell.w_h)[gate])}
            if has_bias:
                dense["bias"] = jnp.asarray(folded[gate] if side == "i" else cell.b_h[gate])
            tree[key] = dense
        return {"params": tree}
    f, g = params.config.activations_of(li, r)
    module = nnx.GRUCell(cell.w_x["z"].shape[0], cell.hidden_size, gate_fn=_fn(f),
                         activation_fn=_fn(g), rngs=nnx.Rngs(seed),
                         param_dtype=jnp.dtype(params.dtype.name))
    _set(module.dense_i, "kernel", pack(cell.w_x, "gru:flax_nnx", cell="gru", axis=-1))
    _set(module.dense_i, "bias", pack(folded, "gru:flax_nnx", cell="gru", axis=-1))
    _set(module.dense_h, "kernel", pack(cell.w_h, "gru:flax_nnx", cell="gru", axis=-1))
    return module


def _lstm_cell(params: RNNParams, cell: LSTMParams, li: int, r: int, kind: str, seed: int,
               lstm: str) -> Any:
    """An LSTM cell: linen ``ii`` ... ``ho`` params, an ``nnx.LSTMCell`` (one Dense a gate
    and side) or an ``nnx.OptimizedLSTMCell`` (i, f, g, o packed); ``bias = b_x + b_h`` on
    the hidden side."""
    bias = {g: cell.b_x[g] + cell.b_h[g] for g in GATES["lstm"]}
    if kind == "linen":
        tree: dict[str, Any] = {}
        for g in GATES["lstm"]:  # flax's call order: ii, hi, if, hf, ...
            tree[_LSTM_I["linen"][g]] = {"kernel": jnp.asarray(cell.w_x[g])}
            tree[f"h{g}"] = {"kernel": jnp.asarray(cell.w_h[g]), "bias": jnp.asarray(bias[g])}
        return {"params": tree}
    f, g_act, _ = params.config.activations_of(li, r)
    cls = nnx.LSTMCell if lstm == "LSTMCell" else nnx.OptimizedLSTMCell
    module = cls(cell.w_x["i"].shape[0], cell.hidden_size, gate_fn=_fn(f),
                 activation_fn=_fn(g_act), rngs=nnx.Rngs(seed),
                 param_dtype=jnp.dtype(params.dtype.name))
    if isinstance(module, nnx.OptimizedLSTMCell):
        _set(module.dense_i, "kernel", pack(cell.w_x, "lstm:flax_optimized", cell="lstm"))
        _set(module.dense_h, "kernel", pack(cell.w_h, "lstm:flax_optimized", cell="lstm"))
        _set(module.dense_h, "bias", pack(bias, "lstm:flax_optimized", cell="lstm"))
        return module
    for g in GATES["lstm"]:
        _set(getattr(module, _LSTM_I["nnx"][g]), "kernel", cell.w_x[g])
        _set(getattr(module, f"h{g}"), "kernel", cell.w_h[g])
        _set(getattr(module, f"h{g}"), "bias", bias[g])
    return module


def _linen_cell(params: RNNParams, li: int, r: int, lstm: str) -> Any:
    """The linen cell module of layer ``li``, direction ``r`` (it holds no weights)."""
    cfg, dtype = params.config, jnp.dtype(params.dtype.name)
    m = cfg.hidden_sizes[li]
    acts = cfg.activations_of(li, r)
    kind = cfg.cell_of(li).kind
    if kind == "elman":
        return linen.SimpleCell(m, activation_fn=_fn(acts[0]), param_dtype=dtype)
    cls: Any = (linen.GRUCell if kind == "gru" else
                linen.LSTMCell if lstm == "LSTMCell" else linen.OptimizedLSTMCell)
    return cls(m, gate_fn=_fn(acts[0]), activation_fn=_fn(acts[1]), param_dtype=dtype)


def _to_rnn(params: RNNParams, kind: str, seed: int, lstm: str) -> Any:
    """``RNN`` / ``Bidirectional`` per layer, in a ``Sequential`` when there are several."""
    cfg = params.config
    api: Any = nnx if kind == "nnx" else linen
    modules, trees = [], []
    for li, layer in enumerate(params.layers):
        cells = [_cell(params, li, r, kind, seed, lstm) for r in range(len(layer))]
        if kind == "linen":
            trees.append([c["params"] for c in cells])
            cells = [_linen_cell(params, li, r, lstm) for r in range(len(layer))]
        if len(cells) == 2:
            modules.append(api.Bidirectional(api.RNN(cells[0]), api.RNN(cells[1])))
            continue
        reverse = cfg.is_reverse(li, 0)
        keep = not (li == cfg.num_layers - 1 and cfg.output_order == "processing")
        modules.append(api.RNN(cells[0], reverse=reverse, keep_order=reverse and keep))
    if kind == "nnx":
        return modules[0] if len(modules) == 1 else nnx.Sequential(*modules)
    layer_trees = [{"forward_rnn": {"cell": t[0]}, "backward_rnn": {"cell": t[1]}}
                   if len(t) == 2 else {"cell": t[0]} for t in trees]
    if len(modules) == 1:
        return modules[0], {"params": layer_trees[0]}
    return (linen.Sequential(modules),
            {"params": {f"layers_{i}": t for i, t in enumerate(layer_trees)}})


# --------------------------------------------------------------------------------------------
# oracle
# --------------------------------------------------------------------------------------------
_LAYER_MODULES = (nnx.RNN, nnx.Bidirectional, nnx.Sequential)
_NNX_CELLS = tuple(k for k in _CELL_MODULES if issubclass(k, nnx.Module))
#: the key sets of linen cell params
_LINEN_CELL_KEYS = ({"i", "h"}, {k for k, *_ in _LINEN_GRU},
                    {*_LSTM_I["linen"].values(), "hi", "hf", "hg", "ho"})


def owns(model: Any) -> bool:
    """True for a flax cell module (``SimpleCell``, ``GRUCell``, ``LSTMCell``,
    ``OptimizedLSTMCell``) or linen cell params (a step), an nnx ``RNN``, ``Bidirectional``
    or ``Sequential``, or a linen ``(module, variables)`` pair (a sequence)."""
    if isinstance(model, (*_NNX_CELLS, *_LAYER_MODULES)):
        return True
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], linen.Module):
        return True
    if isinstance(model, Mapping):
        inner = model.get("params", model)
        return isinstance(inner, Mapping) and set(inner) in _LINEN_CELL_KEYS
    return False


def _sequence_oracle(model: Any, hints: dict[str, Any]) -> Callable[[Any], Array]:
    """``f(inputs)`` returning what ``module(inputs)`` (nnx) or ``module.apply(variables,
    inputs)`` (linen) returns, in float64: the outputs ``(N, T, F)`` (``(T, N, F)`` when the
    outer module is ``time_major``)."""
    from rnn_ref.reference import forward

    module = model[0] if isinstance(model, tuple) else model
    for flag in ("return_carry", "time_major"):
        if getattr(module, flag, False):
            raise UnsupportedError("the flax oracle", f"a {type(module).__name__} with "
                                   f"{flag}=True", "it returns the output sequence, batch first")
    params = from_native(model, **hints).astype(np.float64)

    def call(inputs: Any) -> Array:
        return cast(Array, forward(params, np.asarray(inputs, np.float64)).outputs)

    return call


def oracle(model: Any, *, activation: Any = None, recurrent_activation: Any = None,
           **hints: Any) -> Callable[..., Any]:
    """For one flax cell (module or linen params): ``f(carry, inputs)`` returning
    ``(new_carry, output)`` of one step, as ``cell(carry, inputs)`` / ``apply`` do, in float64.
    For an nnx ``RNN`` / ``Bidirectional`` / ``Sequential`` or a linen ``(module,
    variables)`` pair: ``f(inputs)``, the outputs the module returns (``hints`` as
    :func:`from_native` takes them).

    ``inputs`` is ``(..., D)``; ``carry`` is ``h (..., M)`` for a SimpleCell or GRUCell and
    ``(c, h)`` for an LSTM cell (its new carry too), with the same leading axes. Linen params
    do not record the functions: pass ``activation=`` (``recurrent_activation=`` for a gated
    cell's ``gate_fn``) unless they are flax's defaults tanh (sigmoid).
    """
    from rnn_ref.reference import forward

    if isinstance(model, (*_LAYER_MODULES, tuple)):
        return _sequence_oracle(model, {"activation": activation,
                                        "recurrent_activation": recurrent_activation, **hints})
    if hints:
        raise ValueError(f"a cell's oracle takes activation= and recurrent_activation= only, "
                         f"got {sorted(hints)}")

    params = from_native(model, activation=activation,
                         recurrent_activation=recurrent_activation)
    is_lstm = params.config.cell_of(0).kind == "lstm"

    def call(carry: Any, inputs: Any) -> tuple[Any, Array]:
        if is_lstm:
            if not (isinstance(carry, (tuple, list)) and len(carry) == 2):
                raise ValueError("an LSTM cell's carry is the pair (c, h)")
            c, h = (np.asarray(a, np.float64) for a in carry)
        else:
            c, h = None, np.asarray(carry, np.float64)
        x = np.asarray(inputs, np.float64)
        lead = x.shape[:-1]
        for name, a in (("carry", h), ("c", c)):
            if a is not None and a.shape[:-1] != lead:
                raise ValueError(f"{name} {a.shape} and inputs {x.shape} must share leading "
                                 f"axes")
        m = h.shape[-1]
        res = forward(params, x.reshape(-1, 1, x.shape[-1]), h0=h.reshape(1, -1, m),
                      c0=None if c is None else c.reshape(1, -1, m))
        new = res.h_n[0].reshape(*lead, m)
        if is_lstm:
            return (res.c_n[0].reshape(*lead, m), new), new.copy()
        return new, new.copy()

    return call
