"""LiteRT (``litert``, ``litert[unrolled]``): the quick matrix with the recorded deviations, a
non-square network, the ``.tflite`` file, the ops the converter emits, and each deviation
reproduced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import need, need_keras

import rnn_ref
from rnn_ref import RNNConfig
from rnn_ref.convert import Hints
from rnn_ref.errors import FileFormatError, UnsupportedError

need("ai_edge_litert")
need_keras()
from rnn_ref.backends.litert import convert as litert_backend  # noqa: E402
from rnn_ref.backends.litert import files as litert_files  # noqa: E402
from rnn_ref.backends.litert.convert import to_native  # noqa: E402
from rnn_ref.backends.litert.files import describe  # noqa: E402

WHILE = "rnn_ref.backends.litert.backend:LiteRtBackend"
UNROLLED = "rnn_ref.backends.litert.backend:LiteRtUnrolledBackend"


def _x(n: int = 3, t: int = 7, d: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, t, d)).astype(np.float32)


def _ops(params: rnn_ref.RNNParams, tmp_path: Path, **kw: object) -> list[str]:
    path = tmp_path / "m.tflite"
    path.write_bytes(to_native(params, **kw))  # type: ignore[arg-type]
    return describe(path)


@pytest.mark.parametrize("target", [WHILE, UNROLLED])
def test_non_square_network_within_float32_precision(target: str) -> None:
    # D=6, M=(9, 4), N=3, T=11, K=2: every axis different
    cfg = RNNConfig(6, (9, 4), activation=[("relu",), ("sigmoid",)], output_size=2,
                    output_activation="tanh")
    params = rnn_ref.init(cfg, seed=5)
    x = _x(3, 11, 6, seed=6)
    rng = np.random.default_rng(7)
    h0 = [rng.standard_normal((3, m)).astype(np.float32) * 0.5 for m in (9, 4)]
    lengths = np.array([11, 4, 8])
    got = rnn_ref.get_backend(target).forward(params, x, h0=h0, lengths=lengths)
    want = rnn_ref.forward(params, x, h0=h0, lengths=lengths)
    np.testing.assert_allclose(got.outputs, want.outputs, atol=2e-6)
    np.testing.assert_allclose(got.y, want.y, atol=2e-6)
    for g, w in zip(got.h_n, want.h_n, strict=True):
        np.testing.assert_allclose(g, w, atol=2e-6)


def test_bidirectional_non_square_within_float32_precision() -> None:
    cfg = RNNConfig(6, (9, 4), direction="bidirectional", activation="tanh", output_size=2)
    params = rnn_ref.init(cfg, seed=8)
    x = _x(3, 11, 6, seed=9)
    got = rnn_ref.get_backend(WHILE).forward(params, x)
    want = rnn_ref.forward(params, x)
    np.testing.assert_allclose(got.outputs, want.outputs, atol=2e-6)
    np.testing.assert_allclose(got.y, want.y, atol=2e-6)


def test_simple_rnn_converts_to_while_not_the_fused_op(tmp_path: Path) -> None:
    """A Keras 3 SimpleRNN becomes a WHILE loop (cell ops in its body subgraph), never
    UNIDIRECTIONAL_SEQUENCE_RNN; go_backwards adds REVERSE_V2; Bidirectional two loops."""
    fwd = rnn_ref.init(RNNConfig(3, 5, output_size=2), seed=0)
    ops = _ops(fwd, tmp_path)
    assert ops.count("WHILE") == 1
    assert "UNIDIRECTIONAL_SEQUENCE_RNN" not in ops
    assert "BIDIRECTIONAL_SEQUENCE_RNN" not in ops
    assert "TANH" in ops and "FULLY_CONNECTED" in ops
    rev = rnn_ref.init(RNNConfig(3, 5, direction="reverse", output_order="processing"), seed=0)
    ops = _ops(rev, tmp_path)
    assert ops.count("WHILE") == 1 and "REVERSE_V2" in ops
    bi = rnn_ref.init(RNNConfig(3, 5, direction="bidirectional"), seed=0)
    ops = _ops(bi, tmp_path)
    assert ops.count("WHILE") == 2 and "REVERSE_V2" in ops and "CONCATENATION" in ops
    assert "UNIDIRECTIONAL_SEQUENCE_RNN" not in ops


def test_unrolled_graph_has_no_while(tmp_path: Path) -> None:
    bi = rnn_ref.init(RNNConfig(3, 5, direction="bidirectional", output_size=2), seed=0)
    ops = _ops(bi, tmp_path, unroll=True, time=6)
    assert "WHILE" not in ops and "UNIDIRECTIONAL_SEQUENCE_RNN" not in ops
    assert ops.count("TANH") == 12  # one per step and direction


def test_write_file_runs_and_equals_the_oracle(tmp_path: Path) -> None:
    params = rnn_ref.init(RNNConfig(3, 5, num_layers=2, output_size=2), seed=1)
    path = tmp_path / "model.tflite"
    litert_files.write_file(params, path, "tflite")
    native = litert_files.load_native(path, "tflite", params)
    assert not native.takes_lengths
    x = _x(4, 9, 3, seed=2)  # batch 4 against the file's batch 1: a sample at a time
    got = litert_files.run_native(native.model, x)
    np.testing.assert_allclose(got, rnn_ref.forward(params, x).y, atol=2e-6)
    assert "WHILE" in describe(path)
    arrays = litert_files.list_arrays(path, "tflite")
    assert any(shape == (1, -1, 3) and dtype == "float32" for _, shape, dtype in arrays)
    assert any(shape == (5, 5) for _, shape, _ in arrays)  # a recurrent kernel, in a body


def test_read_file_refused_with_the_reason(tmp_path: Path) -> None:
    params = rnn_ref.init(RNNConfig(3, 5), seed=1)
    path = tmp_path / "model.tflite"
    litert_files.write_file(params, path, "tflite")
    with pytest.raises(UnsupportedError, match="WHILE loop's body subgraph"):
        litert_files.read_file(path, "tflite", Hints())
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(FileFormatError, match="TFL3"):
        describe(bad)


def test_float64_refused() -> None:
    params = rnn_ref.init(RNNConfig(3, 5), seed=0, dtype=np.float64)
    backend = rnn_ref.get_backend(WHILE)
    assert backend.supports(params.config, dtype=np.float64, lengths=False, mask=False)
    with pytest.raises(UnsupportedError, match="float64"):
        to_native(params)


def test_unsupported_is_keras_on_tensorflow() -> None:
    assert litert_backend.unsupported(RNNConfig(3, 5, clip=1.0)) is not None
    assert litert_backend.unsupported(RNNConfig(3, 5, activation="softplus")) is None
    carry_state = RNNConfig(3, 5, padded_output="carry_state")
    assert litert_backend.unsupported(carry_state) is None
    assert litert_backend.unsupported(carry_state, padded=True) is not None


def test_converts_in_a_child_when_keras_runs_another_backend(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    params = rnn_ref.init(RNNConfig(3, 4, output_size=2), seed=3)
    monkeypatch.setattr(litert_backend, "_keras_on_tensorflow", lambda: False)
    data = to_native(params, batch=2, time=5, unroll=True)
    x = _x(2, 5, 3, seed=4)
    np.testing.assert_allclose(litert_files.run_native(data, x), rnn_ref.forward(params, x).y,
                               atol=2e-6)
    with pytest.raises(UnsupportedError, match="clip"):
        to_native(rnn_ref.init(RNNConfig(3, 4, clip=1.0), seed=0))  # refused before the child
    with pytest.raises(ValueError, match="fixed time"):
        to_native(params, unroll=True)


# --------------------------------------------------------------------------------------------
# litert[unrolled]'s deviations
# --------------------------------------------------------------------------------------------
def test_unrolled_backward_mask_zeroes_wrong_steps() -> None:
    """unrolled-backward-mask-zeroes-wrong-steps / unrolled-reverse-mask-zeroes-wrong-steps:
    Keras itself (no LiteRT) computes the same wrong outputs with unroll=True."""
    params = rnn_ref.init(RNNConfig(5, 4, direction="reverse", output_order="processing"),
                          seed=0)
    x = _x(2, 6, 5, seed=1)
    lengths = np.array([6, 2])
    want = rnn_ref.forward(params, x, lengths=lengths)
    for target, wrong in ((WHILE, False), (UNROLLED, True)):
        got = rnn_ref.get_backend(target).forward(params, x, lengths=lengths)
        np.testing.assert_allclose(got.h_n, want.h_n, atol=2e-6)  # states are right
        err = np.abs(got.outputs - want.outputs).max()
        assert (err > 0.05) if wrong else (err < 2e-6), (target, err)
    # the same in Keras without LiteRT: outputs stacked in processing order are zeroed with
    # the mask in time order. Sample 1 (valid times 0, 1 = processing steps 4, 5): steps 0-3
    # are padding (zeros), then 2-5 are zeroed as if padding, so nothing is left
    model = litert_backend._keras_model(params, unroll=True, states=True, initial_state=False,
                                        mask=True)
    valid = np.arange(6)[None, :] < lengths[:, None]
    out = np.asarray(model([x, valid])[0])
    assert np.all(out[1] == 0.0) and np.abs(want.outputs[1, 4:]).min() > 0.0
    np.testing.assert_allclose(out[0], want.outputs[0], atol=2e-6)


def test_unrolled_refuses_empty_sequence() -> None:
    params = rnn_ref.init(RNNConfig(5, 4), seed=0)
    with pytest.raises(ValueError, match="slice index 0 of dimension 1 out of bounds"):
        to_native(params, unroll=True, time=0, batch=2)
    # the WHILE graph runs T = 0
    got = rnn_ref.get_backend(WHILE).forward(params, np.zeros((2, 0, 5), np.float32))
    assert got.outputs.shape == (2, 0, 4)
    np.testing.assert_array_equal(got.h_n, 0.0)
