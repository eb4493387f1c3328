"""What reading an untrusted file may cost, and what it may reach: one place for both.

A model file is data from someone else. A few kilobytes can declare ten million layers, a
20,000-unit layer, a tensor of a billion zero-stride elements or an HDF5 dataset that was never
written, and an ONNX file can name other files whose bytes it reads as weights. Every reader
checks what a file *declares* (layer counts, shapes, decompressed sizes, graph nodes) against
:class:`Limits` **before** it allocates or builds anything, and raises :class:`LimitError` with
one line that gives the size, the limit and how to raise it.

The limits in force come from a context variable: :func:`using` sets them (and whether ONNX
external data may be read) for a block; :func:`rnn_ref.convert.read` and
:func:`rnn_ref.convert.convert` take ``limits=`` and ``allow_external_data=`` and set them for
their call; the command line sets them from ``--max-params``, ``--max-layers``,
``--max-bytes``, ``--max-nodes`` and ``--allow-external-data``.

ONNX external data (``allow_external_data``): an initializer may keep its bytes in another
file. They are read only when asked, and only from a file the model plainly owns
(:func:`owned_data_file`): a plain file name (no folder, no ``..``, not absolute, not a URL) of
a regular file (not a link, FIFO or device) in the model's own folder, named after the model:
``<stem>[.onnx][<sep><tag>].<ext>`` with ``<stem>`` the model's file name without ``.onnx``,
``<sep>`` one of ``.``, ``_``, ``-``, ``<tag>`` letters, digits, ``.``, ``_``, ``-``, and
``<ext>`` one of ``data``, ``bin``, ``onnx_data`` (``model.onnx.data``, ``model.data``,
``model_0.bin``, ``model.onnx_data`` for ``model.onnx``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace

from rnn_ref._text import bounded
from rnn_ref.errors import LimitError

__all__ = ["DATA_EXTENSIONS", "DEFAULT", "LIMIT_FLAGS", "DeclaredSizes", "LimitError", "Limits",
           "bounded", "check_bytes", "check_count", "check_elements", "current",
           "external_data_allowed", "owned_data_file", "using"]


@dataclass(frozen=True)
class Limits:
    """The most a file read may declare (defaults in brackets).

    Attributes:
        max_parameters: elements of the network's parameters, and of any one array a file
            declares [2**28, 1 GiB of float32].
        max_layers: RNN layers, and layers or nodes a file lists [1024].
        max_bytes: bytes a file may expand to: decompressed archive members, declared array
            sizes, the file itself, each tensor a graph computes under ``--verify`` [2 GiB].
        max_nodes: nodes of an ONNX graph that ``--verify`` runs [16384].
    """

    max_parameters: int = 2**28
    max_layers: int = 1024
    max_bytes: int = 2 * 2**30
    max_nodes: int = 16384

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{f.name} must be a positive int, got {value!r}")

    def with_(self, **changes: int | None) -> Limits:
        """A copy with the fields given (not ``None``) changed."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


#: field of Limits -> the command-line flag that raises it
LIMIT_FLAGS = {"max_parameters": "--max-params", "max_layers": "--max-layers",
               "max_bytes": "--max-bytes", "max_nodes": "--max-nodes"}
#: what an owned external data file may end with
DATA_EXTENSIONS = ("data", "bin", "onnx_data")

#: the limits when none are set
DEFAULT = Limits()
_LIMITS: ContextVar[Limits] = ContextVar("rnn_ref_limits")
_EXTERNAL: ContextVar[bool] = ContextVar("rnn_ref_external_data", default=False)


def current() -> Limits:
    """The limits in force."""
    return _LIMITS.get(DEFAULT)


def external_data_allowed() -> bool:
    """Whether ONNX external data may be read (from owned files only)."""
    return _EXTERNAL.get()


@contextlib.contextmanager
def using(limits: Limits | None = None, *, allow_external_data: bool | None = None
          ) -> Iterator[Limits]:
    """Set the limits (``None``: keep those in force) and the external-data permission
    (``None``: keep it) for the block."""
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"limits must be rnn_ref.limits.Limits, got {type(limits).__name__}")
    tokens = [_LIMITS.set(limits if limits is not None else current())]
    ext = None if allow_external_data is None else _EXTERNAL.set(bool(allow_external_data))
    try:
        yield current()
    finally:
        if ext is not None:
            _EXTERNAL.reset(ext)
        _LIMITS.reset(tokens[0])


