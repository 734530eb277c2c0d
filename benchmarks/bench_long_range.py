"""Where a local model must fail and the charge-aware QRNN should not (issue 20, item 3): energy against separation
of charged and strongly polar fragments, beyond the AEV cutoff, against GFN2-xTB.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_long_range.py            # default: ~12 min of one loaded core
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_long_range.py --quick    # under a minute: the CI smoke run

Training data (GFN2-xTB through tblite with the cluster's total charge, cached in ``benchmarks/data/long_range/``):
random clusters of 1-3 fragments from formate and acetate anions, oxonium (H3O+) and methyloxonium (CH3OH2+) cations,
water, methanol and ethylene carbonate (4.9 D), total charge -2..+2 stored per cluster; fragment centres 3-5 Å apart,
so training sees the short range only. Both models train on it exactly as in ``bench_accuracy.py`` (same optimiser,
schedule and best-validation rule; fixed loss weights, energy per atom + 10 x forces): the QRNN (charges labelled,
total charge fed to its charge equilibration) and TorchANI's ANI-2x architecture (random weights, no notion of
charge).

Scans (rigid RDKit conformers, fragment B moved along +x from 3 to 15 Å between centres of mass, dipoles along +x so
polar pairs attract head to tail): ``cation_pair`` H3O+ / CH3OH2+ (total +2), ``anion_pair`` formate / acetate (-2),
``cation_dipole`` CH3OH2+ / ethylene carbonate (+1), ``dipole_pair`` two ethylene carbonates (0). The binding curve
E(r) - E(r_max) of xTB, the QRNN and ANI; errors over the whole scan and over the points whose closest
inter-fragment atoms are beyond the 5.1 Å radial AEV cutoff, where a local model is flat by construction.

A neutral anion-cation pair is not scanned: in gas-phase GFN2-xTB its fragment charges drift from -1.00 at 5 Å to
-0.80 at 12 Å (formate / H3O+) and the SCF stops converging beyond that, so xTB gives no clean reference there
(in reality the separated neutral radicals are lower in energy than the ion pair for every H/C/O pair).

Writes ``benchmarks/results/long_range.json`` (or ``--output``) with the machine and ``long_range.png`` beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from ase import Atoms

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_accuracy import SMALL_WIDTHS, AniTrainer, Variant, machine, training_config, xtb_label

from aiida_qrnn.core.dataset import ClusterArrays, ClusterSet, write_cluster_set
from aiida_qrnn.core.model.aev import AEVConfig
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig, evaluate
from aiida_qrnn.core.structures import molecular_cluster
from aiida_qrnn.core.training import InMemoryClusters, Trainer, predict
from aiida_qrnn.core.training.trainer import error_metrics
from aiida_qrnn.core.units import COULOMB_CONSTANT

HERE = pathlib.Path(__file__).parent
RESULTS = HERE / 'results' / 'long_range.json'
DATA = HERE / 'data' / 'long_range'
ELEMENTS = ('H', 'C', 'O')
#: fragment name -> (SMILES, formal charge)
SPECIES = {
    'formate': ('C(=O)[O-]', -1), 'acetate': ('CC(=O)[O-]', -1),
    'oxonium': ('[OH3+]', 1), 'methyloxonium': ('C[OH2+]', 1),
    'water': ('O', 0), 'methanol': ('CO', 0), 'ethylene_carbonate': ('O=C1OCCO1', 0),
}
#: scan name -> (fragment at the origin, fragment moved along +x)
SCANS = {
    'cation_pair': ('oxonium', 'methyloxonium'), 'anion_pair': ('formate', 'acetate'),
    'cation_dipole': ('methyloxonium', 'ethylene_carbonate'), 'dipole_pair': ('ethylene_carbonate',) * 2,
}
CONFORMERS = 5  # RDKit conformers per fragment in the training clusters; the scans use conformer 0
MIN_GAP = 1.8  # Å, closest approach of atoms of different fragments, in training and scans
ENERGY_TERMS = ('coulomb', 'dispersion')  # QRNN terms reported relative to r_max, like the binding curves
AEV_CUTOFF = AEVConfig().radial_cutoff  # Å, the same 5.1 Å as ANI-2x's radial cutoff


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much data and training; ``DEFAULT`` fits ~20 minutes of one loaded core, ``QUICK`` well under one."""

    clusters: int = 500
    epochs: int = 30
    batch_size: int = 32
    scan_step: float = 0.5  # Å
    max_separation: float = 15.0  # Å between centres of mass, the reference point of the binding curves


