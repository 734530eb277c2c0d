"""``Psi4Parser``: the per-cluster records of a ``Psi4Calculation`` become one labelled ``ClusterSetData``."""

from __future__ import annotations

from typing import Any

from aiida_qrnn.calculations.labels import level_of_theory
from aiida_qrnn.calculations.psi4 import Psi4Calculation
from aiida_qrnn.core.d3bj import split_dispersion
from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.label_records import record_name
from aiida_qrnn.parsers.parse_raw.psi4 import parse_cluster
from aiida_qrnn.parsers.records import RecordParser

__all__ = ('Psi4Parser',)


class Psi4Parser(RecordParser):
    """Psi4 energy (plus D3(BJ) for a ``-d3bj`` method), forces and dipole per cluster; see ``RecordParser``."""

    def parse_cluster(self, index: int, arrays: ClusterArrays, files: dict[str, str]) -> dict[str, Any]:
        _, d3bj = split_dispersion(self.node.inputs.parameters['method'])
        prefix = Psi4Calculation.prefix(index)
        rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
        return parse_cluster(
            cluster_id=str(arrays.ids[index]), numbers=arrays.numbers[rows], positions=arrays.positions[rows],
            record=files.get(record_name(index)), d3bj_record=files.get(record_name(index, 'd3bj')),
            d3bj_parameters=None if d3bj is None else d3bj.as_dict(), output=files.get(f'{prefix}.out'),
            stderr=files.get(f'{prefix}.err'),
        )

    def level_of_theory(self) -> str:
        return level_of_theory(self.node.inputs.parameters.get_dict())
