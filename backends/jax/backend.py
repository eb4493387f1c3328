"""JAX: a jitted ``lax.scan`` implementation of the whole spec.

The ``jax`` backend is this project's own code, not a framework layer: :func:`apply` runs the
reference semantics (the embedding, Elman, GRU and LSTM layers with every switch of spec 2.7,
of any direction and merge mode, ``h0`` and ``c0``, lengths and masks with the three
padded-output modes, both output orders, the selection, the head with softmax, every
activation, clip) on a params pytree, is jitted per config and shape, and is differentiable
with ``jax.grad``. A reverse direction scans with ``lax.scan(..., reverse=True)``, which keeps
outputs time-aligned. An Elman direction's gradient is written out (:func:`_recurrence`); a
gated direction's is JAX's own autodiff of its scan (:func:`_gated_direction`), which the
tests hold :func:`rnn_ref.backward` to.

float64 runs inside ``jax.enable_x64(True)`` for the call only; JAX's global setting is never
changed.

flax ``SimpleCell`` (converters, oracle, what it cannot express) is
:mod:`rnn_ref.backends.flax.convert`; :meth:`JaxBackend.round_trip` goes through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnn_ref.activations import Activation
from rnn_ref.backends import devices
from rnn_ref.backends.jax.record import unsupported
from rnn_ref.cells import CellSpec
from rnn_ref.config import RNNConfig
from rnn_ref.inputs import check_inputs, check_options
from rnn_ref.network import POOLINGS
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["UNROLL", "JaxBackend", "JaxGpuBackend", "JaxGpuFp32Backend", "apply", "pytree_of",
           "unsupported"]

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


#: steps of ``lax.scan`` unrolled into one loop iteration, per JAX platform (CPU: 1, the loop's
#: overhead is small against a step; GPU: 8, each iteration is a kernel launch per op, and the
#: issue-15 measurements on an H200 went from 5.6 to 3.0 times cuDNN's time with 4 to 32)
UNROLL = {"cpu": 1, "gpu": 8, "cuda": 8, "rocm": 8, "tpu": 8}


def _cell_fn(f: Activation, clip: float | None) -> Callable[[jax.Array], jax.Array]:
    """``z -> f(clip(z))``, elementwise."""
    act = _act(f)
    if clip is None:
        return act
    c = clip
    return lambda z: act(jnp.clip(z, -c, c))


def _kernel_grad(hs: jax.Array, h0: jax.Array, dzs: jax.Array, reverse: bool) -> jax.Array:
    """``sum_t h_{t-1}^T dz_t`` ``(M, M)`` for states ``hs (T, N, M)`` after ``h0 (N, M)``
    and pre-activation cotangents ``dzs (T, N, M)``: two products over every step at once
    (the state before each step is ``h0`` then ``hs`` shifted by one in processing order)."""
    m = h0.shape[-1]
    if hs.shape[0] == 0:
        return jnp.zeros((m, m), h0.dtype)
    first, rest = (-1, slice(None, -1)) if reverse else (0, slice(1, None))
    before = hs[1:] if reverse else hs[:-1]
    return (before.reshape(-1, m).T @ dzs[rest].reshape(-1, m)
            + h0.T @ dzs[first])


#: activations whose derivative is a function of their output ``h = f(z)``: the backward
#: pass reads it from the saved states, with no pass over the pre-activations (a second tanh
#: over every step cost as much as the rest of the backward pass on the CPU)
_DERIVATIVE_OF_OUTPUT: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": lambda h: 1 - h * h,
    "sigmoid": lambda h: h * (1 - h),
    "relu": lambda h: (h > 0).astype(h.dtype),
    "linear": jnp.ones_like,
}


@cache
def _recurrence(f: Activation, clip: float | None, reverse: bool, unroll: int
                ) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """The recurrence of one direction, ``(w_h (M, M), h0 (N, M), proj (T, N, M), valid
    (T, N) bool or None) -> (states (T, N, M), h_n (N, M))`` with ``h_t = f(clip(h_{t-1} @ w_h
    + proj_t))`` where valid (padded steps keep the state), scanned in processing order.

    Its gradient is written out (a ``custom_vjp``) the way the oracle's is: the backward scan
    carries only the state's cotangent (one ``(N, M) @ (M, M)`` product a step), and the
    recurrent kernel's gradient is one ``(M, T N) @ (T N, M)`` product after the scan, not a
    product per step inside it. The activation's derivative comes from the saved states for
    tanh, sigmoid, relu and linear without a clip, else from ``jax.jvp`` of ``f(clip(.))`` at
    the saved pre-activations, for every step at once.
    """
    g = _cell_fn(f, clip)
    of_output = _DERIVATIVE_OF_OUTPUT.get(f.name) if clip is None else None

    def scan(w_h: jax.Array, h0: jax.Array, proj: jax.Array, valid: jax.Array | None,
             keep_z: bool) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        def step(h: jax.Array, inp: Any) -> tuple[jax.Array, Any]:
            p_t, v_t = inp
            z = h @ w_h + p_t
            h_new = g(z) if v_t is None else jnp.where(v_t[:, None], g(z), h)
            return h_new, ((h_new, z) if keep_z else h_new)

        h_n, ys = lax.scan(step, h0, (proj, valid), reverse=reverse, unroll=unroll)
        hs, zs = ys if keep_z else (ys, None)
        return hs, h_n, zs

    @jax.custom_vjp
    def rec(w_h: jax.Array, h0: jax.Array, proj: jax.Array, valid: jax.Array | None
            ) -> tuple[jax.Array, jax.Array]:
        hs, h_n, _ = scan(w_h, h0, proj, valid, keep_z=False)
        return hs, h_n

    def rec_fwd(w_h: jax.Array, h0: jax.Array, proj: jax.Array, valid: jax.Array | None
                ) -> tuple[tuple[jax.Array, jax.Array], Any]:
        hs, h_n, zs = scan(w_h, h0, proj, valid, keep_z=of_output is None)
        return (hs, h_n), (w_h, h0, hs, zs, valid)

    def rec_bwd(res: Any, cot: tuple[jax.Array, jax.Array]) -> tuple[Any, ...]:
        w_h, h0, hs, zs, valid = res
        d_hs, d_hn = cot
        w_t = w_h.T

        def deriv(saved: jax.Array) -> jax.Array:
            """f'(z) of one step, from its state or its pre-activation."""
            if of_output is not None:
                return of_output(saved)
            return jax.jvp(g, (saved,), (jnp.ones_like(saved),))[1]

        def bstep(dh: jax.Array, inp: Any) -> tuple[jax.Array, jax.Array]:
            d_out, saved, v_t = inp
            a = dh + d_out
            if v_t is None:
                dz = a * deriv(saved)
                return dz @ w_t, dz
            v = v_t[:, None]  # a padded step passes the state's cotangent through
            dz = jnp.where(v, a * deriv(saved), jnp.zeros_like(a))
            return jnp.where(v, dz @ w_t, a), dz

        saved = hs if of_output is not None else zs
        d_h0, dzs = lax.scan(bstep, d_hn, (d_hs, saved, valid), reverse=not reverse,
                             unroll=unroll)
        return _kernel_grad(hs, h0, dzs, reverse), d_h0, dzs, None

    rec.defvjp(rec_fwd, rec_bwd)
    return rec


