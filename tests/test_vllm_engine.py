"""The vllm backend: batching, params, request ids and output joining.

On CPU the engine runs against `FakeLLM`, a test double with `vllm.LLM`'s `generate`,
`get_tokenizer` and request-counter behaviour that returns its outputs shuffled. The
real engine runs only where vLLM and a CUDA GPU are present (tiny dummy-weight model).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from synth_lib.engines.base import GenerationRequest, ModelIdentity, SamplingParams
from synth_lib.engines.cache import CachedEngine, GenerationStats, ResponseCache
from synth_lib.engines.economics import PriceTable, economics_metadata
from synth_lib.engines.factory import build_engine, chunk_size, k8s_gpu_op_tags
from synth_lib.engines.vllm_engine import (
    VllmConfig,
    VllmEngine,
    join_outputs,
    llm_kwargs,
    model_identity,
    sampling_kwargs,
)


class FakeTokenizer:
    """Characters are tokens; a chat template wraps messages in [role] markers."""

    def __init__(self, chat_template: str | None) -> None:
        self.chat_template = chat_template
        self.special_flags: list[bool] = []

    def apply_chat_template(self, messages, tokenize: bool, add_generation_prompt: bool) -> str:
        assert not tokenize and add_generation_prompt
        return "".join(f"[{m['role']}]{m['content']}" for m in messages) + "[assistant]"

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        self.special_flags.append(add_special_tokens)
        return ([1] if add_special_tokens else []) + [ord(c) for c in text]


class FakeLLM:
    """Answers each prompt with its own decoded text; the finish reason is set by the text."""

    def __init__(self, chat_template: str | None = "tmpl", max_model_len: int = 200) -> None:
        self.request_counter = SimpleNamespace(counter=0)
        model_config = SimpleNamespace(max_model_len=max_model_len, get_vocab_size=lambda: 1000)
        self.llm_engine = SimpleNamespace(model_config=model_config)
        self.tokenizer = FakeTokenizer(chat_template)
        self.calls: list[tuple[list[dict], list[dict]]] = []
        self.drop: set[int] = set()
        self.rng = random.Random(0)

    def get_tokenizer(self) -> FakeTokenizer:
        return self.tokenizer

    def generate(self, prompts, params, use_tqdm: bool = True) -> list[Any]:
        assert len(prompts) == len(params) and not use_tqdm
        self.calls.append((list(prompts), list(params)))
        outputs = []
        for prompt, param in zip(prompts, params, strict=True):
            rid = self.request_counter.counter
            self.request_counter.counter += 1
            ids = prompt["prompt_token_ids"]
            text = "".join(chr(t) for t in ids if t > 1)
            reason = "length" if "LONG" in text else "abort" if "ABORT" in text else "stop"
            if rid in self.drop:
                continue
            completion = SimpleNamespace(
                text=f"out<{text}>seed={param['seed']}",
                token_ids=list(range(param["max_tokens"] if reason == "length" else 3)),
                finish_reason=reason,
            )
            outputs.append(
                SimpleNamespace(request_id=str(rid), prompt_token_ids=ids, outputs=[completion])
            )
        self.rng.shuffle(outputs)
        return outputs


def engine_with(llm: FakeLLM, **config: Any) -> VllmEngine:
    return VllmEngine(VllmConfig(model="some/model", **config), llm=llm, make_params=dict)


def reqs(n: int, prefix: str = "p", **kw: Any) -> list[GenerationRequest]:
    return [GenerationRequest(f"id{i}", f"{prefix}{i}", seed=100 + i, **kw) for i in range(n)]


def test_whole_batch_is_one_engine_call_and_shuffled_outputs_join_by_request_id():
    llm = FakeLLM()
    engine = engine_with(llm)
    requests = reqs(50)
    results = engine.generate(requests)
    assert len(llm.calls) == 1 and len(llm.calls[0][0]) == 50
    assert [r.request_id for r in results] == [f"id{i}" for i in range(50)]
    for i, result in enumerate(results):
        assert result.text == f"out<[user]p{i}[assistant]>seed={100 + i}"
        assert result.ok and result.completion_tokens == 3
        assert result.prompt_tokens == len(f"[user]p{i}[assistant]")


def test_join_holds_when_the_engine_counter_did_not_start_at_zero():
    llm = FakeLLM()
    engine = engine_with(llm)
    engine.generate(reqs(7, "warm"))
    results = engine.generate(reqs(20, "q"))
    assert [r.text.split(">")[0] for r in results] == [
        f"out<[user]q{i}[assistant]" for i in range(20)
    ]


def test_a_missing_output_fails_only_its_request():
    llm = FakeLLM()
    llm.drop = {3}
    results = engine_with(llm).generate(reqs(6))
    assert [r.finish_reason for r in results] == ["stop"] * 3 + ["error"] + ["stop"] * 2
    assert results[3].error.startswith("MissingOutput")
    assert results[4].text.startswith("out<[user]p4")


def test_join_without_counter_uses_smallest_id():
    requests = reqs(3)
    outputs = [
        SimpleNamespace(
            request_id=str(10 + i),
            prompt_token_ids=[1, 2],
            outputs=[SimpleNamespace(text=f"t{i}", token_ids=[5], finish_reason="stop")],
        )
        for i in (2, 0, 1)
    ]
    results = join_outputs(requests, outputs, None, "text")
    assert [r.text for r in results] == ["t0", "t1", "t2"]


def test_params_mapping_per_request():
    request = GenerationRequest(
        "a", "x", SamplingParams(temperature=0.3, top_p=0.5, max_tokens=9, stop=("END",)), seed=42
    )
    kw = sampling_kwargs(request, VllmConfig(model="m"))
    assert kw == {
        "n": 1,
        "temperature": 0.3,
        "top_p": 0.5,
        "max_tokens": 9,
        "stop": ["END"],
        "seed": 42,
        "ignore_eos": False,
        "detokenize": True,
    }
    bench = VllmConfig(
        model="m", prompt_format="token_ids", ignore_eos=True, seed_per_request=False
    )
    kw = sampling_kwargs(request, bench)
    assert (
        kw["seed"] is None and kw["ignore_eos"] and not kw["detokenize"] and kw["stop"] == ["END"]
    )
    assert sampling_kwargs(GenerationRequest("b", "y"), VllmConfig(model="m"))["stop"] is None


def test_finish_reasons_are_mapped():
    results = engine_with(FakeLLM()).generate(
        [
            GenerationRequest("a", "fine"),
            GenerationRequest("b", "LONG one"),
            GenerationRequest("c", "ABORT"),
        ]
    )
    assert [r.finish_reason for r in results] == ["stop", "length", "error"]
    assert results[1].error.startswith("Truncated") and results[1].completion_tokens == 128
    assert results[2].error == "EngineFinish: vLLM finish_reason='abort'"


def test_chat_template_encodes_without_extra_special_tokens_and_text_mode_with():
    llm = FakeLLM()
    engine_with(llm).generate([GenerationRequest("a", "hi", system="be brief")])
    assert llm.calls[0][0][0]["prompt_token_ids"] == [
        ord(c) for c in "[system]be brief[user]hi[assistant]"
    ]
    assert llm.tokenizer.special_flags == [False]
    plain = FakeLLM(chat_template=None)
    engine_with(plain).generate([GenerationRequest("a", "hi", system="sys")])
    assert plain.calls[0][0][0]["prompt_token_ids"] == [1, *[ord(c) for c in "sys\n\nhi"]]
    forced_text = FakeLLM()
    engine_with(forced_text, prompt_format="text").generate([GenerationRequest("a", "hi")])
    assert forced_text.calls[0][0][0]["prompt_token_ids"] == [1, ord("h"), ord("i")]


def test_chat_without_template_and_too_long_prompts_fail_before_the_engine():
    no_template = FakeLLM(chat_template=None)
    [result] = engine_with(no_template, prompt_format="chat").generate(
        [GenerationRequest("a", "x")]
    )
    assert result.error.startswith("PromptError") and no_template.calls == []
    llm = FakeLLM(max_model_len=40)
    results = engine_with(llm).generate(
        [GenerationRequest("a", "short"), GenerationRequest("b", "y" * 30)]
    )
    assert results[0].ok and results[1].error == (
        "PromptError: prompt is 47 tokens, the model takes < 40"
    )
    assert len(llm.calls[0][0]) == 1


def test_token_ids_mode_takes_and_returns_json_token_ids():
    llm = FakeLLM()
    engine = engine_with(llm, prompt_format="token_ids")
    ok, bad = engine.generate(
        [GenerationRequest("a", json.dumps([72, 73])), GenerationRequest("b", "hi")]
    )
    assert llm.calls[0][0] == [{"prompt_token_ids": [72, 73]}]
    assert json.loads(ok.text) == [0, 1, 2] and ok.prompt_tokens == 2
    assert bad.error.startswith("PromptError")
    floats, outside = engine.generate(
        [GenerationRequest("c", "[1.5, 2]"), GenerationRequest("d", "[5, 1000]")]
    )
    assert floats.error == "PromptError: prompt_format=token_ids needs a JSON list of integers"
    assert outside.error == "PromptError: token id outside the vocabulary [0, 1000)"
    assert len(llm.calls) == 1


def test_rejected_sampling_params_fail_only_their_request():
    def strict_params(**kw: Any) -> dict:
        if kw["temperature"] < 0:
            raise ValueError("temperature must be non-negative")
        return kw

    llm = FakeLLM()
    engine = VllmEngine(VllmConfig(model="m"), llm=llm, make_params=strict_params)
    bad = GenerationRequest("b", "x", SamplingParams(temperature=-1.0))
    results = engine.generate([GenerationRequest("a", "x"), bad])
    assert results[0].ok and len(llm.calls[0][0]) == 1
    assert results[1].error.startswith("PromptError: sampling parameters rejected")


def test_an_engine_crash_becomes_error_results():
    llm = FakeLLM()

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA error: out of memory")

    llm.generate = boom
    results = engine_with(llm).generate(reqs(4))
    assert [r.finish_reason for r in results] == ["error"] * 4
    assert results[0].error == "RuntimeError: CUDA error: out of memory"


def test_through_the_cache_a_rerun_calls_the_engine_not_at_all(tmp_path):
    llm = FakeLLM()
    engine = engine_with(llm)
    cached = CachedEngine(
        engine, ResponseCache(tmp_path / "c.sqlite"), chunk_size=chunk_size("vllm")
    )
    first = cached.generate(reqs(300))
    again = CachedEngine(engine, ResponseCache(tmp_path / "c.sqlite")).generate(reqs(300))
    assert len(llm.calls) == 1, "300 requests fit one chunk: one engine call"
    assert [r.text for r in again] == [r.text for r in first] and all(r.cached for r in again)


def test_engine_args_and_identity(tmp_path: Path):
    (tmp_path / "config.json").write_text('{"model_type": "qwen2"}')
    dummy = VllmConfig(
        model=str(tmp_path), load_format="dummy", revision="abc", prompt_format="token_ids"
    )
    kwargs = llm_kwargs(dummy)
    assert kwargs["skip_tokenizer_init"] and kwargs["load_format"] == "dummy"
    assert "revision" not in kwargs, "a local directory has no hub revision"
    identity = model_identity(dummy)
    assert identity.is_smoke_model and identity.revision.startswith("dummy-weights:")
    assert identity.model == tmp_path.name
    hub = VllmConfig(model="Qwen/Qwen2.5-7B-Instruct", revision="a1b2", tensor_parallel_size=2)
    assert llm_kwargs(hub)["revision"] == "a1b2" and llm_kwargs(hub)["tensor_parallel_size"] == 2
    assert model_identity(hub).revision == "a1b2" and not model_identity(hub).is_smoke_model


def test_factory_rejects_unknown_backends_and_builds_openai():
    with pytest.raises(ValueError, match="unknown generation backend"):
        build_engine("tgi")
    engine = build_engine("openai", base_url="http://127.0.0.1:1/v1", model="m", api_key="k")
    assert engine.identity.backend == "openai" and engine.identity.model == "m"
    tags = k8s_gpu_op_tags(2)["dagster-k8s/config"]["container_config"]["resources"]
    assert tags["limits"] == {"nvidia.com/gpu": "2"} == tags["requests"]


# --- real vLLM on a GPU -------------------------------------------------------------

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_model(target: Path) -> None:
    """A 2-layer Qwen2-shaped config plus a BPE tokenizer with a chat template (weights: dummy)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([__doc__ or "", CHAT_TEMPLATE] * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(target)
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "num_hidden_layers": 2,
        "vocab_size": 512,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "eos_token_id": fast.eos_token_id,
    }
    (target / "config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def real_llm(tmp_path_factory):
    pytest.importorskip(
        "vllm", reason="vllm is not installed: GPU execution is checked on a GPU box"
    )
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: vLLM execution is checked on a GPU box")
    model_dir = tmp_path_factory.mktemp("tiny-qwen2")
    build_tiny_model(model_dir)
    config = VllmConfig(
        model=str(model_dir),
        load_format="dummy",
        dtype="bfloat16",
        gpu_memory_utilization=0.3,
        max_model_len=512,
        enforce_eager=True,
    )
    return VllmEngine(config), model_dir


@pytest.mark.gpu
def test_real_vllm_chat_generation_counts_and_seeds(real_llm):
    from transformers import AutoTokenizer

    engine, model_dir = real_llm
    tok = AutoTokenizer.from_pretrained(model_dir)
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=12)
    requests = [
        GenerationRequest(f"r{i}", f"prompt number {i}", sampling, seed=i % 3) for i in range(6)
    ]
    requests.append(GenerationRequest("long", "word " * 600, sampling))
    results = engine.generate(requests)
    assert [r.request_id for r in results] == [r.request_id for r in requests]
    assert results[-1].error.startswith("PromptError: prompt is")
    for request, result in zip(requests[:6], results[:6], strict=True):
        expected = tok.apply_chat_template(
            [{"role": "user", "content": request.prompt}],
            tokenize=False,
            add_generation_prompt=True,
        )
        assert result.prompt_tokens == len(tok.encode(expected, add_special_tokens=False))
        assert result.finish_reason in ("stop", "length")
        assert (result.completion_tokens == 12) == (result.finish_reason == "length")
    again = engine.generate(requests[:6])
    assert [r.text for r in again] == [r.text for r in results[:6]], "per-request seeds reproduce"


