"""gunicorn settings for every way the API is served.

gunicorn reads ./gunicorn.conf.py by itself, so the Procfile, `make serve`, the Dockerfile and
the end-to-end tests (all started from the project root) share it; flags on their command
lines still win.
"""

from __future__ import annotations

import ctypes
import gc
from typing import Any

from gunicorn.http.body import Body

# A request body is read in blocks of up to this much, not gunicorn's 1 KiB.
_BODY_BLOCK = 1 << 20


class BlockReadBody(Body):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's request body, read in blocks as large as the caller asks for (to 1 MiB).

    gunicorn's own ``Body.read`` pulls the body through its reader 1 KiB per loop whatever
    size is asked for (benoitc/gunicorn#2596): 12 ms of Python for the 6 MB JSON of a
    20,000-row sheet, 5 ms this way. Filling the buffer first and then letting gunicorn's
    ``read`` cut it keeps every other behaviour gunicorn's: its loop finds the bytes there.
    """

    def read(self, size: int | None = None) -> bytes:
        wanted = self.getsize(size)
        while wanted > self.buf.tell():
            block = self.reader.read(min(wanted - self.buf.tell(), _BODY_BLOCK))
            if not block:
                break
            self.buf.write(block)
        data: bytes = super().read(size)
        return data


# glibc's mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# A freed block up to this large is kept for the next request (a 100k-row plan's response, the
# largest, has a mapping of its own as before)...
_HEAP_BLOCK = 64 << 20
# ... and up to this much freed memory stays with the worker between requests.
_HEAP_KEPT = 64 << 20


def keep_freed_memory() -> bool:
    """Have glibc keep the memory a request frees for the next, instead of giving it back.

    By default glibc maps each large block (from 128 KiB up) on its own and unmaps it when
    freed, and gives the top of its heap back beyond a threshold; the next request then takes
    a page fault for every page again. At 20,000 rows that was 9,300 page faults a request
    (the response alone: 2,764, 5 ms); with this, about 1,000. False where the C library has no
    such setting (not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    kept = mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCK) == 1
    return mallopt(_M_TRIM_THRESHOLD, _HEAP_KEPT) == 1 and kept


def post_worker_init(worker: Any) -> None:
    """Tune the cycle collector and the C heap once the worker has loaded the app (its helper
    processes, forked from it, inherit both).

    A plan of 100k rows allocates about a million short-lived containers (the JSON rows, the
    parsed invoices, the result rows), none of them in a reference cycle: reference counting
    frees them all. At the default threshold the cycle collector runs every 700 allocations
    and spends a quarter of a large plan's time re-examining them. A larger first threshold
    keeps it for the cycles it exists for; freezing keeps it off what the app loaded once.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    keep_freed_memory()


def pre_request(worker: Any, req: Any) -> None:
    """No cycle collection while a request runs: everything it allocates is alive until it
    answers (a 100k-row plan holds millions of objects), so each collection would walk them
    only to find nothing to free. That was 5-10% of a large plan.

    The body is read in large blocks (see BlockReadBody): the application reads it after this
    hook, from ``req.body``.
    """
    gc.disable()
    if type(req.body) is Body:
        req.body = BlockReadBody(req.body.reader)


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """Collection resumes once the response is sent (gunicorn calls this even when the request
    failed): by then the request's objects are freed, and any cycle it left is collected as
    before, at the next threshold."""
    gc.enable()