def _output_mask(valid_tm: jax.Array, padded_output: str, reverse: bool) -> jax.Array | None:
    """Which steps output the state, ``(T, N, 1)`` booleans (``None``: every step):
    ``zeros``, the valid ones; ``carry_output``, every step from the first valid one in
    processing order; ``carry_state``, all."""
    if padded_output == "carry_state":
        return None
    if padded_output == "zeros":
        return valid_tm[:, :, None]
    started = lax.cummax(valid_tm.astype(jnp.int32), axis=0, reverse=reverse) > 0
    return started[:, :, None]


def _direction(x_tm: jax.Array, cell: Tree, h0: jax.Array, valid_tm: jax.Array | None,
               f: Activation, clip: float | None, reverse: bool, padded_output: str,
               unroll: int) -> tuple[jax.Array, jax.Array]:
    """One layer, one direction: ``x_tm (T, N, D)`` -> ``(T, N, M)`` outputs, ``h_n (N, M)``.
    The input projection of every step is one product before the scan."""
    proj = x_tm @ cell["w_x"] + (cell["b_x"] + cell["b_h"])  # hoisted input projection
    hs, h_n = _recurrence(f, clip, reverse, unroll)(cell["w_h"], h0, proj, valid_tm)
    if valid_tm is None:
        return hs, h_n
    keep = _output_mask(valid_tm, padded_output, reverse)
    return (hs if keep is None else jnp.where(keep, hs, jnp.zeros_like(hs))), h_n


