"""The conformance suite: cases, runner, known failures, CLI, pytest plugin, planted bugs."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from planted import BROKEN, Correct, ReturnsNumbersWhenUnsupported

import rnn_ref
from rnn_ref import cli
from rnn_ref.backends.deviations import Deviation
from rnn_ref.conformance import cases, runner

QUICK = cases.quick_cases()


def test_case_names_are_unique_stable_and_spelled_out() -> None:
    full = cases.full_cases()
    assert len({c.name for c in full}) == len(full) > 500
    names = {c.name for c in QUICK}
    assert "rnn_tanh_2layer_bidir_h0_lengths_readout_n3t7d5m4_f32" in names
    assert "rnn_tanh_1layer_fwd_readout_tutorial_n1t10d3m5_f32" in names  # (1, 10, 3, 5, 2)
    assert "rnn_tanh_1layer_fwd_readout_tutorial_n10t20d4m4_f32" in names  # (10, 20, 4, 4, 3)
    acts = {a.name for c in QUICK for layer in c.config.activations for a in layer}
    assert acts == set(rnn_ref.ACTIVATIONS)
    a, b = QUICK[5].inputs(), QUICK[5].inputs()
    np.testing.assert_array_equal(a.x, b.x)
    assert a.params == b.params
    assert cases.random_cases(5, seed=3) == cases.random_cases(5, seed=3)
    assert cases.random_cases(5, seed=3) != cases.random_cases(5, seed=4)


def test_non_square_shapes() -> None:
    for c in QUICK:
        if "tutorial" in c.name or c.t == 0:
            continue
        d, m = c.config.input_size, c.config.hidden_sizes[0]
        assert len({c.n, c.t, d, m}) == 4, c.name


def test_correct_backends_pass_the_quick_matrix() -> None:
    for backend in (rnn_ref.get_backend("numpy"), Correct()):
        report = runner.run(backend, QUICK)
        assert report.ok, [r.detail for r in report.failures][:3]
        assert {r.category for r in report.results} >= {"forward", "final_state", "conversion"}


@pytest.mark.parametrize("broken", BROKEN, ids=lambda b: b.name)
def test_every_planted_bug_is_caught(broken: type) -> None:
    report = runner.run(broken(), QUICK)
    caught = sorted({r.case for r in report.failures})
    assert caught, f"{broken.name} passed every case"


def test_what_catches_what() -> None:
    """The named cases that catch each planted bug (a few of them, as documentation)."""
    def caught(backend: object, name: str) -> list[str]:
        case = next(c for c in QUICK if c.name == name)
        return [r.category for r in runner.check_case(backend, case) if r.status == "fail"]

    from planted import ClipIgnored, PaddingNotZeroed, SwappedBiases

    assert caught(SwappedBiases(), "rnn_tanh_1layer_fwd_n3t7d5m4_f32") == ["conversion"]
    assert "forward" in caught(ClipIgnored(), "rnn_tanh_2layer_fwd_clip_n3t7d5m4_f32")
    assert caught(PaddingNotZeroed(), "rnn_relu_2layer_fwd_h0_lengths_n3t7d5m4_f32") == [
        "forward"]
    assert caught(ReturnsNumbersWhenUnsupported(), "rnn_sigmoid_1layer_bidir_n3t7d5m4_f32") == [
        "must_raise"]


def test_known_failures_xpass_and_stale() -> None:
    from planted import PaddingNotZeroed

    known = [Deviation("padding", "x", "pads", "spec", "src", {"padding": True}),
             Deviation("never", "x", "never", "spec", "src", {"dtype": "float16"})]
    report = runner.run(PaddingNotZeroed(), QUICK, deviations=known)
    assert report.ok  # every padding failure is known
    assert {r.deviation for r in report.results if r.status == "known"} == {"padding"}
    assert any(r.status == "xpass" for r in report.results)  # padded carry_state cases pass
    assert [d.id for d in report.stale] == ["never"]


def test_cli_check_passes_writes_json_and_reports_failures(tmp_path: Path, capsys) -> None:
    out = tmp_path / "check.json"
    assert cli.main(["check", "--backend", "numpy", "--no-progress", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    (entry,) = data["backends"]
    assert entry["backend"] == "numpy" and entry["cases"] == len(QUICK) and entry["ok"]
    first = entry["results"][0]
    for key in ("max_abs_error", "max_rel_error", "eps_units", "where_t_n_m", "atol"):
        assert key in first
    table = capsys.readouterr().out.splitlines()
    header, row = table[0].split(), table[2].split()
    assert header[:4] == ["backend", "cases", "forward", "final"]
    assert row[0] == "numpy" and row[-1].endswith("s")  # the time column is last
    code = cli.main(["check", "--backend", "planted:ClipIgnored", "--no-progress"])
    text = capsys.readouterr().out
    assert code == 1
    assert "FAIL planted-clip-ignored rnn_tanh_2layer_fwd_clip_n3t7d5m4_f32 [forward]" in text
    assert "rerun: rnn-ref check --backend planted:ClipIgnored --case " in text
    assert cli.main(["check", "--backend", "planted:ClipIgnored", "--no-progress",
                     "--case", "^rnn_tanh_2layer_fwd_clip_n3t7d5m4_f32$"]) == 1
    assert cli.main(["check", "--backend", "nonexistent"]) == 2
    assert cli.main(["check", "--backend", "numpy", "--seed", "3"]) == 2  # --seed needs --random
    assert cli.main(["check", "--backend", "numpy", "--case", "no-such-case"]) == 2


def _reruns(text: str) -> dict[str, str]:
    """``{case: its rerun command}`` from the FAIL lines of ``rnn-ref check``."""
    lines = text.splitlines()
    return {line.split()[2]: nxt.split("rerun: ", 1)[1]
            for line, nxt in zip(lines, lines[1:], strict=False) if line.startswith("FAIL ")}


def test_cli_check_rerun_line_reruns_exactly_that_case(tmp_path: Path, capsys) -> None:
    """Issue 22: the rerun line named the backend's ``.name`` instead of the
    ``module:attribute`` given, and added ``--random`` to every case with "_s" in its name (the
    quick ``_sigmoid``, ``_softsign`` ... cases). Each rerun line now runs that one case (of
    the quick, the full or the random matrix) and nothing else."""
    assert cli.main(["check", "--backend", "planted:AllTanh", "--no-progress", "--random", "2",
                     "--seed", "5", "--case", "sigmoid_1layer_bidir|softsign_1layer|random"]
                    ) == 1
    reruns = _reruns(capsys.readouterr().out)
    labels = cases.matrix_labels(cases.random_cases(2, 5))
    by_matrix = {labels[name]: name for name in reruns}
    assert set(by_matrix) == {"quick", "full", "random"}, reruns
    assert "rnn_softsign_1layer_bidir_n3t7d5m4_f32" in reruns  # quick, with "_s" in its name
    for name, line in reruns.items():
        assert line.startswith("rnn-ref check --backend planted:AllTanh --case "), line
        assert ("--random 2 --seed 5" in line) == (labels[name] == "random"), line
    for matrix, name in by_matrix.items():
        out = tmp_path / f"{matrix}.json"
        argv = [*shlex.split(reruns[name])[1:], "--no-progress", "--json", str(out)]
        assert cli.main(argv) == 1, argv
        data = json.loads(out.read_text())
        assert data["mode"] == matrix
        (entry,) = data["backends"]
        assert entry["cases"] == 1
        assert {(r["case"], r["matrix"]) for r in entry["results"]} == {(name, matrix)}
    capsys.readouterr()


def test_cli_check_case_labels_each_case_by_its_matrix(tmp_path: Path, capsys) -> None:
    """Issue 22: ``check --case`` called a case of the full matrix "quick", on the terminal
    and in the JSON."""
    full_only = "rnn_sigmoid_1layer_bidir_lengths_n3t7d5m4_f32"
    quick = "rnn_softsign_1layer_bidir_n3t7d5m4_f32"
    assert full_only not in {c.name for c in QUICK} and quick in {c.name for c in QUICK}
    for pattern, mode, matrices in ((f"^{full_only}$", "full", {"full"}),
                                    (f"^{quick}$", "quick", {"quick"}),
                                    (f"^({quick}|{full_only})$", "full", {"quick", "full"})):
        out = tmp_path / "check.json"
        assert cli.main(["check", "--backend", "numpy", "--no-progress", "--case", pattern,
                         "--json", str(out)]) == 0
        assert f"numpy: {len(matrices)} {mode} cases" in capsys.readouterr().err
        data = json.loads(out.read_text())
        assert data["mode"] == mode
        assert {r["matrix"] for r in data["backends"][0]["results"]} == matrices


def test_rerun_command_refuses_what_it_cannot_rerun() -> None:
    from rnn_ref.conformance.report import rerun_command

    assert rerun_command("numpy", "rnn_a.b", matrix="full") == (
        "rnn-ref check --backend numpy --case '^rnn_a\\.b$'")
    assert rerun_command("my.mod:Backend", "c", matrix="quick", known_failures="k f.json") == (
        "rnn-ref check --backend my.mod:Backend --case '^c$' --known-failures 'k f.json'")
    with pytest.raises(ValueError, match="matrix must be 'quick', 'full' or 'random', got 'x'"):
        rerun_command("numpy", "c", matrix="x")
    with pytest.raises(ValueError, match="needs the run's --random count, got 0"):
        rerun_command("numpy", "c", matrix="random")


def test_pytest_plugin_is_inert_unless_asked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_rnn="from rnn_ref.conformance.plugin import "
                                  "test_rnn_conformance  # noqa: F401\n")
    inert = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    inert.assert_outcomes(skipped=1)  # an empty parameter set: nothing runs
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--rnn-backend", "numpy",
                                        "--rnn-random", "3")
    run.assert_outcomes(passed=len(QUICK) + 3)
    run.stdout.fnmatch_lines(["rnn-ref conformance: numpy (quick, random 3 seed 0)"])


@pytest.mark.slow
def test_every_builtin_backend_passes_the_quick_matrix(capsys) -> None:
    """What `rnn-ref check` runs by default: every built-in backend that can run here, with
    no failure, no unexpected pass and no stale known failure (the one quick-matrix run of
    every backend in the suite; the backends' own test files test their specifics)."""
    code = cli.main(["check", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "XPASS" not in out and "STALE" not in out, out


NETWORK_CATCHES = {
    "planted-dropout-at-inference": "rnn_tanh_2layer_fwd_readout_dropouts_n3t7d5m4_f32",
    "planted-softmax-wrong-axis":
        "rnn_tanh_2layer_bidir-fwd_readout_mixed_final_softmax_n3t7d5m4x3_f32",
    "planted-final-state-wrong-direction": "rnn_tanh_2layer_bidir_final_forward_n3t7d5m4_f32",
    "planted-padding-id-ignored":
        "rnn_tanh_1layer_fwd_readout_embed_maskzero_final_sigmoid_n3t7d5m4_f32",
    "planted-head-before-selection":
        "rnn_tanh_1layer_fwd_readout_embed_maskzero_final_sigmoid_n3t7d5m4_f32",
    "planted-mean-over-padding": "rnn_tanh_1layer_bidir_mask_readout_mean_valid_n3t7d5m4_f32",
}


@pytest.mark.parametrize(("name", "case_name"), NETWORK_CATCHES.items())
def test_network_bugs_are_caught_by_their_case(name: str, case_name: str) -> None:
    """Each planted bug of the network around the stack (issue 12) fails the forward check
    of the case built for that piece (a renamed bug or case fails here, not skips)."""
    broken = next(b for b in BROKEN if b.name == name)
    case = next(c for c in QUICK if c.name == case_name)
    failed = [r.category for r in runner.check_case(broken(), case) if r.status == "fail"]
    assert "forward" in failed


def test_the_tolerance_counts_the_head_activation() -> None:
    """One list of a network's activations (compare.network_activations) for every tolerance:
    the gradient check and convert --verify listed the cells' only, so a tanh network with a
    relu head (unbounded) was compared within the bounded tolerance."""
    from rnn_ref.conformance.compare import network_activations, tolerance

    cfg = rnn_ref.RNNConfig(3, 4, activation="tanh", head=[(5, "relu"), (2, "softmax")])
    assert [a.name for a in network_activations(cfg)] == ["tanh", "relu"]
    cells_only = tolerance(np.float32, 16, [a for row in cfg.activations for a in row])
    assert tolerance(np.float32, 16, network_activations(cfg)).rtol == 4 * cells_only.rtol
