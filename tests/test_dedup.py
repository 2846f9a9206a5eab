"""Near-duplicate removal: normalisation, shingle hashing, clustering and the kept row."""

import itertools
import random
from pydoc_data.topics import topics

import numpy as np
import polars as pl
import pytest

from synth_lib.curation.dedup import (
    DedupConfig,
    _bucket_pairs,
    cluster_sketches,
    connected_labels,
    dedup_frame,
    find_duplicates,
    sketch_all,
    sketch_chunks,
    sketch_texts,
)
from synth_lib.curation.shingles import (
    HASH_MUL,
    mix64,
    ngram_hashes,
    normalise,
    text_keys,
    tokenise,
)


def _passages(count: int, words: int = 120) -> list[str]:
    out = []
    for name in sorted(topics):
        w = topics[name].split()
        if len(w) >= words:
            out.append(" ".join(w[:words]))
    return out[:count]


def _edit(text: str, rate: float, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = text.split()
    for i in rng.sample(range(len(words)), round(rate * len(words))):
        words[i] = rng.choice(["alpha", "beta", "gamma", "delta", "omega"])
    return " ".join(words)


def test_normalise_folds_case_punctuation_and_unicode_punctuation():
    got = normalise(["Héllo, WORLD… “quoted”\u00a0x–y", None]).to_pylist()
    assert got[0].split() == ["héllo", "world", "quoted", "x", "y"]
    assert got[1] == ""


def test_token_hashes_are_stable_and_ignore_formatting():
    a = tokenise(["The quick, brown fox!", "the   QUICK brown\tfox", "", None])
    b = tokenise(["the quick brown fox"])
    assert a.lengths.tolist() == [4, 4, 0, 0]
    assert np.array_equal(a.hashes[:4], b.hashes)
    keys = text_keys(a)
    assert keys[0] == keys[1] and keys[2] == keys[3] and keys[0] != keys[2]


@pytest.mark.parametrize("n", [1, 2, 3, 13])
def test_ngram_hashes_stay_inside_each_text(n):
    texts = ["a b c d e f g h i j k l m n o p", "q r", "", "s t u v w x y z a b c d e f"]
    tokens = tokenise(texts)
    doc, grams = ngram_hashes(tokens, n)
    expected_per_text = [max(length - n + 1, 1) if length else 0 for length in tokens.lengths]
    assert np.bincount(doc, minlength=len(texts)).tolist() == expected_per_text
    # the same words in another text give the same gram hashes (position-independent)
    _, again = ngram_hashes(tokenise(["x " + texts[0]]), n)
    assert set(grams[doc == 0].tolist()) <= set(again.tolist())


def test_exact_and_near_duplicates_cluster_and_unrelated_do_not():
    base = _passages(6)
    texts = [*base, base[0].upper(), _edit(base[1], 0.1), _edit(base[2], 0.2, seed=3)]
    result = find_duplicates(texts)
    cid = result.cluster_id
    assert cid[6] == cid[0] and "exact duplicate" in result.reason[6]
    assert cid[7] == cid[1] and "near duplicate" in result.reason[7]
    assert cid[8] == cid[2]
    assert len({cid[i] for i in range(6)}) == 6  # unrelated passages stay apart
    assert result.kept.tolist() == [True] * 6 + [False] * 3
    assert result.stats()["exact_duplicates"] == 1
    assert result.stats()["near_duplicates"] == 2


def test_human_seed_is_kept_over_its_synthetic_near_copy_across_stages():
    seed = _passages(1)[0]
    texts = [_edit(seed, 0.05), seed]
    result = find_duplicates(texts, keys=["aaa-rephrasing", "zzz-seed"], is_synthetic=[True, False])
    assert result.kept.tolist() == [False, True]
    assert result.cluster_id == ["zzz-seed", "zzz-seed"]
    assert result.reason[0].startswith("near duplicate of zzz-seed")


def test_result_does_not_depend_on_row_order():
    base = _passages(8)
    texts = [*base, _edit(base[0], 0.1), _edit(base[5], 0.1, seed=1)]
    keys = [f"k{i:02d}" for i in range(len(texts))]
    first = find_duplicates(texts, keys=keys)
    order = list(reversed(range(len(texts))))
    second = find_duplicates([texts[i] for i in order], keys=[keys[i] for i in order])
    kept_first = {k for k, kept in zip(keys, first.kept, strict=True) if kept}
    kept_second = {keys[i] for i, kept in zip(order, second.kept, strict=True) if kept}
    assert kept_first == kept_second
    assert len(kept_first) == 8


def test_dedup_frame_adds_columns_and_keeps_every_row():
    base = _passages(3)
    frame = pl.DataFrame({"id": ["a", "b", "c", "d"], "text": [*base, base[0] + "!"]})
    out, result = dedup_frame(frame, DedupConfig(ngram=3, threshold=0.5))
    assert out.height == 4
    assert out.get_column("cluster_id").to_list() == ["a", "b", "c", "a"]
    assert out.get_column("kept").to_list() == [True, True, True, False]
    assert result.clusters == 1


def test_empty_input_and_invalid_config():
    result = find_duplicates([])
    assert result.kept.tolist() == [] and result.stats()["rows"] == 0
    with pytest.raises(ValueError, match="exceeds num_perm"):
        DedupConfig(num_perm=64, bands=42, rows=3)


def test_shared_prompt_template_alone_does_not_make_duplicates():
    template = (
        "In Python, with the needed modules imported, what does {call} return? Answer with the "
        "repr of the result, or with raises ExceptionType: message if the call raises. {answer}"
    )
    calls = [
        (f"math.{fn}({x})", f"{x * 7 % 13}") for fn in ("sqrt", "log", "exp") for x in range(20)
    ]
    texts = [template.format(call=c, answer=a) for c, a in calls]
    templated = DedupConfig(ngram=3, threshold=0.5, max_shingle_share=0.05)
    assert find_duplicates(texts, config=templated).kept.all()
    assert find_duplicates(texts, config=DedupConfig(ngram=3, threshold=0.5)).kept.sum() < 10
    near_copy = texts[5] + " indeed it does"
    result = find_duplicates([*texts, near_copy], config=templated)
    assert not result.kept[-1] and result.reason[-1].startswith("near duplicate")


@pytest.mark.parametrize("threshold", [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
def test_banding_puts_the_s_curve_midpoint_at_the_threshold(threshold):
    """P(candidate | Jaccard s) = 1 - (1 - s^rows)^bands crosses 1/2 near the threshold
    (a little below: a missed duplicate costs more than an extra candidate pair)."""
    config = DedupConfig(threshold=threshold)
    bands, rows = config.bands, config.rows
    assert bands * rows <= config.num_perm
    midpoint = (1.0 - 0.5 ** (1.0 / bands)) ** (1.0 / rows)
    assert threshold - 0.06 <= midpoint <= threshold

    def candidate(s: float) -> float:
        return 1.0 - (1.0 - s**rows) ** bands

    assert candidate(threshold) >= 0.5
    assert candidate(max(threshold - 0.2, 0.0)) < 0.5 < candidate(min(threshold + 0.1, 1.0))


def test_explicit_banding_is_kept():
    config = DedupConfig(bands=10, rows=5)
    assert (config.bands, config.rows) == (10, 5)


def test_chunked_sketches_equal_one_pass_across_chunks():
    """Chunks of 7 rows: exact copies and near copies land in other chunks than their
    originals, and blank rows are spread over them; the result is the one-pass result."""
    base = _passages(12)
    texts = [*base, base[0], "", _edit(base[3], 0.1), base[5].upper(), None, _edit(base[9], 0.05)]
    texts += [base[0] + " !", "", _edit(base[1], 0.2, seed=4), base[11]]
    keys = [f"k{i:03d}" for i in range(len(texts))]
    config = DedupConfig()
    one_pass = sketch_all(texts, config)
    chunked = sketch_texts(texts, config, chunk_rows=7)
    assert np.array_equal(chunked.keys, one_pass.keys)
    assert np.array_equal(chunked.rows, one_pass.rows)
    assert np.array_equal(chunked.signatures, one_pass.signatures)
    for threads in (1, 2):
        parts = sketch_chunks([texts[i : i + 7] for i in range(0, len(texts), 7)], config, threads)
        assert np.array_equal(parts.rows, one_pass.rows)
        assert np.array_equal(parts.signatures, one_pass.signatures)
    expected = cluster_sketches(one_pass, keys, None, config)
    got = find_duplicates(texts, keys=keys, config=config, chunk_rows=7)
    assert got.cluster_id == expected.cluster_id and got.reason == expected.reason
    assert got.kept.tolist() == expected.kept.tolist() and got.stats() == expected.stats()
    # copies of base[0] (x2), base[5], base[11] and two more blank rows; three edited rows
    assert got.stats()["exact_duplicates"] == 6 and got.stats()["near_duplicates"] == 3


@pytest.mark.parametrize("spread", ["small", "spread", "partly"])
def test_bucket_pairs_pair_small_buckets_and_chain_huge_ones_in_index_order(spread):
    """Small keys share their high bits (the exact regrouping path), spread keys do not,
    and `partly` has a few keys that differ from others in their low bits only."""
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 40, size=400).astype(np.uint64)
    keys[rng.choice(400, 90, replace=False)] = 999  # one bucket over the all-pairs limit
    if spread != "small":
        keys = mix64(keys * HASH_MUL + np.uint64(7))
    if spread == "partly":
        near = rng.choice(400, 30, replace=False)
        keys[near] ^= np.uint64(1)
    got = {tuple(p) for p in _bucket_pairs(keys).tolist()}
    expected = set()
    for key in np.unique(keys).tolist():
        members = np.flatnonzero(keys == key).tolist()
        if len(members) <= 64:
            expected |= {(a, b) for i, a in enumerate(members) for b in members[i + 1 :]}
        else:
            expected |= set(itertools.pairwise(members))
    assert got == expected


def test_bucket_pairs_of_keys_that_share_only_high_bits_are_none():
    keys = np.array([1 << 40, (1 << 40) + 1, 5 << 50], dtype=np.uint64)
    assert _bucket_pairs(keys).shape == (0, 2)


def test_connected_labels_match_scipy_components():
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(5)
    n = 3000
    edges = rng.integers(0, n, size=(2500, 2))
    edges = np.concatenate([edges, np.stack([np.arange(500, 1500), np.arange(501, 1501)], 1)])
    label = connected_labels(n, edges)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, reference = connected_components(graph, directed=False)
    # the same partition, each component labelled by its smallest node
    assert np.array_equal(np.unique(reference, return_inverse=True)[1].max() + 1, len(set(label)))
    for component in np.unique(reference):
        members = np.flatnonzero(reference == component)
        assert (label[members] == members.min()).all()
    assert connected_labels(4, np.empty((0, 2), dtype=np.int64)).tolist() == [0, 1, 2, 3]


def test_words_are_the_space_separated_runs_of_each_normalised_text():
    import pyarrow as pa

    from synth_lib.curation.shingles import _byte_string_hashes

    rng = random.Random(2)
    texts = ["", None, "  ", "a", " A  b ", "\tx\ny\r\n", "!!", "ab\u3000cd", "Été—été", "a\x00b"]
    texts += [
        "".join(rng.choice(" ab,.\t\nÉé—") for _ in range(rng.randrange(30))) for _ in range(200)
    ]
    for batch in (texts, texts[3:], pa.array(texts, pa.large_string()).slice(4, 50)):
        tokens = tokenise(batch)
        batch = batch.to_pylist() if isinstance(batch, pa.Array) else batch
        for i, norm in enumerate(normalise(batch).to_pylist()):
            words = [w for w in norm.split(" ") if w]
            got = tokens.hashes[tokens.offsets[i] : tokens.offsets[i + 1]]
            assert got.tolist() == _byte_string_hashes(pa.array(words, pa.large_string())).tolist()
