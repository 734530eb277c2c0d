"""The pytest plugin of the shared fixtures; ``tests/conftest.py`` loads it beside ``aiida.tools.pytest_fixtures``:

    pytest_plugins = ['aiida.tools.pytest_fixtures', 'aiida_qrnn.testing.fixtures']

Codes run the real executables on localhost (:mod:`.codes`); ``generate_calc_job_node`` makes a finished job from
stored outputs of a real run, as aiida-quantumespresso's ``tests/conftest.py`` does.
"""

from __future__ import annotations

import typing as t
from fnmatch import fnmatch
from pathlib import Path

import pytest
from aiida import orm
from aiida.common.links import LinkType
from ase import Atoms

from aiida_qrnn.core.dataset import ClusterArrays, write_cluster_set

from . import slurm
from .codes import EXEC, XTB
from .inputs import active_learning_builder
from .structures import make_water_clusters

#: The executable each job plugin runs in the tests.
EXECUTABLES = {'qrnn.xtb': XTB, 'qrnn.pyscf': EXEC, 'qrnn.train': EXEC, 'qrnn.md': EXEC, 'qrnn.classical_md': EXEC,
               'qrnn.score': EXEC}


@pytest.fixture
def water_clusters() -> list[Atoms]:
    return make_water_clusters()


@pytest.fixture
def labelled_water_clusters() -> list[Atoms]:
    return make_water_clusters(labelled=True)


@pytest.fixture
def labelled_file(tmp_path) -> Path:
    """Four randomly labelled water clusters (1-3 molecules) written as ``set.h5`` at level ``gfn2-xtb``."""
    return write_cluster_set(tmp_path / 'set.h5', ClusterArrays.from_atoms(make_water_clusters(4, labelled=True)),
                             level_of_theory='gfn2-xtb')


@pytest.fixture
def installed_code(aiida_code_installed) -> t.Callable[[str], orm.InstalledCode]:
    """A factory: the localhost code of a job plugin (``'qrnn.xtb'``, ...) running its real executable."""

    def factory(plugin: str) -> orm.InstalledCode:
        if plugin not in EXECUTABLES:
            raise ValueError(f'no test executable for plugin {plugin!r}; known: {sorted(EXECUTABLES)}')
        return aiida_code_installed(default_calc_job_plugin=plugin, filepath_executable=EXECUTABLES[plugin])

    return factory


def code_fixture(plugin: str, name: str):
    """A fixture ``name``: the localhost code of ``plugin`` from :func:`installed_code`."""

    def fixture(installed_code) -> orm.InstalledCode:
        return installed_code(plugin)

    fixture.__doc__ = f'The localhost code of ``{plugin}`` running {EXECUTABLES[plugin]}.'
    return pytest.fixture(fixture, name=name)


xtb_code = code_fixture('qrnn.xtb', 'xtb_code')
pyscf_code = code_fixture('qrnn.pyscf', 'pyscf_code')
train_code = code_fixture('qrnn.train', 'train_code')
md_code = code_fixture('qrnn.md', 'md_code')
classical_md_code = code_fixture('qrnn.classical_md', 'classical_md_code')
score_code = code_fixture('qrnn.score', 'score_code')


@pytest.fixture
def codes(xtb_code, train_code) -> dict[str, orm.InstalledCode]:
    """The two codes of the active-learning loop: ``xtb`` labels, ``exec`` trains, scores and runs MD."""
    return {'xtb': xtb_code, 'exec': train_code}


def localhost_computer(workdir: Path, label: str) -> orm.Computer:
    """A stored, configured localhost computer ``label`` working in ``workdir``, polled without delay; for fixtures
    wider than a test (the ``aiida_localhost`` fixture is function-scoped)."""
    computer = orm.Computer(label=label, hostname='localhost', transport_type='core.local',
                            scheduler_type='core.direct', workdir=str(workdir)).store()
    computer.set_minimum_job_poll_interval(0.0)
    computer.set_default_mpiprocs_per_machine(1)
    computer.configure()
    return computer


@pytest.fixture(scope='session')
def active_learning_run(aiida_profile, tmp_path_factory) -> tuple[orm.Node, dict, orm.WorkflowNode]:
    """Two finished rounds of ``ActiveLearningWorkChain`` on water (:func:`.inputs.active_learning_builder`) from 8
    clusters labelled by xtb, run once for the session: ``(initial labelled data, results, node)``. The loop test
    (``tests/workchains/test_active_learning.py``) and the report's test of recorded rounds read the same run."""
    from aiida.engine import run_get_node

    from aiida_qrnn.data.cluster_set import ClusterSetData
    from aiida_qrnn.workchains.label import LabelWorkChain

    computer = localhost_computer(tmp_path_factory.mktemp('active-learning'), 'localhost-active-learning')
    codes = {'xtb': orm.InstalledCode(computer=computer, filepath_executable=XTB, label='xtb-active-learning',
                                      default_calc_job_plugin='qrnn.xtb').store(),
             'exec': orm.InstalledCode(computer=computer, filepath_executable=EXEC, label='exec-active-learning',
                                       default_calc_job_plugin='qrnn.train').store()}
    labelled, node = run_get_node(LabelWorkChain, clusters=ClusterSetData.from_atoms(make_water_clusters(8, seed=71)),
                                  engine=orm.Str('xtb'), code=codes['xtb'], batch_size=orm.Int(8))
    assert node.is_finished_ok, node.exit_message
    results, node = run_get_node(active_learning_builder(codes, labelled['clusters']))
    assert node.is_finished_ok, node.exit_message
    return labelled['clusters'], results, node


@pytest.fixture
def calc_job_fixtures(request) -> Path:
    """The folder of stored job outputs, one sub-folder per plugin and case: ``tests/parsers/fixtures``."""
    return Path(request.config.rootpath) / 'tests' / 'parsers' / 'fixtures'


@pytest.fixture
def generate_calc_job_node(aiida_localhost, calc_job_fixtures):
    """A factory: a stored ``CalcJobNode`` of plugin ``qrnn.<plugin>``, as after a real run.

    Its retrieved folder holds the files of ``<calc_job_fixtures>/<plugin>/<case>`` that match ``retrieve`` (all
    when None, none when empty); ``inputs`` are linked to it (stored first) as its input set.
    """

    def factory(plugin: str, case: str, *, inputs: dict[str, orm.Data] | None = None,
                retrieve: t.Sequence[str] | None = None) -> orm.CalcJobNode:
        folder = calc_job_fixtures / plugin / case
        if not folder.is_dir():
            raise FileNotFoundError(f'no stored outputs for {plugin!r} case {case!r}: {folder} is not a folder')
        node = orm.CalcJobNode(computer=aiida_localhost, process_type=f'aiida.calculations:qrnn.{plugin}')
        for link_label, data in (inputs or {}).items():
            node.base.links.add_incoming(data.store(), LinkType.INPUT_CALC, link_label)
        node.store()
        retrieved = orm.FolderData()
        for path in sorted(folder.iterdir()):
            if retrieve is None or any(fnmatch(path.name, pattern) for pattern in retrieve):
                retrieved.base.repository.put_object_from_file(path, path.name)
        retrieved.base.links.add_incoming(node, LinkType.CREATE, 'retrieved')
        retrieved.store()
        return node

    return factory


@pytest.fixture(scope='session')
def local_cluster() -> t.Iterator[str]:
    """The one-node SLURM cluster with SSH for the session (skipped, with the reason, where it cannot start)."""
    reason = slurm.why_no_cluster()
    if reason:
        pytest.skip(reason)
    with slurm.local_cluster() as host:
        yield host
