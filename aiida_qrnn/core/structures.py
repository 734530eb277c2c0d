"""Oligomers of any polymer (:mod:`.polymer`; ethylene glycol HO-(CH2CH2O)n-H by default) and their amorphous
periodic cells (paper: "Classical force field molecular dynamics"): one molecule from ``n`` (RDKit, 3D conformer),
cells packed by packmol at a target density, long chains grown by a self-avoiding random walk of their backbone
dihedrals (the paper's disordered-system builder). Bonds and molecule ids: :mod:`aiida_qrnn.core.topology`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms

from aiida_qrnn.core.polymer import ETHYLENE_GLYCOL, MAX_UNITS, PIECE_PROPERTY, Polymer
from aiida_qrnn.core.units import AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3

__all__ = (
    'MAX_UNITS',
    'PackingError',
    'density_g_cm3',
    'ethylene_glycol_oligomer',
    'molecular_cluster',
    'molecules_for_atoms',
    'oligomer',
    'oligomer_atom_count',
    'oligomer_smiles',
    'pack_cell',
    'random_walk_cell',
    'random_walk_oligomer',
)


def oligomer_smiles(n_units: int, polymer: Polymer = ETHYLENE_GLYCOL) -> str:
    """SMILES of the n-mer of ``polymer``; for HO-(CH2CH2O)n-H ``OCCO`` for n = 1, ``OCCOCCO`` for n = 2, ..."""
    return polymer.smiles(n_units)


def oligomer(n_units: int = 1, polymer: Polymer = ETHYLENE_GLYCOL, *, seed: int = 0) -> Atoms:
    """One n-mer of ``polymer`` with hydrogens, a 3D conformer from RDKit's ETKDG and an MMFF relaxation.

    ``seed`` selects the conformer reproducibly. ``arrays['molecule']`` is all zeros (one molecule). Embedding
    takes seconds up to ~25 units and minutes for 100; :func:`random_walk_oligomer` builds long chains faster.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    molecule = Chem.AddHs(Chem.MolFromSmiles(oligomer_smiles(n_units, polymer)))
    parameters = AllChem.ETKDGv3()
    parameters.randomSeed = int(seed)
    # Random starting coordinates make the embedding of long chains (up to 100 units) robust and self-avoiding.
    parameters.useRandomCoords = n_units > 10
    if AllChem.EmbedMolecule(molecule, parameters) != 0:
        raise RuntimeError(f'RDKit could not embed {polymer.describe(n_units)} with seed {seed}.')
    AllChem.MMFFOptimizeMolecule(molecule, maxIters=500)
    positions = molecule.GetConformer().GetPositions()
    atoms = Atoms(numbers=[atom.GetAtomicNum() for atom in molecule.GetAtoms()], positions=positions)
    atoms.positions -= atoms.get_center_of_mass()
    atoms.arrays['molecule'] = np.zeros(len(atoms), dtype=np.int32)
    return atoms


def ethylene_glycol_oligomer(n_units: int = 1, *, seed: int = 0) -> Atoms:
    """One HO-(CH2CH2O)n-H molecule: :func:`oligomer` of the default polymer."""
    return oligomer(n_units, ETHYLENE_GLYCOL, seed=seed)


def molecular_cluster(
    molecules: list[Atoms], *, min_distance: float = 2.0, spread: float = 4.0, rng: np.random.Generator,
    max_tries: int = 1000,
) -> Atoms:
    """Place ``molecules`` with random rotations around the first one, no two atoms closer than ``min_distance`` Å.

    Each molecule is placed at a random direction at growing distance until it clashes with nothing; the
    ``molecule`` array numbers the molecules 0, 1, ...
    """
    placed = molecules[0].copy()
    placed.arrays['molecule'] = np.zeros(len(placed), dtype=np.int32)
    for index, molecule in enumerate(molecules[1:], start=1):
        for attempt in range(max_tries):
            candidate = molecule.copy()
            candidate.rotate(rng.uniform(0, 360), rng.normal(size=3), center='COM')
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            distance = spread + 0.1 * attempt
            candidate.positions += placed.get_center_of_mass() + direction * distance - candidate.get_center_of_mass()
            gaps = np.linalg.norm(candidate.positions[:, None, :] - placed.positions[None, :, :], axis=-1)
            if gaps.min() >= min_distance:
                candidate.arrays['molecule'] = np.full(len(candidate), index, dtype=np.int32)
                placed += candidate
                break
        else:
            raise RuntimeError(f'could not place molecule {index} without a clash in {max_tries} tries.')
    return placed


