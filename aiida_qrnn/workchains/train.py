"""``TrainWorkChain`` (``qrnn.train``): train one QRNN or a committee, continuing each job after a walltime stop.

* ``committee_size`` = N trains N ``TrainCalculation`` jobs in parallel; member k uses ``seed + k`` for its
  weights, batch order and train/validation split (the paper's committees: five members, 60/40 splits, the
  default validation fraction when N > 1 and none is given).
* A member stopped at the walltime (exit 400, a checkpoint left) is resubmitted with the stopped job's
  ``remote_folder`` as ``parent_folder`` and otherwise identical inputs, so it continues exactly; at most
  ``max_restarts`` times per member.
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, while_

from aiida_qrnn.calculations.train import TrainCalculation
from aiida_qrnn.core.training.committee import COMMITTEE_VALIDATION_FRACTION
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.workchains.protocols.utils import ProtocolMixin

__all__ = ('TrainWorkChain', 'member_parameters')


def member_parameters(parameters: dict, member: int, committee_size: int) -> dict:
    """The job parameters of committee member ``member``: seed and split seed shifted by ``member``."""
    training = dict(parameters.get('training', {}))
    seed = int(training.get('seed', 0)) + member
    training.update(seed=seed, split_seed=seed)
    if committee_size > 1:
        training.setdefault('validation_fraction', COMMITTEE_VALIDATION_FRACTION)
    return {**parameters, 'training': training}


class TrainWorkChain(ProtocolMixin, WorkChain):
    """Train ``committee_size`` models on the same data with different seeds and splits; continue walltime stops."""

    _protocol_kind = 'train'

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.expose_inputs(TrainCalculation, namespace='train', exclude=('parent_folder',))
        spec.input('committee_size', valid_type=orm.Int, default=lambda: orm.Int(1),
                   validator=lambda value, _: None if value.value >= 1 else 'committee_size must be at least 1.',
                   help='Number of models (the paper: 5 for active learning).')
        spec.input('max_restarts', valid_type=orm.Int, default=lambda: orm.Int(5),
                   help='Continuations after walltime stops allowed per member.')
        spec.outline(
            cls.setup,
            while_(cls.members_left)(
                cls.run_members,
                cls.inspect_members,
            ),
            cls.results,
        )
        spec.output('model', valid_type=ModelData, required=False, help='The model, when committee_size is 1.')
        spec.output_namespace('models', valid_type=ModelData, dynamic=True, help='member_k: the committee.')
        spec.output_namespace('output_parameters', valid_type=orm.Dict, dynamic=True,
                              help='member_k: results of the member\'s last job (metrics, epochs, status).')
        spec.exit_code(401, 'ERROR_MAX_RESTARTS',
                       message='Member {member} still stopped at the walltime after {restarts} continuations.')
        spec.exit_code(402, 'ERROR_MEMBER_FAILED',
                       message='Member {member}: {label}<{pk}> failed with exit status {status}: {message}')

    @classmethod
    def get_builder_from_protocol(
        cls, code: orm.AbstractCode, protocol: str | None = None, *,
        datasets: dict[str, ClusterSetData] | None = None, parent_model: ModelData | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """A builder from ``protocols/train.yaml`` for aiida-qrnn-exec ``code``; ``datasets`` may be given later."""
        return cls._builder_from_protocol(protocol, overrides, {'train': {
            'code': code, 'datasets': datasets, 'parent_model': parent_model}})

    def setup(self) -> None:
        size = self.inputs.committee_size.value
        self.ctx.pending = list(range(size))
        self.ctx.restarts = {str(member): 0 for member in range(size)}
        self.ctx.parent_folders = AttributeDict()
        self.ctx.finished = AttributeDict()

    def members_left(self) -> bool:
        return bool(self.ctx.pending)

    def run_members(self):
        """Submit one job per member not finished yet, continuing from its parent folder if it has one."""
        parameters = self.inputs.train.parameters.get_dict()
        size = self.inputs.committee_size.value
        running = {}
        for member in self.ctx.pending:
            inputs = AttributeDict(self.exposed_inputs(TrainCalculation, 'train'))
            inputs.parameters = orm.Dict(member_parameters(parameters, member, size))
            if str(member) in self.ctx.parent_folders:
                inputs.parent_folder = self.ctx.parent_folders[str(member)]
            inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': f'member_{member}'}
            node = self.submit(TrainCalculation, **inputs)
            self.report(f'member {member}: launched {node.process_label}<{node.pk}>')
            running[f'member_{member}'] = node
        return ToContext(**running)

    def inspect_members(self):
        """Keep finished members, queue walltime stops for continuation, fail on anything else."""
        pending = []
        for member in self.ctx.pending:
            node = self.ctx[f'member_{member}']
            if node.is_finished_ok:
                self.ctx.finished[str(member)] = node
                continue
            if node.exit_status == TrainCalculation.exit_codes.ERROR_OUT_OF_WALLTIME.status:
                restarts = self.ctx.restarts[str(member)] + 1
                if restarts > self.inputs.max_restarts.value:
                    return self.exit_codes.ERROR_MAX_RESTARTS.format(member=member, restarts=restarts - 1)
                self.ctx.restarts[str(member)] = restarts
                self.ctx.parent_folders[str(member)] = node.outputs.remote_folder
                self.report(f'member {member}: {node.process_label}<{node.pk}> stopped at the walltime; '
                            f'continuing from its checkpoint ({restarts} of {self.inputs.max_restarts.value})')
                pending.append(member)
                continue
            return self.exit_codes.ERROR_MEMBER_FAILED.format(
                member=member, label=node.process_label, pk=node.pk, status=node.exit_status,
                message=node.exit_message)
        self.ctx.pending = pending
        return None

    def results(self) -> None:
        for member, node in sorted(self.ctx.finished.items()):
            self.out(f'models.member_{member}', node.outputs.model)
            self.out(f'output_parameters.member_{member}', node.outputs.output_parameters)
        if self.inputs.committee_size.value == 1:
            self.out('model', self.ctx.finished['0'].outputs.model)
