"""The property protocol's statistics and corrections against known answers (issue 15, item 4).

Equilibration detection and statistical inefficiency on synthetic series with a known change point and a known
correlation time; the too-short flag; Yeh-Hummer against its closed form; the harmonic quantum correction of c_p
against the Einstein heat capacity of oscillators of known frequency, and its classical high-temperature limit.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import units

from aiida_qrnn.core.analysis.density import equilibrated_density
from aiida_qrnn.core.analysis.equilibration import production_window, statistical_inefficiency
from aiida_qrnn.core.analysis.heat_capacity import EV_PER_AMU_TO_J_PER_G, equilibrated_heat_capacity
from aiida_qrnn.core.analysis.msd import (
    diffusion_too_short,
    experimental_viscosity_Pa_s,
    yeh_hummer_correction_cm2_per_s,
)
from aiida_qrnn.core.analysis.properties import combine_replicas
from aiida_qrnn.core.analysis.quantum_correction import (
    SPEED_OF_LIGHT_CM_PER_FS,
    einstein_function,
    quantum_heat_capacity_correction_J_per_gK,
    quantum_heat_capacity_correction_J_per_K,
    vibrational_density_of_states,
)


def ar1(n: int, phi: float, seed: int) -> np.ndarray:
    """x_t = phi x_{t-1} + noise, unit stationary variance: statistical inefficiency (1 + phi) / (1 - phi)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, np.sqrt(1.0 - phi**2), n)
    series = np.empty(n)
    series[0] = rng.normal()
    for index in range(1, n):
        series[index] = phi * series[index - 1] + noise[index]
    return series


def test_statistical_inefficiency_of_ar1_is_analytic():
    """phi = 0.8: g = 1.8 / 0.2 = 9 (within 20 % over 40 000 samples); white noise: g = 1."""
    assert statistical_inefficiency(ar1(40_000, 0.8, seed=0)) == pytest.approx(9.0, rel=0.2)
    assert statistical_inefficiency(np.random.default_rng(1).normal(size=20_000)) == pytest.approx(1.0, abs=0.15)


def test_equilibration_detection_finds_a_known_change_point():
    """An offset of 5 sigma for the first 1500 of 8000 samples, then stationary AR(1) (g = 3): the window starts at
    the change point (within 5 %), and the paper's 20 % stays a floor the data can only push later."""
    samples, change = 8000, 1500
    series = np.where(np.arange(samples) < change, 5.0, 0.0) + ar1(samples, 0.5, seed=2)
    detected = production_window(series, min_discard_fraction=0.0)
    assert change <= detected.start <= 1.05 * change
    assert detected.detected_start == detected.start
    assert detected.statistical_inefficiency == pytest.approx(3.0, rel=0.25)  # (1 + 0.5) / (1 - 0.5)
    floor = production_window(series, min_discard_fraction=0.5)
    assert floor.start == 4000 and floor.detected_start == detected.start
    stationary = production_window(ar1(samples, 0.5, seed=3), min_discard_fraction=0.0)
    assert stationary.start < 0.05 * samples


def test_too_short_flag_for_runs_shorter_than_their_correlation_time():
    """phi = 0.999 (correlation time 1000 samples) over 300 samples: flagged (fewer than 10 independent samples),
    for several noise draws; phi = 0.98 (g = 99) over 5000 samples (~50 independent): not flagged."""
    for seed in (4, 5, 6):
        short = production_window(ar1(300, 0.999, seed=seed), min_discard_fraction=0.0)
        assert short.too_short and short.n_independent < 10
    long = production_window(ar1(5000, 0.98, seed=7), min_discard_fraction=0.0)
    assert not long.too_short and long.n_independent > 20
    with pytest.raises(ValueError, match='non-finite'):
        production_window(np.array([1.0, 2.0, np.nan, 3.0, 4.0]))


