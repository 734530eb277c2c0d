"""Pair and torsion scans (``qrnn.pair_scan``, ``qrnn.torsion_scan``): one geometry set, three energy curves.

The scan geometries are one ``ClusterSetData`` (kind ``scan``), so the reference energies come from
``LabelWorkChain`` like every other label (batches, restarts, reuse of labels already in the database). The
classical OPLS-AA and the QRNN energies of the same geometries are single points in calcfunctions (tens of
geometries of two molecules: seconds). Geometries and conventions: :mod:`aiida_qrnn.core.analysis.scans`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction

from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.workchains.label import LabelWorkChain
from aiida_qrnn.workchains.protocols.utils import ProtocolMixin, nest_builder

__all__ = ('PairScanWorkChain', 'TorsionScanWorkChain', 'classical_energies', 'qrnn_energies', 'scan_curves')


def _images(clusters: ClusterSetData):
    from aiida_qrnn.core.topology import find_bonds

    with clusters.open_cluster_set() as cluster_set:
        images = list(cluster_set)
    for image in images:
        image.calc = None  # the scan set may carry labels; evaluate afresh
    return images, find_bonds(images[-1])


@calcfunction
def build_pair_scan(structure: orm.StructureData, parameters: orm.Dict) -> dict[str, orm.Data]:
    """Scan geometries of molecules ``parameters['molecules']`` (default: molecule 0 and its nearest neighbour)."""
    from aiida_qrnn.core.analysis.msd import molecular_centres_of_mass
    from aiida_qrnn.core.analysis.scans import pair_scan_geometries
    from aiida_qrnn.core.topology import find_bonds, make_molecules_whole, molecule_ids

    values = parameters.get_dict()
    atoms = structure.get_ase()
    bonds = find_bonds(atoms)
    molecules = molecule_ids(len(atoms), bonds)
    if atoms.pbc.any():
        atoms.positions = make_molecules_whole(atoms, bonds)
    pair = values.get('molecules')
    if pair is None:
        centres = molecular_centres_of_mass(atoms.positions[None], atoms.get_masses(), molecules)[0]  # (n_mol, 3)
        separations = centres - centres[0]
        if atoms.pbc.any():
            fractional = np.linalg.solve(atoms.cell.array.T, separations.T).T
            separations -= (np.round(fractional) * atoms.pbc) @ atoms.cell.array
        distances = np.linalg.norm(separations, axis=1)
        distances[0] = np.inf
        pair = [0, int(np.argmin(distances))]
    distances, images = pair_scan_geometries(atoms, molecules, pair[0], pair[1], values.get('n_points', 20))
    coordinate = orm.ArrayData()
    coordinate.set_array('centre_distance_A', distances)
    return {'clusters': ClusterSetData.from_atoms(images), 'coordinate': coordinate}


@calcfunction
def build_torsion_scan(structure: orm.StructureData, parameters: orm.Dict) -> dict[str, orm.Data]:
    """Rigid OCCO scan of a molecule (default: the first OCCO dihedral) from -180 up to, without, 180 degrees
    (the same geometry as -180, which would get the same cluster id)."""
    from aiida_qrnn.core.analysis.dihedrals import find_dihedrals
    from aiida_qrnn.core.analysis.scans import torsion_scan_geometries
    from aiida_qrnn.core.topology import find_bonds

    values = parameters.get_dict()
    molecule = structure.get_ase()
    quadruplet = values.get('quadruplet') or find_dihedrals(molecule, ('O', 'C', 'C', 'O'))[0].tolist()
    step = float(values.get('step_deg', 5.0))
    angles = np.arange(-180.0, 180.0 - step / 2, step)
    images = torsion_scan_geometries(molecule, quadruplet, angles, find_bonds(molecule))
    coordinate = orm.ArrayData()
    coordinate.set_array('dihedral_deg', angles)
    return {'clusters': ClusterSetData.from_atoms(images), 'coordinate': coordinate}


@calcfunction
def diethylene_glycol() -> orm.StructureData:
    """HO-(CH2CH2O)2-H from RDKit (seed 0), the molecule of the paper's torsion scan."""
    from aiida_qrnn.core.structures import ethylene_glycol_oligomer

    return orm.StructureData(ase=ethylene_glycol_oligomer(2, seed=0))


