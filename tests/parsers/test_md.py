"""``MdParser`` on stored outputs of real ``aiida-qrnn-exec md`` runs (see ``fixtures/md/README.md``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiida_qrnn.parsers.md import MdParser

FIXTURES = Path(__file__).parent / 'fixtures' / 'md'


def test_finished_run_gives_every_output(generate_calc_job_node):
    results, calcfunction = MdParser.parse_from_node(generate_calc_job_node('md', 'finished'), store_provenance=False)
    assert calcfunction.exit_status == 0, calcfunction.exit_message
    log = results['log']
    assert list(log.get_array('step')) == [0, 5, 10, 15, 20]
    # Numbers from finished/md_log.csv: total = potential + kinetic in every row.
    np.testing.assert_allclose(log.get_array('total_energy_eV'),
                               log.get_array('potential_energy_eV') + log.get_array('kinetic_energy_eV'), rtol=1e-12)
    assert results['output_parameters']['checkpoint_step'] == 20
    assert results['structure'].get_ase().get_volume() == pytest.approx(log.get_array('volume_A3')[-1])
    assert results['trajectory'].filename == 'trajectory.h5'


def test_walltime_stop_is_400_with_the_checkpoint_step(generate_calc_job_node):
    results, calcfunction = MdParser.parse_from_node(generate_calc_job_node('md', 'walltime'), store_provenance=False)
    assert calcfunction.exit_status == 400
    assert results['output_parameters']['checkpoint_step'] == 1


def test_killed_job_with_a_checkpoint_is_a_walltime_stop(generate_calc_job_node):
    results, calcfunction = MdParser.parse_from_node(generate_calc_job_node('md', 'killed'), store_provenance=False)
    assert calcfunction.exit_status == 400
    assert results['output_parameters']['checkpoint_step'] == 1
    assert 'structure' not in results


def test_unstable_run_maps_its_status_onto_5xx(generate_calc_job_node):
    results, calcfunction = MdParser.parse_from_node(generate_calc_job_node('md', 'unstable'), store_provenance=False)
    assert calcfunction.exit_status == 510
    assert 'non-finite' in calcfunction.exit_message
    assert results['output_parameters']['checkpoint_step'] is None


def test_bad_input_is_410_naming_the_setting(generate_calc_job_node):
    _, calcfunction = MdParser.parse_from_node(generate_calc_job_node('md', 'bad_input'), store_provenance=False)
    assert calcfunction.exit_status == 410
    assert 'ensemble' in calcfunction.exit_message
