"""rnn-ref as an ONNX backend: ``onnx.backend.base.Backend`` over :func:`rnn_ref.oracle`.

:class:`RnnRefOnnxBackend` implements ONNX's backend API (``prepare``, ``run_model``,
``run_node``, ``supports_device``; also as module-level functions, as ONNX backends publish
them), so ONNX's own backend test runner (``onnx.backend.test.BackendTest``) and any tool written
against that API can run a graph on the oracle. A graph runs on ``onnx.reference`` with every
``RNN``, ``GRU`` and ``LSTM`` node computed by rnn-ref in float64
(:func:`rnn_ref.backends.onnx.convert.oracle`, which reads every valid node of every version of
the three); each output is then cast to the type
the graph declares for it (``float`` outputs come back float32, as from any other backend), or,
where the graph declares none, to the type ONNX's shape inference gives it. The only device is
``CPU``.

ONNX's runner and where its data come from (onnx 1.23): the installed ``onnx`` package ships no
node test data (``onnx/backend/test/data/node`` is absent from the wheel; only the ``light``,
``real``, ``simple`` and ``pytorch-*`` model folders are there). It does not need them:
``BackendTest(backend)`` loads the node tests with ``onnx.backend.test.loader
.load_node_model_tests()``, which imports every generator in ``onnx.backend.test.case.node``
(``rnn.py``, ``gru.py``, ``lstm.py`` among them) and collects what their ``expect(...)`` calls
record: the model and its input and output arrays, in memory (``kind="node"``, no
``model_dir``), so the runner runs them without reading or downloading anything. The files a
source checkout held until onnx PR #7959 removed them (onnx commit ``a8f77b5b``) are the same
cases serialised by ``python -m onnx.backend.test.cmd_tools generate-data``; nothing here needs
them or writes to the package. :func:`rnn_node_test_cases` builds the runner over those
in-memory cases, keeps ONNX's six RNN node tests (:data:`RNN_NODE_TESTS`, on CPU;
:data:`GATED_NODE_TESTS` its twelve GRU and LSTM ones) and returns them as
``unittest.TestCase`` classes for a test module's ``globals()``, as ONNX documents
(``globals().update(backend_test.test_cases)``). The runner's comparison is its own: same
shape, same dtype, ``assert_allclose(rtol=1e-3, atol=1e-7)`` against the generator's NumPy
results.
"""

from __future__ import annotations

import re
import unittest
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from rnn_ref.backends.onnx.convert import oracle

__all__ = ["GATED_NODE_TESTS", "RNN_NODE_TESTS", "RnnRefBackendRep", "RnnRefOnnxBackend",
           "node_tests", "prepare", "rnn_node_test_cases", "run_model", "run_node",
           "supports_device"]

#: ONNX's own RNN node tests (``onnx/backend/test/case/node/rnn.py``), as the runner names them.
RNN_NODE_TESTS = r"^test_(simple_)?rnn_[a-z_]+_cpu$"
#: ONNX's own GRU and LSTM node tests (``gru.py``, ``lstm.py`` there), as the runner names them.
GATED_NODE_TESTS = r"^test_(gru|lstm)_[a-z_]+_cpu$"


def node_tests(pattern: str) -> list[Any]:
    """ONNX's node test cases (``onnx.backend.test.case.TestCase``: name, model, data sets)
    whose names match ``pattern`` (without the runner's ``_cpu``), as the installed onnx
    generates them in memory.

    The generators run once per process (``collect_testcases`` imports their modules, and
    each class runs its ``export_*`` functions as it is created, ``np.random.seed(0)`` before
    each, so the data are the same every time), and only the cases of the first call's
    ``op_type`` filter are ever kept: a ``collect_testcases("RNN")`` anywhere in the process
    would hide every GRU test from later callers. So every caller here asks for all of them
    (no filter) and selects by name; the runner (:func:`rnn_node_test_cases`) sees the same
    list.

    Raises:
        RuntimeError: the process already collected them filtered to other operators.
    """
    from onnx.backend.test.case import node as node_cases

    earlier = getattr(node_cases, "_TargetOpType", None)  # the filter of the first collection
    if earlier:
        raise RuntimeError(f"onnx's node tests were collected filtered to {earlier!r} earlier "
                           f"in this process; collect them with node_tests() only")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # other operators' generators overflow on purpose
        cases = node_cases.collect_testcases(None)
    return [c for c in cases if re.search(pattern, c.name)]


def _np_dtype(elem_type: int) -> np.dtype[Any] | None:
    if elem_type == TensorProto.UNDEFINED:
        return None
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def _declared_dtypes(model: onnx.ModelProto) -> list[np.dtype[Any] | None]:
    """Each graph output's element type: as declared, else as shape inference finds it."""
    declared = [o.type.tensor_type.elem_type for o in model.graph.output]
    if TensorProto.UNDEFINED in declared:
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph.output
            declared = [d or i.type.tensor_type.elem_type
                        for d, i in zip(declared, inferred, strict=True)]
        except Exception:  # noqa: BLE001  (a graph inference rejects: keep what is declared)
            pass
    return [_np_dtype(t) for t in declared]


