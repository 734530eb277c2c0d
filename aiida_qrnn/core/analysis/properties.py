"""All properties of one replica (an NPT log plus an NVT trajectory) and their mean ± std over replicas.

The paper's analysis: density (last 80 % of NPT) and c_p (enthalpy fluctuations, NPT); self-diffusivity from the
NVT molecular centre-of-mass MSD; radius-of-gyration distribution of single chains, OCCO torsion distribution and
intermolecular hydroxyl O–H g(r) from the NVT frames. Uncertainties between replicas are standard deviations
(ddof = 1), as the paper's error bars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from ase import Atoms

from ..md.trajectory import TrajectoryArrays
from .density import average_density
from .dihedrals import dihedral_angles, dihedral_distribution, find_dihedrals
from .heat_capacity import heat_capacity_from_enthalpy
from .msd import fit_self_diffusivity, molecular_centres_of_mass, msd_fft
from .radius_of_gyration import radii_of_gyration
from .rdf import radial_distribution_function

#: Scalar property → unit; ``replica_properties`` returns these keys (and ``<name>_sem`` block errors).
SCALAR_UNITS = {
    'density': 'g/cm^3', 'heat_capacity': 'J/(g K)', 'self_diffusivity': 'cm^2/s', 'radius_of_gyration': 'Angstrom',
}
#: Distribution → (x array name, x unit, y array name).
DISTRIBUTIONS = {
    'occo_torsion': ('angle_deg', 'degree', 'probability_density_per_deg'),
    'oh_rdf': ('r_A', 'Angstrom', 'g'),
    'radius_of_gyration': ('rg_A', 'Angstrom', 'probability_density_per_A'),
}
RG_BIN_WIDTH_A = 0.1
OH_RDF_MAX_A = 8.0
OH_RDF_BINS = 80


def replica_properties(
    log: Mapping[str, np.ndarray], trajectory: TrajectoryArrays, *, temperature_K: float,
    discard_fraction: float = 0.2, n_blocks: int = 5, msd_fit: tuple[float, float] = (0.1, 0.5),
) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Scalars (see ``SCALAR_UNITS``) and distributions of one replica: ``log`` the NPT log columns, ``trajectory``
    the NVT frames (unwrapped, with molecule ids)."""
    if trajectory.molecule is None:
        raise ValueError('the NVT trajectory has no molecule ids: they are needed for the MSD and R_g.')
    total_mass = float(trajectory.masses.sum())
    density = average_density(log['volume_A3'], total_mass, discard_fraction=discard_fraction, n_blocks=n_blocks)
    heat_capacity = heat_capacity_from_enthalpy(log['enthalpy_eV'], temperature_K, total_mass,
                                                discard_fraction=discard_fraction, n_blocks=n_blocks)
    centres = molecular_centres_of_mass(trajectory.positions, trajectory.masses, trajectory.molecule)
    lags_fs = trajectory.times_fs - trajectory.times_fs[0]
    diffusion = fit_self_diffusivity(lags_fs, msd_fft(centres), fit_start_fraction=msd_fit[0],
                                     fit_end_fraction=msd_fit[1])

    rg = radii_of_gyration(trajectory.positions, trajectory.masses, trajectory.molecule).ravel()  # frames x molecules
    rg_edges = np.arange(np.floor(rg.min()) - RG_BIN_WIDTH_A, rg.max() + 2 * RG_BIN_WIDTH_A, RG_BIN_WIDTH_A)
    rg_density, _ = np.histogram(rg, bins=rg_edges, density=True)

    first = Atoms(numbers=trajectory.numbers, positions=trajectory.positions[0], cell=trajectory.cells[0],
                  pbc=trajectory.pbc)
    quadruplets = find_dihedrals(first, ('O', 'C', 'C', 'O'))  # (n_torsions, 4)
    angles = np.concatenate([dihedral_angles(frame, quadruplets) for frame in trajectory.positions])
    torsion_centres, torsion_density = dihedral_distribution(angles, bin_width_deg=5.0)

    oxygens, hydroxyl_hydrogens = _hydroxyl_atoms(first)
    wrapped = _wrap(trajectory.positions, trajectory.cells)
    half_width = min(_half_width(cell) for cell in trajectory.cells)
    r_A, g = radial_distribution_function(
        wrapped, trajectory.cells, oxygens, hydroxyl_hydrogens, r_max_A=min(OH_RDF_MAX_A, half_width),
        n_bins=OH_RDF_BINS, molecule_ids=trajectory.molecule,
    )
    scalars = {
        'density': density.mean_g_cm3, 'density_sem': density.standard_error_g_cm3,
        'heat_capacity': heat_capacity.cp_J_per_gK, 'heat_capacity_sem': heat_capacity.standard_error_J_per_gK,
        'self_diffusivity': diffusion.diffusivity_cm2_per_s, 'radius_of_gyration': float(rg.mean()),
    }
    distributions = {
        'occo_torsion': {'angle_deg': torsion_centres, 'probability_density_per_deg': torsion_density},
        'oh_rdf': {'r_A': r_A, 'g': g},
        'radius_of_gyration': {'rg_A': 0.5 * (rg_edges[1:] + rg_edges[:-1]), 'probability_density_per_A': rg_density},
    }
    return scalars, distributions


def combine_replicas(scalars: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float | str | int]]:
    """Per property: mean over replicas, ``uncertainty`` the standard deviation (0 for a single replica), unit."""
    combined = {}
    for name, unit in SCALAR_UNITS.items():
        values = np.array([replica[name] for replica in scalars], dtype=np.float64)
        combined[name] = {
            'value': float(values.mean()), 'uncertainty': float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            'unit': unit, 'n_replicas': len(values), 'replicas': values.tolist(),
        }
    return combined


def combine_distributions(replicas: Sequence[Mapping[str, np.ndarray]], x_name: str, y_name: str,
                          ) -> dict[str, np.ndarray]:
    """Mean and std of a distribution over replicas, on the union of their grids (zero outside a replica's range)."""
    grid = np.unique(np.round(np.concatenate([replica[x_name] for replica in replicas]), 9))
    values = np.stack([np.interp(grid, replica[x_name], replica[y_name], left=0.0, right=0.0)
                       for replica in replicas])  # (n_replicas, n_grid)
    spread = values.std(axis=0, ddof=1) if len(replicas) > 1 else np.zeros(len(grid))
    return {x_name: grid, y_name: values.mean(axis=0), f'{y_name}_std': spread}


def _hydroxyl_atoms(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """All oxygens, and the hydrogens bonded to an oxygen (the H-bond donors)."""
    from ..structures import find_bonds

    bonds = find_bonds(atoms)
    symbols = np.array(atoms.get_chemical_symbols())
    pairs = symbols[bonds]  # (n_bonds, 2)
    donors = np.concatenate([bonds[(pairs[:, 0] == 'H') & (pairs[:, 1] == 'O'), 0],
                             bonds[(pairs[:, 0] == 'O') & (pairs[:, 1] == 'H'), 1]])
    return np.flatnonzero(symbols == 'O'), np.unique(donors)


def _wrap(positions: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Positions ``(n_frames, n_atoms, 3)`` wrapped into their frame's cell."""
    fractional = np.einsum('fai,fij->faj', positions, np.linalg.inv(cells))  # (n_frames, n_atoms, 3)
    return np.einsum('faj,fjk->fak', fractional % 1.0, cells)


def _half_width(cell: np.ndarray) -> float:
    volume = abs(np.linalg.det(cell))
    return 0.5 * min(volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3))
