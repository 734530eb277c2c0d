"""``collect_report`` / ``write_report`` on a real graph: one work chain that labels ethylene-glycol clusters with
xtb, trains a committee of two, scores candidates in two shards and selects some, labels the selection, runs the
tiny OPLS-AA ``PropertiesWorkChain`` and a pair scan with the trained model (all real jobs on localhost); and on
the session's two rounds of ``ActiveLearningWorkChain`` (the ``active_learning_run`` fixture), whose rounds the
report reads from what the loop recorded."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.engine import ToContext, WorkChain, run_get_node

from aiida_qrnn.calculations.selection import select_for_labelling
from aiida_qrnn.core.analysis.experimental import experimental
from aiida_qrnn.core.analysis.report_figures import format_number
from aiida_qrnn.core.structures import pack_cell
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.report import ReportError, collect_report, load_workflow, ref, write_report
from aiida_qrnn.testing.codes import EXEC, XTB
from aiida_qrnn.testing.fixtures import localhost_computer
from aiida_qrnn.testing.models import small_qrnn_node
from aiida_qrnn.testing.structures import build_ethylene_glycol_clusters
from aiida_qrnn.workchains.label import LabelWorkChain
from aiida_qrnn.workchains.properties import PropertiesWorkChain
from aiida_qrnn.workchains.scans import PairScanWorkChain
from aiida_qrnn.workchains.score import ScoreWorkChain
from aiida_qrnn.workchains.train import TrainWorkChain

TINY_TRAINING = {'model': {'charge_hidden': [8], 'energy_hidden': [8], 'dispersion': None},
                 'training': {'max_epochs': 2, 'batch_size': 4, 'validation_fraction': 0.2}}


class ReportGraphWorkChain(WorkChain):
    """A miniature of the paper's workflow: label, train a committee, score in two shards, select, label the
    selection, liquid properties with OPLS-AA, a pair scan with the trained model."""

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('training_clusters', valid_type=ClusterSetData)
        spec.input('candidates', valid_type=ClusterSetData)
        spec.input('frame', valid_type=orm.StructureData)
        spec.input('xtb', valid_type=orm.AbstractCode)
        spec.input('exec_code', valid_type=orm.AbstractCode)
        spec.input('md_model', valid_type=ModelData, help='A random small QRNN for the QRNN properties series.')
        spec.outline(cls.label_and_properties, cls.train, cls.score_and_scan, cls.select, cls.label_selection,
                     cls.check)
        spec.exit_code(400, 'ERROR_CHILD_FAILED', message='{child} failed: {message}')

    def _label(self, clusters: ClusterSetData):
        return self.submit(LabelWorkChain, clusters=clusters, engine=orm.Str('xtb'), code=self.inputs.xtb,
                           batch_size=orm.Int(100))

    def _qrnn_properties(self, model: ModelData):
        """Tiny properties with a model that has no learned short-range repulsion: one replica, closer contacts
        allowed (as in the properties work chain's own test of a random model)."""
        return self.submit(PropertiesWorkChain.get_builder_from_protocol(
            self.inputs.exec_code, 'tiny', model=model,
            overrides={'cells': {'replicas': 1}, 'npt': {'min_distance_A': 0.2}, 'nvt': {'min_distance_A': 0.2}}))

    def label_and_properties(self):
        classical = PropertiesWorkChain.get_builder_from_protocol(self.inputs.exec_code, 'tiny')
        return ToContext(labelled=self._label(self.inputs.training_clusters), properties=self.submit(classical),
                         properties_qrnn=self._qrnn_properties(self.inputs.md_model))

    def train(self):
        return ToContext(committee=self.submit(
            TrainWorkChain, committee_size=orm.Int(2),
            train={'code': self.inputs.exec_code, 'datasets': {'initial': self.ctx.labelled.outputs.clusters},
                   'parameters': orm.Dict(TINY_TRAINING)}, metadata={'call_link_label': 'committee'}))

    def score_and_scan(self):
        models = dict(self.ctx.committee.outputs.models)
        score = self.submit(ScoreWorkChain, clusters=self.inputs.candidates, shard_size=orm.Int(5),
                            score={'code': self.inputs.exec_code, 'models': models,
                                   'parameters': orm.Dict({'dtype': 'float64'})})
        scan = self.submit(PairScanWorkChain, structure=self.inputs.frame, parameters=orm.Dict({'n_points': 5}),
                           model=models['member_0'], reference={'engine': orm.Str('xtb'), 'code': self.inputs.xtb})
        return ToContext(score=score, scan=scan, properties_trained=self._qrnn_properties(models['member_0']))

    def select(self):
        self.ctx.selection = select_for_labelling(
            self.inputs.candidates, self.ctx.score.outputs.scores,
            orm.Dict({'rule': 'top_k_random', 'k': 2, 'k_random': 2, 'seed': 0}))

    def label_selection(self):
        return ToContext(selected=self._label(self.ctx.selection['clusters']))

    def check(self):
        for name in ('labelled', 'properties', 'properties_qrnn', 'properties_trained', 'committee', 'score', 'scan',
                     'selected'):
            if not self.ctx[name].is_finished_ok:
                child = self.ctx[name]
                return self.exit_codes.ERROR_CHILD_FAILED.format(child=f'{child.process_label}<{child.pk}>',
                                                                 message=child.exit_message)
        return None


@pytest.fixture(scope='module')
def graph(aiida_profile, tmp_path_factory):
    """The finished work chain and its report directory (built once for the module: about a minute)."""
    computer = localhost_computer(tmp_path_factory.mktemp('work'), 'localhost-report')
    xtb = orm.InstalledCode(computer=computer, filepath_executable=XTB, label='xtb-report').store()
    exec_code = orm.InstalledCode(computer=computer, filepath_executable=EXEC, label='exec-report').store()
    _, node = run_get_node(
        ReportGraphWorkChain,
        training_clusters=ClusterSetData.from_atoms(build_ethylene_glycol_clusters(12, seed=71)),
        candidates=ClusterSetData.from_atoms(build_ethylene_glycol_clusters(9, seed=72)),
        frame=orm.StructureData(ase=pack_cell(1, 10, density_g_cm3=0.9, seed=1)), xtb=xtb, exec_code=exec_code,
        md_model=small_qrnn_node(),
    )
    assert node.is_finished_ok, node.exit_message
    lines = []
    directory = tmp_path_factory.mktemp('report')
    path = write_report(node, directory, echo=lines.append)
    return node, path, lines


def _called(node, process_type: str) -> list:
    return sorted((process for process in node.called_descendants if process.process_type == process_type),
                  key=lambda process: process.pk)


def test_collect_report_finds_every_kind_of_result(graph):
    node, _, _ = graph
    report = collect_report(node)
    jobs = _called(node, 'aiida.calculations:qrnn.train')
    assert [run.calculation.pk for run in report.training] == [job.pk for job in jobs]
    assert {run.member for run in report.training} == {'member_0', 'member_1'}
    assert {run.round for run in report.training} == {1}
    assert all(run.n_clusters == 12 for run in report.training)

    (entry,) = report.selection
    selection = next(process for process in node.called_descendants
                     if process.process_label == 'select_for_labelling')
    assert entry.selection.pk == selection.pk
    shards = _called(node, 'aiida.calculations:qrnn.score')
    assert len(shards) == 2 and [job.pk for job in entry.score_jobs] == [job.pk for job in shards]
    labelled = _called(node, 'aiida.workflows:qrnn.label')[-1].outputs.clusters
    assert [reference.pk for reference in entry.references] == [labelled.pk]
    # Reference energies: exactly the selected candidates, with the energies of the labelled set (same ids).
    known = np.flatnonzero(np.isfinite(entry.reference_energy))
    assert known.tolist() == sorted(selection.outputs.indices.get_list())
    arrays = labelled.get_arrays()
    by_id = dict(zip(arrays.ids, arrays.labels['energy'], strict=True))
    candidate_ids = entry.candidates.get_arrays().ids
    assert entry.reference_energy[known].tolist() == [by_id[candidate_ids[index]] for index in known]

    assert sorted(run.method for run in report.properties) == ['OPLS-AA', 'QRNN', 'QRNN']
    assert {run.model.uuid for run in report.properties if run.method == 'QRNN'} == {
        node.inputs.md_model.uuid, report.training[0].model.uuid}
    assert {run.stage for run in report.training} == {'committee'}
    assert [scan.kind for scan in report.scans] == ['pair']
    assert report.scans[0].model.uuid == report.training[0].model.uuid
    assert report.ignored == []


def test_report_files_and_sources(graph):
    node, path, lines = graph
    directory = path.parent
    report = collect_report(node)
    text = path.read_text()
    scan = report.scans[0]
    expected = ['report.md', 'properties.csv', 'training.csv', 'rho_f_histograms.png', 'error_vs_rho_f_round1.png',
                f'pair_scan_{scan.workchain.pk}.png', 'density_vs_chain_length.png',
                'heat_capacity_vs_chain_length.png', 'self_diffusivity_vs_chain_length.png',
                'radius_of_gyration_vs_chain_length.png', 'occo_torsion_distribution.png', 'oh_rdf_distribution.png',
                'radius_of_gyration_distribution.png', *(f'parity_model_{run.model.pk}.png' for run in report.training)]
    for name in expected:
        assert (directory / name).is_file(), name
        if name.endswith('.png'):
            assert (directory / name).read_bytes()[:4] == b'\x89PNG'
            assert f']({name})' in text  # every figure is shown in report.md
    assert '_Skipped' not in text
    assert any(line.startswith('Properties against chain length') for line in lines)
    entry = report.selection[0]
    for source in (*(run.calculation for run in report.training), *(run.model for run in report.training),
                   *(run.datasets['initial'] for run in report.training), entry.selection, *entry.score_jobs,
                   *entry.references, entry.candidates, scan.workchain, scan.curves,
                   *(node for run in report.properties for node in (run.workchain, run.properties['n001'],
                                                                    run.distributions['n001']))):
        assert f'<{source.pk}> (`{source.uuid}`)' in text, source
    density = text.split('![density_vs_chain_length]')[1].split('\n\n')[1]  # its caption names every run
    assert all(f'{ref(run.workchain)} (`{run.workchain.uuid}`)' in density for run in report.properties)


def test_tables_equal_the_node_values(graph):
    node, path, _ = graph
    directory = path.parent
    report = collect_report(node)

    trained = report.training[0].model
    # Two QRNN models: the series are told apart by model, and by the training stage when a work chain trained it.
    runs = {'OPLS-AA' if run.model is None else f'QRNN committee ({ref(trained)})' if run.model.uuid == trained.uuid
            else f'QRNN ({ref(run.model)})': run for run in report.properties}
    with (directory / 'properties.csv').open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((row['method'], row['property']) for row in rows) == sorted(
        (method, name) for method, run in runs.items() for name in run.properties['n001'].get_dict())
    text = path.read_text()
    for row in rows:
        run = runs[row['method']]
        entry = run.properties['n001'].get_dict()[row['property']]
        assert float(row['value']) == entry['value'] and float(row['uncertainty']) == entry['uncertainty']
        assert row['n_units'] == '1' and row['unit'] == entry['unit'] and int(row['n_replicas']) == entry['n_replicas']
        assert int(row['node_pk']) == run.properties['n001'].pk and row['workchain_uuid'] == run.workchain.uuid
        assert row['model_pk'] == (str(run.model.pk) if run.model is not None else '')
        if row['property'] in ('density', 'heat_capacity'):
            experiment = experimental(row['property'], 300.0).values[0]
            assert float(row['experiment']) == pytest.approx(experiment)
            assert float(row['deviation_from_experiment_percent']) == pytest.approx(
                100 * (entry['value'] - experiment) / experiment)
        else:
            assert row['experiment'] == '' and row['deviation_from_experiment_percent'] == ''
        cells = [row['property'], '1', row['method'], *map(format_number, (entry['value'], entry['uncertainty']))]
        assert re.search(r'\| ' + r' \| '.join(map(re.escape, cells)) + r' \|', text), row

    with (directory / 'training.csv').open() as handle:
        training = {int(row['model_pk']): row for row in csv.DictReader(handle)}
    for run in report.training:
        row = training[run.model.pk]
        assert int(row['n_clusters']) == 12 and int(row['n_train']) + int(row['n_validation']) == 12
        assert float(row['forces_rmse']) == run.model.metrics['forces_rmse']
        # The parity plot re-evaluates the stored model on the split's validation clusters: same error as stored.
        caption = text.split(f'Parity of {run.calculation.outputs.model.__class__.__name__}<{run.model.pk}>')[1]
        rmse = float(caption.split('energy/atom RMSE ')[1].split(' meV')[0])
        assert rmse == pytest.approx(1000 * run.model.metrics['energy_per_atom_rmse'], rel=1e-3)

    # The active-learning table: mean ε per atom of the highest-ρ^f part equals |E_ref - E_committee| / N_atoms.
    entry = report.selection[0]
    top = np.setdiff1d(entry.selected, entry.random)
    labelled = entry.references[0].get_arrays()
    by_id = dict(zip(labelled.ids, labelled.labels['energy'], strict=True))
    candidates = entry.candidates.get_arrays()
    committee = entry.scores.get_array('energy')
    errors = [abs(by_id[candidates.ids[i]] - committee[i]) / np.diff(candidates.offsets)[i] for i in top]
    row = next(line for line in text.splitlines() if line.startswith(f'| 1 | {entry.selection.process_label}<'))
    assert f'| {format_number(1000 * float(np.mean(errors)))} |' in row


def test_sections_without_results_are_skipped_with_a_note(graph, tmp_path):
    node, _, _ = graph
    committee = _called(node, 'aiida.workflows:qrnn.train')[0]
    lines = []
    text = write_report(committee, tmp_path, echo=lines.append).read_text()
    for note in ('no ScoreCalculation or select_for_labelling', 'no finished PropertiesWorkChain',
                 'no finished PairScanWorkChain or TorsionScanWorkChain'):
        assert f'_Skipped: {note}' in text and any(note in line for line in lines)
    assert 'Parity of ModelData<' in text
    with (tmp_path / 'properties.csv').open() as handle:
        assert len(list(csv.reader(handle))) == 1  # the header only


def test_load_workflow_refuses_data_and_missing_nodes(graph):
    node, _, _ = graph
    assert load_workflow(node.pk).uuid == node.uuid
    with pytest.raises(ReportError, match='not a workflow'):
        load_workflow(node.inputs.candidates.pk)
    with pytest.raises(ReportError, match='no node 987654321'):
        load_workflow(987654321)


@pytest.fixture(scope='module')
def loop_report(active_learning_run, tmp_path_factory) -> tuple[Path, str]:
    """The report of the session's active-learning run: its directory and the text of report.md."""
    directory = tmp_path_factory.mktemp('loop-report')
    return directory, write_report(active_learning_run[2], directory).read_text()


def test_active_learning_rounds(active_learning_run, loop_report):
    _, results, node = active_learning_run  # the session's two rounds of ActiveLearningWorkChain on water
    report = collect_report(node)
    rounds = results['rounds']
    # the first model, then per round a committee of two and the transfer-learned model
    assert [(run.round, run.stage) for run in report.training] == [
        (1, 'model_round_00'), (2, 'committee_round_01'), (2, 'committee_round_01'), (3, 'model_round_01'),
        (4, 'committee_round_02'), (4, 'committee_round_02'), (5, 'model_round_02')]
    assert [run.n_clusters for run in report.training if run.stage.startswith('model')] == [8, 11, 14]
    assert report.training[-1].model.uuid == results['model'].uuid
    for entry, name in zip(report.selection, ('round_01', 'round_02'), strict=True):
        selection = rounds[name]['selected'].creator
        assert entry.selection.pk == selection.pk
        # only this round's scoring, not the older rounds' jobs in its ancestry
        assert [job.outputs.scores.uuid for job in entry.score_jobs] == [rounds[name]['scores'].uuid]
        labelled = np.flatnonzero(np.isfinite(entry.reference_energy))
        assert set(selection.outputs.indices.get_list()) <= set(labelled.tolist())
    directory, text = loop_report
    assert (directory / f'parity_model_{results["model"].pk}.png').is_file()
    assert (directory / 'error_vs_rho_f_round2.png').is_file() and '| 2 | model_round_01 | member_0 |' not in text
    assert '| 3 | model_round_01 | member_0 |' in text


def test_rounds_are_read_from_what_the_loop_recorded(active_learning_run, loop_report):
    """Each round is the loop's own record: its outputs ``rounds.round_NN`` (scores, selected, labelled), the
    ScoreWorkChain it called ``score_round_NN`` and its summary entry; nothing is matched by time or cluster id."""
    _, results, node = active_learning_run
    rounds, summary = results['rounds'], results['summary'].get_dict()
    report = collect_report(node)
    assert [entry.round for entry in report.selection] == [1, 2] == [entry['round'] for entry in summary['rounds']]
    called = {link.link_label: link.node for link in node.base.links.get_outgoing().all()}
    for entry, record in zip(report.selection, summary['rounds'], strict=True):
        name = f'round_{entry.round:02d}'
        assert entry.loop.uuid == node.uuid and entry.record == record
        assert entry.scores.uuid == rounds[name]['scores'].uuid
        assert entry.candidates.uuid == called[f'score_{name}'].inputs.clusters.uuid
        assert entry.selection.uuid == rounds[name]['selected'].creator.uuid
        assert [reference.uuid for reference in entry.references] == [rounds[name]['labelled'].uuid]
        assert len(entry.candidates.get_arrays().ids) == record['candidates'] == len(entry.scores.get_array('rho_f'))
        assert len(entry.selected) == record['selected'] == rounds[name]['selected'].n_clusters
        assert np.median(entry.scores.get_array('rho_f')) == pytest.approx(record['rho_f_median'])
        # the labels the loop made for the selection are exactly the selected candidates' reference energies
        known = np.flatnonzero(np.isfinite(entry.reference_energy))
        assert sorted(known.tolist()) == sorted(entry.selected.tolist())
    _, text = loop_report
    for entry in report.selection:
        row = next(line for line in text.splitlines() if line.startswith(f'| {entry.round} | select_for_labelling<'))
        assert row.endswith(f'| {entry.record["data_clusters"]} | {ref(node)} |'), row
    assert f'{ref(node)} recorded its rounds as the outputs `rounds.round_NN`' in text
    assert f'stopped {summary["stopped"]}.' in text
