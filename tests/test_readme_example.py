"""The README's example, run for real: the Keras tutorial's manual check, done by the oracle."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import need

EXAMPLE = textwrap.dedent(
    """
    import numpy as np
    import keras
    import rnn_ref

    model = keras.Sequential([keras.Input((10, 3)), keras.layers.SimpleRNN(5),
                              keras.layers.Dense(2)])
    x = np.random.default_rng(0).standard_normal((1, 10, 3)).astype("float32")

    kernel, recurrent_kernel, bias = model.layers[0].get_weights()
    w_y, b_y = model.layers[1].get_weights()
    config = rnn_ref.RNNConfig(input_size=3, hidden_size=5, output_size=2)
    params = rnn_ref.RNNParams(
        config,
        [[rnn_ref.CellParams(kernel, recurrent_kernel, bias, np.zeros_like(bias))]],
        rnn_ref.Readout(w_y, b_y),
    )
    result = rnn_ref.forward(params, x)   # float64: outputs (1, 10, 5), y (1, 10, 2)
    print(np.abs(result.y[:, -1] - model.predict(x, verbose=0)).max())
    """
)


@pytest.mark.slow
def test_readme_example_matches_keras() -> None:
    need("keras")
    readme = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
    assert EXAMPLE.strip() in readme, "the README's example and this test drifted apart"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", EXAMPLE], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert float(out.strip().splitlines()[-1]) < 1e-5


def test_readme_network_example_runs_as_printed() -> None:
    """The README's network example (section "The models people train") needs NumPy only and
    prints what its comment says."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## The models people train", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "(2, 3) [1. 1.]"
