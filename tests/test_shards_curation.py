"""Cross-shard curation: the persisted index gives the one-shot answer, old shards not redone."""

import itertools
import random

import numpy as np
import polars as pl

from synth_lib.curation.band_store import BandStore
from synth_lib.curation.decontam import BenchmarkIndex, BenchmarkItem, DecontamConfig
from synth_lib.curation.dedup import DedupConfig, find_duplicates
from synth_lib.curation.incremental import curate_shards
from synth_lib.curation.steps import CurationSettings, curate_mix
from synth_lib.mix.shards import to_mix_schema
from synth_lib.provenance.schema import Generator, RowContext, Source, make_row, rows_to_frame

WORDS = [f"w{i}" for i in range(2000)]


def _corpus(n: int, seed: int = 0) -> tuple[list[str], list[str], list[bool]]:
    """Texts with planted near- and exact duplicates (a third are edited copies)."""
    rng = random.Random(seed)
    originals = [" ".join(rng.choice(WORDS) for _ in range(60)) for _ in range(n // 3)]
    texts = []
    for k in range(n):
        words = (rng.choice(originals) if k % 3 else " ".join(rng.choices(WORDS, k=60))).split()
        for _ in range(rng.randint(0, 8)):
            words[rng.randrange(len(words))] = rng.choice(WORDS)
        texts.append(" ".join(words))
    return texts, [f"row{k:05d}" for k in range(n)], [bool(k % 2) for k in range(n)]


def test_band_store_equals_one_shot_dedup_and_skips_known_shards(tmp_path):
    texts, ids, synthetic = _corpus(3000)
    config = DedupConfig(ngram=3, threshold=0.5)
    one_shot = find_duplicates(texts, ids, synthetic, config)
    store = BandStore(tmp_path, config)
    cuts = [0, 1000, 2000, 3000]
    added = [
        store.add(f"s{i}", ids[a:b], texts[a:b], synthetic[a:b])
        for i, (a, b) in enumerate(itertools.pairwise(cuts))
    ]
    assert [a.shards_compared for a in added] == [0, 1, 2]
    assert added[2].cross_pairs > 0, "planted copies span shards"
    order, incremental, _ = store.result()
    assert order == ids
    assert np.array_equal(incremental.kept, one_shot.kept)
    assert incremental.cluster_id == one_shot.cluster_id
    assert incremental.reason == one_shot.reason
    assert one_shot.kept.sum() < len(ids), "the corpus has duplicates to find"
    again = store.add("s1", ids[1000:2000], texts[1000:2000], synthetic[1000:2000])
    assert again.cached and again.shards_compared == 0


def test_a_changed_shard_replaces_its_rows(tmp_path):
    texts, ids, synthetic = _corpus(600, seed=1)
    config = DedupConfig(ngram=3, threshold=0.5)
    store = BandStore(tmp_path, config)
    store.add("a", ids[:300], texts[:300], synthetic[:300])
    store.add("b", ids[300:], texts[300:], synthetic[300:])
    store.add("a", ids[:150], texts[:150], synthetic[:150])
    order, result, _ = store.result()
    keep = dict(zip(order, result.kept, strict=True))
    want_synthetic = synthetic[:150] + synthetic[300:]
    expected = find_duplicates(
        texts[:150] + texts[300:], ids[:150] + ids[300:], want_synthetic, config
    )
    assert sorted(order) == sorted(ids[:150] + ids[300:])
    assert [keep[i] for i in ids[:150] + ids[300:]] == list(expected.kept)


def _mix_shards(n_per_shard: int, shards: int) -> dict[str, pl.DataFrame]:
    """Mix-schema rows per shard: seeds and rephrasings with cross-shard copies and a leak."""
    ctx = RowContext(run_id="test")
    gen = Generator("scripted", "m", "r", "rephrase_easy", "h", "{}", 0)
    texts, _, _ = _corpus(n_per_shard * shards, seed=2)
    frames = {}
    for s in range(shards):
        rows = []
        for k in range(s * n_per_shard, (s + 1) * n_per_shard):
            seed = make_row(
                stage="text_seeds",
                payload={"text": texts[k]},
                ctx=ctx,
                source=Source("corpus", str(k), "CC0"),
            )
            rows.append(seed)
            if k % 4 == 0:
                copy = texts[k - 1] if k else "leaked benchmark question " + " ".join(WORDS[:30])
                rows.append(
                    make_row(
                        stage="rephrasings",
                        payload={"text": copy},
                        ctx=ctx,
                        parents=[seed],
                        generator=gen,
                    )
                )
        frames[f"ref-n{n_per_shard}-{s:05d}"] = to_mix_schema(
            rows_to_frame(rows, {"text": pl.Utf8}), "text"
        )
    return frames


def _by_step(rejected: pl.DataFrame) -> dict[str, list[str]]:
    """Removed ids per step (the name of each row's last, failing verdict)."""
    steps = rejected.select("id", pl.col("verdicts").list.last().struct.field("name"))
    return {
        name: sorted(part["id"].to_list())
        for (name,), part in steps.group_by("name", maintain_order=True)
    }


def test_curate_shards_equals_curate_mix_and_reuses_work(tmp_path):
    more = _mix_shards(120, 4)
    shards = dict(list(more.items())[:3])
    leak = BenchmarkItem("bench", "q1", "leaked benchmark question " + " ".join(WORDS[:30]))
    index = BenchmarkIndex([leak], DecontamConfig(ngram=8))
    settings = CurationSettings(
        dedup=DedupConfig(ngram=3, threshold=0.5),
        anchored_stages=[],
        anchor_low=0.0,
        anchor_high=1.0,
        coverage_cosine=0.6,
    )
    one_shot = curate_mix(pl.concat(list(shards.values())), index, settings)
    loaders = {name: (lambda f=frame: f) for name, frame in shards.items()}
    outcome, work = curate_shards(loaders, index, "bench-1", settings, tmp_path, tmp_path / "a")
    kept = outcome.kept.collect()
    assert sorted(kept["id"].to_list()) == one_shot.kept["id"].to_list()
    assert _by_step(outcome.rejected.collect()) == _by_step(one_shot.rejected)
    assert outcome.removed == one_shot.removed
    assert one_shot.removed["decontam"] >= 1 and one_shot.removed["dedup"] > 0
    assert work["shards_indexed"] == 3
    loaders = {name: (lambda f=frame: f) for name, frame in more.items()}
    outcome, work = curate_shards(loaders, index, "bench-1", settings, tmp_path, tmp_path / "b")
    assert work["shards_indexed"] == 1, "only the new shard is hashed"
    one_shot = curate_mix(pl.concat(list(more.values())), index, settings)
    assert sorted(outcome.kept.collect()["id"].to_list()) == one_shot.kept["id"].to_list()
