"""Run a native model in its own framework, for the cross-framework tests: each framework
module's ``run_native`` (flax has no file format, so its runner is here)."""

from __future__ import annotations

from typing import Any

import numpy as np


def run_torch(model: Any, x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    from rnn_ref.backends.torch import files as torch_files

    return torch_files.run_native(model, x, lengths)


def run_keras(model: Any, x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """A model from to_keras(..., mask_value=0.0): padded steps are zeroed in the input."""
    from rnn_ref.backends.keras import files as keras_files

    return keras_files.run_native(model, x, lengths)


def run_onnx(model: Any, x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    from rnn_ref.backends.onnx import files as onnx_files

    return onnx_files.run_native(model, x, lengths)


def run_flax(cells: Any, x: np.ndarray, reverse: bool = False) -> np.ndarray:
    """Layers of nnx.SimpleCell through nnx.RNN (flax's own loop), one direction."""
    import jax.numpy as jnp
    from flax import nnx

    layers = cells if isinstance(cells, list) else [[cells]]
    h = jnp.asarray(x)
    for layer in layers:
        h = nnx.RNN(layer[0], reverse=reverse, keep_order=True)(h)
    return np.asarray(h)
