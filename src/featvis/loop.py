"""The loop that drives a step: step numbers, snapshots, progress, Ctrl-C, non-finite losses,
and when to stop.

:func:`optimize` calls a step (any callable ``step_number -> loss``, such as
:class:`featvis.step.GradientStep`) for a number of steps. It keeps the loss of every
step, copies of the images at the steps asked for, shows a tqdm progress bar, returns what
was reached when Ctrl-C stops it, and looks for a non-finite loss now and then (reading a
loss waits for the device, so not at every step), going back to the last parameters whose
loss was finite. A stopping criterion (:class:`StopCriterion`, such as :class:`Plateau`)
may end the run early.

Example:
    >>> import torch
    >>> x = torch.nn.Parameter(torch.tensor([3.0]))
    >>> opt = torch.optim.SGD([x], lr=0.25)
    >>> def step(number):
    ...     opt.zero_grad()
    ...     loss = (x**2).sum()
    ...     loss.backward()
    ...     opt.step()
    ...     return loss
    >>> run = optimize(step, 4, images=lambda: x.detach().clone(), snapshot_at=[2], progress=False)
    >>> run.losses.tolist(), run.snapshots[2].tolist()
    ([9.0, 2.25, 0.5625, 0.140625], [0.75])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

__all__ = ["FINITE_CHECK_EVERY", "LoopOutcome", "Plateau", "StopCriterion", "check_steps", "optimize"]

#: the loop looks for a non-finite loss every this many steps (and at snapshots and the end)
FINITE_CHECK_EVERY = 16


class StopCriterion(Protocol):
    """When to end a run before its last step: called after each step with the step number (from 1)
    and the losses so far (on the run's device); ``True`` stops the run there.

    Reading a loss's value waits for the device; a criterion for GPU runs should look only every
    few steps, as :class:`Plateau` does.

    Example:
        >>> def below(threshold):
        ...     return lambda step, losses: step % 8 == 0 and float(losses[-1]) < threshold
        >>> below(-5.0)(8, torch.tensor([-1.0, -6.0]))
        True
    """

    def __call__(self, step: int, losses: Tensor) -> bool: ...


@dataclass
class Plateau:
    """Stop once the loss has not fallen by ``min_delta`` over the last ``patience`` steps
    (looked at every ``every`` steps).

    Example:
        >>> stop = Plateau(patience=4, min_delta=0.1, every=1)
        >>> stop(5, torch.tensor([5.0, 4.0, 3.0, 2.95, 2.94])), stop(5, torch.tensor([9.0, 8.0, 7.0, 6.0, 5.0]))
        (False, False)
        >>> stop(6, torch.tensor([5.0, 3.0, 3.0, 2.99, 2.98, 2.97]))
        True
    """

    patience: int = 32
    min_delta: float = 1e-3
    every: int = 8

    def __call__(self, step: int, losses: Tensor) -> bool:
        if step % self.every or losses.numel() <= self.patience:
            return False
        earlier, recent = losses[: -self.patience], losses[-self.patience :]
        return bool(earlier.min() - recent.min() < self.min_delta)


@dataclass
class LoopOutcome:
    """What :func:`optimize` reached.

    Attributes:
        losses: the loss of each step done, ``(done,)`` on the step's device.
        snapshots: ``{step: images}``, CPU float32 copies at the steps asked for.
        done: the number of steps whose result is kept.
        interrupted: Ctrl-C stopped the run.
        stopped: the stopping criterion ended the run.

    Example:
        >>> LoopOutcome(torch.zeros(3), {}, 3).interrupted
        False
    """

    losses: Tensor
    snapshots: dict[int, Tensor] = field(default_factory=dict)
    done: int = 0
    interrupted: bool = False
    stopped: bool = False


def check_steps(steps: int, thresholds: Iterable[int] | None, snapshot_every: int | None = None) -> list[int]:
    """The sorted steps at which to keep snapshots: ``thresholds`` and every ``snapshot_every``-th step.

    Example:
        >>> check_steps(8, [8, 2], snapshot_every=3)
        [2, 3, 6, 8]
        >>> check_steps(8, [9])
        Traceback (most recent call last):
        ...
        ValueError: thresholds must be step numbers from 1 to steps=8, got 9
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if snapshot_every is not None and (
        not isinstance(snapshot_every, int) or isinstance(snapshot_every, bool) or snapshot_every < 1
    ):
        raise ValueError(
            f"snapshot_every must be a positive number of steps (or None for none), got {snapshot_every!r}"
        )
    every = range(snapshot_every, steps + 1, snapshot_every) if snapshot_every else ()
    chosen = sorted(set(thresholds or ()).union(every))
    for t in chosen:
        if not isinstance(t, int) or not 1 <= t <= steps:
            raise ValueError(f"thresholds must be step numbers from 1 to steps={steps}, got {t!r}")
    return chosen


def progress_bar(total: int, description: str, enabled: bool) -> Any:
    """A tqdm progress bar (a widget in notebooks) labelled with ``description``, shortened.

    Example:
        >>> bar = progress_bar(4, "channel('layer3', 5)", enabled=False)
        >>> bar.update(1); bar.close()
    """
    from tqdm.auto import tqdm

    label = description if len(description) <= 40 else description[:37] + "..."
    return tqdm(total=total, desc=label, disable=not enabled, leave=False)


def first_non_finite(losses: Tensor, start: int, stop: int) -> int | None:
    """The 0-based index of the first non-finite loss in ``losses[start:stop]``, or None.

    Example:
        >>> first_non_finite(torch.tensor([1.0, float("nan"), 2.0]), 0, 3)
        1
    """
    finite = torch.isfinite(losses[start:stop])
    if bool(finite.all()):
        return None
    return start + int((~finite).nonzero()[0, 0])


def _copies(parameters: Sequence[Tensor]) -> list[Tensor]:
    return [p.detach().clone() for p in parameters]


def _restore(parameters: Sequence[Tensor], saved: Sequence[Tensor]) -> None:
    with torch.no_grad():
        for parameter, value in zip(parameters, saved):
            parameter.copy_(value)


def optimize(
    step: Callable[[int], Tensor],
    steps: int,
    *,
    images: Callable[[], Tensor],
    snapshot_at: Iterable[int] = (),
    parameters: Sequence[Tensor] = (),
    progress: bool = True,
    description: str = "",
    stop: StopCriterion | None = None,
    device: torch.device | None = None,
    what: str = "rendering",
) -> LoopOutcome:
    """Call ``step(1)``, ..., ``step(steps)``, and keep what they reach.

    Args:
        step: one optimisation step: takes the step number (from 1), returns the loss (a 0-d tensor).
        steps: how many steps.
        images: the images now (for snapshots).
        snapshot_at: the step numbers after which to keep a CPU copy of ``images()``.
        parameters: the tensors the steps change. With them, a non-finite loss (looked for every
            :data:`FINITE_CHECK_EVERY` steps, at snapshots and at the end) stops the run with a
            warning and puts back the last parameters whose loss was finite (those of the step
            before the first non-finite loss, kept on the device after every step); without, no
            check.
        progress: show a progress bar.
        description: the objective, for the progress bar and the warnings.
        stop: a :class:`StopCriterion` that may end the run early.
        device: where the losses are kept (default: the first parameter's device, or the CPU).
        what: what the run is, for the warning on Ctrl-C (``"rendering interrupted after ..."``).

    Returns:
        A :class:`LoopOutcome`. Ctrl-C ends the loop with a warning and returns what was reached.

    Example:
        >>> x = torch.nn.Parameter(torch.tensor([1.0]))
        >>> run = optimize(lambda k: x.sum() * k, 3, images=lambda: x.detach(), parameters=[x], progress=False)
        >>> run.losses.tolist(), run.done
        ([1.0, 2.0, 3.0], 3)
    """
    chosen = set(snapshot_at)
    if device is None:
        device = parameters[0].device if parameters else torch.device("cpu")
    history = torch.full((steps,), float("nan"), device=device)
    outcome = LoopOutcome(history[:0])
    done = 0
    # the fallback on a non-finite loss: the last parameters whose loss, and every loss before it, was
    # finite (history[u] is the loss of the parameters after u steps), kept on the device after every
    # step without reading the loss (which would wait for the device); looked at every few steps
    checked = 0
    last_finite = _copies(parameters)
    all_finite = torch.ones((), dtype=torch.bool, device=device)
    bar = progress_bar(steps, description, progress)
    try:
        for number in range(1, steps + 1):
            before = _copies(parameters) if parameters else None
            check = bool(parameters) and (number in chosen or number % FINITE_CHECK_EVERY == 0 or number == steps)
            loss = step(number)
            history[number - 1] = loss.detach()
            done = number
            bar.update(1)
            if before is not None:
                all_finite = all_finite & torch.isfinite(history[number - 1])
                last_finite = [torch.where(all_finite, new, old) for new, old in zip(before, last_finite)]
            if check:
                bad = first_non_finite(history, checked, number)
                if bad is not None:
                    kept = max(bad - 1, 0)  # the parameters after this many steps gave the last finite loss
                    _restore(parameters, last_finite)
                    warnings.warn(
                        f"the objective {description} became non-finite ({history[bad].item()}) at step "
                        f"{bad + 1}; stopped, and returned the images of step {kept}, the "
                        "last ones with a finite objective",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    done = kept
                    outcome.snapshots = {k: v for k, v in outcome.snapshots.items() if k <= done}
                    break
                checked = number
            if number in chosen:
                outcome.snapshots[number] = images().detach().float().cpu()
                bar.set_postfix(loss=f"{history[number - 1].item():.4g}")
            if stop is not None and number < steps and stop(number, history[:number]):
                outcome.stopped = True
                break
    except KeyboardInterrupt:
        outcome.interrupted = True
        warnings.warn(f"{what} interrupted after {done} of {steps} steps", stacklevel=3)
    finally:
        bar.close()
    outcome.losses, outcome.done = history[:done], done
    return outcome
