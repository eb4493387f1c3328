"""Keras 2's backends: tf-keras' own layers in this process (:class:`Keras2Backend`) and, the
built-in ``keras2[tensorflow]``, in a worker process (:class:`Keras2ProcessBackend`, the
protocol of :mod:`rnn_ref.backends.keras.worker`), which keeps tf-keras out of the caller."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import numpy as np

from rnn_ref.backends._common import raise_if
from rnn_ref.backends.keras.convert import unsupported_dtype
from rnn_ref.backends.keras.worker import KerasProcessBackend, serve_with
from rnn_ref.backends.keras2.convert import (
    from_native,
    head_layers,
    import_tf_keras,
    numpy_of,
    rnn_layers,
    to_native,
)
from rnn_ref.backends.keras2.record import unsupported as keras2_unsupported
from rnn_ref.backends.records import network_unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.inputs import check_inputs
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["Keras2Backend", "Keras2ProcessBackend", "serve", "tensorflow_backend"]


class _Keras2Support:
    name: str

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        reason = network_unsupported(config) or keras2_unsupported(
            config, backend="tensorflow", padded=lengths or mask)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        return unsupported_dtype(dtype, "tensorflow")


class Keras2Backend(_Keras2Support):
    """tf-keras' own layers in this process, called eagerly."""

    name = "keras2[tensorflow]"

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None) -> ForwardResult:
        """As :meth:`rnn_ref.backends.keras.backend.KerasBackend.forward`, in tf-keras."""
        import tensorflow as tf

        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name)
        m = inputs.mask_or_none()
        raise_if(network_unsupported(cfg) or keras2_unsupported(
            cfg, backend="tensorflow", padded=m is not None), self.name)
        problem = unsupported_dtype(params.dtype, "tensorflow")
        if problem is not None:
            raise UnsupportedError(self.name, problem)
        R = cfg.num_directions
        h: Any = tf.convert_to_tensor(inputs.x.astype(params.dtype))
        tm = None if m is None else tf.convert_to_tensor(m)
        h_n: list[np.ndarray[Any, Any]] = []
        for li, layer in enumerate(rnn_layers(params, return_state=True)):
            kwargs: dict[str, Any] = {}
            if tm is not None:
                kwargs["mask"] = tm
            if inputs.h0 is not None:
                kwargs["initial_state"] = [tf.convert_to_tensor(
                    np.asarray(inputs.h0[li * R + r], params.dtype)) for r in range(R)]
            out = layer(h, **kwargs)
            merged = out[: len(out) - R]
            h = merged[0] if len(merged) == 1 else tuple(merged)
            h_n.extend(numpy_of(s) for s in out[len(out) - R:])
        y = None
        if params.readout is not None:
            y = numpy_of(head_layers(params)[0](h))
        outputs = tuple(numpy_of(o) for o in h) if isinstance(h, tuple) else numpy_of(h)
        return ForwardResult(outputs, np.stack(h_n) if cfg.uniform_hidden else tuple(h_n), y)


def serve() -> None:
    """The worker loop of ``keras2[tensorflow]`` (the protocol of
    :mod:`rnn_ref.backends.keras.worker`)."""
    import_tf_keras()
    serve_with(Keras2Backend(), (from_native, to_native))


class Keras2ProcessBackend(_Keras2Support, KerasProcessBackend):
    """``keras2[tensorflow]``: tf-keras' layers in a worker process (``TF_USE_LEGACY_KERAS=1``,
    so ``tf.keras`` there is tf-keras too), with keras_worker's protocol and lifetime."""

    _proc: subprocess.Popen[bytes] | None
    _log: Any

    def __init__(self) -> None:
        super().__init__("tensorflow")
        self.name = "keras2[tensorflow]"

    worker_code = "from rnn_ref.backends.keras2.backend import serve; serve()"

    def worker_env(self) -> dict[str, str]:
        """tf-keras in the worker: ``TF_USE_LEGACY_KERAS=1``."""
        return {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def tensorflow_backend() -> Keras2ProcessBackend:
    """``keras2[tensorflow]``."""
    return Keras2ProcessBackend()
