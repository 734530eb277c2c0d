"""H5MD trajectory: unwrapping on write, reading back, molecules made whole."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from aiida_qrnn.core.md import TrajectoryWriter, read_trajectory, unwrap_trajectory
from aiida_qrnn.core.topology import make_molecules_whole


def _random_walk(n_frames: int, n_atoms: int, step_A: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(0.0, step_A, size=(n_frames, n_atoms, 3)), axis=0)  # (frames, atoms, 3)


@pytest.mark.parametrize('shrink', [1.0, 0.95])
def test_writer_unwraps_wrapped_positions(tmp_path, shrink):
    """Positions wrapped into a triclinic cell before every write come back continuous: in a fixed cell exactly
    the walk (up to the whole cell vectors of the first frame's wrapping); in a cell shrinking by 5 % (NPT)
    without any jump by a cell vector (largest frame-to-frame move below 4 Å, as the walk's)."""
    true = _random_walk(200, 20, 0.6, seed=0)
    shape = np.array([[10.0, 0.0, 0.0], [2.0, 9.0, 0.0], [1.0, 1.5, 11.0]])
    cells = shape * np.linspace(1.0, shrink, 200)[:, None, None]  # (frames, 3, 3)
    atoms = Atoms('Ar20', positions=true[0], cell=cells[0], pbc=True)
    with TrajectoryWriter(tmp_path / 'walk.h5', atoms) as writer:
        for frame in range(200):
            atoms.set_cell(cells[frame])
            atoms.set_positions(true[frame])
            atoms.wrap()
            writer.append(atoms, step=10 * frame, time_fs=5.0 * frame)
    read = read_trajectory(tmp_path / 'walk.h5')
    assert np.abs(read.positions[-1] - read.positions[0]).max() > 12.0  # the walk crossed the boundaries
    assert np.abs(np.diff(read.positions, axis=0)).max() == pytest.approx(np.abs(np.diff(true, axis=0)).max(),
                                                                          abs=0.5)
    if shrink == 1.0:
        offset = np.broadcast_to(read.positions[0] - true[0], true.shape)
        np.testing.assert_allclose(read.positions - true, offset, atol=1e-9)
    np.testing.assert_array_equal(read.steps, 10 * np.arange(200))
    np.testing.assert_allclose(read.cells, cells)
    assert read.to_atoms(3).info['time_fs'] == 15.0


def test_unwrap_trajectory_inverts_wrapping():
    true = _random_walk(100, 5, 1.0, seed=1)
    cells = np.repeat(np.eye(3)[None] * 8.0, 100, axis=0)
    wrapped = true - np.floor(true / 8.0) * 8.0
    assert np.abs(wrapped - true).max() > 8.0  # the walk crossed the boundary several times
    np.testing.assert_allclose(unwrap_trajectory(wrapped, cells), true - (true[0] - wrapped[0]), atol=1e-9)


def test_h5md_layout_and_units(tmp_path):
    """The H5MD 1.1 elements and unit strings that MDAnalysis's H5MD reader looks for."""
    atoms = Atoms('H2O', positions=[[0, 0, 0], [0.96, 0, 0], [0, 0.96, 0]], cell=[8, 8, 8], pbc=True)
    atoms.arrays['molecule'] = np.zeros(3, dtype=int)
    atoms.set_velocities(np.ones((3, 3)))
    with TrajectoryWriter(tmp_path / 'w.h5', atoms) as writer:
        writer.append(atoms, step=0, time_fs=0.0)
    with h5py.File(tmp_path / 'w.h5') as handle:
        assert list(handle['h5md'].attrs['version']) == [1, 1]
        assert handle['particles/all/position/value'].attrs['unit'] == 'Angstrom'
        assert handle['particles/all/velocity/value'].attrs['unit'] == 'Angstrom fs-1'
        assert handle['particles/all/position/time'].attrs['unit'] == 'fs'
        assert handle['particles/all/box/edges/value'].shape == (1, 3, 3)
    read = read_trajectory(tmp_path / 'w.h5')
    np.testing.assert_allclose(read.to_atoms(0).get_velocities(), 1.0)
    np.testing.assert_array_equal(read.molecule, 0)


def test_make_molecules_whole():
    """Ethanol split across the boundary of a 6 Å cell is put back together with its bond lengths."""
    ethanol = molecule('CH3CH2OH')
    ethanol.center(vacuum=0.0)
    atoms = ethanol.copy()
    atoms.set_cell([6.0, 6.0, 6.0])
    atoms.pbc = True
    atoms.translate([4.5, 0.0, 0.0])
    atoms.wrap()
    assert np.ptp(atoms.positions[:, 0]) > 4.0  # split
    whole = make_molecules_whole(atoms, molecule_ids=np.zeros(len(atoms), dtype=int))
    reference = ethanol.positions - ethanol.positions[0]
    np.testing.assert_allclose(whole - whole[0], reference, atol=1e-9)


def test_missing_trajectory_is_named(tmp_path):
    with pytest.raises(ValueError, match=r'nothing\.h5'):
        read_trajectory(tmp_path / 'nothing.h5')


def test_observables_and_stage_are_written_read_and_cut_back_with_the_frames(tmp_path):
    """Per-frame scalars of the classical run (H5MD /observables) and its stage; reopening at a checkpoint cuts
    them with the positions; undeclared or missing observables are refused by name."""
    atoms = Atoms('H2O', positions=[[0, 0, 0], [0.96, 0, 0], [0, 0.96, 0]], cell=[8, 8, 8], pbc=True)
    names = ('temperature_K', 'density_g_cm3')
    with TrajectoryWriter(tmp_path / 's.h5', atoms, observables=names, stage='npt') as writer:
        for frame in range(3):
            writer.append(atoms, step=frame, time_fs=0.5 * frame,
                          observables={'temperature_K': 300.0 + frame, 'density_g_cm3': 1.0})
        with pytest.raises(ValueError, match=r"frame observables \['temperature_K'\] differ"):
            writer.append(atoms, step=3, time_fs=1.5, observables={'temperature_K': 1.0})
    with h5py.File(tmp_path / 's.h5') as handle:
        assert handle['observables/density_g_cm3/value'].attrs['unit'] == 'g cm-3'
    with TrajectoryWriter(tmp_path / 's.h5', atoms, observables=names, keep_frames=2) as writer:
        writer.append(atoms, step=9, time_fs=4.5, observables={'temperature_K': 310.0, 'density_g_cm3': 1.1})
    read = read_trajectory(tmp_path / 's.h5')
    np.testing.assert_allclose(read.observables['temperature_K'], [300.0, 301.0, 310.0])
    frames = read.frames()
    assert [frame.info['step'] for frame in frames] == [0, 1, 9]
    assert frames[-1].info == {'step': 9, 'time_fs': 4.5, 'temperature_K': 310.0, 'density_g_cm3': 1.1,
                               'stage': 'npt'}
    with pytest.raises(ValueError, match=r"unknown trajectory observable\(s\) \['pressure'\]"):
        TrajectoryWriter(tmp_path / 'p.h5', atoms, observables=('pressure',))


def test_mdanalysis_reads_the_observables(tmp_path):
    """MDAnalysis's H5MD reader gives each frame's observables (the classical run's temperature, density, energy)."""
    from MDAnalysis.coordinates.H5MD import H5MDReader

    atoms = Atoms('H2O', positions=[[0, 0, 0], [0.96, 0, 0], [0, 0.96, 0]], cell=[8, 8, 8], pbc=True)
    with TrajectoryWriter(tmp_path / 'c.h5', atoms, write_velocities=False, stage='nvt',
                          observables=('temperature_K', 'density_g_cm3', 'potential_energy_eV')) as writer:
        for frame in range(3):
            writer.append(atoms, step=10 * frame, time_fs=10.0 * frame, observables={
                'temperature_K': 300.0 + frame, 'density_g_cm3': 1.0, 'potential_energy_eV': -2.0})
    reader = H5MDReader(str(tmp_path / 'c.h5'))
    assert reader.n_frames == 3
    assert [ts.data['temperature_K'] for ts in reader] == [300.0, 301.0, 302.0]
    assert reader[2].data['step'] == 20
    reader.close()