class PackingError(RuntimeError):
    """packmol could not pack the requested cell; the message names the molecule, the count and the density."""


def oligomer_atom_count(n_units: int, polymer: Polymer = ETHYLENE_GLYCOL) -> int:
    """Atoms in the n-mer with hydrogens; HO-(CH2CH2O)n-H: C(2n) H(4n+2) O(n+1), 7n + 3."""
    from rdkit import Chem

    return Chem.AddHs(polymer.molecule(n_units)).GetNumAtoms()


def molecules_for_atoms(n_units: int, target_atoms: int, polymer: Polymer = ETHYLENE_GLYCOL) -> int:
    """How many n-mers make a cell closest to ``target_atoms`` atoms (at least one)."""
    return max(1, round(target_atoms / oligomer_atom_count(n_units, polymer)))


def density_g_cm3(atoms: Atoms) -> float:
    """Mass density of a periodic cell in g/cm^3."""
    return float(atoms.get_masses().sum() / atoms.get_volume() * AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3)


def pack_cell(
    n_units: int, n_molecules: int, *, density_g_cm3: float = 0.5, seed: int = 0, tolerance: float = 2.0,
    packmol: str = 'packmol', timeout_s: float = 600.0, polymer: Polymer = ETHYLENE_GLYCOL,
) -> Atoms:
    """A cubic periodic cell of ``n_molecules`` n-mers of ``polymer`` at ``density_g_cm3``, packed by packmol.

    Every molecule is a rigid copy (random orientation and position) of one RDKit conformer selected by ``seed``,
    so a replica is a different ``seed``. Atoms of different molecules are at least ``tolerance`` Å apart, also
    across the periodic boundaries: packmol fills the box shrunk by ``tolerance / 2`` on every side. Molecules
    are whole and contiguous; ``arrays['molecule']`` numbers them 0, 1, ... A chain longer than the box cannot
    be packed this way (packmol moves rigid molecules): :func:`random_walk_cell` grows such chains in the cell.
    """
    if not isinstance(n_molecules, int | np.integer) or n_molecules < 1:
        raise ValueError(f'n_molecules must be a positive integer, got {n_molecules!r}.')
    if not density_g_cm3 > 0:
        raise ValueError(f'density_g_cm3 must be positive, got {density_g_cm3!r}.')
    template = oligomer(n_units, polymer, seed=seed)
    described = polymer.describe(n_units)
    mass_amu = template.get_masses().sum() * n_molecules
    length = (mass_amu * AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3 / density_g_cm3) ** (1 / 3)
    centred = template.positions - template.positions.mean(axis=0)
    diameter = 2 * np.linalg.norm(centred, axis=1).max()
    if diameter > np.sqrt(3) * (length - tolerance):
        raise PackingError(
            f'{described} (seed {seed}, {diameter:.1f} Å across) cannot fit in the {length:.1f} Å box of '
            f'{n_molecules} molecules at {density_g_cm3} g/cm^3 in any orientation; pack more molecules.'
        )
    executable = shutil.which(packmol)
    if executable is None:
        raise PackingError(f'packmol executable {packmol!r} not found on PATH; it packs the amorphous cells.')
    margin = tolerance / 2
    with tempfile.TemporaryDirectory(prefix='qrnn-packmol-') as folder:
        folder = Path(folder)
        _write_xyz(folder / 'molecule.xyz', template)
        (folder / 'pack.inp').write_text(
            f'tolerance {tolerance}\nfiletype xyz\noutput packed.xyz\nseed {int(seed) + 1}\n'
            f'structure molecule.xyz\n  number {int(n_molecules)}\n'
            f'  inside box {margin} {margin} {margin} {length - margin} {length - margin} {length - margin}\n'
            f'end structure\n'
        )
        with (folder / 'pack.inp').open() as stdin:
            result = subprocess.run(
                [executable], stdin=stdin, cwd=folder, capture_output=True, text=True, timeout=timeout_s,
                env={**os.environ, 'OMP_NUM_THREADS': '1'},
            )
        output = folder / 'packed.xyz'
        if result.returncode != 0 or not output.is_file() or 'Success!' not in result.stdout:
            tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
            raise PackingError(
                f'packmol failed to pack {n_molecules} {described} at {density_g_cm3} g/cm^3 '
                f'(box {length:.2f} Å, tolerance {tolerance} Å, seed {seed}): {" | ".join(tail)}'
            )
        positions = np.loadtxt(output, skiprows=2, usecols=(1, 2, 3))  # (n_atoms, 3)
    numbers = np.tile(template.numbers, n_molecules)
    atoms = Atoms(numbers=numbers, positions=positions, cell=np.eye(3) * length, pbc=True)
    atoms.arrays['molecule'] = np.repeat(np.arange(n_molecules, dtype=np.int32), len(template))
    atoms.info.update(n_units=int(n_units), n_molecules=int(n_molecules), seed=int(seed))
    return atoms


