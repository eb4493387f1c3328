"""The canonical file (format ``rnn-ref``, ``.npz``): the file functions of
:data:`rnn_ref.backends.records.FILE_API`, by :func:`rnn_ref.load` and :func:`rnn_ref.save`,
run by the oracle in the parameters' dtype."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.fileapi import Hints, NativeFile
from rnn_ref.io import load, save
from rnn_ref.params import RNNParams
from rnn_ref.reference import forward, returned

__all__ = ["list_arrays", "load_native", "read_file", "run_native", "write_file"]


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
