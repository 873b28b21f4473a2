"""The processes of a job: who this one is, and waiting for the others, on ``torch.distributed``.

Launched by ``torchrun`` (one machine: ``--nproc_per_node=N``; several: ``--nnodes`` with a c10d
rendezvous), each process finds its rank, the number of processes and its local rank in the
environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and joins the process group
with the gloo backend: the processes only wait for each other (barriers), they exchange no
tensors, so gloo serves GPUs and CPUs alike. Started without torchrun, a process is a job of one,
and nothing is initialised.

Example:
    >>> with job_processes() as job:
    ...     job.rank, job.world_size, job.is_main
    (0, 1, True)
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["JobProcesses", "job_processes"]

#: how long a process waits for the others to join, and at the job's barriers (which come before any
#: rendering, while every process does the same small work: the end is waited for on disk, not here)
BARRIER_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class JobProcesses:
    """This process's place in the job.

    Attributes:
        rank: this process's number, 0 to ``world_size - 1``.
        world_size: how many processes the job has.
        local_rank: its number on its machine (its GPU there, when there are GPUs).
        distributed: whether a process group is in use (``world_size > 1``).

    Example:
        >>> JobProcesses(1, 4, 1, True).is_main
        False
    """

    rank: int
    world_size: int
    local_rank: int
    distributed: bool

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, which writes what the job shares (its manifest, its index, the progress).

        Example:
            >>> JobProcesses(0, 2, 0, True).is_main
            True
        """
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process of the job is here (nothing to wait for in a job of one).

        Example:
            >>> JobProcesses(0, 1, 0, False).barrier()
        """
        if self.distributed:
            dist.barrier()

    def device(self) -> torch.device:
        """The device for this process: its GPU (``cuda:LOCAL_RANK``) when the machine has enough, else the CPU.

        Example:
            >>> JobProcesses(0, 1, 0, False).device().type in ("cpu", "cuda")
            True
        """
        if torch.cuda.is_available() and self.local_rank < torch.cuda.device_count():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def _environment_number(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"the environment variable {name} must be a whole number (torchrun sets it), got {text!r}"
        ) from None


def _job_store(rank: int, world_size: int) -> dist.Store:
    """The store the processes meet in: torchrun's (at ``MASTER_ADDR:MASTER_PORT``), under a prefix of its own
    for each restart of the job (``TORCHELASTIC_RESTART_COUNT``), so that restarted processes never read
    the addresses their killed predecessors left there."""
    address = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = _environment_number("MASTER_PORT", 29500)
    hosted_by_torchrun = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        address, port, world_size, is_master=rank == 0 and not hosted_by_torchrun, timeout=BARRIER_TIMEOUT
    )
    return dist.PrefixStore(f"featvis/restart-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", store)


@contextlib.contextmanager
def job_processes() -> Iterator[JobProcesses]:
    """This process's place in the job, with the process group joined inside when torchrun started
    several (and left on the way out, if it was joined here).

    Example:
        >>> with job_processes() as job:
        ...     job.distributed
        False
    """
    world_size = _environment_number("WORLD_SIZE", 1)
    rank = _environment_number("RANK", 0)
    local_rank = _environment_number("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is not a process of a job of WORLD_SIZE={world_size}")
    joined_here = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("gloo", store=_job_store(rank, world_size), rank=rank, world_size=world_size,
                                timeout=BARRIER_TIMEOUT)  # fmt: skip
        joined_here = True
    try:
        yield JobProcesses(rank, world_size, local_rank, world_size > 1)
    finally:
        if joined_here:
            dist.destroy_process_group()
