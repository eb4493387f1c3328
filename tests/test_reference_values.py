"""Published expected values of other projects for the ONNX RNN operator, held to the oracle.

The cases (``rnn_ref.conformance.reference_values``, data in ``reference_values.json``) are
transcribed from onnxruntime's ``rnn_op_test.cc`` (CNTK's numbers) and OpenVINO's ONNX frontend
tests (``onnx_import_rnn.in.cpp`` and ``models/rnn_*.prototxt``), each with its repository,
path, test and commit. Each runs as a one-node graph through ``rnn_ref.oracle`` and must agree
within ``ATOL = 1e-5`` absolute (float32 results printed with 7-8 digits).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need

need("onnx")

from rnn_ref.conformance import reference_values as rv  # noqa: E402

CASES = rv.load()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_published_values_agree_with_the_oracle(case: rv.ReferenceCase) -> None:
    errors = rv.check(case)
    assert set(errors) == {n for n in case.outputs if n}


def test_every_case_names_its_source() -> None:
    for case in CASES:
        src = case.source
        assert src["repository"] in ("microsoft/onnxruntime", "openvinotoolkit/openvino")
        assert src["path"].endswith(".cc") or src["path"].endswith(".in.cpp")
        assert len(src["commit"]) == 40 and int(src["commit"], 16) >= 0
        project, name = case.id.split(":")
        assert project == src["project"].lower() and name.split("-")[0] == src["test"]
        assert ("-" in name) == ("variant" in src)
        if src["project"] == "OpenVINO":
            assert src["model"].startswith("src/frontends/onnx/tests/models/rnn_")
            assert len(src["model_commit"]) == 40


def test_enough_cases_from_each_source_and_the_features_they_cover() -> None:
    projects = [c.source["project"] for c in CASES]
    assert projects.count("onnxruntime") >= 6 and projects.count("OpenVINO") >= 4
    attrs = [c.attributes for c in CASES]
    assert any("clip" in a for a in attrs)
    assert any(a.get("direction") == "reverse" and "sequence_lens" in c.inputs
               for a, c in zip(attrs, CASES, strict=True))
    assert any(a.get("direction") == "bidirectional" and "sequence_lens" in c.inputs
               for a, c in zip(attrs, CASES, strict=True))
    assert any("Relu" in a.get("activations", []) for a in attrs)
    assert any("" in c.inputs for c in CASES) and any("" in c.outputs for c in CASES)
    assert {c.opset for c in CASES} >= {9, 12, 22}


def test_no_published_value_is_recorded_as_wrong() -> None:
    """Every transcribed value agrees with the oracle; a disagreement would be recorded in
    FINDINGS with the hand computation, never absorbed by a looser tolerance."""
    assert rv.FINDINGS == {}
    assert rv.ATOL == 1e-5


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_check_is_sharp(case: rv.ReferenceCase) -> None:
    """A 0.1 % change of the input weights W is caught: the tolerance discriminates."""
    arrays = dict(case.arrays, W=case.arrays["W"] * np.float32(1.001))
    bad = rv.ReferenceCase(case.id, case.source, case.opset, case.attributes, case.inputs,
                           case.outputs, arrays, case.expected)
    with pytest.raises(AssertionError, match="differs from"):
        rv.check(bad)
