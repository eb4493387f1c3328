"""The framework records: every table is derived from them, every framework module has the same
functions, and what needs no framework runs without one."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

import rnn_ref
from rnn_ref import convert
from rnn_ref._lazy import CONVERTERS
from rnn_ref._registry import BACKENDS
from rnn_ref.backends import _frameworks
from rnn_ref.backends._frameworks import (
    CONVERTER_API,
    FILE_API,
    FRAMEWORKS,
    GRAPH_API,
    MODULE_API,
)
from rnn_ref.backends.devices import DeviceUnavailableError


def test_tables_are_derived_from_the_records() -> None:
    assert set(BACKENDS) == {b.name for fw in FRAMEWORKS for b in fw.backends}
    assert set(CONVERTERS) == {n for fw in FRAMEWORKS if fw.converters for n in fw.converters}
    assert set(convert.FORMATS) == {f.name for fw in FRAMEWORKS for f in fw.formats}
    for fw in FRAMEWORKS:
        for f in fw.formats:
            assert convert.FORMATS[f.name] == f.extensions
            assert convert.hints_read(f.name) == f.hints


@pytest.mark.parametrize("fw", FRAMEWORKS, ids=lambda f: f.name)
def test_every_framework_module_defines_the_same_functions(fw: _frameworks.Framework) -> None:
    if fw.missing():
        pytest.skip(f"{fw.name} needs {fw.missing()}")
    modules = {fw.module: [*MODULE_API, *(CONVERTER_API if fw.converters else ())]}
    if fw.formats:  # the file functions live in the package's files.py
        assert fw.files == f"{fw.module.rpartition('.')[0]}.files", fw.files
        modules.setdefault(fw.files, []).extend(
            [*FILE_API, *(GRAPH_API if any(not f.readable for f in fw.formats) else ())])
    for name, wanted in modules.items():
        module = importlib.import_module(name)
        absent = [f for f in wanted if not callable(getattr(module, f, None))]
        assert not absent, f"{name} lacks {absent}"
        assert set(wanted) <= set(module.__all__)
    for spec in fw.backends:
        if spec.missing():
            continue
        if spec.device == "cpu":
            rnn_ref.get_backend(spec.name)
            continue
        try:  # a GPU backend loads, then finds its device or says clearly it is not here
            rnn_ref.get_backend(spec.name)
        except DeviceUnavailableError as exc:
            assert str(exc).startswith(f"backend {spec.name!r}: asked for")


def test_unsupported_is_pure_and_agrees_with_the_converters() -> None:
    """convertible() answers from the records alone; each to_* refuses what it says."""
    cfg = rnn_ref.RNNConfig(3, 4, direction="reverse", activation="softsign", clip=2.0)
    reasons = convert.convertible(rnn_ref.init(cfg, seed=0))
    assert reasons["rnn-ref"] is None and reasons["onnx"] is None
    assert "softsign" in reasons["torch"] and "clip" in reasons["keras"]
    assert reasons["torch"] == reasons["safetensors"]


HIDE = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "onnx", "onnxruntime", "keras", "tensorflow",
                                  "jax", "flax", "h5py", "safetensors", "openvino",
                                  "tract", "mlx", "tf_keras", "ai_edge_litert"}:
            raise ImportError(f"{name} is hidden for this test")
sys.meta_path.insert(0, Hide())
import importlib.util
_find = importlib.util.find_spec
def find_spec(name, package=None):
    if name.split(".")[0] in {"torch", "onnx", "onnxruntime", "keras", "tensorflow", "jax",
                              "flax", "h5py", "safetensors", "openvino", "tract", "mlx",
                              "tf_keras", "ai_edge_litert"}:
        return None
    return _find(name, package)
importlib.util.find_spec = find_spec
"""


