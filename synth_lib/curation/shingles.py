"""Text normalisation and word n-gram shingles as 64-bit hashes, vectorised with numpy.

Shared by near-duplicate removal, decontamination and the drift monitor: texts are
lower-cased, punctuation dropped and whitespace collapsed, then cut into word n-grams
whose rolling hashes are one flat numpy buffer for the whole corpus.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import polars as pl

HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Tokens:
    """Every document's word hashes back to back; document d is hashes[offsets[d]:offsets[d+1]]."""

    hashes: np.ndarray
    offsets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @cached_property
    def text_of_token(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.offsets) - 1), self.lengths)

    @cached_property
    def room(self) -> np.ndarray:
        """For each token, how many tokens of its text start at it (itself included)."""
        return self.offsets[1:][self.text_of_token] - np.arange(len(self.hashes))


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads structured 64-bit values over all 64 bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_BYTE_KEYS = mix64(np.arange(1, 65, dtype=np.uint64) * HASH_MUL)
# ASCII letters lower-cased, every other ASCII byte that is not [0-9a-z_] becomes a space.
_ASCII_MAP = np.arange(256, dtype=np.uint8)
_ASCII_MAP[:128] = 32
for _c in b"0123456789abcdefghijklmnopqrstuvwxyz_":
    _ASCII_MAP[_c] = _c
    _ASCII_MAP[bytes([_c]).upper()[0]] = _c
_ASCII_TABLE = _ASCII_MAP.tobytes()


def _arrow_texts(texts: Sequence[str | None] | pl.Series | pa.Array) -> pa.LargeStringArray:
    """Texts as one Arrow large-string array, nulls as "" (a Polars Series without a copy)."""
    polars = sys.modules.get("polars")  # only a caller that imported Polars can pass a Series
    if polars is not None and isinstance(texts, polars.Series):
        arrow = texts.to_arrow()
    elif isinstance(texts, pa.ChunkedArray):
        arrow = texts.combine_chunks()
    elif isinstance(texts, pa.Array):
        arrow = texts
    else:
        # built from the UTF-8 bytes: `pa.array` on a list first imports pandas (~0.2 s)
        encoded = [b"" if t is None else t.encode() for t in texts]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        return pa.LargeStringArray.from_buffers(
            len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))
        )
    arrow = arrow.cast(pa.large_string())
    # fill_null's scalar imports pandas: only pay for it when there are nulls
    return pc.fill_null(arrow, "") if arrow.null_count else arrow


def _normalised(
    texts: Sequence[str | None] | pl.Series | pa.Array,
) -> tuple[np.ndarray, np.ndarray]:
    """The normalised UTF-8 bytes of all texts and each text's [start, end) offsets in them."""
    arrow = _arrow_texts(texts)
    _, _, data = arrow.buffers()
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    ascii_only = not len(raw) or raw.max() < 0x80
    if not ascii_only:
        arrow = pc.utf8_lower(arrow)
    _, offsets, data = arrow.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64)[arrow.offset : arrow.offset + len(arrow) + 1]
    used = data.slice(bounds[0], bounds[-1] - bounds[0]).to_pybytes() if data is not None else b""
    # bytes.translate: one C pass, no index array as numpy's table lookup would build
    out = np.frombuffer(bytearray(used.translate(_ASCII_TABLE)), dtype=np.uint8)
    if not ascii_only:
        lead = np.flatnonzero(out >= 0xC2)  # non-ASCII lead bytes: few in most text
        lead = lead[out[lead] <= 0xE2]  # valid UTF-8: their continuation bytes follow
        second = out[lead + 1]
        latin1 = lead[out[lead] == 0xC2]
        general = lead[(out[lead] == 0xE2) & ((second == 0x80) | (second == 0x81))]
        for k in range(2):
            out[latin1 + k] = 32
        for k in range(3):
            out[general + k] = 32
    return out, bounds - bounds[0]


