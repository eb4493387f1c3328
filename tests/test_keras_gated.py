"""Issue 23: Keras 3 ``GRU`` and ``LSTM`` read into the oracle (``rnn_ref.oracle(model)``,
``rnn_ref.from_keras``, ``.keras`` and legacy ``.h5`` files), built the way tutorials write
them.

Every model is float64 (``dtype="float64"`` layers), with seeded weights set by
``layer.set_weights`` (normal, non-zero biases) and sizes that differ (N=3 samples, T=7 steps,
D=4 features, M=6 and 5 units, K=2 outputs, V=13 token ids); masked inputs pad at the end of
one sample, at the start of another and in the middle of a third. Each is compared with what
Keras itself returns (``model(x)``) on TensorFlow here, and on JAX and torch in a process of
their own (:func:`test_masked_steps_on_jax_and_torch`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need_keras

import rnn_ref
from rnn_ref import Activation, UnsupportedError, cli, convert
from rnn_ref.convert import Hints, MissingHintError
from rnn_ref.errors import FileFormatError

keras = need_keras()
L = keras.layers
N, T, D, M, M2, V, K = 3, 7, 4, 6, 5, 13, 2
F64 = "float64"
TOL = 1e-12  # float64 against float64: the same sums in another order
#: Keras 3.15.1 rounds to float32 inside a float64 GRU/LSTM step on torch (``ops.matmul`` of
#: two float64 tensors returns float32: the recorded deviation
#: ``float64-computes-at-float32-precision``) and on JAX (``ops.tanh`` returns float32 with
#: ``JAX_ENABLE_X64=1``): about 1e-7, measured; far below any padded-step difference
TOL_TORCH_JAX = 1e-6


def _seeded(model: Any, seed: int = 0) -> Any:
    """Every layer's weights drawn from ``seed`` (normal, scale 0.5: non-zero biases)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(0.0, 0.5, w.shape).astype(w.dtype) for w in weights])
    return model


def _np(v: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(v))


def _ids(seed: int = 0) -> np.ndarray:
    """(N, T) token ids, 0 the padding: at the end, at the start, none."""
    ids = np.random.default_rng(seed + 1).integers(1, V, (N, T))
    ids[0, 5:] = 0
    ids[1, :2] = 0
    return ids.astype(np.int32)


def _features(seed: int = 0, masked: bool = True, scale: float = 1.0) -> np.ndarray:
    """(N, T, D) features; ``masked``: zero steps (``Masking(0.0)``) at the end of sample 0,
    the start of sample 1, the middle of sample 2."""
    x = np.random.default_rng(seed + 1).normal(0.0, scale, (N, T, D))
    if masked:
        x[0, 5:] = 0.0
        x[1, :2] = 0.0
        x[2, 3] = 0.0
    return x


def _inputs(masking: bool = True) -> tuple[Any, list[Any]]:
    """A float64 ``Input`` of features and, with ``masking``, ``Masking(0.0)`` after it."""
    inp = keras.Input((None, D), dtype=F64)
    return inp, [L.Masking(0.0, dtype=F64)] if masking else []


def _seq(*layers: Any, masking: bool = True) -> Any:
    inp, first = _inputs(masking)
    return keras.Sequential([inp, *first, *layers])


def _functional(build: Callable[[Any], Any], masking: bool = True) -> Any:
    inp, first = _inputs(masking)
    h = inp
    for layer in first:
        h = layer(h)
    return keras.Model(inp, build(h))


# --------------------------------------------------------------------------------------------
# the models
# --------------------------------------------------------------------------------------------
def _embedding_lstm_dense() -> tuple[Any, np.ndarray]:
    """The IMDB tutorial: Embedding(mask_zero) -> LSTM -> Dense(1, sigmoid)."""
    model = keras.Sequential([keras.Input((None,), dtype="int32"),
                              L.Embedding(V, D, mask_zero=True, dtype=F64), L.LSTM(M, dtype=F64),
                              L.Dense(1, activation="sigmoid", dtype=F64)])
    return model, _ids()


def _embedding_lstm_pool() -> tuple[Any, np.ndarray]:
    """Embedding(mask_zero) -> LSTM(return_sequences) -> GlobalAveragePooling1D -> Dense."""
    model = keras.Sequential([keras.Input((None,), dtype="int32"),
                              L.Embedding(V, D, mask_zero=True, dtype=F64),
                              L.LSTM(M, return_sequences=True, dtype=F64),
                              L.GlobalAveragePooling1D(dtype=F64), L.Dense(K, dtype=F64)])
    return model, _ids()