DEFAULT = Sizes()
QUICK = Sizes(clusters=40, epochs=2, batch_size=8, scan_step=1.0)
DEFAULT_VARIANTS = ('qrnn:w10', 'ani:w10')
QUICK_VARIANTS = ('qrnn-small:w10', 'ani:w10')


# -- structures and labels ------------------------------------------------------------------------------------------
@functools.cache
def fragment(name: str, seed: int = 0) -> Atoms:
    """RDKit ETKDG conformer ``seed`` of fragment ``name`` (MMFF-relaxed), centred on its centre of mass."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    smiles, _ = SPECIES[name]
    molecule = Chem.AddHs(Chem.MolFromSmiles(smiles))
    parameters = AllChem.ETKDGv3()
    parameters.randomSeed = seed
    if AllChem.EmbedMolecule(molecule, parameters) != 0:
        raise RuntimeError(f'RDKit could not embed {name} ({smiles}) with seed {seed}.')
    AllChem.MMFFOptimizeMolecule(molecule, maxIters=500)
    atoms = Atoms(numbers=[atom.GetAtomicNum() for atom in molecule.GetAtoms()],
                  positions=molecule.GetConformer().GetPositions())
    atoms.positions -= atoms.get_center_of_mass()
    return atoms


def training_clusters(count: int, rng: np.random.Generator) -> list[tuple[Atoms, int]]:
    """``count`` clusters of 1-3 random fragments (total charge within ±2), centres 3-5 Å apart, rattled 0.05 Å."""
    names = list(SPECIES)
    clusters = []
    while len(clusters) < count:
        chosen = [names[k] for k in rng.integers(len(names), size=len(clusters) % 3 + 1)]
        total_charge = sum(SPECIES[name][1] for name in chosen)
        if abs(total_charge) > 2:
            continue
        molecules = [fragment(name, int(rng.integers(CONFORMERS))) for name in chosen]
        atoms = molecular_cluster(molecules, rng=rng, min_distance=MIN_GAP, spread=float(rng.uniform(3.0, 5.0)))
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        atoms.info.update(kind='conformational', source=json.dumps({'fragments': chosen}))
        clusters.append((atoms, total_charge))
    return clusters


def training_set(sizes: Sizes, seed: int, data_dir: pathlib.Path) -> tuple[ClusterArrays, dict]:
    """The labelled training clusters from ``data_dir`` or, the first time, made, labelled and cached there."""
    path = data_dir / f'clusters_n{sizes.clusters}_s{seed}.h5'
    if path.is_file():
        with ClusterSet(path) as stored:
            return stored.read_arrays(), {'cached': True}
    start = time.perf_counter()
    clusters = training_clusters(sizes.clusters, np.random.default_rng(seed))
    labelled = [atoms for atoms in (xtb_label(atoms, charge) for atoms, charge in clusters) if atoms is not None]
    arrays = ClusterArrays.from_atoms(labelled)
    data_dir.mkdir(parents=True, exist_ok=True)
    write_cluster_set(path, arrays, level_of_theory='gfn2-xtb')
    return arrays, {'cached': False, 'labelling_s': time.perf_counter() - start,
                    'not_converged': len(clusters) - len(labelled)}


def along_x(atoms: Atoms, total_charge: int) -> Atoms:
    """``atoms`` rotated so that its xTB dipole about the centre of mass points along +x."""
    labelled = xtb_label(atoms, total_charge)
    if labelled is None:
        raise RuntimeError('xTB did not converge on a scan fragment.')
    dipole = labelled.calc.results['charges'] @ (atoms.positions - atoms.get_center_of_mass())
    rotated = atoms.copy()
    rotated.rotate(dipole, (1, 0, 0), center='COM')
    return rotated


def scan_images(scan: str, sizes: Sizes) -> list[Atoms]:
    """Fragment B moved along +x from fragment A; separations (centre of mass) with atoms at least MIN_GAP apart."""
    first, second = SCANS[scan]
    charges = SPECIES[first][1], SPECIES[second][1]
    part_a, part_b = along_x(fragment(first), charges[0]), along_x(fragment(second), charges[1])
    part_a.arrays['molecule'] = np.zeros(len(part_a), np.int32)
    images = []
    for separation in np.arange(3.0, sizes.max_separation + 1e-9, sizes.scan_step):
        moved = part_b.copy()
        moved.positions += (separation, 0.0, 0.0)
        moved.arrays['molecule'] = np.ones(len(moved), np.int32)
        gap = float(np.linalg.norm(part_a.positions[:, None] - moved.positions[None], axis=-1).min())
        if gap >= MIN_GAP:
            image = part_a + moved
            image.info.update(separation=float(separation), gap=gap, total_charge=sum(charges))
            images.append(image)
    return images


def labelled_scan(scan: str, sizes: Sizes) -> tuple[ClusterArrays, np.ndarray, np.ndarray]:
    """xTB-labelled scan points, their centre-of-mass separations and closest inter-fragment gaps (Å)."""
    images = scan_images(scan, sizes)
    labelled = [xtb_label(image, image.info['total_charge']) for image in images]
    if any(atoms is None for atoms in labelled):
        missing = [image.info['separation'] for image, atoms in zip(images, labelled, strict=True) if atoms is None]
        raise RuntimeError(f'scan {scan}: xTB did not converge at separations {missing} Å.')
    separations = np.array([image.info['separation'] for image in images])
    gaps = np.array([image.info['gap'] for image in images])
    return ClusterArrays.from_atoms(labelled), separations, gaps


# -- training and evaluation ----------------------------------------------------------------------------------------
def train_model(variant: Variant, arrays: ClusterArrays, args: argparse.Namespace, seed: int):
    """Train ``variant`` on 90 % of ``arrays`` (fixed split); returns (energies of a ClusterArrays, run info)."""
    order = np.random.default_rng(seed).permutation(arrays.n_clusters)
    n_validation = max(1, len(order) // 10)
    validation, train = np.sort(order[:n_validation]), np.sort(order[n_validation:])
    config = training_config(variant, args, seed)
    source = InMemoryClusters(arrays)
    start = time.perf_counter()
    if variant.model == 'ani':
        trainer = AniTrainer(source, train, validation, config, variant.force_weight, variant.energy_per_atom)
        run = trainer.fit()
        validation_errors = error_metrics(trainer.predict(validation))

        def energies(scan: ClusterArrays) -> dict[str, np.ndarray]:
            trainer.source = InMemoryClusters(scan)
            return {'energy': trainer.predict(np.arange(scan.n_clusters))['energy'][0]}
    else:
        widths = SMALL_WIDTHS if variant.model == 'qrnn-small' else {}
        torch.manual_seed(seed)
        with tempfile.TemporaryDirectory() as directory:
            trainer = Trainer(QRNN(QRNNConfig(elements=ELEMENTS, **widths)), source, train, validation, config,
                              directory)
            result = trainer.fit()
        run = {'epochs': result.epochs, 'best_epoch': result.best_epoch}
        model = trainer.trained_model()
        validation_errors = error_metrics(predict(model, source, validation, batch_size=256))

        def energies(scan: ClusterArrays) -> dict[str, np.ndarray]:
            """Energy and its Coulomb and dispersion terms (eV), and the charge on fragment A (e)."""
            batch = InMemoryClusters(scan).batch(np.arange(scan.n_clusters)).to('cpu', next(model.parameters()).dtype)
            output = evaluate(model, batch.positions, batch.numbers, batch.system_index, batch.cells, batch.pbc,
                              batch.total_charge, compute_forces=False)
            charges = output['charges'].detach().numpy()
            return {'energy': output['energy'].detach().numpy(),
                    'coulomb': output['energy_coulomb'].detach().numpy(),
                    'dispersion': output['energy_dispersion'].detach().numpy(),
                    'fragment_a_charge': fragment_a_charge(scan, charges),
                    'charge_dipole': charge_dipole(scan, charges)}
    info = {'training_s': time.perf_counter() - start, 'n_train': len(train), 'n_validation': n_validation, **run,
            'validation': {'forces_mae': validation_errors['forces_mae'],
                           'energy_per_atom_mae_meV': 1e3 * validation_errors['energy_per_atom_mae']}}
    return energies, info


def curve_errors(binding: np.ndarray, reference: np.ndarray, beyond: np.ndarray) -> dict[str, float]:
    """MAE (eV) of a binding curve against the reference over the scan and over its points beyond the cutoff."""
    error = np.abs(binding - reference)
    return {'mae_all': float(error.mean()), 'mae_beyond_cutoff': float(error[beyond].mean()) if beyond.any()
            else math.nan, 'max_beyond_cutoff': float(error[beyond].max()) if beyond.any() else math.nan}


def coulomb_limit(scan: str, separations: np.ndarray) -> np.ndarray:
    """k q_A q_B / r of the fragments' formal charges at the centre-of-mass separations (eV)."""
    first, second = SCANS[scan]
    return COULOMB_CONSTANT * SPECIES[first][1] * SPECIES[second][1] / separations


