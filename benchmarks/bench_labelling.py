"""AiiDA overhead of labelling: N clusters with GFN2-xTB through ``LabelWorkChain`` versus a plain loop.

Both paths run the same xtb command line on the same clusters, one xtb process per cluster, serially (one job
in flight), with ``OMP_NUM_THREADS=1``. The plain loop writes the xyz file, runs xtb and parses its files with
:func:`aiida_qrnn.parsers.parse_raw.xtb.parse_cluster`; the AiiDA path adds job folders, submission scripts,
scheduler polling, retrieval, parsing into a ``ClusterSetData``, the restart and label work chains and the
merge. The work chain runs on a temporary SQLite profile (no daemon). Goal of the issue: overhead < 5 %.

Two overheads are reported: wall-clock (``aiida_s / plain_s - 1``; on a shared machine other jobs' load blurs
it) and CPU (the CPU seconds the AiiDA Python process spends beyond the plain loop's own Python, relative to the
plain loop's total CPU including xtb), which contention changes much less.

    .venv/bin/python benchmarks/bench_labelling.py --system water --clusters 1000 --batch-size 250
    .venv/bin/python benchmarks/bench_labelling.py --system eg --clusters 200 --batch-size 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms

RESULTS = Path(__file__).parent / 'results' / 'labelling.json'


def cpu_seconds() -> tuple[float, float]:
    """(this process, its waited-for children) user + system CPU seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def eg_clusters(n_clusters: int, seed: int) -> list[Atoms]:
    """Clusters of 2-4 randomly rotated ethylene-glycol molecules (20-40 atoms), 4.5 Å apart on a line."""
    from scipy.spatial.transform import Rotation

    from aiida_qrnn.testing.structures import ethylene_glycol

    rng = np.random.default_rng(seed)
    monomer = ethylene_glycol().positions - ethylene_glycol().positions.mean(axis=0)  # (10, 3)
    images = []
    for index in range(n_clusters):
        n_molecules = index % 3 + 2
        positions = np.concatenate([
            Rotation.random(random_state=rng.integers(2**31)).apply(monomer)
            + np.array([4.5 * molecule, 0.0, 0.0]) + rng.normal(scale=0.3, size=3)
            for molecule in range(n_molecules)
        ])
        atoms = Atoms('OCCOHHHHHH' * n_molecules, positions=positions)
        atoms.arrays['molecule'] = np.repeat(np.arange(n_molecules, dtype=np.int32), 10)
        atoms.info.update(kind='conformational', source=f'benchmark seed={seed} index={index}')
        images.append(atoms)
    return images


def plain_loop(images, xtb: str) -> tuple[float, float, float]:
    """(wall s, own CPU s, xtb CPU s) of labelling ``images`` with xtb in a loop."""
    import ase.io

    from aiida_qrnn.parsers.parse_raw.xtb import parse_cluster

    environment = {**os.environ, 'OMP_NUM_THREADS': '1'}
    own_start, children_start = cpu_seconds()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for index, atoms in enumerate(images):
            prefix = f'c{index:06d}'
            ase.io.write(Path(folder) / f'{prefix}.xyz', atoms, format='xyz')
            command = [xtb, f'{prefix}.xyz', '--gfn', '2', '--grad', '--chrg', '0', '--uhf', '0', '--json',
                       '--namespace', prefix]
            result = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True)
            files = {
                key: (Path(folder) / f'{prefix}{suffix}').read_text()
                for key, suffix in (('gradient', '.gradient'), ('xtbout_json', '.xtbout.json'))
            }
            _, logs = parse_cluster(n_atoms=len(atoms), stdout=result.stdout, stderr=result.stderr, **files)
            assert not logs.errors, logs.errors
    elapsed = time.perf_counter() - start
    own_end, children_end = cpu_seconds()
    return elapsed, own_end - own_start, children_end - children_start


