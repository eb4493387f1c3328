r"""The NumPy reference forward pass: the oracle every backend is held to.

For layer l, direction r, at step t (row-vector convention), an Elman cell (spec 2.1)::

    h_t = f( clip( x_t @ w_x + b_x + h_{t-1} @ w_h + b_h ) )

with ``clip(z) = min(max(z, -c), c)`` when the layer has a clip c, else the identity, and
``f`` the activation of that layer and direction. A GRU (spec 2.7.1), with ``a_k = x_t @ w_x[k]
+ b_x[k]`` and ``u_k = h_{t-1} @ w_h[k] + b_h[k]``::

    z = f(clip(a_z + u_z))            r = f(clip(a_r + u_r))
    n = g(clip(a_n + r * u_n))                                  reset_after (torch, ONNX lbr=1)
    n = g(clip(a_n + (r * h_{t-1}) @ w_h[n] + b_h[n]))          reset before (ONNX lbr=0)
    h_t = (1 - z) * n + z * h_{t-1}

An LSTM (spec 2.7.2), ``p`` the peepholes (zero without them)::

    i = f(clip(a_i + u_i + p_i * c_{t-1}))
    f_t = f(clip(a_f + u_f + p_f * c_{t-1}))       (1 - i with input_forget)
    g_t = g(clip(a_g + u_g))
    c_t = f_t * c_{t-1} + i * g_t
    o = f(clip(a_o + u_o + p_o * c_t))
    h_t = (o * h(clip(c_t))) [@ w_proj]

Around the layers (docs/spec.md section 2.6):

* **Embedding.** With one, the input is token ids and ``x_t = E[id_t]`` (row ``id_t`` of the
  ``(V, D)`` table); ``mask_zero`` makes every step with id 0 padding.
* **Selection.** What the last layer hands on, ``s``: its outputs ``o`` at every step
  (``"sequence"``), at position T-1 (``"last_step"``), or its final states merged by its merge
  mode (``"final"``), or one direction's (``"final_forward"``, ``"final_backward"``).
* **Head.** Dense layers in order, ``s <- g_j(s @ w_j + b_j)`` on the last axis (per step for
  a sequence, padded steps included); ``g_j`` may be softmax or log-softmax over that axis.
* Dropouts and noise (``config.identities``) are the identity at inference: nothing to compute.

Semantics (docs/spec.md section 4), every variant an explicit option:

* **Directions.** Each layer is forward, reverse or bidirectional (stacks mix them). A reverse
  direction reads each sequence from its last valid step to its first. Its outputs are
  time-aligned (position t holds the state after consuming ``x_t``; torch, ONNX) unless
  ``output_order="processing"`` (Keras ``go_backwards=True``: the last layer's outputs are
  returned in the order they were computed, i.e. flipped on the time axis). Its final state is
  the state after ``x_0`` (after its first valid step).
* **Bidirectional.** Each layer merges its two directions (``concat``: forward then backward
  on the feature axis; ``sum``, ``mul``, ``ave``; ``None`` for the pair, last layer only) and
  hands the result to the next layer.
* **Variable lengths.** ``lengths (N,)`` marks steps ``t >= lengths[n]`` as padding;
  ``mask (N, T)`` marks any pattern (holes, left padding). A padded step leaves the state
  (an LSTM's ``h`` and ``c``) unchanged and outputs, by ``padded_output``: ``"zeros"``;
  ``"carry_output"``, the last
  output of that direction (zeros before its first valid step); or ``"carry_state"``, the
  carried state (``h0`` before the first valid step). The final state is the last valid state.
* **Length zero.** The final state is ``h0`` and every output is the padded value.
* **Stacking.** Layer by layer; each layer skips the same padded steps.
* **Precision.** ``compute_dtype=None`` computes in float64 whatever the parameters' dtype;
  any floating ``compute_dtype`` computes in that dtype instead, as a backend would.

Two implementations that must agree: :func:`forward_loop`, which reads like the equation (one
sample, one step at a time), and :func:`forward`, the fast path (the input projection of all
steps hoisted into one matrix product, the outputs written in place into one time-major buffer,
no allocation inside the time loop).
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
from rnn_ref.inputs import check_dtype, check_inputs, check_options, check_params
from rnn_ref.network import POOLINGS, Dense, pool, state_entry
from rnn_ref.params import CellParams, GRUParams, LSTMParams, Readout, RNNParams

__all__ = ["ForwardResult", "forward", "forward_loop", "merge", "returned", "select"]

Array = npt.NDArray[np.floating]
HiddenState = Array | tuple[Array, ...]


@dataclass(frozen=True)
class ForwardResult:
    """What :func:`forward` returns.

    Attributes:
        outputs: the last layer's outputs, shape ``(N, T, F)`` with ``F = R*M`` for
            ``concat`` and ``M`` for the other merge modes; for ``merge_mode=None`` a pair
            ``(forward, backward)`` of ``(N, T, M)`` arrays.
        h_n: the final state of every layer and direction, shape ``(S, N, M)``, index
            ``config.state_index(l, r)`` (``l*R + r`` when every layer has R directions). When
            the layers' hidden sizes differ, a tuple of S arrays of shape ``(N, M_l)`` instead.
        selected: what ``config.select`` hands on: ``outputs`` itself for ``"sequence"``,
            else ``(N, F)`` (``(N, M)`` for one direction's final state; a pair for
            ``merge_mode=None``).
        y: the head's output, ``(N, T, K)`` per step or ``(N, K)`` after a selection;
            ``None`` without a head.
        c_n: the LSTM layers' final cell states, ``(C, N, M)`` (index
            ``config.cell_state_index(l, r)``), a tuple of C ``(N, M_l)`` arrays when their
            widths differ, ``None`` without an LSTM layer.
    """

    outputs: Any  # (N, T, F) array, or a pair of (N, T, M) arrays for merge_mode=None
    h_n: Any  # (S, N, M) array, or a tuple of S (N, M_l) arrays
    y: Any  # (N, T, K) or (N, K) array, or None
    selected: Any = None  # (N, T, F), (N, F) or (N, M); a pair for merge_mode=None
    c_n: Any = None  # (C, N, M) array, a tuple of C (N, M_l) arrays, or None

    @property
    def result(self) -> Any:
        """The network's result: ``y`` with a head, else ``selected``."""
        return self.selected if self.y is None else self.y


