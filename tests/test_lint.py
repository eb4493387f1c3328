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