def _bilstm_gru_dense() -> tuple[Any, np.ndarray]:
    """Bidirectional(LSTM(return_sequences)) -> GRU -> Dense(softmax), masked."""
    return _seq(L.Bidirectional(L.LSTM(M, return_sequences=True, dtype=F64), dtype=F64),
                L.GRU(M2, dtype=F64), L.Dense(K, activation="softmax", dtype=F64)), _features()


def _lstm_return_state() -> tuple[Any, np.ndarray]:
    """``out, h, c = LSTM(return_state=True)(x)``: the model returns all three."""
    return _functional(lambda h: list(L.LSTM(M, return_state=True, dtype=F64)(h))), \
        _features()


def _bilstm_return_state() -> tuple[Any, np.ndarray]:
    """``Bidirectional(LSTM(return_state=True))``: [out, h_f, c_f, h_b, c_b]."""
    return _functional(lambda h: list(L.Bidirectional(
        L.LSTM(M, return_state=True, dtype=F64), dtype=F64)(h))), _features()


def _stacked_states() -> tuple[Any, np.ndarray]:
    """GRU(return_state) -> LSTM(return_state): [out, gru h, lstm h, lstm c] (h_n[0]..)."""
    def build(h: Any) -> Any:
        seq, h_gru = L.GRU(M, return_sequences=True, return_state=True, dtype=F64)(h)
        out, h_lstm, c_lstm = L.LSTM(M2, return_state=True, dtype=F64)(seq)
        return [out, c_lstm, h_gru, h_lstm]
    return _functional(build), _features()


def _gru_reset_before() -> tuple[Any, np.ndarray]:
    """GRU(reset_after=False), one (3M,) bias, every step."""
    return _seq(L.GRU(M, reset_after=False, return_sequences=True, dtype=F64)), _features()


def _gru_no_bias() -> tuple[Any, np.ndarray]:
    """GRU(use_bias=False) both ways, stacked."""
    return _seq(L.GRU(M, use_bias=False, return_sequences=True, dtype=F64),
                L.GRU(M2, use_bias=False, reset_after=False, dtype=F64)), _features()


def _lstm_no_bias() -> tuple[Any, np.ndarray]:
    return _seq(L.LSTM(M, use_bias=False, return_sequences=True, dtype=F64)), _features()


def _lstm_hard_sigmoid() -> tuple[Any, np.ndarray]:
    """LSTM(recurrent_activation="hard_sigmoid"): Keras 3's x/6 + 1/2, on inputs large
    enough to reach both ends of it."""
    return _seq(L.LSTM(M, recurrent_activation="hard_sigmoid", return_sequences=True,
                       dtype=F64)), _features(scale=4.0)


def _gru_hard_sigmoid_relu() -> tuple[Any, np.ndarray]:
    return _seq(L.GRU(M, activation="relu", recurrent_activation="hard_sigmoid",
                      return_sequences=True, dtype=F64)), _features(scale=4.0)


def _lstm_other_activations() -> tuple[Any, np.ndarray]:
    """LSTM(activation="softsign", recurrent_activation="sigmoid") -> GRU(elu, softplus)."""
    return _seq(L.LSTM(M, activation="softsign", return_sequences=True, dtype=F64),
                L.GRU(M2, activation="elu", recurrent_activation="softplus", dtype=F64)), \
        _features()


def _gru_celu_sparse_sigmoid() -> tuple[Any, np.ndarray]:
    """Keras' celu (elu, alpha 1) and sparse_sigmoid (0.5 x + 0.5, clipped)."""
    return _seq(L.GRU(M, activation="celu", recurrent_activation="sparse_sigmoid",
                      return_sequences=True, dtype=F64)), _features(scale=2.0)


def _gru_go_backwards() -> tuple[Any, np.ndarray]:
    """The last layer goes backwards and returns every step (in processing order)."""
    return _seq(L.GRU(M, return_sequences=True, dtype=F64),
                L.GRU(M2, go_backwards=True, return_sequences=True, dtype=F64)), _features()


def _lstm_go_backwards_final() -> tuple[Any, np.ndarray]:
    return _seq(L.LSTM(M, go_backwards=True, dtype=F64), L.Dense(K, dtype=F64)), _features()


