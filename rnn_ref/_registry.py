"""Backends: the protocol, the table of built-in ones, and lazy lookup.

The table maps a backend's name to ``"module:attribute"`` strings plus the distributions it
needs. Nothing here imports a framework: :func:`available_backends` asks
``importlib.util.find_spec`` whether the framework is installed, and :func:`get_backend`
imports the backend's module only when asked for it.

A backend, built in or a third party's, is any object with

* ``name``: a short string, e.g. ``"torch"`` or ``"keras[jax]"``;
* ``forward(params, x, *, h0=None, lengths=None, mask=None)``: runs the framework's own
  implementation and returns ``(outputs, h_n)`` in the canonical shapes (``outputs
  (N, T, F)``, ``h_n (L*R, N, M)``) or an object with ``.outputs`` and ``.h_n``;
* optionally ``supports(config, *, dtype, lengths, mask)``: ``None`` when the backend can run
  that case, else a sentence saying why not (the conformance suite then checks that asking for
  it raises). Without it every case is run, and a ``NotImplementedError`` with a message is
  reported as a refusal ("unsupported (raised)"), not a failure.
  ``lengths`` means right-padded lengths; ``mask`` a boolean mask of any pattern (holes, left
  padding). A backend that takes only right padding declares ``mask`` unsupported.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from functools import cache
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rnn_ref.backends import _frameworks
from rnn_ref.backends._frameworks import BackendSpec
from rnn_ref.params import RNNParams

__all__ = ["BACKENDS", "Backend", "BackendSpec", "available_backends", "get_backend"]


@runtime_checkable
class Backend(Protocol):
    """What the conformance suite and the benchmarks need from a backend."""

    name: str

    def forward(
        self,
        params: RNNParams,
        x: np.ndarray[Any, Any],
        *,
        h0: Any = None,
        lengths: Any = None,
        mask: Any = None,
    ) -> Any: ...


#: Every built-in backend by name, from the framework records (``rnn_ref.backends._frameworks``).
BACKENDS: dict[str, BackendSpec] = _frameworks.backends()


def available_backends() -> list[str]:
    """Names of the built-in CPU backends whose frameworks are installed; imports none of
    them. A GPU backend (``torch[cuda]``, ``jax[gpu]``) runs only when named: telling whether
    a GPU is there would mean importing its framework."""
    return [name for name, spec in BACKENDS.items()
            if not spec.missing() and spec.device == "cpu"]


def _load_target(target: str) -> Any:
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"backend target must look like 'module:attribute', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"backend {target!r}: cannot import {module_name!r} ({exc})") from exc
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"backend {target!r}: {module_name!r} has no {attribute!r}") from None
    return obj


@cache
def get_backend(name: str) -> Backend:
    """Return the backend called ``name``, importing its framework now.

    Args:
        name: a built-in name (see :data:`BACKENDS`) or a third party's ``module:attribute``
            naming a backend object, a class or a zero-argument factory. The module is
            imported and a class or factory is called: naming one runs its code.

    Raises:
        ValueError: an unknown name (the message lists the known ones), or a built-in
            backend's refusal to start (a device this machine does not have).
        ImportError: the backend's framework is not installed (the message names it).
        TypeError: the object found is not a backend.
    """
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a string, got {type(name).__name__}")
    if name in BACKENDS:
        spec = BACKENDS[name]
        missing = spec.missing()
        if missing:
            raise ImportError(
                f"backend {name!r} needs {', '.join(missing)}, which is not installed "
                f"(pip install 'rnn-ref[all]' -c constraints.txt)"
            )
        obj = _load_target(spec.target)
    elif ":" in name:
        obj = _load_target(name)
    elif (ep := _entry_point(name)) is not None:
        obj = ep.load()
    else:
        raise ValueError(
            f"unknown backend {name!r}; built in: {', '.join(BACKENDS)}; "
            f"or name a third party's as 'module:attribute' or register it in the "
            f"'{ENTRY_POINT_GROUP}' entry-point group"
        )
    try:
        backend = _instantiate(obj)
    except ValueError as exc:
        if name in BACKENDS:  # a built-in backend's own refusal, e.g. no such device here
            raise
        raise TypeError(f"{name!r}: calling it with no arguments failed (ValueError: {exc}); "
                        f"name a backend object, a class or a zero-argument factory that "
                        f"returns one") from None
    except (Exception, SystemExit) as exc:  # builtins:exit raises SystemExit when called
        what = ("it tried to end the process: SystemExit" if isinstance(exc, SystemExit)
                else f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        raise TypeError(f"{name!r}: calling it with no arguments failed ({what}); name a "
                        f"backend object, a class or a zero-argument factory that returns "
                        f"one") from None
    if not isinstance(backend, Backend):
        raise TypeError(
            f"{name!r} gives a {type(backend).__name__}, which is not a backend: it needs "
            f".name and .forward(params, x, *, h0, lengths, mask) (and optionally "
            f".supports(config, *, dtype, lengths, mask))"
        )
    return backend


ENTRY_POINT_GROUP = "rnn_ref.backends"


def _entry_point(name: str) -> Any:
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    return found[0] if found else None


def _instantiate(obj: Any) -> Any:
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "forward")):
        factory: Callable[[], Any] = obj
        return factory()
    return obj
