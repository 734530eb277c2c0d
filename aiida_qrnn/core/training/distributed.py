"""Data-parallel training: which rank this process is, the process group, and how a batch is split over ranks.

A run on N processes is launched by ``torchrun --nproc-per-node N`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or by ``srun`` on SLURM, whose ``SLURM_PROCID``, ``SLURM_NTASKS``,
``SLURM_LOCALID`` and step node list stand in when torchrun's variables are absent (in the tasks of an ``srun``
step only: the batch script of an allocation of N tasks is not a rank). Without either, the run is one
process and nothing here creates a process group, so the single-process path is untouched.

Every rank sees the same global batches (the epoch order depends only on seed and epoch) and evaluates its own
contiguous part of each (:func:`rank_share`); gradients are averaged by ``DistributedDataParallel`` and the loss
is normalised by the counts of the global batch (:meth:`~aiida_qrnn.core.training.loss.MultitaskLoss.rank_objective`),
so one step on N ranks is one step on the whole batch, and a run continues from its checkpoint on any number of ranks.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import typing as t

import numpy as np
import torch
import torch.distributed as dist

__all__ = ('RankInfo', 'active_world', 'all_gather_arrays', 'any_rank', 'barrier', 'broadcast_from_main',
           'init_process_group', 'rank_info', 'rank_share', 'sum_over_ranks')

#: Port used with SLURM when MASTER_PORT is not set: this base plus the job id modulo 10 000 (one per job).
SLURM_PORT_BASE = 20000


@dataclasses.dataclass(frozen=True)
class RankInfo:
    """This process's place in a data-parallel run, and where rank 0 listens."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # index among the ranks on this node (selects the GPU)
    master_addr: str = '127.0.0.1'
    master_port: int = 29500

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _first_host(node_list: str) -> str:
    """The first host of a SLURM node list: ``node[03-05,7],gpu1`` -> ``node03``."""
    match = re.match(r'([^,\[]+)(?:\[([^\]]+)\])?', node_list.strip())
    if not match:
        raise ValueError(f'SLURM node list {node_list!r}: cannot read its first host.')
    prefix, ranges = match.groups()
    return prefix + (ranges.split(',')[0].split('-')[0] if ranges else '')


def rank_info(environment: t.Mapping[str, str] | None = None) -> RankInfo:
    """This process's rank from torchrun's variables, else from SLURM's (``srun``), else a single process."""
    env = os.environ if environment is None else environment
    try:
        if 'WORLD_SIZE' in env and 'RANK' in env:
            return RankInfo(int(env['RANK']), int(env['WORLD_SIZE']), int(env.get('LOCAL_RANK', 0)),
                            env.get('MASTER_ADDR', '127.0.0.1'), int(env.get('MASTER_PORT', 29500)))
        # SLURM_STEP_ID: a task of an srun step; the batch script itself has SLURM_PROCID=0 and SLURM_NTASKS too.
        if int(env.get('SLURM_NTASKS', 1)) > 1 and 'SLURM_PROCID' in env and 'SLURM_STEP_ID' in env:
            nodes = env.get('SLURM_STEP_NODELIST') or env.get('SLURM_JOB_NODELIST') or '127.0.0.1'
            port = env.get('MASTER_PORT') or SLURM_PORT_BASE + int(env.get('SLURM_JOB_ID', 0)) % 10000
            return RankInfo(int(env['SLURM_PROCID']), int(env['SLURM_NTASKS']), int(env.get('SLURM_LOCALID', 0)),
                            env.get('MASTER_ADDR') or _first_host(nodes), int(port))
    except ValueError as exception:
        raise ValueError(f'rank variables of torchrun/SLURM are not integers: {exception}') from None
    return RankInfo()


def init_process_group(info: RankInfo, device: torch.device, timeout_s: float = 600.0) -> None:
    """Join the run's process group (NCCL on GPUs, gloo on CPUs); nothing to do for a single process."""
    if info.world_size == 1 or (dist.is_available() and dist.is_initialized()):
        return
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    dist.init_process_group(backend, init_method=f'tcp://{info.master_addr}:{info.master_port}', rank=info.rank,
                            world_size=info.world_size, timeout=datetime.timedelta(seconds=timeout_s))


def active_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_share(indices: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's contiguous part of ``indices`` (sizes differ by at most one; empty when fewer than ranks)."""
    return np.array_split(np.asarray(indices), world_size)[rank]


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all ranks (a new tensor; the input is left alone)."""
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one (collective decisions such as stopping)."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def broadcast_from_main(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rank 0's ``tensor`` on every rank (sent through ``device``: NCCL moves CUDA tensors only)."""
    sent = tensor.detach().to(device).clone()
    dist.broadcast(sent, src=0)
    return sent.to(tensor.device)


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_arrays(arrays: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """Every rank's ``arrays`` (picklable values), in rank order, on every rank."""
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, arrays)
    return gathered