def _gated_direction(x_tm: jax.Array, cell: Tree, h0: jax.Array, c0: jax.Array | None,
                     valid_tm: jax.Array | None, spec: CellSpec, acts: tuple[Activation, ...],
                     clip: float | None, reverse: bool, padded_output: str, unroll: int
                     ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """One GRU or LSTM direction (spec 2.7): ``x_tm (T, N, D)`` -> outputs ``(T, N, P)``,
    ``h_n (N, P)`` and an LSTM's ``c_n (N, M)`` (``None`` for a GRU). ``cell`` holds the
    blocks by their canonical names (``"w_x.z"``, ``"p.i"``, ``"w_proj"``, ...). Every gate's
    input side is one product before the scan, its recurrent side one product a step (a
    reset-before GRU's candidate apart: its product needs ``r``)."""
    gates = spec.gates
    m = cell[f"w_x.{gates[0]}"].shape[1]
    a_all = x_tm @ jnp.concatenate([cell[f"w_x.{k}"] for k in gates], axis=1) + \
        jnp.concatenate([cell[f"b_x.{k}"] for k in gates])
    rec = gates[:2] if spec.kind == "gru" and not spec.reset_after else gates
    w_rec = jnp.concatenate([cell[f"w_h.{k}"] for k in rec], axis=1)
    b_rec = jnp.concatenate([cell[f"b_h.{k}"] for k in rec])
    f, g = _cell_fn(acts[0], clip), _cell_fn(acts[1], clip)

    def split(v: jax.Array, names: tuple[str, ...]) -> dict[str, jax.Array]:
        return {k: v[:, j * m:(j + 1) * m] for j, k in enumerate(names)}

    def gru(h: jax.Array, a: dict[str, jax.Array]) -> jax.Array:
        u = split(h @ w_rec + b_rec, rec)
        z = f(a["z"] + u["z"])
        r = f(a["r"] + u["r"])
        if spec.reset_after:
            n = g(a["n"] + r * u["n"])
        else:
            n = g(a["n"] + (r * h) @ cell["w_h.n"] + cell["b_h.n"])
        return (1 - z) * n + z * h

    def lstm(h: jax.Array, c: jax.Array, a: dict[str, jax.Array]
             ) -> tuple[jax.Array, jax.Array]:
        u = split(h @ w_rec + b_rec, rec)
        s = {k: a[k] + u[k] for k in gates}
        peep = {k: cell[f"p.{k}"] for k in spec.peephole_gates}
        i = f(s["i"] + peep["i"] * c if "i" in peep else s["i"])
        if spec.input_forget:
            forget = 1 - i
        else:
            forget = f(s["f"] + peep["f"] * c if "f" in peep else s["f"])
        c_t = forget * c + i * g(s["g"])
        o = f(s["o"] + peep["o"] * c_t if "o" in peep else s["o"])
        h_t = o * _cell_fn(acts[2], clip)(c_t)
        return (h_t @ cell["w_proj"] if "w_proj" in cell else h_t), c_t

    def step(carry: tuple[jax.Array, Any], inp: Any) -> tuple[tuple[jax.Array, Any], jax.Array]:
        h, c = carry
        a_t, v_t = inp
        a = split(a_t, gates)
        c_new: jax.Array | None = None
        if c is None:
            h_new = gru(h, a)
        else:
            h_new, c_new = lstm(h, c, a)
        if v_t is not None:  # a padded step keeps h and c
            v = v_t[:, None]
            h_new = jnp.where(v, h_new, h)
            if c_new is not None:
                c_new = jnp.where(v, c_new, c)
        return (h_new, c_new), h_new

    (h_n, c_n), hs = lax.scan(step, (h0, c0), (a_all, valid_tm), reverse=reverse,
                              unroll=unroll)
    keep = None if valid_tm is None else _output_mask(valid_tm, padded_output, reverse)
    return (hs if keep is None else jnp.where(keep, hs, jnp.zeros_like(hs))), h_n, c_n


def _merge(outs: list[Any], mode: str | None) -> Any:
    """A layer's directions merged as ``mode`` says (time-major ``(T, N, M)`` each)."""
    if len(outs) == 1:
        return outs[0]
    if mode == "concat":
        return jnp.concatenate(outs, axis=-1)
    if mode == "sum":
        return outs[0] + outs[1]
    if mode == "mul":
        return outs[0] * outs[1]
    if mode == "ave":
        return (outs[0] + outs[1]) / 2
    return (outs[0], outs[1])


def _head_act(g: Any) -> Callable[[jax.Array], jax.Array]:
    """A head layer's activation: a cell activation, or softmax / log-softmax (last axis)."""
    if isinstance(g, Activation):
        return _act(g)
    return jax.nn.softmax if g.name == "softmax" else jax.nn.log_softmax


def _pool(how: str, merged: jax.Array, valid_tm: jax.Array | None) -> jax.Array:
    """:func:`rnn_ref.network.pool` on time-major outputs ``(T, N, F)`` and ``valid (T, N)``."""
    if how == "max_all":
        return merged.max(axis=0)
    if how == "mean_all" or valid_tm is None:
        return merged.sum(axis=0) / max(merged.shape[0], 1)
    keep = valid_tm[:, :, None]
    count = jnp.maximum(keep.sum(axis=0), 1).astype(merged.dtype)  # (N, 1)
    return jnp.where(keep, merged, 0).sum(axis=0) / count


def _select(config: RNNConfig, merged: Any, finals: list[jax.Array],
            valid_tm: jax.Array | None) -> Any:
    """:func:`rnn_ref.reference.select` on time-major outputs ``(T, N, F)`` (``valid_tm (T,
    N)`` or ``None``): what the last layer hands on, batch-major (``(N, T, F)`` for
    ``"sequence"``, else ``(N, F)``)."""
    how = config.select
    if how in POOLINGS:
        return _pool(how, merged, valid_tm)
    if how == "sequence":
        return (tuple(jnp.swapaxes(o, 0, 1) for o in merged) if isinstance(merged, tuple)
                else jnp.swapaxes(merged, 0, 1))
    if how == "last_step":
        return merged[-1]
    if how in ("final_forward", "final_backward"):
        return finals[how == "final_backward"]
    return finals[0] if len(finals) == 1 else _merge(finals, config.merge_modes[-1])


def _layers(tree: Tree, layer_in: jax.Array, h0: tuple[jax.Array, ...],
            c0: tuple[jax.Array, ...], valid_tm: jax.Array | None, config: RNNConfig,
            padded_output: str, output_order: str, unroll: int
            ) -> tuple[Any, list[jax.Array], list[jax.Array]]:
    """Every recurrent layer on time-major ``layer_in (T, N, D)``: the last layer's merged
    outputs (time-major), the S final states and the C final cell states."""
    h_n: list[jax.Array] = []
    c_n: list[jax.Array] = []
    merged: Any = layer_in
    for li, layer in enumerate(tree["layers"]):
        outs = []
        spec = config.cell_of(li)
        for r, cell in enumerate(layer):
            h0_r, reverse = h0[config.state_index(li, r)], config.is_reverse(li, r)
            if spec.kind == "elman":
                out, hn = _direction(layer_in, cell, h0_r, valid_tm, config.activation_of(li, r),
                                     config.clips[li], reverse, padded_output, unroll)
            else:
                c0_r = c0[config.cell_state_index(li, r)] if spec.kind == "lstm" else None
                out, hn, cn = _gated_direction(layer_in, cell, h0_r, c0_r, valid_tm, spec,
                                               config.activations_of(li, r), config.clips[li],
                                               reverse, padded_output, unroll)
                if cn is not None:
                    c_n.append(cn)
            if li == config.num_layers - 1 and output_order == "processing":
                out = out[::-1]
            outs.append(out)
            h_n.append(hn)
        merged = _merge(outs, config.merge_modes[li])
        layer_in = merged
    return merged, h_n, c_n


@partial(jax.jit, static_argnames=("config", "padded_output", "output_order", "unroll"))
def _apply(tree: Tree, x: jax.Array, h0: tuple[jax.Array, ...] | None,
           valid: jax.Array | None, config: RNNConfig, padded_output: str, output_order: str,
           unroll: int = 1, c0: tuple[jax.Array, ...] | None = None
           ) -> tuple[Any, Any, jax.Array | None, Any, Any]:
    """The whole network, jitted per config and shapes: ``x (N, T, D)`` (token ids ``(N, T)``
    with an embedding), ``h0`` S ``(N, P_l)`` or ``None`` (zeros), ``c0`` C ``(N, M_l)`` or
    ``None`` (zeros), ``valid (N, T)`` or ``None`` -> ``(outputs, h_n, y, selected, c_n)``
    (``h_n`` stacked ``(S, N, P)`` when the state widths agree, else a tuple; ``y`` the head's
    output or ``None``; ``c_n`` stacked ``(C, N, M)``, a tuple, or ``None`` without an LSTM
    layer)."""
    if tree.get("embedding") is not None:
        x = jnp.take(tree["embedding"], x, axis=0)
    if h0 is None:
        h0 = tuple(jnp.zeros((x.shape[0], m), x.dtype) for m in config.state_sizes)
    if c0 is None:
        c0 = tuple(jnp.zeros((x.shape[0], m), x.dtype) for m in config.cell_state_sizes)
    valid_tm = None if valid is None else jnp.swapaxes(valid, 0, 1)
    merged, h_n, c_n = _layers(tree, jnp.swapaxes(x, 0, 1), h0, c0, valid_tm, config,
                               padded_output, output_order, unroll)
    R_last = config.num_directions_of(config.num_layers - 1)
    selected = _select(config, merged, h_n[-R_last:], valid_tm)
    y = None
    if tree.get("head"):
        y = selected
        for dense, weights in zip(config.head, tree["head"], strict=True):
            y = _head_act(dense.activation)(y @ weights["w"] + weights["b"])
    if isinstance(merged, tuple):
        outputs: Any = tuple(jnp.swapaxes(o, 0, 1) for o in merged)
    else:
        outputs = jnp.swapaxes(merged, 0, 1)
    cells = None if not c_n else jnp.stack(c_n) if config.uniform_cell else tuple(c_n)
    return (outputs, (jnp.stack(h_n) if config.uniform_hidden else tuple(h_n)), y, selected,
            cells)


def pytree_of(params: RNNParams) -> Tree:
    """The params as a pytree of ``jnp`` arrays: ``{"layers": [[cell per direction] per
    layer], "embedding": (V, D) or None, "head": [{"w", "b"} per head layer]}`` with each cell
    its ``arrays()``: ``{"w_x", "w_h", "b_x", "b_h"}`` for an Elman cell, the blocks by name
    (``"w_x.z"``, ``"b_h.n"``, ``"p.i"``, ``"w_proj"``, ...) for a GRU or LSTM (differentiable
    leaves)."""
    with jax.enable_x64(params.dtype == np.float64):
        layers = [[{k: jnp.asarray(v) for k, v in cell.arrays().items()} for cell in layer]
                  for layer in params.layers]
        head = [{k: jnp.asarray(v) for k, v in d.arrays().items()} for d in params.head]
        table = None if params.embedding is None else jnp.asarray(params.embedding)
    return {"layers": layers, "embedding": table, "head": head}


def apply(tree: Tree, x: Any, *, config: RNNConfig, h0: Any = None, lengths: Any = None,
          mask: Any = None, padded_output: str | None = None, output_order: str | None = None,
          unroll: int | None = None, c0: Any = None) -> tuple[Any, Any, Any, Any, Any]:
    """The forward pass on a params pytree (see :func:`pytree_of`), traceable by JAX.

    Args:
        tree: the parameters; gradients with respect to its leaves come from ``jax.grad``.
        x: ``(N, T, D)`` (token ids ``(N, T)`` with an embedding); ``h0`` ``(S, N, M)`` or a
            list of S ``(N, M_l)``; ``lengths`` ``(N,)`` or ``mask`` ``(N, T)`` booleans; as
            :func:`rnn_ref.forward` (``mask_zero`` and ``mask_value`` are applied here).
        config: the architecture (static).
        unroll: steps of the scan unrolled into one loop iteration (``None``: :data:`UNROLL`
            of JAX's default platform); the results do not depend on it.
        c0: the LSTM layers' initial cell states, ``(C, N, M)`` or a list of C ``(N, M_l)``;
            ``None`` for zeros.

    Returns:
        ``(outputs (N, T, F), h_n, y, selected, c_n)`` as JAX arrays, ``h_n`` stacked
        ``(S, N, M)`` when the state widths agree, else a tuple; ``y`` the head's output
        (``None`` without a head); ``selected`` what ``config.select`` hands on; ``c_n`` the
        LSTM layers' final cell states (``(C, N, M)``, a tuple when their widths differ,
        ``None`` without an LSTM layer).
    """
    padded_output, output_order = check_options(config, padded_output, output_order)
    h0s = None if h0 is None else tuple(h0[i] for i in range(config.num_states))
    c0s = None if c0 is None else tuple(c0[i] for i in range(config.num_cell_states))
    valid = None
    if lengths is not None:
        xp = jnp if isinstance(lengths, jax.Array) else np  # NumPy: no eager JAX op to compile
        valid = xp.arange(x.shape[1])[None, :] < xp.asarray(lengths)[:, None]
    elif mask is not None:
        valid = mask if isinstance(mask, jax.Array) else np.asarray(mask, bool)
    own = None  # the network's own mask (host NumPy for NumPy inputs, as the backend gives)
    if config.mask_zero:
        own = x != 0
    elif config.mask_value is not None:
        own = (x != config.mask_value).any(axis=-1)
    if own is not None:
        valid = own if valid is None else valid & own
    if unroll is None:
        unroll = UNROLL.get(jax.default_backend(), 1)
    return _apply(tree, x, h0s, valid, config, padded_output, output_order, unroll, c0s)


@partial(jax.jit, static_argnames=("config", "unroll"))
def _pullback(tree: Tree, x: jax.Array, h0: tuple[jax.Array, ...], c0: tuple[jax.Array, ...],
              valid: jax.Array | None, cots: tuple[Any, Any, Any, Any, Any], config: RNNConfig,
              unroll: int
              ) -> tuple[Tree, jax.Array, tuple[jax.Array, ...], tuple[jax.Array, ...]]:
    """The gradients of ``(tree, layers' input, h0, c0)`` for the cotangents of ``(outputs,
    h_n, y, selected, c_n)`` (each ``None`` for zeros; ``selected`` only for a selection other
    than the sequence), one jitted program per config and shapes. With an embedding, ``x`` is
    the embedded ids ``(N, T, D)`` and the tree's table is not used."""
    def f(t: Tree, xx: jax.Array, hh: tuple[jax.Array, ...], cc: tuple[jax.Array, ...]
          ) -> Any:
        out = _apply({**t, "embedding": None}, xx, hh, valid, config, config.padded_output,
                     config.output_order, unroll, cc)
        return out if config.select != "sequence" else (*out[:3], None, out[4])

    primal, pull = jax.vjp(f, tree, x, h0, c0)
    cot = tuple(None if p is None else jax.tree.map(jnp.zeros_like, p) if c is None else c
                for p, c in zip(primal, cots, strict=True))
    return pull(cot)  # type: ignore[no-any-return]


class JaxBackend:
    """This project's jitted ``lax.scan`` implementation, in the parameters' dtype, on JAX's
    CPU (``jax``) or first GPU (``jax[gpu]``) at JAX's default matmul precision, or at
    ``"highest"`` (``jax[gpu,fp32]``): see :mod:`rnn_ref.backends.devices`."""

    name = "jax"
    device = "cpu"  # a JAX platform: "cpu" or "gpu"
    precision_mode = "default"  # "default": JAX's default matmul precision; "fp32": highest

    def __init__(self) -> None:
        self._device = devices.jax_device(jax, self.name, self.device)
        self.unroll = UNROLL.get(self.device, 1)

    def _context(self, dtype: Any) -> contextlib.ExitStack:
        """Where and how this backend computes: its device, its precision, x64 for float64."""
        stack = contextlib.ExitStack()
        stack.enter_context(jax.default_device(self._device))
        stack.enter_context(devices.jax_precision(jax, self.precision_mode))
        stack.enter_context(jax.enable_x64(np.dtype(dtype) == np.float64))
        return stack

    def environment(self) -> dict[str, Any]:
        """The device, its name, the precision mode and JAX's settings in force while this
        backend runs (read inside its context), and the scan's unroll."""
        with self._context(np.float32):
            settings = devices.jax_settings(jax)
        return {"device": self.device, "device_name": devices.device_name("jax", self._device),
                "precision_mode": self.precision_mode,
                "precision_settings": {**settings, "scan_unroll": self.unroll},
                "framework": f"jax {jax.__version__}"}

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        if np.dtype(dtype).kind != "f":
            return f"dtype {np.dtype(dtype)} is not a floating dtype"
        reason = unsupported(config)
        return None if reason is None else f"{reason[0]}: {reason[1]}"

    def backward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                 lengths: Any = None, mask: Any = None, grad_outputs: Any = None,
                 grad_h_n: Any = None, grad_y: Any = None, grad_selected: Any = None,
                 c0: Any = None, grad_c_n: Any = None) -> Any:
        """Gradients by ``jax.vjp`` through :func:`apply`, jitted (a ``BackwardResult``, with
        ``c0``'s gradient for a network with an LSTM layer); the embedding's gradient sums the
        layers' input gradient over the steps of each id (none for ``padding_idx``), as
        :func:`rnn_ref.backward` does."""
        from rnn_ref.gradient import BackwardResult

        cfg = params.config
        dt = params.dtype
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, dtype=dt, where="jax",
                              c0=c0)
        if grad_c_n is not None and not cfg.num_cell_states:
            raise ValueError(f"grad_c_n is given, but the network has no LSTM layer (its "
                             f"layers are {[c.kind for c in cfg.cells]})")

        def cot(g: Any, stacked: bool = False) -> Any:
            if g is None:
                return None
            if isinstance(g, (list, tuple)) and not stacked:
                return tuple(np.asarray(a, dt) for a in g)
            return np.asarray(np.stack(g) if isinstance(g, (list, tuple)) else g, dt)

        xs = inputs.x if params.embedding is None else params.embedding[inputs.x]
        cots = (cot(grad_outputs), cot(grad_h_n, stacked=cfg.uniform_hidden), cot(grad_y),
                cot(grad_selected), cot(grad_c_n, stacked=cfg.uniform_cell))
        with self._context(dt):
            g_tree, g_x, g_h0, g_c0 = _pullback(
                pytree_of(params), jnp.asarray(xs),
                tuple(jnp.asarray(h) for h in inputs.h0_or_zeros(dt)),
                tuple(jnp.asarray(c) for c in inputs.c0_or_zeros(dt)),
                inputs.valid if inputs.padded else None, cots, cfg, self.unroll)
            grads = _gradients(params, g_tree, np.asarray(g_x), inputs.x)
            hs0 = [np.asarray(h) for h in g_h0]
            cs0 = [np.asarray(c) for c in g_c0]
            return BackwardResult(
                grads, np.asarray(g_x), np.stack(hs0) if cfg.uniform_hidden else tuple(hs0),
                None if not cs0 else np.stack(cs0) if cfg.uniform_cell else tuple(cs0))

    def round_trip(self, params: RNNParams) -> RNNParams:
        """Through flax ``nnx.SimpleCell`` modules and back (raises where a cell cannot: see
        :func:`rnn_ref.backends.flax.convert.unsupported`)."""
        try:
            from rnn_ref.backends.flax.convert import from_native, to_native
        except ImportError as exc:  # the round trip needs flax; the backend does not
            raise NotImplementedError(f"the flax round trip needs flax ({exc})") from None
        cfg = params.config
        return from_native(to_native(params), direction=cfg.direction, bias=cfg.bias)

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None, c0: Any = None) -> ForwardResult:
        """:func:`apply` on ``x (N, T, D)`` (token ids ``(N, T)`` with an embedding), ``h0``
        (S states), ``lengths (N,)`` or ``mask (N, T)``, an LSTM's ``c0`` (C cell states):
        ``outputs (N, T, F)`` (a pair for ``merge_mode=None``), ``h_n (S, N, M)`` (or S
        ``(N, M_l)``), the head's ``y`` or ``None``, the selection and ``c_n`` (``None``
        without an LSTM layer), in the parameters' dtype. Bad inputs raise as
        :func:`rnn_ref.inputs.check_inputs` says."""
        def as_np(a: Any) -> Any:
            if a is None:
                return None
            return tuple(np.asarray(v) for v in a) if isinstance(a, tuple) else np.asarray(a)

        dt = params.dtype
        inputs = check_inputs(params.config, x, h0=h0, lengths=lengths, mask=mask, dtype=dt,
                              where="jax", c0=c0)
        with self._context(dt):
            outputs, h_n, y, selected, c_n = apply(
                pytree_of(params), inputs.x, config=params.config,
                h0=None if inputs.h0 is None else [jnp.asarray(h) for h in inputs.h0],
                c0=None if inputs.c0 is None else [jnp.asarray(c) for c in inputs.c0],
                mask=inputs.valid if inputs.padded else None, unroll=self.unroll)
            jax.block_until_ready(outputs)
            return ForwardResult(as_np(outputs), as_np(h_n), as_np(y), as_np(selected),
                                 as_np(c_n))


