# %% [markdown]
# # Exploring provenance
# Load materialized assets from `$SYNTH_HOME/data` and answer "which seed and which model
# made this row" with plain Polars filters. Run cell by cell in an editor that understands
# `# %%` cells (VS Code, Jupytext), after `make run`.

# %%
import os
from pathlib import Path

import polars as pl

data = Path(os.environ.get("SYNTH_HOME", ".synth")) / "data"
mix = pl.read_parquet(data / "training_mix.parquet")
mix.group_by("stage", "kind").len()

# %% Rows per generating model and template
mix.filter(pl.col("generator").is_not_null()).group_by(
    pl.col("generator").struct.field("model"), pl.col("generator").struct.field("template")
).len()

# %% Everything descending from one seed
seed_id = mix["root_seed_ids"][0][0]
mix.filter(pl.col("root_seed_ids").list.contains(seed_id))