@calcfunction
def classical_energies(clusters: ClusterSetData) -> orm.ArrayData:
    """OPLS-AA energies (eV) of every scan geometry; bonds from the last geometry (molecules farthest apart)."""
    from aiida_qrnn.core.forcefield import OplsAaCalculator

    images, bonds = _images(clusters)
    calculator = OplsAaCalculator(bonds, platform='Reference')
    energies = []
    for image in images:
        image.calc = calculator
        energies.append(image.get_potential_energy())
    result = orm.ArrayData()
    result.set_array('energy_eV', np.array(energies))
    return result


@calcfunction
def qrnn_energies(clusters: ClusterSetData, model: ModelData) -> orm.ArrayData:
    """QRNN energies (eV) of every scan geometry."""
    from aiida_qrnn.core.model.calculator import QRNNCalculator

    images, _ = _images(clusters)
    calculator = QRNNCalculator.from_model(model)
    energies = []
    for image in images:
        image.calc = calculator
        energies.append(image.get_potential_energy())
    result = orm.ArrayData()
    result.set_array('energy_eV', np.array(energies))
    return result


@calcfunction
def scan_curves(coordinate: orm.ArrayData, reference: ClusterSetData, classical: orm.ArrayData,
                settings: orm.Dict, **qrnn: orm.ArrayData) -> dict[str, orm.Data]:
    """Relative energy curves (eV; reference, OPLS-AA and, if given, QRNN) and their plot (kcal/mol)."""
    import tempfile
    from pathlib import Path

    from aiida_qrnn.core.analysis.scans import plot_scan, relative_curve

    values = settings.get_dict()
    x_name = coordinate.get_arraynames()[0]
    x = coordinate.get_array(x_name)
    labelled = reference.get_arrays()
    if labelled.n_clusters != len(x):
        raise ValueError(f'the reference engine labelled {labelled.n_clusters} of {len(x)} scan geometries.')
    curves = {
        reference.level_of_theory or 'reference': relative_curve(labelled.labels['energy'], values['relative_to']),
        'OPLS-AA': relative_curve(classical.get_array('energy_eV'), values['relative_to']),
    }
    if 'model' in qrnn:
        curves['QRNN'] = relative_curve(qrnn['model'].get_array('energy_eV'), values['relative_to'])
    result = orm.ArrayData()
    result.set_array(x_name, x)
    for name, curve in zip(('reference', 'classical', 'qrnn'), curves.values(), strict=False):
        result.set_array(f'{name}_relative_energy_eV', curve)
    result.base.attributes.set('labels', list(curves))
    with tempfile.TemporaryDirectory() as directory:
        path = plot_scan(x, curves, Path(directory) / 'scan.png', xlabel=values['xlabel'], title=values.get('title'))
        plot = orm.SinglefileData(path)
    return {'curves': result, 'plot': plot}