class RnnRefBackendRep(BackendRep):
    """A prepared graph: :meth:`run` takes its inputs and returns its outputs."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self._run = oracle(model)
        self._names = [o.name for o in model.graph.output]
        self._dtypes = _declared_dtypes(model)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        """The graph's outputs (a tuple, also indexable by output name) for ``inputs``: a list
        of arrays in the order of the graph's inputs (initializers left out), a mapping by
        name, or one array."""
        if isinstance(inputs, Mapping):
            outs = self._run(**inputs)
        elif isinstance(inputs, np.ndarray):
            outs = self._run(inputs)
        else:
            outs = self._run(*inputs)
        cast = [o if dt is None else np.asarray(o).astype(dt, copy=False)
                for o, dt in zip(outs, self._dtypes, strict=True)]
        return namedtupledict("Outputs", self._names)(*cast)


class RnnRefOnnxBackend(Backend):
    """ONNX's backend API over the rnn-ref oracle (float64 inside, the declared types out)."""

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            return Device(device).type == DeviceType.CPU
        except (AttributeError, ValueError):
            return False

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any
                ) -> RnnRefBackendRep:
        """Check ``model`` (``onnx.checker``) and prepare it; ``kwargs`` (the runner passes
        its tolerances) are accepted and unused."""
        if not cls.supports_device(device):
            raise RuntimeError(f"rnn-ref runs on CPU only, not {device!r}")
        super().prepare(model, device)
        return RnnRefBackendRep(model)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU",
                  **kwargs: Any) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[Any, tuple[int, ...]]] | None = None,
                 **kwargs: Any) -> tuple[Any, ...]:
        """Run one node on ``inputs`` (a list in the order of the node's non-empty inputs, or a
        mapping by name). ``outputs_info`` gives each non-empty output's ``(dtype, shape)``;
        without it an output takes the type ONNX's inference gives it. ``opset_version``
        (keyword) is the default domain's opset, the latest by default."""
        super().run_node(node, inputs, device, outputs_info, **kwargs)
        names = [n for n in node.input if n]
        if isinstance(inputs, Mapping):
            arrays = {n: np.asarray(inputs[n]) for n in names}
        else:
            if len(inputs) != len(names):
                raise ValueError(f"node {node.op_type} takes inputs {names}, got {len(inputs)}")
            arrays = {n: np.asarray(v) for n, v in zip(names, inputs, strict=True)}
        outputs = [n for n in node.output if n]
        info = list(outputs_info) if outputs_info is not None else [None] * len(outputs)
        if len(info) != len(outputs):
            raise ValueError(f"outputs_info has {len(info)} entries for outputs {outputs}")
        graph = helper.make_graph(
            [node], f"{node.op_type}_node",
            [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
             for n, a in arrays.items()],
            [onnx.ValueInfoProto(name=n) if i is None else helper.make_tensor_value_info(
                n, helper.np_dtype_to_tensor_dtype(np.dtype(i[0])), i[1])
             for n, i in zip(outputs, info, strict=True)])
        opset = int(kwargs.get("opset_version", onnx.defs.onnx_opset_version()))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        if not cls.supports_device(device):
            raise RuntimeError(f"rnn-ref runs on CPU only, not {device!r}")
        # The node was checked above (Backend.run_node); the graph around it is not given to
        # onnx.checker, which wants every output's type and shape, known or not.
        return RnnRefBackendRep(model).run(arrays)


prepare = RnnRefOnnxBackend.prepare
run_model = RnnRefOnnxBackend.run_model
run_node = RnnRefOnnxBackend.run_node
supports_device = RnnRefOnnxBackend.supports_device


def rnn_node_test_cases(parent_module: str | None = None, pattern: str = RNN_NODE_TESTS, *,
                        backend: type[Backend] | None = None
                        ) -> dict[str, type[unittest.TestCase]]:
    """ONNX's backend test runner over ``backend`` (:class:`RnnRefOnnxBackend` by default),
    cut to the node tests whose names match ``pattern`` (ONNX's six RNN tests on CPU by
    default; :data:`GATED_NODE_TESTS` the twelve GRU and LSTM ones): ``{class name: TestCase
    class}``, for ``globals().update(...)`` in a test module named ``parent_module``.

    ``BackendTest.include`` alone would keep every other test as a skipped one (thousands);
    here only the matching ones are copied into the classes returned. Building the runner runs
    every node test generator of the installed onnx (some overflow on purpose and warn; the
    warnings are silenced while they run), about 5 s.
    """
    from onnx.backend.test import BackendTest

    node_tests("")  # collected unfiltered first (see node_tests)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        runner = BackendTest(backend or RnnRefOnnxBackend, parent_module)
    runner.include(pattern)
    keep = re.compile(pattern)
    result: dict[str, type[unittest.TestCase]] = {}
    for class_name, cls in runner.test_cases.items():
        tests = {n: getattr(cls, n) for n in dir(cls) if keep.search(n) and n.startswith("test_")}
        if tests:
            new = type(class_name, (unittest.TestCase,), tests)
            if parent_module:
                new.__module__ = parent_module
            result[class_name] = new
    return result
