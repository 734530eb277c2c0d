"""Label clusters with PySCF (restricted Kohn-Sham or Hartree-Fock), one record per cluster as it finishes.

This runs inside a ``PyscfCalculation`` job (``aiida-qrnn-exec pyscf``). ``<functional>-d3bj`` methods go to
PySCF as they are (``xc='wb97x-d3bj'`` with pyscf-dispersion), so the D3(BJ) term is part of the SCF energy and
gradient. The GPU variant (gpu4pyscf) is used when ``device='gpu'`` is asked for and it is installed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aiida_qrnn.core.dataset import ClusterSet
from aiida_qrnn.core.label_records import FailureReason, record_name, write_record
from aiida_qrnn.core.units import BOHR_TO_ANGSTROM

__all__ = ('PYSCF_SETTINGS', 'label_cluster', 'label_cluster_set')

#: ``parameters['options']`` keys -> what they set on the SCF object (``grid_level``, ``atom_grid`` on its grids).
PYSCF_SETTINGS = ('conv_tol', 'max_cycle', 'damping', 'level_shift', 'init_guess', 'grid_level', 'atom_grid',
                  'density_fit', 'device')


def _scf(method: str, molecule, options: Mapping[str, Any]):
    """The SCF object for ``method`` ('hf' or an xc name) with ``options`` applied."""
    if options.get('device', 'cpu') == 'gpu':
        from gpu4pyscf import dft, scf
    else:
        from pyscf import dft, scf
    mean_field = scf.RHF(molecule) if method.lower() == 'hf' else dft.RKS(molecule, xc=method)
    if options.get('density_fit'):
        mean_field = mean_field.density_fit()
    for key in ('conv_tol', 'max_cycle', 'damping', 'level_shift', 'init_guess'):
        if key in options:
            setattr(mean_field, key, options[key])
    if hasattr(mean_field, 'grids'):
        if 'grid_level' in options:
            mean_field.grids.level = options['grid_level']
        if 'atom_grid' in options:
            mean_field.grids.atom_grid = tuple(options['atom_grid'])
            mean_field.grids.prune = None
    return mean_field


def label_cluster(
    numbers: np.ndarray, positions: np.ndarray, total_charge: int, *, method: str, basis: str,
    options: Mapping[str, Any], forces: bool = True,
) -> dict[str, Any]:
    """Raw labels of one cluster in atomic units, or a failure, as the fields of a record.

    ``positions`` in Å (converted to bohr here, at the edge with PySCF).
    """
    from pyscf import gto

    positions_bohr = np.asarray(positions) / BOHR_TO_ANGSTROM  # (atoms, 3)
    molecule = gto.M(
        atom=[(int(z), tuple(xyz)) for z, xyz in zip(numbers, positions_bohr, strict=True)], unit='Bohr',
        basis=basis, charge=int(total_charge), spin=0, verbose=0,
    )
    mean_field = _scf(method, molecule, options)
    energy = float(mean_field.kernel())
    if not mean_field.converged:
        return {
            'status': 'failed', 'reason': str(FailureReason.SCF_NOT_CONVERGED),
            'message': f'the SCF did not converge in {mean_field.max_cycle} cycles (last energy {energy} Eh).',
        }
    gradient = np.asarray(mean_field.nuc_grad_method().kernel()) if forces else None  # (atoms, 3)
    # Dipole about the coordinate origin, in e*bohr (PySCF's a.u.).
    dipole = mean_field.dip_moment(unit='au', verbose=0)
    return {
        'status': 'ok',
        'energy_hartree': energy,
        'gradient_hartree_per_bohr': None if gradient is None else gradient.tolist(),
        'dipole_e_bohr': np.asarray(dipole).tolist(),
        'numbers': molecule.atom_charges().tolist(),
        'positions_bohr': molecule.atom_coords(unit='Bohr').tolist(),
    }


def label_cluster_set(
    path: str | os.PathLike, folder: str | os.PathLike, *, method: str, basis: str, options: Mapping[str, Any],
    forces: bool = True,
) -> int:
    """Label every cluster of the set at ``path``, writing ``c<i>.json`` into ``folder`` after each cluster.

    A failure of one cluster (SCF not converged, a PySCF error) is recorded and the next cluster starts.
    :returns: the number of clusters labelled.
    """
    import pyscf

    labelled = 0
    with ClusterSet(path) as clusters:
        arrays = clusters.read_arrays()
    for index in range(arrays.n_clusters):
        rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
        header = {'index': index, 'id': str(arrays.ids[index]), 'program': f'pyscf {pyscf.__version__}'}
        try:
            fields = label_cluster(
                arrays.numbers[rows], arrays.positions[rows], int(arrays.total_charge[index]), method=method,
                basis=basis, options=options, forces=forces,
            )
        except Exception as exception:  # any PySCF error is this cluster's failure, not the batch's
            fields = {
                'status': 'failed', 'reason': str(FailureReason.ABNORMAL_TERMINATION),
                'message': f'{type(exception).__name__}: {exception}',
            }
        write_record(Path(folder), record_name(index), {**header, **fields})
        labelled += fields['status'] == 'ok'
    return labelled
