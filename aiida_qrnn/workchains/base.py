"""Restart work chains of the labelling jobs: never lose a finished label, never compute one twice.

Each job records every cluster it finishes (see :mod:`aiida_qrnn.core.label_records`), and its parser attaches
the labelled clusters and a ``failed_clusters`` list (index, id, reason, message) whatever the exit code. After
each job the work chain keeps the labelled part and decides per cluster:

* no record (walltime, killed job, lost node, truncated output): resubmit exactly those clusters, unchanged;
* SCF not converged: resubmit those clusters with the next, more stabilised settings (more iterations,
  damping, other guess); after the last step they are reported as failed;
* anything else (the program refused the cluster, a wrong geometry): reported as failed, not retried.

The labelled parts are merged into one ``clusters`` output at the end; ``failed_clusters`` lists the clusters
that could not be labelled, with indices into the input set.
"""

from __future__ import annotations

import copy
from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import (
    BaseRestartWorkChain,
    ExitCode,
    ProcessHandlerReport,
    calcfunction,
    process_handler,
    while_,
)

from aiida_qrnn.calculations.functions.cluster_sets import merge_cluster_sets, select_clusters
from aiida_qrnn.calculations.psi4 import Psi4Calculation
from aiida_qrnn.calculations.pyscf import PyscfCalculation
from aiida_qrnn.calculations.xtb import XtbCalculation
from aiida_qrnn.core.label_records import RESUBMIT_REASONS, STABILISE_REASONS, FailureReason
from aiida_qrnn.data.cluster_set import ClusterSetData

__all__ = ('Psi4BaseWorkChain', 'PyscfBaseWorkChain', 'XtbBaseWorkChain', 'sorted_failures')

#: Exit statuses of the labelling jobs after which the labelled part and ``failed_clusters`` are examined:
#: 302 no output at all, 400 walltime, 401 stopped early, 410/420 some/all clusters failed, 510 SCF.
LABEL_FAILURE_STATUSES = (302, 400, 401, 410, 420, 510)
LABEL_FAILURE_EXIT_CODES = [ExitCode(status) for status in LABEL_FAILURE_STATUSES]


@calcfunction
def sorted_failures(failures: orm.List) -> orm.List:
    """The failure entries ({index, id, reason, message}) sorted by index: a work chain's ``failed`` output."""
    return orm.List(sorted(failures.get_list(), key=lambda failure: failure['index']))