def test_equilibrated_density_and_heat_capacity_exclude_the_compression():
    """A box compressed from 2000 to 1000 Å^3, then fluctuating: density 0.602 g/cm^3 from the stationary part; the
    error is std sqrt(g/N); Gaussian enthalpies with a known variance give back c_p within 5 %."""
    rng = np.random.default_rng(6)
    volumes = np.concatenate([np.linspace(2000.0, 1000.0, 2000), 1000.0 + 5.0 * ar1(6000, 0.6, seed=7)])
    result = equilibrated_density(volumes, 602.214 * 0.602214)
    assert result.mean_g_cm3 == pytest.approx(0.602214, rel=1e-3)
    assert 5900 <= result.n_samples <= 6100 and not result.too_short  # t0 on a grid of 40 samples
    expected_error = 0.602214 * 5.0 / 1000.0 * np.sqrt(4.0 / result.n_samples)  # g = 1.6 / 0.4 = 4
    assert result.standard_error_g_cm3 == pytest.approx(expected_error, rel=0.35)

    cp_true, temperature, mass = 2.4, 300.0, 62.07 * 200
    variance = cp_true / EV_PER_AMU_TO_J_PER_G * mass * units.kB * temperature**2
    enthalpy = np.concatenate([np.linspace(-4000.0, -5000.0, 2000),
                               -5000.0 + np.sqrt(variance) * rng.normal(size=20_000)])
    heat_capacity = equilibrated_heat_capacity(enthalpy, temperature, mass)
    assert heat_capacity.cp_J_per_gK == pytest.approx(cp_true, rel=0.05)
    assert 0 < heat_capacity.standard_error_J_per_gK < 0.05 and not heat_capacity.too_short


def test_yeh_hummer_correction_is_the_closed_form():
    """k_B T xi / (6 pi eta L) for T = 300 K, eta = 1 mPa s, L = 30 Å:
    1.380649e-23 * 300 * 2.837297 / (6 pi * 1e-3 * 3e-9) = 2.0781e-10 m^2/s = 2.0781e-6 cm^2/s; it scales as 1/L."""
    assert yeh_hummer_correction_cm2_per_s(30.0, 1e-3, 300.0) == pytest.approx(2.0781e-6, rel=1e-4)
    assert yeh_hummer_correction_cm2_per_s(60.0, 1e-3, 300.0) == pytest.approx(2.0781e-6 / 2, rel=1e-4)
    assert experimental_viscosity_Pa_s(1, 298.15) == pytest.approx(17.0e-3)
    assert experimental_viscosity_Pa_s(1, 303.15) == pytest.approx(13.9e-3)
    assert 13.9e-3 < experimental_viscosity_Pa_s(1, 300.0) < 17.0e-3
    assert experimental_viscosity_Pa_s(5, 300.0) is None and experimental_viscosity_Pa_s(1, 400.0) is None
    assert diffusion_too_short(msd_at_fit_end_A2=10.0, radius_of_gyration_A=2.0)  # moved 3.2 Å < 4 Å
    assert not diffusion_too_short(msd_at_fit_end_A2=30.0, radius_of_gyration_A=2.0)


def oscillator_velocities(wavenumbers_cm1: np.ndarray, masses: np.ndarray, n_frames: int, interval_fs: float,
                          seed: int) -> np.ndarray:
    """Harmonic velocities (n_frames, n_atoms, 3): atom i oscillates at wavenumbers_cm1[i] with random phases and
    the equipartition amplitude (m <v^2> the same for every atom)."""
    rng = np.random.default_rng(seed)
    times = np.arange(n_frames) * interval_fs
    frequencies = np.asarray(wavenumbers_cm1) * SPEED_OF_LIGHT_CM_PER_FS  # 1/fs
    phases = rng.uniform(0, 2 * np.pi, (len(masses), 3))
    amplitude = 1.0 / np.sqrt(masses)
    return amplitude[None, :, None] * np.cos(2 * np.pi * frequencies[None, :, None] * times[:, None, None]
                                             + phases[None])


