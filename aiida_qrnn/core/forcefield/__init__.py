"""The classical OPLS-AA baseline for HO-(CH2CH2O)n-H in OpenMM: typing, the ``System``, relaxation, NPT and NVT."""

from aiida_qrnn.core.forcefield.md import MdProtocol, MdUnstableError, run_classical_md
from aiida_qrnn.core.forcefield.system import FORCE_GROUPS, OplsAaCalculator, build_system
from aiida_qrnn.core.forcefield.topology import OplsTopology, UnsupportedChemistryError, build_topology

__all__ = (
    'FORCE_GROUPS',
    'MdProtocol',
    'MdUnstableError',
    'OplsAaCalculator',
    'OplsTopology',
    'UnsupportedChemistryError',
    'build_system',
    'build_topology',
    'run_classical_md',
)
