"""flax: ``SimpleCell`` networks (``flax.nnx`` and ``flax.linen``): converters and oracle.

How flax differs from the reference (``flax/nnx/nn/recurrent.py`` and
``flax/linen/recurrent.py``, classes ``SimpleCell``, ``RNN``, ``Bidirectional``;
``h' = f(x @ kernel_i + bias + h @ kernel_h)``):

* Two APIs, one layout. ``nnx.SimpleCell(in_features, hidden_features, activation_fn=...)`` is a
  module holding ``dense_i`` and ``dense_h``; its state (``nnx.state(cell)``) is the same tree
  of arrays. ``linen.SimpleCell(features, activation_fn=...)`` holds no weights: its params are
  ``{"i": {"kernel", "bias"}, "h": {"kernel"}}``.
* Weights are (in, out), as the reference's: ``dense_i.kernel`` (linen ``i.kernel``) is
  ``w_x (D, M)``, ``dense_h.kernel`` (linen ``h.kernel``) is ``w_h (M, M)``.
* One bias: ``dense_i.bias`` (linen ``i.bias``) is ``(M,)`` and ``dense_h`` has none. Writing,
  ``bias = b_x + b_h``; reading, ``b_x = bias, b_h = 0`` (the bias rule). A cell always holds a
  bias: a bias-free network is written with a zero one and read with ``bias=False``.
* A layer is ``RNN(cell)`` (forward), ``RNN(cell, reverse=True, keep_order=True)`` (the spec's
  reverse layer, time-aligned), ``RNN(cell, reverse=True)`` (``keep_order=False``: outputs in
  processing order, the spec's ``output_order="processing"``, which only a last layer may
  have), or ``Bidirectional(RNN, RNN)`` (concatenated, the backward RNN run with
  ``reverse=True, keep_order=True`` whatever its own flags). A stack is a ``Sequential`` or a
  module of one's own that applies them in turn.
* Where linen writes the params (flax 0.12.8): ``nn.RNN`` at the top ``{"cell": ...}``;
  ``nn.Bidirectional`` ``{"forward_rnn": {"cell"}, "backward_rnn": {"cell"}}``;
  ``nn.Sequential`` ``layers_i``; in a ``@compact`` module the cells are adopted by that module
  and written as ``SimpleCell_0``, ``SimpleCell_1`` ... with nothing saying which pair was a
  ``Bidirectional`` (cells built with ``parent=None`` stay in ``RNN_i``); ``setup`` attributes
  under their names. flax writes them in call order, and ``jax.tree.map`` or a serializer
  sorts the keys: :func:`from_native` reads auto-names in index order, groups the cells into
  layers by their widths (layer l's input is layer l-1's output), tries the other orders of the
  top-level entries when the written one does not chain, and asks for ``direction=`` (or a
  list in call order) when more than one stack fits.
* Variables record neither ``reverse`` / ``keep_order`` nor the activation: they are hints
  (``direction=``, ``output_order=``, ``activation=``, flax's default tanh); modules record
  all three and are read.
* What flax cannot hold (:func:`unsupported`): the pieces around the stack (embedding, head,
  selection; layers of mixed directions it holds), clip, merge modes other than concat (a
  ``merge_fn`` of one's own cannot be read back), ``output_order="processing"`` in a list of
  cells, and, in modules, activations other than tanh, relu, sigmoid, softplus and softsign.
  ``padded_output`` is not a property of flax: ``RNN(seq_lengths=...)`` keeps computing at
  padded steps (flax/deviations/flax.json).
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
from rnn_ref.backends.flax.record import unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import CellParams, RNNParams

__all__ = ["NAME", "from_native", "oracle", "owns", "to_native", "unsupported"]

NAME = "flax SimpleCell"
#: ``activation_fn.__name__`` -> rnn-ref name, for reading an nnx module's activation
_FLAX_FN_NAMES = {"tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid", "softplus": "softplus",
                  "soft_sign": "softsign"}
#: rnn-ref name -> the flax function a module is built with
_FNS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh, "relu": nnx.relu, "sigmoid": nnx.sigmoid, "softplus": nnx.softplus,
    "softsign": nnx.soft_sign}


# --------------------------------------------------------------------------------------------
# from flax: the layers a model, its variables or its state hold, in call order
# --------------------------------------------------------------------------------------------
Arrays = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]


@dataclass
class _Unit:
    """One recurrent layer, or one cell whose layer is not known yet.

    ``cells``: (kernel_i (D, M), bias (M,), kernel_h (M, M)) of one or two (forward, backward)
    cells; ``acts``: each cell's activation name where a module records it; ``direction``:
    known from a module (``nn.RNN(reverse=...)``, ``Bidirectional``), else ``None`` (one cell
    read from variables: forward unless told, or one half of a bidirectional pair);
    ``processing``: a reverse ``RNN`` with ``keep_order=False`` (outputs in processing order);
    ``loose``: a cell that may pair with the next into a bidirectional layer (not one the
    caller listed as a layer).
    """

    where: str
    cells: list[Arrays]
    acts: list[str | None]
    direction: str | None = None
    processing: bool = False
    loose: bool = True

    @property
    def sizes(self) -> tuple[int, int]:
        """(D, F): the input width and the output width (concat of the cells)."""
        return int(self.cells[0][0].shape[0]), sum(int(c[2].shape[0]) for c in self.cells)


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


def _cell_of(node: Mapping[str, Any], where: str) -> Arrays | None:
    """A SimpleCell's arrays when ``node`` is one (linen ``i``/``h``, nnx ``dense_i``/
    ``dense_h``), else ``None``."""
    for i_key, h_key in (("i", "h"), ("dense_i", "dense_h")):
        if i_key in node and h_key in node:
            extra = sorted(set(node) - {i_key, h_key, "rngs"})
            if extra:
                raise ValueError(f"{where}: a SimpleCell holds {i_key} and {h_key} only, "
                                 f"got also {extra}")
            i, h = node[i_key], node[h_key]
            if "bias" in h:
                raise ValueError(f"{where}: the recurrent Dense of a SimpleCell has no bias, "
                                 f"but one is given")
            return np.asarray(i["kernel"]), np.asarray(i["bias"]), np.asarray(h["kernel"])
    return None


def _tree_units(node: Any, where: str) -> list[_Unit]:
    """The cells and bidirectional pairs of a variables (or nnx state) tree, in call order."""
    if not isinstance(node, Mapping):
        raise ValueError(f"{where}: expected a mapping of flax parameters, got "
                         f"{type(node).__name__}")
    cell = _cell_of(node, where)
    if cell is not None:
        return [_Unit(where, [cell], [None])]
    if "forward_rnn" in node and "backward_rnn" in node:  # Bidirectional
        halves = [_tree_units(node[k], f"{where}/{k}") for k in ("forward_rnn", "backward_rnn")]
        if any(len(h) != 1 or len(h[0].cells) != 1 for h in halves):
            raise ValueError(f"{where}: each RNN of a Bidirectional must hold one SimpleCell")
        return [_Unit(where, [halves[0][0].cells[0], halves[1][0].cells[0]], [None, None],
                      "bidirectional")]
    units: list[_Unit] = []
    for key in _ordered(node):
        child, path = node[key], f"{where}/{key}" if where else str(key)
        if isinstance(child, Mapping) and "kernel" in child:
            raise UnsupportedError("rnn-ref", f"the flax Dense layer {path!r}",
                                   "from_flax reads the recurrent layers (SimpleCell) only; "
                                   "give the variables of the recurrent part")
        if isinstance(child, Mapping) and "embedding" in child:
            raise UnsupportedError("rnn-ref", f"the flax Embed layer {path!r}",
                                   "from_flax reads the recurrent layers (SimpleCell) only")
        if not isinstance(child, Mapping):
            raise ValueError(f"not SimpleCell parameters: {path!r} is a "
                             f"{type(child).__name__}; expected dense_i and dense_h (nnx) or "
                             f"i and h (linen) under an RNN's cell")
        units.extend(_tree_units(child, path))
    if not units:
        raise ValueError(f"not SimpleCell parameters: keys {sorted(map(str, node))} at "
                         f"{where or 'the top'}; expected dense_i and dense_h (nnx) or i and "
                         f"h (linen), under an RNN's cell or a Bidirectional")
    return units


def _activation_of_module(cell: Any) -> str | None:
    """The rnn-ref name of an nnx module's ``activation_fn``; ``None`` for params or state."""
    fn = getattr(cell, "activation_fn", None)
    if fn is None:
        return None
    name = getattr(fn, "__name__", "")
    mapped = _FLAX_FN_NAMES.get(name)
    if mapped is None:
        raise UnsupportedError("rnn-ref", f"the flax activation {name or fn!r}",
                               "give activation= explicitly for a parameterised one")
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


