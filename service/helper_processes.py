"""Processes kept beside this one, each ready to compute a share of the next large request.

``fork_map`` forks for every request, and after a fork the parent and the child both take a
page fault for every page either writes while both hold it: about 20 ms of a 20,000-row plan's
140 ms on a VM. A helper forked once, before a request's data exists, stops sharing the pages
that matter after a request or two: from then on a share costs its computation, the rows sent
to it (marshal: exact for every value JSON can hold) and the result sent back (pickle).

Nothing here changes what is computed. A helper that is missing, busy, slow, crashed or
answers nonsense only costs time: its share is computed here, and it is replaced next time.
A helper leaves when its parent goes (its socket closes) or after ``idle_seconds`` unused,
giving back the memory it kept.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import marshal
import os
import pickle
import select
import signal
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, NamedTuple, TypeVar, cast

from service.parallel import fork_map, reap

A = TypeVar("A")
R = TypeVar("R")

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!Q")
_FAILED = b""  # a helper's reply when the computation raised: it is redone here, to raise
# gunicorn's worker handles these; a helper must die of them as any plain process would.
_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGCHLD")


class _Helper(NamedTuple):
    pid: int
    sock: socket.socket


class HelperProcesses(Generic[A, R]):
    """``count`` helper processes computing ``job(arg)``, with ``map`` like ``fork_map``."""

    def __init__(
        self,
        job: Callable[[A], R],
        count: int,
        *,
        idle_seconds: float = 120.0,
        grace: float = 5.0,
    ) -> None:
        self._job = job
        self._count = max(0, count)
        self._idle = idle_seconds
        self._grace = grace
        self._helpers: list[_Helper] = []
        self._owner = [os.getpid()]  # a list, so the finalizer sees a change of owner
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _stop_all, self._helpers, self._owner)

    @property
    def pids(self) -> list[int]:
        """The helpers running now."""
        return [h.pid for h in self._helpers]

    def close(self) -> None:
        """Stop the helpers for good (as the object's collection or this process's exit would)."""
        self._finalizer()

    def start(self) -> None:
        """Fork the helpers that are not running. Call it before a request's data exists: a
        helper keeps whatever this process held when it was forked. Does nothing while other
        threads run (a lock one of them holds would stay held in the helper)."""
        if not self._count or not self._finalizer.alive or not self._lock.acquire(blocking=False):
            return
        try:
            self._drop_gone()
            if threading.active_count() > 1 or not hasattr(os, "fork"):
                return
            while len(self._helpers) < self._count:
                self._helpers.append(self._fork())
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def round(self) -> Iterator[Round[A, R] | None]:
        """The helpers, for one request's work: None while another thread has them. A helper
        still owing an answer when the round ends is stopped, so that the answer is never read
        as another's."""
        if not self._lock.acquire(blocking=False):
            yield None
            return
        try:
            self._drop_gone()
            work = Round(self)
            try:
                yield work
            finally:
                work.abandon()
        finally:
            self._lock.release()

    def map(self, args: Sequence[A]) -> list[R]:
        """``[job(arg) for arg in args]``: the first here, each other on a helper when there is
        one for each, else as ``fork_map`` would."""
        if len(args) < 2:
            return [self._job(arg) for arg in args]
        with self.round() as work:
            if work is None or work.idle < len(args) - 1:
                return fork_map(self._job, args, self._grace)
            pids = work.send(args[1:])
            started = time.monotonic()
            first = self._job(args[0])
            replies = work.receive(pids, self.deadline(started))
            pairs = zip(args[1:], replies, strict=True)
            return [first, *(self._job(a) if r is None else r for a, r in pairs)]

    def deadline(self, started: float) -> float:
        """When helpers that were sent work at ``started`` have had long enough: ``grace``
        seconds, plus twice what this process has spent since."""
        now = time.monotonic()
        return now + self._grace + 2 * (now - started)

    def _result(self, reply: bytes | bytearray | None) -> R | None:
        if reply:
            try:
                # Our own helper's bytes, through a socket only the two of us hold.
                result: R = pickle.loads(reply)  # noqa: S301
                return result
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
                log.warning("a helper's result could not be read (%s); computing it here", exc)
        return None

    def _send(self, helper: _Helper, arg: A) -> bool:
        try:
            data = marshal.dumps(cast(Any, arg))
        except ValueError:  # a value marshal cannot carry: computed here, the helper is fine
            return False
        try:
            helper.sock.settimeout(self._grace)
            helper.sock.sendall(_LENGTH.pack(len(data)))
            helper.sock.sendall(data)
            return True
        except OSError as exc:
            log.warning("a helper could not take its share (%s); computing it here", exc)
            self._stop(helper)
            return False

    def _receive(self, helper: _Helper, deadline: float) -> bytearray | None:
        try:
            return _receive_frame(helper.sock, deadline)
        except (OSError, EOFError) as exc:
            log.warning("a helper gave no answer (%s); computing its share here", exc or "timeout")
            self._stop(helper)
            return None

    def _fork(self) -> _Helper:
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the helper: serve until the parent goes, and never run its cleanup
            code = 1
            try:
                ours.close()
                for other in self._helpers:  # so each helper sees EOF when the parent goes
                    other.sock.close()
                _serve(self._job, theirs, self._idle)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        return _Helper(pid, ours)

    def _drop_gone(self) -> None:
        if os.getpid() != self._owner[0]:  # inherited by a fork of the owner: not ours to use
            self._helpers.clear()
            self._owner[0] = os.getpid()
            return
        for helper in list(self._helpers):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(helper.pid, os.WNOHANG)[0] == 0:
                    continue  # still running
            helper.sock.close()
            self._helpers.remove(helper)

    def _stop(self, helper: _Helper) -> None:
        _kill(helper)
        if helper in self._helpers:
            self._helpers.remove(helper)


