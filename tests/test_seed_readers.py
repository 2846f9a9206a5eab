import json

import polars as pl
import pytest

from synth_lib.seeds.gsm8k import SeedFileMissing, gold_answer, gsm8k_seeds
from synth_lib.seeds.readers import read_jsonl, read_parquet

FIELDS = {"question": str, "answer": str}


def _good(i: int) -> str:
    return json.dumps({"question": f"q{i}", "answer": f"work {i}\n#### {i}"})


def test_jsonl_quarantines_exactly_the_bad_rows(tmp_path):
    path = tmp_path / "seeds.jsonl"
    lines = [
        _good(1),
        "{not json",
        _good(3),
        json.dumps({"question": 7, "answer": "x #### 1"}),
        json.dumps({"question": "no answer"}),
        json.dumps(["a", "list"]),
        _good(7),
        '{"question": "cut", "answ',
    ]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())
    result = read_jsonl(path, FIELDS)
    assert [line for line, _ in result.records] == [1, 3, 7]
    reasons = {r.line: r.reason for r in result.rejects}
    assert set(reasons) == {2, 4, 5, 6, 8}
    assert reasons[2].startswith("invalid JSON")
    assert "must be str, got int" in reasons[4]
    assert "missing field 'answer'" in reasons[5]
    assert "expected a JSON object" in reasons[6]
    assert reasons[8].startswith("truncated last line")
    assert all(r.file == str(path) for r in result.rejects)


def test_bom_alone_is_not_damage(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (_good(1) + "\n" + _good(2) + "\n").encode())
    result = read_jsonl(path, FIELDS)
    assert len(result.records) == 2 and not result.rejects


def test_parquet_wrong_type_and_missing_column(tmp_path):
    wrong = tmp_path / "wrong.parquet"
    pl.DataFrame({"question": ["a", None, "c"], "answer": ["x", "y", "z"]}).write_parquet(wrong)
    result = read_parquet(wrong, FIELDS)
    assert [line for line, _ in result.records] == [1, 3]
    assert [r.line for r in result.rejects] == [2]
    missing = tmp_path / "missing.parquet"
    pl.DataFrame({"question": ["a", "b"]}).write_parquet(missing)
    result = read_parquet(missing, FIELDS)
    assert not result.records and len(result.rejects) == 2
    assert "missing column" in result.rejects[0].reason
    typed = tmp_path / "typed.parquet"
    pl.DataFrame({"question": [1, 2], "answer": ["a", "b"]}).write_parquet(typed)
    assert all("must be str" in r.reason for r in read_parquet(typed, FIELDS).rejects)


def test_gsm8k_gold_and_missing_marker(tmp_path):
    assert gold_answer("so 3 + 4 = 7\n#### 1,234") == "1234"
    assert gold_answer("no marker") is None
    path = tmp_path / "g.jsonl"
    path.write_text(_good(1) + "\n" + json.dumps({"question": "q", "answer": "none"}) + "\n")
    seeds, rejects = gsm8k_seeds(path)
    assert [s.payload["gold"] for s in seeds] == ["1"]
    assert rejects[0].line == 2 and "####" in rejects[0].reason


def test_missing_seed_file_says_how_to_fix(tmp_path):
    with pytest.raises(SeedFileMissing, match="SYNTH_GSM8K_PATH"):
        gsm8k_seeds(tmp_path / "absent.jsonl")


def test_real_gsm8k_train_loads_cleanly(gsm8k_train):
    seeds, rejects = gsm8k_seeds(gsm8k_train)
    assert len(seeds) == 7473 and not rejects
