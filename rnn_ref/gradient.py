r"""Back-propagation through time for the reference network: :func:`backward`.

The forward step of one layer and direction, at a valid step t of its processing order::

    a_t = x_t @ w_x + b_x + h_{t-1} @ w_h + b_h      z_t = clip(a_t)      h_t = f(z_t)

and at a padded step the state is carried, ``h_t = h_{t-1}``. What the direction outputs at t
is ``h_t`` at a valid step; at a padded step it is ``0`` (``zeros``), ``h_t`` (the carried
state: ``carry_state``), or ``h_t`` once a valid step was seen and ``0`` before
(``carry_output``). So every output is either the state after step t or a constant: let
``dep_t`` say which.

Backward, in reverse processing order, with ``dh`` the gradient of the loss with respect to
the state after step t (it starts as ``grad_h_n``)::

    dh   += dep_t * grad_o_t                          the output at t is that state
    dz_t  = dh * f'(z_t) * [-c <= a_t <= c]           valid steps only; 0 at padded ones
    dh    = dz_t @ w_h.T   (valid)   or   dh (padded: the state was carried)

and at the end ``grad h0 = dh``. The weight gradients are sums over valid steps, computed
after the loop as single matrix products (the fast path, like the forward's hoisted input
projection)::

    grad w_x = sum_t x_t.T @ dz_t       grad w_h = sum_t h_{t-1}.T @ dz_t
    grad b_x = grad b_h = sum_t sum_n dz_t           grad x_t += dz_t @ w_x.T

Bidirectional layers split the gradient of the merged output (``concat``: the two halves;
``sum``: both; ``mul``: times the other direction; ``ave``: half each); the readout
``y = g(o @ w_y + b_y)`` gives ``d pre = grad_y * g'(pre)``, ``grad w_y = o.T @ d pre``,
``grad b_y = sum d pre`` and ``grad o += d pre @ w_y.T``. The gradient of a layer's input is
the gradient of the outputs of the layer below. Everything runs in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rnn_ref._blas import prime
from rnn_ref.activations import Activation
from rnn_ref.config import RNNConfig
from rnn_ref.inputs import check_inputs, check_options, check_params
from rnn_ref.params import CellParams, Readout, RNNParams
from rnn_ref.reference import is_reverse, merge

__all__ = ["BackwardResult", "backward"]

Array = npt.NDArray[np.floating]


@dataclass(frozen=True)
class BackwardResult:
    """Gradients of the loss.

    Attributes:
        params: an :class:`~rnn_ref.RNNParams` of gradients in the canonical layout (float64;
            zero biases for a bias-free network, whose biases are not parameters).
        x: ``(N, T, D)``.
        h0: ``(L*R, N, M)``, or a tuple of L*R ``(N, M_l)`` arrays when the hidden sizes
            differ.
    """

    params: RNNParams
    x: Array
    h0: Any


@dataclass
class _Cache:
    """What one direction's backward pass needs from its forward pass (batch-major)."""

    z: Array  # (N, T, M) clipped pre-activation
    inside: npt.NDArray[np.bool_] | None  # (N, T, M) inside the clip band; None without clip
    h_prev: Array  # (N, T, M) the state before each step
    valid: npt.NDArray[np.bool_]  # (N, T)
    dep: npt.NDArray[np.bool_]  # (N, T) the output at t is the state after t
    out: Array  # (N, T, M) the direction's outputs, time-aligned
    h_n: Array  # (N, M)


def _forward_direction(x: Array, cell: CellParams, h0: Array, f: Activation,
                       clip: float | None, reverse: bool, valid: npt.NDArray[np.bool_],
                       padded_output: str) -> _Cache:
    n, t_len, _ = x.shape
    m = cell.hidden_size
    proj = x @ cell.w_x + (cell.b_x + cell.b_h)
    prime(proj.dtype, m, m)  # see rnn_ref._blas
    z = np.zeros((n, t_len, m))
    a_inside = np.ones((n, t_len, m), bool) if clip is not None else None
    h_prev = np.zeros((n, t_len, m))
    out = np.zeros((n, t_len, m))
    dep = np.zeros((n, t_len), bool)
    h, started = h0.copy(), np.zeros(n, bool)
    for t in (range(t_len - 1, -1, -1) if reverse else range(t_len)):
        a = proj[:, t] + h @ cell.w_h
        if clip is not None and a_inside is not None:
            a_inside[:, t] = (a >= -clip) & (a <= clip)
            a = np.clip(a, -clip, clip)
        z[:, t], h_prev[:, t] = a, h
        v = valid[:, t]
        h = np.where(v[:, None], f(a), h)
        started |= v
        dep[:, t] = {"zeros": v, "carry_state": np.ones(n, bool),
                     "carry_output": started.copy()}[padded_output]
        out[:, t] = np.where(dep[:, t, None], h, 0.0)
    return _Cache(z, a_inside, h_prev, valid, dep, out, h)


