"""The project's exception and warning types (each is also an ordinary built-in type)."""

from __future__ import annotations

__all__ = ["FileFormatError", "LimitError", "SemanticsWarning", "UnsupportedError"]


class FileFormatError(ValueError):
    """A file is not a valid file of the format it was read as (names the file and why)."""


class LimitError(ValueError):
    """A file declares more than a limit of :class:`rnn_ref.limits.Limits` allows (a layer
    count, an array size, decompressed bytes, graph nodes). Raised before anything of that
    size is allocated; the message gives the size, the limit and how to raise it.

    Attributes:
        limit: the field of ``Limits`` that was exceeded (``"max_parameters"`` ...).
        size: the size the file declares.
    """

    def __init__(self, message: str, limit: str = "", size: int = 0) -> None:
        super().__init__(message)
        self.limit, self.size = limit, size


class UnsupportedError(NotImplementedError):
    """A target cannot express a feature. The message names the feature, the target and why.

    Raised at conversion time (``to_*``, ``from_*``) and by a backend asked for something it
    declares unsupported: never silently dropped or approximated.
    """

    def __init__(self, target: str, feature: str | None = None, why: str = "") -> None:
        self.target, self.feature, self.why = target, feature, why
        if feature is None:  # a whole message, e.g. one relayed from a worker process
            super().__init__(target)
        else:
            super().__init__(f"{target} cannot express {feature}" + (f": {why}" if why else ""))


class SemanticsWarning(UserWarning):
    """A conversion kept every weight but the target computes some inputs differently (for
    example what a padded step outputs). The message names both behaviours; converters take
    ``strict=True`` to make it an :class:`UnsupportedError` instead."""
