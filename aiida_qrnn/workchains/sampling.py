"""``SamplingWorkChain`` (``qrnn.sampling``): oligomer lengths -> amorphous cells -> classical MD -> one cluster set.

The ``polymer`` input (a :class:`~aiida_qrnn.core.polymer.Polymer` as ``Polymer.to_dict``) says what the cells are
made of: HO-(CH2CH2O)n-H with OPLS-AA without it (the paper's), any other polymer with GAFF2.

Each step is a process in the provenance graph: ``build_cells`` (calcfunction) makes the cells, one
``ClassicalMdCalculation`` per cell relaxes and runs NPT and NVT, ``extract_clusters`` (calcfunction) cuts and varies
clusters from the NVT trajectories. Protocols (``tiny`` for CI to ``paper``) are in ``protocols/sampling.yaml``.
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import ToContext, WorkChain

from aiida_qrnn.calculations.classical_md import ClassicalMdCalculation
from aiida_qrnn.calculations.sampling import (
    build_cells,
    extract_clusters,
    polymer_of,
    validate_cell_parameters,
    validate_cluster_parameters,
    validate_polymer,
)
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.workchains import protocols
from aiida_qrnn.workchains.protocols.utils import ProtocolMixin

__all__ = ('SamplingWorkChain', 'load_protocol')


def load_protocol(name: str | None = None) -> dict[str, Any]:
    """Protocol ``name`` (the default when ``None``) as written: ``cells``, ``md.parameters`` and ``clusters``."""
    return protocols.load_protocol('sampling', name)


class SamplingWorkChain(ProtocolMixin, WorkChain):
    """From chain lengths to a cluster set, in one call, with the paper's protocol or a smaller one."""

    _protocol_kind = 'sampling'

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('cells', valid_type=orm.Dict, validator=validate_cell_parameters,
                   help='build_cells parameters: n_units, replicas, target_atoms, density_g_cm3, seed, ...')
        spec.input('polymer', valid_type=orm.Dict, required=False, validator=validate_polymer,
                   help='Polymer definition (Polymer.to_dict) of the cells; absent: HO-(CH2CH2O)n-H with OPLS-AA.')
        spec.expose_inputs(ClassicalMdCalculation, namespace='md', exclude=('structure', 'polymer'),
                           namespace_options={'help': 'Inputs of every ClassicalMdCalculation (code, parameters).'})
        spec.input('clusters', valid_type=orm.Dict, validator=validate_cluster_parameters,
                   help='extract_clusters parameters: seed, frames, max_molecules_by_units and ClusterSampling keys.')
        spec.outline(cls.build, cls.run_md, cls.inspect_md, cls.extract)
        spec.output('clusters', valid_type=ClusterSetData, help='Extracted, conformational and decomposed clusters.')
        spec.output_namespace('final_structures', valid_type=orm.StructureData, dynamic=True,
                              help='The equilibrated cell of every MD run, by cell label.')
        spec.exit_code(401, 'ERROR_MD_FAILED', message='Classical MD failed for cell(s) {labels}.')

    @classmethod
    def get_builder_from_protocol(
        cls, code: orm.AbstractCode, protocol: str | None = None, overrides: dict[str, Any] | None = None,
    ):
        """A builder from ``protocols/sampling.yaml``; ``overrides`` are shaped like the inputs and merged
        recursively, e.g. ``{'cells': {'n_units': [1, 2]}, 'md': {'parameters': {'nvt_steps': 50000}}}``."""
        return cls._builder_from_protocol(protocol, overrides, {'md': {'code': code}})

    def _polymer(self) -> dict[str, orm.Dict]:
        """``{'polymer': node}`` for the steps when a polymer is given, else nothing (ethylene glycol)."""
        return {'polymer': self.inputs.polymer} if 'polymer' in self.inputs else {}

    def build(self) -> None:
        """Pack the cells (one calcfunction, so every cell has it as creator)."""
        if 'polymer' in self.inputs:
            polymer = polymer_of(self.inputs.polymer)
            self.report(f'cells of {polymer.name} ({polymer.describe(1)}, ...), elements {list(polymer.elements)}')
        self.ctx.cells = build_cells(self.inputs.cells, **self._polymer())

    def run_md(self):
        """One ClassicalMdCalculation per cell, all submitted at once."""
        inputs = self.exposed_inputs(ClassicalMdCalculation, namespace='md')
        calculations = {}
        for label, structure in sorted(self.ctx.cells.items()):
            inputs['metadata'] = {**inputs.get('metadata', {}), 'call_link_label': f'md_{label}'}
            calculations[f'md_{label}'] = self.submit(ClassicalMdCalculation, structure=structure, **inputs,
                                                      **self._polymer())
        return ToContext(**calculations)

    def inspect_md(self):
        """Stop with ERROR_MD_FAILED (naming the cells) when any MD run failed."""
        failed = [label for label in sorted(self.ctx.cells) if not self.ctx[f'md_{label}'].is_finished_ok]
        if failed:
            return self.exit_codes.ERROR_MD_FAILED.format(labels=', '.join(failed))
        for label in sorted(self.ctx.cells):
            self.out(f'final_structures.{label}', self.ctx[f'md_{label}'].outputs.structure)
        return None

    def extract(self) -> None:
        """Cut, perturb, decompose and deduplicate clusters from the NVT trajectories."""
        trajectories = {label: self.ctx[f'md_{label}'].outputs.trajectory for label in sorted(self.ctx.cells)}
        self.out('clusters', extract_clusters(self.inputs.clusters, **self._polymer(), **trajectories))
