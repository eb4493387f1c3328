"""The tolerance policy, in one place, and the error report every comparison produces.

The suite's verdicts on forward values (outputs, final states, readout) follow the network:
:func:`compare_estimated` holds each element e to ``F * sigma_e``, where ``sigma_e`` is the
spread of a correct computation in the backend's dtype estimated by the oracle itself
(:func:`rnn_ref.precision.estimate`, Monte Carlo arithmetic through the recurrence). ``F``
was chosen from measurements (the constant's comment gives them): above the largest
``|error| / sigma`` any correct built-in backend shows, low enough that a bug a few times the
real rounding error fails.

An element the dtype cannot determine at all (a chaotic or exploding network) is not
compared: one whose spread, or whose state vector's spread, reaches ``UNDETERMINED`` of that
state vector's size (RMS over the feature axis of the expected values), or whose value lies
beyond the dtype's range. The report counts them and says from
which step on (``undetermined_from``); the runner reports such a case as ill-conditioned.
Where the estimate is degenerate (``sigma_e = 0``: a value copied, not computed), the fixed
formula below is the floor. Every report carries ``ratio`` (the largest ``|error| /
sigma_e``) and the backend's effective precision in bits (:func:`effective_bits`).

The fixed formula (:func:`tolerance`) remains the policy of the gradient checks and of
``convert --verify``, and the floor above.

Derivation of the fixed formula. One cell step computes
``z = x_t @ w_x + b_x + h_{t-1} @ w_h + b_h``, a sum of ``D + M + 2`` terms; in a dtype
with unit round-off ``u = eps / 2`` its computed value is off by at most about
``sqrt(D + M) * u * |terms|`` in the usual random-walk model of rounding (the worst case
is linear in ``D + M``; BLAS blocking keeps real errors near the square root). The
activation adds a rounding of its own. The error of ``h_{t-1}`` enters step t multiplied by
``w_h`` and ``f'``: for a bounded, contractive activation (tanh, sigmoid, hard sigmoid, scaled
tanh, softsign; ``|f'| <= 1`` and outputs bounded) these propagated errors mostly cancel and add
up like a random walk, ``sqrt(T)``; for unbounded ones (relu, linear, affine, elu, softplus,
leaky and thresholded relu) they can add up linearly, ``T``, and scale with the size of the
values. Stacked layers multiply the steps by L. Hence, with ``s = T * L``::

    atol = rtol = C * eps(dtype) * g(s) * scale
    g(s) = sqrt(max(s, 1))  for bounded activations,  max(s, 1)  for unbounded ones
    scale = max(1, max |expected|)

``C = 32`` covers the ``sqrt(D + M)`` factor for the widths we test (up to 512) and a few
roundings per step; measured errors of every built-in backend sit at a few units of eps
(see the conformance reports), well inside it. A comparison passes when every element has
``|actual - expected| <= atol + rtol * |expected|`` (``numpy.isclose``).

Every comparison reports the max absolute error, the max relative error, the error in units of
the dtype's epsilon (``max |a - e| / (eps * max(1, |e|))``) and where the worst element sits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rnn_ref.activations import Activation, as_activation
from rnn_ref.precision import eps_of

__all__ = ["BOUNDED", "F", "UNDETERMINED", "ErrorReport", "Tolerance", "compare",
           "compare_estimated", "effective_bits", "eps_of", "network_activations", "tolerance"]

#: Activations whose outputs are bounded and whose slope is at most 1.
BOUNDED = frozenset({"tanh", "sigmoid", "hard_sigmoid", "scaled_tanh", "softsign"})

C = 32.0



def network_activations(config: Any) -> list[Activation]:
    """Every activation of a network (an :class:`~rnn_ref.RNNConfig`), for :func:`tolerance`:
    each direction's of each recurrent layer (a GRU's gates and candidate, an LSTM's gates,
    candidate and cell-state activation), then each head ``Dense``'s (a softmax is bounded
    and not an :class:`~rnn_ref.activations.Activation`: left out)."""
    acts = [act for li in range(config.num_layers) for r in range(config.num_directions_of(li))
            for act in config.activations_of(li, r)]
    return acts + [d.activation for d in config.head if isinstance(d.activation, Activation)]


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


def tolerance(
    dtype: Any,
    steps: int,
    activations: Iterable[Activation | str] = ("tanh",),
    *,
    layers: int = 1,
    scale: float = 1.0,
) -> Tolerance:
    """The tolerance for comparing a backend computing in ``dtype`` with the float64 oracle.

    Args:
        dtype: the dtype the backend computed in.
        steps: T, the sequence length.
        activations: every activation in the network (one unbounded one makes it unbounded).
        layers: L.
        scale: ``max |expected|``; values larger than 1 widen the absolute tolerance.
    """
    eps = eps_of(dtype)
    s = max(int(steps) * int(layers), 1)
    bounded = all(as_activation(a).name in BOUNDED for a in activations)
    g = np.sqrt(s) if bounded else float(s)
    tol = C * eps * g * max(1.0, float(scale))
    return Tolerance(rtol=C * eps * g, atol=tol)


@dataclass(frozen=True)
class ErrorReport:
    """The result of one comparison.

    Attributes:
        passed: shape, dtype and values all agree.
        problem: why it failed, in words (``""`` when it passed).
        max_abs: max ``|actual - expected|``.
        max_rel: max ``|actual - expected| / |expected|`` over elements with ``expected != 0``.
        eps_units: max ``|actual - expected| / (eps * max(1, |expected|))``.
        where: index of the worst element (for a batch-major ``(N, T, F)`` array reported as
            ``(t, n, m)``).
        rtol, atol: the tolerance applied.
    """

    passed: bool
    problem: str
    max_abs: float = 0.0
    max_rel: float = 0.0
    eps_units: float = 0.0
    where: tuple[int, ...] = ()
    rtol: float = 0.0
    atol: float = 0.0
    ratio: float | None = None
    undetermined: int = 0
    undetermined_from: int | None = None
    bits: float | None = None
    compared: int | None = None  # elements compared (None: all of them)

    def summary(self) -> str:
        if self.problem and not np.isfinite(self.max_abs):
            return self.problem
        loc = f" at {self.where}" if self.where else ""
        status = "ok" if self.passed else "FAIL"
        if self.ratio is not None:
            bound = f"error/estimate {self.ratio:.3g}, limit {F:g}"
            if self.bits is not None:
                bound += f", {self.bits:.1f} bits"
        else:
            bound = f"atol {self.atol:.3g}, rtol {self.rtol:.3g}"
        text = (f"{status}: max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}, "
                f"{self.eps_units:.3g} eps{loc} ({bound})")
        if self.undetermined:
            since = ("" if self.undetermined_from is None
                     else f" from step {self.undetermined_from} on")
            text += (f"; ill-conditioned: {self.undetermined} element(s) not determined in "
                     f"this dtype{since}, not compared")
        return f"{text}; {self.problem}" if self.problem else text


def compare(
    actual: Any,
    expected: npt.ArrayLike,
    tol: Tolerance,
    *,
    dtype: Any = None,
    time_axis: int | None = 1,
) -> ErrorReport:
    """Compare shape, then dtype (when ``dtype`` is given), then values.

    ``time_axis=1`` reports the worst element of a batch-major ``(N, T, F)`` array as
    ``(t, n, m)``; ``None`` reports the raw index.
    """
    exp = np.asarray(expected, dtype=np.float64)
    act_arr = np.asarray(actual)
    if act_arr.shape != exp.shape:
        return ErrorReport(False, f"shape {act_arr.shape}, expected {exp.shape}",
                           max_abs=np.inf, rtol=tol.rtol, atol=tol.atol)
    if dtype is not None and act_arr.dtype != np.dtype(dtype):
        return ErrorReport(False, f"dtype {act_arr.dtype}, expected {np.dtype(dtype)}",
                           max_abs=np.inf, rtol=tol.rtol, atol=tol.atol)
    act = act_arr.astype(np.float64)
    if exp.size == 0:
        return ErrorReport(True, "", rtol=tol.rtol, atol=tol.atol)
    diff = np.abs(act - exp)
    diff = np.where(np.isnan(act) & np.isnan(exp), 0.0, diff)  # both nan: agree
    diff = np.where(np.isnan(diff), np.inf, diff)
    flat = int(np.argmax(diff))
    where = tuple(int(i) for i in np.unravel_index(flat, exp.shape))
    if time_axis is not None and exp.ndim == 3:
        where = (where[1], where[0], where[2])
    nz = exp != 0
    max_rel = float(np.max(diff[nz] / np.abs(exp[nz]))) if nz.any() else 0.0
    eps = eps_of(act_arr.dtype.name if act_arr.dtype.kind == "f" else "float64")
    eps_units = float(np.max(diff / (eps * np.maximum(1.0, np.abs(exp)))))
    ok = bool(np.all(diff <= tol.atol + tol.rtol * np.abs(exp)))
    return ErrorReport(
        ok, "" if ok else "values differ beyond the tolerance", float(diff.max()), max_rel,
        eps_units, where, tol.rtol, tol.atol,
    )


#: The verdict's factor on the estimate. Measured with 32 samples: the largest
#: |error| / sigma_e of a correct float32 computation was at most 3.8 across every built-in
#: backend on the quick matrix (keras[tensorflow], on the chaotic case next to the steps it
#: cannot determine), 1.5 for the NumPy float32 path; with 8 samples it reached 7.1 (the
#: estimate's own noise), hence 32. The detection benchmark (benchmarks/bench_detection.py)
#: shows what this factor catches.
F = 10.0
#: An element whose sigma reaches this fraction of its array's RMS is not determined.
UNDETERMINED = 0.125
#: The typical RMS of |error| / sigma of a correct computation (the estimate is an upper
#: bound by about this factor), used to turn ratios into effective bits.
CALIBRATION = 0.3


def effective_bits(dtype: Any, rms_ratio: float) -> float:
    """The precision, in bits of significand below the leading one, that errors of
    ``rms_ratio`` times the estimate amount to: ``log2(1/eps)`` for a correct computation
    (23 for float32), fewer as the errors grow (about 10 for TF32, 7 for bfloat16)."""
    nominal = -np.log2(eps_of(dtype))
    return float(nominal - np.log2(max(1.0, rms_ratio / CALIBRATION)))


def compare_estimated(
    actual: Any,
    expected: npt.ArrayLike,
    sigma: npt.ArrayLike,
    floor: Tolerance,
    *,
    dtype: Any = None,
    time_axis: int | None = 1,
) -> ErrorReport:
    """Compare shape, then dtype (when given), then each element e within
    ``max(F * sigma_e, 2 eps |expected_e|)``; ``floor`` where ``sigma_e`` is 0. Elements the
    dtype cannot determine (``sigma_e >= UNDETERMINED * RMS(expected)``) are not compared.
    ``time_axis`` as for :func:`compare`."""
    exp = np.asarray(expected, dtype=np.float64)
    sig = np.asarray(sigma, dtype=np.float64)
    given = np.asarray(actual)
    base = compare(given, exp, floor, dtype=dtype, time_axis=time_axis)
    if given.shape != exp.shape or (dtype is not None and given.dtype != np.dtype(dtype)) \
            or exp.size == 0:
        return base  # the shape or the dtype is wrong, or there is nothing to compare
    if dtype is None:  # the precision the backend computed in is the result's own
        dtype = given.dtype if given.dtype.kind == "f" else np.dtype(np.float64)
    act = given.astype(np.float64)
    finite = np.isfinite(exp)
    beyond = np.abs(exp) > float(np.finfo(np.dtype(dtype)).max)
    undetermined = _undetermined(exp, sig, beyond, time_axis)
    degenerate = (sig == 0) & ~undetermined
    eps = eps_of(dtype)
    diff = np.abs(act - exp)
    diff = np.where(np.isnan(act) & np.isnan(exp), 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    limit = np.where(degenerate, floor.atol + floor.rtol * np.abs(exp),
                     np.maximum(F * sig, 2 * eps * np.abs(exp)))
    compared = ~undetermined
    # not determined is no licence to blow up: a result that is not finite where the exact
    # value is finite and within the dtype's range fails all the same
    blown = undetermined & finite & ~beyond & ~np.isfinite(act)
    bad = (compared & (diff > limit)) | blown
    estimated = compared & ~degenerate
    ratios = diff[estimated] / sig[estimated]
    ratio = float(ratios.max()) if ratios.size else 0.0
    rms = float(np.sqrt(np.mean(ratios**2))) if ratios.size else 0.0
    first = None  # the first step with an undetermined element (arrays with a time axis)
    if undetermined.any() and time_axis is not None and exp.ndim == 3:
        first = int(np.argwhere(undetermined)[:, 1].min())
    worst = np.where(compared, diff, 0.0)
    flat = int(np.argmax(worst))
    where = tuple(int(i) for i in np.unravel_index(flat, exp.shape))
    if time_axis is not None and exp.ndim == 3:
        where = (where[1], where[0], where[2])
    ok = not bad.any()
    nz = compared & (exp != 0)
    max_rel = float(np.max(diff[nz] / np.abs(exp[nz]))) if nz.any() else 0.0
    units = diff[compared] / (eps * np.maximum(1.0, np.abs(exp[compared])))
    problem = "" if ok else f"{int(bad.sum())} element(s) beyond {F:g} times the estimate"
    if blown.any():
        problem += f"; {int(blown.sum())} not finite although the exact value is"
    return ErrorReport(
        ok, problem,
        float(worst.max()), max_rel, float(units.max()) if units.size else 0.0, where,
        floor.rtol, floor.atol,
        ratio=ratio, undetermined=int(undetermined.sum()), undetermined_from=first,
        compared=int(compared.sum()),
        bits=effective_bits(dtype, rms) if ratios.size else None,
    )


def _undetermined(exp: npt.NDArray[np.float64], sig: npt.NDArray[np.float64],
                  beyond: npt.NDArray[np.bool_], time_axis: int | None
                  ) -> npt.NDArray[np.bool_]:
    """The elements the dtype cannot determine. A state vector (the feature axis) whose spread
    reaches ``UNDETERMINED`` of its own size has lost its trajectory: every element of it is
    undetermined, even one that happens to be saturated (small spread). So is a value beyond
    the dtype's range (``beyond``), and, since overflow spreads, every later step."""
    finite = np.isfinite(exp)
    with np.errstate(invalid="ignore", over="ignore"):
        row_scale = _rms_last(np.where(finite, exp, 0.0))
        row_sigma = _rms_last(np.where(np.isfinite(sig), sig, 0.0))
        lost = (np.maximum(sig, row_sigma) >= UNDETERMINED * row_scale) & (row_scale > 0)
    undetermined = ~finite | ~np.isfinite(sig) | lost | beyond
    if beyond.any():
        if time_axis is not None and exp.ndim == 3:
            undetermined[:, int(np.argwhere(beyond)[:, 1].min()):] = True
        else:
            undetermined[...] = True
    return undetermined


def _rms_last(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """RMS over the last axis (kept), computed without overflow; 0-d arrays as they are."""
    if a.ndim == 0:
        return np.abs(a)
    peak = np.max(np.abs(a), axis=-1, keepdims=True) if a.shape[-1] else np.zeros(
        a.shape[:-1] + (1,))
    safe = np.where(peak > 0, peak, 1.0)
    return peak * np.sqrt(np.mean((a / safe) ** 2, axis=-1, keepdims=True)) if a.shape[-1] \
        else peak
