"""Near-duplicate removal: exact duplicates of the normalised text, then MinHash LSH.

Texts are normalised (lower-cased, punctuation dropped, whitespace collapsed) and cut into
word n-gram shingles hashed to 64-bit ints with vectorised numpy. Signatures come from
`rensa` (Rust MinHash over the flat shingle-hash buffer; benchmarks/dedup_bench.py shows
the same F1 as a numpy MinHash at a fraction of its time); banding, candidate pairs,
Jaccard verification and clustering are numpy. Texts are sketched in chunks, keeping only
each row's exact-text key and (for the first row with each text) its signature, so memory
follows the signatures rather than the shingles of the whole corpus; a signature depends
only on its own row, so the result is the same as in one pass. Each cluster keeps one
representative (a human row if there is one, else the lowest key) and marks the others
`kept=False` with the cluster id, so a rephrasing that nearly copies its seed loses to the
seed whichever stage it came from.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import rensa

from synth_lib.curation.shingles import (
    HASH_MUL,
    group_ids,
    mix64,
    ngram_hashes,
    text_keys,
    tokenise,
    unique_counts,
    unique_pairs,
)

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

_MAX_ALL_PAIRS_BUCKET = 64
_VERIFY_CHUNK = 8192  # candidate pairs compared at a time: a few MB, reused
_BAND_BLOCK = 16384  # rows band-hashed at a time
CHUNK_ROWS = 2048  # rows sketched at a time: buffers of a few MB, reused chunk after chunk


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


def common_shingle_limit(n_texts: int, max_share: float) -> float:
    """A shingle in more texts than this is template, not content; inf when none can be."""
    limit = max(10.0, max_share * n_texts)
    return limit if limit < n_texts else np.inf


def drop_common_shingles(
    doc: np.ndarray, grams: np.ndarray, n_texts: int, max_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Leave out shingles present in more than `common_shingle_limit` texts."""
    limit = common_shingle_limit(n_texts, max_share)
    if limit == np.inf:
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
    # rensa hands rows out as lists only; array.array packs each faster than np.array
    flat = bytearray().join([array("I", row).tobytes() for row in matrix.to_rows()])
    return np.frombuffer(flat, dtype=np.uint32).reshape(n_docs, num_perm)


def _bucket_pairs(keys: np.ndarray) -> np.ndarray:
    """Index pairs (i < j) that share a key; huge buckets are chained instead of all-paired.

    Members of a bucket are taken in index order. Each key's low bits are replaced by its
    index and the result sorted by value (much faster than a stable argsort): equal keys
    end up adjacent in index order; the rare keys that only share their high bits are
    regrouped exactly. Buckets of one size are paired together."""
    bits = max(int(len(keys) - 1).bit_length(), 1)
    low = np.uint64((1 << bits) - 1)
    packed = keys & ~low
    packed |= np.arange(len(keys), dtype=np.uint64)
    packed.sort()
    same = (packed[1:] ^ packed[:-1]) <= low  # equal high bits
    if not same.any():
        return np.empty((0, 2), dtype=np.int64)
    in_bucket = np.zeros(len(keys), dtype=bool)
    in_bucket[1:] |= same
    in_bucket[:-1] |= same
    order = (packed[in_bucket] & low).astype(np.int64)
    sorted_keys = keys[order]
    same = sorted_keys[1:] == sorted_keys[:-1]
    high = packed[in_bucket] & ~low
    mixed = np.flatnonzero(same != (high[1:] == high[:-1]))
    if len(mixed):  # high-bit groups holding several keys: sort those by key, then index
        group = np.cumsum(np.concatenate([[True], high[1:] != high[:-1]])) - 1
        redo = np.flatnonzero(np.isin(group, group[mixed]))
        within = redo[np.lexsort((order[redo], sorted_keys[redo], group[redo]))]
        order[redo], sorted_keys[redo] = order[within], sorted_keys[within]
        same = sorted_keys[1:] == sorted_keys[:-1]
    edges = np.diff(np.concatenate([[False], same, [False]]).astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    sizes = ends - starts + 1
    pairs = []
    for size in unique_counts(sizes[sizes <= _MAX_ALL_PAIRS_BUCKET])[0].tolist():
        members = order[starts[sizes == size][:, None] + np.arange(size)]
        i, j = np.triu_indices(size, k=1)
        pairs.append(np.stack([members[:, i].ravel(), members[:, j].ravel()], axis=1))
    huge = sizes > _MAX_ALL_PAIRS_BUCKET
    for start, size in zip(starts[huge].tolist(), sizes[huge].tolist(), strict=True):
        members = order[start : start + size]
        pairs.append(np.stack([members[:-1], members[1:]], axis=1))
    return np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)


