"""Calcfunctions of the sampling step: oligomer cells from lengths (``build_cells``) and a cluster set from MD
trajectories (``extract_clusters``), so that cell -> trajectory -> cluster set is recorded provenance.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_qrnn.data.cluster_set import ClusterSetData

if TYPE_CHECKING:
    from aiida_qrnn.core.polymer import Polymer

__all__ = (
    'CELL_DEFAULTS',
    'CLUSTER_DEFAULTS',
    'build_cells',
    'cell_plan',
    'extract_clusters',
    'polymer_of',
    'validate_cell_parameters',
    'validate_cluster_parameters',
    'validate_polymer',
)

#: ``build_cells`` parameters; the paper packs ~1500 atoms per cell, ~8000 for chains of 25 units and more.
CELL_DEFAULTS: dict[str, Any] = {
    'n_units': [1], 'replicas': 1, 'target_atoms': 1500, 'long_chain_units': 25, 'long_chain_target_atoms': 8000,
    'density_g_cm3': 0.5, 'tolerance': 2.0, 'seed': 0,
}
#: ``extract_clusters`` parameters besides the :class:`~aiida_qrnn.core.clusters.ClusterSampling` settings. The
#: paper cuts clusters of up to 8 monomers, 6 dimers or 4 trimers; other lengths are not cut.
#: ``last_frames`` > 0 keeps only that many frames at the end (e.g. of a QRNN run stopped by committee disagreement).
CLUSTER_DEFAULTS: dict[str, Any] = {
    'seed': 0, 'first_frame': 0, 'frame_stride': 1, 'last_frames': 0,
    'max_molecules_by_units': {'1': 8, '2': 6, '3': 4},
}


def cell_plan(parameters: dict[str, Any], polymer: Polymer | None = None) -> list[dict[str, int]]:
    """One entry per cell: n_units, replica, n_molecules (of ``polymer``, default ethylene glycol) and packing seed.
    Raises ``ValueError`` naming the key."""
    from aiida_qrnn.core.polymer import ETHYLENE_GLYCOL
    from aiida_qrnn.core.structures import MAX_UNITS, molecules_for_atoms

    polymer = polymer or ETHYLENE_GLYCOL
    unknown = sorted(set(parameters) - set(CELL_DEFAULTS))
    if unknown:
        raise ValueError(f'cells: unknown key(s) {unknown}; known: {sorted(CELL_DEFAULTS)}.')
    values = {**CELL_DEFAULTS, **parameters}
    lengths = values['n_units']
    if not lengths or not all(isinstance(n, int) and 1 <= n <= MAX_UNITS for n in lengths):
        raise ValueError(f'cells: n_units must be a non-empty list of integers in 1..{MAX_UNITS}, got {lengths!r}.')
    for key in ('replicas', 'target_atoms', 'long_chain_units', 'long_chain_target_atoms'):
        if not isinstance(values[key], int) or values[key] < 1:
            raise ValueError(f'cells: {key} must be a positive integer, got {values[key]!r}.')
    for key in ('density_g_cm3', 'tolerance'):
        if not isinstance(values[key], int | float) or not values[key] > 0:
            raise ValueError(f'cells: {key} must be a positive number, got {values[key]!r}.')
    plan = []
    for n_units in lengths:
        target = values['long_chain_target_atoms'] if n_units >= values['long_chain_units'] else values['target_atoms']
        for replica in range(values['replicas']):
            plan.append({
                'n_units': n_units, 'replica': replica, 'n_molecules': molecules_for_atoms(n_units, target, polymer),
                'seed': int(values['seed']) + 1000 * replica + n_units,
            })
    return plan


def polymer_of(node: orm.Dict | None) -> Polymer:
    """The :class:`~aiida_qrnn.core.polymer.Polymer` of a ``polymer`` input (``Polymer.to_dict``); ethylene glycol
    for ``None``."""
    from aiida_qrnn.core.polymer import ETHYLENE_GLYCOL, Polymer

    return ETHYLENE_GLYCOL if node is None else Polymer.from_dict(node.get_dict())


def validate_polymer(value: orm.Dict, _) -> str | None:
    """A polymer definition (``Polymer.to_dict``); the message names the key at fault."""
    try:
        polymer_of(value)
    except ValueError as exception:
        return f'polymer: {exception}'
    return None


def validate_cell_parameters(value: orm.Dict, _) -> str | None:
    try:
        cell_plan(value.get_dict())
    except ValueError as exception:
        return str(exception)
    return None


def _cluster_settings(parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split into (own keys with defaults, ClusterSampling keys); checks both, raising ``ValueError``."""
    from aiida_qrnn.core.clusters import ClusterSampling

    own = {**CLUSTER_DEFAULTS, **{k: v for k, v in parameters.items() if k in CLUSTER_DEFAULTS}}
    sampling = {k: v for k, v in parameters.items() if k not in CLUSTER_DEFAULTS}
    ClusterSampling.from_dict(sampling)
    by_units = own['max_molecules_by_units']
    if not isinstance(by_units, dict) or not by_units or not all(
        str(k).isdigit() and isinstance(v, int) and v >= 1 for k, v in by_units.items()
    ):
        raise ValueError(f'clusters: max_molecules_by_units must map n_units to a positive count, got {by_units!r}.')
    for key in ('first_frame', 'frame_stride', 'last_frames', 'seed'):
        if not isinstance(own[key], int) or own[key] < (1 if key == 'frame_stride' else 0):
            raise ValueError(f'clusters: {key} must be a {"positive" if key == "frame_stride" else "non-negative"} '
                             f'integer, got {own[key]!r}.')
    return own, sampling


