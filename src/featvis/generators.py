"""Each run's own random generators, so that a seeded run repeats in any thread.

Torch's global generators are shared by every thread of a process: two runs in two threads
that draw from them take each other's numbers, and neither repeats. A run therefore draws
from generators of its own, one per device, all seeded from the run's seed; this thread's
current run is kept in a thread-local stack, and the random transforms, the DeepDream rolls
and the gradient-free optimiser ask :func:`generator` for theirs. Outside a run it returns
``None``, which torch reads as its global generator, so the same code works in both places.

Write your own random transform the same way, and it repeats with ``seed=`` too:

Example:
    >>> import torch
    >>> def jitter(images):
    ...     shift = torch.randint(-2, 3, (2,), generator=generator(images.device))
    ...     return images.roll(shift.tolist(), dims=(2, 3))
    >>> with run_generators(5):
    ...     first = jitter(torch.arange(16.0).reshape(1, 1, 4, 4))
    >>> with run_generators(5):
    ...     again = jitter(torch.arange(16.0).reshape(1, 1, 4, 4))
    >>> torch.equal(first, again)
    True
"""

from __future__ import annotations

import contextlib
import operator
import threading
from collections.abc import Iterable, Iterator

import torch

from .state import run_seed, seeded

__all__ = ["RandomState", "RunGenerators", "generator", "run_generators", "run_random"]

#: a constant mixed into a run's seed for its own generators, so that their draws differ from
#: those of torch's global generator, which a seeded run seeds with the run's seed too
_OWN_STREAM = 0x5851F42D4C957F2D


class RunGenerators:
    """One ``torch.Generator`` per device, each seeded with ``seed`` when first asked for.

    Args:
        seed: a whole number; each device's generator starts from it.

    Example:
        >>> import torch
        >>> generators = RunGenerators(3)
        >>> cpu = generators.get(torch.device("cpu"))
        >>> cpu is generators.get("cpu"), cpu.initial_seed()
        (True, 3)
    """

    def __init__(self, seed: int) -> None:
        self.seed = operator.index(seed) % 2**64
        self._by_device: dict[torch.device, torch.Generator] = {}

    def get(self, device: torch.device | str) -> torch.Generator:
        """The generator for ``device``, made and seeded the first time.

        Example:
            >>> RunGenerators(1).get("cpu").device
            device(type='cpu')
        """
        key = _device_key(torch.device(device))
        made = self._by_device.get(key)
        if made is None:
            made = torch.Generator(device=key)
            made.manual_seed(self.seed)
            self._by_device[key] = made
        return made

    def states(self) -> dict[torch.device, torch.Tensor]:
        """Each generator's state, for :meth:`set_states`.

        Example:
            >>> generators = RunGenerators(0)
            >>> cpu = generators.get("cpu")
            >>> saved = generators.states()
            >>> first = torch.rand(2, generator=cpu)
            >>> generators.set_states(saved)
            >>> torch.equal(first, torch.rand(2, generator=cpu))
            True
        """
        return {device: made.get_state() for device, made in self._by_device.items()}

    def set_states(self, states: dict[torch.device, torch.Tensor]) -> None:
        """Set the generators to ``states`` (from :meth:`states`); a device not in them is left as it is.

        Example:
            >>> generators = RunGenerators(0)
            >>> generators.set_states({})
        """
        for device, state in states.items():
            self.get(device).set_state(state)


def _device_key(device: torch.device) -> torch.device:
    """``device`` with its index: ``cuda`` is the current CUDA device."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


_LOCAL = threading.local()


def _stack() -> list[RunGenerators]:
    stack = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    return stack


def generator(device: torch.device | str) -> torch.Generator | None:
    """The generator for ``device`` of the run this thread is in, or ``None`` outside a run (torch's
    global generator: every torch function that draws takes ``generator=None`` as that).

    Example:
        >>> import torch
        >>> generator("cpu") is None
        True
        >>> with run_generators(0):
        ...     isinstance(generator("cpu"), torch.Generator)
        True
    """
    stack = _stack()
    return stack[-1].get(device) if stack else None


@contextlib.contextmanager
def run_generators(seed: int | None) -> Iterator[RunGenerators]:
    """This thread's runs draw from new generators inside: seeded from ``seed`` (mixed, so that they
    do not replay ``torch.manual_seed(seed)``), or with ``seed=None`` from one number drawn from
    torch's global CPU generator (so that ``torch.manual_seed`` before a run still makes it repeat).
    Runs nest: the innermost one's generators are used.

    Example:
        >>> import torch
        >>> with run_generators(1):
        ...     a = torch.rand(3, generator=generator("cpu"))
        >>> with run_generators(1):
        ...     b = torch.rand(3, generator=generator("cpu"))
        >>> torch.equal(a, b)
        True
    """
    if seed is None:
        base = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    else:
        base = run_seed(seed) ^ _OWN_STREAM
    generators = RunGenerators(base)
    stack = _stack()
    stack.append(generators)
    try:
        yield generators
    finally:
        stack.remove(generators)


@contextlib.contextmanager
def run_random(seed: int | None, device: torch.device) -> Iterator[RunGenerators]:
    """A run's random state: its own generators (:func:`run_generators`) and, with ``seed``, torch's
    global generators seeded too (for code that draws from them: a transform of yours), with the
    caller's global states given back after (:func:`~featvis.state.seeded`).

    Example:
        >>> import torch
        >>> with run_random(0, torch.device("cpu")):
        ...     generator("cpu") is not None
        True
    """
    with seeded(seed, device), run_generators(seed) as generators:
        yield generators


class RandomState:
    """A snapshot of every generator a step may draw from: torch's global CPU generator, the global
    generator of each CUDA device among ``devices``, and the current run's generators. Restoring it
    makes the next draws repeat (the gradient-free optimiser's common random numbers).

    Example:
        >>> import torch
        >>> with run_generators(0):
        ...     saved = RandomState([torch.device("cpu")])
        ...     first = torch.rand(2, generator=generator("cpu")), torch.rand(2)
        ...     saved.restore()
        ...     again = torch.rand(2, generator=generator("cpu")), torch.rand(2)
        >>> all(torch.equal(x, y) for x, y in zip(first, again))
        True
    """

    def __init__(self, devices: Iterable[torch.device]) -> None:
        self.devices = [_device_key(d) for d in dict.fromkeys(devices) if d.type == "cuda"]
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(d) for d in self.devices]
        stack = _stack()
        self.run = stack[-1] if stack else None
        if self.run is not None:
            for device in [torch.device("cpu"), *self.devices]:
                self.run.get(device)  # made now, so that its state is in the snapshot
        self.run_states = self.run.states() if self.run is not None else {}

    def restore(self) -> None:
        """Put every generator back to its state when the snapshot was taken.

        Example:
            >>> import torch
            >>> saved = RandomState([])
            >>> first = torch.rand(1)
            >>> saved.restore()
            >>> torch.equal(first, torch.rand(1))
            True
        """
        torch.set_rng_state(self.cpu)
        for device, state in zip(self.devices, self.cuda):
            torch.cuda.set_rng_state(state, device)
        if self.run is not None:
            self.run.set_states(self.run_states)
