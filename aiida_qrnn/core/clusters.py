"""N-molecule clusters cut from periodic frames, and their perturbed and decomposed variants (paper: "Dataset
preparation").

A cluster is a central molecule and its nearest neighbours by atom-atom distance across the periodic boundaries,
every molecule whole and placed at the image closest to the centre, as an open (non-periodic) ``Atoms``. From each
cut cluster come variants:

* ``conformational``: bonds stretched, angles bent and dihedrals twisted by bounded random amounts (each move
  rigidly displaces the smaller side of the molecule, so it changes exactly the internal coordinate it targets),
  or the intermolecular distances scaled (molecule centres of mass moved about the cluster's), i.e. the density
  varied;
* ``decomposed``: one covalent bond pulled beyond bonding distance, so the potential learns that broken bonds
  are expensive.

Every cluster carries ``info['kind']`` and ``info['source']`` (JSON: trajectory, frame, molecule ids in the frame,
variant and its parameters); sets are deduplicated by the content id of :mod:`aiida_qrnn.core.dataset`. All
randomness comes from one ``numpy.random.Generator``, so a seed reproduces a set exactly.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from scipy.sparse.csgraph import connected_components, shortest_path

from aiida_qrnn.core.dataset import ClusterArrays, content_hash
from aiida_qrnn.core.sanity import allows_broken_bonds, check_structure
from aiida_qrnn.core.topology import BOND_TOLERANCE, bond_graph, find_bonds, make_molecules_whole, molecule_ids

__all__ = (
    'ClusterSampling',
    'ClusterSamplingError',
    'decompose',
    'deduplicate',
    'extract_cluster',
    'perturb_conformation',
    'sample_clusters',
    'scale_intermolecular_distances',
    'to_cluster_arrays',
)


class ClusterSamplingError(ValueError):
    """Bad input for cluster sampling; the message names the frame, molecule or setting."""


@dataclass(frozen=True)
class ClusterSampling:
    """How many clusters of which kinds to cut from each frame, and how far to perturb them (Å, degrees)."""

    max_molecules: int = 4
    clusters_per_frame: int = 4
    conformational_per_cluster: int = 1
    density_per_cluster: int = 1
    decomposed_per_cluster: int = 1
    max_bond_change: float = 0.05
    max_angle_change_deg: float = 5.0
    max_dihedral_change_deg: float = 30.0
    density_scale: tuple[float, float] = (0.9, 1.2)
    #: broken bond length as a multiple of the sum of covalent radii (bonded means < BOND_TOLERANCE times it)
    broken_bond_factor: tuple[float, float] = (1.4, 2.2)
    min_distance: float = 0.9
    max_tries: int = 50

    def __post_init__(self) -> None:
        for name in ('max_molecules', 'clusters_per_frame', 'max_tries'):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ClusterSamplingError(f'ClusterSampling.{name} must be a positive integer, got {value!r}.')
        for name in ('conformational_per_cluster', 'density_per_cluster', 'decomposed_per_cluster'):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ClusterSamplingError(f'ClusterSampling.{name} must be a non-negative integer, got {value!r}.')
        low, high = self.density_scale
        if not 0 < low <= high:
            raise ClusterSamplingError(
                f'ClusterSampling.density_scale must be 0 < low <= high, got {self.density_scale}.'
            )
        low, high = self.broken_bond_factor
        if not BOND_TOLERANCE < low <= high:
            raise ClusterSamplingError(
                f'ClusterSampling.broken_bond_factor must satisfy {BOND_TOLERANCE} < low <= high (beyond bonding), '
                f'got {self.broken_bond_factor}.'
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClusterSampling:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ClusterSamplingError(f'unknown cluster-sampling setting(s) {unknown}; known: {sorted(known)}.')
        values = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
        return cls(**values)


# -- cutting ------------------------------------------------------------------------------------------------------
def extract_cluster(
    frame: Atoms, molecule: np.ndarray, centre: int, n_molecules: int, *, bonds: np.ndarray | None = None,
    source: dict[str, Any] | None = None,
) -> Atoms:
    """The ``n_molecules`` molecules nearest to molecule ``centre`` (closest atom pair, minimum image), whole.

    Returns an open cluster; ``arrays['molecule']`` numbers the molecules 0 (the centre), 1, ... by distance and
    ``info['frame_molecules']`` lists their ids in ``frame``.
    """
    molecule = np.asarray(molecule)
    n_available = int(molecule.max()) + 1
    if not 0 <= centre < n_available:
        raise ClusterSamplingError(f'centre molecule {centre} does not exist; the frame has {n_available} molecules.')
    if not 1 <= n_molecules <= n_available:
        raise ClusterSamplingError(f'cannot cut {n_molecules} molecules from a frame of {n_available} molecules.')
    bonds = find_bonds(frame) if bonds is None else bonds
    positions = make_molecules_whole(frame, bonds)
    central = positions[molecule == centre]  # (n_c, 3)
    others = np.flatnonzero(molecule != centre)
    differences = positions[others][None, :, :] - central[:, None, :]  # (n_c, n_o, 3)
    if frame.pbc.all():
        cell = frame.cell.array
        images = -np.rint(differences @ np.linalg.inv(cell))  # (n_c, n_o, 3) lattice vectors to the nearest image
        differences = differences + images @ cell
    else:
        images = np.zeros_like(differences)
    distances = np.linalg.norm(differences, axis=-1)  # (n_c, n_o)
    closest_row = np.argmin(distances, axis=0)  # (n_o,)
    atom_distance = distances[closest_row, np.arange(len(others))]  # (n_o,)
    atom_image = images[closest_row, np.arange(len(others))]  # (n_o, 3)
    ids = molecule[others]
    nearest_per_molecule = {}
    for index in np.argsort(atom_distance, kind='stable'):
        nearest_per_molecule.setdefault(int(ids[index]), index)
    order = sorted(nearest_per_molecule, key=lambda m: atom_distance[nearest_per_molecule[m]])
    chosen = [centre, *order[: n_molecules - 1]]

    parts_numbers, parts_positions, parts_molecule = [], [], []
    for rank, member in enumerate(chosen):
        rows = np.flatnonzero(molecule == member)
        shift = np.zeros(3) if member == centre else atom_image[nearest_per_molecule[member]] @ frame.cell.array
        parts_numbers.append(frame.numbers[rows])
        parts_positions.append(positions[rows] + shift)
        parts_molecule.append(np.full(len(rows), rank, dtype=np.int32))
    cluster = Atoms(numbers=np.concatenate(parts_numbers), positions=np.concatenate(parts_positions))
    cluster.arrays['molecule'] = np.concatenate(parts_molecule)
    cluster.info.update(kind='extracted', frame_molecules=chosen)
    cluster.info['source'] = _source({**(source or {}), 'molecules': chosen, 'variant': 'extracted'})
    return cluster


def _source(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(',', ':'))


# -- variants -----------------------------------------------------------------------------------------------------
def _side(n_atoms: int, bonds: np.ndarray, cut: int, keep: int) -> np.ndarray:
    """Atoms on ``keep``'s side of bond (cut, keep) once it is removed (acyclic molecules)."""
    mask = ~(((bonds[:, 0] == cut) & (bonds[:, 1] == keep)) | ((bonds[:, 0] == keep) & (bonds[:, 1] == cut)))
    _, labels = connected_components(bond_graph(n_atoms, bonds[mask]), directed=False)
    return np.flatnonzero(labels == labels[keep])


