"""PII re-scan of generated rows: scrubbed, re-identified, traceable; human rows untouched."""

import dagster as dg
import polars as pl

from synth_lib.curation.pii_rescan import rescan_generated
from synth_lib.mix.shards import to_mix_schema
from synth_lib.provenance.ancestry import ancestry
from synth_lib.provenance.rollback import Entry, Target, removed_by
from synth_lib.provenance.schema import (
    PROVENANCE_COLUMNS,
    Generator,
    RowContext,
    Source,
    make_row,
    row_id,
    rows_to_frame,
)

CTX = RowContext(run_id="test")
MODEL = Generator("scripted", "m", "r", "t", "h", "{}", 0)
EMAIL = "jane.doe@example.com"
PHONE = "555-867-5309"
KEY = "sk-abcdefghijklmnop1234567890"


def _rows() -> dict[str, pl.DataFrame]:
    """A seed (its text mentions an email, as a human seed's may after its own policy), a
    leaky rephrasing, a clean one, a leaky CoT answer and a dialogue with a leaky turn."""
    seed = make_row(
        stage="text_seeds",
        payload={"text": f"write to {EMAIL}"},
        ctx=CTX,
        source=Source("d", "x", "MIT"),
    )
    leaky = make_row(
        stage="rephrasings",
        payload={"text": f"Mail {EMAIL} or call {PHONE}, key {KEY}."},
        ctx=CTX,
        parents=[seed],
        generator=MODEL,
    )
    clean = make_row(
        stage="rephrasings",
        payload={"text": "nothing here"},
        ctx=CTX,
        parents=[seed],
        generator=MODEL,
    )
    cot = make_row(
        stage="cot_traces",
        payload={"prompt": "who?", "response": f"ask {EMAIL} and {EMAIL}"},
        ctx=CTX,
        parents=[seed],
        generator=MODEL,
    )
    dialogue = make_row(
        stage="dialogues",
        payload={
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": f"ring {PHONE}"},
            ]
        },
        ctx=CTX,
        parents=[seed],
        generator=MODEL,
    )
    messages = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))
    return {
        "text_seeds": rows_to_frame([seed], {"text": pl.Utf8}),
        "rephrasings": rows_to_frame([leaky, clean], {"text": pl.Utf8}),
        "cot_traces": rows_to_frame([cot], {"prompt": pl.Utf8, "response": pl.Utf8}),
        "dialogues": rows_to_frame([dialogue], {"messages": messages}),
    }


