"""Issue 21's silent wrong answer: a Keras model whose mask comes from its ids
(``Embedding(mask_zero=True)``) fed ``keras.utils.pad_sequences`` ids, which pad at the front
by default. Its ONNX graph must compute what Keras computes for every padding pattern the mask
allows (front, back, holes), and ``--verify`` must feed those patterns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import need, need_keras
from onnx import TensorProto, helper, numpy_helper

import rnn_ref
from rnn_ref import UnsupportedError, cli
from rnn_ref.convert import VERIFY_PATTERNS

keras = need_keras()
ort = need("onnxruntime")
L = keras.layers

SENTENCES = [[3, 5, 7, 2, 9, 11, 4, 6], [8, 2, 4, 1, 9], [5, 6, 7], [4, 0, 9, 12, 0, 3]]


def _seeded(model: keras.Model, seed: int) -> keras.Model:
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.8, 0.8, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


def _ort(model: object, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(),  # type: ignore[attr-defined]
                                   providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])


def _imdb() -> keras.Model:
    """The issue's model, as the Keras text tutorials write it."""
    return _seeded(keras.Sequential([
        keras.Input((None,), dtype="int32"), L.Embedding(20, 4, mask_zero=True),
        L.SimpleRNN(6), L.Dense(1, activation="sigmoid")]), 0)


def _stacked_bidirectional() -> keras.Model:
    return _seeded(keras.Sequential([
        keras.Input((None,), dtype="int32"), L.Embedding(20, 5, mask_zero=True),
        L.Bidirectional(L.SimpleRNN(6, return_sequences=True)),
        L.SimpleRNN(3, activation="relu", go_backwards=True),
        L.Dense(2, activation="softmax")]), 1)


@pytest.mark.parametrize("build", [_imdb, _stacked_bidirectional])
@pytest.mark.parametrize("padding", ["pre", "post"])
def test_onnx_graph_computes_what_keras_computes_for_any_padding(build, padding: str) -> None:
    model = build()
    x = keras.utils.pad_sequences(SENTENCES, maxlen=8, padding=padding)  # id 0 inside one too
    want = np.asarray(model(x))
    graph = rnn_ref.to_onnx(rnn_ref.from_keras(model))
    got = _ort(graph, x.astype(np.int64))
    assert float(np.abs(got - want).max()) < 1e-6
    assert rnn_ref.from_onnx(graph) == rnn_ref.from_keras(model)  # read back exactly
    oracle = rnn_ref.oracle(graph)(x.astype(np.int64))
    assert float(np.abs(np.asarray(oracle[0]) - want).max()) < 1e-6


def test_the_onnx_backend_runs_masks_with_holes() -> None:
    params = rnn_ref.init(rnn_ref.RNNConfig(4, 5, vocab_size=13, mask_zero=True,
                                            direction="bidirectional", select="final",
                                            padded_output="carry_output"),
                          seed=3, dtype=np.float32)
    ids = np.array([[0, 0, 4, 5, 6, 7], [1, 0, 2, 0, 3, 0], [9, 8, 7, 6, 5, 4]])
    mask = np.array([[True] * 6, [True] * 6, [True, False, True, True, False, True]])
    got = rnn_ref.get_backend("onnxruntime").forward(params, ids, mask=mask)
    want = rnn_ref.forward(params, ids, mask=mask)
    assert float(np.abs(np.asarray(got.h_n) - want.h_n).max()) < 1e-6
    assert float(np.abs(np.asarray(got.selected) - want.selected).max()) < 1e-6


def test_per_step_outputs_of_mask_zero_are_refused_by_name() -> None:
    params = rnn_ref.init(rnn_ref.RNNConfig(4, 5, vocab_size=13, mask_zero=True), seed=3,
                          dtype=np.float32)
    with pytest.raises(UnsupportedError, match="mask_zero with select='sequence'"):
        rnn_ref.to_onnx(params)


def _uncompacted_graph() -> object:
    """What rnn-ref wrote before this fix: ``sequence_lens`` = the count of non-zero ids of
    the ids as given (right only for trailing zeros)."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.standard_normal((10, 3)).astype(np.float32), "E"),
             numpy_helper.from_array(rng.standard_normal((1, 4, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((1, 4, 4)).astype(np.float32), "R"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    nodes = [helper.make_node("Gather", ["E", "x"], ["e"], axis=0),
             helper.make_node("Transpose", ["e"], ["et"], perm=[1, 0, 2]),
             helper.make_node("Equal", ["x", "zero"], ["z"]),
             helper.make_node("Not", ["z"], ["v"]),
             helper.make_node("Cast", ["v"], ["vi"], to=TensorProto.INT32),
             helper.make_node("ReduceSum", ["vi", "axes"], ["lens"], keepdims=0),
             helper.make_node("RNN", ["et", "W", "R", "", "lens"], ["y", "h_n"],
                              hidden_size=4)]
    graph = helper.make_graph(
        nodes, "old", [helper.make_tensor_value_info("x", TensorProto.INT64, ["N", "T"])],
        [helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [1, "N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_graph_counting_uncompacted_ids_is_refused() -> None:
    """Planted bug: the old graph is right for trailing zeros only, so reading it as
    ``mask_zero`` would be a silent wrong answer for every other padding."""
    with pytest.raises(UnsupportedError, match="not compacted"):
        rnn_ref.from_onnx(_uncompacted_graph())


def test_verify_feeds_every_padding_pattern(tmp_path: Path, capsys) -> None:
    src = tmp_path / "imdb.keras"
    _imdb().save(str(src))
    code = cli.main(["convert", str(src), str(tmp_path / "imdb.onnx"), "--verify"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert VERIFY_PATTERNS in out and "at the front" in VERIFY_PATTERNS
