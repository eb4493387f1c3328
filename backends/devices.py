"""Devices and precision modes: where a backend computes, and the settings that change its
numbers.

A built-in backend names its device and precision mode in its :class:`BackendSpec`
(each framework's ``record.py``): ``torch`` and ``jax`` compute on the CPU; ``torch[cuda]``
and ``jax[gpu]`` on the first GPU at the framework's default precision (where the framework
enables TF32 for float32, it is used); ``torch[cuda,fp32]`` and ``jax[gpu,fp32]`` in strict
float32 (TF32 off; JAX ``default_matmul_precision("highest")``). What is in force when a
backend runs is recorded by :func:`describe` in every conformance report and benchmark record:
the device and its name, the framework's precision settings (read live, with both of torch's
APIs) and the CPU's flags that change numerics.

Nothing here imports a framework at module level; the torch and JAX helpers take the module
(or import it when called), so ``rnn-ref info`` without ``--devices`` imports none.

torch has two APIs for TF32 (``torch/backends/cudnn/__init__.py``, ``torch/backends/__init__.py``):
the legacy flags ``torch.backends.cudnn.allow_tf32`` (default True: cuDNN convolutions and RNNs
use TF32) and ``torch.backends.cuda.matmul.allow_tf32`` (default False), and since torch 2.9
per-backend ``fp32_precision`` attributes (``torch.backends.cudnn.rnn.fp32_precision``,
``"tf32"`` by default; ``torch.backends.cuda.matmul.fp32_precision``; ``"none"`` inherits the
parent's). Reading a legacy flag after the new API set different values raises a
``RuntimeError`` ("a mix of the legacy and new APIs"), so :func:`torch_settings` reads the new
attributes when they exist and records the legacy flags (or the error reading them gives).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["NUMERIC_CPU_FLAGS", "PRECISION_MODES", "DeviceUnavailableError", "cpu",
           "cpu_flags", "describe", "jax_device", "jax_precision", "jax_settings",
           "torch_device", "torch_precision", "torch_settings"]

#: CPU flags that change what a framework computes for float32 (fused multiply-add changes
#: rounding; bf16/fp16/AMX units are what runtimes such as OpenVINO and oneDNN switch to)
NUMERIC_CPU_FLAGS = ("fma", "avx2", "f16c", "avx512f", "avx512_bf16", "avx512_fp16",
                     "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")

#: a backend's precision mode -> what it means
PRECISION_MODES = {
    "default": "the framework's default arithmetic for float32 (TF32 where it enables it)",
    "fp32": "strict float32: TF32 and reduced-precision fast paths turned off",
}


class DeviceUnavailableError(ValueError):
    """A backend was asked for a device this machine does not have (one line: the backend,
    what was asked, what is available)."""


def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and key in ("model name", "flags") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break  # the first processor is enough
    except OSError:
        pass
    return fields


def cpu_flags() -> set[str]:
    """Every flag of the first CPU in ``/proc/cpuinfo`` (empty where there is none)."""
    return set(_cpuinfo().get("flags", "").split())


def cpu() -> dict[str, Any]:
    """The CPU's model and which of :data:`NUMERIC_CPU_FLAGS` it has (read from
    ``/proc/cpuinfo``; ``None`` values where that file does not exist)."""
    import platform

    info = _cpuinfo()
    if "flags" not in info:
        return {"model": platform.processor() or platform.machine(), "numeric_flags": None}
    have = set(info["flags"].split())
    return {"model": info.get("model name", platform.machine()),
            "numeric_flags": [f for f in NUMERIC_CPU_FLAGS if f in have],
            "checked_flags": list(NUMERIC_CPU_FLAGS)}


# --------------------------------------------------------------------------------------------
# torch
# --------------------------------------------------------------------------------------------
def _read(get: Any) -> Any:
    """``get()``, or the error it raises as text (torch raises on mixed TF32 APIs)."""
    try:
        value = get()
    except (AttributeError, RuntimeError) as exc:
        return f"unreadable: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)


def _new_api(torch: Any) -> bool:
    rnn = getattr(torch.backends.cudnn, "rnn", None)
    return rnn is not None and hasattr(rnn, "fp32_precision")


def _rnn_tf32(torch: Any) -> bool | None:
    """Whether cuDNN's RNN uses TF32 for float32 now (``None``: cannot be told)."""
    if _new_api(torch):
        for get in (lambda: torch.backends.cudnn.rnn.fp32_precision,
                    lambda: torch.backends.cudnn.fp32_precision,
                    lambda: torch.backends.fp32_precision):
            value = _read(get)
            if value in ("tf32", "ieee"):
                return bool(value == "tf32")
    legacy = _read(lambda: torch.backends.cudnn.allow_tf32)
    return legacy if isinstance(legacy, bool) else None


