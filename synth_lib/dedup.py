"""Near-duplicate removal: exact duplicates of the normalised text, then MinHash LSH.

Texts are normalised (lower-cased, punctuation dropped, whitespace collapsed) and cut into
word n-gram shingles hashed to 64-bit ints with vectorised numpy. Signatures come from
`rensa` (Rust MinHash over the flat shingle-hash buffer: one call for the whole corpus;
benchmarks/dedup_bench.py shows the same F1 as a numpy MinHash at a fraction of its
time); banding, candidate pairs, Jaccard verification and clustering are numpy/scipy. Each
cluster keeps one representative (a human row if there is one, else the lowest key) and
marks the others `kept=False` with the cluster id, so a rephrasing that nearly copies its
seed loses to the seed whichever stage it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import rensa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

_MUL = np.uint64(0x9E3779B97F4A7C15)
_MAX_ALL_PAIRS_BUCKET = 64
_VERIFY_CHUNK = 200_000


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


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads structured 64-bit values over all 64 bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_BYTE_KEYS = _mix64(np.arange(1, 65, dtype=np.uint64) * _MUL)
# ASCII letters lower-cased, every other ASCII byte that is not [0-9a-z_] becomes a space.
_ASCII_MAP = np.arange(256, dtype=np.uint8)
_ASCII_MAP[:128] = 32
for _c in b"0123456789abcdefghijklmnopqrstuvwxyz_":
    _ASCII_MAP[_c] = _c
    _ASCII_MAP[bytes([_c]).upper()[0]] = _c


def normalise(texts: Sequence[str | None] | pl.Series) -> pa.LargeStringArray:
    """Lower-cased texts with punctuation turned into spaces (whitespace runs remain).

    Unicode lower-casing, then one byte-table pass: ASCII punctuation and the Unicode
    punctuation that real text uses (U+0080–U+00BF: no-break space, «», ¿…; U+2000–U+207F:
    dashes, curly quotes, ellipsis) become spaces. Other non-ASCII characters are letters.
    """
    arrow = texts.to_arrow() if isinstance(texts, pl.Series) else pa.array(texts, pa.large_string())
    arrow = pc.utf8_lower(pc.fill_null(arrow.cast(pa.large_string()), ""))
    _, offsets, data = arrow.buffers()
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    out = _ASCII_MAP[raw]
    lead = np.flatnonzero(out >= 0xC2)  # non-ASCII lead bytes: few in most text
    lead = lead[out[lead] <= 0xE2]  # valid UTF-8: their continuation bytes follow
    second = out[lead + 1]
    latin1 = lead[out[lead] == 0xC2]
    general = lead[(out[lead] == 0xE2) & ((second == 0x80) | (second == 0x81))]
    for k in range(2):
        out[latin1 + k] = 32
    for k in range(3):
        out[general + k] = 32
    return pa.LargeStringArray.from_buffers(
        len(arrow), offsets, pa.py_buffer(out), offset=arrow.offset
    )


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
    return _mix64(sums + lengths.astype(np.uint64))


def tokenise(texts: Sequence[str | None] | pl.Series, *, stable: bool = True) -> Tokens:
    """Hash every normalised word of every text in one vectorised pass.

    Stable hashes depend only on the word's bytes (each distinct word is hashed once);
    `stable=False` uses Polars' own hash, a little faster but only stable within one Polars
    version: fine when both sides of a comparison are hashed in the same process.
    """
    trimmed = pc.ascii_trim_whitespace(normalise(texts))
    words = pc.ascii_split_whitespace(trimmed)
    lengths = pc.list_value_length(words).to_numpy(zero_copy_only=False).astype(np.int64)
    blank = pc.equal(trimmed, "").to_numpy(zero_copy_only=False)
    lengths[blank] = 0  # splitting "" gives [""]: no words
    flat = pc.list_flatten(words)
    if blank.any():
        flat = flat.filter(pc.not_equal(flat, ""))
    if stable:
        encoded = pc.dictionary_encode(flat)
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        hashed = _byte_string_hashes(encoded.dictionary)[indices]
    else:
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
    terms = _mix64(tokens.hashes ^ (pos.astype(np.uint64) * _MUL))
    sums = np.zeros(len(lengths), dtype=np.uint64)
    nonempty = lengths > 0
    if nonempty.any():
        sums[nonempty] = np.add.reduceat(terms, tokens.offsets[:-1][nonempty])
    return _mix64(sums + lengths.astype(np.uint64))


_MUL_INV = np.uint64(pow(int(_MUL), -1, 2**64))
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
            grams = grams * _MUL + h[k : k + span]
    else:
        prefix = np.zeros(len(h) + 1, dtype=np.uint64)
        np.cumsum(h * _powers(_MUL_INV, len(h)), dtype=np.uint64, out=prefix[1:])
        grams = (prefix[n : n + span] - prefix[:span]) * _powers(_MUL, len(h))[n - 1 : n - 1 + span]
    valid = np.flatnonzero(tokens.room[:span] >= n)
    doc, full = tokens.text_of_token[valid], grams[valid]
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    if len(short):
        tail = np.zeros(len(short), dtype=np.uint64)
        for k in range(n):  # zero-padded to n, so equal short texts hash equally
            inside = k < lengths[short]
            term = np.where(inside, h[np.minimum(offsets[short] + k, len(h) - 1)], 0)
            tail = tail * _MUL + term.astype(np.uint64)
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


@dataclass(frozen=True)
class DedupConfig:
    """Shingles, MinHash size, LSH banding and the verified Jaccard cut.

    `bands`/`rows` default to the banding whose S-curve best fits `threshold` (misses
    weighted over false candidates, which verification removes anyway): 42 x 3 at 0.3.
    Shingles found in more than `max_shingle_share` of the texts (and in over 10 of them)
    are template or boilerplate, not content; below 1.0 they are left out of the
    signatures, so rows that only share a prompt template are not duplicates. The
    defaults are the ones benchmarks/dedup_bench.py validates on passages with up to 30%
    of words edited; for short templated rows use longer shingles, a higher threshold
    and a share such as 0.05 (as `decontaminated_mix` does).
    """

    ngram: int = 2
    threshold: float = 0.3
    num_perm: int = 128
    bands: int = 0
    rows: int = 0
    max_shingle_share: float = 1.0
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if not (self.bands and self.rows):
            bands, rows = lsh_banding(self.threshold, self.num_perm)
            object.__setattr__(self, "bands", self.bands or bands)
            object.__setattr__(self, "rows", self.rows or rows)
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows = {self.bands * self.rows} exceeds num_perm")


def lsh_banding(threshold: float, num_perm: int, miss_weight: float = 0.7) -> tuple[int, int]:
    """(bands, rows) minimising the weighted area of false candidates and misses."""
    j = np.linspace(0.0, 1.0, 501)
    below = j < threshold
    best, choice = np.inf, (1, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        p = 1.0 - (1.0 - j**rows) ** bands
        cost = (1 - miss_weight) * np.trapezoid(p[below], j[below]) + miss_weight * np.trapezoid(
            1.0 - p[~below], j[~below]
        )
        if cost < best:
            best, choice = cost, (bands, rows)
    return choice


def drop_common_shingles(
    doc: np.ndarray, grams: np.ndarray, n_texts: int, max_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Leave out shingles present in more than max(10, max_share * n_texts) texts."""
    limit = max(10.0, max_share * n_texts)
    if limit >= n_texts:
        return doc, grams
    values, counts = unique_counts(unique_pairs(grams, doc)[0])
    common = values[counts > limit]
    if not len(common):
        return doc, grams
    keep = ~np.isin(grams, common)
    return doc[keep], grams[keep]


