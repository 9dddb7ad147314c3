"""One run on several processes: PyTorch's DistributedDataParallel under torchrun.

    torchrun --nproc-per-node=2 -m worker.sipat train --config cfg.json --out runs/a

torchrun starts one process per device and sets RANK, WORLD_SIZE and LOCAL_RANK; train()
then calls from_env() and, with more than one process:
- every rank holds the data and draws the same global batches from the run's data-order
  generator; each takes its own share of every batch (shard: rows rank, rank + world, ...),
  so the ranks together see exactly the batches one process would (the distributed sampler
  of an in-memory dataset), with the same global batch size;
- the model is wrapped in DistributedDataParallel (gradients averaged over the ranks; BN
  buffers not broadcast each forward, SyncBatchNorm as an option), and each rank attacks its
  own shard;
- training figures are summed over the ranks; evaluations, checkpoints, metrics and
  progress reports happen on rank 0 only, and the others wait for it (barrier);
- a cancel seen by rank 0 reaches every rank at the same batch (stop_together), so no rank
  waits for ever in a collective the others have left. A rank that dies makes torchrun end
  the others (the run fails, or resumes from its last checkpoint when retried).
Backends: NCCL on CUDA, gloo on CPU (the tests run 2 CPU processes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn

# a collective that waits longer than this (a dead or stuck rank) raises instead of hanging
TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    backend: str

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """The device of this rank: cuda:<local rank> when the run is on CUDA."""
        return f"cuda:{self.local_rank}" if device.startswith("cuda") else device

    def shard(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        """This rank's share of a batch (every world-th row from its rank)."""
        return tuple(t[self.rank :: self.world] for t in tensors)

    def sum(self, values: list[float], device: str) -> list[float]:
        """Each value summed over the ranks."""
        t = torch.tensor(values, dtype=torch.float64, device=self._comm(device))
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
        return [float(v) for v in t.cpu()]

    def stop_together(self, stop: bool, device: str) -> bool:
        """True on every rank when any rank says stop (rank 0 polls the cancel flag)."""
        return self.sum([1.0 if stop else 0.0], device)[0] > 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's object, on every rank."""
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        torch_dist.barrier()

    def wrap(self, model: nn.Module, device: str, sync_batchnorm: bool = False) -> nn.Module:
        """The model in DistributedDataParallel (gradients averaged over the ranks)."""
        from torch.nn.parallel import DistributedDataParallel

        if sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [int(device.split(":")[1])] if device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)

    def _comm(self, device: str) -> str:
        return device if self.backend == "nccl" else "cpu"


def from_env(device: str) -> Dist | None:
    """The process group torchrun describes in the environment, joined; None for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not torch_dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        torch_dist.init_process_group(backend=backend, timeout=TIMEOUT)
    return Dist(rank=rank, world=world, local_rank=local_rank, backend=backend)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel (the weights checkpoints hold)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def shutdown(dist: Dist | None) -> None:
    if dist is not None and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
