"""``PropertiesWorkChain`` (``qrnn.properties``): the paper's property protocol over chain lengths and replicas.

Per cell: NPT (``MdBaseWorkChain``) → the NPT frame whose density is closest to the mean density of the NPT
production window (detected from the data, :mod:`aiida_qrnn.core.analysis.equilibration`) → NVT, and with ``vdos``
a short densely sampled NVT from the same frame for the vibrational density of states → analyses
(:mod:`aiida_qrnn.core.analysis.properties`: density, c_p classical and quantum-corrected, D raw and Yeh–Hummer,
flags for runs too short). Per chain length the replicas are combined into property nodes with value, standard
deviation over replicas, unit and flags. The frame selection and the analyses read the trajectories in a job,
never in the daemon: one ``AnalysisCalculation`` (``aiida-qrnn-exec analyse``, on the ``code`` of the MD jobs and
with their ``options``) per chain length and task, over its replicas (exit code 430 when one fails). Without a
``model`` every MD job uses the classical OPLS-AA baseline, so
the classical and the QRNN properties come from identical code. ``PolymerForceFieldWorkChain`` gives the classically
relaxed cells of the same replicas as ``structures`` (the paper's start). Protocols: ``protocols/properties.yaml``.

With ``batch_replicas`` (QRNN only; off by default) the replicas of one chain length run as batched replicas of one
``MdCalculation`` per phase (one model call per step for all of them: the way to fill a GPU); replica ``rXX`` of
the sorted labels of that length draws its velocities with ``seed`` + its index, as ``seed`` + ``XX`` unbatched when
the replicas are numbered from 0. A replica that becomes unstable in a batch (its batch-mates finished) is run again
alone from its starting cell by ``MdBaseWorkChain`` with the timestep halved over the same simulated time (that work
chain halves it further if needed); if that fails too, the work chain stops with 410/420 naming it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction

from aiida_qrnn.calculations.analysis import AnalysisCalculation
from aiida_qrnn.calculations.sampling import build_cells, validate_cell_parameters
from aiida_qrnn.core.analysis.properties import ANALYSIS_DEFAULTS, ANALYSIS_OPTIONAL
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.workchains import protocols
from aiida_qrnn.workchains.md import MdBaseWorkChain, continued_settings
from aiida_qrnn.workchains.protocols.utils import ProtocolMixin

#: Timestep factor of the lone rerun of a replica that became unstable inside a batch.
RETRY_TIMESTEP_FACTOR = 0.5

__all__ = ('ANALYSIS_DEFAULTS', 'PropertiesWorkChain', 'combine_chain_length', 'load_protocol',
           'plot_against_experiment')

CELL_LABEL = re.compile(r'^n(\d{3})_r(\d{2})$')


def load_protocol(name: str | None = None) -> dict[str, Any]:
    """The ``cells``, ``npt``, ``nvt`` and ``analysis`` parameters of protocol ``name`` (the default when None)."""
    return protocols.load_protocol('properties', name)


@calcfunction
def combine_chain_length(**replicas: orm.Data) -> dict[str, orm.Data]:
    """Mean and standard deviation over the replicas of one chain length (inputs ``scalars_rXX``,
    ``distributions_rXX``): a ``properties`` Dict of {value, uncertainty, unit, n_replicas, replicas} and the
    averaged distributions with their ``*_std`` arrays."""
    from aiida_qrnn.core.analysis.properties import DISTRIBUTIONS, combine_distributions, combine_replicas

    labels = sorted(key.removeprefix('scalars_') for key in replicas if key.startswith('scalars_'))
    properties = combine_replicas([replicas[f'scalars_{label}'].get_dict() for label in labels])
    distributions = {}
    for name, (x_name, _, y_name) in DISTRIBUTIONS.items():
        per_replica = [{x_name: replicas[f'distributions_{label}'].get_array(f'{name}__{x_name}'),
                        y_name: replicas[f'distributions_{label}'].get_array(f'{name}__{y_name}')} for label in labels]
        distributions[name] = combine_distributions(per_replica, x_name, y_name)
    return {'properties': orm.Dict(properties), 'distributions': _distribution_node(distributions)}


@calcfunction
def plot_against_experiment(settings: orm.Dict, **series: orm.Dict) -> orm.SinglefileData:
    """Property vs chain length beside experiment (the paper's Figs. 2-4, 6-8) as PNG.

    ``settings``: ``property`` ('density' or 'heat_capacity') and ``temperature_K`` (default 300). ``series``: the
    ``properties.nNNN`` outputs of PropertiesWorkChain runs, keyed ``<label>__nNNN`` (e.g. ``QRNN__n002``,
    ``OPLS_AA__n002``; underscores in the label are shown as '-').
    """
    import tempfile

    from aiida_qrnn.core.analysis.experimental import plot_property_vs_chain_length

    values = settings.get_dict()
    name = values['property']
    curves: dict[str, tuple[list[int], list[float], list[float]]] = {}
    for key in sorted(series, key=lambda key: (key.rsplit('__', 1)[0], key.rsplit('__', 1)[-1])):
        label, length = key.rsplit('__', 1)
        entry = series[key].get_dict()[name]
        n_units, means, errors = curves.setdefault(label.replace('_', '-'), ([], [], []))
        n_units.append(int(length.removeprefix('n')))
        means.append(entry['value'])
        errors.append(entry['uncertainty'])
    with tempfile.TemporaryDirectory() as directory:
        path = plot_property_vs_chain_length(name, curves, Path(directory) / f'{name}_vs_chain_length.png',
                                             temperature_K=values.get('temperature_K', 300.0))
        return orm.SinglefileData(path)


def validate_analysis(value: orm.Dict, _) -> str | None:
    unknown = sorted(set(value.get_dict()) - set(ANALYSIS_DEFAULTS) - set(ANALYSIS_OPTIONAL))
    if unknown:
        return f'analysis: unknown settings {unknown}; known: {sorted([*ANALYSIS_DEFAULTS, *ANALYSIS_OPTIONAL])}.'
    return None


def _distribution_node(distributions: dict[str, dict[str, np.ndarray]]) -> orm.ArrayData:
    """One ArrayData; arrays named ``<distribution>__<array>`` (units in the array names)."""
    node = orm.ArrayData()
    for name, arrays in distributions.items():
        for array_name, values in arrays.items():
            node.set_array(f'{name}__{array_name}', np.asarray(values))
    return node


class PropertiesWorkChain(ProtocolMixin, WorkChain):
    """Density, c_p, self-diffusivity, R_g, OCCO torsions and O-H g(r) per chain length, mean ± std over replicas."""

    _protocol_kind = 'properties'

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('code', valid_type=orm.AbstractCode, help='aiida-qrnn-exec on the computer that runs the MD.')
        spec.input('model', valid_type=ModelData, required=False, help='The QRNN; absent: the OPLS-AA baseline.')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='Starting cells labelled n{units:03d}_r{replica:02d} (e.g. OPLS-AA equilibrated).')
        spec.input('cells', valid_type=orm.Dict, required=False, validator=validate_cell_parameters,
                   help='build_cells parameters, used when no structures are given.')
        spec.input('npt', valid_type=orm.Dict, help='MDSettings of the NPT run.')
        spec.input('nvt', valid_type=orm.Dict, help='MDSettings of the NVT run (starts from the mean-density frame).')
        spec.input('vdos', valid_type=orm.Dict, required=False,
                   help='MDSettings of a short NVT from the same frame with velocities every <= 4 fs, for the '
                        'vibrational density of states of the quantum c_p correction.')
        spec.input('analysis', valid_type=orm.Dict, default=lambda: orm.Dict(ANALYSIS_DEFAULTS),
                   validator=validate_analysis,
                   help='discard_fraction, min_independent_samples, msd_fit_start_fraction, msd_fit_end_fraction, '
                        'viscosity_mPa_s (optional).')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(0), help='Velocity seed (plus the replica).')
        spec.input('options', valid_type=dict, non_db=True, default=dict, help='metadata.options of the MD jobs.')
        spec.input('batch_replicas', valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help='QRNN: run the replicas of one chain length as batched replicas of one MD job per phase.')
        spec.outline(cls.setup, cls.run_npt, cls.retry_npt, cls.select_frames, cls.run_nvt, cls.retry_nvt, cls.analyse,
                     cls.combine)
        spec.output_namespace('properties', valid_type=orm.Dict, dynamic=True,
                              help='Per chain length n{units:03d}: {property: {value, uncertainty, unit, ...}}.')
        spec.output_namespace('distributions', valid_type=orm.ArrayData, dynamic=True,
                              help='Per chain length: OCCO torsion, O-H g(r), R_g distributions (mean, *_std).')
        spec.exit_code(401, 'ERROR_NO_STRUCTURES', message='Give either structures or cells parameters.')
        spec.exit_code(402, 'ERROR_BAD_LABEL',
                       message='Structure label {label!r} is not n{{units:03d}}_r{{replica:02d}}.')
        spec.exit_code(410, 'ERROR_NPT_FAILED', message='The NPT run of {label} failed: {message}')
        spec.exit_code(420, 'ERROR_NVT_FAILED', message='The NVT run of {label} failed: {message}')
        spec.exit_code(430, 'ERROR_ANALYSIS_FAILED', message='The {task} analysis of {length} failed: {message}')

    @classmethod
    def get_builder_from_protocol(cls, code: orm.AbstractCode, protocol: str | None = None, *,
                                  model: ModelData | None = None, overrides: dict[str, dict] | None = None):
        """A builder from ``protocols/properties.yaml``; ``overrides`` are shaped like the inputs and merged
        recursively, e.g. ``{'cells': {'n_units': [1, 4]}, 'npt': {'n_steps': 4000}}``."""
        return cls._builder_from_protocol(protocol, overrides, {'code': code, 'model': model})

    def setup(self):
        if 'structures' in self.inputs and self.inputs.structures:
            structures = dict(self.inputs.structures)
        elif 'cells' in self.inputs:
            structures = build_cells(self.inputs.cells)
        else:
            return self.exit_codes.ERROR_NO_STRUCTURES
        for label in structures:
            if not CELL_LABEL.match(label):
                return self.exit_codes.ERROR_BAD_LABEL.format(label=label)
        self.ctx.structures = structures
        self.ctx.batched = self.inputs.batch_replicas.value and 'model' in self.inputs
        if self.inputs.batch_replicas.value and not self.ctx.batched:
            self.report('batch_replicas needs a QRNN model: the OPLS-AA baseline runs one structure per job.')
        return None

    def _md_inputs(self, label: str, structure: orm.StructureData, parameters: orm.Dict) -> dict:
        replica = int(CELL_LABEL.match(label).group(2))
        md = {'code': self.inputs.code, 'structure': structure, 'parameters': parameters,
              'seed': orm.Int(self.inputs.seed.value + replica), 'metadata': {'options': dict(self.inputs.options)}}
        if 'model' in self.inputs:
            md['model'] = self.inputs.model
        return {'md': md, 'metadata': {'call_link_label': label}}

    def _submit_phase(self, phase: str, structures: dict[str, orm.StructureData], parameters: orm.Dict) -> dict:
        """One MdBaseWorkChain per cell, or per chain length with ``batch_replicas`` (replicas ``rXX`` batched)."""
        if not self.ctx.batched:
            return {f'{phase}_{label}': self.submit(MdBaseWorkChain, **self._md_inputs(label, structure, parameters))
                    for label, structure in sorted(structures.items())}
        submitted = {}
        for length in sorted({label[:4] for label in structures}):
            replicas = {label[5:]: structure for label, structure in structures.items() if label[:4] == length}
            md = {'code': self.inputs.code, 'structures': replicas, 'parameters': parameters,
                  'model': self.inputs.model, 'seed': self.inputs.seed,
                  'metadata': {'options': dict(self.inputs.options)}}
            submitted[f'{phase}_{length}'] = self.submit(MdBaseWorkChain, md=md,
                                                         metadata={'call_link_label': length})
        return submitted

    def _retry_unstable(self, phase: str, structures: dict[str, orm.StructureData], parameters: dict):
        """Batched: each replica that became unstable while its batch finished runs again alone from its starting
        cell with the timestep times ``RETRY_TIMESTEP_FACTOR``, same simulated time."""
        if not self.ctx.batched:
            return None
        submitted = {}
        settings = continued_settings({'n_steps': 2_000_000, 'timestep_fs': 0.5, **parameters}, 0,
                                      RETRY_TIMESTEP_FACTOR)
        for label in sorted(structures):
            batch = self.ctx[f'{phase}_{label[:4]}']
            if not batch.is_finished_ok or label[5:] not in batch.outputs.replicas:
                continue
            status = batch.outputs.replicas[label[5:]].output_parameters['status']
            if status.startswith('unstable'):
                self.report(f'{phase} replica {label} ended {status} in its batch; running it alone with timestep '
                            f"{settings['timestep_fs']:g} fs")
                submitted[f'{phase}_retry_{label}'] = self.submit(
                    MdBaseWorkChain, **self._md_inputs(label, structures[label], orm.Dict(settings)))
        return ToContext(**submitted)

    def _replica_outputs(self, phase: str, label: str):
        """The MD outputs (trajectory, log, ...) of cell ``label`` in ``phase``, or the failure message."""
        if not self.ctx.batched or f'{phase}_retry_{label}' in self.ctx:
            node = self.ctx[f'{phase}_retry_{label}' if self.ctx.batched else f'{phase}_{label}']
            return (node.outputs, None) if node.is_finished_ok else (None, node.exit_message)
        node = self.ctx[f'{phase}_{label[:4]}']
        replica = label[5:]
        if not node.is_finished_ok:
            return None, node.exit_message
        outputs = node.outputs.replicas[replica]
        parameters = outputs.output_parameters.get_dict()
        if parameters['status'] != 'finished':
            return None, f"replica {replica} of the batch ended {parameters['status']}: {parameters['message']}"
        return outputs, None

    def run_npt(self):
        return ToContext(**self._submit_phase('npt', self.ctx.structures, self.inputs.npt))

    def retry_npt(self):
        return self._retry_unstable('npt', self.ctx.structures, self.inputs.npt.get_dict())

    def _lengths(self) -> dict[str, list[str]]:
        """The cell labels of each chain length ``nNNN``."""
        lengths: dict[str, list[str]] = {}
        for label in sorted(self.ctx.structures):
            lengths.setdefault(label[:4], []).append(label)
        return lengths

    def _submit_analysis(self, task: str, length: str, logs: dict, trajectories: dict, **extra):
        """One ``AnalysisCalculation`` over the replicas of one chain length, on the code of the MD jobs."""
        inputs = {'code': self.inputs.code, 'task': orm.Str(task), 'npt_logs': logs, 'trajectories': trajectories,
                  'analysis': self.inputs.analysis, **extra,
                  'metadata': {'options': dict(self.inputs.options), 'call_link_label': f'{task}_{length}'}}
        return self.submit(AnalysisCalculation, **inputs)

    def _analysis_outputs(self, task: str, length: str):
        """The finished analysis job of ``task`` for chain length ``length``, or the exit code of its failure."""
        node = self.ctx[f'{task}_{length}']
        if node.is_finished_ok:
            return node, None
        message = f'{node.process_label}<{node.pk}>: [{node.exit_status}] {node.exit_message}'
        return None, self.exit_codes.ERROR_ANALYSIS_FAILED.format(task=task, length=length, message=message)

    def select_frames(self):
        """Per chain length one job finds each replica's NPT frame closest to its mean production density."""
        submitted = {}
        for length, labels in self._lengths().items():
            logs, trajectories = {}, {}
            for label in labels:
                npt, message = self._replica_outputs('npt', label)
                if npt is None:
                    return self.exit_codes.ERROR_NPT_FAILED.format(label=label, message=message)
                logs[label], trajectories[label] = npt.log, npt.trajectory
            submitted[f'density_frame_{length}'] = self._submit_analysis('density_frame', length, logs, trajectories)
        return ToContext(**submitted)

    def run_nvt(self):
        starts = {}
        for length, labels in self._lengths().items():
            node, failure = self._analysis_outputs('density_frame', length)
            if failure is not None:
                return failure
            starts.update({label: node.outputs.structures[label] for label in labels})
        self.ctx.nvt_starts = starts
        self.ctx.nvt_settings = {**self.inputs.nvt.get_dict(), 'initial_velocities': 'maxwell_boltzmann'}
        submitted = self._submit_phase('nvt', starts, orm.Dict(self.ctx.nvt_settings))
        if 'vdos' in self.inputs:
            self.ctx.vdos_settings = {**self.inputs.vdos.get_dict(), 'initial_velocities': 'maxwell_boltzmann'}
            submitted.update(self._submit_phase('vdos', starts, orm.Dict(self.ctx.vdos_settings)))
        return ToContext(**submitted)

    def retry_nvt(self):
        submitted = dict(self._retry_unstable('nvt', self.ctx.nvt_starts, self.ctx.nvt_settings) or {})
        if 'vdos' in self.inputs:
            submitted.update(self._retry_unstable('vdos', self.ctx.nvt_starts, self.ctx.vdos_settings) or {})
        return ToContext(**submitted) if submitted else None

    def analyse(self):
        """Per chain length one job analyses its replicas' NVT runs (and VDOS runs) with their NPT logs."""
        temperature = orm.Float(self.inputs.nvt.get_dict().get('temperature_K', 300.0))
        submitted = {}
        for length, labels in self._lengths().items():
            logs, trajectories, vdos_trajectories, n_units = {}, {}, {}, {}
            for label in labels:
                nvt, message = self._replica_outputs('nvt', label)
                if nvt is None:
                    return self.exit_codes.ERROR_NVT_FAILED.format(label=label, message=message)
                npt, _ = self._replica_outputs('npt', label)
                logs[label], trajectories[label] = npt.log, nvt.trajectory
                n_units[label] = orm.Int(int(CELL_LABEL.match(label).group(1)))
                if 'vdos' in self.inputs:
                    vdos, message = self._replica_outputs('vdos', label)
                    if vdos is None:
                        self.report(f'the VDOS run of {label} failed ({message}): its c_p has no quantum correction')
                    else:
                        vdos_trajectories[label] = vdos.trajectory
            extra = {'vdos_trajectories': vdos_trajectories} if vdos_trajectories else {}
            submitted[f'properties_{length}'] = self._submit_analysis(
                'properties', length, logs, trajectories, n_units=n_units, temperature_K=temperature, **extra)
        return ToContext(**submitted)

    def combine(self):
        for length, labels in self._lengths().items():
            node, failure = self._analysis_outputs('properties', length)
            if failure is not None:
                return failure
            inputs = {}
            for label in labels:
                replica = label[5:]
                inputs[f'scalars_{replica}'] = node.outputs.scalars[label]
                inputs[f'distributions_{replica}'] = node.outputs.distributions[label]
            combined = combine_chain_length(**inputs)
            self.out(f'properties.{length}', combined['properties'])
            self.out(f'distributions.{length}', combined['distributions'])
        return None
