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

**Any polymer, and transfer learning to it.** ``polymer`` (a :class:`~aiida_qrnn.core.polymer.Polymer` as
``Polymer.to_dict``; HO-(CH2CH2O)n-H without it) is what every cell is made of: the sampling packs its n-mers and
runs them with GAFF2 (OPLS-AA for ethylene glycol), freshly packed property cells are of it, and the work chain
outputs the family's experimental values (``experimental``, from ``core/analysis/experimental.yaml``) where the
file has them. With ``model`` (e.g. the final model of an ethylene-glycol run) no first model is trained: the
active learning starts from it and every next model is transfer-learned from it on the new polymer's clusters (the
paper's recipe for a new polymer; a new element gets fresh networks in the training job). The classical property
baseline of the MD job and the scans' classical curves are OPLS-AA of ethylene glycol only: for another polymer
``baseline`` is skipped (the report says so; the GAFF2 sampling runs are its classical record) and ``scans`` are
refused.

``aiida-qrnn report <pk>`` draws the paper's figures and the table from the graph this work chain leaves.
Protocols (``demo``, ``fast``, ``paper``, ``xtb-study``) are in ``protocols/polymer.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction

from aiida_qrnn.calculations.functions.cluster_sets import split_clusters
from aiida_qrnn.calculations.sampling import build_cells, polymer_of, validate_polymer
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.workchains import protocols
from aiida_qrnn.workchains.active_learning import ActiveLearningWorkChain
from aiida_qrnn.workchains.label import LabelWorkChain
from aiida_qrnn.workchains.properties import PropertiesWorkChain
from aiida_qrnn.workchains.protocols.utils import ProtocolMixin, nest_builder, recursive_merge
from aiida_qrnn.workchains.sampling import SamplingWorkChain
from aiida_qrnn.workchains.scans import PairScanWorkChain, TorsionScanWorkChain

__all__ = ('PolymerForceFieldWorkChain', 'classical_cells', 'experimental_reference', 'load_protocol')

SCAN_KINDS = {'torsion': TorsionScanWorkChain, 'pair': PairScanWorkChain}


def load_protocol(name: str | None = None) -> dict[str, Any]:
    """The settings of protocol ``name`` (the default when ``None``) from ``protocols/polymer.yaml``."""
    return protocols.load_protocol('polymer', name)


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


def validate_inputs(inputs, _) -> str | None:
    """Scans (OCCO torsion, OPLS-AA curves) are for ethylene glycol only; a polymer input must be one."""
    from aiida_qrnn.core.polymer import ETHYLENE_GLYCOL

    if 'polymer' not in inputs or validate_polymer(inputs['polymer'], None):
        return None
    polymer = polymer_of(inputs['polymer'])
    if polymer != ETHYLENE_GLYCOL and 'scans' in inputs and inputs['scans'].get_dict():
        return (f'scans: the torsion and pair scans compare with OPLS-AA of ethylene glycol; they cannot run for '
                f'the polymer {polymer.name!r}: leave scans out.')
    return None


@calcfunction
def experimental_reference(polymer: orm.Dict, temperature_K: orm.Float) -> orm.Dict:
    """Every experimental density and c_p of the ``polymer``'s family in ``core/analysis/experimental.yaml`` at
    ``temperature_K``: ``{property: {source: {n_units: value}}, units: {...}}`` (empty sources when none)."""
    from aiida_qrnn.core.analysis.experimental import PROPERTIES, experimental, load_experimental_data

    family = polymer_of(polymer).name
    values: dict[str, Any] = {'family': family, 'temperature_K': temperature_K.value,
                              'units': {'density': 'g/cm^3', 'heat_capacity': 'J/(g K)'}}
    for name in PROPERTIES:
        values[name] = {}
        for source in load_experimental_data()['sources']:
            try:
                series = experimental(name, temperature_K.value, source=source, family=family)
            except ValueError:  # no data of this family, property and source at a stated temperature
                continue
            values[name][source] = {str(int(n)): float(v) for n, v in zip(series.n_units, series.values, strict=True)}
    return orm.Dict(values)


