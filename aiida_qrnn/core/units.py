"""Unit conversions used at the edges of the package.

Inside the package everything is in ASE units: Å, eV, e, fs, K, bar, amu. Codes that speak atomic units
(Psi4, PySCF, xtb) are converted with these constants when their output is parsed, and nowhere else.
"""

from ase import units as _ase

HARTREE_TO_EV: float = _ase.Hartree  # 27.211386... eV, CODATA 2014 as in ase.units
BOHR_TO_ANGSTROM: float = _ase.Bohr  # 0.529177... Å, CODATA 2014 as in ase.units
HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM: float = HARTREE_TO_EV / BOHR_TO_ANGSTROM
E_BOHR_TO_E_ANGSTROM: float = BOHR_TO_ANGSTROM  # dipole moment: e·bohr -> e·Å
DEBYE_TO_E_ANGSTROM: float = _ase.Debye  # 1 D in e·Å (ase.units.Debye)
KJ_PER_MOL_TO_EV: float = _ase.kJ / _ase.mol  # 1 kJ/mol in eV (OpenMM's energy unit), ase.units
AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3: float = _ase._amu * 1e3 / 1e-24  # 1 amu/Å^3 = 1.66054 g/cm^3 (CODATA via ase)
ATM_TO_BAR: float = 1.01325  # standard atmosphere, exact by definition
COULOMB_CONSTANT: float = _ase._e / (4 * _ase.pi * _ase._eps0) * 1e10  # e²/(4π ε0) = 14.399645 eV·Å/e², ase.units
EV_TO_KCAL_PER_MOL: float = _ase.mol / _ase.kcal  # 1 eV = 23.0605 kcal/mol (the paper's scan plots), ase.units
