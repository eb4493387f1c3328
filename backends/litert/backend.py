"""LiteRT's backends: the graph of :func:`rnn_ref.backends.litert.convert.to_native` run by
``ai_edge_litert``'s interpreter: of the Keras 3 model, with its ``WHILE`` loops
(``litert``) or unrolled (``litert[unrolled]``), or of the tf-keras model (``litert[keras2]``:
fused LSTMs where tf-keras fuses them); float32 only."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnn_ref.backends.litert.convert import FLOAT32_ONLY, Array, to_native
from rnn_ref.backends.litert.record import fused_lstm_layers, keras2_unsupported, unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.inputs import Inputs, check_inputs
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["LiteRtBackend", "LiteRtKeras2Backend", "LiteRtUnrolledBackend", "interpreter",
           "invoke"]


# --------------------------------------------------------------------------------------------
# running a flatbuffer
# --------------------------------------------------------------------------------------------
def interpreter(model: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model)


def invoke(model: bytes, feeds: dict[str, Array]) -> list[Array]:
    """The graph's outputs in order for ``feeds`` by input name: each input resized to its
    feed's shape, the tensors allocated, one ``invoke``.

    The converter names things two ways: a graph with a ``WHILE`` keeps the function's
    signature (``serving_default``: inputs by their ``TensorSpec`` names, outputs
    ``output_0``, ``output_1``, ... in order); a graph without control flow (the unrolled
    one) goes through the frozen-graph path, has no signature, and names its inputs as the
    specs and its outputs ``Identity``, ``Identity_1``, ... in order."""
    it = interpreter(model)
    if it.get_signature_list():
        runner = it.get_signature_runner()
        inputs = {k: d["index"] for k, d in runner.get_input_details().items()}
        outputs = {k: d["index"] for k, d in runner.get_output_details().items()}
        del runner  # it holds the interpreter, which refuses to resize while referenced
    else:
        inputs = {d["name"]: d["index"] for d in it.get_input_details()}
        outputs = {d["name"]: d["index"] for d in it.get_output_details()}
    if set(inputs) != set(feeds):
        raise ValueError(f"the graph takes {sorted(inputs)}, got {sorted(feeds)}")
    details = {d["index"]: d for d in it.get_input_details()}
    for name, index in inputs.items():
        it.resize_tensor_input(index, list(np.shape(feeds[name])))
    it.allocate_tensors()
    for name, index in inputs.items():
        it.set_tensor(index, np.ascontiguousarray(feeds[name], dtype=details[index]["dtype"]))
    it.invoke()
    return [np.array(it.get_tensor(outputs[k])) for k in sorted(outputs, key=_output_number)]


def _output_number(name: str) -> int:
    """``output_3``, ``Identity_3`` or ``out_03`` (the function's own names, which an
    unfrozen graph keeps) -> 3, ``Identity`` -> 0."""
    head, _, tail = name.rpartition("_")
    if name == "Identity":
        return 0
    if head in ("output", "Identity", "out") and tail.isdigit():
        return int(tail)
    raise ValueError(f"unexpected output name {name!r} in the converted graph")


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------
class LiteRtBackend:
    """The ``WHILE`` graph of :func:`~rnn_ref.backends.litert.convert.to_native` (of the
    Keras 3 model) run by LiteRT's interpreter (float32)."""

    name = "litert"
    unroll = False
    keras = 3

    def _unsupported(self, config: RNNConfig, padded: bool) -> Any:
        return unsupported(config, padded=padded)

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        reason = self._unsupported(config, lengths or mask)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        if np.dtype(dtype) != np.float32:
            return f"dtype {np.dtype(dtype)}: {FLOAT32_ONLY}"
        return None

    def _run(self, params: RNNParams, inputs: Inputs, valid: Any, *, states: bool
             ) -> list[Array]:
        """The converted graph's outputs on ``inputs`` (the backends' graph: the sequences,
        then with ``states`` every final ``h`` and ``c``, then the readout's)."""
        cfg = params.config
        n, t = inputs.x.shape[:2]
        given = inputs.h0 is not None or inputs.c0 is not None
        model = to_native(params, unroll=self.unroll, batch=n,
                          time=t if self.unroll else None, states=states,
                          initial_state=given, mask=valid is not None, keras=self.keras)
        feeds = {"x": inputs.x}
        if given:
            feeds.update({f"h0_{i}": h for i, h in enumerate(inputs.h0_or_zeros(params.dtype))})
            if cfg.num_cell_states:
                feeds.update({f"c0_{j}": c for j, c in enumerate(
                    inputs.c0_or_zeros(params.dtype))})
        if valid is not None:
            feeds["mask"] = valid
        return invoke(model, feeds)

    def forward(self, params: RNNParams, x: Array, *, h0: Any = None, lengths: Any = None,
                mask: Any = None, c0: Any = None) -> ForwardResult:
        """The network on ``x (N, T, D)`` with ``h0`` (and an LSTM's ``c0``) and ``lengths``
        or ``mask``, computed by LiteRT: ``outputs (N, T, F)`` (a pair for
        ``merge_mode=None``), ``h_n``, ``c_n`` and ``y``, float32."""
        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name,
                              c0=c0)
        valid = inputs.mask_or_none()
        problem = self.supports(cfg, dtype=params.dtype, lengths=valid is not None, mask=False)
        if problem is not None:
            raise UnsupportedError(self.name, problem)
        got = self._run(params, inputs, valid, states=True)
        n_out = 2 if cfg.directions[-1] == "bidirectional" and cfg.merge_modes[-1] is None \
            else 1
        S, C = len(cfg.state_sizes), cfg.num_cell_states
        outputs: Any = tuple(got[:n_out]) if n_out == 2 else got[0]
        h_n, c_n = got[n_out:n_out + S], got[n_out + S:n_out + S + C]
        y = got[n_out + S + C] if params.readout is not None else None
        return ForwardResult(outputs, _stacked(h_n), y, c_n=_stacked(c_n) if C else None)


