"""``TrainCalculation`` (``qrnn.train``): train a QRNN on cluster sets with ``aiida-qrnn-exec train``.

Every ``datasets`` input is staged as ``datasets/<key>.h5`` (concatenated in key order), so the model node links
to exactly the data it was trained on. ``parent_model`` starts from a trained model (transfer learning);
``parent_folder`` (the ``remote_folder`` or ``retrieved`` folder of an earlier job with the same inputs) supplies
``checkpoint.pt`` and the run continues exactly where it stopped. A GPU is requested through the scheduler options
(:func:`aiida_qrnn.computers.scheduler_options` with ``gpus=1``) together with ``device='cuda'``.

Data-parallel training: ``metadata.options.resources`` with more than one MPI process in total (for example
``{'num_machines': 2, 'num_mpiprocs_per_machine': 4}``, with ``gpus=4`` and ``device='cuda'`` for 8 GPUs) makes
the job start that many ranks, through ``srun`` on a SLURM computer and ``torchrun`` on one machine otherwise
(``aiida-qrnn-exec train --processes N --launcher ...``). The model is that of one process on the same batches.
"""

from __future__ import annotations

import json
import re

from aiida import orm
from aiida.common.datastructures import CalcInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJobProcessSpec
from ase.data import atomic_numbers

from aiida_qrnn.calculations.base import JobCalcJob
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.jobs.train import JOB

__all__ = ('TrainCalculation', 'validate_datasets', 'validate_parameters')

#: Launcher of the ranks per scheduler plugin (any other scheduler: one machine, torchrun).
LAUNCHERS = {'core.slurm': 'srun'}
DATASET_KEY = re.compile(r'^[A-Za-z0-9_]+$')


def validate_parameters(value: orm.Dict, _) -> str | None:
    """``training`` must be valid ``TrainingConfig`` settings and ``model`` a valid ``QRNNConfig``."""
    from aiida_qrnn.core.model.qrnn import QRNNConfig
    from aiida_qrnn.core.training import TrainingConfig

    parameters = value.get_dict()
    unknown = sorted(set(parameters) - {'training', 'model'})
    if unknown:
        return f'parameters: unknown key(s) {unknown}; the accepted keys are model and training.'
    try:
        TrainingConfig.from_dict(parameters.get('training', {}))
        if 'model' in parameters:
            QRNNConfig.from_dict(parameters['model'])
    except (TypeError, ValueError) as exception:
        return f'parameters: {exception}'
    return None


def validate_datasets(value: dict, _) -> str | None:
    """At least one set; every set labelled, open clusters only, and all with the same labels."""
    if not value:
        return 'datasets: give at least one labelled ClusterSetData.'
    labels = {}
    for key, node in value.items():
        if not DATASET_KEY.match(key):
            return f'datasets: key {key!r} must contain only letters, digits and underscores.'
        if not node.label_names:
            return f'datasets.{key}: the cluster set carries no labels (label it first).'
        if node.base.attributes.get('n_periodic', 0):
            return f'datasets.{key}: holds periodic clusters; training uses open clusters only.'
        labels[key] = sorted(node.label_names)
    if len({tuple(names) for names in labels.values()}) > 1:
        return f'datasets: the sets carry different labels {labels}; train on sets with the same labels.'
    return None