def returned(config: RNNConfig, res: ForwardResult) -> tuple[Any, ...]:
    """What a model of ``config`` returns, in the order of ``config.returns``: ``result``,
    ``sequence`` (``res.outputs``), ``h_n`` or ``h_n[k]`` (one final state, ``(N, M_k)``),
    ``c_n`` or ``c_n[k]`` (an LSTM's cell states). A one-output model
    (``returns == ("result",)``) gives ``(res.result,)``."""
    out: list[Any] = []
    for name in config.returns:
        entry = state_entry(name)
        if entry is not None:
            out.append((res.h_n if entry[0] == "h_n" else res.c_n)[entry[1]])
        else:
            out.append({"result": res.result, "sequence": res.outputs, "h_n": res.h_n,
                        "c_n": res.c_n}[name])
    return tuple(out)


@dataclass(frozen=True)
class _Prepared:
    """Validated arguments of one oracle call, in the compute dtype."""

    params: RNNParams  # cast to the compute dtype
    x: Array  # (N, T, D), or token ids (N, T) with an embedding
    h0: tuple[Array, ...]  # S arrays (N, M_l)
    c0: tuple[Array, ...]  # C arrays (N, M_l), the LSTM layers' cell states
    valid: npt.NDArray[np.bool_] | None  # (N, T), None when every step is valid
    padded_output: str
    output_order: str


