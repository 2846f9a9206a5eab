"""notebooks/audit.ipynb runs top to bottom against a home the test materializes."""

import dagster as dg
import pytest

from tests.conftest import REPO_ROOT
from tests.test_export import _mix

pytestmark = pytest.mark.slow


def test_audit_notebook_executes(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    from synth_jobs.definitions import all_assets, all_checks
    from synth_jobs.profiles import local_resources

    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    _mix().write_parquet(home / "data" / "decontaminated_mix.parquet")
    result = dg.materialize(
        [*all_assets, *all_checks],
        selection=["rollbacks", "dataset_export"],
        resources=local_resources(home),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    monkeypatch.setenv("SYNTH_HOME", str(home))
    notebook = nbformat.read(REPO_ROOT / "notebooks" / "audit.ipynb", as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=120, resources={"metadata": {"path": str(REPO_ROOT)}}
    ).execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "rows descend from seed" in text and "math_seeds" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
