"""``XtbParser``: the per-cluster xtb outputs of an ``XtbCalculation`` become one labelled ``ClusterSetData``."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_qrnn.calculations.xtb import XtbCalculation, level_of_theory
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.parsers.files import read_text_files
from aiida_qrnn.parsers.parse_raw.xtb import FailureReason, parse_cluster
from aiida_qrnn.parsers.records import unphysical_labels

__all__ = ('XtbParser',)


class XtbParser(Parser):
    """Label the clusters xtb finished, list the ones it did not, and say why in the log.

    Exit status 0 when every cluster is labelled; ``ERROR_SOME_CLUSTERS_FAILED`` with both outputs attached when
    some failed, so that a restart can relabel only ``failed_clusters``; ``ERROR_ALL_CLUSTERS_FAILED`` when none
    was labelled.
    """

    def parse(self, **kwargs) -> ExitCode | None:
        arrays = self.node.inputs.clusters.get_arrays()
        retrieved = read_text_files(self.retrieved, kwargs.get('retrieved_temporary_folder'))
        prefixes = [XtbCalculation.prefix(index) for index in range(arrays.n_clusters)]
        stdout_suffix = XtbCalculation.OUTPUT_SUFFIXES['stdout']
        if not any(prefix + stdout_suffix in retrieved for prefix in prefixes):
            return self.exit_codes.ERROR_NO_OUTPUT.format(n_clusters=arrays.n_clusters)

        labels: dict[str, list[np.ndarray]] = defaultdict(list)
        failures: dict[FailureReason, list[tuple[int, str]]] = defaultdict(list)
        for index, (prefix, n_atoms) in enumerate(zip(prefixes, np.diff(arrays.offsets), strict=True)):
            files = {key: retrieved.get(prefix + suffix) for key, suffix in XtbCalculation.OUTPUT_SUFFIXES.items()}
            data, logs = parse_cluster(n_atoms=int(n_atoms), **files)
            if logs.errors:
                reason, message = logs.errors[0]
                failures[reason].append((index, message))
                continue
            problem = unphysical_labels(arrays, index, data['energy'])
            if problem is not None:
                failures[FailureReason.UNPHYSICAL].append((index, problem))
                continue
            for name, value in data.items():
                labels[name].append(np.asarray(value))

        # One log entry per kind of problem, not per cluster: a set may hold many thousands of clusters.
        for reason, failed in failures.items():
            index, message = failed[0]
            self.logger.warning(
                f'{len(failed)} cluster(s) failed with {reason}, for example cluster {index}: {message} '
                f'Clusters: {[i for i, _ in failed]}'
            )

        failed = sorted(index for entries in failures.values() for index, _ in entries)
        summary = ', '.join(f'{reason}: {len(entries)}' for reason, entries in failures.items())
        if failed:
            entries = [
                {'index': index, 'id': str(arrays.ids[index]), 'reason': str(reason), 'message': message}
                for reason, failed_entries in failures.items() for index, message in failed_entries
            ]
            self.out('failed_clusters', orm.List(sorted(entries, key=lambda entry: entry['index'])))
        if len(failed) == arrays.n_clusters:
            return self.exit_codes.ERROR_ALL_CLUSTERS_FAILED.format(n_clusters=arrays.n_clusters, reasons=summary)

        labelled = arrays.select(np.setdiff1d(np.arange(arrays.n_clusters), failed))
        labelled.labels = {
            'energy': np.array(labels['energy']),
            'dipole': np.stack(labels['dipole']),
            'forces': np.concatenate(labels['forces']),
            'charges': np.concatenate(labels['charges']),
        }
        parameters = self.node.inputs.parameters.get_dict() if 'parameters' in self.node.inputs else {}
        self.out('clusters', ClusterSetData.from_arrays(labelled, level_of_theory=level_of_theory(parameters)))
        if failed:
            return self.exit_codes.ERROR_SOME_CLUSTERS_FAILED.format(
                n_failed=len(failed), n_clusters=arrays.n_clusters, reasons=summary
            )
        return None
