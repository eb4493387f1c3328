"""import rnn_ref imports NumPy only; the CLI's info and demo work without any framework."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import rnn_ref
from rnn_ref import cli

FRAMEWORKS = ["torch", "jax", "jaxlib", "tensorflow", "keras", "onnx", "onnxruntime", "flax",
              "h5py", "safetensors", "matplotlib"]


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return out.stdout


def test_import_rnn_ref_imports_no_framework() -> None:
    code = (
        "import sys, json, rnn_ref, rnn_ref.backends, rnn_ref.conformance\n"
        "rnn_ref.available_backends(); rnn_ref.get_backend('numpy')\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(json.loads(_run(code)))
    assert not loaded & set(FRAMEWORKS), loaded & set(FRAMEWORKS)


def test_cli_info_imports_no_framework() -> None:
    code = (
        "import sys, json, io, contextlib\n"
        "from rnn_ref import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()): cli.main(['info'])\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(json.loads(_run(code)))
    assert not loaded & set(FRAMEWORKS), loaded & set(FRAMEWORKS)


def test_info_lists_backends(capsys) -> None:
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"rnn-ref {rnn_ref.__version__}" in out
    for name in ("numpy", "torch", "onnxruntime"):
        assert name in out


@pytest.mark.slow
def test_demo_passes(capsys) -> None:
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "57 counted as Keras does" in out and "FAIL" not in out
    assert "canonical file round trip" in out


def test_console_script_help() -> None:
    out = subprocess.run([sys.executable, "-m", "rnn_ref.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "info" in out and "demo" in out


def test_demo_prints_no_framework_log_noise() -> None:
    """What a newcomer sees first: the demo's table, no TensorFlow/absl banners."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    res = subprocess.run([sys.executable, "-m", "rnn_ref.cli", "demo"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    for noise in ("absl", "oneDNN", "I0000", "WARNING"):
        assert noise not in res.stdout + res.stderr, (res.stdout + res.stderr)[:2000]
