r"""The NumPy reference forward pass: the oracle every backend is held to.

For layer l, direction r, at step t (row-vector convention)::

    h_t = f( clip( x_t @ w_x + b_x + h_{t-1} @ w_h + b_h ) )

with ``clip(z) = min(max(z, -c), c)`` when the layer has a clip c, else the identity, and
``f`` the activation of that layer and direction. The readout, when present, is
``y_t = g(o_t @ w_y + b_y)`` at every step, padded ones included, where ``o_t`` is what the
last layer outputs at t.

Semantics (docs/spec.md section 4), every variant an explicit option:

* **Directions.** A reverse direction reads each sequence from its last valid step to its
  first. Its outputs are time-aligned (position t holds the state after consuming ``x_t``;
  torch, ONNX) unless ``output_order="processing"`` (Keras ``go_backwards=True``: the last
  layer's outputs are returned in the order they were computed, i.e. flipped on the time axis).
  Its final state is the state after ``x_0`` (after its first valid step).
* **Bidirectional.** Each layer merges its two directions (``concat``: forward then backward
  on the feature axis; ``sum``, ``mul``, ``ave``; ``None`` for the pair, last layer only) and
  hands the result to the next layer.
* **Variable lengths.** ``lengths (N,)`` marks steps ``t >= lengths[n]`` as padding;
  ``mask (N, T)`` marks any pattern (holes, left padding). A padded step leaves the state
  unchanged and outputs, by ``padded_output``: ``"zeros"``; ``"carry_output"``, the last
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
from rnn_ref.config import OUTPUT_ORDERS, PADDED_OUTPUTS, RNNConfig
from rnn_ref.params import RNNParams

__all__ = ["ForwardResult", "forward", "forward_loop"]

Array = npt.NDArray[np.floating]
HiddenState = Array | tuple[Array, ...]


@dataclass(frozen=True)
class ForwardResult:
    """What :func:`forward` returns.

    Attributes:
        outputs: the last layer's outputs, shape ``(N, T, F)`` with ``F = R*M`` for
            ``concat`` and ``M`` for the other merge modes; for ``merge_mode=None`` a pair
            ``(forward, backward)`` of ``(N, T, M)`` arrays.
        h_n: the final state of every layer and direction, shape ``(L*R, N, M)``, index
            ``l*R + r``. When the layers' hidden sizes differ, a tuple of L*R arrays of shape
            ``(N, M_l)`` instead.
        y: the readout, shape ``(N, T, K)``, or ``None`` without a readout.
    """

    outputs: Any  # (N, T, F) array, or a pair of (N, T, M) arrays for merge_mode=None
    h_n: Any  # (L*R, N, M) array, or a tuple of L*R (N, M_l) arrays
    y: Any  # (N, T, K) array or None


@dataclass(frozen=True)
class _Prepared:
    """Validated inputs, in the compute dtype."""

    params: RNNParams  # cast to the compute dtype
    x: Array  # (N, T, D)
    h0: tuple[Array, ...]  # L*R arrays (N, M_l)
    valid: npt.NDArray[np.bool_] | None  # (N, T), None when every step is valid
    padded_output: str
    output_order: str


def _dtype_of(value: Any, where: str) -> np.dtype[Any]:
    try:
        dt = np.dtype(value)
    except TypeError:
        raise TypeError(f"{where} must be a floating dtype, got {value!r}") from None
    if dt.kind != "f":
        raise TypeError(f"{where} must be a floating dtype, got {dt}")
    return dt


def _as_array(value: Any, where: str) -> np.ndarray[Any, Any]:
    try:
        return np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{where}: cannot be read as an array ({exc})") from None


def _prepare(  # noqa: C901
    params: RNNParams,
    x: Any,
    h0: Any,
    lengths: Any,
    mask: Any,
    compute_dtype: Any,
    padded_output: str | None,
    output_order: str | None,
) -> _Prepared:
    if not isinstance(params, RNNParams):
        raise TypeError(f"params must be rnn_ref.RNNParams, got {type(params).__name__}")
    cfg = params.config
    dt = (np.dtype(np.float64) if compute_dtype is None
          else _dtype_of(compute_dtype, "compute_dtype"))

    xa = _as_array(x, "x")
    if xa.dtype.kind not in "iuf":
        raise TypeError(f"x must hold real numbers, got dtype {xa.dtype}")
    if xa.ndim != 3:
        hint = "; add a batch axis with x[None]" if xa.ndim == 2 else ""
        raise ValueError(f"x must have 3 dimensions (N, T, D), got shape {xa.shape}{hint}")
    n, t, d = xa.shape
    if d != cfg.input_size:
        raise ValueError(
            f"x has {d} features (shape {xa.shape}) but config.input_size is {cfg.input_size}"
        )

    L, R, sizes = cfg.num_layers, cfg.num_directions, cfg.hidden_sizes
    if h0 is None:
        h0s = tuple(np.zeros((n, sizes[i // R]), dt) for i in range(L * R))
    else:
        h0s = _check_h0(h0, cfg, n, dt)

    if lengths is not None and mask is not None:
        raise ValueError("give lengths or mask, not both")
    valid = None
    if lengths is not None:
        la = _as_array(lengths, "lengths")
        if la.dtype.kind not in "iu":
            raise TypeError(f"lengths must be integers, got dtype {la.dtype}")
        if la.shape != (n,):
            raise ValueError(f"lengths must have shape (N,) = ({n},), got {la.shape}")
        if n and (la.min() < 0 or la.max() > t):
            raise ValueError(
                f"lengths must lie in [0, T] = [0, {t}], got min {la.min()}, max {la.max()}"
            )
        valid = np.arange(t)[None, :] < la[:, None]
    elif mask is not None:
        ma = _as_array(mask, "mask")
        if ma.dtype != np.bool_:
            raise TypeError(f"mask must be boolean (True = a valid step), got dtype {ma.dtype}")
        if ma.shape != (n, t):
            raise ValueError(f"mask must have shape (N, T) = ({n}, {t}), got {ma.shape}")
        valid = ma.copy()
    if valid is not None and valid.all():
        valid = None

    po = cfg.padded_output if padded_output is None else padded_output
    if po not in PADDED_OUTPUTS:
        raise ValueError(f"padded_output must be one of {list(PADDED_OUTPUTS)}, got {po!r}")
    oo = cfg.output_order if output_order is None else output_order
    if oo not in OUTPUT_ORDERS:
        raise ValueError(f"output_order must be one of {list(OUTPUT_ORDERS)}, got {oo!r}")
    if oo == "processing" and cfg.direction != "reverse":
        raise ValueError(
            f"output_order='processing' needs direction='reverse', the network is {cfg.direction}"
        )
    cast = params if params.dtype == dt else params.astype(dt)
    return _Prepared(cast, xa.astype(dt, copy=False), h0s, valid, po, oo)


def _check_h0(h0: Any, cfg: RNNConfig, n: int, dt: np.dtype[Any]) -> tuple[Array, ...]:
    L, R, sizes = cfg.num_layers, cfg.num_directions, cfg.hidden_sizes
    if isinstance(h0, (list, tuple)):
        if len(h0) != L * R:
            raise ValueError(f"h0 lists {len(h0)} states, expected L*R = {L * R}")
        states = [_as_array(h, f"h0[{i}]") for i, h in enumerate(h0)]
    else:
        arr = _as_array(h0, "h0")
        if not cfg.uniform_hidden:
            raise ValueError(
                f"the layers have different hidden sizes {sizes}, so h0 must be a list of "
                f"L*R = {L * R} arrays of shape (N, M_l), not one array"
            )
        if arr.shape != (L * R, n, sizes[0]):
            raise ValueError(
                f"h0 must have shape (L*R, N, M) = ({L * R}, {n}, {sizes[0]}), got {arr.shape}"
            )
        states = list(arr)
    out = []
    for i, h in enumerate(states):
        m = sizes[i // R]
        if h.dtype.kind not in "iuf":
            raise TypeError(f"h0[{i}] must hold real numbers, got dtype {h.dtype}")
        if h.shape != (n, m):
            raise ValueError(f"h0[{i}] must have shape (N, M) = ({n}, {m}), got {h.shape}")
        out.append(np.array(h, dtype=dt))
    return tuple(out)


def _stack_h_n(states: list[Array], cfg: RNNConfig) -> HiddenState:
    return np.stack(states) if cfg.uniform_hidden else tuple(states)


def _merge(fwd: Array, bwd: Array, mode: str | None) -> Array | tuple[Array, Array]:
    if mode == "concat":
        return np.concatenate([fwd, bwd], axis=-1)
    if mode == "sum":
        return fwd + bwd
    if mode == "mul":
        return fwd * bwd
    if mode == "ave":
        return (fwd + bwd) / 2
    return (fwd, bwd)


def _is_reverse(cfg: RNNConfig, r: int) -> bool:
    return cfg.direction == "reverse" or r == 1


# ---------------------------------------------------------------------------------------------
# The clear loop: one sample, one step at a time, exactly as the equation reads.
# ---------------------------------------------------------------------------------------------
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
) -> ForwardResult:
    """The reference forward pass written as a plain loop over samples and steps.

    Same arguments and result as :func:`forward`; slower, and kept to check the fast path.
    """
    p = _prepare(params, x, h0, lengths, mask, compute_dtype, padded_output, output_order)
    cfg = p.params.config
    n_samples, n_steps, _ = p.x.shape
    valid = np.ones((n_samples, n_steps), bool) if p.valid is None else p.valid
    R = cfg.num_directions
    zero = p.x.dtype.type(0)

    layer_input = p.x
    h_n: list[Array] = []
    for li, layer in enumerate(p.params.layers):
        clip = cfg.clips[li]
        directions = []
        for r, cell in enumerate(layer):
            f = cfg.activation_of(li, r)
            m = cell.hidden_size
            out = np.zeros((n_samples, n_steps, m), p.x.dtype)
            final = np.zeros((n_samples, m), p.x.dtype)
            steps = range(n_steps - 1, -1, -1) if _is_reverse(cfg, r) else range(n_steps)
            for s in range(n_samples):
                h = p.h0[li * R + r][s]
                started = False
                for t in steps:
                    if valid[s, t]:
                        z = layer_input[s, t] @ cell.w_x + cell.b_x + h @ cell.w_h + cell.b_h
                        if clip is not None:
                            z = np.minimum(np.maximum(z, -clip), clip)
                        h = f(z)
                        out[s, t] = h
                        started = True
                    elif p.padded_output == "zeros":
                        out[s, t] = zero
                    elif p.padded_output == "carry_state":
                        out[s, t] = h
                    else:  # carry_output: the last output, zeros before the first one
                        out[s, t] = h if started else zero
                final[s] = h
            if li == cfg.num_layers - 1 and p.output_order == "processing":
                out = out[:, ::-1]
            directions.append(out)
            h_n.append(final)
        if R == 1:
            layer_input = directions[0]
        else:
            layer_input = _merge(directions[0], directions[1], cfg.merge_modes[li])  # type: ignore[assignment]

    y = None
    if p.params.readout is not None:
        g: Activation = cfg.output_activation  # type: ignore[assignment]
        ro = p.params.readout
        y = np.zeros((n_samples, n_steps, ro.w.shape[1]), p.x.dtype)
        for s in range(n_samples):
            for t in range(n_steps):
                y[s, t] = g(layer_input[s, t] @ ro.w + ro.b)
    return ForwardResult(layer_input, _stack_h_n(h_n, cfg), y)


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
) -> ForwardResult:
    r"""Run the Elman network on a batch: the oracle.

    .. math::

        h_t = f(\mathrm{clip}(x_t W_x + b_x + h_{t-1} W_h + b_h)), \qquad
        y_t = g(o_t W_y + b_y)

    Args:
        params: the network (:class:`~rnn_ref.RNNParams`).
        x: inputs, shape ``(N, T, D)``, batch-major, real numbers of any dtype.
        h0: initial states, shape ``(L*R, N, M)`` (index ``l*R + r``; it does not follow any
            batch-first flag), or a list of L*R arrays of shape ``(N, M_l)`` (required when the
            layers' hidden sizes differ). Default zeros.
        lengths: valid length of each sample, integers of shape ``(N,)`` in ``[0, T]``; steps
            ``t >= lengths[n]`` are padding. Exclusive with ``mask``.
        mask: booleans of shape ``(N, T)``, True where a step is valid; any pattern.
        compute_dtype: ``None`` computes in float64; a floating dtype computes in it.
        padded_output: overrides ``config.padded_output`` (``"zeros"``, ``"carry_output"``,
            ``"carry_state"``).
        output_order: overrides ``config.output_order`` (``"aligned"``, ``"processing"``).

    Returns:
        A :class:`ForwardResult` with ``outputs (N, T, F)``, ``h_n (L*R, N, M)`` and
        ``y (N, T, K)`` or ``None``, all in the compute dtype.

    Raises:
        TypeError, ValueError: a bad argument, named with what was given and what is allowed.
    """
    p = _prepare(params, x, h0, lengths, mask, compute_dtype, padded_output, output_order)
    cfg = p.params.config
    n_samples, n_steps, _ = p.x.shape
    R = cfg.num_directions
    invalid = None if p.valid is None else ~p.valid  # (N, T)

    layer_input: Any = p.x
    h_n: list[Array] = []
    for li, layer in enumerate(p.params.layers):
        m, merge = cfg.hidden_sizes[li], cfg.merge_modes[li]
        # concat: both directions write into their halves of one (N, T, R*M) buffer
        width = R * m if merge == "concat" else m
        buffers = [np.empty((n_samples, n_steps, width), p.x.dtype)
                   for _ in range(1 if merge == "concat" else R)]
        directions = []
        for r, cell in enumerate(layer):
            buf = buffers[0] if merge == "concat" else buffers[r]
            lo = r * m if merge == "concat" else 0
            out = buf[:, :, lo : lo + m]
            final = _run_direction(
                layer_input, cell, p.h0[li * R + r], cfg.activation_of(li, r), cfg.clips[li],
                _is_reverse(cfg, r), invalid, p.padded_output, buf, lo,
            )
            directions.append(out)
            h_n.append(final)
        if merge == "concat":
            layer_input = buffers[0]
        else:
            layer_input = _merge(directions[0], directions[1], merge)
        if li == cfg.num_layers - 1 and p.output_order == "processing":
            layer_input = np.ascontiguousarray(layer_input[:, ::-1])

    y = None
    if p.params.readout is not None:
        ro = p.params.readout
        y = layer_input @ ro.w
        y += ro.b
        cfg.output_activation.apply_(y, np.empty_like(y))  # type: ignore[union-attr]
    return ForwardResult(layer_input, _stack_h_n(h_n, cfg), y)


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

    if invalid is not None and n_steps:
        # Padded steps hold the carried state now ("carry_state"); rewrite them for the others.
        if padded_output == "zeros":
            np.copyto(out, 0, where=invalid[:, :, None])
        elif padded_output == "carry_output":
            seen = ~invalid
            if reverse:
                started = np.logical_or.accumulate(seen[:, ::-1], axis=1)[:, ::-1]
            else:
                started = np.logical_or.accumulate(seen, axis=1)
            np.copyto(out, 0, where=~started[:, :, None])
    return final