def _write_xyz(path: Path, atoms: Atoms) -> None:
    lines = [str(len(atoms)), 'template']
    lines += [f'{s:<2} {x:.8f} {y:.8f} {z:.8f}' for s, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions,
                                                                         strict=True)]
    path.write_text('\n'.join(lines) + '\n')


# -- long chains: a self-avoiding random walk of the backbone dihedrals --------------------------------------------
#: Non-bonded atoms (more than three bonds apart) of a grown chain are at least this far apart (Å).
RANDOM_WALK_MIN_DISTANCE = 1.7
#: Backbone dihedral states of the walk (degrees) and their weights: trans and the two gauche states.
DIHEDRAL_STATES_DEG = (180.0, 60.0, -60.0)
DIHEDRAL_WEIGHTS = (0.5, 0.25, 0.25)
#: Spread (degrees) of a dihedral around its state.
DIHEDRAL_SPREAD_DEG = 15.0
#: Candidate dihedrals tried around each state at each bond.
CANDIDATES_PER_STATE = 4
#: Crowding counts pairs closer than min_distance + this (Å), and is weighed as exp(-crowding / scale) (Å²).
CROWDING_REACH = 1.0
CROWDING_SCALE = 0.5
#: Random starts tried for a chain; dead ends (no free candidate) allowed per chain before giving up.
START_ATTEMPTS = 30
MAX_DEAD_ENDS = 500


def random_walk_oligomer(
    n_units: int, polymer: Polymer = ETHYLENE_GLYCOL, *, seed: int = 0,
    min_distance: float = RANDOM_WALK_MIN_DISTANCE,
) -> Atoms:
    """One open n-mer grown by a self-avoiding random walk of its backbone dihedrals (see :func:`random_walk_cell`)."""
    rng = np.random.default_rng(seed)
    template = _ChainTemplate(polymer, n_units, seed)
    positions = _grow_chain(template, rng, np.zeros((0, 3)), None, min_distance, polymer.describe(n_units))
    atoms = Atoms(numbers=template.numbers, positions=positions)
    atoms.positions -= atoms.get_center_of_mass()
    atoms.arrays['molecule'] = np.zeros(len(atoms), dtype=np.int32)
    return atoms


