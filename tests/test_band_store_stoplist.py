"""The band store's stop list follows every shard added, as a one-shot run's would.

Below `max_shingle_share = 1` the shingles common to the whole index are left out of the
signatures; a template that only later shards carry (execution traces) must be stopped once
it is common, whichever shard came first, and earlier shards re-signed only when the change
reaches their shingles.
"""

import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from synth_lib.curation.band_store import BandStore
from synth_lib.curation.dedup import DedupConfig, find_duplicates

CONFIG = DedupConfig(ngram=3, threshold=0.5, max_shingle_share=0.05)
WORDS = [f"w{i}" for i in range(3000)]
TEMPLATE = " ".join(f"step{i}" for i in range(30))
PHRASE = " ".join(f"common{i}" for i in range(8))

Shard = tuple[list[str], list[str], list[bool]]


def _shards() -> dict[str, Shard]:
    """s0: prose only, with a phrase common in it but not overall; s1..s3: prose plus traces
    sharing a 30-word template (some traces are true near-copies of another); s4: a little
    prose, copies of the same originals as the rest."""
    rng = random.Random(7)
    originals = [rng.choices(WORDS, k=40) for _ in range(120)]

    def prose(k: int) -> str:
        words = list(rng.choice(originals)) if k % 3 else rng.choices(WORDS, k=40)
        for _ in range(rng.randint(0, 10)):
            words[rng.randrange(len(words))] = rng.choice(WORDS)
        return " ".join(words)

    shards: dict[str, Shard] = {}
    for s, (n_prose, n_phrase, n_trace) in enumerate(
        [(200, 12, 0), (150, 6, 20), (150, 6, 20), (150, 6, 20), (30, 0, 0)]
    ):
        texts = [prose(k) for k in range(n_prose)]
        for k in range(n_phrase):
            texts[k] = f"{PHRASE} {texts[k]}"
        contents = []
        for k in range(n_trace):
            content = rng.choices(WORDS, k=12) if k % 5 or not contents else list(contents[-1])
            if not k % 5 and k:
                content[rng.randrange(12)] = rng.choice(WORDS)
            contents.append(content)
            texts.append(f"{TEMPLATE} {' '.join(content)}")
        ids = [f"s{s}-{k:04d}" for k in range(len(texts))]
        shards[f"s{s}"] = (ids, texts, [k % 2 == 1 for k in range(len(texts))])
    return shards


def _one_shot(shards: dict[str, Shard], order: list[str]):
    ids = [i for s in order for i in shards[s][0]]
    texts = [t for s in order for t in shards[s][1]]
    synthetic = [x for s in order for x in shards[s][2]]
    return ids, find_duplicates(texts, ids, synthetic, CONFIG)


def _assert_same(store: BandStore, ids: list[str], expected) -> None:
    order, got, _ = store.result()
    assert order == ids
    assert list(got.kept) == list(expected.kept)
    assert got.cluster_id == expected.cluster_id
    assert got.reason == expected.reason


@pytest.mark.parametrize(
    "order",
    [
        ["s0", "s1", "s2", "s3"],
        ["s3", "s0", "s2", "s1"],
        ["s1", "s2", "s3", "s0"],
        ["s0", "s4", "s1", "s2", "s3"],
    ],
)
def test_a_template_only_later_shards_share_is_stopped_as_one_shot(tmp_path, order):
    shards = _shards()
    store = BandStore(tmp_path, CONFIG)
    stats = [store.add(s, *shards[s]) for s in order]
    ids, expected = _one_shot(shards, order)
    _assert_same(store, ids, expected)
    traces = np.array([TEMPLATE in t for s in order for t in shards[s][1]])
    assert expected.kept[traces].sum() >= 0.75 * traces.sum(), "traces are not template copies"
    assert not expected.kept[traces].all(), "true near-copies among traces are still found"
    assert not expected.kept[~traces].all()
    if order[0] == "s0":
        # the phrase is common in s0 alone, not in the whole index: s0 is signed again
        assert any("s0" in a.resigned for a in stats[1:])
    if order[1] == "s4":
        # s0 is re-signed after s4 came: s4 keeps its signatures, its edges to s0 are redone
        assert stats[2].resigned == ("s0",) and stats[1].resigned == ()


def test_a_text_copied_across_shards_counts_once_in_the_stop_list(tmp_path):
    """A phrase in exactly 10 distinct texts is not common (over 10 is), however many shards
    hold a copy of one of them; counting copies would stop it and keep all ten rows."""
    rng = random.Random(3)
    phrased = [
        f"{' '.join(WORDS[:20])} {' '.join(rng.choices(WORDS[20:], k=3))}" for _ in range(10)
    ]
    filler = [" ".join(rng.choices(WORDS[20:], k=30)) for _ in range(40)]
    shards = {
        "a": (phrased[:6] + filler[:20], False),
        "b": (phrased[6:] + filler[20:] + [phrased[0]], True),
    }
    data = {
        name: ([f"{name}{k:03d}" for k in range(len(texts))], texts, [syn] * len(texts))
        for name, (texts, syn) in shards.items()
    }
    store = BandStore(tmp_path, CONFIG)
    for name in data:
        store.add(name, *data[name])
    ids, expected = _one_shot(data, ["a", "b"])
    _assert_same(store, ids, expected)
    assert expected.kept[:6].sum() == 1, "the phrased rows are near-duplicates of each other"
    # replacing "b" by a version without the copy leaves the phrase's count at 10
    smaller = tuple(x[:-1] for x in data["b"])
    store.add("b", *smaller)
    ids, expected = _one_shot({**data, "b": smaller}, ["a", "b"])
    _assert_same(store, ids, expected)
    assert expected.kept[:6].sum() == 1


