"""Keras 2 files (``keras2-h5``): read by weight name with h5py through Keras 3's legacy reader
in the Keras 2 flavour (nothing from the file is run), written by tf-keras as legacy HDF5; the
file functions of :data:`rnn_ref.backends.records.FILE_API`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.backends import file_limits
from rnn_ref.backends.keras.files import list_arrays as _h5_arrays
from rnn_ref.backends.keras.files import read_legacy_h5
from rnn_ref.backends.keras.graph import KERAS2
from rnn_ref.backends.keras2.convert import held_by_keras2, numpy_of, oracle, to_native
from rnn_ref.fileapi import Hints, NativeFile
from rnn_ref.params import RNNParams

__all__ = ["list_arrays", "load_native", "read_file", "run_native", "write_file"]


# --------------------------------------------------------------------------------------------
# files: keras2-h5
# --------------------------------------------------------------------------------------------
def read_file(path: Path, fmt: str, hints: Hints) -> RNNParams:
    """The parameters of a Keras 2 ``.h5`` file (a whole model, or ``save_weights``' file,
    which needs the hints), read by weight name with h5py through Keras 3's legacy reader in
    the Keras 2 flavour: nothing from the file is run."""
    file_limits.check_h5(path, str(path))
    return held_by_keras2(read_legacy_h5(path, hints, KERAS2))


def write_file(params: RNNParams, path: Path, fmt: str) -> None:
    """``to_native(params).save(path)`` by tf-keras, as legacy HDF5 (``.h5``)."""
    import warnings

    model = to_native(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf-keras calls HDF5 legacy
        model.save(str(path), save_format="h5")


def load_native(path: Path, fmt: str, params: RNNParams) -> NativeFile:
    """The file's weights loaded by tf-keras (``load_weights``, in layer order) into the model
    of ``params``' architecture: the file's config is never deserialised (a legacy ``.h5`` can
    hold a ``Lambda`` layer's marshalled code)."""
    model = to_native(params)
    model.load_weights(str(path))
    return NativeFile(model, takes_lengths=False, oracle=oracle(model))


def run_native(model: Any, x: np.ndarray[Any, Any], lengths: Any = None
               ) -> np.ndarray[Any, Any]:
    """The model's output on ``x``; with ``lengths``, padded steps are zeroed in the input
    (which a model of ``to_native(..., mask_value=0.0)`` masks)."""
    if lengths is not None:
        valid = np.arange(x.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None]
        x = x * valid
    return numpy_of(model(x))


def list_arrays(path: Path, fmt: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Every HDF5 dataset of the file by its path (``.../kernel:0``)."""
    return _h5_arrays(path, "keras-h5")
