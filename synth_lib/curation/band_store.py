"""A persisted MinHash LSH index: near-duplicates across shards without recomputing old ones.

`manifest.json` lists the shards in the order added and, for each, the files of its current
version: `rows/` (per row its id, whether it is synthetic, its exact-text key, its MinHash
signature and LSH band keys), `edges/` (the duplicate edges it found against itself and
every shard before it) and, below `max_shingle_share = 1`, `shingles/` (its distinct
(row, shingle) pairs). A new shard is hashed once and its band keys are joined against the
stored ones, shard by shard, so memory is bounded by one shard plus one stored shard.
Clustering is the connected components of all stored edges and the representative rule of
`dedup` (a human row before a synthetic one, then the lowest id), so the result equals
`find_duplicates` over the same rows in one shot (`tests/test_shards_curation.py`,
`tests/test_band_store_stoplist.py`).

That holds for any `max_shingle_share`. Below 1, the stop list (shingles in more than
max(10, share * n) of the n distinct texts, the rule of `drop_common_shingles`) is
recomputed at every change from persisted counts: `counts/df` (per shingle, the distinct
exact texts that have it) and `counts/refs` (per exact text, the shards holding it, so a
text copied across shards counts once); a shard added, replaced or dropped (`retain`) adds
or subtracts only its own texts. A stored shard with a shingle whose stop status changed
is re-signed from its stored shingles (no text is tokenised again) and the edges it is
part of are recomputed; a shard the change does not reach keeps its files
(`AddStats.resigned` names the re-signed ones).

`counts/df` is linear in the index's distinct shingles (about 100M at 1M rows), so it is
split into `df_buckets` files by the top bits of the shingle hash. A change merges its
shard's shingles bucket by bucket and, since the limit follows the total text count,
scans every bucket for the stop list: time is linear in the table, memory is one bucket
plus one shard's shingles.

Every file is written under a fresh name and the manifest replaced last, one writer at a
time: a step killed mid-change leaves the index as it was (and files nothing names).
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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
    common_shingle_limit,
    lsh_candidates,
    minhash_signatures,
)
from synth_lib.curation.shingles import (
    HASH_MUL,
    mix64,
    ngram_hashes,
    text_keys,
    tokenise,
    unique_counts,
    unique_pairs,
)

# bumped when the files change meaning, so an older index is never read as this one
_FORMAT = 3
_MAX = np.iinfo(np.uint32).max
_COUNTS_SCHEMA = {"key": pl.UInt64, "count": pl.UInt32}
Counts = tuple[np.ndarray, np.ndarray]  # sorted distinct uint64 keys, their int64 counts
_DF_BUCKETS = 64
_EDGE_SCHEMA = {"a_row": pl.Int64, "b_shard": pl.Utf8, "b_version": pl.Utf8, "b_row": pl.Int64}


@dataclass(frozen=True)
class AddStats:
    """What adding one shard cost and found; `resigned`: stored shards signed again
    because the stop list changed where they have shingles."""

    rows: int
    within_pairs: int
    cross_pairs: int
    shards_compared: int
    cached: bool = False
    resigned: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Shard:
    """A shard being added: its rows and their distinct (row, shingle) pairs."""

    name: str
    digest: str
    ids: list[str]
    synthetic: list[bool]
    exact: np.ndarray
    row: np.ndarray
    gram: np.ndarray


@dataclass(frozen=True)
class _Signed:
    """One shard version in memory (`version`: its rows file): what edges are computed from."""

    name: str
    version: str
    exact: np.ndarray
    sig: np.ndarray
    bands: np.ndarray
    sketched: np.ndarray


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

    def __init__(
        self, root: str | Path, config: DedupConfig, df_buckets: int = _DF_BUCKETS
    ) -> None:
        """`df_buckets` (a power of two): files `counts/df` is split into, the unit of memory
        of a change below `max_shingle_share = 1`."""
        if df_buckets < 1 or df_buckets & (df_buckets - 1):
            raise ValueError(f"df_buckets must be a power of two, not {df_buckets}")
        self.config = config
        self.df_buckets = df_buckets
        layout = {"format": _FORMAT, "df_buckets": df_buckets, **asdict(config)}
        blob = json.dumps(layout, sort_keys=True)
        self.root = Path(root, hashlib.sha256(blob.encode()).hexdigest()[:16])
        self._stops = config.max_shingle_share < 1.0

    def _manifest(self) -> dict:
        path = self.root / "manifest.json"
        if path.is_file():
            return json.loads(path.read_text())
        return {"shards": {}, "df": [None] * self.df_buckets, "refs": None, "stop": None}

    def _commit(self, manifest: dict) -> None:
        staging = self.root / f".manifest.{os.getpid()}.tmp"
        staging.write_text(json.dumps(manifest))
        os.replace(staging, self.root / "manifest.json")

    def _write(self, frame: pl.DataFrame, kind: str, name: str) -> str:
        """Write `frame` under a fresh name in `kind/`; returns its path relative to root."""
        relative = f"{kind}/{name}.{uuid.uuid4().hex[:12]}.parquet"
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp")
        frame.write_parquet(staging)
        os.replace(staging, path)
        return relative

    def _read(self, relative: str, columns: list[str] | None = None) -> pl.DataFrame:
        return pl.read_parquet(self.root / relative, columns=columns)

    def shards(self) -> dict[str, str]:
        """{shard: digest of its ids} for every shard in the index, in the order added."""
        return {name: entry["digest"] for name, entry in self._manifest()["shards"].items()}

    def rebuild(self) -> None:
        """Forget everything."""
        shutil.rmtree(self.root, ignore_errors=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time: a change reads the manifest, writes files, then replaces it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def add(self, shard: str, ids: list[str], texts: list[str], synthetic: list[bool]) -> AddStats:
        """Index a shard (replacing it if its ids changed); returns what it compared."""
        digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
        with self._locked():
            before = self._manifest()
            if before["shards"].get(shard, {}).get("digest") == digest:
                return AddStats(len(ids), 0, 0, 0, cached=True)
            tokens = tokenise(texts)
            row, gram = ngram_hashes(tokens, self.config.ngram)
            if self._stops:  # document frequencies count each text's distinct shingles
                row, gram = unique_pairs(row, gram)
            new = _Shard(shard, digest, ids, synthetic, text_keys(tokens), row, gram)
            gone = [shard] if shard in before["shards"] else []
            return self._change(before, gone, new)

    def retain(self, shards: list[str]) -> tuple[str, ...]:
        """Drop every shard not in `shards` (their texts leave the stop list's counts too, as
        a one-shot run over the rest would have it); returns the shards re-signed."""
        with self._locked():
            before = self._manifest()
            gone = [s for s in before["shards"] if s not in shards]
            return self._change(before, gone, None).resigned if gone else ()

    def _change(self, before: dict, gone: list[str], new: _Shard | None) -> AddStats:
        """Remove `gone`, add `new`, re-sign what the new stop list reaches, redo its edges,
        then commit the manifest and delete the files it no longer names."""
        manifest = copy.deepcopy(before)
        entries: dict[str, dict] = manifest["shards"]
        old = [entries.pop(s) for s in gone]
        stop, resigned = None, []
        if self._stops:
            stop, changed = self._update_counts(manifest, old, new)
            for name in list(entries) if len(changed) else []:
                if self._touches(entries[name], changed):
                    entries[name] = self._resign(name, entries[name], stop)
                    resigned.append(name)
        fresh = {}
        if new is not None:
            signed = self._sign(
                new.name, new.ids, new.synthetic, new.exact, new.row, new.gram, stop
            )
            entries[new.name] = {"digest": new.digest, "rows": signed.version}
            if self._stops:
                pairs = pl.DataFrame(
                    {"row": new.row, "gram": new.gram}, schema={"row": pl.Int64, "gram": pl.UInt64}
                )
                entries[new.name]["shingles"] = self._write(pairs, "shingles", new.name)
            fresh[new.name] = signed
        within, cross = self._update_edges(entries, fresh, set(resigned))
        self._commit(manifest)
        self._forget(before, manifest)
        rows = len(new.ids) if new else 0
        return AddStats(rows, within, cross, len(entries) - 1, resigned=tuple(resigned))

    def _update_counts(
        self, manifest: dict, old: list[dict], new: _Shard | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Swap the removed shards' texts for the new shard's in the document frequencies;
        returns the new stop list and the shingles whose stop status changed.

        The holder counts come first (they give the text total, hence the limit); then each
        shard's shingles are merged into the df buckets in turn, the last pass also
        collecting the stop list, so one shard's shingles are in memory at a time."""
        refs = self._counts(manifest["refs"])
        previous = self._counts(manifest["stop"])[0]
        steps: list[tuple[dict | _Shard, np.ndarray, int]] = []
        for entry in old:
            exact = self._read(entry["rows"], ["exact"]).get_column("exact").to_numpy()
            refs, flipped = _hold(refs, exact, -1)
            steps.append((entry, flipped, -1))
        if new is not None:
            refs, flipped = _hold(refs, new.exact, 1)
            steps.append((new, flipped, 1))
        texts = len(refs[0])
        threshold = common_shingle_limit(texts, self.config.max_shingle_share)
        buckets, scratch = list(manifest["df"]), set()
        stop: Counts = (np.empty(0, np.uint64), np.empty(0, np.int64))
        for k, (source, rows, sign) in enumerate(steps):  # a change has at least one shard
            if isinstance(source, dict):
                pairs = self._read(source["shingles"])
                row, gram = pairs["row"].to_numpy(), pairs["gram"].to_numpy()
            else:
                row, gram = source.row, source.gram
            grams, times = unique_counts(gram[np.isin(row, rows)])
            last = threshold if k == len(steps) - 1 else None
            buckets, stop = self._merge_buckets(
                buckets, grams, sign * times.astype(np.int64), last, scratch
            )
        manifest["df"] = buckets
        for kind, counts in (("refs", refs), ("stop", stop)):
            frame = pl.DataFrame({"key": counts[0], "count": counts[1]}, schema=_COUNTS_SCHEMA)
            manifest[kind] = self._write(frame, "counts", kind)
        return stop[0], np.setxor1d(previous, stop[0])

    def _merge_buckets(
        self,
        buckets: list[str | None],
        grams: np.ndarray,
        delta: np.ndarray,
        threshold: float | None,
        scratch: set[str],
    ) -> tuple[list[str | None], Counts]:
        """`delta` added at the sorted distinct `grams`, one df bucket in memory at a time;
        a bucket `grams` miss keeps its file. With a `threshold`, every bucket is read and the
        shingles counted in more texts are returned (the stop list). `scratch`: files written
        by this change, deleted as soon as a later pass supersedes them (nothing names them)."""
        bits = self.df_buckets.bit_length() - 1
        which = grams >> np.uint64(64 - bits) if bits else np.zeros(len(grams), np.uint64)
        bounds = np.searchsorted(which, np.arange(self.df_buckets + 1, dtype=np.uint64))
        out: list[str | None] = []
        stop_keys, stop_counts = [], []
        for b, relative in enumerate(buckets):
            lo, hi = bounds[b], bounds[b + 1]
            if lo == hi and threshold is None:
                out.append(relative)
                continue
            counts = self._counts(relative)
            if lo < hi:
                counts, _ = _merge(counts, grams[lo:hi], delta[lo:hi])
                if relative in scratch:
                    (self.root / relative).unlink(missing_ok=True)
                relative = None
                if len(counts[0]):
                    frame = pl.DataFrame(
                        {"key": counts[0], "count": counts[1]}, schema=_COUNTS_SCHEMA
                    )
                    relative = self._write(frame, "counts", f"df-{b:04d}")
                    scratch.add(relative)
            if threshold is not None:
                common = counts[1] > threshold
                stop_keys.append(counts[0][common])
                stop_counts.append(counts[1][common])
            out.append(relative)
        if not stop_keys:
            return out, (np.empty(0, np.uint64), np.empty(0, np.int64))
        return out, (np.concatenate(stop_keys), np.concatenate(stop_counts))

    def _counts(self, relative: str | None) -> Counts:
        if not relative:
            return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
        frame = self._read(relative)
        count = frame.get_column("count").to_numpy().astype(np.int64)  # merged with signs
        return frame.get_column("key").to_numpy(), count

    def _touches(self, entry: dict, changed: np.ndarray) -> bool:
        """Whether a stored shard has a shingle whose stop status changed."""
        found = pl.scan_parquet(self.root / entry["shingles"]).select(
            pl.col("gram").is_in(pl.Series(changed, dtype=pl.UInt64)).any()
        )
        return bool(found.collect().item())

    def _resign(self, name: str, entry: dict, stop: np.ndarray) -> dict:
        """The entry of `name` signed again under `stop`, from its stored shingles."""
        rows = self._read(entry["rows"], ["id", "synthetic", "exact"])
        pairs = self._read(entry["shingles"])
        signed = self._sign(
            name,
            rows.get_column("id").to_list(),
            rows.get_column("synthetic").to_list(),
            rows.get_column("exact").to_numpy(),
            pairs.get_column("row").to_numpy(),
            pairs.get_column("gram").to_numpy(),
            stop,
        )
        return {**entry, "rows": signed.version}

    def _sign(
        self,
        shard: str,
        ids: list[str],
        synthetic: list[bool],
        exact: np.ndarray,
        row: np.ndarray,
        gram: np.ndarray,
        stop: np.ndarray | None,
    ) -> _Signed:
        """Signatures and band keys of a shard's rows from their (row, shingle) pairs, written
        to a fresh rows file (its path is the version); rows left without shingles are never
        near-duplicates: their band keys are ones nothing else can have."""
        if stop is not None and len(stop):
            keep = ~np.isin(gram, stop)
            row, gram = row[keep], gram[keep]
        n, cfg = len(ids), self.config
        sig = np.full((n, cfg.num_perm), _MAX, np.uint32)
        present = np.unique(row)
        if len(present):
            dense = np.searchsorted(present, row)
            sig[present] = minhash_signatures(dense, gram, len(present), cfg.num_perm, cfg.seed)
        sketched = np.zeros(n, dtype=bool)
        sketched[present] = True
        bands = band_keys(sig, cfg.bands, cfg.rows)
        bands[~sketched] = _unique_keys([i for i, s in zip(ids, sketched, strict=True) if not s])
        frame = pl.DataFrame(
            {
                "id": ids,
                "synthetic": synthetic,
                "exact": exact,
                "sketched": sketched,
                "sig": sig,
                "bands": bands,
            },
            schema={
                "id": pl.Utf8,
                "synthetic": pl.Boolean,
                "exact": pl.UInt64,
                "sketched": pl.Boolean,
                "sig": pl.Array(pl.UInt32, cfg.num_perm),
                "bands": pl.Array(pl.UInt64, cfg.bands),
            },
        )
        relative = self._write(frame, "rows", shard)
        return _Signed(shard, relative, exact, sig, bands, sketched)

    def _load(self, name: str, entry: dict) -> _Signed:
        rows = self._read(entry["rows"], ["exact", "sketched", "sig", "bands"])
        return _Signed(
            name,
            entry["rows"],
            rows.get_column("exact").to_numpy(),
            rows.get_column("sig").to_numpy(),
            rows.get_column("bands").to_numpy(),
            rows.get_column("sketched").to_numpy(),
        )

    def _update_edges(
        self, entries: dict[str, dict], fresh: dict[str, _Signed], resigned: set[str]
    ) -> tuple[int, int]:
        """Recompute the edges a new or re-signed shard is part of; returns the last shard's
        within and cross edge counts. Each pair's edges live with the later shard."""
        redo = resigned | set(fresh)
        order = list(entries)
        within = cross = 0
        for k, name in enumerate(order):
            earlier = order[:k]
            against = earlier if name in redo else [e for e in earlier if e in redo]
            if name not in redo and not against:
                continue
            me = fresh.get(name) or self._load(name, entries[name])
            if name in redo:
                found = [self._within(me)]
            else:  # keep the edges to shards whose signatures did not change
                current = pl.DataFrame(
                    [(e, entries[e]["rows"]) for e in earlier if e not in redo]
                    + [(name, me.version)],
                    schema={"b_shard": pl.Utf8, "b_version": pl.Utf8},
                    orient="row",
                )
                stored = self._read(entries[name]["edges"])
                found = [stored.join(current, on=["b_shard", "b_version"])]
            found += [self._across(me, e, entries[e]) for e in against]
            edges = pl.concat(found).select(list(_EDGE_SCHEMA))
            entries[name]["edges"] = self._write(edges, "edges", name)
            if name in fresh:
                within = found[0].height
                cross = edges.height - within
        return within, cross

    def _verified(self, sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
        return (sig_a == sig_b).mean(axis=1) >= self.config.threshold

    def _within(self, me: _Signed) -> pl.DataFrame:
        n = len(me.exact)
        pairs = lsh_candidates(me.sig, self.config.bands, self.config.rows) if n > 1 else []
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        pairs = pairs[me.sketched[pairs[:, 0]] & me.sketched[pairs[:, 1]]]
        keep = self._verified(me.sig[pairs[:, 0]], me.sig[pairs[:, 1]]) if len(pairs) else []
        same = _exact_pairs(me.exact)
        both = np.concatenate([pairs[np.asarray(keep, dtype=bool)], same])
        return _edge_frame(both[:, 0], (me.name, me.version), both[:, 1])

    def _across(self, me: _Signed, earlier: str, entry: dict) -> pl.DataFrame:
        n = len(me.exact)
        old = self._read(entry["rows"], ["exact", "bands"])
        n_bands = self.config.bands
        new_keys = pl.DataFrame(
            {"key": me.bands.ravel(), "i": np.repeat(np.arange(n), n_bands)}
        ).with_columns(band=pl.int_range(pl.len()) % n_bands)
        old_keys = (
            old.with_row_index("j")
            .select("j", pl.col("bands").arr.to_list().alias("key"))
            .explode("key")
            .with_columns(band=pl.int_range(pl.len()).over("j"))
        )
        pairs = new_keys.join(old_keys, on=["band", "key"]).select("i", "j").unique()
        exact_hits = (
            pl.DataFrame({"exact": me.exact, "i": np.arange(n)})
            .join(old.with_row_index("j").select("j", "exact"), on="exact")
            .select("i", "j")
        )
        if pairs.height:
            old_sig = self._read(entry["rows"], ["sig"]).get_column("sig").to_numpy()
            i, j = pairs["i"].to_numpy(), pairs["j"].to_numpy()
            pairs = pairs.filter(pl.Series(self._verified(me.sig[i], old_sig[j])))
        found = pl.concat([pairs, exact_hits]).unique()
        return _edge_frame(found["i"].to_numpy(), (earlier, entry["rows"]), found["j"].to_numpy())

    def _forget(self, before: dict, after: dict) -> None:
        """Delete the files the previous manifest named and the new one no longer does."""
        for path in _files(before) - _files(after):
            (self.root / path).unlink(missing_ok=True)

    def result(
        self, only: list[str] | None = None
    ) -> tuple[list[str], DedupResult, dict[str, int]]:
        """Clustering over every row of the index's shards (or `only`).

        Returns the ids in index order, the clustering, and where each shard's rows start.
        """
        entries = self._manifest()["shards"]
        known = [s for s in entries if only is None or s in only]
        rows = [self._read(entries[s]["rows"], ["id", "synthetic", "exact"]) for s in known]
        table = (
            pl.concat(rows)
            if rows
            else pl.DataFrame(schema={"id": pl.Utf8, "synthetic": pl.Boolean, "exact": pl.UInt64})
        )
        sizes = np.cumsum([0] + [r.height for r in rows])
        offsets = {s: int(sizes[n]) for n, s in enumerate(known)}
        lookup = pl.DataFrame(
            [(name, entries[name]["rows"], offsets[name]) for name in known],
            schema={"b_shard": pl.Utf8, "b_version": pl.Utf8, "b_offset": pl.Int64},
            orient="row",
        )
        pairs = []
        for s in known:
            edges = self._read(entries[s]["edges"]).join(lookup, on=["b_shard", "b_version"])
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


def _files(manifest: dict) -> set[str]:
    named = {manifest[k] for k in ("refs", "stop") if manifest.get(k)}
    named |= {path for path in manifest.get("df") or [] if path}
    for entry in manifest["shards"].values():
        named |= {entry[k] for k in ("rows", "edges", "shingles") if entry.get(k)}
    return named


def _merge(counts: Counts, keys: np.ndarray, delta: np.ndarray) -> tuple[Counts, np.ndarray]:
    """`counts` plus `delta` at the sorted distinct `keys`, zeros dropped; also the counts
    `keys` had before. A binary search and one insert: no sort of the whole table."""
    known, value = counts
    at = np.searchsorted(known, keys)
    hit = at < len(known)
    hit[hit] = known[at[hit]] == keys[hit]
    before = np.zeros(len(keys), dtype=np.int64)
    before[hit] = value[at[hit]]
    value = value.copy()
    value[at[hit]] += delta[hit]
    miss = ~hit
    known = np.insert(known, at[miss], keys[miss])
    value = np.insert(value, at[miss], delta[miss])
    keep = value > 0
    return (known[keep], value[keep]), before


def _hold(refs: Counts, exact: np.ndarray, sign: int) -> tuple[Counts, np.ndarray]:
    """Holder counts after a shard's texts come in (+1) or go (-1), and the shard's rows
    whose shingles count: a text counts only when its first holder arrives or its last goes."""
    keys, first = np.unique(exact, return_index=True)
    refs, held = _merge(refs, keys, np.full(len(keys), sign, dtype=np.int64))
    flipped = held == 0 if sign > 0 else held == 1
    return refs, first[flipped]


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
    """Edges from rows of one shard to rows of shard `b` (name, version)."""
    return pl.DataFrame(
        {
            "a_row": np.asarray(a_row, dtype=np.int64),
            "b_shard": [b[0]] * len(a_row),
            "b_version": [b[1]] * len(a_row),
            "b_row": np.asarray(b_row, dtype=np.int64),
        },
        schema=_EDGE_SCHEMA,
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
