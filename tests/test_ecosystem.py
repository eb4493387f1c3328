"""The ecosystem table is made from runs: each cell follows the results of the cases that
exercise its feature."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import need
from planted import ClipIgnored, Correct

import rnn_ref
from rnn_ref import cli
from rnn_ref.backends import deviations
from rnn_ref.conformance import cases, ecosystem, runner


def _run(backend: object) -> runner.RunReport:
    name = str(getattr(backend, "name", ""))
    return runner.run(backend, QUICK, deviations=deviations.load(name))


QUICK = cases.quick_cases()


def test_cells_follow_the_results() -> None:
    table = {r.backend: ecosystem.cells(r, QUICK)
             for r in (_run(Correct()), _run(ClipIgnored()))}
    assert set(table["planted-correct"].values()) - {"ok"} == {table["planted-correct"][
        "precision"]}
    assert table["planted-clip-ignored"]["clip"] == "fails"
    assert table["planted-clip-ignored"]["reverse"] != "fails"  # no clip case is reverse-only


def test_recorded_deviations_are_named_in_their_feature_only() -> None:
    need("onnxruntime")
    report = _run(rnn_ref.get_backend("onnxruntime"))
    row = ecosystem.cells(report, QUICK)
    assert row["length 0"] == "deviates (zero-length-final-state)"
    assert row["forward"].startswith("ok")  # the zero-length cases are forward too
    assert row["masks with holes"] == "refuses"
    text = ecosystem.markdown([report], QUICK, mode="quick")
    assert "| onnxruntime | " in text and "do not edit by hand" in text


def test_check_writes_the_table_and_refuses_a_missing_folder_before_running(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need("matplotlib")
    out = tmp_path / "eco.md"
    png = tmp_path / "eco.png"
    assert cli.main(["check", "--backend", "numpy", "--no-progress", "--case", "tutorial",
                     "--markdown", str(out), "--heatmap", str(png)]) == 0
    assert "| numpy | ok |" in out.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert cli.main(["check", "--backend", "numpy", "--markdown",
                     str(tmp_path / "missing" / "eco.md")]) == 2
    err = capsys.readouterr().err
    assert "--markdown" in err and "does not exist" in err and "quick cases" not in err


def test_the_documented_table_is_generated(tmp_path: Path) -> None:
    """docs/conformance.md holds the table between its markers, as a run makes it."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "docs" / "conformance.md").read_text(encoding="utf-8")
    block = readme.split(ecosystem.BEGIN, 1)[1].split(ecosystem.END, 1)[0]
    assert "made by rnn-ref check --markdown" in block
    # the document's numpy row is what a run makes today (the oracle's own row: exact here)
    row = ecosystem.markdown([_run(rnn_ref.get_backend("numpy"))], QUICK, mode="quick")
    assert row.splitlines()[-1] in block.splitlines(), row.splitlines()[-1]
    copy = tmp_path / "conformance.md"
    copy.write_text(readme, encoding="utf-8")
    ecosystem.write_markdown(copy, "| new |\n")
    assert copy.read_text(encoding="utf-8") == readme.replace(block, "\n| new |\n")


def test_a_file_without_markers_is_not_overwritten(tmp_path: Path) -> None:
    notes = tmp_path / "NOTES.md"
    notes.write_text("my own notes\n")
    with pytest.raises(ValueError, match="has no table markers"):
        ecosystem.write_markdown(notes, "| table |\n")
    assert notes.read_text() == "my own notes\n"
    table = ecosystem.markdown([], [], mode="quick")
    fresh = ecosystem.write_markdown(tmp_path / "eco.md", table)
    assert fresh.stat().st_mode & 0o077  # not the temporary file's 0600
    ecosystem.write_markdown(fresh, table + "| again |\n")  # a table it wrote: replaced
    assert fresh.read_text().endswith("| again |\n")
