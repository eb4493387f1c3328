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

**The gated cells.** Each of a GRU's or an LSTM's activations rounds the same way (the gates'
f, the candidate's g, an LSTM's h; ``k = D_l + P_l``, P_l the state's width, one more for a
gate with peepholes). The elementwise products and sums that combine them into the state
(``h_t = n + z (h - n)``, ``c_t = f_t c + i g_t``, ``o h(c_t)``, an LSTM's projection) are no
objects of the config, so their roundings ride on the outputs of the activations they take:

* a gate's output rounding stands for three (``u sqrt(3)``): its own and those of the product
  and the sum it enters in the state update (z: ``z (h - n)`` and the sum, whose sizes its own
  ``dz (h - n)`` has when ``|h - n| ~ |h_t|``; f: ``f_t c`` and ``f_t c + i g_t``); i and o
  share f's activation and are counted alike (for i, whose product ``i g_t`` the candidate's
  rounding also covers, an overestimate);
* h's input rounding is one (``k = 1``: the sum that made ``c_t``), its output rounding stands
  for itself and, with a projection, for the projection's inner product of M terms
  (``u sqrt(1 + M)``: relative noise on the M terms of ``o h(c_t) @ w_proj`` gives the
  projection the inner-product rounding ``u sqrt(M) |h_t|`` the model gives every product);
* a gate whose exact value lies within ``2u`` of ``+-1`` (a saturated forget or update gate,
  the memory of the cell) rounds the same way at every step: the dtype cannot represent the
  distance to 1, so the rounding does not average out but accumulates along the memory like
  ``T`` rather than ``sqrt(T)``. There the gate also takes ``u beta``, with ``beta`` one
  standard normal draw per run and element, the same at every step (measured on a saturated
  LSTM, ``f ~ 1 - e^-17``, at T = 1000: the float32 oracle's largest |error| / sigma of
  ``c_n`` went from 10.5 to 0.7).

