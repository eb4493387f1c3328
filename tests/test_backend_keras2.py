"""Keras 2 (tf-keras): its .h5 files (which Keras 3 cannot load), converters, oracle, and the
keras2[tensorflow] backend held to the quick conformance matrix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import need, need_keras

import rnn_ref
from rnn_ref import RNNConfig, UnsupportedError, convert
from rnn_ref.conformance.runner import _equivalent

pytestmark = pytest.mark.slow
need_keras()  # torch before TensorFlow
tk = need("tf_keras")
from rnn_ref.backends.keras2 import backend as k2_backend  # noqa: E402
from rnn_ref.backends.keras2 import convert as k2  # noqa: E402  (after the skip)
from rnn_ref.backends.keras2 import files as k2_files  # noqa: E402

L = tk.layers
N, T, D = 3, 7, 4  # with M = 5, 6 and K = 2 below: no two sizes equal
BACKEND = "keras2[tensorflow]"


def _backend() -> object:
    name = BACKEND if BACKEND in rnn_ref.available_backends() else \
        "rnn_ref.backends.keras2.backend:tensorflow_backend"
    return rnn_ref.get_backend(name)


def _read(path: Path) -> rnn_ref.RNNParams:
    """Through rnn_ref.convert once the format is registered, else the module's reader."""
    if k2.FORMAT in convert.FORMATS:
        return convert.read(path, k2.FORMAT)
    return k2_files.read_file(path, k2.FORMAT, convert.Hints())


