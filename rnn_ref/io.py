"""The canonical file: :func:`save` and :func:`load`; its members in memory: :func:`to_members`
and :func:`from_members`.

Format (version 3), a NumPy ``.npz`` archive (a zip of ``.npy`` files) that any language with a
zip reader and an ``.npy`` reader can write:

==================================  =====================================================
member                              content
==================================  =====================================================
``__format__``                      0-d unicode array ``"rnn-ref/3"``
``__config__``                      0-d unicode array: the config as JSON
                                    (:meth:`RNNConfig.to_dict`)
``layers.{l}.{r}.w_x``              ``(D_l, M)`` input kernel of layer l, direction r
``layers.{l}.{r}.w_h``              ``(M, M)`` recurrent kernel
``layers.{l}.{r}.b_x``              ``(M,)`` input bias
``layers.{l}.{r}.b_h``              ``(M,)`` recurrent bias
``layers.{l}.{r}.w_x.{k}``, ...      a GRU's or LSTM's blocks, gate k (``z``, ``r``, ``n``;
                                    ``i``, ``f``, ``g``, ``o``): ``w_x``, ``w_h``, ``b_x``,
                                    ``b_h`` as above (``w_h`` ``(P, M)`` when projected)
``layers.{l}.{r}.p.{k}``            ``(M,)`` an LSTM's peephole of gate k
``layers.{l}.{r}.w_proj``           ``(M, P)`` an LSTM's projection
``embedding``                       ``(V, D)`` table, only with an embedding
``head.{j}.w``, ``head.{j}.b``      ``(F_j, K_j)`` and ``(K_j,)``, head layer j
==================================  =====================================================

Version 1 files (a config with ``output_size``/``output_activation`` and the arrays
``readout.w``/``readout.b``, the network before the embedding and the head) and version 2
files (the Elman cell only, a config without the gated cells' fields) are read as the same
network.

Arrays keep their dtype, so a round trip is bit-exact. Nothing is pickled: files are read with
``allow_pickle=False``, and a member holding Python objects is refused. Writing follows
:mod:`rnn_ref._dest`: the file appears complete or not at all, a new name is created
exclusively, and an existing file is kept unless ``overwrite=True``.

:func:`to_members` and :func:`from_members` are the same format as a ``{name: array}`` dict, for
carrying parameters inside another ``.npz`` message (the Keras worker protocol does); they check
what :func:`load` checks.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref import limits
from rnn_ref._dest import write_file
from rnn_ref.config import RNNConfig
from rnn_ref.errors import FileFormatError, LimitError
from rnn_ref.params import RNNParams

__all__ = ["FORMAT", "FileFormatError", "from_members", "load", "save", "to_members"]

FORMAT = "rnn-ref/3"
_READS = ("rnn-ref/1", "rnn-ref/2", FORMAT)
_MARKERS = ("__format__", "__config__")


def save(params: RNNParams, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``params`` to ``path`` in the canonical format; returns the path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (anything there, a
            dangling symbolic link too).
        ValueError: ``overwrite`` and ``path`` is not a regular file (a FIFO, a device).
        rnn_ref._dest.WriteError: an ``OSError``: the disk is full, or the write failed.
        TypeError: ``params`` is not an :class:`~rnn_ref.RNNParams`.
    """
    members: dict[str, Any] = to_members(params)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a name
            np.savez(fh, **members)

    try:
        return write_file(path, write, force=overwrite,
                          expected_size=sum(a.nbytes for a in members.values()))
    except FileExistsError:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") from None


def to_members(params: RNNParams) -> dict[str, np.ndarray[Any, Any]]:
    """The members of the canonical file for ``params`` (the table above), name to array.

    Raises:
        TypeError: ``params`` is not an :class:`~rnn_ref.RNNParams`.
    """
    if not isinstance(params, RNNParams):
        raise TypeError(f"params must be rnn_ref.RNNParams, got {type(params).__name__}")
    members: dict[str, np.ndarray[Any, Any]] = {
        "__format__": np.array(FORMAT),
        "__config__": np.array(params.config.to_json()),
    }
    members.update(params.named_arrays())
    return members


def from_members(members: Mapping[str, Any], *, source: str = "members") -> RNNParams:
    """Inverse of :func:`to_members`: the parameters that canonical members describe.

    ``members`` maps member names to arrays (a dict, or an open ``NpzFile``); ``source`` starts
    every error message.

    Raises:
        FileFormatError: a wrong or missing format marker, a bad config, missing or extra
            arrays, or arrays of the wrong shape or dtype (the message says which).
        LimitError: the config declares more layers or parameters than the limits allow.
    """
    names = set(members)
    for marker in _MARKERS:
        if marker not in names:
            raise FileFormatError(f"{source}: not an rnn-ref file (no {marker} member)")
    try:
        fmt = str(members["__format__"])
        if fmt not in _READS:
            raise FileFormatError(f"{source}: format {fmt!r}, this version reads "
                                  f"{' and '.join(map(repr, _READS))}")
        config_dict = json.loads(str(members["__config__"]))
        _check_declared(config_dict, source)
        config = RNNConfig.from_dict(config_dict)
        arrays = {k: members[k] for k in names - set(_MARKERS)}
        return RNNParams.from_arrays(config, arrays)
    except (FileFormatError, LimitError):
        raise
    except RecursionError:
        raise FileFormatError(f"{source}: the config JSON is nested too deeply") from None
    except (TypeError, ValueError) as exc:  # np.load's refusal of pickled members lands here too
        raise FileFormatError(f"{source}: {limits.bounded(str(exc))}") from None


