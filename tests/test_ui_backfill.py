"""A 2-shard backfill launched from the Dagster UI in headless Chromium, run by the daemon.

The webserver and `dagster-daemon` share a fresh instance that knows two seed shards; the test
opens the text_seeds asset page, clicks Materialize, launches the backfill of both shards from
the partition dialog, and waits for the instance to record the backfill as completed with both
shards of every seeds output materialized. Seeds only: no model. Browser helpers, skip/fail
convention (SYNTH_REQUIRE_UI) and webserver probes are those of test_ui.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from dagster._core.execution.backfill import BulkActionStatus

from synth_assets.partitions import SEED_SHARDS
from tests.conftest import REPO_ROOT
from tests.shards import REF, STDLIB
from tests.test_ui import (
    Page,
    _chromium,
    _free_port,
    _graphql,
    _kill_group,
    _location_loaded,
    _poll,
)

pytestmark = pytest.mark.slow

SHARDS = [STDLIB, REF]
SEED_OUTPUTS = ["text_seeds", "code_seeds", "math_seeds", "seed_quarantine"]


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A venv console script in its own session, output to `log`."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name(args[0])), *args[1:]],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Webserver and daemon over a fresh instance that knows two shards, none materialized."""
    root = tmp_path_factory.mktemp("ui_backfill")
    dagster_home = root / "dagster"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "SYNTH_HOME": str(root / "synth"),
        "SYNTH_GSM8K_PATH": "",
    }
    # Create the SQLite schema before two processes open it (see test_ui's fixture).
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions(SEED_SHARDS, SHARDS)
    port = _free_port()
    module = ("-m", "synth_jobs.definitions")
    server = _start(
        ["dagster-webserver", *module, "-h", "127.0.0.1", "-p", str(port)],
        env,
        root / "webserver.log",
    )
    daemon = _start(["dagster-daemon", "run", *module], env, root / "daemon.log")
    try:
        base = f"http://127.0.0.1:{port}"

        def server_up() -> bool:
            for name, proc in [("webserver", server), ("daemon", daemon)]:
                if proc.poll() is not None:
                    log = (root / f"{name}.log").read_text()[-3000:]
                    pytest.fail(f"dagster-{name} exited:\n{log}")
            return httpx.get(f"{base}/server_info", timeout=2).status_code == 200

        _poll(server_up, 90, "dagster-webserver /server_info")
        _poll(lambda: _location_loaded(base), 90, "the code location to load")
        assert _graphql(base, "mutation { setNuxSeen }") == {"setNuxSeen": True}
        yield {"base": base, "root": root, "dagster_home": dagster_home}
    finally:
        _kill_group(daemon)
        _kill_group(server)


@pytest.fixture(scope="module")
def page(dagster_ui: dict[str, Any]) -> Iterator[Page]:
    tab = Page(_chromium(), dagster_ui["root"] / "chromium-profile", dagster_ui["root"] / "c.log")
    try:
        yield tab
    finally:
        tab.close()


def _click_button(page: Page, label: str) -> bool:
    """Click the first enabled button whose text starts with `label`, as a user would."""
    return page.evaluate(
        f"""(() => {{ const b = [...document.querySelectorAll('button')].find(
              b => b.innerText.trim().startsWith({json.dumps(label)}) && !b.disabled);
            if (b) b.click(); return Boolean(b); }})()"""
    )


def test_ui_launches_a_two_shard_backfill_that_succeeds(
    page: Page, dagster_ui: dict[str, Any]
) -> None:
    page.goto(f"{dagster_ui['base']}/assets/text_seeds")
    page.wait_for_text(["text_seeds", "Materialize"], absent=("Loading",))
    _poll(lambda: _click_button(page, "Materialize"), 20, "the Materialize button")
    page.wait_for_text(["Additional assets will be materialized", "seed_quarantine"])
    assert _click_button(page, "Confirm")
    page.wait_for_text(["Partition selection", "Launch backfill"])
    # Choose every registered shard: the two of the fixture.
    _poll(lambda: _click_button(page, "All"), 10, "the All partitions button")
    page.wait_for_text(["2 partitions"])
    assert _click_button(page, "Launch backfill")
    # The dialog closes once the backfill is submitted.
    _poll(lambda: "Partition selection" not in page.text(), 30, "the dialog to close")
    backfill = _poll(
        lambda: _finished_backfill(dagster_ui["dagster_home"]), 180, "the backfill to finish"
    )
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, backfill.status
    with dg.DagsterInstance.from_config(str(dagster_ui["dagster_home"])) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
        # multi_run(max_partitions_per_run=1): one run per shard, its range one shard wide.
        ranges = sorted(
            (
                r.tags["dagster/asset_partition_range_start"],
                r.tags["dagster/asset_partition_range_end"],
            )
            for r in runs
        )
        assert ranges == sorted((shard, shard) for shard in SHARDS)
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        for name in SEED_OUTPUTS:
            done = instance.get_materialized_partitions(dg.AssetKey(name))
            assert done == set(SHARDS), name
    # The UI's own record of it: the backfill page, both shards targeted and succeeded per asset.
    page.goto(f"{dagster_ui['base']}/runs/b/{backfill.backfill_id}")
    text = page.wait_for_text([backfill.backfill_id, "Succeeded", *SHARDS], absent=("Loading",))
    for name in SEED_OUTPUTS:
        # targeted 2, in progress 0, succeeded 2, failed 0
        assert f"{name}\n100% completed\n2\n0\n2\n0" in text, name


def _finished_backfill(dagster_home: Path) -> Any:
    """The one backfill of the instance once it is no longer in progress, else None."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        backfills = instance.get_backfills()
    assert len(backfills) <= 1, backfills
    done = backfills and backfills[0].status not in {
        BulkActionStatus.REQUESTED,
        BulkActionStatus.CANCELING,
    }
    return backfills[0] if done else None
