"""ONNX files from someone else: what a file may make rnn-ref read, allocate and run.

* **Sizes first.** Every tensor a model holds (initializers, ``Constant`` values, subgraphs,
  functions) is checked by its *declared* dims against :mod:`rnn_ref.limits` before any is
  turned into an array; the file's own size before it is parsed.
* **External data** (an initializer whose bytes live in another file) is never resolved by
  onnx or onnxruntime: the model is parsed with ``load_external_data=False`` and
  :func:`embed_external_data` reads each file itself, only when asked
  (``allow_external_data``) and only from a file the model plainly owns
  (:func:`rnn_ref.limits.owned_data_file`): a regular file in the model's folder, opened
  relative to that folder with ``O_NOFOLLOW`` (a link is refused, so is a FIFO or device),
  exactly the declared bytes at the declared offset. The bytes are put into the model, so
  what onnxruntime later runs holds no path. A model given as bytes or a ``ModelProto`` has
  no folder: external data there is refused.
* **Running** (``--verify``): :func:`check_runnable` refuses a graph with more nodes than
  ``max_nodes``, any external reference left, and any tensor that ONNX shape inference (with
  the real input shapes) says is larger than ``max_bytes`` or cannot size at all, before an
  onnxruntime session is made.

:func:`external_files` lists what a model would read, reading none of it (``inspect``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper

from rnn_ref import limits
from rnn_ref.errors import FileFormatError

__all__ = ["all_tensors", "check_runnable", "check_sizes", "embed_external_data",
           "external_files", "load_bytes", "load_path"]


def _q(text: str) -> str:
    return repr(limits.bounded(text, 120))


def all_tensors(model: onnx.ModelProto) -> Iterator[TensorProto]:
    """Every tensor the model holds: initializers, sparse ones, node attributes (``Constant``
    values), in the graph, its subgraphs and the model's functions."""
    def graph(g: onnx.GraphProto) -> Iterator[TensorProto]:
        yield from g.initializer
        for sparse in g.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        yield from nodes(g.node)

    def nodes(ns: Any) -> Iterator[TensorProto]:
        for node in ns:
            for a in node.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                for sparse in [a.sparse_tensor] if a.HasField("sparse_tensor") else []:
                    yield from (sparse.values, sparse.indices)
                for sparse in a.sparse_tensors:
                    yield from (sparse.values, sparse.indices)
                if a.HasField("g"):
                    yield from graph(a.g)
                for sub in a.graphs:
                    yield from graph(sub)

    yield from graph(model.graph)
    for function in model.functions:
        yield from nodes(function.node)


def _elements(dims: Any, what: str, source: str) -> int:
    count = 1
    for d in dims:
        if d < 0:
            raise FileFormatError(f"{source}: {what} has a negative dimension {d}")
        count *= int(d)
    return count


