"""``LabelWorkChain`` with real xtb on localhost: batches, reuse of stored labels, failed clusters and their limit."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.workchains.label import LabelWorkChain
from tests.conftest import make_water_clusters

XTB = shutil.which('xtb') or 'xtb'


@pytest.fixture
def xtb_code(aiida_code_installed) -> orm.InstalledCode:
    return aiida_code_installed(default_calc_job_plugin='qrnn.xtb', filepath_executable=XTB)


def labelled_ids(node) -> list[list[str]]:
    """Input cluster ids of every xtb job the work chain ran (through its restart work chains)."""
    jobs = [
        descendant for descendant in node.called_descendants
        if descendant.process_type == 'aiida.calculations:qrnn.xtb'
    ]
    return [list(job.inputs.clusters.get_arrays().ids) for job in jobs]


def test_batches_then_reuse(xtb_code):
    """Five clusters in batches of two (two in flight), then the union with two new clusters: only those two
    are computed, the five are reused with identical labels."""
    old = ClusterSetData.from_atoms(make_water_clusters(5, seed=21))  # a seed no other test labels
    results, node = run_get_node(
        LabelWorkChain, clusters=old, engine=orm.Str('xtb'), code=xtb_code, batch_size=orm.Int(2),
        max_concurrent=orm.Int(2),
    )
    assert node.exit_status == 0, node.exit_message
    first = results['clusters'].get_arrays()
    old_ids = list(old.get_arrays().ids)
    assert sorted(first.ids) == sorted(old_ids)
    assert sorted(len(ids) for ids in labelled_ids(node)) == [1, 2, 2]
    assert results['clusters'].level_of_theory == 'gfn2-xtb'

    new_images = make_water_clusters(2, seed=22)
    union = ClusterSetData.from_atoms([*make_water_clusters(5, seed=21), *new_images])
    results, node = run_get_node(
        LabelWorkChain, clusters=union, engine=orm.Str('xtb'), code=xtb_code, batch_size=orm.Int(10),
    )
    assert node.exit_status == 0, node.exit_message
    computed = [cluster_id for ids in labelled_ids(node) for cluster_id in ids]
    new_ids = list(ClusterSetData.from_atoms(new_images).get_arrays().ids)
    assert sorted(computed) == sorted(new_ids)
    second = results['clusters'].get_arrays()
    assert sorted(second.ids) == sorted(old_ids + new_ids)
    energy = dict(zip(second.ids, second.labels['energy'], strict=True))
    np.testing.assert_array_equal([energy[i] for i in first.ids], first.labels['energy'])


def test_failed_fraction_limit(xtb_code):
    """One of three clusters cannot be labelled: it is in ``failed`` with its reason, and 1/3 > 5 % fails."""
    images = make_water_clusters(3, seed=4)
    images[1].positions[1] = images[1].positions[0]
    clusters = ClusterSetData.from_atoms(images)
    results, node = run_get_node(
        LabelWorkChain, clusters=clusters, engine=orm.Str('xtb'), code=xtb_code, reuse=orm.Bool(False),
    )
    assert node.exit_status == LabelWorkChain.exit_codes.ERROR_TOO_MANY_FAILED.status
    (failure,) = results['failed'].get_list()
    assert failure['index'] == 1
    assert failure['id'] == clusters.get_arrays().ids[1]
    assert failure['reason'] == 'abnormal_termination'
    assert results['clusters'].n_clusters == 2

    results, node = run_get_node(
        LabelWorkChain, clusters=clusters, engine=orm.Str('xtb'), code=xtb_code, reuse=orm.Bool(False),
        max_failed_fraction=orm.Float(0.5),
    )
    assert node.exit_status == 0
    assert len(results['failed']) == 1


def test_engine_is_validated(xtb_code):
    with pytest.raises(ValueError, match='engine'):
        run_get_node(LabelWorkChain, clusters=ClusterSetData.from_atoms(make_water_clusters(1)),
                     engine=orm.Str('orca'), code=xtb_code)
