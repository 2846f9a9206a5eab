"""Curation: near-duplicates, decontamination, anchor window, drift and quality gates.

- `steps`: `curate_mix` and the per-step functions over a mix frame
- `shingles`: normalisation and word n-gram hashes shared by the steps below
- `dedup`: exact + MinHash LSH near-duplicate clusters (`find_duplicates`, `dedup_frame`)
- `decontam`: benchmark n-gram and containment index (`BenchmarkIndex`)
- `anchor_filter`: embedding cosine window to the human anchors
- `drift`: collapse/drift metrics and their bounds
- `quality_gates`: Great Expectations gates (`run_gates`)
- `pii_rescan`: the seed PII scrubber over generated rows (`rescan_generated`)
"""
