"""`synth dedup` and `synth decontam` on JSONL and Parquet, and their malformed-input errors."""

import argparse
import json
import subprocess
import sys
from pathlib import Path
from pydoc_data.topics import topics

import polars as pl
import pytest

from synth_lib.commands import decontam, dedup
from synth_lib.commands.cli import FEATURE_COMMANDS, main
from synth_lib.curation.decontam import humaneval_items

PASSAGE = " ".join(topics["if"].split()[:80])
OTHER = " ".join(topics["while"].split()[:80])


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="synth")
    sub = parser.add_subparsers(dest="command", required=True)
    dedup.register(sub)
    decontam.register(sub)
    args = parser.parse_args(list(argv))
    return args.handler(args)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_rows(path: Path, rows: list) -> Path:
    """`rows` as JSONL or Parquet, by the file's extension."""
    if path.suffix == ".jsonl":
        return write_jsonl(path, rows)
    pl.DataFrame(rows).write_parquet(path)
    return path


@pytest.mark.parametrize(
    ("src", "dst"), [("jsonl", "jsonl"), ("parquet", "parquet"), ("jsonl", "parquet")]
)
def test_dedup_keeps_columns_and_marks_clusters(tmp_path, src, dst, capsys):
    rows = [
        {"id": "b", "text": PASSAGE, "meta": {"k": 1}},
        {"id": "a", "text": PASSAGE.upper() + " !!", "meta": {"k": 2}},
        {"id": "c", "text": OTHER, "meta": {"k": 3}},
    ]
    infile = write_rows(tmp_path / f"in.{src}", rows)
    out = tmp_path / f"out.{dst}"
    assert run("dedup", str(infile), str(out), "--threshold", "0.5") == 0
    frame = pl.read_ndjson(out) if dst == "jsonl" else pl.read_parquet(out)
    assert frame.columns[:3] == ["id", "text", "meta"]
    assert frame.get_column("cluster_id").to_list() == ["a", "a", "c"]
    assert frame.get_column("kept").to_list() == [False, True, True]
    assert json.loads(capsys.readouterr().out)["exact_duplicates"] == 1


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_decontam_flags_benchmark_rows(tmp_path, fmt, capsys):
    problem = humaneval_items()[3]
    bench = write_jsonl(tmp_path / "mini.jsonl", [{"question": PASSAGE}, {"question": "x y z"}])
    rows = [{"text": "Solve this:\n" + problem.text}, {"text": OTHER}, {"text": PASSAGE + " extra"}]
    infile = write_rows(tmp_path / f"in.{fmt}", rows)
    out = tmp_path / f"out.{fmt}"
    assert run("decontam", str(infile), str(out), "--benchmark", str(bench), "--humaneval") == 0
    frame = pl.read_ndjson(out) if fmt == "jsonl" else pl.read_parquet(out)
    assert frame.get_column("contaminated_by").to_list() == [
        f"humaneval/{problem.item_id}",
        None,
        "mini/0",
    ]
    summary = json.loads(capsys.readouterr().out)
    assert summary["flagged_by_benchmark"] == {"humaneval": 1, "mini": 1}


def test_decontam_ngram_option_and_named_benchmark(tmp_path, capsys):
    words = [f"w{i}" for i in range(40)]
    bench = write_jsonl(tmp_path / "b.jsonl", [{"prompt": " ".join(words)}])
    infile = write_jsonl(
        tmp_path / "in.jsonl", [{"text": "pre " + " ".join(words[5:14]) + " post"}]
    )
    out = tmp_path / "out.jsonl"
    assert (
        run("decontam", str(infile), str(out), "--benchmark", f"toy={bench}", "--ngram", "8") == 0
    )
    assert json.loads(out.read_text())["contaminated_by"] == "toy/0"
    assert run("decontam", str(infile), str(out), "--benchmark", str(bench)) == 0
    assert json.loads(out.read_text())["contaminated_by"] is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"text": "fine"}\n{"text": "broken\n', "row 2: invalid JSON"),
        ('{"text": "fine"}\n[1, 2]\n', "row 2: expected a JSON object, got list"),
        ('{"body": "no text"}\n', "row 1: missing field 'text'"),
        ('{"text": "ok"}\n\n{"text": 7}\n', "row 3: field 'text' must be a string, got int"),
    ],
)
@pytest.mark.parametrize("command", ["dedup", "decontam"])
def test_malformed_jsonl_is_refused_with_file_row_and_reason(
    tmp_path, capsys, content, expected, command
):
    infile = tmp_path / "bad.jsonl"
    infile.write_text(content)
    extra = ["--humaneval"] if command == "decontam" else []
    assert run(command, str(infile), str(tmp_path / "out.jsonl"), *extra) == 2
    err = capsys.readouterr().err
    assert f"{infile}: {expected}" in err
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (pl.DataFrame({"body": ["x"]}), "missing column 'text'"),
        (pl.DataFrame({"text": [1, 2]}), "row 1: column 'text' is Int64, not a string"),
        (pl.DataFrame({"text": ["a", None]}), "row 2: 'text' is null"),
    ],
)
def test_malformed_parquet_is_refused(tmp_path, capsys, frame, expected):
    infile = tmp_path / "bad.parquet"
    frame.write_parquet(infile)
    assert run("dedup", str(infile), str(tmp_path / "out.parquet")) == 2
    assert f"{infile}: {expected}" in capsys.readouterr().err


