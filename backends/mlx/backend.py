"""mlx's backend: the ``mlx.nn.RNN``, ``nn.GRU`` and ``nn.LSTM`` layers of
:func:`rnn_ref.backends.mlx.convert.to_native` run by mlx on the CPU, in the parameters'
dtype."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from rnn_ref.backends.mlx.convert import MLX_DTYPES, as_mx, from_native, to_native
from rnn_ref.backends.mlx.record import target, unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.inputs import check_inputs
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["MlxBackend"]


class MlxBackend:
    """``mlx.nn.RNN``, ``nn.GRU`` and ``nn.LSTM`` layers run by mlx on the CPU, in the
    parameters' dtype (float32, float64); a stack is run layer by layer, as a list of layers
    is."""

    name = "mlx"

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        if lengths or mask:
            return ("lengths or a mask: mlx.nn.RNN, GRU and LSTM have neither, they run "
                    "every step of every sequence")
        reason = unsupported(config)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        if np.dtype(dtype) not in MLX_DTYPES:
            return f"dtype {np.dtype(dtype)}: use float32 or float64"
        return None

    def round_trip(self, params: RNNParams) -> RNNParams:
        """Through ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` modules and back (raises where MLX
        cannot hold the config)."""
        return from_native(to_native(params))

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None, c0: Any = None) -> ForwardResult:
        """The layers on ``x (N, T, D)`` with ``h0`` (``(L, N, M)`` or L ``(N, M_l)``) and an
        LSTM layer's ``c0`` (C cell states): ``outputs (N, T, M_L)``, ``h_n`` (each layer's
        last output), ``y = None`` and ``c_n`` (each LSTM layer's last cell state; ``None``
        without one), in the parameters' dtype. Bad inputs raise as
        :func:`rnn_ref.inputs.check_inputs` says; lengths, masks and what :func:`unsupported`
        names raise ``UnsupportedError``."""
        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, dtype=params.dtype,
                              where=target(cfg), c0=c0)
        if inputs.padding is not None:
            raise UnsupportedError(target(cfg), inputs.padding,
                                   "mlx.nn.RNN, GRU and LSTM have no lengths or masks")
        model = to_native(params)  # raises for what unsupported() names and other dtypes
        layers: Sequence[Any] = model if isinstance(model, list) else [model]
        with mx.stream(mx.cpu):
            out = as_mx(inputs.x)
            finals, cells = [], []
            for li, layer in enumerate(layers):
                h = None if inputs.h0 is None else as_mx(inputs.h0[li])
                if isinstance(layer, nn.LSTM):
                    k = cfg.cell_state_index(li, 0)
                    c = None if inputs.c0 is None else as_mx(inputs.c0[k])
                    out, cs = layer(out, h, c)
                    cells.append(cs[:, -1, :])
                else:
                    out = layer(out, h)
                finals.append(out[:, -1, :])
            mx.eval(out, *finals, *cells)
        h_n = [np.array(f) for f in finals]
        c_n = [np.array(c) for c in cells]
        return ForwardResult(
            np.array(out), np.stack(h_n) if cfg.uniform_hidden else tuple(h_n), None,
            c_n=None if not c_n else np.stack(c_n) if cfg.uniform_cell else tuple(c_n))
