"""ruff (including the ban on bare `backends`/`conformance` imports) and mypy stay clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_tool_is_clean(tool: str) -> None:
    need(tool)
    args = ["check", "."] if tool == "ruff" else []
    res = subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr


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
