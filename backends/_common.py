"""Helpers shared by the backend modules (no framework imports here).

Inputs are checked by :func:`rnn_ref.inputs.check_inputs`; a backend that takes right-padded
lengths only asks :meth:`rnn_ref.inputs.Inputs.lengths_or_none`.
"""

from __future__ import annotations

from rnn_ref.errors import UnsupportedError

__all__ = ["raise_if"]


def raise_if(reason: tuple[str, str] | None, target: str) -> None:
    """Raise :class:`UnsupportedError` when ``reason`` (feature, why) is set."""
    if reason is not None:
        raise UnsupportedError(target, *reason)

