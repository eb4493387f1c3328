"""The training examples converge with the oracle's gradients alone."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import train_sum  # noqa: E402

import rnn_ref  # noqa: E402


def test_linear_unit_learns_to_add() -> None:
    params, mse = train_sum.adder()
    cell = params.layers[0][0]
    assert abs(cell.w_x[0, 0] - 1) < 0.05
    assert abs(cell.w_h[0, 0] - 1) < 0.05
    assert abs(cell.b_x[0] + cell.b_h[0]) < 0.05
    test, sums = train_sum.digits(500, seed=99)
    pred = rnn_ref.forward(params, test[..., None].astype(np.float64)).outputs[:, -1, 0]
    assert np.abs(pred - sums).max() < 0.1
    assert mse < 0.01


def test_one_hot_digits_reach_low_error() -> None:
    params, mse = train_sum.onehot()
    assert mse < 0.5
    test, sums = train_sum.digits(500, seed=98)
    pred = rnn_ref.forward(params, np.eye(10)[test]).outputs[:, -1, 0]
    assert np.mean((pred - sums) ** 2) < 0.5
