"""QRNN MD speed: the torch engine against the ASE path, beside TorchANI's ANI-2x force call in the same run.

    TORCHANI_NO_WARN_EXTENSIONS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_md.py     # CPU, 1 500 atoms
    .venv/bin/python benchmarks/bench_md.py --device cuda --sizes 1500 8000 32000 --steps 200

Per ethylene-glycol box (:func:`aiida_qrnn.testing.structures.ethylene_glycol_liquid`, random molecule placement,
so the contact guard runs with a 0.01 Å limit), default :class:`QRNNConfig` with random weights, float32:

* ``force_call_ms`` / ``force_stress_call_ms``: one QRNN energy+forces(+stress) call through the engine's force
  field (:class:`~aiida_qrnn.core.md.forcefields.QRNNForceField`: Verlet list, one backward pass);
* ``nvt`` / ``npt`` (isotropic MTK): median ms per step of the torch engine (:class:`~aiida_qrnn.core.md.engine.
  MDEngine` on the QRNN force field) and of ASE's integrator driving ``QRNNCalculator`` with the same 1 Å skin,
  and the engine's own cost (the same engine with the forces served from a cache) as a fraction of the force call
  (target <= 5 %). The run folder's work (log every 100 steps, frames every 1 000, the contact guard every 10) is
  not in these numbers;
* ``ani2x_single_ms`` / ``ani2x_ensemble8_ms``: TorchANI 2.9's ANI-2x architecture (``torchani.arch.Assembler``,
  random weights, its own cell-list neighbour search), energy+forces on the same box, dtype and device, and the
  ratio of the QRNN force call to it;
* ``batched``: 10 replicas of the box advanced by one :class:`~aiida_qrnn.core.md.engine.MDEngine` (one model
  call per step) against the same 10 replicas one after another, NVT; throughput ratio.

The force calls, TorchANI and the steps of both engines are timed round-robin (one of each per round, median
over ``--steps`` rounds), so load from other processes on a shared machine hits them alike: compare the ratios.
Results go to ``benchmarks/results/md_qrnn_<device>.json`` with the machine (CPU model, threads, load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_model import ani2x_architecture, ani_strategy, machine, round_robin

from aiida_qrnn.core.md import MDSettings
from aiida_qrnn.core.md.engine import MDEngine, initial_state
from aiida_qrnn.core.md.forcefields import QRNNForceField
from aiida_qrnn.core.md.integrators import build_integrator
from aiida_qrnn.core.model.calculator import QRNNCalculator
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig
from aiida_qrnn.testing.structures import ethylene_glycol_liquid

RESULTS = Path(__file__).parent / 'results'
SECONDS_PER_DAY = 86_400.0
TIMESTEP_FS = 0.5


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize()


def time_function(function, device: torch.device, repeats: int) -> float:
    """Median ms of ``function`` after one warm-up call."""
    function()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


class _CachedForces:
    """A force field that returns one stored evaluation: what is left of a step is the engine's own work."""

    def __init__(self, result) -> None:
        self.result = result

    def __call__(self, positions, cells, compute_stress):
        return self.result

    def select(self, replicas):
        return self


def steppers(atoms, calculator: QRNNCalculator, device: torch.device, ensemble: str) -> tuple:
    """``(torch engine on the QRNN, ASE integrator on QRNNCalculator)`` from the same state."""
    settings = MDSettings(ensemble=ensemble, timestep_fs=TIMESTEP_FS, temperature_K=300.0)
    momenta = np.random.default_rng(0).normal(size=atoms.positions.shape) * 0.05
    box = atoms.copy()
    box.set_momenta(momenta)
    state = initial_state(settings, box.positions, momenta, box.cell.array)
    engine = MDEngine(settings, QRNNForceField.from_calculator(calculator, [box]), [box.get_masses()], [state],
                      device=device)
    box.calc = QRNNCalculator(calculator.model, device=device, dtype=calculator.dtype,
                              neighbor_skin_A=calculator.neighbor_skin)  # its own neighbour-list cache
    return engine, build_integrator(settings, box)


