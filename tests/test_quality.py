"""Quality signals and the combined verdict: filler, loops and noise fail, prose passes."""

import pytest

from synth_lib.curation.quality import (
    CausalLMPerplexity,
    QualityThresholds,
    reason_counts,
    score_texts,
    signals,
)

PROSE = (
    "A list is a mutable sequence: items can be appended, removed or replaced in place, "
    "and slicing returns a new list. Tuples, by contrast, cannot change after creation, "
    "which makes them usable as dictionary keys when all their items are hashable."
)


def test_prose_passes_every_check():
    [row] = score_texts([PROSE])
    assert row["quality_passed"] and row["quality_score"] == 1.0 and row["quality_reason"] is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("the list is good. " * 40, "repeated_ngrams"),
        ("# ## ### #### ##### ###### ... ... ... ...", "symbols"),
        ("ok", "too_few_words"),
        ("1234 5678 9012 3456 7890 1357 2468 1111", "non_alphabetic"),
        ("it is the of and to be that it is the of and to", "low_density"),
    ],
)
def test_filler_loops_and_noise_fail_with_their_reason(text, reason):
    [row] = score_texts([text])
    assert not row["quality_passed"]
    assert row["quality_reason"].startswith(reason), row["quality_reason"]


def test_thresholds_are_configurable_and_can_be_switched_off():
    loop = "the list is good. " * 40
    assert not score_texts([loop])[0]["quality_passed"]
    lenient = QualityThresholds(max_dup_ngram_share=None, max_dup_line_share=None,
                                min_compression_ratio=None, min_density=None)  # fmt: skip
    assert score_texts([loop], lenient)[0]["quality_passed"]


def test_perplexity_is_a_signal_and_a_gate():
    rows = score_texts([PROSE, PROSE], perplexity=lambda texts: [12.0, 5000.0])
    assert [r["quality_passed"] for r in rows] == [True, False]
    assert rows[1]["quality_reason"].startswith("high_perplexity")
    assert reason_counts(rows) == {"high_perplexity": 1}


def test_compression_ratio_separates_loops_from_prose():
    assert signals("abc def " * 100).compression_ratio < 0.1 < signals(PROSE * 2).compression_ratio


def test_causal_lm_perplexity_masks_padding(smoke_models_dir):
    model_dir = next(p.parent for p in smoke_models_dir.rglob("config.json"))
    scorer = CausalLMPerplexity(str(model_dir), batch_size=2)
    short, long = "A list is mutable.", PROSE
    together = scorer([short, long])
    alone = [scorer([short])[0], scorer([long])[0]]
    assert all(v is not None and v > 1.0 for v in together)
    assert together == pytest.approx(alone, rel=1e-3)