def _module_units(module: Any, tree: Mapping[str, Any] | None, where: str) -> list[_Unit]:
    """The layers of a flax module (nnx, or linen with its variables ``tree``) in call order:
    ``SimpleCell``, ``RNN``, ``Bidirectional`` and ``Sequential`` of those."""
    if isinstance(module, (nnx.SimpleCell, linen.SimpleCell)):
        if module.residual:
            raise UnsupportedError("rnn-ref", "a flax SimpleCell with residual=True",
                                   "a pre-activation residual is not an Elman cell")
        node = nnx.state(module).to_pure_dict() if tree is None else tree
        cell = _cell_of(node, where)
        if cell is None:
            raise ValueError(f"{where}: the variables are not a SimpleCell's (keys "
                             f"{sorted(node)})")
        return [_Unit(where, [cell], [_activation_of_module(module)])]
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
            raise ValueError(f"{where}: each RNN of a Bidirectional must hold one SimpleCell")
        (f,), (b,) = halves
        return [_Unit(where, [f.cells[0], b.cells[0]], [f.acts[0], b.acts[0]],
                      "bidirectional")]
    if isinstance(module, (nnx.Sequential, linen.Sequential)):
        names = [f"layers_{i}" if tree is not None else str(i)
                 for i in range(len(module.layers))]
        return [u for name, layer in zip(names, module.layers, strict=True)
                for u in _module_units(layer, _sub(tree, name, where), f"{where}/{name}")]
    api = "nnx" if isinstance(module, nnx.Module) else "linen"
    raise UnsupportedError("rnn-ref", f"flax.{api}.{type(module).__name__}",
                           "from_flax reads SimpleCell, RNN, Bidirectional and Sequential "
                           "modules; give a list of a model's recurrent layers in call order, "
                           "or its variables")


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
                                   "a SimpleCell network holds params only")
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
        out.append(_Unit(f"[{li}]", [u.cells[0] for u in cells], [u.acts[0] for u in cells],
                         "bidirectional" if len(cells) == 2 else cells[0].direction,
                         cells[0].processing, loose=False))
    return out


