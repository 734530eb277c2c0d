"""The commands a user runs: the demo, a daemon submission on the ZeroMQ profile, ``verdi data qrnn`` and
``aiida-qrnn-exec``, each in a subprocess against an embedded profile made by ``aiida-qrnn setup``."""

from __future__ import annotations

import json
import textwrap

import pytest

from aiida_qrnn.core.dataset import ClusterSet
from aiida_qrnn.testing.codes import BIN
from aiida_qrnn.testing.profiles import run

pytestmark = pytest.mark.integration  # the commands in subprocesses on a profile made by `aiida-qrnn setup`, the demo


@pytest.fixture(scope='module')
def embedded_profile(tmp_path_factory):
    """An AIIDA_PATH with the embedded profile and the demo already run once."""
    aiida_path = tmp_path_factory.mktemp('aiida')
    run([BIN / 'aiida-qrnn', 'setup'], aiida_path)
    demo = run([BIN / 'aiida-qrnn', 'demo', '--report-dir', str(aiida_path / 'report')], aiida_path, timeout=1500)
    (aiida_path / 'demo.out').write_text(demo.stdout)  # for a person reading a failed run
    return aiida_path, demo.stdout


#: Lines the engine logs while the demo runs (progress), between the demo's own lines.
PROGRESS = ('Report:', 'Warning:')


def section(output: str, number: int) -> str:
    """The demo's output from step ``number`` to the next step."""
    return f'\n{output}'.split(f'\n{number}. ')[1].split(f'\n{number + 1}. ')[0]


def test_demo_runs_the_polymer_workflow_and_shows_its_graph(embedded_profile):
    aiida_path, output = embedded_profile
    assert 'PolymerForceFieldWorkChain<' in section(output, 1) and 'finished in' in section(output, 1)
    sampled = section(output, 2)
    assert int(sampled.split('): ')[1].split()[0]) > 60 and "'extracted'" in sampled and "'decomposed'" in sampled
    labels = section(output, 3)
    assert 'ran 0 xtb job(s)' in labels  # the second labelling reused everything
    table = labels.split('Σq / e')[1].split('labelling the same')[0]
    rows = [line.split() for line in table.splitlines() if line.strip() and not line.startswith(PROGRESS)]
    assert rows
    for _, kind, n_atoms, energy, max_force, total_charge in rows:
        assert kind in {'extracted', 'conformational', 'decomposed'}
        assert int(n_atoms) % 10 == 0 or int(n_atoms) % 17 == 0  # whole EG (10 atoms) or diEG (17 atoms) molecules
        assert float(energy) < 0 and 0 < float(max_force) < 50 and abs(float(total_charge)) < 1e-3
    provenance = section(output, 5)
    for step in ('LabelWorkChain', 'XtbCalculation', 'split_clusters', 'extract_clusters', 'SamplingWorkChain'):
        assert step in provenance, step
    rounds = [line.split() for line in section(output, 6).splitlines() if line.split() and line.split()[0].isdigit()]
    assert [int(row[0]) for row in rounds] == [1, 2]
    assert int(rounds[1][1]) == int(rounds[0][1]) + int(rounds[0][5])  # round 2 trains on round 1's data + labels
    assert section(output, 6).count('candidate MD of the current model ended:') == 2
    properties = section(output, 7)
    for method in ('QRNN', 'OPLS-AA'):
        assert f'{method} n=1          density:' in properties
    assert 'g/cm^3 over 2 replicas' in properties and 'experiment 1.1' in properties
    report = output.split('\n8. ')[1]
    assert f'figures and tables in {aiida_path / "report"}' in report
    assert (aiida_path / 'report' / 'report.md').is_file()
    assert list((aiida_path / 'report').glob('*.png'))


def test_daemon_submission_on_the_zeromq_profile(embedded_profile, tmp_path):
    aiida_path, _ = embedded_profile
    script = tmp_path / 'submit.py'
    script.write_text(textwrap.dedent('''
        from aiida import orm
        from aiida.engine import submit
        from aiida_qrnn.calculations.xtb import XtbCalculation
        from aiida_qrnn.data.cluster_set import ClusterSetData
        from aiida_qrnn.testing.structures import build_ethylene_glycol_clusters

        clusters = ClusterSetData.from_atoms(build_ethylene_glycol_clusters(2, seed=11)).store()
        node = submit(XtbCalculation, code=orm.load_code('xtb@localhost'), clusters=clusters,
                      wait=True, wait_interval=0.5)
        print('RESULT', node.pk, node.is_finished_ok, node.exit_status, node.outputs.clusters.n_clusters)
    '''))
    run([BIN / 'verdi', 'daemon', 'start', '1'], aiida_path)
    try:
        result = run([BIN / 'verdi', 'run', str(script)], aiida_path, timeout=180)
    finally:
        run([BIN / 'verdi', 'daemon', 'stop'], aiida_path, check=False)
    _, pk, finished_ok, exit_status, n_clusters = next(
        line.split() for line in result.stdout.splitlines() if line.startswith('RESULT')
    )
    assert (finished_ok, exit_status, n_clusters) == ('True', '0', '2')
    calcjob = run([BIN / 'verdi', 'process', 'show', pk], aiida_path).stdout
    assert 'XtbCalculation' in calcjob and 'Finished [0]' in calcjob


