"""The figures of docs/properties.md: OCCO torsion and EG pair scans (GFN2-xTB via tblite vs OPLS-AA), experiment.

    OMP_NUM_THREADS=1 .venv/bin/python docs/figures/make_properties_figures.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tblite.ase import TBLite

from aiida_qrnn.core.analysis.dihedrals import find_dihedrals
from aiida_qrnn.core.analysis.experimental import experimental, plot_property_vs_chain_length
from aiida_qrnn.core.analysis.msd import molecular_centres_of_mass
from aiida_qrnn.core.analysis.scans import pair_scan_geometries, plot_scan, relative_curve, torsion_scan_geometries
from aiida_qrnn.core.forcefield import OplsAaCalculator
from aiida_qrnn.core.structures import ethylene_glycol_oligomer, pack_cell
from aiida_qrnn.core.topology import find_bonds, molecule_ids

HERE = Path(__file__).parent


def energies(images, calculator) -> np.ndarray:
    values = []
    for image in images:
        image.calc = calculator
        values.append(image.get_potential_energy())
    return np.array(values)


def main() -> None:
    molecule = ethylene_glycol_oligomer(2, seed=0)
    bonds = find_bonds(molecule)
    angles = np.arange(-180.0, 180.0, 5.0)
    torsion = torsion_scan_geometries(molecule, find_dihedrals(molecule)[0], angles, bonds)
    curves = {'GFN2-xTB': relative_curve(energies(torsion, TBLite(method='GFN2-xTB', verbosity=0)), 'minimum'),
              'OPLS-AA': relative_curve(energies(torsion, OplsAaCalculator(bonds, platform='Reference')), 'minimum')}
    plot_scan(angles, curves, HERE / 'torsion_scan_deg.png', xlabel='OCCO dihedral (degree)',
              title='rigid OCCO scan of diethylene glycol')

    cell = pack_cell(1, 10, density_g_cm3=0.9, seed=1)
    cell_bonds = find_bonds(cell)
    molecules = molecule_ids(len(cell), cell_bonds)
    centres = molecular_centres_of_mass(cell.positions[None], cell.get_masses(), molecules)[0]  # (n_molecules, 3)
    separations = centres - centres[0]
    separations -= np.round(separations @ np.linalg.inv(cell.cell.array)) @ cell.cell.array  # minimum image
    nearest = int(np.argsort(np.linalg.norm(separations, axis=1))[1])
    distances, pair = pair_scan_geometries(cell, molecules, 0, nearest, 20)
    pair_bonds = find_bonds(pair[-1])
    curves = {'GFN2-xTB': relative_curve(energies(pair, TBLite(method='GFN2-xTB', verbosity=0)), 'last'),
              'OPLS-AA': relative_curve(energies(pair, OplsAaCalculator(pair_bonds, platform='Reference')), 'last')}
    plot_scan(distances, curves, HERE / 'pair_scan_eg.png', xlabel='centre-of-mass distance (Å)',
              title='ethylene glycol pair scan', ymax_kcal_per_mol=8.0)

    for name in ('density', 'heat_capacity'):
        reference = experimental(name, 300.0)
        print(name, dict(zip(reference.n_units.tolist(), np.round(reference.values, 4).tolist(), strict=True)))
        plot_property_vs_chain_length(name, {}, HERE / f'experiment_{name}.png')


if __name__ == '__main__':
    main()