def test_einstein_function_limits():
    """W -> 1 at low frequency (classical), W(u) = u^2 e^u / (e^u - 1)^2, W -> 0 for stiff modes."""
    u = 1500.0 * units._hplanck * units._c * 100 / (units._k * 300.0)  # 7.19
    assert einstein_function(np.array([1500.0]), 300.0)[0] == pytest.approx(u**2 * np.exp(u) / np.expm1(u) ** 2)
    assert einstein_function(np.array([0.0, 0.01]), 300.0) == pytest.approx([1.0, 1.0])
    assert einstein_function(np.array([1e6]), 300.0)[0] == pytest.approx(0.0, abs=1e-12)


def test_quantum_correction_of_oscillators_gives_einstein_heat_capacity():
    """Atoms oscillating at 3000 cm^-1 (m = 1) and 300 cm^-1 (m = 12), half the degrees of freedom each: the VDOS
    integrates to 3N with its peaks there, and 3N k_B + Delta C = k_B (3N/2) (W(3000) + W(300)), the Einstein heat
    capacity, to 1 %. At 10^6 K the same spectrum is classical (Delta C ~ 0)."""
    masses = np.array([1.0] * 8 + [12.0] * 8)
    wavenumbers = np.array([3000.0] * 8 + [300.0] * 8)
    velocities = oscillator_velocities(wavenumbers, masses, n_frames=8192, interval_fs=1.0, seed=8)
    spectrum = vibrational_density_of_states(velocities, masses, frame_interval_fs=1.0)
    step = spectrum.wavenumbers_cm1[1] - spectrum.wavenumbers_cm1[0]
    assert spectrum.density_per_cm1.sum() * step == pytest.approx(48.0)
    high = spectrum.wavenumbers_cm1 > 1500
    assert spectrum.density_per_cm1[high].sum() * step == pytest.approx(24.0, rel=1e-3)

    n_dof, temperature = 48, 300.0
    einstein = units._k * n_dof / 2 * einstein_function(np.array([3000.0, 300.0]), temperature).sum()
    quantum = units._k * n_dof + quantum_heat_capacity_correction_J_per_K(spectrum, temperature)
    assert quantum == pytest.approx(einstein, rel=0.01)
    assert quantum_heat_capacity_correction_J_per_K(spectrum, 1e6) == pytest.approx(0.0, abs=1e-4 * units._k * n_dof)

    per_gram = quantum_heat_capacity_correction_J_per_gK(velocities, masses, 1.0, temperature)
    total_grams = masses.sum() * units._amu * 1e3
    assert per_gram == pytest.approx((einstein - units._k * n_dof) / total_grams, rel=0.01)


def test_quantum_correction_refuses_frames_too_sparse_for_the_stiff_modes():
    velocities = oscillator_velocities(np.array([3000.0]), np.array([1.0]), n_frames=64, interval_fs=500.0, seed=9)
    with pytest.raises(ValueError, match=r'every 500 fs resolve modes up to 33 cm\^-1'):
        vibrational_density_of_states(velocities, np.array([1.0]), frame_interval_fs=500.0)


def test_combined_properties_carry_flags_and_missing_values():
    """A property flagged in one replica is flagged; a correction missing in one replica is left out."""
    base = {'density': 1.1, 'heat_capacity': 2.5, 'heat_capacity_quantum': 2.0, 'self_diffusivity': 1e-6,
            'self_diffusivity_yeh_hummer': 1.2e-6, 'radius_of_gyration': 2.0}
    replicas = [{**base, 'density_too_short': False}, {**base, 'density_too_short': True,
                                                       'self_diffusivity_yeh_hummer': None}]
    combined = combine_replicas(replicas)
    assert combined['density']['flagged'] and combined['density']['too_short_replicas'] == [1]
    assert not combined['heat_capacity']['flagged']
    assert 'self_diffusivity_yeh_hummer' not in combined and 'heat_capacity_quantum' in combined
    assert combined['self_diffusivity']['value'] == pytest.approx(1e-6)
