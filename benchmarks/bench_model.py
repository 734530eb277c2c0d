"""Speed of the QRNN potential on periodic ethylene-glycol liquids, beside an ANI-2x-sized model on the same box.

    .venv/bin/python benchmarks/bench_model.py --device cpu --atoms 1500 8000
    .venv/bin/python benchmarks/bench_model.py --device cuda --atoms 1500 8000

Per box: ms per energy+forces call with a prebuilt neighbour list (the model), ms per neighbour-list build, ms per
ASE Velocity Verlet step (calculator with a 1 Å Verlet skin, stress off: an NVT step), peak memory. The reference
is TorchANI's ANI-2x architecture with random weights (science.md §1.2): the same AEV constants over its 7 species
(1008 features) and an ensemble of 8 models of 7 element networks (H 256-192-160, C 224-192-160, N/O 192-160-128,
S/F/Cl 160-128-96, CELU 0.1), energies averaged as ANI-2x does; a single ANI-2x model is timed too. Results go
to ``benchmarks/results/model.json`` (merged per device).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import resource
import time

import numpy as np
import torch
from ase import units
from ase.md.verlet import VelocityVerlet

from aiida_qrnn.core.model.aev import AEVComputer
from aiida_qrnn.core.model.calculator import QRNNCalculator
from aiida_qrnn.core.model.liquid import ethylene_glycol_liquid
from aiida_qrnn.core.model.neighbors import neighbor_pairs, pair_geometry
from aiida_qrnn.core.model.qrnn import QRNN, ElementNetworks, QRNNConfig, evaluate

ANI2X_SPECIES = {1: 0, 6: 1, 7: 2, 8: 3, 16: 4, 9: 5, 17: 6}
ANI2X_HIDDEN = [[256, 192, 160], [224, 192, 160], [192, 160, 128], [192, 160, 128], [160, 128, 96],
                [160, 128, 96], [160, 128, 96]]  # H C N O S F Cl


class ANI2xSized(torch.nn.Module):
    """AEV (7 species) + ``n_models`` x 7 element networks of ANI-2x size; mean energy over the ensemble."""

    def __init__(self, n_models: int) -> None:
        super().__init__()
        self.aev = AEVComputer(7)
        self.ensemble = torch.nn.ModuleList()
        for _ in range(n_models):
            networks = ElementNetworks(7, [self.aev.aev_length, 1, 1], 0.1)
            networks.networks = torch.nn.ModuleList([
                torch.nn.Sequential(*[layer for size_in, size_out in zip(
                    [self.aev.aev_length, *hidden], [*hidden, 1], strict=True)
                    for layer in (torch.nn.Linear(size_in, size_out), torch.nn.CELU(0.1))][:-1])
                for hidden in ANI2X_HIDDEN
            ])
            self.ensemble.append(networks)

    def forward(self, positions, species, cells, system_index, pairs, cell_shifts):
        _, vectors, distances = pair_geometry(positions, cells, system_index, pairs, cell_shifts)
        aev = self.aev(species, pairs, vectors, distances)[0]  # (atoms, 1008)
        atoms_of_species = [(species == index).nonzero().squeeze(1) for index in range(7)]
        energies = [networks(aev, atoms_of_species).sum() for networks in self.ensemble]
        return torch.stack(energies).mean()


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize()


def _time(function, device: torch.device, repeats: int) -> float:
    """Median wall time (ms) of ``function`` after one warm-up call."""
    function()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: kB)


def _reset_peak(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)


def bench_box(n_atoms: int, device: torch.device, dtype: torch.dtype, repeats: int, md_steps: int) -> dict:
    box = ethylene_glycol_liquid(round(n_atoms / 10), density_g_cm3=1.1, seed=0)
    positions = torch.tensor(box.positions, dtype=dtype, device=device)
    numbers = torch.tensor(box.numbers, device=device)
    system_index = torch.zeros(len(box), dtype=torch.long, device=device)
    cells = torch.tensor(box.cell.array, dtype=dtype, device=device).unsqueeze(0)
    pbc = torch.ones((1, 3), dtype=torch.bool, device=device)
    total_charge = torch.zeros(1, dtype=dtype, device=device)
    result: dict = {'atoms': len(box), 'box_length_A': float(box.cell.lengths()[0])}

    torch.manual_seed(0)
    model = QRNN(QRNNConfig()).to(device=device, dtype=dtype).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    pairs = neighbor_pairs(positions, system_index, cells, pbc, model.periodic_cutoff)
    result['qrnn_pairs'] = int(pairs[0].shape[1])
    _reset_peak(device)
    result['qrnn_energy_forces_ms'] = _time(
        lambda: evaluate(model, positions, numbers, system_index, cells, pbc, total_charge, pairs=pairs), device,
        repeats,
    )
    result['qrnn_peak_memory_MB'] = _peak_memory_mb(device)
    result['qrnn_neighbor_list_ms'] = _time(
        lambda: neighbor_pairs(positions, system_index, cells, pbc, model.periodic_cutoff), device, repeats,
    )
    box.calc = QRNNCalculator(model, device=device, dtype=dtype, neighbor_skin_A=1.0)
    box.set_momenta(np.zeros((len(box), 3)))
    dynamics = VelocityVerlet(box, timestep=0.5 * units.fs)
    dynamics.run(1)
    _sync(device)
    start = time.perf_counter()
    dynamics.run(md_steps)
    _sync(device)
    result['qrnn_md_step_ms'] = (time.perf_counter() - start) * 1e3 / md_steps

    species = torch.tensor([ANI2X_SPECIES[number] for number in box.numbers], device=device)
    ani_pairs = neighbor_pairs(positions, system_index, cells, pbc, 5.1)
    for label, n_models in (('ani2x_ensemble8', 8), ('ani2x_single', 1)):
        reference = ANI2xSized(n_models).to(device=device, dtype=dtype).eval()
        for parameter in reference.parameters():
            parameter.requires_grad_(False)

        def energy_forces(reference=reference):
            moving = positions.detach().requires_grad_(True)
            energy = reference(moving, species, cells, system_index, *ani_pairs)
            return torch.autograd.grad(energy, moving)[0]

        _reset_peak(device)
        result[f'{label}_energy_forces_ms'] = _time(energy_forces, device, repeats)
        result[f'{label}_peak_memory_MB'] = _peak_memory_mb(device)
    for label in ('ani2x_ensemble8', 'ani2x_single'):
        result[f'ratio_qrnn_to_{label}'] = result['qrnn_energy_forces_ms'] / result[f'{label}_energy_forces_ms']
    return result


def machine(device: torch.device) -> dict:
    cpu = next((line.split(':', 1)[1].strip() for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines()
                if line.startswith('model name')), platform.processor())
    info = {'cpu': cpu, 'torch_threads': torch.get_num_threads(), 'torch': torch.__version__,
            'python': platform.python_version(), 'host': platform.node()}
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', choices=['float32', 'float64'], default='float32')
    parser.add_argument('--atoms', type=int, nargs='+', default=[1500, 8000])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--md-steps', type=int, default=5)
    parser.add_argument('--output', type=pathlib.Path, default=pathlib.Path(__file__).parent / 'results' / 'model.json')
    arguments = parser.parse_args()
    device = torch.device(arguments.device)
    dtype = getattr(torch, arguments.dtype)
    boxes = []
    for n_atoms in arguments.atoms:
        result = bench_box(n_atoms, device, dtype, arguments.repeats, arguments.md_steps)
        boxes.append(result)
        print(f"{result['atoms']} atoms on {device}: QRNN {result['qrnn_energy_forces_ms']:.1f} ms energy+forces, "
              f"{result['qrnn_md_step_ms']:.1f} ms/MD step, {result['qrnn_peak_memory_MB']:.0f} MB; "
              f"ANI-2x ensemble of 8 {result['ani2x_ensemble8_energy_forces_ms']:.1f} ms "
              f"(ratio {result['ratio_qrnn_to_ani2x_ensemble8']:.2f}), single ANI-2x "
              f"{result['ani2x_single_energy_forces_ms']:.1f} ms (ratio {result['ratio_qrnn_to_ani2x_single']:.2f})")
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(arguments.output.read_text()) if arguments.output.exists() else {}
    existing[device.type] = {'machine': machine(device), 'dtype': arguments.dtype, 'boxes': boxes,
                             'model_config': QRNNConfig().to_dict()}
    arguments.output.write_text(json.dumps(existing, indent=2) + '\n')


if __name__ == '__main__':
    main()
