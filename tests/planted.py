"""Backends with one planted bug each, to prove the conformance suite catches them.

Each wraps the oracle (computing in the parameters' dtype, as a backend does) and breaks one
thing. ``Correct`` breaks nothing: a well-behaved third-party backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import rnn_ref
from rnn_ref import CellParams, Dense, Readout, RNNParams, Softmax


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
    return RNNParams(params.config, layers, embedding=params.embedding, head=params.head)


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
        layers = [list(reversed(layer)) for layer in params.layers]
        return RNNParams(params.config, layers, embedding=params.embedding, head=params.head)


class ReturnsNumbersWhenUnsupported(Correct):
    """Declares sigmoid unsupported but computes anyway: must-raise catches it."""

    name = "planted-silent-unsupported"

    def supports(self, config: Any, *, dtype: Any, lengths: bool, mask: bool) -> str | None:
        if any(a.name == "sigmoid" for layer in config.activations for a in layer):
            return "no sigmoid"
        return None


# -- the network around the stack ---------------------------------------------------------------
class DropoutAtInference(Correct):
    """Applies each dropout as in training: a seeded keep mask scaled by 1 / (1 - rate) on the
    features entering the next layer (its input kernel's rows, or the head's)."""

    name = "planted-dropout-at-inference"

    def params(self, params: RNNParams) -> RNNParams:
        cfg = params.config
        rng = np.random.default_rng(0)
        layers = [list(layer) for layer in params.layers]
        head = list(params.head)
        for ident in cfg.identities:
            if ident.kind != "dropout" or ident.rate == 0:
                continue
            if ident.after < cfg.num_layers:
                li = ident.after
                keep = rng.random(cfg.layer_input_size(li)) >= ident.rate
                layers[li] = [CellParams(c.w_x * (keep[:, None] / (1 - ident.rate)), c.w_h,
                                         c.b_x, c.b_h) for c in layers[li]]
            elif ident.after == cfg.num_layers and head:
                keep = rng.random(head[0].w.shape[0]) >= ident.rate
                head[0] = Readout(head[0].w * (keep[:, None] / (1 - ident.rate)), head[0].b)
        return RNNParams(cfg, layers, embedding=params.embedding, head=head)


class SoftmaxWrongAxis(Correct):
    """Normalises the last head layer's softmax over the batch (or the time) axis."""

    name = "planted-softmax-wrong-axis"

    def result(self, params: RNNParams, res: Any, x: Any, h0: Any, lengths: Any,
               mask: Any) -> Any:
        cfg = params.config
        if not cfg.head or not isinstance(cfg.head[-1].activation, Softmax):
            return res
        head = [*cfg.head[:-1], Dense(cfg.head[-1].units, "linear", cfg.head[-1].bias)]
        logits = rnn_ref.forward(RNNParams(cfg.replace(head=head), params.layers,
                                           embedding=params.embedding, head=params.head),
                                 x, h0=h0, lengths=lengths, mask=mask,
                                 compute_dtype=params.dtype).y
        axis = 1 if logits.ndim == 3 else 0
        e = np.exp(logits - logits.max(axis=axis, keepdims=True))
        return rnn_ref.ForwardResult(res.outputs, res.h_n, e / e.sum(axis=axis, keepdims=True),
                                     res.selected)


class FinalStateOfTheWrongDirection(Correct):
    """Takes ``h_n[-1]`` for ``h_n[-2]`` and the other way round (and the halves of a merged
    bidirectional final state in the wrong order)."""

    name = "planted-final-state-wrong-direction"

    def result(self, params: RNNParams, res: Any, x: Any, h0: Any, lengths: Any,
               mask: Any) -> Any:
        swap = {"final_forward": "final_backward", "final_backward": "final_forward"}
        cfg = params.config
        if cfg.select in swap:
            wrong = params.replace(select=swap[cfg.select])
        elif cfg.select == "final" and cfg.directions[-1] == "bidirectional":
            last = list(params.layers)
            last[-1] = list(reversed(last[-1]))
            wrong = RNNParams(cfg, last, embedding=params.embedding, head=params.head)
            full = rnn_ref.forward(wrong, x, h0=h0, lengths=lengths, mask=mask,
                                   compute_dtype=params.dtype)
            return rnn_ref.ForwardResult(res.outputs, res.h_n, full.y, full.selected)
        else:
            return res
        return rnn_ref.forward(wrong, x, h0=h0, lengths=lengths, mask=mask,
                               compute_dtype=params.dtype)


class PaddingIdIgnored(Correct):
    """Embeds id 0 like any other token (Keras ``mask_zero`` ignored)."""

    name = "planted-padding-id-ignored"

    def params(self, params: RNNParams) -> RNNParams:
        return params.replace(mask_zero=False) if params.config.mask_zero else params


class HeadBeforeSelection(Correct):
    """Applies the head to every step, then takes the last step (not the final state)."""

    name = "planted-head-before-selection"

    def result(self, params: RNNParams, res: Any, x: Any, h0: Any, lengths: Any,
               mask: Any) -> Any:
        cfg = params.config
        if not cfg.head or cfg.select == "sequence" or cfg.select.startswith("final_"):
            return res
        per_step = rnn_ref.forward(params.replace(select="sequence"), x, h0=h0, lengths=lengths,
                                   mask=mask, compute_dtype=params.dtype)
        return rnn_ref.ForwardResult(res.outputs, res.h_n, per_step.y[:, -1], res.selected)


class MeanOverPadding(Correct):
    """Averages over all T steps where the mean is over the valid ones (torch's
    ``out.mean(dim=1)`` taken for Keras' masked ``GlobalAveragePooling1D``)."""

    name = "planted-mean-over-padding"

    def params(self, params: RNNParams) -> RNNParams:
        if params.config.select != "mean_valid":
            return params
        return params.replace(select="mean_all", padded_output="zeros")


BROKEN = [TransposedRecurrent, SwappedBiases, DroppedBias, ReverseNotRealigned,
          PaddingNotZeroed, FinalStateAfterPadding, AllTanh, ClipIgnored, DirectionsSwapped,
          ReturnsNumbersWhenUnsupported, DropoutAtInference, SoftmaxWrongAxis,
          FinalStateOfTheWrongDirection, PaddingIdIgnored, HeadBeforeSelection,
          MeanOverPadding]
