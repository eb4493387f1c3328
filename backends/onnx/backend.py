"""The runtimes of ONNX graphs: :class:`OnnxGraphBackend`, ``supports`` and ``forward`` written
once for every runtime that runs the graphs of :func:`rnn_ref.backends.onnx.convert.to_native`
(onnxruntime here; OpenVINO and tract in their own packages), and :class:`OnnxRuntimeBackend`."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from rnn_ref.backends._common import raise_if
from rnn_ref.backends.onnx.convert import from_native, to_native
from rnn_ref.backends.onnx.graph import graph_result as _graph_result
from rnn_ref.backends.onnx.record import unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.inputs import Inputs, check_inputs
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["OnnxGraphBackend", "OnnxRuntimeBackend", "graph_feeds", "graph_result"]


def _state_feeds(cfg: RNNConfig, which: str, states: tuple[np.ndarray[Any, Any], ...]
                 ) -> dict[str, np.ndarray[Any, Any]]:
    """Initial states (``which="h"``: S states by ``state_index``; ``"c"``: the LSTM layers'
    C cell states by ``cell_state_index``) as the graph's ``h0``/``c0`` feed, or one
    ``h0_l{l}``/``c0_l{l}`` per layer when the widths differ, float32."""
    uniform = cfg.uniform_hidden if which == "h" else cfg.uniform_cell
    if uniform:
        return {f"{which}0": np.stack(states).astype(np.float32)}
    index = cfg.state_index if which == "h" else cfg.cell_state_index
    return {f"{which}0_l{li}": np.stack([np.asarray(states[index(li, r)], np.float32)
                                         for r in range(cfg.num_directions_of(li))])
            for li in range(cfg.num_layers) if which == "h" or cfg.cell_of(li).kind == "lstm"}


def graph_feeds(cfg: RNNConfig, inputs: Inputs, lengths: np.ndarray[Any, Any] | None, *,
                initial_state: bool = False) -> dict[str, np.ndarray[Any, Any]]:
    """The feeds of a :func:`to_native` graph, by input name: float32 ``x``, or int64 token
    ids (with ``mask_zero``, id 0 at every step ``inputs.valid`` says is padding, so the graph
    derives the lengths of a caller's mask or lengths too), ``lengths``, and when either is
    given (or ``initial_state``) ``h0`` and an LSTM's ``c0`` (zeros for one not given)."""
    if cfg.vocab_size is None:
        x = np.asarray(inputs.x, np.float32)
    else:
        x = np.asarray(inputs.x, np.int64)
        x = np.where(inputs.valid, x, 0) if cfg.mask_zero else x
    feeds: dict[str, np.ndarray[Any, Any]] = {"x": x}
    if lengths is not None:
        feeds["lengths"] = lengths.astype(np.int32)
    if initial_state or inputs.h0 is not None or inputs.c0 is not None:
        feeds |= _state_feeds(cfg, "h", inputs.h0_or_zeros(np.float32))
        if cfg.num_cell_states:
            feeds |= _state_feeds(cfg, "c", inputs.c0_or_zeros(np.float32))
    return feeds


def graph_result(cfg: RNNConfig, got: dict[str, np.ndarray[Any, Any]]) -> ForwardResult:
    """A :class:`ForwardResult` from a :func:`to_native` graph's outputs, by name (written
    with ``expose_outputs=True``)."""
    return _graph_result(cfg, got)


def _lengths(name: str, inputs: Inputs) -> np.ndarray[Any, Any] | None:
    """The ``lengths`` feed: right-padded lengths, or ``None``; for ``mask_zero`` always
    ``None``: the graph derives the mask from the ids, any pattern (:func:`graph_feeds` puts
    id 0 at every step a caller's lengths or mask pad)."""
    return None if inputs.config.mask_zero else inputs.lengths_or_none(name)


# --------------------------------------------------------------------------------------------
# the onnxruntime backend
# --------------------------------------------------------------------------------------------
class OnnxGraphBackend:
    """A runtime that runs the graphs of :func:`to_native` in float32: ``supports`` and
    ``forward`` written once for onnxruntime, OpenVINO and tract. A subclass sets ``name``,
    ``padding_refusal`` (``None``: it takes right-padded lengths as ``sequence_lens``; else
    why it takes neither lengths nor masks) and :meth:`rules`, and implements :meth:`run`."""

    name = ""
    padding_refusal: str | None = None

    def rules(self, config: RNNConfig, *, padded: bool) -> tuple[str, str] | None:
        """``(feature, why)`` for what the runtime cannot run, else ``None``."""
        return unsupported(config, padded=padded)

    def zero_states(self, config: RNNConfig) -> bool:
        """Whether the graph takes its initial states as inputs, fed zeros, when the call
        gives none (a workaround for a runtime that mishandles absent states)."""
        return False

    def run(self, model: onnx.ModelProto, feeds: dict[str, np.ndarray[Any, Any]]
            ) -> dict[str, np.ndarray[Any, Any]]:
        """The graph's outputs by name, for ``feeds`` by input name."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to run a graph")

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        if self.padding_refusal is not None and (lengths or mask):
            return f"lengths or a mask: {self.padding_refusal}"
        if mask and not config.mask_zero:
            return "a mask of any pattern: sequence_lens takes right-padded lengths"
        reason = self.rules(config, padded=lengths)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        if np.dtype(dtype) != np.float32:
            return f"dtype {np.dtype(dtype)}: {self.name} runs RNN graphs in float32 only"
        return None

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None, c0: Any = None) -> ForwardResult:
        """The graph on ``x (N, T, D)`` (token ids ``(N, T)`` with an embedding; with
        ``mask_zero`` any pattern of id 0, lengths or mask), ``h0 (S, N, M)`` (or S
        ``(N, M_l)``), the LSTM layers' ``c0 (C, N, M)`` (or C ``(N, M_l)``), ``lengths
        (N,)`` or a right-padded ``mask (N, T)``: ``outputs (N, T, F)`` (a pair of
        ``(N, T, M)`` for ``merge_mode=None``), ``h_n (S, N, M)`` (or S ``(N, M_l)``), ``y
        (N, T, K)`` or ``None`` and ``c_n (C, N, M)`` (``None`` without LSTM layers), in
        float32. Bad inputs raise as :func:`rnn_ref.inputs.check_inputs` says."""
        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name,
                              c0=c0)
        if self.padding_refusal is not None and inputs.padding is not None:
            raise UnsupportedError(self.name, "lengths or a mask", self.padding_refusal)
        la = _lengths(self.name, inputs)
        if params.dtype != np.float32:
            raise UnsupportedError(self.name, f"dtype {params.dtype}",
                                   "it runs RNN graphs in float32 only")
        raise_if(self.rules(cfg, padded=la is not None or inputs.padded), self.name)
        initial = inputs.h0 is not None or inputs.c0 is not None or self.zero_states(cfg)
        model = to_native(params, lengths=la is not None, initial_state=initial,
                          expose_outputs=True)
        feeds = graph_feeds(cfg, inputs, la, initial_state=initial)
        return graph_result(cfg, self.run(model, feeds))


class OnnxRuntimeBackend(OnnxGraphBackend):
    """The graph of :func:`to_native` run by onnxruntime's CPU provider (float32 only)."""

    name = "onnxruntime"

    def run(self, model: onnx.ModelProto, feeds: dict[str, np.ndarray[Any, Any]]
            ) -> dict[str, np.ndarray[Any, Any]]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in model.graph.output]
        return dict(zip(names, session.run(None, feeds), strict=True))

    def round_trip(self, params: RNNParams) -> RNNParams:
        """Through an ONNX graph (serialised and parsed again) and back."""
        model = to_native(params)
        return from_native(onnx.load_from_string(model.SerializeToString()))
