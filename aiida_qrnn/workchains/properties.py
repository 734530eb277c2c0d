"""``PropertiesWorkChain`` (``qrnn.properties``): the paper's property protocol over chain lengths and replicas.

Per cell: NPT (``MdBaseWorkChain``) → the NPT frame whose density is closest to the mean density of the NPT
production window (detected from the data, :mod:`aiida_qrnn.core.analysis.equilibration`) → NVT, and with ``vdos``
a short densely sampled NVT from the same frame for the vibrational density of states → analyses
(:mod:`aiida_qrnn.core.analysis.properties`: density, c_p classical and quantum-corrected, D raw and Yeh–Hummer,
flags for runs too short). Per chain length the replicas are combined into property nodes with value, standard
deviation over replicas, unit and flags. Without a ``model`` every MD job uses the classical OPLS-AA baseline, so
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

from aiida_qrnn.calculations.sampling import build_cells, validate_cell_parameters
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.workchains import protocols
from aiida_qrnn.workchains.md import MdBaseWorkChain, continued_settings
from aiida_qrnn.workchains.protocols.utils import ProtocolMixin

#: Timestep factor of the lone rerun of a replica that became unstable inside a batch.
RETRY_TIMESTEP_FACTOR = 0.5

__all__ = ('PropertiesWorkChain', 'analyse_replica', 'combine_chain_length', 'load_protocol', 'plot_against_experiment',
           'select_density_frame')

#: ``discard_fraction``: the least part of the NPT run discarded (the paper's 20 %; the data may push it later);
#: ``min_independent_samples``: fewer uncorrelated samples flag a value; ``viscosity_mPa_s`` (optional) replaces the
#: experimental viscosity in the Yeh–Hummer correction.
ANALYSIS_DEFAULTS = {'discard_fraction': 0.2, 'min_independent_samples': 10.0, 'msd_fit_start_fraction': 0.1,
                     'msd_fit_end_fraction': 0.5}
CELL_LABEL = re.compile(r'^n(\d{3})_r(\d{2})$')


def load_protocol(name: str | None = None) -> dict[str, Any]:
    """The ``cells``, ``npt``, ``nvt`` and ``analysis`` parameters of protocol ``name`` (the default when None)."""
    return protocols.load_protocol('properties', name)


def _trajectory(node: orm.SinglefileData):
    from aiida_qrnn.core.md import read_trajectory

    with node.as_path() as path:
        return read_trajectory(path)


@calcfunction
def select_density_frame(trajectory: orm.SinglefileData, log: orm.ArrayData, analysis: orm.Dict) -> orm.StructureData:
    """The NPT frame whose density is closest to the mean density of the NPT production window (detected from the
    data), searched within that window."""
    from aiida_qrnn.core.analysis.density import density_g_cm3, equilibrated_density, frame_closest_to_mean

    settings = {**ANALYSIS_DEFAULTS, **analysis.get_dict()}
    frames = _trajectory(trajectory)
    total_mass = float(frames.masses.sum())
    steps = log.get_array('step')
    density = equilibrated_density(log.get_array('volume_A3'), total_mass,
                                   min_discard_fraction=settings['discard_fraction'],
                                   min_independent_samples=settings['min_independent_samples'])
    mean = density.mean_g_cm3
    first_step = steps[len(steps) - density.n_samples]
    candidates = np.flatnonzero(frames.steps >= first_step)
    if len(candidates) == 0:
        candidates = np.arange(len(frames.steps))
    frame_densities = density_g_cm3(total_mass, np.abs(np.linalg.det(frames.cells[candidates])))
    index = int(candidates[frame_closest_to_mean(frame_densities, mean)])
    atoms = frames.to_atoms(index)
    structure = orm.StructureData(ase=atoms)
    structure.base.attributes.set('npt_step', int(frames.steps[index]))
    structure.base.attributes.set('npt_mean_density_g_cm3', float(mean))
    return structure


@calcfunction
def analyse_replica(npt_log: orm.ArrayData, nvt_trajectory: orm.SinglefileData, temperature_K: orm.Float,
                    analysis: orm.Dict, n_units: orm.Int | None = None,
                    vdos_trajectory: orm.SinglefileData | None = None) -> dict[str, orm.Data]:
    """Scalars (density, c_p classical and quantum, D raw and Yeh–Hummer, mean R_g; errors, statistical
    inefficiencies and too-short flags) and distributions (OCCO, O-H g(r), R_g) of one replica."""
    from aiida_qrnn.core.analysis.properties import replica_properties

    settings = {**ANALYSIS_DEFAULTS, **analysis.get_dict()}
    log = {name: npt_log.get_array(name) for name in npt_log.get_arraynames()}
    viscosity = settings.get('viscosity_mPa_s')
    scalars, distributions = replica_properties(
        log, _trajectory(nvt_trajectory), temperature_K=temperature_K.value,
        n_units=n_units.value if n_units is not None else None,
        vdos_trajectory=_trajectory(vdos_trajectory) if vdos_trajectory is not None else None,
        discard_fraction=settings['discard_fraction'], min_independent_samples=settings['min_independent_samples'],
        msd_fit=(settings['msd_fit_start_fraction'], settings['msd_fit_end_fraction']),
        viscosity_Pa_s=float(viscosity) * 1e-3 if viscosity is not None else None,
    )
    return {'scalars': orm.Dict(scalars), 'distributions': _distribution_node(distributions)}


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
                   help='discard_fraction, min_independent_samples, msd_fit_start_fraction, msd_fit_end_fraction, '
                        'viscosity_mPa_s (optional).')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(0), help='Velocity seed (plus the replica).')
        spec.input('options', valid_type=dict, non_db=True, default=dict, help='metadata.options of the MD jobs.')
        spec.input('batch_replicas', valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help='QRNN: run the replicas of one chain length as batched replicas of one MD job per phase.')
        spec.outline(cls.setup, cls.run_npt, cls.retry_npt, cls.run_nvt, cls.retry_nvt, cls.analyse, cls.combine)
        spec.output_namespace('properties', valid_type=orm.Dict, dynamic=True,
                              help='Per chain length n{units:03d}: {property: {value, uncertainty, unit, ...}}.')
        spec.output_namespace('distributions', valid_type=orm.ArrayData, dynamic=True,
                              help='Per chain length: OCCO torsion, O-H g(r), R_g distributions (mean, *_std).')
        spec.exit_code(401, 'ERROR_NO_STRUCTURES', message='Give either structures or cells parameters.')
        spec.exit_code(402, 'ERROR_BAD_LABEL',
                       message='Structure label {label!r} is not n{{units:03d}}_r{{replica:02d}}.')
        spec.exit_code(410, 'ERROR_NPT_FAILED', message='The NPT run of {label} failed: {message}')
        spec.exit_code(420, 'ERROR_NVT_FAILED', message='The NVT run of {label} failed: {message}')

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

    def run_nvt(self):
        starts = {}
        for label in sorted(self.ctx.structures):
            npt, message = self._replica_outputs('npt', label)
            if npt is None:
                return self.exit_codes.ERROR_NPT_FAILED.format(label=label, message=message)
            starts[label] = select_density_frame(npt.trajectory, npt.log, self.inputs.analysis)
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
        self.ctx.analysed = {}
        temperature = orm.Float(self.inputs.nvt.get_dict().get('temperature_K', 300.0))
        for label in sorted(self.ctx.structures):
            nvt, message = self._replica_outputs('nvt', label)
            if nvt is None:
                return self.exit_codes.ERROR_NVT_FAILED.format(label=label, message=message)
            npt, _ = self._replica_outputs('npt', label)
            extra = {'n_units': orm.Int(int(CELL_LABEL.match(label).group(1)))}
            if 'vdos' in self.inputs:
                vdos, message = self._replica_outputs('vdos', label)
                if vdos is None:
                    self.report(f'the VDOS run of {label} failed ({message}): its c_p has no quantum correction')
                else:
                    extra['vdos_trajectory'] = vdos.trajectory
            self.ctx.analysed[label] = analyse_replica(npt.log, nvt.trajectory, temperature, self.inputs.analysis,
                                                       **extra)
        return None

    def combine(self):
        lengths = sorted({label[:4] for label in self.ctx.analysed})
        for length in lengths:
            inputs = {}
            for label, results in self.ctx.analysed.items():
                if label.startswith(length):
                    replica = label[5:]
                    inputs[f'scalars_{replica}'] = results['scalars']
                    inputs[f'distributions_{replica}'] = results['distributions']
            combined = combine_chain_length(**inputs)
            self.out(f'properties.{length}', combined['properties'])
            self.out(f'distributions.{length}', combined['distributions'])