An LSTM with ``input_forget`` computes its forget gate ``1 - i`` outside any activation: that
rounding is modelled through i's alone, so the estimate is low where ``i << 1`` and ``c`` is
large (measured, float32 oracle at T = 200: largest |error| / sigma 1.8 with random weights,
2.7 with ``i ~ e^-3``, 5 for a cell that never writes, ``i ~ e^-17 < u``, whose ``1 - i``
rounds to 1 at every step).

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
    out: float = 1.0  # the output's rounding, in units of u (see _perturbed)
    # a gate's: its rounding next to +-1 is the same at every step, one draw per run (and
    # shape) held in ``drift`` (see _perturbed)
    saturates: bool = False
    drift: dict[tuple[int, ...], npt.NDArray[np.float64]] = field(default_factory=dict)

    def apply_(self, z: npt.NDArray[np.floating], work: npt.NDArray[np.floating],
               work2: npt.NDArray[np.floating] | None = None) -> None:
        # the size of the terms that made z: |z|, or where they cancel (z near 0), the size z
        # has across the batch and the units, which random-sign terms share
        np.square(z, out=work)
        scale = np.sqrt(work + work.mean())
        z += self.u * np.sqrt(self.k) * scale * self.rng.standard_normal(z.shape)
        super().apply_(z, work, work2)
        z *= 1 + self.u * self.out * self.rng.standard_normal(z.shape)

    def __call__(self, z: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
        """The same rounding as :meth:`apply_`, on a new array (what the gated cells call)."""
        z = np.asarray(z)
        square = z * z
        scale = np.sqrt(square + (square.mean() if square.size else 0.0))
        z = z + self.u * np.sqrt(self.k) * scale * self.rng.standard_normal(z.shape)
        y = super().__call__(z)
        rounded = y * (1 + self.u * self.out * self.rng.standard_normal(y.shape))
        if not self.saturates:
            return rounded
        gap = 1 - np.abs(y)
        near = (gap > 0) & (gap <= 2 * self.u)
        if not near.any():
            return rounded
        if y.shape not in self.drift:
            self.drift[y.shape] = self.rng.standard_normal(y.shape)
        return rounded + self.u * self.drift[y.shape] * near


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


#: A gate's output rounding in units of u: its own and the product and sum it enters.
GATE_OUT = float(np.sqrt(3))


def _rounding(act: Activation, u: float, k: int, rng: np.random.Generator,
              out: float = 1.0, saturates: bool = False) -> _Rounding:
    return _Rounding(act.name, act.alpha, act.beta, u=u, k=k, rng=rng, out=out,
                     saturates=saturates)


def _perturbed(params: RNNParams, u: float, rng: np.random.Generator) -> RNNParams:
    """``params`` under a config whose every activation rounds (:class:`_Rounding`, the
    module docstring): an Elman cell's f; a GRU's or an LSTM's gates' f (output ``u
    sqrt(3)``, saturation drift) and candidate's g (``k = D_l + P_l``, one more for the gates
    with peepholes), an LSTM's h (``k = 1``, output ``u sqrt(1 + M)`` with a projection); the
    head's layers."""
    cfg = params.config
    acts: list[list[Activation]] = []
    gates: list[list[Activation] | None] = []
    states: list[list[Activation] | None] = []
    for li in range(cfg.num_layers):
        spec = cfg.cell_of(li)
        k = cfg.layer_input_size(li) + cfg.output_sizes[li]
        own = [cfg.activations_of(li, r) for r in range(cfg.num_directions_of(li))]
        if spec.kind == "elman":
            acts.append([_rounding(a[0], u, k, rng) for a in own])
            gates.append(None)
            states.append(None)
            continue
        acts.append([_rounding(a[1], u, k, rng) for a in own])
        gates.append([_rounding(a[0], u, k + spec.peepholes, rng, GATE_OUT, True) for a in own])
        proj = 0 if spec.proj_size is None else cfg.hidden_sizes[li]
        states.append([_rounding(a[2], u, 1, rng, np.sqrt(1 + proj)) for a in own]
                      if spec.kind == "lstm" else None)
    head = []
    for j, dense in enumerate(cfg.head):
        k, g = cfg.head_input_size(j), dense.activation
        wrapped = (_rounding(g, u, k, rng) if isinstance(g, Activation)
                   else _RoundingSoftmax(g.name, u=u, k=k, rng=rng))
        head.append(Dense(dense.units, wrapped, dense.bias))
    changes: dict[str, Any] = {"activation": acts, "head": head}
    if not cfg.is_elman:
        changes["recurrent_activation"] = gates
    if cfg.num_cell_states:
        changes["cell_activation"] = states
    return params.replace(**changes)


def _fields(res: ForwardResult) -> tuple[Any, Any, Any, Any, Any]:
    """outputs, h_n, y, the selection (``None`` when it is the outputs themselves) and c_n."""
    selected = None if res.selected is res.outputs else res.selected
    return res.outputs, res.h_n, res.y, selected, res.c_n


def _leaves(res: ForwardResult) -> list[np.ndarray[Any, Any]]:
    """outputs (one or two arrays), h_n (one or S arrays), y (zero or one), the selection
    (zero, one or two), c_n (zero, one or C), flattened."""
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

    outputs, h_n, y, selected, c_n = (take(v) for v in _fields(like))
    return ForwardResult(outputs, h_n, y, outputs if selected is None else selected, c_n)


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
             lengths: Any = None, mask: Any = None, samples: int = 32, seed: int = 0,
             c0: Any = None) -> ErrorEstimate:
    """Estimate, per output element, the error of a correct computation in ``dtype``.

    Args:
        params, x, h0, lengths, mask, c0: as for :func:`rnn_ref.forward` (``x (N, T, D)``;
            ``c0`` only for a network with an LSTM layer).
        dtype: the precision of the computation to estimate (``"float32"``, ``"float16"``,
            ``"bfloat16"``, ``"float64"``).
        samples: perturbed runs (at least 2); the estimate's own relative spread is about
            ``1 / sqrt(2 * samples)``.
        seed: seeds the perturbations.

    Returns:
        :class:`ErrorEstimate`; ``sigma`` has the shapes of ``forward``'s results (``c_n``
        included).
    """
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 2:
        raise ValueError(f"samples must be an integer of at least 2, got {samples!r}")
    u = unit_roundoff(dtype)
    kwargs = {"h0": h0, "lengths": lengths, "mask": mask, "c0": c0}
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
