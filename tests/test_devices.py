"""Devices and precision modes: settings recorded (on the CPU), clear device errors, GPU
backends (skipped without a GPU), and what reports and benchmarks record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import need

import rnn_ref
from rnn_ref import RNNConfig
from rnn_ref.backends import deviations, devices

ROOT = Path(__file__).resolve().parent.parent


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _has_jax_gpu() -> bool:
    try:
        import jax
    except ImportError:
        return False
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


def test_cpu_flags_are_read_from_proc_cpuinfo() -> None:
    info = devices.cpu()
    if not Path("/proc/cpuinfo").is_file():
        assert info["numeric_flags"] is None
        return
    flags = devices.cpu_flags()
    assert info["numeric_flags"] == [f for f in devices.NUMERIC_CPU_FLAGS if f in flags]
    assert info["model"]


def test_gpu_backends_run_only_when_named() -> None:
    from rnn_ref._registry import BACKENDS

    gpu = {n for n, s in BACKENDS.items() if s.device != "cpu"}
    assert gpu == {"torch[cuda]", "torch[cuda,fp32]", "jax[gpu]", "jax[gpu,fp32]"}
    assert not gpu & set(rnn_ref.available_backends())
    assert {BACKENDS[n].precision for n in ("torch[cuda,fp32]", "jax[gpu,fp32]",
                                            "openvino[f32]")} == {"fp32"}
    assert BACKENDS["torch[cuda]"].precision == BACKENDS["jax"].precision == "default"


@pytest.mark.skipif(_has_cuda(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("name", ["torch[cuda]", "torch[cuda,fp32]"])
def test_asking_torch_for_cuda_without_one_is_a_clear_error(name: str) -> None:
    need("torch")
    with pytest.raises(devices.DeviceUnavailableError) as info:
        rnn_ref.get_backend(name)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"backend {name!r}")
    assert "asked for device cuda" in text and text.endswith("available: cpu")


@pytest.mark.skipif(_has_jax_gpu(), reason="this machine has a JAX GPU")
def test_asking_jax_for_a_gpu_without_one_is_a_clear_error() -> None:
    need("jax")
    with pytest.raises(devices.DeviceUnavailableError,
                       match=r"^backend 'jax\[gpu,fp32\]': asked for JAX platform gpu, .*"
                             r"available: cpu$"):
        rnn_ref.get_backend("jax[gpu,fp32]")


@pytest.mark.skipif(_has_cuda(), reason="this machine has a CUDA device")
def test_the_cli_says_so_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    need("torch")
    from rnn_ref.cli import main

    assert main(["check", "--backend", "torch[cuda]", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.count("backend 'torch[cuda]'") == 1
    assert "cuda" in err and "available: cpu" in err


def test_torch_settings_recorded_and_fp32_mode_turns_tf32_off() -> None:
    torch = need("torch")
    before = devices.torch_settings(torch)
    assert {"torch.backends.cudnn.allow_tf32", "torch.backends.cuda.matmul.allow_tf32",
            "cudnn_rnn_tf32"} <= set(before)
    with devices.torch_precision(torch, "fp32"):
        inside = devices.torch_settings(torch)
    assert inside["cudnn_rnn_tf32"] is False
    if "torch.backends.cudnn.rnn.fp32_precision" in inside:  # torch >= 2.9
        assert inside["torch.backends.cudnn.rnn.fp32_precision"] == "ieee"
        assert inside["torch.backends.cuda.matmul.fp32_precision"] == "ieee"
    assert devices.torch_settings(torch) == before  # put back
    with devices.torch_precision(torch, "default"):
        assert devices.torch_settings(torch) == before
    with pytest.raises(ValueError, match="precision mode must be one of default, fp32, "
                                         "got 'tf16'"):
        with devices.torch_precision(torch, "tf16"):
            pass


def _legacy_torch(mixed: bool = False) -> Any:
    """A stand-in for a torch before 2.9: legacy flags only (``mixed``: reading them raises
    as torch does when the two APIs were mixed)."""
    class Flags:
        def __init__(self, value: bool) -> None:
            self._v = value

        @property
        def allow_tf32(self) -> bool:
            if mixed:
                raise RuntimeError("a mix of the legacy and new APIs\nsecond line")
            return self._v

        @allow_tf32.setter
        def allow_tf32(self, value: bool) -> None:
            self._v = value

    cudnn, matmul = Flags(True), Flags(False)
    return SimpleNamespace(backends=SimpleNamespace(cudnn=cudnn, cuda=SimpleNamespace(
        matmul=matmul)), get_float32_matmul_precision=lambda: "highest")


def test_torch_settings_with_the_legacy_api_only() -> None:
    old = _legacy_torch()
    got = devices.torch_settings(old)
    assert "torch.backends.cudnn.rnn.fp32_precision" not in got
    assert got["torch.backends.cudnn.allow_tf32"] is True and got["cudnn_rnn_tf32"] is True
    with devices.torch_precision(old, "fp32"):
        assert old.backends.cudnn.allow_tf32 is False
        assert devices.torch_settings(old)["cudnn_rnn_tf32"] is False
    assert old.backends.cudnn.allow_tf32 is True and old.backends.cuda.matmul.allow_tf32 is False
    mixed = devices.torch_settings(_legacy_torch(mixed=True))
    assert mixed["torch.backends.cudnn.allow_tf32"] == (
        "unreadable: RuntimeError: a mix of the legacy and new APIs")
    assert mixed["cudnn_rnn_tf32"] is None


def test_jax_precision_recorded_and_used_when_tracing() -> None:
    jax = need("jax")
    from rnn_ref.backends.jax import backend as jax_backend

    class JaxCpuFp32(jax_backend.JaxBackend):  # the GPU backend's precision, on the CPU
        name = "jax-cpu-fp32"
        precision_mode = "fp32"

    backend = JaxCpuFp32()
    env = backend.environment()
    assert env["precision_settings"]["jax_default_matmul_precision"] == "highest"
    assert env["device"] == "cpu" and env["precision_mode"] == "fp32"
    assert devices.jax_settings(jax)["jax_default_matmul_precision"] is None  # put back
    params = rnn_ref.init(RNNConfig(5, 7), seed=0, dtype=np.float32)
    x = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    tree = jax_backend.pytree_of(params)

    def hlo() -> str:
        return str(jax.jit(lambda t, xx: jax_backend.apply(t, xx, config=params.config)[0])
                   .lower(tree, x).as_text())

    with devices.jax_precision(jax, "fp32"):
        assert "HIGHEST" in hlo()
    assert "HIGHEST" not in hlo()
    got = backend.forward(params, x)
    np.testing.assert_allclose(got.outputs, rnn_ref.forward(params, x).outputs, atol=1e-6)


def test_unroll_changes_no_result() -> None:
    jax = need("jax")
    from rnn_ref.backends.jax import backend as jax_backend

    cfg = RNNConfig(4, 6, num_layers=2, direction="bidirectional", padded_output="carry_output")
    params = rnn_ref.init(cfg, seed=2, dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((5, 9, 4))
    mask = np.random.default_rng(4).random((5, 9)) < 0.7
    with jax.enable_x64(True):
        tree = jax_backend.pytree_of(params)
        runs = [jax_backend.apply(tree, x, config=cfg, mask=mask, unroll=u) for u in (1, 4)]
    for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13, atol=1e-13)
    want = rnn_ref.forward(params, x, mask=mask)
    np.testing.assert_allclose(np.asarray(runs[1][0]), want.outputs, rtol=1e-10, atol=1e-12)


def test_reports_record_device_precision_and_cpu_flags(tmp_path: Path) -> None:
    from rnn_ref.conformance import cases, report, runner

    case = cases.quick_cases()[0]
    rep = runner.run(rnn_ref.get_backend("numpy"), [case])
    assert rep.environment["device"] == "cpu" and rep.environment["precision_mode"] == "default"
    assert rep.environment["cpu"] == devices.cpu()
    report.write_json(tmp_path / "r.json", [rep], mode="quick")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["machine"]["cpu"]["numeric_flags"] == devices.cpu()["numeric_flags"]
    assert doc["backends"][0]["environment"]["device_name"]
    assert report.environment_line(rep.environment).startswith("device cpu (")


def test_a_varying_deviation_is_known_where_it_shows_and_silent_where_not() -> None:
    from rnn_ref.conformance import cases, runner

    case = cases.quick_cases()[0]
    dev = deviations.Deviation("tf32", "x", "w", "s", "src", {"dtype": "float32"}, varies=True)
    def values(devs: list[deviations.Deviation]) -> set[str]:
        return {r.status for r in runner.check_case(rnn_ref.get_backend("numpy"), case, devs)
                if r.category in ("forward", "final_state")}

    assert values([dev]) == {"pass"}  # not "xpass"
    fixed = deviations.Deviation("tf32", "x", "w", "s", "src", {"dtype": "float32"})
    assert values([fixed]) == {"xpass"}
    with pytest.raises(ValueError, match="varies must be true or false, got 'yes'"):
        deviations.parse([{"id": "a", "what": "w", "spec": "s", "source": "src", "match": None,
                           "varies": "yes"}], "x", "f.json")


def test_gpu_deviations_are_recorded_with_sources() -> None:
    tf32 = deviations.load("torch[cuda]")
    assert tf32[0].id == "cudnn-rnn-tf32-default" and tf32[0].varies
    assert "fp32_precision" in tf32[0].source and "7,800 eps" in tf32[0].what
    jax_default = deviations.load("jax[gpu]")
    assert [d.id for d in jax_default] == ["default-matmul-precision-tf32"]
    assert "docs.jax.dev" in jax_default[0].source
    torch_ids = [d.id for d in deviations.load("torch")]  # the framework's own, on every device
    assert [d.id for d in tf32[1:]] == torch_ids
    assert [d.id for d in deviations.load("torch[cuda,fp32]")] == ["cudnn-tanh-approximate",
                                                                   *torch_ids]
    assert deviations.load("jax[gpu,fp32]") == []


@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA device (torch.cuda.is_available())")
def test_torch_on_cuda_in_strict_float32_matches_the_oracle() -> None:
    params = rnn_ref.init(RNNConfig(5, 7, num_layers=2, direction="bidirectional"), seed=0,
                          dtype=np.float32)
    x = np.random.default_rng(1).standard_normal((3, 11, 5)).astype(np.float32)
    backend = rnn_ref.get_backend("torch[cuda,fp32]")
    assert backend.environment()["precision_settings"]["cudnn_rnn_tf32"] is False
    np.testing.assert_allclose(backend.forward(params, x).outputs,
                               rnn_ref.forward(params, x).outputs, atol=2e-5)


@pytest.mark.skipif(not _has_jax_gpu(), reason="needs a JAX GPU (jax.devices('gpu'))")
def test_jax_on_gpu_at_highest_matches_the_oracle() -> None:
    params = rnn_ref.init(RNNConfig(5, 7, direction="bidirectional"), seed=0, dtype=np.float32)
    x = np.random.default_rng(1).standard_normal((3, 11, 5)).astype(np.float32)
    backend = rnn_ref.get_backend("jax[gpu,fp32]")
    assert backend.environment()["device"] == "gpu"
    np.testing.assert_allclose(backend.forward(params, x).outputs,
                               rnn_ref.forward(params, x).outputs, atol=2e-6)


_BLOCK = """
import sys
class _Block:
    BLOCK = {"keras", "tensorflow", "onnx", "onnxruntime", "mpmath", "hypothesis", "pytest",
             "flax", "matplotlib", "h5py", "openvino", "tf_keras", "safetensors"}
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.BLOCK:
            raise ImportError("not on the GPU machine: " + name)
        return None
