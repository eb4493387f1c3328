"""The canonical framework's backend: the NumPy backend (the reference's fast path, computing in
the parameters' dtype); the canonical ``.npz`` file is ``files.py``.

It is the oracle run the way a backend runs (float32 weights compute in float32), so the
conformance suite holds it to the float64 oracle like any other backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.backends.numpy.record import unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.io import load, save
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult, forward

__all__ = ["NumpyBackend", "unsupported"]


class NumpyBackend:
    """``rnn_ref.forward`` with ``compute_dtype`` set to the parameters' dtype."""

    name = "numpy"

    def forward(
        self,
        params: RNNParams,
        x: np.ndarray[Any, Any],
        *,
        h0: Any = None,
        lengths: Any = None,
        mask: Any = None,
        c0: Any = None,
    ) -> ForwardResult:
        return forward(params, x, h0=h0, c0=c0, lengths=lengths, mask=mask,
                       compute_dtype=params.dtype)

    def round_trip(self, params: RNNParams) -> RNNParams:
        """Through the canonical file and back."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            return load(save(params, Path(tmp) / "params.npz"))

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool) -> str | None:
        """Everything in the spec, in any floating dtype."""
        if np.dtype(dtype).kind != "f":
            return f"dtype {np.dtype(dtype)} is not a floating dtype"
        return None
