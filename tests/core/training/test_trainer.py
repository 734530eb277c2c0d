"""Trainer: learning, overfitting a teacher to near zero, exact resume, transfer learning, committees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_qrnn.core.model.calculator import load_model, save_model
from aiida_qrnn.core.model.qrnn import evaluate
from aiida_qrnn.core.training import (
    InMemoryClusters,
    MultitaskLoss,
    Trainer,
    TrainingConfig,
    TrainingStatus,
    member_config,
    parent_model,
    plain_model,
    predict,
    split_indices,
    train_committee,
)
from aiida_qrnn.testing.models import teacher_labelled_clusters, tiny_model

SMALL = {'batch_size': 4, 'validation_batch_size': 8, 'weight_decay': 0.0, 'learning_rate': 3e-3}


@pytest.fixture(scope='module')
def source() -> InMemoryClusters:
    return InMemoryClusters(teacher_labelled_clusters(20))


def test_loss_decreases_on_a_small_set(source, tmp_path):
    train, validation = split_indices(len(source), 0.2, seed=0)
    trainer = Trainer(tiny_model(1), source, train, validation, TrainingConfig(max_epochs=4, **SMALL), tmp_path)
    result = trainer.fit()
    assert result.status == TrainingStatus.FINISHED and result.epochs == 4
    scores = [row['validation_score'] for row in trainer.history]
    energies = [row['validation_energy_rmse'] for row in trainer.history]
    assert scores[-1] < 0.7 * scores[0] and energies[-1] < energies[0]
    header = (tmp_path / 'metrics.csv').read_text().splitlines()[0].split(',')
    for column in ('validation_energy_mae', 'validation_forces_rmse', 'validation_charges_mae', 'weight_forces',
                   'train_charges_mse', 'learning_rate'):
        assert column in header


def test_overfits_a_teacher_to_near_zero_error(source, tmp_path):
    """20 clusters labelled by a random QRNN of the same architecture: a student reaches the labels.

    The charges, the forces and the energy all depend on both charge-equilibration passes; the errors fall by
    factors of 30 to 1000, which needs gradients through both passes (the charge network is shared by them).
    """
    everything = np.arange(len(source))
    config = TrainingConfig(batch_size=20, max_epochs=100, learning_rate=1e-2, weight_decay=0.0,
                            learned_weights=False, weight_norm=False, gradient_clip=None, scheduler_patience=10)
    trainer = Trainer(tiny_model(1), source, everything, everything, config, tmp_path)
    before = trainer.validate()
    trainer.fit()
    after = trainer.validate()
    assert after['energy_rmse'] < 2e-3 * before['energy_rmse']
    assert after['charges_rmse'] < 1e-2 * before['charges_rmse']
    assert after['forces_rmse'] < 5e-2 * before['forces_rmse']
    assert after['dipole_rmse'] < 5e-2 * before['dipole_rmse']


def test_energy_loss_alone_reaches_the_charge_network(source):
    """The energy depends on q⁽²⁾, which depends on q⁽¹⁾: the charge network gets gradients from energies alone."""
    model = tiny_model(1)
    batch = source.batch(np.arange(4))
    output = evaluate(model, batch.positions, batch.numbers, batch.system_index, batch.cells, batch.pbc,
                      batch.total_charge, compute_forces=True, create_graph=True)
    total, _ = MultitaskLoss(('energy', 'forces'))(output, batch)
    total.backward()
    for network in model.charge_networks.networks:
        assert network[0].weight.grad.abs().sum() > 0


def test_resume_after_interrupts_is_bit_identical(source, tmp_path):
    """One batch per call (max_time_s=0) with a fresh Trainer each time gives the uninterrupted run's weights."""
    train, validation = split_indices(len(source), 0.2, seed=0)
    config = TrainingConfig(max_epochs=2, **SMALL)
    straight = Trainer(tiny_model(1), source, train, validation, config, tmp_path / 'straight')
    straight.fit()
    calls = 0
    while True:
        calls += 1
        resumed = Trainer(tiny_model(1), source, train, validation, TrainingConfig(max_epochs=2, max_time_s=0.0,
                                                                                  **SMALL), tmp_path / 'resumed')
        if resumed.fit().status != TrainingStatus.STOPPED_WALLTIME:
            break
    assert calls == 8  # 16 training clusters in batches of 4, two epochs: one batch per call
    expected, found = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(expected[name], found[name]) for name in expected)
    assert straight.history == resumed.history
    assert (tmp_path / 'straight' / 'metrics.csv').read_bytes() == (tmp_path / 'resumed' / 'metrics.csv').read_bytes()


