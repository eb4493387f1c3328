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

A backend that runs LSTM layers also takes ``c0`` (the initial cell states, ``(C, N, M)``) in
``forward`` and returns the final cell states as ``.c_n`` (or ``(outputs, h_n, c_n)``).

What a backend implements (its scope, :class:`Scope`) is declared, not guessed: a third
party's kernel usually implements one cell, often only the layer, so the conformance suite
holds a backend to the cases inside its scope and reports the others as *out of scope* (not
run, not failures). A backend declares it with two optional attributes:

* ``cells``: the cells it implements, names of :data:`SCOPE_CELLS` (default ``("elman",)``);
* ``pieces``: the pieces of the network around the stack it implements, names of
  :data:`SCOPE_PIECES` (default none: the recurrent stack alone, with at most a one-layer
  readout per step, which it may leave out).

A backend that declares nothing is held to the Elman layer's cases only. The built-in backends
(those of ``rnn_ref.backends``) are held to every case: their ``supports`` asks their
framework's ``unsupported(config)``, and the suite checks that they refuse what it names.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rnn_ref.backends import _frameworks
from rnn_ref.backends._frameworks import BackendSpec
from rnn_ref.backends.records import GATED, NETWORK_PIECES, network_unsupported
from rnn_ref.cells import CELLS
from rnn_ref.config import RNNConfig
from rnn_ref.params import RNNParams

__all__ = ["BACKENDS", "SCOPE_CELLS", "SCOPE_PIECES", "Backend", "BackendSpec", "Scope",
           "available_backends", "get_backend", "scope_names", "scope_of"]


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


#: The cells a backend may declare in its ``cells`` attribute.
SCOPE_CELLS: tuple[str, ...] = CELLS
#: The network pieces a backend may declare in its ``pieces`` attribute: those of
#: :data:`rnn_ref.backends.records.NETWORK_PIECES` (docs/spec.md section 2.6) beyond the cells,
#: and ``"identities"`` (dropout and noise layers, the identity at inference).
SCOPE_PIECES: tuple[str, ...] = (*(p for p in NETWORK_PIECES if p not in GATED), "identities")


def scope_names(config: RNNConfig) -> tuple[str, ...]:
    """What of :data:`SCOPE_CELLS` and :data:`SCOPE_PIECES` ``config`` uses: its layers' cells,
    then its pieces, each in the order of those tuples. A plain Elman stack (with at most a
    one-layer readout) is ``("elman",)``.

    The pieces are found by :func:`rnn_ref.backends.records.network_unsupported`, one at a
    time, so this cannot drift from what a framework record refuses."""
    kinds = {c.kind for c in config.cells}
    every = frozenset(NETWORK_PIECES)
    pieces = {p for p in NETWORK_PIECES if p not in GATED
              and network_unsupported(config, holds=every - {p}) is not None}
    if config.identities:
        pieces.add("identities")
    return (*(c for c in SCOPE_CELLS if c in kinds), *(p for p in SCOPE_PIECES if p in pieces))


@dataclass(frozen=True)
class Scope:
    """What a backend is held to (see the module docstring).

    Attributes:
        cells: the cells it implements (a subset of :data:`SCOPE_CELLS`).
        pieces: the network pieces it implements (a subset of :data:`SCOPE_PIECES`).
        source: ``"declared"`` (its ``cells``/``pieces`` attributes), ``"default"`` (it
            declares nothing: the Elman layer) or ``"built in"`` (every cell and piece; its
            ``supports`` refuses what its framework does not hold).
    """

    cells: frozenset[str]
    pieces: frozenset[str]
    source: str

    @property
    def everything(self) -> bool:
        """True when every cell and piece is in the scope."""
        return self.cells == frozenset(SCOPE_CELLS) and self.pieces == frozenset(SCOPE_PIECES)

    def missing(self, config: RNNConfig) -> tuple[str, ...]:
        """The names of :func:`scope_names` of ``config`` outside this scope (``()``: in)."""
        held = self.cells | self.pieces
        return tuple(n for n in scope_names(config) if n not in held)

    def describe(self) -> str:
        """``"cells lstm; pieces none (declared)"``, or for the built-in scope ``"every cell
        and piece (built in: refusals by its framework's unsupported)"``."""
        if self.source == "built in":
            return "every cell and piece (built in: refusals by its framework's unsupported)"
        cells = ", ".join(c for c in SCOPE_CELLS if c in self.cells)
        pieces = ", ".join(p for p in SCOPE_PIECES if p in self.pieces) or "none"
        how = "declared" if self.source == "declared" else "declares nothing: the Elman layer"
        return f"cells {cells}; pieces {pieces} ({how})"


#: The scope of a backend that declares nothing: the Elman layer.
DEFAULT_SCOPE = Scope(frozenset({"elman"}), frozenset(), "default")
BUILT_IN_SCOPE = Scope(frozenset(SCOPE_CELLS), frozenset(SCOPE_PIECES), "built in")


def _declared(backend: Any, attribute: str, allowed: tuple[str, ...], default: frozenset[str]
              ) -> frozenset[str]:
    """A backend's ``cells`` or ``pieces`` declaration, checked against ``allowed``."""
    value = getattr(backend, attribute, None)
    if value is None:
        return default
    name = getattr(backend, "name", type(backend).__name__)
    if isinstance(value, str) or not isinstance(value, (tuple, list, set, frozenset)):
        raise TypeError(f"backend {name!r} declares {attribute}={value!r}: it must be a tuple of "
                        f"names from {list(allowed)}")
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ValueError(f"backend {name!r} declares {attribute}={tuple(value)!r}: "
                         f"{unknown} unknown; each must be one of {list(allowed)}")
    return frozenset(value)


def scope_of(backend: Any) -> Scope:
    """The scope ``backend`` is held to: its declared ``cells`` and ``pieces`` (either
    defaults to the Elman layer's: ``("elman",)`` and none), or every cell and piece for a
    built-in backend that declares nothing.

    Raises:
        TypeError: a declaration that is not a tuple of names.
        ValueError: a name outside :data:`SCOPE_CELLS` / :data:`SCOPE_PIECES`, or
            ``cells=()``.
    """
    declares = any(getattr(backend, a, None) is not None for a in ("cells", "pieces"))
    if not declares:
        built_in = type(backend).__module__.startswith("rnn_ref.backends.")
        return BUILT_IN_SCOPE if built_in else DEFAULT_SCOPE
    cells = _declared(backend, "cells", SCOPE_CELLS, DEFAULT_SCOPE.cells)
    if not cells:
        raise ValueError(f"backend {getattr(backend, 'name', type(backend).__name__)!r} "
                         f"declares cells=(): it must implement one of {list(SCOPE_CELLS)}")
    return Scope(cells, _declared(backend, "pieces", SCOPE_PIECES, frozenset()), "declared")


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
        TypeError: the object found is not a backend, or declares its scope (``cells``,
            ``pieces``) as something other than a tuple of names.
        ValueError: (also) a declared scope name that is not known (:func:`scope_of`).
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
    scope_of(backend)  # a declaration it cannot be held to raises now, naming it
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
