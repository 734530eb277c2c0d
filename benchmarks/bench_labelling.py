"""AiiDA overhead of labelling: N small clusters with GFN2-xTB through ``LabelWorkChain`` versus a plain loop.

Both paths run the same xtb command line on the same water clusters (1-3 molecules), one xtb process per
cluster, serially (one job in flight), with ``OMP_NUM_THREADS=1``. The plain loop writes the xyz file, runs xtb
and parses its files with :func:`aiida_qrnn.parsers.parse_raw.xtb.parse_cluster`; the AiiDA path adds job
folders, submission scripts, retrieval, parsing into a ``ClusterSetData``, the restart and label work chains and
the merge. The work chain runs on a temporary SQLite profile (no daemon). Goal of the issue: overhead < 5 %.

    .venv/bin/python benchmarks/bench_labelling.py --clusters 1000 --batch-size 250
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / 'results' / 'labelling.json'


def plain_loop(images, xtb: str) -> float:
    import ase.io

    from aiida_qrnn.parsers.parse_raw.xtb import parse_cluster

    environment = {**os.environ, 'OMP_NUM_THREADS': '1'}
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
    return time.perf_counter() - start


def through_aiida(images, xtb: str, batch_size: int) -> float:
    from aiida import load_profile, orm
    from aiida.engine import run_get_node
    from aiida.storage.sqlite_temp import SqliteTempBackend

    from aiida_qrnn.data.cluster_set import ClusterSetData
    from aiida_qrnn.workchains.label import LabelWorkChain

    work = tempfile.mkdtemp(prefix='bench-labelling-')
    load_profile(SqliteTempBackend.create_profile('bench-labelling', options={'runner.poll.interval': 0}),
                 allow_switch=True)
    computer = orm.Computer(
        label='localhost', hostname='localhost', transport_type='core.local', scheduler_type='core.direct',
        workdir=work,
    ).store()
    computer.configure()
    computer.set_minimum_job_poll_interval(0.0)
    code = orm.InstalledCode(computer=computer, filepath_executable=xtb, default_calc_job_plugin='qrnn.xtb').store()
    clusters = ClusterSetData.from_atoms(images)
    start = time.perf_counter()
    _, node = run_get_node(
        LabelWorkChain, clusters=clusters, engine=orm.Str('xtb'), code=code, batch_size=orm.Int(batch_size),
        max_concurrent=orm.Int(1), reuse=orm.Bool(False),
    )
    elapsed = time.perf_counter() - start
    assert node.exit_status == 0, node.exit_message
    shutil.rmtree(work, ignore_errors=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--clusters', type=int, default=1000, help='number of clusters (default 1000)')
    parser.add_argument('--batch-size', type=int, default=250, help='clusters per job (default 250)')
    arguments = parser.parse_args()

    from tests.conftest import make_water_clusters

    xtb = shutil.which('xtb')
    images = make_water_clusters(arguments.clusters, seed=1234)
    plain = plain_loop(images, xtb)
    aiida = through_aiida(images, xtb, arguments.batch_size)
    result = {
        'clusters': arguments.clusters, 'batch_size': arguments.batch_size, 'plain_loop_s': round(plain, 2),
        'aiida_s': round(aiida, 2), 'overhead_percent': round(100 * (aiida / plain - 1), 1),
        'machine': f'{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)',
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + '\n')
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
