"""Accuracy of the QRNN against TorchANI's ANI-2x architecture trained on the same GFN2-xTB data (issue 20).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_accuracy.py                  # default: ~36 min of one core
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_accuracy.py --quick          # a minute: the CI smoke run
    ... --variants qrnn:sigma,qrnn:w10,ani:w10 --seeds 0 1 --epochs 40               # an ablation

Data (labelled once with GFN2-xTB through tblite, one thread, cached in ``benchmarks/data/accuracy/``):

* training pool, mono/di/tri-EG only: ``train_eg_xtb``-style random clusters (RDKit conformers placed at random,
  rattled by 0.05 Å) and clusters cut by the project's own sampling (``sample_clusters``: extracted, conformational,
  density and decomposed variants) from short OPLS-AA MD of packed cells; 90/10 train/validation split (fixed seed);
* held-out sets the training never sees: thermal OPLS-AA MD frames (300 K) of tri-, hexa- and deca-EG cells, cut as
  single molecules (``1mol``) and pairs (``2mol``) with ``extract_cluster``.

Variants are ``MODEL:LOSS[:OPTION...]``: MODEL ``qrnn`` (paper-sized QRNN), ``qrnn-small`` (charge 64-48, energy
96-64-48, the size of ``train_eg_xtb``) or ``ani`` (ANI-2x architecture for H, C, O from ``torchani.arch.Assembler``,
random weights); LOSS ``sigma`` (the paper's eq. 1, learned σ, energy per cluster) or ``wX`` (fixed: energy per atom
MSE + X · force-component MSE, charges weight 1 for the QRNN); OPTIONS ``total`` (energy per cluster instead of per
atom), ``noq`` (QRNN without the charge label), ``f32`` (float32), ``nodisp`` (QRNN without its D3 term),
``local`` (QRNN without Coulomb and D3: its networks alone, still charge-aware through the charge AEV). Every
variant trains with the same optimiser and budget: AdamW lr 1e-3, weight decay 1e-4, batch 32, gradient clip 10,
ReduceLROnPlateau on the validation score, best-validation weights; self-energies fitted by least squares on the
training clusters. Writes ``benchmarks/results/accuracy.json`` (or ``--output``) with the machine; each set's errors
include the mean signed energy-per-atom error, where an offset shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_qrnn.core.clusters import ClusterSampling, extract_cluster, sample_clusters
from aiida_qrnn.core.dataset import ClusterArrays, ClusterSet, concatenate, write_cluster_set
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig
from aiida_qrnn.core.structures import ethylene_glycol_oligomer, molecular_cluster
from aiida_qrnn.core.topology import find_bonds, molecule_ids
from aiida_qrnn.core.training import InMemoryClusters, Trainer, TrainingConfig, predict
from aiida_qrnn.core.training.data import batch_slices, epoch_order
from aiida_qrnn.core.training.self_energies import composition_matrix, fit_self_energies
from aiida_qrnn.core.training.trainer import error_metrics
from aiida_qrnn.core.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV

HERE = pathlib.Path(__file__).parent
RESULTS = HERE / 'results' / 'accuracy.json'
DATA = HERE / 'data' / 'accuracy'
#: oligomer units -> largest number of molecules per training cluster (as in train_eg_xtb).
MAX_MOLECULES = {1: 4, 2: 3, 3: 2}
TRAINING_UNITS = (1, 2, 3)
HELD_OUT_UNITS = (3, 6, 10)
ELEMENTS = ('H', 'C', 'O')
SMALL_WIDTHS = {'charge_hidden': (64, 48), 'energy_hidden': (96, 64, 48)}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much data and training; ``DEFAULT`` fits 90 minutes on this CPU, ``QUICK`` a minute."""

    random_per_oligomer: int = 450  # train_eg_xtb-style random clusters per training oligomer
    sampled_frames: int = 14  # MD frames per training oligomer cut by sample_clusters
    sampled_clusters_per_frame: int = 6  # cuts per frame; each gives 4 clusters (extracted + 3 variants)
    held_out_per_set: int = 24  # clusters per held-out set (units x molecules)
    md_steps_between_frames: int = 200  # fs between recorded MD frames (1 fs steps)
    md_relax_steps: int = 2000  # NPT compression steps before the recorded NVT
    epochs: int = 40
    batch_size: int = 32


