"""The Dagster UI in a real headless Chromium: the asset graph, its seed shards and a recorded
materialization of one shard.

The browser is driven over the Chrome DevTools Protocol on a pipe (`--remote-debugging-pipe`):
no driver binary, no open debugging port, no Python dependency, and Chromium exits as soon
as the pipe closes. Skips when Chromium is absent unless SYNTH_REQUIRE_UI=1;
SYNTH_CHROMIUM names another Chromium binary.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from PIL import Image

from synth_assets.partitions import SEED_SHARDS
from synth_jobs.definitions import all_assets
from synth_jobs.profiles import local_resources
from tests.conftest import REPO_ROOT
from tests.shards import REF, STDLIB, materialize_shard

pytestmark = pytest.mark.slow

SEED_KEYS = ["text_seeds", "code_seeds", "math_seeds", "seed_quarantine"]
# The shards whose seeds are materialized, REF last: its run is the latest materialization.
SHARDS = [STDLIB, REF]
# The upstream graph of training_mix: seeds, a generating stage and the mix itself.
GRAPH_ASSETS = ["text_seeds", "code_seeds", "rephrasings", "training_mix"]
CHROMIUMS = ["chromium", "chromium-browser", "google-chrome"]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
]


def _chromium() -> str:
    """SYNTH_CHROMIUM if set, else the first Chromium on PATH."""
    names = [os.environ["SYNTH_CHROMIUM"]] if os.environ.get("SYNTH_CHROMIUM") else CHROMIUMS
    found = next(filter(None, map(shutil.which, names)), None)
    if not found:
        reason = f"no Chromium found ({', '.join(names)}); install it: apt-get install chromium"
        if os.environ.get("SYNTH_REQUIRE_UI") == "1":
            pytest.fail(f"SYNTH_REQUIRE_UI=1 but {reason}")
        pytest.skip(reason)
    return found


def _high_fd(fd: int) -> int:
    """Move a pipe end above 4 so the redirections `3<&N 4>&M` cannot clobber it."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the process and everything it started (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _poll(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    """Call `probe` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except Exception as exc:  # the page may be mid-navigation; keep asking
            last, result = exc, None
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})")


class Page:
    """One Chromium tab over CDP: JSON messages, NUL-terminated, on fds 3 (in) and 4 (out)."""

    def __init__(self, chromium: str, profile: Path, log: Path) -> None:
        cmd_r, self._cmd_w = map(_high_fd, os.pipe())
        self._reply_r, reply_w = map(_high_fd, os.pipe())
        with log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [
                    "/bin/bash",
                    "-c",
                    f'exec "$@" 3<&{cmd_r} 4>&{reply_w}',
                    "bash",
                    chromium,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    "about:blank",
                ],
                pass_fds=(cmd_r, reply_w),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        os.close(cmd_r)
        os.close(reply_w)
        self._buffer, self._next_id, self._session = b"", 0, None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.send("Page.enable")

    def send(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its reply, skipping events on the way."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self._session:
            message["sessionId"] = self._session
        os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._reply_r], [], [], left)[0]:
                    raise TimeoutError(f"no reply to {method} in {timeout}s")
                chunk = os.read(self._reply_r, 1 << 20)
                if not chunk:
                    raise ConnectionError(f"chromium closed the pipe during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def goto(self, url: str, width: int = 1400, height: int = 900) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.send("Page.navigate", url=url)

    def text(self) -> str:
        """The rendered text of the page, as a user would read it."""
        result = self.send(
            "Runtime.evaluate", expression="document.body.innerText", returnByValue=True
        )
        return result["result"].get("value") or ""

    def wait_for_text(
        self, needles: list[str], timeout: float = 30, absent: tuple[str, ...] = ()
    ) -> str:
        """The page text once it holds every needle and none of `absent` (e.g. spinners)."""

        def probe() -> str | None:
            text = self.text()
            done = all(n in text for n in needles) and not any(a in text for a in absent)
            return text if done else None

        return _poll(probe, timeout, f"page text to contain {needles}, not {list(absent)}")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def tooltip_of(self, element: str) -> str:
        """The tooltip a user sees with the mouse on `element` (a JS expression): the text of
        the tooltip the element names as describing it while open."""
        x, y = self.evaluate(
            f"(() => {{ const b = ({element}).getBoundingClientRect();"
            " return [b.x + b.width / 2, b.y + b.height / 2]; })()"
        )
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        tip = (
            f"(() => {{ const id = ({element}).getAttribute('aria-describedby');"
            " const tip = id && document.getElementById(id); return tip && tip.innerText; })()"
        )
        return _poll(lambda: self.evaluate(tip), 10, f"the tooltip of {element}")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        os.close(self._cmd_w)
        os.close(self._reply_r)
        _kill_group(self.proc)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _materialize_seeds(dagster_home: Path, synth_home: Path) -> dict[str, Any]:
    """Seeds only (seconds, no model), one run per shard: the UI then has real materializations
    of two shards to show. Returns the text_seeds metadata of the last (REF) run and the run
    id of each shard."""
    runs = {}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions(SEED_SHARDS, SHARDS)
        for shard in SHARDS:
            result = materialize_shard(
                all_assets,
                shard,
                instance,
                selection=SEED_KEYS,
                resources=local_resources(synth_home),
                run_config={"ops": {"seeds": {"config": {"gsm8k_path": ""}}}},
            )
            assert result.success, shard
            runs[shard] = result.run_id
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("text_seeds")
    ]
    return {
        "run_id": result.run_id,
        "shard_runs": runs,
        **{k: v.value for k, v in event.materialization.metadata.items()},
    }