def _stacked(arrays: list[Array]) -> Any:
    """One ``(S, N, M)`` array when every state has one shape, else the tuple."""
    return np.stack(arrays) if len({a.shape for a in arrays}) == 1 else tuple(arrays)


class LiteRtUnrolledBackend(LiteRtBackend):
    """``litert[unrolled]``: the layers built with ``unroll=True`` (no ``WHILE``)."""

    name = "litert[unrolled]"
    unroll = True


class LiteRtKeras2Backend(LiteRtBackend):
    """``litert[keras2]``: the graph of the tf-keras model (``to_native(..., keras=2)``). The
    outputs and the readout's come from the graph without states, the one a
    ``tflite-keras2`` file holds, where an LSTM layer with tanh, sigmoid gates, a bias and
    no mask is the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM``; the final states from a second
    graph that returns them (tf-keras' LSTM returning its ``c`` is a ``WHILE`` loop)."""

    name = "litert[keras2]"
    keras = 2

    def _unsupported(self, config: RNNConfig, padded: bool) -> Any:
        return keras2_unsupported(config, padded=padded)

    def forward(self, params: RNNParams, x: Array, *, h0: Any = None, lengths: Any = None,
                mask: Any = None, c0: Any = None) -> ForwardResult:
        res = super().forward(params, x, h0=h0, lengths=lengths, mask=mask, c0=c0)
        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name,
                              c0=c0)
        valid = inputs.mask_or_none()
        if valid is not None or not fused_lstm_layers(cfg):
            return res  # no fused LSTM: the graph without states is the same loops
        got = self._run(params, inputs, valid, states=False)
        n_out = 2 if cfg.directions[-1] == "bidirectional" and cfg.merge_modes[-1] is None \
            else 1
        outputs: Any = tuple(got[:n_out]) if n_out == 2 else got[0]
        y = got[n_out] if params.readout is not None else None
        return ForwardResult(outputs, res.h_n, y, c_n=res.c_n)