DEFAULT = Sizes()
QUICK = Sizes(random_per_oligomer=8, sampled_frames=1, sampled_clusters_per_frame=2, held_out_per_set=2,
              md_steps_between_frames=20, md_relax_steps=100, epochs=2, batch_size=8)
DEFAULT_VARIANTS = ('qrnn:sigma', 'qrnn:w10', 'ani:w10')
QUICK_VARIANTS = ('qrnn-small:w10', 'ani:w10')
#: Variant options: the loss's energy per cluster, no charge label, float32, no D3, neither Coulomb nor D3.
OPTIONS = ('total', 'noq', 'f32', 'nodisp', 'local')


# -- data -----------------------------------------------------------------------------------------------------------
def xtb_label(atoms: Atoms, total_charge: int = 0) -> Atoms | None:
    """GFN2-xTB energy, forces and charges of ``atoms`` with ``total_charge`` e (tblite, in process); ``None`` when
    the SCF does not converge."""
    from tblite.interface import Calculator

    calculator = Calculator('GFN2-xTB', atoms.numbers, atoms.positions / BOHR_TO_ANGSTROM, charge=float(total_charge))
    calculator.set('verbosity', 0)
    try:
        result = calculator.singlepoint()
    except RuntimeError:  # tblite's TBLiteRuntimeError
        return None
    labelled = atoms.copy()
    labelled.info['total_charge'] = int(total_charge)
    labelled.calc = SinglePointCalculator(
        labelled, energy=float(result.get('energy')) * HARTREE_TO_EV,
        forces=-np.asarray(result.get('gradient')) * HARTREE_TO_EV / BOHR_TO_ANGSTROM,
        charges=np.asarray(result.get('charges')))
    return labelled


def random_clusters(units: int, count: int, rng: np.random.Generator) -> list[Atoms]:
    """``train_eg_xtb``-style clusters: 1..MAX_MOLECULES random conformers placed at random, rattled by 0.05 Å."""
    images = []
    for index in range(count):
        molecules = [ethylene_glycol_oligomer(units, seed=int(rng.integers(1 << 30)))
                     for _ in range(index % MAX_MOLECULES[units] + 1)]
        atoms = molecular_cluster(molecules, rng=rng, min_distance=2.0, spread=4.0)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        atoms.info.update(kind='conformational', source=json.dumps({'random_cluster': units}))
        images.append(atoms)
    return images


def thermal_frames(units: int, n_molecules: int, n_frames: int, sizes: Sizes, seed: int) -> list[Atoms]:
    """NVT frames at 300 K of a packed OPLS-AA cell (the project's classical MD), after a short relaxation;
    remembered for the process (the single-molecule and pair sets come from the same run)."""
    key = (units, n_molecules, n_frames, sizes.md_steps_between_frames, sizes.md_relax_steps, seed)
    if key not in _FRAMES:
        with tempfile.TemporaryDirectory() as folder:
            _FRAMES[key] = _run_thermal_md(units, n_molecules, n_frames, sizes, seed, pathlib.Path(folder))
    return _FRAMES[key]


_FRAMES: dict[tuple, list[Atoms]] = {}


