"""The analysis contract (``_prepare``/``_single_frame``/``_conclude``, ``.results``) over the frame iterator, the
analyses against analytic answers, and MDAnalysis reading the MD engine's H5MD as our reader does."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.io import write

from aiida_qrnn.core.analysis.base import AnalysisBase, AnalysisCollection, Results
from aiida_qrnn.core.analysis.dihedrals import DihedralDistribution
from aiida_qrnn.core.analysis.frames import FrameReader
from aiida_qrnn.core.analysis.msd import CentreOfMassMSD
from aiida_qrnn.core.analysis.quantum_correction import VibrationalDensityOfStates
from aiida_qrnn.core.analysis.radius_of_gyration import RadiusOfGyration
from aiida_qrnn.core.md import TrajectoryWriter
from aiida_qrnn.core.md.trajectory import TrajectoryArrays


class Recorder(AnalysisBase):
    """Records every call of the contract."""

    def _prepare(self) -> None:
        self.calls = [('prepare', self.n_frames)]
        self.results.steps = np.zeros(self.n_frames, dtype=int)

    def _single_frame(self) -> None:
        self.calls.append(('frame', self._frame_index, self._frame.index))
        self.results.steps[self._frame_index] = self._frame.step

    def _conclude(self) -> None:
        self.calls.append(('conclude',))
        self.results.total = int(self.results.steps.sum())


def _arrays(n_frames: int = 10, n_atoms: int = 4, seed: int = 0) -> TrajectoryArrays:
    rng = np.random.default_rng(seed)
    return TrajectoryArrays(numbers=np.full(n_atoms, 18), masses=np.full(n_atoms, 39.948),
                            steps=10 * np.arange(n_frames), times_fs=5.0 * np.arange(n_frames),
                            positions=rng.normal(size=(n_frames, n_atoms, 3)),
                            cells=np.repeat(10.0 * np.eye(3)[None], n_frames, axis=0), pbc=np.ones(3, dtype=bool),
                            velocities=rng.normal(size=(n_frames, n_atoms, 3)), molecule=np.arange(n_atoms) // 2)


def _counting_reader(arrays: TrajectoryArrays, chunk_frames: int) -> tuple[FrameReader, list[slice]]:
    loads: list[slice] = []
    reader = FrameReader.from_arrays(arrays, chunk_frames=chunk_frames)
    inner = reader._load

    def load(frames: slice) -> TrajectoryArrays:
        loads.append(frames)
        return inner(frames)

    reader._load, reader._cached = load, None
    return reader, loads


def test_run_calls_prepare_each_selected_frame_then_conclude():
    arrays = _arrays()
    analysis = Recorder(FrameReader.from_arrays(arrays, chunk_frames=3)).run(start=1, stop=9, step=3)
    assert analysis.calls == [('prepare', 3), ('frame', 0, 1), ('frame', 1, 4), ('frame', 2, 7), ('conclude',)]
    np.testing.assert_array_equal(analysis.frames, [1, 4, 7])
    np.testing.assert_array_equal(analysis.times_fs, [5.0, 20.0, 35.0])
    assert analysis.results.total == 10 + 40 + 70 and analysis.results['total'] == analysis.results.total
    with pytest.raises(AttributeError, match="no result 'missing'"):
        _ = analysis.results.missing
    assert isinstance(analysis.results, Results)
    # Run again on all frames: fresh results.
    assert Recorder(FrameReader.from_arrays(arrays)).run().results.total == 10 * sum(range(10))


def test_collection_reads_the_trajectory_once_in_chunks():
    """Two analyses in one collection: frames 0..9 read as three chunks (4 + 4 + 2), each once; frames equal the
    arrays."""
    arrays = _arrays()
    reader, loads = _counting_reader(arrays, chunk_frames=4)
    first, second = Recorder(reader), RadiusOfGyration(reader)
    AnalysisCollection(first, second).run()
    assert [(frames.start, frames.stop) for frames in loads] == [(0, 4), (4, 8), (8, 10)]
    expected = np.sqrt(((arrays.positions[:, 0] - arrays.positions[:, 1]) ** 2).sum(axis=1)) / 2  # equal masses
    np.testing.assert_allclose(second.results.rg_A[:, 0], expected, rtol=1e-12)
    assert first.results.total == 10 * sum(range(10))


def test_bad_selections_and_inputs_are_refused_with_the_trajectory_named(tmp_path):
    arrays = _arrays()
    reader = FrameReader.from_arrays(arrays, name='nvt.h5')
    with pytest.raises(ValueError, match=r'nvt\.h5: no frames selected'):
        Recorder(reader).run(start=20)
    with pytest.raises(ValueError, match='step must be a positive integer'):
        Recorder(reader).run(step=0)
    without_molecules = FrameReader.from_arrays(TrajectoryArrays(**{**vars(arrays), 'molecule': None}), name='a.h5')
    with pytest.raises(ValueError, match=r'a\.h5 has no molecule ids'):
        CentreOfMassMSD(without_molecules)
    with pytest.raises(ValueError, match='fit_start_fraction'):
        CentreOfMassMSD(reader, fit_start_fraction=0.6, fit_end_fraction=0.5)
    uneven = TrajectoryArrays(**{**vars(arrays), 'times_fs': arrays.times_fs**1.5})
    with pytest.raises(ValueError, match='not evenly spaced'):
        VibrationalDensityOfStates(FrameReader.from_arrays(uneven)).run()
    not_a_trajectory = tmp_path / 'notes.txt'
    not_a_trajectory.write_text('hello')
    with pytest.raises(ValueError, match=r'notes\.txt is not an H5MD trajectory'):
        FrameReader.open(not_a_trajectory)
    with pytest.raises(ValueError, match=r'missing\.h5: cannot read the trajectory'):
        FrameReader.open(tmp_path / 'missing.h5')


def test_msd_of_constant_velocity_molecules_is_ballistic():
    """Molecules moving at constant velocity v: MSD(tau) = |v|^2 tau^2 exactly (MDAnalysis's analytic test)."""
    n_frames, n_molecules = 50, 3
    velocity = np.array([0.01, -0.02, 0.005])  # Å/fs
    times = 2.0 * np.arange(n_frames)
    centres = times[:, None, None] * velocity + np.arange(n_molecules)[None, :, None] * 3.0  # (F, M, 3)
    positions = np.repeat(centres, 2, axis=1) + np.array([[0.5, 0, 0], [-0.5, 0, 0]] * n_molecules)[None]
    arrays = TrajectoryArrays(numbers=np.full(2 * n_molecules, 8), masses=np.full(2 * n_molecules, 16.0),
                              steps=np.arange(n_frames), times_fs=times, positions=positions,
                              cells=np.repeat(30.0 * np.eye(3)[None], n_frames, axis=0), pbc=np.ones(3, dtype=bool),
                              velocities=None, molecule=np.repeat(np.arange(n_molecules), 2))
    msd = CentreOfMassMSD(FrameReader.from_arrays(arrays, chunk_frames=7)).run()
    np.testing.assert_allclose(msd.results.msd_A2, (velocity @ velocity) * msd.results.lag_times_fs**2, rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(msd.results.centres_A, centres, atol=1e-12)


def test_occo_torsion_of_a_rigid_molecule_is_one_angle():
    """Ethylene glycol at a fixed OCCO angle in every frame: one populated 5-degree bin holding all probability."""
    from aiida_qrnn.core.analysis.dihedrals import find_dihedrals
    from aiida_qrnn.core.structures import ethylene_glycol_oligomer

    molecule = ethylene_glycol_oligomer(1, seed=0)
    molecule.set_cell([20.0] * 3)
    molecule.pbc = True
    o1, c1, c2, o2 = find_dihedrals(molecule)[0]
    molecule.set_dihedral(o1, c1, c2, o2, 67.0)
    n_frames = 6
    shifts = np.arange(n_frames, dtype=float)[:, None, None]  # the molecule translates, its torsion stays
    arrays = TrajectoryArrays(numbers=molecule.numbers, masses=molecule.get_masses(), steps=np.arange(n_frames),
                              times_fs=np.arange(n_frames, dtype=float),
                              positions=np.repeat(molecule.positions[None], n_frames, axis=0) + shifts,
                              cells=np.repeat(molecule.cell.array[None], n_frames, axis=0), pbc=molecule.pbc,
                              velocities=None, molecule=np.zeros(len(molecule), dtype=int))
    torsions = DihedralDistribution(FrameReader.from_arrays(arrays)).run()
    np.testing.assert_allclose(torsions.results.angles_deg, 67.0, atol=1e-9)
    populated = torsions.results.probability_density_per_deg > 0
    assert populated.sum() == 1 and torsions.results.angle_deg[populated][0] == pytest.approx(67.5)
    assert torsions.results.probability_density_per_deg.sum() * 5.0 == pytest.approx(1.0)


def _write_npt_like_h5md(path, n_frames: int = 12) -> Atoms:
    """A drifting, wrapped random walk in a shrinking triclinic cell, written by the MD engine's writer."""
    rng = np.random.default_rng(5)
    shape = np.array([[9.0, 0.0, 0.0], [1.5, 8.5, 0.0], [0.7, -0.4, 10.0]])
    atoms = Atoms('OH2OH2', positions=rng.uniform(0, 8, (6, 3)), cell=shape, pbc=True)
    atoms.arrays['molecule'] = np.repeat([0, 1], 3)
    with TrajectoryWriter(path, atoms) as writer:
        for frame in range(n_frames):
            atoms.set_cell(shape * (1.0 - 0.01 * frame), scale_atoms=False)
            atoms.positions += np.array([1.0, 0.4, -0.3]) + rng.normal(0.0, 0.3, (6, 3))  # drifts through the cell
            atoms.set_velocities(rng.normal(0.0, 0.01, (6, 3)))
            atoms.wrap()
            writer.append(atoms, step=20 * frame, time_fs=10.0 * frame)
    return atoms


def test_mdanalysis_reads_our_h5md_as_our_reader_does(tmp_path):
    """``MDAnalysis.Universe(topology, h5md)`` on the MD engine's file: the same unwrapped positions (float32), cell
    (lengths and angles), times (ps there) and velocities (Å/ps there) as the frame reader, frame by frame."""
    import MDAnalysis as mda
    from ase.geometry import cell_to_cellpar

    atoms = _write_npt_like_h5md(tmp_path / 'trajectory.h5')
    write(tmp_path / 'topology.pdb', atoms)
    universe = mda.Universe(str(tmp_path / 'topology.pdb'), str(tmp_path / 'trajectory.h5'), format='H5MD')
    ours = FrameReader.open(tmp_path / 'trajectory.h5', chunk_frames=5)
    assert universe.trajectory.n_frames == ours.n_frames == 12
    assert universe.trajectory.units['length'] == 'Angstrom' and universe.trajectory.units['time'] == 'fs'
    frames = list(ours)
    assert np.abs(frames[-1].positions - frames[0].positions).max() > 9.0  # unwrapped beyond the cell
    for timestep, frame in zip(universe.trajectory, frames, strict=True):
        np.testing.assert_allclose(timestep.positions, frame.positions, atol=2e-5)
        np.testing.assert_allclose(timestep.dimensions, cell_to_cellpar(frame.cell), rtol=2e-6)
        assert timestep.time * 1000.0 == pytest.approx(frame.time_fs)  # MDAnalysis converts to ps
        assert timestep.data['step'] == frame.step
        np.testing.assert_allclose(timestep.velocities, frame.velocities * 1000.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(universe.atoms.masses.round(3), ours.masses.round(3))


def test_a_file_that_is_not_h5md_is_refused_by_name(tmp_path):
    """Both MD engines write H5MD; an ASE ``.traj`` (the classical job's old format) is refused naming the file."""
    atoms = _write_npt_like_h5md(tmp_path / 'trajectory.h5', n_frames=2)
    write(tmp_path / 'nvt.traj', atoms)
    with pytest.raises(ValueError, match=r'nvt\.traj is not an H5MD trajectory'):
        FrameReader.open(tmp_path / 'nvt.traj')
