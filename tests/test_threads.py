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


def test_a_second_thread_rendering_the_same_model_fails_at_once_and_changes_nothing() -> None:
    import threading

    from featvis.state import rendering_state

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Sequential(nn.Conv2d(8, 16, 3, padding=1)))
    model.train()
    started, release = threading.Event(), threading.Event()

    def first_render() -> None:  # holds the model as a render does, until told to stop
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rendering_state(model):
                started.set()
                release.wait(10)

    thread = threading.Thread(target=first_render)
    thread.start()
    started.wait(10)
    try:
        for target in (model, model[2]):  # the model, or a part of it, from another thread
            with pytest.raises(RuntimeError, match=r"another thread is rendering this .* copy\.deepcopy\(model\)"):
                featvis.render_vis(target, "0:1", size=8, steps=2, progress=False)
    finally:
        release.set()
        thread.join()
    assert all(module.training for module in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    # once the first is done, the model renders again, from any thread; nested renders of one thread are fine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = featvis.render_channels(model, "2.0", [1, 2], size=8, steps=2, progress=False)
    assert result.images.shape == (2, 3, 8, 8)
    assert all(module.training for module in model.modules()) and all(p.requires_grad for p in model.parameters())


def test_threads_rendering_separate_copies_each_get_their_picture() -> None:
    import copy
    import threading

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()).eval()
    results: dict[int, torch.Tensor] = {}

    def render(channel: int) -> None:
        copy_ = copy.deepcopy(model)
        results[channel] = featvis.render_vis(copy_, f"1:{channel}", size=16, steps=4, progress=False).images

    threads_ = [threading.Thread(target=render, args=(c,)) for c in (2, 5)]
    for t in threads_:
        t.start()
    for t in threads_:
        t.join()
    assert sorted(results) == [2, 5]
    assert all(p.requires_grad for p in model.parameters())


def test_the_probe_runs_under_no_grad_and_inference_mode(two_threads: None) -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()).eval()
    threads._slowdown_once.cache_clear()
    try:
        for mode in (torch.no_grad, torch.inference_mode):
            threads._slowdown_once.cache_clear()
            with warnings.catch_warnings(), mode():
                warnings.simplefilter("ignore", threads.SlowThreadsWarning)  # the machine may be busy
                result = featvis.render_vis(model, "1:0", size=8, steps=2, progress=False)
            assert result.images.shape == (1, 3, 8, 8)
    finally:
        threads._slowdown_once.cache_clear()
