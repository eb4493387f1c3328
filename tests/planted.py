"""Backends with one planted bug each, to prove the conformance suite catches them.

Each wraps the oracle (computing in the parameters' dtype, as a backend does) and breaks one
thing. ``Correct`` breaks nothing: a well-behaved third-party backend, declaring every cell and
network piece (rnn_ref._registry.scope_of). :data:`BROKEN` are the Elman stack's and the
network's bugs, :data:`GATED_BROKEN` the GRU's and the LSTM's (../shared/GATED.md has the
reports each comes from). :class:`TinyLSTM` is a third party's LSTM kernel written without the
oracle, declaring ``cells = ("lstm",)``; :class:`CellStateNotCarried` is it with one bug.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import rnn_ref
from rnn_ref import CellParams, Dense, Readout, RNNParams, Softmax
from rnn_ref._registry import SCOPE_CELLS, SCOPE_PIECES
from rnn_ref.activations import Activation
from rnn_ref.cells import pack, unpack
from rnn_ref.params import AnyCellParams, GRUParams, LSTMParams


class Correct:
    name = "planted-correct"
    cells = SCOPE_CELLS  # the oracle holds every network
    pieces = SCOPE_PIECES

    def supports(self, config: Any, *, dtype: Any, lengths: bool, mask: bool) -> str | None:
        return None

    def params(self, params: RNNParams) -> RNNParams:
        return params

    def forward(self, params: RNNParams, x: Any, *, h0: Any = None, c0: Any = None,
                lengths: Any = None, mask: Any = None) -> Any:
        res = rnn_ref.forward(self.params(params), x, h0=h0, c0=c0, lengths=lengths, mask=mask,
                              compute_dtype=params.dtype, **self.options(params))
        return self.result(params, res, x, h0, c0, lengths, mask)

    def options(self, params: RNNParams) -> dict[str, Any]:
        return {}

    def result(self, params: RNNParams, res: Any, x: Any, h0: Any, c0: Any, lengths: Any,
               mask: Any) -> Any:
        return res

    def round_trip(self, params: RNNParams) -> RNNParams:
        return params


def _cells(params: RNNParams, fn: Any) -> RNNParams:
    """``params`` with ``fn`` applied to every Elman cell (the gated cells as they are)."""
    layers = [[fn(c) if isinstance(c, CellParams) else c for c in layer]
              for layer in params.layers]
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

    def result(self, params: RNNParams, res: Any, x: Any, h0: Any, c0: Any, lengths: Any,
               mask: Any) -> Any:
        full = rnn_ref.forward(params, x, h0=h0, c0=c0, compute_dtype=params.dtype)
        return res.outputs, full.h_n, full.c_n


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

    def result(self, params: RNNParams, res: Any, x: Any, h0: Any, c0: Any, lengths: Any,
               mask: Any) -> Any:
        cfg = params.config
        if not cfg.head or not isinstance(cfg.head[-1].activation, Softmax):
            return res
        head = [*cfg.head[:-1], Dense(cfg.head[-1].units, "linear", cfg.head[-1].bias)]
        logits = rnn_ref.forward(RNNParams(cfg.replace(head=head), params.layers,
                                           embedding=params.embedding, head=params.head),
                                 x, h0=h0, c0=c0, lengths=lengths, mask=mask,
                                 compute_dtype=params.dtype).y
        axis = 1 if logits.ndim == 3 else 0
        e = np.exp(logits - logits.max(axis=axis, keepdims=True))
        return rnn_ref.ForwardResult(res.outputs, res.h_n, e / e.sum(axis=axis, keepdims=True),
                                     res.selected, res.c_n)


class FinalStateOfTheWrongDirection(Correct):
    """Takes ``h_n[-1]`` for ``h_n[-2]`` and the other way round (and the halves of a merged
    bidirectional final state in the wrong order)."""

    name = "planted-final-state-wrong-direction"

    def result(self, params: RNNParams, res: Any, x: Any, h0: Any, c0: Any, lengths: Any,
               mask: Any) -> Any:
        swap = {"final_forward": "final_backward", "final_backward": "final_forward"}
        cfg = params.config
        if cfg.select in swap:
            wrong = params.replace(select=swap[cfg.select])
        elif cfg.select == "final" and cfg.directions[-1] == "bidirectional":
            last = list(params.layers)
            last[-1] = list(reversed(last[-1]))
            wrong = RNNParams(cfg, last, embedding=params.embedding, head=params.head)
            full = rnn_ref.forward(wrong, x, h0=h0, c0=c0, lengths=lengths, mask=mask,
                                   compute_dtype=params.dtype)
            return rnn_ref.ForwardResult(res.outputs, res.h_n, full.y, full.selected, res.c_n)
        else:
            return res
        return rnn_ref.forward(wrong, x, h0=h0, c0=c0, lengths=lengths, mask=mask,
                               compute_dtype=params.dtype)


class PaddingIdIgnored(Correct):
    """Embeds id 0 like any other token (Keras ``mask_zero`` ignored)."""

    name = "planted-padding-id-ignored"

    def params(self, params: RNNParams) -> RNNParams:
        return params.replace(mask_zero=False) if params.config.mask_zero else params


class HeadBeforeSelection(Correct):
    """Applies the head to every step, then takes the last step (not the final state)."""

    name = "planted-head-before-selection"

    def result(self, params: RNNParams, res: Any, x: Any, h0: Any, c0: Any, lengths: Any,
               mask: Any) -> Any:
        cfg = params.config
        if not cfg.head or cfg.select == "sequence" or cfg.select.startswith("final_"):
            return res
        per_step = rnn_ref.forward(params.replace(select="sequence"), x, h0=h0, c0=c0,
                                   lengths=lengths, mask=mask, compute_dtype=params.dtype)
        return rnn_ref.ForwardResult(res.outputs, res.h_n, per_step.y[:, -1], res.selected,
                                     res.c_n)


class MeanOverPadding(Correct):
    """Averages over all T steps where the mean is over the valid ones (torch's
    ``out.mean(dim=1)`` taken for Keras' masked ``GlobalAveragePooling1D``)."""

    name = "planted-mean-over-padding"

    def params(self, params: RNNParams) -> RNNParams:
        if params.config.select != "mean_valid":
            return params
        return params.replace(select="mean_all", padded_output="zeros")


# -- the gated cells (../shared/GATED.md: the issue numbers are its tables') -------------------
def _gated_cells(params: RNNParams, fn: Callable[[Any, int], AnyCellParams]) -> RNNParams:
    """``params`` with ``fn(cell, layer)`` applied to every GRU and LSTM cell."""
    layers = [[fn(c, li) if isinstance(c, (GRUParams, LSTMParams)) else c for c in layer]
              for li, layer in enumerate(params.layers)]
    return RNNParams(params.config, layers, embedding=params.embedding, head=params.head)


def _blocks(cell: Any, fn: Callable[[dict[str, Any]], dict[str, Any]],
            kinds: tuple[str, ...] = ("w_x", "w_h", "b_x", "b_h")) -> dict[str, Any]:
    """The cell's four block mappings, ``fn`` applied to those of ``kinds``."""
    return {k: fn(dict(getattr(cell, k))) if k in kinds else dict(getattr(cell, k))
            for k in ("w_x", "w_h", "b_x", "b_h")}


def _rebuilt(cell: Any, blocks: dict[str, Any], p: Any = None, w_proj: Any = None) -> Any:
    if isinstance(cell, GRUParams):
        return GRUParams(**blocks)
    return LSTMParams(**blocks, p=cell.p if p is None else p,
                      w_proj=cell.w_proj if w_proj is None else w_proj)


class GRUGatesSwapped(Correct):
    """Reads torch's packed r, z, n as Keras' z, r, n (keras #15915, #8720): z and r swap."""

    name = "planted-gru-z-r-swapped"

    def params(self, params: RNNParams) -> RNNParams:
        def swap(c: Any, li: int) -> Any:
            if not isinstance(c, GRUParams):
                return c
            return _rebuilt(c, _blocks(c, lambda b: {**b, "z": b["r"], "r": b["z"]}))
        return _gated_cells(params, swap)


class LSTMOnnxOrderReadAsTorch(Correct):
    """Reads ONNX's packed i, o, f, c as torch's i, f, g, o (CrispASR PR #106)."""

    name = "planted-lstm-onnx-order-read-as-torch"

    def params(self, params: RNNParams) -> RNNParams:
        def misread(c: Any, li: int) -> Any:
            if not isinstance(c, LSTMParams) or "f" not in c.gates:
                return c
            return _rebuilt(c, _blocks(c, lambda b: unpack(pack(b, "lstm:onnx", cell="lstm"),
                                                           "lstm:torch", cell="lstm")))
        return _gated_cells(params, misread)


class GRUResetPlacementSwapped(Correct):
    """Computes the other GRU: reset after for before and the other way round (pytorch
    #189225, onnxscript #2852: linear_before_reset lost on export)."""

    name = "planted-gru-reset-placement-swapped"

    def params(self, params: RNNParams) -> RNNParams:
        cells = params.config.cells
        if not any(c.kind == "gru" for c in cells):
            return params
        return params.replace(reset_after=[not c.reset_after if c.kind == "gru" else None
                                           for c in cells])


class GRUBhnDropped(Correct):
    """Drops the recurrent bias of the candidate, ``b_h["n"]`` (flax #5594: nnx GRUCell)."""

    name = "planted-gru-b_hn-dropped"

    def params(self, params: RNNParams) -> RNNParams:
        def drop(c: Any, li: int) -> Any:
            if not isinstance(c, GRUParams):
                return c
            return _rebuilt(c, _blocks(c, lambda b: {**b, "n": np.zeros_like(b["n"])},
                                       ("b_h",)))
        return _gated_cells(params, drop)


class GRUBhnOutsideReset(Correct):
    """Adds ``b_h["n"]`` outside ``r *`` where the reset comes after (Core ML's MIL ``gru``,
    coremltools #1124): ``r * (h W_hn) + b_hn``."""

    name = "planted-gru-b_hn-outside-reset"

    def params(self, params: RNNParams) -> RNNParams:
        def move(c: Any, li: int) -> Any:
            if not isinstance(c, GRUParams) or not params.config.cell_of(li).reset_after:
                return c
            blocks = _blocks(c, lambda b: b)
            blocks["b_x"]["n"] = c.b_x["n"] + c.b_h["n"]
            blocks["b_h"]["n"] = np.zeros_like(c.b_h["n"])
            return GRUParams(**blocks)
        return _gated_cells(params, move)


class PeepholesOnnxOrderReadAsIFO(Correct):
    """Reads ONNX's peepholes ``P = [Pi, Po, Pf]`` as i, f, o (opencv PR #29931)."""

    name = "planted-peepholes-onnx-order-read-as-ifo"

    def params(self, params: RNNParams) -> RNNParams:
        def misread(c: Any, li: int) -> Any:
            if not isinstance(c, LSTMParams) or c.p is None or "f" not in c.p:
                return c
            return _rebuilt(c, _blocks(c, lambda b: b), p={"i": c.p["i"], "f": c.p["o"],
                                                           "o": c.p["f"]})
        return _gated_cells(params, misread)


class ForgetBiasPlusOne(Correct):
    """Adds TF1's ``forget_bias=1`` at run time to a bias that already holds it (tvm PR
    #3410): ``b_x["f"] + 1``."""

    name = "planted-forget-bias-plus-one"

    def params(self, params: RNNParams) -> RNNParams:
        def shift(c: Any, li: int) -> Any:
            if not isinstance(c, LSTMParams) or "f" not in c.gates:
                return c
            return _rebuilt(c, _blocks(c, lambda b: {**b, "f": b["f"] + b["f"].dtype.type(1)},
                                       ("b_x",)))
        return _gated_cells(params, shift)


class Keras2HardSigmoidAsKeras3(Correct):
    """Computes Keras 2's ``hard_sigmoid`` (0.2 z + 0.5) as Keras 3's (z / 6 + 0.5): a
    tf.keras LSTM rebuilt in Keras 3 with its weights (keras PR #19477, tensorflow #65381)."""

    name = "planted-keras2-hard-sigmoid-as-keras3"

    def params(self, params: RNNParams) -> RNNParams:
        cfg = params.config
        k2, k3 = Activation("hard_sigmoid", 0.2, 0.5), Activation("hard_sigmoid", 1 / 6, 0.5)
        gates = [None if c.kind == "elman" else tuple(
            k3 if cfg.activations_of(li, r)[0] == k2 else cfg.activations_of(li, r)[0]
            for r in range(cfg.num_directions_of(li))) for li, c in enumerate(cfg.cells)]
        return params if cfg.is_elman else params.replace(recurrent_activation=gates)


class ProjectionSkipped(Correct):
    """Skips the LSTM's projection, keeping the first P units of ``o * h(c)`` (the identity
    for ``w_proj``): torch ``proj_size`` lost (torch dynamo export E1, icefall PR #621)."""

    name = "planted-projection-skipped"

    def params(self, params: RNNParams) -> RNNParams:
        def skip(c: Any, li: int) -> Any:
            if not isinstance(c, LSTMParams) or c.w_proj is None:
                return c
            m, p = c.w_proj.shape
            return _rebuilt(c, _blocks(c, lambda b: b),
                            w_proj=np.eye(m, p, dtype=c.w_proj.dtype))
        return _gated_cells(params, skip)


class CellStateFromTheLastPosition(Correct):
    """Takes ``c_n`` at position T-1 of a run through the padded steps rather than at each
    sample's last valid step (the final cell state of the wrong step)."""

    name = "planted-c_n-from-the-wrong-step"

    def result(self, params: RNNParams, res: Any, x: Any, h0: Any, c0: Any, lengths: Any,
               mask: Any) -> Any:
        if res.c_n is None:
            return res
        full = rnn_ref.forward(params, x, h0=h0, c0=c0, compute_dtype=params.dtype)
        return rnn_ref.ForwardResult(res.outputs, res.h_n, res.y, res.selected, full.c_n)


class TinyLSTM:
    """A third party's LSTM kernel: NumPy, written from the equations (docs/spec.md 2.7.2),
    not calling the oracle. It implements stacks of LSTM layers (forward, reverse,
    bidirectional with concatenated outputs), ``h0``/``c0``, lengths and masks with each
    padded-output mode, peepholes, ``input_forget``, a projection, clip and any activation;
    it declares ``cells = ("lstm",)`` and refuses the rest in ``supports``."""

    name = "tiny-lstm"
    cells = ("lstm",)
    carry_c = True  # the cell state is kept over padded steps, as h is

    def supports(self, config: Any, *, dtype: Any, lengths: bool, mask: bool) -> str | None:
        if set(config.merge_modes) != {"concat"}:
            return f"merge modes {config.merge_modes}: concat only"
        if config.output_order != "aligned":
            return "output_order 'processing'"
        return None

    def forward(self, params: RNNParams, x: Any, *, h0: Any = None, c0: Any = None,
                lengths: Any = None, mask: Any = None) -> Any:
        cfg, dt = params.config, params.dtype
        reason = self.supports(cfg, dtype=dt, lengths=lengths is not None, mask=mask is not None)
        if reason is not None:
            raise NotImplementedError(f"{self.name}: {reason}")
        n, t = x.shape[:2]
        valid = np.ones((n, t), bool)
        if lengths is not None:
            valid = np.arange(t)[None, :] < np.asarray(lengths)[:, None]
        if mask is not None:
            valid = np.asarray(mask, bool)
        layer_in, h_n, c_n = np.asarray(x, dt), [], []
        for li, layer in enumerate(params.layers):
            outs = []
            for r, cell in enumerate(layer):
                s, k = cfg.state_index(li, r), cfg.cell_state_index(li, r)
                m, p = cell.hidden_size, cell.output_size
                h = np.zeros((n, p), dt) if h0 is None else np.asarray(h0[s], dt)
                c = np.zeros((n, m), dt) if c0 is None else np.asarray(c0[k], dt)
                out, last = np.zeros((n, t, p), dt), np.zeros((n, p), dt)
                for step in (range(t - 1, -1, -1) if cfg.is_reverse(li, r) else range(t)):
                    h2, c2 = self._step(cell, cfg, li, r, layer_in[:, step], h, c)
                    v = valid[:, step, None]
                    h = np.where(v, h2, h)
                    c = np.where(v, c2, c) if self.carry_c else c2
                    last = np.where(v, h, last)
                    out[:, step] = {"zeros": np.where(v, h, 0), "carry_output": last,
                                    "carry_state": h}[cfg.padded_output]
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_in = np.concatenate(outs, axis=-1)
        stack = (lambda a: np.stack(a)) if cfg.uniform_hidden else tuple
        return layer_in, stack(h_n), np.stack(c_n) if cfg.uniform_cell else tuple(c_n)

    @staticmethod
    def _step(cell: LSTMParams, cfg: Any, li: int, r: int, x: Any, h: Any, c: Any
              ) -> tuple[Any, Any]:
        f, g, act_h = cfg.activations_of(li, r)
        clip = cfg.clips[li]
        peep = cell.p or {}

        def pre(gate: str, state: Any = None) -> Any:
            z = x @ cell.w_x[gate] + cell.b_x[gate] + h @ cell.w_h[gate] + cell.b_h[gate]
            if gate in peep:
                z = z + peep[gate] * state
            return z if clip is None else np.clip(z, -clip, clip)

        i = f(pre("i", c))
        forget = 1 - i if "f" not in cell.gates else f(pre("f", c))
        c2 = forget * c + i * g(pre("g"))
        o = f(pre("o", c2))
        h2 = o * act_h(c2 if clip is None else np.clip(c2, -clip, clip))
        return (h2 if cell.w_proj is None else h2 @ cell.w_proj), c2


class CellStateNotCarried(TinyLSTM):
    """:class:`TinyLSTM` updating the cell state at padded steps (h is kept, c is not)."""

    name = "planted-cell-state-not-carried"
    carry_c = False


BROKEN = [TransposedRecurrent, SwappedBiases, DroppedBias, ReverseNotRealigned,
          PaddingNotZeroed, FinalStateAfterPadding, AllTanh, ClipIgnored, DirectionsSwapped,
          ReturnsNumbersWhenUnsupported, DropoutAtInference, SoftmaxWrongAxis,
          FinalStateOfTheWrongDirection, PaddingIdIgnored, HeadBeforeSelection,
          MeanOverPadding]

GATED_BROKEN = [GRUGatesSwapped, LSTMOnnxOrderReadAsTorch, GRUResetPlacementSwapped,
                GRUBhnDropped, GRUBhnOutsideReset, PeepholesOnnxOrderReadAsIFO,
                ForgetBiasPlusOne, Keras2HardSigmoidAsKeras3, ProjectionSkipped,
                CellStateNotCarried, CellStateFromTheLastPosition]
