"""Training throughput of the paper-sized QRNN: clusters/s and atoms/s of training steps with forces.

    .venv/bin/python benchmarks/bench_training.py --device cpu --batch-size 32 --steps 5
    python benchmarks/bench_training.py --device cuda --batch-size 256 --steps 30 --precision highest tf32 bf16

Clusters like the paper's: 8 ethylene-glycol monomers (80 atoms), 6 dimers (102 atoms) or 4 trimers (96 atoms),
random placements (``molecular_cluster``), labelled by a random QRNN of the same architecture (the labels' values
do not change the cost). One step = energy + forces with the graph kept (double backward), multitask loss with
learned σ, AdamW with weight normalisation and gradient clipping: what :class:`Trainer` does per batch. A timed QRNN
step includes preparing its batch (gathering the rows, the cached pair list, the copy to the device), which
:meth:`Trainer.fit` does in a background thread during the previous step; here it is not overlapped (a conservative
figure), and its own time is recorded. The estimate for the paper's 500 epochs × 200 000 samples is
samples / (clusters/s).

``--precision`` lists float32 variants measured in the same run on CUDA (one result each): ``highest`` (plain
float32), ``tf32`` (TF32 matrix products, both models) and ``bf16`` (the QRNN's element networks, and the whole
ANI network, under bf16 autocast). ``--compile`` sets ``TrainingConfig.compile`` (the optimizer step compiled).

Beside it, in the same process and on the same batches, one network of TorchANI 2.9's ANI-2x architecture
(``torchani.arch.Assembler``, random weights, AEV strategy ``pyaev``, or ``cuaev`` on a GPU where it is built) takes
the same kind of step: energy + forces with the graph kept, MSE loss on both, AdamW with gradient clipping. ANI-2x's
ensemble of 8 is eight such trainings. The two are timed step by step in turn, so machine load hits both alike;
on a CPU shared with other work the per-step CPU time of this thread is recorded too (``cpu_seconds_per_step``,
the fairer ratio there: wall time includes waiting for a core). Results are merged per device into
``benchmarks/results/training.json``.

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
from aiida_qrnn.core.training import InMemoryClusters, Trainer, TrainingConfig, split_indices
from aiida_qrnn.core.training.distributed import RankInfo, barrier, init_process_group

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_model import ani2x_architecture, ani_strategy

RESULTS = pathlib.Path(__file__).parent / 'results' / 'training.json'
PAPER_SAMPLES = 500 * 200_000
#: (units per oligomer, molecules per cluster): the paper's largest clusters of each oligomer.
CLUSTER_KINDS = ((1, 8), (2, 6), (3, 4))


def paper_sized_clusters(n_clusters: int, seed: int, device: str = 'cpu', conformers: int = 8) -> ClusterArrays:
    """EG clusters of the paper's sizes (randomly rotated and placed molecules, each drawn from ``conformers`` RDKit
    conformers per oligomer), labelled by a random paper-sized QRNN (float64, on ``device``)."""
    rng = np.random.default_rng(seed)
    pool = {units: [ethylene_glycol_oligomer(units, seed=int(rng.integers(1 << 30))) for _ in range(conformers)]
            for units, _ in CLUSTER_KINDS}
    images = []
    for index in range(n_clusters):
        units, count = CLUSTER_KINDS[index % len(CLUSTER_KINDS)]
        molecules = [pool[units][int(rng.integers(conformers))] for _ in range(count)]
        images.append(molecular_cluster(molecules, rng=rng, min_distance=1.8, spread=3.5))
    arrays = ClusterArrays.from_atoms(images)
    sizes = np.diff(arrays.offsets)
    teacher = QRNN(QRNNConfig()).double().to(device)
    labels = {name: [] for name in ('energy', 'forces', 'charges')}
    for start in range(0, len(sizes), 64):
        stop = min(start + 64, len(sizes))
        rows = slice(arrays.offsets[start], arrays.offsets[stop])
        output = evaluate(teacher, torch.from_numpy(arrays.positions[rows]).to(device),
                          torch.from_numpy(arrays.numbers[rows].astype(np.int64)).to(device),
                          torch.from_numpy(np.repeat(np.arange(stop - start), sizes[start:stop])).to(device),
                          torch.zeros((stop - start, 3, 3), dtype=torch.float64, device=device),
                          torch.zeros((stop - start, 3), dtype=torch.bool, device=device),
                          torch.zeros(stop - start, dtype=torch.float64, device=device))
        for name in labels:
            labels[name].append(output[name].detach().cpu().numpy())
    arrays.labels = {name: np.concatenate(values) for name, values in labels.items()}
    return arrays.validate()


def _cpu_model() -> str:
    lines = pathlib.Path('/proc/cpuinfo').read_text().splitlines()
    return next((line.split(':', 1)[1].strip() for line in lines if line.startswith('model name')),
                platform.processor() or platform.machine())


class AniTrainingStep:
    """One training step of one ANI-2x network (TorchANI), energy + forces loss, on a padded batch."""

    def __init__(self, strategy: str, device: torch.device, dtype: torch.dtype, gradient_clip: float | None,
                 precision: str = 'highest') -> None:
        self.model = ani2x_architecture(1, strategy, 'all_pairs').to(device=device, dtype=dtype).requires_grad_(True)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.gradient_clip = gradient_clip
        self.precision = precision
        self.device_type = device.type

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
        previous = torch.get_float32_matmul_precision()
        if self.precision == 'tf32':
            torch.set_float32_matmul_precision('high')
        autocast = torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.precision == 'bf16')
        try:
            with autocast:
                predicted = self.model((species, coordinates)).energies  # (molecules,)
                predicted_forces = -torch.autograd.grad(predicted.sum(), coordinates, create_graph=True)[0]
            predicted, predicted_forces = predicted.to(energy.dtype), predicted_forces.to(forces.dtype)
            loss = (predicted - energy).square().mean() + (predicted_forces - forces)[mask].square().mean()
            loss.backward()
        finally:
            torch.set_float32_matmul_precision(previous)
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='float32', choices=('float32', 'float64'))
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default; '
                        'with --ranks: per rank, default 1)')
    parser.add_argument('--ranks', type=int, default=1, help='data-parallel ranks (DDP) instead of the TorchANI run')
    parser.add_argument('--precision', nargs='+', default=['highest'], choices=('highest', 'tf32', 'bf16'),
                        help='float32 variants to measure in this run (tf32 and bf16 need CUDA)')
    parser.add_argument('--compile', action='store_true', help='TrainingConfig.compile (the optimizer step)')
    parser.add_argument('--precision-curves', nargs='+', choices=('highest', 'tf32', 'bf16'),
                        help='instead: validation curves of one training in each of these precisions')
    parser.add_argument('--curve-clusters', type=int, default=1024)
    parser.add_argument('--curve-epochs', type=int, default=8)
    parser.add_argument('--output', type=pathlib.Path, default=RESULTS, help='results file (merged per key)')
    args = parser.parse_args(argv)
    os.environ.setdefault('TORCHANI_NO_WARN_EXTENSIONS', '1')
    if args.ranks > 1:
        args.threads = args.threads or 1
        result = data_parallel_throughput(args)
        print(json.dumps(result, indent=2))
        return _store(args.output, f'ddp-{args.device}-{args.dtype}-batch{args.batch_size}-ranks{args.ranks}', result)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.precision_curves:
        result = precision_curves(args)
        print(json.dumps(result, indent=2))
        return _store(args.output, f'{args.device}-{args.dtype}-precision-curves', result)
    source = InMemoryClusters(paper_sized_clusters(args.batch_size * 2, seed=0, device=args.device))
    for precision in args.precision:
        result = single_process_throughput(source, args, precision)
        print(json.dumps(result, indent=2))
        suffix = '' if precision == 'highest' else f'-{precision}'
        stored = _store(args.output, f'{args.device}-{args.dtype}{suffix}-batch{args.batch_size}', result)
    return stored


def precision_curves(args) -> dict:
    """Validation curves of the same training (data, split, seed, batch 64) in each of ``--precision-curves``: does
    TF32 or bf16 keep the errors within tolerance of float32?"""
    source = InMemoryClusters(paper_sized_clusters(args.curve_clusters, seed=1, device=args.device))
    train, validation = split_indices(len(source), 0.1, seed=0)
    curves = {}
    for precision in args.precision_curves:
        config = TrainingConfig(batch_size=64, validation_batch_size=256, dtype='float32', precision=precision,
                                max_epochs=args.curve_epochs, early_stopping_patience=args.curve_epochs + 1)
        with tempfile.TemporaryDirectory() as directory:
            torch.manual_seed(0)
            trainer = Trainer(QRNN(QRNNConfig()), source, train, validation, config, directory, device=args.device)
            start = time.perf_counter()
            trainer.fit()
            seconds = time.perf_counter() - start
        curves[precision] = {
            'seconds': seconds,
            **{name: [row[key] for row in trainer.history] for name, key in (
                ('train_loss', 'train_loss'), ('validation_energy_rmse_eV', 'validation_energy_rmse'),
                ('validation_forces_rmse_eV_per_A', 'validation_forces_rmse'),
                ('validation_charges_rmse_e', 'validation_charges_rmse'), ('validation_score', 'validation_score'))},
        }
    reference = curves.get('highest')
    if reference is not None:
        for curve in curves.values():
            curve['max_relative_difference_to_float32'] = {
                name: float(np.max(np.abs(np.array(curve[name]) - np.array(reference[name]))
                                   / np.abs(np.array(reference[name]))))
                for name in ('validation_energy_rmse_eV', 'validation_forces_rmse_eV_per_A', 'validation_score')}
    device = torch.device(args.device)
    return {
        'device': args.device if device.type != 'cuda' else torch.cuda.get_device_name(), 'cpu': _cpu_model(),
        'torch': torch.__version__, 'load_average_1_5_15_min': list(os.getloadavg()),
        'clusters': args.curve_clusters, 'n_train': len(train), 'n_validation': len(validation), 'batch_size': 64,
        'epochs': args.curve_epochs, 'loss': 'paper eq. 1 (learned sigma), energy + forces + charges',
        'labels': 'random paper-sized QRNN teacher (float64)', 'curves': curves,
    }


def single_process_throughput(source: InMemoryClusters, args, precision: str) -> dict:
    """Clusters/s of the QRNN trainer's steps and of one ANI-2x network's, alternating on the same batches."""
    import torchani

    indices = np.arange(len(source))
    halves = [indices[:args.batch_size], indices[args.batch_size:]]
    config = TrainingConfig(batch_size=args.batch_size, dtype=args.dtype, max_epochs=1, precision=precision,
                            compile=args.compile)
    with tempfile.TemporaryDirectory() as directory:
        torch.manual_seed(0)
        trainer = Trainer(QRNN(QRNNConfig()), source, indices, indices[:2], config, directory, device=args.device)
        device = trainer.device
        synchronize = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
        batches = [source.batch(half).to(device, trainer.dtype) for half in halves]
        strategy = ani_strategy(device)
        ani_step = AniTrainingStep(strategy, device, trainer.dtype, config.gradient_clip, precision)
        padded = [ani_step.pad(batch) for batch in batches]
        ani_error = None
        for index, half in enumerate(halves):  # warm-up (and compilation)
            trainer._train_step(half)
            if ani_error is None:
                try:
                    ani_step(*padded[index])
                except Exception as exception:  # e.g. an AEV kernel without bf16: the QRNN is still measured
                    ani_error = f'{type(exception).__name__}: {exception}'
        synchronize()
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats()
        elapsed = ani_elapsed = prepare_elapsed = cpu = ani_cpu = 0.0
        atoms = 0
        for step in range(args.steps):
            start, start_cpu = time.perf_counter(), time.thread_time()
            prepared = trainer._prepare(halves[step % 2])
            synchronize()
            prepare_elapsed += time.perf_counter() - start
            trainer._take_step(prepared)
            synchronize()
            elapsed += time.perf_counter() - start
            cpu += time.thread_time() - start_cpu
            if ani_error is None:
                start, start_cpu = time.perf_counter(), time.thread_time()
                ani_step(*padded[step % 2])
                synchronize()
                ani_elapsed += time.perf_counter() - start
                ani_cpu += time.thread_time() - start_cpu
            atoms += batches[step % 2].n_atoms
        trainer._read_running_sums()  # the losses stayed finite
        n_parameters = sum(p.numel() for p in trainer.model.parameters())
    clusters_per_s = args.steps * args.batch_size / elapsed
    ani_clusters_per_s = args.steps * args.batch_size / ani_elapsed if ani_error is None else None
    return {
        'device': args.device if device.type != 'cuda' else torch.cuda.get_device_name(),
        'cpu': _cpu_model(), 'os_cpu_count': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
        'load_average_1_5_15_min': list(os.getloadavg()), 'torch': torch.__version__, 'torchani': torchani.__version__,
        'dtype': args.dtype, 'precision': precision, 'compile': args.compile, 'batch_size': args.batch_size,
        'steps': args.steps, 'mean_atoms_per_cluster': atoms / (args.steps * args.batch_size),
        'n_parameters': n_parameters,
        'seconds_per_step': elapsed / args.steps, 'clusters_per_s': clusters_per_s, 'atoms_per_s': atoms / elapsed,
        'prepare_seconds_per_step': prepare_elapsed / args.steps,
        'cpu_seconds_per_step': cpu / args.steps if device.type == 'cpu' else None,
        'paper_schedule_hours': PAPER_SAMPLES / clusters_per_s / 3600,
        'peak_gpu_memory_GiB': torch.cuda.max_memory_allocated() / 2**30 if device.type == 'cuda' else None,
        'torchani_ani2x_single_network': {
            'aev_strategy': strategy, 'n_parameters': sum(p.numel() for p in ani_step.model.parameters()),
            'seconds_per_step': ani_elapsed / args.steps if ani_error is None else None,
            'clusters_per_s': ani_clusters_per_s,
            'cpu_seconds_per_step': ani_cpu / args.steps if device.type == 'cpu' and ani_error is None else None,
            'error': ani_error,
        },
        'ratio_qrnn_to_ani2x_single_step_time': elapsed / ani_elapsed if ani_error is None else None,
        'ratio_qrnn_to_ani2x_single_cpu_time': cpu / ani_cpu if device.type == 'cpu' and ani_error is None else None,
    }


def _store(path: pathlib.Path, key: str, result: dict) -> dict:
    """Merge ``result`` under ``key`` into the results file ``path``; returns what the file holds now."""
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored[key] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=2) + '\n')
    return stored


if __name__ == '__main__':
    main()