def _save(model: object, path: Path) -> None:
    """``model.save(path)`` as users do, without tf-keras' "HDF5 is legacy" warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)  # type: ignore[attr-defined]


def _x(seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((N, T, D)).astype(np.float32)
    x[0, 5:] = 0.0  # right padding
    x[1, :2] = 0.0  # left padding: leading masked steps
    x[2, 3] = 0.0  # a hole
    return x


def _sequential() -> object:
    return tk.Sequential([
        tk.Input((None, D)), L.Masking(0.0),
        L.Bidirectional(L.SimpleRNN(5, activation="relu", return_sequences=True)),
        L.Bidirectional(L.SimpleRNN(6, activation="hard_sigmoid", return_sequences=True),
                        merge_mode="sum"),
        L.Dense(2, activation="sigmoid")])


def _functional() -> object:
    inputs = tk.Input((None, D))
    h = L.Masking(0.0)(inputs)
    h = L.SimpleRNN(5, go_backwards=True, return_sequences=True, activation="leaky_relu")(h)
    return tk.Model(inputs, L.Dense(2)(h))


@pytest.mark.parametrize("make", [_sequential, _functional], ids=["sequential", "functional"])
def test_keras2_h5_read_by_rnn_ref_equals_tf_keras(make: object, tmp_path: Path) -> None:
    tk.utils.set_random_seed(1)
    model = make()
    path = tmp_path / "model.h5"
    _save(model, path)
    params = _read(path)
    assert params == k2.from_native(model)  # the file and the live model, bit for bit
    assert params.config.padded_output == ("zeros" if params.config.direction == "bidirectional"
                                           else "carry_output")
    x = _x(2)
    want = model(x).numpy()
    mask = np.any(x != 0.0, axis=-1)
    got = rnn_ref.forward(params, x, mask=mask).y
    np.testing.assert_allclose(got, want, atol=3e-6)
    np.testing.assert_allclose(k2.oracle(model)(x), want, atol=3e-6)


def test_a_layer_after_go_backwards_is_refused(tmp_path: Path) -> None:
    """go_backwards hands the next layer its outputs in processing order: a layer after one is
    refused, model and file (the issue's Bidirectional -> go_backwards model reads:
    tests/test_keras2_models.py)."""
    model = tk.Sequential([
        tk.Input((None, D)), L.Masking(0.0),
        L.SimpleRNN(5, go_backwards=True, return_sequences=True), L.SimpleRNN(6), L.Dense(2)])
    _save(model, tmp_path / "stacked.h5")
    for read in (lambda: k2.from_native(model), lambda: _read(tmp_path / "stacked.h5")):
        with pytest.raises(UnsupportedError, match="go_backwards=True below another"):
            read()


def test_keras2_h5_facts_and_keras3_refuses_it(tmp_path: Path) -> None:
    """Why a converter is needed: tf-keras names weights with ':0' and records time_major, and
    Keras 3 cannot load the file. The sniffer tells the two kinds of .h5 apart."""
    import h5py

    keras = need_keras()
    path = tmp_path / "k2.h5"
    _save(_sequential(), path)
    with h5py.File(path, "r") as f:
        assert f.attrs["keras_version"].startswith("2.")
        text = [n.decode() if isinstance(n, bytes) else n
                for n in f["model_weights"].attrs["layer_names"]]
        bidi, dense = text[1], text[-1]  # masking, bidirectional(_k), ..., dense(_k)
        names = [n.decode() if isinstance(n, bytes) else n for n in
                 f[f"model_weights/{bidi}"].attrs["weight_names"]]
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
    assert names[0].startswith(f"{bidi}/forward_simple_rnn")
    assert names[0].endswith("/simple_rnn_cell/kernel:0")
    assert layers[2]["config"]["layer"]["config"]["time_major"] is False
    with pytest.raises(Exception, match="time_major"):
        keras.saving.load_model(path, compile=False)
    k3 = tmp_path / "k3.h5"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.Sequential([keras.Input((None, D)), keras.layers.SimpleRNN(3)]).save(k3)
    assert (k2.sniff_h5(path), k2.sniff_h5(k3)) == ("keras2-h5", "keras-h5")
    weights = tmp_path / "w.h5"
    _functional().save_weights(weights)
    assert k2.sniff_h5(weights) == "keras2-h5"
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    assert k2.sniff_h5(junk) is None
    arrays = dict((n, s) for n, s, _ in k2_files.list_arrays(path, k2.FORMAT))
    assert arrays[f"model_weights/{dense}/{dense}/kernel:0"] == (6, 2)


def test_converters_bit_exact_non_square() -> None:
    # D=4, M=(5, 6), K=2, T=7: no size equals another
    cfg = RNNConfig(D, (5, 6), direction="bidirectional", merge_mode=("concat", "ave"),
                    activation=[("relu", "tanh"), (k2.KERAS2_ACTIVATIONS["elu"],
                                                   k2.KERAS2_ACTIVATIONS["hard_sigmoid"])],
                    output_size=2, output_activation="softsign")
    for c in (cfg, RNNConfig(D, 5, direction="reverse", output_order="processing",
                             bias=False, output_size=2)):
        params = rnn_ref.init(c, seed=7)
        model = k2.to_native(params)
        back = k2.from_native(model)
        assert _equivalent(params, back) == ""
        again = k2.to_native(back)
        for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        x = np.random.default_rng(8).standard_normal((N, T, D)).astype(np.float32)
        np.testing.assert_allclose(model(x).numpy(), rnn_ref.forward(params, x).y, atol=3e-6)
    # Keras 3's hard_sigmoid (1/6) is not Keras 2's (0.2): refused, never approximated
    k3_hs = rnn_ref.init(RNNConfig(D, 5, activation=rnn_ref.backends.keras.record
                                   .KERAS_ACTIVATIONS["hard_sigmoid"]), seed=0)
    with pytest.raises(UnsupportedError, match="hard_sigmoid"):
        k2.to_native(k3_hs)


def test_tf_keras_model_to_canonical_and_bare_layers() -> None:
    tk.utils.set_random_seed(3)
    x = _x(4)
    layer = L.SimpleRNN(5, return_sequences=True, return_state=True, activation="hard_sigmoid")
    h0 = np.random.default_rng(5).standard_normal((N, 5)).astype(np.float32)
    mask = np.any(x != 0.0, axis=-1)
    import tensorflow as tf

    want = layer(x, mask=mask, initial_state=[tf.constant(h0)])
    got = k2.oracle(layer)(x, mask=mask, initial_state=[h0])
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=3e-6)
    assert k2.from_native(layer).config.padded_output == "carry_output"
    tm = L.SimpleRNN(6, time_major=True, return_sequences=True)
    xt = x.swapaxes(0, 1)
    want_tm = tm(xt).numpy()
    np.testing.assert_allclose(k2.oracle(tm)(xt), want_tm, atol=3e-6)
    with pytest.raises(UnsupportedError, match="the Conv1D layer"):
        k2.from_native(tk.Sequential([tk.Input((None, D)), L.Conv1D(3, 2), L.LSTM(3)]))
    with pytest.raises(UnsupportedError, match="the Activation layer"):
        k2.from_native(tk.Sequential([tk.Input((None, D)), L.SimpleRNN(3,
                                      return_sequences=True), L.Activation("relu"), L.Dense(2)]))


def test_file_functions_write_load_run(tmp_path: Path) -> None:
    params = rnn_ref.init(RNNConfig(D, 5, num_layers=2, activation="relu", output_size=2),
                          seed=2)
    path = tmp_path / "out.h5"
    k2_files.write_file(params, path, k2.FORMAT)
    back = _read(path)
    assert _equivalent(params, back) == ""
    native = k2_files.load_native(path, k2.FORMAT, back)
    x = np.random.default_rng(1).standard_normal((N, T, D)).astype(np.float32)
    np.testing.assert_allclose(k2_files.run_native(native.model, x), rnn_ref.forward(params, x).y,
                               atol=3e-6)
    # an Activation layer between the layers of a saved model is refused by name, not skipped
    model = tk.Sequential([tk.Input((None, D)), L.SimpleRNN(3, return_sequences=True),
                           L.Activation("relu"), L.Dense(2)])
    _save(model, tmp_path / "act.h5")
    with pytest.raises(UnsupportedError, match="the Activation layer"):
        _read(tmp_path / "act.h5")


def test_keras2_refuses_empty_sequence() -> None:
    """The recorded deviation empty-sequence-refused is still real."""
    params = rnn_ref.init(RNNConfig(D, 5), seed=0)
    with pytest.raises(Exception, match="out of bounds"):
        k2_backend.Keras2Backend().forward(params, np.zeros((2, 0, D), np.float32))
