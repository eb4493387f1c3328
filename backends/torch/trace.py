"""Tracing an ``nn.Module``'s ``forward`` into a ``torch.fx`` graph, for
:mod:`rnn_ref.backends.torch.graph` to read.

:func:`trace` is ``torch.fx.symbolic_trace`` with four differences:

* ``pack_padded_sequence`` and ``pad_packed_sequence`` (``torch.nn.utils.rnn``) are leaf
  functions: they stay one ``call_function`` node each, whether the forward calls them by a
  global name or as ``nn.utils.rnn.pack_padded_sequence`` (the module attribute is replaced
  while tracing, then restored).
* A tensor made while tracing (``torch.zeros(L, N, M)`` from sizes already known) is kept in
  :attr:`Traced.constants`, never set on the module as ``_tensor_constant0``.
* Every node records the line of ``forward`` that made it (``node.stack_trace``), so a refusal
  can name it.
* With ``shape``, the sizes of the first input are known while tracing: ``x.size(1)``,
  ``x.shape``, ``x.dim()`` and ``len(x)`` are ints, so a forward that loops over its input's
  length (an ``nn.RNNCell`` stepped in a Python loop) traces, unrolled for that length. The
  graph then holds for that shape only; the reader traces two shapes and compares.

A forward torch.fx cannot follow is an :class:`TraceError` naming the line of ``forward``
where tracing stopped, torch's message and what the module holds (its child modules by name
and type).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.utils.rnn as rnn_utils
from torch import fx, nn

from rnn_ref.errors import UnsupportedError

__all__ = ["LEAF_FUNCTIONS", "TraceError", "Traced", "holds", "node_line", "trace",
           "unwrap_compiled"]

#: the functions kept as one node each (see the module docstring)
LEAF_FUNCTIONS: tuple[Callable[..., Any], ...] = (rnn_utils.pack_padded_sequence,
                                                  rnn_utils.pad_packed_sequence)


class TraceError(UnsupportedError):
    """torch.fx could not follow a module's ``forward`` (the message says where and why)."""


@dataclass
class Traced:
    """A traced forward: its graph, and the constant tensors its ``get_attr`` nodes name
    (``_rnn_ref_constant<i>``) that are not the module's own."""

    graph: fx.Graph
    constants: dict[str, torch.Tensor] = field(default_factory=dict)


def unwrap_compiled(module: Any) -> Any:
    """The model of a ``torch.compile`` d module (its ``_orig_mod``), else ``module``: read,
    never run compiled."""
    while type(module).__name__ == "OptimizedModule" and isinstance(
            getattr(module, "_orig_mod", None), nn.Module):
        module = module._orig_mod
    return module


def holds(module: nn.Module) -> str:
    """What a module holds, for a refusal: ``rnn (torch.nn.RNN), fc (torch.nn.Linear)``."""
    parts = []
    for name, child in module.named_children():
        kind = type(child)
        where = "torch.nn" if kind.__module__.startswith("torch.nn") else kind.__module__
        parts.append(f"{name} ({where}.{kind.__name__})")
    return ", ".join(parts) if parts else "no child modules"


def node_line(node: fx.Node) -> str | None:
    """``file.py:12 `code``` of the forward line that made ``node``, when recorded (the
    innermost frame outside torch)."""
    lines = (node.stack_trace or "").splitlines()
    torch_dir = os.path.dirname(torch.__file__ or "")
    found = None
    for i, line in enumerate(lines):
        match = _FRAME.match(line)
        if match and not match.group(1).startswith(torch_dir):
            code = lines[i + 1].strip() if i + 1 < len(lines) else ""
            found = f"{os.path.basename(match.group(1))}:{match.group(2)} `{code}`"
    return found


_FRAME = re.compile(r'^\s*File "(.*)", line (\d+), in ')


