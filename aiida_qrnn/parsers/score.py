"""``ScoreParser``: the committee scores of ``aiida-qrnn-exec score`` as one ``ArrayData``."""

from __future__ import annotations

import json
import zipfile

import numpy as np
from aiida import orm
from aiida.parsers import Parser

from aiida_qrnn.cli import exec_selection
from aiida_qrnn.core.selection import SCORE_NAMES


class ScoreParser(Parser):
    """Checks that every cluster got every score, then stores them."""

    def parse(self, **kwargs):
        retrieved = self.retrieved
        names = retrieved.base.repository.list_object_names()
        if exec_selection.OUTPUT_ERROR in names:
            error = json.loads(retrieved.base.repository.get_object_content(exec_selection.OUTPUT_ERROR))
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=error.get('message', ''))
        if exec_selection.OUTPUT_SCORES not in names:
            return self.exit_codes.ERROR_OUTPUT_MISSING
        try:
            repository = retrieved.base.repository
            with repository.open(exec_selection.OUTPUT_SCORES, 'rb') as handle, np.load(handle) as stored:
                scores = {name: np.asarray(stored[name], dtype=float) for name in SCORE_NAMES}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exception:
            return self.exit_codes.ERROR_OUTPUT_UNREADABLE.format(error=str(exception))
        expected = self.node.inputs.clusters.n_clusters
        for values in scores.values():
            if values.shape != (expected,) or not np.all(np.isfinite(values)):
                return self.exit_codes.ERROR_OUTPUT_INCOMPLETE.format(found=values.shape[0], expected=expected)
        array = orm.ArrayData()
        for name, values in scores.items():
            array.set_array(name, values)
        self.out('scores', array)
        return None
