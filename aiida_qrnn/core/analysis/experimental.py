"""Experimental density and heat capacity of oligomer families (``experimental.yaml``) and the property-vs-chain plot.

Families are named as the polymers of :mod:`aiida_qrnn.core.polymer`: ethylene glycol (EG..tetraEG, the default),
propylene glycol (PG, DPG, TPG) and glyme (mono- to tetraglyme). The data are DIPPR correlations and critically
evaluated tables (ChemSep 8.32, Perry's, Zábranský, CRC) at 298.15 and 303.15 K, each record with its source;
:func:`experimental` interpolates linearly to the simulation temperature (300 K in the paper), which moves the
values by less than 0.2 %. Records whose source gives no temperature are kept in the file but never used. Heat
capacities come per mole in the file and are returned per gram, the unit of the MD analysis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ._plot import new_axes, save

DATA_FILE = Path(__file__).with_name('experimental.yaml')
DEFAULT_FAMILY = 'ethylene glycol'
#: Property name (as in the properties work chain) → (key in the data file, axis label).
PROPERTIES = {
    'density': ('density_g_cm3', 'density (g cm$^{-3}$)'),
    'heat_capacity': ('heat_capacity_J_mol_K', '$c_p$ (J g$^{-1}$ K$^{-1}$)'),
}


@dataclass(frozen=True)
class ExperimentalSeries:
    """One property at one temperature: chain lengths, values (g/cm³ or J/(g K)) and the source key."""

    n_units: np.ndarray  # (n,)
    values: np.ndarray  # (n,)
    source: str


def load_experimental_data(path: Path | str = DATA_FILE) -> dict:
    """The data file as a dictionary (sources, oligomers, one list of records per property)."""
    with Path(path).open() as handle:
        return yaml.safe_load(handle)


def experimental(
    name: str, temperature_K: float = 300.0, *, source: str = 'chemsep', family: str = DEFAULT_FAMILY,
) -> ExperimentalSeries:
    """``name`` ('density' or 'heat_capacity') of every oligomer of ``family`` that ``source`` covers, interpolated
    to ``temperature_K``.

    Raises ``ValueError`` naming the property, family, source or temperature when the file has no such data (no
    extrapolation beyond the tabulated 298.15-303.15 K by more than 5 K).
    """
    if name not in PROPERTIES:
        raise ValueError(f'experimental property must be one of {sorted(PROPERTIES)}, got {name!r}.')
    data = load_experimental_data()
    families = sorted({entry['family'] for entry in data['oligomers']})
    if family not in families:
        raise ValueError(f'no experimental data for the family {family!r}; known: {families}.')
    molar_mass = {entry['n_units']: entry['molar_mass_g_mol'] for entry in data['oligomers']
                  if entry['family'] == family}
    records = [record for record in data[PROPERTIES[name][0]] if record['source'] == source
               and record['family'] == family and record['temperature_K'] is not None]
    if not records:
        raise ValueError(f"no experimental {name} of {family} from source {source!r} at a stated temperature in "
                         f"'{DATA_FILE}'.")
    n_units = sorted({record['n_units'] for record in records})
    values = []
    for n in n_units:
        points = sorted((record['temperature_K'], record['value']) for record in records if record['n_units'] == n)
        temperatures, tabulated = np.array(points).T
        if not temperatures.min() - 5.0 <= temperature_K <= temperatures.max() + 5.0:
            raise ValueError(f'experimental {name} of n={n} is tabulated at {temperatures.tolist()} K only, '
                             f'not near {temperature_K} K.')
        slope = np.polyfit(temperatures, tabulated, 1)[0] if len(points) > 1 else 0.0
        value = tabulated[0] + slope * (temperature_K - temperatures[0])
        values.append(value / molar_mass[n] if name == 'heat_capacity' else value)
    return ExperimentalSeries(np.array(n_units), np.array(values), source)


def plot_property_vs_chain_length(
    name: str, series: Mapping[str, tuple[Sequence[int], Sequence[float], Sequence[float]]], path: Path | str, *,
    temperature_K: float = 300.0,
) -> Path:
    """Simulated ``name`` per chain length (``series``: label → (n_units, values, std over replicas)) beside
    experiment, as the paper's Figs. 2-4 and 6-8."""
    figure, axes = new_axes('repeat units n in HO-(CH$_2$CH$_2$O)$_n$-H', PROPERTIES[name][1])
    reference = experimental(name, temperature_K, family=DEFAULT_FAMILY)
    axes.plot(reference.n_units, reference.values, 'ks--', label=f'experiment ({reference.source})')
    for label, (n_units, values, errors) in series.items():
        axes.errorbar(n_units, values, yerr=errors, marker='o', capsize=3, label=label)
    axes.legend()
    return save(figure, path)