class TrainCalculation(JobCalcJob):
    """Train (or continue training, or transfer-learn) one QRNN on the ``datasets`` cluster sets."""

    JOB = JOB
    #: Seconds left between the trainer's own stop and the scheduler's walltime (checkpoint, plots, retrieval).
    WALLTIME_MARGIN_S = 120.0

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.input_namespace('datasets', valid_type=ClusterSetData, dynamic=True, validator=validate_datasets,
                             help='Labelled cluster sets, concatenated in key order.')
        spec.input('parameters', valid_type=orm.Dict, validator=validate_parameters,
                   help='{"training": TrainingConfig settings, "model": QRNNConfig (default: the data\'s elements)}.')
        spec.input('parent_model', valid_type=ModelData, required=False,
                   help='Start from this model (transfer learning); its config replaces parameters.model.')
        spec.input('parent_folder', valid_type=(orm.RemoteData, orm.FolderData), required=False,
                   help='Folder of an earlier job with the same inputs that stopped at the walltime: continue it.')
        spec.input('device', valid_type=orm.Str, default=lambda: orm.Str('cpu'), help='Torch device (cpu, cuda).')
        options = spec.inputs['metadata']['options']
        options['parser_name'].default = 'qrnn.train'

        spec.output('model', valid_type=ModelData, required=False,
                    help='The best weights; attribute metrics = validation MAE/RMSE of this model.')
        spec.output('metrics', valid_type=orm.ArrayData, required=False,
                    help='metrics.csv: one row per epoch (losses, learned weights, validation MAE/RMSE, lr).')
        spec.output('output_parameters', valid_type=orm.Dict, required=False,
                    help='results.json: status, epochs, best epoch, validation metrics, self-energies.')
        spec.output('split', valid_type=orm.ArrayData, required=False,
                    help='train and validation: indices into the datasets concatenated in key order.')
        spec.output_namespace('plots', valid_type=orm.SinglefileData, dynamic=True,
                              help='learning_curves and parity PNGs.')

        cls.define_walltime_exit_code(spec, 'in epoch {epoch}')
        spec.exit_code(510, 'ERROR_DIVERGED', message='Training diverged: {message}')

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """Stage the cluster sets, the settings, the parent model; copy the parent job's checkpoint."""
        keys = sorted(self.inputs.datasets)
        folder.get_subfolder('datasets', create=True)
        # Copied by the engine from the repository, never read into memory here (sets can be gigabytes).
        local_copy_list = [(self.inputs.datasets[key].uuid, self.inputs.datasets[key].filename, f'datasets/{key}.h5')
                           for key in keys]
        parameters = self.inputs.parameters.get_dict()
        training = dict(parameters.get('training', {}))
        if training.get('max_time_s') is None and self.job_walltime_s() is not None:
            training['max_time_s'] = self.job_walltime_s()
        model = dict(parameters.get('model', {}))
        if 'elements' not in model:
            model['elements'] = sorted({symbol for key in keys for symbol in self.inputs.datasets[key].elements},
                                       key=atomic_numbers.__getitem__)
        request = {'datasets': [f'datasets/{key}.h5' for key in keys], 'model': model, 'training': training}
        with folder.open(JOB.inputs['request'], 'w') as handle:
            json.dump(request, handle, indent=2)
        if 'parent_model' in self.inputs:
            repository = self.inputs.parent_model.base.repository
            with repository.open(ModelData.WEIGHTS_FILENAME, 'rb') as source, \
                    folder.open(JOB.inputs['parent_model'], 'wb') as target:
                target.write(source.read())

        checkpoint = JOB.inputs['checkpoint']
        remote_copy_list = []
        if 'parent_folder' in self.inputs:
            parent = self.inputs.parent_folder
            if isinstance(parent, orm.RemoteData):
                remote_copy_list.append((parent.computer.uuid, f'{parent.get_remote_path()}/{checkpoint}', checkpoint))
            else:
                local_copy_list.append((parent.uuid, checkpoint, checkpoint))
        return self.job_calcinfo(['.', '--device', self.inputs.device.value, *self._launch_parameters()],
                                 local_copy_list=local_copy_list, remote_copy_list=remote_copy_list)

    def _launch_parameters(self) -> list[str]:
        """``--processes N --launcher L`` for a job of N > 1 processes (its resources), nothing for one."""
        computer = self.node.computer
        resources = computer.get_scheduler().create_job_resource(**self.node.get_option('resources'))
        processes = resources.get_tot_num_mpiprocs()
        if processes == 1:
            return []
        launcher = LAUNCHERS.get(computer.scheduler_type, 'torchrun')
        if launcher == 'torchrun' and getattr(resources, 'num_machines', 1) > 1:
            raise ValueError(f'metadata.options.resources asks for {resources.num_machines} machines, but '
                             f'{computer.label} ({computer.scheduler_type}) starts ranks with torchrun on one machine; '
                             'use a SLURM computer for several nodes.')
        return ['--processes', str(processes), '--launcher', launcher]
