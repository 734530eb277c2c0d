"""``LabelWorkChain`` with real xtb on localhost: batches, reuse of stored labels, failed clusters and their limit."""

from __future__ import annotations

import re

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from tblite.interface import Calculator

from aiida_qrnn.core.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.structures import make_water_clusters
from aiida_qrnn.workchains.label import LabelWorkChain, assemble_labels, batch_label, submitted_batch


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
    assert list(first.ids) == old_ids
    assert sorted(len(ids) for ids in labelled_ids(node)) == [1, 2, 2]
    assert results['clusters'].level_of_theory == 'gfn2-xtb'

    new_images = make_water_clusters(2, seed=22)
    old_images = make_water_clusters(5, seed=21)
    union = ClusterSetData.from_atoms([new_images[0], *old_images[:3], new_images[1], *old_images[3:]])
    results, node = run_get_node(
        LabelWorkChain, clusters=union, engine=orm.Str('xtb'), code=xtb_code, batch_size=orm.Int(10),
    )
    assert node.exit_status == 0, node.exit_message
    computed = [cluster_id for ids in labelled_ids(node) for cluster_id in ids]
    new_ids = list(ClusterSetData.from_atoms(new_images).get_arrays().ids)
    assert sorted(computed) == sorted(new_ids)
    second = results['clusters'].get_arrays()
    assert list(second.ids) == list(union.get_arrays().ids)  # input order, although reused and new parts differ
    energy = dict(zip(second.ids, second.labels['energy'], strict=True))
    np.testing.assert_array_equal([energy[i] for i in first.ids], first.labels['energy'])


def test_failed_fraction_limit(xtb_code):
    """One of three clusters cannot be labelled (water at charge -6: more electrons than GFN2's basis holds): it is
    in ``failed`` with its reason, and 1/3 > 5 % fails."""
    images = make_water_clusters(3, seed=4)
    images[0].info['total_charge'] = -6  # cluster 0 is one molecule
    clusters = ClusterSetData.from_atoms(images)
    results, node = run_get_node(
        LabelWorkChain, clusters=clusters, engine=orm.Str('xtb'), code=xtb_code, reuse=orm.Bool(False),
    )
    assert node.exit_status == LabelWorkChain.exit_codes.ERROR_TOO_MANY_FAILED.status
    (failure,) = results['failed'].get_list()
    assert failure['index'] == 0
    assert failure['id'] == clusters.get_arrays().ids[0]
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


