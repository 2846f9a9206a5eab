"""Rollback selection, the ledger, lifting, the CLI and lineage of removed rows."""

import json

import polars as pl
import pytest

from synth_lib.commands.cli import main
from synth_lib.provenance.ancestry import ancestry, load_index, parquet_files
from synth_lib.provenance.rollback import (
    Target,
    active_entries,
    drop_rolled_back,
    lift,
    load_entries,
    plan,
    record,
    rematerialization,
    removed_by,
)
from synth_lib.provenance.schema import (
    Generator,
    RowContext,
    Source,
    content_hash,
    make_row,
    rows_to_frame,
)

CTX = RowContext(run_id="test")
SHARD = "ref-n64-00000"


def _gen(revision: str, template_hash: str = "t1hash") -> Generator:
    return Generator("transformers", "m", revision, "rephrase", template_hash, "{}", 0)


def _graph() -> dict[str, pl.DataFrame]:
    """Three seeds; a rephrasing of each by m@r1 and of seed 0 by m@r2; a pair per rephrasing."""
    source = Source("reference", "here", "PSF-2.0")
    seeds = [
        make_row(stage="text_seeds", payload={"text": f"seed {i}"}, ctx=CTX, source=source)
        for i in range(3)
    ]
    rephrased = [
        make_row(
            stage="rephrasings",
            payload={"text": f"rephrased {s['text']} {rev}"},
            ctx=CTX,
            parents=[s],
            generator=_gen(rev),
        )
        for s, rev in [(seeds[0], "r1"), (seeds[1], "r1"), (seeds[2], "r1"), (seeds[0], "r2")]
    ]
    pairs = [
        make_row(
            stage="preference_pairs",
            payload={"text": f"pair of {r['text']}"},
            ctx=CTX,
            parents=[r],
            generator=Generator("transformers", "judge", "j1", "judge", "jh", "{}", 0),
        )
        for r in rephrased
    ]
    return {
        name: rows_to_frame(rows, {"text": pl.Utf8})
        for name, rows in [
            ("text_seeds", seeds),
            ("rephrasings", rephrased),
            ("preference_pairs", pairs),
        ]
    }


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    for name, frame in _graph().items():
        path = home / "data" / name / f"{SHARD}.parquet"
        path.parent.mkdir(parents=True)
        frame.write_parquet(path)
    return home


def _all(home) -> pl.DataFrame:
    frames = [pl.read_parquet(p) for p in parquet_files(home / "data")]
    return pl.concat(frames)


def test_seed_rollback_removes_descendants_and_keeps_every_other_id(home):
    everything = _all(home)
    seed = everything.filter(pl.col("text") == "seed 0")["id"][0]
    affected, removed = plan(Target.parse("seed", seed), home / "data")
    # seed 0, its two rephrasings (r1, r2) and their two pairs
    assert len(removed) == 5
    assert {a: v["rows"] for a, v in affected.items()} == {
        "text_seeds": 1,
        "rephrasings": 2,
        "preference_pairs": 2,
    }
    assert affected["rephrasings"]["shards"] == [SHARD]
    assert rematerialization(affected)["training_mix"] == [SHARD]
    assert load_entries(home) == []  # planning records nothing

    entry = record(home, Target.parse("seed", seed), "consent withdrawn", home / "data")
    assert entry.user and entry.created_at and entry.affected == affected
    kept, dropped = drop_rolled_back(everything, removed_by(active_entries(home), [everything]))
    assert set(dropped["removed_by"]) == {entry.id}
    assert set(dropped["id"]) == removed
    expected = everything.filter(~pl.col("id").is_in(list(removed)))
    assert kept.height == everything.height - 5 == 6
    assert content_hash(kept) == content_hash(expected)
    assert kept["id"].to_list() == expected["id"].to_list()