def test_a_replaced_shard_updates_the_stop_list(tmp_path):
    shards = _shards()
    store = BandStore(tmp_path, CONFIG)
    for s in ["s0", "s1", "s2", "s3"]:
        store.add(s, *shards[s])
    trimmed = tuple(x[:150] for x in shards["s1"])  # s1 without its traces
    store.add("s1", *trimmed)
    ids, expected = _one_shot({**shards, "s1": trimmed}, ["s0", "s2", "s3", "s1"])
    _assert_same(store, ids, expected)


def _files(store: BandStore) -> dict[str, int]:
    return {
        str(p.relative_to(store.root)): p.stat().st_mtime_ns for p in store.root.rglob("*.parquet")
    }


def test_a_shard_that_leaves_the_stop_list_alone_touches_no_earlier_file(tmp_path):
    shards = _shards()
    store = BandStore(tmp_path, CONFIG)
    store.add("s1", *shards["s1"])
    store.add("s2", *shards["s2"])
    before = {p: t for p, t in _files(store).items() if not p.startswith("counts/")}
    stats = store.add("s3", *shards["s3"])  # the template was already common: same stop list
    after = _files(store)
    assert stats.resigned == ()
    assert stats.shards_compared == 2 and stats.cross_pairs > 0
    assert {p: after.get(p) for p in before} == before, "earlier shards' files are untouched"
    ids, expected = _one_shot(shards, ["s1", "s2", "s3"])
    _assert_same(store, ids, expected)
    # s0's phrase stays under 5% of the grown index: again nothing to re-sign
    assert store.add("s0", *shards["s0"]).resigned == ()


def test_an_add_killed_before_its_manifest_leaves_the_index_as_it_was(tmp_path, monkeypatch):
    shards = _shards()
    store = BandStore(tmp_path, CONFIG)
    store.add("s0", *shards["s0"])
    order, before, _ = store.result()

    def killed(self, manifest):
        raise KeyboardInterrupt

    monkeypatch.setattr(BandStore, "_commit", killed)
    with pytest.raises(KeyboardInterrupt):
        store.add("s1", *shards["s1"])
    monkeypatch.undo()
    again, after, _ = store.result()
    assert again == order and after.cluster_id == before.cluster_id
    assert store.shards().keys() == {"s0"}
    store.add("s1", *shards["s1"])
    ids, expected = _one_shot(shards, ["s0", "s1"])
    _assert_same(store, ids, expected)


def test_dropping_shards_recounts_the_stop_list(tmp_path):
    shards = _shards()
    store = BandStore(tmp_path, CONFIG)
    for s in ["s0", "s1", "s2", "s3", "s4"]:
        store.add(s, *shards[s])
    store.add("empty", [], [], [])
    # 400 texts left: the template's 20 are no longer over 5%, s1 is signed with it
    assert store.retain(["s0", "s1", "s4"]) == ("s1",)
    assert list(store.shards()) == ["s0", "s1", "s4"]
    ids, expected = _one_shot(shards, ["s0", "s1", "s4"])
    _assert_same(store, ids, expected)
    # 230 texts left: the phrase's 12 are common again, s0 is signed without it
    assert store.retain(["s0", "s4"]) == ("s0",)
    ids, expected = _one_shot(shards, ["s0", "s4"])
    _assert_same(store, ids, expected)
    assert store.retain(["s0", "s4"]) == ()


@pytest.mark.parametrize("order", [["s0", "s4", "s1", "s2", "s3"], ["s0", "s2", "s3", "s1"]])
def test_a_df_table_split_into_four_buckets_gives_the_one_shot_result(tmp_path, order):
    """Each change merges and scans the df table one bucket at a time: with 4 buckets every
    bucket holds part of the table and of the stop list, adds, re-signing and drops included."""
    shards = _shards()
    store = BandStore(tmp_path, CONFIG, df_buckets=4)
    stats = [store.add(s, *shards[s]) for s in order]
    # a shard with no shingles merges into no bucket: the stop list is still read from all
    stats.append(store.add("empty", [], [], []))
    ids, expected = _one_shot(shards, order)
    _assert_same(store, ids, expected)
    assert any(a.resigned for a in stats) and stats[-1].resigned == ()
    manifest = store._manifest()
    assert len(manifest["df"]) == 4 and all(manifest["df"])
    stop = set(pl.read_parquet(store.root / manifest["stop"])["key"].to_list())
    for b, path in enumerate(manifest["df"]):
        keys = pl.read_parquet(store.root / path)["key"].to_numpy()
        assert (keys >> np.uint64(62) == b).all(), "a bucket holds its top-bits range only"
        assert stop & set(keys.tolist()), "every bucket has part of the stop list"
    left = [s for s in order if s in ("s0", "s4")]
    assert store.retain(left) == ("s0",)
    ids, expected = _one_shot(shards, left)
    _assert_same(store, ids, expected)
    assert {p.name for p in (store.root / "counts").iterdir()} == {
        Path(p).name
        for p in store._manifest()["df"] + [store._manifest()[k] for k in ("refs", "stop")]
        if p
    }, "no superseded counts file is left"
