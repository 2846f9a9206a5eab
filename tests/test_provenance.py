from datetime import UTC, datetime

import polars as pl

from synth_lib.provenance.schema import (
    PROVENANCE_COLUMNS,
    RowContext,
    Source,
    Verdict,
    content_hash,
    make_row,
    row_id,
    rows_to_frame,
)

CTX = RowContext(run_id="r1", created_at=datetime(2026, 1, 1, tzinfo=UTC))
SRC = Source("demo", "demo.jsonl:1", "MIT")


def test_id_is_content_addressed_and_order_free_in_parents():
    assert row_id("s", ["a", "b"], {"text": "x"}) == row_id("s", ["b", "a"], {"text": "x"})
    assert row_id("s", ["a"], {"text": "x"}) != row_id("s", ["a"], {"text": "y"})
    assert row_id("s", ["a"], {"text": "x"}) != row_id("t", ["a"], {"text": "x"})


def test_ids_differ_when_only_the_parents_differ():
    assert row_id("s", ["a"], {"text": "x"}) != row_id("s", ["b"], {"text": "x"})
    assert row_id("s", ["a"], {"text": "x"}) != row_id("s", ["a", "b"], {"text": "x"})
    assert row_id("s", ["a"], {"text": "x"}) != row_id("s", [], {"text": "x"})
    # the same rewrite of two different seeds is two rows, each traceable to its own seed
    s1 = make_row(stage="seed", payload={"text": "a"}, ctx=CTX, source=SRC)
    s2 = make_row(stage="seed", payload={"text": "b"}, ctx=CTX, source=SRC)
    c1 = make_row(stage="rephrasings", payload={"text": "same"}, ctx=CTX, parents=[s1])
    c2 = make_row(stage="rephrasings", payload={"text": "same"}, ctx=CTX, parents=[s2])
    assert c1["id"] != c2["id"]
    assert c1["id"] == row_id("rephrasings", [s1["id"]], {"text": "same"})


def test_id_ignores_run_id_and_time():
    other = RowContext(run_id="r2")
    a = make_row(stage="seed", payload={"text": "x"}, ctx=CTX, source=SRC)
    b = make_row(stage="seed", payload={"text": "x"}, ctx=other, source=SRC)
    assert a["id"] == b["id"] and a["run_id"] != b["run_id"]


def test_seed_is_its_own_root_and_children_inherit_roots():
    s1 = make_row(stage="seed", payload={"text": "a"}, ctx=CTX, source=SRC)
    s2 = make_row(stage="seed", payload={"text": "b"}, ctx=CTX, source=SRC)
    child = make_row(stage="pair", payload={"text": "c"}, ctx=CTX, parents=[s1, s2])
    assert s1["root_seed_ids"] == [s1["id"]]
    assert child["root_seed_ids"] == sorted([s1["id"], s2["id"]])
    assert child["parent_ids"] == [s1["id"], s2["id"]]
    assert s1["is_synthetic"] is False and child["source"] is None


def test_frame_has_schema_and_content_hash_ignores_run():
    rows = [
        make_row(
            stage="seed",
            payload={"text": t},
            ctx=CTX,
            source=SRC,
            verdicts=[Verdict("len", True, 1.0)],
        )
        for t in ("a", "b")
    ]
    frame = rows_to_frame(rows, {"text": pl.Utf8})
    assert frame.columns == ["text", *PROVENANCE_COLUMNS]
    assert frame.schema["verdicts"] == pl.List(
        pl.Struct({"name": pl.Utf8, "passed": pl.Boolean, "score": pl.Float64, "reason": pl.Utf8})
    )
    rerun = frame.with_columns(pl.lit("r9").alias("run_id"))
    assert content_hash(frame) == content_hash(rerun)
    assert content_hash(frame) != content_hash(frame.head(1))


def test_content_hash_of_frames_without_ids_follows_their_rows():
    a = pl.DataFrame({"file": ["x.jsonl", "x.jsonl"], "line": [2, 5]})
    assert content_hash(a) == content_hash(a.reverse())
    assert content_hash(a) != content_hash(a.head(1))
