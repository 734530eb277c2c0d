"""Classical OPLS-AA MD speed (ns/day) for a ~1500-atom ethylene-glycol box on this machine's CPU with OpenMM.

The paper reports ~550 ns/day for its OPLS4 baseline on a GPU; this is the open OPLS-AA baseline of
:mod:`aiida_qrnn.core.forcefield` on the CPU platform, for context only. The box (150 EG molecules) is packed at
1.0 g/cm^3, minimised and warmed up, then timed for ``--steps`` Langevin steps of 1 fs (flexible bonds, PME,
1.0 nm cutoff, no trajectory output).

    .venv/bin/python benchmarks/bench_classical_md.py --steps 2000 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

PAPER_OPLS4_NS_PER_DAY_GPU = 550.0
RESULTS = Path(__file__).parent / 'results' / 'classical_md.json'


def measure(n_molecules: int, steps: int, threads: int, timestep_fs: float, cutoff_nm: float) -> dict:
    import openmm

    from aiida_qrnn.core.forcefield import build_system
    from aiida_qrnn.core.structures import density_g_cm3, pack_cell

    cell = pack_cell(1, n_molecules, density_g_cm3=1.0, seed=0, tolerance=2.0)
    system, _ = build_system(cell, cutoff_nm=cutoff_nm)
    integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, timestep_fs * 1e-3)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName('CPU'), {'Threads': str(threads)})
    context.setPositions(cell.positions / 10)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    context.setVelocitiesToTemperature(300.0, 1)
    integrator.step(200)  # warm-up: neighbour lists, PME grids
    started = time.perf_counter()
    integrator.step(steps)
    context.getState(getEnergy=True)  # wait for the last step
    elapsed = time.perf_counter() - started
    return {
        'n_atoms': len(cell), 'density_g_cm3': density_g_cm3(cell), 'threads': threads, 'steps': steps,
        'timestep_fs': timestep_fs, 'cutoff_nm': cutoff_nm, 'seconds': elapsed,
        'ns_per_day': steps * timestep_fs * 1e-6 / (elapsed / 86400),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--molecules', type=int, default=150, help='EG molecules (10 atoms each)')
    parser.add_argument('--steps', type=int, default=2000)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--timestep-fs', type=float, default=1.0)
    parser.add_argument('--cutoff-nm', type=float, default=1.0)
    arguments = parser.parse_args()
    import openmm

    runs = [measure(arguments.molecules, arguments.steps, threads, arguments.timestep_fs, arguments.cutoff_nm)
            for threads in arguments.threads]
    result = {
        'benchmark': 'classical OPLS-AA MD of liquid ethylene glycol, OpenMM CPU platform',
        'machine': {'cpu': platform.processor() or platform.machine(), 'cores': os.cpu_count(),
                    'openmm': openmm.__version__, 'note': 'shared machine: other jobs may have been running'},
        'paper_opls4_gpu_ns_per_day': PAPER_OPLS4_NS_PER_DAY_GPU,
        'runs': runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + '\n')
    for run in runs:
        print(f"{run['n_atoms']} atoms, {run['threads']} thread(s): {run['ns_per_day']:.2f} ns/day "
              f"(paper OPLS4 on a GPU: ~{PAPER_OPLS4_NS_PER_DAY_GPU:.0f} ns/day)")


if __name__ == '__main__':
    main()
