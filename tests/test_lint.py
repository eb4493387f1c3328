"""ruff (including the ban on bare `backends`/`conformance` imports) and mypy stay clean; mypy
runs on the packages as installed (tests/typecheck.py), so it sees across the mapping of
`backends`/`conformance` into `rnn_ref`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need
from typecheck import CACHE, package_dirs, typecheck

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_tool_is_clean(tool: str) -> None:
    need(tool)
    if tool == "mypy":
        status, output = typecheck(ROOT)
        assert status == 0, output
        return
    res = subprocess.run([sys.executable, "-m", tool, "check", "."], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_typecheck_sees_across_the_package_mapping(tmp_path: Path) -> None:
    """Planted bug: a call of a name `backends/_frameworks.py` does not define, made from
    `rnn_ref/convert.py` (issue 22: a plain mypy run passed it, blind at the mapping), fails
    the check, reported at the real file. The copy's mypy cache starts from the tree's."""
    need("mypy")
    copy = tmp_path / "tree"
    for folder in sorted(set(package_dirs(ROOT).values())):
        shutil.copytree(ROOT / folder, copy / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    convert = copy / "rnn_ref" / "convert.py"
    text = convert.read_text(encoding="utf-8")
    assert "from rnn_ref.backends import _frameworks\n" in text
    convert.write_text(text + '\n_frameworks.no_such_name(1, 2, 3) + "x"\n', encoding="utf-8")
    cache = tmp_path / "cache"
    if (ROOT / CACHE).is_dir():
        shutil.copytree(ROOT / CACHE, cache)
    status, output = typecheck(copy, cache_dir=cache)
    assert status == 1, output
    assert 'rnn_ref/convert.py' in output and '"no_such_name"' in output, output
    assert output.count(": error:") == 1, output
    assert "rnn_ref/backends/" not in output and "rnn_ref/conformance/" not in output, output


def test_typecheck_reports_the_real_paths() -> None:
    """mypy's paths in the installed layout are mapped back to the folders of the tree."""
    from typecheck import real_paths

    dirs = package_dirs(ROOT)
    assert dirs["rnn_ref/backends"] == "backends"
    assert dirs["rnn_ref/conformance"] == "conformance"
    out = real_paths("rnn_ref/backends/x.py:3: error: e\nrnn_ref/cli.py:4: note: n\n"
                     "rnn_ref/conformance/runner.py:5: error: see rnn_ref/backends/y.py\n",
                     dirs)
    assert out == ("backends/x.py:3: error: e\nrnn_ref/cli.py:4: note: n\n"
                   "conformance/runner.py:5: error: see rnn_ref/backends/y.py\n")


def test_spec_citations_point_at_sections_that_exist() -> None:
    """Every "docs/spec.md section X" (or "docs/spec.md X.Y") in the code names a heading of
    the spec that lives in the repository."""
    import re

    spec = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", spec, flags=re.M))
    cited: dict[str, str] = {}
    for folder in ("rnn_ref", "backends", "conformance", "benchmarks", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", ".json") or not path.is_file():
                continue
            text = path.read_text(encoding="utf-8")
            brief = re.search(r"\bSPEC(?: section| \d)", text)
            assert brief is None or path.name == "test_lint.py", (
                f"{path}: cites the design brief, which is not in the repository")
            for found in re.findall(r"docs/spec\.md (?:sections? )?(\d+(?:\.\d+)?)", text):
                cited[found] = str(path)
    assert cited, "no citation found: the pattern is out of date"
    missing = {s: p for s, p in cited.items() if s not in sections}
    assert not missing, f"citations of sections the spec does not have: {missing}"