def test_model_rollback_and_lift(home):
    everything = _all(home)
    entry = record(home, Target.parse("model", "m@r2"), "bad revision", home / "data")
    _, dropped = drop_rolled_back(everything, removed_by(active_entries(home), [everything]))
    # the r2 rephrasing and the pair judged from it; r1 rows and seeds stay
    assert sorted(dropped["stage"]) == ["preference_pairs", "rephrasings"]
    # excluded from future runs: a new row by m@r2 (even watermarked) is removed too
    new = make_row(stage="rephrasings", payload={"text": "new"}, ctx=CTX, generator=_gen("r2+wm.k"))
    future = pl.concat([everything, rows_to_frame([new], {"text": pl.Utf8})])
    _, dropped = drop_rolled_back(future, removed_by(active_entries(home), [future]))
    assert new["id"] in set(dropped["id"])

    lifted = lift(home, entry.id, "false alarm")
    assert not lifted.active and lifted.lift_reason == "false alarm"
    assert active_entries(home) == []
    kept, dropped = drop_rolled_back(future, removed_by(active_entries(home), [future]))
    assert dropped.is_empty() and kept.height == future.height
    with pytest.raises(ValueError, match="already lifted"):
        lift(home, entry.id, "again")


def test_template_rollback_matches_hash_prefix(home):
    affected, _ = plan(Target.parse("template", "rephrase@t1"), home / "data")
    assert affected["rephrasings"]["rows"] == 4 and affected["preference_pairs"]["rows"] == 4
    assert "text_seeds" not in affected


def test_cli_dry_run_record_list_lift_and_lineage(home, capsys):
    seed = _all(home).filter(pl.col("text") == "seed 1")["id"][0]
    assert (
        main(["rollback", "--seed", seed, "--reason", "r", "--dry-run", "--home", str(home)]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["descendant_rows"] == 3 and report["assets"]["rephrasings"]["rows"] == 1
    assert load_entries(home) == []

    assert main(["rollback", "--seed", seed, "--reason", "gdpr", "--home", str(home)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target"] == f"seed {seed}" and out["removed_rows"] == 3 and out["active"]
    assert any("--partition ref-n64-00000" in c for c in out["rematerialize"])

    pair = _all(home).filter(pl.col("text").str.contains("seed 1"))
    pair_id = pair.filter(pl.col("stage") == "preference_pairs")["id"][0]
    assert main(["lineage", pair_id, "--data-dir", str(home / "data")]) == 0
    hops = json.loads(capsys.readouterr().out)
    assert [h["removed_by"] for h in hops] == [out["id"]] * 3

    assert main(["rollback", "--model", "m", "--reason", "x", "--home", str(home)]) == 2
    assert "NAME@REVISION" in capsys.readouterr().err
    assert main(["rollback", "--seed", seed, "--home", str(home)]) == 2  # no reason
    assert main(["rollback", "--lift", out["id"], "--reason", "ok", "--home", str(home)]) == 0
    capsys.readouterr()
    assert main(["lineage", pair_id, "--data-dir", str(home / "data")]) == 0
    assert all(h["removed_by"] is None for h in json.loads(capsys.readouterr().out))


def test_lineage_of_a_row_found_only_in_the_ledger(home):
    index = load_index(parquet_files(home / "data"))
    hops = ancestry("gone", index, {"gone": "rb-1"})
    assert hops == [{"id": "gone", "removed_by": "rb-1", "found": False}]
    with pytest.raises(KeyError):
        ancestry("never", index, {})


def test_rematerialization_names_only_affected_shards_of_the_partitioned_mix():
    from synth_lib.commands.rollback import materialize_commands

    affected = {
        "rephrasings": {"rows": 2, "shards": ["ref-n64-00003"]},
        "training_mix_shards": {"rows": 1, "shards": ["ref-n64-00003/part-00000"]},
        "curation_rejects": {"rows": 1, "shards": ["rejected"]},
    }
    plan = rematerialization(affected)
    assert plan["training_mix"] == ["ref-n64-00003"] and plan["decontaminated_mix"] is None
    assert rematerialization({"text_seeds": {"rows": 1, "shards": []}})["training_mix"] == []
    commands = [" ".join(c[3:]) for c in materialize_commands(plan)]
    assert commands == [
        "-m synth_jobs.definitions --select rollbacks",
        "-m synth_jobs.definitions --select training_mix --partition ref-n64-00003",
        "-m synth_jobs.definitions --select decontaminated_mix",
        "-m synth_jobs.definitions --select dataset_export",
    ]
