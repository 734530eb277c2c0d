"""``LabelWorkChain`` (``qrnn.label``): label a cluster set in batches, reusing labels the database already has."""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import ToContext, WorkChain, while_

from aiida_qrnn.calculations.functions.cluster_sets import (
    CHARGES,
    LABELS,
    assemble_labels,
    collect_labels,
    select_clusters,
)
from aiida_qrnn.calculations.psi4 import PROPERTIES, validate_closed_shell_clusters
from aiida_qrnn.calculations.psi4 import level_of_theory as dft_level_of_theory
from aiida_qrnn.calculations.psi4 import validate_label_parameters as validate_psi4_parameters
from aiida_qrnn.calculations.pyscf import validate_parameters as validate_pyscf_parameters
from aiida_qrnn.calculations.xtb import level_of_theory as xtb_level_of_theory
from aiida_qrnn.calculations.xtb import validate_clusters as validate_xtb_clusters
from aiida_qrnn.calculations.xtb import validate_parameters as validate_xtb_parameters
from aiida_qrnn.core.d3bj import split_dispersion
from aiida_qrnn.data.cluster_set import ClusterSetData, stored_cluster_rows
from aiida_qrnn.workchains.base import (
    Psi4BaseWorkChain,
    PyscfBaseWorkChain,
    XtbBaseWorkChain,
    sorted_failures,
)
from aiida_qrnn.workchains.protocols.utils import ProtocolMixin

__all__ = ('CHARGES_LEVEL_OF_THEORY', 'LabelWorkChain', 'batch_label', 'submitted_batch')

ENGINES = {'xtb': XtbBaseWorkChain, 'psi4': Psi4BaseWorkChain, 'pyscf': PyscfBaseWorkChain}
#: The validators the engine's calculation applies to its ``parameters`` and ``clusters``, applied at submission.
PARAMETER_VALIDATORS = {
    'xtb': validate_xtb_parameters, 'psi4': validate_psi4_parameters, 'pyscf': validate_pyscf_parameters,
}
CLUSTER_VALIDATORS = {
    'xtb': validate_xtb_clusters, 'psi4': validate_closed_shell_clusters, 'pyscf': validate_closed_shell_clusters,
}
XTB_LABELS = ['charges', 'dipole', 'energy', 'forces']
#: Level of theory of the ``charges`` label that ``charges_code`` adds to a DFT-labelled set.
CHARGES_LEVEL_OF_THEORY = xtb_level_of_theory({})
#: The two labelling tasks of a work chain (``LABELS``, ``CHARGES``) name the parts ``assemble_labels`` joins: the
#: engine's labels, and optionally GFN2-xTB charges.


def _positive(value: orm.Int, port) -> str | None:
    if value.value < 1:
        return f'{port.name}: must be a positive integer, got {value.value}.'
    return None


def _fraction(value: orm.Float, port) -> str | None:
    if not 0.0 <= value.value <= 1.0:
        return f'{port.name}: must be a fraction between 0 and 1, got {value.value}.'
    return None


def batch_label(task: str, indices: list[int]) -> str:
    """The label of the child that labels ``indices`` for ``task``: deterministic, so that it can be found again."""
    return f'qrnn.label {task} batch {indices[0]}+{len(indices)}'


def submitted_batch(parent: orm.WorkflowNode, label: str) -> orm.ProcessNode | None:
    """The child of ``parent`` labelled ``label`` that was submitted already and can run, or ``None``.

    A worker killed after submitting a batch and before the checkpoint replays the step from the checkpoint, which
    still has the batch in its queue; the child, stored with its CALL link when it was submitted, is found here
    instead of being submitted a second time. A child stored without a checkpoint (the worker died inside the
    submission, before the child's first checkpoint) can never be continued: it is ignored, and the batch is
    submitted again.
    """
    query = orm.QueryBuilder().append(orm.WorkflowNode, filters={'id': parent.pk}, tag='parent')
    query.append(orm.ProcessNode, with_incoming='parent', filters={'label': label}, project='*')
    found = [node for (node,) in query.all() if node.is_terminated or node.checkpoint is not None]
    return min(found, key=lambda node: node.pk) if found else None


