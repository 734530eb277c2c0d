"""All properties of one replica (an NPT log plus an NVT trajectory) and their mean ± std over replicas.

The paper's analysis: density and c_p (enthalpy fluctuations) from NPT; self-diffusivity from the NVT molecular
centre-of-mass MSD; radius-of-gyration distribution of single chains, OCCO torsion distribution and
intermolecular hydroxyl O–H g(r) from the NVT frames. Uncertainties between replicas are standard deviations
(ddof = 1), as the paper's error bars.

Beyond the paper (issue 15): the NPT production window is detected from the data (:mod:`.equilibration`, never
earlier than the paper's 20 %), per-replica errors carry the statistical inefficiency, and a value from a run too
short to hold ``min_independent_samples`` uncorrelated samples (D: molecules that moved less than their size) is
flagged ``<name>_too_short``. D is also given with the Yeh–Hummer correction (:mod:`.msd`) and c_p with the
harmonic quantum correction (:mod:`.quantum_correction`) from the velocities of a densely sampled NVT segment;
both corrected values stand beside the raw ones, ``None`` where they cannot be computed (``<name>_note`` says why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from ase import Atoms

from ..md.trajectory import TrajectoryArrays
from .base import AnalysisCollection
from .density import equilibrated_density
from .dihedrals import DihedralDistribution
from .equilibration import DEFAULT_MIN_DISCARD_FRACTION, DEFAULT_MIN_INDEPENDENT_SAMPLES
from .frames import FrameReader
from .heat_capacity import equilibrated_heat_capacity
from .msd import (
    VISCOSITY_SOURCE,
    CentreOfMassMSD,
    diffusion_too_short,
    experimental_viscosity_Pa_s,
    yeh_hummer_correction_cm2_per_s,
)
from .quantum_correction import VibrationalDensityOfStates, check_velocity_sampling
from .radius_of_gyration import RG_BIN_WIDTH_A, RadiusOfGyration
from .rdf import InterRDF, half_min_width

#: The analysis settings of a replica (the ``analysis`` input of ``PropertiesWorkChain``): ``discard_fraction`` the
#: least part of the NPT run discarded (the paper's 20 %; the data may push it later), ``min_independent_samples``
#: fewer uncorrelated samples flag a value, the MSD fit window; ``viscosity_mPa_s`` (optional) replaces the
#: experimental viscosity in the Yeh–Hummer correction.
ANALYSIS_DEFAULTS = {'discard_fraction': 0.2, 'min_independent_samples': 10.0, 'msd_fit_start_fraction': 0.1,
                     'msd_fit_end_fraction': 0.5}
ANALYSIS_OPTIONAL = ('viscosity_mPa_s',)
#: Scalar property → unit; ``replica_properties`` returns these keys (None where not computable), ``<name>_sem``
#: errors and ``<name>_too_short`` flags of the raw values.
SCALAR_UNITS = {
    'density': 'g/cm^3', 'heat_capacity': 'J/(g K)', 'heat_capacity_quantum': 'J/(g K)',
    'self_diffusivity': 'cm^2/s', 'self_diffusivity_yeh_hummer': 'cm^2/s', 'radius_of_gyration': 'Angstrom',
}
#: The raw value whose run decides whether a corrected value is flagged too.
FLAG_SOURCE = {'heat_capacity_quantum': 'heat_capacity', 'self_diffusivity_yeh_hummer': 'self_diffusivity'}
#: Distribution → (x array name, x unit, y array name).
DISTRIBUTIONS = {
    'occo_torsion': ('angle_deg', 'degree', 'probability_density_per_deg'),
    'oh_rdf': ('r_A', 'Angstrom', 'g'),
    'radius_of_gyration': ('rg_A', 'Angstrom', 'probability_density_per_A'),
}
OH_RDF_MAX_A = 8.0
OH_RDF_BINS = 80


def replica_properties(
    log: Mapping[str, np.ndarray], trajectory: FrameReader | TrajectoryArrays, *, temperature_K: float,
    n_units: int | None = None, vdos_trajectory: FrameReader | TrajectoryArrays | None = None,
    discard_fraction: float = DEFAULT_MIN_DISCARD_FRACTION,
    min_independent_samples: float = DEFAULT_MIN_INDEPENDENT_SAMPLES, msd_fit: tuple[float, float] = (0.1, 0.5),
    viscosity_Pa_s: float | None = None,
) -> tuple[dict[str, float | bool | str | None], dict[str, dict[str, np.ndarray]]]:
    """Scalars (see ``SCALAR_UNITS``) and distributions of one replica: ``log`` the NPT log columns, ``trajectory``
    the NVT frames (unwrapped, with molecule ids), ``vdos_trajectory`` a densely sampled NVT segment with velocities
    (else the NVT frames' velocities are tried), ``n_units`` the oligomer (for the experimental viscosity unless
    ``viscosity_Pa_s`` is given); ``discard_fraction`` is the least part of the NPT run discarded.

    The NVT analyses (MSD, R_g, OCCO torsions, O-H g(r), and the VDOS without a ``vdos_trajectory``) run in one pass
    over the NVT frames (:class:`~.base.AnalysisCollection`)."""
    frames = _reader(trajectory)
    if frames.molecule is None:
        raise ValueError(f'the NVT trajectory {frames.name} has no molecule ids: they are needed for the MSD and R_g.')
    total_mass = float(frames.masses.sum())
    window = {'min_discard_fraction': discard_fraction, 'min_independent_samples': min_independent_samples}
    density = equilibrated_density(log['volume_A3'], total_mass, **window)
    heat_capacity = equilibrated_heat_capacity(log['enthalpy_eV'], temperature_K, total_mass, **window)

    first = frames.atoms(0)
    oxygens, hydroxyl_hydrogens = _hydroxyl_atoms(first)
    half_width = min(half_min_width(cell) for cell in frames.cells)
    msd = CentreOfMassMSD(frames, fit_start_fraction=msd_fit[0], fit_end_fraction=msd_fit[1])
    rg = RadiusOfGyration(frames, bin_width_A=RG_BIN_WIDTH_A)
    torsions = DihedralDistribution(frames, pattern=('O', 'C', 'C', 'O'), bin_width_deg=5.0)
    rdf = InterRDF(frames, oxygens, hydroxyl_hydrogens, r_max_A=min(OH_RDF_MAX_A, half_width), n_bins=OH_RDF_BINS,
                   exclude_same_molecule=True)
    analyses = [msd, rg, torsions, rdf]
    velocity_frames = _reader(vdos_trajectory) if vdos_trajectory is not None else frames
    vdos, vdos_note = _vdos_analysis(velocity_frames, temperature_K)
    if vdos is not None and velocity_frames is frames:
        analyses.append(vdos)
    AnalysisCollection(*analyses).run()
    if vdos is not None and velocity_frames is not frames:
        vdos.run()

    diffusion = msd.results.fit
    rg_values = rg.results.rg_A  # (frames, molecules)
    fit_end = int(np.searchsorted(msd.results.lag_times_fs, diffusion.fit_end_fs, side='right')) - 1
    scalars = {
        'density': density.mean_g_cm3, 'density_sem': density.standard_error_g_cm3,
        'density_statistical_inefficiency': density.statistical_inefficiency,
        'density_n_independent': density.n_independent, 'density_too_short': density.too_short,
        'heat_capacity': heat_capacity.cp_J_per_gK, 'heat_capacity_sem': heat_capacity.standard_error_J_per_gK,
        'heat_capacity_statistical_inefficiency': heat_capacity.statistical_inefficiency,
        'heat_capacity_n_independent': heat_capacity.n_independent, 'heat_capacity_too_short': heat_capacity.too_short,
        'self_diffusivity': diffusion.diffusivity_cm2_per_s,
        'self_diffusivity_too_short': diffusion_too_short(float(msd.results.msd_A2[fit_end]), float(rg_values.mean())),
        'radius_of_gyration': float(rg_values.mean()),
        **_yeh_hummer(diffusion.diffusivity_cm2_per_s, frames.cells, temperature_K, n_units, viscosity_Pa_s),
        **_quantum_heat_capacity(heat_capacity.cp_J_per_gK, vdos, vdos_note),
        **_molecular_charges(log),
    }
    distributions = {
        'occo_torsion': {'angle_deg': torsions.results.angle_deg,
                         'probability_density_per_deg': torsions.results.probability_density_per_deg},
        'oh_rdf': {'r_A': rdf.results.r_A, 'g': rdf.results.g},
        'radius_of_gyration': {'rg_A': rg.results.bin_centres_A,
                               'probability_density_per_A': rg.results.probability_density_per_A},
    }
    return scalars, distributions


def _reader(trajectory: FrameReader | TrajectoryArrays) -> FrameReader:
    return trajectory if isinstance(trajectory, FrameReader) else FrameReader.from_arrays(trajectory)


def _yeh_hummer(diffusivity: float, cells: np.ndarray, temperature_K: float, n_units: int | None,
                viscosity_Pa_s: float | None) -> dict[str, float | str | None]:
    """D + k_B T xi / (6 pi eta L), L the cube root of the mean NVT volume (``cells`` of the NVT frames), eta
    given or experimental."""
    box_length = float(np.mean(np.abs(np.linalg.det(cells))) ** (1.0 / 3.0))
    if viscosity_Pa_s is not None:
        source = 'given in the analysis settings (viscosity_mPa_s)'
    elif n_units is not None:
        viscosity_Pa_s, source = experimental_viscosity_Pa_s(n_units, temperature_K), VISCOSITY_SOURCE
    if viscosity_Pa_s is None:
        return {'self_diffusivity_yeh_hummer': None, 'viscosity_Pa_s': None, 'box_length_A': box_length,
                'self_diffusivity_yeh_hummer_note': f'no viscosity for n_units={n_units} at {temperature_K:g} K: '
                                                    'give analysis.viscosity_mPa_s'}
    correction = yeh_hummer_correction_cm2_per_s(box_length, viscosity_Pa_s, temperature_K)
    return {'self_diffusivity_yeh_hummer': diffusivity + correction, 'viscosity_Pa_s': float(viscosity_Pa_s),
            'box_length_A': box_length, 'self_diffusivity_yeh_hummer_note': f'viscosity {source}'}


def _vdos_analysis(frames: FrameReader, temperature_K: float) -> tuple[VibrationalDensityOfStates | None, str]:
    """The VDOS analysis of ``frames``, or None and why it cannot be made (checked before any frame is read)."""
    if not frames.has_velocities:
        return None, 'the trajectory has no velocities'
    interval = np.diff(frames.times_fs)
    if len(interval) == 0 or not np.allclose(interval, interval[0]):
        return None, 'the velocity frames are not evenly spaced'
    try:
        check_velocity_sampling((frames.n_frames, frames.n_atoms, 3), frames.masses.shape, float(interval[0]))
    except ValueError as error:
        return None, str(error)
    note = (f'Berens et al. 1983 harmonic correction from {frames.n_frames} velocity frames every {interval[0]:g} '
            'fs')
    return VibrationalDensityOfStates(frames, temperature_K=temperature_K), note


def _quantum_heat_capacity(classical: float, vdos: VibrationalDensityOfStates | None, note: str,
                           ) -> dict[str, float | str | None]:
    """Classical c_p plus the harmonic quantum correction of the VDOS analysis (run), or None and why not."""
    if vdos is None:
        return {'heat_capacity_quantum': None, 'heat_capacity_quantum_correction': None,
                'heat_capacity_quantum_note': note}
    correction = vdos.results.correction_J_per_gK
    return {'heat_capacity_quantum': classical + correction, 'heat_capacity_quantum_correction': correction,
            'heat_capacity_quantum_note': note}


def _molecular_charges(log: Mapping[str, np.ndarray]) -> dict[str, float | None]:
    """Mean RMS and largest per-molecule net charge logged during the NPT run (None for a model without charges)."""
    rms, largest = (np.asarray(log.get(name, [np.nan]), dtype=np.float64)
                    for name in ('molecular_charge_rms_e', 'molecular_charge_max_abs_e'))
    if not np.isfinite(rms).any():
        return {'npt_molecular_charge_rms_e': None, 'npt_molecular_charge_max_abs_e': None}
    return {'npt_molecular_charge_rms_e': float(np.nanmean(rms)),
            'npt_molecular_charge_max_abs_e': float(np.nanmax(largest))}


def combine_replicas(scalars: Sequence[Mapping[str, float | bool | None]]) -> dict[str, dict]:
    """Per property: mean over replicas, ``uncertainty`` the standard deviation (0 for a single replica), unit,
    ``too_short_replicas`` (indices of replicas whose run was flagged) and ``flagged`` (any of them). A property
    missing (None) in any replica is left out: every value shown is a mean over all replicas (the replicas'
    ``<name>_note`` says why it is missing)."""
    combined = {}
    for name, unit in SCALAR_UNITS.items():
        raw = [replica.get(name) for replica in scalars]
        if any(value is None for value in raw):
            continue
        flags = [bool(replica.get(f'{FLAG_SOURCE.get(name, name)}_too_short', False)) for replica in scalars]
        values = np.array(raw, dtype=np.float64)
        combined[name] = {
            'value': float(values.mean()), 'uncertainty': float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            'unit': unit, 'n_replicas': len(values), 'replicas': values.tolist(),
            'too_short_replicas': [index for index, flag in enumerate(flags) if flag], 'flagged': any(flags),
        }
    return combined


def combine_distributions(replicas: Sequence[Mapping[str, np.ndarray]], x_name: str, y_name: str,
                          ) -> dict[str, np.ndarray]:
    """Mean and std of a distribution over replicas, on the union of their grids (zero outside a replica's range)."""
    grid = np.unique(np.round(np.concatenate([replica[x_name] for replica in replicas]), 9))
    values = np.stack([np.interp(grid, replica[x_name], replica[y_name], left=0.0, right=0.0)
                       for replica in replicas])  # (n_replicas, n_grid)
    spread = values.std(axis=0, ddof=1) if len(replicas) > 1 else np.zeros(len(grid))
    return {x_name: grid, y_name: values.mean(axis=0), f'{y_name}_std': spread}


def _hydroxyl_atoms(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """All oxygens, and the hydrogens bonded to an oxygen (the H-bond donors)."""
    from ..topology import find_bonds

    bonds = find_bonds(atoms)
    symbols = np.array(atoms.get_chemical_symbols())
    pairs = symbols[bonds]  # (n_bonds, 2)
    donors = np.concatenate([bonds[(pairs[:, 0] == 'H') & (pairs[:, 1] == 'O'), 0],
                             bonds[(pairs[:, 0] == 'O') & (pairs[:, 1] == 'H'), 1]])
    return np.flatnonzero(symbols == 'O'), np.unique(donors)