def _deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        merged[key] = _deep_update(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged


class _LabelBaseWorkChain(BaseRestartWorkChain):
    """Shared logic; subclasses set ``_process_class``, ``_namespace`` and ``defaults['stabilisation']``."""

    _namespace = 'calc'
    #: ``stabilisation``: the parameter updates of successive SCF retries, each merged into the original.
    defaults: dict[str, Any] = {'stabilisation': []}

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.expose_inputs(cls._process_class, namespace=cls._namespace)
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )
        spec.output('clusters', valid_type=ClusterSetData, required=False, help='Every cluster that got labels.')
        spec.output(
            'failed_clusters', valid_type=orm.List, required=False,
            help='Clusters that could not be labelled: {index (in the input set), id, reason, message}.',
        )
        spec.exit_code(
            410, 'ERROR_SOME_CLUSTERS_UNLABELLED',
            message='{n_failed} of {n_clusters} clusters could not be labelled ({reasons}); see failed_clusters.',
        )
        spec.exit_code(420, 'ERROR_NO_CLUSTER_LABELLED', message='None of the {n_clusters} clusters could be labelled.')

    def setup(self) -> None:
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(self._process_class, self._namespace))
        self.ctx.original_clusters = self.ctx.inputs.clusters
        self.ctx.original_parameters = self.ctx.inputs.get('parameters')
        self.ctx.todo = list(range(self.ctx.original_clusters.n_clusters))
        self.ctx.submitted = []
        self.ctx.parts = []
        self.ctx.unlabelled = []
        self.ctx.stabilisation_step = 0
        self.ctx.resubmit, self.ctx.stabilise, self.ctx.give_up = [], [], []

    def should_run_process(self) -> bool:
        return bool(self.ctx.todo) and super().should_run_process()

    def run_process(self):
        """Submit the clusters still to do: all of them at first, later only those a handler put back."""
        self.ctx.submitted = list(self.ctx.todo)
        if self.ctx.submitted == list(range(self.ctx.original_clusters.n_clusters)):
            self.ctx.inputs.clusters = self.ctx.original_clusters
        else:
            self.ctx.inputs.clusters = select_clusters(self.ctx.original_clusters, orm.List(self.ctx.submitted))
        self.ctx.todo = []
        return super().run_process()

    def inspect_process(self):
        """Keep the labelled part and sort the failed clusters by remedy, then let the handlers act."""
        node = self.ctx.children[self.ctx.iteration - 1]
        self.ctx.resubmit, self.ctx.stabilise, self.ctx.give_up = [], [], []
        if node.is_finished:
            if 'clusters' in node.outputs:
                self.ctx.parts.append(node.outputs.clusters)
            if 'failed_clusters' in node.outputs:
                failures = node.outputs.failed_clusters.get_list()
            elif node.is_failed:  # no output at all: the whole batch is still to do
                failures = [
                    {'index': i, 'reason': str(FailureReason.MISSING_OUTPUT), 'message': node.exit_message or ''}
                    for i in range(len(self.ctx.submitted))
                ]
            else:
                failures = []
            ids = self.ctx.inputs.clusters.get_arrays().ids
            for failure in failures:
                failure = {**failure, 'id': str(ids[failure['index']]), 'index': self.ctx.submitted[failure['index']]}
                if failure['reason'] in RESUBMIT_REASONS:
                    self.ctx.resubmit.append(failure)
                elif failure['reason'] in STABILISE_REASONS:
                    self.ctx.stabilise.append(failure)
                else:
                    self.ctx.give_up.append(failure)
        return super().inspect_process()

    def report_error_handled(self, node, action: str) -> None:
        self.report(f'{node.process_label}<{node.pk}> failed with exit status {node.exit_status}: {node.exit_message}')
        self.report(f'Action taken: {action}')

    @process_handler(priority=600, exit_codes=LABEL_FAILURE_EXIT_CODES)
    def handle_missing_records(self, node) -> ProcessHandlerReport | None:
        """Clusters without a record (walltime, killed job, lost node): resubmit exactly those, unchanged."""
        if not self.ctx.resubmit:
            return None
        self.ctx.todo.extend(failure['index'] for failure in self.ctx.resubmit)
        self.report_error_handled(node, f'resubmitting the {len(self.ctx.resubmit)} cluster(s) without a record')
        return ProcessHandlerReport(do_break=False)

    @process_handler(priority=500, exit_codes=LABEL_FAILURE_EXIT_CODES)
    def handle_scf_not_converged(self, node) -> ProcessHandlerReport | None:
        """SCF not converged: resubmit those clusters with the next stabilisation step; past the last, give up."""
        if not self.ctx.stabilise:
            return None
        steps = self.defaults['stabilisation']
        if self.ctx.stabilisation_step >= len(steps):
            self.ctx.unlabelled.extend(self.ctx.stabilise)
            self.report_error_handled(node, f'{len(self.ctx.stabilise)} cluster(s) never converged; giving up on them')
            return ProcessHandlerReport(do_break=False)
        update = steps[self.ctx.stabilisation_step]
        self.ctx.stabilisation_step += 1
        base = self.ctx.original_parameters.get_dict() if self.ctx.original_parameters is not None else {}
        self.ctx.inputs.parameters = orm.Dict(_deep_update(base, update))
        self.ctx.todo.extend(failure['index'] for failure in self.ctx.stabilise)
        self.report_error_handled(
            node, f'resubmitting {len(self.ctx.stabilise)} unconverged cluster(s) with stabilised settings {update}'
        )
        return ProcessHandlerReport(do_break=False)

    @process_handler(priority=400, exit_codes=LABEL_FAILURE_EXIT_CODES)
    def handle_unrecoverable_clusters(self, node) -> ProcessHandlerReport | None:
        """Any other reason (program refused the cluster, wrong geometry, NaN): report as failed, no retry."""
        if not self.ctx.give_up:
            return None
        self.ctx.unlabelled.extend(self.ctx.give_up)
        reasons = sorted({failure['reason'] for failure in self.ctx.give_up})
        self.report_error_handled(node, f'{len(self.ctx.give_up)} cluster(s) cannot be labelled ({reasons})')
        return ProcessHandlerReport(do_break=False)

    def results(self) -> ExitCode | None:
        """Merge the labelled parts; list what is left unlabelled (including clusters the iteration limit cut)."""
        n_clusters = self.ctx.original_clusters.n_clusters
        unlabelled = list(self.ctx.unlabelled)
        if self.ctx.todo:
            ids = self.ctx.original_clusters.get_arrays().ids
            unlabelled += [
                {'index': i, 'id': str(ids[i]), 'reason': 'max_iterations',
                 'message': f'still unlabelled after {self.ctx.iteration} jobs'}
                for i in self.ctx.todo
            ]
        if self.ctx.parts:
            if len(self.ctx.parts) == 1:
                self.out('clusters', self.ctx.parts[0])
            else:
                parts = {f'part_{number:03d}': part for number, part in enumerate(self.ctx.parts)}
                self.out('clusters', merge_cluster_sets(**parts))
        self.report(f'work chain completed after {self.ctx.iteration} job(s)')
        if not unlabelled:
            return None
        self.out('failed_clusters', sorted_failures(orm.List(unlabelled)))
        if not self.ctx.parts:
            return self.exit_codes.ERROR_NO_CLUSTER_LABELLED.format(n_clusters=n_clusters)
        reasons = ', '.join(sorted({failure['reason'] for failure in unlabelled}))
        return self.exit_codes.ERROR_SOME_CLUSTERS_UNLABELLED.format(
            n_failed=len(unlabelled), n_clusters=n_clusters, reasons=reasons
        )


class XtbBaseWorkChain(_LabelBaseWorkChain):
    """Restart wrapper of ``XtbCalculation``: an unconverged SCC gets more iterations (same Hamiltonian)."""

    _process_class = XtbCalculation
    _namespace = 'xtb'
    defaults = {'stabilisation': [{'max_iterations': 1000}]}


class Psi4BaseWorkChain(_LabelBaseWorkChain):
    """Restart wrapper of ``Psi4Calculation``; SCF retries add iterations, damping, then a GWH guess."""

    _process_class = Psi4Calculation
    _namespace = 'psi4'
    defaults = {
        'stabilisation': [
            {'options': {'maxiter': 200, 'damping_percentage': 20.0}},
            {'options': {'maxiter': 400, 'damping_percentage': 40.0, 'guess': 'gwh'}},
        ]
    }


class PyscfBaseWorkChain(_LabelBaseWorkChain):
    """Restart wrapper of ``PyscfCalculation``; SCF retries add cycles, damping, level shift, then an atomic guess."""

    _process_class = PyscfCalculation
    _namespace = 'pyscf'
    defaults = {
        'stabilisation': [
            {'options': {'max_cycle': 200, 'damping': 0.3, 'level_shift': 0.2}},
            {'options': {'max_cycle': 400, 'damping': 0.5, 'level_shift': 0.5, 'init_guess': 'atom'}},
        ]
    }

