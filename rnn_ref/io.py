"""The canonical file: :func:`save` and :func:`load`; its members in memory: :func:`to_members`
and :func:`from_members`.

Format (version 2), a NumPy ``.npz`` archive (a zip of ``.npy`` files) that any language with a
zip reader and an ``.npy`` reader can write:

==================================  =====================================================
member                              content
==================================  =====================================================
``__format__``                      0-d unicode array ``"rnn-ref/2"``
``__config__``                      0-d unicode array: the config as JSON
                                    (:meth:`RNNConfig.to_dict`)
``layers.{l}.{r}.w_x``              ``(D_l, M)`` input kernel of layer l, direction r
``layers.{l}.{r}.w_h``              ``(M, M)`` recurrent kernel
``layers.{l}.{r}.b_x``              ``(M,)`` input bias
``layers.{l}.{r}.b_h``              ``(M,)`` recurrent bias
``embedding``                       ``(V, D)`` table, only with an embedding
``head.{j}.w``, ``head.{j}.b``      ``(F_j, K_j)`` and ``(K_j,)``, head layer j
==================================  =====================================================

Version 1 files (a config with ``output_size``/``output_activation`` and the arrays
``readout.w``/``readout.b``, the network before the embedding and the head) are read as the
same network.

Arrays keep their dtype, so a round trip is bit-exact. Nothing is pickled: files are read with
``allow_pickle=False``, and a member holding Python objects is refused. Writing goes to a
temporary file in the target folder that is renamed into place, so an interrupted save never
leaves a half-written file, and an existing file is kept unless ``overwrite=True``.

:func:`to_members` and :func:`from_members` are the same format as a ``{name: array}`` dict, for
carrying parameters inside another ``.npz`` message (the Keras worker protocol does); they check
what :func:`load` checks.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rnn_ref.config import RNNConfig
from rnn_ref.errors import FileFormatError
from rnn_ref.params import RNNParams

__all__ = ["FORMAT", "FileFormatError", "from_members", "load", "save", "to_members"]

FORMAT = "rnn-ref/2"
_READS = ("rnn-ref/1", FORMAT)
_MARKERS = ("__format__", "__config__")


def save(params: RNNParams, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``params`` to ``path`` in the canonical format; returns the path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        TypeError: ``params`` is not an :class:`~rnn_ref.RNNParams`.
    """
    members: dict[str, Any] = to_members(params)
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    atomic_write(target, lambda fh: np.savez(fh, **members))
    return target


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
        if fmt not in _READS:
            raise FileFormatError(f"{source}: format {fmt!r}, this version reads "
                                  f"{' and '.join(map(repr, _READS))}")
        config_dict = json.loads(str(members["__config__"]))
        arrays = {k: members[k] for k in names - set(_MARKERS)}
        config = RNNConfig.from_dict(config_dict)
        return RNNParams.from_arrays(config, arrays)
    except FileFormatError:
        raise
    except (TypeError, ValueError) as exc:  # np.load's refusal of pickled members lands here too
        raise FileFormatError(f"{source}: {exc}") from None


def atomic_write(target: Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``target``, then rename it there.

    On any failure the temporary file is removed and ``target`` is untouched.
    """
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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
