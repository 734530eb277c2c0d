"""Commands the production tests run inside ``verdi -p PROFILE run driver.py -- COMMAND ...``.

The tests drive a real profile (PostgreSQL + RabbitMQ) in subprocesses, as a user would, so that the pytest
process never loads that profile. Every command prints one line ``RESULT <json>``.

    submit ENGINE CODE N_CLUSTERS SEED BATCH_SIZE OPTIONS_JSON [PARAMETERS_JSON]   -> {"pk": ...}
    submit-many N SEED FILE     -> N xtb work chains of one cluster each on xtb@cluster; their pks go to FILE
    wait-many FILE TIMEOUT      -> once all have terminated: states, labels per cluster id, engine timings
    wait-job PK TIMEOUT         -> {"job_id", "remote"} of the first CalcJob of PK once it is with the scheduler
    wait PK TIMEOUT             -> the audit of PK once it has terminated
    audit PK                    -> {"state", "exit_status", "input_ids", "output_ids", "calcjobs": [...], ...}
"""

from __future__ import annotations

import json
import sys
import time

from aiida import orm
from aiida.engine import submit

from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.demo import build_ethylene_glycol_clusters
from aiida_qrnn.workchains.label import LabelWorkChain


def ids_of(clusters: ClusterSetData) -> list[str]:
    return [str(cluster_id) for cluster_id in clusters.get_arrays().ids]


def submit_label(engine: str, code: str, n_clusters: str, seed: str, batch_size: str, options: str,
                 parameters: str = '') -> dict:
    images = build_ethylene_glycol_clusters(int(n_clusters), seed=int(seed))
    if engine == 'psi4':
        from ase.build import molecule

        images = [molecule('H2O') for _ in range(int(n_clusters))]
        for number, atoms in enumerate(images):
            atoms.positions += 0.01 * number * (number % 3 + 1)
            atoms.info.update(kind='conformational', source=f'water {seed} {number}')
    clusters = ClusterSetData.from_atoms(images).store()
    inputs = {
        'clusters': clusters, 'engine': orm.Str(engine), 'code': orm.load_code(code),
        'batch_size': orm.Int(int(batch_size)), 'max_concurrent': orm.Int(50),
        'options': orm.Dict(json.loads(options)),
    }
    if parameters:
        inputs['parameters'] = orm.Dict(json.loads(parameters))
    if engine == 'psi4':
        inputs['d3bj_code'] = orm.load_code(code.replace('psi4@', 'aiida-qrnn-exec@'))
    node = submit(LabelWorkChain, **inputs)
    return {'pk': node.pk, 'input_ids': ids_of(clusters)}


def calcjobs_of(node: orm.ProcessNode) -> list[orm.CalcJobNode]:
    return sorted((child for child in node.called_descendants if isinstance(child, orm.CalcJobNode)),
                  key=lambda child: child.pk)


def wait_job(pk: str, timeout: str) -> dict:
    """The first CalcJob of work chain ``pk`` once SLURM runs it (job id and remote working directory)."""
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        for calcjob in calcjobs_of(orm.load_node(int(pk))):
            if calcjob.get_job_id() and calcjob.get_remote_workdir():
                return {'pk': calcjob.pk, 'job_id': calcjob.get_job_id(), 'remote': calcjob.get_remote_workdir()}
        time.sleep(0.5)
    raise TimeoutError(f'no CalcJob of {pk} reached the scheduler in {timeout} s')


def audit(pk: str) -> dict:
    """What happened: the work chain's end, every CalcJob with the cluster ids it labelled, the final outputs."""
    node = orm.load_node(int(pk))
    calcjobs = []
    for calcjob in calcjobs_of(node):
        outputs = calcjob.outputs
        creator = calcjob.inputs.clusters.creator
        calcjobs.append({
            'pk': calcjob.pk, 'job_id': calcjob.get_job_id(), 'state': calcjob.process_state.value,
            'exit_status': calcjob.exit_status, 'exit_message': calcjob.exit_message,
            'scheduler_state': calcjob.get_scheduler_state().value if calcjob.get_scheduler_state() else None,
            'input_ids': ids_of(calcjob.inputs.clusters),
            'input_created_by': creator.process_label if creator else None,
            'labelled_ids': ids_of(outputs.clusters) if 'clusters' in outputs else [],
            'failed': outputs.failed_clusters.get_list() if 'failed_clusters' in outputs else [],
        })
    reports = [log.message for log in orm.Log.collection.get_logs_for(node)]
    for child in node.called_descendants:
        reports += [log.message for log in orm.Log.collection.get_logs_for(child)]
    return {
        'pk': node.pk, 'state': node.process_state.value if node.process_state else None,
        'exit_status': node.exit_status, 'exit_message': node.exit_message,
        'input_ids': ids_of(node.inputs.clusters),
        'output_ids': ids_of(node.outputs.clusters) if 'clusters' in node.outputs else [],
        'failed': node.outputs.failed.get_list() if 'failed' in node.outputs else [],
        'calcjobs': calcjobs, 'reports': reports,
        'engine_seconds': (node.mtime - node.ctime).total_seconds(),
    }


