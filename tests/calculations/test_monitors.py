"""The ``qrnn.committee_disagreement`` monitor on a real job folder read through the localhost transport."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine.processes.calcjobs.monitors import CalcJobMonitor

from aiida_qrnn.calculations.monitors import committee_disagreement

HEADER = 'step,time_fs,rho_f,max_force_deviation\n'


@pytest.fixture
def job(aiida_localhost, tmp_path) -> orm.CalcJobNode:
    node = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:qrnn.md')
    node.set_remote_workdir(str(tmp_path))
    return node.store()


def _check(job, **kwargs):
    with job.computer.get_transport() as transport:
        return committee_disagreement(job, transport, **kwargs)


def test_no_file_empty_file_or_agreement_lets_the_job_run(job, tmp_path):
    assert _check(job, threshold=0.5) is None  # the job has not written committee.csv yet
    (tmp_path / 'committee.csv').write_text('')
    assert _check(job, threshold=0.5) is None
    (tmp_path / 'committee.csv').write_text(HEADER + '0,0.0,0.01,0.2\n5,2.5,0.02,0.3\n10,5.0,0.9,0.')  # last: partial
    assert _check(job, threshold=0.5) is None


@pytest.mark.parametrize(('quantity', 'threshold', 'step', 'value'),
                         [('max_force_deviation', 0.25, 5, '0.3'), ('rho_f', 0.015, 5, '0.02'),
                          ('max_force_deviation', 0.1, 0, '0.2')])
def test_first_row_above_the_threshold_kills_and_keeps_the_parser_exit_code(job, tmp_path, quantity, threshold, step,
                                                                             value):
    (tmp_path / 'committee.csv').write_text(HEADER + '0,0.0,0.01,0.2\n5,2.5,0.02,0.3\n10,5.0,0.03,0.4\n')
    result = _check(job, threshold=threshold, quantity=quantity)
    assert result is not None and result.action.value == 'kill'
    assert f'step {step}: {quantity} {value}' in result.message
    assert result.override_exit_code is False and result.parse and result.retrieve


def test_entry_point_and_arguments(job):
    """The engine loads the monitor by its entry point and accepts its keywords; a bad quantity is named."""
    monitor = CalcJobMonitor(entry_point='qrnn.committee_disagreement', kwargs={'threshold': 0.5, 'quantity': 'rho_f'})
    assert monitor.load_entry_point() is committee_disagreement
    with pytest.raises(ValueError, match='does not accept'):
        CalcJobMonitor(entry_point='qrnn.committee_disagreement', kwargs={'limit': 0.5})
    with pytest.raises(ValueError, match='quantity'):
        _check(job, threshold=0.5, quantity='energy_std')


def test_a_job_that_has_ended_or_stops_itself_is_not_killed(aiida_localhost, job, tmp_path):
    """A kill could only race with the job's own exit, and the direct scheduler cannot kill an exited process
    (``psutil.NoSuchProcess``, five retries, then the job is paused for good): the monitor leaves such a job alone."""
    (tmp_path / 'committee.csv').write_text(HEADER + '0,0.0,0.01,0.2\n5,2.5,0.02,0.3\n')
    (tmp_path / 'status.json').write_text('{}')
    assert _check(job, threshold=0.25) is None
    (tmp_path / 'status.json').unlink()

    stops_itself = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:qrnn.md')
    stops_itself.set_remote_workdir(str(tmp_path))
    stops_itself.base.links.add_incoming(orm.Dict({'committee_max_force_deviation': 0.25}).store(),
                                         link_type=LinkType.INPUT_CALC, link_label='parameters')
    stops_itself.store()
    with stops_itself.computer.get_transport() as transport:
        assert committee_disagreement(stops_itself, transport, threshold=0.25) is None
        assert committee_disagreement(stops_itself, transport, threshold=0.015, quantity='rho_f') is not None
        assert committee_disagreement(stops_itself, transport, threshold=0.2) is not None  # its own limit is higher
