"""Load: many small labelling jobs through the daemon at once, all finished and none lost.

``QRNN_LOAD_JOBS`` sets the count (default 12, small enough for CI); benchmarks/bench_daemon_load.py runs 1000 and
reports timings.
"""

from __future__ import annotations

import os
from collections import Counter

N_JOBS = int(os.environ.get('QRNN_LOAD_JOBS', '12'))


def test_many_small_labelling_jobs(production, tmp_path):
    pks = tmp_path / 'pks.json'
    production.driver('submit-many', N_JOBS, 301, pks)
    summary = production.driver('wait-many', pks, 60 * N_JOBS, timeout=120 + 60 * N_JOBS)
    assert summary['n_pending'] == 0 and summary['finished_ok'] == N_JOBS, summary['not_ok']
    assert summary['n_calcjobs'] == N_JOBS  # one SLURM job each, nothing resubmitted
    labelled = Counter(summary['labelled_ids'])
    assert set(labelled) == set(summary['input_ids']) and set(labelled.values()) == {1}
