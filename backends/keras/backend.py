"""Keras' backend in this process: the whole network in Keras' own layers (those of
:func:`rnn_ref.backends.keras.convert.to_native`), called eagerly on the backend Keras was
imported with. The built-in ``keras[tensorflow|jax|torch]`` backends run it in a worker process
(:mod:`rnn_ref.backends.keras.worker`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnn_ref.backends._common import raise_if
from rnn_ref.backends.keras.convert import (
    backend_name,
    fused_layer,
    head_layer,
    identity_layers,
    input_layers,
    keras_module,
    pooling_layer,
    rnn_layer,
    unsupported_dtype,
)
from rnn_ref.backends.keras.record import unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.inputs import check_inputs
from rnn_ref.network import POOLINGS
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["KerasBackend", "KerasSupport"]


class KerasSupport:
    """What Keras on ``self.backend`` can run (shared by the in-process and worker backends)."""

    backend: str

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        reason = unsupported(config, backend=self.backend, padded=lengths or mask)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        return unsupported_dtype(dtype, self.backend)


class KerasBackend(KerasSupport):
    """The whole network in Keras' own layers (those of :func:`to_native`), on the backend
    this process imported Keras with, called eagerly."""

    def __init__(self) -> None:
        self.backend = backend_name()
        self.name = f"keras[{self.backend}]"

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None, c0: Any = None) -> ForwardResult:
        """Keras' layers on ``x`` (``(N, T, D)``, or token ids ``(N, T)``), ``h0`` (S arrays
        ``(N, M_l)``), the LSTM layers' ``c0`` (C arrays ``(N, M_l)``), and ``lengths (N,)``
        or ``mask (N, T)`` (with the network's own mask, given to every recurrent layer):
        ``outputs (N, T, F)`` of the last recurrent layer (a pair for ``merge_mode=None``),
        ``h_n (S, N, M)`` (or S ``(N, M_l)``), ``y`` the head's output (``None`` without a
        head), ``selected`` what the last layer hands on, ``c_n (C, N, M)`` (or C
        ``(N, M_l)``; ``None`` without an LSTM layer); in the parameters' dtype. Bad inputs
        raise as :func:`rnn_ref.inputs.check_inputs` says."""
        keras = keras_module()
        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name,
                              c0=c0)
        m = inputs.mask_or_none()  # (N, T), or None when nothing is padded
        raise_if(unsupported(cfg, backend=self.backend, padded=m is not None), self.name)
        last = cfg.num_layers - 1
        if m is not None and cfg.padded_output != "zeros" and fused_layer(cfg, last) \
                and cfg.directions[last] != "bidirectional":
            raise UnsupportedError(self.name, f"padded_output {cfg.padded_output!r}: "
                                   f"TensorFlow's cuDNN kernel runs layer {last} and outputs "
                                   f"zeros at its padded steps")
        dtype_problem = unsupported_dtype(params.dtype, self.backend)
        if dtype_problem is not None:
            raise UnsupportedError(self.name, dtype_problem)
        to_np = keras.ops.convert_to_numpy
        mask_t = None if m is None else keras.ops.convert_to_tensor(m)
        h = _embedded(params, inputs.x)
        for layer in identity_layers(params, 0):
            h = layer(h)
        h_n: list[np.ndarray[Any, Any]] = []
        c_n: list[np.ndarray[Any, Any]] = []
        outputs: Any = None
        for li in range(cfg.num_layers):
            h0s = _initial_state(params, li, inputs.h0, inputs.c0)
            below = h
            outputs, states, cells = _run_layer(params, li, h, mask_t, h0s)
            h_n += [to_np(s) for s in states]
            c_n += [to_np(c) for c in cells]
            h = outputs
            if li == cfg.num_layers - 1 and cfg.select in ("final", "last_step"):
                h = _call(rnn_layer(params, li, return_sequences=False), below, mask_t, h0s)
            elif li == cfg.num_layers - 1 and cfg.select in POOLINGS:
                pooled = pooling_layer(params)  # the maximum ignores the mask
                h = pooled(h) if mask_t is None or cfg.select == "max_all" else pooled(
                    h, mask=mask_t)
            for layer in identity_layers(params, li + 1):
                h = layer(h)
        selected = h
        for j in range(len(cfg.head)):
            h = head_layer(params, j)(h)
            for layer in identity_layers(params, cfg.num_layers + 1 + j):
                h = layer(h)
        out: Any = tuple(to_np(o) for o in outputs) if isinstance(outputs, tuple) \
            else to_np(outputs)
        if cfg.directions[-1] == "reverse" and cfg.output_order == "aligned":
            out = np.ascontiguousarray(out[:, ::-1])  # go_backwards: in processing order
        sel = tuple(to_np(s) for s in selected) if isinstance(selected, tuple) \
            else to_np(selected)
        cells_out: Any = None
        if c_n:
            cells_out = np.stack(c_n) if cfg.uniform_cell else tuple(c_n)
        return ForwardResult(out, np.stack(h_n) if cfg.uniform_hidden else tuple(h_n),
                             to_np(h) if cfg.head else None, sel, cells_out)


def _initial_state(params: RNNParams, li: int, h0: Any, c0: Any) -> list[Any] | None:
    """Layer ``li``'s ``initial_state`` as Keras takes it: each direction's ``h`` (its entry
    of ``h0``, S arrays ``(N, M_l)``), and an LSTM's ``c`` after it (its entry of ``c0``, C
    arrays); zeros for the one of the two not given; ``None`` when neither is."""
    keras = keras_module()
    cfg = params.config
    lstm = cfg.cell_of(li).kind == "lstm"
    if h0 is None and (c0 is None or not lstm):
        return None
    n = int(np.shape((h0 if h0 is not None else c0)[0])[0])
    out = []
    for r in range(cfg.num_directions_of(li)):
        zeros = np.zeros((n, cfg.hidden_sizes[li]), params.dtype)
        out.append(zeros if h0 is None else np.asarray(h0[cfg.state_index(li, r)]))
        if lstm:
            out.append(zeros if c0 is None else np.asarray(c0[cfg.cell_state_index(li, r)]))
    return [keras.ops.convert_to_tensor(a.astype(params.dtype)) for a in out]


def _embedded(params: RNNParams, x: np.ndarray[Any, Any]) -> Any:
    """The network's input in Keras: the ``Embedding`` of token ids, or the features (a
    ``Masking`` layer computes nothing else)."""
    keras = keras_module()
    if params.config.vocab_size is None:
        return keras.ops.convert_to_tensor(x.astype(params.dtype))
    return input_layers(params)[1](keras.ops.convert_to_tensor(x.astype(np.int32)))


def _call(layer: Any, h: Any, mask: Any, h0s: Any) -> Any:
    kwargs: dict[str, Any] = {}
    if mask is not None:
        kwargs["mask"] = mask
    if h0s is not None:
        kwargs["initial_state"] = h0s
    return layer(h, **kwargs)


def _run_layer(params: RNNParams, li: int, h: Any, mask: Any, h0s: Any
               ) -> tuple[Any, list[Any], list[Any]]:
    """Recurrent layer ``li`` returning sequences and states: its (merged) outputs (a pair for
    ``merge_mode=None``), its R final states ``h`` and, for an LSTM, its R cell states ``c``
    (Keras returns each direction's ``h``, then an LSTM's ``c``)."""
    cfg = params.config
    R = cfg.num_directions_of(li)
    per = 2 if cfg.cell_of(li).kind == "lstm" else 1
    last = li == cfg.num_layers - 1
    layer = rnn_layer(params, li, return_sequences=True, return_state=True,
                      zero_output=last and cfg.padded_output == "zeros")
    out = _call(layer, h, mask, h0s)
    main = len(out) - R * per
    merged, states = out[:main], list(out[main:])
    return ((merged[0] if len(merged) == 1 else tuple(merged)), states[::per],
            states[1::per] if per == 2 else [])
