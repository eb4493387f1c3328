"""Keras 3: converters, the oracle against Keras' own layers, the three keras[...] backends."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import need_keras

import rnn_ref
from rnn_ref import RNNConfig, UnsupportedError

pytestmark = pytest.mark.slow
keras = need_keras()
L = keras.layers
N, T, D = 4, 6, 3


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, T, D)).astype(np.float32)


def _mask() -> np.ndarray:
    """Holes, left padding (a leading masked step) and right padding."""
    m = np.ones((N, T), bool)
    m[0, :2] = False
    m[1, 3] = False
    m[2, 4:] = False
    return m


def _close(got: object, want: object) -> None:
    if isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _close(g, w)
        return
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(want), atol=3e-6)


MODELS = {
    "masking-stack-dense": lambda: keras.Sequential([
        keras.Input((None, D)), L.Masking(0.0),
        L.SimpleRNN(5, return_sequences=True, activation="relu"),
        L.SimpleRNN(4, return_sequences=True, activation="hard_sigmoid"),
        L.Dense(2, activation="sigmoid")]),
    "bidirectional-merges": lambda: keras.Sequential([
        keras.Input((None, D)),
        L.Bidirectional(L.SimpleRNN(4, return_sequences=True, activation="elu"),
                        merge_mode="sum"),
        L.Bidirectional(L.SimpleRNN(3, activation="softsign"), merge_mode="ave"),
        L.Dense(2)]),
    "nobias-last-output": lambda: keras.Sequential([
        keras.Input((None, D)), L.SimpleRNN(5, use_bias=False, activation="leaky_relu")]),
    "go-backwards": lambda: keras.Sequential([
        keras.Input((None, D)), L.SimpleRNN(5, go_backwards=True, return_sequences=True)]),
}


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_round_trip_bit_exact_and_oracle(make: object) -> None:
    model = make()
    params = rnn_ref.from_keras(model)
    again = rnn_ref.to_keras(params)  # the selection and Masking are in the config
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert rnn_ref.from_keras(again) == params
    x = _x(1)
    if isinstance(model.layers[0], L.Masking):
        x[0, :2] = 0.0  # a leading masked step
        x[1, 3] = 0.0  # a hole
    _close(rnn_ref.oracle(model)(x), model(x))
    _close(rnn_ref.oracle(again)(x), model(x))


def test_bare_layers_masks_initial_state_and_return_state() -> None:
    x, mask = _x(2), _mask()
    h0 = np.random.default_rng(3).standard_normal((N, 5)).astype(np.float32)
    layer = L.SimpleRNN(5, go_backwards=True, return_sequences=True, return_state=True)
    want = layer(x, mask=mask, initial_state=[h0])  # builds the layer
    _close(rnn_ref.oracle(layer)(x, mask=mask, initial_state=[h0]), want)
    # a leading masked step with a non-zero h0: TensorFlow outputs zeros there (carry_output)
    fwd = L.SimpleRNN(5, return_sequences=True)
    out = keras.ops.convert_to_numpy(fwd(x, mask=mask, initial_state=[h0]))
    np.testing.assert_array_equal(out[0, 0], 0.0)
    assert rnn_ref.from_keras(fwd).config.padded_output == "carry_output"
    _close(rnn_ref.oracle(fwd)(x, mask=mask, initial_state=[h0]), out)
    for merge in ("concat", "mul", None):
        for seqs in (True, False):
            bi = L.Bidirectional(L.SimpleRNN(3, return_sequences=seqs, return_state=True),
                                 merge_mode=merge)
            hb = [h0[:, :3], -h0[:, 2:]]
            want = bi(x, mask=mask, initial_state=hb)
            _close(rnn_ref.oracle(bi)(x, mask=mask, initial_state=hb), want)


def test_keras_on_jax_records_carry_state() -> None:
    code = ("import numpy as np, keras, rnn_ref\n"
            "layer = keras.layers.SimpleRNN(4, return_sequences=True)\n"
            "x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype('float32')\n"
            "m = np.ones((2, 5), bool); m[0, 0] = False\n"
            "h0 = np.full((2, 4), 0.5, 'float32')\n"
            "out = np.asarray(layer(x, mask=m, initial_state=[h0]))\n"
            "p = rnn_ref.from_keras(layer)\n"
            "ref = rnn_ref.oracle(layer)(x, mask=m, initial_state=[h0])\n"
            "print(p.config.padded_output, out[0, 0].tolist(), float(np.abs(ref - out).max()))")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    words = res.stdout.strip().splitlines()[-1]
    mode = words.split(" ", 1)[0]
    assert mode == "carry_state"
    assert "[0.5, 0.5, 0.5, 0.5]" in words  # the leading masked step outputs h0
    assert float(words.rsplit(" ", 1)[1]) < 3e-6


@pytest.fixture(scope="module", params=["keras[tensorflow]", "keras[jax]", "keras[torch]"])
def keras_backend(request: pytest.FixtureRequest) -> object:
    backend = rnn_ref.get_backend(request.param)
    yield backend


CASES = {
    "bidir-2layer-h0-mask-readout": (
        RNNConfig(D, (4, 3), direction="bidirectional", merge_mode=("concat", "sum"),
                  activation=[("relu", "tanh"), ("sigmoid", "softplus")], output_size=2),
        True, True),
    "forward-narrow-carry": (RNNConfig(D, (5, 2), padded_output="carry_output"), False, True),
    "reverse-processing-zeros": (
        RNNConfig(D, 4, direction="reverse", output_order="processing", bias=False), True, True),
    "nobias-unpadded": (RNNConfig(D, 4, num_layers=2, bias=False), True, False),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_keras_backends_against_the_oracle(keras_backend: object, case: tuple) -> None:
    cfg, with_h0, with_mask = case
    name = keras_backend.name
    if name == "keras[jax]" and cfg.padded_output == "carry_output" and with_mask:
        cfg = cfg.replace(padded_output="carry_state")  # what Keras on JAX does
    params = rnn_ref.init(cfg, seed=4)
    x = _x(5)
    R = cfg.num_directions
    h0 = ([np.random.default_rng(6).standard_normal((N, m)).astype(np.float32)
           for m in cfg.hidden_sizes for _ in range(R)] if with_h0 else None)
    mask = _mask() if with_mask else None
    got = keras_backend.forward(params, x, h0=h0, mask=mask)
    want = rnn_ref.forward(params, x, h0=h0, mask=mask)
    np.testing.assert_allclose(got.outputs, want.outputs, atol=3e-6, err_msg=name)
    for g, w in zip(got.h_n, want.h_n, strict=True):
        np.testing.assert_allclose(g, w, atol=3e-6, err_msg=name)
    if want.y is not None:
        np.testing.assert_allclose(got.y, want.y, atol=3e-6, err_msg=name)


def test_keras_backend_refusals(keras_backend: object) -> None:
    carry = "carry_state" if keras_backend.name != "keras[jax]" else "carry_output"
    params = rnn_ref.init(RNNConfig(D, 4, padded_output=carry), seed=0)
    with pytest.raises(UnsupportedError, match=f"padded_output '{carry}'"):
        keras_backend.forward(params, _x(), mask=_mask())


def test_what_keras_cannot_express_raises() -> None:
    for changes, feature in (
        ({"clip": 1.0}, "Keras cannot express clip"),
        ({"activation": {"name": "elu", "alpha": 0.5}}, "activation elu"),
        ({"direction": "reverse"}, "time-aligned outputs of a reverse direction"),
        ({"direction": "reverse", "num_layers": 2, "output_order": "processing"},
         "a reverse layer below another layer"),
    ):
        cfg = RNNConfig(**{"input_size": D, "hidden_size": 4, **changes})
        with pytest.raises(UnsupportedError, match=feature):
            rnn_ref.to_keras(rnn_ref.init(cfg, seed=0))
    with pytest.raises(UnsupportedError, match="the ConvLSTM1D layer"):
        rnn_ref.from_keras(keras.Sequential([keras.Input((None, 5, D)), L.ConvLSTM1D(3, 2)]))
    with pytest.raises(UnsupportedError, match="go_backwards=True below another"):
        rnn_ref.from_keras(keras.Sequential([
            keras.Input((None, D)), L.SimpleRNN(3, go_backwards=True, return_sequences=True),
            L.SimpleRNN(3, go_backwards=True)]))
    with pytest.raises(UnsupportedError, match="the Keras activation 'gelu'"):
        rnn_ref.from_keras(L.SimpleRNN(3, activation="gelu"))
