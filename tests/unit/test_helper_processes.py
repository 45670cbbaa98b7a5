"""HelperProcesses: shares computed on processes kept between requests, and here when one fails."""

from __future__ import annotations

import gc
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.helper_processes import HelperProcesses

PARENT = os.getpid()


def where(arg: Any) -> tuple[Any, int]:
    return arg, os.getpid()


def boom_in_a_helper(arg: int) -> tuple[int, int]:
    if os.getpid() != PARENT:
        raise RuntimeError("boom")
    return arg * arg, os.getpid()


def sleep_in_a_helper(arg: int) -> tuple[int, int]:
    if os.getpid() != PARENT:
        time.sleep(600)
    return arg * arg, os.getpid()


@pytest.fixture
def helpers() -> Iterator[HelperProcesses[Any, tuple[Any, int]]]:
    assert threading.active_count() == 1, "helpers are forked by a single-threaded process only"
    pool: HelperProcesses[Any, tuple[Any, int]] = HelperProcesses(where, 2, grace=0.5)
    pool.start()
    yield pool
    pids = pool.pids
    pool.close()
    assert pool.pids == []
    for pid in pids:  # stopped and reaped
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def exited(pid: int, within: float = 5.0) -> int | None:
    """The exit code of our child ``pid`` once it exits, None if it is still running."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    return None


def test_shares_after_the_first_run_on_the_same_helpers_request_after_request(
    helpers: HelperProcesses[Any, tuple[Any, int]],
) -> None:
    kept = helpers.pids
    assert len(kept) == 2 and PARENT not in kept
    for _ in range(3):
        results = helpers.map([1, 2, 3])
        assert [arg for arg, _ in results] == [1, 2, 3]
        assert [pid for _, pid in results] == [PARENT, *kept]
    assert helpers.pids == kept


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=30, deadline=None)
@given(value=json_values)
def test_what_json_can_hold_reaches_a_helper_exactly(value: Any) -> None:
    # Integers beyond 64 bits, NaN and -0.0 included: what the json module reads, marshal carries.
    pool: HelperProcesses[Any, tuple[Any, int]] = HelperProcesses(where, 1)
    pool.start()
    (_, here), (there, pid) = pool.map([None, value])
    assert pid == pool.pids[0] != here
    assert repr(there) == repr(value)
    assert there == value or _has_nan(value)


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, list):
        return any(map(_has_nan, value))
    if isinstance(value, dict):
        return any(map(_has_nan, value.values()))
    return False


def test_a_share_that_fails_on_its_helper_is_computed_here_and_the_helper_stays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = HelperProcesses(boom_in_a_helper, 1)
    pool.start()
    kept = pool.pids
    with caplog.at_level(logging.WARNING):
        assert pool.map([2, 3]) == [(4, PARENT), (9, PARENT)]
    assert pool.pids == kept


def test_a_killed_helper_costs_only_time_and_is_replaced_by_the_next_start(
    helpers: HelperProcesses[Any, tuple[Any, int]], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = helpers.pids
    os.kill(first, signal.SIGKILL)
    time.sleep(0.1)
    assert [arg for arg, _ in helpers.map([1, 2, 3])] == [1, 2, 3]
    helpers.start()
    assert second in helpers.pids and first not in helpers.pids and len(helpers.pids) == 2
    results = helpers.map([1, 2, 3])
    assert [pid for _, pid in results][1:] == helpers.pids


def test_a_helper_that_hangs_is_stopped_and_its_share_computed_here(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = HelperProcesses(sleep_in_a_helper, 1, grace=0.2)
    pool.start()
    (stuck,) = pool.pids
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        assert pool.map([2, 3]) == [(4, PARENT), (9, PARENT)]
    assert time.monotonic() - started < 5
    assert pool.pids == [] and "gave no answer" in caplog.text
    with pytest.raises(ChildProcessError):  # killed and reaped
        os.waitpid(stuck, os.WNOHANG)


def one_fails_here(arg: int) -> tuple[int, int]:
    if arg == 1 and os.getpid() == PARENT:
        raise ValueError(arg)
    return arg, os.getpid()


def test_an_error_here_is_raised_and_leaves_no_answer_for_the_next_request() -> None:
    pool = HelperProcesses(one_fails_here, 1)
    pool.start()
    with pytest.raises(ValueError, match="1"):
        pool.map([1, 2])
    pool.start()
    (helper,) = pool.pids
    # Had the helper's answer for 2 been left unread, it would be read here as 4's.
    assert pool.map([3, 4]) == [(3, PARENT), (4, helper)]
    pool.close()


def test_without_helpers_shares_go_to_children_forked_for_them() -> None:
    pool: HelperProcesses[Any, tuple[Any, int]] = HelperProcesses(where, 1)
    (_, here), (_, there) = pool.map([1, 2])
    assert here == PARENT and there != PARENT and pool.pids == []
    with pytest.raises(ChildProcessError):
        os.waitpid(there, os.WNOHANG)  # fork_map reaped it


def test_a_helper_leaves_when_idle_and_when_its_parent_goes() -> None:
    pool: HelperProcesses[Any, tuple[Any, int]] = HelperProcesses(where, 1, idle_seconds=0.2)
    pool.start()
    (idle,) = pool.pids
    assert exited(idle) == 0
    pool.start()  # the next large request brings a new one
    (fresh,) = pool.pids
    assert fresh != idle
    assert pool.map([1, 2])[1] == (2, fresh)
    pool._helpers[0].sock.close()  # what the parent's exit does to the helper's socket
    assert exited(fresh) == 0


def test_helpers_stop_when_their_owner_is_collected() -> None:
    pool: HelperProcesses[Any, tuple[Any, int]] = HelperProcesses(where, 2)
    pool.start()
    pids = pool.pids
    del pool
    gc.collect()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_a_process_with_other_threads_forks_no_helper() -> None:
    pool: HelperProcesses[Any, tuple[Any, int]] = HelperProcesses(where, 1)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        pool.start()
        assert pool.pids == []
        assert pool.map([1, 2]) == [(1, PARENT), (2, PARENT)]  # fork_map computes both here
    finally:
        stop.set()
        thread.join()


def test_a_round_sends_to_the_helper_it_names_and_reads_its_answer(
    helpers: HelperProcesses[Any, tuple[Any, int]],
) -> None:
    first, second = helpers.pids
    with helpers.round() as work:
        assert work is not None and work.idle == 2
        pids = work.send(["b"], to=[second])
        assert pids == [second] and work.idle == 1
        assert work.send(["again"], to=[second]) == [None]  # it owes an answer already
        others = work.send(["a", "none left"])
        assert others == [first, None]
        answers = work.receive([*others, *pids], time.monotonic() + 5)
    assert answers == [("a", first), None, ("b", second)]
    assert helpers.pids == [first, second]


def test_a_helper_still_owing_an_answer_when_the_round_ends_is_stopped(
    helpers: HelperProcesses[Any, tuple[Any, int]],
) -> None:
    first, second = helpers.pids
    with helpers.round() as work:
        assert work is not None
        assert work.send(["never read"], to=[second]) == [second]
    assert helpers.pids == [first]
    with pytest.raises(ChildProcessError):  # stopped and reaped
        os.waitpid(second, os.WNOHANG)
    # Its answer is never taken for another's.
    assert helpers.map(["x", "y"]) == [("x", PARENT), ("y", first)]


def test_a_round_while_another_has_the_helpers_is_none(
    helpers: HelperProcesses[Any, tuple[Any, int]],
) -> None:
    with helpers.round() as work, helpers.round() as other:
        assert work is not None and other is None
        here, elsewhere = helpers.map([1, 2])  # a child forked for it, not a helper
        assert here == (1, PARENT)
        assert elsewhere[0] == 2 and elsewhere[1] not in (PARENT, *helpers.pids)
