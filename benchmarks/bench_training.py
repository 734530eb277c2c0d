"""Training throughput of the paper-sized QRNN: clusters/s and atoms/s of training steps with forces.

    .venv/bin/python benchmarks/bench_training.py --device cpu --batch-size 32 --steps 5
    .venv/bin/python benchmarks/bench_training.py --device cuda --batch-size 256 --steps 30 --dtype float32

Clusters like the paper's: 8 ethylene-glycol monomers (80 atoms), 6 dimers (102 atoms) or 4 trimers (96 atoms),
random placements (``molecular_cluster``), labelled by a random QRNN of the same architecture (the labels' values
do not change the cost). One step = energy + forces with the graph kept (double backward), multitask loss with
learned σ, AdamW with weight normalisation and gradient clipping: what :class:`Trainer` does per batch. The
estimate for the paper's 500 epochs × 200 000 samples is samples / (clusters/s).

Beside it, in the same process and on the same batches, one network of TorchANI 2.9's ANI-2x architecture
(``torchani.arch.Assembler``, random weights, AEV strategy ``pyaev``, or ``cuaev`` on a GPU where it is built) takes
the same kind of step: energy + forces with the graph kept, MSE loss on both, AdamW with gradient clipping. ANI-2x's
ensemble of 8 is eight such trainings. The two are timed step by step in turn, so machine load hits both alike.
Results are merged per device into ``benchmarks/results/training.json``.

``--ranks N`` measures data-parallel training instead (``DistributedDataParallel``, gloo on CPU, NCCL on GPUs, one
GPU per rank): N forked ranks with ``--threads`` threads each take steps on the same global batches (each rank its
part, read from memory, as :class:`Trainer` does in a job), beside one process with the same threads and one with
N times the threads (all the cores the ranks use). Result key ``ddp-<device>-...-ranksN``.

    .venv/bin/python benchmarks/bench_training.py --ranks 2 --threads 1 --batch-size 32 --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import socket
import sys
import tempfile
import time

import numpy as np
import torch

from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig, evaluate
from aiida_qrnn.core.structures import ethylene_glycol_oligomer, molecular_cluster
from aiida_qrnn.core.training import InMemoryClusters, Trainer, TrainingConfig
from aiida_qrnn.core.training.distributed import RankInfo, barrier, init_process_group

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_model import ani2x_architecture, ani_strategy

RESULTS = pathlib.Path(__file__).parent / 'results' / 'training.json'
PAPER_SAMPLES = 500 * 200_000
#: (units per oligomer, molecules per cluster): the paper's largest clusters of each oligomer.
CLUSTER_KINDS = ((1, 8), (2, 6), (3, 4))


def paper_sized_clusters(n_clusters: int, seed: int) -> ClusterArrays:
    rng = np.random.default_rng(seed)
    images = []
    for index in range(n_clusters):
        units, count = CLUSTER_KINDS[index % len(CLUSTER_KINDS)]
        molecules = [ethylene_glycol_oligomer(units, seed=int(rng.integers(1 << 30))) for _ in range(count)]
        images.append(molecular_cluster(molecules, rng=rng, min_distance=1.8, spread=3.5))
    arrays = ClusterArrays.from_atoms(images)
    sizes = np.diff(arrays.offsets)
    teacher = QRNN(QRNNConfig()).double()
    labels = {name: [] for name in ('energy', 'forces', 'charges')}
    for start in range(0, len(sizes), 16):
        stop = min(start + 16, len(sizes))
        rows = slice(arrays.offsets[start], arrays.offsets[stop])
        output = evaluate(teacher, torch.from_numpy(arrays.positions[rows]),
                          torch.from_numpy(arrays.numbers[rows].astype(np.int64)),
                          torch.from_numpy(np.repeat(np.arange(stop - start), sizes[start:stop])),
                          torch.zeros((stop - start, 3, 3), dtype=torch.float64),
                          torch.zeros((stop - start, 3), dtype=torch.bool),
                          torch.zeros(stop - start, dtype=torch.float64))
        for name in labels:
            labels[name].append(output[name].detach().numpy())
    arrays.labels = {name: np.concatenate(values) for name, values in labels.items()}
    return arrays.validate()


def _cpu_model() -> str:
    lines = pathlib.Path('/proc/cpuinfo').read_text().splitlines()
    return next((line.split(':', 1)[1].strip() for line in lines if line.startswith('model name')),
                platform.processor() or platform.machine())


class AniTrainingStep:
    """One training step of one ANI-2x network (TorchANI), energy + forces loss, on a padded batch."""

    def __init__(self, strategy: str, device: torch.device, dtype: torch.dtype, gradient_clip: float | None) -> None:
        self.model = ani2x_architecture(1, strategy, 'all_pairs').to(device=device, dtype=dtype).requires_grad_(True)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.gradient_clip = gradient_clip

    @staticmethod
    def pad(batch) -> tuple[torch.Tensor, ...]:
        """(molecules, atoms) atomic numbers (-1 pads), coordinates, energies, forces and the real-atom mask."""
        counts = torch.bincount(batch.system_index, minlength=batch.n_systems)  # (molecules,)
        slots = torch.arange(batch.n_atoms, device=counts.device) - (torch.cumsum(counts, 0) - counts)[
            batch.system_index]  # (atoms,) position within its molecule
        shape = (batch.n_systems, int(counts.max()))
        species = torch.full(shape, -1, dtype=torch.long, device=counts.device)
        species[batch.system_index, slots] = batch.numbers
        coordinates = batch.positions.new_zeros((*shape, 3))
        coordinates[batch.system_index, slots] = batch.positions
        forces = batch.positions.new_zeros((*shape, 3))
        forces[batch.system_index, slots] = batch.forces
        return species, coordinates, batch.energy, forces, species >= 0

    def __call__(self, species, coordinates, energy, forces, mask) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        coordinates = coordinates.detach().requires_grad_(True)
        predicted = self.model((species, coordinates)).energies  # (molecules,)
        predicted_forces = -torch.autograd.grad(predicted.sum(), coordinates, create_graph=True)[0]
        loss = (predicted - energy).square().mean() + (predicted_forces - forces)[mask].square().mean()
        loss.backward()
        if self.gradient_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.gradient_clip)
        self.optimizer.step()


def _timed_steps(trainer: Trainer, batches: list[np.ndarray], steps: int) -> float:
    """Seconds per step of ``trainer._train_step`` (batch assembly included) after one warm-up step per batch."""
    synchronize = torch.cuda.synchronize if trainer.device.type == 'cuda' else (lambda: None)
    for batch in batches:
        trainer._train_step(batch)
    synchronize()
    barrier()
    start = time.perf_counter()
    for step in range(steps):
        trainer._train_step(batches[step % len(batches)])
    synchronize()
    barrier()
    return (time.perf_counter() - start) / steps


def _data_parallel_trainer(source: InMemoryClusters, args, device: str) -> Trainer:
    config = TrainingConfig(batch_size=args.batch_size, dtype=args.dtype, max_epochs=1)
    indices = np.arange(len(source))
    torch.manual_seed(0)
    return Trainer(QRNN(QRNNConfig()), source, indices, indices[:2], config, tempfile.mkdtemp(), device=device)


def _rank_main(rank: int, world_size: int, port: int, source: InMemoryClusters, args, output: str) -> None:
    torch.set_num_threads(args.threads)
    device = f'cuda:{rank}' if args.device.startswith('cuda') else 'cpu'
    if device != 'cpu':
        torch.cuda.set_device(device)
    init_process_group(RankInfo(rank, world_size, rank, '127.0.0.1', port), torch.device(device))
    trainer = _data_parallel_trainer(source, args, device)
    batches = [np.arange(args.batch_size), np.arange(args.batch_size, 2 * args.batch_size)]
    seconds = _timed_steps(trainer, batches, args.steps)
    if rank == 0:
        pathlib.Path(output).write_text(json.dumps(seconds))
    torch.distributed.destroy_process_group()


def data_parallel_throughput(args) -> dict:
    """Clusters/s of N ranks beside one process with the threads of one rank and with those of all ranks."""
    torch.set_num_threads(args.threads)
    source = InMemoryClusters(paper_sized_clusters(2 * args.batch_size, seed=0))
    batches = [np.arange(args.batch_size), np.arange(args.batch_size, 2 * args.batch_size)]
    single = {}
    for threads in (args.threads, args.threads * args.ranks):
        torch.set_num_threads(threads)
        single[threads] = _timed_steps(_data_parallel_trainer(source, args, args.device), batches, args.steps)
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        output = str(pathlib.Path(directory) / 'seconds.json')
        torch.multiprocessing.start_processes(_rank_main, args=(args.ranks, port, source, args, output),
                                              nprocs=args.ranks, join=True, start_method='fork')
        parallel = json.loads(pathlib.Path(output).read_text())
    per_s = {'ranks': args.batch_size / parallel, 'one_process_same_threads': args.batch_size / single[args.threads],
             'one_process_all_threads': args.batch_size / single[args.threads * args.ranks]}
    return {
        'device': args.device, 'cpu': _cpu_model(), 'os_cpu_count': os.cpu_count(), 'ranks': args.ranks,
        'threads_per_rank': args.threads, 'load_average_1_5_15_min': list(os.getloadavg()), 'torch': torch.__version__,
        'dtype': args.dtype, 'batch_size': args.batch_size, 'steps': args.steps,
        'clusters_per_s': per_s, 'seconds_per_step': {'ranks': parallel, 'one_process_same_threads': single[
            args.threads], 'one_process_all_threads': single[args.threads * args.ranks]},
        'scaling_vs_one_rank': per_s['ranks'] / per_s['one_process_same_threads'],
        'ratio_vs_one_process_all_threads': per_s['ranks'] / per_s['one_process_all_threads'],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='float32', choices=('float32', 'float64'))
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default; '
                        'with --ranks: per rank, default 1)')
    parser.add_argument('--ranks', type=int, default=1, help='data-parallel ranks (DDP) instead of the TorchANI run')
    args = parser.parse_args()
    os.environ.setdefault('TORCHANI_NO_WARN_EXTENSIONS', '1')
    if args.ranks > 1:
        args.threads = args.threads or 1
        result = data_parallel_throughput(args)
        print(json.dumps(result, indent=2))
        _store(f'ddp-{args.device}-{args.dtype}-batch{args.batch_size}-ranks{args.ranks}', result)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    n_clusters = args.batch_size * 2
    source = InMemoryClusters(paper_sized_clusters(n_clusters, seed=0))
    indices = np.arange(n_clusters)
    config = TrainingConfig(batch_size=args.batch_size, dtype=args.dtype, max_epochs=1)
    with tempfile.TemporaryDirectory() as directory:
        trainer = Trainer(QRNN(QRNNConfig()), source, indices, indices[:2], config, directory, device=args.device)
        batches = [source.batch(indices[(step % 2) * args.batch_size:][:args.batch_size]).to(
            trainer.device, trainer.dtype) for step in range(2)]
        strategy = ani_strategy(trainer.device)
        ani_step = AniTrainingStep(strategy, trainer.device, trainer.dtype, config.gradient_clip)
        padded = [ani_step.pad(batch) for batch in batches]
        for index, batch in enumerate(batches):  # warm-up
            trainer._step_on_batch(batch)
            ani_step(*padded[index])
        synchronize = torch.cuda.synchronize if trainer.device.type == 'cuda' else (lambda: None)
        synchronize()
        elapsed = ani_elapsed = 0.0
        atoms = 0
        for step in range(args.steps):
            start = time.perf_counter()
            trainer._step_on_batch(batches[step % 2])
            synchronize()
            elapsed += time.perf_counter() - start
            start = time.perf_counter()
            ani_step(*padded[step % 2])
            synchronize()
            ani_elapsed += time.perf_counter() - start
            atoms += batches[step % 2].n_atoms
    clusters_per_s = args.steps * args.batch_size / elapsed
    ani_clusters_per_s = args.steps * args.batch_size / ani_elapsed
    import torchani

    result = {
        'device': args.device if trainer.device.type != 'cuda' else torch.cuda.get_device_name(),
        'cpu': _cpu_model(), 'torch_threads': torch.get_num_threads(), 'load_average_1_5_15_min': list(os.getloadavg()),
        'torch': torch.__version__, 'torchani': torchani.__version__,
        'dtype': args.dtype, 'batch_size': args.batch_size, 'steps': args.steps,
        'mean_atoms_per_cluster': atoms / (args.steps * args.batch_size),
        'n_parameters': sum(p.numel() for p in trainer.model.parameters()),
        'seconds_per_step': elapsed / args.steps, 'clusters_per_s': clusters_per_s, 'atoms_per_s': atoms / elapsed,
        'paper_schedule_hours': PAPER_SAMPLES / clusters_per_s / 3600,
        'peak_gpu_memory_GiB': torch.cuda.max_memory_allocated() / 2**30 if trainer.device.type == 'cuda' else None,
        'torchani_ani2x_single_network': {
            'aev_strategy': strategy, 'n_parameters': sum(p.numel() for p in ani_step.model.parameters()),
            'seconds_per_step': ani_elapsed / args.steps, 'clusters_per_s': ani_clusters_per_s,
        },
        'ratio_qrnn_to_ani2x_single_step_time': elapsed / ani_elapsed,
    }
    print(json.dumps(result, indent=2))
    _store(f'{args.device}-{args.dtype}-batch{args.batch_size}', result)


def _store(key: str, result: dict) -> None:
    """Merge ``result`` under ``key`` into the results file."""
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    stored[key] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(stored, indent=2) + '\n')


if __name__ == '__main__':
    main()