def torch_settings(torch: Any | None = None) -> dict[str, Any]:
    """torch's float32 precision settings in force: the new ``fp32_precision`` attributes
    where they exist, the legacy ``allow_tf32`` flags (or why they cannot be read),
    ``torch.get_float32_matmul_precision()``, and ``cudnn_rnn_tf32``, whether cuDNN's RNN
    uses TF32 now."""
    if torch is None:
        import torch as torch_module

        torch = torch_module
    out: dict[str, Any] = {}
    if _new_api(torch):
        out["torch.backends.cudnn.rnn.fp32_precision"] = _read(
            lambda: torch.backends.cudnn.rnn.fp32_precision)
        out["torch.backends.cuda.matmul.fp32_precision"] = _read(
            lambda: torch.backends.cuda.matmul.fp32_precision)
        out["torch.backends.fp32_precision"] = _read(lambda: torch.backends.fp32_precision)
    out["torch.backends.cudnn.allow_tf32"] = _read(lambda: torch.backends.cudnn.allow_tf32)
    out["torch.backends.cuda.matmul.allow_tf32"] = _read(
        lambda: torch.backends.cuda.matmul.allow_tf32)
    out["torch.get_float32_matmul_precision()"] = _read(torch.get_float32_matmul_precision)
    out["cudnn_rnn_tf32"] = _rnn_tf32(torch)
    return out


def _check_mode(mode: str) -> str:
    """``mode`` itself when it is one of :data:`PRECISION_MODES`, else ``ValueError``."""
    if mode not in PRECISION_MODES:
        raise ValueError(f"precision mode must be one of {', '.join(PRECISION_MODES)}, "
                         f"got {mode!r}")
    return mode


@contextlib.contextmanager
def torch_precision(torch: Any, mode: str) -> Iterator[None]:
    """Run the body in precision ``mode`` (a key of :data:`PRECISION_MODES`): ``"default"``
    changes nothing; ``"fp32"`` turns TF32 off for cuDNN's RNN and for CUDA matrix products
    (through the ``fp32_precision`` attributes where torch has them, else the legacy flags),
    and puts back what was there after."""
    if _check_mode(mode) == "default":
        yield
        return
    targets: list[tuple[Any, str, Any]]
    if _new_api(torch):
        targets = [(torch.backends.cudnn.rnn, "fp32_precision", "ieee"),
                   (torch.backends.cuda.matmul, "fp32_precision", "ieee")]
    else:
        targets = [(torch.backends.cudnn, "allow_tf32", False),
                   (torch.backends.cuda.matmul, "allow_tf32", False)]
    saved = [getattr(obj, attr) for obj, attr, _ in targets]
    try:
        for obj, attr, value in targets:
            setattr(obj, attr, value)
        yield
    finally:
        for (obj, attr, _), value in zip(targets, saved, strict=True):
            setattr(obj, attr, value)


