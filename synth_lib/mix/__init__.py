"""The training mix: real and synthetic rows at a ratio, written as shards + manifest.

- `shards`: `build_mix`, `write_shards`, `verify_shards` (manifest sha256), `read_shards`
"""
