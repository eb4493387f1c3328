"""Keras 2 (tf-keras) models as people build and save them (issue 12): Masking, Embedding with
mask_zero, layers of different directions, Dropout and noise layers, Dense heads with softmax.

For each model: ``from_keras2`` reads it, the oracle returns what tf-keras returns (float32
tolerance), ``to_keras2`` builds a model that holds the same weights bit-exact and computes the
same numbers, the legacy ``.h5`` that ``model.save`` writes reads to the same parameters, and
the canonical file round-trips them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need, need_keras

import rnn_ref
from rnn_ref import Identity, UnsupportedError, convert

pytestmark = pytest.mark.slow
need_keras()  # torch before TensorFlow
tk = need("tf_keras")
from rnn_ref.backends.keras2 import convert as k2  # noqa: E402  (after the skip)
from rnn_ref.backends.keras2 import files as k2_files  # noqa: E402

L = tk.layers
N, T, D, V = 3, 7, 4, 11  # M = 5, 6 below; heads of 3 and 2 units
TOL = 3e-6


def _x(seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((N, T, D)).astype(np.float32)
    x[0, 5:] = 0.0  # right padding
    x[1, :2] = 0.0  # leading masked steps
    return x


def _ids(seed: int = 0) -> np.ndarray:
    ids = np.random.default_rng(seed).integers(1, V, (N, T))
    ids[0, 4:] = 0
    ids[2, :1] = 0
    return ids


def _issue_model() -> Any:
    """The issue's model: Masking -> Bidirectional(relu, sequences) -> SimpleRNN(go_backwards)
    -> Dense."""
    return tk.Sequential([
        tk.Input((None, D)), L.Masking(0.0),
        L.Bidirectional(L.SimpleRNN(5, activation="relu", return_sequences=True)),
        L.SimpleRNN(6, go_backwards=True), L.Dense(2)])


def _imdb() -> Any:
    """Embedding(mask_zero) -> SimpleRNN -> Dense(1, sigmoid), with Dropout between."""
    return tk.Sequential([
        tk.Input((None,), dtype="int32"), L.Embedding(V, D, mask_zero=True),
        L.SpatialDropout1D(0.2), L.SimpleRNN(5, dropout=0.1, recurrent_dropout=0.2),
        L.Dropout(0.5), L.Dense(1, activation="sigmoid")])


def _tagger() -> Any:
    """Functional: SimpleRNN(sequences) -> Dropout -> Bidirectional(sum) -> GaussianNoise ->
    TimeDistributed(Dense(3, relu)) -> Dense(2, softmax), per step."""
    inputs = tk.Input((None, D))
    h = L.SimpleRNN(5, return_sequences=True, activation="hard_sigmoid")(inputs)
    h = L.Dropout(0.3)(h)
    h = L.Bidirectional(L.SimpleRNN(6, return_sequences=True), merge_mode="sum")(h)
    h = L.GaussianNoise(0.1)(h)
    h = L.TimeDistributed(L.Dense(3, activation="relu"))(h)
    return tk.Model(inputs, L.Dense(2, activation="softmax", use_bias=False)(h))


def _classifier() -> Any:
    """Two bidirectional layers on final states -> Dense(3, softmax)."""
    return tk.Sequential([
        tk.Input((None, D)),
        L.Bidirectional(L.SimpleRNN(5, return_sequences=True)), L.AlphaDropout(0.1),
        L.Bidirectional(L.SimpleRNN(6)), L.GaussianDropout(0.2), L.Dense(3, activation="elu"),
        L.Dense(3, activation="softmax")])


MODELS: list[tuple[str, Callable[[], Any], Callable[[int], np.ndarray]]] = [
    ("masking-bidirectional-go_backwards-dense", _issue_model, _x),
    ("embedding-mask_zero-dropouts-sigmoid", _imdb, _ids),
    ("functional-tagger-timedistributed-softmax", _tagger, _x),
    ("bidirectional-final-two-dense-softmax", _classifier, _x),
]


def _perturbed(model: Any, seed: int) -> Any:
    """``model`` with seeded noise on every weight (Keras initialises biases to zero)."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + 0.3 * rng.standard_normal(w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    return model