def lsh_candidates(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Unique pairs of rows that agree on all `rows` values of at least one band."""
    n = len(signatures)
    keys = np.empty((bands, n), dtype=np.uint64)  # band-major, as the buckets are read
    seeds = np.arange(1, bands + 1, dtype=np.uint64)
    for start in range(0, n, _BAND_BLOCK):  # blocks of rows: small temporaries, no page faults
        block = signatures[start : start + _BAND_BLOCK]
        key = np.broadcast_to(seeds, (len(block), bands))
        for col in range(rows):  # band b's col-th value is signature column b * rows + col
            key = mix64(key * HASH_MUL + block[:, col : bands * rows : rows].astype(np.uint64))
        keys[:, start : start + len(block)] = key.T
    found = _bucket_pairs(keys.ravel()) % n if n else np.empty((0, 2), dtype=np.int64)
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


@dataclass(frozen=True)
class Sketches:
    """What clustering needs of every row: its exact-text key and, for the first row with
    each normalised text that has any word (`rows`, ascending), its MinHash signature."""

    keys: np.ndarray
    rows: np.ndarray
    signatures: np.ndarray


def _first_rows(keys: np.ndarray) -> np.ndarray:
    """Mask of the rows whose key no earlier row has."""
    order = np.argsort(keys, kind="stable")
    new = np.ones(len(keys), dtype=bool)
    new[1:] = keys[order][1:] != keys[order][:-1]
    first = np.zeros(len(keys), dtype=bool)
    first[order[new]] = True
    return first


def _sketch_chunk(
    texts: Sequence[str | None] | pa.Array, config: DedupConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A chunk's exact-text keys, its rows that are the first with their text and have
    words, and their signatures. Independent of other chunks, so chunks run in threads."""
    tokens = tokenise(texts)
    keys = text_keys(tokens)
    local = np.flatnonzero(_first_rows(keys) & (tokens.lengths > 0))
    if not len(local):
        return keys, local, np.empty((0, config.num_perm), dtype=np.uint32)
    doc, grams = ngram_hashes(tokens, config.ngram)
    position = np.full(len(keys), -1, dtype=np.int64)
    position[local] = np.arange(len(local))
    doc = position[doc]
    keep = doc >= 0
    signatures = minhash_signatures(
        doc[keep], grams[keep], len(local), config.num_perm, config.seed
    )
    return keys, local, signatures


def sketch_chunks(
    chunks: Iterable[Sequence[str | None] | pa.Array], config: DedupConfig, threads: int = 1
) -> Sketches:
    """Sketches of texts given chunk by chunk (valid at `max_shingle_share` = 1.0).

    With `threads` > 1 chunks are hashed that many at a time (Arrow, numpy and rensa
    release the GIL for most of the work; on a busy machine one thread is faster). Chunks
    merge in order: a row whose text an earlier chunk already had loses its signature, as
    only the first row of each exact group is sketched in one pass."""
    keys, rows, signatures = [], [], []
    seen: set[int] = set()
    count = 0
    with ExitStack() as stack:
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            pool = stack.enter_context(ThreadPoolExecutor(threads))
            parts = pool.map(lambda chunk: _sketch_chunk(chunk, config), chunks)
        else:
            parts = (_sketch_chunk(chunk, config) for chunk in chunks)
        for chunk_keys, local, chunk_signatures in parts:
            unseen = np.fromiter(
                (k not in seen for k in chunk_keys[local].tolist()), bool, len(local)
            )
            seen.update(chunk_keys.tolist())
            keys.append(chunk_keys)
            rows.append(local[unseen] + count)
            signatures.append(chunk_signatures[unseen])
            count += len(chunk_keys)
    if not keys:
        return Sketches(
            np.empty(0, np.uint64), np.empty(0, np.int64), np.empty((0, config.num_perm), np.uint32)
        )
    return Sketches(np.concatenate(keys), np.concatenate(rows), np.concatenate(signatures))


def sketch_all(texts: Sequence[str | None], config: DedupConfig) -> Sketches:
    """Sketches from all texts at once: needed when `max_shingle_share` < 1, since which
    shingles are common is only known over the whole corpus."""
    tokens = tokenise(texts)
    keys = text_keys(tokens)
    unique_rows = np.flatnonzero(_first_rows(keys))
    doc, grams = ngram_hashes(tokens, config.ngram)
    keep = np.isin(doc, unique_rows)
    doc, grams = drop_common_shingles(
        doc[keep], grams[keep], len(unique_rows), config.max_shingle_share
    )
    sketched, _ = unique_counts(doc)
    doc = np.searchsorted(sketched, doc)
    signatures = (
        minhash_signatures(doc, grams, len(sketched), config.num_perm, config.seed)
        if len(sketched)
        else np.empty((0, config.num_perm), dtype=np.uint32)
    )
    return Sketches(keys=keys, rows=sketched.astype(np.int64), signatures=signatures)


def connected_labels(n: int, edges: np.ndarray) -> np.ndarray:
    """Component of each of `n` nodes under undirected `edges` (k, 2): its smallest node.

    Roots hook onto the smaller root across each edge, then paths are halved until every
    node points at its root; each round at least halves the roots of a component."""
    label = np.arange(n, dtype=np.int64)
    a, b = edges[:, 0], edges[:, 1]
    while len(a):
        la, lb = label[a], label[b]
        differ = la != lb
        a, b, la, lb = a[differ], b[differ], la[differ], lb[differ]
        if not len(a):
            break
        np.minimum.at(label, np.maximum(la, lb), np.minimum(la, lb))
        while True:
            up = label[label]
            if np.array_equal(up, label):
                break
            label = up
    return label


def cluster_sketches(
    sketches: Sketches,
    keys: Sequence[str] | None = None,
    is_synthetic: Sequence[bool] | None = None,
    config: DedupConfig | None = None,
) -> DedupResult:
    """Exact groups, verified LSH pairs and clusters from the sketches; one representative
    per cluster: the first row by (synthetic?, key), so a human seed beats any synthetic
    descendant and ties go to the lowest key, the same row on every rerun."""
    config = config or DedupConfig()
    n = len(sketches.keys)
    keys = [str(k) for k in keys] if keys is not None else [f"{i:012d}" for i in range(n)]
    synthetic = np.asarray(is_synthetic if is_synthetic is not None else [False] * n, dtype=bool)
    exact_group = group_ids(sketches.keys)
    first_of_group = np.full(exact_group.max() + 1 if n else 0, -1, dtype=np.int64)
    first_of_group[exact_group[::-1]] = np.arange(n)[::-1]
    exact_pairs = np.stack([first_of_group[exact_group], np.arange(n)], axis=1)
    exact_pairs = exact_pairs[exact_pairs[:, 0] != exact_pairs[:, 1]]

    near_pairs = np.empty((0, 2), dtype=np.int64)
    candidates = 0
    if len(sketches.rows) > 1:
        sig = sketches.signatures
        cand = lsh_candidates(sig, config.bands, config.rows)
        candidates = len(cand)
        verified = cand[estimated_jaccard(sig, cand) >= config.threshold]
        near_pairs = sketches.rows[verified]

    label = connected_labels(n, np.concatenate([exact_pairs, near_pairs]))
    key_rank = np.argsort(np.argsort(np.asarray(keys, dtype=object), kind="stable"))
    order = np.lexsort((key_rank, synthetic, label))
    first = np.ones(n, dtype=bool)
    first[1:] = label[order][1:] != label[order][:-1]
    rep_of_label = np.empty(label.max() + 1 if n else 0, dtype=np.int64)
    rep_of_label[label[order][first]] = order[first]
    rep = rep_of_label[label] if n else np.empty(0, dtype=np.int64)
    same_text = exact_group == exact_group[rep] if n else np.empty(0, dtype=bool)
    return cluster_result(keys, label, rep, same_text, candidates)


def sketch_texts(
    texts: Sequence[str | None], config: DedupConfig, chunk_rows: int = CHUNK_ROWS
) -> Sketches:
    """Chunked sketches when shingle filtering is off (the default), else one pass."""
    if config.max_shingle_share < 1.0:
        return sketch_all(texts, config)
    return sketch_chunks(
        (texts[i : i + chunk_rows] for i in range(0, len(texts), chunk_rows)), config
    )


def find_duplicates(
    texts: Sequence[str | None],
    keys: Sequence[str] | None = None,
    is_synthetic: Sequence[bool] | None = None,
    config: DedupConfig | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> DedupResult:
    """Cluster exact and near duplicates; keep one representative per cluster.

    The representative is the first row by (synthetic?, key): a human seed beats any
    synthetic descendant, and ties go to the lowest key so reruns choose the same row.
    """
    config = config or DedupConfig()
    return cluster_sketches(sketch_texts(texts, config, chunk_rows), keys, is_synthetic, config)


def cluster_result(
    keys: Sequence[str],
    label: np.ndarray,
    rep: np.ndarray,
    same_text: np.ndarray,
    candidate_pairs: int,
) -> DedupResult:
    """Kept flags, reasons and counts from each row's cluster label and representative row
    (`same_text`: the row's exact text equals its representative's). Shared by the one-shot
    clustering and the incremental band store, so both report alike."""
    n = len(keys)
    kept = rep == np.arange(n)
    sizes = np.bincount(label) if n else np.empty(0, dtype=np.int64)
    cluster_id = [keys[r] for r in rep.tolist()]
    reason: list[str | None] = [None] * n
    dropped = ~kept
    for i, exact, size in zip(
        np.flatnonzero(dropped).tolist(),
        same_text[dropped].tolist(),
        sizes[label[dropped]].tolist(),
        strict=True,
    ):
        kind = "exact" if exact else "near"
        reason[i] = f"{kind} duplicate of {cluster_id[i]} (cluster of {size})"
    return DedupResult(
        cluster_id=cluster_id,
        kept=kept,
        reason=reason,
        exact_duplicates=int((dropped & same_text).sum()),
        near_duplicates=int((dropped & ~same_text).sum()),
        clusters=int((sizes > 1).sum()),
        candidate_pairs=candidate_pairs,
    )


def dedup_frame(
    frame: pl.DataFrame,
    config: DedupConfig | None = None,
    text_column: str = "text",
    id_column: str = "id",
) -> tuple[pl.DataFrame, DedupResult]:
    """`frame` plus `cluster_id`, `kept` and `duplicate_reason` columns (no row removed)."""
    import polars as pl

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
