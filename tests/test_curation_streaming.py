"""Cross-shard curation in bounded memory: staged shards streamed to the asset's file equal
the one-shot frame, and the anchor window of an unchanged shard is not embedded again."""

import random
import zlib
from collections.abc import Sequence

import dagster as dg
import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from resources.parquet_io import PolarsParquetIOManager
from synth_lib.curation.decontam import BenchmarkIndex, BenchmarkItem, DecontamConfig
from synth_lib.curation.dedup import DedupConfig
from synth_lib.curation.incremental import curate_shards
from synth_lib.curation.steps import CurationSettings, curate_mix
from synth_lib.mix.shards import to_mix_schema
from synth_lib.provenance.schema import Generator, RowContext, Source, make_row, rows_to_frame

WORDS = [f"w{i}" for i in range(3000)]
LEAK = "leaked benchmark question " + " ".join(WORDS[:30])
SETTINGS = CurationSettings(
    dedup=DedupConfig(ngram=3, threshold=0.5),
    anchored_stages=["rephrasings"],
    anchor_low=0.6,
    anchor_high=0.97,
    coverage_cosine=0.6,
)
INDEX = BenchmarkIndex([BenchmarkItem("bench", "q1", LEAK)], DecontamConfig(ngram=8))


class BagOfWords:
    """A deterministic embedder (hashed word counts) that counts the texts it embeds."""

    def __init__(self) -> None:
        self.texts = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.split():
                out[row, zlib.crc32(word.encode()) % 256] += 1.0
        return out


def _edited(words: list[str], rng: random.Random) -> list[str]:
    words = list(words)
    for i in rng.sample(range(len(words)), 15):
        words[i] = rng.choice(WORDS)
    return words


def _shards(n_seeds: int, shards: int, seed: int = 0) -> dict[str, pl.DataFrame]:
    """Per shard: human seeds and their rephrasings (close, redundant, drifted, copied), a
    leak, an instruction row, and one rephrasing whose seed lives in the previous shard."""
    rng = random.Random(seed)
    ctx = RowContext(run_id="test")
    gen = Generator("scripted", "m", "r", "rephrase_easy", "h", "{}", 0)
    frames, previous = {}, None
    for s in range(shards):
        seeds = [
            make_row(
                stage="text_seeds",
                payload={"text": " ".join(rng.choices(WORDS, k=60))},
                ctx=ctx,
                source=Source("corpus", f"{s}-{k}", "CC0"),
            )
            for k in range(n_seeds)
        ]
        rows = [*seeds]

        def synthetic(stage: str, text: str, parent: dict) -> dict:
            return make_row(
                stage=stage, payload={"text": text}, ctx=ctx, parents=[parent], generator=gen
            )

        for k, parent in enumerate(seeds):
            words = parent["text"].split()
            if k % 3 == 0:  # a quarter of the words changed: inside the window
                words = _edited(words, rng)
            elif k % 3 == 1:  # the same words, pairs swapped: redundant, not a near-copy
                words[0::2], words[1::2] = words[1::2], words[0::2]
            else:  # about something else: drift
                words = rng.choices(WORDS, k=60)
            rows.append(synthetic("rephrasings", " ".join(words), parent))
        rows.append(synthetic("rephrasings", seeds[1]["text"], seeds[1]))  # exact copy
        rows.append(synthetic("instructions", " ".join(rng.choices(WORDS, k=40)), seeds[0]))
        if s == 1:
            rows.append(synthetic("rephrasings", LEAK, seeds[2]))
        if previous is not None:
            text = " ".join(_edited(previous["text"].split(), rng)) + " again"
            rows.append(synthetic("rephrasings", text, previous))
        previous = seeds[-1]
        frame = to_mix_schema(rows_to_frame(rows, {"text": pl.Utf8}), "text")
        frames[f"ref-n{n_seeds}-{s:05d}"] = frame.sample(fraction=1.0, shuffle=True, seed=s)
    return frames


def _one_shot(frames: dict[str, pl.DataFrame], embedder: BagOfWords):
    tagged = [f.with_columns(pl.lit(name).alias("shard")) for name, f in frames.items()]
    return curate_mix(pl.concat(tagged), INDEX, SETTINGS, shard_column="shard", embedder=embedder)


def _loaders(frames: dict[str, pl.DataFrame]) -> dict:
    return {name: (lambda f=frame: f) for name, frame in frames.items()}


def test_streamed_output_equals_the_in_memory_outcome(tmp_path):
    frames = _shards(30, 3)
    one_shot = _one_shot(frames, BagOfWords())
    outcome, _ = curate_shards(
        _loaders(frames), INDEX, "b", SETTINGS, tmp_path / "index", tmp_path / "stage", BagOfWords()
    )
    assert isinstance(outcome.kept, pl.LazyFrame)
    io = PolarsParquetIOManager(base_dir=str(tmp_path / "data"))
    context = dg.build_output_context(asset_key=dg.AssetKey("decontaminated_mix"))
    io.handle_output(context, outcome.kept)
    written = pl.read_parquet(tmp_path / "data" / "decontaminated_mix.parquet")
    assert_frame_equal(written, one_shot.kept)
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["decontaminated_mix.parquet"]
    rejected = outcome.rejected.collect()
    assert_frame_equal(rejected.sort("id"), one_shot.rejected.sort("id"))
    assert outcome.removed == one_shot.removed
    assert outcome.anchors == one_shot.anchors
    assert outcome.drift == one_shot.drift
    assert outcome.matches == one_shot.matches
    reasons = one_shot.anchors.reason_counts()
    assert reasons["drift"] >= 20 and reasons["redundant"] >= 20, reasons
    assert one_shot.removed["decontam"] == 1 and one_shot.removed["dedup"] >= 3
    kept = written.filter(pl.col("stage") == "rephrasings")
    assert kept.height >= 20 and outcome.drift["anchor_coverage"] > 0
    # the rephrasing of a seed held by the previous shard is judged against that seed
    again = written.filter(pl.col("text").str.ends_with(" again"))
    assert again.height == 2, "inside the window only when its seed is among the anchors"


def test_an_unchanged_shard_is_not_embedded_again(tmp_path):
    frames = _shards(20, 3, seed=1)
    embedder = BagOfWords()

    def run(shards: dict[str, pl.DataFrame], stage: str):
        return curate_shards(
            _loaders(shards), INDEX, "b", SETTINGS, tmp_path / "index", tmp_path / stage, embedder
        )

    first, _ = run(frames, "a")
    assert embedder.texts > 0
    embedder.texts = 0
    second, _ = run(frames, "b")
    assert embedder.texts == 0, "every shard's anchor window comes from the cache"
    assert_frame_equal(second.kept.collect(), first.kept.collect())
    assert second.drift == first.drift and second.anchors == first.anchors
    changed = dict(frames)
    last = list(frames)[-1]
    changed[last] = frames[last].filter(pl.col("stage") != "instructions")
    run(changed, "c")
    assert embedder.texts == 0, "a row outside the anchor window leaves its inputs alone"
    rephrasing = changed[last].filter(pl.col("stage") == "rephrasings").get_column("id")[0]
    changed[last] = changed[last].filter(pl.col("id") != rephrasing)
    third, _ = run(changed, "d")
    judged = changed[last].filter(pl.col("stage").is_in(["text_seeds", "rephrasings"]))
    assert 0 < embedder.texts <= judged.height, "only the changed shard is embedded"
    expected = _one_shot(changed, BagOfWords())
    assert_frame_equal(third.kept.collect(), expected.kept)
    assert third.drift == expected.drift
