"""Every cross pair: a model built in one framework, converted to another, gives the same numbers.

For each config and each source framework that can express it: build the source's native
model, read it back (``from_*``), convert to every target that can express it (``to_*``), run
both in their own frameworks on seeded inputs with lengths, and compare the valid steps within
the float32 tolerance. Padded steps differ by design (docs/spec.md section 4.3) and are covered
elsewhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need, need_keras
from native import run_flax, run_keras, run_onnx, run_torch

import rnn_ref
from rnn_ref import Activation, RNNConfig, UnsupportedError
from rnn_ref.conformance.compare import compare, tolerance

pytestmark = pytest.mark.slow
N, T, D = 3, 6, 5

CONFIGS = {
    "bidir-2layer-tanh-readout": RNNConfig(D, 4, num_layers=2, direction="bidirectional",
                                           output_size=3),
    "fwd-2layer-relu-nobias": RNNConfig(D, 4, num_layers=2, activation="relu", bias=False),
    "fwd-sigmoid": RNNConfig(D, 4, activation="sigmoid"),
    "fwd-2layer-hard-sigmoid-narrowing": RNNConfig(
        D, (6, 3), activation=Activation("hard_sigmoid", 1 / 6, 0.5)),
    "reverse-processing-softsign": RNNConfig(D, 4, direction="reverse", activation="softsign",
                                             output_order="processing"),
}


def _kinds(tmp: Path) -> dict[str, tuple[Callable[..., Any], Callable[[Any], Any],
                                          Callable[..., np.ndarray]]]:
    """name -> (to_native(params, lengths), from_native(native), run(native, x, lengths))."""
    need("torch")
    need("onnxruntime")
    need("flax")
    need_keras()

    def to_file(params: rnn_ref.RNNParams, lengths: bool) -> Path:
        path = tmp / f"m{next(_counter)}.npz"
        return rnn_ref.save(params, path)

    def run_file(path: Path, x: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        res = rnn_ref.get_backend("numpy").forward(rnn_ref.load(path), x, lengths=lengths)
        return res.y if res.y is not None else res.outputs

    def to_flax(params: rnn_ref.RNNParams, lengths: bool) -> Any:
        if lengths or params.config.direction != "forward":
            raise UnsupportedError("flax.nnx.RNN", "lengths or a reverse direction here",
                                   "its padding deviates (see flax/deviations/flax.json)")
        return rnn_ref.to_flax(params)

    return {
        "torch": (lambda p, lengths: rnn_ref.to_torch(p), rnn_ref.from_torch, run_torch),
        "keras": (lambda p, lengths: rnn_ref.to_keras(p, mask_value=0.0 if lengths else None),
                  rnn_ref.from_keras, run_keras),
        "onnx": (lambda p, lengths: rnn_ref.to_onnx(p, lengths=lengths), rnn_ref.from_onnx,
                 run_onnx),
        "flax": (to_flax, lambda cells: rnn_ref.from_flax(cells, activation=None),
                 lambda cells, x, lengths: run_flax(cells, x)),
        "canonical": (to_file, rnn_ref.load, run_file),
    }


_counter = itertools.count()


@pytest.mark.parametrize("with_lengths", [True, False], ids=["lengths", "full"])
@pytest.mark.parametrize("name", CONFIGS, ids=CONFIGS.keys())
def test_cross_pairs(name: str, with_lengths: bool, tmp_path: Path) -> None:
    cfg = CONFIGS[name]
    kinds = _kinds(tmp_path)
    params = rnn_ref.init(cfg, seed=11)
    x = np.random.default_rng(12).standard_normal((N, T, D)).astype(np.float32)
    lengths = np.array([6, 2, 4]) if with_lengths else None
    valid = (np.ones((N, T), bool) if lengths is None
             else np.arange(T)[None, :] < lengths[:, None])
    if cfg.output_order == "processing":
        valid = valid[:, ::-1]
    tol = tolerance("float32", T, [a for layer in cfg.activations for a in layer],
                    layers=cfg.num_layers)
    pairs = 0
    for src, (to_src, from_src, run_src) in kinds.items():
        try:
            native_src = to_src(params, with_lengths)
        except UnsupportedError:
            continue
        source_params = from_src(native_src)
        if source_params.config.activation_of(0, 0) != cfg.activation_of(0, 0):
            source_params = source_params.replace(activation=cfg.activation)  # flax params
        want = run_src(native_src, x, lengths)
        for dst, (to_dst, _, run_dst) in kinds.items():
            if dst == src:
                continue
            try:
                native_dst = to_dst(source_params, with_lengths)
            except UnsupportedError:
                continue
            got = run_dst(native_dst, x, lengths)
            report = compare(got[valid], want[valid], tol, time_axis=None)
            assert report.passed, f"{src} -> {dst}: {report.summary()}"
            pairs += 1
    assert pairs >= 2, f"{name}: only {pairs} cross pairs ran"
