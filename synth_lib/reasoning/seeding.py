"""Deterministic per-item randomness: sample seeds and hash-based sampling shares.

Both derive from content ids, so a re-run makes the same requests (and hits the
response cache) and sends the same rows to debate, whatever the row order.
"""

from __future__ import annotations

from synth_lib.provenance.hashing import sha256_hex


def stable_seed(*parts: object) -> int:
    """A 31-bit seed from `parts`; distinct parts give distinct seeds with high probability."""
    return int(sha256_hex("|".join(str(p) for p in parts))[:8], 16) & 0x7FFFFFFF


def in_share(key: str, share: float, salt: str = "") -> bool:
    """True for a `share` (0..1) of keys, chosen by hash so the choice is reproducible."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    return int(sha256_hex(f"{salt}|{key}")[:8], 16) / 0xFFFFFFFF < share