def _stack_mixed() -> tuple[Any, np.ndarray]:
    """SimpleRNN -> GRU -> LSTM with dropouts (identities at inference)."""
    return _seq(L.SimpleRNN(M, return_sequences=True, dropout=0.1, dtype=F64),
                L.GRU(M2, return_sequences=True, recurrent_dropout=0.2, dtype=F64),
                L.Dropout(0.3, dtype=F64),
                L.LSTM(M, dropout=0.25, recurrent_dropout=0.1, dtype=F64),
                L.Dense(K, dtype=F64)), _features()


def _rnn_of_cells() -> tuple[Any, np.ndarray]:
    """The generic RNN around a GRUCell (reset before) and an LSTMCell."""
    return _seq(L.RNN(L.GRUCell(M, reset_after=False, dtype=F64), return_sequences=True,
                      dtype=F64),
                L.RNN(L.LSTMCell(M2, dtype=F64), return_sequences=True, dtype=F64)), \
        _features()


def _lstm_unroll() -> tuple[Any, np.ndarray]:
    """unroll=True (a known T)."""
    model = keras.Sequential([keras.Input((T, D), dtype=F64), L.Masking(0.0, dtype=F64),
                              L.LSTM(M, unroll=True, return_sequences=True, dtype=F64)])
    return model, _features()


def _gru_zero_output() -> tuple[Any, np.ndarray]:
    return _seq(L.GRU(M, zero_output_for_mask=True, return_sequences=True, dtype=F64)), \
        _features()


def _bidirectional_gru_sum() -> tuple[Any, np.ndarray]:
    return _seq(L.Bidirectional(L.GRU(M, return_sequences=True, reset_after=False, dtype=F64),
                                merge_mode="sum", dtype=F64),
                L.GlobalMaxPooling1D(dtype=F64), L.Dense(K, dtype=F64), masking=False), \
        _features(masked=False)


def _hand_made_bilstm() -> tuple[Any, np.ndarray]:
    """``Concatenate()([LSTM(M)(x), LSTM(M, go_backwards=True)(x)])``."""
    return _functional(lambda h: L.Concatenate(dtype=F64)([
        L.LSTM(M, dtype=F64)(h), L.LSTM(M, go_backwards=True, dtype=F64)(h)])), _features()


def _hand_made_bilstm_states() -> tuple[Any, np.ndarray]:
    """The same with ``return_state=True`` branches: [merged, h forward, c backward]."""
    def build(h: Any) -> Any:
        f, h_f, _ = L.LSTM(M, return_state=True, dtype=F64)(h)
        b, _, c_b = L.LSTM(M, go_backwards=True, return_state=True, dtype=F64)(h)
        return [L.Add(dtype=F64)([f, b]), h_f, c_b]
    return _functional(build), _features()


MODELS: dict[str, Callable[[], tuple[Any, np.ndarray]]] = {
    "embedding_lstm_dense": _embedding_lstm_dense,
    "embedding_lstm_pool": _embedding_lstm_pool,
    "bilstm_gru_dense": _bilstm_gru_dense,
    "lstm_return_state": _lstm_return_state,
    "bilstm_return_state": _bilstm_return_state,
    "stacked_states": _stacked_states,
    "gru_reset_before": _gru_reset_before,
    "gru_no_bias": _gru_no_bias,
    "lstm_no_bias": _lstm_no_bias,
    "lstm_hard_sigmoid": _lstm_hard_sigmoid,
    "gru_hard_sigmoid_relu": _gru_hard_sigmoid_relu,
    "lstm_other_activations": _lstm_other_activations,
    "gru_celu_sparse_sigmoid": _gru_celu_sparse_sigmoid,
    "gru_go_backwards": _gru_go_backwards,
    "lstm_go_backwards_final": _lstm_go_backwards_final,
    "stack_mixed": _stack_mixed,
    "rnn_of_cells": _rnn_of_cells,
    "lstm_unroll": _lstm_unroll,
    "gru_zero_output": _gru_zero_output,
    "bidirectional_gru_sum": _bidirectional_gru_sum,
    "hand_made_bilstm": _hand_made_bilstm,
    "hand_made_bilstm_states": _hand_made_bilstm_states,
}


def _largest_error(want: Any, got: Any) -> float:
    """The largest difference over a model's output(s), after checking the structure."""
    if isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want)
        return max(_largest_error(w, g) for w, g in zip(want, got, strict=True))
    w = _np(want)
    assert w.shape == np.shape(got), (w.shape, np.shape(got))
    return float(np.abs(w - got).max())


