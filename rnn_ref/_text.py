"""Text that came from a file, made safe to print on a terminal.

A name inside a model file (an initializer, a layer, a tensor, metadata) is chosen by whoever
made the file; printed raw it can move the cursor, clear the screen or rewrite a line that is
already shown (``"\\x1b[2J"``, ``"\\r... ok"``). :func:`printable` escapes every character that
is not plainly visible text, the way ``repr`` does, and :func:`bounded` cuts a line to a length
and says how much was cut. The command line passes everything it prints from a file, and every
error line, through them.
"""

from __future__ import annotations

import unicodedata

__all__ = ["LINE_LIMIT", "bounded", "error_line", "printable"]

#: the longest error line the command line prints, in characters
LINE_LIMIT = 500

#: Unicode categories escaped: controls (C0, C1, ESC, CR, backspace, DEL), format characters
#: (the bidirectional overrides and isolates, zero-width characters), line and paragraph
#: separators, surrogates, private use and unassigned code points
_ESCAPED = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in "\t\n\r":
        return {"\t": "\\t", "\n": "\\n", "\r": "\\r"}[ch]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: object) -> str:
    """``str(value)`` with every control, format (bidirectional), separator, surrogate,
    private-use and unassigned character written as a ``repr``-style escape (``\\x1b``,
    ``\\r``, ``\\u202e``); plain text, in any script, is kept as it is."""
    text = str(value)
    if text.isprintable():  # the common case: nothing to escape
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _ESCAPED else ch for ch in text)


def bounded(text: str, limit: int = LINE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, with a note of how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters cut)"


def error_line(text: object, limit: int = LINE_LIMIT) -> str:
    """One printable line of at most ``limit`` characters (plus the note of what was cut)."""
    return bounded(printable(text), limit)