def _backward_direction(x: Array, cell: CellParams, f: Activation, reverse: bool,
                        cache: _Cache, g_out: Array, g_hn: Array
                        ) -> tuple[CellParams, Array, Array]:
    """Gradients of one direction: (cell grads, grad of its input x, grad of its h0)."""
    n, t_len, d = x.shape
    m = cell.hidden_size
    dz = np.zeros((n, t_len, m))
    dh = g_hn.copy()
    for t in (range(t_len) if reverse else range(t_len - 1, -1, -1)):
        dh = dh + np.where(cache.dep[:, t, None], g_out[:, t], 0.0)
        v = cache.valid[:, t, None]
        local = dh * f.derivative(cache.z[:, t])
        if cache.inside is not None:
            local = local * cache.inside[:, t]
        dz[:, t] = np.where(v, local, 0.0)
        dh = np.where(v, dz[:, t] @ cell.w_h.T, dh)
    dz2 = dz.reshape(n * t_len, m)
    g_wx = x.reshape(n * t_len, d).T @ dz2
    g_wh = cache.h_prev.reshape(n * t_len, m).T @ dz2
    g_b = dz2.sum(axis=0)
    return CellParams(g_wx, g_wh, g_b, g_b.copy()), dz @ cell.w_x.T, dh


def _split_merge(g: Any, mode: str | None, fwd: Array, bwd: Array) -> tuple[Array, Array]:
    """Gradients of the two directions' outputs from the gradient of the merged output."""
    if mode is None:
        return np.asarray(g[0], np.float64), np.asarray(g[1], np.float64)
    if mode == "concat":
        m = fwd.shape[-1]
        return g[..., :m], g[..., m:]
    if mode == "sum":
        return g, g
    if mode == "mul":
        return g * bwd, g * fwd
    return g / 2, g / 2  # ave


def _as_grad(value: Any, shape: tuple[int, ...], where: str) -> Array:
    raw = np.asarray(value)
    if raw.dtype.kind not in "iuf":  # as forward refuses x: complex, bool, object, strings
        raise TypeError(f"{where} must hold real numbers, got dtype {raw.dtype}")
    arr = raw.astype(np.float64, copy=False)
    if arr.shape != shape:
        raise ValueError(f"{where} must have shape {shape}, got {arr.shape}")
    return arr


def _output_cotangent(net: RNNParams, last: Any, grad_outputs: Any, grad_y: Any, n: int,
                      t_len: int) -> tuple[Any, Readout | None]:
    """dL/d(last layer's merged outputs) ``(N, T, F)`` (a pair for ``merge_mode=None``), with
    the readout's share ``dpre @ W_y.T`` added, and the readout's own gradients:
    ``y = g(o W_y + b_y)`` gives ``dpre = dL/dy * g'(pre)``, ``dW_y = o^T dpre``,
    ``db_y = sum dpre``."""
    cfg = net.config
    out_shape = (n, t_len, cfg.output_features)
    if isinstance(last, tuple):
        g_last: Any = (np.zeros(last[0].shape), np.zeros(last[1].shape)) if grad_outputs is None \
            else tuple(_as_grad(g, o.shape, f"grad_outputs[{i}]")
                       for i, (g, o) in enumerate(zip(grad_outputs, last, strict=True)))
    else:
        g_last = np.zeros(out_shape) if grad_outputs is None else _as_grad(
            grad_outputs, out_shape, "grad_outputs")
    if net.readout is None:
        return g_last, None
    ro = net.readout
    k = ro.w.shape[1]
    gy = np.zeros((n, t_len, k)) if grad_y is None else _as_grad(grad_y, (n, t_len, k), "grad_y")
    pre = last @ ro.w + ro.b
    dpre = gy * cfg.output_activation.derivative(pre)
    readout_grad = Readout(last.reshape(-1, last.shape[-1]).T @ dpre.reshape(-1, k),
                           dpre.sum(axis=(0, 1)))
    return g_last + dpre @ ro.w.T, readout_grad


