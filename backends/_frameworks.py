"""Every framework rnn-ref speaks, assembled from the framework packages' records.

Each package of ``rnn_ref.backends`` (``torch/``, ``keras/``, ``onnx/`` ...) describes its
framework once, in its ``record.py``, without importing it: a :class:`Framework` record saying
what the framework is called, which module of the package implements it, which importable
modules and pip distributions it needs, its public converters (``rnn_ref.from_torch`` ...), the
file formats it reads and writes (with extensions and the hints a file cannot tell), its
backends, and a pure ``unsupported(config)`` saying what of the network it cannot hold (the
record types: :mod:`rnn_ref.backends.records`). Everything else is derived from
:data:`FRAMEWORKS`: the backend registry (:mod:`rnn_ref._registry`), the lazy converters and
the oracle dispatch (:mod:`rnn_ref._lazy`), the format tables and dispatch of the conversion
workflow (``convert``), ``rnn-ref info``, the version lists of reports and benchmarks.

Adding a framework is one package in ``backends/`` (its ``record.py``, the functions of
:data:`MODULE_API` and :data:`CONVERTER_API` in ``convert.py``, of :data:`FILE_API` in
``files.py``, a backend class in ``backend.py``) plus one entry here.
"""

from __future__ import annotations

import os

from rnn_ref.backends.flax import record as flax
from rnn_ref.backends.jax import record as jax
from rnn_ref.backends.keras import record as keras
from rnn_ref.backends.keras.record import sniff_h5
from rnn_ref.backends.keras2 import record as keras2
from rnn_ref.backends.litert import record as litert
from rnn_ref.backends.mlx import record as mlx
from rnn_ref.backends.numpy import record as numpy
from rnn_ref.backends.onnx import record as onnx
from rnn_ref.backends.openvino import record as openvino
from rnn_ref.backends.records import (
    CONVERTER_API,
    DEVICES,
    FILE_API,
    GRAPH_API,
    MODULE_API,
    BackendSpec,
    FileFormat,
    Framework,
    Unrecorded,
    missing,
    records_all,
)
from rnn_ref.backends.torch import record as torch
from rnn_ref.backends.tract import record as tract

__all__ = ["CONVERTER_API", "DEVICES", "FILE_API", "FRAMEWORKS", "GRAPH_API", "MODULE_API",
           "BackendSpec", "FileFormat", "Framework", "Unrecorded", "backends", "by_name",
           "distributions", "file_format", "formats", "missing", "records_all", "sniff",
           "versions"]

FRAMEWORKS: tuple[Framework, ...] = tuple(r.FRAMEWORK for r in (
    numpy, torch, jax, flax, keras, keras2, onnx, mlx, litert, openvino, tract))



# --------------------------------------------------------------------------------------------
# derived views
# --------------------------------------------------------------------------------------------
def by_name(name: str) -> Framework:
    for fw in FRAMEWORKS:
        if fw.name == name:
            return fw
    raise ValueError(f"unknown framework {name!r}; known: "
                     f"{', '.join(f.name for f in FRAMEWORKS)}")


def formats() -> dict[str, tuple[Framework, FileFormat]]:
    """Every file format by name, with the framework that reads and writes it."""
    return {f.name: (fw, f) for fw in FRAMEWORKS for f in fw.formats}


def file_format(name: str) -> tuple[Framework, FileFormat]:
    table = formats()
    if name not in table:
        raise ValueError(f"format {name!r} is not one of {', '.join(table)}")
    return table[name]


def backends() -> dict[str, BackendSpec]:
    """Every built-in backend by name."""
    return {b.name: b for fw in FRAMEWORKS for b in fw.backends}


def distributions() -> tuple[str, ...]:
    """The pip distributions behind every framework (for ``info`` and reports), in order."""
    seen: dict[str, None] = {}
    for fw in FRAMEWORKS:
        for d in (*fw.distributions, *(r for f in fw.formats for r in f.requires)):
            seen.setdefault(d, None)
    return tuple(seen)


def versions() -> dict[str, str | None]:
    """The installed version of rnn-ref and of every distribution behind a framework (``None``
    where not installed), read from package metadata: nothing is imported."""
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {d: version(d) for d in ("rnn-ref", *distributions())}


def sniff(path: str | os.PathLike[str], fmt: str) -> str:
    """The format of an existing file whose extension says ``fmt`` but which another format
    shares (``.h5``: Keras 3's legacy HDF5 or Keras 2's, told apart by :func:`sniff_h5`);
    ``fmt`` itself otherwise, and for a file not written yet."""
    if fmt in ("keras-h5", "keras2-h5") and os.path.isfile(path):
        return sniff_h5(path) or fmt
    return fmt
