"""Backends with one planted bug each, to prove the conformance suite catches them.

Each wraps the oracle (computing in the parameters' dtype, as a backend does) and breaks one
thing. ``Correct`` breaks nothing: a well-behaved third-party backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import rnn_ref
from rnn_ref import CellParams, RNNParams


class Correct:
    name = "planted-correct"

    def supports(self, config: Any, *, dtype: Any, lengths: bool, mask: bool) -> str | None:
        return None

    def params(self, params: RNNParams) -> RNNParams:
        return params

    def forward(self, params: RNNParams, x: Any, *, h0: Any = None, lengths: Any = None,
                mask: Any = None) -> Any:
        res = rnn_ref.forward(self.params(params), x, h0=h0, lengths=lengths, mask=mask,
                              compute_dtype=params.dtype, **self.options(params))
        return self.result(params, res, x, h0, lengths, mask)

    def options(self, params: RNNParams) -> dict[str, Any]:
        return {}

    def result(self, params: RNNParams, res: Any, x: Any, h0: Any, lengths: Any,
               mask: Any) -> Any:
        return res

    def round_trip(self, params: RNNParams) -> RNNParams:
        return params


def _cells(params: RNNParams, fn: Any) -> RNNParams:
    layers = [[fn(c) for c in layer] for layer in params.layers]
    return RNNParams(params.config, layers, params.readout)


class TransposedRecurrent(Correct):
    name = "planted-transposed-recurrent"

    def params(self, params: RNNParams) -> RNNParams:
        return _cells(params, lambda c: CellParams(c.w_x, c.w_h.T, c.b_x, c.b_h))


class SwappedBiases(Correct):
    """Harmless to the forward pass (only b_x + b_h enters it): the conversion catches it."""

    name = "planted-swapped-biases"

    def round_trip(self, params: RNNParams) -> RNNParams:
        return _cells(params, lambda c: CellParams(c.w_x, c.w_h, c.b_h, c.b_x))


class DroppedBias(Correct):
    name = "planted-dropped-recurrent-bias"

    def params(self, params: RNNParams) -> RNNParams:
        return _cells(params, lambda c: CellParams(c.w_x, c.w_h, c.b_x, np.zeros_like(c.b_h)))


class ReverseNotRealigned(Correct):
    name = "planted-reverse-not-realigned"

    def options(self, params: RNNParams) -> dict[str, Any]:
        return {"output_order": "processing"} if params.config.direction == "reverse" else {}


class PaddingNotZeroed(Correct):
    name = "planted-padding-not-zeroed"

    def options(self, params: RNNParams) -> dict[str, Any]:
        return {"padded_output": "carry_state"}


class FinalStateAfterPadding(Correct):
    name = "planted-final-state-after-padding"

    def result(self, params: RNNParams, res: Any, x: Any, h0: Any, lengths: Any,
               mask: Any) -> Any:
        full = rnn_ref.forward(params, x, h0=h0, compute_dtype=params.dtype)
        return res.outputs, full.h_n


class AllTanh(Correct):
    name = "planted-every-activation-tanh"

    def params(self, params: RNNParams) -> RNNParams:
        return params.replace(activation="tanh")


class ClipIgnored(Correct):
    name = "planted-clip-ignored"

    def params(self, params: RNNParams) -> RNNParams:
        return params.replace(clip=None)


class DirectionsSwapped(Correct):
    name = "planted-directions-swapped"

    def params(self, params: RNNParams) -> RNNParams:
        if params.config.num_directions == 1:
            return params
        layers = [list(reversed(layer)) for layer in params.layers]
        return RNNParams(params.config, layers, params.readout)


class ReturnsNumbersWhenUnsupported(Correct):
    """Declares sigmoid unsupported but computes anyway: must-raise catches it."""

    name = "planted-silent-unsupported"

    def supports(self, config: Any, *, dtype: Any, lengths: bool, mask: bool) -> str | None:
        if any(a.name == "sigmoid" for layer in config.activations for a in layer):
            return "no sigmoid"
        return None


BROKEN = [TransposedRecurrent, SwappedBiases, DroppedBias, ReverseNotRealigned,
          PaddingNotZeroed, FinalStateAfterPadding, AllTanh, ClipIgnored, DirectionsSwapped,
          ReturnsNumbersWhenUnsupported]
