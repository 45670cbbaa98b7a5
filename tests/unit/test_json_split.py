"""json_split: a body read in parts reads exactly as it reads whole, or not at all."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.api.jsonio import loads
from service.json_split import Cuts, cut, part_text, read_head, read_part

# Cells that make cutting hard: the bytes of a cut (`},`), quotes, backslashes, brackets.
tricky_text = st.text(alphabet=st.sampled_from(list('ab},{"\\[]: \n\x00é')), max_size=12)
cell = st.one_of(
    tricky_text,
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.booleans(),
    st.lists(tricky_text, max_size=2),
    st.dictionaries(tricky_text, tricky_text, max_size=2),
)
row = st.dictionaries(tricky_text, cell, max_size=4)
document = st.fixed_dictionaries(
    {"today": st.just("2026-11-24"), "invoices": st.lists(row, min_size=1, max_size=30)}
)


def encode(doc: dict[str, Any], style: str) -> bytes:
    if style == "compact":  # as orjson, the sidebar and the benchmark write it
        return json.dumps(doc, separators=(",", ":")).encode()
    if style == "json":
        return json.dumps(doc).encode()  # ", " and ": " between values
    return json.dumps(doc, indent=2).encode() + b"\n"


def read_in_parts(body: bytes, starts: list[int]) -> dict[str, Any] | None:
    """What a planner reads: the head here, then each part; None when any of them says no."""
    cuts = cut(body, starts)
    if cuts is None:
        return None
    head = read_head(body, cuts, "invoices")
    parts = [read_part(part_text(body, cuts, i)) for i in range(1, len(cuts.commas) + 1)]
    if head is None or any(p is None for p in parts):
        return None
    for part in parts:
        head["invoices"] += part or []
    return head


def starts_across(body: bytes, fractions: list[float]) -> list[int]:
    return [int(len(body) * f) for f in sorted(fractions)]


@given(
    document,
    st.sampled_from(["compact", "json", "indented"]),
    st.lists(st.floats(0, 1), min_size=1, max_size=3),
)
def test_read_in_parts_is_the_whole_reading_or_nothing(
    doc: dict[str, Any], style: str, fractions: list[float]
) -> None:
    body = encode(doc, style)
    read = read_in_parts(body, starts_across(body, fractions))
    assert read is None or read == loads(body)


@given(st.lists(st.dictionaries(st.sampled_from("abc"), st.text(max_size=5)), min_size=4))
def test_plain_rows_are_read_in_parts(rows: list[dict[str, str]]) -> None:
    body = orjson.dumps({"today": "2026-11-24", "invoices": [{"x": 1}, *rows]})
    # A cut just after the first row always has a place: the first "}," of the body.
    assert read_in_parts(body, [0]) == loads(body)


def test_a_sheet_is_cut_between_rows_near_each_start() -> None:
    rows = [{"invoice_id": f"INV-{i}", "client_name": "A},{B"} for i in range(100)]
    body = orjson.dumps({"invoices": rows})
    cuts = cut(body, [len(body) // 2])
    assert cuts is not None and len(cuts.commas) == 1
    head = read_head(body, cuts, "invoices")
    assert head is not None
    assert 45 <= len(head["invoices"]) <= 55
    assert read_in_parts(body, [len(body) // 3, 2 * len(body) // 3]) == {"invoices": rows}


def test_a_cut_inside_a_string_does_not_read() -> None:
    body = orjson.dumps({"invoices": [{"a": "x"}, {"note": "a},{b"}, {"b": 1}]})
    inside = body.index(b"a},{b") + 2  # the comma inside the note
    assert read_head(body, Cuts([inside], len(body) - 2), "invoices") is None


def test_a_cut_is_not_placed_inside_a_string_when_quotes_tell() -> None:
    body = orjson.dumps({"invoices": [{"note": "a},{b"}, {"note": "c"}, {"b": 1}]})
    cuts = cut(body, [0])
    assert cuts is not None and body[cuts.commas[0] - 1 : cuts.commas[0] + 3] == b'},{"'
    assert read_in_parts(body, [0]) == loads(body)


def test_a_comma_before_the_closing_bracket_is_not_read_as_a_valid_body() -> None:
    body = b'{"invoices":[{"a":1},{"b":2},]}'
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    cuts = cut(body, [0])
    assert cuts is not None
    assert read_part(part_text(body, cuts, 1)) is None
    assert read_part(b'{"":[]}') is None  # a part always has a row


@pytest.mark.parametrize(
    "body",
    [
        b'{"invoices":[{"a":1},{"b":2}],"today":"2026-11-24"}',  # rows not last
        b'[{"a":1},{"b":2}]',  # not an object
        b'{"invoices":[{"a":1},{"b":2}]} x',  # text after the document
        b'{"invoices":[{"a":1} {"b":2}]}',  # no comma between rows
    ],
)
def test_other_layouts_are_not_cut(body: bytes) -> None:
    assert read_in_parts(body, [0]) is None


def test_a_cut_in_another_member_is_refused() -> None:
    body = b'{"invoices":[{"a":1}],"other":[{"b":2},{"c":3}]}'
    cuts = cut(body, [0])
    assert cuts is not None
    assert read_head(body, cuts, "invoices") is None


def test_a_repeated_member_reads_as_the_last_one_as_the_whole_body_does() -> None:
    body = b'{"invoices":[{"old":1},{"old":2}],"invoices":[{"a":1},{"b":2},{"c":3}]}'
    read = read_in_parts(body, [body.index(b'{"a"')])
    assert read == loads(body) == {"invoices": [{"a": 1}, {"b": 2}, {"c": 3}]}


def test_numbers_orjson_would_misread_leave_the_body_whole() -> None:
    long = b'{"invoices":[{"a":12345678901234567890123},{"b":2},{"c":3}]}'
    assert read_head(long, Cuts([long.index(b',{"b"')], len(long) - 2), "invoices") is None
    late = b'{"invoices":[{"a":1},{"b":2},{"c":12345678901234567890123}]}'
    cuts = cut(late, [0])
    assert cuts is not None
    assert read_part(part_text(late, cuts, 1)) is None


def test_a_part_is_read_as_deep_as_it_stands_in_the_body() -> None:
    deep = b"[" * 1022 + b"1" + b"]" * 1022  # too deep for orjson inside the body's two levels
    body = b'{"invoices":[{"a":1},{"b":' + deep + b"}]}"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    cuts = cut(body, [0])
    assert cuts is not None
    assert read_part(part_text(body, cuts, 1)) is None