@dataclass(frozen=True)
class DedupResult:
    """Per input row: its cluster (the representative's key), whether it is kept, and why not."""

    cluster_id: list[str]
    kept: np.ndarray
    reason: list[str | None]
    exact_duplicates: int
    near_duplicates: int
    clusters: int
    candidate_pairs: int

    def stats(self) -> dict[str, int]:
        return {
            "rows": len(self.cluster_id),
            "kept": int(self.kept.sum()),
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "duplicate_clusters": self.clusters,
            "lsh_candidate_pairs": self.candidate_pairs,
        }


def minhash_signatures(
    doc: np.ndarray, grams: np.ndarray, n_docs: int, num_perm: int, seed: int
) -> np.ndarray:
    """(n_docs, num_perm) uint32 signatures from grouped shingle hashes (`doc` sorted)."""
    counts = np.bincount(doc, minlength=n_docs)
    offsets = np.zeros(n_docs + 1, dtype=np.uint64)
    np.cumsum(counts, out=offsets[1:])
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(grams, offsets, num_perm, seed)
    return np.array(matrix.to_rows(), dtype=np.uint32).reshape(n_docs, num_perm)


def _bucket_pairs(keys: np.ndarray) -> np.ndarray:
    """Index pairs (i < j) that share a key; huge buckets are chained instead of all-paired."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    same = sorted_keys[1:] == sorted_keys[:-1]
    if not same.any():
        return np.empty((0, 2), dtype=np.int64)
    starts = np.flatnonzero(np.diff(np.concatenate([[False], same, [False]]).astype(np.int8)) == 1)
    ends = np.flatnonzero(np.diff(np.concatenate([[False], same, [False]]).astype(np.int8)) == -1)
    sizes = ends - starts + 1
    pairs = [np.stack([order[starts[sizes == 2]], order[starts[sizes == 2] + 1]], axis=1)]
    for s, size in zip(starts[sizes > 2], sizes[sizes > 2], strict=True):
        members = order[s : s + size]
        if size <= _MAX_ALL_PAIRS_BUCKET:
            i, j = np.triu_indices(size, k=1)
            pairs.append(np.stack([members[i], members[j]], axis=1))
        else:
            pairs.append(np.stack([members[:-1], members[1:]], axis=1))
    return np.concatenate(pairs)


def lsh_candidates(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Unique pairs of rows that agree on all `rows` values of at least one band."""
    n = len(signatures)
    block = signatures[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    key = np.broadcast_to(np.arange(1, bands + 1, dtype=np.uint64), (n, bands))
    for col in range(rows):
        key = _mix64(key * _MUL + block[:, :, col])
    found = _bucket_pairs(key.T.ravel()) % n if n else np.empty((0, 2), dtype=np.int64)
    found = np.sort(found, axis=1)
    codes, _ = unique_counts(found[:, 0] * n + found[:, 1])
    return np.stack(np.divmod(codes, n), axis=1)


def estimated_jaccard(signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Share of equal MinHash values for each pair, computed in bounded-memory chunks."""
    out = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), _VERIFY_CHUNK):
        chunk = pairs[start : start + _VERIFY_CHUNK]
        out[start : start + len(chunk)] = (signatures[chunk[:, 0]] == signatures[chunk[:, 1]]).mean(
            axis=1
        )
    return out


def find_duplicates(
    texts: Sequence[str | None],
    keys: Sequence[str] | None = None,
    is_synthetic: Sequence[bool] | None = None,
    config: DedupConfig | None = None,
) -> DedupResult:
    """Cluster exact and near duplicates; keep one representative per cluster.

    The representative is the first row by (synthetic?, key): a human seed beats any
    synthetic descendant, and ties go to the lowest key so reruns choose the same row.
    """
    config = config or DedupConfig()
    n = len(texts)
    keys = [str(k) for k in keys] if keys is not None else [f"{i:012d}" for i in range(n)]
    synthetic = np.asarray(is_synthetic if is_synthetic is not None else [False] * n, dtype=bool)
    tokens = tokenise(texts)
    exact_group = group_ids(text_keys(tokens))
    first_of_group = np.full(exact_group.max() + 1 if n else 0, -1, dtype=np.int64)
    first_of_group[exact_group[::-1]] = np.arange(n)[::-1]
    unique_rows = np.flatnonzero(first_of_group[exact_group] == np.arange(n))
    exact_pairs = np.stack([first_of_group[exact_group], np.arange(n)], axis=1)
    exact_pairs = exact_pairs[exact_pairs[:, 0] != exact_pairs[:, 1]]

    doc, grams = ngram_hashes(tokens, config.ngram)
    keep = np.isin(doc, unique_rows)
    doc, grams = drop_common_shingles(
        doc[keep], grams[keep], len(unique_rows), config.max_shingle_share
    )
    sketched, _ = unique_counts(doc)
    doc = np.searchsorted(sketched, doc)
    near_pairs = np.empty((0, 2), dtype=np.int64)
    candidates = 0
    if len(sketched) > 1:
        sig = minhash_signatures(doc, grams, len(sketched), config.num_perm, config.seed)
        cand = lsh_candidates(sig, config.bands, config.rows)
        candidates = len(cand)
        verified = cand[estimated_jaccard(sig, cand) >= config.threshold]
        near_pairs = sketched[verified]

    edges = np.concatenate([exact_pairs, near_pairs])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    key_rank = np.argsort(np.argsort(np.asarray(keys, dtype=object), kind="stable"))
    order = np.lexsort((key_rank, synthetic, label))
    first = np.ones(n, dtype=bool)
    first[1:] = label[order][1:] != label[order][:-1]
    rep_of_label = np.empty(label.max() + 1 if n else 0, dtype=np.int64)
    rep_of_label[label[order][first]] = order[first]
    rep = rep_of_label[label] if n else np.empty(0, dtype=np.int64)
    kept = rep == np.arange(n)
    sizes = np.bincount(label) if n else np.empty(0, dtype=np.int64)
    same_text = exact_group == exact_group[rep] if n else np.empty(0, dtype=bool)
    reason: list[str | None] = [
        None
        if kept[i]
        else f"{'exact' if same_text[i] else 'near'} duplicate of {keys[rep[i]]} "
        f"(cluster of {sizes[label[i]]})"
        for i in range(n)
    ]
    dropped = ~kept
    return DedupResult(
        cluster_id=[keys[r] for r in rep],
        kept=kept,
        reason=reason,
        exact_duplicates=int((dropped & same_text).sum()),
        near_duplicates=int((dropped & ~same_text).sum()),
        clusters=int((sizes > 1).sum()),
        candidate_pairs=candidates,
    )


def dedup_frame(
    frame: pl.DataFrame,
    config: DedupConfig | None = None,
    text_column: str = "text",
    id_column: str = "id",
) -> tuple[pl.DataFrame, DedupResult]:
    """`frame` plus `cluster_id`, `kept` and `duplicate_reason` columns (no row removed)."""
    keys = frame.get_column(id_column).cast(pl.Utf8).to_list() if id_column in frame else None
    synthetic = (
        frame.get_column("is_synthetic").fill_null(True).to_list()
        if "is_synthetic" in frame
        else None
    )
    result = find_duplicates(frame.get_column(text_column).to_list(), keys, synthetic, config)
    out = frame.with_columns(
        pl.Series("cluster_id", result.cluster_id, dtype=pl.Utf8),
        pl.Series("kept", result.kept, dtype=pl.Boolean),
        pl.Series("duplicate_reason", result.reason, dtype=pl.Utf8),
    )
    return out, result
