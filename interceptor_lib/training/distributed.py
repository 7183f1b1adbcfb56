"""Multi-GPU training with DistributedDataParallel (DDP), one process per GPU, launched by torchrun.

    torchrun --standalone --nproc_per_node=2 -m interceptor_lib train --profile kaggle --model ll --stage stage1

(`pipeline.launch.launch_stage` builds that command when it sees more than one GPU.) torchrun sets RANK,
LOCAL_RANK, WORLD_SIZE and MASTER_ADDR/PORT; `init_from_env` reads them and joins the process group
(NCCL on CUDA, gloo on CPU). Outside torchrun (a notebook, plain python) no group exists and every
helper below acts for a world of one process (no-ops, identity), so the engine has one code path
and a single-process run is unchanged.

What the Trainer does with these helpers:
  * every rank draws the same seeded epoch order and takes its rank-strided share (`ShardedSampler`);
    the batch size is per process, so one epoch of `samples_per_epoch` draws takes 1/N of the steps;
  * the model is wrapped in DDP (`wrap`) for the training forward; gradients are averaged across
    ranks, so weights stay identical; checkpoints save the unwrapped module (`unwrap`: no `module.`);
  * validation is sharded and gathered (`all_gather_object`), file writes (checkpoints, metrics.csv,
    done.json) happen on rank 0 only (`run_on_main`, which also re-raises rank 0's error everywhere),
    followed by a `barrier`;
  * a stop request (time budget, SIGTERM) on any rank stops every rank at the same step
    (`agree_on_stop`).
"""

from __future__ import annotations

import datetime
import os
from contextlib import nullcontext
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from interceptor_lib.errors import InterceptorError
from interceptor_lib.models.registry import list_models, model_entry

class DistributedError(InterceptorError, RuntimeError):
    """The process group cannot start, or another rank failed (the message says which)."""


# --- who am I ---------------------------------------------------------------------------------

