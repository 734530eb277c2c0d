"""``MdCalculation`` run for real (``aiida-qrnn-exec md``) on localhost, with the OPLS-AA baseline and a QRNN."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms

from aiida_qrnn.calculations.md import MdCalculation
from aiida_qrnn.core.structures import density_g_cm3, pack_cell

# The package's executable, installed with the package into the venv.
EXECUTABLE = shutil.which('aiida-qrnn-exec') or str(Path(sys.executable).parent / 'aiida-qrnn-exec')
SHORT = {'n_steps': 20, 'timestep_fs': 0.5, 'trajectory_interval': 10, 'log_interval': 5, 'checkpoint_interval': 10}


def small_qrnn_model():
    """A random-weight QRNN with small layers, float64 (pipeline tests only: its forces are not physical)."""
    import torch

    from aiida_qrnn.core.model.aev import AEVConfig
    from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig

    torch.manual_seed(0)
    config = QRNNConfig(
        aev=AEVConfig(radial_shifts=(0.9, 1.8, 2.7, 3.6, 4.5), angular_shifts=(0.9, 2.2), angle_sections=(0.4, 2.0)),
        charge_hidden=(8,), energy_hidden=(8,), dispersion=None,
    )
    return QRNN(config).double()


def small_qrnn_node():
    """:func:`small_qrnn_model` as a ``ModelData`` node."""
    from aiida_qrnn.data.model import ModelData

    model = small_qrnn_model()
    return ModelData(model.state_dict(), config=model.config.to_dict(), elements=list(model.config.elements))


@pytest.fixture(scope='module')
def tiny_cell() -> Atoms:
    """Ten ethylene glycol molecules (100 atoms) at 0.9 g/cm³."""
    return pack_cell(1, 10, density_g_cm3=0.9, seed=1)


@pytest.fixture
def md_code(aiida_code_installed) -> orm.InstalledCode:
    return aiida_code_installed(default_calc_job_plugin='qrnn.md', filepath_executable=EXECUTABLE)


@pytest.mark.slow  # ~20 s; the tiny PropertiesWorkChain runs classical NPT jobs in CI
def test_classical_npt_gives_trajectory_log_and_final_cell(md_code, tiny_cell):
    results, node = run_get_node(
        MdCalculation, code=md_code, structure=orm.StructureData(ase=tiny_cell),
        parameters=orm.Dict({**SHORT, 'ensemble': 'npt', 'barostat_tau_fs': 500.0}),
    )
    assert node.exit_status == 0, node.exit_message
    log = results['log']
    assert list(log.get_array('step')) == [0, 5, 10, 15, 20]
    final = results['structure'].get_ase()
    assert density_g_cm3(final) == pytest.approx(log.get_array('density_g_cm3')[-1], rel=1e-9)
    assert log.get_array('density_g_cm3')[-1] != pytest.approx(0.9, abs=1e-6)  # the barostat moved the cell
    assert results['output_parameters']['name'] == 'FINISHED'
    with results['trajectory'].as_path() as path:
        from aiida_qrnn.core.md import read_trajectory

        frames = read_trajectory(path)
    assert list(frames.steps) == [0, 10, 20]
    assert np.allclose(frames.positions[-1], final.positions)


def test_qrnn_walltime_stop_then_continue_from_the_parent_folder(md_code, tiny_cell):
    """walltime_s = 0 stops after one step (400, checkpoint); the child continues to n_steps with the same files."""
    structure = orm.StructureData(ase=tiny_cell)
    model = small_qrnn_node()
    stopped, first = run_get_node(
        MdCalculation, code=md_code, structure=structure, model=model,
        parameters=orm.Dict({**SHORT, 'walltime_s': 0.0}),
    )
    assert first.exit_status == 400, first.exit_message
    assert stopped['output_parameters']['checkpoint_step'] == 1
    results, second = run_get_node(
        MdCalculation, code=md_code, structure=structure, model=model, parameters=orm.Dict(SHORT),
        parent_folder=first.outputs.remote_folder,
    )
    assert second.exit_status == 0, second.exit_message
    assert list(results['log'].get_array('step')) == [0, 5, 10, 15, 20]
    assert np.isfinite(results['log'].get_array('potential_energy_eV')).all()


@pytest.mark.slow  # ~20 s; the 410 mapping is also tested on a stored output (tests/parsers/test_md.py)
def test_bad_input_is_refused(md_code):
    """Methanol passes the AiiDA validators; the job's OPLS-AA typing refuses it (410). Unknown settings: validator."""
    from ase.build import molecule

    box = Atoms(cell=np.eye(3) * 12.0, pbc=True)
    for index in range(4):
        copy = molecule('CH3OH')
        copy.positions += 3.0 * np.array([index % 2, index // 2, 1]) + 1.5
        box += copy
    _, node = run_get_node(MdCalculation, code=md_code, structure=orm.StructureData(ase=box),
                           parameters=orm.Dict(SHORT))
    assert node.exit_status == 410, node.exit_message
    with pytest.raises(ValueError, match='timestep'):
        run_get_node(MdCalculation, code=md_code, structure=orm.StructureData(ase=box),
                     parameters=orm.Dict({'timestep': 1.0}))