def _rotate(points: np.ndarray, origin: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of ``points (n, 3)`` by ``angle`` (rad) about ``axis`` through ``origin``."""
    axis = axis / np.linalg.norm(axis)
    relative = points - origin
    cos, sin = np.cos(angle), np.sin(angle)
    return origin + relative * cos + np.cross(axis, relative) * sin + np.outer(relative @ axis, axis) * (1 - cos)


def _cluster_bonds(cluster: Atoms) -> np.ndarray:
    bonds = find_bonds(cluster)
    molecule = cluster.arrays['molecule']
    if np.any(molecule[bonds[:, 0]] != molecule[bonds[:, 1]]):
        i, j = bonds[np.argmax(molecule[bonds[:, 0]] != molecule[bonds[:, 1]])]
        raise ClusterSamplingError(f'atoms {i} and {j} of different molecules are within bonding distance.')
    return bonds


def _clashes(positions: np.ndarray, bonds: np.ndarray, min_distance: float) -> bool:
    """True when two atoms more than two bonds apart (or in different molecules) are closer than min_distance."""
    separation = shortest_path(bond_graph(len(positions), bonds), unweighted=True, directed=False)  # (n, n), inf apart
    distances = np.linalg.norm(positions[:, None] - positions[None, :], axis=-1)
    far = separation > 2
    return bool(np.any(distances[far] < min_distance))


def perturb_conformation(
    cluster: Atoms, rng: np.random.Generator, *, max_bond_change: float = 0.05, max_angle_change_deg: float = 5.0,
    max_dihedral_change_deg: float = 30.0, bonds: np.ndarray | None = None,
) -> Atoms:
    """Every bond stretched by ``U(-max, max)`` Å, every angle bent and every dihedral twisted by ``U(-max, max)``.

    A bond move translates the smaller side along the bond (only that bond length changes); an angle move rotates
    one side about the normal at the centre atom; a torsion move rotates one side about the bond. Rigid moves never
    change other bond lengths, so each bond differs from the input by at most ``max_bond_change``.
    """
    bonds = _cluster_bonds(cluster) if bonds is None else bonds
    positions = cluster.positions.copy()
    n_atoms = len(cluster)
    sides = {}

    def smaller_side(i: int, j: int) -> tuple[int, int, np.ndarray]:
        """(fixed atom, moving atom, moving side) with the moving side the smaller one."""
        if (i, j) not in sides:
            side_j = _side(n_atoms, bonds, i, j)
            side_i = np.setdiff1d(np.flatnonzero(cluster.arrays['molecule'] == cluster.arrays['molecule'][i]), side_j)
            sides[(i, j)] = (i, j, side_j) if len(side_j) <= len(side_i) else (j, i, side_i)
        return sides[(i, j)]

    for i, j in bonds:
        fixed, moving, side = smaller_side(int(i), int(j))
        direction = positions[moving] - positions[fixed]
        positions[side] += rng.uniform(-max_bond_change, max_bond_change) * direction / np.linalg.norm(direction)
    graph = bond_graph(n_atoms, bonds)
    for centre in range(n_atoms):
        partners = graph.indices[graph.indptr[centre]:graph.indptr[centre + 1]]
        for a, first in enumerate(partners):
            for last in partners[a + 1:]:
                # Rotating either side of bond centre-last about an axis through the centre bends this angle.
                _, _, side = smaller_side(centre, int(last))
                normal = np.cross(positions[first] - positions[centre], positions[last] - positions[centre])
                if np.linalg.norm(normal) < 1e-8:
                    continue
                angle = np.radians(rng.uniform(-max_angle_change_deg, max_angle_change_deg))
                positions[side] = _rotate(positions[side], positions[centre], normal, angle)
    degree = np.diff(graph.indptr)
    for i, j in bonds:
        if degree[i] < 2 or degree[j] < 2:
            continue  # a terminal atom: rotating about its bond changes no dihedral
        fixed, moving, side = smaller_side(int(i), int(j))
        angle = np.radians(rng.uniform(-max_dihedral_change_deg, max_dihedral_change_deg))
        positions[side] = _rotate(positions[side], positions[fixed], positions[moving] - positions[fixed], angle)
    perturbed = cluster.copy()
    perturbed.positions = positions
    return perturbed


def scale_intermolecular_distances(cluster: Atoms, factor: float) -> Atoms:
    """Move every molecule rigidly so its centre of mass is ``factor`` times farther from the cluster's.

    All centre-of-mass distances scale by ``factor`` and the local density by ``factor**-3``; molecules keep
    their shapes.
    """
    if not factor > 0:
        raise ClusterSamplingError(f'density scale factor must be positive, got {factor!r}.')
    scaled = cluster.copy()
    molecule = cluster.arrays['molecule']
    masses = cluster.get_masses()
    centre = cluster.get_center_of_mass()
    for member in np.unique(molecule):
        rows = molecule == member
        com = masses[rows] @ cluster.positions[rows] / masses[rows].sum()
        scaled.positions[rows] += (factor - 1.0) * (com - centre)
    return scaled


def decompose(
    cluster: Atoms, rng: np.random.Generator, *, factor_range: tuple[float, float] = (1.4, 2.2),
    bonds: np.ndarray | None = None,
) -> tuple[Atoms, tuple[int, int]]:
    """Break one random covalent bond: move the smaller side out along the bond until its length is
    ``U(factor_range)`` times the sum of the covalent radii (bonded means below ``BOND_TOLERANCE`` times it).

    Returns the decomposed cluster and the broken bond ``(i, j)``.
    """
    bonds = _cluster_bonds(cluster) if bonds is None else bonds
    if len(bonds) == 0:
        raise ClusterSamplingError('the cluster has no bonds to break.')
    i, j = (int(a) for a in bonds[rng.integers(len(bonds))])
    side_j = _side(len(cluster), bonds, i, j)
    side_i = np.setdiff1d(np.flatnonzero(cluster.arrays['molecule'] == cluster.arrays['molecule'][i]), side_j)
    fixed, moving, side = (i, j, side_j) if len(side_j) <= len(side_i) else (j, i, side_i)
    target = rng.uniform(*factor_range) * (covalent_radii[cluster.numbers[i]] + covalent_radii[cluster.numbers[j]])
    direction = cluster.positions[moving] - cluster.positions[fixed]
    length = np.linalg.norm(direction)
    broken = cluster.copy()
    broken.positions[side] += (target - length) * direction / length
    return broken, (i, j)


# -- sampling -----------------------------------------------------------------------------------------------------
def sample_clusters(
    frames: Iterable[tuple[Atoms, dict[str, Any]]], settings: ClusterSampling, rng: np.random.Generator,
    *, molecule: np.ndarray | None = None, bonds: np.ndarray | None = None,
) -> list[Atoms]:
    """Cut and vary clusters from ``frames`` (each with its source fields, e.g. trajectory and frame index).

    Per frame, ``clusters_per_frame`` cuts of 1..``max_molecules`` molecules around random centres; per cut, the
    extracted cluster plus the requested conformational, density and decomposed variants. Variants that would put
    atoms closer than ``min_distance`` Å or fail the physical check of :mod:`aiida_qrnn.core.sanity` are redrawn (up
    to ``max_tries``); an extracted cluster that fails it (fused atoms in a frame) is left out with a warning, and when
    every one fails ``ClusterSamplingError`` names the first. The bond graph and
    molecule ids come from the first frame unless given. The result is deduplicated (:func:`deduplicate`).
    """

    images: list[Atoms] = []
    refused: list[str] = []
    for frame, fields in frames:
        if bonds is None:
            bonds = find_bonds(frame)
        if molecule is None:
            molecule = molecule_ids(len(frame), bonds)
        n_available = int(molecule.max()) + 1
        for _ in range(settings.clusters_per_frame):
            centre = int(rng.integers(n_available))
            size = int(rng.integers(1, min(settings.max_molecules, n_available) + 1))
            cluster = extract_cluster(frame, molecule, centre, size, bonds=bonds, source=fields)
            problems = _problems(cluster)
            if problems:  # an MD frame of a potential under training: one bad cluster must not stop the rest
                refused.append(f'the cluster around molecule {centre} of frame {fields}: {"; ".join(problems)}')
                continue
            base = json.loads(cluster.info['source'])
            cluster.info.pop('frame_molecules')
            try:
                variants = _variants(cluster, base, settings, rng)
            except ClusterSamplingError as error:  # molecules fused by the potential: not a cluster to label
                refused.append(f'the cluster around molecule {centre} of frame {fields}: {error}')
                continue
            images.append(cluster)
            images.extend(variants)
    if refused:
        if not images:
            raise ClusterSamplingError(f'every cluster failed the physical check, for example {refused[0]}.')
        warnings.warn(f'{len(refused)} cluster(s) left out by the physical check, for example {refused[0]}.',
                      stacklevel=2)
    return deduplicate(images)


def _variants(cluster: Atoms, base: dict[str, Any], settings: ClusterSampling, rng: np.random.Generator) -> list[Atoms]:
    bonds = _cluster_bonds(cluster)
    molecule = cluster.arrays['molecule']
    results = []

    def accepted(make) -> Atoms | None:
        for _ in range(settings.max_tries):
            candidate, details = make()
            kept = _without(bonds, details['broken_bond']) if 'broken_bond' in details else bonds
            if not _clashes(candidate.positions, kept, settings.min_distance) and not _problems(candidate):
                candidate.info['source'] = _source({**base, **details})
                return candidate
        return None

    def conformational():
        perturbed = perturb_conformation(
            cluster, rng, max_bond_change=settings.max_bond_change,
            max_angle_change_deg=settings.max_angle_change_deg,
            max_dihedral_change_deg=settings.max_dihedral_change_deg, bonds=bonds,
        )
        perturbed.info.update(kind='conformational')
        return perturbed, {'variant': 'conformational'}

    def density():
        factor = float(rng.uniform(*settings.density_scale))
        scaled = scale_intermolecular_distances(cluster, factor)
        scaled.info.update(kind='conformational')
        return scaled, {'variant': 'density', 'distance_scale': round(factor, 6)}

    def decomposed():
        broken, bond = decompose(cluster, rng, factor_range=settings.broken_bond_factor, bonds=bonds)
        broken.info.update(kind='decomposed')
        return broken, {'variant': 'decomposed', 'broken_bond': list(bond)}

    plan = [(conformational, settings.conformational_per_cluster), (decomposed, settings.decomposed_per_cluster)]
    if int(molecule.max()) > 0:  # density variants need two molecules
        plan.insert(1, (density, settings.density_per_cluster))
    for make, count in plan:
        for _ in range(count):
            variant = accepted(make)
            if variant is not None:
                results.append(variant)
    return results


def _problems(cluster: Atoms) -> list[str]:
    """The physical problems of a new cluster (``core.sanity``); its spin state is decided when it is labelled."""
    return check_structure(
        cluster.numbers, cluster.positions, total_charge=int(cluster.info.get('total_charge', 0)), multiplicity=None,
        allow_broken_bonds=allows_broken_bonds(cluster.info.get('kind')),
    )


def _without(bonds: np.ndarray, bond: Sequence[int]) -> np.ndarray:
    i, j = bond
    return bonds[~(((bonds[:, 0] == i) & (bonds[:, 1] == j)) | ((bonds[:, 0] == j) & (bonds[:, 1] == i)))]


def deduplicate(images: Sequence[Atoms]) -> list[Atoms]:
    """Keep the first cluster of every content id (:func:`aiida_qrnn.core.dataset.content_hash`)."""
    seen: set[str] = set()
    unique = []
    for atoms in images:
        identifier = content_hash(atoms.numbers, atoms.positions, int(atoms.info.get('total_charge', 0)))
        if identifier not in seen:
            seen.add(identifier)
            unique.append(atoms)
    return unique


def to_cluster_arrays(images: Sequence[Atoms]) -> ClusterArrays:
    """The clusters as validated in-memory arrays of the cluster-set format (content ids filled)."""
    return ClusterArrays.from_atoms(images).validate()
