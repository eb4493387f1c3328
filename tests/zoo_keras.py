"""Keras 3 models as people build them, each from a seed (deterministic weights), for the
Keras model tests and the cross-framework zoo.

Every builder returns ``(model, x)``: the model (weights drawn from ``seed``, non-square:
D=3 features, V=11 token ids, hidden sizes 5 and 4, batch N=2, T=7 steps) and an input to call
it on (token ids with padding zeros where the model masks them, features with ``Masking``
steps). Import Keras before calling one (``need_keras()``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

N, T, D, V = 2, 7, 3, 11


def _keras() -> Any:
    import keras

    return keras


def _seeded(model: Any, seed: int) -> Any:
    """Every weight of ``model`` drawn from ``seed`` (uniform in [-0.6, 0.6])."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    return model


def _ids(seed: int, pad: bool) -> np.ndarray:
    ids = np.random.default_rng(seed + 1).integers(1, V, (N, T))
    if pad:
        ids[0, 5:] = 0  # right padding
        ids[1, :2] = 0  # left padding
    return ids.astype(np.int32)


def _features(seed: int, masked: bool = False) -> np.ndarray:
    x = np.random.default_rng(seed + 1).standard_normal((N, T, D)).astype(np.float32)
    if masked:
        x[0, 5:] = 0.0
        x[1, 2] = 0.0
    return x


def imdb(seed: int = 0, mask_zero: bool = False) -> tuple[Any, np.ndarray]:
    """Embedding -> SimpleRNN -> Dense(1, sigmoid) (the IMDB classifier)."""
    L = _keras().layers
    model = _keras().Sequential([_keras().Input((None,), dtype="int32"),
                                 L.Embedding(V, D, mask_zero=mask_zero), L.SimpleRNN(5),
                                 L.Dense(1, activation="sigmoid")])
    return _seeded(model, seed), _ids(seed, mask_zero)


def imdb_masked(seed: int = 0) -> tuple[Any, np.ndarray]:
    """The IMDB classifier with ``mask_zero=True``."""
    return imdb(seed, mask_zero=True)


def dropout_stack(seed: int = 0) -> tuple[Any, np.ndarray]:
    """SimpleRNN(rs) -> Dropout -> SimpleRNN -> Dropout -> Dense."""
    L = _keras().layers
    model = _keras().Sequential([_keras().Input((None, D)),
                                 L.SimpleRNN(5, return_sequences=True, dropout=0.1), L.Dropout(0.2),
                                 L.SimpleRNN(4, recurrent_dropout=0.3), L.Dropout(0.5),
                                 L.Dense(2)])
    return _seeded(model, seed), _features(seed)


def bidi_then_simple(seed: int = 0) -> tuple[Any, np.ndarray]:
    """Bidirectional(SimpleRNN(rs)) -> SimpleRNN -> Dense(3, softmax)."""
    L = _keras().layers
    model = _keras().Sequential([_keras().Input((None, D)),
                                 L.Bidirectional(L.SimpleRNN(5, return_sequences=True)),
                                 L.SimpleRNN(4), L.Dense(3, activation="softmax")])
    return _seeded(model, seed), _features(seed)


def mlp_head(seed: int = 0) -> tuple[Any, np.ndarray]:
    """SimpleRNN -> Dense(8, relu) -> Dense(1), functional."""
    keras = _keras()
    L = keras.layers
    inp = keras.Input((None, D))
    h = L.Dense(1)(L.Dense(8, activation="relu")(L.SimpleRNN(5, activation="relu")(inp)))
    return _seeded(keras.Model(inp, h), seed), _features(seed)


def tagger(seed: int = 0) -> tuple[Any, np.ndarray]:
    """SimpleRNN(rs) -> TimeDistributed(Dense) -> Activation(log_softmax) (a tagger)."""
    L = _keras().layers
    model = _keras().Sequential([_keras().Input((None, D)),
                                 L.SimpleRNN(5, return_sequences=True),
                                 L.TimeDistributed(L.Dense(4, use_bias=False)),
                                 L.Activation("log_softmax")])
    return _seeded(model, seed), _features(seed)