def validate_cluster_parameters(value: orm.Dict, _) -> str | None:
    try:
        _cluster_settings(value.get_dict())
    except ValueError as exception:
        return str(exception)
    return None


@calcfunction
def build_cells(parameters: orm.Dict, polymer: orm.Dict | None = None) -> dict[str, orm.StructureData]:
    """Amorphous cells of the ``polymer``'s n-mers (``Polymer.to_dict``; HO-(CH2CH2O)n-H without one) packed by
    packmol; outputs ``n{n:03d}_r{replica:02d}``. Each molecule lists its atoms in the order of
    ``Chem.AddHs(polymer.molecule(n))``, as the GAFF2 baseline needs."""
    from aiida_qrnn.core.structures import pack_cell

    definition = polymer_of(polymer)
    values = {**CELL_DEFAULTS, **parameters.get_dict()}
    cells = {}
    for entry in cell_plan(parameters.get_dict(), definition):
        extra = {} if polymer is None else {'polymer': definition}
        atoms = pack_cell(
            entry['n_units'], entry['n_molecules'], density_g_cm3=values['density_g_cm3'], seed=entry['seed'],
            tolerance=values['tolerance'], **extra,
        )
        structure = orm.StructureData(ase=atoms)
        structure.label = f'{definition.describe(entry["n_units"])} x{entry["n_molecules"]} replica {entry["replica"]}'
        cells[f'n{entry["n_units"]:03d}_r{entry["replica"]:02d}'] = structure
    return cells


@calcfunction
def extract_clusters(parameters: orm.Dict, polymer: orm.Dict | None = None,
                     **trajectories: orm.SinglefileData) -> ClusterSetData:
    """Cut and vary clusters from every trajectory whose chain length has an entry in ``max_molecules_by_units``.

    The chain length of a trajectory is read from the atoms per molecule of the ``polymer`` (``Polymer.to_dict``;
    HO-(CH2CH2O)n-H, 7n + 3 atoms, without one).

    Trajectories are H5MD files, of the classical (OpenMM) or of the QRNN MD job: both engines write one format.

    Trajectories are taken in the order of their labels; cluster sources name the label, the trajectory's UUID,
    the frame index and the molecule ids.
    """
    from aiida_qrnn.core.clusters import ClusterSampling, deduplicate, sample_clusters
    from aiida_qrnn.core.md.trajectory import read_trajectory
    from aiida_qrnn.core.topology import find_bonds, molecule_ids

    own, sampling = _cluster_settings(parameters.get_dict())
    rng = np.random.default_rng(own['seed'])
    images, skipped = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for label in sorted(trajectories):
            node = trajectories[label]
            path = Path(folder) / f'{label}.h5'
            with node.open(mode='rb') as source:
                path.write_bytes(source.read())
            frames = read_trajectory(path).frames()
            if not frames:
                raise ValueError(f"trajectory '{label}' ({node.uuid}) holds no frames.")
            bonds = find_bonds(frames[0])
            molecule = molecule_ids(len(frames[0]), bonds)
            atoms_per_molecule = len(frames[0]) // (int(molecule.max()) + 1)
            if polymer is None:
                n_units = (atoms_per_molecule - 3) // 7
            else:
                n_units = polymer_of(polymer).n_units_for_atoms(atoms_per_molecule)
            max_molecules = own['max_molecules_by_units'].get(str(n_units))
            if max_molecules is None:
                skipped[label] = n_units
                continue
            settings = ClusterSampling.from_dict({**sampling, 'max_molecules': max_molecules})
            first = own['first_frame']
            if own['last_frames']:
                first = max(first, len(frames) - own['last_frames'])
            selected = [
                (frames[index], {'trajectory': f'{label}:{node.uuid}', 'frame': index})
                for index in range(first, len(frames), own['frame_stride'])
            ]
            images.extend(sample_clusters(selected, settings, rng, molecule=molecule, bonds=bonds))
    if not images:
        raise ValueError(
            f'no clusters: the trajectories hold chain lengths {json.dumps(skipped)}, none of which is in '
            f'max_molecules_by_units {sorted(own["max_molecules_by_units"])}, or first_frame is past their end.'
        )
    return ClusterSetData.from_atoms(deduplicate(images))
