"""JAX: a jitted ``lax.scan`` implementation of the whole spec.

The ``jax`` backend is this project's own code, not a framework layer: :func:`apply` runs the
reference semantics (layers, directions and merge modes, ``h0``, lengths and masks with the
three padded-output modes, both output orders, readout, every activation, clip) on a params
pytree, is jitted per config and shape, and is differentiable with ``jax.grad``. A reverse
direction scans with ``lax.scan(..., reverse=True)``, which keeps outputs time-aligned.

float64 runs inside ``jax.enable_x64(True)`` for the call only; JAX's global setting is never
changed.

flax ``SimpleCell`` (converters, oracle, what it cannot express) is
:mod:`rnn_ref.backends.flax_backend`; :meth:`JaxBackend.round_trip` goes through it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnn_ref.activations import Activation
from rnn_ref.backends._frameworks import jax_unsupported as unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.inputs import check_inputs
from rnn_ref.params import CellParams, Readout, RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["JaxBackend", "apply", "pytree_of", "unsupported"]

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
        g = cast(Activation, config.output_activation)  # softmax: refused by unsupported
        y = jnp.swapaxes(_act(g)(merged @ ro["w"] + ro["b"]), 0, 1)
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
        reason = unsupported(config)
        return None if reason is None else f"{reason[0]}: {reason[1]}"

    def backward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                 lengths: Any = None, mask: Any = None, grad_outputs: Any = None,
                 grad_h_n: Any = None, grad_y: Any = None) -> Any:
        """Gradients by ``jax.grad`` through :func:`apply` (a ``BackwardResult``)."""
        from rnn_ref.gradient import BackwardResult

        cfg = params.config
        dt = params.dtype
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, dtype=dt, where="jax")
        with jax.enable_x64(dt == np.float64):
            tree = pytree_of(params)
            h0s = [jnp.asarray(h) for h in inputs.h0_or_zeros()]  # L*R (N, M_l)
            valid = jnp.asarray(inputs.valid) if inputs.padded else None  # (N, T)

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

            g_tree, g_x, g_h0 = jax.grad(loss, argnums=(0, 1, 2))(tree, jnp.asarray(inputs.x),
                                                                  h0s)
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
        """Through flax ``nnx.SimpleCell`` modules and back (raises where a cell cannot: see
        :func:`rnn_ref.backends.flax_backend.unsupported`)."""
        from rnn_ref.backends.flax_backend import from_native, to_native

        cfg = params.config
        return from_native(to_native(params), direction=cfg.direction, bias=cfg.bias)

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None) -> ForwardResult:
        """:func:`apply` on ``x (N, T, D)``, ``h0 (L*R, N, M)`` (or L*R ``(N, M_l)``),
        ``lengths (N,)`` or ``mask (N, T)``: ``outputs (N, T, F)`` (a pair of ``(N, T, M)``
        for ``merge_mode=None``), ``h_n (L*R, N, M)`` (or L*R ``(N, M_l)``) and ``y (N, T, K)``
        or ``None``, in the parameters' dtype. Bad inputs raise as
        :func:`rnn_ref.inputs.check_inputs` says."""
        def as_np(a: Any) -> Any:
            return tuple(np.asarray(v) for v in a) if isinstance(a, tuple) else np.asarray(a)

        dt = params.dtype
        inputs = check_inputs(params.config, x, h0=h0, lengths=lengths, mask=mask, dtype=dt,
                              where="jax")
        with jax.enable_x64(dt == np.float64):
            tree = pytree_of(params)
            outputs, h_n, y = apply(tree, jnp.asarray(inputs.x), config=params.config,
                                    h0=[jnp.asarray(h) for h in inputs.h0_or_zeros()],
                                    mask=jnp.asarray(inputs.valid) if inputs.padded else None)
            jax.block_until_ready(outputs)
            return ForwardResult(as_np(outputs), as_np(h_n), None if y is None else as_np(y))
