"""Small inputs for real jobs and work chains that several test modules run: a few MD steps, a committee run that
only a committee stop ends, and two rounds of the active-learning loop on water."""

from __future__ import annotations

from aiida import orm
from ase import Atoms

from aiida_qrnn.data.cluster_set import ClusterSetData

from .models import small_qrnn_node
from .structures import make_water_clusters

#: Twenty 0.5 fs steps with a frame and a checkpoint every ten.
SHORT_MD = {'n_steps': 20, 'timestep_fs': 0.5, 'trajectory_interval': 10, 'log_interval': 5, 'checkpoint_interval': 10}
#: A run far too long to finish in a test: only a committee stop (or the 60 s walltime, a failure) ends it.
ENDLESS_MD = {**SHORT_MD, 'n_steps': 1_000_000, 'committee_interval': 5, 'walltime_s': 60.0}
#: One hidden layer of 8, two epochs: the active-learning loop's training settings in tests.
TINY_TRAINING = {'model': {'charge_hidden': [8], 'energy_hidden': [8], 'dispersion': None},
                 'training': {'max_epochs': 2, 'batch_size': 4, 'validation_fraction': 0.25}}


def committee_inputs(md_code: orm.AbstractCode, cell: Atoms, settings: dict) -> dict:
    """``MdCalculation`` inputs: a QRNN run of ``cell`` with a committee of two other tiny models."""
    return {'code': md_code, 'structure': orm.StructureData(ase=cell), 'model': small_qrnn_node(0),
            'committee': {'first': small_qrnn_node(1), 'second': small_qrnn_node(2)},
            'parameters': orm.Dict(settings)}


def committee_monitor(threshold: float) -> dict[str, orm.Dict]:
    """The ``qrnn.committee_disagreement`` monitor that kills a job once the committee disagrees by ``threshold``."""
    return {'committee': orm.Dict({'entry_point': 'qrnn.committee_disagreement', 'kwargs': {'threshold': threshold}})}


def active_learning_builder(codes: dict[str, orm.AbstractCode], initial_data: ClusterSetData, **overrides):
    """Two rounds of ``ActiveLearningWorkChain`` on water: a committee of two, 14 candidates, 3 selected per round
    (2 by disagreement, 1 at random), xtb labels; ``overrides`` replace builder entries."""
    from aiida_qrnn.workchains.active_learning import ActiveLearningWorkChain

    builder = ActiveLearningWorkChain.get_builder()
    builder.clusters = initial_data
    builder.code = codes['exec']
    builder.training = orm.Dict(TINY_TRAINING)
    builder.transfer = orm.Dict({'max_epochs': 1, 'learning_rate': 5e-4})
    builder.committee_size = orm.Int(2)
    builder.candidates = {'water': ClusterSetData.from_atoms(make_water_clusters(14, seed=72))}
    builder.selection = orm.Dict({'rule': 'top_k_random', 'k': 2, 'k_random': 1, 'seed': 3})
    builder.label = {'engine': orm.Str('xtb'), 'code': codes['xtb'], 'batch_size': orm.Int(10)}
    builder.max_rounds = orm.Int(2)
    for key, value in overrides.items():
        builder[key] = value
    return builder
