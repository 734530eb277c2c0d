"""A small honest learning result: train on GFN2-xTB ethylene-glycol monomer/dimer/trimer clusters, test on held-out
clusters of the same oligomers and on tetramer clusters the model never saw.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_eg_xtb.py            # ~8 min on one CPU core here

Clusters: 1-4 monomers, 1-3 dimers or 1-2 trimers (test: 1-2 tetramers), RDKit conformers placed at random
(``molecular_cluster``), atoms rattled by 0.05 Å. Labels: GFN2-xTB energy, forces and charges from tblite in-process
(the same numbers as the xtb program to 1e-4 e, tests/calculations/test_xtb_tblite.py). Split: 80 % train, 10 %
validation, 10 % held-out test of M/D/T; all tetramers are test. A smaller-than-paper QRNN (charge networks 64-48,
energy networks 96-64-48, default AEV, Coulomb and dispersion) trains with the paper's loss and optimiser
settings (batch 32 on this CPU). The baseline row is the self-energies-only model (zero forces): what the
networks had to learn. Writes ``benchmarks/results/training_eg_xtb.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

import numpy as np
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig
from aiida_qrnn.core.structures import ethylene_glycol_oligomer, molecular_cluster
from aiida_qrnn.core.training import InMemoryClusters, Trainer, TrainingConfig, predict
from aiida_qrnn.core.training.trainer import error_metrics
from aiida_qrnn.core.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV

RESULTS = pathlib.Path(__file__).parent / 'results' / 'training_eg_xtb.json'
#: oligomer units -> largest number of molecules per cluster.
MAX_MOLECULES = {1: 4, 2: 3, 3: 2, 4: 2}


def xtb_labelled_clusters(units: int, n_clusters: int, rng: np.random.Generator) -> list:
    from tblite.interface import Calculator

    images = []
    for index in range(n_clusters):
        count = index % MAX_MOLECULES[units] + 1
        molecules = [ethylene_glycol_oligomer(units, seed=int(rng.integers(1 << 30))) for _ in range(count)]
        atoms = molecular_cluster(molecules, rng=rng, min_distance=2.0, spread=4.0)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        calculator = Calculator('GFN2-xTB', atoms.numbers, atoms.positions / BOHR_TO_ANGSTROM)
        calculator.set('verbosity', 0)
        result = calculator.singlepoint()
        atoms.calc = SinglePointCalculator(
            atoms, energy=float(result.get('energy')) * HARTREE_TO_EV,
            forces=-np.asarray(result.get('gradient')) * HARTREE_TO_EV / BOHR_TO_ANGSTROM,
            charges=np.asarray(result.get('charges')))
        atoms.info.update(kind='conformational', source=f'units={units} molecules={count}')
        images.append(atoms)
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--clusters-per-oligomer', type=int, default=150)
    parser.add_argument('--tetramer-clusters', type=int, default=40)
    parser.add_argument('--epochs', type=int, default=120)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    images = [atoms for units in (1, 2, 3) for atoms in xtb_labelled_clusters(units, args.clusters_per_oligomer, rng)]
    tetramers = xtb_labelled_clusters(4, args.tetramer_clusters, rng)
    labelling_s = time.perf_counter() - start
    source = InMemoryClusters(ClusterArrays.from_atoms(images + tetramers).validate())
    n_mdt = len(images)
    order = rng.permutation(n_mdt)
    n_test = n_mdt // 10
    test, validation, train = np.sort(order[:n_test]), np.sort(order[n_test:2 * n_test]), np.sort(order[2 * n_test:])
    tetramer_test = np.arange(n_mdt, n_mdt + len(tetramers))
    config = TrainingConfig(batch_size=32, max_epochs=args.epochs, dtype='float64', seed=args.seed,
                            scheduler_patience=5, early_stopping_patience=15)
    torch.manual_seed(args.seed)
    model = QRNN(QRNNConfig(charge_hidden=(64, 48), energy_hidden=(96, 64, 48)))
    with tempfile.TemporaryDirectory() as directory:
        trainer = Trainer(model, source, train, validation, config, directory)
        baseline = trainer.trained_model()
        start = time.perf_counter()
        result = trainer.fit()
        training_s = time.perf_counter() - start
        history = trainer.history
    final = trainer.trained_model()
    report = {'n_train': len(train), 'n_validation': len(validation), 'n_test_mdt': len(test),
              'n_test_tetramer': len(tetramers), 'epochs': result.epochs, 'best_epoch': result.best_epoch,
              'status': result.status.name, 'labelling_s': labelling_s, 'training_s': training_s,
              'n_parameters': sum(p.numel() for p in final.parameters()), 'settings': config.to_dict(),
              'learning_curve': [{key: row[key] for key in ('epoch', 'validation_energy_per_atom_mae',
                                                            'validation_forces_mae', 'validation_charges_mae')}
                                 for row in history]}
    for name, indices in (('test_mdt', test), ('test_tetramer', tetramer_test)):
        report[name] = error_metrics(predict(final, source, indices))
        report[f'{name}_baseline_self_energies_only'] = error_metrics(predict(baseline, source, indices))
    print(json.dumps({key: value for key, value in report.items() if key != 'learning_curve'}, indent=2))
    RESULTS.write_text(json.dumps(report, indent=2) + '\n')


if __name__ == '__main__':
    main()
