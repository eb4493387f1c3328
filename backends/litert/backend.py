"""LiteRT's backends: the graph of :func:`rnn_ref.backends.litert.convert.to_native` run by
``ai_edge_litert``'s interpreter, with its ``WHILE`` loop (``litert``) or unrolled
(``litert[unrolled]``); float32 only."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnn_ref.backends.litert.convert import FLOAT32_ONLY, Array, to_native
from rnn_ref.backends.litert.record import unsupported
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.inputs import check_inputs
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["LiteRtBackend", "LiteRtUnrolledBackend", "interpreter", "invoke"]


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
    """``output_3`` or ``Identity_3`` -> 3, ``Identity`` -> 0."""
    head, _, tail = name.rpartition("_")
    if name == "Identity":
        return 0
    if head in ("output", "Identity") and tail.isdigit():
        return int(tail)
    raise ValueError(f"unexpected output name {name!r} in the converted graph")


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------
class LiteRtBackend:
    """The ``WHILE`` graph of :func:`~rnn_ref.backends.litert.convert.to_native` run by
    LiteRT's interpreter (float32)."""

    name = "litert"
    unroll = False

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        reason = unsupported(config, padded=lengths or mask)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        if np.dtype(dtype) != np.float32:
            return f"dtype {np.dtype(dtype)}: {FLOAT32_ONLY}"
        return None

    def forward(self, params: RNNParams, x: Array, *, h0: Any = None, lengths: Any = None,
                mask: Any = None) -> ForwardResult:
        """The network on ``x (N, T, D)`` with ``h0`` and ``lengths`` or ``mask``, computed by
        LiteRT: ``outputs (N, T, F)`` (a pair for ``merge_mode=None``), ``h_n`` and ``y``,
        float32."""
        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name)
        valid = inputs.mask_or_none()
        problem = self.supports(cfg, dtype=params.dtype, lengths=valid is not None, mask=False)
        if problem is not None:
            raise UnsupportedError(self.name, problem)
        n, t = inputs.x.shape[:2]
        model = to_native(params, unroll=self.unroll, batch=n,
                          time=t if self.unroll else None, states=True,
                          initial_state=inputs.h0 is not None, mask=valid is not None)
        feeds = {"x": inputs.x}
        if inputs.h0 is not None:
            feeds.update({f"h0_{i}": h for i, h in enumerate(inputs.h0)})
        if valid is not None:
            feeds["mask"] = valid
        got = invoke(model, feeds)
        n_out = 2 if cfg.num_directions == 2 and cfg.merge_modes[-1] is None else 1
        n_states = cfg.num_layers * cfg.num_directions
        outputs: Any = tuple(got[:n_out]) if n_out == 2 else got[0]
        states = got[n_out:n_out + n_states]
        y = got[n_out + n_states] if params.readout is not None else None
        h_n: Any = np.stack(states) if cfg.uniform_hidden else tuple(states)
        return ForwardResult(outputs, h_n, y)


class LiteRtUnrolledBackend(LiteRtBackend):
    """``litert[unrolled]``: the layers built with ``unroll=True`` (no ``WHILE``)."""

    name = "litert[unrolled]"
    unroll = True