def through_aiida(images, xtb: str, batch_size: int, poll_interval: float) -> tuple[float, float, float]:
    """(wall s, own CPU s, CPU s of child processes) of ``LabelWorkChain`` on ``images``."""
    from aiida import load_profile, orm
    from aiida.engine import run_get_node
    from aiida.storage.sqlite_temp import SqliteTempBackend

    from aiida_qrnn.data.cluster_set import ClusterSetData
    from aiida_qrnn.workchains.label import LabelWorkChain

    work = tempfile.mkdtemp(prefix='bench-labelling-')
    load_profile(SqliteTempBackend.create_profile('bench-labelling', options={'runner.poll.interval': 1}),
                 allow_switch=True)
    computer = orm.Computer(
        label='localhost', hostname='localhost', transport_type='core.local', scheduler_type='core.direct',
        workdir=work,
    ).store()
    computer.configure()
    computer.set_minimum_job_poll_interval(poll_interval)
    code = orm.InstalledCode(computer=computer, filepath_executable=xtb, default_calc_job_plugin='qrnn.xtb').store()
    # A daemon has imported and set up everything before the first job: pay that once, outside the timing.
    run_get_node(LabelWorkChain, clusters=ClusterSetData.from_atoms(images[:1]), engine=orm.Str('xtb'), code=code,
                 reuse=orm.Bool(False))
    clusters = ClusterSetData.from_atoms(images)
    own_start, children_start = cpu_seconds()
    start = time.perf_counter()
    _, node = run_get_node(
        LabelWorkChain, clusters=clusters, engine=orm.Str('xtb'), code=code, batch_size=orm.Int(batch_size),
        max_concurrent=orm.Int(1), reuse=orm.Bool(False),
    )
    elapsed = time.perf_counter() - start
    own_end, children_end = cpu_seconds()
    assert node.exit_status == 0, node.exit_message
    shutil.rmtree(work, ignore_errors=True)
    return elapsed, own_end - own_start, children_end - children_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--system', choices=('water', 'eg'), default='water', help='1-3 waters or 2-4 EG molecules')
    parser.add_argument('--clusters', type=int, default=1000, help='number of clusters (default 1000)')
    parser.add_argument('--batch-size', type=int, default=250, help='clusters per job (default 250)')
    parser.add_argument('--poll-interval', type=float, default=1.0, help='minimum job poll interval, s (default 1)')
    arguments = parser.parse_args()

    from aiida_qrnn.testing.structures import make_water_clusters

    xtb = shutil.which('xtb')
    if arguments.system == 'water':
        images = make_water_clusters(arguments.clusters, seed=1234)
    else:
        images = eg_clusters(arguments.clusters, seed=1234)
    load_before = os.getloadavg()[0]
    plain_s, plain_own_cpu, xtb_cpu = plain_loop(images, xtb)
    aiida_s, aiida_own_cpu, aiida_children_cpu = through_aiida(
        images, xtb, arguments.batch_size, arguments.poll_interval
    )
    # Children of the AiiDA process (ps, bash and, where the job's processes are reaped by it, xtb itself) are
    # reported but left out: the overhead is the CPU the AiiDA process spends beyond the plain loop's Python.
    cpu_overhead = (aiida_own_cpu - plain_own_cpu) / (plain_own_cpu + xtb_cpu)
    result = {
        'system': arguments.system, 'clusters': arguments.clusters,
        'atoms_per_cluster': [min(map(len, images)), max(map(len, images))],
        'batch_size': arguments.batch_size, 'minimum_job_poll_interval_s': arguments.poll_interval,
        'plain_loop_s': round(plain_s, 2), 'aiida_s': round(aiida_s, 2),
        'wall_overhead_percent': round(100 * (aiida_s / plain_s - 1), 1),
        'plain_loop_cpu_s': {'python': round(plain_own_cpu, 2), 'xtb': round(xtb_cpu, 2)},
        'aiida_cpu_s': {'python': round(aiida_own_cpu, 2), 'children': round(aiida_children_cpu, 2)},
        'cpu_overhead_percent': round(100 * cpu_overhead, 1),
        'load_average_before': round(load_before, 2), 'load_average_after': round(os.getloadavg()[0], 2),
        'machine': f'{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores '
                   f'(shared with other users)',
    }
    RESULTS.parent.mkdir(exist_ok=True)
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results = {name: entry for name, entry in stored.items() if isinstance(entry, dict) and 'system' in entry}
    results[f'{arguments.system} {arguments.clusters} clusters, batches of {arguments.batch_size}'] = result
    RESULTS.write_text(json.dumps(results, indent=2) + '\n')
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
