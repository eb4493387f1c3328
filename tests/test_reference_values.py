"""Published expected values of other projects for the ONNX RNN, GRU and LSTM operators, held to
the oracle.

The cases (``rnn_ref.conformance.reference_values``, data in ``reference_values.json``) are
transcribed from onnxruntime's ``rnn_op_test.cc`` (CNTK's numbers), ``deep_cpu_gru_op_test.cc``
and ``deep_cpu_lstm_op_test.cc``, and OpenVINO's ONNX frontend tests
(``onnx_import_rnn.in.cpp`` and ``models/{rnn,gru,lstm}_*.prototxt``), each with its
repository, path, test and commit. Each runs as a one-node graph through ``rnn_ref.oracle`` and
must agree within ``ATOL = 1e-5`` absolute (float32 results printed with 7-8 digits); the two
values found wrong (``FINDINGS``) are checked by their own test, against a float64 loop written
here from ONNX's equations and against onnxruntime.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from conftest import need

need("onnx")

from rnn_ref.conformance import reference_values as rv  # noqa: E402

CASES = rv.load()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_published_values_agree_with_the_oracle(case: rv.ReferenceCase) -> None:
    errors = rv.check(rv.corrected(case))
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
        assert case.op in ("RNN", "GRU", "LSTM")
        if src["project"] == "OpenVINO":
            assert src["model"].startswith(f"src/frontends/onnx/tests/models/{case.op.lower()}_")
            assert len(src["model_commit"]) == 40
        else:
            want = {"RNN": "rnn_op_test.cc", "GRU": "deep_cpu_gru_op_test.cc",
                    "LSTM": "deep_cpu_lstm_op_test.cc"}[case.op]
            assert src["path"] == f"onnxruntime/test/providers/cpu/rnn/{want}"


def _has(case: rv.ReferenceCase, name: str) -> bool:
    return name in case.inputs


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
    assert {c.opset for c in CASES} >= {7, 9, 12, 22}


def test_gru_and_lstm_cases_cover_every_switch() -> None:
    gru = [c for c in CASES if c.op == "GRU"]
    lstm = [c for c in CASES if c.op == "LSTM"]
    assert len(gru) >= 10 and len(lstm) >= 20

    def direction(c: rv.ReferenceCase) -> str:
        return str(c.attributes.get("direction", "forward"))

    def default_activations(c: rv.ReferenceCase) -> bool:
        acts = [a.lower() for a in c.attributes.get("activations", [])]
        k = 2 if c.op == "GRU" else 3
        return all(a == ["sigmoid", "tanh", "tanh"][i % k] for i, a in enumerate(acts))

    for cases in (gru, lstm):
        assert {direction(c) for c in cases} == {"forward", "reverse", "bidirectional"}
        assert any(_has(c, "sequence_lens") and direction(c) == "bidirectional" for c in cases)
        assert any(_has(c, "sequence_lens") and 0 in c.arrays["sequence_lens"] for c in cases)
        assert any(_has(c, "initial_h") for c in cases)
        assert any(not default_activations(c) for c in cases)
        assert any("activation_alpha" in c.attributes for c in cases)
        assert any(0 < c.attributes.get("clip", 1e4) < 999 for c in cases)
    assert {c.attributes.get("linear_before_reset", 0) for c in gru} == {0, 1}
    assert any(c.attributes.get("linear_before_reset") and direction(c) == "reverse"
               for c in gru)
    assert any(_has(c, "P") for c in lstm) and any(_has(c, "initial_c") for c in lstm)
    assert any(c.attributes.get("input_forget") == 1 for c in lstm)
    assert any("Y_c" not in c.outputs for c in lstm) and any("Y" not in c.outputs for c in lstm)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_check_is_sharp(case: rv.ReferenceCase) -> None:
    """A 0.1 % change of the input weights W is caught: the tolerance discriminates."""
    good = rv.corrected(case)
    bad = replace(good, arrays=dict(good.arrays, W=good.arrays["W"] * np.float32(1.001)))
    with pytest.raises(AssertionError, match="differs from"):
        rv.check(bad)


# --------------------------------------------------------------------------------------------
# the published values found wrong
# --------------------------------------------------------------------------------------------
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _lstm_by_hand(case: rv.ReferenceCase) -> np.ndarray:
    """``Y`` of an LSTM case in float64, written from ONNX's equations: W, R, B in i, o, f, c
    row blocks, activations f, g, h per direction from the node, no peepholes, no clip,
    right-padded ``sequence_lens`` (outputs zeros past a sample's length, the reverse direction
    starting at its last valid step), zero initial states."""
    acts = {"sigmoid": _sigmoid, "tanh": np.tanh}
    x = case.arrays["X"].astype(np.float64)
    t_len, n, _ = x.shape
    w, r = case.arrays["W"].astype(np.float64), case.arrays["R"].astype(np.float64)
    b = case.arrays["B"].astype(np.float64)
    lens = case.arrays["sequence_lens"]
    nd, m = w.shape[0], r.shape[2]
    names = [a.lower() for a in case.attributes["activations"]]
    y = np.zeros((t_len, nd, n, m))
    for d in range(nd):
        f, g, h_act = (acts[a] for a in names[3 * d:3 * d + 3])
        for s in range(n):
            h, c = np.zeros(m), np.zeros(m)
            steps = range(lens[s]) if d == 0 else range(lens[s] - 1, -1, -1)
            for t in steps:
                z = w[d] @ x[t, s] + r[d] @ h + b[d, :4 * m] + b[d, 4 * m:]
                i, o, fg, cc = (z[k * m:(k + 1) * m] for k in range(4))
                c = f(fg) * c + f(i) * g(cc)
                h = f(o) * h_act(c)
                y[t, d, s] = h
    return y


@pytest.mark.parametrize("case_id", sorted(rv.FINDINGS))
def test_each_finding_is_real(case_id: str) -> None:
    """The printed value fails the check at exactly the place the finding names, the right
    value is what a float64 loop by hand and onnxruntime compute, and the corrected case
    passes (above)."""
    ort = need("onnxruntime")
    case = next(c for c in CASES if c.id == case_id)
    finding = rv.FINDINGS[case_id]
    assert case.op == "LSTM" and "P" not in [n for n in case.inputs if n]
    with pytest.raises(AssertionError, match=f"{finding.output} differs from"):
        rv.check(case)
    by_hand = _lstm_by_hand(case)
    assert abs(by_hand[finding.index] - finding.right) < 1e-7
    assert abs(by_hand[finding.index] - finding.printed) > 5e-5
    fixed = rv.corrected(case).expected["Y"]
    np.testing.assert_allclose(by_hand, fixed, rtol=0, atol=1e-7)  # the rest, as printed
    session: Any = ort.InferenceSession(case.model().SerializeToString(),
                                        providers=["CPUExecutionProvider"])
    ort_y = session.run(None, case.feeds())[0]
    assert abs(ort_y[finding.index] - finding.right) < 1e-7