def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """This process's index on its machine (LOCAL_RANK, set by torchrun): its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_main() -> bool:
    """Rank 0: the process that writes files and shows progress."""
    return rank() == 0


# --- process group ----------------------------------------------------------------------------

def init_from_env(device_type: str = "cpu", timeout_min: float = 30.0) -> str:
    """Join the process group described by torchrun's environment; return this process's device.

    `device_type` is "cpu" or "cuda" (already resolved from params). With WORLD_SIZE > 1 it starts
    the group (NCCL for cuda, gloo for cpu) and, on CUDA, selects GPU LOCAL_RANK; the device returned
    is "cuda:<LOCAL_RANK>" or "cpu". With WORLD_SIZE unset or 1 nothing is started and the device is
    returned as given. `timeout_min` bounds how long ranks wait for each other (rank 0 saving a large
    checkpoint while the others wait at a barrier)."""
    if device_type not in ("cpu", "cuda"):
        raise DistributedError(f"init_from_env expects device_type 'cpu' or 'cuda', got {device_type!r}")
    n = env_world_size()
    if n <= 1:
        return device_type
    device = "cpu"
    if device_type == "cuda":
        lr, visible = local_rank(), torch.cuda.device_count()
        if lr >= visible:
            raise DistributedError(f"LOCAL_RANK {lr} needs GPU {lr}, but only {visible} GPU(s) are visible; "
                                   f"launch at most --nproc_per_node={visible}")
        torch.cuda.set_device(lr)
        device = f"cuda:{lr}"
    if not is_initialized():
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise DistributedError(f"WORLD_SIZE={n} but {missing} are not set; launch with torchrun "
                                   "(e.g. torchrun --standalone --nproc_per_node=2 -m interceptor_lib train ...)")
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", init_method="env://",
                                timeout=datetime.timedelta(minutes=timeout_min))
    return device


def shutdown() -> None:
    """Leave the process group (if any)."""
    if is_initialized():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where tensors for collectives must live: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here (no-op for one process)."""
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank (picklable objects; identity for one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list:
    """Every rank's `obj`, in rank order, on every rank ([obj] for one process)."""
    if not is_distributed():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def mean(value: float) -> float:
    """The mean of a float over the ranks."""
    if not is_distributed():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def agree_on_stop(reason: str | None) -> str | None:
    """One stop decision for all ranks: if any rank has a reason to stop (its budget ran out, it got
    SIGTERM), every rank returns a reason (the first rank's that has one), else None. One all_reduce
    per call; the reasons are gathered only when someone stops."""
    if not is_distributed():
        return reason
    flag = torch.tensor([1 if reason else 0], dtype=torch.int32, device=_comm_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if not flag.item():
        return None
    reasons = all_gather_object(reason)
    if reason:
        return reason
    r = next(i for i, x in enumerate(reasons) if x)
    return f"{reasons[r]} (rank {r})"


def run_on_main(fn: Callable[[], Any]) -> Any:
    """Run `fn()` on rank 0 only and return its result on every rank. If it raises on rank 0, rank 0
    re-raises the original exception and every other rank raises a DistributedError with its message
    (instead of waiting for a result that never comes)."""
    if not is_distributed():
        return fn()
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001  re-raised below, on every rank
            error = e
    result, failure = broadcast_object((result, None if error is None else (type(error).__name__, str(error))))
    if error is not None:
        raise error
    if failure is not None:
        raise DistributedError(f"rank 0 failed ({failure[0]}): {failure[1]}")
    return result


# --- model ------------------------------------------------------------------------------------

def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def needs_unused_parameter_search(model: nn.Module) -> bool:
    """Whether DDP must look for parameters without a gradient after each forward (a registered model
    with a branch a batch may skip: its entry's `optional_branch`)."""
    name = getattr(unwrap(model), "model_name", "")
    return name in list_models() and model_entry(name).optional_branch


def wrap(model: nn.Module, device: torch.device, find_unused_parameters: bool | None = None,
         previous: nn.Module | None = None) -> nn.Module:
    """`model` wrapped in DistributedDataParallel (the model itself for one process). DDP registers
    the parameters that require a gradient when it is built, so re-wrap after changing which ones do
    (progressive unfreezing); pass the old wrapper as `previous` to remove its gradient hooks.
    `find_unused_parameters`: None decides from the model (needs_unused_parameter_search)."""
    if not is_distributed():
        return model
    if isinstance(previous, nn.parallel.DistributedDataParallel):
        remove = getattr(previous, "_remove_autograd_hooks", None)
        if remove is not None:
            remove()
    if find_unused_parameters is None:
        find_unused_parameters = needs_unused_parameter_search(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None,
                                               find_unused_parameters=find_unused_parameters)


def no_sync(model: nn.Module, sync: bool):
    """Context for a micro-batch of gradient accumulation: skip DDP's all-reduce unless `sync`."""
    if sync or not isinstance(model, nn.parallel.DistributedDataParallel):
        return nullcontext()
    return model.no_sync()


@torch.no_grad()
def sync_buffers(model: nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s buffers (BatchNorm running statistics) to every rank. DDP does so at the
    start of each training forward, so between steps they differ by the last local update; call this
    before validating on every rank, so all ranks evaluate the weights rank 0 saves."""
    if not is_distributed():
        return
    for b in unwrap(model).buffers():
        dist.broadcast(b, src=src)


# --- data -------------------------------------------------------------------------------------

class ShardedSampler(Sampler[int]):
    """This rank's share of a seeded sampler's epoch order (the `BalancedSampler`).

    Every rank draws the same order (same seed and epoch); rank r takes items r, r + N, r + 2N, ...
    of its first `(num_samples // N) * N` items, so the shares are disjoint and equally long (every
    rank takes the same number of steps). `set_epoch(epoch, skip)` leaves out this rank's first `skip`
    items of the share, which resumes an epoch exactly at a step boundary. With one process it yields
    the base sampler's order unchanged."""

    def __init__(self, base, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.base, self.rank, self.world_size = base, rank, world_size
        self.per_rank = base.num_samples // world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Start epoch `epoch`, leaving out this rank's first `skip` items (already trained on)."""
        self.base.set_epoch(epoch)
        self.epoch, self.start = epoch, skip

    def shard(self) -> torch.Tensor:
        """This rank's full share of the current epoch's order."""
        order = self.base.epoch_indices()
        return order[: self.per_rank * self.world_size][self.rank::self.world_size]

    def __iter__(self):
        return iter(self.shard()[self.start:].tolist())

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)
