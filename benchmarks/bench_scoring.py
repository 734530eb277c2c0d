"""Speed of committee scoring (ρ^f, paper eq. 2) on candidate clusters, beside the naive way in the same run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scoring.py --clusters 2000 --device cpu
    .venv/bin/python benchmarks/bench_scoring.py --clusters 20000 --device cuda

Candidates: clusters of 1-8 ethylene-glycol molecules (10-80 atoms) cut from a packed liquid. Committee: five
paper-sized QRNNs (random weights, float32). Timed: ``core.selection.committee_scores`` (flat batches of at most
``--max-batch-atoms`` atoms, one neighbour list per batch for all members) against the reference, one
``QRNNCalculator`` per member evaluated cluster by cluster through ASE (what a script around an ASE calculator does),
on the first ``--reference-clusters`` clusters (scaled to the whole set). Both give the same ρ^f (checked). Results
go to ``benchmarks/results/scoring.json`` (merged per device).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import numpy as np
import torch

from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.model.calculator import QRNNCalculator
from aiida_qrnn.core.model.committee import Committee
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig
from aiida_qrnn.core.selection import committee_scores
from aiida_qrnn.testing.structures import ethylene_glycol_liquid

RESULTS = pathlib.Path(__file__).parent / 'results' / 'scoring.json'


def candidate_clusters(n_clusters: int, seed: int) -> list:
    """Clusters of 1-8 neighbouring whole EG molecules taken from a packed EG liquid (open boundaries)."""
    liquid = ethylene_glycol_liquid(400, seed=seed)
    molecule = np.repeat(np.arange(len(liquid) // 10), 10)
    centres = np.stack([liquid.positions[molecule == index].mean(0) for index in range(molecule.max() + 1)])
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_clusters):
        first = int(rng.integers(len(centres)))
        nearest = np.argsort(np.linalg.norm(centres - centres[first], axis=1))[:int(rng.integers(1, 9))]
        atoms = liquid[np.isin(molecule, nearest)]
        atoms.pbc = False
        atoms.cell = np.zeros((3, 3))
        images.append(atoms)
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--clusters', type=int, default=2000)
    parser.add_argument('--reference-clusters', type=int, default=100)
    parser.add_argument('--members', type=int, default=5)
    parser.add_argument('--max-batch-atoms', type=int, default=20_000)
    parser.add_argument('--device', default='cpu')
    arguments = parser.parse_args()

    torch.manual_seed(0)
    config = QRNNConfig(elements=('H', 'C', 'O'))
    models = [QRNN(config).to(arguments.device) for _ in range(arguments.members)]
    images = candidate_clusters(arguments.clusters, seed=1)
    clusters = ClusterArrays.from_atoms(images).validate()
    committee = Committee(models)

    committee_scores(committee, clusters.select(np.arange(10)), device=arguments.device)  # warm-up
    start = time.perf_counter()
    scores = committee_scores(committee, clusters, max_batch_atoms=arguments.max_batch_atoms,
                              device=arguments.device)
    if arguments.device.startswith('cuda'):
        torch.cuda.synchronize()
    batched_s = time.perf_counter() - start

    calculators = [QRNNCalculator(model, device=arguments.device, dtype=torch.float32) for model in models]
    n_reference = min(arguments.reference_clusters, clusters.n_clusters)
    start = time.perf_counter()
    reference_rho = []
    for index in range(n_reference):
        atoms = images[index].copy()
        forces = []
        for calculator in calculators:
            calculator.reset()
            atoms.calc = calculator
            forces.append(atoms.get_forces())
        variance = np.var(np.stack(forces), axis=0)  # (atoms, 3), population variance over members
        reference_rho.append(variance.sum() / np.sqrt(len(atoms)))
    reference_s = (time.perf_counter() - start) * clusters.n_clusters / n_reference
    np.testing.assert_allclose(scores['rho_f'][:n_reference], reference_rho, rtol=2e-3, atol=1e-6)

    n_atoms = int(clusters.offsets[-1])
    result = {
        'device': arguments.device, 'host': platform.node(), 'torch_threads': torch.get_num_threads(),
        'n_clusters': clusters.n_clusters, 'n_atoms': n_atoms, 'members': arguments.members,
        'max_batch_atoms': arguments.max_batch_atoms,
        'committee_scores_s': batched_s, 'clusters_per_s': clusters.n_clusters / batched_s,
        'reference_ase_per_cluster_s': reference_s, 'reference_clusters_timed': n_reference,
        'speedup': reference_s / batched_s,
        'paper_round_1_hours': 800_000 / (clusters.n_clusters / batched_s) / 3600,
    }
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    merged = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged[arguments.device] = result
    RESULTS.write_text(json.dumps(merged, indent=2) + '\n')


if __name__ == '__main__':
    main()