def _groupings(units: list[_Unit], i: int, d_in: int | None) -> Iterator[list[_Unit]]:
    """Every way to make layers of ``units[i:]`` whose widths chain (layer l's input is layer
    l-1's output), pairing two loose cells of one shape into a bidirectional layer or not."""
    if i == len(units):
        yield []
        return
    options = [(units[i], 1)]
    pair = units[i:i + 2]
    if len(pair) == 2 and all(u.loose and u.direction is None and len(u.cells) == 1
                              for u in pair) and pair[0].sizes == pair[1].sizes:
        options.append((_Unit(pair[0].where, [*pair[0].cells, *pair[1].cells],
                              [*pair[0].acts, *pair[1].acts], "bidirectional", loose=False), 2))
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


def _activations(layers: list[_Unit], activation: Any, directions: list[str]) -> Any:
    """Each cell's activation: what its module records, else ``activation``, else tanh
    (flax's default); both given must agree."""
    module_acts = [u.acts for u in layers]
    if activation is None:
        return [[a or "tanh" for a in acts] for acts in module_acts]
    wanted = RNNConfig(1, 1, num_layers=len(layers), direction=directions,
                       activation=activation).activations
    for li, acts in enumerate(module_acts):
        for r, a in enumerate(acts):
            if a is not None and Activation(a) != wanted[li][r]:
                raise ValueError(f"activation={activation!r} but cell [{li}][{r}] uses {a!r}")
    return activation


