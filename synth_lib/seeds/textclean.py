"""Text cleanup every seed goes through: Unicode NFC, no control characters, tidy whitespace."""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC-normalise, drop control/zero-width characters, collapse runs of spaces and blank lines.

    Line structure is kept (code and lists depend on it); trailing spaces per line are removed.
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)
    lines = [_SPACES.sub(" ", line).rstrip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def normalize_code(text: str) -> str:
    """Code keeps its indentation: only NFC, newline style, control characters, trailing spaces."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text).expandtabs(4)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")
