"""Provenance: the row schema, content-addressed ids and the ancestry walk.

- `schema`: `PROVENANCE_COLUMNS`, `make_row`, `row_id`, `Verdict`, `RowContext`, `rows_to_frame`
- `hashing`: `canonical_json`, `sha256_hex` (ids and cache keys hash the same bytes)
- `ancestry`: `load_index`, `ancestry` (what `synth lineage ROW_ID` prints)
"""
