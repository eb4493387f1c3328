"""Activations of the Elman cell, with every parameter explicit.

The set is the ONNX ``RNN`` set (``onnx/docs/Operators.md``, section "RNN", the list of
activation functions), which contains Keras' and torch's:

=====================  ==========================================  ===================
name                   f(z)                                        parameters
=====================  ==========================================  ===================
``tanh``               tanh(z)                                     none
``relu``               max(0, z)                                   none
``sigmoid``            1 / (1 + exp(-z))                           none
``linear``             z                                           none
``affine``             alpha * z + beta                            alpha, beta
``leaky_relu``         z if z >= 0 else alpha * z                  alpha
``thresholded_relu``   z if z > alpha else 0                       alpha
``scaled_tanh``        alpha * tanh(beta * z)                      alpha, beta
``hard_sigmoid``       max(0, min(1, alpha * z + beta))            alpha, beta
``elu``                z if z >= 0 else alpha * (exp(z) - 1)       alpha
``softsign``           z / (1 + abs(z))                            none
``softplus``           log(1 + exp(z))                             none
=====================  ==========================================  ===================

A parameterised activation never gets an implied default: ONNX, Keras and onnxruntime do not
agree on them (Keras 3's ``hard_sigmoid`` is ``relu6(z + 3) / 6``, that is ``alpha = 1/6,
beta = 0.5``; ONNX's documented default is ``alpha = 0.2, beta = 0.5``), so
``Activation("hard_sigmoid")`` raises and ``Activation("hard_sigmoid", alpha=0.2, beta=0.5)``
is the way to say it.

Each activation has two implementations that must agree: :meth:`Activation.__call__`, the
formula as written above (used by the clear reference loop), and :meth:`Activation.apply_`,
which overwrites its argument using one scratch buffer and allocates nothing (used by the fast
path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

__all__ = ["ACTIVATIONS", "Activation", "ActivationLike", "as_activation"]

#: Activation names and the parameters each one requires, in order.
ACTIVATIONS: Mapping[str, tuple[str, ...]] = {
    "tanh": (),
    "relu": (),
    "sigmoid": (),
    "linear": (),
    "affine": ("alpha", "beta"),
    "leaky_relu": ("alpha",),
    "thresholded_relu": ("alpha",),
    "scaled_tanh": ("alpha", "beta"),
    "hard_sigmoid": ("alpha", "beta"),
    "elu": ("alpha",),
    "softsign": (),
    "softplus": (),
}


@dataclass(frozen=True)
class Activation:
    """One activation function with its parameters.

    Args:
        name: one of :data:`ACTIVATIONS` (``"tanh"``, ``"relu"``, ``"sigmoid"``, ``"linear"``,
            ``"affine"``, ``"leaky_relu"``, ``"thresholded_relu"``, ``"scaled_tanh"``,
            ``"hard_sigmoid"``, ``"elu"``, ``"softsign"``, ``"softplus"``).
        alpha: the first parameter, required exactly when the activation has one.
        beta: the second parameter, required exactly when the activation has two.

    Raises:
        ValueError: unknown name, a missing parameter, a parameter the activation does not
            take, or a parameter that is not a finite number.
    """

    name: str
    alpha: float | None = None
    beta: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name not in ACTIVATIONS:
            raise ValueError(
                f"activation: unknown name {self.name!r}; allowed: {', '.join(ACTIVATIONS)}"
            )
        wanted = ACTIVATIONS[self.name]
        for pname in ("alpha", "beta"):
            value = getattr(self, pname)
            if pname in wanted:
                if value is None:
                    raise ValueError(
                        f"activation {self.name!r} needs an explicit {pname} "
                        f"(parameters: {', '.join(wanted)}); frameworks disagree on defaults, "
                        f"so none is implied"
                    )
                if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
                    raise ValueError(
                        f"activation {self.name!r}: {pname} must be a number, got {value!r}"
                    )
                if not np.isfinite(value):
                    raise ValueError(
                        f"activation {self.name!r}: {pname} must be finite, got {value!r}"
                    )
                object.__setattr__(self, pname, float(value))
            elif value is not None:
                takes = ", ".join(wanted) if wanted else "no parameters"
                raise ValueError(
                    f"activation {self.name!r} takes {takes}; got {pname}={value!r}"
                )

    # -- the formula, as in the table above (clear loop) ---------------------------------
    def __call__(self, z: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
        """Return f(z) as a new array of z's shape and dtype."""
        z = np.asarray(z)
        a = z.dtype.type(self.alpha if self.alpha is not None else np.nan)
        b = z.dtype.type(self.beta if self.beta is not None else np.nan)
        one = z.dtype.type(1)
        name = self.name
        with np.errstate(over="ignore"):
            if name == "tanh":
                return np.tanh(z)
            if name == "relu":
                return np.maximum(z, z.dtype.type(0))
            if name == "sigmoid":
                return one / (one + np.exp(-z))
            if name == "linear":
                return z.copy()
            if name == "affine":
                return a * z + b
            if name == "leaky_relu":
                return np.where(z >= 0, z, a * z)
            if name == "thresholded_relu":
                return np.where(z > a, z, z.dtype.type(0))
            if name == "scaled_tanh":
                return a * np.tanh(b * z)
            if name == "hard_sigmoid":
                return np.maximum(z.dtype.type(0), np.minimum(one, a * z + b))
            if name == "elu":
                return np.where(z >= 0, z, a * np.expm1(np.minimum(z, 0)))
            if name == "softsign":
                return z / (one + np.abs(z))
            # softplus, written so that it does not overflow: max(z, 0) + log1p(exp(-|z|))
            return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))

    def derivative(self, z: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
        """f'(z), elementwise (at a kink, the one-sided derivative of the branch that holds).

        ===================  ==========================================
        tanh                 1 - tanh(z)^2
        relu                 1 if z > 0 else 0
        sigmoid              s (1 - s), s = sigmoid(z)
        linear               1
        affine               alpha
        leaky_relu           1 if z >= 0 else alpha
        thresholded_relu     1 if z > alpha else 0
        scaled_tanh          alpha beta (1 - tanh(beta z)^2)
        hard_sigmoid         alpha if 0 < alpha z + beta < 1 else 0
        elu                  1 if z >= 0 else alpha exp(z)
        softsign             1 / (1 + |z|)^2
        softplus             sigmoid(z)
        ===================  ==========================================
        """
        z = np.asarray(z)
        one, zero = z.dtype.type(1), z.dtype.type(0)
        a = z.dtype.type(self.alpha if self.alpha is not None else np.nan)
        b = z.dtype.type(self.beta if self.beta is not None else np.nan)
        name = self.name
        with np.errstate(over="ignore"):
            if name == "tanh":
                return one - np.tanh(z) ** 2
            if name == "relu":
                return np.where(z > 0, one, zero)
            if name in ("sigmoid", "softplus"):
                s = one / (one + np.exp(-z))
                return s * (one - s) if name == "sigmoid" else s
            if name == "linear":
                return np.ones_like(z)
            if name == "affine":
                return np.full_like(z, a)
            if name == "leaky_relu":
                return np.where(z >= 0, one, a)
            if name == "thresholded_relu":
                return np.where(z > a, one, zero)
            if name == "scaled_tanh":
                return a * b * (one - np.tanh(b * z) ** 2)
            if name == "hard_sigmoid":
                u = a * z + b
                return np.where((u > 0) & (u < 1), a, zero)
            if name == "elu":
                return np.where(z >= 0, one, a * np.exp(np.minimum(z, 0)))
            return one / (one + np.abs(z)) ** 2  # softsign

    # -- in place (fast path) ---------------------------------------------------------------
    def apply_(self, z: npt.NDArray[np.floating], work: npt.NDArray[np.floating],
               work2: npt.NDArray[np.floating] | None = None) -> None:
        """Overwrite ``z`` with f(z), using ``work`` (and ``work2``) of z's shape as scratch.

        Pass C-contiguous arrays: NumPy 2.4.6's in-place ``np.negative`` gives wrong values
        on some strided float64 views. With ``work2``, a float64 tanh is computed as
        ``sign(z) * -t / (2 + t)`` with ``t = expm1(-2|z|)``: at most 3 ulp from ``np.tanh``
        on a dense grid of [-20, 20], and 1.7 times faster here (NumPy's float64 tanh is not
        vectorised on this CPU).
        """
        # a and b are present whenever the activation uses them (validated)
        _IN_PLACE[self.name](z, work, work2, cast(float, self.alpha), cast(float, self.beta))

    # -- serialisation --------------------------------------------------------------------
    def to_json(self) -> str | dict[str, Any]:
        """The name alone when there are no parameters, else ``{"name", "alpha"[, "beta"]}``."""
        if not ACTIVATIONS[self.name]:
            return self.name
        out: dict[str, Any] = {"name": self.name, "alpha": self.alpha}
        if self.beta is not None:
            out["beta"] = self.beta
        return out

    def __repr__(self) -> str:
        params = "".join(f", {p}={getattr(self, p)!r}" for p in ACTIVATIONS[self.name])
        return f"Activation({self.name!r}{params})"

    def __str__(self) -> str:
        params = [f"{p}={getattr(self, p)!r}" for p in ACTIVATIONS[self.name]]
        return f"{self.name}({', '.join(params)})" if params else self.name


# -- the in-place forms behind Activation.apply_ ------------------------------------------
# Each overwrites z with f(z) using work (and work2, which may be None) of z's shape as scratch,
# and allocates nothing; a and b are the activation's alpha and beta where it has them.
_Array = npt.NDArray[np.floating]


def _tanh_(z: _Array, work: _Array, work2: _Array | None, a: float, b: float) -> None:
    """tanh on ``z`` (any shape); a float64 ``z`` with ``work2`` takes the expm1 form of
    :meth:`Activation.apply_`."""
    if work2 is not None and z.dtype == np.float64:
        np.abs(z, out=work)
        np.multiply(work, -2.0, out=work)
        np.expm1(work, out=work)  # t, in (-1, 0]
        np.add(work, 2.0, out=work2)
        np.divide(work, work2, out=work)
        np.negative(work, out=work)  # tanh(|z|)
        np.copysign(work, z, out=z)
    else:
        np.tanh(z, out=z)


def _relu_(z: _Array, work: _Array, work2: _Array | None, a: float, b: float) -> None:
    """max(0, z) on ``z`` (any shape)."""
    np.maximum(z, 0, out=z)


def _sigmoid_(z: _Array, work: _Array, work2: _Array | None, a: float, b: float) -> None:
    """1 / (1 + exp(-z)) on ``z`` (any shape)."""
    with np.errstate(over="ignore"):
        np.negative(z, out=z)
        np.exp(z, out=z)
    z += 1
    np.reciprocal(z, out=z)


def _linear_(z: _Array, work: _Array, work2: _Array | None, a: float, b: float) -> None:
    """z itself: nothing to do."""


def _affine_(z: _Array, work: _Array, work2: _Array | None, a: float, b: float) -> None:
    """alpha * z + beta on ``z`` (any shape)."""
    z *= a
    z += b


def _leaky_relu_(z: _Array, work: _Array, work2: _Array | None, a: float, b: float) -> None:
    """z if z >= 0 else alpha * z on ``z``, ``work`` of its shape."""
    np.minimum(z, 0, out=work)
    work *= a
    np.maximum(z, 0, out=z)
    z += work


def _thresholded_relu_(z: _Array, work: _Array, work2: _Array | None, a: float,
                       b: float) -> None:
    """z if z > alpha else 0 on ``z``, ``work`` of its shape."""
    np.greater(z, a, out=work)
    z *= work
    # 0 * -inf would be nan where the formula gives 0
    np.nan_to_num(z, copy=False, nan=0.0, posinf=np.inf, neginf=-np.inf)


def _scaled_tanh_(z: _Array, work: _Array, work2: _Array | None, a: float, b: float) -> None:
    """alpha * tanh(beta * z) on ``z`` (any shape)."""
    z *= b
    np.tanh(z, out=z)
    z *= a


def _hard_sigmoid_(z: _Array, work: _Array, work2: _Array | None, a: float, b: float) -> None:
    """max(0, min(1, alpha * z + beta)) on ``z`` (any shape)."""
    z *= a
    z += b
    np.clip(z, 0, 1, out=z)


def _elu_(z: _Array, work: _Array, work2: _Array | None, a: float, b: float) -> None:
    """z if z >= 0 else alpha * (exp(z) - 1) on ``z``, ``work`` of its shape."""
    np.minimum(z, 0, out=work)
    np.expm1(work, out=work)
    work *= a
    np.maximum(z, 0, out=z)
    z += work


def _softsign_(z: _Array, work: _Array, work2: _Array | None, a: float, b: float) -> None:
    """z / (1 + abs(z)) on ``z``, ``work`` of its shape."""
    np.abs(z, out=work)
    work += 1
    z /= work


def _softplus_(z: _Array, work: _Array, work2: _Array | None, a: float, b: float) -> None:
    """max(z, 0) + log1p(exp(-|z|)), which does not overflow, on ``z``, ``work`` of its
    shape."""
    np.abs(z, out=work)
    np.negative(work, out=work)
    np.exp(work, out=work)
    np.log1p(work, out=work)
    np.maximum(z, 0, out=z)
    z += work


#: Activation name -> its in-place form; the keys are those of :data:`ACTIVATIONS`.
_IN_PLACE: Mapping[str, Callable[[_Array, _Array, _Array | None, float, float], None]] = {
    "tanh": _tanh_,
    "relu": _relu_,
    "sigmoid": _sigmoid_,
    "linear": _linear_,
    "affine": _affine_,
    "leaky_relu": _leaky_relu_,
    "thresholded_relu": _thresholded_relu_,
    "scaled_tanh": _scaled_tanh_,
    "hard_sigmoid": _hard_sigmoid_,
    "elu": _elu_,
    "softsign": _softsign_,
    "softplus": _softplus_,
}


ActivationLike = str | Activation | Mapping[str, Any]


def as_activation(spec: ActivationLike, *, where: str = "activation") -> Activation:
    """Turn a name, an :class:`Activation` or a ``{"name", "alpha", "beta"}`` mapping into one.

    Raises:
        ValueError: unknown name or wrong parameters (see :class:`Activation`).
        TypeError: anything else; ``where`` names the argument in the message.
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        return Activation(spec)
    if isinstance(spec, Mapping):
        extra = set(spec) - {"name", "alpha", "beta"}
        if "name" not in spec or extra:
            raise ValueError(
                f"{where}: a mapping needs 'name' and at most 'alpha', 'beta'; got keys "
                f"{sorted(spec)}"
            )
        return Activation(spec["name"], spec.get("alpha"), spec.get("beta"))
    raise TypeError(
        f"{where}: expected an activation name, an rnn_ref.Activation or a mapping, "
        f"got {type(spec).__name__} {spec!r}"
    )