sys.meta_path.insert(0, _Block())
sys.argv = ["gpu_check.py", *sys.argv[1:]]
import runpy
runpy.run_path("benchmarks/gpu_check.py", run_name="__main__")
"""


def _gpu_check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """benchmarks/gpu_check.py in a fresh process that cannot import what the GPU machine
    lacks (pytest, hypothesis, keras, onnx, flax, mpmath, ...)."""
    return subprocess.run([sys.executable, "-c", _BLOCK, "--out", str(tmp_path), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                               "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.mark.skipif(_has_cuda() or _has_jax_gpu(), reason="this machine has a GPU")
def test_gpu_check_without_a_gpu_says_so_and_exits_0(tmp_path: Path) -> None:
    res = _gpu_check(tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert doc["gpu"] is False and "no GPU here" in doc["reason"]
    assert "no GPU here" in res.stdout


@pytest.mark.slow
def test_gpu_check_pipeline_runs_on_the_cpu_with_numpy_torch_and_jax_only(
        tmp_path: Path) -> None:
    need("torch")
    need("jax")
    res = _gpu_check(tmp_path, "--cpu", "--budget-s", "40", "--random", "0", "--repeats", "2")
    assert res.returncode == 0, res.stderr
    conf = json.loads((tmp_path / "conformance.json").read_text())
    assert [b["backend"] for b in conf["backends"]] == ["torch", "jax"]
    assert all(b["environment"]["precision_mode"] == "default" for b in conf["backends"])
    assert all(r["status"] != "fail" for b in conf["backends"] for r in b["results"])
    bench = json.loads((tmp_path / "bench.json").read_text())
    ok = [r for r in bench["records"] if r["status"] == "ok"]
    assert {r["backend"] for r in ok} == {"torch", "jax", "jax-bare"}
    assert all(r["device"] == "cpu" and "precision_settings" in r for r in ok)
    assert (tmp_path / "summary.md").is_file() and (tmp_path / "bench.md").is_file()
