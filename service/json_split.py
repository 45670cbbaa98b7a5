"""One large JSON document read in parts, on several processes, exactly as it reads whole.

A plan body is an object whose last member is a long array of rows: ``{"today": ..,
"invoices": [{..}, {..}, ..]}``. Cut at commas between rows, it reads in parts: the text
before the first cut, closed with ``]}``, is the document with the rows before the cut; the
text between two cuts, or from the last cut to the array's end, is a run of rows. When every
part reads, the whole body is valid JSON and reads as the parts joined (JSON's grammar has no
context: a value reads the same wherever it stands). Why each check is enough:

- A part that ends inside a string does not read (the string is never closed), so a cut that
  reads is between values, whatever the rows' strings hold.
- The head, closed with ``]}``, reads only if the cut is inside an array that is a member of
  the top-level object. A sentinel element added at the cut finds that member: exactly one
  member, named ``key``, must end with it (an earlier member of the same name is replaced by
  the later one, in the whole body as in the head).
- Each run of rows is read wrapped as deep as it stands in the body, so that a parser's
  nesting limit cuts off the same documents.

Anything else (no cut between rows, another layout, a part that does not read) is left to
the caller's reading of the whole body: this module only ever says "these parts" or "no".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
# orjson reads an integer outside [-2**63, 2**64) as a float, changing its digits; such an
# integer has at least 19 digits. Marking every digit and looking for 19 in a row takes
# 0.5 µs per sheet row, a third of what orjson saves over the json module.
_LONG_NUMBER = b"0" * 19
_WHITESPACE = b" \t\n\r"
_ROW_GAP = re.compile(rb"\}[ \t\n\r]*(,)[ \t\n\r]*\{")
# No cell is a lone NUL followed by this: and were one so, two members would end with it.
_SENTINEL = "\x00invoice-collector: the cut"
_SENTINEL_JSON = orjson.dumps(_SENTINEL)


def orjson_reads_exactly(text: bytes | bytearray) -> bool:
    """False when orjson might read a number in ``text`` differently from the json module."""
    return _LONG_NUMBER not in text.translate(_DIGITS)


class Cuts(NamedTuple):
    """Where a body is cut: the commas between parts' rows, and the array's closing bracket."""

    commas: list[int]
    end: int


def cut(body: bytes, starts: Sequence[int]) -> Cuts | None:
    """Cuts at the first comma between two rows at or after each of ``starts`` (byte offsets,
    increasing), or None when the body does not end with its array or a cut has no place."""
    end = _last_byte(body, len(body))
    if end < 0 or body[end] != ord("}"):
        return None
    end = _last_byte(body, end)
    if end < 0 or body[end] != ord("]"):
        return None
    # Without a backslash, a string's quotes come in pairs: an odd count means "in a string".
    # With one, only reading the head can tell.
    quotes_tell = body.find(b"\\", 0, end) < 0
    commas: list[int] = []
    for start in starts:
        at = max(start, commas[-1] + 1 if commas else 0)
        comma = _comma_between_rows(body, at, end, quotes_tell)
        if comma is None:
            return None
        commas.append(comma)
    return Cuts(commas, end) if commas else None


def _comma_between_rows(body: bytes, start: int, end: int, quotes_tell: bool) -> int | None:
    """The first comma from ``start`` that stands between two objects (``},{``) and, as far as
    quotes can tell, outside any string; None if there is none before ``end``."""
    for found in _ROW_GAP.finditer(body, start, end):
        comma = found.start(1)
        if not quotes_tell or body.count(b'"', 0, comma) % 2 == 0:
            return comma
    return None


def _last_byte(body: bytes, before: int) -> int:
    """The position of the last byte before ``before`` that is not whitespace, or -1."""
    at = before - 1
    while at >= 0 and body[at] in _WHITESPACE:
        at -= 1
    return at


def part_text(body: bytes, cuts: Cuts, index: int) -> bytes:
    """The text of part ``index`` (1 or more: the head is read by read_head), as a document
    whose only member holds its rows at the depth they have in the body."""
    stop = cuts.commas[index] if index < len(cuts.commas) else cuts.end
    return b'{"":[' + memoryview(body)[cuts.commas[index - 1] + 1 : stop] + b"]}"


def read_part(text: bytes | bytearray) -> list[Any] | None:
    """The rows of a part_text(), or None when it does not read (as orjson reads it) or
    holds no row (the body would have a comma before its closing bracket)."""
    if not orjson_reads_exactly(text):
        return None
    try:
        rows: list[Any] = orjson.loads(text)[""]  # the wrapper part_text() wrote
    except orjson.JSONDecodeError:
        return None
    return rows or None


def read_head(body: bytes, cuts: Cuts, key: str) -> dict[str, Any] | None:
    """The document up to the first cut: every member as in the whole body, but ``key`` holds
    only the rows before the cut. None when it does not read, or the cut is in another array."""
    # One copy of the head, checked and read (the sentinel has no digit).
    text = b"".join((memoryview(body)[: cuts.commas[0]], b",", _SENTINEL_JSON, b"]}"))
    if not orjson_reads_exactly(text):
        return None
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict:
        return None
    ends = [k for k, v in document.items() if type(v) is list and v and v[-1] == _SENTINEL]
    if ends != [key]:
        return None
    document[key].pop()
    return document