def test_checkpoint_of_other_settings_is_refused(source, tmp_path):
    train, validation = split_indices(len(source), 0.2, seed=0)
    Trainer(tiny_model(1), source, train, validation, TrainingConfig(max_epochs=1, **SMALL), tmp_path).fit()
    with pytest.raises(ValueError, match=r'other training settings: \[.learning_rate.\]'):
        other = TrainingConfig(max_epochs=1, **{**SMALL, 'learning_rate': 1.0})
        Trainer(tiny_model(1), source, train, validation, other, tmp_path)


def test_transfer_learning_starts_from_the_parent(source, tmp_path):
    parent = tiny_model(7)
    parent.self_energies.copy_(torch.tensor([-13.0, -2000.0], dtype=torch.float64))
    path = save_model(parent, tmp_path / 'parent.safetensors')
    indices = np.arange(len(source))
    expected = predict(load_model(path), source, indices)
    config = TrainingConfig(max_epochs=1, freeze=('charge_networks',), **SMALL)
    trainer = Trainer(parent_model(path), source, indices[:16], indices[16:], config, tmp_path, transfer=True)
    first = predict(trainer.model, source, indices)  # weight-normalised copy of the parent, before any step
    for name in ('energy', 'forces', 'charges'):
        np.testing.assert_allclose(first[name][0], expected[name][0], rtol=1e-12, atol=1e-12)
    trainer.fit()
    child = trainer.trained_model()
    assert torch.equal(child.self_energies, parent.self_energies)  # kept, not refitted
    frozen = {name: value for name, value in child.state_dict().items() if name.startswith('charge_networks')}
    parent_state = parent.state_dict()
    assert all(torch.allclose(value, parent_state[name], rtol=1e-12, atol=1e-14) for name, value in frozen.items())
    after = predict(child, source, indices)
    assert not np.allclose(after['energy'][0], expected['energy'][0])


def test_committee_members_differ_in_split_and_seed(source, tmp_path):
    config = TrainingConfig(max_epochs=1, validation_fraction=0.4, **SMALL)
    assert [member_config(config, k).seed for k in range(3)] == [0, 1, 2]
    members = train_committee(lambda: plain_model(tiny_model(torch.seed() % 1000)).double(), source, config, 2,
                              tmp_path)
    assert len(members) == 2
    splits = [split_indices(len(source), 0.4, member_config(config, k).split_seed)[1] for k in range(2)]
    assert len(splits[0]) == 8 and not np.array_equal(splits[0], splits[1])
    first, second = (model.state_dict() for model, _ in members)
    assert not torch.equal(first['energy_networks.networks.0.0.weight'], second['energy_networks.networks.0.0.weight'])


def test_float32_training_runs(source, tmp_path):
    train, validation = split_indices(len(source), 0.2, seed=0)
    trainer = Trainer(tiny_model(1), source, train, validation, TrainingConfig(max_epochs=1, dtype='float32', **SMALL),
                      tmp_path)
    trainer.fit()
    exported = trainer.trained_model()
    assert next(exported.parameters()).dtype == torch.float32
    indices = np.arange(len(source))  # exporting leaves the weight-normalised training model intact
    np.testing.assert_allclose(predict(trainer.model, source, indices)['energy'][0],
                               predict(exported, source, indices)['energy'][0], rtol=1e-6)
    assert np.isfinite(trainer.history[-1]['validation_forces_rmse'])


def test_bad_settings_name_the_setting():
    with pytest.raises(ValueError, match='unknown training setting'):
        TrainingConfig.from_dict({'learning_rat': 1e-3})
    with pytest.raises(ValueError, match='validation_fraction'):
        TrainingConfig(validation_fraction=1.0)
    with pytest.raises(ValueError, match="either 'charges' or 'dipole'"):
        TrainingConfig(tasks=('energy', 'charges', 'dipole'))
    with pytest.raises(ValueError, match='energy_loss'):
        TrainingConfig(energy_loss='per_cluster')


def test_fixed_force_heavy_per_atom_loss_learns(source, tmp_path):
    """The TorchANI-style loss (energy per atom + 10 · force components², charges weight 1) lowers every error."""
    train, validation = split_indices(len(source), 0.2, seed=0)
    config = TrainingConfig(max_epochs=4, learned_weights=False, loss_weights={'forces': 10.0},
                            energy_loss='per_atom', **SMALL)
    trainer = Trainer(tiny_model(1), source, train, validation, config, tmp_path)
    assert trainer.loss.energy_per_atom and trainer.loss.weights() == {'energy': 1.0, 'forces': 10.0, 'charges': 1.0}
    before = trainer.validate()
    trainer.fit()
    after = trainer.validate()
    for name in ('energy_rmse', 'forces_rmse', 'charges_rmse'):
        assert after[name] < before[name], name