def _itemsize(t: TensorProto) -> int:
    try:
        return int(np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 1  # an undefined type: the reader refuses it


def check_sizes(model: onnx.ModelProto, source: str) -> None:
    """Refuse a tensor whose declared dims exceed ``max_parameters`` elements, or tensors
    whose declared sizes add up to more than ``max_bytes``, before any becomes an array."""
    sizes = limits.DeclaredSizes("the declared size of the model's tensors", source)
    for t in all_tensors(model):
        what = f"tensor {_q(t.name)}"
        sizes.add(what, _elements(t.dims, what, source), _itemsize(t))


def load_bytes(data: bytes, source: str = "from_onnx") -> onnx.ModelProto:
    """The model serialised in ``data``, sizes checked; external data is refused (bytes have
    no folder to read it from)."""
    limits.check_bytes(len(data), "the model's size", source)
    try:
        model = onnx.load_from_string(data)
    except DecodeError as exc:
        raise FileFormatError(f"{source}: the {len(data):,} bytes given are not an ONNX model "
                              f"({limits.bounded(str(exc), 200)})") from None
    check_sizes(model, source)
    embed_external_data(model, None, source)
    return model


def load_path(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """The model of the file ``path``: sizes checked, then its external data read by
    :func:`embed_external_data` (only when allowed, only from owned files)."""
    source = Path(path)
    limits.check_bytes(source.stat().st_size, "the file's size", str(source))
    try:
        model = onnx.load(os.fspath(source), load_external_data=False)
    except DecodeError as exc:
        raise FileFormatError(f"{source}: not an ONNX model ({limits.bounded(str(exc), 200)})"
                              ) from None
    check_sizes(model, str(source))
    embed_external_data(model, source, str(source))
    return model


def _entries(model: onnx.ModelProto) -> list[tuple[TensorProto, dict[str, str]]]:
    return [(t, {e.key: e.value for e in t.external_data}) for t in all_tensors(model)
            if t.data_location == TensorProto.EXTERNAL]


def _span(t: TensorProto, info: Mapping[str, str], source: str) -> tuple[int, int]:
    """``(offset, length)`` of a tensor's external bytes: the length must be what its dims
    and type declare."""
    what = f"tensor {_q(t.name)}"
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise FileFormatError(f"{source}: {what} has a non-integer external data offset or "
                              f"length") from None
    want = _elements(t.dims, what, source) * _itemsize(t)
    if t.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
        raise FileFormatError(f"{source}: {what} keeps a non-numeric type in external data")
    if offset < 0 or (length is not None and length != want):
        raise FileFormatError(f"{source}: {what} declares {length} external bytes at offset "
                              f"{offset}; its dims and type take {want:,}")
    return offset, want


def _refusal(model_path: Path | None, location: str) -> str | None:
    """Why the external file ``location`` of a model at ``model_path`` may not be read (the
    name rule; the file, without reading it: it exists, is regular, not a link), or None."""
    if model_path is None:
        return "a model given in memory has no folder to read external data from"
    why = limits.owned_data_file(model_path.name, location)
    if why is not None:
        return why
    try:
        st = os.lstat(model_path.parent / location)
    except OSError as exc:
        return f"it cannot be found ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link (links are never followed)"
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    return None


def external_files(path: Path) -> list[tuple[str, str, int, str | None]]:
    """``(tensor, file, bytes, None or why it would be refused)`` for every tensor of the
    model at ``path`` kept in external data; nothing is read but the model itself."""
    model = onnx.load(os.fspath(path), load_external_data=False)
    out = []
    for t, info in _entries(model):
        location = info.get("location", "")
        want = _elements([max(d, 0) for d in t.dims], "", str(path)) * _itemsize(t)
        out.append((t.name, location, want, _refusal(path, location)))
    return out


def embed_external_data(model: onnx.ModelProto, path: Path | None, source: str) -> None:
    """Read every tensor's external data into the model (so nothing later resolves a path),
    under the rule of the module docstring; refusals name the tensor, the file and the rule.
    """
    entries = _entries(model)
    if not entries:
        return
    first = entries[0][1].get("location", "")
    if not limits.external_data_allowed():
        raise FileFormatError(
            f"{source}: tensor {_q(entries[0][0].name)} keeps its data in the file {_q(first)} "
            f"({len(entries)} tensor(s) in external data); external data is read only when "
            f"asked (--allow-external-data, allow_external_data=True) and only from files the "
            f"model owns")
    folder = os.open(path.parent if path is not None else ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        total = 0
        for t, info in entries:
            location = info.get("location", "")
            why = _refusal(path, location)
            if why is not None:
                raise FileFormatError(
                    f"{source}: tensor {_q(t.name)} keeps its data in {_q(location)}, which "
                    f"is not read: {why} (external data is read only from a regular file in "
                    f"the model's folder named after it)")
            offset, length = _span(t, info, source)
            total += length
            limits.check_bytes(total, "the external data", source)
            t.raw_data = _read_owned(folder, location, offset, length, source)
            del t.external_data[:]
            t.data_location = TensorProto.DEFAULT
    finally:
        os.close(folder)


def _read_owned(folder: int, location: str, offset: int, length: int, source: str) -> bytes:
    """``length`` bytes at ``offset`` of the regular file ``location`` in the folder open as
    ``folder``, never through a link (``O_NOFOLLOW``; non-blocking, so a FIFO cannot hang)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(location, flags, dir_fd=folder)
    except OSError as exc:
        raise FileFormatError(f"{source}: external data file {_q(location)} cannot be opened "
                              f"without following links ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileFormatError(f"{source}: external data file {_q(location)} is not a "
                                  f"regular file")
        if offset + length > st.st_size:
            raise FileFormatError(f"{source}: external data file {_q(location)} holds "
                                  f"{st.st_size:,} bytes; a tensor needs {length:,} at offset "
                                  f"{offset:,}")
        data = os.pread(fd, length, offset)
        while len(data) < length:
            more = os.pread(fd, length - len(data), offset + len(data))
            if not more:
                raise FileFormatError(f"{source}: external data file {_q(location)} ended "
                                      f"early")
            data += more
        return data
    finally:
        os.close(fd)


def _node_count(g: onnx.GraphProto) -> int:
    count = len(g.node)
    for node in g.node:
        for a in node.attribute:
            count += sum(_node_count(sub) for sub in ([a.g] if a.HasField("g") else [])
                         + list(a.graphs))
    return count


def check_runnable(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray[Any, Any]],
                   source: str = "the ONNX graph") -> None:
    """Refuse, before onnxruntime sees it, a graph with more than ``max_nodes`` nodes, any
    tensor left in external data, or a tensor that shape inference (given the feeds' shapes)
    finds larger than ``max_bytes`` or cannot size."""
    limits.check_count(_node_count(model.graph) + sum(len(f.node) for f in model.functions),
                       "the number of graph nodes", source, "max_nodes")
    if _entries(model):
        raise FileFormatError(f"{source}: a tensor still refers to external data; it is "
                              f"never resolved by the runtime")
    check_sizes(model, source)
    typed = onnx.ModelProto()
    typed.CopyFrom(model)
    for inp in typed.graph.input:
        if inp.name in feeds:
            shape = inp.type.tensor_type.shape
            shape.ClearField("dim")
            for n in np.shape(feeds[inp.name]):
                shape.dim.add().dim_value = int(n)
    try:
        inferred = onnx.shape_inference.infer_shapes(typed, strict_mode=True, data_prop=True)
    except Exception as exc:  # noqa: BLE001  (onnx raises several types for a bad graph)
        raise FileFormatError(f"{source}: shape inference fails, so the sizes of the tensors "
                              f"it computes cannot be bounded before running it "
                              f"({type(exc).__name__}: {limits.bounded(str(exc), 200)})"
                              ) from None
    _check_inferred(inferred, source)


def _check_inferred(model: onnx.ModelProto, source: str) -> None:
    """Every node output of the main graph has a fully known shape within ``max_bytes``."""
    known = {vi.name: vi for vi in [*model.graph.value_info, *model.graph.output]}
    for node in model.graph.node:
        for name in node.output:
            if not name:
                continue
            vi = known.get(name)
            tt = vi.type.tensor_type if vi is not None else None
            if tt is None or not tt.HasField("shape") or any(
                    not d.HasField("dim_value") for d in tt.shape.dim):
                raise FileFormatError(
                    f"{source}: the size of {_q(name)} (output of a {node.op_type} node) is "
                    f"not known before running the graph, so it cannot be bounded")
            count = 1
            for d in tt.shape.dim:
                count *= d.dim_value
            size = count * np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).itemsize \
                if tt.elem_type else count
            limits.check_bytes(size, f"tensor {_q(name)} ({node.op_type} output)", source)
