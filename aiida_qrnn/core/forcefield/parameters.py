"""OPLS-AA parameters for HO-(CH2CH2O)n-H, in OpenMM units (nm, kJ/mol, rad, e).

Source of every table: foyer's OpenMM translation of OPLS-AA, ``mosdef-hub/foyer`` @b9debab,
``foyer/forcefields/xml/oplsaa.xml`` (``NonbondedForce``, ``HarmonicBondForce``, ``HarmonicAngleForce``,
``RBTorsionForce`` blocks), which transcribes Jorgensen, Maxwell, Tirado-Rives, J. Am. Chem. Soc. 118, 11225
(1996), doi:10.1021/ja9621760. Summarised in ``reference/science.md`` §5.3.

Conventions are OpenMM's: a harmonic bond is ``k/2 (r - r0)^2`` and an angle ``k/2 (theta - theta0)^2`` (the
factor 2 of the OPLS papers' ``K (r - r0)^2`` is already in ``k``); a Ryckaert-Bellemans torsion is
``sum_n c_n cos(psi)^n`` with ``psi = phi - 180 deg`` (phi the IUPAC dihedral, trans = 180 deg). 1-4 pairs are
scaled by 0.5 (Coulomb and Lennard-Jones), 1-2 and 1-3 pairs excluded, and Lennard-Jones parameters combine
geometrically (sigma_ij = sqrt(sigma_i sigma_j)), as in OPLS.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = (
    'ANGLES', 'ATOM_TYPES', 'BONDS', 'COULOMB_14_SCALE', 'LJ_14_SCALE', 'TORSIONS', 'AtomType', 'angle_parameters',
    'bond_parameters', 'torsion_parameters',
)

COULOMB_14_SCALE = 0.5  # oplsaa.xml: <NonbondedForce coulomb14scale="0.5" lj14scale="0.5">
LJ_14_SCALE = 0.5


class AtomType(NamedTuple):
    """One OPLS-AA atom type: bonded class, partial charge (e), LJ sigma (nm) and epsilon (kJ/mol), mass (amu)."""

    bond_class: str
    charge: float
    sigma: float
    epsilon: float
    mass: float
    description: str


#: oplsaa.xml <AtomTypes> and <NonbondedForce>. opls_169/170 (diol O/H) carry no class in foyer's file; in
#: OPLS-AA (Jorgensen 1996, oplsaa.par) their bonded types are OH/HO, which is what they are given here.
ATOM_TYPES: dict[str, AtomType] = {
    'opls_140': AtomType('HC', 0.06, 0.25, 0.12552, 1.008, 'alkane H (on C-OH)'),
    'opls_154': AtomType('OH', -0.683, 0.312, 0.71128, 15.9994, 'O, mono alcohol'),
    'opls_155': AtomType('HO', 0.418, 1.0, 0.0, 1.008, 'H(O), mono alcohol'),
    'opls_157': AtomType('CT', 0.145, 0.35, 0.276144, 12.011, 'C of CH2-OH, alcohol'),
    'opls_169': AtomType('OH', -0.7, 0.307, 0.71128, 15.9994, 'O, diol'),
    'opls_170': AtomType('HO', 0.435, 1.0, 0.0, 1.008, 'H(O), diol'),
    'opls_180': AtomType('OS', -0.4, 0.29, 0.58576, 15.9994, 'O, dialkyl ether'),
    'opls_182': AtomType('CT', 0.14, 0.35, 0.276144, 12.011, 'C of CH2-O-R, ether'),
    'opls_185': AtomType('HC', 0.03, 0.25, 0.12552, 1.008, 'H alpha to ether O'),
}

#: oplsaa.xml <HarmonicBondForce>: (class, class) -> (r0 nm, k kJ/mol/nm^2).
BONDS: dict[tuple[str, str], tuple[float, float]] = {
    ('CT', 'CT'): (0.1529, 224262.4),
    ('CT', 'HC'): (0.109, 284512.0),
    ('CT', 'OH'): (0.141, 267776.0),
    ('CT', 'OS'): (0.141, 267776.0),
    ('HO', 'OH'): (0.0945, 462750.4),
}

#: oplsaa.xml <HarmonicAngleForce>: (class, centre class, class) -> (theta0 rad, k kJ/mol/rad^2).
ANGLES: dict[tuple[str, str, str], tuple[float, float]] = {
    ('CT', 'CT', 'HC'): (1.93207948196, 313.8),
    ('CT', 'CT', 'OH'): (1.91113553093, 418.4),
    ('CT', 'CT', 'OS'): (1.91113553093, 418.4),
    ('HC', 'CT', 'HC'): (1.88146493365, 276.144),
    ('HC', 'CT', 'OH'): (1.91113553093, 292.88),
    ('HC', 'CT', 'OS'): (1.91113553093, 292.88),
    ('CT', 'OH', 'HO'): (1.89368223841, 460.24),
    ('CT', 'OS', 'CT'): (1.91113553093, 502.08),
}

#: oplsaa.xml <RBTorsionForce> propers: four classes -> (c0 .. c5) kJ/mol.
TORSIONS: dict[tuple[str, str, str, str], tuple[float, ...]] = {
    ('CT', 'CT', 'OH', 'HO'): (-0.4435, 3.83255, 0.72801, -4.11705, 0.0, 0.0),
    ('CT', 'CT', 'OS', 'CT'): (1.71544, 2.84512, 1.046, -5.60656, 0.0, 0.0),
    ('CT', 'OS', 'CT', 'HC'): (1.58992, 4.76976, 0.0, -6.35968, 0.0, 0.0),
    ('HC', 'CT', 'CT', 'HC'): (0.6276, 1.8828, 0.0, -2.5104, 0.0, 0.0),
    ('HC', 'CT', 'CT', 'OH'): (0.97905, 2.93716, 0.0, -3.91622, 0.0, 0.0),
    ('HC', 'CT', 'CT', 'OS'): (0.97905, 2.93716, 0.0, -3.91622, 0.0, 0.0),
    ('HC', 'CT', 'OH', 'HO'): (0.9414, 2.8242, 0.0, -3.7656, 0.0, 0.0),
    ('OH', 'CT', 'CT', 'OH'): (18.96607, -18.96607, 0.0, 0.0, 0.0, 0.0),
    ('OH', 'CT', 'CT', 'OS'): (9.03534, -9.03534, 0.0, 0.0, 0.0, 0.0),
    ('OS', 'CT', 'CT', 'OS'): (-1.1506, 1.1506, 0.0, 0.0, 0.0, 0.0),
}


def bond_parameters(first: str, second: str) -> tuple[float, float] | None:
    """Bond parameters for two classes in either order, or ``None``."""
    return BONDS.get((first, second)) or BONDS.get((second, first))


def angle_parameters(first: str, centre: str, last: str) -> tuple[float, float] | None:
    return ANGLES.get((first, centre, last)) or ANGLES.get((last, centre, first))


def torsion_parameters(classes: tuple[str, str, str, str]) -> tuple[float, ...] | None:
    return TORSIONS.get(classes) or TORSIONS.get(classes[::-1])
