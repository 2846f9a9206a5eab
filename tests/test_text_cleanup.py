from collections import Counter

from synth_lib.provenance.schema import RowContext, Source
from synth_lib.seeds.cleaning import RawSeed, clean_seeds
from synth_lib.seeds.pii import scrub_pii
from synth_lib.seeds.textclean import normalize_code, normalize_text


def test_normalize_text_nfc_controls_and_whitespace():
    raw = "Cafe\u0301\u200b  is\t\topen.\r\n\r\n\r\n\r\nNext\x07 line   "
    assert normalize_text(raw) == "Café is open.\n\nNext line"


def test_normalize_code_keeps_indentation():
    assert normalize_code("def f():\r\n\treturn 1   \n") == "def f():\n    return 1"


def test_pii_kinds_are_replaced_and_counted():
    text = (
        "Write to jane.doe@example.org or call +1 415-555-0134; host 8.8.8.8; "
        "token ghp_abcdefghijklmnopqrstuvwxyz0123; local 127.0.0.1 stays."
    )
    scrubbed, counts = scrub_pii(text)
    assert counts == Counter({"email": 1, "phone": 1, "ipv4": 1, "api_key": 1})
    assert "jane.doe" not in scrubbed and "8.8.8.8" not in scrubbed and "ghp_" not in scrubbed
    assert "127.0.0.1" in scrubbed


def test_plain_prose_is_untouched():
    text = "Python 3.11.7 was released; see section 4.2 of the reference (page 12)."
    assert scrub_pii(text) == (text, Counter())


def test_clean_seeds_drops_exact_duplicates_and_empties():
    src = Source("d", "loc", "MIT")
    raw = [
        RawSeed({"text": "Hello  world"}, src, ("text",)),
        RawSeed({"text": "Hello world"}, src, ("text",)),
        RawSeed({"text": " \u200b "}, src, ("text",)),
        RawSeed({"text": "mail a@b.io"}, src, ("text",)),
    ]
    batch = clean_seeds(raw, stage="text_seeds", ctx=RowContext(run_id="r"))
    assert [r["text"] for r in batch.rows] == ["Hello world", "mail <EMAIL>"]
    assert batch.exact_duplicates == 1 and batch.empty_after_cleanup == 1
    assert batch.pii_counts["email"] == 1
    assert all(r["source"]["license"] == "MIT" for r in batch.rows)