def random_walk_cell(
    n_units: int, n_molecules: int, *, polymer: Polymer = ETHYLENE_GLYCOL, density_g_cm3: float = 0.5,
    seed: int = 0, min_distance: float = RANDOM_WALK_MIN_DISTANCE,
) -> Atoms:
    """A cubic periodic cell of ``n_molecules`` n-mers grown in place, as the paper's disordered-system builder.

    Each chain starts from a random point and orientation and is grown from head to tail: every rotatable backbone
    bond gets a dihedral drawn from trans/gauche± (:data:`DIHEDRAL_STATES_DEG`, ± :data:`DIHEDRAL_SPREAD_DEG`),
    kept only when the atoms it places are at least ``min_distance`` Å (minimum image) from every atom placed
    before that is more than three bonds away, in this chain or another (:func:`_grow_chain`); at a dead end the
    walk steps back a few bonds. Bond lengths, angles and the other dihedrals come from an RDKit conformer of a
    short oligomer (ETKDG + MMFF), copied unit by unit, so a 100-mer costs seconds, not the minutes of embedding it
    whole. Chains may cross the periodic boundaries: positions are unwrapped (molecules whole), and
    ``arrays['molecule']`` numbers the chains 0, 1, ...

    :raises PackingError: when a chain cannot be grown (density too high for ``min_distance``), naming both.
    """
    if not isinstance(n_molecules, int | np.integer) or n_molecules < 1:
        raise ValueError(f'n_molecules must be a positive integer, got {n_molecules!r}.')
    if not density_g_cm3 > 0:
        raise ValueError(f'density_g_cm3 must be positive, got {density_g_cm3!r}.')
    if not min_distance > 0:
        raise ValueError(f'min_distance must be positive, got {min_distance!r}.')
    rng = np.random.default_rng(seed)
    template = _ChainTemplate(polymer, n_units, seed)
    mass_amu = Atoms(numbers=template.numbers).get_masses().sum() * n_molecules
    length = (mass_amu * AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3 / density_g_cm3) ** (1 / 3)
    placed = np.zeros((0, 3))
    description = f'{polymer.describe(n_units)} at {density_g_cm3} g/cm^3 (box {length:.2f} Å)'
    for _ in range(n_molecules):
        chain = _grow_chain(template, rng, placed, length, min_distance, description)
        placed = np.concatenate([placed, chain])
    numbers = np.tile(template.numbers, n_molecules)
    atoms = Atoms(numbers=numbers, positions=placed, cell=np.eye(3) * length, pbc=True)
    atoms.arrays['molecule'] = np.repeat(np.arange(n_molecules, dtype=np.int32), len(template.numbers))
    atoms.info.update(n_units=int(n_units), n_molecules=int(n_molecules), seed=int(seed))
    return atoms


