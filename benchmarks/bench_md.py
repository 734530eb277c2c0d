"""QRNN molecular dynamics speed: steps/s and ns/day of 1 500- and 8 000-atom ethylene glycol boxes.

The whole production step is timed through :func:`aiida_qrnn.core.md.run_md` (the MD job's code path: integrator,
guards, log every 100 steps, frames every 1 000, checkpoint) with the QRNN calculator (default sizes, random
weights: speed does not depend on the values), and the calculator's own energy+forces(+stress) call separately,
so the loop overhead is the difference. ns/day at the paper's 0.5 fs step. The box is the quick (unrelaxed)
liquid of :mod:`aiida_qrnn.core.model.liquid`; the contact guard runs with a 0.01 Å limit so that its random
molecule placement does not stop the run (the guard's cost is still counted).

    .venv/bin/python benchmarks/bench_md.py                       # CPU, writes benchmarks/results/md_qrnn_cpu.json
    .venv/bin/python benchmarks/bench_md.py --device cuda --steps 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / 'results'
SECONDS_PER_DAY = 86_400.0


def build_calculator(device: str, dtype: str, skin: float):
    import torch

    from aiida_qrnn.core.model.calculator import QRNNCalculator
    from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig

    torch.manual_seed(0)
    model = QRNN(QRNNConfig()).to(getattr(torch, dtype))
    return QRNNCalculator(model, device=device, neighbor_skin_A=skin)


def time_calls(atoms, calculator, properties: list[str], repeats: int) -> float:
    """Seconds per calculator call, positions moved a little each time (defeats ASE's result cache)."""
    from ase.calculators.calculator import all_changes

    rng = np.random.default_rng(1)
    calculator.calculate(atoms, properties, all_changes)  # warm-up (allocations, neighbour list)
    started = time.perf_counter()
    for _ in range(repeats):
        atoms.positions += rng.normal(scale=1e-3, size=atoms.positions.shape)
        calculator.calculate(atoms, properties, all_changes)
    return (time.perf_counter() - started) / repeats


def time_run(atoms, calculator, ensemble: str, n_steps: int) -> float:
    """Seconds per step of ``run_md`` (first step excluded: it includes the step-0 checks and file creation)."""
    from aiida_qrnn.core.md import MDSettings, run_md

    common = {'ensemble': ensemble, 'timestep_fs': 0.5, 'trajectory_interval': 1000, 'log_interval': 100,
              'checkpoint_interval': 10_000, 'max_temperature_K': 1e5, 'min_distance_A': 0.01}
    with tempfile.TemporaryDirectory() as folder:
        run_md(MDSettings(n_steps=1, **common), atoms, calculator, folder, rng=np.random.default_rng(0))
        started = time.perf_counter()
        result = run_md(MDSettings(n_steps=1 + n_steps, **common), atoms, calculator, folder,
                        rng=np.random.default_rng(0))
        elapsed = time.perf_counter() - started
    if result.status != 0:
        raise RuntimeError(f'{ensemble} benchmark run ended with {result.status.name}: {result.message}')
    return elapsed / n_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu', help='torch device (cpu, cuda)')
    parser.add_argument('--dtype', default='float32', choices=('float32', 'float64'))
    parser.add_argument('--steps', type=int, default=0, help='MD steps per run (default: 5 on CPU, 200 on GPU)')
    parser.add_argument('--sizes', type=int, nargs='+', default=[1500, 8000], help='atoms per box (about)')
    parser.add_argument('--skin', type=float, default=1.0, help='Verlet-list skin in Å')
    arguments = parser.parse_args()
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    import torch

    from aiida_qrnn.core.model.liquid import ethylene_glycol_liquid

    n_steps = arguments.steps or (5 if arguments.device == 'cpu' else 200)
    calculator = build_calculator(arguments.device, arguments.dtype, arguments.skin)
    results = {
        'machine': {'platform': platform.platform(), 'cpu_count': os.cpu_count(),
                    'load_average_1min': os.getloadavg()[0], 'torch': torch.__version__,
                    'torch_threads': torch.get_num_threads(), 'device': arguments.device,
                    'gpu': torch.cuda.get_device_name() if arguments.device.startswith('cuda') else None},
        'dtype': arguments.dtype, 'timestep_fs': 0.5, 'neighbor_skin_A': arguments.skin, 'n_steps': n_steps,
        'model': 'QRNNConfig() defaults (ANI-2x-sized AEV, hidden 128-96 / 160-128-96), random weights',
        'systems': [],
    }
    for target in arguments.sizes:
        atoms = ethylene_glycol_liquid(round(target / 10), seed=0)
        entry = {'n_atoms': len(atoms), 'box_length_A': float(atoms.cell.lengths()[0])}
        entry['force_call_s'] = time_calls(atoms.copy(), calculator, ['energy', 'forces'], repeats=max(1, n_steps))
        entry['force_stress_call_s'] = time_calls(atoms.copy(), calculator, ['energy', 'forces', 'stress'],
                                                  repeats=max(1, n_steps))
        for ensemble, call in (('nvt', 'force_call_s'), ('npt', 'force_stress_call_s')):
            step_s = time_run(atoms.copy(), calculator, ensemble, n_steps)
            entry[ensemble] = {
                'seconds_per_step': step_s, 'steps_per_s': 1.0 / step_s,
                'ns_per_day': SECONDS_PER_DAY / step_s * 0.5 * 1e-6,
                'loop_overhead_s_per_step': step_s - entry[call],
            }
        results['systems'].append(entry)
        print(json.dumps(entry, indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f'md_qrnn_{arguments.device.split(":")[0]}.json'
    path.write_text(json.dumps(results, indent=2) + '\n')
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
