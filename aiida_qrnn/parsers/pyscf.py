"""``PyscfParser``: the per-cluster records of a ``PyscfCalculation`` become one labelled ``ClusterSetData``."""

from __future__ import annotations

from typing import Any

from aiida_qrnn.calculations.labels import level_of_theory
from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.label_records import record_name
from aiida_qrnn.parsers.parse_raw.pyscf import parse_cluster
from aiida_qrnn.parsers.records import RecordParser

__all__ = ('PyscfParser',)


class PyscfParser(RecordParser):
    """PySCF energy, forces and dipole per cluster; see ``RecordParser`` for outputs and exit codes."""

    def parse_cluster(self, index: int, arrays: ClusterArrays, files: dict[str, str]) -> dict[str, Any]:
        rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
        return parse_cluster(
            cluster_id=str(arrays.ids[index]), numbers=arrays.numbers[rows], positions=arrays.positions[rows],
            record=files.get(record_name(index)), stderr=files.get('pyscf.err'),
        )

    def level_of_theory(self) -> str:
        return level_of_theory(self.node.inputs.parameters.get_dict())
