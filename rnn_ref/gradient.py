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

**The gated cells.** Around the cell nothing changes: the merges, the selection, the head, the
padded steps and the layers below see a GRU or LSTM direction as a map from ``h_{t-1}`` (and
``c_{t-1}``) to ``h_t`` (and ``c_t``) exactly as above. Inside, with ``a_k = x_t @ w_x[k] +
b_x[k]``, ``u_k = h_{t-1} @ w_h[k] + b_h[k]``, ``s_k`` the input of gate k's activation before
the clip and ``act'_k = act'(clip(s_k)) * [-c <= s_k <= c]`` its slope (``act = f`` for the gates,
``g`` for the candidate, ``h`` for the cell state; the slope is 0 outside the clip band), the
cotangent of each gate's input, ``ds_k = dL/ds_k``, is written with ``dh`` the cotangent of the
state after the step (as above) and, for an LSTM, ``dc`` that of the cell state after it
(``grad_c_n`` at the start; an output never depends on ``c``, so nothing is added to it).

A GRU (``h' = (1 - z) * n + z * h``, ``h`` the state before the step)::

    ds_n = dh * (1 - z) * act'_n
    ds_z = dh * (h - n) * act'_z
    reset after:    s_n = a_n + r * q,  q = h @ w_h[n] + b_h[n]
        ds_r = ds_n * q * act'_r          dq = ds_n * r        (the cotangent of u_n)
        dh_prev = dh * z + ds_z @ w_h[z].T + ds_r @ w_h[r].T + dq @ w_h[n].T
    reset before:   s_n = a_n + (r * h) @ w_h[n] + b_h[n]
        d(r h) = ds_n @ w_h[n].T          ds_r = d(r h) * h * act'_r
        dh_prev = dh * z + ds_z @ w_h[z].T + ds_r @ w_h[r].T + d(r h) * r

and the sums over valid steps ``grad w_x[k] = sum x_t.T @ ds_k``, ``grad b_x[k] = sum ds_k``
for every gate; ``grad w_h[k] = sum h.T @ ds_k``, ``grad b_h[k] = sum ds_k`` for z and r; for n
the recurrent side's own cotangent and input: ``grad w_h[n] = sum h.T @ dq``, ``grad b_h[n] =
sum dq`` (reset after: ``b_h[n]`` sits inside ``r *``), ``grad w_h[n] = sum (r h).T @ ds_n``,
``grad b_h[n] = sum ds_n`` (reset before).

An LSTM (``c' = f_t * c + i * g_t``, ``h' = (o * h(clip(c'))) [@ w_proj]``, ``m = o *
h(clip(c'))``, ``c`` the cell state before the step)::

    dm    = dh @ w_proj.T  (dh without a projection)         grad w_proj = sum m.T @ dh
    ds_o  = dm * h(clip(c')) * act'_o
    dc'   = dc + dm * o * act'_c + ds_o * p_o                 the c-path; p_o sees c'
    ds_g  = dc' * i * act'_g
    ds_i  = (dc' * g_t - [input_forget] dc' * c) * act'_i      (f_t = 1 - i with input_forget)
    ds_f  = dc' * c * act'_f                                  (no f gate with input_forget)
    dc_prev = dc' * f_t + ds_i * p_i + ds_f * p_f
    dh_prev = sum_k ds_k @ w_h[k].T

with ``grad w_x[k] = sum x_t.T @ ds_k``, ``grad w_h[k] = sum h.T @ ds_k``, ``grad b_x[k] =
grad b_h[k] = sum ds_k`` and the peepholes ``grad p_i = sum_{t,n} ds_i * c``, ``grad p_f =
sum ds_f * c``, ``grad p_o = sum ds_o * c'`` (zero terms without peepholes: ``p = 0``). A
padded step passes both ``dh`` and ``dc`` to the previous step unchanged; at the end ``grad
c0 = dc``. As for the Elman cell, the per-step loop computes only what the recurrence needs
(the ``ds_k`` and the two state cotangents); every weight gradient is one product over all
steps after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rnn_ref._blas import prime
from rnn_ref.activations import Activation
from rnn_ref.cells import CellSpec
from rnn_ref.config import RNNConfig
from rnn_ref.inputs import check_inputs, check_options, check_params
from rnn_ref.network import POOLINGS, head_vjp, pool_vjp
from rnn_ref.params import AnyCellParams, CellParams, GRUParams, LSTMParams, Readout, RNNParams
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
        h0: ``(S, N, M)``, or a tuple of S ``(N, M_l)`` arrays when the state widths differ
            (``M_l``, or P for a projected LSTM).
        c0: the LSTM layers' initial cell states' gradient, ``(C, N, M)`` or a tuple of C
            ``(N, M_l)`` arrays when their widths differ; ``None`` without an LSTM layer.
    """

    params: RNNParams
    x: Array
    h0: Any
    c0: Any = None


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


# ---------------------------------------------------------------------------------------------
# The gated cells (the module docstring's second part)
# ---------------------------------------------------------------------------------------------
@dataclass
class _GatedCache:
    """What one GRU or LSTM direction's backward pass needs from its forward pass
    (batch-major; M the cell's width, P the state's: M, or a projected LSTM's P)."""

    gate: dict[str, Array]  # (N, T, M) each gate's value after its activation
    slope: dict[str, Array]  # (N, T, M) act'(clip(s_k)) * inside, per gate; LSTM "c": h's
    h_prev: Array  # (N, T, P) the state before each step
    rec_n: Array | None  # GRU (N, T, M): q = h W_hn + b_hn (reset after), r * h (before)
    c_prev: Array | None  # LSTM (N, T, M) the cell state before each step
    c_new: Array | None  # LSTM (N, T, M) the cell state after each step
    hc: Array | None  # LSTM (N, T, M) h(clip(c_t))
    valid: npt.NDArray[np.bool_]  # (N, T)
    dep: npt.NDArray[np.bool_]  # (N, T) the output at t is the state after t
    out: Array  # (N, T, P) the direction's outputs, time-aligned
    h_n: Array  # (N, P)
    c_n: Array | None  # (N, M), LSTM only


def _activate(act: Activation, s: Array, clip: float | None) -> tuple[Array, Array]:
    """``act(clip(s))`` and its slope ``act'(clip(s)) * [-c <= s <= c]`` (elementwise)."""
    if clip is None:
        return act(s), act.derivative(s)
    z = np.clip(s, -clip, clip)
    return act(z), act.derivative(z) * ((s >= -clip) & (s <= clip))


def _recurrent_gates(spec: CellSpec) -> tuple[str, ...]:
    """The gates whose recurrent side is ``h @ w_h[k] + b_h[k]``, one packed product a step
    (all but a reset-before GRU's candidate, whose product takes ``r * h``)."""
    return ("z", "r") if spec.kind == "gru" and not spec.reset_after else spec.gates


def _gru_step(spec: CellSpec, cell: GRUParams, f: Activation, g: Activation,
              clip: float | None, a: dict[str, Array], u: dict[str, Array], h: Array, t: int,
              cache: _GatedCache) -> Array:
    """One GRU step of the batch from the input sides ``a[k][:, t]``, the recurrent sides
    ``u[k]`` and ``h (N, M)``: stores the gates, their slopes and the candidate's recurrent
    input at t, returns h_t."""
    z, cache.slope["z"][:, t] = _activate(f, a["z"][:, t] + u["z"], clip)
    r, cache.slope["r"][:, t] = _activate(f, a["r"][:, t] + u["r"], clip)
    assert cache.rec_n is not None
    if spec.reset_after:
        q = u["n"]
        n, cache.slope["n"][:, t] = _activate(g, a["n"][:, t] + r * q, clip)
    else:
        q = r * h
        n, cache.slope["n"][:, t] = _activate(
            g, a["n"][:, t] + q @ cell.w_h["n"] + cell.b_h["n"], clip)
    cache.rec_n[:, t] = q
    for k, value in (("z", z), ("r", r), ("n", n)):
        cache.gate[k][:, t] = value
    return (1 - z) * n + z * h


def _lstm_step(spec: CellSpec, cell: LSTMParams, acts: tuple[Activation, ...],
               clip: float | None, a: dict[str, Array], u: dict[str, Array], c: Array,
               t: int, cache: _GatedCache) -> tuple[Array, Array]:
    """One LSTM step of the batch from the input sides ``a[k][:, t]``, the recurrent sides
    ``u[k]`` and ``c (N, M)``: stores the gates, their slopes, ``c_t`` and ``h(clip(c_t))`` at
    t, returns ``(h_t, c_t)``."""
    f, g, h_act = acts
    peep = cell.p if cell.p is not None else {}
    gate, slope = cache.gate, cache.slope

    def pre(k: str, state: Array | None = None) -> Array:
        s = a[k][:, t] + u[k]
        return s + peep[k] * state if k in peep and state is not None else s

    i, slope["i"][:, t] = _activate(f, pre("i", c), clip)
    if spec.input_forget:
        forget = 1 - i
    else:
        forget, slope["f"][:, t] = _activate(f, pre("f", c), clip)
        gate["f"][:, t] = forget
    cand, slope["g"][:, t] = _activate(g, pre("g"), clip)
    c_t = forget * c + i * cand
    o, slope["o"][:, t] = _activate(f, pre("o", c_t), clip)
    hc, slope["c"][:, t] = _activate(h_act, c_t, clip)
    gate["i"][:, t], gate["g"][:, t], gate["o"][:, t] = i, cand, o
    assert cache.c_new is not None and cache.hc is not None
    cache.c_new[:, t], cache.hc[:, t] = c_t, hc
    h_t = o * hc
    return (h_t if cell.w_proj is None else h_t @ cell.w_proj), c_t


def _forward_gated(x: Array, spec: CellSpec, cell: GRUParams | LSTMParams, h0: Array,
                   c0: Array | None, acts: tuple[Activation, ...], clip: float | None,
                   reverse: bool, valid: npt.NDArray[np.bool_], padded_output: str
                   ) -> _GatedCache:
    """One GRU or LSTM direction on ``x (N, T, D_l)`` from ``h0 (N, P)`` (and ``c0 (N, M)``),
    recording what :func:`_backward_gated` needs; the equations of spec 2.7."""
    n, t_len, _ = x.shape
    m, p = cell.hidden_size, h0.shape[1]
    lstm = isinstance(cell, LSTMParams)
    a: dict[str, Array] = {k: x @ cell.w_x[k] + cell.b_x[k]  # the input sides, hoisted
                           for k in cell.gates}
    names = cell.gates + (("c",) if lstm else ())
    cache = _GatedCache(
        gate={k: np.zeros((n, t_len, m)) for k in names},
        slope={k: np.zeros((n, t_len, m)) for k in names},
        h_prev=np.zeros((n, t_len, p)),
        rec_n=None if lstm else np.zeros((n, t_len, m)),
        c_prev=np.zeros((n, t_len, m)) if lstm else None,
        c_new=np.zeros((n, t_len, m)) if lstm else None,
        hc=np.zeros((n, t_len, m)) if lstm else None,
        valid=valid, dep=np.zeros((n, t_len), bool), out=np.zeros((n, t_len, p)),
        h_n=h0, c_n=None)
    rec = _recurrent_gates(spec)
    w_rec = np.concatenate([cell.w_h[k] for k in rec], axis=1)  # (P, G*M): one product a step
    b_rec = np.concatenate([cell.b_h[k] for k in rec])
    h, c = h0.copy(), (None if c0 is None else c0.copy())
    started = np.zeros(n, bool)
    for t in (range(t_len - 1, -1, -1) if reverse else range(t_len)):
        cache.h_prev[:, t] = h
        v = valid[:, t, None]
        u_all = h @ w_rec + b_rec
        u = {k: u_all[:, j * m:(j + 1) * m] for j, k in enumerate(rec)}
        if isinstance(cell, GRUParams):
            h = np.where(v, _gru_step(spec, cell, acts[0], acts[1], clip, a, u, h, t, cache), h)
        else:
            assert c is not None and cache.c_prev is not None
            cache.c_prev[:, t] = c
            h_t, c_t = _lstm_step(spec, cell, acts, clip, a, u, c, t, cache)
            h, c = np.where(v, h_t, h), np.where(v, c_t, c)
        started |= valid[:, t]
        cache.dep[:, t] = {"zeros": valid[:, t], "carry_state": np.ones(n, bool),
                           "carry_output": started.copy()}[padded_output]
        cache.out[:, t] = np.where(cache.dep[:, t, None], h, 0.0)
    cache.h_n, cache.c_n = h, c
    return cache


def _gru_backward_step(spec: CellSpec, cell: GRUParams, w_rec_t: Array, cache: _GatedCache,
                       t: int, dh: Array, ds: dict[str, Array], du_n: Array) -> Array:
    """dL/d h_{t-1} from ``dh``, dL/d h_t, at a valid step t; writes each gate's ``ds_k`` and
    the candidate's recurrent-side cotangent ``du_n`` at t (the module docstring).
    ``w_rec_t`` is the :func:`_recurrent_gates` blocks of ``w_h``, packed and transposed."""
    gate, slope, h = cache.gate, cache.slope, cache.h_prev[:, t]
    z, n = gate["z"][:, t], gate["n"][:, t]
    ds["n"][:, t] = ds_n = dh * (1 - z) * slope["n"][:, t]
    ds["z"][:, t] = ds_z = dh * (h - n) * slope["z"][:, t]
    assert cache.rec_n is not None
    if spec.reset_after:
        ds["r"][:, t] = ds_r = ds_n * cache.rec_n[:, t] * slope["r"][:, t]
        du_n[:, t] = dq = ds_n * gate["r"][:, t]
        return dh * z + np.concatenate([ds_z, ds_r, dq], axis=1) @ w_rec_t
    d_rh = ds_n @ cell.w_h["n"].T
    ds["r"][:, t] = ds_r = d_rh * h * slope["r"][:, t]
    du_n[:, t] = ds_n
    return dh * z + d_rh * gate["r"][:, t] + np.concatenate([ds_z, ds_r], axis=1) @ w_rec_t


def _lstm_backward_step(spec: CellSpec, cell: LSTMParams, w_rec_t: Array, cache: _GatedCache,
                        t: int, dh: Array, dc: Array, ds: dict[str, Array], dh_t: Array
                        ) -> tuple[Array, Array]:
    """``(dL/d h_{t-1}, dL/d c_{t-1})`` from ``dh``, ``dc`` (those of h_t, c_t) at a valid
    step t; writes each gate's ``ds_k`` and ``dh_t`` at t (the module docstring). ``w_rec_t``
    is ``w_h``'s blocks in ``cell.gates`` order, packed and transposed."""
    gate, slope = cache.gate, cache.slope
    assert cache.c_prev is not None and cache.hc is not None
    c = cache.c_prev[:, t]
    dh_t[:, t] = dh
    dm = dh if cell.w_proj is None else dh @ cell.w_proj.T
    o, i = gate["o"][:, t], gate["i"][:, t]
    ds["o"][:, t] = ds_o = dm * cache.hc[:, t] * slope["o"][:, t]
    dc_new = dc + dm * o * slope["c"][:, t]
    peep = cell.p if cell.p is not None else {}
    if "o" in peep:
        dc_new = dc_new + ds_o * peep["o"]
    local = {"o": ds_o}
    ds["g"][:, t] = local["g"] = dc_new * i * slope["g"][:, t]
    if spec.input_forget:
        ds["i"][:, t] = ds_i = dc_new * (gate["g"][:, t] - c) * slope["i"][:, t]
        dc_prev = dc_new * (1 - i)
    else:
        ds["i"][:, t] = ds_i = dc_new * gate["g"][:, t] * slope["i"][:, t]
        ds["f"][:, t] = local["f"] = ds_f = dc_new * c * slope["f"][:, t]
        dc_prev = dc_new * gate["f"][:, t]
        if "f" in peep:
            dc_prev = dc_prev + ds_f * peep["f"]
    if "i" in peep:
        dc_prev = dc_prev + ds_i * peep["i"]
    local["i"] = ds_i
    return np.concatenate([local[k] for k in cell.gates], axis=1) @ w_rec_t, dc_prev


def _backward_gated(x: Array, spec: CellSpec, cell: GRUParams | LSTMParams, reverse: bool,
                    cache: _GatedCache, g_out: Array, g_hn: Array, g_cn: Array | None
                    ) -> tuple[GRUParams | LSTMParams, Array, Array, Array | None]:
    """Gradients of one gated direction: (cell grads, grad of its input x, grad of its h0,
    grad of its c0 (``None`` for a GRU))."""
    n, t_len, _ = x.shape
    m = cell.hidden_size
    ds: dict[str, Array] = {k: np.zeros((n, t_len, m))  # dL/ds_k at valid steps, else 0
                            for k in cell.gates}
    du_n = np.zeros((n, t_len, m))  # GRU: the candidate's recurrent-side cotangent
    dh_t = np.zeros_like(cache.out)  # LSTM: dL/d h_t at valid steps (the projection's)
    w_rec_t = np.ascontiguousarray(
        np.concatenate([cell.w_h[k] for k in _recurrent_gates(spec)], axis=1).T)
    dh = g_hn.copy()
    dc = None if g_cn is None else g_cn.copy()
    for t in (range(t_len) if reverse else range(t_len - 1, -1, -1)):
        dh = dh + np.where(cache.dep[:, t, None], g_out[:, t], 0.0)
        v = cache.valid[:, t, None]
        if isinstance(cell, GRUParams):
            back = _gru_backward_step(spec, cell, w_rec_t, cache, t, dh, ds, du_n)
        else:
            assert dc is not None
            back, dc_prev = _lstm_backward_step(spec, cell, w_rec_t, cache, t, dh, dc, ds,
                                                dh_t)
            dc = np.where(v, dc_prev, dc)
        dh = np.where(v, back, dh)
        for k in ds:  # a padded step has no gate: its rows were written from carried values
            ds[k][:, t] = np.where(v, ds[k][:, t], 0.0)
        du_n[:, t] = np.where(v, du_n[:, t], 0.0)
        dh_t[:, t] = np.where(v, dh_t[:, t], 0.0)
    grads = _gated_weight_grads(x, spec, cell, cache, ds, du_n, dh_t)
    g_x = sum(ds[k] @ cell.w_x[k].T for k in cell.gates)
    return grads, np.asarray(g_x), dh, dc


def _gated_weight_grads(x: Array, spec: CellSpec, cell: GRUParams | LSTMParams,
                        cache: _GatedCache, ds: dict[str, Array], du_n: Array, dh_t: Array
                        ) -> GRUParams | LSTMParams:
    """The weight gradients of one gated direction, each one product over every step."""
    n, t_len, d = x.shape
    m, p = cell.hidden_size, cache.h_prev.shape[2]
    flat = {k: v.reshape(n * t_len, m) for k, v in ds.items()}
    xs = x.reshape(n * t_len, d)
    hs = cache.h_prev.reshape(n * t_len, p)
    w_x = {k: xs.T @ flat[k] for k in cell.gates}
    b_x = {k: flat[k].sum(axis=0) for k in cell.gates}
    w_h = {k: hs.T @ flat[k] for k in cell.gates}
    b_h = {k: b_x[k].copy() for k in cell.gates}
    if isinstance(cell, GRUParams):
        assert cache.rec_n is not None
        du = du_n.reshape(n * t_len, m)
        rec_in = hs if spec.reset_after else cache.rec_n.reshape(n * t_len, m)  # h or r * h
        w_h["n"] = rec_in.T @ du
        b_h["n"] = du.sum(axis=0)
        return GRUParams(w_x=w_x, w_h=w_h, b_x=b_x, b_h=b_h)
    assert cache.c_prev is not None and cache.c_new is not None and cache.hc is not None
    peeps = None
    if cell.p is not None:
        state = {k: cache.c_new if k == "o" else cache.c_prev for k in cell.p}
        peeps = {k: (ds[k] * state[k]).sum(axis=(0, 1)) for k in cell.p}
    w_proj = None
    if cell.w_proj is not None:
        mm = (cache.gate["o"] * cache.hc).reshape(n * t_len, m)
        w_proj = mm.T @ dh_t.reshape(n * t_len, p)
    return LSTMParams(w_x=w_x, w_h=w_h, b_x=b_x, b_h=b_h, p=peeps, w_proj=w_proj)


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


def _c_n_cotangents(cfg: RNNConfig, grad_c_n: Any, n: int) -> list[Array]:
    """dL/d c_n as C arrays ``(N, M_l)`` (zeros for ``None``)."""
    sizes, C = cfg.cell_state_sizes, cfg.num_cell_states
    if grad_c_n is None:
        return [np.zeros((n, m)) for m in sizes]
    if not C:
        raise ValueError(f"grad_c_n is given, but the network has no LSTM layer (its layers "
                         f"are {[c.kind for c in cfg.cells]})")
    if isinstance(grad_c_n, (list, tuple)):
        if len(grad_c_n) != C:
            raise ValueError(f"grad_c_n lists {len(grad_c_n)} arrays, expected C = {C}")
        return [_as_grad(g, (n, sizes[i]), f"grad_c_n[{i}]").copy()
                for i, g in enumerate(grad_c_n)]
    if not cfg.uniform_cell:
        raise ValueError(f"the cell states have different widths {sorted(set(sizes))}, so "
                         f"grad_c_n must be a list of C = {C} arrays (N, M_l), not one array")
    return list(_as_grad(grad_c_n, (C, n, sizes[0]), "grad_c_n").copy())


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
    c0: Any = None,
    grad_c_n: Any = None,
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
        c0: the LSTM layers' initial cell states, as :func:`rnn_ref.forward`.
        grad_c_n: dL/d c_n, ``(C, N, M)`` (or a list of C ``(N, M_l)``); ``None`` for zero.
            Only for a network with an LSTM layer.

    Returns:
        A :class:`BackwardResult` with ``.params`` (gradients in the canonical layout: per
        gate for a GRU or LSTM, peepholes and projection included), ``.x``, ``.h0`` and
        ``.c0`` (``None`` without an LSTM layer), in float64.
    """
    cfg: RNNConfig = check_params(params).config
    checked = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, dtype=np.float64,
                           where="rnn_ref.backward", c0=c0)
    padded_output, output_order = check_options(cfg, padded_output, output_order)
    _check_cotangents(cfg, grad_y, grad_selected)
    check_steps(cfg, checked.t)
    net = params if params.dtype == np.float64 else params.astype(np.float64)
    xs = checked.x if net.embedding is None else net.embedding[checked.x]  # (N, T, D)
    n, t_len = checked.n, checked.t
    inputs, caches = _forward_layers(net, xs, checked.h0_or_zeros(np.float64),
                                     checked.c0_or_zeros(np.float64), checked.valid,
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
    g_cn = _c_n_cotangents(cfg, grad_c_n, n)
    _select_backward(cfg, g_sel, g_last, g_hn, finals)
    if cfg.select in POOLINGS:
        g_last += pool_vjp(cfg.select, last, valid, g_sel)
    if processing:
        g_last = g_last[:, ::-1]
    cell_grads, g_x, g_h0, g_c0 = _backward_layers(net, inputs, caches, g_last, g_hn, g_cn)
    table_grad = None
    if net.embedding is not None:
        table_grad = np.zeros_like(net.embedding)
        np.add.at(table_grad, checked.x, g_x)
        if cfg.padding_idx is not None:
            table_grad[cfg.padding_idx] = 0.0
    grads_params = RNNParams(cfg, cell_grads, embedding=table_grad, head=head_grads)
    h0_grad: Any = np.stack(g_h0) if cfg.uniform_hidden else tuple(g_h0)
    c0_grad: Any = None
    if cfg.num_cell_states:
        c0_grad = np.stack(g_c0) if cfg.uniform_cell else tuple(g_c0)
    return BackwardResult(grads_params, g_x, h0_grad, c0_grad)


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


Cache = _Cache | _GatedCache


def _forward_layers(net: RNNParams, xs: Array, h0s: tuple[Array, ...], c0s: tuple[Array, ...],
                    valid: npt.NDArray[np.bool_], padded_output: str
                    ) -> tuple[list[Array], list[list[Cache]]]:
    """Every layer's input and its directions' caches, first layer first."""
    cfg = net.config
    inputs: list[Array] = []
    caches: list[list[Cache]] = []
    layer_in: Any = xs
    for li, layer in enumerate(net.layers):
        inputs.append(layer_in)
        spec = cfg.cell_of(li)
        row: list[Cache] = []
        for r, cell in enumerate(layer):
            h0, reverse = h0s[cfg.state_index(li, r)], cfg.is_reverse(li, r)
            if isinstance(cell, CellParams):
                row.append(_forward_direction(layer_in, cell, h0, cfg.activation_of(li, r),
                                              cfg.clips[li], reverse, valid, padded_output))
            else:
                c0 = c0s[cfg.cell_state_index(li, r)] if spec.kind == "lstm" else None
                row.append(_forward_gated(layer_in, spec, cell, h0, c0,
                                          cfg.activations_of(li, r), cfg.clips[li], reverse,
                                          valid, padded_output))
        caches.append(row)
        layer_in = row[0].out if len(row) == 1 else merge(row[0].out, row[1].out,
                                                          cfg.merge_modes[li])
    return inputs, caches


def _zero_biases(grads: AnyCellParams) -> AnyCellParams:
    """``grads`` with zero biases: a bias-free network's biases are not parameters."""
    if isinstance(grads, CellParams):
        zero = np.zeros_like(grads.b_x)
        return CellParams(grads.w_x, grads.w_h, zero, zero)
    zeros = {k: np.zeros_like(v) for k, v in grads.b_x.items()}
    if isinstance(grads, GRUParams):
        return GRUParams(w_x=grads.w_x, w_h=grads.w_h, b_x=zeros, b_h=zeros)
    return LSTMParams(w_x=grads.w_x, w_h=grads.w_h, b_x=zeros, b_h=zeros, p=grads.p,
                      w_proj=grads.w_proj)


def _backward_layers(net: RNNParams, inputs: list[Array], caches: list[list[Cache]],
                     g_last: Any, g_hn: list[Array], g_cn: list[Array]
                     ) -> tuple[list[list[AnyCellParams]], Array, list[Array], list[Array]]:
    """The layers' gradients, last to first: cells, dL/dx ``(N, T, D)``, dL/dh0 (S) and
    dL/dc0 (C)."""
    cfg = net.config
    L = cfg.num_layers
    cell_grads: list[list[AnyCellParams]] = [[] for _ in range(L)]
    g_h0: list[Array] = [np.zeros(0)] * cfg.num_states
    g_c0: list[Array] = [np.zeros(0)] * cfg.num_cell_states
    g_layer_out: Any = g_last
    for li in range(L - 1, -1, -1):
        row = caches[li]
        if len(row) == 1:
            g_dirs = [g_layer_out]
        else:
            g_dirs = list(_split_merge(g_layer_out, cfg.merge_modes[li], row[0].out, row[1].out))
        g_in = np.zeros_like(inputs[li])
        for r, cell in enumerate(net.layers[li]):
            cache, reverse = row[r], cfg.is_reverse(li, r)
            grads: AnyCellParams
            if isinstance(cell, CellParams):
                assert isinstance(cache, _Cache)
                grads, gx, gh0 = _backward_direction(inputs[li], cell, cfg.activation_of(li, r),
                                                     reverse, cache, g_dirs[r],
                                                     g_hn[cfg.state_index(li, r)])
            else:
                assert isinstance(cache, _GatedCache)
                lstm = isinstance(cell, LSTMParams)
                ci = cfg.cell_state_index(li, r) if lstm else -1
                grads, gx, gh0, gc0 = _backward_gated(inputs[li], cfg.cell_of(li), cell,
                                                      reverse, cache, g_dirs[r],
                                                      g_hn[cfg.state_index(li, r)],
                                                      g_cn[ci] if lstm else None)
                if gc0 is not None:
                    g_c0[ci] = gc0
            cell_grads[li].append(grads if cfg.bias else _zero_biases(grads))
            g_in = g_in + gx
            g_h0[cfg.state_index(li, r)] = gh0
        g_layer_out = g_in
    return cell_grads, g_layer_out, g_h0, g_c0
