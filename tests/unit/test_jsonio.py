"""Request bodies: orjson's speed, the json module's reading, value for value."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.api.jsonio import loads, with_rows

# Every JSON value the json module writes, NaN and lone surrogates included.
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_infinity=False)
    | st.text(st.characters(codec=None)),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)
number_literals = st.from_regex(
    r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,3})?", fullmatch=True
)


def same(body: bytes) -> None:
    expected = json.loads(body)
    got = loads(body)
    # repr tells 1 from 1.0 and True, and shows every digit.
    assert repr(got) == repr(expected)


@given(values)
def test_any_document_reads_as_the_json_module_reads_it(value: object) -> None:
    same(json.dumps(value).encode())


@given(number_literals)
def test_numbers_keep_every_digit_and_their_type(literal: str) -> None:
    same(f'{{"amount": {literal}, "cells": [{literal}, "{literal}"]}}'.encode())


@pytest.mark.parametrize(
    "body",
    [
        b"[123456789012345678901]",  # beyond 64 bits: orjson would read a float
        b"[-9223372036854775809]",
        b"[18446744073709551616]",
        b'{"a": 1, "a": 2}',
        b'["\\ud800"]',  # a lone surrogate, which orjson refuses
        b"[NaN, Infinity]",
        b'\xef\xbb\xbf{"a": 1}'[3:],
    ],
)
def test_cases_where_orjson_alone_would_differ(body: bytes) -> None:
    same(body)


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": }', b"\xff\xfe"])
def test_a_bad_body_raises_what_the_json_module_raises(body: bytes) -> None:
    with pytest.raises(json.JSONDecodeError):
        loads(body)


@pytest.mark.parametrize(
    ("head", "arrays", "expected"),
    [
        ({"a": 1}, [b"[1,2]", b"[]", b'[{"b":3}]'], {"a": 1, "rows": [1, 2, {"b": 3}]}),
        ({"a": 1}, [b"[]", b"[]"], {"a": 1, "rows": []}),
        ({}, [b"[1]"], {"rows": [1]}),
        ({}, [], {"rows": []}),
    ],
)
def test_rows_written_in_shares_join_into_one_array(
    head: dict[str, object], arrays: list[bytes], expected: dict[str, object]
) -> None:
    assert json.loads(with_rows(head, arrays)) == expected
