"""Commands the production tests run inside ``verdi -p PROFILE run production_driver.py -- COMMAND ...``.

The tests drive a real profile (PostgreSQL + RabbitMQ) in subprocesses, as a user would, so that the pytest
process never loads that profile. Every command prints one line ``RESULT <json>``.

    submit ENGINE CODE N_CLUSTERS SEED BATCH_SIZE OPTIONS_JSON [PARAMETERS_JSON]   -> {"pk": ...}
    submit-many N SEED FILE [MAX_ACTIVE]  -> N xtb work chains of one cluster each on xtb@cluster, their pks to FILE;
                                  with MAX_ACTIVE > 0 in waves: never more than that many unfinished at a time
    wait-many FILE TIMEOUT      -> once all have terminated: states, labels per cluster id, engine timings
    wait-job PK TIMEOUT         -> {"job_id", "remote"} of the first CalcJob of PK once it is with the scheduler
    wait PK TIMEOUT             -> the audit of PK once it has terminated
    audit PK                    -> {"state", "exit_status", "input_ids", "output_ids", "calcjobs": [...], ...}
    submit-train DATASET_PK PARAMETERS_JSON OPTIONS_JSON   -> {"pk"} of a TrainWorkChain on aiida-qrnn-exec@cluster
    submit-md MODEL_PK|none PARAMETERS_JSON OPTIONS_JSON   -> {"pk"} of an MdBaseWorkChain on a packed 10-molecule cell
    wait-process PK TIMEOUT     -> the end of any work chain: its jobs (with their parent folders), outputs, reports
    wait-report PK TEXT TIMEOUT -> {"report"}: the first log message of PK or its descendants that contains TEXT
"""

from __future__ import annotations

import ast
import json
import sys
import time

from aiida import orm
from aiida.engine import submit

from aiida_qrnn.computers import scheduler_options
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.structures import build_ethylene_glycol_clusters
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
    reports = reports_of(node)
    return {
        'pk': node.pk, 'state': node.process_state.value if node.process_state else None,
        'exit_status': node.exit_status, 'exit_message': node.exit_message,
        'input_ids': ids_of(node.inputs.clusters),
        'output_ids': ids_of(node.outputs.clusters) if 'clusters' in node.outputs else [],
        'output_pk': node.outputs.clusters.pk if 'clusters' in node.outputs else None,
        'failed': node.outputs.failed.get_list() if 'failed' in node.outputs else [],
        'calcjobs': calcjobs, 'reports': reports,
        'engine_seconds': (node.mtime - node.ctime).total_seconds(),
    }


def log_text(log: orm.Log) -> str:
    """A log entry's line; AiiDA stores only the traceback as the message of an exception record, so its own line
    (``msg % args``, kept in the metadata) is put in front."""
    template, arguments = log.metadata.get('msg'), log.metadata.get('args')
    if not (isinstance(template, str) and isinstance(arguments, str) and template not in log.message):
        return log.message
    try:
        line = template % ast.literal_eval(arguments)
    except (ValueError, SyntaxError, TypeError):
        line = template
    return f'{line}\n{log.message}'


def reports_of(node: orm.ProcessNode) -> list[str]:
    """The log messages of ``node`` and every process it called (``verdi process report``)."""
    return [log_text(log) for process in (node, *node.called_descendants)
            for log in orm.Log.collection.get_logs_for(process)]


def wait_report(pk: str, text: str, timeout: str) -> dict:
    """Wait until process ``pk`` or one of its descendants logged a message containing ``text``."""
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        found = [message for message in reports_of(orm.load_node(int(pk))) if text in message]
        if found:
            return {'report': found[0]}
        time.sleep(0.2)
    raise TimeoutError(f'process {pk} logged nothing containing {text!r} in {timeout} s')


def submit_many(n_jobs: str, seed: str, path: str, max_active: str = '0') -> dict:
    """``n_jobs`` labelling work chains of one cluster each, submitted to the daemon at once or, with ``max_active``,
    as a submission controller does: the next one only while fewer than ``max_active`` are unfinished."""
    images = build_ethylene_glycol_clusters(int(n_jobs), seed=int(seed))
    code, options = orm.load_code('xtb@cluster'), orm.Dict({'max_wallclock_seconds': 600})
    pks, ids, active = [], [], set()
    start = time.perf_counter()
    for atoms in images:
        while int(max_active) > 0 and len(active) >= int(max_active):
            time.sleep(2.0)
            active = unfinished(active)
        clusters = ClusterSetData.from_atoms([atoms]).store()
        node = submit(LabelWorkChain, clusters=clusters, engine=orm.Str('xtb'), code=code, options=options,
                      batch_size=orm.Int(1))
        pks.append(node.pk)
        active.add(node.pk)
        ids += ids_of(clusters)
    seconds = time.perf_counter() - start
    with open(path, 'w') as handle:
        json.dump({'pks': pks, 'input_ids': ids, 'submit_seconds': seconds}, handle)
    return {'n_jobs': len(pks), 'submit_seconds': seconds}


def unfinished(pks: set[int]) -> set[int]:
    """The processes of ``pks`` that have not terminated."""
    if not pks:
        return set()
    states = orm.QueryBuilder().append(orm.ProcessNode, filters={'id': {'in': sorted(pks)}},
                                       project=['id', 'attributes.process_state']).all()
    return {pk for pk, state in states if state not in ('finished', 'excepted', 'killed')}