@pytest.mark.parametrize("name", MODELS)
def test_oracle_returns_what_keras_returns(name: str) -> None:
    model, x = MODELS[name]()
    _seeded(model, seed=len(name))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not support masking")
        want = model(x)
    err = _largest_error(want, rnn_ref.oracle(model)(x))
    assert err < TOL, (name, err)


def test_what_is_read() -> None:
    """The switches land where the spec says: cells per layer, reset_after, Keras 3's
    hard_sigmoid (alpha 1/6), (f, g, h) of an LSTM, the states a functional model returns."""
    hard = Activation("hard_sigmoid", alpha=1 / 6, beta=0.5)
    model, x = _lstm_hard_sigmoid()
    params = rnn_ref.from_keras(_seeded(model))
    assert params.config.cell == "lstm" and params.config.activations_of(0, 0) == (
        hard, Activation("tanh"), Activation("tanh"))
    keras2 = params.replace(recurrent_activation=Activation("hard_sigmoid", alpha=0.2, beta=0.5))
    assert _largest_error(model(x), rnn_ref.forward(keras2, x).result) > 0.01  # it matters
    cfg = rnn_ref.from_keras(_seeded(_gru_celu_sparse_sigmoid()[0])).config
    assert cfg.activations_of(0, 0) == (Activation("hard_sigmoid", alpha=0.5, beta=0.5),
                                        Activation("elu", alpha=1.0))
    cfg = rnn_ref.from_keras(_seeded(_stack_mixed()[0])).config
    assert cfg.cells[0].kind == "elman" and cfg.cells[1].kind == "gru" \
        and cfg.cells[2].kind == "lstm"
    assert [(i.kind, i.rate, i.after) for i in cfg.identities] == [
        ("input_dropout", 0.1, 0), ("recurrent_dropout", 0.2, 1), ("dropout", 0.3, 2),
        ("input_dropout", 0.25, 2), ("recurrent_dropout", 0.1, 2)]
    cfg = rnn_ref.from_keras(_seeded(_gru_no_bias()[0])).config
    assert cfg.reset_after == (True, False) and not cfg.bias
    assert rnn_ref.from_keras(_seeded(_stacked_states()[0])).config.returns == (
        "result", "c_n[-1]", "h_n[-2]", "h_n[-1]")
    assert rnn_ref.from_keras(_seeded(_bilstm_return_state()[0])).config.returns == (
        "result", "h_n[-2]", "c_n[-2]", "h_n[-1]", "c_n[-1]")
    assert rnn_ref.from_keras(_seeded(_hand_made_bilstm_states()[0])).config.returns == (
        "result", "h_n[-2]", "c_n[-1]")
    params = rnn_ref.from_keras(_seeded(_gru_reset_before()[0]))
    gru = params.layers[0][0]
    kernel = params.config  # the (3M,) bias is b_x; b_h is zero
    assert kernel.reset_after is False and not np.any(gru.b_h["n"]) and np.all(gru.b_x["n"])


def test_gate_blocks_are_keras_columns() -> None:
    """z, r, h are the kernel's column blocks in that order; a reset-after bias's row 0 is
    b_x, row 1 b_h (spec 3.7)."""
    layer = L.GRU(M, dtype=F64)
    layer.build((None, None, D))
    _seeded(keras.Sequential([keras.Input((None, D), dtype=F64), layer]))
    kernel, rec, bias = layer.get_weights()
    cell = rnn_ref.from_keras(layer).layers[0][0]
    for k, g in enumerate(("z", "r", "n")):
        cols = slice(k * M, (k + 1) * M)
        np.testing.assert_array_equal(cell.w_x[g], kernel[:, cols])
        np.testing.assert_array_equal(cell.w_h[g], rec[:, cols])
        np.testing.assert_array_equal(cell.b_x[g], bias[0, cols])
        np.testing.assert_array_equal(cell.b_h[g], bias[1, cols])
    lstm = L.LSTM(M, dtype=F64)
    lstm.build((None, None, D))
    _seeded(keras.Sequential([keras.Input((None, D), dtype=F64), lstm]))
    cell = rnn_ref.from_keras(lstm).layers[0][0]
    kernel = lstm.get_weights()[0]
    for k, g in enumerate(("i", "f", "g", "o")):
        np.testing.assert_array_equal(cell.w_x[g], kernel[:, k * M:(k + 1) * M])