def _graphql(base: str, query: str) -> dict[str, Any]:
    reply = httpx.post(f"{base}/graphql", json={"query": query}, timeout=30)
    reply.raise_for_status()
    body = reply.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def _location_loaded(base: str) -> bool:
    """True once every code location has loaded; fails on a location load error."""
    data = _graphql(
        base,
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus"
        " locationOrLoadError { __typename ... on PythonError { message } } } } } }",
    )
    entries = data["workspaceOrError"]["locationEntries"]
    for entry in entries:
        error = entry["locationOrLoadError"] or {}
        if error.get("__typename") == "PythonError":
            pytest.fail(f"code location {entry['name']} failed to load: {error['message']}")
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A webserver on a free port over a fresh instance: two shards with their seeds."""
    root = tmp_path_factory.mktemp("ui")
    dagster_home, synth_home = root / "dagster", root / "synth"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "SYNTH_HOME": str(synth_home),
        "SYNTH_GSM8K_PATH": "",
    }
    # The instance's SQLite schema must exist before a second process opens it: two processes
    # creating it at once can stamp two alembic heads, and the code location then fails to load.
    metadata = _materialize_seeds(dagster_home, synth_home)
    log = root / "webserver.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster-webserver")),
                *("-m", "synth_jobs.definitions", "-h", "127.0.0.1", "-p", str(port)),
                "--suppress-warnings",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"

        def server_up() -> bool:
            if server.poll() is not None:
                pytest.fail(f"dagster-webserver exited:\n{log.read_text()[-3000:]}")
            return httpx.get(f"{base}/server_info", timeout=2).status_code == 200

        _poll(server_up, 90, "dagster-webserver /server_info")
        _poll(lambda: _location_loaded(base), 90, "the code location to load")
        # Mark the first-visit "join the community" dialog as seen: it would cover the page.
        assert _graphql(base, "mutation { setNuxSeen }") == {"setNuxSeen": True}
        yield {"base": base, "metadata": metadata, "root": root}
    finally:
        _kill_group(server)


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def page(chromium: str, ui: dict[str, Any]) -> Iterator[Page]:
    tab = Page(chromium, ui["root"] / "chromium-profile", ui["root"] / "chromium.log")
    try:
        yield tab
    finally:
        tab.close()


ASSET_NAMES = sorted(key.to_user_string() for asset in all_assets for key in asset.keys)


def _number(value: int) -> str:
    """A regex for an integer as the UI may print it: 1234 or 1,234."""
    return f"(?:{value}|{value:,})".replace(",", "\\,")


def _catalog_row(text: str, name: str) -> str:
    """The catalog text of one asset's row: from its name to the next asset's name."""
    start = text.index(f"\n{name}\n") + len(name) + 2
    ends = [text.find(f"\n{other}\n", start) for other in ASSET_NAMES if other != name]
    return text[start : min([e for e in ends if e >= 0] or [len(text)])]


def test_graphql_lists_every_asset_and_the_seed_materialization(ui: dict[str, Any]) -> None:
    data = _graphql(
        ui["base"],
        """{ assetNodes { assetKey { path } }
             assetOrError(assetKey: {path: ["text_seeds"]}) { ... on Asset {
               assetMaterializations(limit: 1) { runId metadataEntries {
                 label ... on IntMetadataEntry { intValue } } } } } }""",
    )
    assert sorted("/".join(n["assetKey"]["path"]) for n in data["assetNodes"]) == ASSET_NAMES
    (latest,) = data["assetOrError"]["assetMaterializations"]
    assert latest["runId"] == ui["metadata"]["run_id"]
    ints = {e["label"]: e.get("intValue") for e in latest["metadataEntries"]}
    assert ints["dagster/row_count"] == ui["metadata"]["dagster/row_count"] > 0


def _partition_counts(page: Page, name: str) -> list[str]:
    """The tooltips of the partition counts in an asset's catalog row, as a user reads them by
    hovering each icon and number ("1 materialized partition", "0 missing partitions", ...)."""
    counts = f"""[...document.querySelector('a[href="/assets/{name}"]')
               .closest('[class*="VirtualizedTable_row"]')
               .querySelectorAll('span[data-state]')]
             .filter(e => e.querySelector('[aria-label^="partition_"]'))"""
    return [page.tooltip_of(f"{counts}[{i}]") for i in range(page.evaluate(f"{counts}.length"))]


def test_catalog_lists_the_assets_and_which_are_materialized(
    page: Page, ui: dict[str, Any]
) -> None:
    # Tall enough that the catalog's virtualised table renders every row.
    page.goto(f"{ui['base']}/assets", height=400 + 80 * len(ASSET_NAMES))
    # Each row's status loads on its own: wait until none still says "Loading".
    text = page.wait_for_text([*ASSET_NAMES, "materialized"], absent=("Loading",))
    counts = ["0 failed partitions", "0 materializing partitions"]
    for name in ["text_seeds", "code_seeds", "seed_quarantine"]:
        assert "2 partitions" in _catalog_row(text, name), name
        assert _partition_counts(page, name) == [
            "2 materialized partitions",
            "0 missing partitions",
            *counts,
        ], name
    for name in ["rephrasings", "training_mix"]:
        assert "2 partitions" in _catalog_row(text, name), name
        assert _partition_counts(page, name) == [
            "0 materialized partitions",
            "2 missing partitions",
            *counts,
        ], name
    # A cross-shard asset is not partitioned: one status for the whole asset.
    assert "Never materialized" in _catalog_row(text, "decontaminated_mix")
    assert "doesn't have a software definition" not in text


def test_asset_page_shows_the_latest_materialization_metadata(
    page: Page, ui: dict[str, Any]
) -> None:
    meta = ui["metadata"]
    page.goto(f"{ui['base']}/assets/text_seeds?view=events")
    run = meta["run_id"][:8]
    text = page.wait_for_text([f"Partition {REF} materialized in run {run}", "rows_kept"])
    for label in ["dagster/row_count", "rows_kept", "rows_read", "exact_duplicates_dropped"]:
        assert re.search(rf"{re.escape(label)}\s+{_number(meta[label])}\s", text), label
    assert meta["content_hash"] in text


def _partition_dots(page: Page) -> dict[str, str]:
    """Shard key -> the colour of its status dot in an asset's Partitions tab list."""
    return page.evaluate(
        f"""Object.fromEntries({json.dumps(SHARDS)}.map(key => {{
              const cell = document.querySelector(`[data-tooltip="${{key}}"]`);
              const dot = cell && cell.parentElement.querySelector('div[style*="border-radius"]');
              return [key, dot ? dot.style.background : null]; }}))"""
    )