class LabelWorkChain(ProtocolMixin, WorkChain):
    """Label every cluster of ``clusters`` with ``engine`` (xtb, psi4 or pyscf) at the level ``parameters`` give.

    1. Reuse: a cluster whose content id already carries labels at the same level of theory (and the same label
       names) in any ``ClusterSetData`` of the database is not recomputed.
    2. The rest is split into batches of ``batch_size``; each runs through the engine's restart work chain, at
       most ``max_concurrent`` at a time. With ``charges_code`` (DFT engines), every cluster is also labelled with
       GFN2-xTB in batches of its own, in the same queue, for the ``charges`` label.
    3. Free slots are refilled whenever the work chain wakes, which is when the oldest batch in flight finishes:
       AiiDA's ``WorkChain`` resumes a step only after *all* processes it awaits have terminated and has no public
       "wait for any", so a batch that finishes before the oldest one waits for it before its slot is refilled.
    4. All labelled parts are merged by a calcfunction into ``clusters``, in the input order; clusters that could
       not be labelled are the ``failed`` output with the reason for each. Past ``max_failed_fraction`` the work
       chain fails with ``ERROR_TOO_MANY_FAILED`` (outputs still attached), so a biased subset is never silently
       used.

    Protocols (engine, level of theory, batching): ``protocols/label.yaml``.
    """

    _protocol_kind = 'label'

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('clusters', valid_type=ClusterSetData, help='The clusters to label.')
        spec.input('engine', valid_type=orm.Str, validator=cls._validate_engine, help='xtb, psi4 or pyscf.')
        spec.input('code', valid_type=orm.AbstractCode, help='xtb, psi4, or aiida-qrnn-exec (pyscf).')
        spec.input('d3bj_code', valid_type=orm.AbstractCode, required=False, help='aiida-qrnn-exec for psi4 -d3bj.')
        spec.input(
            'charges_code', valid_type=orm.AbstractCode, required=False,
            help=(
                'xtb code: also label every cluster with GFN2-xTB and add its per-atom charges as the charges label '
                '(psi4 and pyscf engines; the output records charges_level_of_theory).'
            ),
        )
        spec.input('parameters', valid_type=orm.Dict, required=False, help='Parameters of the engine calculation.')
        spec.input('options', valid_type=orm.Dict, required=False, help='metadata.options of every job.')
        spec.input(
            'batch_size', valid_type=orm.Int, default=lambda: orm.Int(100), validator=_positive,
            help='Clusters per job (at least 1).',
        )
        spec.input(
            'max_concurrent', valid_type=orm.Int, default=lambda: orm.Int(4), validator=_positive,
            help='Jobs in flight at most (at least 1).',
        )
        spec.input('reuse', valid_type=orm.Bool, default=lambda: orm.Bool(True), help='Reuse labels in the database.')
        spec.input(
            'max_failed_fraction', valid_type=orm.Float, default=lambda: orm.Float(0.05), validator=_fraction,
            help='Fail with ERROR_TOO_MANY_FAILED when a larger fraction (0 to 1) of clusters cannot be labelled.',
        )
        spec.inputs.validator = cls._validate_inputs
        spec.outline(
            cls.setup,
            cls.reuse_labels,
            while_(cls.has_work)(cls.submit_batches),
            cls.results,
        )
        spec.output('clusters', valid_type=ClusterSetData, required=False, help='All labelled clusters.')
        spec.output('failed', valid_type=orm.List, required=False, help='{index, id, reason, message} per failure.')
        spec.exit_code(
            450, 'ERROR_TOO_MANY_FAILED',
            message='{n_failed} of {n_clusters} clusters could not be labelled ({fraction:.1%} > {limit:.1%}).',
        )

    @classmethod
    def get_builder_from_protocol(
        cls, code: orm.AbstractCode, protocol: str | None = None, *, clusters: ClusterSetData | None = None,
        d3bj_code: orm.AbstractCode | None = None, charges_code: orm.AbstractCode | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """A builder from ``protocols/label.yaml``: ``code`` runs the protocol's engine (xtb, psi4, or aiida-qrnn-exec
        for pyscf); ``d3bj_code`` and ``charges_code`` as the ports say; ``clusters`` may be given later."""
        return cls._builder_from_protocol(protocol, overrides, {
            'code': code, 'clusters': clusters, 'd3bj_code': d3bj_code, 'charges_code': charges_code})

    @staticmethod
    def _validate_engine(value: orm.Str, _) -> str | None:
        if value.value not in ENGINES:
            return f'engine: must be one of {sorted(ENGINES)}, got {value.value!r}.'
        return None

    @staticmethod
    def _validate_inputs(inputs: dict[str, Any], _) -> str | None:
        """What the children would refuse, refused at submission: the engine's own validators of ``parameters``
        and ``clusters``, and the codes the method needs."""
        engine = inputs.get('engine')
        if engine is None or engine.value not in ENGINES:
            return None  # the engine port names the problem
        engine = engine.value
        if 'charges_code' in inputs and engine == 'xtb':
            return 'charges_code: the xtb engine labels GFN2-xTB charges already; give charges_code only for DFT.'
        parameters = inputs.get('parameters')
        if parameters is None:
            if engine != 'xtb':
                return f'parameters: the {engine} engine needs parameters with at least method and basis.'
        else:
            message = PARAMETER_VALIDATORS[engine](parameters, None)
            if message:
                return message
            if engine == 'psi4' and split_dispersion(parameters['method'])[1] is not None and 'd3bj_code' not in inputs:
                return f'd3bj_code: method {parameters["method"]!r} needs d3bj_code (aiida-qrnn-exec).'
        if 'clusters' in inputs:
            message = CLUSTER_VALIDATORS[engine](inputs['clusters'], None)
            if message is None and 'charges_code' in inputs:
                message = validate_xtb_clusters(inputs['clusters'], None)
            return message
        return None

    def level_of_theory(self, task: str = LABELS) -> str:
        if task == CHARGES:
            return CHARGES_LEVEL_OF_THEORY
        parameters = self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {}
        if self.inputs.engine.value == 'xtb':
            return xtb_level_of_theory(parameters)
        return dft_level_of_theory(parameters)

    def label_names(self, task: str = LABELS) -> list[str]:
        if task == CHARGES or self.inputs.engine.value == 'xtb':
            return XTB_LABELS
        return sorted(self.inputs.parameters.get_dict().get('properties', PROPERTIES))

    def setup(self) -> None:
        arrays = self.inputs.clusters.get_arrays()
        self.ctx.ids = [str(cluster_id) for cluster_id in arrays.ids]
        self.ctx.tasks = [LABELS, CHARGES] if 'charges_code' in self.inputs else [LABELS]
        self.ctx.queue: list[list] = []  # [task, input indices] per batch
        self.ctx.running: dict[str, list] = {}  # child uuid -> [task, input indices]
        self.ctx.parts: dict[str, dict[str, ClusterSetData]] = {task: {} for task in self.ctx.tasks}
        self.ctx.failed: dict[str, list[dict[str, Any]]] = {task: [] for task in self.ctx.tasks}

    def reuse_labels(self) -> None:
        """Find labels of the same cluster ids at the same level of theory; queue the rest in batches."""
        size = self.inputs.batch_size.value
        for task in self.ctx.tasks:
            todo = self._reuse(task) if self.inputs.reuse.value else list(range(len(self.ctx.ids)))
            self.ctx.queue.extend([task, todo[start:start + size]] for start in range(0, len(todo), size))

    def _reuse(self, task: str) -> list[int]:
        """Collect the stored labels of ``task`` for the input ids; return the input indices still to label."""
        level = self.level_of_theory(task)
        wanted = {cluster_id: index for index, cluster_id in enumerate(self.ctx.ids)}
        query = orm.QueryBuilder().append(ClusterSetData, filters={'attributes.level_of_theory': level},
                                          project=['uuid', 'attributes.label_names'])
        selection, sources = {}, {}
        for uuid, label_names in query.iterall():
            if sorted(label_names or []) != self.label_names(task) or not wanted:
                continue
            stored = stored_cluster_rows(uuid)
            found = wanted.keys() & stored.keys()
            rows = sorted(stored[cluster_id] for cluster_id in found)
            for cluster_id in found:
                del wanted[cluster_id]
            if rows:
                name = f'source_{len(sources):03d}'
                selection[name], sources[name] = rows, orm.load_node(uuid)
        if sources:
            reused = collect_labels(selection=orm.Dict(selection), **sources)
            self.ctx.parts[task]['reused'] = reused
            self.report(f'reusing {reused.n_clusters} {task} label(s) already computed at {level}')
        return sorted(wanted.values())

    def has_work(self) -> bool:
        return bool(self.ctx.queue or self.ctx.running)

    def submit_batches(self):
        """Collect finished batches, fill the free slots from the queue, wait for the oldest batch in flight."""
        for uuid, (task, indices) in list(self.ctx.running.items()):
            child = orm.load_node(uuid)
            if child.is_terminated:
                self._collect(child, task, indices)
                del self.ctx.running[uuid]
        while self.ctx.queue and len(self.ctx.running) < self.inputs.max_concurrent.value:
            task, indices = self.ctx.queue.pop(0)
            label = batch_label(task, indices)
            child = submitted_batch(self.node, label)
            if child is not None:
                self.report(f'found {task} batch {label!r}, submitted before a restart, as {child.process_label}'
                            f'<{child.pk}>: not submitted again')
            else:
                engine = 'xtb' if task == CHARGES else self.inputs.engine.value
                child = self.submit(ENGINES[engine], **self._batch_inputs(task, indices), metadata={'label': label})
                self.report(f'submitted {task} batch of {len(indices)} cluster(s) as {child.process_label}<{child.pk}>')
            self.ctx.running[child.uuid] = [task, indices]
        if self.ctx.running:
            oldest = next(iter(self.ctx.running))
            return ToContext(oldest_batch=orm.load_node(oldest))
        return None

    def _batch_inputs(self, task: str, indices: list[int]) -> dict[str, Any]:
        clusters = self.inputs.clusters
        if len(indices) != clusters.n_clusters:
            clusters = select_clusters(clusters, orm.List(indices))
        if task == CHARGES:
            engine, inputs = 'xtb', {'code': self.inputs.charges_code, 'clusters': clusters}
        else:
            engine, inputs = self.inputs.engine.value, {'code': self.inputs.code, 'clusters': clusters}
            if 'parameters' in self.inputs:
                inputs['parameters'] = self.inputs.parameters
            if 'd3bj_code' in self.inputs and engine == 'psi4':
                inputs['d3bj_code'] = self.inputs.d3bj_code
        if 'options' in self.inputs:
            inputs['metadata'] = {'options': self.inputs.options.get_dict()}
        return {engine: inputs}

    def _collect(self, child, task: str, indices: list[int]) -> None:
        if 'clusters' in child.outputs:
            self.ctx.parts[task][f'batch_{indices[0]:09d}'] = child.outputs.clusters
        failures = child.outputs.failed_clusters.get_list() if 'failed_clusters' in child.outputs else []
        if not child.is_finished or ('clusters' not in child.outputs and not failures):
            failures = [{'index': i, 'reason': 'job_failed', 'message': f'{child.process_label}<{child.pk}> '
                         f'ended with {child.exit_status}: {child.exit_message}'} for i in range(len(indices))]
        for failure in failures:
            index = indices[failure['index']]
            self.ctx.failed[task].append({**failure, 'index': index, 'id': self.ctx.ids[index]})

    def _all_failures(self) -> list[dict[str, Any]]:
        """Failures of the engine's labels, then those of the charges for clusters whose labels did not fail."""
        failed = list(self.ctx.failed[LABELS])
        if CHARGES in self.ctx.failed:
            seen = {failure['index'] for failure in failed}
            failed += [
                {**failure, 'message': f'GFN2-xTB charges: {failure["message"]}'}
                for failure in self.ctx.failed[CHARGES] if failure['index'] not in seen
            ]
        return failed

    def results(self):
        n_clusters = len(self.ctx.ids)
        failed = self._all_failures()
        if len(failed) < n_clusters:
            self.out('clusters', self._merged())
        if not failed:
            return None
        self.out('failed', sorted_failures(orm.List(failed)))
        fraction = len(failed) / n_clusters
        limit = self.inputs.max_failed_fraction.value
        self.report(f'{len(failed)} of {n_clusters} clusters could not be labelled')
        if fraction > limit:
            return self.exit_codes.ERROR_TOO_MANY_FAILED.format(
                n_failed=len(failed), n_clusters=n_clusters, fraction=fraction, limit=limit
            )
        return None

    def _merged(self) -> ClusterSetData:
        """The labelled set in input order: one part already in that order is returned as it is, else merged."""
        parts = {f'{task}_{name}': part for task in self.ctx.tasks for name, part in self.ctx.parts[task].items()}
        if len(parts) == 1:
            (part,) = parts.values()
            with part.open_cluster_set() as stored:
                in_order = [str(cluster_id) for cluster_id in stored.ids] == self.ctx.ids
            if in_order:
                return part
        return assemble_labels(clusters=self.inputs.clusters, **parts)
