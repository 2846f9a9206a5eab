"""PII scrub for seeds: emails, phone numbers, IP addresses and API-key-like tokens.

Each match is replaced by a typed placeholder so the text stays readable, and the counts
per kind are returned for the asset's metadata.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

PII_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    "api_key": re.compile(
        r"\b(?:sk|pk|rk|ghp|gho|ghs|xox[abpr]|AKIA|AIza)[-_A-Za-z0-9]{16,}\b"
        r"|\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])[A-Za-z0-9_-]{32,}\b"
    ),
    "ipv4": re.compile(
        r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b"
    ),
    "ipv6": re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b"),
    "phone": re.compile(
        r"(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w.])"
    ),
}


def _is_public_address(candidate: str) -> bool:
    """Private, loopback, documentation and reserved addresses identify nobody: keep them."""
    try:
        return ipaddress.ip_address(candidate).is_global
    except ValueError:
        return False


def scrub_pii(text: str) -> tuple[str, Counter[str]]:
    """Replace PII with `<KIND>` placeholders; return the new text and the counts per kind."""
    counts: Counter[str] = Counter()
    for kind, pattern in PII_PATTERNS.items():
        placeholder = f"<{kind.upper()}>"

        def replace(match: re.Match[str], kind: str = kind, placeholder: str = placeholder) -> str:
            if kind.startswith("ip") and not _is_public_address(match.group(0)):
                return match.group(0)
            counts[kind] += 1
            return placeholder

        text = pattern.sub(replace, text)
    return text, counts