def test_asset_partitions_tab_lists_the_shards_and_their_materializations(
    page: Page, ui: dict[str, Any]
) -> None:
    meta, runs = ui["metadata"], ui["metadata"]["shard_runs"]
    # Each shard in the list carries a status dot: green once materialized, grey while missing.
    for name, status, colour in [
        ("text_seeds", "Materialized (2)", "var(--color-accent-green)"),
        ("rephrasings", "Missing (2)", "var(--color-accent-gray)"),
    ]:
        page.goto(f"{ui['base']}/assets/{name}?view=partitions")
        page.wait_for_text([*SHARDS, status, "2 Partitions"], absent=("Loading",))
        dots = _partition_dots(page)
        assert dots == dict.fromkeys(SHARDS, colour), (name, dots)
    # One shard's page: its own run and metadata, not the other shard's.
    page.goto(f"{ui['base']}/assets/text_seeds?view=partitions&partition={REF}")
    text = page.wait_for_text([runs[REF][:8], "rows_kept", "View all historical events (1)"])
    assert runs[STDLIB][:8] not in text
    assert re.search(rf"rows_kept\s+{_number(meta['rows_kept'])}\s", text)
    assert meta["content_hash"] in text


def _green_pixels(image: Image.Image) -> int:
    """Pixels of the UI's "materialized" green (node fill and border), absent elsewhere."""
    return sum(
        count
        for count, (r, g, b) in image.getcolors(image.width * image.height)
        if g > r + 12 and g > b + 4
    )


def test_asset_graph_screenshot_shows_the_graph_with_materialized_seeds(
    page: Page, ui: dict[str, Any]
) -> None:
    page.goto(f"{ui['base']}/assets/training_mix?view=lineage&lineageScope=upstream")
    page.wait_for_text(GRAPH_ASSETS)

    def rendered() -> Image.Image | None:
        # The graph lays itself out and zooms to fit after its text is in the DOM.
        image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
        return image if _green_pixels(image) > 2000 else None

    image = _poll(rendered, 20, "materialized (green) nodes in the asset graph")
    path = ui["root"] / "asset_graph.png"
    image.save(path)
    assert image.size == (1400, 900)
    colours = image.getcolors(image.width * image.height)
    assert len(colours) > 200, "screenshot is nearly flat"
    assert max(colours)[0] < 0.95 * image.width * image.height, "screenshot is mostly blank"
    assert path.stat().st_size > 20_000
