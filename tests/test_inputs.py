"""Bad inputs to forward raise ValueError/TypeError naming the argument, never NumPy's errors."""

from __future__ import annotations

import numpy as np
import pytest

import rnn_ref
from rnn_ref import RNNConfig

P = rnn_ref.init(RNNConfig(3, 4, num_layers=2, direction="bidirectional"), seed=0)
X = np.zeros((2, 5, 3))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"x": np.zeros((5, 3))}, ValueError, r"x must have 3 dimensions \(N, T, D\), got shape "
                                              r"\(5, 3\); add a batch axis"),
        ({"x": np.zeros((2, 5, 4))}, ValueError,
         r"x has 4 features \(shape \(2, 5, 4\)\) but config.input_size is 3"),
        ({"x": np.zeros((2, 5, 3), complex)}, TypeError, "x must hold real numbers"),
        ({"x": [[["a"]]]}, TypeError, "x must hold real numbers"),
        ({"h0": np.zeros((2, 2, 4))}, ValueError, r"h0 must have shape \(L\*R, N, M\) = "
                                                   r"\(4, 2, 4\), got \(2, 2, 4\)"),
        ({"h0": [np.zeros((2, 4))] * 3}, ValueError, "h0 lists 3 states, expected L"),
        ({"h0": [np.zeros((2, 4))] * 3 + [np.zeros((2, 5))]}, ValueError,
         r"h0\[3\] must have shape \(N, M\) = \(2, 4\), got \(2, 5\)"),
        ({"lengths": [5.0, 2.0]}, TypeError, "lengths must be integers, got dtype float64"),
        ({"lengths": [5, 2, 1]}, ValueError, r"lengths must have shape \(N,\) = \(2,\)"),
        ({"lengths": [6, 2]}, ValueError, r"lengths must lie in \[0, T\] = \[0, 5\], got min 2, "
                                          r"max 6"),
        ({"lengths": [-1, 2]}, ValueError, "got min -1"),
        ({"mask": np.ones((2, 5), int)}, TypeError, "mask must be boolean"),
        ({"mask": np.ones((2, 4), bool)}, ValueError, r"mask must have shape \(N, T\) = \(2, 5\)"),
        ({"mask": np.ones((2, 5), bool), "lengths": [1, 2]}, ValueError,
         "give lengths or mask, not both"),
        ({"compute_dtype": np.int32}, TypeError, "compute_dtype must be a floating dtype"),
        ({"compute_dtype": "nonsense"}, TypeError, "compute_dtype must be a floating dtype"),
        ({"padded_output": "pad"}, ValueError, "padded_output must be one of"),
        ({"output_order": "processing"}, ValueError, "needs direction='reverse'"),
        ({"params": "weights"}, TypeError, "params must be rnn_ref.RNNParams, got str"),
    ],
)
@pytest.mark.parametrize("fn", [rnn_ref.forward, rnn_ref.forward_loop])
def test_bad_inputs(fn, kwargs: dict, error: type, message: str) -> None:
    call = {"params": P, "x": X, **kwargs}
    with pytest.raises(error, match=message):
        fn(call.pop("params"), call.pop("x"), **call)


def test_integer_inputs_and_empty_batch_are_fine() -> None:
    res = rnn_ref.forward(P, np.ones((2, 5, 3), dtype=np.int64))
    assert res.outputs.dtype == np.float64
    empty = rnn_ref.forward(P, np.zeros((0, 5, 3)))
    assert empty.outputs.shape == (0, 5, 8) and empty.h_n.shape == (4, 0, 4)