def torch_device(torch: Any, backend: str, device: str) -> Any:
    """``torch.device(device)`` when this machine has it, else :class:`DeviceUnavailableError`
    naming ``backend``, the device asked for and the devices torch sees."""
    if device == "cpu":
        return torch.device("cpu")
    if device != "cuda":
        raise DeviceUnavailableError(f"backend {backend!r}: device {device!r} is not one of "
                                     f"cpu, cuda")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise DeviceUnavailableError(
            f"backend {backend!r}: asked for device cuda, but torch {torch.__version__} "
            f"({build}) finds no CUDA device; available: cpu")
    return torch.device("cuda", 0)


# --------------------------------------------------------------------------------------------
# JAX
# --------------------------------------------------------------------------------------------
def jax_settings(jax: Any | None = None) -> dict[str, Any]:
    """JAX's precision settings in force: ``jax_default_matmul_precision`` (``None``: JAX's
    default, one bf16 pass on TPUs and TF32 on recent NVIDIA GPUs for float32) and
    ``jax_enable_x64``."""
    if jax is None:
        import jax as jax_module

        jax = jax_module
    return {"jax_default_matmul_precision": _read(
                lambda: jax.config.jax_default_matmul_precision),
            "jax_enable_x64": _read(lambda: bool(jax.config.jax_enable_x64))}


def jax_device(jax: Any, backend: str, platform: str) -> Any:
    """JAX's first device of ``platform`` (``"cpu"``, ``"gpu"``), else
    :class:`DeviceUnavailableError` naming ``backend``, the platform asked for and the
    platforms JAX has."""
    try:
        return jax.devices(platform)[0]
    except RuntimeError:
        have = sorted({d.platform for d in jax.devices()} | {"cpu"})
        raise DeviceUnavailableError(
            f"backend {backend!r}: asked for JAX platform {platform}, but jax "
            f"{jax.__version__} has none here; available: {', '.join(have)}") from None


@contextlib.contextmanager
def jax_precision(jax: Any, mode: str) -> Iterator[None]:
    """Run the body at precision ``mode``: ``"default"`` (JAX's default matmul precision,
    unchanged) or ``"fp32"`` (``jax.default_matmul_precision("highest")``: float32 products
    in float32, no TF32 pass)."""
    if _check_mode(mode) == "default":
        yield
        return
    with jax.default_matmul_precision("highest"):
        yield


def device_name(framework: str, device: Any) -> str:
    """A device's human name: the GPU's model for CUDA devices, the CPU's model for CPUs."""
    if framework == "torch" and getattr(device, "type", "cpu") == "cuda":
        import torch

        return str(torch.cuda.get_device_name(device))
    if framework == "jax" and getattr(device, "platform", "cpu") != "cpu":
        return str(getattr(device, "device_kind", device))
    return str(cpu()["model"])


# --------------------------------------------------------------------------------------------
# what a report records
# --------------------------------------------------------------------------------------------
def describe(backend: Any) -> dict[str, Any]:
    """The device, its name, the precision mode and settings in force for ``backend``, and
    the CPU's numeric flags: ``backend.environment()`` where the backend has it (torch, jax),
    else the facts of its built-in record, else ``"not stated"`` (a third party's)."""
    from rnn_ref.backends._frameworks import backends

    own = getattr(backend, "environment", None)
    if callable(own):
        env = dict(own())
    else:
        spec = backends().get(str(getattr(backend, "name", "")))
        env = {"device": getattr(backend, "device", spec.device if spec else "not stated"),
               "precision_mode": getattr(backend, "precision_mode",
                                         spec.precision if spec else "not stated")}
        if spec is not None and spec.name.startswith("openvino"):
            # the hint it compiles with, or the CPU plugin's default (OpenVinoBackend.precision)
            env["precision_settings"] = {"INFERENCE_PRECISION_HINT": _read(
                lambda: backend.precision)}
        if env["device"] == "cpu":
            env["device_name"] = cpu()["model"]
    env["cpu"] = cpu()
    return env
