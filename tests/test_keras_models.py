"""Keras 3 models as users build them (tests/zoo_keras.py): the oracle returns what the model
returns, from_keras -> to_keras is bit-exact, files round-trip, refusals name the layer."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import need_keras
from zoo_keras import ZOO, D

import rnn_ref
from rnn_ref import UnsupportedError, convert

keras = need_keras()
L = keras.layers


def _np(v: object) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(v))


@pytest.mark.parametrize("name", ZOO)
def test_oracle_round_trip_and_files(name: str, tmp_path: Path) -> None:
    model, x = ZOO[name](3)
    want = _np(model(x, training=False))
    got = rnn_ref.oracle(model)(x)
    err = float(np.abs(got - want).max())
    assert got.shape == want.shape and err < 5e-6, (name, err)
    params = rnn_ref.from_keras(model)
    again = rnn_ref.to_keras(params)
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert rnn_ref.from_keras(again) == params
    np.testing.assert_array_equal(_np(again(x)), want)
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"m{suffix}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras calls .h5 legacy
            model.save(str(path))
        assert convert.read(path) == params, suffix
    # weights only: into the architecture, the model's own and to_keras'
    for source in (model, again):
        weights = tmp_path / "m.weights.h5"
        source.save_weights(str(weights))
        rebuilt = keras.models.clone_model(source)
        rebuilt.load_weights(str(weights))
        assert rnn_ref.from_keras(rebuilt) == params
        np.testing.assert_array_equal(_np(rebuilt(x)), want)


def _refused(model: keras.Model, *words: str) -> None:
    with pytest.raises(UnsupportedError) as info:
        rnn_ref.from_keras(model)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_refusals_name_the_layer_or_operation() -> None:
    seq = keras.Sequential
    _refused(seq([keras.Input((None, D)), L.Rescaling(2.0, name="scale"), L.SimpleRNN(4)]),
             "Rescaling", "scale")
    _refused(seq([keras.Input((None, D)), L.SimpleRNN(4), L.Activation("relu", name="act"),
                  L.Dense(1)]), "Activation", "act", "relu")
    inp = keras.Input((None, D))
    _refused(keras.Model(inp, L.SimpleRNN(4)(keras.ops.multiply(inp, 2.0))), "multiply")
    h = L.Dense(2)(L.SimpleRNN(4)(inp))
    _refused(keras.Model(inp, keras.ops.softmax(h)), "operation", "softmax")
    _refused(seq([keras.Input((None, D)), L.SimpleRNN(4, go_backwards=True,
                                                      return_sequences=True, name="back"),
                  L.SimpleRNN(3)]), "back", "go_backwards", "flipped")
    other = keras.Input((None, D))
    merged = L.Concatenate(name="cat")([L.SimpleRNN(4)(inp), L.SimpleRNN(4)(other)])
    _refused(keras.Model([inp, other], merged), "2 inputs")
    _refused(seq([keras.Input((None, 5, D)), L.ConvLSTM1D(4, 2, name="conv")]),
             "ConvLSTM1D", "conv")
    _refused(seq([keras.Input((None, D)), L.SimpleRNN(4), L.Dense(2, activation="gelu")]),
             "gelu")


def test_activation_folds_into_a_linear_dense() -> None:
    model = keras.Sequential([keras.Input((None, D)), L.SimpleRNN(4), L.Dense(3),
                              L.Activation("relu")])
    head = rnn_ref.from_keras(model).config.head
    assert [str(d) for d in head] == ["Dense(3, relu)"]
    again = keras.Sequential([keras.Input((None, D)), L.SimpleRNN(4),
                              L.Dense(3, activation="tanh"), L.Activation("relu", name="r")])
    _refused(again, "r", "after the Dense layer")


def test_writer_refuses_what_keras_cannot_hold() -> None:
    cfg = rnn_ref.RNNConfig(3, 4, direction="bidirectional", select="final_backward")
    with pytest.raises(UnsupportedError, match="final_backward"):
        rnn_ref.to_keras(rnn_ref.init(cfg))
    cfg = rnn_ref.RNNConfig(3, 4, select="last_step", mask_value=0.0)
    with pytest.raises(UnsupportedError, match="last_step"):
        rnn_ref.to_keras(rnn_ref.init(cfg))


def test_padded_output_warns_or_refuses_when_strict() -> None:
    cfg = rnn_ref.RNNConfig(3, 4, direction="bidirectional", padded_output="carry_output",
                            mask_value=0.0)
    params = rnn_ref.init(cfg)
    with pytest.warns(rnn_ref.SemanticsWarning, match="carry_output"):
        model = rnn_ref.to_keras(params)
    assert rnn_ref.from_keras(model).config.padded_output == "zeros"
    with pytest.raises(UnsupportedError, match="carry_output"):
        rnn_ref.to_keras(params, strict=True)


@pytest.mark.slow
def test_keras_jax_backend_runs_the_whole_network() -> None:
    from rnn_ref.backends.keras.worker import jax_backend

    backend = jax_backend()
    try:
        for cfg in (
            rnn_ref.RNNConfig(3, [5, 4], direction=["bidirectional", "forward"], vocab_size=9,
                              mask_zero=True, select="final", head=[(6, "relu"), (2, "softmax")],
                              identities=[("dropout", 0.2, 1)], padded_output="carry_state"),
            rnn_ref.RNNConfig(3, [5, 4], direction=["forward", "reverse"], mask_value=0.0,
                              output_order="processing", head=[(2, "log_softmax", False)],
                              padded_output="carry_state"),
        ):
            params = rnn_ref.init(cfg, seed=1)
            rng = np.random.default_rng(2)
            x = (rng.integers(0, 9, (3, 6)) if cfg.vocab_size else
                 rng.standard_normal((3, 6, 3)) * (rng.random((3, 6, 1)) > 0.2))
            want = rnn_ref.forward(params, x)
            got = backend.forward(params, x)
            for w, g in ((want.outputs, got.outputs), (want.y, got.y), *zip(want.h_n, got.h_n,
                                                                                strict=True)):
                np.testing.assert_allclose(g, w, atol=5e-6)
            back = backend.round_trip(params)  # Keras has one bias: b_x + b_h
            merged = dict(params.named_arrays())
            for li, layer in enumerate(params.layers):
                for r, cell in enumerate(layer):
                    merged[f"layers.{li}.{r}.b_x"] = cell.b_x + cell.b_h
                    merged[f"layers.{li}.{r}.b_h"] = np.zeros_like(cell.b_h)
            assert back == rnn_ref.RNNParams.from_arrays(cfg, merged)
    finally:
        backend.close()
