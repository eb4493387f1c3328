"""Issue 22 item 2: one declaration per format of what its file records decides what can be
written, which hints read it back and what ``--verify`` checks. Property: a random network
converts, with ``--verify``, to every format whose framework declares it can hold it, and the
file read back with the hints the declaration names computes what the network computes."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import need
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from strategies import networks

import rnn_ref
from rnn_ref import convert
from rnn_ref.network import SHOWS_PADDED_STEPS
from rnn_ref.reference import returned

need("torch")
need("keras")
need("onnxruntime")

#: every format that can be written, with an extension that names it
WRITABLE = {"rnn-ref": ".npz", "torch": ".pt", "safetensors": ".safetensors",
            "keras": ".keras", "keras-weights": ".weights.h5", "keras-h5": ".h5",
            "keras2-h5": ".h5", "onnx": ".onnx", "tflite": ".tflite",
            "tflite-keras2": ".tflite"}


@st.composite
def holdable_networks(draw: st.DrawFn) -> rnn_ref.RNNConfig:
    """Random whole networks (tests/strategies.py) with the cell activations, heads and no
    clip that most frameworks hold, so that every format is exercised."""
    base = draw(networks(max_layers=2))
    acts = [[draw(st.sampled_from(["tanh", "relu"])) for _ in range(base.num_directions_of(i))]
            for i in range(base.num_layers)]
    head = [(d.units, draw(st.sampled_from(["linear", "tanh", "sigmoid"]
                                           + (["softmax"] if d.units > 1 else []))), True)
            for d in base.head]
    # padded steps as every framework computes them where the result shows them (a target
    # that computes them otherwise warns and records its own: tested in test_network.py)
    padded = "zeros" if base.select in SHOWS_PADDED_STEPS else base.padded_output
    return base.replace(activation=acts, clip=None, head=head, padded_output=padded)


def test_every_format_is_in_the_property() -> None:
    assert set(WRITABLE) == set(convert.FORMATS)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(cfg=holdable_networks(), seed=st.integers(0, 2**16))
def test_random_networks_convert_with_verify_wherever_declared(
        cfg: rnn_ref.RNNConfig, seed: int) -> None:
    params = rnn_ref.init(cfg, seed=seed, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="rnn-ref-formats-") as d, \
            warnings.catch_warnings():
        # a target that computes padded steps otherwise says so (and --verify compares the
        # valid steps): the documented warning, not a failure
        warnings.simplefilter("ignore", rnn_ref.SemanticsWarning)
        _every_format(params, Path(d), seed)


def _every_format(params: rnn_ref.RNNParams, folder: Path, seed: int) -> None:
    cfg = params.config
    src = convert.write(params, folder / "src.npz")
    held = [fmt for fmt, why in convert.convertible(params).items() if why is None]
    for fmt in held:
        event(f"writes {fmt}")
    assert "rnn-ref" in held  # the canonical file holds every network
    for fmt in held:
        dst = folder / f"dst-{fmt}{WRITABLE[fmt]}"
        done = convert.convert(src, dst, dst_format=fmt, verify=True)
        assert done.verification is not None and done.verification.passed, (
            fmt, cfg.describe(), done.verification)
        if convert.readable(fmt):
            back = convert.read(dst, fmt, convert.hints_for(params, fmt))
            x = convert.verify_inputs(cfg, np.float32, convert.VERIFY_PADDING, seed)
            want = returned(cfg, rnn_ref.forward(params, x))
            got = returned(back.config, rnn_ref.forward(back, x))
            assert len(got) == len(want), (fmt, back.config.returns, cfg.returns)
            for g, w in zip(got, want, strict=True):
                for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (g, w)),
                                strict=True):
                    np.testing.assert_allclose(a, b, atol=1e-5, err_msg=f"{fmt}: read back")