def _run_thermal_md(units: int, n_molecules: int, n_frames: int, sizes: Sizes, seed: int,
                    folder: pathlib.Path) -> list[Atoms]:
    from aiida_qrnn.core.forcefield.md import STAGES, MdProtocol, run_classical_md
    from aiida_qrnn.core.md.trajectory import read_trajectory
    from aiida_qrnn.core.structures import PackingError, pack_cell

    for density in (0.5, 0.3, 0.2, 0.1):  # long chains need a box longer than the molecule; NPT compresses it
        try:
            cell = pack_cell(units, n_molecules, density_g_cm3=density, seed=seed)
            break
        except PackingError:
            if density == 0.1:
                raise
    steps_between = sizes.md_steps_between_frames
    protocol = MdProtocol(minimize_iterations=200, relax_nvt_steps=sizes.md_relax_steps // 4,
                          relax_npt_steps=sizes.md_relax_steps, npt_steps=0, nvt_steps=n_frames * steps_between,
                          report_interval=steps_between, seed=seed)
    run_classical_md(cell, protocol, folder)
    frames = read_trajectory(folder / STAGES['nvt']).frames()
    return frames[-n_frames:]


def sampled_clusters(units: int, sizes: Sizes, seed: int) -> list[Atoms]:
    """Clusters of the project's sampling (``sample_clusters``) from MD frames of a mono/di/tri-EG cell."""
    frames = thermal_frames(units, 4 * MAX_MOLECULES[units], sizes.sampled_frames, sizes, seed)
    settings = ClusterSampling(max_molecules=MAX_MOLECULES[units], clusters_per_frame=sizes.sampled_clusters_per_frame)
    rng = np.random.default_rng(seed)
    return sample_clusters(((frame, {'units': units, 'frame': k}) for k, frame in enumerate(frames)), settings, rng)


