"""The error estimate and the verdicts built on it: sharp on well-conditioned networks, no false
alarm on chaotic ones, and the oracle itself against arbitrary precision."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import CellParams, RNNConfig, RNNParams
from rnn_ref.conformance.compare import F, compare, compare_estimated, effective_bits, tolerance
from rnn_ref.precision import estimate

N, D, M = 8, 32, 64  # the tolerance issue's grid


def _network(gain: float, t: int, act: str = "tanh", seed: int = 0
             ) -> tuple[RNNParams, np.ndarray]:
    cfg = RNNConfig(D, M, activation=act)
    p = rnn_ref.init(cfg, seed=seed, dtype=np.float32)
    rng = np.random.default_rng(seed + 1)
    c = p.layers[0][0]
    w_h = (gain * rng.standard_normal((M, M)) / np.sqrt(M)).astype(np.float32)
    x = rng.standard_normal((N, t, D)).astype(np.float32)
    return RNNParams(cfg, [[CellParams(c.w_x, w_h, c.b_x, c.b_h)]]), x


def _float32(params: RNNParams, x: np.ndarray) -> np.ndarray:
    return np.asarray(rnn_ref.forward(params, x, compute_dtype=np.float32).outputs)


def _shift(params: RNNParams, delta: float) -> RNNParams:
    c = params.layers[0][0]
    b_h = c.b_h.copy()
    b_h[0] += np.float32(delta)
    return RNNParams(params.config, [[CellParams(c.w_x, c.w_h, c.b_x, b_h)]])


def _verdicts(params: RNNParams, x: np.ndarray, t: int):  # type: ignore[no-untyped-def]
    est = estimate(params, x, dtype="float32")
    want, sigma = np.asarray(est.expected.outputs), np.asarray(est.sigma.outputs)
    old = tolerance("float32", t, ["tanh"], scale=float(np.abs(want).max()))

    def new(out: np.ndarray):  # type: ignore[no-untyped-def]
        return compare_estimated(out, want, sigma, old, dtype="float32")

    return want, new, lambda out: compare(out, want, old, time_axis=None)


@pytest.mark.parametrize("t", [10, 300])
def test_a_bug_eight_times_the_rounding_error_is_caught(t: int) -> None:
    params, x = _network(0.5, t)
    want, new, old = _verdicts(params, x, t)
    real = _float32(params, x)
    err = float(np.abs(real - want).max())
    correct = new(real)
    assert correct.passed and correct.ratio is not None and correct.ratio < F / 2
    assert correct.bits is not None and correct.bits > 20
    bug = _float32(_shift(params, 8 * err), x)
    assert not new(bug).passed, new(bug).summary()
    assert old(bug).passed  # what the formula in T let through


def test_a_chaotic_network_is_ill_conditioned_not_failed() -> None:
    params, x = _network(2.0, 300)
    want, new, old = _verdicts(params, x, 300)
    real = _float32(params, x)
    report = new(real)
    assert report.passed, report.summary()
    assert report.undetermined > 0 and report.undetermined_from is not None
    assert 0 < report.undetermined_from < 300
    assert "ill-conditioned" in report.summary()
    assert not old(real).passed  # the formula failed a correct computation
    assert not new(_float32(_shift(params, 1e-4), x)).passed  # early steps still count
    blown = real.copy()
    blown[0, -1, 0] = np.nan  # a step the dtype cannot determine, but not a licence to blow up
    report = new(blown)
    assert not report.passed and "not finite although the exact value is" in report.problem


@pytest.mark.parametrize("t", [10, 100, 1000])
def test_tf32_sized_errors_are_caught_at_every_length(t: int) -> None:
    params, x = _network(0.9, t)
    want, new, _ = _verdicts(params, x, t)
    noise = np.random.default_rng(2).standard_normal(want.shape) * 5e-4
    report = new((_float32(params, x) + noise).astype(np.float32))
    assert not report.passed
    assert report.bits is not None and report.bits < 14


def test_the_estimate_has_the_structure_of_forward() -> None:
    cfg = RNNConfig(4, (5, 3), direction="bidirectional", merge_mode=("concat", None))
    p = rnn_ref.init(cfg, seed=3, dtype=np.float32)
    x = np.random.default_rng(4).standard_normal((2, 6, 4)).astype(np.float32)
    est = estimate(p, x, dtype="float32", lengths=np.array([6, 2]))
    for got, want in ((est.sigma.outputs, est.expected.outputs),
                      (est.sigma.h_n, est.expected.h_n)):
        assert isinstance(got, tuple) and len(got) == len(want)
        for s, w in zip(got, want, strict=True):
            assert s.shape == w.shape and np.all(s >= 0)
    assert np.all(est.sigma.outputs[0][1, 2:] == 0)  # padded steps are copied zeros
    assert est.sigma.outputs[0][0].max() > 0
    readout = rnn_ref.init(RNNConfig(4, 5, output_size=2), seed=5)
    est = estimate(readout, x, dtype="bfloat16")
    assert est.sigma.y.shape == (2, 6, 2) and est.sigma.y.max() > 1e-4  # bf16 is coarse
    with pytest.raises(ValueError, match="samples must be an integer of at least 2, got 1"):
        estimate(p, x, samples=1)
    assert estimate(p, x, samples=np.int64(2)).samples == 2
    with pytest.raises(ValueError, match="dtype must be one of"):
        estimate(p, x, dtype="int8")


def test_effective_bits() -> None:
    assert effective_bits("float32", 0.3) == 23
    assert 9 < effective_bits("float32", 0.3 * 2**13) < 11
    assert effective_bits("float64", 0.1) == 52


def test_the_oracle_within_two_eps_of_arbitrary_precision() -> None:
    """float64 oracle against mpmath at 60 digits, every activation: within 2 eps of the
    outputs' scale (measured: at most 1.81, scaled tanh); most elements within 1 ULP."""
    need("mpmath")
    from rnn_ref.conformance.accuracy import histogram, oracle_errors
    from rnn_ref.conformance.cases import ACTIVATION_SET

    for act in ACTIVATION_SET.values():
        ulps, units = oracle_errors(act, n=2, t=6, d=3, m=4, seed=0)
        assert units.max() <= 2.0, (act, units.max())
        counts = histogram(ulps)
        assert counts["0"] + counts["1"] >= 0.7 * ulps.size, (act, counts)
