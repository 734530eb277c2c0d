"""Training throughput of the paper-sized QRNN: clusters/s and atoms/s of training steps with forces.

    .venv/bin/python benchmarks/bench_training.py --device cpu --batch-size 32 --steps 5
    .venv/bin/python benchmarks/bench_training.py --device cuda --batch-size 256 --steps 30 --dtype float32

Clusters like the paper's: 8 ethylene-glycol monomers (80 atoms), 6 dimers (102 atoms) or 4 trimers (96 atoms),
random placements (``molecular_cluster``), labelled by a random QRNN of the same architecture (the labels' values
do not change the cost). One step = energy + forces with the graph kept (double backward), multitask loss with
learned σ, AdamW with weight normalisation and gradient clipping: what :class:`Trainer` does per batch. The
estimate for the paper's 500 epochs × 200 000 samples is samples / (clusters/s). Results are merged per device
into ``benchmarks/results/training.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import tempfile
import time

import numpy as np
import torch

from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig, evaluate
from aiida_qrnn.core.structures import ethylene_glycol_oligomer, molecular_cluster
from aiida_qrnn.core.training import InMemoryClusters, Trainer, TrainingConfig

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='float32', choices=('float32', 'float64'))
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    args = parser.parse_args()
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
        for batch in batches:  # warm-up
            trainer._train_step(batch)
        synchronize = torch.cuda.synchronize if trainer.device.type == 'cuda' else (lambda: None)
        synchronize()
        start = time.perf_counter()
        atoms = 0
        for step in range(args.steps):
            trainer._train_step(batches[step % 2])
            atoms += batches[step % 2].n_atoms
        synchronize()
        elapsed = time.perf_counter() - start
    clusters_per_s = args.steps * args.batch_size / elapsed
    result = {
        'device': args.device if trainer.device.type != 'cuda' else torch.cuda.get_device_name(),
        'cpu': platform.processor() or platform.machine(), 'torch_threads': torch.get_num_threads(),
        'dtype': args.dtype, 'batch_size': args.batch_size, 'steps': args.steps,
        'mean_atoms_per_cluster': atoms / (args.steps * args.batch_size),
        'n_parameters': sum(p.numel() for p in trainer.model.parameters()),
        'seconds_per_step': elapsed / args.steps, 'clusters_per_s': clusters_per_s, 'atoms_per_s': atoms / elapsed,
        'paper_schedule_hours': PAPER_SAMPLES / clusters_per_s / 3600,
        'peak_gpu_memory_GiB': torch.cuda.max_memory_allocated() / 2**30 if trainer.device.type == 'cuda' else None,
    }
    print(json.dumps(result, indent=2))
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    stored[f'{args.device}-{args.dtype}-batch{args.batch_size}'] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(stored, indent=2) + '\n')


if __name__ == '__main__':
    main()
