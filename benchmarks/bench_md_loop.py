"""Overhead of the MD driver beyond the force call, for 1 500 and 8 000 atoms.

A trivially cheap calculator (harmonic springs tethering each atom to its start, O(N) numpy) stands in for
the model, so what remains of a step's wall time is the driver: integrator arithmetic, the stability guards
(non-finite and temperature every step, the vesin contact check every ``guard_interval`` steps), log rows
and H5MD frames at the paper's intervals (every 100 and 1 000 steps). The QRNN's own force time is measured by
the model benchmarks; add it to the overhead here for ns/day.

    .venv/bin/python benchmarks/bench_md_loop.py   # writes benchmarks/results/md_loop.json
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from aiida_qrnn.core.md import MDSettings, run_md

RESULTS = Path(__file__).parent / 'results' / 'md_loop.json'


class HarmonicTether(Calculator):
    """E = k/2 sum |r - r0|^2: forces in O(N) numpy, zero stress (the cheapest calculator that moves atoms)."""

    implemented_properties = ['energy', 'forces', 'stress']

    def __init__(self, sites: np.ndarray, k_eV_per_A2: float = 1.0) -> None:
        super().__init__()
        self.sites, self.k = sites, k_eV_per_A2
        self.calls = 0

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        displacement = self.atoms.positions - self.sites  # (n_atoms, 3)
        self.results['energy'] = 0.5 * self.k * float((displacement**2).sum())
        self.results['forces'] = -self.k * displacement
        self.results['stress'] = np.zeros(6)


def liquid_like_box(n_atoms: int, seed: int = 0) -> Atoms:
    """Atoms on a jittered simple-cubic grid at about the number density of ethylene glycol (0.1 atoms/Å^3)."""
    side = int(np.ceil(n_atoms ** (1 / 3)))
    spacing = 0.1 ** (-1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing='ij'), axis=-1).reshape(-1, 3)[:n_atoms]
    positions = (grid + np.random.default_rng(seed).uniform(-0.1, 0.1, grid.shape)) * spacing
    numbers = np.resize([8, 6, 6, 8, 1, 1, 1, 1, 1, 1], n_atoms)  # EG-like composition
    return Atoms(numbers=numbers, positions=positions, cell=[side * spacing] * 3, pbc=True)


def time_calculator(atoms: Atoms, repeats: int) -> float:
    calculator = HarmonicTether(atoms.positions.copy())
    started = time.perf_counter()
    for _ in range(repeats):
        calculator.calculate(atoms, ['energy', 'forces'], all_changes)
    return (time.perf_counter() - started) / repeats


def time_driver(atoms: Atoms, ensemble: str, n_steps: int) -> dict:
    calculator = HarmonicTether(atoms.positions.copy())
    settings = MDSettings(ensemble=ensemble, n_steps=n_steps, timestep_fs=0.5, temperature_K=300.0,
                          trajectory_interval=1000, log_interval=100, checkpoint_interval=10_000,
                          max_temperature_K=1e6)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = run_md(settings, atoms, calculator, folder, rng=np.random.default_rng(0))
        elapsed = time.perf_counter() - started
    assert result.status == 0, result.message
    return {'seconds_per_step': elapsed / n_steps, 'steps_per_s': n_steps / elapsed,
            'calculator_calls_per_step': calculator.calls / n_steps}


def main() -> None:
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    results = {'machine': {'platform': platform.platform(), 'processor': platform.processor(),
                           'cpu_count': os.cpu_count(), 'load_average_1min': os.getloadavg()[0],
                           'python': platform.python_version()},
               'note': 'harmonic tether calculator; overhead = driver step time - calculator time x calls per step',
               'systems': []}
    for n_atoms, n_steps in ((1500, 2000), (8000, 1000)):
        atoms = liquid_like_box(n_atoms)
        calculator_s = time_calculator(atoms, repeats=200)
        entry = {'n_atoms': n_atoms, 'n_steps': n_steps, 'calculator_seconds_per_call': calculator_s}
        for ensemble in ('nvt', 'npt'):
            timing = time_driver(atoms, ensemble, n_steps)
            timing['driver_overhead_seconds_per_step'] = (timing['seconds_per_step']
                                                          - calculator_s * timing['calculator_calls_per_step'])
            entry[ensemble] = timing
        results['systems'].append(entry)
        print(json.dumps(entry, indent=1))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + '\n')
    print(f'wrote {RESULTS}')


if __name__ == '__main__':
    main()
