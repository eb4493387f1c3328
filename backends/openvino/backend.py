"""OpenVINO: the ONNX graph of :func:`rnn_ref.backends.onnx.convert.to_native` run by OpenVINO's
CPU plugin, at the runtime's default inference precision (``openvino``) or in float32
(``openvino[f32]``).

How OpenVINO differs from the spec (OpenVINO 2026.4.1; its ONNX frontend,
``src/frontends/onnx/frontend/src/op/rnn.cpp``, ``gru.cpp``, ``lstm.cpp`` and
``utils/recurrent.cpp``, turns each ``RNN``, ``GRU`` and ``LSTM`` node into an
``RNNSequence``, ``GRUSequence`` or ``LSTMSequence``; every fact below is reproduced by
``tests/test_backend_openvino.py`` or ``tests/test_runtimes_gated.py`` and recorded in
``openvino/deviations/openvino.json`` / ``openvino_f32.json``):

* **Precision** (spec 4.6). The CPU plugin's default ``INFERENCE_PRECISION_HINT`` is bf16 on a
  CPU with AVX512-BF16 or AMX (``core.get_property("CPU", "INFERENCE_PRECISION_HINT")``):
  float32 graphs are computed with bf16 matrix products, 4e-3 to 1.2e-2 from the oracle on
  the quick matrix (bf16 keeps 8 bits). ``openvino`` keeps that default (its name records the
  hint it got, e.g. ``openvino`` results say ``bf16`` in :attr:`OpenVinoBackend.precision`);
  ``openvino[f32]`` compiles with ``INFERENCE_PRECISION_HINT=f32`` and is within float32's
  precision (about 1e-7).
* **sequence_lens with dynamic shapes** (spec 4.3). With the graph's dynamic ``N``/``T`` axes
  the CPU plugin ignores ``sequence_lens``: every sample runs all T steps, padded outputs are
  not zeroed and ``Y_h`` is the state after step T. With static shapes it is right, so the
  backends reshape the model to the call's shapes before compiling (one compile per call).
* **Per-direction activations** (spec 2.4). A bidirectional node with ``activations=[Relu,
  Tanh]`` computes Relu in both directions (the frontend passes one activation list to
  ``RNNSequence``, which takes one activation for every direction); a GRU or LSTM node
  likewise applies the forward direction's ``f, g[, h]`` to both. The backends refuse
  directions with different activations rather than compute the wrong network.
* **LSTM peepholes** (spec 2.7.2). The frontend drops an LSTM node's ``P`` (LSTMSequence-5
  has no peephole input) and computes the LSTM without them: refused.
* **LSTM input_forget** (spec 2.7.2). Ignored: the forget gate is computed from its own rows.
  The forget rows ``to_onnx`` writes are the input gate's negated, which compute ``1 - i``
  with a sigmoid recurrent activation, so the backends run those; with tanh or relu they
  refuse it.
* **LSTM clip** (spec 2.7.3). As onnxruntime (#27224), the input of ``h`` is not clipped:
  recorded as a deviation of the cases where ``|c_t|`` exceeds the clip.
* **Activations** (spec 2.3). The CPU plugin computes tanh, relu and sigmoid only: any other
  activation of an RNN, GRU or LSTM node (Softsign, Softplus, Elu, LeakyRelu, HardSigmoid,
  Affine and so ``linear``, ThresholdedRelu, ScaledTanh) is read but refused by
  ``compile_model`` ("Unknown activation function",
  ``src/common/transformations/src/transformations/utils/utils.cpp:294`` "Unsupported
  activation function"); :func:`unsupported` names them before OpenVINO is asked.
* **layout=1** (ONNX RNN-14). A batch-major node is read and compiled, but computes wrong
  values (1.7 from the oracle; a GRU's or LSTM's outputs come out in the wrong shape,
  ``(N, R, M)`` for ``(N, T, R*M)``, openvino #37820) and corrupts the heap (``free():
  invalid next size``, the process aborts). :func:`to_native` writes ``layout=0`` nodes, so
  the backends never meet it.
* **Zero lengths and empty sequences** (spec 4.4). As onnxruntime, the final state of a
  zero-length sequence is zeros, not ``h0`` (an LSTM's final cell state too, not ``c0``);
  an input with T = 0 is refused at inference ("could not create a primitive descriptor for
  the vanilla RNN forward propagation primitive").
* dtypes: the backends take float32 parameters only (OpenVINO's CPU plugin computes float64
  graphs in float32).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from rnn_ref.backends.onnx.backend import OnnxGraphBackend
from rnn_ref.backends.openvino.record import OPENVINO_ACTIVATIONS as ACTIVATIONS
from rnn_ref.backends.openvino.record import unsupported
from rnn_ref.config import RNNConfig

__all__ = ["ACTIVATIONS", "OpenVinoBackend", "OpenVinoF32Backend", "compile_graph",
           "import_openvino", "unsupported"]

NAME = "OpenVINO"


def import_openvino() -> Any:
    """OpenVINO, without its usage telemetry. ``import openvino`` imports its model converter,
    which starts ``openvino_telemetry`` and, unless a consent file in the home folder says
    no (or ``CI=true``), sends usage events over the network from a forked process. rnn-ref
    sends nothing anywhere: when OpenVINO is not imported yet, the import of
    ``openvino_telemetry`` is blocked, and OpenVINO falls back to the no-op stub it ships
    (``openvino/tools/ovc/telemetry_utils.py``: ``except ImportError``)."""
    if "openvino" not in sys.modules and "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
    import openvino

    return openvino


def compile_graph(graph: bytes, shapes: dict[str, tuple[int, ...]], precision: str | None
                  ) -> Any:
    """The serialised ONNX ``graph`` read by OpenVINO, reshaped to static ``shapes`` (with
    dynamic shapes the CPU plugin ignores ``sequence_lens``) and compiled for the CPU with
    ``INFERENCE_PRECISION_HINT=precision`` (``None``: the runtime's default)."""
    ov = import_openvino()
    core = ov.Core()
    model = core.read_model(model=graph, weights=b"")
    if shapes:
        model.reshape({name: list(shape) for name, shape in shapes.items()})
    config = {} if precision is None else {"INFERENCE_PRECISION_HINT": precision}
    return core.compile_model(model, "CPU", config)


class OpenVinoBackend(OnnxGraphBackend):
    """The graph of :func:`to_native` run by OpenVINO's CPU plugin at its default inference
    precision (bf16 on CPUs with AVX512-BF16 or AMX, else f32): :attr:`precision` says which
    one it got."""

    name = "openvino"
    hint: str | None = None  # INFERENCE_PRECISION_HINT, None: the runtime's default

    @property
    def precision(self) -> str:
        """The inference precision the CPU plugin computes in (``"bf16"``, ``"f32"``)."""
        ov = import_openvino()
        if self.hint is not None:
            return self.hint
        value = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
        return str(getattr(value, "to_string", lambda: value)())

    def rules(self, config: RNNConfig, *, padded: bool) -> tuple[str, str] | None:
        return unsupported(config, padded=padded)

    def run(self, model: Any, feeds: dict[str, np.ndarray[Any, Any]]
            ) -> dict[str, np.ndarray[Any, Any]]:
        """Compiled for the call's static shapes, at :attr:`hint`'s precision."""
        compiled = compile_graph(model.SerializeToString(),
                                 {k: v.shape for k, v in feeds.items()}, self.hint)
        got = {out.get_any_name(): np.asarray(v) for out, v in compiled(feeds).items()}
        # an output with several names (h_n and the node's Y_h) is found by any of them
        for out in compiled.outputs:
            for n in out.get_names():
                if n not in got and out.get_any_name() in got:
                    got[n] = got[out.get_any_name()]
        return got


class OpenVinoF32Backend(OpenVinoBackend):
    """:class:`OpenVinoBackend` compiled with ``INFERENCE_PRECISION_HINT=f32``."""

    name = "openvino[f32]"
    hint = "f32"
