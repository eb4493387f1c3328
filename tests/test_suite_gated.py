"""The conformance suite for GRU and LSTM (issue 23), planted gated bugs, and plug-in scopes.

The gated quick cases cover every switch once; each planted bug of the gated cells
(tests/planted.py, GATED_BROKEN) fails a named quick case; ``c0`` reaches a backend and
``c_n`` is compared. A third party's kernel is held to the scope it declares (its ``cells``
and ``pieces``; the Elman layer when it declares nothing): the cases outside it are reported
out of scope, never run, and every form of the report names the scopes checked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from planted import GATED_BROKEN, CellStateNotCarried, Correct, TinyLSTM

import rnn_ref
from rnn_ref import RNNParams, cli
from rnn_ref._registry import (
    SCOPE_CELLS,
    SCOPE_PIECES,
    get_backend,
    scope_names,
    scope_of,
)
from rnn_ref.conformance import cases, ecosystem, report, runner
from rnn_ref.conformance.cases import HARD_SIGMOID_KERAS2, HARD_SIGMOID_KERAS3
from rnn_ref.params import GRUParams, LSTMParams

QUICK = cases.quick_cases()
GATED = [c for c in QUICK if not c.config.is_elman]
BY_NAME = {c.name: c for c in QUICK}


def _failed(backend: object, name: str) -> list[str]:
    return [r.category for r in runner.check_case(backend, BY_NAME[name]) if r.status == "fail"]


# -- the cases --------------------------------------------------------------------------------
def test_the_gated_quick_cases_cover_every_switch() -> None:
    assert 12 <= len(GATED) <= 20, len(GATED)
    cells = [(c, spec) for c in GATED for spec in c.config.cells]
    have = {
        "gru reset after": any(s.kind == "gru" and s.reset_after for _, s in cells),
        "gru reset before": any(s.kind == "gru" and not s.reset_after for _, s in cells),
        "peepholes": any(s.peepholes for _, s in cells),
        "input_forget": any(s.input_forget for _, s in cells),
        "projection": any(s.proj_size is not None for _, s in cells),
        "clip": any(x is not None for c in GATED for x in c.config.clips),
        "bidirectional": any("bidirectional" in c.config.directions for c in GATED),
        "reverse": any("reverse" in c.config.directions for c in GATED),
        "2 layers": any(c.config.num_layers == 2 for c in GATED),
        "mixed stack": any(len({s.kind for s in c.config.cells}) == 3 for c in GATED),
        "h0 and c0": any(c.h0 and c.config.num_cell_states for c in GATED),
        "long": any(c.t >= 200 for c in GATED),
        "saturated": any(c.weight_scale for c in GATED),
        "a zero length": any(c.padding == "zero" for c in GATED),
    }
    assert all(have.values()), [k for k, v in have.items() if not v]
    gates = {c.config.activations_of(li, r)[0] for c in GATED
             for li in range(c.config.num_layers) for r in range(c.config.num_directions_of(li))}
    assert {HARD_SIGMOID_KERAS2, HARD_SIGMOID_KERAS3} <= gates
    assert any(a.name not in ("sigmoid", "tanh") and a.beta is not None for a in gates)
    padded = {(c.padding != "none", c.config.padded_output) for c in GATED}
    assert {(True, "zeros"), (True, "carry_output"), (True, "carry_state")} <= padded
    # every GRU case has a non-zero b_h["n"] (inside r * where the reset comes after)
    for c in GATED:
        for layer in c.inputs().params.layers:
            for cell in layer:
                if isinstance(cell, GRUParams):
                    assert np.abs(cell.b_h["n"]).min() > 0, c.name
    for c in GATED:  # non-square, all sizes distinct
        d, m = c.config.input_size, c.config.hidden_sizes[0]
        assert len({c.n, c.t, d, m}) == 4, c.name
    full = [c for c in cases.full_cases() if not c.config.is_elman]
    assert len(full) > 250 and {c.name for c in GATED} <= {c.name for c in full}


def test_the_saturated_cases_saturate() -> None:
    """weight_scale 12 puts most gate inputs of the first step beyond |z| = 3 (a sigmoid
    within 0.05 of 0 or 1)."""
    for name in ("gru_1layer_fwd_saturated12_n2t9d5m4_f32",
                 "lstm_1layer_bidir_saturated12_n2t9d5m4_f32"):
        inp = BY_NAME[name].inputs()
        cell = inp.params.layers[0][0]
        assert isinstance(cell, (GRUParams, LSTMParams))
        z = np.concatenate([inp.x[:, 0] @ cell.w_x[g] + cell.b_x[g] for g in cell.gates])
        assert np.mean(np.abs(z) > 3) > 0.6, name


def test_c0_is_drawn_after_h0_and_named() -> None:
    case = BY_NAME["lstm_1layer_bidir_h0c0_proj2_n3t7d5m6_f32"]
    inp = case.inputs()
    assert inp.h0 is not None and inp.c0 is not None
    assert np.shape(inp.h0) == (2, 3, 2) and np.shape(inp.c0) == (2, 3, 6)  # h: P, c: M
    assert inp.kwargs()["c0"] is inp.c0
    assert "c0" not in BY_NAME["rnn_tanh_1layer_rev_h0_lengths_n3t7d5m4_f32"].inputs().kwargs()
    assert case.properties()["c0"] and case.properties()["projection"]


# -- c0 and c_n in the runner -----------------------------------------------------------------
class _Returns(Correct):
    """The oracle, returning what ``what`` picks of its result."""

    name = "returns"

    def __init__(self, what: Any) -> None:
        self.what = what

    def result(self, params: RNNParams, res: Any, x: Any, h0: Any, c0: Any, lengths: Any,
               mask: Any) -> Any:
        return self.what(res)


class _NoC0(Correct):
    name = "no-c0"

    def forward(self, params: RNNParams, x: Any, *, h0: Any = None, lengths: Any = None,
                mask: Any = None) -> Any:
        return rnn_ref.forward(params, x, h0=h0, lengths=lengths, mask=mask,
                               compute_dtype=params.dtype)


LSTM_CASE = "lstm_2layer_bidir_h0c0_lengths_readout_n3t7d5m4_f32"


def test_c_n_is_compared_and_must_be_returned_for_the_stack() -> None:
    assert _failed(_Returns(lambda r: (r.outputs, r.h_n, r.c_n)), LSTM_CASE) == []
    wrong = _Returns(lambda r: (r.outputs, r.h_n, r.c_n * 1.01))
    results = runner.check_case(wrong, BY_NAME[LSTM_CASE])
    (bad,) = [r for r in results if r.status == "fail"]
    assert bad.category == "final_state" and bad.detail.startswith("c_n: FAIL")
    results = runner.check_case(_Returns(lambda r: (r.outputs, r.h_n)), BY_NAME[LSTM_CASE])
    assert [r.detail for r in results if r.status == "fail"] == [
        "c_n was not returned (the LSTM layers' final cell states: .c_n, or "
        "(outputs, h_n, c_n))"]
    # a network returning its result only: c_n is not required there
    net = "lstm_1layer_fwd_readout_embed_maskzero_final_sigmoid_return_state_n3t7d5m4_f32"
    assert _failed(_Returns(lambda r: rnn_ref.ForwardResult(r.outputs, r.h_n, r.y, r.selected)),
                   net) == []


def test_a_forward_without_c0_fails_c0_cases_and_is_asked_to_refuse_without_it() -> None:
    results = runner.check_case(_NoC0(), BY_NAME[LSTM_CASE])
    assert [r.category for r in results if r.status == "fail"] == ["forward", "final_state"]
    assert "forward takes no c0" in results[0].detail
    assert _failed(_NoC0(), "lstm_1layer_fwd_n3t7d5m4_f32") == []  # no c0 given: runs

    class Refuses(_NoC0):
        def supports(self, config: Any, *, dtype: Any, lengths: bool, mask: bool) -> str | None:
            return "no LSTM" if not config.is_elman else None

        def forward(self, params: RNNParams, x: Any, *, h0: Any = None, lengths: Any = None,
                    mask: Any = None) -> Any:
            if not params.config.is_elman:
                raise NotImplementedError("no LSTM here")
            return super().forward(params, x, h0=h0, lengths=lengths, mask=mask)

    (res,) = runner.check_case(Refuses(), BY_NAME[LSTM_CASE])
    assert (res.category, res.status) == ("must_raise", "pass")
    assert "no LSTM here" in res.detail  # its refusal, not a TypeError about c0


def test_backends_without_gated_cells_report_them_unsupported() -> None:
    """A framework that does not hold GRU/LSTM (its ``unsupported`` refuses them, as
    ``network_unsupported`` does) is held to refuse each gated case: a pass of must_raise,
    never a failure or a crash."""
    from rnn_ref.backends._common import raise_if
    from rnn_ref.backends.records import network_unsupported

    class ElmanFramework(Correct):
        name = "elman-framework"

        def supports(self, config: Any, *, dtype: Any, lengths: bool, mask: bool) -> str | None:
            reason = network_unsupported(config, holds=set(SCOPE_PIECES))
            return None if reason is None else f"{reason[0]}: {reason[1]}"

        def forward(self, params: RNNParams, x: Any, *, h0: Any = None, lengths: Any = None,
                    mask: Any = None) -> Any:
            raise_if(network_unsupported(params.config, holds=set(SCOPE_PIECES)), "elman-fw")
            return super().forward(params, x, h0=h0, lengths=lengths, mask=mask)

    rep = runner.run(ElmanFramework(), GATED)
    assert rep.ok and not rep.out_of_scope
    assert {(r.category, r.status) for r in rep.results} == {("must_raise", "pass")}
    assert rep.scopes_with("refused") == ["elman", "gru", "lstm", "embedding", "select",
                                          "returns"]
    assert rep.scopes_with("checked") == []


def test_a_built_in_backend_refuses_or_passes_the_gated_cases() -> None:
    """The in-tree backends are held to every case (scope from their framework's
    ``unsupported``, not restated): each gated case is refused where ``supports`` says so,
    else compared."""
    from conftest import need

    need("torch")
    backend = get_backend("torch")
    assert scope_of(backend).source == "built in"
    for case in GATED[:3] + GATED[-3:]:
        inp = case.inputs()
        reason = backend.supports(case.config, dtype=np.dtype(case.dtype),
                                  lengths=inp.lengths is not None, mask=inp.mask is not None)
        results = runner.check_case(backend, case)
        assert all(r.status == "pass" for r in results), [r.detail for r in results]
        assert ({r.category for r in results} == {"must_raise"}) == (reason is not None)


def test_gated_conversions_may_merge_biases_where_the_math_allows() -> None:
    """A one-bias format (Keras' LSTM) sums b_x + b_h; a reset-after GRU's n gate cannot."""
    def merged(kind: str) -> type:
        class Merges(Correct):
            name = f"merges-{kind}"

            def round_trip(self, params: RNNParams) -> RNNParams:
                def merge(cell: Any) -> Any:
                    if not isinstance(cell, (GRUParams, LSTMParams)):
                        return cell
                    b_x = {g: cell.b_x[g] + cell.b_h[g] for g in cell.gates}
                    b_h = {g: np.zeros_like(cell.b_h[g]) for g in cell.gates}
                    if isinstance(cell, GRUParams):
                        return GRUParams(cell.w_x, cell.w_h, b_x, b_h)
                    return LSTMParams(cell.w_x, cell.w_h, b_x, b_h, p=cell.p, w_proj=cell.w_proj)
                layers = [[merge(c) for c in layer] for layer in params.layers]
                return RNNParams(params.config, layers, embedding=params.embedding,
                                 head=params.head)
        return Merges

    assert _failed(merged("lstm")(), "lstm_1layer_bidir_peepholes_n3t7d5m4_f32") == []
    assert _failed(merged("gru")(), "gru_1layer_fwd_resetbefore_n3t7d5m4_f32") == []
    results = runner.check_case(merged("gru")(), BY_NAME["gru_2layer_bidir_n3t7d5m4_f32"])
    (res,) = [r for r in results if r.status == "fail"]
    assert res.category == "conversion" and "b_x.n/b_h.n" in res.detail


# -- the planted gated bugs -------------------------------------------------------------------
GATED_CATCHES = {
    "planted-gru-z-r-swapped": ("gru_2layer_bidir_n3t7d5m4_f32", "forward"),
    "planted-lstm-onnx-order-read-as-torch": ("lstm_1layer_fwd_n3t7d5m4_f32", "forward"),
    "planted-gru-reset-placement-swapped": ("gru_1layer_fwd_resetbefore_n3t7d5m4_f32",
                                            "forward"),
    "planted-gru-b_hn-dropped": ("gru_2layer_bidir_n3t7d5m4_f32", "forward"),
    "planted-gru-b_hn-outside-reset": ("gru_2layer_bidir_n3t7d5m4_f32", "forward"),
    "planted-peepholes-onnx-order-read-as-ifo": ("lstm_1layer_bidir_peepholes_n3t7d5m4_f32",
                                                 "forward"),
    "planted-forget-bias-plus-one": ("lstm_1layer_fwd_n3t7d5m4_f32", "forward"),
    "planted-keras2-hard-sigmoid-as-keras3": ("lstm_hardsigmoid2_1layer_fwd_n3t7d5m4_f32",
                                              "forward"),
    "planted-projection-skipped": ("lstm_1layer_bidir_h0c0_proj2_n3t7d5m6_f32", "forward"),
    "planted-cell-state-not-carried": ("lstm_1layer_rev_h0c0_mask_carrystate_n3t7d5m4_f32",
                                       "forward"),
    "planted-c_n-from-the-wrong-step": (LSTM_CASE, "final_state"),
}


def test_every_gated_bug_has_its_case() -> None:
    assert sorted(b.name for b in GATED_BROKEN) == sorted(GATED_CATCHES)


@pytest.mark.parametrize(("name", "case_and_category"), GATED_CATCHES.items())
def test_each_gated_bug_is_caught_by_its_quick_case(name: str,
                                                    case_and_category: tuple[str, str]) -> None:
    """Each planted gated bug fails the quick case named for it (a renamed bug or case fails
    here, not skips); the c_n bug fails the final state only (the outputs are right)."""
    broken = next(b for b in GATED_BROKEN if b.name == name)
    case_name, category = case_and_category
    failed = _failed(broken(), case_name)
    assert category in failed
    if name == "planted-c_n-from-the-wrong-step":
        assert failed == ["final_state"]


# -- plug-in scopes ---------------------------------------------------------------------------
class TinyElman:
    """A third party's Elman layer: a few lines of NumPy, declaring nothing (no ``cells``,
    no ``pieces``, no ``supports``); what it does not do, it refuses with a
    ``NotImplementedError``. ``asked`` records every config it was given."""

    name = "tiny-elman"
    drop_b_h = False  # the planted bug of TinyElmanWithoutRecurrentBias

    def __init__(self) -> None:
        self.asked: list[rnn_ref.RNNConfig] = []

    def forward(self, params: RNNParams, x: Any, *, h0: Any = None, lengths: Any = None,
                mask: Any = None) -> Any:
        cfg = params.config
        self.asked.append(cfg)
        if set(cfg.merge_modes) != {"concat"} or cfg.output_order != "aligned" or \
                cfg.padded_output != "zeros":
            raise NotImplementedError("tiny-elman: concat merges, time-aligned outputs and "
                                      "zeros at padded steps only")
        n, t = x.shape[:2]
        valid = np.ones((n, t), bool) if mask is None else np.asarray(mask, bool)
        if lengths is not None:
            valid = np.arange(t)[None, :] < np.asarray(lengths)[:, None]
        layer_in, h_n = np.asarray(x), []
        for li, layer in enumerate(params.layers):
            outs = []
            for r, c in enumerate(layer):
                f, clip, m = cfg.activation_of(li, r), cfg.clips[li], c.hidden_size
                h = np.zeros((n, m), c.w_x.dtype) if h0 is None else h0[cfg.state_index(li, r)]
                out = np.zeros((n, t, m), c.w_x.dtype)
                for s in range(t - 1, -1, -1) if cfg.is_reverse(li, r) else range(t):
                    z = layer_in[:, s] @ c.w_x + c.b_x + h @ c.w_h + (0 if self.drop_b_h
                                                                        else c.b_h)
                    h = np.where(valid[:, s, None], f(z if clip is None else
                                                      np.clip(z, -clip, clip)), h)
                    out[:, s] = np.where(valid[:, s, None], h, 0)
                outs.append(out)
                h_n.append(h)
            layer_in = np.concatenate(outs, axis=-1)
        return layer_in, np.stack(h_n) if cfg.uniform_hidden else tuple(h_n)


class TinyElmanWithoutRecurrentBias(TinyElman):
    name = "tiny-elman-without-b_h"
    drop_b_h = True


class TinyLSTMRecording(TinyLSTM):
    """:class:`planted.TinyLSTM`, recording every config it was given."""

    def __init__(self) -> None:
        self.asked: list[rnn_ref.RNNConfig] = []

    def forward(self, params: RNNParams, x: Any, *, h0: Any = None, c0: Any = None,
                lengths: Any = None, mask: Any = None) -> Any:
        self.asked.append(params.config)
        return super().forward(params, x, h0=h0, c0=c0, lengths=lengths, mask=mask)


def test_scope_names_follow_the_network_pieces() -> None:
    """A config's scope is its cells and the pieces network_unsupported finds; the Elman
    layer's scope, ("elman",), is exactly the plain stack (RNNConfig.is_plain)."""
    for case in cases.full_cases():
        assert (scope_names(case.config) == ("elman",)) == case.config.is_plain, case.name
    assert scope_names(BY_NAME["lstm-gru-rnn_3layer_bidir_h0c0_lengths_mixed_n3t7d5m4_f32"]
                       .config) == ("elman", "gru", "lstm")
    assert scope_names(BY_NAME["rnn_tanh_2layer_fwd_readout_dropouts_n3t7d5m4_f32"].config) == (
        "elman", "identities")
    assert scope_names(BY_NAME["lstm_1layer_fwd_readout_embed_maskzero_final_sigmoid_"
                               "return_state_n3t7d5m4_f32"].config) == (
        "lstm", "embedding", "select", "returns")


