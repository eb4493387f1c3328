"""Run a native model in its own framework, for the cross-framework tests."""

from __future__ import annotations

from typing import Any

import numpy as np


def run_torch(model: Any, x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    import torch
    from torch import nn

    xt = torch.from_numpy(x)
    with torch.no_grad():
        if lengths is None:
            return model(xt)[0].numpy()
        packed = nn.utils.rnn.pack_padded_sequence(xt, torch.from_numpy(lengths),
                                                   batch_first=True, enforce_sorted=False)
        rnn = getattr(model, "rnn", model)
        out, _ = rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                  total_length=x.shape[1])
        if hasattr(model, "readout"):
            from rnn_ref.backends.torch_backend import _READOUT_ACTIVATIONS

            out = _READOUT_ACTIVATIONS[model.activation](model.readout(out))
        return out.numpy()


def run_keras(model: Any, x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """A model from to_keras(..., mask_value=0.0): padded steps are zeroed in the input."""
    if lengths is not None:
        x = x * (np.arange(x.shape[1])[None, :, None] < lengths[:, None, None])
    return np.asarray(model(x))


def run_onnx(model: Any, x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"x": x}
    if lengths is not None:
        feeds["lengths"] = lengths.astype(np.int32)
    return sess.run(None, feeds)[0]


def run_flax(cells: Any, x: np.ndarray, reverse: bool = False) -> np.ndarray:
    """Layers of nnx.SimpleCell through nnx.RNN (flax's own loop), one direction."""
    import jax.numpy as jnp
    from flax import nnx

    layers = cells if isinstance(cells, list) else [[cells]]
    h = jnp.asarray(x)
    for layer in layers:
        h = nnx.RNN(layer[0], reverse=reverse, keep_order=True)(h)
    return np.asarray(h)
