"""ONNX's record: what a graph of RNN, GRU and LSTM nodes holds."""

from __future__ import annotations

from rnn_ref.backends.records import (
    BackendSpec,
    FileFormat,
    Framework,
    Reason,
    network_unsupported,
    padded_zeros,
)
from rnn_ref.config import RNNConfig
from rnn_ref.network import SHOWS_PADDED_STEPS

#: The network pieces one ONNX graph holds (backends/onnx/graph.py): ``Gather`` for the
#: embedding, an ``RNN``, ``GRU`` or ``LSTM`` node per layer with its own direction, the
#: selection from ``Y`` or ``Y_h`` (a pooling by ``ReduceMean``/``ReduceMax``/``ReduceSum``),
#: the head as ``MatMul`` [+ ``Add``] + activation (``Softmax``/``LogSoftmax``).
#: Not ``mask_value``: Keras' Masking would need a mask derived from the features.
ONNX_HOLDS = frozenset({"gru", "lstm", "embedding", "mixed_directions", "select", "pooling",
                        "head_stack", "softmax", "dense_without_bias"})


def unsupported(config: RNNConfig, *, padded: bool = True) -> Reason:
    """What a graph of ONNX ``RNN``, ``GRU`` and ``LSTM`` nodes cannot express (with
    ``sequence_lens`` when ``padded``, which ``mask_zero`` always is): an LSTM's projection
    (ONNX's LSTM has none), then the network pieces it lacks. ``padded_output`` matters only
    where a padded step is seen: the selection ``sequence`` or ``last_step`` (a final state is
    the last valid one, and a lower layer's padded outputs feed only padded steps above)."""
    for li, cell in enumerate(config.cells):
        if cell.proj_size is not None:
            return (f"an LSTM with a projection (proj_size={cell.proj_size}, layer {li})",
                    "ONNX's LSTM operator has no projection: its h_t = o * h(c_t) is "
                    "hidden_size wide (torch.onnx's legacy exporter refuses it too, 'LSTMs "
                    "with projections')")
    reason = network_unsupported(config, holds=ONNX_HOLDS)
    if reason is not None:
        return reason
    if config.mask_zero and config.select in SHOWS_PADDED_STEPS:
        return (f"mask_zero with select={config.select!r}",
                "the graph moves each sample's non-zero ids to the front before the RNN nodes "
                "(Keras skips every id-0 step, wherever it stands), so its per-step outputs "
                "are in that order; it holds final states and the mean over the valid steps")
    if padded and config.select in SHOWS_PADDED_STEPS:
        return padded_zeros(config, "sequence_lens zeroes padded outputs")
    return None


FRAMEWORK = Framework(
    name="onnx", title="ONNX RNN", module="rnn_ref.backends.onnx.convert",
    requires=("onnx",), distributions=("onnx", "onnxruntime"),
    unsupported=unsupported, converters=("from_onnx", "to_onnx"),
    recognised_when="onnx",
    formats=(FileFormat("onnx", (".onnx",),
                        "a graph of RNN, GRU and LSTM nodes (rnn_ref.from_onnx)",
                        runs=("onnxruntime", ("float32",))),),
    files="rnn_ref.backends.onnx.files",
    backends=(BackendSpec("onnxruntime",
                          "rnn_ref.backends.onnx.backend:OnnxRuntimeBackend",
                          ("onnx", "onnxruntime")),),
)
