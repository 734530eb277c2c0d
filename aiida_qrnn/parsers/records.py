"""``RecordParser``: the shared parser of the DFT labelling jobs, which leave one record per cluster."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.label_records import RESUBMIT_REASONS, STABILISE_REASONS, FailureReason, RecordError
from aiida_qrnn.core.sanity import allows_broken_bonds, check_energy, check_structure
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.parsers.files import read_text_files

__all__ = ('RecordParser', 'unphysical_labels')


def unphysical_labels(arrays: ClusterArrays, index: int, energy: float, multiplicity: int = 1) -> str | None:
    """Why the labels of cluster ``index`` are physically impossible (``core.sanity``), or ``None`` when sane.

    Every label parser applies it, so that a label of fused atoms, of an electron count the requested spin
    state cannot have, or with an energy outside the sane window goes to ``failed_clusters`` (reason
    ``unphysical``) and never into a labelled set, where label reuse would find it again.
    """
    rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
    kind = None if arrays.kind is None else str(arrays.kind[index])
    problems = check_structure(
        arrays.numbers[rows], arrays.positions[rows], total_charge=int(arrays.total_charge[index]),
        multiplicity=multiplicity, allow_broken_bonds=allows_broken_bonds(kind),
    )
    problems += check_energy(energy, arrays.numbers[rows])
    return '; '.join(problems) + '.' if problems else None


class RecordParser(Parser):
    """Label the clusters that have a good record, list every other one with its reason, pick the exit code.

    The labelled set and ``failed_clusters`` are attached whatever the exit code, so a restart relabels only what
    is missing. Exit codes, most actionable first: ``ERROR_OUT_OF_WALLTIME`` / ``ERROR_INTERRUPTED`` when some
    clusters have no record, ``ERROR_SCF_NOT_CONVERGED``, then ``ERROR_SOME_CLUSTERS_FAILED``.
    """

    def parse_cluster(self, index: int, arrays: ClusterArrays, files: dict[str, str]) -> dict[str, Any]:
        """Labels of cluster ``index`` from the retrieved ``files`` (name -> content); raise ``RecordError``."""
        raise NotImplementedError

    def level_of_theory(self) -> str:
        raise NotImplementedError

    def parse(self, **kwargs) -> ExitCode | None:
        arrays = self.node.inputs.clusters.get_arrays()
        files = read_text_files(self.retrieved)
        if not any(name.startswith('c') and name.endswith(('.json', '.out')) for name in files):
            return self.exit_codes.ERROR_NO_OUTPUT.format(n_clusters=arrays.n_clusters)

        labels: dict[str, list[np.ndarray]] = defaultdict(list)
        failures: list[dict[str, Any]] = []
        for index in range(arrays.n_clusters):
            try:
                values = self.parse_cluster(index, arrays, files)
                problem = unphysical_labels(arrays, index, values['energy'])
                if problem is not None:
                    raise RecordError(FailureReason.UNPHYSICAL, problem)
            except RecordError as exception:
                failures.append({
                    'index': index, 'id': str(arrays.ids[index]), 'reason': str(exception.reason),
                    'message': str(exception),
                })
                continue
            for name, value in values.items():
                labels[name].append(np.asarray(value))

        by_reason: dict[str, list[int]] = defaultdict(list)
        for failure in failures:
            by_reason[failure['reason']].append(failure['index'])
        # One log entry per kind of problem, not per cluster: a batch may hold thousands of clusters.
        for reason, indices in by_reason.items():
            example = next(failure for failure in failures if failure['reason'] == reason)
            self.logger.warning(
                f'{len(indices)} cluster(s) failed with {reason}, for example cluster {example["index"]}: '
                f'{example["message"]} Clusters: {indices}'
            )
        if failures:
            self.out('failed_clusters', orm.List(failures))
        if labels:
            failed = [failure['index'] for failure in failures]
            labelled = arrays.select(np.setdiff1d(np.arange(arrays.n_clusters), failed))
            labelled.labels = {
                name: np.concatenate(values) if name == 'forces' else np.stack(values)
                for name, values in labels.items()
            }
            self.out('clusters', ClusterSetData.from_arrays(labelled, level_of_theory=self.level_of_theory()))

        summary = ', '.join(f'{reason}: {len(indices)}' for reason, indices in by_reason.items())
        missing = sum(len(indices) for reason, indices in by_reason.items() if reason in RESUBMIT_REASONS)
        scf = sum(len(indices) for reason, indices in by_reason.items() if reason in STABILISE_REASONS)
        if missing:
            walltime = self.node.exit_status == self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status
            exit_code = self.exit_codes.ERROR_OUT_OF_WALLTIME if walltime else self.exit_codes.ERROR_INTERRUPTED
            return exit_code.format(n_missing=missing, n_clusters=arrays.n_clusters)
        if scf:
            return self.exit_codes.ERROR_SCF_NOT_CONVERGED.format(
                n_scf=scf, n_clusters=arrays.n_clusters, reasons=summary
            )
        if failures:
            return self.exit_codes.ERROR_SOME_CLUSTERS_FAILED.format(
                n_failed=len(failures), n_clusters=arrays.n_clusters, reasons=summary
            )
        return None
