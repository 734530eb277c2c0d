"""``PolymerForceFieldWorkChain`` (``qrnn.polymer``): the paper end to end, from oligomer lengths to the property table.

1. ``SamplingWorkChain``: packed cells of the oligomers, OPLS-AA MD, clusters cut from the trajectories;
2. ``split_clusters``: a seeded random part of the clusters is labelled first (``LabelWorkChain``), the rest are
   active-learning candidates;
3. ``ActiveLearningWorkChain``: a first model, then rounds of committee → candidates (the rest of the sampled
   clusters and clusters cut from monitored QRNN MD of the sampled cells) → ρ^f → selection → labels → transfer
   learning;
4. ``PropertiesWorkChain`` with the final model and, with ``baseline``, with OPLS-AA through the same MD code;
   ``TorsionScanWorkChain`` and ``PairScanWorkChain`` against the labelling engine.

The property runs (and those of every round) start, as in the paper, from the classically relaxed cells of the
same replicas (``SamplingWorkChain``'s ``final_structures``, matched by label ``nNNN_rRR``); only when the sampling
did not relax every cell the property protocol asks for are fresh cells packed, and the report says so.

``aiida-qrnn report <pk>`` draws the paper's figures and the table from the graph this work chain leaves.
Protocols (``demo``, ``fast``, ``paper``, ``xtb-study``) are in ``protocols/polymer.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction

from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.workchains import protocols
from aiida_qrnn.workchains.active_learning import ActiveLearningWorkChain
from aiida_qrnn.workchains.label import LabelWorkChain
from aiida_qrnn.workchains.properties import PropertiesWorkChain
from aiida_qrnn.workchains.sampling import SamplingWorkChain
from aiida_qrnn.workchains.scans import PairScanWorkChain, TorsionScanWorkChain

__all__ = ('PolymerForceFieldWorkChain', 'classical_cells', 'load_protocol', 'split_clusters')

SCAN_KINDS = {'torsion': TorsionScanWorkChain, 'pair': PairScanWorkChain}


def load_protocol(name: str | None = None) -> dict[str, Any]:
    """The settings of protocol ``name`` (the default when ``None``) from ``protocols/polymer.yaml``."""
    return protocols.load_protocol('polymer', name)


@calcfunction
def split_clusters(clusters: ClusterSetData, parameters: orm.Dict) -> dict[str, ClusterSetData]:
    """A seeded random ``n_initial`` clusters to label first (``initial``) and the rest (``candidates``)."""
    values = parameters.get_dict()
    n_clusters = clusters.n_clusters
    n_initial = int(values['n_initial'])
    if not 0 < n_initial < n_clusters:
        raise ValueError(f'split_clusters: n_initial must be in 1..{n_clusters - 1} for {n_clusters} sampled '
                         f'clusters, got {n_initial}.')
    chosen = np.zeros(n_clusters, bool)
    chosen[np.random.default_rng(int(values.get('seed', 0))).choice(n_clusters, size=n_initial, replace=False)] = True
    arrays = clusters.get_arrays()
    return {'initial': ClusterSetData.from_arrays(arrays.select(np.flatnonzero(chosen))),
            'candidates': ClusterSetData.from_arrays(arrays.select(np.flatnonzero(~chosen)))}


def classical_cells(final_structures: Mapping[str, orm.StructureData], cells: Mapping[str, Any],
                    ) -> tuple[dict[str, orm.StructureData], list[str]]:
    """The relaxed cells ``nNNN_rRR`` that the property ``cells`` parameters (n_units x replicas) ask for, and the
    labels the sampling did not relax."""
    wanted = [f'n{int(n_units):03d}_r{replica:02d}' for n_units in cells['n_units']
              for replica in range(int(cells.get('replicas', 1)))]
    return ({label: final_structures[label] for label in wanted if label in final_structures},
            [label for label in wanted if label not in final_structures])


def validate_scans(value: orm.Dict, _) -> str | None:
    unknown = sorted(set(value.get_dict()) - set(SCAN_KINDS))
    if unknown:
        return f'scans: unknown scan(s) {unknown}; known: {sorted(SCAN_KINDS)}.'
    return None


class PolymerForceFieldWorkChain(WorkChain):
    """Oligomer lengths → sampled clusters → labels → active learning → final QRNN → properties and scans."""

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('code', valid_type=orm.AbstractCode, help='aiida-qrnn-exec: sampling MD, training, scoring, MD.')
        spec.expose_inputs(SamplingWorkChain, namespace='sampling',
                           namespace_options={'help': 'Cells, OPLS-AA MD and cluster cutting.'})
        spec.input('initial_clusters', valid_type=orm.Int,
                   help='Sampled clusters labelled before the first model; the rest are candidates.')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(0), help='Seed of the initial split.')
        spec.input('model', valid_type=ModelData, required=False,
                   help='Start from this model instead of training a first one: transfer learning to a new polymer '
                        '(the paper\'s suggestion; the model must know its elements).')
        spec.expose_inputs(LabelWorkChain, namespace='label', exclude=('clusters',),
                           namespace_options={'help': 'The labelling engine (also the scans\' reference).'})
        spec.expose_inputs(ActiveLearningWorkChain, namespace='active_learning',
                           exclude=('clusters', 'code', 'label', 'candidates', 'model', 'options'),
                           namespace_options={'help': 'Training, committee, selection, rounds, candidate MD.'})
        spec.expose_inputs(PropertiesWorkChain, namespace='properties', exclude=('code', 'model', 'structures',
                                                                                 'options'),
                           namespace_options={'help': 'Cells and MD protocol of the property runs.'})
        spec.input('baseline', valid_type=orm.Bool, default=lambda: orm.Bool(True),
                   help='Also compute the properties with OPLS-AA through the same MD code.')
        spec.input('scans', valid_type=orm.Dict, required=False, validator=validate_scans,
                   help='{torsion: TorsionScanWorkChain parameters, pair: PairScanWorkChain parameters}.')
        spec.input('options', valid_type=dict, non_db=True, default=dict, help='metadata.options of the jobs.')
        spec.outline(
            cls.sample,
            cls.label_initial,
            cls.run_active_learning,
            cls.inspect_active_learning,
            cls.run_properties_and_scans,
            cls.results,
        )
        spec.output('model', valid_type=ModelData, help='The final QRNN.')
        spec.output('clusters', valid_type=ClusterSetData, help='Its training data.')
        spec.output('summary', valid_type=orm.Dict, help='The active-learning record, round by round.')
        spec.output_namespace('properties', dynamic=True,
                              help='qrnn.nNNN and opls_aa.nNNN: {property: {value, uncertainty, unit}}.')
        spec.output_namespace('scans', dynamic=True, help='torsion and pair: curves (ArrayData) and plot.')
        spec.exit_code(401, 'ERROR_SAMPLING_FAILED', message='Sampling failed: {message}')
        spec.exit_code(402, 'ERROR_LABELLING_FAILED', message='Labelling the initial clusters failed: {message}')
        spec.exit_code(403, 'ERROR_ACTIVE_LEARNING_FAILED', message='Active learning failed: {message}')
        spec.exit_code(404, 'ERROR_PROPERTIES_FAILED', message='{method} properties failed: {message}')
        spec.exit_code(405, 'ERROR_SCAN_FAILED', message='The {kind} scan failed: {message}')

    @classmethod
    def get_builder_from_protocol(
        cls, code: orm.AbstractCode, label_code: orm.AbstractCode, protocol: str | None = None, *,
        d3bj_code: orm.AbstractCode | None = None, charges_code: orm.AbstractCode | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """A builder from ``protocols/polymer.yaml``: ``code`` is aiida-qrnn-exec, ``label_code`` xtb or psi4.

        ``overrides`` replace whole top-level sections of the protocol, e.g. ``{'max_rounds': 3}`` or
        ``{'selection': {'rule': 'trust_levels', 'lower': 0.05, 'upper': 1.0}}``.
        """
        values = {**load_protocol(protocol), **(overrides or {})}
        builder = cls.get_builder()
        builder.code = code
        sampling = SamplingWorkChain.get_builder_from_protocol(code, values['sampling']['protocol'],
                                                               overrides=values['sampling'].get('overrides'))
        builder.sampling.cells = sampling.cells
        builder.sampling.md.code = code
        builder.sampling.md.parameters = sampling.md.parameters
        builder.sampling.clusters = sampling.clusters
        builder.initial_clusters = orm.Int(values['initial_clusters'])
        label = values['label']
        builder.label.engine = orm.Str(label['engine'])
        builder.label.code = label_code
        builder.label.batch_size = orm.Int(label['batch_size'])
        builder.label.max_concurrent = orm.Int(label.get('max_concurrent', 4))
        if 'parameters' in label:
            builder.label.parameters = orm.Dict(label['parameters'])
        if label['engine'] != 'xtb':
            if d3bj_code is not None:
                builder.label.d3bj_code = d3bj_code
            if charges_code is not None:
                builder.label.charges_code = charges_code
        active = builder.active_learning
        active.training = orm.Dict(values['training'])
        active.transfer = orm.Dict(values.get('transfer', {}))
        active.committee_size = orm.Int(values['committee_size'])
        active.committee_transfer = orm.Bool(values.get('committee_transfer', False))
        active.selection = orm.Dict(values['selection'])
        active.max_rounds = orm.Int(values['max_rounds'])
        if 'stop_rule' in values:
            active.stop_rule = orm.Dict(values['stop_rule'])
        if 'md' in values:
            active.md.parameters = orm.Dict(values['md']['parameters'])
            active.md.clusters = orm.Dict(values['md'].get('clusters', {}))
            if 'monitor' in values['md']:
                active.md.monitor = orm.Dict(values['md']['monitor'])
        for key, value in cls._properties_inputs(code, values['properties']).items():
            builder.properties[key] = value
        if 'round_properties' in values:
            for key, value in cls._properties_inputs(code, values['round_properties']).items():
                active.properties[key] = value
            if 'property_stop' in values:
                active.property_stop = orm.Dict(values['property_stop'])
        builder.baseline = orm.Bool(values.get('baseline', True))
        if values.get('scans'):
            builder.scans = orm.Dict(values['scans'])
        return builder

    @staticmethod
    def _properties_inputs(code: orm.AbstractCode, section: dict[str, Any]) -> dict[str, orm.Dict]:
        """PropertiesWorkChain inputs of a protocol section ``{protocol, overrides}``, from its own builder."""
        builder = PropertiesWorkChain.get_builder_from_protocol(code, section['protocol'],
                                                                overrides=section.get('overrides'))
        keys = ('cells', 'npt', 'nvt', 'analysis', 'vdos')
        return {key: builder[key] for key in keys if builder.get(key) is not None}

    def _submit(self, process, link_label: str, /, **inputs):
        metadata = {**inputs.pop('metadata', {}), 'call_link_label': link_label}
        return self.submit(process, **inputs, metadata=metadata)

    def sample(self):
        inputs = AttributeDict(self.exposed_inputs(SamplingWorkChain, 'sampling'))
        return ToContext(sampling=self._submit(SamplingWorkChain, 'sampling', **inputs))

    def label_initial(self):
        node = self.ctx.sampling
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_SAMPLING_FAILED.format(message=f'{node.process_label}<{node.pk}>: '
                                                                        f'{node.exit_message}')
        split = split_clusters(node.outputs.clusters, orm.Dict({'n_initial': self.inputs.initial_clusters.value,
                                                                'seed': self.inputs.seed.value}))
        self.ctx.candidates = split['candidates']
        inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, 'label'))
        self.report(f'labelling {split["initial"].n_clusters} of {node.outputs.clusters.n_clusters} sampled clusters')
        return ToContext(initial=self._submit(LabelWorkChain, 'label_initial', clusters=split['initial'], **inputs))

    def run_active_learning(self):
        node = self.ctx.initial
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_LABELLING_FAILED.format(message=f'{node.process_label}<{node.pk}>: '
                                                                         f'{node.exit_message}')
        inputs = AttributeDict(self.exposed_inputs(ActiveLearningWorkChain, 'active_learning'))
        if 'parameters' in inputs.get('md', {}) and not inputs.md.get('structures'):
            inputs.md = {**inputs.md, 'structures': self._candidate_md_cells(inputs.md.get('clusters'))}
        if 'model' in self.inputs:
            inputs.model = self.inputs.model
        if 'cells' in inputs.get('properties', {}):
            inputs.properties = self._with_classical_cells(dict(inputs.properties), 'round properties')
        return ToContext(active_learning=self._submit(
            ActiveLearningWorkChain, 'active_learning', clusters=node.outputs.clusters, code=self.inputs.code,
            label=self.exposed_inputs(LabelWorkChain, 'label'), candidates={'sampled': self.ctx.candidates},
            options=dict(self.inputs.options), **inputs))

    def inspect_active_learning(self):
        node = self.ctx.active_learning
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_ACTIVE_LEARNING_FAILED.format(message=f'{node.process_label}<{node.pk}>: '
                                                                               f'{node.exit_message}')
        self.out('model', node.outputs.model)
        self.out('clusters', node.outputs.clusters)
        self.out('summary', node.outputs.summary)
        return None

    def run_properties_and_scans(self):
        """Properties of the final model (and of OPLS-AA) and the scans, all at once."""
        model = self.ctx.active_learning.outputs.model
        inputs = self._with_classical_cells(dict(self.exposed_inputs(PropertiesWorkChain, 'properties')), 'properties')
        common = {'code': self.inputs.code, 'options': dict(self.inputs.options), **inputs}
        submitted = {'properties_qrnn': self._submit(PropertiesWorkChain, 'properties_qrnn', model=model, **common)}
        if self.inputs.baseline.value:
            submitted['properties_opls_aa'] = self._submit(PropertiesWorkChain, 'properties_opls_aa', **common)
        scans = self.inputs.scans.get_dict() if 'scans' in self.inputs else {}
        reference = self.exposed_inputs(LabelWorkChain, 'label')
        for kind, parameters in sorted(scans.items()):
            scan = {'model': model, 'reference': reference, 'parameters': orm.Dict(parameters)}
            if kind == 'pair':
                structures = self.ctx.sampling.outputs.final_structures
                scan['structure'] = structures[sorted(structures)[0]]
            submitted[f'scan_{kind}'] = self._submit(SCAN_KINDS[kind], f'scan_{kind}', **scan)
        return ToContext(**submitted)

    def _candidate_md_cells(self, clusters: orm.Dict | None) -> dict[str, orm.StructureData]:
        """The relaxed cells of the chain lengths that candidate clusters are cut from (the training lengths; MD of
        the longer ones would give frames that no cluster is taken from)."""
        from aiida_qrnn.calculations.sampling import CLUSTER_DEFAULTS

        values = {**CLUSTER_DEFAULTS, **(clusters.get_dict() if clusters is not None else {})}
        lengths = {int(n_units) for n_units in values['max_molecules_by_units']}
        final = self.ctx.sampling.outputs.final_structures
        return {label: final[label] for label in final if int(label[1:4]) in lengths}

    def _with_classical_cells(self, inputs: dict[str, Any], what: str) -> dict[str, Any]:
        """PropertiesWorkChain inputs that start from the sampling's relaxed cells when it relaxed all of them."""
        structures, missing = classical_cells(self.ctx.sampling.outputs.final_structures, inputs['cells'].get_dict())
        if missing:
            self.report(f'{what}: the sampling relaxed no cell {", ".join(missing)}; these runs start from freshly '
                        'packed cells, not from the classical ones')
            return inputs
        return {**inputs, 'structures': structures}

    def results(self):
        for method in ('qrnn', 'opls_aa'):
            node = self.ctx.get(f'properties_{method}')
            if node is None:
                continue
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_PROPERTIES_FAILED.format(
                    method='QRNN' if method == 'qrnn' else 'OPLS-AA',
                    message=f'{node.process_label}<{node.pk}>: {node.exit_message}')
            for length, values in node.outputs.properties.items():
                self.out(f'properties.{method}.{length}', values)
        for kind in sorted(SCAN_KINDS):
            node = self.ctx.get(f'scan_{kind}')
            if node is None:
                continue
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_SCAN_FAILED.format(kind=kind, message=f'{node.process_label}<{node.pk}>: '
                                                                                  f'{node.exit_message}')
            self.out(f'scans.{kind}.curves', node.outputs.curves)
            self.out(f'scans.{kind}.plot', node.outputs.plot)
        return None
