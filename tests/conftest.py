"""Shared fixtures and Hypothesis settings.

Keras runs on TensorFlow in this process (``KERAS_BACKEND`` is set before any import);
``keras[jax]`` and ``keras[torch]`` run in worker processes. torch is imported before
TensorFlow: the other order can crash (Keras' own conftest does the same).

``HYPOTHESIS_PROFILE=ci`` (what ``.ci/run`` uses through ``./dev test``) runs more examples;
``RNN_REF_HYPOTHESIS_EXAMPLES=N`` sets the number directly.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_examples = int(os.environ.get("RNN_REF_HYPOTHESIS_EXAMPLES", "0"))
settings.register_profile("dev", max_examples=_examples or 60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=_examples or 150, deadline=None,
                          derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def need(module: str):  # type: ignore[no-untyped-def]
    """Import ``module`` for a test: skip with the reason when it is missing, or fail when
    ``RNN_REF_REQUIRE_FRAMEWORKS=1`` (what CI sets, so a missing framework cannot pass).
    OpenVINO is imported as the backend imports it, without its telemetry."""
    import importlib

    import pytest

    try:
        if module == "openvino":  # never start OpenVINO's telemetry (it forks and sends)
            from rnn_ref.backends.openvino.backend import import_openvino

            return import_openvino()
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("RNN_REF_REQUIRE_FRAMEWORKS") == "1":
            pytest.fail(f"{module} is required (RNN_REF_REQUIRE_FRAMEWORKS=1) but missing: {exc}")
        pytest.skip(f"{module} is not installed: {exc}", allow_module_level=True)


def need_keras():  # type: ignore[no-untyped-def]
    """Import Keras (TensorFlow backend) after torch, skipping or failing like :func:`need`."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (before TensorFlow)
    return need("keras")