def _h_n_cotangents(cfg: RNNConfig, grad_h_n: Any, n: int) -> list[Array]:
    """dL/d h_n as L*R arrays ``(N, M_l)`` (zeros for ``None``)."""
    L, R, sizes = cfg.num_layers, cfg.num_directions, cfg.hidden_sizes
    if grad_h_n is None:
        return [np.zeros((n, sizes[i // R])) for i in range(L * R)]
    if isinstance(grad_h_n, (list, tuple)):
        return [_as_grad(g, (n, sizes[i // R]), f"grad_h_n[{i}]")
                for i, g in enumerate(grad_h_n)]
    return list(_as_grad(grad_h_n, (L * R, n, sizes[0]), "grad_h_n"))


def backward(
    params: RNNParams,
    x: Any,
    *,
    h0: Any = None,
    lengths: Any = None,
    mask: Any = None,
    grad_outputs: Any = None,
    grad_h_n: Any = None,
    grad_y: Any = None,
    padded_output: str | None = None,
    output_order: str | None = None,
) -> BackwardResult:
    """Back-propagation through time: gradients of a loss given its cotangents.

    Args:
        params, x, h0, lengths, mask, padded_output, output_order: as :func:`rnn_ref.forward`.
        grad_outputs: dL/d outputs, the shape of ``forward(...).outputs`` (a pair for
            ``merge_mode=None``); ``None`` for zero.
        grad_h_n: dL/d h_n, ``(L*R, N, M)`` (or a list of L*R ``(N, M_l)``); ``None`` for zero.
        grad_y: dL/d y, ``(N, T, K)``; ``None`` for zero (only with a readout).

    Returns:
        A :class:`BackwardResult` with ``.params`` (gradients in the canonical layout),
        ``.x`` and ``.h0``, in float64.
    """
    cfg: RNNConfig = check_params(params).config
    checked = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, dtype=np.float64,
                           where="rnn_ref.backward")
    padded_output, output_order = check_options(cfg, padded_output, output_order)
    net = params if params.dtype == np.float64 else params.astype(np.float64)
    xs, h0s, valid = checked.x, checked.h0_or_zeros(), checked.valid  # (N,T,D), (N,M_l), (N,T)
    n, t_len = checked.n, checked.t
    L, R = cfg.num_layers, cfg.num_directions
    if grad_y is not None and net.readout is None:
        raise ValueError("grad_y is given but the network has no readout")

    # forward, keeping what the backward pass needs
    inputs: list[Array] = []
    caches: list[list[_Cache]] = []
    layer_in: Any = xs
    for li, layer in enumerate(net.layers):
        inputs.append(layer_in)
        row = [_forward_direction(layer_in, cell, h0s[li * R + r], cfg.activation_of(li, r),
                                  cfg.clips[li], is_reverse(cfg, r), valid, padded_output)
               for r, cell in enumerate(layer)]
        caches.append(row)
        layer_in = row[0].out if R == 1 else merge(row[0].out, row[1].out, cfg.merge_modes[li])
    last = layer_in
    processing = output_order == "processing"
    if processing:  # the last layer's outputs were handed out flipped
        last = last[:, ::-1]

    g_last, readout_grad = _output_cotangent(net, last, grad_outputs, grad_y, n, t_len)
    if processing:
        g_last = g_last[:, ::-1]
    g_hn = _h_n_cotangents(cfg, grad_h_n, n)

    # layers, last to first
    cell_grads: list[list[CellParams]] = [[] for _ in range(L)]
    g_h0: list[Array] = [np.zeros(0)] * (L * R)
    g_layer_out: Any = g_last
    g_x = np.zeros_like(xs)
    for li in range(L - 1, -1, -1):
        row = caches[li]
        if R == 1:
            g_dirs = [g_layer_out]
        else:
            g_dirs = list(_split_merge(g_layer_out, cfg.merge_modes[li], row[0].out, row[1].out))
        g_in = np.zeros_like(inputs[li])
        for r, cell in enumerate(net.layers[li]):
            grads, gx, gh0 = _backward_direction(inputs[li], cell, cfg.activation_of(li, r),
                                                 is_reverse(cfg, r), row[r], g_dirs[r],
                                                 g_hn[li * R + r])
            if not cfg.bias:
                zero = np.zeros_like(grads.b_x)
                grads = CellParams(grads.w_x, grads.w_h, zero, zero)
            cell_grads[li].append(grads)
            g_in = g_in + gx
            g_h0[li * R + r] = gh0
        g_layer_out = g_in
        if li == 0:
            g_x = g_in
    grads_params = RNNParams(cfg, cell_grads, readout_grad)
    h0_grad: Any = np.stack(g_h0) if cfg.uniform_hidden else tuple(g_h0)
    return BackwardResult(grads_params, g_x, h0_grad)
