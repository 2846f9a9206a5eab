"""The export: one config per TRL format, loaded by `datasets`, trained on by TRL as it is.

Also: the card's front matter, Croissant validated by mlcroissant, row licences (most
restrictive of roots and model), and a rollback leaving every other exported row as it was.
"""

import json

import dagster as dg
import polars as pl
import pytest
import yaml

from synth_lib.mix.card import card_facts, render_card
from synth_lib.mix.croissant import croissant_jsonld, validate
from synth_lib.mix.export import split_by_config, write_export
from synth_lib.mix.licences import most_restrictive, row_licence
from synth_lib.mix.shards import to_mix_schema
from synth_lib.provenance.rollback import Target, lift, record
from synth_lib.provenance.schema import (
    Generator,
    RowContext,
    Source,
    make_row,
    rows_to_frame,
)

CTX = RowContext(run_id="test")
GEN = Generator("transformers", "SmolLM2-135M-Instruct", "abc123", "t", "th", "{}", 0)
WATERMARKED = Generator(
    "transformers", "SmolLM2-135M-Instruct", "abc123+wm.0a1b2c3d4e5f", "t", "th", "{}", 0
)


def _mix() -> pl.DataFrame:
    """A small curated mix with every kind: prose seeds, rephrasings, math, reasoning, pairs."""
    psf, mit = Source("reference", "x", "PSF-2.0"), Source("gsm8k", "y", "MIT")
    prose = [
        make_row(stage="text_seeds", payload={"text": f"prose seed {i}"}, ctx=CTX, source=psf)
        for i in range(4)
    ]
    math = [
        make_row(
            stage="math_seeds",
            payload={"question": f"What is {i} + {i}?", "answer": f"{2 * i}"},
            ctx=CTX,
            source=mit,
        )
        for i in range(4)
    ]
    rephrased = [
        make_row(
            stage="rephrasings",
            payload={"text": f"said again: {p['text']}"},
            ctx=CTX,
            parents=[p],
            generator=WATERMARKED if i == 0 else GEN,
        )
        for i, p in enumerate(prose)
    ]
    cot = [
        make_row(
            stage="cot_traces",
            payload={"prompt": m["question"], "response": f"Add them: {m['answer']}"},
            ctx=CTX,
            parents=[m],
            generator=GEN,
        )
        for m in math
    ]
    pairs = [
        make_row(
            stage="preference_pairs",
            payload={"prompt": c["prompt"], "chosen": c["response"], "rejected": "No idea."},
            ctx=CTX,
            parents=[c],
            generator=GEN,
        )
        for c in cot
    ]

    def frame(rows, schema):
        return rows_to_frame(rows, schema)

    text = {"text": pl.Utf8}
    return pl.concat(
        [
            to_mix_schema(frame(prose, text), "text"),
            to_mix_schema(frame(rephrased, text), "rephrasing"),
            to_mix_schema(frame(math, {"question": pl.Utf8, "answer": pl.Utf8}), "math"),
            to_mix_schema(frame(cot, {"prompt": pl.Utf8, "response": pl.Utf8}), "reasoning"),
            to_mix_schema(
                frame(pairs, {"prompt": pl.Utf8, "chosen": pl.Utf8, "rejected": pl.Utf8}),
                "preference",
            ),
        ]
    )


def _seed_licences(mix: pl.DataFrame) -> dict[str, str]:
    seeds = mix.filter(pl.col("source").is_not_null())
    return dict(seeds.select("id", pl.col("source").struct.field("license")).iter_rows())


def _licensed(mix: pl.DataFrame) -> pl.DataFrame:
    licences = _seed_licences(mix)
    return mix.with_columns(
        license=pl.struct("root_seed_ids", "generator").map_elements(
            lambda r: row_licence(
                r["root_seed_ids"], (r["generator"] or {}).get("model"), licences
            ),
            return_dtype=pl.Utf8,
        )
    )


