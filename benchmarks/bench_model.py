"""Speed of the QRNN potential beside TorchANI's ANI-2x on the same periodic ethylene-glycol liquid, same process.

    TORCHANI_NO_WARN_EXTENSIONS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_model.py --device cpu
    .venv/bin/python benchmarks/bench_model.py --device cuda --atoms 1500 8000 32000

Per box (float32 by default), energy + forces:

* QRNN: default :class:`QRNNConfig`, random weights, through :func:`evaluate` with a prebuilt 12 Å pair list
  (AEV, two charge passes, Coulomb and D3 dispersion);
* TorchANI 2.9: the ANI-2x architecture built with ``torchani.arch.Assembler`` exactly as ``torchani.models.ANI2x``
  builds it, random weights (nothing downloaded), one network and the ensemble of 8; AEV strategy ``cuaev`` on a
  GPU where its extension is built, else ``pyaev`` (recorded). It gets its own prebuilt 5.1 Å pair list through
  ``compute_from_external_neighbors``, and is also timed through its ordinary periodic ``forward`` (cell, pbc,
  its cell-list neighbour search inside every call).

The models are timed round-robin (one call of each per round, median over rounds), so load from other processes
on a shared machine hits both alike; the ratios QRNN/TorchANI are what to compare across machines. Results go to
``benchmarks/results/model_<device>.json`` with the machine (CPU model, threads, load average, torch version).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import numpy as np
import torch

from aiida_qrnn.core.model.neighbors import neighbor_pairs
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig, evaluate
from aiida_qrnn.testing.structures import ethylene_glycol_liquid

RESULTS = pathlib.Path(__file__).parent / 'results'
ANI2X_CUTOFF = 5.1  # Å, the radial AEV cutoff of ANI-2x


def ani2x_architecture(ensemble_size: int, strategy: str, neighborlist: str = 'cell_list'):
    """TorchANI's ANI-2x model as ``torchani.models.ANI2x`` assembles it, random weights, zero self energies.

    ``neighborlist``: TorchANI's own search inside ``forward``, ``cell_list`` for periodic boxes, ``all_pairs`` (as
    ``ANI2x``) for batches of molecules.
    """
    import torchani
    from torchani.arch import Assembler

    assembler = Assembler(periodic_table_index=True)
    assembler.set_symbols(torchani.models.SYMBOLS_2X)
    assembler.set_global_cutoff_fn('cosine')
    assembler.set_aev_computer(radial='ani2x', angular='ani2x', strategy=strategy)
    assembler.set_atomic_networks(ctor='ani2x')
    assembler.set_neighborlist(neighborlist)
    assembler.set_zeros_as_self_energies()
    return assembler.assemble(ensemble_size).requires_grad_(False)


def ani_strategy(device: torch.device) -> str:
    """``cuaev`` on a GPU where TorchANI's CUDA extension is installed, else ``pyaev``."""
    from torchani.csrc import CUAEV_IS_INSTALLED

    return 'cuaev' if device.type == 'cuda' and CUAEV_IS_INSTALLED else 'pyaev'


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize()