def _gradients(params: RNNParams, g_tree: Tree, g_x: np.ndarray[Any, Any],
               ids: np.ndarray[Any, Any]) -> RNNParams:
    """The gradient pytree as canonical :class:`RNNParams` (zero biases where the network
    has none; the embedding's from the layers' input gradient ``g_x (N, T, D)``)."""
    cfg = params.config
    arrays: dict[str, Any] = {}
    for li, layer in enumerate(g_tree["layers"]):
        for r, cell in enumerate(layer):
            for name, value in cell.items():
                g = np.asarray(value)
                arrays[f"layers.{li}.{r}.{name}"] = (
                    g if cfg.bias or not name.startswith(("b_x", "b_h")) else np.zeros_like(g))
    for j, (h, d) in enumerate(zip(g_tree["head"], cfg.head, strict=True)):
        arrays[f"head.{j}.w"] = np.asarray(h["w"])
        arrays[f"head.{j}.b"] = np.asarray(h["b"]) if d.bias else np.zeros_like(
            np.asarray(h["b"]))
    if params.embedding is not None:
        table = np.zeros_like(params.embedding)
        np.add.at(table, ids, g_x)
        if cfg.padding_idx is not None:
            table[cfg.padding_idx] = 0
        arrays["embedding"] = table
    return RNNParams.from_arrays(cfg, arrays)


class JaxGpuBackend(JaxBackend):
    """:class:`JaxBackend` on JAX's first GPU at JAX's default matmul precision (on recent
    NVIDIA GPUs, float32 products in TF32)."""

    name = "jax[gpu]"
    device = "gpu"


class JaxGpuFp32Backend(JaxGpuBackend):
    """:class:`JaxGpuBackend` at ``jax.default_matmul_precision("highest")``: strict float32."""

    name = "jax[gpu,fp32]"
    precision_mode = "fp32"