def _mix(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    kinds = {
        "text_seeds": "text",
        "rephrasings": "rephrasing",
        "cot_traces": "reasoning",
        "dialogues": "dialogue",
    }
    return pl.concat([to_mix_schema(frames[n], k) for n, k in kinds.items()])


def test_generated_rows_are_scrubbed_and_reidentified():
    frames = _rows()
    mix = _mix(frames)
    out, report = rescan_generated(mix)
    assert out.height == mix.height and out.schema == mix.schema
    assert report.generated_rows == 4 and report.scrubbed_rows == 3
    assert dict(report.counts) == {"email": 3, "phone": 2, "api_key": 1}
    generated = out.filter(pl.col("is_synthetic"))
    for column in ("text", "prompt", "response"):
        texts = " ".join(generated.get_column(column).drop_nulls().to_list())
        assert EMAIL not in texts and PHONE not in texts and KEY not in texts
    contents = [m["content"] for ms in generated.get_column("messages").drop_nulls() for m in ms]
    assert "ring <PHONE>" in contents and "hi" in contents
    # human rows (scrubbed by their own reader) and clean generated rows are untouched
    assert out.row(0) == mix.row(0) and EMAIL in out.item(0, "text")
    assert out.row(2) == mix.row(2)

    leaky_before, leaky_after = mix.row(1, named=True), out.row(1, named=True)
    assert leaky_after["text"] == "Mail <EMAIL> or call <PHONE>, key <API_KEY>."
    payload = {c: leaky_after[c] for c in out.columns if c not in PROVENANCE_COLUMNS}
    assert leaky_after["id"] == row_id("rephrasings", [leaky_before["id"]], payload)
    assert leaky_after["id"] != leaky_before["id"]
    assert leaky_after["parent_ids"] == [leaky_before["id"]]
    assert leaky_after["root_seed_ids"] == leaky_before["root_seed_ids"]
    assert leaky_after["generator"] == leaky_before["generator"]
    assert leaky_after["stage"] == "rephrasings"
    [verdict] = [v for v in leaky_after["verdicts"] if v["name"] == "pii_rescan"]
    assert verdict["passed"] and verdict["reason"] == "api_key=1, email=1, phone=1"
    assert verdict["score"] == 3.0
    assert report.replaced_ids == {mix.item(i, "id"): out.item(i, "id") for i in (1, 3, 4)}


def test_verified_code_with_pii_is_quarantined_not_rewritten():
    """A scrubbed program is not the one that passed its tests: it leaves the mix whole."""
    seed = make_row(
        stage="code_seeds",
        payload={"prompt": "p", "response": "r"},
        ctx=CTX,
        source=Source("d", "x", "MIT"),
    )
    solutions = [
        make_row(
            stage="verified_code",
            payload={"prompt": "ping it", "response": code},
            ctx=CTX,
            parents=[seed],
            generator=MODEL,
        )
        for code in ('print(ping("8.8.8.8"))', "print(1 + 1)")
    ]
    frame = to_mix_schema(
        rows_to_frame(solutions, {"prompt": pl.Utf8, "response": pl.Utf8}), "code_solution"
    )
    out, report = rescan_generated(frame)
    assert out.get_column("id").to_list() == [solutions[1]["id"]]
    assert out.row(0) == frame.row(1)
    assert report.quarantined_ids == [solutions[0]["id"]] and report.quarantined_rows == 1
    assert report.scrubbed_rows == 0 and dict(report.counts) == {"ipv4": 1}
    assert report.metadata()["pii_rescan_quarantined_rows"] == 1


def test_a_clean_frame_comes_back_as_is():
    frames = _rows()
    clean = _mix(frames).filter(~pl.col("text").str.contains("@|555"))
    out, report = rescan_generated(clean)
    assert out is clean and report.scrubbed_rows == 0 and report.generated_rows == 1


def test_lineage_and_rollback_reach_the_scrubbed_row():
    frames = _rows()
    out, report = rescan_generated(_mix(frames))
    scrubbed_id = out.item(1, "id")
    index = {
        row["id"]: row
        for frame in [*frames.values(), out]
        for row in frame.select(
            "id", "stage", "parent_ids", "root_seed_ids", "generator", "source", "is_synthetic"
        ).iter_rows(named=True)
    }
    hops = ancestry(scrubbed_id, index)
    assert [h["stage"] for h in hops] == ["rephrasings", "rephrasings", "text_seeds"]
    seed_id = frames["text_seeds"].item(0, "id")
    entry = Entry(id="rb-1", target=Target("seed", seed_id), reason="r", user="u", created_at="t")
    removed = removed_by([entry], [*frames.values(), out])
    assert set(report.replaced_ids.values()) <= set(removed)


def _mix_inputs(leaky_text: str) -> list[dg.AssetsDefinition]:
    """Stand-ins for every input of `training_mix`: one seed and one rephrasing of it."""
    from synth_assets.mix import training_mix
    from synth_lib.reasoning.debate import PAYLOAD_SCHEMA

    seed = make_row(
        stage="text_seeds", payload={"text": "a"}, ctx=CTX, source=Source("d", "x", "MIT")
    )
    rewrite = make_row(
        stage="rephrasings",
        payload={"text": leaky_text},
        ctx=CTX,
        parents=[seed],
        generator=MODEL,
    )
    frames = {
        "text_seeds": rows_to_frame([seed], {"text": pl.Utf8}),
        "rephrasings": rows_to_frame([rewrite], {"text": pl.Utf8}),
        "debate_verdicts": rows_to_frame([], PAYLOAD_SCHEMA),
        "quality_scores": pl.DataFrame(schema={"id": pl.Utf8, "quality_passed": pl.Boolean}),
    }

    def stub(name: str) -> dg.AssetsDefinition:
        frame = frames.get(name, rows_to_frame([], {"text": pl.Utf8}))

        @dg.asset(name=name)
        def _stub() -> pl.DataFrame:
            return frame

        return _stub

    return [stub(key.to_user_string()) for key in training_mix.keys_by_input_name.values()]


def test_training_mix_writes_scrubbed_rows_with_counts(tmp_path):
    from resources.parquet_io import PolarsParquetIOManager
    from resources.storage import SynthStorage
    from synth_assets.mix import training_mix

    instance = dg.DagsterInstance.ephemeral()
    key = None
    if training_mix.partitions_def is not None:
        key = "ref-n64-00000"
        instance.add_dynamic_partitions(training_mix.partitions_def.name, [key])
    result = dg.materialize(
        [*_mix_inputs(f"mail {EMAIL}"), training_mix],
        resources={
            "storage": SynthStorage(home=str(tmp_path)),
            "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path / "data")),
        },
        instance=instance,
        partition_key=key,
    )
    [materialization] = result.asset_materializations_for_node("training_mix")
    metadata = materialization.metadata
    assert metadata["pii_rescan_scrubbed_rows"].value == 1
    assert metadata["pii_rescan_counts"].value == {"email": 1}
    written = pl.concat(
        pl.read_parquet(p) for p in (tmp_path / "data").rglob("training_mix_shards/**/*.parquet")
    )
    texts = written.get_column("text").to_list()
    assert "mail <EMAIL>" in texts and not any(EMAIL in t for t in texts)