def test_unsupported_or_missing_input_and_no_benchmark(tmp_path, capsys):
    assert run("dedup", str(tmp_path / "in.csv"), str(tmp_path / "o.jsonl")) == 2
    assert "unsupported file type '.csv'" in capsys.readouterr().err
    assert run("dedup", str(tmp_path / "none.jsonl"), str(tmp_path / "o.jsonl")) == 2
    assert "no such file" in capsys.readouterr().err
    infile = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    assert run("decontam", str(infile), str(tmp_path / "o.jsonl")) == 2
    assert "--benchmark" in capsys.readouterr().err


def test_dedup_jsonl_rows_are_kept_byte_for_byte_with_fields_appended(tmp_path, capsys):
    passage, other, upper = (json.dumps(t) for t in (PASSAGE, OTHER, PASSAGE.upper()))
    lines = [
        '\ufeff{"id": "b", "text": ' + passage[:-1] + ' caf\\u00e9", "n": 1.50}',
        "",
        '{"text":' + other + ',"id":"c"}  \r',
        '{"id": "a", "text": ' + upper + "}",
    ]
    infile = tmp_path / "in.jsonl"
    infile.write_bytes(("\n".join(lines) + "\n").encode())
    out = tmp_path / "out.jsonl"
    assert run("dedup", str(infile), str(out)) == 0
    got = out.read_text().splitlines()
    assert got[0].startswith(lines[0][1:-1] + ", ") and ' caf\\u00e9", "n": 1.50, ' in got[0]
    assert got[1].startswith(lines[2].rstrip()[:-1] + ", ")
    rows = [json.loads(line) for line in got]
    assert [r["id"] for r in rows] == ["b", "c", "a"]
    assert [r["kept"] for r in rows] == [False, True, True]
    assert rows[0]["duplicate_reason"].startswith("near duplicate of a")


def test_dedup_replaces_an_existing_output_field(tmp_path, capsys):
    rows = [
        {"id": "x", "text": PASSAGE, "kept": "stale"},
        {"id": "y", "text": PASSAGE + " !", "extra": [1]},
    ]
    infile = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    assert run("dedup", str(infile), str(out)) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert list(got[0]) == ["id", "text", "kept", "cluster_id", "duplicate_reason"]
    assert [r["kept"] for r in got] == [True, False] and got[1]["extra"] == [1]
    assert got[1]["duplicate_reason"].startswith("exact duplicate of x")


def test_dedup_command_imports_only_what_it_uses(tmp_path):
    """`synth dedup` on JSONL loads neither the other sub-commands nor Polars/SciPy/pandas."""
    infile = write_jsonl(tmp_path / "in.jsonl", [{"text": PASSAGE}, {"text": OTHER}])
    script = (
        "import sys\n"
        "from synth_lib.commands.cli import main\n"
        f"assert main(['dedup', {str(infile)!r}, {str(tmp_path / 'out.jsonl')!r}]) == 0\n"
        "heavy = {'polars', 'scipy', 'pandas', 'synth_lib.commands.verify',\n"
        "         'synth_lib.commands.watermark', 'synth_lib.provenance.ancestry'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_cli_help_still_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("lineage", *FEATURE_COMMANDS))


def test_jsonl_values_only_the_standard_library_reads_exactly_are_kept(tmp_path, capsys):
    """NaN and integers past 64 bits: orjson refuses the one and rounds the other."""
    infile = tmp_path / "in.jsonl"
    infile.write_text(
        '{"id": 123456789012345678901234567890, "text": ' + json.dumps(OTHER) + "}\n"
        '{"id": 7, "text": ' + json.dumps(PASSAGE) + ', "x": NaN}\n'
    )
    out = tmp_path / "out.jsonl"
    assert run("dedup", str(infile), str(out)) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["cluster_id"] for r in rows] == ["123456789012345678901234567890", "7"]
