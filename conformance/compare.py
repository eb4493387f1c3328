"""The tolerance policy, in one place, and the error report every comparison produces.

Derivation. One cell step computes ``z = x_t @ w_x + b_x + h_{t-1} @ w_h + b_h``, a sum of
``D + M + 2`` terms; in a dtype with unit round-off ``u = eps / 2`` its computed value is off by
at most about ``sqrt(D + M) * u * |terms|`` in the usual random-walk model of rounding (the
worst case is linear in ``D + M``; BLAS blocking keeps real errors near the square root). The
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

__all__ = ["BOUNDED", "ErrorReport", "Tolerance", "compare", "eps_of", "tolerance"]

#: Activations whose outputs are bounded and whose slope is at most 1.
BOUNDED = frozenset({"tanh", "sigmoid", "hard_sigmoid", "scaled_tanh", "softsign"})

C = 32.0

_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


def eps_of(dtype: Any) -> float:
    """Machine epsilon of a floating dtype, by name (so bfloat16 needs no extra package)."""
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or np.dtype(dtype).name
    if name not in _EPS:
        raise ValueError(f"dtype must be one of {sorted(_EPS)}, got {name!r}")
    return _EPS[name]


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

    def summary(self) -> str:
        if self.problem and not np.isfinite(self.max_abs):
            return self.problem
        loc = f" at {self.where}" if self.where else ""
        status = "ok" if self.passed else "FAIL"
        text = (
            f"{status}: max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}, "
            f"{self.eps_units:.3g} eps{loc} (atol {self.atol:.3g}, rtol {self.rtol:.3g})"
        )
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
