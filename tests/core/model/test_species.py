"""Elements beyond H, C, O: a model refuses an element it was not trained on, transfer learning extends it with
fresh networks for the new element only (the parent's predictions unchanged), and a model trains on an
N-containing set labelled by the real xtb program through the project's xtb output parser."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig, evaluate
from aiida_qrnn.core.model.species import extend_elements, fit_new_self_energies
from aiida_qrnn.core.polymer import Polymer
from aiida_qrnn.core.structures import ethylene_glycol_oligomer, molecular_cluster, oligomer
from aiida_qrnn.core.training import InMemoryClusters, Trainer, TrainingConfig

#: N-methylacetamide CH3-C(=O)-NH-CH3, the smallest secondary amide: a one-unit polyamide.
N_METHYLACETAMIDE = Polymer({'amide': '[*]C(=O)N[*]'}, head='C', tail='C', name='N-methylacetamide')
TINY = {'charge_hidden': (8,), 'energy_hidden': (8,)}


def _evaluate(model, atoms) -> dict[str, torch.Tensor]:
    """Energy, charges and forces of one open cluster."""
    n_atoms = len(atoms)
    return evaluate(
        model, torch.tensor(atoms.positions), torch.tensor(atoms.numbers), torch.zeros(n_atoms, dtype=torch.long),
        torch.zeros((1, 3, 3), dtype=torch.float64), torch.zeros((1, 3), dtype=torch.bool),
        torch.zeros(1, dtype=torch.float64),
    )


def _xtb_labelled(images, folder) -> list:
    """GFN2-xTB energy, forces and charges from the xtb program run as ``XtbCalculation`` runs it (same flags),
    read by the parser's pure function ``parse_cluster``."""
    from aiida_qrnn.parsers.parse_raw.xtb import parse_cluster

    labelled = []
    for index, atoms in enumerate(images):
        prefix = f'c{index:06d}'
        lines = [str(len(atoms)), prefix] + [f'{s} {x:.10f} {y:.10f} {z:.10f}' for s, (x, y, z) in
                                             zip(atoms.get_chemical_symbols(), atoms.positions, strict=True)]
        (folder / f'{prefix}.xyz').write_text('\n'.join(lines) + '\n')
        run = subprocess.run(
            ['xtb', f'{prefix}.xyz', '--gfn', '2', '--grad', '--chrg', '0', '--uhf', '0', '--json', '--namespace',
             prefix], cwd=folder, capture_output=True, text=True, env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'},
        )
        files = {name: folder / f'{prefix}.{suffix}' for name, suffix in
                 (('gradient', 'gradient'), ('xtbout_json', 'xtbout.json'))}
        outputs = {name: path.read_text() if path.is_file() else None for name, path in files.items()}
        data, logs = parse_cluster(n_atoms=len(atoms), stdout=run.stdout, stderr=run.stderr, **outputs)
        assert not logs.errors, logs.errors
        atoms.calc = SinglePointCalculator(atoms, energy=data['energy'], forces=data['forces'], charges=data['charges'])
        atoms.info.update(kind='conformational', source=f'N-methylacetamide cluster {index}')
        labelled.append(atoms)
    return labelled


@pytest.fixture(scope='module')
def amide_clusters(tmp_path_factory):
    if shutil.which('xtb') is None:
        pytest.skip('the xtb program is not installed')
    rng = np.random.default_rng(7)
    images = []
    for index in range(4):
        molecules = [oligomer(1, N_METHYLACETAMIDE, seed=int(rng.integers(1 << 30))) for _ in range(index % 2 + 1)]
        cluster = molecular_cluster(molecules, rng=rng)
        cluster.positions += rng.normal(scale=0.03, size=cluster.positions.shape)
        images.append(cluster)
    return _xtb_labelled(images, tmp_path_factory.mktemp('xtb'))


def test_a_model_refuses_an_element_it_was_not_trained_on():
    model = QRNN(QRNNConfig(**TINY)).double()
    with pytest.raises(ValueError, match=r"elements \['N'\] are not in this model \(it knows \['H', 'C', 'O'\]\)"):
        _evaluate(model, oligomer(1, N_METHYLACETAMIDE))


def test_extension_adds_fresh_networks_only_and_keeps_the_parents_predictions():
    torch.manual_seed(0)
    parent = QRNN(QRNNConfig(**TINY)).double()
    parent.self_energies.copy_(torch.tensor([-13.6, -1029.0, -2041.0], dtype=torch.float64))
    child = extend_elements(parent, ['H', 'C', 'N', 'O', 'S'])
    assert child.config.elements == ('H', 'C', 'O', 'N', 'S')
    assert child.aev.aev_length > parent.aev.aev_length
    glycol = ethylene_glycol_oligomer(2, seed=3)
    before, after = _evaluate(parent, glycol), _evaluate(child, glycol)
    for name in ('energy', 'charges', 'forces'):
        torch.testing.assert_close(after[name], before[name], rtol=1e-12, atol=1e-12)
    # the new elements' networks are the child's own, and it now takes nitrogen
    assert child.self_energies[3:].abs().sum() == 0
    assert torch.isfinite(_evaluate(child, oligomer(1, N_METHYLACETAMIDE))['energy']).all()
    assert extend_elements(parent, ['C', 'H']).config.elements == parent.config.elements
    with pytest.raises(ValueError, match=r"\['Xx'\] are not chemical symbols"):
        extend_elements(parent, ['Xx'])