def _prepare(
    params: Any,
    x: Any,
    h0: Any,
    lengths: Any,
    mask: Any,
    compute_dtype: Any,
    padded_output: str | None,
    output_order: str | None,
    c0: Any = None,
) -> _Prepared:
    """The oracle's arguments checked (:mod:`rnn_ref.inputs`) and cast to the compute dtype."""
    params = check_params(params)
    cfg = params.config
    dt = (np.dtype(np.float64) if compute_dtype is None
          else check_dtype(compute_dtype, "compute_dtype"))
    inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, dtype=dt,
                          where="rnn_ref.forward", c0=c0)
    po, oo = check_options(cfg, padded_output, output_order)
    cast = params if params.dtype == dt else params.astype(dt)
    check_steps(cfg, inputs.t)
    return _Prepared(cast, inputs.x, inputs.h0_or_zeros(dt), inputs.c0_or_zeros(dt),
                     inputs.valid if inputs.padded else None, po, oo)


def _stack_h_n(states: list[Array], cfg: RNNConfig) -> HiddenState:
    return np.stack(states) if cfg.uniform_hidden else tuple(states)


def _stack_c_n(states: list[Array], cfg: RNNConfig) -> HiddenState | None:
    if not cfg.num_cell_states:
        return None
    return np.stack(states) if cfg.uniform_cell else tuple(states)


def merge(fwd: Array, bwd: Array, mode: str | None) -> Array | tuple[Array, Array]:
    """Merge a bidirectional layer's two aligned outputs ``(N, T, M)`` by ``mode`` (spec 4.2).

    ``"concat"`` gives ``(N, T, 2M)`` (forward then backward on the feature axis); ``"sum"``,
    ``"mul"`` and ``"ave"`` give ``(N, T, M)``; ``None`` gives the pair ``(fwd, bwd)``. Any
    leading shape works (``(N, M)`` for one step).
    """
    if mode == "concat":
        return np.concatenate([fwd, bwd], axis=-1)
    if mode == "sum":
        return fwd + bwd
    if mode == "mul":
        return fwd * bwd
    if mode == "ave":
        return (fwd + bwd) / 2
    return (fwd, bwd)


def check_steps(cfg: RNNConfig, t: int) -> None:
    """Refuse T = 0 for a selection that needs a step (``last_step``, ``max_all``)."""
    if t == 0 and cfg.select in ("last_step", "max_all"):
        raise ValueError(f"select={cfg.select!r} needs at least one step, but x has T = 0 "
                         f"steps")


def select(cfg: RNNConfig, outputs: Any, finals: list[Array],
           valid: npt.NDArray[np.bool_] | None = None) -> Any:
    """What the last layer hands on (:data:`~rnn_ref.SELECTS`), from its merged ``outputs``
    ``(N, T, F)``, its R final states ``finals`` (each ``(N, M)``, forward first) and the
    valid steps ``valid (N, T)`` (``None``: all)::

        sequence        o
        last_step       o[:, T-1]
        final           merge(h_fwd, h_bwd)   (h of a one-direction layer)
        final_forward   h_fwd                 final_backward   h_bwd
        mean_valid, mean_all, max_all         pool(o) over time (rnn_ref.network.pool)
    """
    how = cfg.select
    if how == "sequence":
        return outputs
    if how in POOLINGS:
        return pool(how, outputs, valid)
    if how == "last_step":
        return outputs[:, -1]
    if how == "final_forward":
        return finals[0]
    if how == "final_backward":
        return finals[1]
    return finals[0] if len(finals) == 1 else merge(finals[0], finals[1], cfg.merge_modes[-1])


