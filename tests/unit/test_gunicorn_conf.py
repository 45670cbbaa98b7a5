"""gunicorn.conf.py: no cycle collection during a request, and request bodies read in blocks."""

from __future__ import annotations

import gc
import runpy
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http.body import Body
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader
from hypothesis import given
from hypothesis import strategies as st

from service.config import PROJECT_ROOT


@pytest.fixture(scope="module")
def conf() -> Iterator[dict[str, Any]]:
    enabled = gc.isenabled()
    yield runpy.run_path(str(PROJECT_ROOT / "gunicorn.conf.py"))
    if enabled:
        gc.enable()


def request(body: bytes, chunked: bool = False, piece: int = 8192) -> Request:
    """A gunicorn request as its sync worker parses it, arriving ``piece`` bytes at a time."""
    if chunked:
        head = b"Transfer-Encoding: chunked\r\n"
        sent = (
            b"".join(
                b"%x\r\n%s\r\n" % (min(700, len(body) - i), body[i : i + 700])
                for i in range(0, len(body), 700)
            )
            + b"0\r\n\r\n"
        )
    else:
        head = b"Content-Length: %d\r\n" % len(body)
        sent = body
    raw = b"POST /v1/plan HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + sent
    pieces = [raw[i : i + piece] for i in range(0, len(raw), piece)]
    return Request(Config(), IterUnreader(pieces), ("127.0.0.1", 1))


def test_no_collection_during_a_request_and_collection_after_it(conf: dict[str, Any]) -> None:
    conf["pre_request"](None, request(b"{}"))
    assert not gc.isenabled()
    conf["post_request"](None, None, {}, None)
    assert gc.isenabled()


class CountingReader:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def read(self, size: int) -> bytes:
        self.calls += 1
        data: bytes = self.inner.read(size)
        return data


def test_a_large_body_is_read_in_blocks_not_a_kibibyte_at_a_time(conf: dict[str, Any]) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB
    ours, theirs = request(payload, piece=65536), request(payload, piece=65536)
    conf["pre_request"](None, ours)
    conf["post_request"](None, None, {}, None)
    ours.body.reader = counted = CountingReader(ours.body.reader)
    theirs.body.reader = counted_theirs = CountingReader(theirs.body.reader)
    assert ours.body.read() == theirs.body.read() == payload
    assert counted.calls <= 4  # two 1 MiB blocks, then the end
    assert counted_theirs.calls > 2048  # gunicorn's own Body: 1 KiB a call


@given(
    payload=st.binary(max_size=5000),
    chunked=st.booleans(),
    piece=st.integers(1, 3000),
    sizes=st.lists(st.one_of(st.none(), st.integers(-1, 4000)), min_size=1, max_size=6),
)
def test_reads_give_what_gunicorns_own_body_gives(
    conf: dict[str, Any],
    payload: bytes,
    chunked: bool,
    piece: int,
    sizes: list[int | None],
) -> None:
    ours, theirs = request(payload, chunked, piece), request(payload, chunked, piece)
    conf["pre_request"](None, ours)
    conf["post_request"](None, None, {}, None)
    assert type(ours.body) is not Body and type(theirs.body) is Body
    for size in sizes:
        assert ours.body.read(size) == theirs.body.read(size)
    assert ours.body.read() == theirs.body.read()


_REUSE = """
import resource, runpy, sys
conf = runpy.run_path("gunicorn.conf.py")
kept = sys.argv[1] == "kept" and conf["keep_freed_memory"]()
block = b"x" * (40 << 20)  # as large as a 70,000-row plan's response
del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = b"y" * (40 << 20)  # the next request's
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_worker_keeps_freed_memory_for_the_next_request() -> None:
    def next_request_faults(mode: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", _REUSE, mode],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return out[0], int(out[1])

    # By default the block is given back when freed: each of its 10,240 pages faults again.
    assert next_request_faults("default") == ("False", pytest.approx(10_240, abs=200))
    kept, faults = next_request_faults("kept")
    assert kept == "True" and faults < 100