def test_models_train_a_step_on_xtb_labelled_amides(amide_clusters, tmp_path):
    arrays = ClusterArrays.from_atoms(amide_clusters).validate()
    source = InMemoryClusters(arrays)
    config = TrainingConfig(max_epochs=1, batch_size=4, validation_batch_size=4, seed=0)
    train, validation = np.array([0, 1, 2]), np.array([3])

    # a fresh model with the data's elements: its self-energies are fitted over H, C, N, O
    fresh = QRNN(QRNNConfig(elements=('H', 'C', 'N', 'O'), **TINY))
    trainer = Trainer(fresh, source, train, validation, config, tmp_path / 'fresh')
    initial = {name: tensor.clone() for name, tensor in trainer.model.state_dict().items()}
    result = trainer.fit()
    assert result.epochs == 1 and np.isfinite(result.best_metrics['energy_mae'])
    nitrogen_layer = 'energy_networks.networks.2.2.bias'  # N's last energy layer: moved by the step
    assert not torch.equal(trainer.model.state_dict()[nitrogen_layer], initial[nitrogen_layer])

    # transfer from an H, C, O parent: N added, its self-energy fitted with the parent's held fixed
    torch.manual_seed(1)
    parent = QRNN(QRNNConfig(**TINY)).double()
    child = extend_elements(parent, ('H', 'C', 'N', 'O'))
    fitted = fit_new_self_energies(child, arrays.numbers, arrays.offsets, arrays.labels['energy'], ['N'])
    assert np.isfinite(fitted[3]) and fitted[3] != 0.0 and np.all(fitted[:3] == 0.0)
    transfer = Trainer(child, source, train, validation, config, tmp_path / 'transfer', transfer=True)
    assert transfer.fit().epochs == 1
    assert torch.isfinite(_evaluate(transfer.trained_model(), amide_clusters[0])['energy']).all()


def test_d3_c6_of_all_supported_elements_equal_tad_dftd3():
    """The model's dispersion tables cover ANI-2x's H, C, N, O, F, S, Cl: CN and C6 equal tad-dftd3's."""
    from aiida_qrnn.core.model.dispersion import D3Dispersion
    from aiida_qrnn.core.polymer import SUPPORTED_ELEMENTS

    from .test_dispersion import all_pairs, pair_distances, tad_dftd3_c6

    halogenated = Polymer({'A': '[*]NC(=O)C(F)C(Cl)S[*]'}, head='C', tail='C')
    atoms = oligomer(1, halogenated, seed=0)
    assert sorted(set(atoms.get_chemical_symbols())) == sorted(SUPPORTED_ELEMENTS)
    model = QRNN(QRNNConfig(elements=SUPPORTED_ELEMENTS, **TINY)).double()
    assert isinstance(model.dispersion, D3Dispersion)
    expected_cn, expected_c6 = tad_dftd3_c6(atoms)
    pairs = all_pairs(len(atoms))
    cn, c6 = model.dispersion.coordination_and_c6(
        torch.tensor(atoms.numbers), pairs, pair_distances(torch.tensor(atoms.positions), pairs))
    np.testing.assert_allclose(cn.numpy(), expected_cn, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(c6.numpy(), expected_c6[pairs[0], pairs[1]], rtol=1e-6)
    assert torch.isfinite(_evaluate(model, atoms)['energy']).all()


def test_committee_selection_scores_nitrogen_clusters(amide_clusters):
    """ρ^f of a committee of H, C, N, O models on the amide set: finite, positive, one per cluster; the top-K pick
    takes the clusters the committee disagrees on most."""
    from aiida_qrnn.core.model.committee import Committee
    from aiida_qrnn.core.selection import committee_scores, select_top_k_plus_random

    arrays = ClusterArrays.from_atoms(amide_clusters).validate()
    members = []
    for seed in range(2):
        torch.manual_seed(seed)
        members.append(QRNN(QRNNConfig(elements=('H', 'C', 'N', 'O'), **TINY)))
    scores = committee_scores(Committee(members), arrays)
    rho = scores['rho_f']
    assert rho.shape == (4,) and np.all(np.isfinite(rho)) and np.all(rho > 0)
    picked = select_top_k_plus_random(rho, 1, 1, seed=0)
    assert picked['top'].tolist() == [int(np.argmax(rho))]
    assert len(picked['random']) == 1 and picked['random'][0] != picked['top'][0]