class PolymerForceFieldWorkChain(ProtocolMixin, WorkChain):
    """Oligomer lengths → sampled clusters → labels → active learning → final QRNN → properties and scans."""

    _protocol_kind = 'polymer'

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('code', valid_type=orm.AbstractCode, help='aiida-qrnn-exec: sampling MD, training, scoring, MD.')
        spec.input('polymer', valid_type=orm.Dict, required=False, validator=validate_polymer,
                   help='Polymer definition (Polymer.to_dict) of every cell; absent: HO-(CH2CH2O)n-H.')
        spec.expose_inputs(SamplingWorkChain, namespace='sampling', exclude=('polymer',),
                           namespace_options={'help': 'Cells, classical MD and cluster cutting.'})
        spec.input('initial_clusters', valid_type=orm.Int,
                   help='Sampled clusters labelled before the first model; the rest are candidates.')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(0), help='Seed of the initial split.')
        spec.input('model', valid_type=ModelData, required=False,
                   help='Start from this model instead of training a first one: transfer learning to a new polymer '
                        '(the paper\'s suggestion; elements it does not know get fresh networks when trained).')
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
        spec.inputs.validator = validate_inputs
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
        spec.output('experimental', valid_type=orm.Dict, required=False,
                    help='With a polymer input: the experimental density and c_p of its family, by source.')
        spec.exit_code(401, 'ERROR_SAMPLING_FAILED', message='Sampling failed: {message}')
        spec.exit_code(402, 'ERROR_LABELLING_FAILED', message='Labelling the initial clusters failed: {message}')
        spec.exit_code(403, 'ERROR_ACTIVE_LEARNING_FAILED', message='Active learning failed: {message}')
        spec.exit_code(404, 'ERROR_PROPERTIES_FAILED', message='{method} properties failed: {message}')
        spec.exit_code(405, 'ERROR_SCAN_FAILED', message='The {kind} scan failed: {message}')

    @classmethod
    def get_builder_from_protocol(
        cls, code: orm.AbstractCode, label_code: orm.AbstractCode, protocol: str | None = None, *,
        d3bj_code: orm.AbstractCode | None = None, charges_code: orm.AbstractCode | None = None,
        overrides: dict[str, Any] | None = None, polymer: Any = None, model: ModelData | None = None,
    ):
        """A builder from ``protocols/polymer.yaml`` composed of its children's builders: ``code`` is
        aiida-qrnn-exec, ``label_code`` xtb or psi4 (``d3bj_code``, ``charges_code`` for a DFT engine).

        ``polymer`` (a :class:`~aiida_qrnn.core.polymer.Polymer`, its ``to_dict`` or a name of
        ``core.polymer.POLYMERS`` such as ``'propylene glycol'``) replaces the protocol's; ``model`` is the model to
        transfer-learn from (e.g. an ethylene-glycol model for another polymer).

        Each child (``sampling``, ``label``, ``active_learning``, ``properties`` and the paper's round properties
        ``active_learning.properties``) is built from its protocol of the same name unless the protocol's
        ``children`` section names another one (with overrides); ``overrides`` are shaped like the inputs, and those
        under a child's namespace go to that child, e.g. ``{'active_learning': {'max_rounds': 3}}``.
        """
        name = protocol or cls.get_default_protocol()
        own, child = cls._split_overrides(overrides, 'sampling', 'label', 'active_learning', 'properties')
        children = cls._child_protocols(name, child)
        builder = cls._builder_from_protocol(name, own, {'code': code})
        nest_builder(builder.sampling, SamplingWorkChain.get_builder_from_protocol(code, *children['sampling']))
        label_protocol, label_overrides = children['label']
        dft = LabelWorkChain.get_protocol_inputs(label_protocol, label_overrides)['engine'] != 'xtb'
        nest_builder(builder.label, LabelWorkChain.get_builder_from_protocol(
            label_code, label_protocol, d3bj_code=d3bj_code if dft else None,
            charges_code=charges_code if dft else None, overrides=label_overrides), exclude=('clusters',))
        round_properties = children.pop('round_properties', None)
        active_protocol, active_overrides = children['active_learning']
        nest_builder(builder.active_learning, ActiveLearningWorkChain.get_builder_from_protocol(
            code, label_code, active_protocol, overrides=active_overrides),
            exclude=('clusters', 'code', 'label', 'candidates', 'model', 'options'))
        excluded = ('code', 'model', 'structures', 'options')
        properties_protocol, properties_overrides = children['properties']
        nest_builder(builder.properties, PropertiesWorkChain.get_builder_from_protocol(
            code, properties_protocol, overrides=properties_overrides), exclude=excluded)
        if round_properties is not None:
            round_protocol, round_overrides = round_properties
            nest_builder(builder.active_learning.properties, PropertiesWorkChain.get_builder_from_protocol(
                code, round_protocol, overrides=round_overrides), exclude=excluded)
        if polymer is not None:
            builder.polymer = orm.Dict(cls._polymer_definition(polymer).to_dict())
        if model is not None:
            builder.model = model
        return builder

    @staticmethod
    def _polymer_definition(polymer: Any):
        """A Polymer from a Polymer, its dict or a name of ``core.polymer.POLYMERS``; ValueError naming the name."""
        from aiida_qrnn.core.polymer import POLYMERS, Polymer

        if isinstance(polymer, Polymer):
            return polymer
        if isinstance(polymer, str):
            if polymer not in POLYMERS:
                raise ValueError(f'polymer {polymer!r} is not a built-in definition; known: {sorted(POLYMERS)} (or '
                                 'give a Polymer or its to_dict()).')
            return POLYMERS[polymer]
        return Polymer.from_dict(polymer)

    @classmethod
    def get_protocol_inputs(cls, protocol: str | None = None,
                            overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The protocol's values of this work chain's own ports (its ``children`` section is not an input)."""
        inputs = super().get_protocol_inputs(protocol, overrides)
        inputs.pop('children', None)
        return inputs

    @classmethod
    def _child_protocols(cls, name: str, overrides: Mapping[str, Mapping[str, Any]],
                         ) -> dict[str, tuple[str, dict[str, Any]]]:
        """``{child: (protocol, overrides)}``: the protocol's ``children`` section (default: a child's protocol of
        the same name) with the caller's ``overrides`` of that child merged in; ``round_properties`` only where the
        protocol names it (the caller's go under ``active_learning.properties``)."""
        named = load_protocol(name).get('children') or {}
        callers = {key: dict(value) for key, value in overrides.items()}
        if 'round_properties' in named:
            callers['round_properties'] = callers['active_learning'].pop('properties', None) or {}
        children = {}
        for child, caller in callers.items():
            section = named.get(child) or {}
            children[child] = (section.get('protocol', name),
                               recursive_merge(section.get('overrides') or {}, caller))
        return children

    def _submit(self, process, link_label: str, /, **inputs):
        metadata = {**inputs.pop('metadata', {}), 'call_link_label': link_label}
        return self.submit(process, **inputs, metadata=metadata)

    def _is_ethylene_glycol(self) -> bool:
        from aiida_qrnn.core.polymer import ETHYLENE_GLYCOL

        return 'polymer' not in self.inputs or polymer_of(self.inputs.polymer) == ETHYLENE_GLYCOL

    def sample(self):
        inputs = AttributeDict(self.exposed_inputs(SamplingWorkChain, 'sampling'))
        if 'polymer' in self.inputs:
            polymer = polymer_of(self.inputs.polymer)
            inputs.polymer = self.inputs.polymer
            start = (f'transfer learning from {self.inputs.model.__class__.__name__}<{self.inputs.model.pk}>'
                     if 'model' in self.inputs else 'a first model trained on its clusters')
            self.report(f'polymer {polymer.name} ({polymer.describe(1)}, elements {list(polymer.elements)}): '
                        f'{start}')
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
        if 'parameters' in inputs.get('md', {}) and 'polymer' in self.inputs:
            inputs.md = {**inputs.md, 'polymer': self.inputs.polymer}  # chain lengths of the candidate MD
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
        if self.inputs.baseline.value and not self._is_ethylene_glycol():
            self.report(f'baseline: the MD job\'s classical force field is OPLS-AA of ethylene glycol, not '
                        f'{polymer_of(self.inputs.polymer).name}: no classical property run (the GAFF2 sampling runs '
                        'are the classical record)')
        elif self.inputs.baseline.value:
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
        if missing and 'polymer' in self.inputs:
            self.report(f'{what}: the sampling relaxed no cell {", ".join(missing)}; these runs start from freshly '
                        f'packed cells of {polymer_of(self.inputs.polymer).name}, not from the classical ones')
            return {**inputs, 'structures': dict(build_cells(inputs['cells'], polymer=self.inputs.polymer))}
        if missing:
            self.report(f'{what}: the sampling relaxed no cell {", ".join(missing)}; these runs start from freshly '
                        'packed cells, not from the classical ones')
            return inputs
        return {**inputs, 'structures': structures}

    def results(self):
        if 'polymer' in self.inputs:
            temperature = self.inputs.properties.nvt.get_dict().get('temperature_K', 300.0)
            self.out('experimental', experimental_reference(self.inputs.polymer, orm.Float(temperature)))
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
