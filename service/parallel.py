"""Split one CPU-bound computation over the machine's cores, with fork.

A gunicorn sync worker serves one request at a time on one core. Planning a large sheet is
pure computation on data the worker already holds, so a forked child can take a share of it
with no copying in (it inherits the data) and a pickle out. Anything that goes wrong in a
child (an exception, a crash, a kill) only costs time: its share is redone here.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import select
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

_PIPE_BYTES = 1 << 20  # Linux's default most for an unprivileged process


@dataclass(frozen=True)
class Sharing:
    """How many processes may share one computation, and from how many items it pays."""

    processes: int = 1
    min_items: int = 4000
    # An item computed in another process costs more than here: its result travels back (and
    # in a forked child pages are copied as it writes), while this process joins the results.
    # A 20,000-row sheet read in parts on two cores took 126 ms at this rate, against 130 ms at
    # 0.8 and 131 ms at 1.1 (100k rows: 812 ms, against 820 and 866 at 0.8 and 1.0).
    elsewhere: float = 0.9

    def slices(self, count: int) -> list[tuple[int, int]]:
        """Contiguous (start, stop) bounds of ``count`` items, one per process used; the
        first, computed here, takes as many as each other at ``elsewhere`` times the rate."""
        shares = self.processes if count >= self.min_items else 1
        if shares == 1 or count < 2:
            return [(0, count)]
        first = min(count, round(count / (1 + (shares - 1) * self.elsewhere)))
        size = max(1, -(-(count - first) // (shares - 1)))  # ceiling division
        return [(0, first)] + [(s, min(s + size, count)) for s in range(first, count, size)]


@cache  # read once per process: every plan request asks
def available_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: its CPU affinity, within a container's CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:  # cgroup v2: "max 100000", or "150000 100000" for docker --cpus=1.5
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to honour
    return cpus


def fork_map(fn: Callable[[T], R], parts: Sequence[T], grace: float = 5.0) -> list[R]:
    """``[fn(part) for part in parts]``: the first part here, each other in a forked child.

    ``fn`` must be pure: a child's side effects stay in the child. A process with other
    threads never forks (a lock another thread holds would stay held in the child); it
    computes every part itself. A child still busy ``grace`` seconds plus twice this
    process's own time after this process is done is stopped, and its part computed here.
    """
    if len(parts) < 2 or threading.active_count() > 1 or not hasattr(os, "fork"):
        return [fn(part) for part in parts]
    children = [_spawn(fn, part) for part in parts[1:]]
    started = time.monotonic()
    try:
        first = fn(parts[0])
    except BaseException:
        for pid, fd in children:
            os.close(fd)
            reap(pid, kill=True)
        raise
    now = time.monotonic()
    deadline = now + grace + 2 * (now - started)
    # Every child is read and reaped before any part is redone here.
    received = [_receive(pid, fd, deadline) for pid, fd in children]
    return [first, *map(partial(_result, fn), parts[1:], received)]


def _spawn(fn: Callable[[T], R], part: T) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError, AttributeError):  # Linux only; a hint, not a need
        # A share's rows are megabytes: a 1 MiB pipe passes them in a few writes, not hundreds.
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    pid = os.fork()
    if pid == 0:  # the child: compute, send, and leave without running the parent's cleanup
        code = 1
        try:
            os.close(read_end)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            data = pickle.dumps(fn(part), protocol=pickle.HIGHEST_PROTOCOL)
            with open(write_end, "wb") as pipe:
                pipe.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _receive(pid: int, fd: int, deadline: float) -> tuple[int, bytes]:
    chunks: list[bytes] = []
    with open(fd, "rb", buffering=0) as pipe:
        while True:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([pipe], [], [], wait)[0]:
                log.warning("a share process is still busy past its deadline; stopping it")
                return reap(pid, kill=True), b""
            chunk = pipe.read(_PIPE_BYTES)
            if not chunk:  # the child closed its end: all of it is here
                return reap(pid), b"".join(chunks)
            chunks.append(chunk)


def _result(fn: Callable[[T], R], part: T, received: tuple[int, bytes]) -> R:
    code, data = received
    if code == 0:
        try:
            # Our own child's bytes, through a pipe only the two of us held.
            result: R = pickle.loads(data)  # noqa: S301
            return result
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            log.warning("a share's result could not be read (%s); computing it here", exc)
    else:
        log.warning("a share process exited with code %s; computing its share here", code)
    return fn(part)


def reap(pid: int, kill: bool = False) -> int:
    """Wait for our child ``pid`` to end (killing it first if asked); its exit code."""
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
