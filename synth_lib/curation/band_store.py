"""A persisted MinHash LSH index: near-duplicates across shards without recomputing old ones.

Each shard added stores, per row, its id, whether it is synthetic, its exact-text key, its
MinHash signature and its LSH band keys (`rows/<shard>.parquet`), plus the duplicate edges
it found against itself and every shard added before it (`edges/<shard>.parquet`). A new
shard is hashed once and its band keys are joined against the stored ones, shard by shard,
so memory is bounded by one shard plus one stored shard's band keys. Clustering is then
the connected components of all stored edges and the representative rule of `dedup`
(a human row before a synthetic one, then the lowest id), so the result equals
`find_duplicates` over the same rows in one shot (`tests/test_shards_curation.py`), for
`max_shingle_share = 1.0`; below that, shingles common in the first shard added are
frozen as the stop list (a one-shot run would recompute it over all rows), and
`rebuild` starts over. Files are written to a temporary name and renamed: a step killed
mid-write leaves the index as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from synth_lib.curation.dedup import (
    DedupConfig,
    DedupResult,
    cluster_result,
    drop_common_shingles,
    lsh_candidates,
    minhash_signatures,
)
from synth_lib.curation.shingles import HASH_MUL, mix64, ngram_hashes, text_keys, tokenise


@dataclass(frozen=True)
class AddStats:
    """What adding one shard cost and found."""

    rows: int
    within_pairs: int
    cross_pairs: int
    shards_compared: int
    cached: bool = False


def _write(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.write_parquet(staging)
    os.replace(staging, path)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64 keys; equal key in a band = an LSH candidate (as `lsh_candidates`)."""
    n = len(signatures)
    block = signatures[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    key = np.broadcast_to(np.arange(1, bands + 1, dtype=np.uint64), (n, bands))
    for col in range(rows):
        key = mix64(key * HASH_MUL + block[:, :, col])
    return np.ascontiguousarray(key)


class BandStore:
    """MinHash LSH index over every shard added, under `root/<digest of the config>/`."""

    def __init__(self, root: str | Path, config: DedupConfig) -> None:
        self.config = config
        digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()
        self.root = Path(root, digest[:16])
        self._stop: np.ndarray | None = None

    def _rows_path(self, shard: str) -> Path:
        return self.root / "rows" / f"{shard}.parquet"

    def _edges_path(self, shard: str) -> Path:
        return self.root / "edges" / f"{shard}.parquet"

    def shards(self) -> dict[str, str]:
        """{shard: digest of its ids} for every shard in the index, in the order added."""
        path = self.root / "shards.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _save_shards(self, shards: dict[str, str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".shards.{os.getpid()}.tmp"
        staging.write_text(json.dumps(shards))
        os.replace(staging, self.root / "shards.json")

    def rebuild(self) -> None:
        """Forget everything (e.g. after the stop list should change)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def _stop_shingles(self, doc: np.ndarray, grams: np.ndarray, n: int) -> np.ndarray:
        """The frozen stop list: computed from the first shard added, then read back."""
        path = self.root / "stop_shingles.npy"
        if self._stop is None and path.is_file():
            self._stop = np.load(path)
        if self._stop is None:
            _, kept = drop_common_shingles(doc, grams, n, self.config.max_shingle_share)
            self._stop = np.setdiff1d(np.unique(grams), np.unique(kept))
            self.root.mkdir(parents=True, exist_ok=True)
            np.save(self.root / f".stop.{os.getpid()}.npy", self._stop)
            os.replace(self.root / f".stop.{os.getpid()}.npy", path)
        return self._stop

    def _signatures(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(exact keys, signatures, sketched?) of `texts`; unsketched rows have no shingle."""
        tokens = tokenise(texts)
        exact = text_keys(tokens)
        doc, grams = ngram_hashes(tokens, self.config.ngram)
        if self.config.max_shingle_share < 1.0:
            keep = ~np.isin(grams, self._stop_shingles(doc, grams, len(texts)))
            doc, grams = doc[keep], grams[keep]
        sig = np.full((len(texts), self.config.num_perm), np.iinfo(np.uint32).max, np.uint32)
        present = np.unique(doc)
        if len(present):
            dense = np.searchsorted(present, doc)
            sig[present] = minhash_signatures(
                dense, grams, len(present), self.config.num_perm, self.config.seed
            )
        sketched = np.zeros(len(texts), dtype=bool)
        sketched[present] = True
        return exact, sig, sketched

    def add(self, shard: str, ids: list[str], texts: list[str], synthetic: list[bool]) -> AddStats:
        """Index a shard (replacing it if its ids changed); returns what it compared."""
        digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
        known = self.shards()
        if known.get(shard) == digest:
            return AddStats(len(ids), 0, 0, 0, cached=True)
        known.pop(shard, None)
        exact, sig, sketched = self._signatures(texts)
        bands = band_keys(sig, self.config.bands, self.config.rows)
        # a row without shingles is never a near-duplicate: band keys nothing else can have
        bands[~sketched] = _unique_keys([i for i, s in zip(ids, sketched, strict=True) if not s])
        edges = [self._within(shard, digest, exact, sig, sketched)]
        for earlier, earlier_digest in known.items():
            edges.append(self._across(shard, (earlier, earlier_digest), exact, sig, bands))
        found = pl.concat(edges)
        rows = pl.DataFrame(
            {
                "id": ids,
                "synthetic": synthetic,
                "exact": exact,
                "sig": sig,
                "bands": bands,
            },
            schema={
                "id": pl.Utf8,
                "synthetic": pl.Boolean,
                "exact": pl.UInt64,
                "sig": pl.Array(pl.UInt32, self.config.num_perm),
                "bands": pl.Array(pl.UInt64, self.config.bands),
            },
        )
        _write(rows, self._rows_path(shard))
        _write(found, self._edges_path(shard))
        self._save_shards({**known, shard: digest})
        within = edges[0].height
        return AddStats(len(ids), within, found.height - within, len(known))

    def _verified(self, sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
        return (sig_a == sig_b).mean(axis=1) >= self.config.threshold

    def _within(
        self, shard: str, digest: str, exact: np.ndarray, sig: np.ndarray, sketched: np.ndarray
    ) -> pl.DataFrame:
        n = len(exact)
        pairs = lsh_candidates(sig, self.config.bands, self.config.rows) if n > 1 else []
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        pairs = pairs[sketched[pairs[:, 0]] & sketched[pairs[:, 1]]]
        keep = self._verified(sig[pairs[:, 0]], sig[pairs[:, 1]]) if len(pairs) else []
        same = _exact_pairs(exact)
        both = np.concatenate([pairs[np.asarray(keep, dtype=bool)], same])
        return _edge_frame(both[:, 0], (shard, digest), both[:, 1])

    def _across(
        self,
        shard: str,
        earlier: tuple[str, str],
        exact: np.ndarray,
        sig: np.ndarray,
        bands: np.ndarray,
    ) -> pl.DataFrame:
        n = len(exact)
        old = pl.read_parquet(self._rows_path(earlier[0]), columns=["exact", "bands"])
        n_bands = self.config.bands
        new_keys = pl.DataFrame(
            {"key": bands.ravel(), "i": np.repeat(np.arange(n), n_bands)}
        ).with_columns(band=pl.int_range(pl.len()) % n_bands)
        old_keys = (
            old.with_row_index("j")
            .select("j", pl.col("bands").arr.to_list().alias("key"))
            .explode("key")
            .with_columns(band=pl.int_range(pl.len()).over("j"))
        )
        pairs = new_keys.join(old_keys, on=["band", "key"]).select("i", "j").unique()
        exact_hits = (
            pl.DataFrame({"exact": exact, "i": np.arange(n)})
            .join(old.with_row_index("j").select("j", "exact"), on="exact")
            .select("i", "j")
        )
        if pairs.height:
            old_sig = pl.read_parquet(self._rows_path(earlier[0]), columns=["sig"])
            old_sig = old_sig.get_column("sig").to_numpy()
            i, j = pairs["i"].to_numpy(), pairs["j"].to_numpy()
            pairs = pairs.filter(pl.Series(self._verified(sig[i], old_sig[j])))
        found = pl.concat([pairs, exact_hits]).unique()
        return _edge_frame(found["i"].to_numpy(), earlier, found["j"].to_numpy())

    def result(
        self, only: list[str] | None = None
    ) -> tuple[list[str], DedupResult, dict[str, int]]:
        """Clustering over every row of the index's shards (or `only`).

        Returns the ids in index order, the clustering, and where each shard's rows start.
        """
        digests = self.shards()
        known = [s for s in digests if only is None or s in only]
        rows = [
            pl.read_parquet(self._rows_path(s), columns=["id", "synthetic", "exact"]) for s in known
        ]
        table = (
            pl.concat(rows)
            if rows
            else pl.DataFrame(schema={"id": pl.Utf8, "synthetic": pl.Boolean, "exact": pl.UInt64})
        )
        sizes = np.cumsum([0] + [r.height for r in rows])
        offsets = {s: int(sizes[n]) for n, s in enumerate(known)}
        pairs = []
        for s in known:
            edges = pl.read_parquet(self._edges_path(s))
            current = [(name, digests[name], offsets[name]) for name in known]
            lookup = pl.DataFrame(
                current,
                schema={"b_shard": pl.Utf8, "b_digest": pl.Utf8, "b_offset": pl.Int64},
                orient="row",
            )
            edges = edges.join(lookup, on=["b_shard", "b_digest"])
            pairs.append(
                np.stack(
                    [edges["a_row"].to_numpy() + offsets[s], (edges["b_row"] + edges["b_offset"])],
                    axis=1,
                )
            )
        ids = table.get_column("id").to_list()
        clusters = cluster(
            ids,
            table.get_column("synthetic").to_numpy(),
            table.get_column("exact").to_numpy(),
            np.concatenate(pairs).astype(np.int64) if pairs else np.empty((0, 2), np.int64),
        )
        return ids, clusters, offsets


def _unique_keys(ids: list[str]) -> np.ndarray:
    """(len(ids), 1) uint64 keys derived from each id: no collision with real band keys."""
    keys = [int.from_bytes(hashlib.sha256(i.encode()).digest()[:8], "little") for i in ids]
    return np.asarray(keys, dtype=np.uint64).reshape(-1, 1)


def _exact_pairs(exact: np.ndarray) -> np.ndarray:
    """(first row, row) for every row whose exact key repeats an earlier row's."""
    order = np.argsort(exact, kind="stable")
    sorted_keys = exact[order]
    first = np.ones(len(exact), dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    leader = order[np.maximum.accumulate(np.where(first, np.arange(len(exact)), 0))]
    pairs = np.stack([leader, order], axis=1)
    return pairs[pairs[:, 0] != pairs[:, 1]].astype(np.int64).reshape(-1, 2)


def _edge_frame(a_row: np.ndarray, b: tuple[str, str], b_row: np.ndarray) -> pl.DataFrame:
    """Edges from rows of the shard being added to rows of shard `b` (name, digest)."""
    return pl.DataFrame(
        {
            "a_row": np.asarray(a_row, dtype=np.int64),
            "b_shard": [b[0]] * len(a_row),
            "b_digest": [b[1]] * len(a_row),
            "b_row": np.asarray(b_row, dtype=np.int64),
        },
        schema={"a_row": pl.Int64, "b_shard": pl.Utf8, "b_digest": pl.Utf8, "b_row": pl.Int64},
    )


def cluster(
    keys: list[str], synthetic: np.ndarray, exact: np.ndarray, edges: np.ndarray
) -> DedupResult:
    """Connected components of `edges`; per component the first row by (synthetic, key)."""
    n = len(keys)
    if not n:
        return DedupResult([], np.zeros(0, dtype=bool), [], 0, 0, 0, 0)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    key_rank = np.argsort(np.argsort(np.asarray(keys, dtype=object), kind="stable"))
    order = np.lexsort((key_rank, synthetic.astype(bool), label))
    first = np.ones(n, dtype=bool)
    first[1:] = label[order][1:] != label[order][:-1]
    rep_of_label = np.empty(label.max() + 1, dtype=np.int64)
    rep_of_label[label[order][first]] = order[first]
    rep = rep_of_label[label]
    return cluster_result(keys, label, rep, exact == exact[rep], len(edges))
