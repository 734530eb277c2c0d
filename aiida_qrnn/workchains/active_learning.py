"""``ActiveLearningWorkChain`` (``qrnn.active_learning``): the paper's rounds of committee selection and relabelling.

One round (paper, "Active learning" and "Model revisions"):

1. a committee of ``committee_size`` models is trained on the current data (``TrainWorkChain``, 60/40 splits);
2. candidates are gathered: the static ``candidates`` pools and, with ``md`` inputs, clusters cut from the last
   frames of MD runs of the current model (stopped early by the committee-disagreement monitor when
   ``md.monitor`` is given; a run that turns unstable gives its frames too, not a failure); clusters already in
   the training data are dropped (``candidate_pool``);
3. the committee scores them (``ScoreWorkChain``: ρ^f, eq. 2, and the largest per-atom force deviation);
4. the stopping rule is checked (a quantile of the scores below a threshold ends the loop before labelling);
5. ``select_for_labelling`` picks the top-K + random-K (or the trust-level window), seeded by ``selection.seed``
   plus the round, so every selection is reproducible and cached;
6. ``LabelWorkChain`` labels them (stored labels of the same clusters at the same level are reused);
7. ``merge_cluster_sets`` appends them to the data, and the next model is transfer-learned from the current one.

Each step is a process in the graph; the round's nodes are also outputs under ``rounds.round_NN``. The state
lives in the work chain's checkpoints, so the loop survives a daemon restart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_

from aiida_qrnn.calculations.functions.cluster_sets import candidate_pool, merge_cluster_sets
from aiida_qrnn.calculations.md import MdCalculation
from aiida_qrnn.calculations.sampling import extract_clusters, validate_cluster_parameters, validate_polymer
from aiida_qrnn.calculations.selection import select_for_labelling, validate_selection_parameters
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.workchains.label import LabelWorkChain
from aiida_qrnn.workchains.properties import PropertiesWorkChain
from aiida_qrnn.workchains.protocols.utils import ProtocolMixin, nest_builder, recursive_merge
from aiida_qrnn.workchains.score import ScoreWorkChain
from aiida_qrnn.workchains.train import TrainWorkChain

__all__ = ('ActiveLearningWorkChain', 'property_change', 'stop_rule_met', 'summarize_rounds')

STOP_RULE_KEYS = {'quantity', 'quantile', 'threshold'}
PROPERTY_STOP_KEYS = {'property', 'relative_change'}
MONITOR_KEYS = {'threshold', 'quantity', 'interval_steps', 'poll_interval_s'}


@calcfunction
def summarize_rounds(summary: orm.Dict) -> orm.Dict:
    """The loop's record (per round: data size, candidates, scores, selection, model metrics; why it stopped)."""
    return orm.Dict(summary.get_dict())


def stop_rule_met(scores: dict[str, np.ndarray], rule: dict[str, Any]) -> tuple[bool, float]:
    """Whether the ``quantile`` of the ``quantity`` scores is below ``threshold``, and that quantile."""
    value = float(np.quantile(scores[rule.get('quantity', 'rho_f')], rule.get('quantile', 0.99)))
    return value < float(rule['threshold']), value


def property_change(previous: dict[str, dict], current: dict[str, dict], name: str) -> float:
    """The largest relative change of property ``name`` over the chain lengths both rounds computed."""
    lengths = sorted(set(previous) & set(current))
    if not lengths:
        raise ValueError('the two rounds computed properties of no common chain length.')
    return max(abs(current[length][name]['value'] - previous[length][name]['value'])
               / abs(previous[length][name]['value']) for length in lengths)


def validate_property_stop(value: orm.Dict, _) -> str | None:
    rule = value.get_dict()
    unknown = sorted(set(rule) - PROPERTY_STOP_KEYS)
    if unknown or set(rule) != PROPERTY_STOP_KEYS:
        return f'property_stop: give exactly {sorted(PROPERTY_STOP_KEYS)}, got {sorted(rule)}.'
    from aiida_qrnn.core.analysis.properties import SCALAR_UNITS

    if rule['property'] not in SCALAR_UNITS:
        return f"property_stop.property must be one of {sorted(SCALAR_UNITS)}, got {rule['property']!r}."
    return None


