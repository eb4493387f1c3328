"""Each recorded deviation is still real (if one fails, the framework changed: update the data)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import RNNConfig
from rnn_ref.backends import deviations


def test_every_backend_file_is_well_formed() -> None:
    ids = {name: [d.id for d in deviations.load(name)]
           for name in (*rnn_ref._registry.BACKENDS, "flax")}
    assert ids["numpy"] == [] and ids["jax"] == []
    assert "zero-length-final-state" in ids["onnxruntime"]
    assert "masked-step-carries-state" in ids["keras[jax]"]
    for name in ids:
        for d in deviations.load(name):
            assert d.what and d.spec and d.source and (d.match is None or isinstance(d.match, dict))


def test_onnxruntime_zero_length_final_state() -> None:
    need("onnxruntime")
    params = rnn_ref.init(RNNConfig(3, 4, direction="reverse"), seed=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    h0 = np.full((1, 2, 4), 0.5, np.float32)
    got = rnn_ref.get_backend("onnxruntime").forward(params, x, lengths=np.array([0, 5]), h0=h0)
    spec = rnn_ref.forward(params, x, lengths=np.array([0, 5]), h0=h0)
    np.testing.assert_array_equal(spec.h_n[0, 0], 0.5)
    np.testing.assert_array_equal(got.h_n[0, 0], 0.0)  # the deviation
    np.testing.assert_allclose(got.h_n[0, 1], spec.h_n[0, 1], atol=2e-6)  # the rest is right


def test_torch_refuses_zero_length() -> None:
    torch = need("torch")
    with pytest.raises(RuntimeError, match="Length of all samples has to be greater than 0"):
        torch.nn.utils.rnn.pack_padded_sequence(torch.zeros(2, 5, 3), torch.tensor([0, 5]),
                                                batch_first=True, enforce_sorted=False)


@pytest.mark.parametrize("module", ["RNN", "GRU", "LSTM"])
def test_torch_refuses_empty_sequence(module: str) -> None:
    torch = need("torch")
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
        getattr(torch.nn, module)(3, 4, batch_first=True)(torch.zeros(2, 0, 3))


def _keras_script(backend: str, code: str) -> str:
    import os
    import subprocess
    import sys

    need("keras")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return res.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_keras_refuses_empty_sequence() -> None:
    code = ("import numpy as np, keras\n"
            "try:\n"
            "    keras.layers.SimpleRNN(4)(np.zeros((2, 0, 3), 'float32'))\n"
            "    print('accepted')\n"
            "except Exception as e:\n"
            "    print('refused')")
    assert _keras_script("tensorflow", code) == "refused"


@pytest.mark.slow
def test_keras_torch_float64_precision() -> None:
    code = ("import numpy as np, keras, rnn_ref\n"
            "layer = keras.layers.SimpleRNN(4, return_sequences=True, dtype='float64')\n"
            "x = np.random.default_rng(0).standard_normal((3, 7, 5))\n"
            "out = keras.ops.convert_to_numpy(layer(x))\n"
            "print(out.dtype, float(np.abs(out - rnn_ref.oracle(layer)(x)).max()))")
    dtype, err = _keras_script("torch", code).split()
    assert dtype == "float64" and 1e-9 < float(err) < 1e-5  # float32's precision, not float64's
    dtype, err = _keras_script("tensorflow", code).split()
    assert float(err) < 1e-12


def test_flax_rnn_padding() -> None:
    jnp = need("jax.numpy")
    nnx = need("flax.nnx")
    cell = nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0))
    params = rnn_ref.from_flax(cell)
    x = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    out = np.asarray(nnx.RNN(cell)(jnp.asarray(x), seq_lengths=jnp.array([2, 5])))
    spec = rnn_ref.forward(params, x, lengths=[2, 5])
    np.testing.assert_allclose(out[0, :2], spec.outputs[0, :2], atol=2e-6)
    assert np.abs(out[0, 2:]).min() > 0  # padded outputs are computed, not zeroed
    rev = nnx.RNN(cell, reverse=True, keep_order=True)
    out_r = np.asarray(rev(jnp.asarray(x), seq_lengths=jnp.array([0, 5])))
    assert np.abs(out_r[0]).min() > 0  # a zero length still reads the whole sequence
