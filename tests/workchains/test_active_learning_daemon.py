"""The active-learning loop survives a daemon restart: it is submitted to the daemon of an embedded profile made by
``aiida-qrnn setup``, the daemon is stopped while round 1 runs, ``verdi process repair`` is run and the daemon is
started again, and both rounds complete with every job run once. While the daemon is down, the broker's task of one
running child is deleted, as a stop in the instant of that child's submission does, so the repair always has work.

The repair is part of the documented restart on the embedded ZeroMQ profile (AiiDA 2.9): a child submitted in the
same instant as the stop can lose its launch task (the worker sends it without a confirmation and closes its socket
without lingering); the child then stays 'created' and its parent waits forever. ``verdi process repair`` finds
such processes and queues their tasks again. This test hung in 2 of 5 runs without it."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from aiida_qrnn.testing.codes import BIN
from aiida_qrnn.testing.profiles import run, stop_daemon

pytestmark = pytest.mark.integration  # a daemon on a profile made by `aiida-qrnn setup`

SUBMIT = '''
from aiida import orm
from aiida.engine import run_get_node, submit

from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.workchains.active_learning import ActiveLearningWorkChain
from aiida_qrnn.workchains.label import LabelWorkChain
from aiida_qrnn.testing.structures import make_water_clusters

xtb, exec_code = orm.load_code('xtb@localhost'), orm.load_code('aiida-qrnn-exec@localhost')
labelled, node = run_get_node(LabelWorkChain, clusters=ClusterSetData.from_atoms(make_water_clusters(8, seed=81)),
                              engine=orm.Str('xtb'), code=xtb)
assert node.is_finished_ok, node.exit_message
loop = submit(
    ActiveLearningWorkChain, clusters=labelled['clusters'], code=exec_code,
    training=orm.Dict({'model': {'charge_hidden': [8], 'energy_hidden': [8], 'dispersion': None},
                       'training': {'max_epochs': 2, 'batch_size': 4, 'validation_fraction': 0.25}}),
    committee_size=orm.Int(2), candidates={'water': ClusterSetData.from_atoms(make_water_clusters(12, seed=82))},
    selection=orm.Dict({'rule': 'top_k_random', 'k': 2, 'k_random': 1}),
    label={'engine': orm.Str('xtb'), 'code': xtb}, max_rounds=orm.Int(2),
)
print('PK', loop.pk)
'''

STATE = '''
import sys
from aiida import orm
node = orm.load_node(int(sys.argv[1]))
descendants = [d.process_label for d in node.called_descendants if d.is_finished_ok]
summary = node.outputs.summary.get_dict() if node.is_finished_ok else {}
print('STATE', node.process_state.value, node.exit_status, descendants.count('TrainCalculation'),
      len(summary.get('rounds', [])))
'''


def state(aiida_path, folder, pk: int) -> tuple[str, str, int, int]:
    output = run([BIN / 'verdi', 'run', str(folder / 'state.py'), str(pk)], aiida_path).stdout
    _, process_state, exit_status, trainings, rounds = next(
        line.split() for line in output.splitlines() if line.startswith('STATE'))
    return process_state, exit_status, int(trainings), int(rounds)


def wait_for(condition, aiida_path, folder, pk: int, timeout: float) -> tuple[str, str, int, int]:
    deadline = time.monotonic() + timeout
    while True:
        current = state(aiida_path, folder, pk)
        if condition(current) or time.monotonic() > deadline:
            return current
        time.sleep(2)


def active_process_pks(aiida_path: Path) -> set[int]:
    """Pks of the processes the database holds as created, waiting or running."""
    output = run([BIN / 'verdi', 'process', 'list', '--raw', '-P', 'pk'], aiida_path).stdout
    return {int(line) for line in output.split() if line.isdigit()}


def drop_a_child_task(aiida_path: Path, active: set[int]) -> int | None:
    """Delete the embedded broker's task of one active child of the loop; its pid (None when no active child has
    one: then a child's launch task was already lost in the stop, the case this simulates). A task left behind by
    a child that has already terminated is not a candidate: deleting it would leave nothing to repair."""
    tasks = [(json.loads(task_file.read_text())['body']['args']['pid'], task_file)
             for task_file in sorted((aiida_path / '.aiida' / 'broker').glob('*/storage/tasks/*/*.json'))]
    dropped = next((pid for pid, _ in tasks if pid in active), None)
    for pid, task_file in tasks:
        if pid == dropped:  # every copy, pending or in processing, so the child has none left
            task_file.unlink()
    return dropped


def test_loop_completes_across_a_daemon_restart(tmp_path):
    aiida_path = tmp_path / 'aiida'
    aiida_path.mkdir()
    (tmp_path / 'submit.py').write_text(textwrap.dedent(SUBMIT))
    (tmp_path / 'state.py').write_text(textwrap.dedent(STATE))
    run([BIN / 'aiida-qrnn', 'setup'], aiida_path)
    run([BIN / 'verdi', 'daemon', 'start', '1'], aiida_path)
    try:
        output = run([BIN / 'verdi', 'run', str(tmp_path / 'submit.py')], aiida_path, timeout=300).stdout
        pk = int(next(line.split()[1] for line in output.splitlines() if line.startswith('PK')))
        # stop the daemon once the first model and a committee member of round 1 are trained, while the loop waits
        before = wait_for(lambda current: (current[2] >= 2 and current[0] == 'waiting')
                          or current[0] in ('finished', 'excepted', 'killed'), aiida_path, tmp_path, pk, timeout=400)
        stop_daemon(aiida_path)
        assert before[0] == 'waiting', before  # stopped in the middle of the loop
        time.sleep(3)
        assert state(aiida_path, tmp_path, pk)[0] == 'waiting'  # nothing runs while the daemon is down
        active_children = active_process_pks(aiida_path) - {pk}
        dropped = drop_a_child_task(aiida_path, active_children)
        repair = run([BIN / 'verdi', 'process', 'repair'], aiida_path).stdout
        if dropped is not None:
            assert f'Revived process `{dropped}`' in repair, repair
        elif active_children:  # an active child had already lost its task in the stop
            assert 'Revived process' in repair, repair
        # else every child had finished when the daemon stopped: the loop's own task is all there is
        run([BIN / 'verdi', 'daemon', 'start', '1'], aiida_path)
        after = wait_for(lambda current: current[0] in ('finished', 'excepted', 'killed'), aiida_path, tmp_path, pk,
                         timeout=600)
    finally:
        stop_daemon(aiida_path, check=False)
    process_state, exit_status, trainings, rounds = after
    assert (process_state, exit_status, rounds) == ('finished', '0', 2), after
    # first model, 2 committees of 2, 2 transfer-learned models: each job ran once, none was repeated
    assert trainings == 7
