"""``ScoreCalculation``: a committee's disagreement on a candidate cluster set, computed on any computer."""

from __future__ import annotations

import json

from aiida import orm
from aiida.common.datastructures import CalcInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJobProcessSpec

from aiida_qrnn.calculations.base import JobCalcJob
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.jobs.score import JOB, PARAMETERS

__all__ = ('ScoreCalculation',)


def validate_models(value: dict, _) -> str | None:
    """A committee needs two models or more, all for the same elements."""
    if not value:
        return None  # left out by a wrapping work chain
    models = list(value.values())
    if len(models) < 2:
        return f'models: a committee needs at least two models, got {len(models)}.'
    elements = {tuple(model.elements) for model in models}
    if len(elements) > 1:
        return f'models: all members need the same elements, got {sorted(elements)}.'
    return None


def validate_parameters(value: orm.Dict, _) -> str | None:
    unknown = sorted(set(value.get_dict()) - set(PARAMETERS))
    if unknown:
        return f'parameters: unknown keys {unknown}; known: {sorted(PARAMETERS)}.'
    return None


class ScoreCalculation(JobCalcJob):
    """Run ``aiida-qrnn-exec score``: ρ^f (paper eq. 2) and the largest per-atom force deviation per cluster.

    The candidate set and the committee's weights are copied into the job folder from the repository; the scores
    come back as one ``ArrayData`` with ``rho_f``, ``max_force_deviation``, ``energy_std`` and ``energy`` (eV), one
    value per input cluster, in input order. Large sets are scored in batches of ``max_batch_atoms`` atoms.
    """

    JOB = JOB

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.input('clusters', valid_type=ClusterSetData, help='The candidate clusters (open clusters).')
        spec.input_namespace('models', valid_type=ModelData, dynamic=True, validator=validate_models,
                             help='The committee members, two or more.')
        spec.input('parameters', valid_type=orm.Dict, required=False, validator=validate_parameters,
                   help='max_batch_atoms, dtype (float32/float64) and device (cpu, cuda).')
        options = spec.inputs['metadata']['options']
        options['parser_name'].default = 'qrnn.score'
        spec.output('scores', valid_type=orm.ArrayData, help='rho_f, max_force_deviation, energy_std, energy.')
        # 3xx: output incomplete (300 and 310 come from JobCalcJob)
        spec.exit_code(311, 'ERROR_OUTPUT_INCOMPLETE',
                       message='The scores cover {found} clusters, but the input has {expected}.')

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        parameters = self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {}
        with folder.open(JOB.inputs['parameters'], 'w') as handle:
            json.dump(parameters, handle)
        folder.get_subfolder(JOB.inputs['models'], create=True)
        clusters = self.inputs.clusters
        local_copy_list = [(clusters.uuid, clusters.filename, JOB.inputs['clusters'])]
        for index, (_, model) in enumerate(sorted(self.inputs.models.items())):
            target = f'{JOB.inputs["models"]}/member_{index:03d}.safetensors'
            local_copy_list.append((model.uuid, ModelData.WEIGHTS_FILENAME, target))
        return self.job_calcinfo([], local_copy_list=local_copy_list)
