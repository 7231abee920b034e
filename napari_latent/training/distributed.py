"""Distributed data-parallel training under ``torchrun``.

``torchrun --nproc_per_node N -m napari_latent train ...`` (or ``napari-latent`` launched
by torchrun, on one node or several) sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; the engine then puts each process on the GPU of its
local rank, joins the process group (NCCL on CUDA, gloo on the CPU), wraps the trained
modules in :class:`~torch.nn.parallel.DistributedDataParallel`, shards each epoch with a
:class:`~torch.utils.data.DistributedSampler`, and only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import UserInputError


@dataclass
class DistributedContext:
    """Where this process stands in a (possibly one-process) training run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_distributed(self) -> bool:
        """True with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and reports progress."""
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """Wrap ``module`` in DistributedDataParallel when distributed (identity otherwise)."""
        if not self.is_distributed or not any(p.requires_grad for p in module.parameters()):
            return module
        device_ids = [module_device(module).index] if module_device(module).type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over processes in place (no-op in one process)."""
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_module(self, module: nn.Module, src: int = 0) -> None:
        """Copy the parameters and buffers of rank ``src`` to every process (no-op in one process).

        DistributedDataParallel does this when it wraps a module; objectives that average
        gradients themselves (:meth:`average_gradients`) call it once before training.
        """
        if not self.is_distributed:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=src)

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Average the gradients of ``parameters`` over processes, in place (no-op in one process).

        What DistributedDataParallel does in its backward hooks, for passes it cannot wrap
        (double backward for gradient penalties, modules called several times, or called
        through model methods). Parameters that require gradients but have none count as
        zero gradients (every process must contribute the same tensors). Gradients are
        flattened into one buffer per dtype and device, so it is one collective per group.
        """
        if not self.is_distributed:
            return
        params = [p for p in parameters if p.requires_grad]
        groups: dict[tuple[torch.dtype, torch.device], list[nn.Parameter]] = {}
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            groups.setdefault((p.grad.dtype, p.grad.device), []).append(p)
        for members in groups.values():
            flat = torch.cat([p.grad.reshape(-1) for p in members])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= self.world_size
            offset = 0
            for p in members:
                count = p.grad.numel()
                p.grad.copy_(flat[offset:offset + count].view_as(p.grad))
                offset += count

    def average_buffers(self, module: nn.Module) -> None:
        """Average a module's floating-point buffers over processes, in place (no-op in one process).

        Keeps running statistics (batch-norm means and variances, StyleGAN's mean ``w``)
        identical on every process when each process updates them from its own batches.
        Every process ends with the same values.
        """
        if not self.is_distributed:
            return
        buffers = [b for b in module.buffers() if b.is_floating_point()]
        groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        for b in buffers:
            groups.setdefault((b.dtype, b.device), []).append(b)
        with torch.no_grad():
            for members in groups.values():
                flat = torch.cat([b.reshape(-1) for b in members])
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
                flat /= self.world_size
                offset = 0
                for b in members:
                    b.copy_(flat[offset:offset + b.numel()].view_as(b))
                    offset += b.numel()

    def barrier(self) -> None:
        """Wait for every process."""
        if self.is_distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if this context joined it."""
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()
            self.initialized_here = False


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for parameter-free modules)."""
    for parameter in module.parameters():
        return parameter.device
    return torch.device("cpu")


def torchrun_environment() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the environment torchrun sets (``(0, 1, 0)`` without it).

    ``RANK`` is the process's place among all processes of all nodes, ``LOCAL_RANK`` its
    place on its own node (which GPU it uses), ``WORLD_SIZE`` the number of processes.
    """
    def number(name: str, default: int) -> int:
        text = os.environ.get(name, "")
        try:
            return int(text) if text.strip() else default
        except ValueError:
            raise UserInputError(f"the environment variable {name}={text!r} is not a whole number") from None

    world_size = number("WORLD_SIZE", 1)
    if world_size <= 1:
        return 0, 1, 0
    rank, local_rank = number("RANK", 0), number("LOCAL_RANK", 0)
    if not 0 <= rank < world_size or local_rank < 0:
        raise UserInputError(f"RANK={rank} / LOCAL_RANK={local_rank} do not fit WORLD_SIZE={world_size}")
    return rank, world_size, local_rank


def distributed_context(device: torch.device) -> DistributedContext:
    """Join the process group when launched by torchrun; describe this process's place.

    Returns a one-process context when ``WORLD_SIZE`` is unset or 1. On CUDA the process
    first makes the GPU of its ``LOCAL_RANK`` its current device
    (:func:`torch.cuda.set_device`, before anything else touches CUDA, so that no process
    opens a context on GPU 0) and joins with NCCL, naming that device
    (``device_id``: the NCCL communicator is formed at once, on the right GPU). Elsewhere it
    joins with gloo. The rendezvous is torchrun's (``MASTER_ADDR``, ``MASTER_PORT``: the
    default ``env://``), so the same code runs on one node or several.

    Parameters
    ----------
    device : torch.device
        This process's device (:func:`distributed_device`).
    """
    rank, world_size, local_rank = torchrun_environment()
    if world_size <= 1:
        return DistributedContext()
    initialized_here = False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group(backend="nccl", rank=rank, world_size=world_size, device_id=device)
        else:
            dist.init_process_group(backend="gloo", rank=rank, world_size=world_size)
        initialized_here = True
    return DistributedContext(rank, world_size, local_rank, initialized_here)


def distributed_device(device: torch.device) -> torch.device:
    """On CUDA under torchrun, each process uses the GPU of its ``LOCAL_RANK`` (``cuda:LOCAL_RANK``).

    Raises
    ------
    UserInputError
        When this node has fewer GPUs than processes (``--nproc_per_node`` too large).
    """
    _, world_size, local_rank = torchrun_environment()
    if device.type != "cuda" or world_size <= 1:
        return device
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise UserInputError(f"process LOCAL_RANK={local_rank} needs GPU {local_rank}, but this node has {count} "
                             "GPU(s): start at most that many processes per node (torchrun --nproc_per_node)")
    return torch.device("cuda", local_rank)
