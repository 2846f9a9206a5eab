"""Reading what a test materialization recorded."""

from typing import Any

import dagster as dg


def materialization_metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, Any]:
    """The plain metadata values of asset `key`'s materialization in `result`."""
    for event in result.get_asset_materialization_events():
        if event.materialization.asset_key.to_user_string() == key:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{key} not materialized")
