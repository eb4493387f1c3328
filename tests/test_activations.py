"""Activations: the formula against hand values, in-place against formula, explicit params."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import ACTIVATION_STRATEGY

from rnn_ref import ACTIVATIONS, Activation

HAND = [  # (activation, z, f(z)) worked out by hand
    (Activation("tanh"), 0.5, math.tanh(0.5)),
    (Activation("relu"), -2.0, 0.0),
    (Activation("relu"), 3.0, 3.0),
    (Activation("sigmoid"), 1.0, 1 / (1 + math.exp(-1.0))),
    (Activation("linear"), -7.5, -7.5),
    (Activation("affine", alpha=2.0, beta=-1.0), 3.0, 5.0),
    (Activation("leaky_relu", alpha=0.1), -3.0, -0.3),
    (Activation("leaky_relu", alpha=0.1), 3.0, 3.0),
    (Activation("thresholded_relu", alpha=1.0), 0.9, 0.0),
    (Activation("thresholded_relu", alpha=1.0), 1.5, 1.5),
    (Activation("scaled_tanh", alpha=2.0, beta=0.5), 1.0, 2.0 * math.tanh(0.5)),
    (Activation("hard_sigmoid", alpha=0.2, beta=0.5), 1.0, 0.7),
    (Activation("hard_sigmoid", alpha=0.2, beta=0.5), 10.0, 1.0),
    (Activation("hard_sigmoid", alpha=1 / 6, beta=0.5), -4.0, 0.0),  # Keras 3
    (Activation("elu", alpha=1.5), -1.0, 1.5 * (math.exp(-1.0) - 1)),
    (Activation("elu", alpha=1.5), 2.0, 2.0),
    (Activation("softsign"), -3.0, -0.75),
    (Activation("softplus"), 0.5, math.log1p(math.exp(0.5))),
    (Activation("softplus"), 800.0, 800.0),  # no overflow
]


@pytest.mark.parametrize(("act", "z", "expected"), HAND, ids=[f"{a}-{z}" for a, z, _ in HAND])
def test_hand_values(act: Activation, z: float, expected: float) -> None:
    assert act(np.array([z]))[0] == pytest.approx(expected, rel=1e-15, abs=1e-300)
    buf = np.array([z])
    act.apply_(buf, np.empty_like(buf))
    assert buf[0] == pytest.approx(expected, rel=1e-15, abs=1e-300)


@given(ACTIVATION_STRATEGY, hnp.arrays(np.float64, (3, 4),
                                       elements=st.floats(-50, 50, allow_nan=False)),
       st.booleans())
def test_in_place_equals_formula(spec: object, z: np.ndarray, two_buffers: bool) -> None:
    act = Activation(spec) if isinstance(spec, str) else spec
    expected = act(z)
    got = z.copy()
    act.apply_(got, np.empty_like(got), np.empty_like(got) if two_buffers else None)
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-300)


def test_fast_float64_tanh_is_within_three_ulp_and_keeps_signs() -> None:
    z = np.concatenate([np.linspace(-20, 20, 400_001), [0.0, -0.0, 1e-300, -1e-300, 1e-8,
                                                        np.inf, -np.inf, np.nan]])
    got = z.copy()
    Activation("tanh").apply_(got, np.empty_like(z), np.empty_like(z))
    want = np.tanh(z)
    finite = np.isfinite(want)
    ulp = np.spacing(np.abs(want[finite]))
    assert np.all(np.abs(got[finite] - want[finite]) <= 3 * ulp)
    assert np.signbit(got[400_002]) and np.isnan(got[-1]) and got[-3] == 1.0
    assert got[-2] == -1.0


def test_in_place_handles_extremes_like_the_formula() -> None:
    z = np.array([-np.inf, -800.0, -1.0, 0.0, 1.0, 800.0, np.inf])
    for name, needed in ACTIVATIONS.items():
        act = Activation(name, *(0.5 for _ in needed))
        with np.errstate(invalid="ignore"):
            expected = act(z)
            got = z.copy()
            act.apply_(got, np.empty_like(got))
        np.testing.assert_array_equal(got, expected, err_msg=name)


@pytest.mark.parametrize("name", [n for n, p in ACTIVATIONS.items() if p])
def test_parameters_are_never_implied(name: str) -> None:
    with pytest.raises(ValueError, match="needs an explicit alpha"):
        Activation(name)


def test_bad_activations_are_refused_with_the_allowed_set() -> None:
    with pytest.raises(ValueError, match=r"unknown name 'gelu'.*tanh"):
        Activation("gelu")
    with pytest.raises(ValueError, match="takes no parameters; got alpha=0.1"):
        Activation("tanh", alpha=0.1)
    with pytest.raises(ValueError, match="takes alpha; got beta"):
        Activation("elu", alpha=1.0, beta=2.0)
    with pytest.raises(ValueError, match="must be finite"):
        Activation("elu", alpha=float("nan"))


def test_float32_stays_float32() -> None:
    z = np.linspace(-3, 3, 7, dtype=np.float32)
    for name, needed in ACTIVATIONS.items():
        act = Activation(name, *(0.5 for _ in needed))
        assert act(z).dtype == np.float32, name