def round_robin(functions: dict, device: torch.device, rounds: int) -> dict[str, float]:
    """Median wall time (ms) of each function, called in turn once per round after one warm-up call each."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for function in functions.values():
        function()
    _sync(device)
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            _sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: float(np.median(values)) for name, values in times.items()}


def peak_memory_mb(function, device: torch.device) -> float | None:
    """Peak GPU memory (MiB) of one call; None on CPU (a process-wide RSS peak would not separate the models)."""
    if device.type != 'cuda':
        return None
    torch.cuda.reset_peak_memory_stats(device)
    function()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(device) / 2**20


def bench_box(n_atoms: int, device: torch.device, dtype: torch.dtype, rounds: int, strategy: str) -> dict:
    box = ethylene_glycol_liquid(round(n_atoms / 10), density_g_cm3=1.1, seed=0)
    box.wrap()  # TorchANI's external-neighbour entry point wants coordinates in the central cell
    positions = torch.tensor(box.positions, dtype=dtype, device=device)
    numbers = torch.tensor(box.numbers, device=device)
    system_index = torch.zeros(len(box), dtype=torch.long, device=device)
    cells = torch.tensor(box.cell.array, dtype=dtype, device=device).unsqueeze(0)
    pbc = torch.ones((1, 3), dtype=torch.bool, device=device)
    total_charge = torch.zeros(1, dtype=dtype, device=device)

    torch.manual_seed(0)
    qrnn = QRNN(QRNNConfig()).to(device=device, dtype=dtype).eval().requires_grad_(False)
    qrnn_pairs = neighbor_pairs(positions, system_index, cells, pbc, qrnn.periodic_cutoff)

    def qrnn_energy_forces():
        return evaluate(qrnn, positions, numbers, system_index, cells, pbc, total_charge, pairs=qrnn_pairs)['forces']

    # TorchANI: diff = coords[first] - coords[second] + shift; ours: r_ij = positions[j] - positions[i] + S @ cell
    ani_pairs, ani_cell_shifts = neighbor_pairs(positions, system_index, cells, pbc, ANI2X_CUTOFF)
    ani_neighbors = ani_pairs.flip(0).contiguous()
    ani_shifts = ani_cell_shifts @ cells[0]  # (pairs, 3) Å
    species = numbers.unsqueeze(0)  # (1, atoms) atomic numbers: periodic_table_index=True
    ani_cell, ani_pbc = cells[0], pbc[0]

    functions = {'qrnn': qrnn_energy_forces}
    ani_models = {}
    for label, size in (('ani2x_single', 1), ('ani2x_ensemble8', 8)):
        model = ani2x_architecture(size, strategy).to(device=device, dtype=dtype)
        ani_models[label] = model

        def energy_forces_external(model=model):
            coords = positions.unsqueeze(0).detach().requires_grad_(True)
            energy = model.compute_from_external_neighbors(species, coords, ani_neighbors, ani_shifts).energies
            return torch.autograd.grad(energy.sum(), coords)[0]

        def energy_forces_forward(model=model):
            coords = positions.unsqueeze(0).detach().requires_grad_(True)
            energy = model((species, coords), cell=ani_cell, pbc=ani_pbc).energies
            return torch.autograd.grad(energy.sum(), coords)[0]

        functions[label] = energy_forces_external
        functions[f'{label}_forward'] = energy_forces_forward
    milliseconds = round_robin(functions, device, rounds)
    # Same forces from both TorchANI entry points: the external list is the same neighbour set
    check = (functions['ani2x_single']() - functions['ani2x_single_forward']()).abs().max().item()
    result: dict = {
        'atoms': len(box), 'box_length_A': float(box.cell.lengths()[0]), 'qrnn_pairs': int(qrnn_pairs[0].shape[1]),
        'ani2x_pairs': int(ani_pairs.shape[1]), 'ani2x_forces_entry_points_max_difference_eV_per_A': check,
    }
    for name, value in milliseconds.items():
        result[f'{name}_energy_forces_ms'] = value
    for label in ('ani2x_single', 'ani2x_ensemble8'):
        result[f'ratio_qrnn_to_{label}'] = milliseconds['qrnn'] / milliseconds[label]
    result['qrnn_peak_memory_MB'] = peak_memory_mb(qrnn_energy_forces, device)
    result['ani2x_ensemble8_peak_memory_MB'] = peak_memory_mb(functions['ani2x_ensemble8'], device)
    return result


def machine(device: torch.device) -> dict:
    cpu = next((line.split(':', 1)[1].strip() for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines()
                if line.startswith('model name')), platform.processor())
    import torchani

    info = {
        'cpu': cpu, 'logical_cpus': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
        'load_average_1_5_15_min': list(os.getloadavg()), 'torch': torch.__version__, 'torchani': torchani.__version__,
        'python': platform.python_version(),
    }
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--dtype', choices=['float32', 'float64'], default='float32')
    parser.add_argument('--atoms', type=int, nargs='+', default=[1500, 8000])
    parser.add_argument('--rounds', type=int, default=3, help='timed calls of each model per box')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    parser.add_argument('--output', type=pathlib.Path, default=None,
                        help='JSON file (default: benchmarks/results/model_<device>.json)')
    arguments = parser.parse_args()
    os.environ.setdefault('TORCHANI_NO_WARN_EXTENSIONS', '1')
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    device = torch.device(arguments.device)
    dtype = getattr(torch, arguments.dtype)
    strategy = ani_strategy(device)
    load_before = list(os.getloadavg())
    boxes = []
    for n_atoms in arguments.atoms:
        result = bench_box(n_atoms, device, dtype, arguments.rounds, strategy)
        boxes.append(result)
        print(f"{result['atoms']} atoms, {device}, {arguments.dtype}, energy+forces (ms): "
              f"QRNN {result['qrnn_energy_forces_ms']:.1f}; TorchANI ANI-2x ({strategy}) 1 network "
              f"{result['ani2x_single_energy_forces_ms']:.1f} (ratio {result['ratio_qrnn_to_ani2x_single']:.2f}), "
              f"ensemble of 8 {result['ani2x_ensemble8_energy_forces_ms']:.1f} "
              f"(ratio {result['ratio_qrnn_to_ani2x_ensemble8']:.2f}); TorchANI forward with its own neighbour "
              f"search: 1 network {result['ani2x_single_forward_energy_forces_ms']:.1f}, ensemble "
              f"{result['ani2x_ensemble8_forward_energy_forces_ms']:.1f}", flush=True)
    output = arguments.output or RESULTS / f'model_{device.type}.json'
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        'machine': {**machine(device), 'load_average_before_1_5_15_min': load_before},
        'dtype': arguments.dtype, 'rounds': arguments.rounds, 'torchani_aev_strategy': strategy, 'boxes': boxes,
        'qrnn_config': QRNNConfig().to_dict(),
        'command': 'benchmarks/bench_model.py ' + ' '.join(f'{key}={value}' for key, value in vars(arguments).items()),
    }
    output.write_text(json.dumps(record, indent=2) + '\n')


if __name__ == '__main__':
    main()
