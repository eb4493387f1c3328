"""get_backend, available_backends, third-party backends by module:attribute."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import rnn_ref
from rnn_ref import RNNConfig


def test_available_backends_are_known_names() -> None:
    names = rnn_ref.available_backends()
    assert names[0] == "numpy"
    assert set(names) <= set(rnn_ref._registry.BACKENDS)
    assert {"numpy", "torch", "jax", "keras[tensorflow]", "keras[jax]", "keras[torch]",
            "onnxruntime"} <= set(rnn_ref._registry.BACKENDS)


def test_unknown_names_and_bad_targets() -> None:
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'; built in: numpy"):
        rnn_ref.get_backend("tensorflow")
    with pytest.raises(ImportError, match="cannot import 'no_such_module_xyz'"):
        rnn_ref.get_backend("no_such_module_xyz:Backend")
    with pytest.raises(ImportError, match="has no 'Missing'"):
        rnn_ref.get_backend("rnn_ref:Missing")
    with pytest.raises(TypeError, match="calling it with no arguments failed"):
        rnn_ref.get_backend("rnn_ref:RNNConfig")
    with pytest.raises(TypeError, match="gives a str, which is not a backend"):
        rnn_ref.get_backend("rnn_ref:__version__")


def test_third_party_backend_by_module_attribute() -> None:
    module = types.ModuleType("my_kernel")

    class MyKernel:
        name = "my-kernel"

        def supports(self, config: RNNConfig, *, dtype: object, lengths: bool,
                     mask: bool) -> str | None:
            return None

        def forward(self, params: rnn_ref.RNNParams, x: np.ndarray, *, h0: object = None,
                    lengths: object = None, mask: object = None) -> tuple:
            res = rnn_ref.forward(params, x, h0=h0, lengths=lengths, mask=mask)
            return res.outputs, res.h_n

    module.MyKernel = MyKernel  # type: ignore[attr-defined]
    sys.modules["my_kernel"] = module
    try:
        backend = rnn_ref.get_backend("my_kernel:MyKernel")
        assert backend.name == "my-kernel"
        assert isinstance(backend, rnn_ref.Backend)
    finally:
        del sys.modules["my_kernel"]


def test_converters_are_lazy_attributes() -> None:
    assert "from_torch" in dir(rnn_ref) and "to_onnx" in dir(rnn_ref)
    with pytest.raises(AttributeError, match="has no attribute 'from_tensorflow'"):
        rnn_ref.from_tensorflow  # noqa: B018
