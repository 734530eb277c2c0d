"""A real ``kill -9`` of the daemon worker while ``LabelWorkChain`` submits its batches: after the restart the
replayed step finds the children submitted before the kill instead of submitting them again.

The work chain submits four batches in one step (``max_concurrent`` 4); the test watches the profile's SQLite
database and kills the worker as soon as the first batch child exists, so the kill falls between that submission
and the step's checkpoint (the other three submissions take longer than the test's reaction), usually before the
child's own first checkpoint. The daemon is then stopped, ``verdi process repair`` requeues lost tasks (see
``test_active_learning_daemon.py``) and it is started again; every batch must be computed exactly once, and the
work chain must finish (it waited forever on a child that could never run before the lookup ignored such a child).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest

from aiida_qrnn.testing.profiles import EmbeddedProfile

pytestmark = pytest.mark.integration  # a daemon on a profile made by `aiida-qrnn setup`

SUBMIT = '''
from aiida import orm
from aiida.engine import submit

from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.structures import make_water_clusters
from aiida_qrnn.workchains.label import LabelWorkChain

clusters = ClusterSetData.from_atoms(make_water_clusters(8, seed=91))
node = submit(LabelWorkChain, clusters=clusters, engine=orm.Str('xtb'), code=orm.load_code('xtb@localhost'),
              batch_size=orm.Int(2), max_concurrent=orm.Int(4), reuse=orm.Bool(False))
print('PK', node.pk)
'''

STATE = '''
import sys
from aiida import orm
node = orm.load_node(int(sys.argv[1]))
batches = [child for child in node.called if isinstance(child, orm.WorkflowNode)]
ran = [child.label for child in batches if child.is_terminated]
jobs = [d for d in node.called_descendants if d.process_type == 'aiida.calculations:qrnn.xtb']
found = [log for log in orm.Log.collection.get_logs_for(node) if 'submitted before a restart' in log.message]
print('STATE', node.process_state.value, node.exit_status, len(ran), len(set(ran)), len(jobs),
      len(batches) - len(ran), len(found))
'''


def worker_pid(profile: EmbeddedProfile) -> int:
    status = profile.verdi('daemon', 'status').stdout
    table = status.split('Active workers')[1].splitlines()
    return int(next(line.split()[0] for line in table if line.strip()[:1].isdigit()))


def test_batches_submitted_before_a_worker_kill_are_not_submitted_again(tmp_path):
    profile = EmbeddedProfile.create(tmp_path, SUBMIT, STATE)
    database = profile.aiida_path / '.aiida' / 'storage' / 'qrnn' / 'database.sqlite'
    profile.start_daemon()
    try:
        worker = worker_pid(profile)
        pk = profile.submit()
        deadline = time.monotonic() + 300
        with sqlite3.connect(f'file:{database}?mode=ro', uri=True, timeout=30) as connection:
            while time.monotonic() < deadline:
                labels = connection.execute(
                    "SELECT label FROM db_dbnode WHERE label LIKE 'qrnn.label labels batch %'").fetchall()
                if labels:
                    os.kill(worker, signal.SIGKILL)
                    break
                time.sleep(0.001)  # the window is the other three submissions: short on a RAM disk
        assert labels, 'no batch was submitted within 300 s'
        profile.stop_daemon()
        profile.verdi('process', 'repair')
        profile.start_daemon()
        deadline = time.monotonic() + 600
        while (current := profile.state(pk))[0] not in ('finished', 'excepted', 'killed'):
            assert time.monotonic() < deadline, current
            time.sleep(3)
    finally:
        profile.stop_daemon(check=False)
    process_state, exit_status, n_batches, n_distinct, n_jobs, n_orphans, n_found = current
    assert (process_state, exit_status) == ('finished', '0'), current
    assert (n_batches, n_distinct, n_jobs) == ('4', '4', '4'), current  # each batch run once, none twice
    # the kill fell inside the step: a child that never got its checkpoint, or one found again by the replay
    assert int(n_orphans) + int(n_found) >= 1, current
