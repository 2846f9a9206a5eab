"""`make run`: the default shards end to end on the local instance, then curation, in one command.

Before anything starts, runs whose process has died are marked failed and their pool slots
freed (`synth_jobs.dead_runs`), so a run killed with SIGKILL never blocks the next one.
Then the built-in shards (and any files under SYNTH_SEED_DIR) are registered, each chosen
shard runs as its own `synth_shards` run (in one process by default, so the model loads
once per shard; `--executor multiprocess` gives a process per step), and `synth_curation`
runs over every materialized shard.

    python -m synth_jobs.local_run                 # first shard of each built-in source
    python -m synth_jobs.local_run --shards all    # every registered shard
    python -m synth_jobs.local_run --shards ref-n64-00000,gsm8k-n64-00001
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

from synth_jobs.automation import CURATION_JOB, SHARD_JOB, register_shards
from synth_jobs.dead_runs import HOST_TAG, free_dead_runs, this_host
from synth_lib.seeds.catalogue import builtin_shards, file_shards
from synth_lib.seeds.sharding import default_shards

MODULE = "synth_jobs.definitions"


def _job(name: str):
    repo = ReconstructableRepository.for_module(MODULE, "defs", working_directory=os.getcwd())
    return repo.get_reconstructable_job(name)


def choose_shards(instance: dg.DagsterInstance, spec: str) -> list[str]:
    """Register the catalogue's shards; return those `spec` names (default: first of each)."""
    catalogue = builtin_shards()
    seed_dir = os.environ.get("SYNTH_SEED_DIR", "")
    from_files = [k for keys in file_shards(seed_dir).values() for k in keys] if seed_dir else []
    register_shards(instance, catalogue + from_files)
    if spec == "all":
        return instance.get_dynamic_partitions("seed_shards")
    if spec:
        chosen = [k.strip() for k in spec.split(",") if k.strip()]
        register_shards(instance, chosen)
        return chosen
    return default_shards(catalogue) + from_files


def _execute(instance: dg.DagsterInstance, job: str, tags: dict[str, str], executor: str) -> bool:
    began = time.perf_counter()
    tags = {HOST_TAG: this_host(), **tags}
    run_config = {"execution": {"config": {executor: {}}}}
    with dg.execute_job(_job(job), instance=instance, tags=tags, run_config=run_config) as result:
        ok = result.success
    label = tags.get("dagster/partition", "all shards")
    print(f"{job} [{label}]: {'ok' if ok else 'FAILED'} in {time.perf_counter() - began:.1f}s")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shards",
        default=os.environ.get("SYNTH_RUN_SHARDS", ""),
        help="'all', a comma-separated list, or empty for the default shards",
    )
    parser.add_argument(
        "--executor",
        choices=("in_process", "multiprocess"),
        default=os.environ.get("SYNTH_LOCAL_EXECUTOR", "in_process"),
        help="in_process (default: one process per shard run, the model loaded once) or "
        "multiprocess (a process per step)",
    )
    parser.add_argument("--no-curation", action="store_true", help="Skip synth_curation.")
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        for freed in free_dead_runs(instance):
            print(f"freed run {freed.run_id} (process gone): {freed.reason}")
        shards = choose_shards(instance, args.shards)
        print(f"{len(shards)} shards: {', '.join(shards)}")
        failed = [
            s
            for s in shards
            if not _execute(instance, SHARD_JOB, {"dagster/partition": s}, args.executor)
        ]
        if not args.no_curation and not _execute(instance, CURATION_JOB, {}, args.executor):
            failed.append(CURATION_JOB)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