# ---------------------------------------------------------------------------------------------
# The clear loop: one sample, one step at a time, exactly as the equation reads.
# ---------------------------------------------------------------------------------------------
# Exempt from the complexity limit: the equation is written out in one piece, to be read whole.
def forward_loop(  # noqa: C901
    params: RNNParams,
    x: Any,
    *,
    h0: Any = None,
    lengths: Any = None,
    mask: Any = None,
    compute_dtype: Any = None,
    padded_output: str | None = None,
    output_order: str | None = None,
    c0: Any = None,
) -> ForwardResult:
    """The reference forward pass written as a plain loop over samples and steps.

    Same arguments and result as :func:`forward`; slower, and kept to check the fast path.
    """
    p = _prepare(params, x, h0, lengths, mask, compute_dtype, padded_output, output_order, c0)
    cfg = p.params.config
    n_samples, n_steps = p.x.shape[:2]
    valid = np.ones((n_samples, n_steps), bool) if p.valid is None else p.valid
    zero = p.h0[0].dtype.type(0)

    layer_input = _embed_loop(p)
    h_n: list[Array] = []
    c_n: list[Array] = []
    for li, layer in enumerate(p.params.layers):
        spec, clip = cfg.cell_of(li), cfg.clips[li]
        directions = []
        for r, cell in enumerate(layer):
            acts = cfg.activations_of(li, r)
            width = cfg.output_sizes[li]
            out = np.zeros((n_samples, n_steps, width), zero.dtype)
            final = np.zeros((n_samples, width), zero.dtype)
            final_c = np.zeros((n_samples, cfg.hidden_sizes[li]), zero.dtype)
            steps = range(n_steps - 1, -1, -1) if cfg.is_reverse(li, r) else range(n_steps)
            for s in range(n_samples):
                h = p.h0[cfg.state_index(li, r)][s]
                c = p.c0[cfg.cell_state_index(li, r)][s] if spec.kind == "lstm" else None
                started = False
                for t in steps:
                    if valid[s, t]:
                        h, c = _step(spec, cell, acts, clip, layer_input[s, t], h, c)
                        out[s, t] = h
                        started = True
                    elif p.padded_output == "zeros":
                        out[s, t] = zero
                    elif p.padded_output == "carry_state":
                        out[s, t] = h
                    else:  # carry_output: the last output, zeros before the first one
                        out[s, t] = h if started else zero
                final[s] = h
                if c is not None:
                    final_c[s] = c
            if li == cfg.num_layers - 1 and p.output_order == "processing":
                out = out[:, ::-1]
            directions.append(out)
            h_n.append(final)
            if spec.kind == "lstm":
                c_n.append(final_c)
        if len(layer) == 1:
            layer_input = directions[0]
        else:
            layer_input = merge(directions[0], directions[1], cfg.merge_modes[li])  # type: ignore[assignment]

    chosen = select(cfg, layer_input, h_n[-len(p.params.layers[-1]):], p.valid)
    return ForwardResult(layer_input, _stack_h_n(h_n, cfg), _head_loop(p, chosen), chosen,
                         _stack_c_n(c_n, cfg))


def _clip(z: Array, clip: float | None) -> Array:
    """``min(max(z, -c), c)``, or ``z`` without a clip."""
    return z if clip is None else np.minimum(np.maximum(z, -clip), clip)