def _refuse(what: str, size: int, unit: str, name: str, source: str) -> LimitError:
    limit = getattr(current(), name)
    prefix = f"{bounded(source, 200)}: " if source else ""
    return LimitError(f"{prefix}{bounded(what, 200)} is {size:,}, over the limit of "
                      f"{limit:,} {unit} (raise it with {LIMIT_FLAGS[name]} or "
                      f"Limits({name}=...))", name, size)


def check_count(count: int, what: str, source: str = "", name: str = "max_layers") -> None:
    """Refuse ``count`` (layers, nodes, ...) over the limit ``name``."""
    if count > getattr(current(), name):
        raise _refuse(what, count, "layers" if name == "max_layers" else "nodes", name, source)


def check_elements(count: int, what: str, source: str = "") -> None:
    """Refuse an element count (an array's, or a network's parameters) over max_parameters."""
    if count > current().max_parameters:
        raise _refuse(what, count, "elements", "max_parameters", source)


def check_bytes(count: int, what: str, source: str = "") -> None:
    """Refuse a byte count (decompressed, declared or computed) over max_bytes."""
    if count > current().max_bytes:
        raise _refuse(what, count, "bytes", "max_bytes", source)


class DeclaredSizes:
    """The arrays a file declares, checked as they are met, before any is read: each within
    ``max_parameters`` elements, all together within ``max_bytes`` (``total``: how the sum
    is named in the refusal, e.g. "the declared size of the tensors")."""

    def __init__(self, total: str, source: str = "") -> None:
        self.what, self.source, self.bytes = total, source, 0

    def add(self, what: str, count: int, itemsize: int) -> None:
        """One array ``what`` of ``count`` elements of ``itemsize`` bytes.

        Raises:
            LimitError: it, or the arrays so far, over the limits.
        """
        check_elements(count, f"the declared size of {what}", self.source)
        self.bytes += count * itemsize
        check_bytes(self.bytes, self.what, self.source)


_SEPARATORS = "._-"


def owned_data_file(model_name: str, location: str) -> str | None:
    """``None`` when the model file ``model_name`` (a file name, e.g. ``model.onnx``) plainly
    owns the external data file ``location`` by name (the rule in the module docstring), else
    why not. The file itself (regular, not a link) is checked where it is opened."""
    if not location or "/" in location or "\\" in location or "\x00" in location:
        return "it is a path, not a plain file name in the model's folder"
    if location in (".", "..") or ":" in location:
        return "it is not a plain file name (no '..', drive or URL)"
    stem = model_name[:-5] if model_name.lower().endswith(".onnx") else model_name
    exts = "|".join(re.escape(e) for e in DATA_EXTENSIONS)
    pattern = (rf"{re.escape(stem)}(\.onnx)?([{re.escape(_SEPARATORS)}][A-Za-z0-9._-]*)?"
               rf"\.({exts})")
    if not stem or re.fullmatch(pattern, location) is None:
        return (f"it is not named after the model: {stem}[.onnx][_tag]."
                f"{{{','.join(DATA_EXTENSIONS)}}}")
    return None


def _int_or_none(value: object) -> int | None:
    """``value`` as an int when it is an integer (a NumPy one too), else ``None`` (the
    config's own checks refuse it later)."""
    if isinstance(value, bool):
        return None
    try:
        import operator

        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def check_network(input_size: object, hidden_size: object, num_layers: object = None, *,
                  directions: int = 1, output_size: object = None, source: str = "",
                  gates: int = 1) -> None:
    """Refuse a network a file declares (before building it) with more layers than
    max_layers or more parameters than max_parameters; values that are not integers are left
    to :class:`~rnn_ref.RNNConfig` to refuse. The count takes concatenated directions (the
    widest input), two biases per cell and ``gates`` blocks per cell (4 when any layer is an
    LSTM, 3 for a GRU), so it bounds every convention."""
    sizes: list[int | None]
    if isinstance(hidden_size, (list, tuple)):
        check_count(len(hidden_size), "the number of layers", source)
        sizes = [_int_or_none(m) for m in hidden_size]
    else:
        layers = _int_or_none(num_layers) if num_layers is not None else 1
        if layers is None or layers < 1:
            return
        check_count(layers, "the number of layers", source)
        sizes = [_int_or_none(hidden_size)] * layers
    d, total = _int_or_none(input_size), 0
    for m in sizes:
        if d is None or m is None or d < 1 or m < 1:
            return
        total += directions * gates * (d * m + m * m + 2 * m)
        d = directions * m
    k = _int_or_none(output_size)
    if k is not None and k > 0 and d is not None:
        total += d * k + k
    check_elements(total, "the network's parameter count", source)