def from_native(obj: Any, *, variables: Any = None, activation: Any = None,
                direction: Any = None, output_order: str | None = None,
                bias: bool = True) -> RNNParams:
    """Canonical parameters of a flax network of ``SimpleCell`` s.

    Args:
        obj: any of
            * a module: ``nnx.SimpleCell``, ``nnx.RNN``, ``nnx.Bidirectional``,
              ``nnx.Sequential`` of those, or the same linen modules with ``variables=``
              (or the pair ``(module, variables)`` that ``to_flax(kind="linen",
              layout="rnn")`` returns);
            * an nnx module's ``nnx.State``, or linen variables ``{"params": ...}`` of any
              module built of those: ``{"cell": ...}`` (``nn.RNN``), ``{"forward_rnn",
              "backward_rnn"}`` (``nn.Bidirectional``), ``layers_i`` (``nn.Sequential``),
              a module's own ``RNN_i`` / ``SimpleCell_i`` / attribute names (read in call
              order, the order flax writes them), down to a bare cell's ``{"i", "h"}``;
            * a list of layers, each one of the above or a list of one or two cells
              (forward, then backward).
        variables: a linen module's variables.
        activation: the cell activation; variables do not record it, so it defaults to
            flax's default ``"tanh"``; a module's ``activation_fn`` is read, and must agree.
        direction: one value, or one per layer. Variables do not record ``reverse``: a
            one-cell layer is forward unless told; two cells of one shape in a row from
            variables may be a bidirectional layer or two layers, decided by the widths
            chaining, else by this (the error lists the choices). A module's own must agree.
        output_order: ``"processing"`` for variables whose last layer is ``nn.RNN(...,
            reverse=True)`` without ``keep_order=True``; read from a module.
        bias: a cell always holds a bias; ``False`` reads a bias-free network (the biases
            must then be zero).
    """
    try:
        layers = _layers(_items(obj, variables), direction)
    except _Unchained as exc:
        layers = _reordered(obj, direction, exc)
    given = list(direction) if isinstance(direction, (list, tuple)) else [direction] * len(
        layers)
    directions = [_direction_of(u, g) for u, g in zip(layers, given, strict=True)]
    order = _output_order(layers, output_order)
    acts = _activations(layers, activation, directions)
    cells = [[CellParams(k_i, k_h, b, np.zeros_like(b)) for k_i, b, k_h in u.cells]
             for u in layers]
    config = RNNConfig(layers[0].sizes[0], [int(u.cells[0][2].shape[0]) for u in layers],
                       direction=directions, activation=acts, bias=bias, output_order=order)
    return RNNParams(config, cells)


# --------------------------------------------------------------------------------------------
# to flax
# --------------------------------------------------------------------------------------------
def to_native(params: RNNParams, *, kind: str = "nnx", layout: str = "cells",
              seed: int = 0) -> Any:
    """The network as flax holds it.

    Args:
        kind: ``"nnx"`` (modules) or ``"linen"`` (variables, and with ``layout="rnn"`` the
            module that applies them).
        layout: ``"cells"``: one cell, or a list per layer of a list per direction (nnx
            ``SimpleCell`` modules with the activation set; linen ``{"params": {"i": {"kernel",
            "bias"}, "h": {"kernel"}}}``). ``"rnn"``: what a flax model applies: an ``RNN``
            (``reverse=True`` for a reverse layer, ``keep_order=True`` unless the outputs are in
            processing order), a ``Bidirectional`` of two, a ``Sequential`` of the layers; nnx
            gives the module, linen the pair ``(module, variables)``.
        seed: the seed nnx needs to build a module (every weight is then overwritten).

    Raises:
        UnsupportedError: anything flax cannot hold (see :func:`unsupported`): clip, the
            pieces around the stack, merge modes other than concat, in ``"cells"``
            ``output_order="processing"``, and in modules an activation flax has no function
            for.
    """
    raise_if(unsupported(params.config, kind=kind, layout=layout), NAME)
    with jax.enable_x64(params.dtype == np.float64):
        if layout == "rnn":
            return _to_rnn(params, kind, seed)
        cells = [[_cell(params, li, r, kind, seed) for r in range(len(layer))]
                 for li, layer in enumerate(params.layers)]
    if len(cells) == 1 and len(cells[0]) == 1:
        return cells[0][0]
    return cells


