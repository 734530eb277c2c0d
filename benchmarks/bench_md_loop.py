"""Overhead of the MD driver beyond the force call, for 1 500 and 8 000 atoms, on both engines.

A trivially cheap potential (harmonic springs tethering each atom to its start) stands in for the model, so what
remains of a step's wall time is the driver:

* ``ase``: ``run_md`` with ``engine='ase'`` and the tether as an ASE calculator (numpy): ASE's integrator, the
  guards (non-finite and temperature every step, the vesin contact check every ``guard_interval`` steps), log rows
  and H5MD frames at the paper's intervals (every 100 and 1 000 steps);
* ``torch_run_md``: the same run with ``engine='torch'`` (the tether reaches the engine through the ASE-calculator
  adapter, so a device-host copy per step is included);
* ``torch_engine``: :class:`~aiida_qrnn.core.md.engine.MDEngine` alone with the tether written in torch (what a
  QRNN run adds to its force call: integrator arithmetic on the device; the run folder's work is amortised).

The QRNN's own force time is measured by ``bench_md.py`` (which also reports the engine's cost as a fraction of it).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_md_loop.py   # writes benchmarks/results/md_loop.json
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from aiida_qrnn.core.md import MDSettings, run_md
from aiida_qrnn.core.md.engine import ForceResult, MDEngine, initial_state

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


class TorchTether:
    """The tether as an engine force field, in torch on the engine's device."""

    def __init__(self, sites: torch.Tensor, n_replicas: int = 1, k_eV_per_A2: float = 1.0) -> None:
        self.sites, self.k, self.n_replicas = sites, k_eV_per_A2, n_replicas

    def __call__(self, positions: torch.Tensor, cells: torch.Tensor, compute_stress: bool) -> ForceResult:
        displacement = positions - self.sites  # (atoms, 3)
        energy = (0.5 * self.k * (displacement**2).sum()).reshape(1)
        stress = torch.zeros((1, 3, 3), dtype=positions.dtype, device=positions.device) if compute_stress else None
        return ForceResult(energy, -self.k * displacement, stress)

    def select(self, replicas: list[int]) -> TorchTether:
        return self


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


def time_driver(atoms: Atoms, ensemble: str, engine: str, n_steps: int) -> dict:
    calculator = HarmonicTether(atoms.positions.copy())
    settings = MDSettings(ensemble=ensemble, n_steps=n_steps, timestep_fs=0.5, temperature_K=300.0,
                          trajectory_interval=1000, log_interval=100, checkpoint_interval=10_000,
                          max_temperature_K=5000.0, engine=engine)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = run_md(settings, atoms, calculator, folder, rng=np.random.default_rng(0))
        elapsed = time.perf_counter() - started
    assert result.status == 0, result.message
    return {'seconds_per_step': elapsed / n_steps, 'steps_per_s': n_steps / elapsed,
            'calculator_calls_per_step': calculator.calls / n_steps}


def time_engine(atoms: Atoms, ensemble: str, cell_fluctuations: str, n_steps: int) -> float:
    """Seconds per step of the engine alone on the torch tether (CPU)."""
    settings = MDSettings(ensemble=ensemble, cell_fluctuations=cell_fluctuations, timestep_fs=0.5,
                          temperature_K=300.0)
    momenta = np.random.default_rng(0).normal(size=atoms.positions.shape) * 0.05
    state = initial_state(settings, atoms.positions, momenta, atoms.cell.array)
    force_field = TorchTether(torch.tensor(atoms.positions, dtype=torch.float64))
    engine = MDEngine(settings, force_field, [atoms.get_masses()], [state])
    engine.step()
    started = time.perf_counter()
    for _ in range(n_steps):
        engine.step(compute_stress=False)
    return (time.perf_counter() - started) / n_steps


def main() -> None:
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    torch.set_num_threads(1)
    cpu = next((line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                if line.startswith('model name')), platform.processor())
    results = {'machine': {'platform': platform.platform(), 'cpu': cpu, 'cpu_count': os.cpu_count(),
                           'load_average_1_5_15_min': list(os.getloadavg()), 'python': platform.python_version(),
                           'torch': torch.__version__, 'torch_threads': torch.get_num_threads()},
               'note': 'harmonic tether; driver overhead = step time - calculator time x calls per step; '
                       'torch_engine = MDEngine alone on a torch tether',
               'systems': []}
    for n_atoms, n_steps in ((1500, 1000), (8000, 300)):
        atoms = liquid_like_box(n_atoms)
        calculator_s = time_calculator(atoms, repeats=200)
        entry = {'n_atoms': n_atoms, 'n_steps': n_steps, 'calculator_seconds_per_call': calculator_s}
        for engine in ('ase', 'torch'):
            for ensemble in ('nvt', 'npt'):
                timing = time_driver(atoms, ensemble, engine, n_steps)
                timing['driver_overhead_seconds_per_step'] = (timing['seconds_per_step']
                                                              - calculator_s * timing['calculator_calls_per_step'])
                entry[f'{"ase" if engine == "ase" else "torch_run_md"}_{ensemble}'] = timing
        for ensemble, cell_fluctuations in (('nve', 'isotropic'), ('nvt', 'isotropic'), ('npt', 'isotropic'),
                                            ('npt', 'full')):
            entry[f'torch_engine_{ensemble}_{cell_fluctuations}_seconds_per_step'] = time_engine(
                atoms, ensemble, cell_fluctuations, n_steps)
        results['systems'].append(entry)
        print(json.dumps(entry, indent=1), flush=True)
    results['machine']['load_average_1_5_15_min_after'] = list(os.getloadavg())
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + '\n')
    print(f'wrote {RESULTS}')


if __name__ == '__main__':
    main()