def test_verdi_data_qrnn_show_and_export(embedded_profile, tmp_path):
    aiida_path, _ = embedded_profile
    query = tmp_path / 'query.py'
    query.write_text(
        'from aiida import orm\nfrom aiida_qrnn.data.cluster_set import ClusterSetData\n'
        "print(orm.QueryBuilder().append(ClusterSetData, filters={'attributes.level_of_theory': 'gfn2-xtb'})"
        ".first(flat=True).pk)\n"
    )
    pk = run([BIN / 'verdi', 'run', str(query)], aiida_path).stdout.split()[-1]
    shown = run([BIN / 'verdi', 'data', 'qrnn', 'clusters', 'show', pk, '-i', '0'], aiida_path).stdout
    n_clusters = json.loads(shown.split('\ncluster 0')[0])['n_clusters']
    assert '"level_of_theory": "gfn2-xtb"' in shown and n_clusters > 0
    assert 'cluster 0: C' in shown and 'forces: shape (' in shown

    xyz, h5 = tmp_path / 'set.xyz', tmp_path / 'set.h5'
    run([BIN / 'verdi', 'data', 'qrnn', 'clusters', 'export', pk, str(xyz)], aiida_path)
    run([BIN / 'verdi', 'data', 'qrnn', 'clusters', 'export', pk, str(h5)], aiida_path)
    refused = run([BIN / 'verdi', 'data', 'qrnn', 'clusters', 'export', pk, str(h5)], aiida_path, check=False)
    assert refused.returncode != 0 and 'use --force' in refused.stderr
    with ClusterSet(h5) as clusters:
        assert len(clusters) == n_clusters
    assert xyz.read_text().count('energy=') == n_clusters

    summary = json.loads(run([BIN / 'aiida-qrnn-exec', 'inspect', str(h5), '--verify'], aiida_path).stdout)
    assert summary['n_clusters'] == n_clusters and summary['label_names'] == ['charges', 'dipole', 'energy', 'forces']


def test_verdi_data_qrnn_model_show(embedded_profile, tmp_path):
    aiida_path, _ = embedded_profile
    script = tmp_path / 'model.py'
    script.write_text(
        'import torch\nfrom aiida_qrnn.data.model import ModelData\n'
        "node = ModelData({'w': torch.ones(2, 3)}, config={'hidden': [3]}, elements=['H', 'C', 'O']).store()\n"
        'print(node.pk)\n'
    )
    pk = run([BIN / 'verdi', 'run', str(script)], aiida_path).stdout.split()[-1]
    shown = run([BIN / 'verdi', 'data', 'qrnn', 'model', 'show', pk], aiida_path).stdout
    assert '"n_parameters": 6' in shown and '"hidden": [' in shown and '"model_hash"' in shown


def test_exec_inspect_refuses_a_bad_file(tmp_path):
    bad = tmp_path / 'bad.h5'
    bad.write_text('nope')
    result = run([BIN / 'aiida-qrnn-exec', 'inspect', str(bad)], tmp_path, check=False)
    assert result.returncode == 1
    assert "bad.h5': not a readable HDF5" in result.stderr and 'Traceback' not in result.stderr


def test_commands_without_a_profile_say_what_to_do(tmp_path):
    result = run([BIN / 'aiida-qrnn', 'demo'], tmp_path, check=False)
    assert result.returncode != 0
    assert 'run `aiida-qrnn setup` first' in result.stderr and 'Traceback' not in result.stderr


def test_sample_is_one_command_from_lengths_to_a_cluster_set(embedded_profile):
    aiida_path, _ = embedded_profile
    output = run([BIN / 'aiida-qrnn', 'sample', '--protocol', 'tiny'], aiida_path, timeout=300).stdout
    assert 'SamplingWorkChain<' in output and 'made ClusterSetData<' in output
    assert "'extracted'" in output
    refused = run([BIN / 'aiida-qrnn', 'sample', '--protocol', 'huge'], aiida_path, check=False)
    assert refused.returncode != 0 and "unknown sampling protocol 'huge'" in refused.stderr


def test_lineage_names_labels_and_work_chains(embedded_profile):
    aiida_path, demo_output = embedded_profile
    pk = demo_output.split('aiida-qrnn lineage ')[1].split('`')[0]  # the model the demo trained
    output = run([BIN / 'aiida-qrnn', 'lineage', pk, '--depth', '40'], aiida_path).stdout
    labels = output.split('labels:')[1].split('models:')[0]
    assert 'gfn2-xtb' in labels
    workflows = output.split('workflows:')[1].split('made by:')[0]
    for name in ('PolymerForceFieldWorkChain', 'SamplingWorkChain', 'LabelWorkChain', 'ActiveLearningWorkChain',
                 'TrainWorkChain', 'ScoreWorkChain'):
        assert name in workflows, name
    rounds = output.split('rounds:')[1].split('labels:')[0]
    assert 'model_round_02: TrainWorkChain<' in rounds and 'label_round_01: LabelWorkChain<' in rounds
    assert 'ModelData<' in output.split('parent model:')[1].split('rounds:')[0]
    assert 'ClassicalMdCalculation' in output.split('made by:')[1]
    missing = run([BIN / 'aiida-qrnn', 'lineage', '999999'], aiida_path, check=False)
    assert missing.returncode != 0 and 'Traceback' not in missing.stderr


def test_model_show_names_metrics_and_training_data(embedded_profile, tmp_path):
    aiida_path, output = embedded_profile
    pk = output.split('aiida-qrnn model show ')[1].split('`')[0]
    shown = run([BIN / 'aiida-qrnn', 'model', 'show', pk], aiida_path).stdout
    assert 'energy_per_atom_mae' in shown and 'forces_mae' in shown
    assert 'gfn2-xtb' in shown.split('trained on:')[1]
    wrong = run([BIN / 'aiida-qrnn', 'model', 'show', '1'], aiida_path, check=False)
    assert wrong.returncode != 0 and 'not a ModelData' in wrong.stderr
