"""Restart work chains: each handler called directly, and a real xtb job killed mid-batch, then restarted."""

from __future__ import annotations

import shutil
import stat

import numpy as np
import pytest
from aiida import orm
from aiida.common import LinkType
from aiida.engine import ProcessHandlerReport, run_get_node
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager
from plumpy import ProcessState

from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.structures import make_water_clusters
from aiida_qrnn.workchains.base import Psi4BaseWorkChain, PyscfBaseWorkChain, XtbBaseWorkChain

XTB = shutil.which('xtb') or 'xtb'


def failure(index: int, reason: str) -> dict:
    return {'index': index, 'id': f'id{index}', 'reason': reason, 'message': f'cluster {index}: {reason}'}


@pytest.fixture
def generate_workchain(aiida_code_installed):
    """A Psi4BaseWorkChain instance after ``setup``, on four water clusters, with a failed job node to hand."""

    def factory(exit_status: int = 401):
        code = aiida_code_installed(default_calc_job_plugin='qrnn.psi4', filepath_executable='/bin/true')
        inputs = {'psi4': {
            'code': code, 'clusters': ClusterSetData.from_atoms(make_water_clusters(4)),
            'parameters': orm.Dict({'method': 'hf', 'basis': 'sto-3g', 'options': {'maxiter': 50}}),
        }}
        process = instantiate_process(get_manager().get_runner(), Psi4BaseWorkChain, **inputs)
        process.setup()
        process.ctx.todo = []  # as after run_process submitted every cluster
        node = orm.CalcJobNode(computer=code.computer, process_type='aiida.calculations:qrnn.psi4')
        node.set_process_state(ProcessState.FINISHED)
        node.set_exit_status(exit_status)
        return process, node.store()

    return factory


def test_handle_missing_records_resubmits_only_those(generate_workchain):
    process, node = generate_workchain(401)
    process.ctx.resubmit = [failure(1, 'interrupted'), failure(3, 'missing_output')]
    report = process.handle_missing_records(node)
    assert isinstance(report, ProcessHandlerReport)
    assert process.ctx.todo == [1, 3]
    assert process.ctx.inputs.parameters.get_dict()['options'] == {'maxiter': 50}


def test_handle_scf_stabilises_then_gives_up(generate_workchain):
    process, node = generate_workchain(510)
    steps = Psi4BaseWorkChain.defaults['stabilisation']
    for step in steps:
        process.ctx.todo = []
        process.ctx.stabilise = [failure(2, 'scf_not_converged')]
        assert isinstance(process.handle_scf_not_converged(node), ProcessHandlerReport)
        assert process.ctx.todo == [2]
        options = process.ctx.inputs.parameters.get_dict()['options']
        assert options == {'maxiter': 50, **step['options']}  # merged into the user's options, not replacing them
    process.ctx.todo = []
    process.ctx.stabilise = [failure(2, 'scf_not_converged')]
    assert isinstance(process.handle_scf_not_converged(node), ProcessHandlerReport)
    assert process.ctx.todo == []
    assert [entry['index'] for entry in process.ctx.unlabelled] == [2]


def test_handle_unrecoverable_reports_without_retry(generate_workchain):
    process, node = generate_workchain(410)
    process.ctx.give_up = [failure(0, 'geometry_mismatch')]
    assert isinstance(process.handle_unrecoverable_clusters(node), ProcessHandlerReport)
    assert process.ctx.todo == []
    assert process.ctx.unlabelled[0]['reason'] == 'geometry_mismatch'


def test_handlers_ignore_a_successful_job(generate_workchain):
    process, node = generate_workchain(0)
    process.ctx.resubmit = [failure(1, 'interrupted')]
    assert process.handle_missing_records(node) is None
    assert process.ctx.todo == []


def test_each_engine_has_stabilisation_steps():
    for workchain in (XtbBaseWorkChain, Psi4BaseWorkChain, PyscfBaseWorkChain):
        assert workchain.defaults['stabilisation']
        assert 'clusters' in workchain.spec().inputs[workchain._namespace]


KILLER = """#!/bin/bash
# Real xtb, except that the first time it is started on cluster 2 it kills the job script that started it, as a
# scheduler does at the walltime: clusters 0 and 1 are done, 2 leaves an empty output, 3 and 4 never start.
if [[ "$1" == c000002.xyz && ! -e {marker} ]]; then
    touch {marker}
    kill -9 $PPID
    exit 137
fi
exec {xtb} "$@"
"""


def test_killed_job_restarts_without_losing_or_repeating_clusters(aiida_code_installed, tmp_path):
    script = tmp_path / 'xtb-killed-once'
    script.write_text(KILLER.format(marker=tmp_path / 'killed', xtb=XTB))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    code = aiida_code_installed(default_calc_job_plugin='qrnn.xtb', filepath_executable=str(script))
    clusters = ClusterSetData.from_atoms(make_water_clusters(5))
    results, node = run_get_node(XtbBaseWorkChain, xtb={'code': code, 'clusters': clusters})

    assert node.exit_status == 0, node.exit_message
    assert (tmp_path / 'killed').exists()
    jobs = sorted(node.base.links.get_outgoing(link_type=LinkType.CALL_CALC).all_nodes(), key=lambda n: n.ctime)
    jobs = [job for job in jobs if job.process_type == 'aiida.calculations:qrnn.xtb']
    assert len(jobs) == 2
    ids = clusters.get_arrays().ids
    first, second = jobs
    assert first.exit_status == 410
    assert list(first.outputs.clusters.get_arrays().ids) == list(ids[:2])
    reasons = {entry['index']: entry['reason'] for entry in first.outputs.failed_clusters.get_list()}
    assert reasons == {2: 'interrupted', 3: 'missing_output', 4: 'missing_output'}
    # The restart labelled exactly the three clusters without a record.
    assert list(second.inputs.clusters.get_arrays().ids) == list(ids[2:])
    labelled = results['clusters'].get_arrays()
    assert sorted(labelled.ids) == sorted(ids)
    assert len(set(labelled.ids)) == len(ids)
    assert np.all(np.isfinite(labelled.labels['energy']))