def _weights_equal(a: Any, b: Any) -> None:
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize(("name", "make", "inputs"), MODELS, ids=[m[0] for m in MODELS])
def test_keras2_model_reads_runs_writes(name: str, make: Callable[[], Any],
                                        inputs: Callable[[int], np.ndarray],
                                        tmp_path: Path) -> None:
    tk.utils.set_random_seed(len(name))
    model = _perturbed(make(), len(name))
    x = inputs(1)
    want = model(x).numpy()
    params = rnn_ref.from_keras2(model)
    err = float(np.abs(rnn_ref.forward(params, x).result - want).max())
    assert err < TOL, err
    np.testing.assert_allclose(k2.oracle(model)(x), want, atol=TOL)
    # to_keras2: the same layers, weights bit-exact, the same numbers
    again = rnn_ref.to_keras2(params)
    _weights_equal(model, again)
    np.testing.assert_allclose(again(x).numpy(), want, atol=TOL)
    assert rnn_ref.from_keras2(again) == params
    # model.save("x.h5") as users do, read by name; the canonical file round trip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf-keras: "HDF5 is legacy"
        model.save(tmp_path / "m.h5")
    assert convert.read(tmp_path / "m.h5", "keras2-h5") == params
    rnn_ref.save(params, tmp_path / "m.npz")
    assert rnn_ref.load(tmp_path / "m.npz") == params


def test_identities_are_recorded_where_they_sit() -> None:
    params = rnn_ref.from_keras2(_imdb())
    assert params.config.identities == (
        Identity("spatial_dropout_1d", 0.2, 0), Identity("input_dropout", 0.1, 0),
        Identity("recurrent_dropout", 0.2, 0), Identity("dropout", 0.5, 1))
    assert params.config.select == "final" and params.config.mask_zero


def test_written_file_reads_back(tmp_path: Path) -> None:
    """write_file (tf-keras' model.save) of a network, read by rnn-ref and loaded by tf-keras."""
    tk.utils.set_random_seed(5)
    params = rnn_ref.from_keras2(_perturbed(_issue_model(), 5))
    assert all(np.any(cell.b_x) for layer in params.layers for cell in layer)
    path = tmp_path / "w.h5"
    k2_files.write_file(params, path, k2.FORMAT)
    assert convert.read(path, k2.FORMAT) == params
    native = k2_files.load_native(path, k2.FORMAT, params)
    x = _x(3)
    np.testing.assert_allclose(native.model(x).numpy(), rnn_ref.forward(params, x).result,
                               atol=TOL)


def test_refusals_name_the_layer() -> None:
    with pytest.raises(UnsupportedError, match="the Activation layer"):
        rnn_ref.from_keras2(tk.Sequential([tk.Input((None, D)), L.SimpleRNN(3),
                                           L.Activation("relu")]))
    with pytest.raises(UnsupportedError, match="go_backwards=True below another"):
        rnn_ref.from_keras2(tk.Sequential([
            tk.Input((None, D)), L.SimpleRNN(3, go_backwards=True, return_sequences=True),
            L.SimpleRNN(2)]))
    with pytest.raises(UnsupportedError, match="the ConvLSTM1D layer"):
        rnn_ref.from_keras2(tk.Sequential([tk.Input((None, 2, D)), L.ConvLSTM1D(3, 2)]))
    cfg = rnn_ref.RNNConfig(D, 3, select="last_step")
    with pytest.raises(UnsupportedError, match="select='last_step'"):
        rnn_ref.to_keras2(rnn_ref.init(cfg, seed=0))
    cfg = rnn_ref.RNNConfig(D, 3, vocab_size=V, padding_idx=0)
    with pytest.raises(UnsupportedError, match="padding_idx"):
        rnn_ref.to_keras2(rnn_ref.init(cfg, seed=0))
    cfg = rnn_ref.RNNConfig(D, 3, head=[(2, "log_softmax")])
    with pytest.raises(UnsupportedError, match="head activation log_softmax"):
        rnn_ref.to_keras2(rnn_ref.init(cfg, seed=0))


def test_keras2_reads_through_the_shared_parser() -> None:
    """Keras 2 reads models with Keras 3's parser (its KERAS2 flavour) and bare layers with
    Keras 3's reader: a bare layer's return_sequences=False is select='final' (the old walker
    left the default 'sequence', unlike Keras 3 and unlike its own model path), an Activation
    after a linear Dense folds into it as in Keras 3, and time_major=True in a model is
    refused by name."""
    tk.utils.set_random_seed(11)
    layer = L.SimpleRNN(5)
    layer(_x(2))
    assert k2.from_native(layer).config.select == "final"
    x = _x(2)
    np.testing.assert_allclose(k2.oracle(layer)(x), layer(x).numpy(), atol=TOL)
    folded = tk.Sequential([tk.Input((None, D)), L.SimpleRNN(5), L.Dense(2),
                            L.Activation("tanh")])
    params = rnn_ref.from_keras2(folded)
    assert str(params.config.head[0].activation) == "tanh"
    np.testing.assert_allclose(rnn_ref.forward(params, x).result, folded(x).numpy(), atol=TOL)
    with pytest.raises(UnsupportedError, match="time_major=True"):
        rnn_ref.from_keras2(tk.Sequential([tk.Input((None, D)),
                                           L.SimpleRNN(5, time_major=True)]))