def engine_own_ms(engine: MDEngine, device: torch.device) -> float:
    """The engine's step with its forces served from a cache: its own work, median of 50."""
    real = engine.force_field
    engine.force_field = _CachedForces(engine.result)
    milliseconds = time_function(engine.step, device, 50)
    engine.force_field = real
    return milliseconds


def batched_throughput(model: QRNN, device: torch.device, dtype: torch.dtype, n_atoms: int, n_replicas: int,
                       n_steps: int) -> dict:
    """NVT steps of ``n_replicas`` boxes in one engine against one engine per box, one after another."""
    settings = MDSettings(ensemble='nvt', timestep_fs=TIMESTEP_FS)
    calculator = QRNNCalculator(model, device=device, dtype=dtype, neighbor_skin_A=1.0)
    boxes = [ethylene_glycol_liquid(round(n_atoms / 10), seed=seed) for seed in range(n_replicas)]
    rng = np.random.default_rng(0)
    states = [initial_state(settings, box.positions, rng.normal(size=box.positions.shape) * 0.05, box.cell.array)
              for box in boxes]

    def run(indices: list[int]) -> float:
        chosen = [boxes[i] for i in indices]
        engine = MDEngine(settings, QRNNForceField.from_calculator(calculator, chosen),
                          [box.get_masses() for box in chosen], [states[i] for i in indices], device=device)
        engine.step()  # warm-up
        _sync(device)
        started = time.perf_counter()
        for _ in range(n_steps):
            engine.step()
        _sync(device)
        return (time.perf_counter() - started) / n_steps * 1e3

    batched = run(list(range(n_replicas)))
    one_by_one = sum(run([index]) for index in range(n_replicas))
    return {'replicas': n_replicas, 'atoms_per_replica': len(boxes[0]), 'steps': n_steps,
            'batched_ms_per_step_all_replicas': batched, 'one_by_one_ms_per_step_all_replicas': one_by_one,
            'throughput_ratio_batched_to_one_by_one': one_by_one / batched}


