"""fork_map: shares computed in forked children, and redone here whenever a child fails."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.parallel import Sharing, available_cpus, fork_map

PARENT = os.getpid()


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The pids of the children fork_map starts."""
    real = os.fork
    pids: list[int] = []

    def fork() -> int:
        pid = real()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    yield pids
    for pid in pids:  # every child was reaped by fork_map itself
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def where(part: int) -> tuple[int, int]:
    return part * part, os.getpid()


def in_a_child(misbehave: Callable[[], object]) -> Callable[[int], tuple[int, int]]:
    """where(), but a child first does ``misbehave``."""

    def share(part: int) -> tuple[int, int]:
        if os.getpid() != PARENT:
            misbehave()
        return where(part)

    return share


def boom() -> None:
    raise RuntimeError("boom")


def test_each_share_after_the_first_runs_in_its_own_child(forks: list[int]) -> None:
    assert threading.active_count() == 1, "fork_map only forks a single-threaded process"
    results = fork_map(where, [1, 2, 3])
    assert [square for square, _ in results] == [1, 4, 9]
    pids = [pid for _, pid in results]
    assert pids[0] == os.getpid()
    assert pids[1:] == forks and len(set(pids)) == 3


def test_a_result_of_megabytes_comes_back_whole(forks: list[int]) -> None:
    def payload(size: int) -> bytes:
        return os.urandom(16) * (size // 16)

    small, large = fork_map(payload, [16, 6_000_000])
    assert len(small) == 16 and len(large) == 6_000_000
    assert large == large[:16] * 375_000  # not truncated, not interleaved
    assert len(forks) == 1


def test_a_share_whose_child_raises_is_computed_here(
    forks: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.parallel"):
        results = fork_map(in_a_child(boom), [1, 2, 3])
    assert results == [(1, PARENT), (4, PARENT), (9, PARENT)]
    assert len(forks) == 2
    assert caplog.text.count("exited with code 1") == 2


def test_a_share_whose_child_is_killed_is_computed_here(forks: list[int]) -> None:
    killed = in_a_child(lambda: os.kill(os.getpid(), signal.SIGKILL))
    assert fork_map(killed, [5, 6]) == [(25, PARENT), (36, PARENT)]
    assert len(forks) == 1


def test_a_share_whose_child_hangs_is_stopped_and_computed_here(
    forks: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="service.parallel"):
        assert fork_map(in_a_child(lambda: time.sleep(600)), [2, 3], grace=0.2) == [
            (4, PARENT),
            (9, PARENT),
        ]
    assert time.monotonic() - started < 5
    assert len(forks) == 1 and "past its deadline" in caplog.text


def test_an_error_here_is_raised_and_no_child_is_left_behind(forks: list[int]) -> None:
    def fails_here(part: int) -> int:
        if os.getpid() == PARENT:
            raise ValueError(part)
        return part

    with pytest.raises(ValueError, match="1"):
        fork_map(fails_here, [1, 2, 3])
    assert len(forks) == 2  # the fixture checks both were reaped


def test_a_process_with_other_threads_never_forks(forks: list[int]) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert fork_map(where, [1, 2]) == [(1, PARENT), (4, PARENT)]
    finally:
        stop.set()
        thread.join()
    assert forks == []


@given(count=st.integers(0, 500), processes=st.integers(1, 8), min_items=st.integers(1, 100))
def test_slices_cover_every_item_once_in_order(count: int, processes: int, min_items: int) -> None:
    slices = Sharing(processes, min_items).slices(count)
    assert [i for start, stop in slices for i in range(start, stop)] == list(range(count))
    assert len(slices) <= processes
    if count < min_items:
        assert slices == [(0, count)]


def test_slices_are_as_even_as_ceiling_division_makes_them() -> None:
    assert Sharing(3, 1, elsewhere=1).slices(10) == [(0, 3), (3, 7), (7, 10)]
    assert Sharing(2, 4000).slices(3999) == [(0, 3999)]
    assert Sharing(2, 4000, elsewhere=1).slices(20_000) == [(0, 10_000), (10_000, 20_000)]


def test_the_share_computed_here_is_larger_by_what_the_others_cost_to_move() -> None:
    assert Sharing(2, 4000).slices(19_000) == [(0, 10_000), (10_000, 19_000)]
    assert Sharing(3, 1, elsewhere=0.5).slices(10) == [(0, 5), (5, 8), (8, 10)]


@pytest.mark.parametrize(
    ("cpu_max", "cap"),
    [("max 100000\n", None), ("150000 100000\n", 1), ("50000 100000\n", 1), ("bad", None)],
)
def test_a_container_quota_caps_the_cores(tmp_path: Path, cpu_max: str, cap: int | None) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    cores = len(os.sched_getaffinity(0))
    assert available_cpus(path) == (min(cores, cap) if cap else cores)
    assert available_cpus(tmp_path / "absent") == cores
