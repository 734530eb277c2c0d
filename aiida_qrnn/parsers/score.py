"""``ScoreParser``: the committee scores of ``aiida-qrnn-exec score`` as one ``ArrayData``."""

from __future__ import annotations

import zipfile

import numpy as np
from aiida import orm
from aiida.engine import ExitCode

from aiida_qrnn.core.selection import SCORE_NAMES
from aiida_qrnn.jobs.score import JOB
from aiida_qrnn.parsers.base import JobParser

__all__ = ('ScoreParser',)


class ScoreParser(JobParser):
    """Checks that every cluster got every score, then stores them."""

    def parse(self, **kwargs) -> ExitCode | None:
        failure = self.job_failure()
        if failure is not None:
            return failure
        scores_file = JOB.outputs['scores']
        if scores_file not in self.retrieved_names:
            return self.output_missing(scores_file)
        try:
            with self.retrieved.base.repository.open(scores_file, 'rb') as handle, np.load(handle) as stored:
                scores = {name: np.asarray(stored[name], dtype=float) for name in SCORE_NAMES}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exception:
            return self.output_unreadable(scores_file, exception)
        expected = self.node.inputs.clusters.n_clusters
        for values in scores.values():
            if values.shape != (expected,) or not np.all(np.isfinite(values)):
                return self.exit_codes.ERROR_OUTPUT_INCOMPLETE.format(found=values.shape[0], expected=expected)
        array = orm.ArrayData()
        for name, values in scores.items():
            array.set_array(name, values)
        self.out('scores', array)
        return None
