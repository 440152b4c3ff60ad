"""Data-parallel training with torch.distributed (DDP), started by ``torchrun``; a no-op in one plain process.

How the training loops use it, and why the result does not depend on the number of processes:

* The *global* batch of a step is what one process would draw (the samplers are a function of
  ``(seed, step)``); rank ``r`` of ``W`` trains on its contiguous slice (:meth:`DistributedContext.shard`).
  The global batch is the same for any ``W``, so a checkpoint written with 2 processes resumes with 1
  (or 4) and the run goes on as if it had never changed size.
* Loss normalisation: the losses are means over the batch's loss terms (labelled tokens for
  cross-entropy, unmasked positions for the MSE losses), and slices hold different numbers of terms.
  DDP averages gradients over ranks, so each rank scales its mean loss by ``W * n_r / N``
  (:meth:`DistributedContext.scale_loss`; ``n_r`` its terms, ``N`` the global count, one all-reduce).
  The averaged gradient is then exactly the gradient of the global batch's mean loss; only
  floating-point summation order differs from one process.
* Evaluation runs on rank 0 and its score is broadcast, so every rank takes the same decisions
  (best checkpoint, early stopping); files are written by rank 0 only, followed by a barrier.
* Backend: ``gloo`` on CPU; ``nccl`` when CUDA is available, with rank ``r`` on ``cuda:LOCAL_RANK``.
  A process not started by ``torchrun`` (no ``WORLD_SIZE``) trains on the CPU as before.
"""
from __future__ import annotations

import atexit
import copy
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized: bool = False  # a process group exists (started by torchrun)

    @property
    def enabled(self) -> bool:
        """Whether gradients are shared with other processes."""
        return self.initialized and self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, logs and writes files."""
        return self.rank == 0

    def shard(self, batch: Sequence[T]) -> list[T]:
        """This rank's contiguous slice of a global batch (slices differ in size by at most one)."""
        n = len(batch)
        if self.enabled and n < self.world_size:
            raise ValueError(f"a global batch of {n} cannot be shared by {self.world_size} processes: "
                             "raise the batch size to at least the number of processes")
        lo, hi = self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size
        return list(batch[lo:hi])

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch's tensors on this rank's device."""
        if self.device.type == "cpu":
            return batch
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_sum(self, value: float) -> float:
        """The sum of ``value`` over ranks."""
        if not self.enabled:
            return float(value)
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item())

    def scale_loss(self, loss: torch.Tensor, terms: int | torch.Tensor) -> torch.Tensor:
        """Scale this slice's mean loss over ``terms`` so DDP's gradient average is the global batch's gradient."""
        if not self.enabled:
            return loss
        terms = float(terms)
        if terms <= 0:
            raise ValueError(f"rank {self.rank}'s slice of the batch has no loss terms (no labelled token)")
        return loss * (terms * self.world_size / self.all_sum(terms))

    def mean(self, value: float) -> float:
        """The mean of ``value`` over ranks (with :meth:`scale_loss`, the global batch's loss)."""
        return self.all_sum(value) / self.world_size if self.enabled else float(value)

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the block on rank 0 first (e.g. to build a cache), then on the others (which then load it)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel (parameters synchronised from rank 0), or as is."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def for_inference(self, module: nn.Module) -> nn.Module:
        """``module`` itself on the CPU; a CPU copy of it when training on a GPU (the tagger runs on the CPU)."""
        if self.device.type == "cpu":
            return module
        return copy.deepcopy(module).cpu()


class BatchLoss(nn.Module):
    """``loss_fn(model, batch)`` as a module, so that DDP sees every forward pass of the loss."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, dict], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def init_distributed(timeout_minutes: float | None = None) -> DistributedContext:
    """Join the process group that ``torchrun`` describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Without ``WORLD_SIZE`` in the environment this is a single CPU process and nothing is initialised.
    The timeout (``$POLYNER_DIST_TIMEOUT_MINUTES``, default 1440) bounds how long ranks wait for rank 0 at a
    barrier: while it builds a distillation's transfer set and teacher cache, evaluates or checkpoints. It is
    long on purpose; torchrun stops the other workers as soon as one fails.
    """
    if "WORLD_SIZE" not in os.environ or not dist.is_available():
        return DistributedContext()
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        minutes = timeout_minutes or float(os.environ.get("POLYNER_DIST_TIMEOUT_MINUTES", "1440"))
        dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world,
                                timeout=timedelta(minutes=minutes))
        atexit.register(_destroy)
        logger.info("rank %d of %d joined the %s process group (device %s)", rank, world, dist.get_backend(), device)
    return DistributedContext(rank=rank, world_size=world, local_rank=local_rank, device=device, initialized=True)