def noisy(seed: int = 0) -> tuple[Any, np.ndarray]:
    """GaussianNoise -> SimpleRNN(rs) -> SpatialDropout1D -> SimpleRNN -> GaussianDropout ->
    AlphaDropout -> Dense."""
    L = _keras().layers
    model = _keras().Sequential([
        _keras().Input((None, D)), L.GaussianNoise(0.3),
        L.SimpleRNN(5, return_sequences=True, activation="softsign"), L.SpatialDropout1D(0.2),
        L.SimpleRNN(4, return_sequences=True), L.GaussianDropout(0.1), L.Dense(2),
        L.AlphaDropout(0.1)])
    return _seeded(model, seed), _features(seed)


def go_backwards(seed: int = 0) -> tuple[Any, np.ndarray]:
    """SimpleRNN(go_backwards) -> Dense."""
    L = _keras().layers
    model = _keras().Sequential([_keras().Input((None, D)), L.SimpleRNN(5, go_backwards=True),
                                 L.Dense(2, activation="tanh")])
    return _seeded(model, seed), _features(seed)


def masked_bidi_backwards(seed: int = 0) -> tuple[Any, np.ndarray]:
    """Masking -> Bidirectional(relu, rs) -> SimpleRNN(go_backwards)."""
    L = _keras().layers
    model = _keras().Sequential([
        _keras().Input((None, D)), L.Masking(0.0),
        L.Bidirectional(L.SimpleRNN(5, activation="relu", return_sequences=True),
                        merge_mode="ave"),
        L.SimpleRNN(4, go_backwards=True, return_sequences=True)])
    return _seeded(model, seed), _features(seed, masked=True)


def masked_bidi_final(seed: int = 0) -> tuple[Any, np.ndarray]:
    """Embedding(mask_zero) -> Bidirectional(SimpleRNN) -> Dense(3, softmax) via Activation."""
    L = _keras().layers
    model = _keras().Sequential([
        _keras().Input((None,), dtype="int32"), L.Embedding(V, D, mask_zero=True),
        L.Bidirectional(L.SimpleRNN(5, use_bias=False)), L.Dense(3),
        L.Activation("softmax")])
    return _seeded(model, seed), _ids(seed, True)


def rnn_cell(seed: int = 0) -> tuple[Any, np.ndarray]:
    """Embedding(mask_zero) -> RNN(SimpleRNNCell, rs) -> Bidirectional(RNN(SimpleRNNCell))
    -> Dense."""
    L = _keras().layers
    model = _keras().Sequential([
        _keras().Input((None,), dtype="int32"), L.Embedding(V, D, mask_zero=True),
        L.RNN(L.SimpleRNNCell(5), return_sequences=True),
        L.Bidirectional(L.RNN(L.SimpleRNNCell(4, activation="relu"))), L.Dense(2)])
    return _seeded(model, seed), _ids(seed, True)


def hand_made_bidi(seed: int = 0) -> tuple[Any, np.ndarray]:
    """Embedding(mask_zero) -> [SimpleRNN, SimpleRNN(go_backwards)] -> Concatenate -> Dense
    (a Bidirectional layer made by hand, functional)."""
    keras = _keras()
    L = keras.layers
    inp = keras.Input((None,), dtype="int32")
    x = L.Embedding(V, D, mask_zero=True)(inp)
    h = L.Concatenate()([L.SimpleRNN(5)(x), L.SimpleRNN(5, go_backwards=True)(x)])
    return _seeded(keras.Model(inp, L.Dense(1, activation="sigmoid")(h)), seed), _ids(seed, True)


ZOO: dict[str, Callable[[int], tuple[Any, np.ndarray]]] = {
    "imdb": imdb, "imdb-mask-zero": imdb_masked, "dropout-stack": dropout_stack,
    "bidi-then-simple": bidi_then_simple, "mlp-head": mlp_head, "tagger": tagger,
    "noisy": noisy, "go-backwards": go_backwards,
    "masked-bidi-backwards": masked_bidi_backwards, "masked-bidi-final": masked_bidi_final,
    "rnn-cell": rnn_cell, "hand-made-bidi": hand_made_bidi,
}
