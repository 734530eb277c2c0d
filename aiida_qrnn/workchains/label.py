"""``LabelWorkChain`` (``qrnn.label``): label a cluster set in batches, reusing labels the database already has."""

from __future__ import annotations

from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, while_

from aiida_qrnn.calculations.merge import merge_cluster_sets
from aiida_qrnn.calculations.psi4 import PROPERTIES
from aiida_qrnn.calculations.psi4 import level_of_theory as dft_level_of_theory
from aiida_qrnn.calculations.xtb import level_of_theory as xtb_level_of_theory
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.workchains.base import (
    Psi4BaseWorkChain,
    PyscfBaseWorkChain,
    XtbBaseWorkChain,
    select_clusters,
    sorted_failures,
)

__all__ = ('LabelWorkChain', 'collect_labels')

ENGINES = {'xtb': XtbBaseWorkChain, 'psi4': Psi4BaseWorkChain, 'pyscf': PyscfBaseWorkChain}
XTB_LABELS = ['charges', 'dipole', 'energy', 'forces']


@calcfunction
def collect_labels(selection: orm.Dict, **sources: ClusterSetData) -> ClusterSetData:
    """Labelled clusters taken from earlier label sets: ``selection`` maps a source name to its row indices."""
    parts = [
        sources[name].get_arrays().select(rows)
        for name, rows in sorted(selection.get_dict().items())
    ]
    merged = parts[0]
    for part in parts[1:]:
        merged = _concatenate(merged, part)
    return ClusterSetData.from_arrays(merged, level_of_theory=sources[sorted(sources)[0]].level_of_theory)


def _concatenate(first, second):
    from aiida_qrnn.core.dataset import ClusterArrays

    return ClusterArrays(
        numbers=np.concatenate([first.numbers, second.numbers]),
        positions=np.concatenate([first.positions, second.positions]),
        offsets=np.concatenate([first.offsets, first.offsets[-1] + second.offsets[1:]]),
        molecule=np.concatenate([first.molecule, second.molecule]),
        total_charge=np.concatenate([first.total_charge, second.total_charge]),
        cell=np.concatenate([first.cell, second.cell]), pbc=np.concatenate([first.pbc, second.pbc]),
        kind=[*first.kind, *second.kind], source=[*first.source, *second.source],
        labels={name: np.concatenate([first.labels[name], second.labels[name]]) for name in first.labels},
    ).validate()