@pytest.mark.gpu
def test_real_vllm_token_ids_mode_fixed_length(real_llm):
    engine, _ = real_llm
    config = VllmConfig(
        model=engine.config.model, load_format="dummy", prompt_format="token_ids", ignore_eos=True
    )
    ids_engine = VllmEngine(config, llm=engine.llm)
    sampling = SamplingParams(temperature=0.8, top_p=1.0, max_tokens=16)
    requests = [
        GenerationRequest(f"t{i}", json.dumps([5 + i] * (10 + i)), sampling, seed=i)
        for i in range(8)
    ]
    results = ids_engine.generate(requests)
    assert [r.prompt_tokens for r in results] == [10 + i for i in range(8)]
    assert all(r.completion_tokens == 16 and r.finish_reason == "length" for r in results)
    assert all(len(json.loads(r.text)) == 16 for r in results)


def test_economics_price_gpu_hours_for_local_and_tokens_for_apis(tmp_path: Path):
    stats = GenerationStats(
        requests=100,
        cache_hits=20,
        prompt_tokens=2_000_000,
        completion_tokens=1_000_000,
        engine_seconds=360.0,
    )
    local = ModelIdentity("vllm", "qwen", "r1")
    meta = economics_metadata(stats, accepted_rows=50, identity=local, gpus=2)
    assert meta["cost_usd"] == pytest.approx(2.5 * 2 * 0.1)
    assert meta["cost_per_accepted_row_usd"] == pytest.approx(0.5 / 50)
    assert meta["pass_rate"] == 0.5 and meta["completion_tokens_per_s"] == pytest.approx(2777.8)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"openai:gpt-*": {"input_per_mtok": 0.5, "output_per_mtok": 2}}))
    api = economics_metadata(
        stats, 40, ModelIdentity("openai", "gpt-x", "api"), PriceTable.from_json(prices)
    )
    assert api["cost_usd"] == pytest.approx(2 * 0.5 + 1 * 2) and api["gpu_hours"] == 0.0
    assert api["price_basis"].startswith("openai:gpt-*")
    unpriced = economics_metadata(
        stats, 0, ModelIdentity("openai", "other", "api"), PriceTable.from_json("{}")
    )
    assert unpriced["cost_usd"] == 0.0 and unpriced["cost_per_accepted_row_usd"] is None
    assert unpriced["price_basis"].startswith("unpriced")
