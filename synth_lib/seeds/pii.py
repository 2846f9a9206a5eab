"""PII scrub for seeds: emails, phone numbers, IP addresses and API-key-like tokens.

Each match is replaced by a typed placeholder so the text stays readable, and the counts
per kind are returned for the asset's metadata.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

# IPv6 in any textual form: full, with leading zeros dropped, `::`-compressed, with an
# embedded IPv4 tail (`::ffff:8.8.8.8`), with a zone (`fe80::1%eth0`). The pattern only
# finds candidates; `ipaddress` decides what is an address. Runs before IPv4, which would
# otherwise take the tail of an IPv4-mapped address.
_IPV6_CANDIDATE = (
    r"(?<![\w:.])"
    r"(?:[0-9A-Fa-f]{0,4}:){2,8}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
    r"(?:%[0-9A-Za-z_.-]+)?"
    r"(?![\w:]|\.\d)"
)

PII_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    "api_key": re.compile(
        r"\b(?:sk|pk|rk|ghp|gho|ghs|xox[abpr]|AKIA|AIza)[-_A-Za-z0-9]{16,}\b"
        r"|\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])[A-Za-z0-9_-]{32,}\b"
    ),
    "ipv6": re.compile(_IPV6_CANDIDATE),
    "ipv4": re.compile(
        r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b"
    ),
    "phone": re.compile(
        r"(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w.])"
    ),
}

# Global unicast: every public IPv6 host address. Python also calls a few odd ranges
# global (`1::2`), which in text is far more often a slice like `a[1::2]`.
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _is_public_address(candidate: str) -> bool:
    """Private, loopback, link-local, documentation and reserved addresses identify nobody:
    keep them. An IPv6 address carrying an IPv4 one (mapped, NAT64) is as public as it."""
    try:
        address = ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address.is_global
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_global
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF).is_global
    return address in _GLOBAL_UNICAST and address.is_global


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
