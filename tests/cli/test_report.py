"""``aiida-qrnn report PK`` in process (click's runner) on the test profile: a selection round, the default output
folder, and clear errors for a missing pk and for a node that is not a workflow."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from aiida import orm
from aiida.engine import WorkChain, run_get_node
from click.testing import CliRunner

from aiida_qrnn.calculations.selection import select_for_labelling
from aiida_qrnn.cli.main import cli
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.structures import make_water_clusters

SECTIONS = ('Training rounds and model metrics', 'Active learning: committee error ε against ρ^f',
            'Active learning: ρ^f per round', 'Properties against chain length', 'Pair and torsion scans')


class SelectionOnlyWorkChain(WorkChain):
    """Selects from stored scores: an active-learning round without labels, training or properties; then tries a
    trust-level window that selects nothing (the selection fails, the work chain goes on)."""

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('candidates', valid_type=ClusterSetData)
        spec.input('scores', valid_type=orm.ArrayData)
        spec.outline(cls.select)

    def select(self) -> None:
        select_for_labelling(self.inputs.candidates, self.inputs.scores,
                             orm.Dict({'rule': 'top_k_random', 'k': 3, 'k_random': 2, 'seed': 1}))
        with contextlib.suppress(ValueError):
            select_for_labelling(self.inputs.candidates, self.inputs.scores,
                                 orm.Dict({'rule': 'trust_levels', 'lower': 1e6, 'upper': 1e7}))


@pytest.fixture
def selection_workflow(aiida_profile):
    candidates = ClusterSetData.from_atoms(make_water_clusters(12, seed=5))
    scores = orm.ArrayData()
    rho_f = np.random.default_rng(2).lognormal(size=12)
    for name in ('rho_f', 'max_force_deviation', 'energy_std', 'energy'):
        scores.set_array(name, rho_f)
    _, node = run_get_node(SelectionOnlyWorkChain, candidates=candidates, scores=scores)
    assert node.is_finished_ok, node.exit_message
    return node


def invoke(profile, *arguments: str):
    return CliRunner().invoke(cli, ['-p', profile.name, 'report', *arguments], catch_exceptions=False)


def test_report_writes_the_files_and_a_progress_line_per_section(aiida_profile, selection_workflow, tmp_path):
    result = invoke(aiida_profile, str(selection_workflow.pk), '--output-dir', str(tmp_path / 'out'))
    assert result.exit_code == 0, result.output
    assert f'Report written to {tmp_path / "out" / "report.md"}' in result.output
    for section in SECTIONS:
        assert f'{section} ...' in result.output
    text = (tmp_path / 'out' / 'report.md').read_text()
    selection, failed = sorted(selection_workflow.called, key=lambda process: process.pk)
    assert f'select_for_labelling<{selection.pk}> (`{selection.uuid}`)' in text
    assert f'Not used (did not finish successfully): select_for_labelling<{failed.pk}> [excepted].' in text
    assert (tmp_path / 'out' / 'rho_f_histograms.png').read_bytes()[:4] == b'\x89PNG'
    assert 'round 1: no ε against ρ^f, no candidate has a reference label' in text
    assert '_Skipped: no finished TrainCalculation' in text and '_Skipped: no finished PropertiesWorkChain' in text
    assert '| 1 | select_for_labelling<' in text  # the round's row: 3 highest plus 2 random of 12 candidates
    row = next(line for line in text.splitlines() if line.startswith('| 1 | select_for_labelling<'))
    assert '(12) | 3 | 2 | 0 |' in row


def test_default_output_folder_is_report_pk(aiida_profile, selection_workflow, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(aiida_profile, str(selection_workflow.pk))
    assert result.exit_code == 0, result.output
    assert (tmp_path / f'report-{selection_workflow.pk}' / 'report.md').is_file()


def test_missing_pk_and_data_node_are_clear_errors(aiida_profile, selection_workflow):
    missing = invoke(aiida_profile, '987654321')
    assert missing.exit_code == 2 and 'Invalid value for PK: no node 987654321' in missing.output
    data = invoke(aiida_profile, str(selection_workflow.inputs.candidates.pk))
    assert data.exit_code == 2 and 'is a ClusterSetData, not a workflow' in data.output
    function = min(selection_workflow.called, key=lambda process: process.pk)
    calculation = invoke(aiida_profile, str(function.pk))
    assert calculation.exit_code == 2 and 'is a select_for_labelling, not a workflow' in calculation.output