class Round(Generic[A, R]):
    """One request's work on the helpers: ``send`` some, compute here, ``receive`` theirs."""

    def __init__(self, owner: HelperProcesses[A, R]) -> None:
        self._owner = owner
        self._waiting: dict[int, _Helper] = {}  # by pid: sent work, answer not yet read

    @property
    def idle(self) -> int:
        """How many helpers could take work now."""
        return len(self._owner._helpers) - len(self._waiting)

    def send(self, args: Sequence[A], to: Sequence[int | None] | None = None) -> list[int | None]:
        """Send each arg to an idle helper of its own: the one whose pid ``to`` names, or the
        next one. The pid of the helper that took each arg; None where none did."""
        pids: list[int | None] = []
        for i, arg in enumerate(args):
            helper = self._idle_helper(None if to is None else to[i])
            if helper is not None and self._owner._send(helper, arg):
                self._waiting[helper.pid] = helper
                pids.append(helper.pid)
            else:
                pids.append(None)
        return pids

    def receive(self, pids: Sequence[int | None], deadline: float) -> list[R | None]:
        """The answer of each helper ``send`` named, in order; None where there is none: it was
        sent nothing, failed, or had not answered by ``deadline`` (it is then stopped)."""
        replies: list[R | None] = []
        for pid in pids:
            helper = None if pid is None else self._waiting.pop(pid, None)
            reply = None if helper is None else self._owner._receive(helper, deadline)
            replies.append(self._owner._result(reply))
        return replies

    def abandon(self) -> None:
        """Stop every helper whose answer is still owed."""
        for helper in self._waiting.values():
            self._owner._stop(helper)
        self._waiting.clear()

    def _idle_helper(self, pid: int | None) -> _Helper | None:
        for helper in self._owner._helpers:
            if helper.pid not in self._waiting and pid in (None, helper.pid):
                return helper
        return None


def _serve(job: Callable[[Any], Any], sock: socket.socket, idle: float) -> None:
    for name in _SIGNALS:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    sock.settimeout(None)
    while True:
        try:
            request = _receive_frame(sock, time.monotonic() + idle)
        except (OSError, EOFError):  # the parent went, or nothing came for ``idle`` seconds
            return
        # As in a gunicorn request: a share's objects are all alive until it answers.
        gc.disable()
        arg: Any = None
        try:
            # The parent's own bytes, through a socket only the two of us hold.
            arg = marshal.loads(request)  # noqa: S302
            request = bytearray()  # megabytes of rows or text, no longer needed once read
            reply = pickle.dumps(job(arg), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            log.exception("a helper's share failed; its parent computes it")
            reply = _FAILED
        finally:
            gc.enable()
        del request, arg
        sock.sendall(_LENGTH.pack(len(reply)))
        sock.sendall(reply)
        del reply


def _receive_frame(sock: socket.socket, deadline: float) -> bytearray:
    head = _receive_exactly(sock, _LENGTH.size, deadline)
    return _receive_exactly(sock, _LENGTH.unpack(head)[0], deadline)


def _receive_exactly(sock: socket.socket, size: int, deadline: float) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([sock], [], [], wait)[0]:
            raise TimeoutError
        count = sock.recv_into(view[got:])
        if not count:
            raise EOFError("closed")
        got += count
    return buffer


def _kill(helper: _Helper) -> None:
    helper.sock.close()
    with contextlib.suppress(ChildProcessError):  # already reaped
        reap(helper.pid, kill=True)


def _stop_all(helpers: list[_Helper], owner: list[int]) -> None:
    if os.getpid() == owner[0]:
        for helper in helpers:
            _kill(helper)
    helpers.clear()
