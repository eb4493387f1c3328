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
``sum``: both; ``mul``: times the other direction; ``ave``: half each). Each head layer
``y = g(s @ w + b)`` gives ``d pre = vjp(g, pre, grad_y)`` (``grad_y * g'(pre)`` for an
elementwise g; ``y * (grad_y - sum(grad_y * y))`` for softmax), ``grad w = s.T @ d pre``,
``grad b = sum d pre`` and ``grad s = d pre @ w.T``. The selection's gradient goes back to
what it took: every step of the outputs, step T-1, or the last layer's final states (through
the merge); a mean over time spreads it evenly (``grad o_t = grad s / #valid`` at each valid
step, or ``/ T`` at every step), a maximum gives it all to the step that attains it. The
gradient of a layer's input is the gradient of the outputs of the layer below; that of layer
0's input, ``grad x``, gives the embedding's, ``grad E[i] = sum of grad x_t over
the steps whose id is i`` (zero for ``padding_idx``). Everything runs in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rnn_ref._blas import prime
from rnn_ref.activations import Activation
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.inputs import check_inputs, check_options, check_params
from rnn_ref.network import POOLINGS, head_vjp, pool_vjp
from rnn_ref.params import CellParams, Readout, RNNParams
from rnn_ref.reference import check_steps, merge, select

__all__ = ["BackwardResult", "backward"]

Array = npt.NDArray[np.floating]


@dataclass(frozen=True)
class BackwardResult:
    """Gradients of the loss.

    Attributes:
        params: an :class:`~rnn_ref.RNNParams` of gradients in the canonical layout (float64;
            zero biases for a bias-free network, whose biases are not parameters).
        x: ``(N, T, D)``, the gradient of the layers' input (the embedded ids with an
            embedding, whose table's gradient is in ``params``).
        h0: ``(S, N, M)``, or a tuple of S ``(N, M_l)`` arrays when the hidden sizes differ.
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


def _head_backward(net: RNNParams, chosen: Any, grad_y: Any, grad_selected: Any
                   ) -> tuple[Any, list[Readout]]:
    """dL/d(selection) and the head's gradients. Layer j, ``y_j = g_j(pre_j)`` with
    ``pre_j = y_{j-1} @ w_j + b_j`` (``y_{-1}`` the selection), gives ``dpre_j = vjp(g_j,
    pre_j, dL/dy_j)``, ``dw_j = y_{j-1}^T dpre_j``, ``db_j = sum dpre_j`` (summed over every
    leading axis) and ``dL/dy_{j-1} = dpre_j @ w_j.T``."""
    cfg = net.config
    if isinstance(chosen, tuple):  # merge_mode=None: no head
        return (tuple(np.zeros(c.shape) for c in chosen) if grad_selected is None else
                tuple(_as_grad(g, c.shape, f"grad_selected[{i}]")
                      for i, (g, c) in enumerate(zip(grad_selected, chosen, strict=True)))), []
    g_sel = (np.zeros(chosen.shape) if grad_selected is None
             else _as_grad(grad_selected, chosen.shape, "grad_selected"))
    if not net.head:
        return g_sel, []
    ins, pres = [chosen], []
    for weights, dense in zip(net.head, cfg.head, strict=True):
        pres.append(ins[-1] @ weights.w + weights.b)
        ins.append(dense.activation(pres[-1]))
    shape = ins[-1].shape
    g = np.zeros(shape) if grad_y is None else _as_grad(grad_y, shape, "grad_y")
    grads: list[Readout] = []
    for j in range(len(net.head) - 1, -1, -1):
        dpre = head_vjp(cfg.head[j].activation, pres[j], g)
        k = dpre.shape[-1]
        flat_in = ins[j].reshape(-1, ins[j].shape[-1])
        g_b = dpre.reshape(-1, k).sum(axis=0) if cfg.head[j].bias else np.zeros(k)
        grads.insert(0, Readout(flat_in.T @ dpre.reshape(-1, k), g_b))
        g = dpre @ net.head[j].w.T
    return g_sel + g, grads


def _h_n_cotangents(cfg: RNNConfig, grad_h_n: Any, n: int) -> list[Array]:
    """dL/d h_n as S fresh arrays ``(N, M_l)`` (zeros for ``None``): the selection's share is
    added to them in place."""
    sizes, S = cfg.state_sizes, cfg.num_states
    if grad_h_n is None:
        return [np.zeros((n, m)) for m in sizes]
    if isinstance(grad_h_n, (list, tuple)):
        if len(grad_h_n) != S:
            raise ValueError(f"grad_h_n lists {len(grad_h_n)} arrays, expected S = {S}")
        return [_as_grad(g, (n, sizes[i]), f"grad_h_n[{i}]").copy()
                for i, g in enumerate(grad_h_n)]
    return list(_as_grad(grad_h_n, (S, n, sizes[0]), "grad_h_n").copy())


def _select_backward(cfg: RNNConfig, g_sel: Any, g_last: Any, g_hn: list[Array],
                     finals: list[Array]) -> None:
    """Add dL/d(selection) to the cotangent of what it was taken from (in place):
    the returned outputs ``g_last``, or the last layer's final states in ``g_hn``."""
    how, S = cfg.select, cfg.num_states
    R = len(finals)
    if how == "sequence":
        if isinstance(g_last, tuple):
            for mine, extra in zip(g_last, g_sel, strict=True):
                mine += extra
        else:
            g_last += g_sel
    elif how in POOLINGS:  # needs the outputs and the valid steps: backward() adds it
        return
    elif how == "last_step":
        g_last[:, -1] += g_sel
    elif how in ("final_forward", "final_backward"):
        g_hn[S - 2 + (how == "final_backward")] += g_sel
    elif R == 1:
        g_hn[S - 1] += g_sel
    else:
        parts = _split_merge(g_sel, cfg.merge_modes[-1], finals[0], finals[1])
        g_hn[S - 2] += parts[0]
        g_hn[S - 1] += parts[1]


