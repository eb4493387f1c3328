"""rnn_ref._blas.prime: one product per process and size class, never for what it cannot help."""

from __future__ import annotations

import numpy as np
import pytest

from rnn_ref import _blas


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_blas, "_PRIMED", {})


def test_once_per_size_class_and_dtype() -> None:
    assert _blas.prime(np.float32, 100, 100)  # class (128, 128)
    assert not _blas.prime(np.float32, 128, 128)
    assert not _blas.prime(np.float32, 33, 7)  # smaller: covered
    assert _blas.prime(np.float64, 100, 100)  # another dtype
    assert _blas.prime(np.float32, 129, 16)  # larger k
    assert _blas._PRIMED[np.dtype(np.float32)] == (256, 128)  # keeps the larger n


def test_not_for_dtypes_or_sizes_it_cannot_help() -> None:
    assert not _blas.prime(np.float16, 64, 64)
    assert not _blas.prime(np.int64, 64, 64)
    assert not _blas.prime(np.float32, _blas.LARGEST + 1, 8)
    assert _blas._PRIMED == {}


def test_forward_primes_its_recurrent_product(monkeypatch: pytest.MonkeyPatch) -> None:
    import rnn_ref

    params = rnn_ref.init(rnn_ref.RNNConfig(3, 40), seed=0, dtype=np.float32)
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    rnn_ref.forward(params, x, compute_dtype=np.float32)
    assert _blas._PRIMED == {np.dtype(np.float32): (64, 64)}