class LabelWorkChain(WorkChain):
    """Label every cluster of ``clusters`` with ``engine`` (xtb, psi4 or pyscf) at the level ``parameters`` give.

    1. Reuse: a cluster whose content id already carries labels at the same level of theory (and the same label
       names) in any ``ClusterSetData`` of the database is not recomputed.
    2. The rest is split into batches of ``batch_size``; each runs through the engine's restart work chain, at
       most ``max_concurrent`` at a time. When the oldest batch in flight finishes, every finished slot is
       refilled (a job that finishes earlier than the oldest waits for it before its slot is refilled).
    3. All labelled parts are merged by a calcfunction into ``clusters``; clusters that could not be labelled are
       the ``failed`` output with the reason for each. Past ``max_failed_fraction`` the work chain fails with
       ``ERROR_TOO_MANY_FAILED`` (outputs still attached), so a biased subset is never silently used.
    """

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('clusters', valid_type=ClusterSetData, help='The clusters to label.')
        spec.input('engine', valid_type=orm.Str, validator=cls._validate_engine, help='xtb, psi4 or pyscf.')
        spec.input('code', valid_type=orm.AbstractCode, help='xtb, psi4, or aiida-qrnn-exec (pyscf).')
        spec.input('d3bj_code', valid_type=orm.AbstractCode, required=False, help='aiida-qrnn-exec for psi4 -d3bj.')
        spec.input('parameters', valid_type=orm.Dict, required=False, help='Parameters of the engine calculation.')
        spec.input('options', valid_type=orm.Dict, required=False, help='metadata.options of every job.')
        spec.input('batch_size', valid_type=orm.Int, default=lambda: orm.Int(100), help='Clusters per job.')
        spec.input('max_concurrent', valid_type=orm.Int, default=lambda: orm.Int(4), help='Jobs in flight at most.')
        spec.input('reuse', valid_type=orm.Bool, default=lambda: orm.Bool(True), help='Reuse labels in the database.')
        spec.input(
            'max_failed_fraction', valid_type=orm.Float, default=lambda: orm.Float(0.05),
            help='Fail with ERROR_TOO_MANY_FAILED when a larger fraction of clusters cannot be labelled.',
        )
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

    @staticmethod
    def _validate_engine(value: orm.Str, _) -> str | None:
        if value.value not in ENGINES:
            return f'engine: must be one of {sorted(ENGINES)}, got {value.value!r}.'
        return None

    def level_of_theory(self) -> str:
        parameters = self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {}
        if self.inputs.engine.value == 'xtb':
            return xtb_level_of_theory(parameters)
        return dft_level_of_theory(parameters)

    def label_names(self) -> list[str]:
        if self.inputs.engine.value == 'xtb':
            return XTB_LABELS
        return sorted(self.inputs.parameters.get_dict().get('properties', PROPERTIES))

    def setup(self) -> None:
        arrays = self.inputs.clusters.get_arrays()
        self.ctx.ids = [str(cluster_id) for cluster_id in arrays.ids]
        self.ctx.todo = list(range(arrays.n_clusters))
        self.ctx.queue: list[list[int]] = []
        self.ctx.running: dict[str, list[int]] = {}  # child uuid -> input indices
        self.ctx.parts: dict[str, ClusterSetData] = {}
        self.ctx.failed: list[dict[str, Any]] = []

    def reuse_labels(self) -> None:
        """Find labels of the same cluster ids at the same level of theory; queue the rest in batches."""
        if self.inputs.reuse.value:
            wanted = {cluster_id: index for index, cluster_id in enumerate(self.ctx.ids)}
            query = orm.QueryBuilder().append(
                ClusterSetData, filters={'attributes.level_of_theory': self.level_of_theory()}, project='*'
            )
            selection, sources = {}, {}
            for (node,) in query.iterall():
                if sorted(node.label_names or []) != self.label_names() or not wanted:
                    continue
                with node.open_cluster_set() as stored:
                    stored_ids = [str(cluster_id) for cluster_id in stored.ids]
                rows = [row for row, cluster_id in enumerate(stored_ids) if wanted.pop(cluster_id, None) is not None]
                if rows:
                    name = f'source_{len(sources):03d}'
                    selection[name], sources[name] = rows, node
            if sources:
                reused = collect_labels(selection=orm.Dict(selection), **sources)
                self.ctx.parts['reused'] = reused
                self.report(f'reusing {reused.n_clusters} label(s) already computed at {self.level_of_theory()}')
            self.ctx.todo = sorted(wanted.values())
        size = self.inputs.batch_size.value
        self.ctx.queue = [self.ctx.todo[start:start + size] for start in range(0, len(self.ctx.todo), size)]

    def has_work(self) -> bool:
        return bool(self.ctx.queue or self.ctx.running)

    def submit_batches(self):
        """Collect finished batches, fill the free slots from the queue, wait for the oldest batch in flight."""
        for uuid, indices in list(self.ctx.running.items()):
            child = orm.load_node(uuid)
            if child.is_terminated:
                self._collect(child, indices)
                del self.ctx.running[uuid]
        while self.ctx.queue and len(self.ctx.running) < self.inputs.max_concurrent.value:
            indices = self.ctx.queue.pop(0)
            child = self.submit(ENGINES[self.inputs.engine.value], **self._batch_inputs(indices))
            self.ctx.running[child.uuid] = indices
            self.report(f'submitted batch of {len(indices)} cluster(s) as {child.process_label}<{child.pk}>')
        if self.ctx.running:
            oldest = next(iter(self.ctx.running))
            return ToContext(oldest_batch=orm.load_node(oldest))
        return None

    def _batch_inputs(self, indices: list[int]) -> dict[str, Any]:
        engine = self.inputs.engine.value
        clusters = self.inputs.clusters
        if len(indices) != clusters.n_clusters:
            clusters = select_clusters(clusters, orm.List(indices))
        inputs: dict[str, Any] = {'code': self.inputs.code, 'clusters': clusters}
        if 'parameters' in self.inputs:
            inputs['parameters'] = self.inputs.parameters
        if 'd3bj_code' in self.inputs and engine == 'psi4':
            inputs['d3bj_code'] = self.inputs.d3bj_code
        if 'options' in self.inputs:
            inputs['metadata'] = {'options': self.inputs.options.get_dict()}
        return {engine: inputs}

    def _collect(self, child, indices: list[int]) -> None:
        if 'clusters' in child.outputs:
            self.ctx.parts[f'batch_{indices[0]:09d}'] = child.outputs.clusters
        failures = child.outputs.failed_clusters.get_list() if 'failed_clusters' in child.outputs else []
        if not child.is_finished or ('clusters' not in child.outputs and not failures):
            failures = [{'index': i, 'reason': 'job_failed', 'message': f'{child.process_label}<{child.pk}> '
                         f'ended with {child.exit_status}: {child.exit_message}'} for i in range(len(indices))]
        for failure in failures:
            index = indices[failure['index']]
            self.ctx.failed.append({**failure, 'index': index, 'id': self.ctx.ids[index]})

    def results(self):
        n_clusters = len(self.ctx.ids)
        if self.ctx.parts:
            parts = self.ctx.parts
            self.out('clusters', next(iter(parts.values())) if len(parts) == 1 else merge_cluster_sets(**parts))
        if not self.ctx.failed:
            return None
        failed = self.ctx.failed
        self.out('failed', sorted_failures(orm.List(failed)))
        fraction = len(failed) / n_clusters
        limit = self.inputs.max_failed_fraction.value
        self.report(f'{len(failed)} of {n_clusters} clusters could not be labelled')
        if fraction > limit:
            return self.exit_codes.ERROR_TOO_MANY_FAILED.format(
                n_failed=len(failed), n_clusters=n_clusters, fraction=fraction, limit=limit
            )
        return None