def test_licences_take_the_most_restrictive():
    assert most_restrictive(["MIT", "Apache-2.0", "PSF-2.0"]) == "apache-2.0"
    assert most_restrictive(["MIT", "Some-Custom-Licence"]) == "unknown"
    assert row_licence(["s1"], None, {"s1": "MIT"}) == "mit"
    assert row_licence(["s1", "s2"], "SmolLM2-135M", {"s1": "MIT", "s2": "PSF-2.0"}) == "apache-2.0"
    assert row_licence(["s1"], "Meta-Llama-3-8B", {"s1": "MIT"}) == "llama3"
    assert row_licence(["s1"], "mystery-model", {"s1": "MIT"}) == "unknown"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    configs = split_by_config(_licensed(_mix()))
    facts = card_facts(configs, {"flagged_by_benchmark": {"gsm8k_test": 2}})
    target = tmp_path_factory.mktemp("export") / "export"
    write_export(configs, target, render_card(facts), croissant_jsonld(facts))
    return target


def test_configs_carry_trl_columns_and_provenance(export_dir):
    manifest = json.loads((export_dir / "manifest.json").read_text())
    rows = {f["config"]: f["rows"] for f in manifest["files"]}
    assert rows == {"text": 8, "messages": 4, "prompt_completion": 4, "preference": 4}
    for config, payload in [
        ("text", ["text"]),
        ("messages", ["messages"]),
        ("prompt_completion", ["prompt", "completion"]),
        ("preference", ["prompt", "chosen", "rejected"]),
    ]:
        frame = pl.read_parquet(next((export_dir / config).glob("*.parquet")))
        assert frame.columns[: len(payload)] == payload
        assert {"id", "root_seed_ids", "generator", "verdicts", "license"} <= set(frame.columns)
    chat = pl.read_parquet(next((export_dir / "messages").glob("*.parquet")))
    assert [m["role"] for m in chat["messages"][0]] == ["user", "assistant"]
    text = pl.read_parquet(next((export_dir / "text").glob("*.parquet")))
    # prose seeds are PSF; their rephrasings add the model's Apache-2.0
    assert dict(text.group_by("stage").agg(pl.col("license").first()).iter_rows()) == {
        "text_seeds": "psf-2.0",
        "rephrasings": "apache-2.0",
    }


def test_card_front_matter_and_croissant(export_dir):
    card = (export_dir / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] == "apache-2.0"
    assert front["size_categories"] == ["n<1K"]
    assert [c["config_name"] for c in front["configs"]] == [
        "text",
        "messages",
        "prompt_completion",
        "preference",
    ]
    assert "SmolLM2-135M-Instruct@abc123" in card and "gsm8k_test" in card
    assert validate(export_dir / "croissant.json") == []
    broken = json.loads((export_dir / "croissant.json").read_text())
    broken["recordSet"][0]["field"][0]["source"]["fileSet"] = {"@id": "nowhere"}
    (export_dir.parent / "broken.json").write_text(json.dumps(broken))
    assert validate(export_dir.parent / "broken.json")


def test_datasets_loads_each_config_by_folder_and_by_card(export_dir):
    datasets = pytest.importorskip("datasets")
    for config, column in [("text", "text"), ("messages", "messages"), ("preference", "chosen")]:
        by_folder = datasets.load_dataset(
            "parquet", data_dir=str(export_dir / config), split="train"
        )
        by_card = datasets.load_dataset(str(export_dir), config, split="train")
        assert column in by_folder.column_names and by_card.num_rows == by_folder.num_rows