# --------------------------------------------------------------------------------------------
# bare layers: mask, initial_state, return_state
# --------------------------------------------------------------------------------------------
BARE: dict[str, Callable[[], Any]] = {
    "gru": lambda: L.GRU(M, return_sequences=True, return_state=True, dtype=F64),
    "gru_reset_before_backwards": lambda: L.GRU(M, reset_after=False, go_backwards=True,
                                                return_state=True, dtype=F64),
    "lstm": lambda: L.LSTM(M, return_sequences=True, return_state=True, dtype=F64),
    "lstm_backwards_final": lambda: L.LSTM(M, go_backwards=True, dtype=F64),
    "rnn_lstm_cell": lambda: L.RNN(L.LSTMCell(M, dtype=F64), return_sequences=True,
                                   return_state=True, dtype=F64),
    "bidirectional_lstm": lambda: L.Bidirectional(
        L.LSTM(M, return_sequences=True, return_state=True, dtype=F64), dtype=F64),
    "bidirectional_gru_final": lambda: L.Bidirectional(
        L.GRU(M, return_state=True, dtype=F64), merge_mode="ave", dtype=F64),
}


@pytest.mark.parametrize("name", BARE)
def test_bare_layer_with_mask_and_initial_state(name: str) -> None:
    layer = BARE[name]()
    layer.build((None, None, D))
    _seeded(keras.Sequential([keras.Input((None, D), dtype=F64), layer]), seed=3)
    x = _features(masked=False)
    mask = np.ones((N, T), bool)
    mask[0, 5:] = mask[1, :2] = mask[2, 3] = False
    per = 2 if "lstm" in name else 1
    R = 2 if name.startswith("bidirectional") else 1
    rng = np.random.default_rng(9)
    states = [rng.normal(0.0, 0.5, (N, M)) for _ in range(per * R)]
    want = layer(x, mask=mask, initial_state=states)
    got = rnn_ref.oracle(layer)(x, mask=mask, initial_state=states)
    assert _largest_error(want, got) < TOL
    assert _largest_error(layer(x), rnn_ref.oracle(layer)(x)) < TOL


def test_bare_initial_state_needs_h_and_c() -> None:
    layer = L.LSTM(M, dtype=F64)
    layer.build((None, None, D))
    with pytest.raises(ValueError, match=r"2 array\(s\) \(\[h, c\] per direction\), got 1"):
        rnn_ref.oracle(layer)(_features(), initial_state=[np.zeros((N, M))])


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bilstm_gru_dense", "stacked_states", "gru_no_bias",
                                  "lstm_hard_sigmoid", "embedding_lstm_pool"])
def test_keras_and_legacy_h5_files(name: str, tmp_path: Path) -> None:
    """``.keras`` (Keras in safe mode) and legacy ``.h5`` (h5py, by the model config) read
    as the model they hold."""
    model, x = MODELS[name]()
    params = rnn_ref.from_keras(_seeded(model))
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"m{suffix}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras calls .h5 legacy
            model.save(str(path))
        assert convert.read(path) == params, suffix
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"), safe_mode=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not support masking")
        assert _largest_error(loaded(x), rnn_ref.oracle(loaded)(x)) < TOL


def test_legacy_h5_whose_weights_do_not_fit_is_refused(tmp_path: Path) -> None:
    import h5py

    model = _seeded(_seq(L.GRU(M, dtype=F64, name="gru_x")))
    path = tmp_path / "m.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(path))
    with h5py.File(path, "a") as f:
        group = f["model_weights/gru_x"]
        name = next(str(n.decode() if isinstance(n, bytes) else n)
                    for n in group.attrs["weight_names"] if "bias" in str(n))
        bias = np.asarray(group[name])
        del group[name]
        group[name] = bias.reshape(-1)  # (2, 3M) -> (6M,)
    with pytest.raises(FileFormatError, match="not the .2, 3.units. of a GRU"):
        convert.read(path)


