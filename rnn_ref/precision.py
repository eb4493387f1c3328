r"""How far a correct computation in a lower precision can be from the oracle, per element.

A backend computing in float32 rounds at every step, and the recurrence carries those roundings
forward: through a contracting network they fade, through an expanding (chaotic) one they grow
until no float32 computation can determine the outputs. A tolerance written as a formula in T
cannot know which; this module asks the network itself.

Method: Monte Carlo arithmetic (Parker, 1997; the stochastic rounding model of CESTAC). The
float64 oracle (:func:`rnn_ref.forward`, unchanged) is run ``samples`` more times with a random
rounding of the target precision injected at every step of every layer and direction, and the
spread of those runs around the unperturbed run is the estimate. The perturbation rides on the
activation, the one place per step where the oracle hands the pre-activation ``z`` to an object
of the config's: each step computes

.. math::

    \tilde z = z + u \sqrt{k}\,\sqrt{z^2 + \overline{z^2}}\;\xi_1, \qquad
    \tilde h = f(\tilde z)\,(1 + u\,\xi_2),

with ``u = eps / 2`` the unit round-off of the target dtype, ``k = D_l + M_l`` the length of
the inner products that made ``z`` (their rounding error grows like a random walk, ``sqrt(k)``,
relative to the size of those terms, taken as ``sqrt(z^2 + mean(z^2))`` over the step's batch
and units so that a ``z`` whose terms cancel still gets their rounding), and ``xi``
independent standard normal draws per element. Each head layer is perturbed the same way
(``k = F_j``, its input width; a softmax rounds its input and output alike). The estimate of
element e is the root mean square of the ``samples`` perturbed results about the unperturbed
one, ``sigma_e``.

Assumptions: roundings are independent and unbiased (true of round-to-nearest away from
pathological data, and of the BLAS and libm implementations measured here within a factor of
about 2); ``|z|`` is the size of the terms that made it (random-sign terms; where they cancel,
the estimate is low at that element and step, which the verdict's factor absorbs). The inputs
and weights are not perturbed: the suite hands the backend and the oracle the same values.

Cost: ``samples + 1`` float64 forward passes (default 32 + 1; with 8 the estimate's own noise
doubled the largest |error| / sigma seen), and no allocation beyond one result per run.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from rnn_ref.activations import Activation
from rnn_ref.network import Dense, Softmax
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult, forward

__all__ = ["ErrorEstimate", "eps_of", "estimate", "unit_roundoff"]

_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


def eps_of(dtype: Any) -> float:
    """Machine epsilon of a floating dtype, by name (so bfloat16 needs no extra package)."""
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or np.dtype(
        dtype).name
    if name not in _EPS:
        raise ValueError(f"dtype must be one of {sorted(_EPS)}, got {name!r}")
    return _EPS[name]


def unit_roundoff(dtype: Any) -> float:
    """``eps / 2`` of a floating dtype, by name (``"bfloat16"`` needs no extra package)."""
    return eps_of(dtype) / 2


@dataclass(frozen=True, eq=False)
class _Rounding(Activation):
    """An activation that also rounds its input and output at unit round-off ``u`` (see the
    module docstring); ``apply_`` is what the oracle's fast path calls at every step."""

    u: float = 0.0
    k: int = 1
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def apply_(self, z: npt.NDArray[np.floating], work: npt.NDArray[np.floating],
               work2: npt.NDArray[np.floating] | None = None) -> None:
        # the size of the terms that made z: |z|, or where they cancel (z near 0), the size z
        # has across the batch and the units, which random-sign terms share
        np.square(z, out=work)
        scale = np.sqrt(work + work.mean())
        z += self.u * np.sqrt(self.k) * scale * self.rng.standard_normal(z.shape)
        super().apply_(z, work, work2)
        z *= 1 + self.u * self.rng.standard_normal(z.shape)


