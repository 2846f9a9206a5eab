import polars as pl

from synth_lib.reporting import counts_table, markdown_preview, markdown_table


def test_markdown_table_escapes_and_cuts_cells():
    table = markdown_table([{"a": "x|y\nz", "b": "w" * 100}], width=10)
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y z | wwwwwwwww… |"]
    assert markdown_table([]) == "_none_"


def test_counts_table_puts_the_largest_first():
    assert counts_table({"rare": 1, "common": 7}, "stage").splitlines()[2:] == [
        "| common | 7 |",
        "| rare | 1 |",
    ]
    assert counts_table({}) == "_none_"


def test_preview_keeps_only_known_columns_and_first_rows():
    frame = pl.DataFrame({"id": list("abcdefg"), "text": ["t"] * 7})
    lines = markdown_preview(frame, ["id", "missing"], rows=3).splitlines()
    assert lines[0] == "| id |" and len(lines) == 5
    assert markdown_preview(frame.head(0), ["id"]) == "_no rows_"
