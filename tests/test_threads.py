"""featvis notices torch threads that make a CPU run far slower than one thread, and says what to do."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import torch
from torch import nn

import featvis
from featvis import threads


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def slow_with(factor: float):  # a timer: one thread 1 ms, torch's threads `factor` times that
    return lambda count: 0.001 if count == 1 else 0.001 * factor


def test_far_slower_threads_get_a_warning_that_says_what_to_do(two_threads: None) -> None:
    with pytest.warns(threads.SlowThreadsWarning, match=r"torch runs 20 times slower on its 2 CPU threads") as caught:
        assert threads.check_threads(torch.device("cpu"), timer=slow_with(20)) == 20
    message = str(caught[0].message)
    assert "OMP_NUM_THREADS=1" in message and "torch.set_num_threads(1)" in message and "troubleshooting" in message


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.9])
def test_threads_that_help_or_cost_a_little_are_left_alone(two_threads: None, factor: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert threads.check_threads(torch.device("cpu"), timer=slow_with(factor)) == pytest.approx(factor)


def test_nothing_is_checked_on_one_thread_a_gpu_or_when_asked_not_to(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(count: int) -> float:
        raise AssertionError("the probe ran")

    assert threads.check_threads(torch.device("cuda"), timer=never) is None
    monkeypatch.setenv("FEATVIS_NO_THREAD_CHECK", "1")
    assert threads.check_threads(torch.device("cpu"), timer=never) is None
    monkeypatch.delenv("FEATVIS_NO_THREAD_CHECK")
    torch.set_num_threads(1)
    assert threads.check_threads(torch.device("cpu"), timer=never) is None


def test_the_probe_puts_the_thread_count_back(two_threads: None) -> None:
    seconds = threads.probe_seconds(1, repeats=1)
    assert seconds > 0 and torch.get_num_threads() == 2


def test_render_vis_warns_once_per_process(two_threads: None, monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[int] = []

    def slowdown() -> float:
        measured.append(1)
        return 25.0

    monkeypatch.setattr(threads, "thread_slowdown", slowdown)
    threads._slowdown_once.cache_clear()
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()).eval()
    try:
        with pytest.warns(threads.SlowThreadsWarning, match="25 times slower"):
            featvis.render_vis(model, "1:0", size=16, steps=1, progress=False)
            featvis.render_vis(model, "1:0", size=16, steps=1, progress=False)
    finally:
        threads._slowdown_once.cache_clear()
    assert measured == [1]  # measured once, however many runs