@dataclass(frozen=True, eq=False)
class _RoundingSoftmax(Softmax):
    """A softmax whose input and output are rounded as :class:`_Rounding` rounds a cell's."""

    u: float = 0.0
    k: int = 1
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def __call__(self, z: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
        scale = np.sqrt(z * z + (z * z).mean())
        z = z + self.u * np.sqrt(self.k) * scale * self.rng.standard_normal(z.shape)
        y = super().__call__(z)
        return y * (1 + self.u * self.rng.standard_normal(y.shape))


def _rounding(act: Activation, u: float, k: int, rng: np.random.Generator) -> _Rounding:
    return _Rounding(act.name, act.alpha, act.beta, u=u, k=k, rng=rng)


def _perturbed(params: RNNParams, u: float, rng: np.random.Generator) -> RNNParams:
    cfg = params.config
    acts = []
    for li, layer in enumerate(cfg.activations):
        k = cfg.layer_input_size(li) + cfg.hidden_sizes[li]
        acts.append([_rounding(a, u, k, rng) for a in layer])
    head = []
    for j, dense in enumerate(cfg.head):
        k, g = cfg.head_input_size(j), dense.activation
        wrapped = (_rounding(g, u, k, rng) if isinstance(g, Activation)
                   else _RoundingSoftmax(g.name, u=u, k=k, rng=rng))
        head.append(Dense(dense.units, wrapped, dense.bias))
    return params.replace(activation=acts, head=head)


def _fields(res: ForwardResult) -> tuple[Any, Any, Any, Any]:
    """outputs, h_n, y and the selection (``None`` when it is the outputs themselves)."""
    selected = None if res.selected is res.outputs else res.selected
    return res.outputs, res.h_n, res.y, selected


def _leaves(res: ForwardResult) -> list[np.ndarray[Any, Any]]:
    """outputs (one or two arrays), h_n (one or S arrays), y (zero or one), the selection
    (zero, one or two), flattened."""
    out: list[np.ndarray[Any, Any]] = []
    for value in _fields(res):
        if value is not None:
            out += list(value) if isinstance(value, tuple) else [value]
    return out


def _unflatten(like: ForwardResult, leaves: list[np.ndarray[Any, Any]]) -> ForwardResult:
    it = iter(leaves)

    def take(value: Any) -> Any:
        if value is None:
            return None
        return tuple(next(it) for _ in value) if isinstance(value, tuple) else next(it)

    outputs, h_n, y, selected = (take(v) for v in _fields(like))
    return ForwardResult(outputs, h_n, y, outputs if selected is None else selected)


@dataclass(frozen=True)
class ErrorEstimate:
    """The spread of a correct computation in ``dtype`` about the float64 oracle.

    Attributes:
        dtype: the precision it is for.
        expected: the oracle's float64 result (:class:`~rnn_ref.ForwardResult`).
        sigma: a :class:`~rnn_ref.ForwardResult` of the same structure holding, per element,
            the root-mean-square deviation of the perturbed runs from ``expected``.
        samples: how many perturbed runs made it.
    """

    dtype: str
    expected: ForwardResult
    sigma: ForwardResult
    samples: int


def estimate(params: RNNParams, x: Any, *, dtype: Any = "float32", h0: Any = None,
             lengths: Any = None, mask: Any = None, samples: int = 32, seed: int = 0
             ) -> ErrorEstimate:
    """Estimate, per output element, the error of a correct computation in ``dtype``.

    Args:
        params, x, h0, lengths, mask: as for :func:`rnn_ref.forward` (``x (N, T, D)``).
        dtype: the precision of the computation to estimate (``"float32"``, ``"float16"``,
            ``"bfloat16"``, ``"float64"``).
        samples: perturbed runs (at least 2); the estimate's own relative spread is about
            ``1 / sqrt(2 * samples)``.
        seed: seeds the perturbations.

    Returns:
        :class:`ErrorEstimate`; ``sigma`` has the shapes of ``forward``'s results.
    """
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 2:
        raise ValueError(f"samples must be an integer of at least 2, got {samples!r}")
    u = unit_roundoff(dtype)
    kwargs = {"h0": h0, "lengths": lengths, "mask": mask}
    expected = forward(params, x, **kwargs)
    base = _leaves(expected)
    sums = [np.zeros(np.shape(a)) for a in base]
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        run = _leaves(forward(_perturbed(params, u, rng), x, **kwargs))
        for s, a, b in zip(sums, run, base, strict=True):
            s += (np.asarray(a, np.float64) - b) ** 2
    sigma = [np.sqrt(s / samples) for s in sums]
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    return ErrorEstimate(name, expected, _unflatten(expected, sigma), samples)