def validate_stop_rule(value: orm.Dict, _) -> str | None:
    rule = value.get_dict()
    unknown = sorted(set(rule) - STOP_RULE_KEYS)
    if unknown:
        return f'stop_rule: unknown keys {unknown}; known: {sorted(STOP_RULE_KEYS)}.'
    if 'threshold' not in rule:
        return 'stop_rule: give a threshold (and optionally quantity rho_f or max_force_deviation, quantile).'
    if rule.get('quantity', 'rho_f') not in ('rho_f', 'max_force_deviation'):
        return f"stop_rule.quantity must be rho_f or max_force_deviation, got {rule['quantity']!r}."
    if not 0 < rule.get('quantile', 0.99) <= 1:
        return f"stop_rule.quantile must be in (0, 1], got {rule['quantile']!r}."
    return None


def validate_selection(value: orm.Dict, _) -> str | None:
    return validate_selection_parameters(value.get_dict())


def validate_monitor(value: orm.Dict, _) -> str | None:
    unknown = sorted(set(value.get_dict()) - MONITOR_KEYS)
    if unknown:
        return f'md.monitor: unknown keys {unknown}; known: {sorted(MONITOR_KEYS)}.'
    if 'threshold' not in value.get_dict():
        return 'md.monitor: give the committee-disagreement threshold (eV/Å for max_force_deviation).'
    return None


def validate_training(value: orm.Dict, _) -> str | None:
    unknown = sorted(set(value.get_dict()) - {'model', 'training'})
    if unknown:
        return f'training: unknown keys {unknown}; give model (QRNNConfig) and training (TrainingConfig).'
    return None