def _step(spec: CellSpec, cell: Any, acts: tuple[Activation, ...], clip: float | None,
          x: Array, h: Array, c: Array | None) -> tuple[Array, Array | None]:
    """One valid step of one sample: ``(h_t, c_t)`` from ``x_t (D_l,)``, ``h_{t-1}`` and an
    LSTM's ``c_{t-1}`` (``None`` for the other cells), exactly as spec 2.1 and 2.7 write it."""
    if isinstance(cell, CellParams):
        (f,) = acts
        return f(_clip(x @ cell.w_x + cell.b_x + h @ cell.w_h + cell.b_h, clip)), None
    a = {k: x @ cell.w_x[k] + cell.b_x[k] for k in cell.gates}  # the input side of each gate
    u = {k: h @ cell.w_h[k] + cell.b_h[k] for k in cell.gates}  # the recurrent side
    if isinstance(cell, GRUParams):
        f, g = acts
        z = f(_clip(a["z"] + u["z"], clip))
        r = f(_clip(a["r"] + u["r"], clip))
        if spec.reset_after:
            n = g(_clip(a["n"] + r * u["n"], clip))
        else:
            n = g(_clip(a["n"] + (r * h) @ cell.w_h["n"] + cell.b_h["n"], clip))
        return (1 - z) * n + z * h, None
    assert isinstance(cell, LSTMParams) and c is not None
    f, g, h_act = acts
    peep = cell.p if cell.p is not None else {}
    zeros = np.zeros_like(c)
    i = f(_clip(a["i"] + u["i"] + peep.get("i", zeros) * c, clip))
    if spec.input_forget:
        forget = 1 - i
    else:
        forget = f(_clip(a["f"] + u["f"] + peep.get("f", zeros) * c, clip))
    c_t = forget * c + i * g(_clip(a["g"] + u["g"], clip))
    o = f(_clip(a["o"] + u["o"] + peep.get("o", zeros) * c_t, clip))
    h_t = o * h_act(_clip(c_t, clip))
    if cell.w_proj is not None:
        h_t = h_t @ cell.w_proj
    return h_t, c_t


def _head_loop(p: _Prepared, s: Any) -> Array | None:
    """The head's dense layers in order on the selection ``s``, one row at a time; ``None``
    without a head."""
    if not p.params.head:
        return None
    for dense, weights in zip(p.params.config.head, p.params.head, strict=True):
        s = _dense_loop(dense, weights, s)
    return s


def _embed_loop(p: _Prepared) -> Array:
    """``x[n, t] = E[ids[n, t]]``, one step at a time; ``x`` itself without an embedding."""
    table = p.params.embedding
    if table is None:
        return p.x
    n_samples, n_steps = p.x.shape
    x = np.zeros((n_samples, n_steps, table.shape[1]), table.dtype)
    for s in range(n_samples):
        for t in range(n_steps):
            x[s, t] = table[p.x[s, t]]
    return x


def _dense_loop(dense: Dense, weights: Readout, s: Array) -> Array:
    """``g(s_i @ w + b)`` for every row ``s_i`` of ``s`` (``(N, F)`` or ``(N, T, F)``), one
    row at a time (softmax over each row)."""
    rows = s.reshape(-1, s.shape[-1])
    y = np.zeros((rows.shape[0], weights.w.shape[1]), s.dtype)
    for i in range(rows.shape[0]):
        y[i] = dense.activation(rows[i] @ weights.w + weights.b)
    return y.reshape(*s.shape[:-1], weights.w.shape[1])


