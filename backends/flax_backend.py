"""flax: ``SimpleCell`` converters and oracle (``flax.nnx`` and ``flax.linen``).

How flax differs from the reference (``flax/nnx/nn/recurrent.py`` and
``flax/linen/recurrent.py``, class ``SimpleCell``; ``h' = f(x @ kernel_i + bias + h @ kernel_h)``):

* Two APIs, one layout. ``nnx.SimpleCell(in_features, hidden_features, activation_fn=...)`` is a
  module holding ``dense_i`` and ``dense_h``; its state (``nnx.state(cell)``) is the same tree
  of arrays. ``linen.SimpleCell(features, activation_fn=...)`` holds no weights: its params are
  ``{"params": {"i": {"kernel", "bias"}, "h": {"kernel"}}}``.
* Weights are (in, out), as the reference's: ``dense_i.kernel`` (linen ``i.kernel``) is
  ``w_x (D, M)``, ``dense_h.kernel`` (linen ``h.kernel``) is ``w_h (M, M)``.
* One bias: ``dense_i.bias`` (linen ``i.bias``) is ``(M,)`` and ``dense_h`` has none. Writing,
  ``bias = b_x + b_h``; reading, ``b_x = bias, b_h = 0`` (the bias rule). A cell always holds a
  bias: a bias-free network is written with a zero one and read with ``bias=False``.
* A cell is one layer in one direction. A network is a list of layers, each a list of one cell
  or of two (forward, then backward: a bidirectional layer); ``L = R = 1`` is the cell alone.
  Nothing in the cells records the direction (read a reverse network with
  ``direction="reverse"``) nor, in linen params or nnx state, the activation (flax's default
  is tanh; an nnx module's ``activation_fn`` is read, and must be one of the five below).
* What flax cannot express (:func:`unsupported`): clip, a readout, merge modes other than
  concat, ``output_order="processing"`` (the list of cells has no place for either: reading it
  back would give concat and time-aligned outputs), and, in nnx modules, activations other
  than tanh, relu, sigmoid, softplus and softsign (``jax.nn.soft_sign``), the ones flax has a
  function for here. Per-layer hidden sizes, per-layer or per-direction activations, a reverse
  direction and ``bias=False`` are all expressible. ``padded_output`` is not a property of a
  cell (a cell has no lengths) and is not checked.
* ``residual=True`` (nnx) adds the input to the pre-activation: not an Elman cell, refused when
  a module says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnn_ref.activations import Activation
from rnn_ref.backends._common import raise_if
from rnn_ref.backends._frameworks import flax_unsupported as unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import CellParams, RNNParams

__all__ = ["NAME", "from_native", "oracle", "owns", "to_native", "unsupported"]

NAME = "flax SimpleCell"
#: ``activation_fn.__name__`` -> rnn-ref name, for reading an nnx module's activation
_FLAX_FN_NAMES = {"tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid", "softplus": "softplus",
                  "soft_sign": "softsign"}


# --------------------------------------------------------------------------------------------
# from flax
# --------------------------------------------------------------------------------------------
def _cell_arrays(obj: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any],
                                     np.ndarray[Any, Any]]:
    """(kernel_i, bias_i, kernel_h) from an nnx.SimpleCell, its state, or linen params."""
    if isinstance(obj, nnx.Module):
        if getattr(obj, "residual", False):
            raise UnsupportedError("rnn-ref", "a flax SimpleCell with residual=True",
                                   "a pre-activation residual is not an Elman cell")
        if not isinstance(obj, nnx.SimpleCell):
            raise UnsupportedError("rnn-ref", f"flax.nnx.{type(obj).__name__}",
                                   "only SimpleCell is an Elman cell")
        obj = nnx.state(obj)
    if isinstance(obj, nnx.State):
        obj = obj.to_pure_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a flax SimpleCell, its state or its params, "
                        f"got {type(obj).__name__}")
    if "params" in obj and len(obj) == 1:
        obj = obj["params"]
    if "dense_i" in obj:  # nnx
        i, h = obj["dense_i"], obj["dense_h"]
    elif "i" in obj and "h" in obj:  # linen
        i, h = obj["i"], obj["h"]
    else:
        raise ValueError(f"not SimpleCell parameters: keys {sorted(obj)}; expected dense_i and "
                         f"dense_h (nnx) or i and h (linen)")
    if "bias" in h:
        raise ValueError("the recurrent Dense of a SimpleCell has no bias, but one is given")
    return np.asarray(i["kernel"]), np.asarray(i["bias"]), np.asarray(h["kernel"])


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


def from_native(obj: Any, *, activation: Any = None, direction: str | None = None,
                bias: bool = True) -> RNNParams:
    """Canonical parameters of flax ``SimpleCell`` s.

    Args:
        obj: one cell (an ``nnx.SimpleCell``, its ``nnx.State``, or linen's ``{"params":
            {"i": ..., "h": ...}}``), or a list of layers, each a list of one or two cells
            (forward, then backward).
        activation: the cell activation; a params pytree does not record it, so it defaults
            to flax's default ``"tanh"``; an nnx module's ``activation_fn`` is read and must
            agree when both are given.
        direction: ``"reverse"`` for one-cell layers that read backwards; otherwise inferred
            (one cell per layer: forward, two: bidirectional).
        bias: a cell always holds a bias; ``False`` reads a bias-free network (the biases
            must then be zero).
    """
    layers_in = obj if isinstance(obj, (list, tuple)) else [[obj]]
    layers_in = [layer if isinstance(layer, (list, tuple)) else [layer] for layer in layers_in]
    R = len(layers_in[0])
    if R not in (1, 2) or any(len(layer) != R for layer in layers_in):
        raise ValueError("every layer must hold the same number of cells, 1 or 2")
    if direction is None:
        direction = "bidirectional" if R == 2 else "forward"
    module_acts = [[_activation_of_module(c) for c in layer] for layer in layers_in]
    if activation is None:  # each module's own, else flax's default
        activation = [[a or "tanh" for a in layer] for layer in module_acts]
    else:
        wanted = RNNConfig(1, 1, num_layers=len(layers_in), direction=direction,
                           activation=activation).activations
        for li, layer in enumerate(module_acts):
            for r, a in enumerate(layer):
                if a is not None and Activation(a) != wanted[li][r]:
                    raise ValueError(f"activation={activation!r} but cell [{li}][{r}] uses {a!r}")
    cells, sizes = [], []
    for layer in layers_in:
        row = []
        for c in layer:
            k_i, b, k_h = _cell_arrays(c)
            row.append(CellParams(k_i, k_h, b, np.zeros_like(b)))
        cells.append(row)
        sizes.append(row[0].hidden_size)
    config = RNNConfig(int(cells[0][0].w_x.shape[0]), tuple(sizes), direction=direction,
                       activation=activation, bias=bias)
    return RNNParams(config, cells)


# --------------------------------------------------------------------------------------------
# to flax
# --------------------------------------------------------------------------------------------
def to_native(params: RNNParams, *, kind: str = "nnx", seed: int = 0) -> Any:
    """flax ``SimpleCell`` parameters: one cell, or a list per layer of a list per direction.

    Args:
        kind: ``"nnx"`` (``nnx.SimpleCell`` modules with the activation set) or ``"linen"``
            (``{"params": {"i": {"kernel", "bias"}, "h": {"kernel"}}}`` dicts).
        seed: the seed nnx needs to build a module (every weight is then overwritten).

    Raises:
        UnsupportedError: anything a list of ``SimpleCell`` s cannot hold (see
            :func:`unsupported`): clip, a readout, merge modes other than concat,
            ``output_order="processing"``, and in nnx an activation flax has no function for.
    """
    raise_if(unsupported(params.config, kind=kind), NAME)
    with jax.enable_x64(params.dtype == np.float64):
        return _to_flax(params, kind, seed)


def _to_flax(params: RNNParams, kind: str, seed: int) -> Any:
    cfg = params.config
    fns: dict[str, Callable[[jax.Array], jax.Array]] = {
        "tanh": jnp.tanh, "relu": nnx.relu, "sigmoid": nnx.sigmoid, "softplus": nnx.softplus,
        "softsign": nnx.soft_sign}
    out: list[list[Any]] = []
    for li, layer in enumerate(params.layers):
        row: list[Any] = []
        for r, cell in enumerate(layer):
            bias = cell.b_x + cell.b_h
            if kind == "linen":
                row.append({"params": {"i": {"kernel": jnp.asarray(cell.w_x),
                                             "bias": jnp.asarray(bias)},
                                       "h": {"kernel": jnp.asarray(cell.w_h)}}})
                continue
            module = nnx.SimpleCell(cell.w_x.shape[0], cell.hidden_size,
                                    activation_fn=fns[cfg.activation_of(li, r).name],
                                    rngs=nnx.Rngs(seed), param_dtype=jnp.dtype(params.dtype.name))
            module.dense_i.kernel.value = jnp.asarray(cell.w_x)
            module.dense_i.bias.value = jnp.asarray(bias)  # type: ignore[union-attr]
            module.dense_h.kernel.value = jnp.asarray(cell.w_h)
            row.append(module)
        out.append(row)
    if cfg.num_layers == 1 and cfg.num_directions == 1:
        return out[0][0]
    return out


# --------------------------------------------------------------------------------------------
# oracle
# --------------------------------------------------------------------------------------------
def owns(model: Any) -> bool:
    """True for a flax SimpleCell module or linen SimpleCell params."""
    if isinstance(model, nnx.SimpleCell):
        return True
    if isinstance(model, Mapping):
        inner = model.get("params", model)
        return isinstance(inner, Mapping) and set(inner) == {"i", "h"}
    return False


def oracle(model: Any, *, activation: Any = None
           ) -> Callable[[Any, Any], tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    """For one flax ``SimpleCell`` (module or linen params): ``f(carry, inputs)`` returning
    ``(new_carry, output)`` of one step, as ``cell(carry, inputs)`` / ``apply`` do, in float64.

    ``carry`` is ``(..., M)`` and ``inputs`` ``(..., D)`` with the same leading axes. Linen
    params do not record the activation: pass ``activation=`` unless it is flax's default tanh.
    """
    from rnn_ref.reference import forward

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
