"""Expected values that other projects publish for the ONNX ``RNN``, ``GRU`` and ``LSTM``
operators, held to the oracle.

The numbers are not rnn-ref's: they are transcribed, as printed, from the test suites of two
independent implementations, each case with its repository, file, test name and the commit read
(``reference_values.json``, next to this module):

* onnxruntime, ``onnxruntime/test/providers/cpu/rnn/rnn_op_test.cc``: ten RNN node tests, their
  numbers generated with CNTK (the file says so) and one copied from WinML's RNN test. Inputs and
  ``Y`` of the ``*_zigged_batch`` tests are printed batch-major (``[N, T, D]`` and
  ``[N, T, R, M]``, CNTK's layout) and transposed by the test to ONNX's layout; the data keeps
  the printed order and :func:`load` applies the same transposes (``layout`` in the file).
* onnxruntime, ``deep_cpu_gru_op_test.cc`` and ``deep_cpu_lstm_op_test.cc`` in the same folder:
  GRU forward, reverse and bidirectional, ``linear_before_reset`` 0 and 1, ``sequence_lens``
  (a zero length among them), ``initial_h``, non-default activations with ``activation_alpha``
  and ``activation_beta``; LSTM forward, reverse and bidirectional, peepholes, ``input_forget``,
  ``clip``, ``sequence_lens``, ``initial_h``/``initial_c``, non-default activations, skipped
  outputs. The node is built as the file's ``RunGruTest``/``RunLstmTest`` builds it (an LSTM
  node always names its eight inputs, the missing ones empty; ``clip`` 9999 unless the test
  says otherwise).
* OpenVINO's ONNX frontend, ``src/frontends/onnx/tests/onnx_import_rnn.in.cpp`` with the models
  ``src/frontends/onnx/tests/models/{rnn,gru,lstm}_*.prototxt`` (attributes, optional inputs
  and opset from the model; the shared inputs from the test fixtures ``RNNSequenceOp`` and
  ``GRUSequenceOp``, whose values the ``*_const`` models embed as ``Constant`` nodes): defaults,
  Relu, clip, reverse and bidirectional, with ``sequence_lens`` and ``initial_h``; GRU with
  relu/hardsigmoid, LSTM with HardSigmoid's alpha and beta.

Each case becomes a one-node graph (``helper.make_node(op, ...)`` at the source's opset, every
present input a graph input, skipped inputs and outputs as empty names) and is run by
:func:`rnn_ref.oracle` (float64). The tolerance is absolute, :data:`ATOL` ``= 1e-5``: the sources
print float32 results to 7-8 significant digits, from float32 computations (CNTK, onnxruntime
and OpenVINO kernels; OpenVINO checks its own to 16-19 mantissa bits, about 1e-5 relative), and
every value here is at most 7 in magnitude (X of onnxruntime's ``LargeBatchWithClip`` reaches
64, its outputs do not exceed 1), so a correct transcription and a correct oracle agree
to about 1e-6; 1e-5 leaves room for the float32 rounding of the sources and none for a wrong
step, sign, bias or layout. A published value that disagrees with the oracle beyond that is not
loosened: it is investigated, recomputed by hand in float64, and recorded in :data:`FINDINGS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["ATOL", "FINDINGS", "Finding", "ReferenceCase", "check", "corrected", "load"]

#: Absolute tolerance between a published value and the oracle (see the module's docstring).
ATOL = 1e-5


@dataclass(frozen=True)
class Finding:
    """One published value found wrong: ``printed`` at ``output[index]``, ``right`` instead,
    and how that was established."""

    output: str
    index: tuple[int, ...]
    printed: float
    right: float
    how: str


_COPIED = ("printed as -0.04350187, the number ONNXRuntime_TestLSTMOutputWrite prints at the "
           "same place (same X for that sample, but activations tanh, sigmoid, tanh there and "
           "sigmoid, tanh, tanh here); the oracle, a float64 loop written from the ONNX "
           "equations (tests/test_reference_values.py) and onnxruntime 1.32 itself all give "
           "-0.0435632 (within 4e-8 of each other); every other element of the case agrees "
           "within 1e-7. onnxruntime's test passes anyway: 6.1e-5 is within its own tolerance")
#: Published values found wrong, by case id: what the source prints, what is right, and how it
#: was established. Every other transcribed value agrees with the oracle within ATOL.
FINDINGS: dict[str, Finding] = {
    case: Finding("Y", (1, 1, 0, 0), -0.04350187, -0.04356322, _COPIED)
    for case in ("onnxruntime:ONNXRuntime_TestLSTMShorterSeqInMiddle",
                 "onnxruntime:ONNXRuntime_TestLSTMZeroSeqInMiddle")
}

_LAYOUTS = {
    "NTD": (1, 0, 2),  # [N, T, D] -> [T, N, D]
    "NTRM": (1, 2, 0, 3),  # [N, T, R, M] -> [T, R, N, M]
}


@dataclass(frozen=True)
class ReferenceCase:
    """One published test of the ``RNN``, ``GRU`` or ``LSTM`` operator.

    Attributes:
        id: ``project:test`` (with ``-variant`` where one test runs several nodes).
        source: provenance: ``project``, ``repository``, ``path``, ``test``, ``commit`` (and for
            OpenVINO ``model`` and ``model_commit``), with notes.
        opset: the ONNX opset the node is built at.
        attributes: the node's attributes, as the source sets them (absent ones are absent).
        inputs: the node's input names, ``""`` for a skipped optional input.
        outputs: the node's output names, ``""`` for a skipped output.
        arrays: the inputs, ONNX layout (float32, ``sequence_lens`` int32).
        expected: the published outputs by name, ONNX layout, float32.
        op: the operator, ``"RNN"`` (the default), ``"GRU"`` or ``"LSTM"``.
        missing_parameters: how the oracle fills an activation parameter the node leaves out
            (``"raise"``, the default: none is; ``"onnx"``: the operator's defaults, for a
            source that computes with them).
    """

    id: str
    source: dict[str, Any]
    opset: int
    attributes: dict[str, Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    arrays: dict[str, np.ndarray[Any, Any]]
    expected: dict[str, np.ndarray[Any, Any]]
    op: str = "RNN"
    missing_parameters: str = "raise"

    def model(self) -> Any:
        """The one-node ONNX graph: every present input a graph input, in node order."""
        from onnx import TensorProto, helper

        elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32}
        node = helper.make_node(self.op, list(self.inputs), list(self.outputs),
                                name=self.op.lower(), **self.attributes)
        graph = helper.make_graph(
            [node], self.id.replace(":", "_"),
            [helper.make_tensor_value_info(n, elem[self.arrays[n].dtype], self.arrays[n].shape)
             for n in self.inputs if n],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, self.expected[n].shape)
             for n in self.outputs if n])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        return model

    def feeds(self) -> dict[str, np.ndarray[Any, Any]]:
        return {n: self.arrays[n] for n in self.inputs if n}


def _array(spec: dict[str, Any], name: str) -> np.ndarray[Any, Any]:
    """One array of the file: ``{"shape", "data"}`` (every element, row-major) or ``{"shape",
    "sparse"}`` (``[flat index, value]`` pairs, zeros elsewhere: a matrix a test fills in a
    loop, such as onnxruntime's diagonal GRU weights); ``layout`` names a transpose."""
    dtype = np.int32 if name == "sequence_lens" else np.float32
    if "sparse" in spec:
        a = np.zeros(int(np.prod(spec["shape"])), dtype=dtype)
        for index, value in spec["sparse"]:
            a[int(index)] = value
        a = a.reshape(spec["shape"])
    else:
        a = np.array(spec["data"], dtype=dtype).reshape(spec["shape"])
    layout = spec.get("layout")
    return np.ascontiguousarray(a.transpose(_LAYOUTS[layout])) if layout else a


def _raw() -> dict[str, Any]:
    text = resources.files("rnn_ref.conformance").joinpath("reference_values.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


@lru_cache(maxsize=1)
def load() -> tuple[ReferenceCase, ...]:
    """Every transcribed case, inputs and expected outputs in ONNX's layout."""
    data = _raw()
    cases = []
    for c in data["cases"]:
        fixture = data["fixtures"][c["fixture"]]["arrays"] if "fixture" in c else {}
        arrays = {n: _array(fixture[spec] if isinstance(spec, str) else spec, n)
                  for n, spec in c["arrays"].items()}
        expected = {n: _array(spec, n) for n, spec in c["expected"].items()}
        cases.append(ReferenceCase(c["id"], c["source"], c["opset"], c["attributes"],
                                   tuple(c["inputs"]), tuple(c["outputs"]), arrays, expected,
                                   c.get("op", "RNN"), c.get("missing_parameters", "raise")))
    return tuple(cases)


def corrected(case: ReferenceCase) -> ReferenceCase:
    """``case`` with the value its :data:`FINDINGS` entry names set to the right one (the case
    itself where there is none)."""
    finding = FINDINGS.get(case.id)
    if finding is None:
        return case
    fixed = case.expected[finding.output].copy()
    if np.float32(fixed[finding.index]) != np.float32(finding.printed):
        raise ValueError(f"{case.id}: FINDINGS says {finding.output}{list(finding.index)} is "
                         f"printed {finding.printed}, the file holds {fixed[finding.index]}")
    fixed[finding.index] = finding.right
    return replace(case, expected={**case.expected, finding.output: fixed})


def check(case: ReferenceCase) -> dict[str, float]:
    """The oracle's largest absolute error against each published output of ``case``.

    Raises ``AssertionError`` naming the case, the output and its source when an output's shape
    differs or an error exceeds :data:`ATOL` (a case in :data:`FINDINGS` is not exempt: the
    finding is checked by its own test).
    """
    from rnn_ref.backends.onnx.convert import oracle

    got = oracle(case.model(), missing_parameters=case.missing_parameters)(**case.feeds())
    names = [n for n in case.outputs if n]
    assert len(got) == len(names), f"{case.id}: {len(got)} outputs for {names}"
    errors: dict[str, float] = {}
    for name, value in zip(names, got, strict=True):
        want = case.expected[name]
        assert value.shape == want.shape, (
            f"{case.id}: {name} has shape {value.shape}, the source prints {want.shape}")
        err = float(np.abs(value - want.astype(np.float64)).max()) if want.size else 0.0
        errors[name] = err
        src = case.source
        assert err <= ATOL, (
            f"{case.id}: {name} differs from {src['repository']} {src['path']} "
            f"({src['test']}) by {err:.3g} > {ATOL}")
    return errors