class _ChainTemplate:
    """The n-mer's graph, a starting geometry copied unit by unit from a short embedded oligomer, and its backbone.

    Pieces are the head (0), the units (1..n) and the tail (n + 1) of :meth:`Polymer.molecule`. A window oligomer
    of ``m`` units (m = n up to ``p + 4`` units for a sequence of period p, else the smallest m >= p + 4 with the
    same unit at its end) is embedded once; piece k of the chain takes the coordinates of the window's piece with
    the same two pieces before it (units next to an end group differ in their hydrogens), aligned (Kabsch) on the
    rigid star of atoms at the bond that joins it to the chain.
    """

    def __init__(self, polymer: Polymer, n_units: int, seed: int) -> None:
        from rdkit import Chem

        molecule = Chem.AddHs(polymer.molecule(n_units))
        self.numbers = np.array([atom.GetAtomicNum() for atom in molecule.GetAtoms()])
        self.bonds = np.array([[bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()] for bond in molecule.GetBonds()])
        pieces = _piece_atoms(molecule)
        period = len(polymer.sequence) if polymer.sequence is not None else 1
        n_window = n_units if n_units <= period + 4 else period + 4 + (n_units - period - 4) % period
        window_molecule = Chem.AddHs(polymer.molecule(n_window))
        window = _embedded(window_molecule, seed, polymer.describe(n_window))
        window_pieces = _piece_atoms(window_molecule)
        positions = np.zeros((len(self.numbers), 3))
        for piece in range(n_units + 2):
            if piece <= 3 or n_window == n_units:
                source = piece
            elif piece <= n_units - 1:
                source = 4 + (piece - 4) % period
            else:  # the last unit and the tail
                source = piece - n_units + n_window
            target_atoms, source_atoms = pieces.get(piece, []), window_pieces.get(source, [])
            if len(target_atoms) != len(source_atoms):
                raise RuntimeError(f'piece {piece} of {polymer.describe(n_units)} does not match its template.')
            if not target_atoms:
                continue
            if piece == source:
                positions[target_atoms] = window[source_atoms]
                continue
            # chain atom -> window atom over the two pieces before: they hold the junction's rigid star
            counterpart = {atom: partner for before in (1, 2) for atom, partner in zip(
                pieces.get(piece - before, []), window_pieces.get(source - before, []), strict=True)}
            anchor = _junction_star(molecule, target_atoms, counterpart)
            rotation, shift = _best_fit(window, positions, anchor, counterpart, self.numbers)
            positions[target_atoms] = window[source_atoms] @ rotation.T + shift
        self.positions = positions
        self._backbone(molecule, pieces, n_units)

    def _backbone(self, molecule, pieces: dict[int, list[int]], n_units: int) -> None:
        """Rotatable backbone bonds from head to tail: (b, c) with the atoms a, d that define their dihedral, and
        the atoms on c's side (moved by the dihedral)."""
        from rdkit import Chem
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        heavy = [atom.GetIdx() for atom in molecule.GetAtoms() if atom.GetAtomicNum() > 1]
        first = min(heavy)
        last = max(heavy)
        path = list(Chem.GetShortestPath(molecule, first, last))
        n_atoms = len(self.numbers)
        #: (atoms, atoms) number of bonds between atoms: pairs up to three bonds apart are never overlaps
        self.topological = Chem.GetDistanceMatrix(molecule)
        self.rotatable: list[tuple[int, int, int, int, np.ndarray]] = []
        for index in range(1, len(path) - 2):
            a, b, c, d = path[index - 1:index + 3]
            bond = molecule.GetBondBetweenAtoms(b, c)
            if bond.GetBondType() != Chem.BondType.SINGLE or bond.IsInRing() or bond.GetIsConjugated():
                continue
            keep = np.ones(len(self.bonds), dtype=bool)
            keep &= ~(((self.bonds[:, 0] == b) & (self.bonds[:, 1] == c)) | ((self.bonds[:, 0] == c)
                                                                             & (self.bonds[:, 1] == b)))
            cut = coo_matrix((np.ones(keep.sum()), (self.bonds[keep, 0], self.bonds[keep, 1])),
                             shape=(n_atoms, n_atoms))
            _, labels = connected_components(cut, directed=False)
            self.rotatable.append((a, b, c, d, np.flatnonzero(labels == labels[c])))


def _junction_star(molecule, piece_atoms: list[int], placed: dict[int, int]) -> list[int]:
    """Placed atoms of fixed relative geometry (bond lengths and angles only) next to the bond joining the piece
    to the chain: the placed atom Y of that bond with its placed neighbours, or, when Y has one placed neighbour
    Z, Z with its neighbours (Y included)."""
    inside = set(piece_atoms)
    for atom in piece_atoms:
        for neighbour in molecule.GetAtomWithIdx(atom).GetNeighbors():
            junction = neighbour.GetIdx()
            if junction in inside:
                continue
            star = [junction] + [other.GetIdx() for other in neighbour.GetNeighbors() if other.GetIdx() in placed]
            if len(star) < 3:
                centre = molecule.GetAtomWithIdx(star[1])
                star = [centre.GetIdx()] + [other.GetIdx() for other in centre.GetNeighbors()
                                            if other.GetIdx() in placed]
            return star
    raise RuntimeError('a piece of the chain is not bonded to the pieces before it.')


def _piece_atoms(molecule) -> dict[int, list[int]]:
    """Piece -> its atoms in a fixed order (heavy atoms by index, each followed by its hydrogens)."""
    pieces: dict[int, list[tuple[int, int, int]]] = {}
    for atom in molecule.GetAtoms():
        if atom.GetAtomicNum() == 1 and atom.GetDegree() == 1:
            owner = atom.GetNeighbors()[0]
            key = (owner.GetIdx(), 1, atom.GetIdx())
        else:
            owner, key = atom, (atom.GetIdx(), 0, atom.GetIdx())
        pieces.setdefault(owner.GetIntProp(PIECE_PROPERTY), []).append(key)
    return {piece: [key[2] for key in sorted(keys)] for piece, keys in pieces.items()}