def normalise(texts: Sequence[str | None] | pl.Series | pa.Array) -> pa.LargeStringArray:
    """Lower-cased texts with punctuation turned into spaces (whitespace runs remain).

    Unicode lower-casing, then one byte-table pass: ASCII punctuation and the Unicode
    punctuation that real text uses (U+0080–U+00BF: no-break space, «», ¿…; U+2000–U+207F:
    dashes, curly quotes, ellipsis) become spaces. Other non-ASCII characters are letters.
    The table lower-cases ASCII letters itself, so all-ASCII text skips the Unicode pass.
    """
    data, bounds = _normalised(texts)
    return pa.LargeStringArray.from_buffers(
        len(bounds) - 1, pa.py_buffer(np.ascontiguousarray(bounds)), pa.py_buffer(data)
    )


def _words(data: np.ndarray, bounds: np.ndarray) -> tuple[pa.LargeStringArray, np.ndarray]:
    """Every word (maximal run of non-space bytes inside one text) as one string array, and
    each text's word count: the split is numpy over the bytes, not an Arrow list array."""
    is_word = data != 32
    begin, end = is_word.copy(), is_word.copy()
    begin[1:] &= ~is_word[:-1]
    end[:-1] &= ~is_word[1:]
    filled = bounds[:-1] < bounds[1:]
    first, last = bounds[:-1][filled], bounds[1:][filled] - 1
    begin[first], end[last] = is_word[first], is_word[last]  # words stop at text edges
    starts, ends = np.flatnonzero(begin), np.flatnonzero(end) + 1
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(ends - starts, out=offsets[1:])
    words = pa.LargeStringArray.from_buffers(
        len(starts), pa.py_buffer(offsets), pa.py_buffer(data[is_word])
    )
    return words, np.diff(np.searchsorted(starts, bounds))


