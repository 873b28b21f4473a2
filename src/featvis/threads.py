"""CPU threads: noticing when torch's threads make a run many times slower than one thread would.

On a machine whose cores are busy with other work, torch's default of one thread per core can make
every operation wait for threads that do not get a core: runs were measured 17 to 50 times slower
than with one thread. :func:`check_threads` times a short probe (a small convolution, forward and
backward) with torch's thread count and with one thread, once per process, and warns with a
:class:`SlowThreadsWarning` saying what to do when the threads are far slower. ``render_vis`` calls
it before a run on a CPU (``render_channels`` through it); it costs a few milliseconds, and nothing
with one thread.

Example:
    >>> import torch
    >>> check_threads(torch.device("cuda")) is None  # only CPU threads are checked
    True
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["SLOWDOWN_WARNED", "SlowThreadsWarning", "check_threads", "probe_seconds", "thread_slowdown"]

#: warn when torch's threads take this many times as long as one thread on the probe
SLOWDOWN_WARNED = 3.0
#: set this environment variable to 1 to skip the check
SKIP_VARIABLE = "FEATVIS_NO_THREAD_CHECK"


class SlowThreadsWarning(UserWarning):
    """torch's CPU threads make this process many times slower than one thread would.

    Example:
        >>> issubclass(SlowThreadsWarning, UserWarning)
        True
    """


def probe_seconds(threads: int, repeats: int = 5) -> float:
    """The shortest of ``repeats`` timings of the probe (a 3x3 convolution of a 1x16x48x48 batch,
    forward and backward) run with ``threads`` torch threads; torch's thread count is put back after.

    Example:
        >>> 0 < probe_seconds(1, repeats=2) < 1
        True
    """
    before = torch.get_num_threads()
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode(False):
        images = torch.rand(1, 16, 48, 48, generator=generator).requires_grad_()
        weight = torch.rand(16, 16, 3, 3, generator=generator)
    try:
        torch.set_num_threads(threads)
        with torch.inference_mode(False), torch.enable_grad():  # also when called under no_grad
            best = _timed(images, weight, repeats)
    finally:
        torch.set_num_threads(before)
    return best


def _timed(images: torch.Tensor, weight: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    for repeat in range(repeats + 1):  # the first run warms up and is not counted
        started = time.perf_counter()
        F.conv2d(images, weight, padding=1).square().sum().backward()
        if repeat:
            best = min(best, time.perf_counter() - started)
    return best


def thread_slowdown(timer: Callable[[int], float] = probe_seconds) -> float:
    """How many times as long the probe takes with torch's thread count as with one thread
    (below 1: the threads help). ``timer(threads)`` times it.

    Example:
        >>> thread_slowdown(lambda threads: {1: 0.002, torch.get_num_threads(): 0.002}[threads])
        1.0
    """
    threads = torch.get_num_threads()
    if threads == 1:
        return 1.0
    return timer(threads) / timer(1)


@functools.lru_cache(maxsize=1)
def _slowdown_once() -> float:
    return thread_slowdown()


def check_threads(device: torch.device, timer: Callable[[int], float] | None = None) -> float | None:
    """On a CPU with more than one torch thread, measure :func:`thread_slowdown` (once per process
    unless ``timer`` is given) and warn with a :class:`SlowThreadsWarning` when it is
    :data:`SLOWDOWN_WARNED` times or more. Returns the slowdown, or ``None`` when nothing was checked
    (a GPU, one thread, or ``FEATVIS_NO_THREAD_CHECK=1``).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     torch.set_num_threads(2)
        ...     slowdown = check_threads(torch.device("cpu"), timer=lambda threads: 0.001 * threads**4)
        ...     torch.set_num_threads(1)
        >>> slowdown, caught[0].category.__name__
        (16.0, 'SlowThreadsWarning')
    """
    if device.type != "cpu" or torch.get_num_threads() == 1 or os.environ.get(SKIP_VARIABLE) == "1":
        return None
    slowdown = _slowdown_once() if timer is None else thread_slowdown(timer)
    if slowdown >= SLOWDOWN_WARNED:
        threads = torch.get_num_threads()
        warnings.warn(
            f"torch runs {slowdown:.0f} times slower on its {threads} CPU threads than on one (the cores are busy "
            "with other work?): set OMP_NUM_THREADS=1 before starting Python, or call torch.set_num_threads(1) "
            f"first; see the troubleshooting page of featvis's docs ({SKIP_VARIABLE}=1 skips this check)",
            SlowThreadsWarning,
            stacklevel=3,
        )
    return slowdown