def _embedded(molecule, seed: int, description: str) -> np.ndarray:
    """ETKDG + MMFF coordinates (atoms, 3) of an RDKit molecule with hydrogens."""
    from rdkit.Chem import AllChem

    parameters = AllChem.ETKDGv3()
    parameters.randomSeed = int(seed)
    if AllChem.EmbedMolecule(molecule, parameters) != 0:
        raise RuntimeError(f'RDKit could not embed {description} with seed {seed}.')
    AllChem.MMFFOptimizeMolecule(molecule, maxIters=500)
    return molecule.GetConformer().GetPositions()


def _best_fit(
    window: np.ndarray, positions: np.ndarray, anchor: list[int], counterpart: dict[int, int], numbers: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Kabsch fit of the window's star onto the chain's, over the orders of the star's hydrogens: the hydrogens
    of a CH2 are interchangeable in the graph but mirror images in space, so the identity order may not fit."""
    import itertools

    hydrogens = [position for position, atom in enumerate(anchor) if numbers[atom] == 1]
    best = None
    for order in itertools.permutations(hydrogens):
        partners = [counterpart[atom] for atom in anchor]
        for position, swapped in zip(hydrogens, order, strict=True):
            partners[position] = counterpart[anchor[swapped]]
        rotation, shift = _kabsch(window[partners], positions[anchor])
        deviation = np.square(window[partners] @ rotation.T + shift - positions[anchor]).sum()
        if best is None or deviation < best[0]:
            best = (deviation, rotation, shift)
    return best[1], best[2]


def _kabsch(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (3, 3) and shift t (3,) minimising |source R^T + t - target|."""
    source_centre, target_centre = source.mean(0), target.mean(0)
    covariance = (source - source_centre).T @ (target - target_centre)  # (3, 3)
    u, _, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, sign]) @ u.T
    return rotation, target_centre - source_centre @ rotation.T


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix (3, 3) from a normalised random quaternion."""
    w, x, y, z = (quaternion := rng.normal(size=4)) / np.linalg.norm(quaternion)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _dihedral(positions: np.ndarray, a: int, b: int, c: int, d: int) -> float:
    """Dihedral a-b-c-d in radians."""
    b0, b1, b2 = positions[a] - positions[b], positions[c] - positions[b], positions[d] - positions[c]
    b1 = b1 / np.linalg.norm(b1)
    v, w = b0 - np.dot(b0, b1) * b1, b2 - np.dot(b2, b1) * b1
    return float(np.arctan2(np.dot(np.cross(b1, v), w), np.dot(v, w)))


def _contacts(
    candidates: np.ndarray, new: np.ndarray, settled: np.ndarray, positions: np.ndarray, others: np.ndarray,
    length: float | None, topological: np.ndarray, reach: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Closest distance (K,) and crowding Σ (reach - d)² over pairs closer than ``reach`` (K,) of K candidate
    placements ``candidates`` (K, new, 3) of the ``new`` atoms: against the settled atoms of the chain more than
    three bonds away, each other, and ``others`` (earlier chains); minimum image when ``length`` is given."""
    partners = np.concatenate([positions[settled], others])  # (partners, 3)
    far = np.concatenate([topological[np.ix_(new, settled)] > 3, np.ones((len(new), len(others)), dtype=bool)], 1)
    vectors = candidates[:, :, None, :] - partners[None, None, :, :]  # (K, new, partners, 3)
    inner = candidates[:, :, None, :] - candidates[:, None, :, :]  # (K, new, new, 3)
    if length is not None:
        vectors -= length * np.round(vectors / length)
        inner -= length * np.round(inner / length)
    distances = np.concatenate([
        np.where(far, np.linalg.norm(vectors, axis=-1), np.inf),
        np.where(topological[np.ix_(new, new)] > 3, np.linalg.norm(inner, axis=-1), np.inf),
    ], axis=2).reshape(len(candidates), -1)  # (K, new * (partners + new))
    crowding = np.square(np.clip(reach - distances, 0.0, None)).sum(1)
    return distances.min(1, initial=np.inf), crowding