def _byte_string_hashes(words: pa.Array) -> np.ndarray:
    """A 64-bit hash of each string's UTF-8 bytes, vectorised: a keyed sum of byte values
    (key by position modulo 64) plus the length, then mixed. Depends only on the bytes, so
    it is the same in every process and library version."""
    words = words.cast(pa.large_string())
    _, offsets_buf, data_buf = words.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[
        words.offset : words.offset + len(words) + 1
    ]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    )
    data = data[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    lengths = np.diff(offsets)
    pos = np.arange(len(data)) - np.repeat(offsets[:-1], lengths)
    keyed = (data.astype(np.uint64) + np.uint64(1)) * _BYTE_KEYS[pos & 63]
    sums = np.zeros(len(lengths), dtype=np.uint64)
    nonempty = lengths > 0
    if nonempty.any():
        sums[nonempty] = np.add.reduceat(keyed, offsets[:-1][nonempty])
    return mix64(sums + lengths.astype(np.uint64))


def _int_values(array: pa.Array) -> np.ndarray:
    """An integer Arrow array without nulls as a numpy view (`to_numpy` imports pandas)."""
    values = np.frombuffer(array.buffers()[1], dtype=f"int{array.type.bit_width}")
    return values[array.offset : array.offset + len(array)]


def tokenise(texts: Sequence[str | None] | pl.Series | pa.Array, *, stable: bool = True) -> Tokens:
    """Hash every normalised word of every text in one vectorised pass.

    Stable hashes depend only on the word's bytes (each distinct word is hashed once);
    `stable=False` uses Polars' own hash, a little faster but only stable within one Polars
    version: fine when both sides of a comparison are hashed in the same process.
    """
    flat, lengths = _words(*_normalised(texts))
    if stable:
        encoded = pc.dictionary_encode(flat)
        indices = _int_values(encoded.indices)
        hashed = _byte_string_hashes(encoded.dictionary)[indices]
    else:
        import polars as pl

        series = pl.from_arrow(flat)
        assert isinstance(series, pl.Series)
        hashed = series.hash(seed=0).to_numpy()
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Tokens(hashes=hashed.astype(np.uint64, copy=False), offsets=offsets)


def text_keys(tokens: Tokens) -> np.ndarray:
    """One 64-bit key per text from its word sequence: equal keys = equal normalised text."""
    lengths = tokens.lengths
    pos = np.arange(len(tokens.hashes)) - np.repeat(tokens.offsets[:-1], lengths)
    terms = mix64(tokens.hashes ^ (pos.astype(np.uint64) * HASH_MUL))
    sums = np.zeros(len(lengths), dtype=np.uint64)
    nonempty = lengths > 0
    if nonempty.any():
        sums[nonempty] = np.add.reduceat(terms, tokens.offsets[:-1][nonempty])
    return mix64(sums + lengths.astype(np.uint64))


HASH_MUL_INV = np.uint64(pow(int(HASH_MUL), -1, 2**64))
_POWERS: dict[int, np.ndarray] = {}


def _powers(base: np.uint64, count: int) -> np.ndarray:
    """base**0 .. base**(count-1) mod 2**64, cached and grown geometrically."""
    cached = _POWERS.get(int(base))
    if cached is None or len(cached) < count:
        size = max(count, 2 * len(cached) if cached is not None else 1 << 16)
        cached = np.full(size, base, dtype=np.uint64)
        cached[0] = 1
        cached = np.cumprod(cached, dtype=np.uint64)
        _POWERS[int(base)] = cached
    return cached[:count]


def ngram_hashes(tokens: Tokens, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(text index, 64-bit hash) of every word n-gram; a text shorter than n is one gram.

    The n-gram hash is the polynomial sum(h[i+k] * M^(n-1-k)) mod 2^64 over the (already
    well mixed) word hashes: Horner's rule for
    small n, else prefix sums of h[t] * M^-t (M is odd, so invertible), six passes over
    the buffer whatever n is. Grams that would cross into the next text are dropped.
    """
    if n < 1:
        raise ValueError("n-gram size must be >= 1")
    h, lengths, offsets = tokens.hashes, tokens.lengths, tokens.offsets
    span = max(len(h) - n + 1, 0)
    if n <= 4:
        grams = h[:span].copy()
        for k in range(1, n):
            grams = grams * HASH_MUL + h[k : k + span]
    else:
        prefix = np.zeros(len(h) + 1, dtype=np.uint64)
        np.cumsum(h * _powers(HASH_MUL_INV, len(h)), dtype=np.uint64, out=prefix[1:])
        grams = (prefix[n : n + span] - prefix[:span]) * _powers(HASH_MUL, len(h))[
            n - 1 : n - 1 + span
        ]
    valid = np.flatnonzero(tokens.room[:span] >= n)
    doc, full = tokens.text_of_token[valid], grams[valid]
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    if len(short):
        tail = np.zeros(len(short), dtype=np.uint64)
        for k in range(n):  # zero-padded to n, so equal short texts hash equally
            inside = k < lengths[short]
            term = np.where(inside, h[np.minimum(offsets[short] + k, len(h) - 1)], 0)
            tail = tail * HASH_MUL + term.astype(np.uint64)
        at = np.searchsorted(doc, short)  # short texts have no other grams: keep doc order
        doc, full = np.insert(doc, at, short), np.insert(full, at, tail)
    return doc, full


def unique_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values (sorted) and their counts, by one sort: numpy 2.4's np.unique takes a
    hash-table path that is tens of times slower on large integer arrays."""
    ordered = np.sort(values)
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(first)
    return ordered[starts], np.diff(np.append(starts, len(ordered)))


def group_ids(values: np.ndarray) -> np.ndarray:
    """For each value, the rank of its distinct value (equal values get equal ids)."""
    order = np.argsort(values, kind="stable")
    first = np.ones(len(values), dtype=bool)
    first[1:] = values[order][1:] != values[order][:-1]
    ids = np.empty(len(values), dtype=np.int64)
    ids[order] = np.cumsum(first) - 1
    return ids


def unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) pairs, sorted by a then b."""
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first]