def bench_box(n_atoms: int, device: torch.device, dtype: torch.dtype, n_steps: int, strategy: str) -> dict:
    torch.manual_seed(0)
    model = QRNN(QRNNConfig()).to(device=device, dtype=dtype).eval().requires_grad_(False)
    calculator = QRNNCalculator(model, device=device, dtype=dtype, neighbor_skin_A=1.0)
    atoms = ethylene_glycol_liquid(round(n_atoms / 10), seed=0)
    entry: dict = {'atoms': len(atoms), 'box_length_A': float(atoms.cell.lengths()[0])}

    force_field = QRNNForceField.from_calculator(calculator, [atoms])
    positions = torch.tensor(atoms.positions, dtype=torch.float64, device=device)
    cells = torch.tensor(atoms.cell.array, dtype=torch.float64, device=device)[None]
    noise = torch.Generator(device='cpu').manual_seed(1)

    def call(stress: bool):
        moved = positions + 1e-3 * torch.randn(positions.shape, generator=noise, dtype=torch.float64).to(device)
        return force_field(moved, cells, stress)

    box = atoms.copy()
    box.wrap()
    species = torch.tensor(box.numbers, device=device)[None]
    coordinates = torch.tensor(box.positions, dtype=dtype, device=device)[None]
    cell, pbc = torch.tensor(box.cell.array, dtype=dtype, device=device), torch.ones(3, dtype=torch.bool, device=device)
    functions = {'force_call': lambda: call(False), 'force_stress_call': lambda: call(True)}
    for label, size in (('ani2x_single', 1), ('ani2x_ensemble8', 8)):
        ani = ani2x_architecture(size, strategy).to(device=device, dtype=dtype)

        def ani_energy_forces(ani=ani):
            moving = coordinates.detach().requires_grad_(True)
            energy = ani((species, moving), cell=cell, pbc=pbc).energies
            return torch.autograd.grad(energy.sum(), moving)[0]

        functions[label] = ani_energy_forces
    engines = {}
    for ensemble in ('nvt', 'npt'):
        engine, integrator = steppers(atoms, calculator, device, ensemble)
        engines[ensemble] = engine
        functions[f'torch_{ensemble}_step'] = engine.step
        functions[f'ase_{ensemble}_step'] = integrator.step
    milliseconds = round_robin(functions, device, n_steps)
    entry.update({f'{name}_ms': value for name, value in milliseconds.items()})
    for label in ('ani2x_single', 'ani2x_ensemble8'):
        entry[f'ratio_qrnn_force_call_to_{label}'] = milliseconds['force_call'] / milliseconds[label]
    for ensemble, call_key in (('nvt', 'force_call'), ('npt', 'force_stress_call')):
        torch_ms, ase_ms = milliseconds[f'torch_{ensemble}_step'], milliseconds[f'ase_{ensemble}_step']
        own = engine_own_ms(engines[ensemble], device)
        entry[ensemble] = {
            'torch_ms_per_step': torch_ms, 'ase_ms_per_step': ase_ms, 'ratio_ase_to_torch_step': ase_ms / torch_ms,
            'torch_ns_per_day': SECONDS_PER_DAY / (torch_ms * 1e-3) * TIMESTEP_FS * 1e-6,
            'engine_own_ms_per_step': own, 'engine_own_fraction_of_force_call': own / milliseconds[call_key],
            'ratio_torch_step_to_ani2x_single': torch_ms / milliseconds['ani2x_single'],
        }
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu', help='torch device (cpu, cuda)')
    parser.add_argument('--dtype', default='float32', choices=('float32', 'float64'))
    parser.add_argument('--steps', type=int, default=0, help='rounds of timing (default: 5 on CPU, 200 on GPU)')
    parser.add_argument('--sizes', type=int, nargs='+', default=[1500], help='atoms per box (about)')
    parser.add_argument('--replicas', type=int, default=10, help='replicas in the batched timing (0: skip)')
    parser.add_argument('--replica-atoms', type=int, default=1500, help='atoms per replica (about)')
    arguments = parser.parse_args()
    os.environ.setdefault('TORCHANI_NO_WARN_EXTENSIONS', '1')
    device, dtype = torch.device(arguments.device), getattr(torch, arguments.dtype)
    cpu = device.type == 'cpu'
    n_steps = arguments.steps or (5 if cpu else 200)
    strategy = ani_strategy(device)
    results = {
        'machine': machine(device) | {'device': str(device),
                                      'gpu': None if cpu else torch.cuda.get_device_name(device)},
        'dtype': arguments.dtype, 'timestep_fs': TIMESTEP_FS, 'neighbor_skin_A': 1.0, 'n_steps': n_steps,
        'torchani_aev_strategy': strategy,
        'model': 'QRNNConfig() defaults (ANI-2x-sized AEV, 12 Å DSF Coulomb, D3), random weights', 'boxes': [],
    }
    for target in arguments.sizes:
        entry = bench_box(target, device, dtype, n_steps, strategy)
        results['boxes'].append(entry)
        print(json.dumps(entry, indent=1), flush=True)
    if arguments.replicas:
        torch.manual_seed(0)
        model = QRNN(QRNNConfig()).to(device=device, dtype=dtype).eval().requires_grad_(False)
        results['batched'] = batched_throughput(model, device, dtype, arguments.replica_atoms, arguments.replicas,
                                                max(2, n_steps // 10) if not cpu else 2)
        print(json.dumps(results['batched'], indent=1), flush=True)
    results['machine']['load_average_1_5_15_min_after'] = list(os.getloadavg())
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f'md_qrnn_{device.type}.json'
    path.write_text(json.dumps(results, indent=2) + '\n')
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
