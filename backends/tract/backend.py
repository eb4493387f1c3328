"""tract: the ONNX graph of :func:`rnn_ref.backends.onnx.convert.to_native` run by Sonos'
tract (the ``tract`` Python package, float32).

How tract differs from the spec (tract 0.23.9, ``onnx/src/ops/rec/rnn.rs``, ``gru.rs``,
``lstm.rs`` and ``common.rs``; each fact is reproduced by ``tests/test_backend_tract.py`` or
``tests/test_runtimes_gated.py`` and recorded in ``tract/deviations/tract.json``):

* **direction="reverse"** (spec 4.1): a one-direction RNN, GRU or LSTM node marked
  ``reverse`` is computed as a forward one (the backward half of a bidirectional node is
  right). Recorded as a deviation: the suite reports reverse cases as known.
* **Activations** (spec 2.3, 2.7): every activation is computed as the operator's default
  (RNN tanh; GRU and LSTM sigmoid, tanh, tanh): the node's ``activations`` attribute is not
  applied. The backend refuses other activations rather than return the defaults' numbers.
* **clip** (spec 2.2, 2.7.3): ignored, by every node. The backend refuses clipped networks.
* **input_forget** (spec 2.7.2): ignored (the forget gate is computed from its own rows). The
  forget rows ``to_onnx`` writes are the input gate's negated, which compute ``1 - i`` with
  the sigmoid tract computes, so the backend runs these LSTMs right.
* **An LSTM's Y_c without initial_c**: a one-direction LSTM node without ``initial_c``
  whose ``Y_c`` and ``Y`` or ``Y_h`` are used is refused at run time for N > 1 ("Clashing
  resolution for expression"); the backend gives graphs with LSTM layers zero initial
  states.
* **Saturated gates**: tract's sigmoid has an absolute error of about 4e-7, not a relative
  one (``sigmoid(-20)`` is 4.4e-7, not 2.1e-9), and its tanh stops at 1 - 6e-7: a gate that
  saturates carries a relative error of 1% and more (a recorded, varying deviation).
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

from rnn_ref.backends.onnx.backend import OnnxGraphBackend
from rnn_ref.backends.tract.record import unsupported
from rnn_ref.config import RNNConfig

__all__ = ["TractBackend", "run_graph", "unsupported"]

NAME = "tract"


def _fact(a: np.ndarray[Any, Any]) -> str:
    kind = {np.dtype(np.float32): "f32", np.dtype(np.int32): "i32",
            np.dtype(np.int64): "i64"}[a.dtype]
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


class TractBackend(OnnxGraphBackend):
    """The graph of :func:`to_native` run by tract (float32, no padding)."""

    name = "tract"
    padding_refusal = "tract refuses sequence_lens ('Non constant seq_len is not supported')"

    def rules(self, config: RNNConfig, *, padded: bool) -> tuple[str, str] | None:
        return unsupported(config, padded=False)

    def zero_states(self, config: RNNConfig) -> bool:
        """A graph with LSTM layers always takes ``h0`` and ``c0`` (zeros when not given):
        tract refuses a one-direction LSTM node without ``initial_c`` whose ``Y_c`` and
        ``Y`` or ``Y_h`` are used, for N > 1 (``lstm-y-c-without-initial-c-refused``)."""
        return config.num_cell_states > 0

    def run(self, model: Any, feeds: dict[str, np.ndarray[Any, Any]]
            ) -> dict[str, np.ndarray[Any, Any]]:
        return run_graph(model, feeds)
