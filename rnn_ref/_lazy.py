"""Converters and the oracle dispatcher, reached lazily from ``rnn_ref``.

``rnn_ref.from_torch`` and friends live in the backend modules, which import their framework;
``rnn_ref.__getattr__`` imports a module only when one of its names is first used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from rnn_ref.backends._frameworks import FRAMEWORKS

__all__ = ["CONVERTERS", "oracle", "resolve"]

#: public name -> (backend module, attribute), from the framework records
CONVERTERS: dict[str, tuple[str, str]] = {
    name: (fw.module, attribute)
    for fw in FRAMEWORKS if fw.converters is not None
    for name, attribute in zip(fw.converters, ("from_native", "to_native"), strict=True)
}

#: (framework module that must already be imported, backend module) for oracle dispatch
_ORACLES: tuple[tuple[str, str], ...] = tuple(
    (fw.recognised_when, fw.module) for fw in FRAMEWORKS if fw.recognised_when is not None)


def resolve(name: str) -> Any:
    module, attribute = CONVERTERS[name]
    return getattr(importlib.import_module(module), attribute)


def oracle(model: Any, **hints: Any) -> Callable[..., Any]:
    """A NumPy function that returns exactly what ``model`` returns, computed by the oracle.

    ``model`` is a native model: a torch ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` (their cells, or
    a user's module around them), a Keras ``SimpleRNN``/``GRU``/``LSTM``/``Bidirectional``
    layer or model, an ONNX ``ModelProto`` (``RNN``, ``GRU``, ``LSTM`` nodes), or a flax
    ``SimpleCell`` (module or linen params). The function takes the native call's arguments
    as NumPy arrays and returns NumPy arrays of the same structure, shapes and order,
    computed in float64. See each backend's ``oracle`` for the arguments it takes.
    ``hints`` go to the converter for what the model does not record (flax params:
    ``activation=``).

    Dispatch never imports a framework: a model of a framework is recognised only when that
    framework is already imported (it must be, to have made the model).
    """
    for framework, module in _ORACLES:
        if framework in sys.modules:
            backend = importlib.import_module(module)
            if backend.owns(model):
                return backend.oracle(model, **hints)
    raise TypeError(f"no oracle for a {type(model).__module__}.{type(model).__name__}; "
                    f"supported: torch.nn.RNN/GRU/LSTM and modules around them, Keras "
                    f"SimpleRNN/GRU/LSTM/Bidirectional/Model, onnx.ModelProto, flax SimpleCell "
                    f"(its framework must be imported)")
