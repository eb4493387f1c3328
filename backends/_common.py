"""Helpers shared by the backend modules (no framework imports here)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from rnn_ref.errors import UnsupportedError

__all__ = ["raise_if", "right_padded_lengths"]


def raise_if(reason: tuple[str, str] | None, target: str) -> None:
    """Raise :class:`UnsupportedError` when ``reason`` (feature, why) is set."""
    if reason is not None:
        raise UnsupportedError(target, *reason)


def right_padded_lengths(
    lengths: Any, mask: Any, n: int, t: int, target: str
) -> npt.NDArray[np.int64] | None:
    """Turn ``lengths`` or a hole-free right-padded ``mask`` into lengths ``(N,)``.

    Returns ``None`` when every step is valid. A mask with holes or left padding raises
    :class:`UnsupportedError` for ``target``.
    """
    if lengths is not None and mask is not None:
        raise ValueError("give lengths or mask, not both")
    if lengths is not None:
        la = np.asarray(lengths)
        if la.dtype.kind not in "iu":
            raise TypeError(f"lengths must be integers, got dtype {la.dtype}")
        if la.shape != (n,):
            raise ValueError(f"lengths must have shape (N,) = ({n},), got {la.shape}")
        if n and (la.min() < 0 or la.max() > t):
            raise ValueError(f"lengths must lie in [0, T] = [0, {t}], got {la.min()}..{la.max()}")
        return None if n == 0 or la.min() == t else la.astype(np.int64)
    if mask is None:
        return None
    ma = np.asarray(mask)
    if ma.dtype != np.bool_:
        raise TypeError(f"mask must be boolean (True = a valid step), got dtype {ma.dtype}")
    if ma.shape != (n, t):
        raise ValueError(f"mask must have shape (N, T) = ({n}, {t}), got {ma.shape}")
    la = ma.sum(axis=1)
    if not np.array_equal(ma, np.arange(t)[None, :] < la[:, None]):
        raise UnsupportedError(target, "a mask with holes or left padding",
                               "it takes right-padded lengths only")
    return None if n == 0 or la.min() == t else la.astype(np.int64)