class _Sized(fx.Proxy):
    """The first input's proxy when its shape is known: its sizes are ints."""

    def __init__(self, node: fx.Node, tracer: fx.Tracer, shape: torch.Size) -> None:
        super().__init__(node, tracer)
        self.rnn_ref_shape = shape

    def size(self, dim: int | None = None) -> Any:
        return self.rnn_ref_shape if dim is None else self.rnn_ref_shape[dim]

    @property
    def shape(self) -> torch.Size:
        return self.rnn_ref_shape

    @property
    def ndim(self) -> int:
        return len(self.rnn_ref_shape)

    def dim(self) -> int:
        return len(self.rnn_ref_shape)

    def __len__(self) -> int:
        return int(self.rnn_ref_shape[0])


class _Tracer(fx.Tracer):
    """See the module docstring."""

    def __init__(self, shape: torch.Size | None) -> None:
        super().__init__(autowrap_functions=LEAF_FUNCTIONS)
        self.record_stack_traces = True
        self.shape = shape
        self.sized = False
        self.constants: dict[str, torch.Tensor] = {}

    def proxy(self, node: fx.Node) -> fx.Proxy:
        if node.op == "placeholder" and self.shape is not None and not self.sized:
            self.sized = True
            return _Sized(node, self, self.shape)
        return super().proxy(node)

    def create_arg(self, a: Any) -> Any:
        if isinstance(a, torch.Tensor) and not isinstance(a, nn.Parameter) and not any(
                a is b for b in self.root.buffers()):
            name = next((k for k, v in self.constants.items() if v is a), None)
            if name is None:
                name = f"_rnn_ref_constant{len(self.constants)}"
                self.constants[name] = a
            return self.create_node("get_attr", name, (), {})
        return super().create_arg(a)


def _leaf(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as one node when an argument is a proxy, else ``fn`` itself."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        proxies = [a for a in (*args, *kwargs.values()) if isinstance(a, fx.Proxy)]
        if proxies:
            return proxies[0].tracer.create_proxy("call_function", fn, args, kwargs)
        return fn(*args, **kwargs)

    return wrapped


@contextlib.contextmanager
def _leaves_patched() -> Iterator[None]:
    """``torch.nn.utils.rnn``'s leaf functions replaced by :func:`_leaf` while tracing."""
    saved = {fn.__name__: fn for fn in LEAF_FUNCTIONS}
    try:
        for name, fn in saved.items():
            setattr(rnn_utils, name, _leaf(fn))
        yield
    finally:
        for name, fn in saved.items():
            setattr(rnn_utils, name, fn)


def _user_line(exc: BaseException) -> str:
    """The innermost line of the traceback outside torch and rnn-ref: the forward's line."""
    skip = tuple(os.path.dirname(m.__file__ or "") for m in (torch, _rnn_ref_package()))
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(skip)]
    if not frames:
        return "an unknown line"
    f = frames[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno} `{(f.line or '').strip()}`"


def _rnn_ref_package() -> Any:
    import rnn_ref

    return rnn_ref


def trace(module: nn.Module, shape: tuple[int, ...] | None = None) -> Traced:
    """``module``'s forward as a graph (see the module docstring); ``shape``: the first
    input's, known while tracing. ``TraceError`` where torch.fx cannot follow it."""
    tracer = _Tracer(None if shape is None else torch.Size(shape))
    try:
        with _leaves_patched():
            graph = tracer.trace(module)
    except Exception as exc:  # fx cannot follow data-dependent control flow, and more
        text = (str(exc).strip().splitlines() or [""])[0][:200]
        hint = "" if shape is not None else (
            "; a forward that loops over its input's length reads with an example input "
            "(from_torch(module, example=x), or the oracle's first call)")
        raise TraceError("rnn-ref", f"the forward of {type(module).__name__} at "
                         f"{_user_line(exc)}",
                         f"torch.fx could not follow it ({type(exc).__name__}: {text}); the "
                         f"module holds {holds(module)}{hint}") from None
    return Traced(graph, tracer.constants)