def _grow_chain(
    template: _ChainTemplate, rng: np.random.Generator, others: np.ndarray, length: float | None,
    min_distance: float, description: str,
) -> np.ndarray:
    """Positions (atoms, 3) of one chain grown by the random walk, clear of ``others`` (earlier chains).

    At each rotatable bond, :data:`CANDIDATES_PER_STATE` dihedrals around each state are tried at once; one of
    those that keep ``min_distance`` is drawn with probability ∝ state weight × exp(-crowding / CROWDING_SCALE),
    so the walk prefers open space (Rosenbluth-style growth), which lets it reach liquid densities.
    """
    rotatable = template.rotatable
    n_atoms = len(template.numbers)
    every = np.arange(n_atoms)
    # atoms that bond i still moves (its side without the axis atom c); those placed for good once bond i has
    # its dihedral are the ones bond i + 1 does not move (c of bond i + 1 included: it sits on that bond's axis)
    pending = [np.setdiff1d(bond[4], [bond[2]]) for bond in rotatable] + [np.zeros(0, dtype=np.int64)]
    first = np.setdiff1d(every, pending[0])
    reach = min_distance + CROWDING_REACH
    for _ in range(START_ATTEMPTS):
        positions = template.positions @ _random_rotation(rng).T
        positions += (rng.uniform(0, length, 3) if length is not None else 0.0) - positions[first].mean(0)
        closest, _ = _contacts(positions[first][None], first, np.zeros(0, dtype=np.int64), positions, others,
                               length, template.topological, reach)
        if closest[0] >= min_distance:
            break
    else:
        raise PackingError(f'no free place to start a chain of {description} with min_distance {min_distance} Å.')
    states = np.radians(np.repeat(DIHEDRAL_STATES_DEG, CANDIDATES_PER_STATE))  # (K,)
    state_weights = np.repeat(DIHEDRAL_WEIGHTS, CANDIDATES_PER_STATE)  # (K,)
    index, dead_ends, moves = 0, 0, 0
    while index < len(rotatable):
        a, b, c, d, moving = rotatable[index]
        new = np.setdiff1d(pending[index], pending[index + 1], assume_unique=True)
        settled = np.setdiff1d(every, pending[index], assume_unique=True)
        targets = states + rng.normal(scale=np.radians(DIHEDRAL_SPREAD_DEG), size=len(states))  # (K,)
        turns = targets - _dihedral(positions, a, b, c, d)
        candidates = _rotated(positions, b, c, new, turns)  # (K, new, 3)
        closest, crowding = _contacts(candidates, new, settled, positions, others, length, template.topological,
                                      reach)
        moves += 1
        free = closest >= min_distance
        if free.any():
            weights = np.where(free, state_weights * np.exp(-(crowding - crowding[free].min()) / CROWDING_SCALE), 0)
            choice = rng.choice(len(turns), p=weights / weights.sum())
            positions[moving] = _rotated(positions, b, c, moving, turns[choice:choice + 1])[0]
            index += 1
            continue
        dead_ends += 1
        if dead_ends > MAX_DEAD_ENDS:
            raise PackingError(f'the random walk could not grow {description} with min_distance {min_distance} Å '
                               f'({dead_ends} dead ends in {moves} moves); lower the density or min_distance.')
        index = max(index - int(rng.integers(1, 6)), 0)  # a dead end: step back a few bonds and grow again
    return positions


def _rotated(positions: np.ndarray, b: int, c: int, atoms: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Positions (K, atoms, 3) of ``atoms`` turned about the b->c axis by each of ``angles`` (K,) radians."""
    x, y, z = (positions[c] - positions[b]) / np.linalg.norm(positions[c] - positions[b])
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])  # (3, 3): cross[axis] @ v = axis × v
    outer = np.outer([x, y, z], [x, y, z])  # (3, 3)
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]  # (K, 1, 1)
    rotations = cos * np.eye(3) + sin * cross + (1 - cos) * outer  # (K, 3, 3), Rodrigues
    return positions[c] + (positions[atoms] - positions[c]) @ rotations.transpose(0, 2, 1)  # (K, atoms, 3)
