"""Provenance: the row schema, content-addressed ids, the ancestry walk and rollbacks.

- `schema`: `PROVENANCE_COLUMNS`, `make_row`, `row_id`, `Verdict`, `RowContext`, `rows_to_frame`
- `hashing`: `canonical_json`, `sha256_hex` (ids and cache keys hash the same bytes)
- `ancestry`: `load_index`, `ancestry` (what `synth lineage ROW_ID` prints)
- `rollback`: `Target`, `plan`, `record`, `lift`, `active_entries`, `removed_by`,
  `drop_rolled_back`, `rematerialization` (what `synth rollback` and the mix's readers use)
"""