def _check_cotangents(cfg: RNNConfig, grad_y: Any, grad_selected: Any) -> None:
    """The cotangents the network has a place for (their values: :func:`_as_grad`)."""
    if grad_y is not None and not cfg.head:
        raise ValueError("grad_y is given but the network has no head (config.output_size "
                         "is None)")
    if grad_selected is not None and cfg.select == "sequence":
        raise ValueError("grad_selected is for a selection other than 'sequence'; with "
                         "select='sequence' pass grad_outputs")


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
    grad_selected: Any = None,
    padded_output: str | None = None,
    output_order: str | None = None,
) -> BackwardResult:
    """Back-propagation through time: gradients of a loss given its cotangents.

    Args:
        params, x, h0, lengths, mask, padded_output, output_order: as :func:`rnn_ref.forward`.
        grad_outputs: dL/d outputs, the shape of ``forward(...).outputs`` (a pair for
            ``merge_mode=None``); ``None`` for zero.
        grad_h_n: dL/d h_n, ``(S, N, M)`` (or a list of S ``(N, M_l)``); ``None`` for zero.
        grad_y: dL/d y, the head's output (``(N, T, K)`` or ``(N, K)``); ``None`` for zero
            (only with a head).
        grad_selected: dL/d ``forward(...).selected`` for a selection other than
            ``"sequence"`` (``(N, F)``); ``None`` for zero.

    Returns:
        A :class:`BackwardResult` with ``.params`` (gradients in the canonical layout),
        ``.x`` and ``.h0``, in float64.
    """
    cfg: RNNConfig = check_params(params).config
    if not cfg.is_elman:
        raise UnsupportedError("rnn_ref.backward", f"the cells {[c.kind for c in cfg.cells]}",
                               "back-propagation through the gated cells is not written yet")
    checked = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, dtype=np.float64,
                           where="rnn_ref.backward")
    padded_output, output_order = check_options(cfg, padded_output, output_order)
    _check_cotangents(cfg, grad_y, grad_selected)
    check_steps(cfg, checked.t)
    net = params if params.dtype == np.float64 else params.astype(np.float64)
    xs = checked.x if net.embedding is None else net.embedding[checked.x]  # (N, T, D)
    n, t_len = checked.n, checked.t
    inputs, caches = _forward_layers(net, xs, checked.h0_or_zeros(np.float64), checked.valid,
                                     padded_output)
    last = caches[-1][0].out if len(caches[-1]) == 1 else merge(
        caches[-1][0].out, caches[-1][1].out, cfg.merge_modes[-1])
    processing = output_order == "processing"
    if processing:  # the last layer's outputs were handed out flipped
        last = last[:, ::-1] if not isinstance(last, tuple) else last
    finals = [c.h_n for c in caches[-1]]
    valid = checked.valid if checked.padded else None
    g_sel, head_grads = _head_backward(net, select(cfg, last, finals, valid), grad_y,
                                       grad_selected)
    g_last = _last_cotangent(cfg, last, grad_outputs, n, t_len)
    g_hn = _h_n_cotangents(cfg, grad_h_n, n)
    _select_backward(cfg, g_sel, g_last, g_hn, finals)
    if cfg.select in POOLINGS:
        g_last += pool_vjp(cfg.select, last, valid, g_sel)
    if processing:
        g_last = g_last[:, ::-1]
    cell_grads, g_x, g_h0 = _backward_layers(net, inputs, caches, g_last, g_hn)
    table_grad = None
    if net.embedding is not None:
        table_grad = np.zeros_like(net.embedding)
        np.add.at(table_grad, checked.x, g_x)
        if cfg.padding_idx is not None:
            table_grad[cfg.padding_idx] = 0.0
    grads_params = RNNParams(cfg, cell_grads, embedding=table_grad, head=head_grads)
    h0_grad: Any = np.stack(g_h0) if cfg.uniform_hidden else tuple(g_h0)
    return BackwardResult(grads_params, g_x, h0_grad)