def test_declarations_are_checked() -> None:
    assert scope_of(get_backend("numpy")).source == "built in"
    assert scope_of(TinyElman()).source == "default"
    assert scope_of(TinyLSTM()).cells == {"lstm"}
    assert scope_of(Correct()).everything

    class Typo:
        name = "typo"
        cells = ("lsmt",)

    class Text:
        name = "text"
        cells = "lstm"

    class Nothing:
        name = "nothing"
        cells = ()

    class Piece:
        name = "piece"
        pieces = ("heads",)

    with pytest.raises(ValueError, match=r"declares cells=\('lsmt',\): \['lsmt'\] unknown; "
                       r"each must be one of \['elman', 'gru', 'lstm'\]"):
        scope_of(Typo())
    with pytest.raises(TypeError, match="declares cells='lstm': it must be a tuple of names"):
        scope_of(Text())
    with pytest.raises(ValueError, match=r"declares cells=\(\): it must implement one of"):
        scope_of(Nothing())
    with pytest.raises(ValueError, match=r"\['heads'\] unknown; each must be one of "
                       r"\['embedding', 'mask_value'"):
        scope_of(Piece())
    assert set(SCOPE_CELLS) == {"elman", "gru", "lstm"} and "identities" in SCOPE_PIECES


def test_an_elman_layer_plug_in_is_held_to_the_elman_layer_only() -> None:
    """Declaring nothing, a correct Elman layer passes, is never asked about a cell or piece
    it did not claim, and every report names its scope; the same kernel with a bug fails."""
    # the two Elman cases of T >= 300 cost seconds of estimate; test_conformance runs them
    quick = [c for c in QUICK if c.t < 300]
    tiny = TinyElman()
    rep = runner.run(tiny, quick)
    assert rep.ok, [(r.case, r.detail) for r in rep.failures][:3]
    assert tiny.asked and all(scope_names(cfg) == ("elman",) for cfg in tiny.asked)
    outside = {c.name for c in quick if not c.config.is_plain}
    assert set(rep.out_of_scope) == outside and len(outside) > 30
    assert rep.scopes_with("checked") == ["elman"]
    assert rep.scopes_with("refused") == ["elman"]  # merge modes, carried outputs: raised
    names = [n for n in (*SCOPE_CELLS, *SCOPE_PIECES)
             if any(n in scope_names(c.config) for c in quick if c.name in outside)]
    assert rep.scopes_with("out_of_scope") == names
    assert names[:3] == ["elman", "gru", "lstm"] and "embedding" in names
    text = report.summary_table([rep])
    assert "scope of tiny-elman: cells elman; pieces none (declares nothing: the Elman layer)" \
        in text
    gru = sum("gru" in scope_names(c.config) for c in quick)
    assert f"; out of scope: elman {rep.scopes['elman']['out_of_scope']}, gru {gru}, " in text
    data = report.to_json([rep], mode="quick")["backends"][0]
    assert data["scope"]["source"] == "default" and data["scope"]["cells"] == ["elman"]
    assert data["scope"]["checked"] == ["elman"]
    assert {r["status"] for r in data["results"]} >= {"pass", "out_of_scope"}
    md = ecosystem.markdown([rep], quick, mode="quick")
    assert "| tiny-elman | cells elman; pieces none (declares nothing: the Elman layer) |" in md
    assert ecosystem.cells(rep, quick)["embedding"] == "out of scope"
    wrong = runner.run(TinyElmanWithoutRecurrentBias(), quick)
    assert wrong.failures and not {r.case for r in wrong.failures} & outside


