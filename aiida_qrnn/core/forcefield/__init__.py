"""Classical baselines in OpenMM: OPLS-AA for HO-(CH2CH2O)n-H (the paper's: typing, the ``System``, relaxation,
NPT and NVT) and GAFF2 for any organic polymer (:mod:`.gaff`, AmberTools; run through the same ``run_classical_md``)."""

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