class _ScanWorkChain(ProtocolMixin, WorkChain):
    """Shared steps: label the scan set with the reference engine, evaluate OPLS-AA and the QRNN, make the curves."""

    _relative_to = 'last'
    _xlabel = ''

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('model', valid_type=ModelData, required=False, help='The QRNN (its curve is left out without).')
        spec.expose_inputs(LabelWorkChain, namespace='reference', exclude=('clusters',),
                           namespace_options={'help': 'The reference engine (LabelWorkChain inputs but clusters).'})
        spec.output('clusters', valid_type=ClusterSetData, help='The scan geometries with the reference labels.')
        spec.output('curves', valid_type=orm.ArrayData, help='Scan coordinate and relative energies (eV).')
        spec.output('plot', valid_type=orm.SinglefileData, help='The curves, kcal/mol, as PNG.')
        spec.exit_code(450, 'ERROR_REFERENCE_FAILED', message='The reference labelling failed: {message}')

    @classmethod
    def get_builder_from_protocol(
        cls, label_code: orm.AbstractCode, protocol: str | None = None, *, model: ModelData | None = None,
        structure: orm.StructureData | None = None, d3bj_code: orm.AbstractCode | None = None,
        charges_code: orm.AbstractCode | None = None, overrides: dict[str, Any] | None = None,
    ):
        """A builder from ``protocols/<pair|torsion>_scan.yaml``; ``reference`` is ``LabelWorkChain``'s protocol of
        the same name for ``label_code`` (overrides under ``reference`` go to it)."""
        name = protocol or cls.get_default_protocol()
        own, children = cls._split_overrides(overrides, 'reference')
        reference = LabelWorkChain.get_builder_from_protocol(label_code, name, d3bj_code=d3bj_code,
                                                             charges_code=charges_code, overrides=children['reference'])
        builder = cls._builder_from_protocol(name, own, {'model': model, 'structure': structure})
        nest_builder(builder.reference, reference, exclude=('clusters',))
        return builder

    def label(self):
        inputs = self.exposed_inputs(LabelWorkChain, 'reference')
        return ToContext(reference=self.submit(LabelWorkChain, clusters=self.ctx.clusters, **inputs))

    def results(self):
        reference = self.ctx.reference
        if not reference.is_finished_ok:
            return self.exit_codes.ERROR_REFERENCE_FAILED.format(message=reference.exit_message)
        qrnn = {'model': qrnn_energies(self.ctx.clusters, self.inputs.model)} if 'model' in self.inputs else {}
        settings = orm.Dict({'relative_to': self._relative_to, 'xlabel': self._xlabel})
        curves = scan_curves(self.ctx.coordinate, reference.outputs.clusters, classical_energies(self.ctx.clusters),
                             settings, **qrnn)
        self.out('clusters', reference.outputs.clusters)
        self.out('curves', curves['curves'])
        self.out('plot', curves['plot'])
        return None


class PairScanWorkChain(_ScanWorkChain):
    """Two molecules of a frame, one translated along the line of centres from 0.75x to 3x their distance."""

    _relative_to = 'last'
    _xlabel = 'centre-of-mass distance (Å)'
    _protocol_kind = 'pair_scan'

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, help='A frame (periodic or not) of whole molecules.')
        spec.input('parameters', valid_type=orm.Dict, default=lambda: orm.Dict({'n_points': 20}),
                   help='n_points (default 20); molecules: [i, j] (default: molecule 0 and its nearest neighbour).')
        spec.outline(cls.build, cls.label, cls.results)

    def build(self) -> None:
        built = build_pair_scan(self.inputs.structure, self.inputs.parameters)
        self.ctx.clusters, self.ctx.coordinate = built['clusters'], built['coordinate']


class TorsionScanWorkChain(_ScanWorkChain):
    """Rigid OCCO torsion scan of diethylene glycol (or ``structure``) in ``step_deg`` steps (5 in the paper)."""

    _relative_to = 'minimum'
    _xlabel = 'OCCO dihedral (degree)'
    _protocol_kind = 'torsion_scan'

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, required=False,
                   help='One molecule; default diethylene glycol.')
        spec.input('parameters', valid_type=orm.Dict, default=lambda: orm.Dict({'step_deg': 5.0}),
                   help='step_deg (default 5); quadruplet: [a, b, c, d] (default: the first OCCO).')
        spec.outline(cls.build, cls.label, cls.results)

    def build(self) -> None:
        structure = self.inputs.structure if 'structure' in self.inputs else diethylene_glycol()
        built = build_torsion_scan(structure, self.inputs.parameters)
        self.ctx.clusters, self.ctx.coordinate = built['clusters'], built['coordinate']
