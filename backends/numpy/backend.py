"""The canonical framework: the NumPy backend (the reference's fast path, computing in the
parameters' dtype) and the canonical ``.npz`` file.

It is the oracle run the way a backend runs (float32 weights compute in float32), so the
conformance suite holds it to the float64 oracle like any other backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.backends.numpy.record import unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.fileapi import Hints, NativeFile
from rnn_ref.io import load, save
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult, forward, returned

__all__ = ["NumpyBackend", "list_arrays", "load_native", "read_file", "run_native",
           "unsupported", "write_file"]


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
    ) -> ForwardResult:
        return forward(params, x, h0=h0, lengths=lengths, mask=mask, compute_dtype=params.dtype)

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


# --------------------------------------------------------------------------------------------
# the canonical file (format "rnn-ref")
# --------------------------------------------------------------------------------------------
def read_file(path: Path, fmt: str, hints: Hints) -> RNNParams:
    """The parameters of a canonical ``.npz`` file (:func:`rnn_ref.load`)."""
    return load(path)


def write_file(params: RNNParams, path: Path, fmt: str) -> None:
    save(params, path, overwrite=True)


def load_native(path: Path, fmt: str, params: RNNParams) -> NativeFile:
    """The file's own parameters, run by the oracle in their dtype."""
    return NativeFile(load(path), takes_lengths=True)


def run_native(model: RNNParams, x: np.ndarray[Any, Any], lengths: Any = None) -> Any:
    """What the network returns (its result, the head's output else the selection, or the
    tuple ``config.returns`` names) by the oracle in the parameters' dtype."""
    res = forward(model, x, lengths=lengths, compute_dtype=model.dtype)
    out = returned(model.config, res)
    return out[0] if len(out) == 1 else out


def list_arrays(path: Path, fmt: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Every array the file stores, by its own names: ``(name, shape, dtype)``."""
    with np.load(path, allow_pickle=False) as z:
        return [(k, z[k].shape, str(z[k].dtype)) for k in z.files if not k.startswith("__")]
