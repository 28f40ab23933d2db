"""Redaction of prompt/response text before it leaves the process (only when capture is on)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

Redactor = Callable[[str], str]

# Order matters: bearer tokens and API keys before generic digit runs.
DEFAULT_PATTERNS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("bearer", re.compile(r"(?i)\bbearer\s+[a-z0-9._~+/=-]{8,}")),
    ("api_key", re.compile(r"\b(?:sk|pk|rk|ak)-[A-Za-z0-9_-]{12,}\b|\bAKIA[0-9A-Z]{16}\b")),
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    ("card", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    (
        "phone",
        re.compile(r"(?<![\w])\+?\d{1,3}?[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?![\w])"),
    ),
)


def default_redactor(text: str) -> str:
    """Replace emails, phone and card numbers, API keys, bearer tokens: ``[REDACTED:kind]``."""
    for kind, pattern in DEFAULT_PATTERNS:
        text = pattern.sub(f"[REDACTED:{kind}]", text)
    return text


def make_redactor(extra_patterns: Sequence[str | re.Pattern[str]] = ()) -> Redactor:
    """A redactor with the default patterns plus ``extra_patterns`` (replaced by ``[REDACTED]``)."""
    compiled = [re.compile(p) if isinstance(p, str) else p for p in extra_patterns]

    def redact(text: str) -> str:
        text = default_redactor(text)
        for pattern in compiled:
            text = pattern.sub("[REDACTED]", text)
        return text

    return redact


def truncate(text: str, max_chars: int) -> str:
    """Cut ``text`` to ``max_chars``, saying how much was dropped."""
    if len(text) <= max_chars:
        return text
    dropped = len(text) - max_chars
    return f"{text[:max_chars]}...[truncated {dropped} chars]"
