"""Near-duplicate detection: ours (rensa MinHash + numpy LSH) vs textbook datasketch.

The labelled set is built from real text (the Python language reference in `pydoc_data`
and stdlib docstrings): every source passage gets one copy with a known share of its
words edited (equal parts substitution, deletion and insertion of a random vocabulary
word). Sources that are already near each other (exact word-trigram Jaccard >= 0.2) are
dropped first so the only true duplicate pairs are the planted ones. Quality is pairwise
precision/recall/F1 over "same predicted cluster"; speed is documents per second for the
whole pipeline (tokenise, shingle, MinHash, LSH, cluster), both methods in the same run.

    python benchmarks/dedup_bench.py --repeats 3
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import random
import re

import numpy as np
from datasketch import MinHash, MinHashLSH
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from timing import interleaved
from word_edits import change_words

from synth_lib.curation import dedup
from synth_lib.curation.dedup import DedupConfig, find_duplicates
from synth_lib.curation.shingles import ngram_hashes, tokenise

DOC_MODULES = (
    "json", "textwrap", "statistics", "heapq", "bisect", "fractions", "string", "shlex",
    "difflib", "functools", "collections", "random", "calendar", "csv", "pathlib", "ast",
    "inspect", "typing", "argparse", "os", "re", "subprocess", "logging", "unittest",
    "email", "http.client", "urllib.request", "datetime", "decimal", "socket", "threading",
    "asyncio", "tarfile", "zipfile", "configparser", "pickle", "shutil", "tempfile",
    "pprint", "enum", "dataclasses", "contextlib", "io", "codecs", "locale", "gettext",
    "optparse", "smtplib", "imaplib", "ftplib", "sqlite3", "ssl", "selectors", "queue",
    "tokenize", "pdb", "doctest", "timeit", "cmd", "pkgutil", "sysconfig", "mailbox",
    "mimetypes", "base64", "hashlib", "hmac", "uuid", "ipaddress",
)  # fmt: skip
RATES = (0.05, 0.10, 0.20, 0.30)


def source_passages(words_per_passage: int = 120) -> list[str]:
    """Reference passages and docstrings, at least 60 words each, deduplicated exactly."""
    from pydoc_data.topics import topics

    out = []
    for name in sorted(topics):
        words = topics[name].split()
        for i in range(0, len(words), words_per_passage):
            chunk = words[i : i + words_per_passage]
            if len(chunk) >= 60:
                out.append(" ".join(chunk))
    for module_name in DOC_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for _, obj in sorted(vars(module).items()):
            if inspect.isfunction(obj) or inspect.isclass(obj):
                doc = inspect.getdoc(obj) or ""
                if len(doc.split()) >= 60:
                    out.append(" ".join(doc.split()[: 2 * words_per_passage]))
    return sorted(set(out))


def _trigram_sets(texts: list[str]) -> list[set[tuple[str, ...]]]:
    sets = []
    for text in texts:
        w = re.findall(r"\w+", text.lower())
        sets.append({tuple(w[i : i + 3]) for i in range(len(w) - 2)})
    return sets


def drop_natural_duplicates(texts: list[str], limit: float = 0.2) -> list[str]:
    """Greedily drop passages whose exact trigram Jaccard with a kept one is >= limit."""
    tokens = tokenise(texts)
    doc, grams = ngram_hashes(tokens, 3)
    _, col = np.unique(grams, return_inverse=True)
    m = coo_matrix((np.ones(len(doc)), (doc, col))).tocsr()
    m.data[:] = 1
    inter = (m @ m.T).toarray()
    size = np.asarray(m.sum(axis=1)).ravel()
    jac = inter / (size[:, None] + size[None, :] - inter)
    np.fill_diagonal(jac, 0)
    keep: list[int] = []
    for i in range(len(texts)):
        if all(jac[i, j] < limit for j in keep):
            keep.append(i)
    return [texts[i] for i in keep]


def build_set(seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, their source-group label, and the edit rate of each (0 for sources)."""
    rng = random.Random(seed)
    sources = drop_natural_duplicates(source_passages())
    vocab = sorted({w for s in sources for w in s.split()})
    texts, group, rate = [], [], []
    for i, src in enumerate(sources):
        texts.append(src)
        group.append(i)
        rate.append(0.0)
        if i % 2 == 0:  # half the sources get an edited copy; the rest are pure negatives
            r = RATES[(i // 2) % len(RATES)]
            texts.append(change_words(src, r, vocab, rng))
            group.append(i)
            rate.append(r)
    order = rng.sample(range(len(texts)), len(texts))
    return [texts[i] for i in order], np.asarray(group)[order], np.asarray(rate)[order]


def pair_set(labels: np.ndarray) -> set[tuple[int, int]]:
    pairs = set()
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        by_label.setdefault(label, []).append(i)
    for members in by_label.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                pairs.add((members[a], members[b]))
    return pairs


def ours(texts: list[str], config: DedupConfig) -> np.ndarray:
    result = find_duplicates(texts, config=config)
    _, labels = np.unique(np.asarray(result.cluster_id), return_inverse=True)
    return labels


def numpy_minhash(
    doc: np.ndarray, grams: np.ndarray, n_docs: int, num_perm: int, seed: int
) -> np.ndarray:
    """The alternative to rensa: universal hashing (a*x + b) >> 32 and a segmented minimum."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
    starts = np.searchsorted(doc, np.arange(n_docs))
    out = np.empty((n_docs, num_perm), dtype=np.uint32)
    for lo in range(0, n_docs, 256):  # bounded memory: 256 documents at a time
        hi = min(lo + 256, n_docs)
        begin, end = starts[lo], starts[hi] if hi < n_docs else len(grams)
        values = ((grams[begin:end, None] * a + b) >> np.uint64(32)).astype(np.uint32)
        out[lo:hi] = np.minimum.reduceat(values, starts[lo:hi] - begin, axis=0)
    return out


def ours_numpy(texts: list[str], config: DedupConfig) -> np.ndarray:
    """Our pipeline with rensa's signatures swapped for `numpy_minhash` (same shingles, LSH)."""
    original = dedup.minhash_signatures
    dedup.minhash_signatures = numpy_minhash
    try:
        return ours(texts, config)
    finally:
        dedup.minhash_signatures = original


def datasketch_textbook(texts: list[str], config: DedupConfig, verify: bool = False) -> np.ndarray:
    """MinHash.update_batch over the same word n-grams, MinHashLSH at the same threshold.

    The textbook way takes every LSH candidate as a duplicate; `verify` also checks the
    estimated Jaccard of each candidate pair (as ours does) for a like-for-like quality.
    """
    n = config.ngram
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    hashes = []
    for i, text in enumerate(texts):
        w = re.findall(r"\w+", text.lower())
        shingles = {" ".join(w[j : j + n]) for j in range(max(1, len(w) - n + 1))}
        m = MinHash(num_perm=config.num_perm, seed=config.seed)
        m.update_batch([s.encode("utf-8") for s in shingles])
        lsh.insert(i, m)
        hashes.append(m)
    rows, cols = [], []
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j != i and (not verify or m.jaccard(hashes[j]) >= config.threshold):
                rows.append(i)
                cols.append(j)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(texts)))
    return connected_components(graph, directed=False)[1]


