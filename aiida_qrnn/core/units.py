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
COULOMB_CONSTANT: float = _ase._e / (4 * _ase.pi * _ase._eps0) * 1e10  # e²/(4π ε0) = 14.399645 eV·Å/e², ase.units
