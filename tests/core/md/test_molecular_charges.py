"""Per-molecule net charges logged during MD (issue 15, item 4): global charge equilibration lets charge move
between molecules; the log's last two columns say how much (RMS and largest |net charge| over the molecules)."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_qrnn.core.md import MDSettings, MDStatus, read_log, run_md, run_md_replicas
from aiida_qrnn.core.md.outputs import LOG_COLUMNS, molecular_charge_statistics
from aiida_qrnn.core.model.calculator import QRNNCalculator
from aiida_qrnn.testing.models import tiny_md_model
from aiida_qrnn.testing.structures import ethylene_glycol_liquid


def test_statistics_of_known_molecular_charges():
    """Molecules 0, 1, 2 with net charges +0.1, -0.3, +0.2: RMS sqrt(0.14/3), largest 0.3; no charges: NaN."""
    charges = np.array([0.4, -0.3, -0.1, -0.2, 0.1, 0.1])
    rms, largest = molecular_charge_statistics(charges, np.array([0, 0, 1, 1, 2, 2]))
    assert rms == pytest.approx(np.sqrt(0.14 / 3)) and largest == pytest.approx(0.3)
    assert np.isnan(molecular_charge_statistics(None, np.zeros(6))).all()


def test_both_engines_log_the_same_molecular_charges(tmp_path):
    """A 4-molecule EG box with a random QRNN, 4 NVT steps: the torch engine and the ASE path log the same finite
    per-molecule charge statistics (a neutral box: the net charges cancel, the largest is at least the RMS)."""
    box = ethylene_glycol_liquid(4, density_g_cm3=0.6, seed=0)
    assert 'molecule' in box.arrays
    settings = {'ensemble': 'nvt', 'n_steps': 4, 'timestep_fs': 0.5, 'temperature_K': 300.0,
                'thermostat_tau_fs': 20.0, 'log_interval': 2, 'trajectory_interval': 4, 'checkpoint_interval': 4}
    model = tiny_md_model()
    logs = {}
    for engine in ('torch', 'ase'):
        result = run_md(MDSettings(**settings, engine=engine), box, QRNNCalculator(model), tmp_path / engine,
                        rng=np.random.default_rng(1))
        assert result.status == MDStatus.FINISHED
        logs[engine] = read_log(tmp_path / engine / 'md_log.csv')
    for name in ('molecular_charge_rms_e', 'molecular_charge_max_abs_e'):
        assert np.all(np.isfinite(logs['torch'][name])) and np.all(logs['torch'][name] > 0)
        np.testing.assert_allclose(logs['ase'][name], logs['torch'][name], rtol=1e-6, atol=1e-9)
    assert np.all(logs['torch']['molecular_charge_max_abs_e'] >= logs['torch']['molecular_charge_rms_e'])
    batched = run_md_replicas(MDSettings(**settings), [box], QRNNCalculator(model), [tmp_path / 'batch'],
                              rngs=[np.random.default_rng(1)])
    assert batched[0].status == MDStatus.FINISHED
    np.testing.assert_allclose(read_log(tmp_path / 'batch' / 'md_log.csv')['molecular_charge_rms_e'],
                               logs['torch']['molecular_charge_rms_e'], rtol=1e-9)


def test_a_log_written_before_the_charge_columns_reads_with_nan(tmp_path):
    path = tmp_path / 'md_log.csv'
    path.write_text(','.join(LOG_COLUMNS[:11]) + '\n' + ','.join(['1.0'] * 11) + '\n')
    log = read_log(path)
    assert log['density_g_cm3'][0] == 1.0 and np.isnan(log['molecular_charge_rms_e'][0])
    path.write_text('a,b\n1,2\n')
    with pytest.raises(ValueError, match='is not an MD log'):
        read_log(path)
