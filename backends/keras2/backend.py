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
from rnn_ref.backends.keras.worker import (
    KerasProcessBackend,
    get_value,
    put_params,
    put_value,
    serve_with,
)
from rnn_ref.backends.keras2.convert import (
    from_native,
    head_layers,
    import_tf_keras,
    numpy_of,
    rnn_layers,
    to_native,
)
from rnn_ref.backends.keras2.record import unsupported as keras2_unsupported
from rnn_ref.backends.records import GATED, network_unsupported
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
        reason = network_unsupported(config, holds=set(GATED)) or keras2_unsupported(
            config, backend="tensorflow", padded=lengths or mask)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        return unsupported_dtype(dtype, "tensorflow")


class Keras2Backend(_Keras2Support):
    """tf-keras' own layers in this process, called eagerly."""

    name = "keras2[tensorflow]"

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None, c0: Any = None) -> ForwardResult:
        """As :meth:`rnn_ref.backends.keras.backend.KerasBackend.forward`, in tf-keras; an
        LSTM layer takes ``c0`` (C arrays ``(N, M_l)``, ``config.cell_state_index`` order)
        and returns ``c_n``."""
        import tensorflow as tf

        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name,
                              c0=c0)
        m = inputs.mask_or_none()
        raise_if(network_unsupported(cfg, holds=set(GATED)) or keras2_unsupported(
            cfg, backend="tensorflow", padded=m is not None), self.name)
        problem = unsupported_dtype(params.dtype, "tensorflow")
        if problem is not None:
            raise UnsupportedError(self.name, problem)
        h: Any = tf.convert_to_tensor(inputs.x.astype(params.dtype))
        tm = None if m is None else tf.convert_to_tensor(m)
        h_n: list[np.ndarray[Any, Any]] = []
        c_n: list[np.ndarray[Any, Any]] = []

        def tensor(a: Any) -> Any:
            return tf.convert_to_tensor(np.asarray(a, params.dtype))

        for li, layer in enumerate(rnn_layers(params, return_state=True)):
            R = cfg.num_directions_of(li)
            lstm = cfg.cell_of(li).kind == "lstm"
            kwargs: dict[str, Any] = {}
            if tm is not None:
                kwargs["mask"] = tm
            if inputs.h0 is not None or inputs.c0 is not None:
                states = []
                for r in range(R):  # each direction's [h] or an LSTM's [h, c]
                    n, m_l = inputs.x.shape[0], cfg.hidden_sizes[li]
                    states.append(tensor(inputs.h0[cfg.state_index(li, r)]
                                         if inputs.h0 is not None else np.zeros((n, m_l))))
                    if lstm:
                        states.append(tensor(inputs.c0[cfg.cell_state_index(li, r)]
                                             if inputs.c0 is not None else np.zeros((n, m_l))))
                kwargs["initial_state"] = states
            out = layer(h, **kwargs)
            per = 2 if lstm else 1
            merged = out[: len(out) - R * per]
            h = merged[0] if len(merged) == 1 else tuple(merged)
            got = [numpy_of(s) for s in out[len(out) - R * per:]]
            h_n.extend(got[::per])
            if lstm:
                c_n.extend(got[1::per])
        y = None
        if params.readout is not None:
            y = numpy_of(head_layers(params)[0](h))
        outputs = tuple(numpy_of(o) for o in h) if isinstance(h, tuple) else numpy_of(h)
        return ForwardResult(outputs, np.stack(h_n) if cfg.uniform_hidden else tuple(h_n), y,
                             c_n=_stacked(c_n) if c_n else None)


def _stacked(arrays: list[np.ndarray[Any, Any]]) -> Any:
    """One ``(C, N, M)`` array when every state has one shape, else the tuple."""
    return np.stack(arrays) if len({a.shape for a in arrays}) == 1 else tuple(arrays)


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

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None, c0: Any = None) -> ForwardResult:
        """tf-keras' layers in the worker (:meth:`Keras2Backend.forward`): ``x (N, T, D)``,
        ``h0`` (S arrays ``(N, M_l)``), ``c0`` (an LSTM's C cell states), ``lengths (N,)``
        or ``mask (N, T)``; the inputs are checked here, so a bad one raises the oracle's
        error and is never sent."""
        inputs = check_inputs(params.config, x, h0=h0, lengths=lengths, mask=mask,
                              where=self.name, c0=c0)
        request: dict[str, Any] = {"op": np.array("forward"), "x": inputs.x}
        put_params(request, params)
        put_value(request, "h0", inputs.h0)
        put_value(request, "c0", inputs.c0)
        if inputs.lengths is not None:
            request["lengths"] = inputs.lengths
        elif inputs.padding == "mask":
            request["mask"] = inputs.valid
        answer = self._ask(request)
        return ForwardResult(get_value(answer, "outputs"), get_value(answer, "h_n"),
                             get_value(answer, "y"), c_n=get_value(answer, "c_n"))


def tensorflow_backend() -> Keras2ProcessBackend:
    """``keras2[tensorflow]``."""
    return Keras2ProcessBackend()
