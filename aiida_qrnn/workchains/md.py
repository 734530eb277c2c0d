"""``MdBaseWorkChain`` (``qrnn.md.base``): run an ``MdCalculation`` to its last step whatever stops it on the way.

* walltime (400): continue from the checkpoint (``parent_folder``), settings unchanged;
* unstable (510 non-finite, 511 close contact, 512 temperature runaway): continue from the last good checkpoint
  (or start again if there was none) with the timestep multiplied by ``timestep_factor``, and ``n_steps`` raised
  so that the run still covers the simulated time it was asked for. Unstable at step 0, the input structure itself
  is the problem, which no timestep changes: the work chain stops with the job's own 51x exit code and message.

``BaseRestartWorkChain`` stops after ``max_iterations`` jobs, so a run that stays unstable ends as failed.

Batched replicas (``md.structures``): the job's exit status follows the rule of
:class:`~aiida_qrnn.parsers.md.MdParser`.
A walltime stop (400) continues every replica from its own checkpoint (replicas without one start again; finished
ones end at once with "already finished", so the last job has every replica's outputs). A job whose replicas are
partly finished and partly unstable finishes OK and ends the work chain: the unstable replicas are listed in
``output_parameters['unstable']`` and are not retried (they would need their own timestep, hence their own job).
When every replica is unstable the unstable handler applies to the batch: from the replicas' common checkpoint
step, or from the start when their checkpoints differ.

Committee disagreement (active learning): with ``md.committee`` (two or more models), ``committee_interval`` > 0 in
``md.parameters`` and either the ``qrnn.committee_disagreement`` monitor in ``md.monitors`` or
``committee_max_force_deviation`` in ``md.parameters``, a run stopped for committee disagreement finishes the work
chain OK with ``output_parameters['status'] == 'committee_disagreement'``: it is never restarted, and the outputs
(``trajectory``, whose last frames are the candidates; ``structure``, ``log``, ``committee``,
``output_parameters`` with the ``step`` of the stop) are exposed as for a finished run.
"""

from __future__ import annotations

import math
from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from aiida_qrnn.calculations.md import MdCalculation, validate_inputs
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.workchains.protocols.utils import ProtocolMixin

__all__ = ('MdBaseWorkChain', 'continued_settings')

UNSTABLE_EXIT_CODES = ('ERROR_UNSTABLE_NOT_FINITE', 'ERROR_UNSTABLE_CLOSE_CONTACT', 'ERROR_UNSTABLE_TEMPERATURE')


def continued_settings(settings: dict, step: int, factor: float) -> dict:
    """Settings for the rest of a run after ``step`` with the timestep times ``factor``, same total simulated time.

    The steps already done keep their timestep; the remaining time (n_steps - step) · dt is covered by
    ceil((n_steps - step) / factor) steps of dt · factor.
    """
    remaining = max(settings['n_steps'] - step, 0)
    return {**settings, 'timestep_fs': settings['timestep_fs'] * factor,
            'n_steps': step + math.ceil(round(remaining / factor, 9))}


class MdBaseWorkChain(ProtocolMixin, BaseRestartWorkChain):
    """Restart an ``MdCalculation`` from its checkpoint after a walltime stop or an instability (smaller step)."""

    _process_class = MdCalculation
    _protocol_kind = 'md'

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.expose_inputs(MdCalculation, namespace='md')
        spec.inputs['md'].validator = validate_inputs  # committee and monitor checks at submission, not at the job
        spec.input('timestep_factor', valid_type=orm.Float, default=lambda: orm.Float(0.5),
                   validator=lambda value, _: None if 0 < value.value < 1 else 'timestep_factor must be in (0, 1).',
                   help='Timestep multiplier after an unstable run.')
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )
        spec.expose_outputs(MdCalculation)
        spec.exit_code(300, 'ERROR_UNRECOVERABLE_FAILURE', message='The MD job failed in a way no restart fixes.')
        for label in UNSTABLE_EXIT_CODES:  # the job's own codes: an instability at step 0 ends the work chain
            exit_code = getattr(MdCalculation.exit_codes, label)
            spec.exit_code(exit_code.status, label, message=f'At step 0, before any timestep: {exit_code.message}')

    @classmethod
    def get_builder_from_protocol(
        cls, code: orm.AbstractCode, protocol: str | None = None, *, structure: orm.StructureData | None = None,
        model: ModelData | None = None, overrides: dict[str, Any] | None = None,
    ):
        """A builder from ``protocols/md.yaml`` for aiida-qrnn-exec ``code``; without ``model`` the job runs OPLS-AA."""
        return cls._builder_from_protocol(protocol, overrides, {'md': {
            'code': code, 'structure': structure, 'model': model}})

    def setup(self) -> None:
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(MdCalculation, 'md'))
        self.ctx.settings = self.ctx.inputs.parameters.get_dict()
        self.ctx.settings.setdefault('n_steps', 2_000_000)
        self.ctx.settings.setdefault('timestep_fs', 0.5)

    def report_error_handled(self, node, action: str) -> None:
        self.report(f'{node.process_label}<{node.pk}> failed with exit status {node.exit_status}: '
                    f'{node.exit_message}; {action}')

    @process_handler(priority=600, exit_codes=[MdCalculation.exit_codes.ERROR_OUT_OF_WALLTIME])
    def handle_walltime(self, node) -> ProcessHandlerReport:
        """Continue from the checkpoint the job left, with the same settings."""
        self.ctx.inputs.parent_folder = node.outputs.remote_folder
        self.report_error_handled(node, 'continuing from its checkpoint')
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=500, exit_codes=[getattr(MdCalculation.exit_codes, label)
                                               for label in UNSTABLE_EXIT_CODES])
    def handle_unstable(self, node) -> ProcessHandlerReport:
        """Continue from the last good checkpoint (or start again) with a smaller timestep."""
        results = node.outputs.output_parameters.get_dict() if 'output_parameters' in node.outputs else {}
        if results.get('step') == 0:
            label = next(label for label in UNSTABLE_EXIT_CODES
                         if getattr(MdCalculation.exit_codes, label).status == node.exit_status)
            self.report_error_handled(node, 'the input structure is unstable before any step; not restarting')
            return ProcessHandlerReport(True, getattr(self.exit_codes, label).format(message=results['message']))
        if results.get('checkpoint_step') is not None:
            self.ctx.inputs.parent_folder = node.outputs.remote_folder
            step = results['checkpoint_step']
        else:
            self.ctx.inputs.pop('parent_folder', None)
            step = 0
        self.ctx.settings = continued_settings(self.ctx.settings, step, self.inputs.timestep_factor.value)
        self.ctx.inputs.parameters = orm.Dict(self.ctx.settings)
        self.report_error_handled(
            node, f"continuing from step {step} with timestep {self.ctx.settings['timestep_fs']:g} fs")
        return ProcessHandlerReport(do_break=True)
