from collections import Counter

import pytest

from synth_lib.provenance.schema import RowContext, Source
from synth_lib.seeds.cleaning import RawSeed, clean_seeds
from synth_lib.seeds.pii import scrub_pii
from synth_lib.seeds.textclean import normalize_code, normalize_text


def test_normalize_text_nfc_controls_and_whitespace():
    raw = "Cafe\u0301\u200b  is\t\topen.\r\n\r\n\r\n\r\nNext\x07 line   "
    assert normalize_text(raw) == "Café is open.\n\nNext line"


def test_normalize_code_keeps_indentation():
    assert normalize_code("def f():\r\n\treturn 1   \n") == "def f():\n    return 1"


@pytest.mark.parametrize(
    ("text", "scrubbed", "kind"),
    [
        ("mail jane.doe@example.org now", "mail <EMAIL> now", "email"),
        ("to a.b+tag@mail.co.uk.", "to <EMAIL>.", "email"),
        ("call +1 415-555-0134;", "call <PHONE>;", "phone"),
        ("call (415) 555-0134 or", "call <PHONE> or", "phone"),
        ("dial 415.555.0134 now", "dial <PHONE> now", "phone"),
        ("host 8.8.8.8, then", "host <IPV4>, then", "ipv4"),
        ("from 203.0.114.7.", "from <IPV4>.", "ipv4"),
        ("dns 2001:4860:4860::8888.", "dns <IPV6>.", "ipv6"),
        ("full 2001:4860:4860:0:0:0:0:8888 x", "full <IPV6> x", "ipv6"),
        ("zeros 2001:4860:4860:0000:0000:0000:0000:8888 x", "zeros <IPV6> x", "ipv6"),
        ("upper 2606:4700:4700::1111,", "upper <IPV6>,", "ipv6"),
        ("lower 2a00:1450:4001:81c::200e; done", "lower <IPV6>; done", "ipv6"),
        ("net 2001:4860::", "net <IPV6>", "ipv6"),
        ("url http://[2606:4700::1111]:443/x", "url http://[<IPV6>]:443/x", "ipv6"),
        ("mapped ::ffff:8.8.8.8 here", "mapped <IPV6> here", "ipv6"),
        ("nat64 64:ff9b::8.8.8.8 here", "nat64 <IPV6> here", "ipv6"),
        ("key sk-proj-abcdefghijklmnop1234", "key <API_KEY>", "api_key"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123.", "token <API_KEY>.", "api_key"),
        ("aws AKIAIOSFODNN7EXAMPLE0 ok", "aws <API_KEY> ok", "api_key"),
        ("slack xoxb-1234567890-abcdefghij ok", "slack <API_KEY> ok", "api_key"),
        ("secret Zx9QwErTy7UiOpAsDfGh3JkLzXcVbNm4Qw ok", "secret <API_KEY> ok", "api_key"),
    ],
)
def test_each_pii_kind_is_replaced_in_place_and_counted(text, scrubbed, kind):
    assert scrub_pii(text) == (scrubbed, Counter({kind: 1}))


def test_kinds_together_keep_the_text_around_them():
    text = (
        "Write to jane.doe@example.org or call +1 415-555-0134; host 8.8.8.8 or "
        "2001:4860:4860::8888; token ghp_abcdefghijklmnopqrstuvwxyz0123; local 127.0.0.1 stays."
    )
    assert scrub_pii(text) == (
        "Write to <EMAIL> or call <PHONE>; host <IPV4> or <IPV6>; token <API_KEY>; "
        "local 127.0.0.1 stays.",
        Counter({"email": 1, "phone": 1, "ipv4": 1, "ipv6": 1, "api_key": 1}),
    )


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.20",
        "127.0.0.1",
        "169.254.10.1",
        "192.0.2.44",  # documentation
        "0.0.0.0",
        "::1",
        "::",
        "fe80::1%eth0",
        "fd12:3456:789a::1",
        "2001:db8::1",  # documentation
        "::ffff:10.0.0.1",
        "64:ff9b::10.0.0.1",
    ],
)
def test_private_loopback_and_documentation_addresses_are_kept(address):
    text = f"bind {address} here"
    assert scrub_pii(text) == (text, Counter())


def test_plain_prose_and_code_are_untouched():
    text = (
        "Python 3.11.7 was released; see section 4.2 of the reference (page 12). "
        "Slice a[1::2] or b[::3], at 12:30:45, MAC 00:1a:2b:3c:4d:5e, std::vector, "
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8."
    )
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
