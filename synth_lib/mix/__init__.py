"""The training mix and what leaves with it: shards, the export, its card, licences, watermark.

- `shards`: `build_mix`, `write_shards`, `verify_shards` (manifest sha256), `read_shards`
- `export`: `split_by_config` (one frame per TRL format), `write_export` (folder + manifest)
- `card`: `card_facts`, `render_card` (Hugging Face README with YAML front matter)
- `croissant`: `croissant_jsonld`, `validate` (mlcroissant)
- `licences`: `most_restrictive`, `row_licence`, `model_licence`, `seed_licences`
- `watermark`: `WatermarkSpec`, `GreenListLogitsProcessor`, `detect_tokens`, `watermark_engine`
- `watermark_vllm`: `vllm_processor_class`, `request_processor` (vLLM v1, per request)
"""
