"""The canonical file: :func:`save` and :func:`load`; its members in memory: :func:`to_members`
and :func:`from_members`.

Format (version 1), a NumPy ``.npz`` archive (a zip of ``.npy`` files) that any language with a
zip reader and an ``.npy`` reader can write:

==================================  =====================================================
member                              content
==================================  =====================================================
``__format__``                      0-d unicode array ``"rnn-ref/1"``
``__config__``                      0-d unicode array: the config as JSON
                                    (:meth:`RNNConfig.to_dict`)
``layers.{l}.{r}.w_x``              ``(D_l, M)`` input kernel of layer l, direction r
``layers.{l}.{r}.w_h``              ``(M, M)`` recurrent kernel
``layers.{l}.{r}.b_x``              ``(M,)`` input bias
``layers.{l}.{r}.b_h``              ``(M,)`` recurrent bias
``readout.w``, ``readout.b``        ``(F, K)`` and ``(K,)``, only with a readout
==================================  =====================================================

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

from rnn_ref._dest import write_file
from rnn_ref.config import RNNConfig
from rnn_ref.errors import FileFormatError
from rnn_ref.params import RNNParams

__all__ = ["FORMAT", "FileFormatError", "from_members", "load", "save", "to_members"]

FORMAT = "rnn-ref/1"
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
    """
    names = set(members)
    for marker in _MARKERS:
        if marker not in names:
            raise FileFormatError(f"{source}: not an rnn-ref file (no {marker} member)")
    try:
        fmt = str(members["__format__"])
        if fmt != FORMAT:
            raise FileFormatError(f"{source}: format {fmt!r}, this version reads {FORMAT!r}")
        config_dict = json.loads(str(members["__config__"]))
        arrays = {k: members[k] for k in names - set(_MARKERS)}
        config = RNNConfig.from_dict(config_dict)
        return RNNParams.from_arrays(config, arrays)
    except FileFormatError:
        raise
    except RecursionError:
        raise FileFormatError(f"{source}: the config JSON is nested too deeply") from None
    except (TypeError, ValueError) as exc:  # np.load's refusal of pickled members lands here too
        raise FileFormatError(f"{source}: {exc}") from None


def load(path: str | os.PathLike[str]) -> RNNParams:
    """Read a canonical file written by :func:`save` (or by anyone following the format).

    Raises:
        FileNotFoundError: no such file.
        FileFormatError: not a zip, a wrong or missing format marker, a bad config, missing or
            extra arrays, object arrays, or arrays of the wrong shape (the message says which).
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    try:
        with open(source, "rb") as fh, np.load(fh, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise FileFormatError(f"{source}: a single .npy array, not an rnn-ref .npz file")
            return from_members(archive, source=str(source))
    except FileFormatError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{source}: unreadable or truncated file ({exc})") from None
    except ValueError as exc:  # np.load's refusal of pickled members lands here too
        raise FileFormatError(f"{source}: {exc}") from None