def submit_many(n_jobs: str, seed: str, path: str) -> dict:
    """``n_jobs`` labelling work chains of one cluster each, all submitted to the daemon at once."""
    images = build_ethylene_glycol_clusters(int(n_jobs), seed=int(seed))
    code, options = orm.load_code('xtb@cluster'), orm.Dict({'max_wallclock_seconds': 600})
    pks, ids = [], []
    start = time.perf_counter()
    for atoms in images:
        clusters = ClusterSetData.from_atoms([atoms]).store()
        node = submit(LabelWorkChain, clusters=clusters, engine=orm.Str('xtb'), code=code, options=options,
                      batch_size=orm.Int(1))
        pks.append(node.pk)
        ids += ids_of(clusters)
    seconds = time.perf_counter() - start
    with open(path, 'w') as handle:
        json.dump({'pks': pks, 'input_ids': ids, 'submit_seconds': seconds}, handle)
    return {'n_jobs': len(pks), 'submit_seconds': seconds}


def wait_many(path: str, timeout: str) -> dict:
    """Wait for every work chain of ``path``; what finished, which clusters got labels how often, and timings."""
    with open(path) as handle:
        submitted = json.load(handle)
    deadline = time.monotonic() + float(timeout)
    pending = set(submitted['pks'])
    while pending and time.monotonic() < deadline:
        pending = {pk for pk in pending if not orm.load_node(pk).is_terminated}
        time.sleep(2.0)
    nodes = [orm.load_node(pk) for pk in submitted['pks']]
    processes = [node for root in nodes for node in (root, *root.called_descendants)]
    calcjobs = [node for node in processes if isinstance(node, orm.CalcJobNode)]
    labelled = [cluster_id for calcjob in calcjobs if 'clusters' in calcjob.outputs
                for cluster_id in ids_of(calcjob.outputs.clusters)]
    first, last = min(node.ctime for node in nodes), max(node.mtime for node in processes)
    durations = sorted((node.mtime - node.ctime).total_seconds() for node in calcjobs)
    return {
        'n_jobs': len(nodes), 'n_pending': len(pending), 'n_processes': len(processes), 'n_calcjobs': len(calcjobs),
        'finished_ok': sum(node.is_finished_ok for node in nodes),
        'not_ok': [(node.pk, node.process_state.value, node.exit_status) for node in nodes if not node.is_finished_ok],
        'input_ids': submitted['input_ids'], 'labelled_ids': labelled,
        'submit_seconds': submitted['submit_seconds'],
        'wall_seconds': (last - first).total_seconds(),
        'engine_seconds_per_process': (last - first).total_seconds() / len(processes),
        'calcjob_seconds_median': durations[len(durations) // 2] if durations else None,
        'calcjob_seconds_max': durations[-1] if durations else None,
    }


def wait(pk: str, timeout: str) -> dict:
    deadline = time.monotonic() + float(timeout)
    while not orm.load_node(int(pk)).is_terminated:
        if time.monotonic() > deadline:
            return {**audit(pk), 'timed_out': True}
        time.sleep(1.0)
    return audit(pk)


COMMANDS = {'submit': submit_label, 'wait-job': wait_job, 'wait': wait, 'audit': audit, 'submit-many': submit_many,
            'wait-many': wait_many}

if __name__ == '__main__':
    arguments = [argument for argument in sys.argv[1:] if argument != '--']
    print('RESULT ' + json.dumps(COMMANDS[arguments[0]](*arguments[1:])), flush=True)