class ActiveLearningWorkChain(ProtocolMixin, WorkChain):
    """Rounds of committee → candidates → scores → selection → labels → merged data → transfer-learned model."""

    _protocol_kind = 'active_learning'

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('clusters', valid_type=ClusterSetData, help='The labelled training data to start from.')
        spec.input('model', valid_type=ModelData, required=False,
                   help='The current model; absent: a first model is trained on clusters.')
        spec.input('code', valid_type=orm.AbstractCode, help='aiida-qrnn-exec: the training, scoring and MD jobs.')
        spec.input('training', valid_type=orm.Dict, validator=validate_training,
                   help='TrainCalculation parameters {model, training} of a model trained from scratch.')
        spec.input('transfer', valid_type=orm.Dict, default=lambda: orm.Dict({}),
                   help='training settings that replace those of `training` when a model is transfer-learned.')
        spec.input('committee_size', valid_type=orm.Int, default=lambda: orm.Int(5),
                   validator=lambda value, _: None if value.value >= 2 else 'committee_size must be at least 2.')
        spec.input('committee_transfer', valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help='Start committee members from the current model (cheaper, less diverse) instead of scratch.')
        spec.input_namespace('candidates', valid_type=ClusterSetData, dynamic=True, required=False,
                             help='Static candidate pools (e.g. conformational clusters), scored every round.')
        spec.input_namespace('md', required=False, help='Candidates cut from MD of the current model.')
        spec.input_namespace('md.structures', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='Periodic cells to run the current model on, one MD job each.')
        spec.input('md.parameters', valid_type=orm.Dict, required=False, help='MDSettings of those runs.')
        spec.input('md.clusters', valid_type=orm.Dict, required=False, validator=validate_cluster_parameters,
                   help='extract_clusters parameters (e.g. last_frames, max_molecules_by_units).')
        spec.input('md.polymer', valid_type=orm.Dict, required=False, validator=validate_polymer,
                   help='Polymer definition (Polymer.to_dict) of those cells, to read chain lengths; absent: EG.')
        spec.input('md.monitor', valid_type=orm.Dict, required=False, validator=validate_monitor,
                   help='Stop a run when the committee disagrees: threshold, quantity, interval_steps.')
        spec.input('selection', valid_type=orm.Dict, validator=validate_selection,
                   help='select_for_labelling parameters; the seed is shifted by the round.')
        spec.expose_inputs(LabelWorkChain, namespace='label', exclude=('clusters',),
                           namespace_options={'help': 'How the selected clusters are labelled.'})
        spec.input('score_parameters', valid_type=orm.Dict, required=False,
                   help='ScoreCalculation parameters (max_batch_atoms, dtype, device).')
        spec.input('shard_size', valid_type=orm.Int, default=lambda: orm.Int(100_000), help='Candidates per job.')
        spec.input('max_rounds', valid_type=orm.Int, default=lambda: orm.Int(2),
                   validator=lambda value, _: None if value.value >= 1 else 'max_rounds must be at least 1.')
        spec.input('stop_rule', valid_type=orm.Dict, required=False, validator=validate_stop_rule,
                   help='{quantity: rho_f, quantile: 0.99, threshold}: stop when the candidates score below it.')
        spec.expose_inputs(PropertiesWorkChain, namespace='properties', exclude=('code', 'model', 'options'),
                           namespace_options={'required': False, 'populate_defaults': False,
                                              'help': 'Compute these properties with every round\'s model.'})
        spec.input('property_stop', valid_type=orm.Dict, required=False, validator=validate_property_stop,
                   help='{property: density, relative_change: 0.01}: stop when a round changes it less (needs '
                        'properties).')
        spec.input('device', valid_type=orm.Str, default=lambda: orm.Str('cpu'),
                   help='Torch device of the training, scoring and MD jobs (cuda: request the GPU in options, e.g. '
                        'aiida_qrnn.computers.scheduler_options(computer, gpus=1)).')
        spec.input('options', valid_type=dict, non_db=True, default=dict,
                   help='metadata.options of the training, scoring and MD jobs.')
        spec.inputs.validator = cls._validate_inputs
        spec.outline(
            cls.setup,
            if_(cls.needs_first_model)(
                cls.train_first_model,
                cls.inspect_first_model,
            ),
            if_(cls.has_properties)(
                cls.run_properties,
                cls.inspect_properties,
            ),
            while_(cls.should_run_round)(
                cls.train_committee,
                cls.inspect_committee,
                if_(cls.has_md)(
                    cls.run_md,
                    cls.inspect_md,
                ),
                cls.score_candidates,
                cls.select,
                if_(cls.not_converged)(
                    cls.label_selection,
                    cls.train_next_model,
                    cls.inspect_round,
                    if_(cls.has_properties)(
                        cls.run_properties,
                        cls.inspect_properties,
                    ),
                ),
            ),
            cls.results,
        )
        spec.output('model', valid_type=ModelData, help='The last model.')
        spec.output('clusters', valid_type=ClusterSetData, help='The training data of the last model.')
        spec.output_namespace('rounds', dynamic=True,
                              help='round_NN: committee models, scores, selected, labelled, clusters, model.')
        spec.output('summary', valid_type=orm.Dict, help='Per round: data size, scores, selection, why it stopped.')
        spec.exit_code(401, 'ERROR_TRAINING_FAILED', message='{what}: {label}<{pk}> failed: {message}')
        spec.exit_code(402, 'ERROR_MD_FAILED', message='Candidate MD of {label} failed: {message}')
        spec.exit_code(403, 'ERROR_SCORING_FAILED', message='Scoring failed: {message}')
        spec.exit_code(404, 'ERROR_LABELLING_FAILED', message='Labelling the selection failed: {message}')
        spec.exit_code(405, 'ERROR_NO_CANDIDATES', message='Round {round}: no candidates left: {message}')
        spec.exit_code(406, 'ERROR_NO_CANDIDATE_SOURCE',
                       message='Give candidate pools (candidates) or cells to run the current model on '
                               '(md.structures with md.parameters).')

    @classmethod
    def get_builder_from_protocol(
        cls, code: orm.AbstractCode, label_code: orm.AbstractCode, protocol: str | None = None, *,
        clusters: ClusterSetData | None = None, d3bj_code: orm.AbstractCode | None = None,
        charges_code: orm.AbstractCode | None = None, overrides: dict[str, Any] | None = None,
    ):
        """A builder from ``protocols/active_learning.yaml`` composed with the protocols of the same name of its
        children: ``training`` starts from ``TrainWorkChain``'s ``train.parameters`` and ``label`` is
        ``LabelWorkChain``'s builder for ``label_code`` (overrides under ``label`` go to it). ``code`` is
        aiida-qrnn-exec; ``clusters``, ``candidates``, ``md.structures`` and ``model`` may be given later.
        """
        name = protocol or cls.get_default_protocol()
        own, children = cls._split_overrides(overrides, 'label')
        training = TrainWorkChain.get_protocol_inputs(name)['train']['parameters']
        own = recursive_merge({'training': training}, own)
        label = LabelWorkChain.get_builder_from_protocol(label_code, name, d3bj_code=d3bj_code,
                                                         charges_code=charges_code, overrides=children['label'])
        builder = cls._builder_from_protocol(name, own, {'code': code, 'clusters': clusters})
        nest_builder(builder.label, label, exclude=('clusters',))
        return builder

    @staticmethod
    def _validate_inputs(inputs: dict[str, Any], _) -> str | None:
        if 'property_stop' in inputs and not inputs.get('properties'):
            return 'property_stop needs properties (the cells and MD settings to compute them with).'
        md = inputs.get('md', {})
        if md.get('structures') and 'parameters' not in md:
            return 'md.parameters: the MD settings of the candidate runs are required with md.structures.'
        return None

    def setup(self):
        # Checked here, not by the input validator: a wrapping work chain exposes these inputs without the candidates
        # it supplies itself, and a namespace validator travels with the exposed namespace.
        if not self.inputs.get('candidates') and not self.has_md():
            return self.exit_codes.ERROR_NO_CANDIDATE_SOURCE
        self.ctx.round = 0
        self.ctx.data = self.inputs.clusters
        self.ctx.converged = False
        self.ctx.summary = {'rounds': [], 'stopped': None}
        if 'model' in self.inputs:
            self.ctx.model = self.inputs.model
        return None

    def needs_first_model(self) -> bool:
        return 'model' not in self.inputs

    def _train_inputs(self, committee_size: int, parent: ModelData | None, transfer: bool, seed: int) -> dict:
        parameters = self.inputs.training.get_dict()
        training = {**parameters.get('training', {}), **(self.inputs.transfer.get_dict() if transfer else {})}
        training['seed'] = int(training.get('seed', 0)) + seed
        train = {'code': self.inputs.code, 'datasets': {'clusters': self.ctx.data}, 'device': self.inputs.device,
                 'parameters': orm.Dict({**parameters, 'training': training}),
                 'metadata': {'options': dict(self.inputs.options)}}
        if parent is not None:
            train['parent_model'] = parent
        return {'train': train, 'committee_size': orm.Int(committee_size)}

    def train_first_model(self):
        node = self.submit(TrainWorkChain, **self._train_inputs(1, None, False, 0),
                           metadata={'call_link_label': 'model_round_00'})
        self.report(f'training the first model on {self.ctx.data.n_clusters} clusters: {node.process_label}<{node.pk}>')
        return ToContext(next_model=node)

    def _failed(self, node, what: str):
        return self.exit_codes.ERROR_TRAINING_FAILED.format(what=what, label=node.process_label, pk=node.pk,
                                                            message=node.exit_message)

    def inspect_first_model(self):
        node = self.ctx.next_model
        if not node.is_finished_ok:
            return self._failed(node, 'first model')
        self.ctx.model = node.outputs.model
        return None

    def should_run_round(self) -> bool:
        return not self.ctx.converged and self.ctx.round < self.inputs.max_rounds.value

    @property
    def _prefix(self) -> str:
        return f'round_{self.ctx.round:02d}'

    def train_committee(self):
        self.ctx.round += 1
        self.ctx.record = {'round': self.ctx.round, 'data_clusters': self.ctx.data.n_clusters}
        transfer = self.inputs.committee_transfer.value
        inputs = self._train_inputs(self.inputs.committee_size.value, self.ctx.model if transfer else None, transfer,
                                    1000 * self.ctx.round)
        node = self.submit(TrainWorkChain, **inputs, metadata={'call_link_label': f'committee_{self._prefix}'})
        self.report(f'round {self.ctx.round}: committee of {self.inputs.committee_size.value} on '
                    f'{self.ctx.data.n_clusters} clusters: {node.process_label}<{node.pk}>')
        return ToContext(committee=node)

    def inspect_committee(self):
        node = self.ctx.committee
        if not node.is_finished_ok:
            return self._failed(node, f'round {self.ctx.round} committee')
        self.ctx.committee_models = dict(node.outputs.models)
        for name, model in self.ctx.committee_models.items():
            self.out(f'rounds.{self._prefix}.committee.{name}', model)
        return None

    def has_md(self) -> bool:
        return bool(self.inputs.get('md', {}).get('structures'))

    def run_md(self):
        """One MdCalculation of the current model per cell, with the committee monitor when asked for.

        Not wrapped in the restart work chain: a run that becomes unstable, or that the monitor stops, is exactly
        where the model needs data, so its frames become candidates instead of being retried.
        """
        md_inputs = self.inputs.md
        settings = md_inputs.parameters.get_dict()
        extra = {}
        if 'monitor' in md_inputs:
            monitor = md_inputs.monitor.get_dict()
            settings['committee_interval'] = int(monitor.get('interval_steps', settings.get('log_interval', 10)))
            kwargs = {'threshold': float(monitor['threshold']),
                      'quantity': monitor.get('quantity', 'max_force_deviation')}
            if kwargs['quantity'] == 'max_force_deviation':
                # The job stops itself at the first evaluation past the threshold, so where it stops does not depend
                # on when the monitor happens to poll (the candidates, and all that follows, are reproducible); the
                # monitor applies the same rule from outside, and is the one that acts for rho_f.
                settings['committee_max_force_deviation'] = kwargs['threshold']
            extra['committee'] = self.ctx.committee_models
            extra['monitors'] = {'committee': orm.Dict({
                'entry_point': 'qrnn.committee_disagreement', 'kwargs': kwargs,
                'minimum_poll_interval': int(monitor.get('poll_interval_s', 5))})}
        submitted = {}
        for label, structure in sorted(md_inputs.structures.items()):
            submitted[f'md_{label}'] = self.submit(
                MdCalculation, code=self.inputs.code, structure=structure, model=self.ctx.model,
                parameters=orm.Dict(settings), seed=orm.Int(self.ctx.round), device=self.inputs.device, **extra,
                metadata={'options': dict(self.inputs.options), 'call_link_label': f'md_{self._prefix}_{label}'})
        return ToContext(**submitted)

    def inspect_md(self):
        """Cut candidates from every trajectory, whether the run finished, became unstable or was stopped."""
        trajectories, endings = {}, {}
        for label in sorted(self.inputs.md.structures):
            node = self.ctx[f'md_{label}']
            if 'trajectory' not in node.outputs:
                message = f'{node.process_label}<{node.pk}> left no trajectory: [{node.exit_status}] ' \
                          f'{node.exit_message}'
                return self.exit_codes.ERROR_MD_FAILED.format(label=label, message=message)
            trajectories[label] = node.outputs.trajectory
            results = node.outputs.output_parameters.get_dict() if 'output_parameters' in node.outputs else {}
            endings[label] = f"{results.get('status', node.exit_status)} at step {results.get('step')}"
        self.report(f'round {self.ctx.round}: candidate MD ended: {endings}')
        self.ctx.record['md_endings'] = endings
        parameters = self.inputs.md.clusters if 'clusters' in self.inputs.md else orm.Dict({'last_frames': 5})
        polymer = {'polymer': self.inputs.md.polymer} if 'polymer' in self.inputs.md else {}
        self.ctx.md_candidates = extract_clusters(parameters, **polymer, **trajectories)
        return None

    def score_candidates(self):
        sources = dict(self.inputs.get('candidates', {}))
        if self.has_md():
            sources['md'] = self.ctx.md_candidates
        known_ids = {str(cluster_id) for cluster_id in self.ctx.data.get_arrays().ids}
        if all(str(cluster_id) in known_ids for source in sources.values() for cluster_id in source.get_arrays().ids):
            return self.exit_codes.ERROR_NO_CANDIDATES.format(
                round=self.ctx.round, message='every candidate is already in the training data')
        self.ctx.pool = candidate_pool(self.ctx.data, **sources)
        score = {'code': self.inputs.code, 'models': self.ctx.committee_models,
                 'metadata': {'options': dict(self.inputs.options)}}
        parameters = self.inputs.score_parameters.get_dict() if 'score_parameters' in self.inputs else {}
        score['parameters'] = orm.Dict({'device': self.inputs.device.value, **parameters})
        node = self.submit(ScoreWorkChain, clusters=self.ctx.pool, score=score, shard_size=self.inputs.shard_size,
                           metadata={'call_link_label': f'score_{self._prefix}'})
        return ToContext(scoring=node)

    def select(self):
        """Check the stopping rule, then select with the round's seed; capped to the pool's size."""
        node = self.ctx.scoring
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_SCORING_FAILED.format(message=f'{node.process_label}<{node.pk}>: '
                                                                       f'{node.exit_message}')
        scores = node.outputs.scores
        self.out(f'rounds.{self._prefix}.scores', scores)
        values = {name: scores.get_array(name) for name in ('rho_f', 'max_force_deviation')}
        self.ctx.record.update(candidates=len(values['rho_f']),
                               rho_f_median=float(np.median(values['rho_f'])),
                               rho_f_max=float(np.max(values['rho_f'])))
        if 'stop_rule' in self.inputs:
            met, value = stop_rule_met(values, self.inputs.stop_rule.get_dict())
            self.ctx.record['stop_rule_value'] = value
            if met:
                self.ctx.converged = True
                self.ctx.summary['stopped'] = f'round {self.ctx.round}: stop rule met ({value:.4g})'
                self.report(f'round {self.ctx.round}: the candidates\' score quantile {value:.4g} is below the '
                            'threshold: the current model is final')
                self.ctx.summary['rounds'].append(self.ctx.record)
                return None
        parameters = self.inputs.selection.get_dict()
        parameters['seed'] = int(parameters.get('seed', 0)) + self.ctx.round
        n_candidates = len(values['rho_f'])
        if parameters['rule'] == 'top_k_random':
            k = min(int(parameters['k']), n_candidates)
            parameters.update(k=k, k_random=min(int(parameters['k_random']), n_candidates - k))
        else:
            deviation = values['max_force_deviation']
            inside = int(np.count_nonzero((deviation >= parameters['lower']) & (deviation < parameters['upper'])))
            if inside == 0:
                self.ctx.converged = True
                self.ctx.summary['stopped'] = f'round {self.ctx.round}: no candidate inside the trust levels'
                self.report(self.ctx.summary['stopped'])
                self.ctx.summary['rounds'].append(self.ctx.record)
                return None
        selected = select_for_labelling(self.ctx.pool, scores, orm.Dict(parameters))
        self.ctx.selected = selected['clusters']
        self.ctx.record['selected'] = self.ctx.selected.n_clusters
        self.out(f'rounds.{self._prefix}.selected', self.ctx.selected)
        self.report(f'round {self.ctx.round}: selected {self.ctx.selected.n_clusters} of {n_candidates} candidates '
                    f'(median ρ^f {self.ctx.record["rho_f_median"]:.3g})')
        return None

    def not_converged(self) -> bool:
        return not self.ctx.converged

    def label_selection(self):
        inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, 'label'))
        inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': f'label_{self._prefix}'}
        node = self.submit(LabelWorkChain, clusters=self.ctx.selected, **inputs)
        return ToContext(labelling=node)

    def train_next_model(self):
        node = self.ctx.labelling
        if not node.is_finished_ok or 'clusters' not in node.outputs:
            return self.exit_codes.ERROR_LABELLING_FAILED.format(message=f'{node.process_label}<{node.pk}>: '
                                                                         f'{node.exit_message}')
        labelled = node.outputs.clusters
        self.out(f'rounds.{self._prefix}.labelled', labelled)
        self.ctx.data = merge_cluster_sets(**{f'{self._prefix}_0_data': self.ctx.data,
                                              f'{self._prefix}_1_labelled': labelled})
        self.out(f'rounds.{self._prefix}.clusters', self.ctx.data)
        self.ctx.record['labelled'] = labelled.n_clusters
        node = self.submit(TrainWorkChain, **self._train_inputs(1, self.ctx.model, True, self.ctx.round),
                           metadata={'call_link_label': f'model_{self._prefix}'})
        self.report(f'round {self.ctx.round}: transfer learning on {self.ctx.data.n_clusters} clusters: '
                    f'{node.process_label}<{node.pk}>')
        return ToContext(next_model=node)

    def inspect_round(self):
        node = self.ctx.next_model
        if not node.is_finished_ok:
            return self._failed(node, f'round {self.ctx.round} model')
        self.ctx.model = node.outputs.model
        self.out(f'rounds.{self._prefix}.model', self.ctx.model)
        metrics = self.ctx.model.metrics or {}
        self.ctx.record.update({key: float(value) for key, value in metrics.items()
                                if key in ('energy_per_atom_mae', 'forces_mae')})
        self.ctx.summary['rounds'].append(self.ctx.record)
        return None

    def has_properties(self) -> bool:
        return bool(self.inputs.get('properties'))

    def run_properties(self):
        """The property protocol with the model this round made (round 0: the first model)."""
        inputs = AttributeDict(self.exposed_inputs(PropertiesWorkChain, 'properties'))
        inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': f'properties_{self._prefix}'}
        node = self.submit(PropertiesWorkChain, code=self.inputs.code, model=self.ctx.model,
                           options=dict(self.inputs.options), **inputs)
        return ToContext(round_properties=node)

    def inspect_properties(self):
        """Keep the round's properties; with ``property_stop``, stop when they barely changed since the last round."""
        node = self.ctx.round_properties
        if not node.is_finished_ok:
            # A model that cannot yet run the property MD is a finding of the loop, not its end: it is recorded,
            # the next round goes on, and the property rule compares the next two rounds that have properties.
            message = f'{node.process_label}<{node.pk}> failed: {node.exit_message}'
            self.report(f'round {self.ctx.round}: properties of the model: {message}')
            if self.ctx.summary['rounds']:
                self.ctx.summary['rounds'][-1]['properties'] = message
            self.ctx.previous_properties = None
            return None
        current = {length: values.get_dict() for length, values in node.outputs.properties.items()}
        for length, values in node.outputs.properties.items():
            self.out(f'rounds.{self._prefix}.properties.{length}', values)
        previous = self.ctx.get('previous_properties')
        self.ctx.previous_properties = current
        if previous is None or 'property_stop' not in self.inputs:
            return None
        rule = self.inputs.property_stop.get_dict()
        change = property_change(previous, current, rule['property'])
        record = self.ctx.summary['rounds'][-1]
        record[f'{rule["property"]}_relative_change'] = change
        if change < float(rule['relative_change']):
            self.ctx.converged = True
            self.ctx.summary['stopped'] = (f'round {self.ctx.round}: {rule["property"]} changed by {change:.3g} '
                                           f'(< {rule["relative_change"]})')
            self.report(self.ctx.summary['stopped'])
        return None

    def results(self) -> None:
        if self.ctx.summary['stopped'] is None:
            self.ctx.summary['stopped'] = f'after {self.ctx.round} round(s) (max_rounds)'
        self.out('model', self.ctx.model)
        self.out('clusters', self.ctx.data)
        self.out('summary', summarize_rounds(orm.Dict(self.ctx.summary)))