def held_out_clusters(units: int, n_molecules: int, count: int, sizes: Sizes, seed: int) -> list[Atoms]:
    """``count`` clusters of ``n_molecules`` whole molecules cut around random centres from thermal MD frames."""
    frames = thermal_frames(units, 6, max(1, count // 2), sizes, seed)
    bonds = find_bonds(frames[0])
    molecule = molecule_ids(len(frames[0]), bonds)
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        frame = frames[index % len(frames)]
        cluster = extract_cluster(frame, molecule, int(rng.integers(molecule.max() + 1)), n_molecules, bonds=bonds,
                                  source={'units': units, 'frame': index % len(frames)})
        cluster.info.pop('frame_molecules')
        images.append(cluster)
    return images


def cached_set(name: str, make, data_dir: pathlib.Path) -> tuple[ClusterArrays, dict]:
    """The labelled set ``name`` from ``data_dir`` or, the first time, made, labelled and written there."""
    path = data_dir / f'{name}.h5'
    if path.is_file():
        with ClusterSet(path) as stored:
            return stored.read_arrays(), {'cached': True}
    start = time.perf_counter()
    images = make()
    made_s = time.perf_counter() - start
    labelled = [atoms for atoms in map(xtb_label, images) if atoms is not None]
    arrays = ClusterArrays.from_atoms(labelled)
    data_dir.mkdir(parents=True, exist_ok=True)
    write_cluster_set(path, arrays, level_of_theory='gfn2-xtb')
    info = {'cached': False, 'making_s': made_s, 'labelling_s': time.perf_counter() - start - made_s,
            'not_converged': len(images) - len(labelled)}
    return arrays, info


def build_data(sizes: Sizes, seed: int, data_dir: pathlib.Path) -> tuple[dict[str, ClusterArrays], dict]:
    """Training pool (``train``) and held-out sets (``md_<units>eg_<molecules>mol``), labelled and cached."""
    tag = f's{seed}'
    parts, info = [], {}
    for units in TRAINING_UNITS:
        rng = np.random.default_rng([seed, units])
        name = f'random_{units}eg_n{sizes.random_per_oligomer}_{tag}'
        arrays, info[name] = cached_set(name, lambda u=units, r=rng: random_clusters(
            u, sizes.random_per_oligomer, r), data_dir)
        parts.append(arrays)
        name = (f'sampled_{units}eg_f{sizes.sampled_frames}x{sizes.sampled_clusters_per_frame}'
                f'_d{sizes.md_steps_between_frames}_r{sizes.md_relax_steps}_{tag}')
        arrays, info[name] = cached_set(name, lambda u=units: sampled_clusters(u, sizes, seed * 100 + u), data_dir)
        parts.append(arrays)
    sets = {'train': concatenate(parts)}
    for units in HELD_OUT_UNITS:
        for n_molecules in (1, 2):
            key = f'md_{units}eg_{n_molecules}mol'
            name = f'{key}_n{sizes.held_out_per_set}_d{sizes.md_steps_between_frames}_r{sizes.md_relax_steps}_{tag}'
            sets[key], info[name] = cached_set(name, lambda u=units, m=n_molecules: held_out_clusters(
                u, m, sizes.held_out_per_set, sizes, seed * 100 + 50 + u), data_dir)
    return sets, info


# -- variants -------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Variant:
    """One model + loss of the comparison, parsed from ``MODEL:LOSS[:OPTION...]``."""

    name: str
    model: str  # qrnn, qrnn-small, ani
    force_weight: float | None  # None: learned σ (the paper's eq. 1)
    energy_per_atom: bool
    charges: bool
    dtype: str
    left_out: tuple[str, ...] = ()  # QRNNConfig terms set to None (nodisp, local)

    @classmethod
    def parse(cls, name: str) -> Variant:
        model, loss, *options = name.split(':')
        if model not in ('qrnn', 'qrnn-small', 'ani'):
            raise ValueError(f'variant {name!r}: model must be qrnn, qrnn-small or ani, got {model!r}.')
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f'variant {name!r}: unknown options {unknown} (known: {", ".join(OPTIONS)}).')
        if loss == 'sigma':
            force_weight = None
        elif loss.startswith('w'):
            force_weight = float(loss[1:])
        else:
            raise ValueError(f"variant {name!r}: loss must be 'sigma' or 'w<force weight>', got {loss!r}.")
        if model == 'ani' and (force_weight is None or {'noq', 'nodisp', 'local'} & set(options)):
            raise ValueError(f'variant {name!r}: TorchANI trains with fixed weights and has no charge label, '
                             'Coulomb or D3 term.')
        left_out = ('coulomb', 'dispersion') if 'local' in options else ('dispersion',) if 'nodisp' in options else ()
        return cls(name, model, force_weight, energy_per_atom=force_weight is not None and 'total' not in options,
                   charges=model != 'ani' and 'noq' not in options, dtype='float32' if 'f32' in options else 'float64',
                   left_out=left_out)


def training_config(variant: Variant, args: argparse.Namespace, seed: int) -> TrainingConfig:
    """The Trainer settings shared by every variant; the loss is the variant's."""
    tasks = ('energy', 'forces', 'charges') if variant.charges else ('energy', 'forces')
    loss = ({'learned_weights': True} if variant.force_weight is None else
            {'learned_weights': False, 'loss_weights': {'forces': variant.force_weight},
             'energy_loss': 'per_atom' if variant.energy_per_atom else 'total'})
    return TrainingConfig(tasks=tasks, batch_size=args.batch_size, max_epochs=args.epochs, dtype=variant.dtype,
                          seed=seed, learning_rate=args.learning_rate, scheduler_patience=args.scheduler_patience,
                          early_stopping_patience=args.epochs, **loss)


def ani2x_architecture(self_energies: dict[str, float]) -> torch.nn.Module:
    """TorchANI's ANI-2x architecture (AEV, element networks, CELU) for H, C, O with random weights."""
    os.environ.setdefault('TORCHANI_NO_WARN_EXTENSIONS', '1')
    from torchani.arch import ANI, Assembler

    assembler = Assembler(cls=ANI, periodic_table_index=True)
    assembler.set_symbols(ELEMENTS)
    assembler.set_global_cutoff_fn('cosine')
    assembler.set_aev_computer(radial='ani2x', angular='ani2x', strategy='pyaev')
    assembler.set_atomic_networks(ctor='ani2x')
    assembler.set_self_energies(self_energies)
    return assembler.assemble(1)


def padded(batch, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TorchANI's padded input of a flat batch: species (systems, max atoms) with -1 padding, coordinates, mask."""
    counts = torch.bincount(batch.system_index, minlength=batch.n_systems)
    slot = torch.arange(batch.n_atoms) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    species = torch.full((batch.n_systems, int(counts.max())), -1, dtype=torch.int64)
    coordinates = torch.zeros((*species.shape, 3), dtype=dtype)
    species[batch.system_index, slot] = batch.numbers
    coordinates[batch.system_index, slot] = batch.positions.to(dtype)
    return species, coordinates, (batch.system_index, slot)


def ani_output(model, batch, dtype: torch.dtype, create_graph: bool) -> dict[str, torch.Tensor]:
    species, coordinates, where = padded(batch, dtype)
    coordinates.requires_grad_(True)
    energies = model((species, coordinates)).energies
    gradient, = torch.autograd.grad(energies.sum(), coordinates, create_graph=create_graph)
    return {'energy': energies, 'forces': -gradient[where]}


class AniTrainer:
    """The QRNN Trainer's optimiser, schedule, validation score and best-weights rule, for a TorchANI model."""

    def __init__(self, source: InMemoryClusters, train: np.ndarray, validation: np.ndarray, config: TrainingConfig,
                 force_weight: float, energy_per_atom: bool) -> None:
        self.source, self.train, self.validation, self.config = source, train, validation, config
        self.force_weight, self.energy_per_atom = force_weight, energy_per_atom
        self.dtype = getattr(torch, config.dtype)
        batch = source.batch(train)
        offsets = np.concatenate([[0], np.cumsum(np.bincount(batch.system_index.numpy()))])
        counts = composition_matrix(batch.numbers.numpy(), offsets, ELEMENTS)
        fitted = fit_self_energies(counts, batch.energy.numpy())
        residual = batch.energy.numpy() - counts @ fitted
        self.scales = np.array([np.square(residual - residual.mean()).mean(), np.square(batch.forces.numpy()).mean()])
        torch.manual_seed(config.seed)
        self.model = ani2x_architecture(dict(zip(ELEMENTS, fitted.tolist(), strict=True))).to(self.dtype)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=config.scheduler_factor, patience=config.scheduler_patience,
            min_lr=config.min_learning_rate)

    def predict(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Same layout as :func:`aiida_qrnn.core.training.predict` (energy and forces)."""
        collected = {'energy': ([], []), 'forces': ([], [])}
        sizes = []
        for part in batch_slices(len(indices), 256):
            batch = self.source.batch(indices[part])
            output = ani_output(self.model, batch, self.dtype, create_graph=False)
            sizes.append(torch.bincount(batch.system_index, minlength=batch.n_systems).numpy())
            for name, (predicted, labels) in collected.items():
                predicted.append(output[name].detach().double().numpy())
                labels.append(getattr(batch, name).numpy())
        result = {name: (np.concatenate(p), np.concatenate(q)) for name, (p, q) in collected.items()}
        result['n_atoms'] = np.concatenate(sizes)
        return result

    def score(self) -> float:
        predictions = self.predict(self.validation)
        mse = [np.square(predictions[name][0] - predictions[name][1]).mean() for name in ('energy', 'forces')]
        return float((np.array(mse) / self.scales).sum())

    def fit(self) -> dict:
        config = self.config
        best_score, best_epoch, best_state = math.inf, None, None
        for epoch in range(config.max_epochs):
            order = epoch_order(self.train, config.seed, epoch)
            self.model.train()
            for part in batch_slices(len(order), config.batch_size):
                batch = self.source.batch(order[part])
                self.optimizer.zero_grad(set_to_none=True)
                output = ani_output(self.model, batch, self.dtype, create_graph=True)
                energy_error = output['energy'] - batch.energy.to(self.dtype)
                if self.energy_per_atom:
                    energy_error = energy_error / torch.bincount(batch.system_index).to(self.dtype)
                force_error = output['forces'] - batch.forces.to(self.dtype)
                loss = energy_error.square().mean() + self.force_weight * force_error.square().mean()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.gradient_clip)
                self.optimizer.step()
            score = self.score()
            self.scheduler.step(score)
            if score < best_score:
                best_score, best_epoch = score, epoch
                best_state = {key: value.clone() for key, value in self.model.state_dict().items()}
        self.model.load_state_dict(best_state)
        return {'epochs': config.max_epochs, 'best_epoch': best_epoch}


def set_errors(prediction: dict[str, np.ndarray]) -> dict[str, float]:
    """The trainer's error metrics plus the mean signed energy-per-atom error (eV/atom): an offset shows there."""
    predicted, labels = prediction['energy']
    offset = float(np.mean((predicted - labels) / prediction['n_atoms']))
    return {**error_metrics(prediction), 'energy_per_atom_mean_signed': offset}


def train_variant(variant: Variant, sets: dict[str, ClusterArrays], split: dict[str, np.ndarray],
                  args: argparse.Namespace, seed: int) -> dict:
    """Train one variant on the training split; MAEs on validation and every held-out set."""
    config = training_config(variant, args, seed)
    source = InMemoryClusters(sets['train'])
    start = time.perf_counter()
    if variant.model == 'ani':
        trainer = AniTrainer(source, split['train'], split['validation'], config, variant.force_weight,
                             variant.energy_per_atom)
        run = trainer.fit()
        model_predict = trainer.predict
        n_parameters = sum(p.numel() for p in trainer.model.parameters())
    else:
        widths = SMALL_WIDTHS if variant.model == 'qrnn-small' else {}
        torch.manual_seed(seed)
        with tempfile.TemporaryDirectory() as directory:
            model = QRNN(QRNNConfig(elements=ELEMENTS, **widths, **dict.fromkeys(variant.left_out)))
            trainer = Trainer(model, source, split['train'], split['validation'], config, directory)
            result = trainer.fit()
        run = {'epochs': result.epochs, 'best_epoch': result.best_epoch, 'final_weights': trainer.loss.weights()}
        model = trainer.trained_model()
        n_parameters = sum(p.numel() for p in model.parameters())

        def model_predict(indices, data=source):
            return predict(model, data, indices, batch_size=256)
    training_s = time.perf_counter() - start
    errors = {'validation': set_errors(model_predict(split['validation']))}
    for key, arrays in sets.items():
        if key != 'train':
            held_out = InMemoryClusters(arrays)
            indices = np.arange(len(held_out))
            if variant.model == 'ani':
                trainer.source = held_out
                errors[key] = set_errors(trainer.predict(indices))
                trainer.source = source
            else:
                errors[key] = set_errors(model_predict(indices, held_out))
    return {'training_s': training_s, 'n_parameters': n_parameters, **run, 'errors': errors}


# -- report ---------------------------------------------------------------------------------------------------------
def summarise(runs: dict[str, dict[int, dict]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and standard deviation over seeds of force MAE (eV/Å) and energy-per-atom MAE (meV/atom) per set."""
    summary = {}
    for name, by_seed in runs.items():
        sets = next(iter(by_seed.values()))['errors']
        summary[name] = {}
        for key in sets:
            forces = [run['errors'][key]['forces_mae'] for run in by_seed.values()]
            energies = [1e3 * run['errors'][key]['energy_per_atom_mae'] for run in by_seed.values()]
            offsets = [1e3 * run['errors'][key].get('energy_per_atom_mean_signed', np.nan) for run in by_seed.values()]
            summary[name][key] = {'forces_mae': float(np.mean(forces)), 'forces_mae_std': float(np.std(forces)),
                                  'energy_per_atom_mae_meV': float(np.mean(energies)),
                                  'energy_per_atom_mae_meV_std': float(np.std(energies)),
                                  'energy_per_atom_mean_signed_meV': float(np.mean(offsets))}
        held_out = [values['forces_mae'] for key, values in summary[name].items() if key.startswith('md_')]
        summary[name]['extensivity'] = {'worst_held_out_over_validation_forces':
                                        max(held_out) / summary[name]['validation']['forces_mae']}
    return summary


def table(summary: dict, reference: str, peer: str) -> str:
    """Force MAE and energy-per-atom MAE per set for every variant, and reference/peer ratios."""
    sets = [key for key in next(iter(summary.values())) if key != 'extensivity']
    ratio = reference in summary and peer in summary and reference != peer
    header = ['set'] + [f'{name} F / E' for name in summary] + ([f'{reference} / {peer} F, E'] if ratio else [])
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for key in sets:
        cells = [key]
        for name in summary:
            values = summary[name][key]
            cells.append(f"{values['forces_mae']:.3f}±{values['forces_mae_std']:.3f} / "
                         f"{values['energy_per_atom_mae_meV']:.2f}")
        if ratio:
            ours, theirs = summary[reference][key], summary[peer][key]
            cells.append(f"{ours['forces_mae'] / theirs['forces_mae']:.2f}, "
                         f"{ours['energy_per_atom_mae_meV'] / theirs['energy_per_atom_mae_meV']:.2f}")
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def machine() -> dict:
    model = next((line.split(':', 1)[1].strip() for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines()
                  if line.startswith('model name')), platform.processor())
    return {'cpu': model, 'cores': os.cpu_count(), 'load_average_at_end': os.getloadavg(),
            'torch_threads': torch.get_num_threads(), 'torch': torch.__version__, 'python': sys.version.split()[0]}


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='tiny data and 2 epochs (the CI smoke run)')
    parser.add_argument('--variants',
                        help=f'comma-separated MODEL:LOSS[:OPTION] (default {",".join(DEFAULT_VARIANTS)})')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0], help='weight and batch-order seeds')
    parser.add_argument('--data-seed', type=int, default=0, help='seed of the data and the split')
    for field in dataclasses.fields(Sizes):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=int,
                            help=f'default {getattr(DEFAULT, field.name)}')
    parser.add_argument('--learning-rate', type=float, default=1e-3)
    parser.add_argument('--scheduler-patience', type=int, default=5)
    parser.add_argument('--compare', nargs=2, metavar=('REFERENCE', 'PEER'),
                        help='the two variants whose ratio is printed (default: first QRNN and first ANI)')
    parser.add_argument('--data-dir', type=pathlib.Path, default=DATA)
    parser.add_argument('--data-only', action='store_true', help='make and cache the labelled data, train nothing')
    parser.add_argument('--merge', type=pathlib.Path, nargs='+', metavar='REPORT',
                        help='combine reports of variants trained in parallel on the same data into --output')
    parser.add_argument('--output', type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULT
    args.sizes = dataclasses.replace(base, **{field.name: getattr(args, field.name) for field in dataclasses.fields(
        Sizes) if getattr(args, field.name) is not None})
    args.epochs, args.batch_size = args.sizes.epochs, args.sizes.batch_size
    names = args.variants.split(',') if args.variants else (QUICK_VARIANTS if args.quick else DEFAULT_VARIANTS)
    args.variant_list = [Variant.parse(name) for name in names]
    if args.compare is None:
        qrnn = [v.name for v in args.variant_list if v.model != 'ani']
        ani = [v.name for v in args.variant_list if v.model == 'ani']
        args.compare = (qrnn[0] if qrnn else names[0], ani[0] if ani else names[-1])
    return args


def merge(paths: list[pathlib.Path], args: argparse.Namespace) -> dict:
    """One report of the runs of several reports on the same data (variants trained in parallel processes)."""
    reports = [json.loads(path.read_text()) for path in paths]
    same = ('sizes', 'data_seed', 'n_clusters', 'learning_rate', 'scheduler_patience')
    for path, report in zip(paths[1:], reports[1:], strict=True):
        differing = [key for key in same if report[key] != reports[0][key]]
        if differing:
            raise ValueError(f"'{path}' was made with other {differing} than '{paths[0]}'; not merged.")
    runs = {name: {int(seed): run for seed, run in by_seed.items()}
            for report in reports for name, by_seed in report['runs'].items()}
    names = list(runs)
    if args.compare is None or not set(args.compare) <= set(names):
        qrnn = [name for name in names if not name.startswith('ani')]
        ani = [name for name in names if name.startswith('ani')]
        args.compare = (qrnn[0] if qrnn else names[0], ani[0] if ani else names[-1])
    context = {key: value for key, value in reports[0].items()
               if key not in ('runs', 'summary', 'table', 'compare', 'machine')}
    context['command'] = [report['command'] for report in reports]
    report = write_report(args, context, runs)
    print(report['table'])
    return report


def main(argv: list[str] | None = None) -> dict:
    args = parse_arguments(argv)
    if args.merge:
        return merge(args.merge, args)
    start = time.perf_counter()
    sets, data_info = build_data(args.sizes, args.data_seed, args.data_dir)
    data_s = time.perf_counter() - start
    order = np.random.default_rng(args.data_seed).permutation(sets['train'].n_clusters)
    n_validation = max(1, len(order) // 10)
    split = {'validation': np.sort(order[:n_validation]), 'train': np.sort(order[n_validation:])}
    print(f"data: {len(split['train'])} train, {n_validation} validation, held out "
          + ', '.join(f'{key} {arrays.n_clusters}' for key, arrays in sets.items() if key != 'train')
          + f' ({data_s:.0f} s)', flush=True)
    if args.data_only:
        return {'data': data_info}
    runs: dict[str, dict[int, dict]] = {}
    context = {
        'command': 'OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_accuracy.py ' + ' '.join(
            sys.argv[1:] if argv is None else argv),
        'sizes': dataclasses.asdict(args.sizes), 'seeds': args.seeds, 'data_seed': args.data_seed,
        'learning_rate': args.learning_rate, 'scheduler_patience': args.scheduler_patience, 'data_s': data_s,
        'data': data_info, 'n_clusters': {'train': len(split['train']), 'validation': n_validation,
                                          **{key: arrays.n_clusters for key, arrays in sets.items() if key != 'train'}},
        'git_commit': subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
                                     cwd=HERE).stdout.strip(),
    }
    for variant in args.variant_list:
        for seed in args.seeds:
            run = train_variant(variant, sets, split, args, seed)
            runs.setdefault(variant.name, {})[seed] = run
            validation = run['errors']['validation']
            print(f"{variant.name} seed {seed}: {run['training_s']:.0f} s, best epoch {run['best_epoch']}, "
                  f"validation F {validation['forces_mae']:.3f} eV/Å, "
                  f"E {1e3 * validation['energy_per_atom_mae']:.2f} meV/atom", flush=True)
            report = write_report(args, context, runs)  # after every run: a long run that is stopped keeps its rows
    print(report['table'])
    for name, values in report['summary'].items():
        print(f"{name}: extensivity (worst held-out / validation force MAE) "
              f"{values['extensivity']['worst_held_out_over_validation_forces']:.2f}")
    return report


def write_report(args: argparse.Namespace, context: dict, runs: dict[str, dict[int, dict]]) -> dict:
    """``args.output`` with the runs so far, their summary, the table and the machine."""
    summary = summarise(runs)
    reference, peer = args.compare
    report = {**context, 'machine': machine(), 'compare': [reference, peer], 'summary': summary,
              'table': table(summary, reference, peer),
              'runs': {name: {str(seed): run for seed, run in by_seed.items()} for name, by_seed in runs.items()}}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + '\n')
    return report


if __name__ == '__main__':
    main()