def plot(report: dict, path: pathlib.Path) -> None:
    """Binding curves of every scan: xTB, each model, the cutoff and, for ion pairs, the bare Coulomb law."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    scans = report['scans']
    figure, axes = plt.subplots(1, len(scans), figsize=(4.2 * len(scans), 3.8), squeeze=False)
    for axis, (scan, values) in zip(axes[0], scans.items(), strict=True):
        r = np.array(values['separation'])
        axis.plot(r, values['binding']['xtb'], 'k-', lw=2, label='GFN2-xTB')
        for (name, curve), style in zip(values['binding'].items(), ('C0o-', 'C3s--', 'C2^:'), strict=False):
            if name != 'xtb':
                errors = values['errors'][name]
                axis.plot(r, curve, style, ms=3, label=f"{name} (MAE>{AEV_CUTOFF:g} Å "
                          f"{1e3 * errors['mae_beyond_cutoff']:.0f} meV)")
        if values['coulomb_binding'] is not None:
            axis.plot(r, values['coulomb_binding'], color='grey', lw=0.8, label='k q₁q₂ (1/r − 1/r_max)')
        if values['first_beyond_cutoff'] is not None:
            axis.axvline(values['first_beyond_cutoff'], color='grey', ls=':', lw=1)
        axis.set_title(f"{scan} (Q = {values['total_charge']:+d})")
        axis.set_xlabel('centre-of-mass separation (Å)')
        axis.legend(fontsize=7)
    axes[0][0].set_ylabel('E(r) − E(r_max) (eV)')
    figure.suptitle(f'dotted line: closest inter-fragment atoms beyond the {AEV_CUTOFF:g} Å AEV cutoff', fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='tiny data and 2 epochs (the CI smoke run)')
    parser.add_argument('--variants', help=f'comma-separated MODEL:LOSS[:OPTION] as in bench_accuracy.py '
                        f'(default {",".join(DEFAULT_VARIANTS)})')
    parser.add_argument('--seed', type=int, default=0, help='seed of the data, the split and the weights')
    for field in dataclasses.fields(Sizes):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=int if field.type == 'int' else float,
                            help=f'default {getattr(DEFAULT, field.name)}')
    parser.add_argument('--learning-rate', type=float, default=1e-3)
    parser.add_argument('--scheduler-patience', type=int, default=5)
    parser.add_argument('--data-dir', type=pathlib.Path, default=DATA)
    parser.add_argument('--output', type=pathlib.Path, default=RESULTS, help='JSON report; the PNG goes beside it')
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULT
    args.sizes = dataclasses.replace(base, **{field.name: getattr(args, field.name) for field in dataclasses.fields(
        Sizes) if getattr(args, field.name) is not None})
    args.epochs, args.batch_size = args.sizes.epochs, args.sizes.batch_size
    names = args.variants.split(',') if args.variants else (QUICK_VARIANTS if args.quick else DEFAULT_VARIANTS)
    args.variant_list = [Variant.parse(name) for name in names]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_arguments(argv)
    sizes = args.sizes
    start = time.perf_counter()
    arrays, data_info = training_set(sizes, args.seed, args.data_dir)
    scans = {scan: labelled_scan(scan, sizes) for scan in SCANS}
    data_info['scans_s'] = time.perf_counter() - start - data_info.get('labelling_s', 0.0)
    charges, counts = np.unique(arrays.total_charge, return_counts=True)
    charge_counts = dict(zip(map(str, charges.tolist()), counts.tolist(), strict=True))
    print(f'data: {arrays.n_clusters} clusters, total charges {charge_counts}, '
          f'{arrays.n_atoms / arrays.n_clusters:.1f} atoms per cluster ({time.perf_counter() - start:.0f} s)',
          flush=True)
    predicted, runs = {}, {}
    for variant in args.variant_list:
        energies, runs[variant.name] = train_model(variant, arrays, args, args.seed)
        predicted[variant.name] = {scan: energies(scan_arrays) for scan, (scan_arrays, _, _) in scans.items()}
        validation = runs[variant.name]['validation']
        print(f"{variant.name}: {runs[variant.name]['training_s']:.0f} s, validation F "
              f"{validation['forces_mae']:.3f} eV/Å, E {validation['energy_per_atom_mae_meV']:.2f} meV/atom",
              flush=True)
    report_scans = {}
    for scan, (scan_arrays, separations, gaps) in scans.items():
        reference = scan_arrays.labels['energy']
        beyond = gaps > AEV_CUTOFF
        energies = {'xtb': reference, **{name: values[scan]['energy'] for name, values in predicted.items()}}
        binding = {name: values - values[-1] for name, values in energies.items()}
        coulomb = coulomb_limit(scan, separations)
        report_scans[scan] = {
            'fragments': list(SCANS[scan]), 'total_charge': int(scan_arrays.total_charge[0]),
            'separation': separations.tolist(), 'closest_gap': gaps.tolist(),
            'first_beyond_cutoff': float(separations[beyond][0]) if beyond.any() else None,
            'energy': {name: values.tolist() for name, values in energies.items()},
            'binding': {name: values.tolist() for name, values in binding.items()},
            'coulomb_binding': (coulomb - coulomb[-1]).tolist() if coulomb.any() else None,
            'xtb_fragment_a_charge': fragment_a_charge(scan_arrays, scan_arrays.labels['charges']).tolist(),
            'xtb_charge_dipole': charge_dipole(scan_arrays, scan_arrays.labels['charges']).tolist(),
            'qrnn_terms': {name: {term: (values[scan][term] - values[scan][term][-1] if term in ENERGY_TERMS
                                         else values[scan][term]).tolist() for term in values[scan] if term != 'energy'}
                           for name, values in predicted.items() if len(values[scan]) > 1},
            'errors': {name: curve_errors(values, binding['xtb'], beyond) for name, values in binding.items()
                       if name != 'xtb'},
        }
    report = {
        'command': 'OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_long_range.py ' + ' '.join(
            sys.argv[1:] if argv is None else argv),
        'sizes': dataclasses.asdict(sizes), 'seed': args.seed, 'aev_cutoff': AEV_CUTOFF,
        'n_clusters': arrays.n_clusters, 'total_charges': charge_counts,
        'data': data_info, 'runs': runs, 'scans': report_scans,
        'summary': {name: {scan: values['errors'][name] for scan, values in report_scans.items()} for name in runs},
        'machine': machine(), 'git_commit': subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True,
                                                           text=True, cwd=HERE).stdout.strip(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + '\n')
    plot(report, args.output.with_suffix('.png'))
    print(summary_table(report))
    return report


def fragment_a_charge(scan_arrays: ClusterArrays, charges: np.ndarray) -> np.ndarray:
    """Charge on fragment A (molecule 0) at every scan point: shows whether the charges stay on their ions."""
    first = scan_arrays.molecule == 0
    return np.add.reduceat(np.where(first, charges, 0.0), scan_arrays.offsets[:-1])


def charge_dipole(scan_arrays: ClusterArrays, charges: np.ndarray) -> np.ndarray:
    """|Σ q_i (r_i − r̄)| about the geometric centre of every scan point (e·Å): the strength of the charges' field."""
    dipoles = []
    for start, stop in zip(scan_arrays.offsets[:-1], scan_arrays.offsets[1:], strict=True):
        positions = scan_arrays.positions[start:stop]
        dipoles.append(np.linalg.norm(charges[start:stop] @ (positions - positions.mean(axis=0))))
    return np.array(dipoles)


def summary_table(report: dict) -> str:
    """MAE (meV) of the binding curves beyond the AEV cutoff and over the whole scan, per scan and model."""
    names = list(report['runs'])
    lines = ['| scan | ' + ' | '.join(f'{name} beyond / all' for name in names) + ' |', '|---' * (len(names) + 1)
             + '|']
    for scan, values in report['scans'].items():
        cells = [f"{1e3 * values['errors'][name]['mae_beyond_cutoff']:.0f} / "
                 f"{1e3 * values['errors'][name]['mae_all']:.0f}" for name in names]
        lines.append(f'| {scan} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
