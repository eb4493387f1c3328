"""The oracle held to a higher authority: float64 against arbitrary precision (mpmath).

The oracle computes in float64, so it is not exact either. This module recomputes small
networks with :mod:`mpmath` at 60 significant digits, with the activations written from their
mathematical definitions (``mpmath.tanh``, ``exp``, ``log``; not the oracle's NumPy code), and
counts how many units in the last place (ULPs, ``numpy.spacing`` of the exact value rounded to
float64) the oracle's fast path is off at every output element.

``mpmath`` is a development dependency (it comes with torch's sympy, and the dev group pins it);
it is imported only when :func:`ulp_errors` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rnn_ref.activations import Activation
from rnn_ref.config import RNNConfig
from rnn_ref.params import init
from rnn_ref.reference import forward

__all__ = ["BINS", "histogram", "oracle_errors"]

#: the histogram's bins: 0, 1, 2, 3 ULPs and more
BINS = ("0", "1", "2", "3", ">3")


def _mp_activation(act: Activation, mp: Any) -> Callable[[Any], Any]:
    """f as the activation's definition (docs/spec.md section 2.3), in mpmath."""
    a = mp.mpf(act.alpha) if act.alpha is not None else None
    b = mp.mpf(act.beta) if act.beta is not None else None
    zero, one = mp.mpf(0), mp.mpf(1)
    table: dict[str, Callable[[Any], Any]] = {
        "tanh": mp.tanh,
        "relu": lambda z: max(z, zero),
        "sigmoid": lambda z: one / (one + mp.exp(-z)),
        "linear": lambda z: z,
        "affine": lambda z: a * z + b,
        "leaky_relu": lambda z: z if z >= 0 else a * z,
        "thresholded_relu": lambda z: z if z > a else zero,
        "scaled_tanh": lambda z: a * mp.tanh(b * z),
        "hard_sigmoid": lambda z: max(zero, min(one, a * z + b)),
        "elu": lambda z: z if z >= 0 else a * (mp.exp(z) - one),
        "softsign": lambda z: z / (one + abs(z)),
        "softplus": lambda z: mp.log(one + mp.exp(z)),
    }
    return table[act.name]


def oracle_errors(activation: Activation | str, *, n: int = 2, t: int = 6, d: int = 3,
                  m: int = 4, seed: int = 0
                  ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Errors of the float64 oracle's outputs ``(N, T, M)`` for a one-layer forward network of
    ``activation`` with seeded weights and inputs, against mpmath at 60 digits: in ULPs of each
    exact value, and in units of ``eps * max(1, |exact|)`` (the suite's ``eps_units``; outputs
    near zero, where the pre-activation's terms cancel, have few significant bits to lose and
    show many ULPs of their own but a fraction of an eps of the outputs' scale)."""
    import mpmath

    mp = mpmath.mp.clone() if hasattr(mpmath.mp, "clone") else mpmath.mp
    mp.dps = 60
    act = activation if isinstance(activation, Activation) else Activation(activation)
    params = init(RNNConfig(d, m, activation=act), seed=seed, dtype=np.float64)
    x = np.random.default_rng(seed + 1).standard_normal((n, t, d))
    got = np.asarray(forward(params, x).outputs)
    c, f = params.layers[0][0], _mp_activation(act, mp)
    w_x = [[mp.mpf(float(v)) for v in row] for row in c.w_x]
    w_h = [[mp.mpf(float(v)) for v in row] for row in c.w_h]
    bias = [mp.mpf(float(p)) + mp.mpf(float(q)) for p, q in zip(c.b_x, c.b_h, strict=True)]
    exact = np.empty_like(got)
    for i in range(n):
        h = [mp.mpf(0)] * m
        for step in range(t):
            xt = [mp.mpf(float(v)) for v in x[i, step]]
            h = [f(mp.fsum([xt[k] * w_x[k][j] for k in range(d)]
                           + [h[k] * w_h[k][j] for k in range(m)]) + bias[j])
                 for j in range(m)]
            exact[i, step] = [float(v) for v in h]  # float64 nearest to the exact value
    spacing = np.spacing(np.abs(exact))
    spacing = np.where(spacing == 0, np.finfo(np.float64).smallest_subnormal, spacing)
    err = np.abs(got - exact)
    return err / spacing, err / (np.finfo(np.float64).eps * np.maximum(1.0, np.abs(exact)))


def histogram(errors: np.ndarray[Any, Any]) -> dict[str, int]:
    """Counts of ``errors`` (in ULPs or eps units, rounded to the nearest whole unit) per bin
    of :data:`BINS`."""
    whole = np.rint(np.asarray(errors).ravel())
    counts = {str(k): int(np.sum(whole == k)) for k in range(4)}
    counts[">3"] = int(np.sum(whole > 3))
    return counts
