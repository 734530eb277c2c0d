"""Write and read a 200 000-cluster set of 40-atom clusters; report MB and seconds.

Measures, for the HDF5 cluster-set format of :mod:`aiida_qrnn.core.dataset`:

* writing the set with energy and force labels (validation and content ids included);
* opening it and reading random single clusters (must not read the whole file: bytes read are counted);
* reading all arrays back;
* the same set as extended XYZ through ASE (the common text format), written and read back, as the reference
  the binary format must beat. The XYZ reference is timed on a subset and scaled, since ASE reading 200 000
  frames takes minutes; the subset size is in the results.

Run: ``.venv/bin/python benchmarks/bench_dataset.py [--clusters 200000] [--atoms 40]``.
Results go to ``benchmarks/results/dataset.json`` and are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from aiida_qrnn.core.dataset import ClusterArrays, ClusterSet, write_cluster_set
from aiida_qrnn.testing.files import CountingReader

RESULTS = Path(__file__).parent / 'results' / 'dataset.json'


def synthetic_set(n_clusters: int, n_atoms: int, seed: int = 0) -> ClusterArrays:
    rng = np.random.default_rng(seed)
    total = n_clusters * n_atoms
    return ClusterArrays(
        numbers=rng.choice(np.array([1, 6, 8], dtype=np.uint8), size=total),
        positions=rng.uniform(0.0, 12.0, size=(total, 3)),
        offsets=np.arange(n_clusters + 1, dtype=np.int64) * n_atoms,
        molecule=np.tile(np.repeat(np.arange(4, dtype=np.int32), n_atoms // 4 + 1)[:n_atoms], n_clusters),
        kind=['conformational'] * n_clusters,
        labels={'energy': rng.normal(size=n_clusters), 'forces': rng.normal(size=(total, 3))},
    )


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--clusters', type=int, default=200_000)
    parser.add_argument('--atoms', type=int, default=40)
    parser.add_argument('--xyz-subset', type=int, default=5_000, help='clusters used for the extxyz reference')
    parser.add_argument('--random-reads', type=int, default=1_000)
    options = parser.parse_args()

    arrays = synthetic_set(options.clusters, options.atoms)
    results: dict = {
        'machine': f'{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores',
        'clusters': options.clusters, 'atoms_per_cluster': options.atoms,
    }
    with tempfile.TemporaryDirectory(dir=os.environ.get('BENCH_TMP')) as folder:
        path = Path(folder) / 'set.h5'
        _, results['hdf5_write_s'] = timed(write_cluster_set, path, arrays, level_of_theory='synthetic')
        results['hdf5_size_mb'] = path.stat().st_size / 1e6

        rng = np.random.default_rng(1)
        indices = rng.integers(0, options.clusters, options.random_reads)
        with CountingReader(path, 'r') as stream:
            clusters, results['hdf5_open_s'] = timed(ClusterSet, stream)
            opened_bytes = stream.bytes_read
            start = time.perf_counter()
            first = clusters[int(indices[0])]
            results['hdf5_first_random_read_bytes'] = stream.bytes_read - opened_bytes
            for index in indices[1:]:
                clusters[int(index)]
            results['hdf5_random_read_ms_per_cluster'] = 1e3 * (time.perf_counter() - start) / len(indices)
            results['hdf5_random_reads_fraction_of_file_read'] = stream.bytes_read / path.stat().st_size
            clusters.close()
        assert np.array_equal(first.positions, arrays.positions[indices[0] * options.atoms:
                                                                 (indices[0] + 1) * options.atoms])
        with ClusterSet(path) as clusters:
            _, results['hdf5_read_all_s'] = timed(clusters.read_arrays)

        subset = arrays.select(np.arange(min(options.xyz_subset, options.clusters)))
        subset_path = Path(folder) / 'subset.h5'
        write_cluster_set(subset_path, subset, level_of_theory='synthetic')
        xyz = Path(folder) / 'subset.xyz'
        with ClusterSet(subset_path) as clusters:
            images = list(clusters)
        from ase.io import read, write

        _, xyz_write = timed(write, xyz, images, format='extxyz')
        _, xyz_read = timed(read, xyz, index=':', format='extxyz')
        scale = options.clusters / subset.n_clusters
        results.update(
            xyz_reference_subset=subset.n_clusters,
            xyz_size_mb_scaled=xyz.stat().st_size / 1e6 * scale,
            ase_extxyz_write_s_scaled=xyz_write * scale,
            ase_extxyz_read_s_scaled=xyz_read * scale,
        )
    results['speedup_read_all_vs_ase_extxyz'] = results['ase_extxyz_read_s_scaled'] / results['hdf5_read_all_s']
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + '\n')
    for key, value in results.items():
        print(f'{key:>42}: {value:.4g}' if isinstance(value, float) else f'{key:>42}: {value}')
    print(f'written to {RESULTS}')


if __name__ == '__main__':
    main()
