"""Text stages: WRAP-style rephrasings of human passages.

- `rephrase`: `rephrase_requests`, `rephrase` (passages -> rewrite rows with verdicts)
"""
