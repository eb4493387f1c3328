"""JAX: a jitted ``lax.scan`` implementation of the whole spec, and flax ``SimpleCell``.

The ``jax`` backend is this project's own code, not a framework layer: :func:`apply` runs the
reference semantics (layers, directions and merge modes, ``h0``, lengths and masks with the
three padded-output modes, both output orders, readout, every activation, clip) on a params
pytree, is jitted per config and shape, and is differentiable with ``jax.grad``. A reverse
direction scans with ``lax.scan(..., reverse=True)``, which keeps outputs time-aligned.

float64 runs inside ``jax.enable_x64(True)`` for the call only; JAX's global setting is never
changed.

flax (``flax.nnx.SimpleCell`` and ``flax.linen.SimpleCell``, ``flax/nnx/nn/recurrent.py``)
differs from the reference:

* one bias: ``dense_i`` (linen ``i``) has ``kernel (D, M)`` and ``bias (M,)``; ``dense_h``
  (linen ``h``) has ``kernel (M, M)`` and no bias. So ``bias = b_x + b_h`` and, reading,
  ``b_x = bias, b_h = 0`` (the bias rule).
* a cell is one layer in one direction; a network is a list of layers, each a list of one
  cell (or two for a bidirectional layer).
* a params pytree does not record the activation (flax's default is tanh) nor
  ``residual=True`` (pre-activation residual, not an Elman cell: refused when a module says so).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnn_ref.activations import Activation
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.params import CellParams, Readout, RNNParams
from rnn_ref.reference import ForwardResult, _prepare

__all__ = ["JaxBackend", "apply", "from_native", "oracle", "owns", "pytree_of", "to_native"]

Tree = dict[str, Any]


# --------------------------------------------------------------------------------------------
# the lax.scan implementation
# --------------------------------------------------------------------------------------------
def _act(a: Activation) -> Callable[[jax.Array], jax.Array]:
    n = a.name
    al = a.alpha if a.alpha is not None else 0.0  # only the activations that take one use it
    be = a.beta if a.beta is not None else 0.0
    table: dict[str, Callable[[jax.Array], jax.Array]] = {
        "tanh": jnp.tanh,
        "relu": jax.nn.relu,
        "sigmoid": jax.nn.sigmoid,
        "linear": lambda z: z,
        "affine": lambda z: al * z + be,
        "leaky_relu": lambda z: jnp.where(z >= 0, z, al * z),
        "thresholded_relu": lambda z: jnp.where(z > al, z, jnp.zeros_like(z)),
        "scaled_tanh": lambda z: al * jnp.tanh(be * z),
        "hard_sigmoid": lambda z: jnp.clip(al * z + be, 0, 1),
        "elu": lambda z: jnp.where(z >= 0, z, al * jnp.expm1(jnp.minimum(z, 0))),
        "softsign": lambda z: z / (1 + jnp.abs(z)),
        "softplus": jax.nn.softplus,
    }
    return table[n]


def _direction(x_tm: jax.Array, cell: Tree, h0: jax.Array, valid_tm: jax.Array | None,
               f: Activation, clip: float | None, reverse: bool, padded_output: str
               ) -> tuple[jax.Array, jax.Array]:
    """One layer, one direction: ``x_tm (T, N, D)`` -> ``(T, N, M)`` outputs, ``h_n (N, M)``."""
    act = _act(f)
    proj = x_tm @ cell["w_x"] + (cell["b_x"] + cell["b_h"])  # hoisted input projection
    w_h = cell["w_h"]

    def cell_step(h: jax.Array, p_t: jax.Array) -> jax.Array:
        z = h @ w_h + p_t
        if clip is not None:
            z = jnp.clip(z, -clip, clip)
        return act(z)

    if valid_tm is None:
        def step(h: jax.Array, p_t: jax.Array) -> tuple[jax.Array, jax.Array]:
            h = cell_step(h, p_t)
            return h, h

        h_n, out = lax.scan(step, h0, proj, reverse=reverse)
        return out, h_n

    def masked_step(carry: tuple[jax.Array, jax.Array], inp: tuple[jax.Array, jax.Array]
                    ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        h, started = carry
        p_t, v_t = inp
        v = v_t[:, None]
        h_new = jnp.where(v, cell_step(h, p_t), h)
        if padded_output == "zeros":
            out = jnp.where(v, h_new, jnp.zeros_like(h_new))
        elif padded_output == "carry_state":
            out = h_new
        else:  # carry_output: zeros until the first valid step
            out = jnp.where(v | started[:, None], h_new, jnp.zeros_like(h_new))
        return (h_new, started | v_t), out

    started0 = jnp.zeros(h0.shape[0], bool)
    (h_n, _), out = lax.scan(masked_step, (h0, started0), (proj, valid_tm), reverse=reverse)
    return out, h_n


@partial(jax.jit, static_argnames=("config", "padded_output", "output_order"))
def _apply(tree: Tree, x: jax.Array, h0: tuple[jax.Array, ...], valid: jax.Array | None,
           config: RNNConfig, padded_output: str, output_order: str
           ) -> tuple[Any, tuple[jax.Array, ...], jax.Array | None]:
    R = config.num_directions
    layer_in = jnp.swapaxes(x, 0, 1)  # (T, N, D)
    valid_tm = None if valid is None else jnp.swapaxes(valid, 0, 1)
    h_n = []
    merged: Any = layer_in
    for li, layer in enumerate(tree["layers"]):
        outs = []
        for r, cell in enumerate(layer):
            reverse = config.direction == "reverse" or r == 1
            out, hn = _direction(layer_in, cell, h0[li * R + r], valid_tm,
                                 config.activation_of(li, r), config.clips[li], reverse,
                                 padded_output)
            if li == config.num_layers - 1 and output_order == "processing":
                out = out[::-1]
            outs.append(out)
            h_n.append(hn)
        mode = config.merge_modes[li]
        if R == 1:
            merged = outs[0]
        elif mode == "concat":
            merged = jnp.concatenate(outs, axis=-1)
        elif mode == "sum":
            merged = outs[0] + outs[1]
        elif mode == "mul":
            merged = outs[0] * outs[1]
        elif mode == "ave":
            merged = (outs[0] + outs[1]) / 2
        else:
            merged = (outs[0], outs[1])
        layer_in = merged
    y = None
    if tree.get("readout") is not None:
        ro = tree["readout"]
        y = jnp.swapaxes(_act(config.output_activation)(merged @ ro["w"] + ro["b"]), 0, 1)  # type: ignore[arg-type]
    if isinstance(merged, tuple):
        outputs: Any = tuple(jnp.swapaxes(o, 0, 1) for o in merged)
    else:
        outputs = jnp.swapaxes(merged, 0, 1)
    return outputs, tuple(h_n), y


def pytree_of(params: RNNParams) -> Tree:
    """The params as a pytree of ``jnp`` arrays: ``{"layers": [[{"w_x", "w_h", "b_x", "b_h"}
    per direction] per layer], "readout": {"w", "b"} or None}`` (differentiable leaves)."""
    with jax.enable_x64(params.dtype == np.float64):
        layers = [[{k: jnp.asarray(v) for k, v in cell.arrays().items()} for cell in layer]
                  for layer in params.layers]
        readout = None if params.readout is None else {
            k: jnp.asarray(v) for k, v in params.readout.arrays().items()}
    return {"layers": layers, "readout": readout}


def apply(tree: Tree, x: Any, *, config: RNNConfig, h0: Any = None, lengths: Any = None,
          mask: Any = None, padded_output: str | None = None, output_order: str | None = None
          ) -> tuple[Any, Any, Any]:
    """The forward pass on a params pytree (see :func:`pytree_of`), traceable by JAX.

    Args:
        tree: the parameters; gradients with respect to its leaves come from ``jax.grad``.
        x: ``(N, T, D)``; ``h0`` ``(L*R, N, M)`` or a list of L*R ``(N, M_l)``; ``lengths``
            ``(N,)`` or ``mask`` ``(N, T)`` booleans; as :func:`rnn_ref.forward`.
        config: the architecture (static).

    Returns:
        ``(outputs (N, T, F), h_n, y)`` as JAX arrays, ``h_n`` stacked ``(L*R, N, M)`` when
        the hidden sizes agree, else a tuple; ``y`` ``None`` without a readout.
    """
    n, t = x.shape[0], x.shape[1]
    R = config.num_directions
    if h0 is None:
        h0s = tuple(jnp.zeros((n, config.hidden_sizes[i // R]), x.dtype)
                    for i in range(config.num_layers * R))
    else:
        h0s = tuple(h0[i] for i in range(config.num_layers * R))
    valid = None
    if lengths is not None:
        valid = jnp.arange(t)[None, :] < jnp.asarray(lengths)[:, None]
    elif mask is not None:
        valid = jnp.asarray(mask, bool)
    outputs, h_n, y = _apply(tree, x, h0s, valid, config,
                             padded_output or config.padded_output,
                             output_order or config.output_order)
    return outputs, (jnp.stack(h_n) if config.uniform_hidden else h_n), y


class JaxBackend:
    """This project's jitted ``lax.scan`` implementation, in the parameters' dtype."""

    name = "jax"

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        if np.dtype(dtype).kind != "f":
            return f"dtype {np.dtype(dtype)} is not a floating dtype"
        return None

    def backward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                 lengths: Any = None, mask: Any = None, grad_outputs: Any = None,
                 grad_h_n: Any = None, grad_y: Any = None) -> Any:
        """Gradients by ``jax.grad`` through :func:`apply` (a ``BackwardResult``)."""
        from rnn_ref.gradient import BackwardResult

        cfg = params.config
        dt = params.dtype
        p = _prepare(params, x, h0, lengths, mask, dt, None, None)
        with jax.enable_x64(dt == np.float64):
            tree = pytree_of(params)
            h0s = [jnp.asarray(h) for h in p.h0]
            valid = None if p.valid is None else jnp.asarray(p.valid)

            def pairs(a: Any, g: Any) -> list[tuple[Any, Any]]:
                if g is None:
                    return []
                if isinstance(a, tuple):
                    return list(zip(a, g, strict=True))
                return [(a, jnp.asarray(g, dt))]

            def loss(t: Tree, xx: jax.Array, hh: list[jax.Array]) -> jax.Array:
                out, h_n, y = apply(t, xx, config=cfg, h0=hh, mask=valid)
                hs = h_n if isinstance(h_n, tuple) else tuple(h_n)
                g_hn = None if grad_h_n is None else (
                    grad_h_n if isinstance(grad_h_n, (list, tuple)) else list(grad_h_n))
                total = jnp.zeros((), dt)
                for a, g in pairs(out, grad_outputs) + pairs(y, grad_y):
                    total = total + jnp.sum(a * jnp.asarray(g, dt))
                if g_hn is not None:
                    for a, g in zip(hs, g_hn, strict=True):
                        total = total + jnp.sum(a * jnp.asarray(g, dt))
                return total

            g_tree, g_x, g_h0 = jax.grad(loss, argnums=(0, 1, 2))(tree, jnp.asarray(p.x), h0s)
            layers = [[CellParams(*(np.asarray(c[k]) for k in ("w_x", "w_h", "b_x", "b_h")))
                       for c in layer] for layer in g_tree["layers"]]
            if not cfg.bias:
                layers = [[CellParams(c.w_x, c.w_h, np.zeros_like(c.b_x), np.zeros_like(c.b_h))
                           for c in layer] for layer in layers]
            ro = g_tree.get("readout")
            readout = None if ro is None else Readout(np.asarray(ro["w"]), np.asarray(ro["b"]))
            hs0 = [np.asarray(h) for h in g_h0]
            return BackwardResult(RNNParams(cfg, layers, readout), np.asarray(g_x),
                                  np.stack(hs0) if cfg.uniform_hidden else tuple(hs0))

    def round_trip(self, params: RNNParams) -> RNNParams:
        """Through flax ``nnx.SimpleCell`` modules and back (raises where a cell cannot)."""
        cfg = params.config
        if cfg.output_order != "aligned":
            raise UnsupportedError("flax SimpleCell", "output_order 'processing'")
        if any(m != "concat" for m in cfg.merge_modes):
            raise UnsupportedError("flax SimpleCell", "merge modes other than concat")
        return from_native(to_native(params), direction=cfg.direction, bias=cfg.bias)

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None) -> ForwardResult:
        def as_np(a: Any) -> Any:
            return tuple(np.asarray(v) for v in a) if isinstance(a, tuple) else np.asarray(a)

        dt = params.dtype
        p = _prepare(params, x, h0, lengths, mask, dt, None, None)  # the oracle's validation
        with jax.enable_x64(dt == np.float64):
            tree = pytree_of(params)
            outputs, h_n, y = apply(tree, jnp.asarray(p.x), config=params.config,
                                    h0=[jnp.asarray(h) for h in p.h0],
                                    mask=None if p.valid is None else jnp.asarray(p.valid))
            jax.block_until_ready(outputs)
            return ForwardResult(as_np(outputs), as_np(h_n), None if y is None else as_np(y))


# --------------------------------------------------------------------------------------------
# flax SimpleCell
# --------------------------------------------------------------------------------------------
_FLAX_FN_NAMES = {"tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid", "softplus": "softplus",
                  "soft_sign": "softsign"}


def _cell_arrays(obj: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any],
                                     np.ndarray[Any, Any]]:
    """(kernel_i, bias_i, kernel_h) from an nnx.SimpleCell, its state, or linen params."""
    from flax import nnx

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


def to_native(params: RNNParams, *, kind: str = "nnx", seed: int = 0) -> Any:
    """flax ``SimpleCell`` parameters: one cell, or a list per layer of a list per direction.

    Args:
        kind: ``"nnx"`` (``nnx.SimpleCell`` modules with the activation set) or ``"linen"``
            (``{"params": {"i": {"kernel", "bias"}, "h": {"kernel"}}}`` dicts).
        seed: the seed nnx needs to build a module (every weight is then overwritten).

    Raises:
        UnsupportedError: clip, a readout, or merge modes other than concat (a cell has none
            of them), or an activation flax has no function for.
    """

    cfg = params.config
    if kind not in ("nnx", "linen"):
        raise ValueError(f"kind must be 'nnx' or 'linen', got {kind!r}")
    if any(c is not None for c in cfg.clips):
        raise UnsupportedError("flax SimpleCell", "clip")
    if params.readout is not None:
        raise UnsupportedError("flax SimpleCell", "a readout", "a cell has no output layer")
    with jax.enable_x64(params.dtype == np.float64):
        return _to_flax(params, kind, seed)


def _to_flax(params: RNNParams, kind: str, seed: int) -> Any:
    from flax import nnx

    cfg = params.config
    fns = {"tanh": jnp.tanh, "relu": nnx.relu, "sigmoid": nnx.sigmoid, "softplus": nnx.softplus,
           "softsign": nnx.soft_sign}
    out: list[list[Any]] = []
    for li, layer in enumerate(params.layers):
        row: list[Any] = []
        for r, cell in enumerate(layer):
            act = cfg.activation_of(li, r)
            bias = cell.b_x + cell.b_h
            if kind == "linen":
                row.append({"params": {"i": {"kernel": jnp.asarray(cell.w_x),
                                             "bias": jnp.asarray(bias)},
                                       "h": {"kernel": jnp.asarray(cell.w_h)}}})
                continue
            if act.name not in fns:
                raise UnsupportedError("flax.nnx.SimpleCell", f"activation {act}",
                                       f"it takes {', '.join(fns)} here")
            module = nnx.SimpleCell(cell.w_x.shape[0], cell.hidden_size,
                                    activation_fn=fns[act.name], rngs=nnx.Rngs(seed),
                                    param_dtype=jnp.dtype(params.dtype.name))
            module.dense_i.kernel.value = jnp.asarray(cell.w_x)
            module.dense_i.bias.value = jnp.asarray(bias)  # type: ignore[union-attr]
            module.dense_h.kernel.value = jnp.asarray(cell.w_h)
            row.append(module)
        out.append(row)
    if cfg.num_layers == 1 and cfg.num_directions == 1:
        return out[0][0]
    return out


def owns(model: Any) -> bool:
    """True for a flax SimpleCell module or linen SimpleCell params."""
    from flax import nnx

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

