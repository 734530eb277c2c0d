"""``AnalysisParser``: the frames and properties of ``aiida-qrnn-exec analyse`` as nodes, one per replica."""

from __future__ import annotations

import json
import zipfile

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from ase import Atoms

from aiida_qrnn.jobs.analysis import JOB, SEPARATOR
from aiida_qrnn.parsers.base import JobParser

__all__ = ('AnalysisParser',)


class AnalysisParser(JobParser):
    """Checks that every replica has its result, then stores structures (``density_frame``) or scalars and
    distributions (``properties``)."""

    def parse(self, **kwargs) -> ExitCode | None:
        failure = self.job_failure()
        if failure is not None:
            return failure
        results_file = JOB.outputs['results']
        if results_file not in self.retrieved_names:
            return self.output_missing(results_file)
        repository = self.retrieved.base.repository
        try:
            results = json.loads(repository.get_object_content(results_file))
        except ValueError as exception:
            return self.output_unreadable(results_file, exception)
        labels = sorted(self.node.inputs.trajectories)
        missing = [label for label in labels if label not in results]
        if missing:
            return self.exit_codes.ERROR_OUTPUT_INCOMPLETE.format(missing=missing)
        if self.node.inputs.task.value == 'density_frame':
            for label in labels:
                self.out(f'structures.{label}', _structure(results[label]))
            return None
        distributions_file = JOB.outputs['distributions']
        if distributions_file not in self.retrieved_names:
            return self.output_missing(distributions_file)
        try:
            with repository.open(distributions_file, 'rb') as handle, np.load(handle) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exception:
            return self.output_unreadable(distributions_file, exception)
        for label in labels:
            self.out(f'scalars.{label}', orm.Dict(results[label]))
            node = orm.ArrayData()
            for name, values in sorted(arrays.items()):
                owner, array_name = name.split(SEPARATOR, 1)
                if owner == label:
                    node.set_array(array_name, values)
            if not node.get_arraynames():
                return self.exit_codes.ERROR_OUTPUT_INCOMPLETE.format(missing=[f'{label} distributions'])
            self.out(f'distributions.{label}', node)
        return None


def _structure(result: dict) -> orm.StructureData:
    """The selected frame as a StructureData with the selection in its attributes."""
    frame = result['structure']
    atoms = Atoms(numbers=frame['numbers'], positions=frame['positions'], cell=frame['cell'], pbc=frame['pbc'],
                  masses=frame['masses'])
    structure = orm.StructureData(ase=atoms)
    structure.base.attributes.set('npt_step', int(result['npt_step']))
    structure.base.attributes.set('npt_mean_density_g_cm3', float(result['npt_mean_density_g_cm3']))
    return structure