def _cell(params: RNNParams, li: int, r: int, kind: str, seed: int) -> Any:
    """Layer ``li``, direction ``r`` as an ``nnx.SimpleCell`` or linen cell params."""
    cell = params.elman_cell(li, r)
    bias = cell.b_x + cell.b_h
    if kind == "linen":
        return {"params": {"i": {"kernel": jnp.asarray(cell.w_x), "bias": jnp.asarray(bias)},
                           "h": {"kernel": jnp.asarray(cell.w_h)}}}
    module = nnx.SimpleCell(cell.w_x.shape[0], cell.hidden_size,
                            activation_fn=_FNS[params.config.activation_of(li, r).name],
                            rngs=nnx.Rngs(seed), param_dtype=jnp.dtype(params.dtype.name))
    module.dense_i.kernel.value = jnp.asarray(cell.w_x)
    module.dense_i.bias.value = jnp.asarray(bias)  # type: ignore[union-attr]
    module.dense_h.kernel.value = jnp.asarray(cell.w_h)
    return module


def _to_rnn(params: RNNParams, kind: str, seed: int) -> Any:
    """``RNN`` / ``Bidirectional`` per layer, in a ``Sequential`` when there are several."""
    cfg = params.config
    api: Any = nnx if kind == "nnx" else linen
    modules, trees = [], []
    for li, layer in enumerate(params.layers):
        cells = [_cell(params, li, r, kind, seed) for r in range(len(layer))]
        if kind == "linen":
            trees.append([c["params"] for c in cells])
            cells = [linen.SimpleCell(layer[r].hidden_size,
                                      activation_fn=_FNS[cfg.activation_of(li, r).name],
                                      param_dtype=jnp.dtype(params.dtype.name))
                     for r in range(len(layer))]
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


def owns(model: Any) -> bool:
    """True for a flax SimpleCell module or linen SimpleCell params (a step), an nnx ``RNN``,
    ``Bidirectional`` or ``Sequential``, or a linen ``(module, variables)`` pair (a
    sequence)."""
    if isinstance(model, (nnx.SimpleCell, *_LAYER_MODULES)):
        return True
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], linen.Module):
        return True
    if isinstance(model, Mapping):
        inner = model.get("params", model)
        return isinstance(inner, Mapping) and set(inner) == {"i", "h"}
    return False


def _sequence_oracle(model: Any, hints: dict[str, Any]) -> Callable[[Any], np.ndarray[Any, Any]]:
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

    def call(inputs: Any) -> np.ndarray[Any, Any]:
        return cast(np.ndarray[Any, Any], forward(params, np.asarray(inputs, np.float64)).outputs)

    return call


def oracle(model: Any, *, activation: Any = None, **hints: Any) -> Callable[..., Any]:
    """For one flax ``SimpleCell`` (module or linen params): ``f(carry, inputs)`` returning
    ``(new_carry, output)`` of one step, as ``cell(carry, inputs)`` / ``apply`` do, in float64.
    For an nnx ``RNN`` / ``Bidirectional`` / ``Sequential`` or a linen ``(module,
    variables)`` pair: ``f(inputs)``, the outputs the module returns (``hints`` as
    :func:`from_native` takes them).

    ``carry`` is ``(..., M)`` and ``inputs`` ``(..., D)`` with the same leading axes. Linen
    params do not record the activation: pass ``activation=`` unless it is flax's default tanh.
    """
    from rnn_ref.reference import forward

    if isinstance(model, (*_LAYER_MODULES, tuple)):
        return _sequence_oracle(model, {"activation": activation, **hints})
    if hints:
        raise ValueError(f"a cell's oracle takes activation= only, got {sorted(hints)}")

    params = from_native(model, activation=activation)

    def call(carry: Any, inputs: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        h = np.asarray(carry, np.float64)
        x = np.asarray(inputs, np.float64)
        lead = x.shape[:-1]
        if h.shape[:-1] != lead:
            raise ValueError(f"carry {h.shape} and inputs {x.shape} must share leading axes")
        res = forward(params, x.reshape(-1, 1, x.shape[-1]),
                      h0=h.reshape(1, -1, h.shape[-1]))
        new = res.h_n[0].reshape(*lead, h.shape[-1])
        return new, new.copy()

    return call
