"""Security: hostile names and parameters never reach a shell or an interpreter as code, model files never run
code when loaded, and every file a job writes or retrieves stays inside its working directory.

The job scripts and inputs are the real ones (``dry_run`` of the real CalcJobs), and they are really executed:
the submit script with bash and xtb, the Psi4 input with psi4. A marker file that a successful injection would
create must not exist afterwards.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import tarfile

import pytest
import torch
from aiida import orm
from aiida.engine import run_get_node

from aiida_qrnn.calculations.psi4 import Psi4Calculation
from aiida_qrnn.calculations.xtb import XtbCalculation
from aiida_qrnn.core.model.calculator import load_model
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData, ModelDataError
from aiida_qrnn.testing.structures import make_water_clusters


def hostile(marker: pathlib.Path) -> str:
    """One string that tries every quoting context at once: shell, Python strings and docstrings."""
    return f'$(touch {marker}) `touch {marker}` "; touch {marker}; \' ; touch {marker} """; open(r"{marker}", "w")#'


def dry_run(process_class, tmp_path: pathlib.Path, **inputs) -> tuple[pathlib.Path, dict]:
    """The folder the real ``prepare_for_submission`` and the scheduler plugin wrote, and the node's attributes."""
    metadata = {**inputs.pop('metadata', {}), 'dry_run': True, 'store_provenance': False}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # AiiDA writes dry runs below the working directory
    try:
        _, node = run_get_node(process_class, **inputs, metadata=metadata)
    finally:
        os.chdir(cwd)
    return pathlib.Path(node.dry_run_info['folder']), node.base.attributes.all


def assert_stays_inside(folder: pathlib.Path, attributes: dict) -> None:
    """Inputs are plain files in the job folder; retrieved names are relative patterns that cannot climb out."""
    for path in folder.rglob('*'):
        assert path.resolve().is_relative_to(folder.resolve()) and not path.is_symlink(), path
    for entry in attributes['retrieve_list']:
        name = entry if isinstance(entry, str) else entry[0]
        assert not name.startswith('/') and '..' not in pathlib.PurePosixPath(name).parts, name


@pytest.fixture
def slurm_computer(aiida_computer):
    return aiida_computer(label='hostile-slurm', scheduler_type='core.slurm', transport_type='core.local')