# ---------------------------------------------------------------------------------------------
# The fast path.
# ---------------------------------------------------------------------------------------------
def forward(
    params: RNNParams,
    x: Any,
    *,
    h0: Any = None,
    lengths: Any = None,
    mask: Any = None,
    compute_dtype: Any = None,
    padded_output: str | None = None,
    output_order: str | None = None,
    c0: Any = None,
) -> ForwardResult:
    r"""Run the network on a batch: the oracle.

    .. math::

        h_t = f(\mathrm{clip}(x_t W_x + b_x + h_{t-1} W_h + b_h)), \qquad
        y_t = g(o_t W_y + b_y)

    for an Elman cell; a GRU's and an LSTM's equations are in the module docstring (spec 2.7).

    Args:
        params: the network (:class:`~rnn_ref.RNNParams`).
        x: inputs, shape ``(N, T, D)``, batch-major, real numbers of any dtype; token ids
            ``(N, T)`` for a network with an embedding.
        h0: initial states, shape ``(S, N, M)`` (index ``config.state_index(l, r)``, which is
            ``l*R + r`` when every layer has R directions; it does not follow any batch-first
            flag), or a list of S arrays of shape ``(N, M_l)`` (required when the layers'
            hidden sizes differ). Default zeros.
        lengths: valid length of each sample, integers of shape ``(N,)`` in ``[0, T]``; steps
            ``t >= lengths[n]`` are padding. Exclusive with ``mask``.
        mask: booleans of shape ``(N, T)``, True where a step is valid; any pattern.
        compute_dtype: ``None`` computes in float64; a floating dtype computes in it.
        padded_output: overrides ``config.padded_output`` (``"zeros"``, ``"carry_output"``,
            ``"carry_state"``).
        output_order: overrides ``config.output_order`` (``"aligned"``, ``"processing"``).
        c0: the LSTM layers' initial cell states, ``(C, N, M)`` (index
            ``config.cell_state_index(l, r)``) or a list of C ``(N, M_l)`` arrays; default
            zeros. Only for a network with an LSTM layer.

    Returns:
        A :class:`ForwardResult` with ``outputs (N, T, F)``, ``h_n (S, N, M)``, ``selected``,
        ``y`` (the head's output) or ``None``, and ``c_n`` (``None`` without an LSTM layer),
        all in the compute dtype; ``result.result`` is what the network returns.

    Raises:
        TypeError, ValueError: a bad argument, named with what was given and what is allowed.
    """
    p = _prepare(params, x, h0, lengths, mask, compute_dtype, padded_output, output_order, c0)
    cfg = p.params.config
    invalid = None if p.valid is None else ~p.valid  # (N, T)

    table = p.params.embedding
    layer_input: Any = p.x if table is None else table[p.x]
    h_n: list[Array] = []
    c_n: list[Array] = []
    for li, layer in enumerate(p.params.layers):
        layer_input = _run_layer(p, li, layer, layer_input, invalid, h_n, c_n)
    chosen = select(cfg, layer_input, h_n[-len(p.params.layers[-1]):], p.valid)
    y = None
    if p.params.head:
        y = chosen
        for dense, weights in zip(cfg.head, p.params.head, strict=True):
            y = y @ weights.w
            y += weights.b
            if isinstance(dense.activation, Activation):
                dense.activation.apply_(y, np.empty_like(y))
            else:
                y = dense.activation(y)
    return ForwardResult(layer_input, _stack_h_n(h_n, cfg), y, chosen, _stack_c_n(c_n, cfg))


def _run_layer(p: _Prepared, li: int, layer: Any, layer_input: Any,
               invalid: npt.NDArray[np.bool_] | None, h_n: list[Array], c_n: list[Array]
               ) -> Any:
    """Layer ``li`` on ``layer_input`` ``(N, T, D_l)``: its merged outputs (flipped for a
    ``processing``-order last layer); its final states are appended to ``h_n`` (an LSTM's
    cell states to ``c_n``)."""
    cfg = p.params.config
    n_samples, n_steps = layer_input.shape[:2]
    R = len(layer)
    m, mode = cfg.output_sizes[li], cfg.merge_modes[li]
    # concat: both directions write into their halves of one (N, T, R*M) buffer
    width = R * m if mode == "concat" else m
    buffers = [np.empty((n_samples, n_steps, width), layer_input.dtype)
               for _ in range(1 if mode == "concat" else R)]
    directions = []
    for r, cell in enumerate(layer):
        buf = buffers[0] if mode == "concat" else buffers[r]
        lo = r * m if mode == "concat" else 0
        if isinstance(cell, CellParams):
            h_n.append(_run_direction(
                layer_input, cell, p.h0[cfg.state_index(li, r)], cfg.activation_of(li, r),
                cfg.clips[li], cfg.is_reverse(li, r), invalid, p.padded_output, buf, lo,
            ))
        else:
            spec = cfg.cell_of(li)
            c0 = p.c0[cfg.cell_state_index(li, r)] if spec.kind == "lstm" else None
            h, c = _run_gated_direction(
                layer_input, spec, cell, p.h0[cfg.state_index(li, r)], c0,
                cfg.activations_of(li, r), cfg.clips[li], cfg.is_reverse(li, r), invalid,
                buf[:, :, lo:lo + m])
            _fix_padded(buf[:, :, lo:lo + m], invalid, p.padded_output, cfg.is_reverse(li, r))
            h_n.append(h)
            if c is not None:
                c_n.append(c)
        directions.append(buf[:, :, lo : lo + m])
    out: Any = buffers[0] if mode == "concat" else merge(directions[0], directions[1], mode)
    if li == cfg.num_layers - 1 and p.output_order == "processing":
        out = np.ascontiguousarray(out[:, ::-1])
    return out


