"""A SLURM cluster over SSH: ``aiida-qrnn computer add-slurm`` and a real job through the daemon.

The cluster is real: munged, slurmctld and slurmd, and sshd on 127.0.0.1:2222, started by
``scripts/local-cluster.sh`` (the ``local_cluster`` fixture of :mod:`aiida_qrnn.testing.fixtures`; root only, it is
skipped with the reason printed where it cannot run).
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from aiida_qrnn.computers import gpu_scheduler_commands, scheduler_options
from aiida_qrnn.testing.codes import BIN
from aiida_qrnn.testing.profiles import run
from aiida_qrnn.testing.slurm import CLUSTER_DIR


def test_gpu_request_is_one_sbatch_line():
    assert gpu_scheduler_commands(0) == ''
    assert gpu_scheduler_commands(2) == '#SBATCH --gres=gpu:2'
    with pytest.raises(ValueError, match='gpus must be a non-negative integer'):
        gpu_scheduler_commands(-1)


@pytest.mark.integration
def test_add_slurm_and_run_a_labelling_job_through_the_daemon(local_cluster, tmp_path):
    aiida_path = tmp_path / 'aiida'
    run([BIN / 'aiida-qrnn', 'setup'], aiida_path)
    command = [BIN / 'aiida-qrnn', 'computer', 'add-slurm', 'cluster', '--host', local_cluster,
               '--workdir', str(CLUSTER_DIR / 'work'), '--partition', 'debug', '--gpus', '1',
               '--code', f'aiida-qrnn-exec={BIN / "aiida-qrnn-exec"}']
    first = run(command, aiida_path).stdout
    assert 'computer cluster created' in first and 'code xtb@cluster created (/usr/bin/xtb)' in first
    second = run(command, aiida_path).stdout
    assert 'created' not in second and 'code xtb@cluster exists' in second

    script = tmp_path / 'submit.py'
    script.write_text(textwrap.dedent('''
        from aiida import orm
        from aiida.engine import run, submit
        from aiida_qrnn.calculations.xtb import XtbCalculation
        from aiida_qrnn.computers import scheduler_options
        from aiida_qrnn.data.cluster_set import ClusterSetData
        from aiida_qrnn.testing.structures import build_ethylene_glycol_clusters

        code = orm.load_code('xtb@cluster')
        clusters = ClusterSetData.from_atoms(build_ethylene_glycol_clusters(2, seed=21)).store()
        options = scheduler_options(code.computer, gpus=0, max_wallclock_seconds=300)
        node = submit(XtbCalculation, code=code, clusters=clusters, metadata={'options': options},
                      wait=True, wait_interval=0.5)
        print('RESULT', node.is_finished_ok, node.get_job_id(), node.outputs.clusters.n_clusters)
        dry = dict(options, custom_scheduler_commands=scheduler_options(code.computer)['custom_scheduler_commands'])
        _, dry_node = run.get_node(XtbCalculation, code=code, clusters=clusters,
                                   metadata={'options': dry, 'dry_run': True, 'store_provenance': False})
    '''))
    run([BIN / 'verdi', 'daemon', 'start', '1'], aiida_path)
    try:
        result = run([BIN / 'verdi', 'run', str(script)], aiida_path, timeout=240)
    finally:
        run([BIN / 'verdi', 'daemon', 'stop'], aiida_path, check=False)
    _, finished_ok, job_id, n_clusters = next(
        line.split() for line in result.stdout.splitlines() if line.startswith('RESULT'))
    assert (finished_ok, n_clusters) == ('True', '2')
    assert job_id.isdigit()  # a real SLURM job id
    submit_scripts = list(Path.cwd().glob('submit_test/*/_aiidasubmit.sh'))
    assert submit_scripts, 'the dry run wrote no submit script'
    text = max(submit_scripts, key=lambda path: path.stat().st_mtime).read_text()
    assert '#SBATCH --gres=gpu:1' in text and '#SBATCH --partition=debug' in text
    shutil.rmtree(Path.cwd() / 'submit_test', ignore_errors=True)


def test_scheduler_options_merge(aiida_profile, aiida_localhost):
    aiida_localhost.set_property('qrnn_scheduler_options', {'queue_name': 'gpu', 'account': 'chem',
                                                            'custom_scheduler_commands': '#SBATCH --gres=gpu:1'})
    options = scheduler_options(aiida_localhost, gpus=4, max_wallclock_seconds=60)
    assert options == {'queue_name': 'gpu', 'account': 'chem', 'custom_scheduler_commands': '#SBATCH --gres=gpu:4',
                       'max_wallclock_seconds': 60}
    assert 'custom_scheduler_commands' not in scheduler_options(aiida_localhost, gpus=0)
    aiida_localhost.delete_property('qrnn_scheduler_options')
