"""Issue 14, item 8: the Python API's error contract. A wrong input raises the project's own
error (:mod:`rnn_ref.errors`, or a built-in ``TypeError``/``ValueError``) naming the input,
never a library's internals; a plain integer of any integer type is accepted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import FileFormatError, RNNConfig
from rnn_ref.limits import Limits, using


def test_load_of_a_single_npy_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(FileFormatError, match=r"array.npy: a single .npy array"):
        rnn_ref.load(path)


@pytest.mark.parametrize("content", [b"hello world\n", b"", b"\x80\x04K\x01.", b"PK\x03\x04"])
def test_load_of_a_non_archive_never_advises_pickle(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.npz"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match="notes.npz") as exc:
        rnn_ref.load(path)
    assert "pickle" not in str(exc.value)


@pytest.mark.parametrize("data", [b"...", b"\x0a\xff\xff\xff", bytearray(b"\xff" * 10)])
def test_from_onnx_of_bytes_that_are_not_a_model(data: bytes) -> None:
    need("onnx")
    with pytest.raises(FileFormatError, match=r"from_onnx: the \d+ bytes given are not an ONNX"):
        rnn_ref.from_onnx(data)


@pytest.mark.parametrize("integer", [np.int64(5), np.int32(5), np.uint8(5)])
def test_numpy_integers_are_plain_integers(integer: object) -> None:
    cfg = RNNConfig(np.int64(3), integer, num_layers=np.int16(2), output_size=np.int64(2))
    assert cfg == RNNConfig(3, 5, num_layers=2, output_size=2)
    assert type(cfg.input_size) is int and cfg.hidden_size == 5


@pytest.mark.parametrize("arg", ["grad_outputs", "grad_h_n", "grad_y"])
@pytest.mark.parametrize("bad", [np.complex128(1 + 1j), "1.0", True])
def test_backward_refuses_cotangents_forward_would_refuse(arg: str, bad: object) -> None:
    params = rnn_ref.init(RNNConfig(3, 4, output_size=2), seed=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    shapes = {"grad_outputs": (2, 5, 4), "grad_h_n": (1, 2, 4), "grad_y": (2, 5, 2)}
    value = np.full(shapes[arg], bad)
    with pytest.raises(TypeError, match=rf"{arg} must hold real numbers, got dtype"):
        rnn_ref.backward(params, x, **{arg: value})
    with pytest.raises(TypeError, match="x must hold real numbers"):
        rnn_ref.forward(params, x.astype(np.complex128))
    # integers are real numbers: accepted, as forward accepts integer x
    rnn_ref.backward(params, x, **{arg: np.ones(shapes[arg], np.int64)})


def test_limits_refuse_what_is_not_a_positive_int() -> None:
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="max_layers must be a positive int"):
            Limits(max_layers=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="limits must be rnn_ref.limits.Limits"):
        with using({"max_layers": 3}):  # type: ignore[arg-type]
            pass