def _run_direction(
    x: Array,
    cell: Any,
    h0: Array,
    f: Activation,
    clip: float | None,
    reverse: bool,
    invalid: npt.NDArray[np.bool_] | None,
    padded_output: str,
    buf: Array,
    lo: int,
) -> Array:
    """One layer, one direction, batch-major; writes ``buf[:, :, lo:lo+M]``, returns ``h_n``.

    ``x`` is ``(N, T, D_l)``; ``buf`` is ``(N, T, W)`` with the direction's M columns starting
    at ``lo``. First the input projection of every step, ``x_t @ w_x + b_x + b_h``, goes into
    those columns as one matrix product. The loop then computes ``h_{t-1} @ w_h`` into one of
    two C-contiguous ``(N, M)`` buffers that take turns holding the state, adds the projection
    at t, clips and applies f in place, (with a mask) copies the previous state back into the
    rows whose step is padding, and stores the result at t. Nothing is allocated inside the
    loop.

    The activation runs on contiguous memory only: NumPy 2.4.6's in-place ``np.negative``
    returns wrong values on some strided float64 views (an ``(N, 1)`` column of a wider
    buffer), which a property test of this project caught.
    """
    n_samples, n_steps, d = x.shape
    m = cell.hidden_size
    out = buf[:, :, lo : lo + m]
    np.matmul(x.reshape(n_samples * n_steps, d), cell.w_x,
              out=buf.reshape(n_samples * n_steps, buf.shape[2])[:, lo : lo + m])
    out += cell.b_x + cell.b_h
    prime(x.dtype, m, m)  # see rnn_ref._blas: the per-step products run up to 2.6x faster
    states = (np.empty((n_samples, m), x.dtype), np.empty((n_samples, m), x.dtype))
    work = np.empty((n_samples, m), x.dtype)
    work2 = np.empty((n_samples, m), x.dtype)
    h = h0
    steps = range(n_steps - 1, -1, -1) if reverse else range(n_steps)
    for i, t in enumerate(steps):
        z = states[i % 2]
        np.matmul(h, cell.w_h, out=z)
        z += out[:, t]
        if clip is not None:
            np.clip(z, -clip, clip, out=z)
        f.apply_(z, work, work2)
        if invalid is not None:
            np.copyto(z, h, where=invalid[:, t, None])
        out[:, t] = z
        h = z
    final = np.array(h, copy=True)
    _fix_padded(out, invalid, padded_output, reverse)
    return final


def _fix_padded(out: Array, invalid: npt.NDArray[np.bool_] | None, padded_output: str,
                reverse: bool) -> None:
    """Padded steps of ``out (N, T, M)`` hold the carried state ("carry_state"); rewrite them
    for the other ``padded_output`` modes."""
    if invalid is None or not out.shape[1]:
        return
    if padded_output == "zeros":
        np.copyto(out, 0, where=invalid[:, :, None])
    elif padded_output == "carry_output":
        seen = ~invalid
        if reverse:
            started = np.logical_or.accumulate(seen[:, ::-1], axis=1)[:, ::-1]
        else:
            started = np.logical_or.accumulate(seen, axis=1)
        np.copyto(out, 0, where=~started[:, :, None])