def _run_hidden(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HIDE + textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_canonical_convert_and_inspect_need_no_framework(tmp_path: Path) -> None:
    params = rnn_ref.init(rnn_ref.RNNConfig(3, (4, 2), direction="bidirectional",
                                            activation="sigmoid", output_size=2), seed=1)
    rnn_ref.save(params, tmp_path / "a.npz")
    rnn_ref.save(rnn_ref.init(rnn_ref.RNNConfig(3, 4), seed=2), tmp_path / "t.npz")
    res = _run_hidden("""
        import sys
        from rnn_ref.cli import main
        codes = [main(["convert", "a.npz", "b.npz", "--verify"]), main(["inspect", "a.npz"]),
                 main(["info"]), main(["convert", "a.npz", "c.pt"]),
                 main(["convert", "t.npz", "t.pt"])]
        print("codes", codes)
        print("imported", sorted(m for m in sys.modules if m.split(".")[0] in
              {"torch", "onnx", "keras", "tensorflow", "jax", "flax"}))
    """, tmp_path)
    assert "codes [0, 0, 0, 2, 2]" in res.stdout, res.stdout + res.stderr
    assert "imported []" in res.stdout
    assert "converts to:" in res.stdout and "no: torch.nn.RNN cannot express" in res.stdout
    assert "cannot write c.pt as torch: torch.nn.RNN cannot express activation sigmoid" in (
        res.stderr)  # what a format cannot hold is known without its framework
    assert "torch files need torch, which is not installed" in res.stderr  # t.pt
    assert "Traceback" not in res.stderr
    assert rnn_ref.load(tmp_path / "b.npz") == params


def test_library_errors_speak_python_and_the_cli_speaks_flags(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    module = torch.nn.RNN(3, 4, batch_first=True)
    torch.save(module.state_dict(), tmp_path / "m.pt")
    with pytest.raises(convert.MissingHintError, match="give it as a hint") as info:
        convert.read(tmp_path / "m.pt")
    assert info.value.hint == "activation" and "--" not in str(info.value)
    from rnn_ref.cli import main

    assert main(["convert", str(tmp_path / "m.pt"), str(tmp_path / "m.npz")]) == 2
    done = convert.convert(tmp_path / "m.pt", tmp_path / "m.npz",
                           hints=convert.Hints(activation="tanh"), verify=True)
    assert done.verification is not None and done.verification.passed
    assert (done.src_format, done.dst_format) == ("torch", "rnn-ref")


def test_convert_reads_the_source_once_and_detects_each_format_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rnn_ref.save(rnn_ref.init(rnn_ref.RNNConfig(3, 4), seed=0), tmp_path / "a.npz")
    calls = {"read": 0, "detect": 0}
    real_read, real_detect = convert.read, convert.detect

    def counting_read(*a: object, **k: object) -> object:
        calls["read"] += 1
        return real_read(*a, **k)  # type: ignore[arg-type]

    def counting_detect(path: object, given: object = None) -> object:
        calls["detect"] += given is None  # a detection from the extension
        return real_detect(path, given)  # type: ignore[arg-type]

    monkeypatch.setattr(convert, "read", counting_read)
    monkeypatch.setattr(convert, "detect", counting_detect)
    convert.convert(tmp_path / "a.npz", tmp_path / "b.npz")
    assert calls == {"read": 1, "detect": 2}
    convert.convert(tmp_path / "a.npz", tmp_path / "c.npz", verify=True)
    assert calls["read"] == 3  # the source once, and the written file once to verify it


def test_a_backend_without_supports_is_checked(tmp_path: Path) -> None:
    """No ``supports``: every case runs, a clear NotImplementedError counts as a refusal."""
    from rnn_ref.conformance import cases, runner

    class OnlyForward:
        name = "only-forward"

        def forward(self, params: rnn_ref.RNNParams, x: np.ndarray, *, h0: object = None,
                    lengths: object = None, mask: object = None) -> tuple:
            if mask is not None:
                raise NotImplementedError("only-forward takes no masks")
            res = rnn_ref.forward(params, x, h0=h0, lengths=lengths,
                                  compute_dtype=params.dtype)
            return res.outputs, res.h_n

    module = types.ModuleType("only_forward_kernel")
    module.OnlyForward = OnlyForward  # type: ignore[attr-defined]
    sys.modules["only_forward_kernel"] = module
    try:
        backend = rnn_ref.get_backend("only_forward_kernel:OnlyForward")
    finally:
        del sys.modules["only_forward_kernel"]
    # a kernel of the recurrent stack alone (the network cases need a model's result)
    report = runner.run(backend, [c for c in cases.quick_cases() if c.config.is_plain])
    statuses = {(r.category, r.status) for r in report.results}
    assert ("must_raise", "pass") in statuses  # the mask cases: refused, not failed
    assert not [r for r in report.results if r.status == "fail"], [
        (r.case, r.category, r.detail) for r in report.results if r.status == "fail"][:3]
