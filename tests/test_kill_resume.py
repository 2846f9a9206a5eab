"""A run killed with SIGKILL during `rephrasings` and re-run asks the engine only for the rest."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from synth_jobs.definitions import all_assets
from synth_jobs.profiles import local_resources
from tests.dagster_results import materialization_metadata
from tests.shards import materialize_shard, shard_file

pytestmark = pytest.mark.slow
N_SEEDS = 16
STYLES = 4
# every one of the first N_SEEDS seeds is rephrased, whatever its length, so the run makes
# exactly N_SEEDS * STYLES requests (the default length filter keeps fewer of the shard)
REPHRASE = {"max_seeds": N_SEEDS, "max_tokens": 96, "max_passage_chars": 0}
RUN_CONFIG = {"ops": {"rephrasings": {"config": REPHRASE}}}

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import dagster as dg
    from synth_jobs.definitions import all_assets
    from synth_jobs.profiles import local_resources
    from resources.engine import GenerationEngine

    resources = local_resources(Path(sys.argv[1]))
    engine = resources["engine"]
    resources["engine"] = GenerationEngine(
        model=engine.model,
        cache_dir=engine.cache_dir,
        models_dir=engine.models_dir,
        chunk_size=4,
        batch_size=4,
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("seed_shards", ["ref-n64-00000"])
    dg.materialize(
        all_assets, selection=["rephrasings"], resources=resources,
        instance=instance, partition_key="ref-n64-00000",
        run_config=RUN_CONFIG,
    )
    """
).replace("RUN_CONFIG", repr(RUN_CONFIG))


def _cached(home) -> int:
    path = home / "cache" / "responses.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_killed_rephrasings_resumes_with_only_missing_requests(synth_home):
    resources = local_resources(synth_home)
    seeds = materialize_shard(
        all_assets,
        selection=["text_seeds", "code_seeds", "math_seeds", "seed_quarantine"],
        resources=resources,
        run_config={"ops": {"seeds": {"config": {"gsm8k_path": ""}}}},
    )
    assert seeds.success
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(synth_home)], env=os.environ.copy())
    deadline = time.monotonic() + 120
    while _cached(synth_home) < 8 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    done_before = _cached(synth_home)
    total = N_SEEDS * STYLES
    assert 0 < done_before < total, f"kill did not land mid-run ({done_before}/{total} cached)"

    rerun = materialize_shard(
        all_assets,
        selection=["rephrasings"],
        resources=resources,
        run_config=RUN_CONFIG,
    )
    meta = materialization_metadata(rerun, "rephrasings")
    assert meta["requests"] == total
    assert meta["cache_hits"] == done_before
    assert meta["engine_requests"] == total - done_before
    assert meta["dagster/row_count"] + meta["generation_failures"] == total
    # every answer is now cached once; transient errors stay out by design, to be re-sent
    assert _cached(synth_home) == total - meta["generation_failures_retryable"]
    final = shard_file(synth_home / "data", "rephrasings")
    assert final.is_file()
    assert not [p for p in final.parent.iterdir() if p.name.endswith(".tmp")]
