"""Lineage out of the process: OpenLineage events and experiment-tracking values.

- `openlineage_events`: START/COMPLETE/FAIL events with schema, quality, column-lineage and
  provenance facets (`provenance_facet.schema.json` is the custom facet schema)
- `tracking_values`: asset metadata as MLflow metrics, params and artifacts
"""
