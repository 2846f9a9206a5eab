"""Benchmark decontamination: planted GSM8K test and HumanEval items are found and named."""

import json
import random
from pathlib import Path
from pydoc_data.topics import topics

import polars as pl
import pytest

from synth_lib.curation.decontam import (
    BenchmarkIndex,
    BenchmarkItem,
    DecontamConfig,
    decontaminate_frame,
    file_items,
    hf_items,
    humaneval_items,
)


@pytest.fixture(scope="module")
def index(gsm8k_test: Path) -> BenchmarkIndex:
    return BenchmarkIndex(file_items(gsm8k_test, "gsm8k-test") + humaneval_items())


def _clean_passages(count: int) -> list[str]:
    out = []
    for name in sorted(topics):
        words = topics[name].split()
        out += [" ".join(words[i : i + 150]) for i in range(0, len(words) - 150, 150)]
    return out[:count]


def _change_words(text: str, rate: float, seed: int) -> str:
    """Substitute, delete or insert a word at `rate` of the positions (as the benchmark does)."""
    rng = random.Random(seed)
    vocab = topics["if"].split()
    words = text.split()
    chosen = set(rng.sample(range(len(words)), round(rate * len(words))))
    out = []
    for i, word in enumerate(words):
        op = rng.randrange(3) if i in chosen else None
        if op == 0:
            out.append(rng.choice(vocab))
        elif op == 2:
            out += [rng.choice(vocab), word]
        elif op is None:
            out.append(word)
    return " ".join(out)


def test_planted_items_are_flagged_with_benchmark_and_item_id(index, gsm8k_test):
    questions = [json.loads(line)["question"] for line in gsm8k_test.open()][:40]
    problems = humaneval_items()[:10]
    clean = _clean_passages(60)
    planted = {
        **{f"gsm8k-test/{i}": q for i, q in enumerate(questions[:10])},
        **{
            f"gsm8k-test/{i}": q.upper().replace(" ", "\n  ")
            for i, q in enumerate(questions[10:20], 10)
        },
        **{
            f"gsm8k-test/{i}": f"{clean[i]}\n\n{q}\n\n{clean[i + 1]}"
            for i, q in enumerate(questions[20:30], 20)
        },
        **{
            f"gsm8k-test/{i}": _change_words(q, 0.10, i) for i, q in enumerate(questions[30:40], 30)
        },
        **{f"humaneval/{p.item_id}": p.text for p in problems[:5]},
        **{f"humaneval/{p.item_id}": "Solution:\n" + p.text[-400:] for p in problems[5:10]},
    }
    texts = clean + list(planted.values())
    matches = index.scan(texts)
    assert all(m is None for m in matches[: len(clean)]), [m for m in matches if m][:3]
    for (label, _), match in zip(planted.items(), matches[len(clean) :], strict=True):
        assert match is not None and match.label == label
    assert index.counts(matches) == {"gsm8k-test": 40, "humaneval": 10}


def test_quarter_of_words_changed_is_caught_by_containment_not_overlap(index, gsm8k_test):
    questions = [json.loads(line)["question"] for line in gsm8k_test.open()][:60]
    changed = [_change_words(q, 0.25, i) for i, q in enumerate(questions)]
    matches = index.scan(changed)
    found = [m for m in matches if m]
    assert len(found) >= 0.9 * len(changed)
    assert any(m.method == "containment" for m in found)


def test_fragment_of_a_long_item_is_caught_by_ngram_overlap():
    item = BenchmarkItem("toy", "1", " ".join(f"w{i}" for i in range(200)))
    index = BenchmarkIndex([item], DecontamConfig(ngram=13))
    fragment = "intro text here " + " ".join(f"w{i}" for i in range(50, 64)) + " outro words"
    match = index.scan([fragment, "w1 w2 w3 w4 unrelated"])
    assert match[0] is not None and match[0].method == "overlap" and match[0].score == 2
    assert match[1] is None


def test_llama3_preset_needs_four_shared_8_grams():
    item = BenchmarkItem("toy", "a", " ".join(f"t{i}" for i in range(100)))
    eleven = " ".join(f"t{i}" for i in range(40, 51))  # 4 shared 8-grams, no 13-gram
    ten = " ".join(f"t{i}" for i in range(60, 70))  # 3 shared 8-grams
    llama3 = BenchmarkIndex([item], DecontamConfig.preset("llama3"))
    assert [m is not None for m in llama3.scan([eleven, ten])] == [True, False]
    assert BenchmarkIndex([item], DecontamConfig.preset("gpt3")).scan([eleven])[0] is None


def test_decontaminate_frame_and_parquet_benchmark(tmp_path):
    bench = tmp_path / "bench.parquet"
    pl.DataFrame(
        {"uid": ["x1", "x2"], "problem": ["alpha beta gamma delta " * 5, "one two three four " * 5]}
    ).write_parquet(bench)
    items = file_items(bench, id_column="uid")
    assert [i.item_id for i in items] == ["x1", "x2"] and items[0].benchmark == "bench"
    frame = pl.DataFrame({"text": ["ONE two three four " * 5, "nothing to see"], "n": [1, 2]})
    out, _ = decontaminate_frame(frame, BenchmarkIndex(items))
    assert out.get_column("contaminated_by").to_list() == ["bench/x2", None]
    assert out.get_column("n").to_list() == [1, 2]
    assert "bench/x2" in out.get_column("contamination_reason")[0]


def test_benchmark_loading_errors_are_clear(tmp_path):
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"answer": "no text column here"}\n')
    with pytest.raises(ValueError, match="no text column"):
        file_items(bad)
    with pytest.raises(FileNotFoundError):
        file_items(tmp_path / "missing.jsonl")
    # without `datasets`, or offline with it (tests run offline): either way a clear error
    names_it = "'openai/gsm8k' is a Hugging Face dataset|Hugging Face dataset 'openai/gsm8k'"
    with pytest.raises(RuntimeError, match=names_it):
        hf_items("openai/gsm8k")
    with pytest.raises(ValueError, match="no benchmark items"):
        BenchmarkIndex([])


def test_presets_carry_their_tuned_containment_unless_overridden():
    from synth_lib.curation.decontam import DecontamConfig

    assert DecontamConfig.preset("gpt3").containment == DecontamConfig().containment == 0.4
    assert DecontamConfig.preset("llama3").containment == 0.5
    assert DecontamConfig.preset("llama3", containment=0.3).containment == 0.3


def test_short_item_with_an_edit_is_caught_but_a_fragment_is_not():
    """A 9-word item has 8 bigrams: one substituted word leaves 6, short of `min_shared`
    (8) but over `min_shared_share` of them; a 5-word fragment (4 bigrams) stays clean."""
    words = [f"q{i}" for i in range(9)]
    index = BenchmarkIndex([BenchmarkItem("toy", "short", " ".join(words))])
    edited = " ".join([*words[:4], "other", *words[5:]])
    fragment = "intro " + " ".join(words[:5]) + " outro"
    found = index.scan([edited, fragment])
    assert found[0] is not None and found[0].label == "toy/short"
    assert found[0].method == "containment" and found[1] is None
    strict = BenchmarkIndex(index.items, DecontamConfig(min_shared_share=1.0))
    assert strict.scan([edited])[0] is None