def test_dft_labels_with_xtb_charges(xtb_code, pyscf_code):
    """PySCF HF/STO-3G labels plus GFN2-xTB charges: every cluster gets both, the charges are tblite's GFN2-xTB
    charges (1e-4 e), sum to the total charge, and the node says which level the charges come from."""
    images = make_water_clusters(2, seed=31)
    clusters = ClusterSetData.from_atoms(images)
    results, node = run_get_node(
        LabelWorkChain, clusters=clusters, engine=orm.Str('pyscf'), code=pyscf_code, charges_code=xtb_code,
        parameters=orm.Dict({'method': 'hf', 'basis': 'sto-3g'}), reuse=orm.Bool(False),
    )
    assert node.exit_status == 0, node.exit_message
    labelled = results['clusters']
    assert labelled.level_of_theory == 'hf/sto-3g'
    assert labelled.base.attributes.get('charges_level_of_theory') == 'gfn2-xtb'
    assert sorted(labelled.label_names) == ['charges', 'dipole', 'energy', 'forces']
    arrays = labelled.get_arrays()
    assert list(arrays.ids) == list(clusters.get_arrays().ids)
    assert labelled_ids(node) == [list(clusters.get_arrays().ids)]  # one xtb job for the charges
    for index, atoms in enumerate(images):
        calculator = Calculator('GFN2-xTB', atoms.numbers, atoms.positions / BOHR_TO_ANGSTROM)
        calculator.set('verbosity', 0)
        rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
        np.testing.assert_allclose(arrays.labels['charges'][rows], calculator.singlepoint().get('charges'), atol=1e-4)
        assert abs(arrays.labels['charges'][rows].sum()) < 1e-6
    # The DFT energy, not the xTB one: HF/STO-3G of water is about -74.96 Eh per molecule.
    n_molecules = np.array([len(atoms) // 3 for atoms in images])
    np.testing.assert_allclose(arrays.labels['energy'] / HARTREE_TO_EV / n_molecules, -74.96, atol=0.01)


def dft_part(images, level: str, drop_charges: bool = True) -> ClusterSetData:
    arrays = ClusterSetData.from_atoms(images, level_of_theory='random').get_arrays()
    if drop_charges:
        arrays.labels.pop('charges')
    return ClusterSetData.from_arrays(arrays, level_of_theory=level)


def test_assemble_labels_orders_and_adds_charges():
    """Parts come back in the input order; a cluster without xTB charges is left out; charges follow the ids."""
    images = make_water_clusters(4, labelled=True, seed=41)
    clusters = ClusterSetData.from_atoms(images, level_of_theory='random')
    parts = {
        'labels_batch_2': dft_part([images[3], images[2]], 'hf/sto-3g'),
        'labels_reused': dft_part([images[1], images[0]], 'hf/sto-3g'),
        'charges_batch': dft_part([images[2], images[0], images[3]], 'gfn2-xtb', drop_charges=False),
    }
    assembled = assemble_labels(clusters=clusters, **parts)
    arrays = assembled.get_arrays()
    input_ids = list(clusters.get_arrays().ids)
    assert list(arrays.ids) == [input_ids[0], input_ids[2], input_ids[3]]  # cluster 1 has no charges
    assert assembled.base.attributes.get('charges_level_of_theory') == 'gfn2-xtb'
    assert assembled.level_of_theory == 'hf/sto-3g'
    for row, index in enumerate([0, 2, 3]):
        np.testing.assert_array_equal(arrays.labels['charges'][arrays.offsets[row]:arrays.offsets[row + 1]],
                                      images[index].get_charges())
        assert arrays.labels['energy'][row] == images[index].get_potential_energy()


def test_charges_code_is_refused_for_xtb(xtb_code):
    with pytest.raises(ValueError, match='charges_code'):
        run_get_node(LabelWorkChain, clusters=ClusterSetData.from_atoms(make_water_clusters(1)),
                     engine=orm.Str('xtb'), code=xtb_code, charges_code=xtb_code)


@pytest.mark.parametrize(
    ('inputs', 'message'),
    [
        ({'batch_size': 0}, 'batch_size: must be a positive integer, got 0.'),
        ({'batch_size': -3}, 'batch_size: must be a positive integer, got -3.'),
        ({'max_concurrent': 0}, 'max_concurrent: must be a positive integer, got 0.'),
        ({'max_failed_fraction': -1.0}, 'max_failed_fraction: must be a fraction between 0 and 1'),
        ({'parameters': {'gfn': 3}}, 'parameters: gfn must be the integer 1 or 2, got 3.'),
        ({'parameters': {'gnf': 2}}, "parameters: unknown key(s) ['gnf']"),
        ({'engine': 'psi4'}, 'parameters: the psi4 engine needs parameters with at least method and basis.'),
        ({'engine': 'pyscf', 'parameters': {'method': 'hf'}}, 'parameters: basis is required'),
        ({'engine': 'psi4', 'parameters': {'method': 'wb97x-d3bj', 'basis': 'def2-svp'}},
         "d3bj_code: method 'wb97x-d3bj' needs d3bj_code"),
    ],
    ids=['batch-0', 'batch-negative', 'concurrent-0', 'fraction-negative', 'gfn-3', 'typo-key', 'psi4-no-parameters',
         'pyscf-no-basis', 'psi4-d3bj-no-code'],
)
def test_inputs_are_validated_at_submission(xtb_code, inputs, message):
    """Before: batch_size 0 raised in range(), max_concurrent 0 spun forever, gfn 3 and typos failed in the child,
    psi4 without parameters raised KeyError 'method'. Now each is refused before anything runs, naming the input."""
    as_node = {int: orm.Int, float: orm.Float, dict: orm.Dict, str: orm.Str}
    arguments = {'clusters': ClusterSetData.from_atoms(make_water_clusters(1)), 'engine': orm.Str('xtb'),
                 'code': xtb_code, **{name: as_node[type(value)](value) for name, value in inputs.items()}}
    with pytest.raises(ValueError, match=re.escape(message)):
        run_get_node(LabelWorkChain, **arguments)


def test_clusters_the_engine_cannot_label_are_refused_at_submission(xtb_code):
    images = make_water_clusters(2)
    images[1].info['total_charge'] = 1
    with pytest.raises(ValueError, match=r'clusters: cluster 1 .* cannot have spin multiplicity 1'):
        run_get_node(LabelWorkChain, clusters=ClusterSetData.from_atoms(images), engine=orm.Str('xtb'), code=xtb_code)


def test_a_batch_submitted_before_a_restart_is_found_again(xtb_code):
    """Every child carries its deterministic batch label; the lookup that runs before each submission finds the
    child of a batch (as it does after a worker was killed between the submission and the checkpoint)."""
    clusters = ClusterSetData.from_atoms(make_water_clusters(3, seed=23))
    _, node = run_get_node(LabelWorkChain, clusters=clusters, engine=orm.Str('xtb'), code=xtb_code,
                           batch_size=orm.Int(2), reuse=orm.Bool(False))
    assert node.is_finished_ok, node.exit_message
    children = {child.label: child for child in node.called if isinstance(child, orm.WorkflowNode)}
    assert sorted(children) == [batch_label('labels', [0, 1]), batch_label('labels', [2])]
    assert submitted_batch(node, batch_label('labels', [0, 1])).pk == children['qrnn.label labels batch 0+2'].pk
    assert submitted_batch(node, batch_label('labels', [2])).pk == children['qrnn.label labels batch 2+1'].pk
    assert submitted_batch(node, batch_label('charges', [0, 1])) is None
    assert submitted_batch(children['qrnn.label labels batch 2+1'], batch_label('labels', [2])) is None


def test_a_step_replayed_after_a_worker_kill_does_not_submit_its_batch_again(xtb_code):
    """The step that submits a batch, replayed from the context of the last checkpoint (what a worker killed between
    the submission and the checkpoint leaves), finds the batch's child instead of submitting it a second time; a
    child without a checkpoint (killed inside its own submission) can never run, so the batch is submitted again.

    The steps are called by hand on a process of a runner whose event loop never runs, so children are created
    (with their CALL links) but not run; such a runner saves no checkpoint at submission, so the one the daemon
    saves is set on the child by hand.
    """
    import asyncio

    from aiida.engine.runners import Runner
    from aiida.engine.utils import instantiate_process

    loop = asyncio.new_event_loop()
    runner = Runner(loop=loop)
    try:
        clusters = ClusterSetData.from_atoms(make_water_clusters(3, seed=24))
        process = instantiate_process(runner, LabelWorkChain, clusters=clusters, engine=orm.Str('xtb'),
                                      code=xtb_code, batch_size=orm.Int(2), max_concurrent=orm.Int(1),
                                      reuse=orm.Bool(False))
        process.setup()
        process.reuse_labels()
        checkpoint = ([list(batch) for batch in process.ctx.queue], dict(process.ctx.running))

        def replay() -> list[orm.WorkflowNode]:
            """Run the step from the checkpoint's context; the batch children of the work chain after it."""
            process.ctx.queue, process.ctx.running = [list(batch) for batch in checkpoint[0]], dict(checkpoint[1])
            with process._process_scope():
                process.submit_batches()
            return sorted((child for child in process.node.called if isinstance(child, orm.WorkflowNode)),
                          key=lambda child: child.pk)

        (orphan,) = replay()
        assert orphan.label == batch_label('labels', [0, 1]) and orphan.checkpoint is None
        orphan_and_first = replay()  # the orphan cannot run: the batch is submitted again
        assert [child.label for child in orphan_and_first] == [orphan.label] * 2
        first = orphan_and_first[1]
        first.set_checkpoint('the checkpoint the daemon saves when it submits a process')
        assert replay() == orphan_and_first  # found again: nothing submitted
        assert list(process.ctx.running) == [first.uuid]
        assert process.ctx.queue == [['labels', [2]]]
    finally:
        runner.close()
        loop.close()
