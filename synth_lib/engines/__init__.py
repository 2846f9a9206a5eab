"""Generation engines behind one batched interface, with a response cache.

- `base`: `Engine`, `GenerationRequest`, `GenerationResult`, `SamplingParams`, `ModelIdentity`
- `cache`: `ResponseCache`, `CachedEngine` (content-addressed, resumable, validated both ways)
- `validation`: `validate_result`, the gate every answer of every backend passes first
- `http_body`: reading a server's body under a byte cap, compressed and decompressed
- `transformers_engine`, `vllm_engine`, `openai_engine`, `tiny_model`: the backends
- `factory`: picks a backend from settings; `failures`: the failure log
- `output_checks`: classifies every response before it can become a row
- `economics`: tokens, throughput and cost per accepted row
"""