def _check_declared(config: Any, source: str) -> None:
    """Refuse a config (a dict from the file, not yet an RNNConfig) that declares more
    layers or parameters than the limits allow, before anything is built for it."""
    if isinstance(config, Mapping):
        direction = config.get("direction")
        bidirectional = direction == "bidirectional" or (
            isinstance(direction, list) and "bidirectional" in direction)
        head = config.get("head")
        k = config.get("output_size")
        if isinstance(head, list) and len(head) == 1 and isinstance(head[0], Mapping):
            k = head[0].get("units")
        cell = config.get("cell")
        cells = cell if isinstance(cell, list) else [cell]
        gates = 4 if "lstm" in cells else 3 if "gru" in cells else 1
        limits.check_network(config.get("input_size"), config.get("hidden_size"),
                             config.get("num_layers"), directions=2 if bidirectional else 1,
                             output_size=k, source=source, gates=gates)
        v, d = config.get("vocab_size"), config.get("input_size")
        if isinstance(v, int) and isinstance(d, int) and v > 0 and d > 0:
            limits.check_elements(v * d, "the embedding table", source)
        if isinstance(head, list):
            limits.check_count(len(head), "the number of head layers", source)
            units = [u for d in head if isinstance(d, Mapping)
                     and isinstance(u := d.get("units"), int) and u > 0]
            if units:
                widest = max(units)
                limits.check_elements(widest * widest * len(units), "the head's parameters",
                                      source)


def load(path: str | os.PathLike[str]) -> RNNParams:
    """Read a canonical file written by :func:`save` (or by anyone following the format).

    What the file declares is checked against :mod:`rnn_ref.limits` before anything is read
    into memory: the members' decompressed sizes, each array's declared shape (no larger than
    its member), the number of layers and of parameters in the config.

    Raises:
        FileNotFoundError: no such file.
        FileFormatError: not a zip (a single ``.npy`` array, a text file, ...), a wrong or
            missing format marker, a bad config, missing or extra arrays, object arrays, or
            arrays of the wrong shape (the message says which).
        LimitError: the file declares more than the limits in force allow.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    try:
        with open(source, "rb") as fh:
            _check_archive(fh, str(source))
            with np.load(fh, allow_pickle=False) as archive:
                return from_members(archive, source=str(source))
    except (FileFormatError, LimitError):
        raise
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{source}: unreadable or truncated file "
                              f"({limits.bounded(str(exc), 300)})") from None
    except ValueError as exc:  # np.load's refusal of pickled members lands here too
        raise FileFormatError(f"{source}: {limits.bounded(str(exc))}") from None


_NPY_MAGIC = b"\x93NUMPY"


def _check_archive(fh: Any, source: str) -> None:
    """Refuse, before ``np.load`` reads anything, a file that is not a zip archive, and an
    archive whose members decompress to more than ``max_bytes`` or hold an array whose header
    declares more bytes than its member holds (``np.load`` would allocate the declared size
    first). Leaves ``fh`` at its start."""
    head = fh.read(6)
    fh.seek(0)
    if head.startswith(_NPY_MAGIC):
        raise FileFormatError(f"{source}: a single .npy array, not an rnn-ref .npz file")
    if not head.startswith(b"PK"):
        raise FileFormatError(f"{source}: not a zip archive; an rnn-ref file is an .npz "
                              f"(a zip of .npy arrays)")
    with zipfile.ZipFile(fh) as zf:
        infos = zf.infolist()
        limits.check_bytes(sum(i.file_size for i in infos), "the archive's decompressed "
                           "size", source)
        for info in infos:
            if info.filename.endswith(".npy"):
                _check_npy_header(zf, info, source)
    fh.seek(0)


def _check_npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> None:
    """Refuse a member whose ``.npy`` header declares more elements than ``max_parameters``
    or more bytes than the member holds."""
    with zf.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(member) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(member))
        except ValueError:
            return  # np.load says what is wrong with the header
        room = info.file_size - member.tell()
    count = 1
    for n in shape:
        count *= int(n)
    what = f"array {info.filename[:-4]!r}"
    limits.check_elements(count, f"the declared size of {what}", source)
    if count * dtype.itemsize > room:
        raise FileFormatError(f"{source}: {limits.bounded(what, 200)} declares shape "
                              f"{limits.bounded(str(tuple(shape)), 100)} "
                              f"({count * dtype.itemsize:,} bytes) but its member holds "
                              f"{room:,} bytes of data")