def wait_many(path: str, timeout: str) -> dict:
    """Wait for every work chain of ``path``; what finished, which clusters got labels how often, and timings."""
    with open(path) as handle:
        submitted = json.load(handle)
    deadline = time.monotonic() + float(timeout)
    pending = unfinished(set(submitted['pks']))
    while pending and time.monotonic() < deadline:
        time.sleep(2.0)
        pending = unfinished(pending)
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


def wait(pk: str, timeout: str, describe=audit) -> dict:
    deadline = time.monotonic() + float(timeout)
    while not orm.load_node(int(pk)).is_terminated:
        if time.monotonic() > deadline:
            return {**describe(pk), 'timed_out': True}
        time.sleep(1.0)
    return describe(pk)


def submit_train(dataset_pk: str, parameters: str, options: str) -> dict:
    """A ``TrainWorkChain`` of one model on the labelled set ``dataset_pk`` with ``aiida-qrnn-exec@cluster``."""
    from aiida_qrnn.workchains.train import TrainWorkChain

    code = orm.load_code('aiida-qrnn-exec@cluster')
    node = submit(TrainWorkChain, train={
        'code': code, 'datasets': {'labelled': orm.load_node(int(dataset_pk))},
        'parameters': orm.Dict(json.loads(parameters)),
        'metadata': {'options': scheduler_options(code.computer, **json.loads(options))},
    })
    return {'pk': node.pk}


def submit_md(model_pk: str, parameters: str, options: str) -> dict:
    """An ``MdBaseWorkChain`` of ten ethylene glycol molecules at 0.9 g/cm³ with the model ``model_pk`` (``none``:
    the OPLS-AA baseline) with ``aiida-qrnn-exec@cluster``."""
    from aiida_qrnn.core.structures import pack_cell
    from aiida_qrnn.workchains.md import MdBaseWorkChain

    code = orm.load_code('aiida-qrnn-exec@cluster')
    md = {'code': code, 'structure': orm.StructureData(ase=pack_cell(1, 10, density_g_cm3=0.9, seed=1)),
          'parameters': orm.Dict(json.loads(parameters)),
          'metadata': {'options': scheduler_options(code.computer, **json.loads(options))}}
    if model_pk != 'none':
        md['model'] = orm.load_node(int(model_pk))
    return {'pk': submit(MdBaseWorkChain, md=md).pk}


def describe_process(pk: str) -> dict:
    """Any work chain: its end, each CalcJob (SLURM job, exit, the folder it continued from), outputs, reports."""
    node = orm.load_node(int(pk))
    jobs = []
    for calcjob in calcjobs_of(node):
        parent = calcjob.inputs.parent_folder if 'parent_folder' in calcjob.inputs else None
        jobs.append({
            'pk': calcjob.pk, 'process_label': calcjob.process_label, 'job_id': calcjob.get_job_id(),
            'exit_status': calcjob.exit_status, 'exit_message': calcjob.exit_message,
            'scheduler_state': calcjob.get_scheduler_state().value if calcjob.get_scheduler_state() else None,
            'computer': calcjob.computer.label, 'parent_folder': parent.uuid if parent else None,
            'remote_folder': calcjob.outputs.remote_folder.uuid if 'remote_folder' in calcjob.outputs else None,
            'input_pks': {link.link_label: link.node.pk for link in calcjob.base.links.get_incoming().all()},
            'output_pks': {link.link_label: link.node.pk for link in calcjob.base.links.get_outgoing().all()},
        })
    outputs = {link.link_label: link.node.pk for link in node.base.links.get_outgoing().all()}
    details = {}
    if 'model' in node.outputs:
        details['model'] = {'elements': node.outputs.model.base.attributes.get('elements'),
                            'metrics': node.outputs.model.base.attributes.get('metrics')}
    if 'output_parameters' in node.outputs and isinstance(node.outputs.output_parameters, orm.Dict):
        details['output_parameters'] = node.outputs.output_parameters.get_dict()
    if 'log' in node.outputs:
        details['log_steps'] = node.outputs.log.get_array('step').tolist()
        details['log_potential_energy_eV'] = node.outputs.log.get_array('potential_energy_eV').tolist()
    reports = reports_of(node)
    return {'pk': node.pk, 'state': node.process_state.value if node.process_state else None,
            'exit_status': node.exit_status, 'exit_message': node.exit_message,
            'jobs': jobs, 'outputs': outputs, 'details': details, 'reports': reports}


def wait_process(pk: str, timeout: str) -> dict:
    return wait(pk, timeout, describe=describe_process)


COMMANDS = {'submit': submit_label, 'wait-job': wait_job, 'wait': wait, 'audit': audit, 'submit-many': submit_many,
            'wait-many': wait_many, 'submit-train': submit_train, 'submit-md': submit_md, 'wait-process': wait_process,
            'wait-report': wait_report}

if __name__ == '__main__':
    arguments = [argument for argument in sys.argv[1:] if argument != '--']
    print('RESULT ' + json.dumps(COMMANDS[arguments[0]](*arguments[1:])), flush=True)
