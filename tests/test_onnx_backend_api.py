"""rnn-ref as an ONNX backend, run by ONNX's own backend test runner.

``rnn_ref.conformance.onnx_backend_api.RnnRefOnnxBackend`` implements ``onnx.backend.base
.Backend`` over ``rnn_ref.oracle``. ``onnx.backend.test.BackendTest`` builds its node tests in
memory from the generators in the installed onnx (the wheel ships no ``data/node`` files; see the
module's docstring), and the classes it returns are placed in this module, so pytest collects
ONNX's six RNN node tests (``OnnxBackendNodeModelTest::test_simple_rnn_defaults_cpu``, ...)
and the runner compares shape, dtype and values itself (rtol 1e-3, atol 1e-7).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from conftest import need

onnx = need("onnx")
from onnx import TensorProto, helper  # noqa: E402

import rnn_ref  # noqa: E402
from rnn_ref.conformance import onnx_backend_api as api  # noqa: E402

ONNX_RNN_NODE_TESTS = {"test_simple_rnn_defaults", "test_simple_rnn_with_initial_bias",
                       "test_simple_rnn_batchwise", "test_simple_rnn_reverse",
                       "test_simple_rnn_bidirectional", "test_rnn_seq_length"}

# ONNX's runner, cut to its RNN node tests: pytest collects them from these classes.
_RUNNER_CASES = api.rnn_node_test_cases(__name__)
globals().update(_RUNNER_CASES)


def test_the_runner_holds_exactly_onnx_six_rnn_node_tests() -> None:
    assert list(_RUNNER_CASES) == ["OnnxBackendNodeModelTest"]
    names = {n for n in dir(_RUNNER_CASES["OnnxBackendNodeModelTest"]) if n.startswith("test_")}
    assert names == {f"{n}_cpu" for n in ONNX_RNN_NODE_TESTS}


def test_the_runner_really_runs_them_all_and_they_pass() -> None:
    """The same six through unittest, so a skip (device, include pattern) cannot pass quietly."""
    import unittest

    suite = unittest.defaultTestLoader.loadTestsFromTestCase(
        _RUNNER_CASES["OnnxBackendNodeModelTest"])
    result = unittest.TestResult()
    suite.run(result)
    assert result.testsRun == 6
    assert not result.failures and not result.errors and not result.skipped, (
        result.failures, result.errors, result.skipped)


def _rnn_node(**attrs: Any) -> Any:
    return helper.make_node("RNN", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=3, **attrs)


def _arrays(nd: int = 1, dtype: Any = np.float32) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.standard_normal(s).astype(dtype)
            for s in [(4, 2, 5), (nd, 3, 5), (nd, 3, 3), (nd, 6)]]


def test_run_node_returns_float32_for_float32_inputs_and_matches_the_oracle() -> None:
    node = _rnn_node(direction="bidirectional")
    arrays = _arrays(2)
    y, y_h = api.run_node(node, arrays)
    assert y.dtype == np.float32 and y_h.dtype == np.float32
    assert y.shape == (4, 2, 2, 3) and y_h.shape == (2, 2, 3)
    model = helper.make_model(helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape)
         for n, a in zip("XWRB", arrays, strict=True)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Y_h")]))
    want = rnn_ref.oracle(model)(*arrays)
    np.testing.assert_array_equal(y, want[0].astype(np.float32))
    np.testing.assert_array_equal(y_h, want[1].astype(np.float32))


def test_run_node_float64_inputs_stay_float64_and_outputs_info_is_honoured() -> None:
    node = _rnn_node()
    arrays = _arrays(1, np.float64)
    y, y_h = api.run_node(node, arrays)
    assert y.dtype == np.float64 and y_h.dtype == np.float64
    out = api.run_node(node, dict(zip("XWRB", arrays, strict=True)),
                       outputs_info=[(np.float32, (4, 1, 2, 3)), (np.float32, (1, 2, 3))])
    assert out.Y.dtype == np.float32 and out["Y_h"].dtype == np.float32
    np.testing.assert_array_equal(out.Y, y.astype(np.float32))


def test_run_node_checks_the_node_at_the_opset_given() -> None:
    node = _rnn_node(layout=1)  # layout exists from RNN-14
    with pytest.raises(Exception, match="layout"):
        api.run_node(node, _arrays(), opset_version=7)
    assert api.run_node(helper.make_node("RNN", ["X", "W", "R", "B"], ["Y"], hidden_size=3),
                        _arrays(), opset_version=7)[0].shape == (4, 1, 2, 3)


def test_run_model_and_prepare_take_lists_mappings_and_a_graph_with_other_operators() -> None:
    node = helper.make_node("RNN", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=3)
    squeeze = helper.make_node("Squeeze", ["Y_h", "axes"], ["h"])
    x, w, r, b = _arrays()
    graph = helper.make_graph(
        [node, squeeze], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [2, 3])],
        initializer=[onnx.numpy_helper.from_array(a, n)
                     for n, a in [("W", w), ("R", r), ("B", b),
                                  ("axes", np.array([0], np.int64))]])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    (h,) = api.run_model(model, [x])
    rep = api.prepare(model)
    assert h.dtype == np.float32 and h.shape == (2, 3)
    np.testing.assert_array_equal(rep.run({"X": x}).h, h)
    np.testing.assert_array_equal(rep.run(x)[0], h)
    want = rnn_ref.oracle(model)(x)[0]
    np.testing.assert_allclose(h, want, rtol=0, atol=1e-6)


def test_devices() -> None:
    assert api.supports_device("CPU") and api.supports_device("CPU:0")
    assert not api.supports_device("CUDA") and not api.supports_device("TPU")
    node = _rnn_node()
    with pytest.raises(RuntimeError, match="CPU only"):
        api.run_node(node, _arrays(), device="CUDA")


def test_the_backend_is_an_onnx_backend() -> None:
    from onnx.backend.base import Backend, BackendRep

    assert issubclass(api.RnnRefOnnxBackend, Backend)
    assert issubclass(api.RnnRefBackendRep, BackendRep)
    assert re.search(api.RNN_NODE_TESTS, "test_simple_rnn_defaults_cpu")
    assert not re.search(api.RNN_NODE_TESTS, "test_simple_rnn_defaults_cuda")


class _Float64Rep(api.RnnRefBackendRep):
    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        return tuple(self._run(*inputs))  # the oracle's float64, not the declared float32


class _Float64Backend(api.RnnRefOnnxBackend):
    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> Any:
        return _Float64Rep(model)


def test_the_runner_is_sharp_a_backend_returning_float64_fails_all_six() -> None:
    """ONNX's runner checks the dtype too: without the cast to the declared float32, every
    one of the six fails (so the six passes above are the runner's verdict, not a no-op)."""
    import unittest

    cases = api.rnn_node_test_cases(__name__, backend=_Float64Backend)
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(cases["OnnxBackendNodeModelTest"]).run(
        result)
    assert result.testsRun == 6 and len(result.failures) == 6
    assert all("dtype" in text or "float64" in text for _, text in result.failures)
