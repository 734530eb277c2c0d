"""Accuracy of the damped-shifted-force Coulomb against Ewald: the table behind the defaults of ``Coulomb``.

A 512-molecule box of rigid SPC-charged water (O -0.82 e, H +0.41 e, 1 g/cm³, two random configurations) and a
rock-salt crystal; for each (alpha, cutoff): the constant energy offset per molecule, the error of the energy
difference between the two configurations, the force RMSE and the pressure error (from dE/d ln L by central
differences of a uniform scaling), all against the Ewald sum of ``tests/core/model/test_coulomb.py``.
Writes ``benchmarks/results/coulomb_dsf_accuracy.json``. Run: ``.venv/bin/python benchmarks/coulomb_dsf_accuracy.py``.
"""

import importlib.util
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from aiida_qrnn.core.model.coulomb import Coulomb

ROOT = Path(__file__).resolve().parents[1]
EV_PER_CUBIC_ANGSTROM_TO_BAR = 1.602176634e6
SETTINGS = [(alpha, cutoff) for cutoff in (10.0, 12.0, 15.0) for alpha in (0.0, 0.1, 0.15, 0.2, 0.25)]


def load_reference():
    spec = importlib.util.spec_from_file_location('coulomb_reference', ROOT / 'tests/core/model/test_coulomb.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def water_box(seed: int, n: int = 8, spacing: float = 3.104) -> tuple[np.ndarray, np.ndarray]:
    """n³ randomly oriented waters on a jittered lattice at 1 g/cm³: positions (3 n³, 3) and cell (3, 3)."""
    rng = np.random.default_rng(seed)
    water = np.array([[0.0, 0.0, 0.0], [0.0, 0.8165, 0.5774], [0.0, -0.8165, 0.5774]])
    molecules = []
    for index in np.ndindex(n, n, n):
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        molecules.append(water @ rotation.T + np.array(index) * spacing + rng.normal(scale=0.3, size=3))
    return np.concatenate(molecules), np.eye(3) * n * spacing


def evaluate(energy_fn, positions: np.ndarray, cell: np.ndarray, step: float = 1e-4) -> tuple[float, np.ndarray, float]:
    """Energy, forces and dE/d ln L (uniform scaling of positions and cell) of one configuration."""
    tensor = torch.tensor(positions, requires_grad=True)
    energy = energy_fn(tensor, cell)
    forces = -torch.autograd.grad(energy, tensor)[0].numpy()
    energy = energy.detach()
    plus = float(energy_fn(torch.tensor(positions * (1 + step)), cell * (1 + step)))
    minus = float(energy_fn(torch.tensor(positions * (1 - step)), cell * (1 - step)))
    return float(energy), forces, (plus - minus) / (2 * step)


def main() -> None:
    reference = load_reference()
    configurations = [water_box(1), water_box(2)]
    n_molecules = len(configurations[0][0]) // 3
    charges = torch.tensor(np.tile([-0.82, 0.41, 0.41], n_molecules))
    volume = abs(np.linalg.det(configurations[0][1]))
    ewald = [evaluate(lambda p, c: reference.ewald_energy(p, charges, c), *config) for config in configurations]
    rows = []
    for alpha, cutoff in SETTINGS:
        model = Coulomb(cutoff=cutoff, dsf_alpha=alpha, short_range_cutoff=0.0)
        start = time.perf_counter()
        dsf = [evaluate(lambda p, c, model=model: reference.dsf_energy(model, p, charges, c), *config)
               for config in configurations]
        elapsed = time.perf_counter() - start
        rows.append({
            'alpha_per_angstrom': alpha, 'cutoff_angstrom': cutoff,
            'energy_offset_meV_per_molecule': 1e3 * (dsf[0][0] - ewald[0][0]) / n_molecules,
            'energy_difference_error_meV_per_molecule':
                1e3 * ((dsf[1][0] - dsf[0][0]) - (ewald[1][0] - ewald[0][0])) / n_molecules,
            'force_rmse_eV_per_angstrom': float(np.mean(
                [np.sqrt(((d[1] - e[1]) ** 2).mean()) for d, e in zip(dsf, ewald, strict=True)])),
            'pressure_error_bar': float(np.mean([
                -(d[2] - e[2]) / (3 * volume) * EV_PER_CUBIC_ANGSTROM_TO_BAR for d, e in zip(dsf, ewald, strict=True)
            ])),
            'seconds_for_both_configurations': elapsed,
        })
        print(json.dumps(rows[-1]))
    positions, nacl_charges, cell = reference.nacl(2)
    nacl_ewald = float(reference.ewald_energy(positions, nacl_charges, cell))
    nacl_rows = [
        {'alpha_per_angstrom': alpha, 'cutoff_angstrom': cutoff, 'energy_error_eV_per_ion': (float(
            reference.dsf_energy(Coulomb(cutoff=cutoff, dsf_alpha=alpha, short_range_cutoff=0.0), positions,
                                 nacl_charges, cell)) - nacl_ewald) / len(nacl_charges)}
        for alpha, cutoff in [*SETTINGS, (0.2, 20.0)]
    ]
    result = {
        'machine': f'{platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}',
        'water': {'molecules': n_molecules, 'ewald_force_rms_eV_per_angstrom':
                  float(np.sqrt((ewald[0][1] ** 2).mean())), 'rows': rows},
        'rock_salt': {'ions': len(nacl_charges), 'rows': nacl_rows},
    }
    output = ROOT / 'benchmarks/results/coulomb_dsf_accuracy.json'
    output.write_text(json.dumps(result, indent=1))
    print(f'wrote {output}')


if __name__ == '__main__':
    main()