def test_an_lstm_plug_in_is_held_to_its_declared_cell() -> None:
    tiny = TinyLSTMRecording()
    rep = runner.run(tiny, GATED)
    assert rep.ok, [(r.case, r.detail) for r in rep.failures][:3]
    assert tiny.asked and all(scope_names(cfg) == ("lstm",) for cfg in tiny.asked)
    assert rep.scopes_with("checked") == ["lstm"]
    assert sorted(rep.out_of_scope) == sorted(c.name for c in GATED
                                              if scope_names(c.config) != ("lstm",))
    assert "scope of tiny-lstm: cells lstm; pieces none (declared)" in report.summary_table(
        [rep])
    assert runner.run(CellStateNotCarried(), GATED).failures
    # the random matrix mixes the cells: its LSTM-only cases pass, the rest is out of scope
    rep = runner.run(TinyLSTM(), cases.random_cases(300, 1))
    assert rep.ok and rep.scopes["lstm"]["checked"] >= 10, rep.scopes["lstm"]


def test_check_and_the_pytest_plugin_name_the_scope(pytester: pytest.Pytester,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    assert cli.main(["check", "--backend", "test_suite_gated:TinyElman", "--no-progress",
                     "--case", "^(rnn_tanh_1layer_fwd|gru_2layer_bidir|lstm_1layer_fwd)_"
                     "n3t7d5m4_f32$", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "scope of tiny-elman: cells elman; pieces none (declares nothing" in text
    entry = json.loads(out.read_text())["backends"][0]
    assert entry["ok"] and entry["scope"]["out_of_scope"] == ["gru", "lstm"]
    assert entry["scope"]["checked"] == ["elman"]
    # the pytest plugin skips what is out of scope, and its header says why
    pytester.makepyfile(test_rnn="from rnn_ref.conformance.plugin import "
                                  "test_rnn_conformance  # noqa: F401\n")
    tests = str(Path(__file__).resolve().parent)  # the subprocess imports this module
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (tests, os.environ.get("PYTHONPATH")) if p))
    run = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--rnn-backend", "test_suite_gated:TinyElman",
        "-k", "rnn_tanh_1layer_fwd_n3 or gru_2layer_bidir_n3 or embed_paddingidx", "-rs")
    run.assert_outcomes(passed=1, skipped=2)
    run.stdout.fnmatch_lines([
        "rnn-ref scope of test_suite_gated:TinyElman: cells elman; pieces none (declares "
        "nothing: the Elman layer); the cases outside it are skipped",
        "*out of scope: needs gru; the backend implements cells elman*"])