def _run_gated_direction(
    x: Array,
    spec: CellSpec,
    cell: GRUParams | LSTMParams,
    h0: Array,
    c0: Array | None,
    acts: tuple[Activation, ...],
    clip: float | None,
    reverse: bool,
    invalid: npt.NDArray[np.bool_] | None,
    out: Array,
) -> tuple[Array, Array | None]:
    """One GRU or LSTM layer, one direction, batch-major: writes every step's state into
    ``out (N, T, P)`` (the carried state at padded steps) and returns ``(h_n, c_n)``
    (``c_n`` ``None`` for a GRU).

    ``x`` is ``(N, T, D_l)``. The blocks are packed once, in canonical gate order, into
    ``(D_l, G*M)`` and ``(P, G*M)`` matrices, so that every step's input side is one matrix
    product hoisted out of the loop and the recurrent side one product per step; the
    reset-before GRU's candidate, whose recurrent product needs ``r``, is computed apart.
    """
    n_samples, n_steps, d = x.shape
    gates, m = cell.gates, cell.hidden_size
    gru = isinstance(cell, GRUParams)
    # a GRU's b_h["n"] is inside r * (...) when reset_after: it stays on the recurrent side
    keep_hn = gru and spec.reset_after
    w_x = np.concatenate([cell.w_x[k] for k in gates], axis=1)
    bias = np.concatenate([cell.b_x[k] + (0 if keep_hn and k == "n" else cell.b_h[k])
                           for k in gates])
    proj = (x.reshape(n_samples * n_steps, d) @ w_x + bias).reshape(n_samples, n_steps,
                                                                     w_x.shape[1])
    rec = gates[:2] if gru else gates  # the gates whose recurrent product needs only h
    w_h = np.concatenate([cell.w_h[k] for k in rec], axis=1)
    f, g = acts[0], acts[1]
    h = h0
    c = c0
    steps = range(n_steps - 1, -1, -1) if reverse else range(n_steps)
    for t in steps:
        pre = proj[:, t]
        u = h @ w_h
        if isinstance(cell, GRUParams):
            z = f(_clip(pre[:, :m] + u[:, :m], clip))
            r = f(_clip(pre[:, m:2 * m] + u[:, m:], clip))
            if spec.reset_after:
                un = h @ cell.w_h["n"] + cell.b_h["n"]
                n = g(_clip(pre[:, 2 * m:] + r * un, clip))
            else:
                n = g(_clip(pre[:, 2 * m:] + (r * h) @ cell.w_h["n"], clip))
            new_h, new_c = n + z * (h - n), None
        else:
            assert c is not None
            new_h, new_c = _lstm_fast_step(spec, cell, acts, clip, pre + u, c)
        if invalid is not None:
            keep = invalid[:, t, None]
            new_h = np.where(keep, h, new_h)
            if new_c is not None and c is not None:
                new_c = np.where(keep, c, new_c)
        out[:, t] = new_h
        h, c = new_h, new_c
    return np.array(h, copy=True), (None if c is None else np.array(c, copy=True))


def _lstm_fast_step(spec: CellSpec, cell: LSTMParams, acts: tuple[Activation, ...],
                    clip: float | None, pre: Array, c: Array) -> tuple[Array, Array]:
    """One LSTM step for the batch from ``pre (N, G*M)``, each gate's input and recurrent
    sides summed (in ``cell.gates`` order), and ``c_{t-1} (N, M)``: ``(h_t, c_t)``."""
    m = cell.hidden_size
    f, g, h_act = acts
    col = {k: pre[:, j * m:(j + 1) * m] for j, k in enumerate(cell.gates)}
    peep = cell.p
    i = f(_clip(col["i"] + peep["i"] * c if peep is not None else col["i"], clip))
    if spec.input_forget:
        forget = 1 - i
    else:
        forget = f(_clip(col["f"] + peep["f"] * c if peep is not None else col["f"], clip))
    c_t = forget * c + i * g(_clip(col["g"], clip))
    o = f(_clip(col["o"] + peep["o"] * c_t if peep is not None else col["o"], clip))
    h_t = o * h_act(_clip(c_t, clip))
    if cell.w_proj is not None:
        h_t = h_t @ cell.w_proj
    return h_t, c_t
