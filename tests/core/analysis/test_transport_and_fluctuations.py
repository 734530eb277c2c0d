"""Density, MSD/diffusivity and heat capacity against known answers."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units

from aiida_qrnn.core.analysis.density import average_density, density_g_cm3, frame_closest_to_mean
from aiida_qrnn.core.analysis.heat_capacity import heat_capacity_from_enthalpy
from aiida_qrnn.core.analysis.msd import (
    fit_self_diffusivity,
    molecular_centres_of_mass,
    msd_fft,
    msd_windowed,
    yeh_hummer_correction_cm2_per_s,
)
from aiida_qrnn.core.analysis.statistics import block_average
from aiida_qrnn.core.md import TrajectoryWriter, read_trajectory


def test_density_unit_conversion():
    """N_A amu in 10^24 Å^3 (1 cm^3) is 1 g/cm^3: 602.214076 amu in 1000 Å^3 (Avogadro constant, SI 2019)."""
    assert density_g_cm3(602.214076, np.array([1000.0, 2000.0])) == pytest.approx([1.0, 0.5], rel=1e-6)


def test_block_average_of_independent_samples():
    """For independent Gaussian samples the block standard error is sigma/sqrt(n) (to 40 % with 10 blocks) and
    the production window drops the first 20 %."""
    rng = np.random.default_rng(0)
    volumes = np.concatenate([np.full(2500, 2000.0), rng.normal(1000.0, 5.0, 10_000)])  # equilibration first
    result = average_density(volumes, 602.214, n_blocks=10)
    assert result.n_samples == 10_000
    assert result.mean_g_cm3 == pytest.approx(1.0, rel=1e-3)
    expected_error = 1.0 * 5.0 / 1000.0 / np.sqrt(10_000)
    assert result.standard_error_g_cm3 == pytest.approx(expected_error, rel=0.4)
    mean, error = block_average(rng.normal(0.0, 1.0, 4000), n_blocks=8)
    assert abs(mean) < 4 * error
    assert frame_closest_to_mean(np.array([1.0, 1.1, 1.04, 0.9]), 1.05) == 2


def test_block_average_needs_enough_samples():
    with pytest.raises(ValueError, match='n_blocks=5 for 6 samples'):
        block_average(np.ones(6))


def test_heat_capacity_of_synthetic_gaussian_enthalpy():
    """Gaussian enthalpies with variance c_p k_B T^2 M give back c_p = 2.4 J/(g K) within 2 % (200k samples,
    sampling error of a variance sqrt(2/n) = 0.3 %)."""
    rng = np.random.default_rng(1)
    cp_true, temperature, mass = 2.4, 300.0, 62.07 * 200  # J/(g K), K, amu (200 ethylene glycol)
    variance_eV2 = cp_true / (units._e / (units._amu * 1e3)) * mass * units.kB * temperature**2
    enthalpy = rng.normal(-5000.0, np.sqrt(variance_eV2), 250_000)
    result = heat_capacity_from_enthalpy(enthalpy, temperature, mass)
    assert result.n_samples == 200_000
    assert result.cp_J_per_gK == pytest.approx(cp_true, rel=0.02)
    assert 0 < result.standard_error_J_per_gK < 0.05


def test_heat_capacity_of_ideal_gas_argon():
    """Ideal-gas NPT: H = K + pV is Gamma-distributed with shape 5N/2 and scale k_B T, so c_p = 5/2 R / M:
    20.786 J/(mol K) / 39.948 g/mol = 0.5203 J/(g K) for argon (within 2 %)."""
    rng = np.random.default_rng(2)
    n_atoms, temperature = 64, 300.0
    enthalpy = rng.gamma(2.5 * n_atoms, units.kB * temperature, 200_000)
    result = heat_capacity_from_enthalpy(enthalpy, temperature, n_atoms * 39.948, discard_fraction=0.0)
    assert result.cp_J_per_gK == pytest.approx(0.5203, rel=0.02)


def test_msd_fft_equals_windowed_and_ballistic_law():
    """The FFT MSD equals the direct average over time origins; a constant velocity v gives MSD = |v|^2 tau^2."""
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.normal(size=(300, 7, 3)), axis=0)
    np.testing.assert_allclose(msd_fft(walk), msd_windowed(walk), rtol=1e-9, atol=1e-9)
    velocity = np.array([0.3, -0.2, 0.1])
    ballistic = np.arange(50)[:, None, None] * velocity[None, None, :] + rng.normal(size=(1, 4, 3))
    np.testing.assert_allclose(msd_fft(ballistic), np.arange(50) ** 2 * (velocity**2).sum(), atol=1e-9)


def test_diffusivity_of_wrapped_random_walk_of_molecules(tmp_path):
    """Rigid 3-atom molecules whose centres random-walk with D = 2e-5 cm^2/s (0.2 Å^2/ps), wrapped into a 15 Å
    box at every frame and written by the MD trajectory writer: centre-of-mass MSD and the Einstein fit give D
    back within 5 % (expected statistical error for 100 molecules, 400 frames: about 2 %)."""
    rng = np.random.default_rng(4)
    d_cm2_s, frame_fs, n_frames, n_molecules, box = 2e-5, 500.0, 400, 100, 15.0
    d_a2_fs = d_cm2_s / 0.1
    steps = rng.normal(0.0, np.sqrt(2 * d_a2_fs * frame_fs), size=(n_frames, n_molecules, 3))
    centres = rng.uniform(0, box, (n_molecules, 3)) + np.cumsum(steps, axis=0)  # (F, M, 3)
    shape = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])  # water-like, O at the origin
    masses = np.array([16.0, 1.0, 1.0])
    offsets = shape - masses @ shape / masses.sum()
    positions = (centres[:, :, None, :] + offsets[None, None]).reshape(n_frames, -1, 3)
    atoms = Atoms('OH2' * n_molecules, positions=positions[0], cell=[box] * 3, pbc=True, masses=np.tile(masses, 100))
    atoms.arrays['molecule'] = np.repeat(np.arange(n_molecules), 3)
    with TrajectoryWriter(tmp_path / 'walk.h5', atoms) as writer:
        for frame in range(n_frames):
            atoms.set_positions(positions[frame])
            atoms.wrap()
            writer.append(atoms, step=frame * 1000, time_fs=frame * frame_fs)
    trajectory = read_trajectory(tmp_path / 'walk.h5')
    com = molecular_centres_of_mass(trajectory.positions, trajectory.masses, trajectory.molecule)
    assert np.abs(com[-1] - com[0]).max() > box  # beyond the box: unwrapping mattered
    msd = msd_fft(com)
    result = fit_self_diffusivity(trajectory.times_fs - trajectory.times_fs[0], msd)
    assert result.diffusivity_cm2_per_s == pytest.approx(d_cm2_s, rel=0.05)


def test_yeh_hummer_correction():
    """Water-like box: k_B T xi / (6 pi eta L) at 298 K, eta = 0.89 mPa s, L = 30 Å is 2.319e-6 cm^2/s (hand
    calculation), and it scales as 1/L."""
    correction = yeh_hummer_correction_cm2_per_s(30.0, 0.89e-3, 298.0)
    assert correction == pytest.approx(2.319e-6, rel=1e-3)
    assert yeh_hummer_correction_cm2_per_s(60.0, 0.89e-3, 298.0) == pytest.approx(correction / 2)
    with pytest.raises(ValueError, match='viscosity_Pa_s'):
        yeh_hummer_correction_cm2_per_s(30.0, -1.0, 298.0)