def score(pred: np.ndarray, truth: set[tuple[int, int]], rates: np.ndarray, group: np.ndarray):
    predicted = pair_set(pred)
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 1.0
    recall = tp / len(truth)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_rate = {}
    for r in RATES:
        edited = np.flatnonzero(rates == r)
        src = {int(group[i]): i for i in np.flatnonzero(rates == 0)}
        hits = [pred[i] == pred[src[int(group[i])]] for i in edited]
        per_rate[f"{r:.0%}"] = round(float(np.mean(hits)), 3)
    return precision, recall, f1, per_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ngram", type=int, default=DedupConfig.ngram)
    parser.add_argument("--threshold", type=float, default=DedupConfig.threshold)
    parser.add_argument("--bands", type=int, default=DedupConfig.bands)
    parser.add_argument("--rows", type=int, default=DedupConfig.rows)
    args = parser.parse_args()
    config = DedupConfig(
        ngram=args.ngram, threshold=args.threshold, bands=args.bands, rows=args.rows
    )
    texts, group, rates = build_set()
    truth = pair_set(group)
    print(f"{len(texts)} docs, {len(truth)} planted duplicate pairs, rates {RATES}, {config}")
    runs = interleaved(
        {
            "ours": lambda: ours(texts, config),
            "ours-numpy": lambda: ours_numpy(texts, config),
            "datasketch": lambda: datasketch_textbook(texts, config),
            "datasketch+verify": lambda: datasketch_textbook(texts, config, verify=True),
        },
        args.repeats,
    )
    for name, (pred, seconds) in runs.items():
        p, r, f1, per_rate = score(pred, truth, rates, group)
        print(
            f"{name:>17}: P={p:.4f} R={r:.4f} F1={f1:.4f} recall by edit rate {per_rate} "
            f"median {seconds:.3f}s = {len(texts) / seconds:,.0f} docs/s"
        )
    results = {name: len(texts) / seconds for name, (_, seconds) in runs.items()}
    print(f"speed ratio ours/datasketch: {results['ours'] / results['datasketch']:.1f}x")


if __name__ == "__main__":
    main()
