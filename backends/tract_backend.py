"""tract: the ONNX graph of :func:`rnn_ref.backends.onnx_backend.to_native` run by Sonos'
tract (the ``tract`` Python package, float32).

How tract differs from the spec (tract 0.23.9, ``onnx/src/ops/rec/rnn.rs`` and
``onnx/src/ops/rec/common.rs``; each fact is reproduced by ``tests/test_backend_tract.py`` and
recorded in ``known_deviations/tract.json``):

* **direction="reverse"** (spec 4.1): a one-direction node marked ``reverse`` is computed as a
  forward one (the backward half of a bidirectional node is right). Recorded as a deviation:
  the suite reports reverse cases as known.
* **Activations** (spec 2.3): every activation but Tanh is computed as tanh (the node's
  ``activations`` attribute is not applied). The backend refuses non-tanh activations rather
  than return a tanh network's numbers.
* **clip** (spec 2.2): ignored. The backend refuses clipped networks.
* **sequence_lens** (spec 4.3): refused when the graph is made runnable ("Non constant seq_len
  is not supported"; a constant one with different lengths: "Non uniform seq_len is not
  supported"), so the backend takes no padding.
* Symbolic dimensions: the graph's ``N`` and ``T`` axes are fixed per call with
  ``set_input_fact`` before tract types and optimises the model (one model per call).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import onnx

from rnn_ref.backends._common import raise_if
from rnn_ref.backends._frameworks import tract_unsupported as unsupported
from rnn_ref.backends.onnx_backend import graph_feeds, graph_result, to_native
from rnn_ref.config import RNNConfig
from rnn_ref.errors import UnsupportedError
from rnn_ref.inputs import check_inputs
from rnn_ref.params import RNNParams
from rnn_ref.reference import ForwardResult

__all__ = ["TractBackend", "run_graph", "unsupported"]

NAME = "tract"


def _fact(a: np.ndarray[Any, Any]) -> str:
    kind = {np.dtype(np.float32): "f32", np.dtype(np.int32): "i32"}[a.dtype]
    return ",".join([*(str(s) for s in a.shape), kind])


def run_graph(graph: onnx.ModelProto, feeds: dict[str, np.ndarray[Any, Any]]
              ) -> dict[str, np.ndarray[Any, Any]]:
    """The ONNX ``graph`` run by tract on ``feeds`` (by input name): the outputs by the
    graph's output names. Each input's shape is set as its fact first (tract names outputs
    after nodes, so they are taken in the graph's order)."""
    import tract

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.onnx")
        with open(path, "wb") as fh:
            fh.write(graph.SerializeToString())
        model = tract.onnx().load(path)
    initializers = {t.name for t in graph.graph.initializer}
    names = [i.name for i in graph.graph.input if i.name not in initializers]
    out_names = [o.name for o in graph.graph.output]
    for i, name in enumerate(names):
        model.set_input_fact(i, _fact(feeds[name]))
    runnable = model.into_model().into_runnable()
    outs = runnable.run([feeds[n] for n in names])
    return {n: np.asarray(t.to_numpy()) for n, t in zip(out_names, outs, strict=True)}


class TractBackend:
    """The graph of :func:`to_native` run by tract (float32, no padding)."""

    name = "tract"

    def supports(self, config: RNNConfig, *, dtype: Any, lengths: bool, mask: bool
                 ) -> str | None:
        if lengths or mask:
            return "lengths or a mask: tract refuses sequence_lens ('Non constant seq_len')"
        reason = unsupported(config, padded=False)
        if reason is not None:
            return f"{reason[0]}: {reason[1]}"
        if np.dtype(dtype) != np.float32:
            return f"dtype {np.dtype(dtype)}: the tract backend runs float32 only"
        return None

    def forward(self, params: RNNParams, x: np.ndarray[Any, Any], *, h0: Any = None,
                lengths: Any = None, mask: Any = None) -> ForwardResult:
        """As :meth:`rnn_ref.backends.onnx_backend.OnnxRuntimeBackend.forward`, computed by
        tract, without padding (float32)."""
        cfg = params.config
        inputs = check_inputs(cfg, x, h0=h0, lengths=lengths, mask=mask, where=self.name)
        if inputs.padding is not None:
            raise UnsupportedError(self.name, "lengths or a mask",
                                   "tract refuses sequence_lens ('Non constant seq_len is not "
                                   "supported')")
        if params.dtype != np.float32:
            raise UnsupportedError(self.name, f"dtype {params.dtype}", "float32 only")
        raise_if(unsupported(cfg, padded=False), self.name)
        model = to_native(params, initial_state=inputs.h0 is not None, expose_outputs=True)
        got = run_graph(model, graph_feeds(cfg, inputs, None))
        return graph_result(cfg, got)