#: weights-only files: a stack of one layer class (Keras numbers each class apart, so a mixed
#: stack's order is not recorded), and the hints for what the file does not record
WEIGHTS_FILES: dict[str, tuple[Callable[[], list[Any]], Hints]] = {
    "bilstm_then_bigru": (lambda: [
        L.Bidirectional(L.LSTM(M, return_sequences=True, recurrent_activation="hard_sigmoid",
                               dtype=F64), dtype=F64),
        L.Bidirectional(L.GRU(M2, reset_after=False, dtype=F64), dtype=F64)],
        Hints(activation="tanh", recurrent_activation="hard_sigmoid,sigmoid", select="final")),
    "gru_stack_dense": (lambda: [
        L.GRU(M, return_sequences=True, dtype=F64),
        L.GRU(M2, return_sequences=True, reset_after=False, activation="relu", dtype=F64),
        L.Dense(K, dtype=F64)],
        Hints(activation="tanh,relu", recurrent_activation="sigmoid", head_activation="linear")),
    "lstm_no_bias_backwards": (lambda: [
        L.LSTM(M, use_bias=False, go_backwards=True, return_sequences=True, dtype=F64)],
        Hints(activation="tanh", recurrent_activation="sigmoid", direction="reverse")),
}


@pytest.mark.parametrize("name", WEIGHTS_FILES)
def test_weights_h5_with_hints(name: str, tmp_path: Path) -> None:
    """A ``.weights.h5`` of GRU/LSTM layers: the cell from the recurrent kernel's width
    (G*M), a GRU's reset_after from its bias's shape, the activations from the hints."""
    build, hints = WEIGHTS_FILES[name]
    model = _seeded(_seq(*build(), masking=False), seed=4)
    path = tmp_path / "m.weights.h5"
    model.save_weights(str(path))
    params = convert.read(path, hints=hints)
    assert params == rnn_ref.from_keras(model)
    x = _features(masked=False)
    assert _largest_error(model(x), rnn_ref.forward(params, x).result) < TOL
    with pytest.raises(MissingHintError) as info:
        convert.read(path, hints=Hints(activation="tanh", direction=hints.direction,
                                       head_activation=hints.head_activation))
    assert info.value.hint == "recurrent_activation"


def test_weights_h5_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def saved(*layers: Any) -> Path:
        path = tmp_path / "w.weights.h5"
        _seq(*layers, masking=False).save_weights(str(path))
        return path

    hints = Hints(activation="tanh", recurrent_activation="sigmoid")
    with pytest.raises(UnsupportedError, match="without a bias .*reset_after"):
        convert.read(saved(L.GRU(M, use_bias=False)), hints=hints)
    with pytest.raises(UnsupportedError, match=r"a mix of layers \['gru', 'lstm'\]"):
        convert.read(saved(L.GRU(M, return_sequences=True), L.LSTM(M2)), hints=hints)
    with pytest.raises(ValueError, match="recurrent_activation hint is for GRU and LSTM"):
        convert.read(saved(L.SimpleRNN(M)), hints=hints)
    path = saved(L.LSTM(M, return_sequences=True))
    code = cli.main(["convert", str(path), str(tmp_path / "o.npz"), "--activation", "tanh"])
    assert code == 2 and "(pass --recurrent-activation)" in capsys.readouterr().err
    code = cli.main(["convert", str(path), str(tmp_path / "o.npz"), "--activation", "tanh",
                     "--recurrent-activation", "hard_sigmoid"])
    assert code == 0, capsys.readouterr().err
    cfg = rnn_ref.load(tmp_path / "o.npz").config
    assert cfg.activations_of(0, 0)[0] == Activation("hard_sigmoid", alpha=1 / 6, beta=0.5)


# --------------------------------------------------------------------------------------------
# refusals (the writers: tests/test_keras_gated_write.py)
# --------------------------------------------------------------------------------------------
def test_refusals_name_the_layer() -> None:
    def refused(model: Any, *words: str) -> None:
        with pytest.raises(UnsupportedError) as info:
            rnn_ref.from_keras(model)
        for word in words:
            assert word in str(info.value), str(info.value)

    refused(_seq(L.GRU(M, recurrent_activation="gelu", name="g")), "'gelu'", "(g, "
            "recurrent_activation)")
    refused(_seq(L.LSTM(M, activation="relu6", name="l")), "'relu6'", "(l)")
    refused(_seq(L.Bidirectional(L.LSTM(M), backward_layer=L.GRU(M, go_backwards=True),
                                 name="mixed")), "'mixed'", "lstm and a gru")
    stateful = keras.Sequential([keras.Input(batch_shape=(N, T, D)),
                                 L.LSTM(M, stateful=True, name="s")])
    refused(stateful, "'s'", "stateful=True")
    refused(stateful.layers[-1], "stateful")
    refused(keras.Sequential([keras.Input((None, D)),
                              L.LSTM(M, return_sequences=True, go_backwards=True, name="back"),
                              L.GRU(M2)]), "the LSTM layer 'back'", "go_backwards=True below")
    inp = keras.Input((None, D))
    seq, h, c = L.LSTM(M, return_sequences=True, return_state=True, name="lstm")(inp)
    refused(keras.Model(inp, L.GRU(M2)(seq, initial_state=[h])), "called with ['initial_state']")