def _last_cotangent(cfg: RNNConfig, last: Any, grad_outputs: Any, n: int, t_len: int) -> Any:
    """dL/d(the last layer's returned outputs) ``(N, T, F)`` from ``grad_outputs`` (a pair
    for ``merge_mode=None``), zeros for ``None``; a fresh array either way."""
    if isinstance(last, tuple):
        if grad_outputs is None:
            return (np.zeros(last[0].shape), np.zeros(last[1].shape))
        return tuple(_as_grad(g, o.shape, f"grad_outputs[{i}]").copy()
                     for i, (g, o) in enumerate(zip(grad_outputs, last, strict=True)))
    shape = (n, t_len, cfg.output_features)
    return np.zeros(shape) if grad_outputs is None else _as_grad(
        grad_outputs, shape, "grad_outputs").copy()


def _forward_layers(net: RNNParams, xs: Array, h0s: tuple[Array, ...],
                    valid: npt.NDArray[np.bool_], padded_output: str
                    ) -> tuple[list[Array], list[list[_Cache]]]:
    """Every layer's input and its directions' caches, first layer first."""
    cfg = net.config
    inputs: list[Array] = []
    caches: list[list[_Cache]] = []
    layer_in: Any = xs
    for li, layer in enumerate(net.layers):
        inputs.append(layer_in)
        row = [_forward_direction(layer_in, net.elman_cell(li, r), h0s[cfg.state_index(li, r)],
                                  cfg.activation_of(li, r), cfg.clips[li],
                                  cfg.is_reverse(li, r), valid, padded_output)
               for r in range(len(layer))]
        caches.append(row)
        layer_in = row[0].out if len(row) == 1 else merge(row[0].out, row[1].out,
                                                          cfg.merge_modes[li])
    return inputs, caches


def _backward_layers(net: RNNParams, inputs: list[Array], caches: list[list[_Cache]],
                     g_last: Any, g_hn: list[Array]
                     ) -> tuple[list[list[CellParams]], Array, list[Array]]:
    """The layers' gradients, last to first: cells, dL/dx ``(N, T, D)`` and dL/dh0 (S)."""
    cfg = net.config
    L = cfg.num_layers
    cell_grads: list[list[CellParams]] = [[] for _ in range(L)]
    g_h0: list[Array] = [np.zeros(0)] * cfg.num_states
    g_layer_out: Any = g_last
    for li in range(L - 1, -1, -1):
        row = caches[li]
        if len(row) == 1:
            g_dirs = [g_layer_out]
        else:
            g_dirs = list(_split_merge(g_layer_out, cfg.merge_modes[li], row[0].out, row[1].out))
        g_in = np.zeros_like(inputs[li])
        for r in range(len(net.layers[li])):
            grads, gx, gh0 = _backward_direction(inputs[li], net.elman_cell(li, r),
                                                 cfg.activation_of(li, r),
                                                 cfg.is_reverse(li, r), row[r], g_dirs[r],
                                                 g_hn[cfg.state_index(li, r)])
            if not cfg.bias:
                zero = np.zeros_like(grads.b_x)
                grads = CellParams(grads.w_x, grads.w_h, zero, zero)
            cell_grads[li].append(grads)
            g_in = g_in + gx
            g_h0[cfg.state_index(li, r)] = gh0
        g_layer_out = g_in
    return cell_grads, g_layer_out, g_h0
