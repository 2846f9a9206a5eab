"""Seeds: readers, cleaning, PII scrub and the built-in sources.

- `readers`: JSONL/Parquet readers that quarantine bad rows with file, line and reason
- `cleaning`, `textclean`, `pii`: normalisation, exact dedup and PII scrub
- `reference`, `stdlib_code`, `gsm8k`: the built-in text, code and math sources
"""
