"""Anchor filtering: the similarity window, the reasons, and the real offline MiniLM model."""

import numpy as np
import pytest

from synth_lib.curation.anchor_filter import MiniLMEmbedder, anchor_filter, embed


class AxisEmbedder:
    """Each text names its vector: 'v:x,y' -> [x, y] (deterministic, no model)."""

    def __call__(self, texts):
        return np.array([[float(v) for v in t.split(":")[1].split(",")] for t in texts])


def test_window_keeps_the_middle_and_names_why_others_go():
    anchors = ["v:1,0", "v:0,1"]
    samples = ["v:1,0.02", "v:1,0.6", "v:-1,-1", "v:1,1"]
    result = anchor_filter(
        samples, anchors, AxisEmbedder(), low=0.65, high=0.92, anchor_keys=["a", "b"]
    )
    assert result.kept.tolist() == [False, True, False, True]
    assert result.reason[0].startswith("redundant:") and "anchor a" in result.reason[0]
    assert result.reason[2].startswith("drift:")
    assert result.nearest_anchor[1] == "a"
    assert result.reason_counts() == {"redundant": 1, "drift": 1}
    assert np.isclose(result.best[3], np.sqrt(0.5), atol=1e-6)


def test_no_anchors_means_every_sample_drifts_and_bad_windows_are_refused():
    result = anchor_filter(["v:1,0"], [], AxisEmbedder())
    assert result.kept.tolist() == [False]
    assert "no human anchors" in result.reason[0]
    with pytest.raises(ValueError, match="must not exceed"):
        anchor_filter(["v:1,0"], ["v:1,0"], AxisEmbedder(), low=0.9, high=0.5)


def test_embed_normalises_and_checks_shape():
    vectors = embed(AxisEmbedder(), ["v:3,4", "v:0,0"])
    assert np.allclose(vectors[0], [0.6, 0.8]) and np.allclose(vectors[1], [0, 0])
    with pytest.raises(ValueError, match="shape"):
        embed(lambda texts: np.zeros((1, 3)), ["a", "b"])


def test_real_minilm_model_separates_paraphrase_copy_and_drift():
    anchor = "The cat sat quietly on the warm mat in the kitchen all afternoon."
    samples = [
        "All afternoon a cat rested on a cosy rug near the kitchen stove.",  # paraphrase
        "The cat sat quietly on the warm mat in the kitchen all afternoon!",  # copy
        "Quarterly revenue of the semiconductor division fell sharply.",  # unrelated
    ]
    result = anchor_filter(samples, [anchor], MiniLMEmbedder(), low=0.5, high=0.95)
    assert result.sample_vectors.shape == (3, 384)
    assert result.kept.tolist() == [True, False, False]
    assert result.reason[1].startswith("redundant:") and result.reason[2].startswith("drift:")
