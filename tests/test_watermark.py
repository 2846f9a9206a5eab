"""Green-list watermark: the split, the logits processor, detection on generated text, the CLI."""

import json

import numpy as np
import pytest
import torch

from synth_lib.commands.cli import main
from synth_lib.engines.base import GenerationRequest, SamplingParams
from synth_lib.mix.watermark import (
    GreenListLogitsProcessor,
    WatermarkSpec,
    detect_tokens,
    watermark_engine,
)

SPEC = WatermarkSpec("test-key", gamma=0.25, delta=4.0)


def test_split_is_keyed_consistent_and_the_right_size():
    mask = SPEC.green_mask([17], 5000)
    assert abs(mask.mean() - 0.25) < 0.03
    assert all(mask[t] == SPEC.is_green([17], t) for t in range(0, 5000, 7))
    assert (mask != WatermarkSpec("other-key").green_mask([17], 5000)).mean() > 0.2
    assert (mask != SPEC.green_mask([18], 5000)).mean() > 0.2
    assert "test-key" not in repr(SPEC) and "test-key" not in SPEC.key_id
    with pytest.raises(ValueError, match="SYNTH_WATERMARK_KEY"):
        WatermarkSpec("")


def test_processor_adds_delta_to_green_logits_only():
    scores = torch.zeros(2, 300)
    ids = torch.tensor([[1, 5], [2, 9]])
    out = GreenListLogitsProcessor(SPEC)(ids, scores)
    for row, last in enumerate([5, 9]):
        expected = SPEC.green_mask([last], 300).astype(np.float32) * 4.0
        assert torch.equal(out[row], torch.from_numpy(expected))


def test_detection_counts_each_context_token_pair_once():
    green = next(t for t in range(100) if SPEC.is_green([3], t))
    repeated = [3, green] * 50  # one green pair repeated: chance, not evidence
    assert detect_tokens(SPEC, repeated).scored == 2
    assert detect_tokens(SPEC, repeated, ignore_repeated=False).z > 4


@pytest.fixture(scope="module")
def generations(smoke_models_dir):
    """The smoke model's own output, plain and watermarked, 24 prompts of ~64 tokens."""
    from synth_lib.engines.tiny_model import ensure_smoke_model
    from synth_lib.engines.transformers_engine import TransformersEngine

    model_dir = ensure_smoke_model(smoke_models_dir)
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=64)
    requests = [
        GenerationRequest(f"r{i}", f"Describe item {i} of the list.", sampling, seed=i)
        for i in range(24)
    ]
    plain = TransformersEngine(model_dir, batch_size=24)
    marked = watermark_engine(TransformersEngine(model_dir, batch_size=24), SPEC)
    assert marked.identity.revision == f"{plain.identity.revision}+wm.{SPEC.key_id}"
    return plain.tokenizer, plain.generate(requests), marked.generate(requests)


@pytest.mark.slow
def test_detects_watermarked_generations_and_passes_plain_ones(generations):
    tokenizer, plain, marked = generations

    def z_scores(results):
        ids = [tokenizer(r.text, add_special_tokens=False).input_ids for r in results]
        return [detect_tokens(SPEC, i) for i in ids if len(i) >= 24]

    hits, misses = z_scores(marked), z_scores(plain)
    assert len(hits) >= 12 and len(misses) >= 12
    tpr = sum(d.watermarked for d in hits) / len(hits)
    fpr = sum(d.watermarked for d in misses) / len(misses)
    print(f"TPR {tpr:.2f} FPR {fpr:.2f}")
    print("z watermarked", sorted(round(d.z, 1) for d in hits))
    print("z plain", sorted(round(d.z, 1) for d in misses))
    assert tpr >= 0.9 and fpr == 0.0


@pytest.mark.slow
def test_cli_detect_writes_scores_and_refuses_another_key(
    generations, smoke_models_dir, tmp_path, monkeypatch, capsys
):
    from synth_lib.engines.tiny_model import ensure_smoke_model

    _, plain, marked = generations
    src = tmp_path / "in.jsonl"
    rows = [{"text": marked[0].text, "n": 0}, {"text": plain[0].text, "n": 1}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.parquet"
    tokenizer = str(ensure_smoke_model(smoke_models_dir))
    args = ["watermark", "detect", str(src), str(out), "--tokenizer", tokenizer]
    monkeypatch.delenv("SYNTH_WATERMARK_KEY", raising=False)
    assert main(args) == 2
    assert "SYNTH_WATERMARK_KEY" in capsys.readouterr().err
    monkeypatch.setenv("SYNTH_WATERMARK_KEY", "test-key")
    assert main([*args, "--key-id", "not-this-one"]) == 2
    assert main([*args, "--key-id", SPEC.key_id]) == 0
    import polars as pl

    frame = pl.read_parquet(out)
    assert frame["n"].to_list() == [0, 1]
    assert frame["watermark_z"][0] > frame["watermark_z"][1]
    assert {"watermark_z", "watermarked", "watermark_tokens"} <= set(frame.columns)


def test_only_engines_with_logits_processors_watermark():
    from tests.scripted_engine import ScriptedEngine

    with pytest.raises(ValueError, match="cannot watermark"):
        watermark_engine(ScriptedEngine(lambda r: "x"), SPEC)


def test_vllm_request_function_matches_the_transformers_processor():
    from synth_lib.mix.watermark_vllm import request_processor

    logits = torch.randn(300)
    expected = GreenListLogitsProcessor(SPEC)(torch.tensor([[4, 8, 15]]), logits[None])[0]
    assert torch.equal(request_processor(SPEC)([4, 8], [15], logits), expected)
    assert torch.equal(request_processor(SPEC)([4, 8, 15], [], logits), expected)