def test_hostile_labels_and_sources_never_reach_a_shell(aiida_profile, aiida_localhost, slurm_computer, tmp_path):
    marker = tmp_path / 'pwned'
    evil = hostile(marker)
    images = make_water_clusters(2, seed=3)
    for atoms in images:
        atoms.info['source'] = evil
    clusters = ClusterSetData.from_atoms(images).store()
    metadata = {'label': evil, 'description': evil,
                'options': {'resources': {'num_machines': 1}, 'environment_variables': {'QRNN_NOTE': evil}}}

    # On SLURM: the #SBATCH lines carry no user text except what AiiDA escapes.
    code = orm.InstalledCode(label='xtb', computer=slurm_computer, filepath_executable='/usr/bin/xtb').store()
    folder, attributes = dry_run(XtbCalculation, tmp_path, code=code, clusters=clusters,
                                 metadata=metadata)
    script = (folder / '_aiidasubmit.sh').read_text()
    assert evil not in script.replace(f'export QRNN_NOTE={shlex.quote(evil)}', '')
    assert_stays_inside(folder, attributes)
    with tarfile.open(folder / 'inputs.tar') as archive:
        assert archive.getnames() == ['c000000.xyz', 'c000001.xyz']
        assert all(evil not in archive.extractfile(member).read().decode() for member in archive.getmembers())
    assert evil not in (folder / 'run_clusters.sh').read_text()

    # On this machine: the generated script, run for real by bash with the real xtb, labels and touches nothing.
    code = orm.InstalledCode(label='xtb-local', computer=aiida_localhost, filepath_executable=shutil.which('xtb'))
    code.store()
    folder, attributes = dry_run(XtbCalculation, tmp_path, code=code, clusters=clusters,
                                 metadata=metadata)
    result = subprocess.run(['bash', '_aiidasubmit.sh'], cwd=folder, capture_output=True, text=True, timeout=120,
                            env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stderr
    with tarfile.open(folder / 'outputs.tar') as archive:
        assert {'c000000.gradient', 'c000001.gradient'} <= set(archive.getnames())
    echoed = subprocess.run(['bash', '-c', f'export QRNN_NOTE={shlex.quote(evil)}; printf %s "$QRNN_NOTE"'],
                            capture_output=True, text=True, check=True).stdout
    assert echoed == evil
    assert not marker.exists()


def run_psi4_input(tmp_path: pathlib.Path, aiida_localhost, method: str, guess: str) -> pathlib.Path:
    """Write the real Psi4 input of one water molecule with these settings and run psi4 on it; its folder."""
    psi4 = shutil.which('psi4')
    if psi4 is None:
        pytest.skip('psi4 is not on PATH')
    code = orm.InstalledCode(label=f'psi4-{len(list(tmp_path.iterdir()))}', computer=aiida_localhost,
                             filepath_executable=psi4).store()
    clusters = ClusterSetData.from_atoms(make_water_clusters(1, seed=4)).store()
    parameters = orm.Dict({'method': method, 'basis': 'sto-3g', 'options': {'guess': guess}})
    folder, attributes = dry_run(Psi4Calculation, tmp_path, code=code, clusters=clusters, parameters=parameters,
                                 metadata={'options': {'resources': {'num_machines': 1}}})
    assert_stays_inside(folder, attributes)
    subprocess.run([psi4, '-n', '1', 'c000000.in', 'c000000.out'], cwd=folder, capture_output=True, text=True,
                   timeout=120, env={**os.environ, 'OMP_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1'})
    return folder


def test_hostile_psi4_parameters_stay_data(aiida_profile, aiida_localhost, tmp_path, monkeypatch):
    """A Psi4 option value and a method name built to break out of their quotes reach Psi4 intact, as values: it
    refuses the option value as an invalid choice, and nothing else happens."""
    marker = tmp_path / 'pwned'
    evil = hostile(marker)
    folder = run_psi4_input(tmp_path, aiida_localhost, f'hf{evil}', evil)
    record = json.loads((folder / 'c000000.json').read_text())
    assert record['status'] == 'failed' and 'is not a valid choice' in record['message'], record
    assert not marker.exists()


@pytest.mark.parametrize(('method', 'guess'), [('hf', 'sad # not a comment'), ('hf"""', 'sad')])
def test_psi4_input_survives_odd_characters(aiida_profile, aiida_localhost, tmp_path, method, guess):
    folder = run_psi4_input(tmp_path, aiida_localhost, method, guess)
    assert (folder / 'c000000.json').exists()


def test_hostile_d3bj_method_is_refused(aiida_profile, aiida_localhost):
    clusters = ClusterSetData.from_atoms(make_water_clusters(1, seed=5))
    builder = Psi4Calculation.get_builder()
    builder.clusters = clusters
    with pytest.raises(ValueError, match='no D3\\(BJ\\) parameters'):
        builder.parameters = orm.Dict({'method': 'x"""; import os-d3bj', 'basis': 'sto-3g'})


class PickleBomb:
    """Unpickling this touches a file: what a malicious ``.pt`` would do with ``torch.load``."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_pickled_model_files_are_refused_without_running_code(tmp_path):
    marker = tmp_path / 'pwned'
    bomb = tmp_path / 'model.pt'
    torch.save({'state_dict': PickleBomb(marker), 'config': {}}, bomb)
    with pytest.raises(ModelDataError, match=r"model\.pt': not a readable safetensors file"):
        ModelData.from_file(bomb)
    with pytest.raises(ValueError, match=r"model\.pt': not a readable safetensors file"):
        load_model(bomb)
    assert not marker.exists()
    torch.load(bomb, weights_only=False)  # the bomb is live: a pickle loader would have run it
    assert marker.exists()