# --------------------------------------------------------------------------------------------
# masked steps on every Keras backend
# --------------------------------------------------------------------------------------------
def test_fused_tensorflow_kernel_pads_with_zeros(monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorFlow's cuDNN kernel (a GPU) fills padded steps with zeros (``_cudnn_gru`` in
    keras/src/backend/tensorflow/rnn.py, read, not run: no GPU here): recorded as ``zeros``
    for a GRU or LSTM it would run, not for the generic RNN of a cell, with
    ``recurrent_dropout`` or ``use_cudnn=False``."""
    from keras.src import backend as keras_backend

    monkeypatch.setattr(keras_backend, "cudnn_ok", lambda *args, **kwargs: True)
    cases = [(L.LSTM(M, return_sequences=True, dtype=F64), "zeros"),
             (L.GRU(M, return_sequences=True, dtype=F64), "zeros"),
             (L.GRU(M, return_sequences=True, use_cudnn=False, dtype=F64), "carry_output"),
             (L.LSTM(M, return_sequences=True, recurrent_dropout=0.1, dtype=F64),
              "carry_output"),
             (L.RNN(L.LSTMCell(M, dtype=F64), return_sequences=True, dtype=F64),
              "carry_output")]
    for layer, mode in cases:
        model = _seq(layer)
        assert rnn_ref.from_keras(model).config.padded_output == mode, layer
        assert rnn_ref.from_keras(layer).config.padded_output == mode, layer


_BACKEND_SCRIPT = """
import numpy as np, keras, rnn_ref
L = keras.layers
N, T, D, M = {N}, {T}, {D}, {M}
rng = np.random.default_rng(5)
x = rng.normal(0.0, 1.0, (N, T, D))
mask = np.ones((N, T), bool); mask[0, 5:] = mask[1, :2] = mask[2, 3] = False
C = keras.ops.convert_to_tensor
worst, modes = 0.0, set()
for make in (lambda b: L.GRU(M, go_backwards=b, return_sequences=True, dtype="float64"),
             lambda b: L.GRU(M, reset_after=False, go_backwards=b, return_sequences=True,
                             dtype="float64"),
             lambda b: L.LSTM(M, go_backwards=b, return_sequences=True, return_state=True,
                              dtype="float64")):
    for back in (False, True):
        layer = make(back)
        layer.build((None, T, D))
        layer.set_weights([rng.normal(0.0, 0.5, w.shape) for w in layer.get_weights()])
        states = [rng.normal(0.0, 0.5, (N, M)) for _ in range(2 if "lstm" in layer.name else 1)]
        want = layer(C(x), mask=C(mask), initial_state=[C(s) for s in states])
        got = rnn_ref.oracle(layer)(x, mask=mask, initial_state=states)
        want = want if isinstance(want, (list, tuple)) else [want]
        got = got if isinstance(got, tuple) else [got]
        for w, g in zip(want, got, strict=True):
            worst = max(worst, float(np.abs(keras.ops.convert_to_numpy(w) - g).max()))
        modes.add(rnn_ref.from_keras(layer).config.padded_output)
print(" ".join(sorted(modes)), worst)
"""


@pytest.mark.parametrize("backend,mode", [("jax", "carry_state"), ("torch", "carry_output")])
def test_masked_steps_on_jax_and_torch(backend: str, mode: str) -> None:
    """GRU and LSTM pad as SimpleRNN does on each Keras backend (the generic loop: the fused
    kernels of JAX and torch refuse masks): JAX carries the state (a leading masked step
    outputs h0), torch the last output (zeros before the first)."""
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_ENABLE_X64": "1"}
    code = _BACKEND_SCRIPT.format(N=N, T=T, D=D, M=M)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    modes, worst = res.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert modes == mode
    assert float(worst) < TOL_TORCH_JAX, worst