@pytest.mark.slow
def test_trl_trains_one_step_on_the_export_as_it_is(export_dir, smoke_models_dir, tmp_path):
    """SFT on `text` and `messages`, DPO on `preference`: no conversion of the files."""
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = next(p.parent for p in smoke_models_dir.rglob("config.json"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = (
            "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant: {% endif %}"
        )
    common = {"max_steps": 1, "per_device_train_batch_size": 2, "report_to": [], "use_cpu": True}
    common |= {"save_strategy": "no", "logging_steps": 1}
    for config in ("text", "messages"):
        data = datasets.load_dataset("parquet", data_dir=str(export_dir / config), split="train")
        trainer = trl.SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir),
            args=trl.SFTConfig(output_dir=str(tmp_path / config), max_length=64, **common),
            train_dataset=data,
            processing_class=tokenizer,
        )
        assert trainer.train().global_step == 1
    pairs = datasets.load_dataset("parquet", data_dir=str(export_dir / "preference"), split="train")
    trainer = trl.DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=trl.DPOConfig(output_dir=str(tmp_path / "dpo"), max_length=64, **common),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    assert trainer.train().global_step == 1


@pytest.mark.slow
def test_export_asset_applies_a_seed_rollback_and_keeps_other_rows(tmp_path):
    """Materialize `rollbacks` + `dataset_export`, roll back a seed, materialize again."""
    from synth_jobs.definitions import all_assets, all_checks
    from synth_jobs.profiles import local_resources

    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    mix = _mix()
    mix.write_parquet(home / "data" / "decontaminated_mix.parquet")

    checks = {}

    def materialize(run_config=None, success=True):
        result = dg.materialize(
            [*all_assets, *all_checks],
            selection=["rollbacks", "dataset_export"],
            resources=local_resources(home),
            instance=dg.DagsterInstance.ephemeral(),
            run_config=run_config,
            raise_on_error=success,
        )
        assert result.success == success
        for evaluation in result.get_asset_check_evaluations():
            checks[evaluation.check_name] = {k: v.value for k, v in evaluation.metadata.items()}
        files = sorted((home / "data" / "export").glob("*/*.parquet"))
        return pl.concat([pl.read_parquet(f).select("id", "stage", "license") for f in files])

    before = materialize()
    assert before.height == mix.height
    share = checks["dataset_export_watermarked_share"]
    assert share["watermarked_rows"] == 1 and share["key_ids"] == ["0a1b2c3d4e5f"]
    assert checks["dataset_export_licences_allowed"]["offending_rows"] == 0
    seed = mix.filter(pl.col("prompt") == "What is 1 + 1?")["id"][0]
    entry = record(home, Target.parse("seed", seed), "test", home / "data")
    after = materialize()
    ledger = pl.read_parquet(home / "data" / "rollbacks.parquet")
    assert ledger.select("id", "reason", "active", "removed_rows").rows() == [
        (entry.id, "test", True, 3)
    ]
    removed = set(before["id"]) - set(after["id"])
    # the seed, its CoT trace and the pair built on it; nothing else changed
    assert len(removed) == 3 and removed <= set(entry.removed_ids)
    assert after.sort("id").equals(before.filter(~pl.col("id").is_in(list(removed))).sort("id"))

    # a narrower allow-list: the blocking check fails and names the seed rows (PSF, MIT)
    narrow = {"ops": {"dataset_export": {"config": {"licence_allow_list": ["apache-2.0"]}}}}
    materialize(narrow, success=False)
    licences = checks["dataset_export_licences_allowed"]
    assert licences["by_licence"] == {"psf-2.0": 4, "mit": 3}
    assert (
        set(licences["offending_ids"]) <= set(after["id"]) and len(licences["offending_ids"]) == 7
    )

    # a model revision the same way: every generated row and its descendants leave
    model = record(
        home, Target.parse("model", f"{GEN.model}@{GEN.revision}"), "test", home / "data"
    )
    only_seeds = materialize()
    assert set(only_seeds["stage"]) == {"text_seeds", "math_seeds"} and only_seeds.height == 7
    assert only_seeds.sort("id").equals(
        after.filter(pl.col("id").is_in(only_seeds["id"])).sort("id")
    )
    # lifting both brings back exactly the rows that were there before
    lift(home, model.id, "test over")
    lift(home, entry.id, "test over")
    assert materialize().sort("id").equals(before.sort("id"))
