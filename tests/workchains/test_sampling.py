"""``SamplingWorkChain``: the tiny protocol end to end (cells -> real OpenMM MD -> clusters), with provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_qrnn.calculations.sampling import cell_plan, validate_cluster_parameters
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.workchains.sampling import SamplingWorkChain, load_protocol


def test_tiny_protocol_builds_equilibrates_and_samples_with_provenance(classical_md_code):
    builder = SamplingWorkChain.get_builder_from_protocol(classical_md_code, protocol='tiny')
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message

    clusters = results['clusters']
    assert isinstance(clusters, ClusterSetData)
    assert set(clusters.base.attributes.get('kinds')) == {'extracted', 'conformational', 'decomposed'}
    assert sorted(clusters.elements) == ['C', 'H', 'O']
    with clusters.open_cluster_set() as opened:
        molecules = [len(np.unique(opened[i].arrays['molecule'])) for i in range(len(opened))]
        sources = [json.loads(s) for s in opened.read_column('clusters/source')]
    assert set(molecules) <= {1, 2, 3}  # tiny protocol: up to 3 monomers

    # provenance: clusters <- extract_clusters <- NVT trajectory <- ClassicalMdCalculation <- cell <- build_cells
    extraction = clusters.creator
    assert extraction.process_label == 'extract_clusters'
    trajectory = extraction.base.links.get_incoming(link_label_filter='n001_r00').one().node
    assert sources[0]['trajectory'] == f'n001_r00:{trajectory.uuid}'
    md = trajectory.creator
    assert md.process_class is not None and md.process_label == 'ClassicalMdCalculation'
    assert md.inputs.structure.creator.process_label == 'build_cells'
    assert md.outputs.output_parameters['final_density_g_cm3'] > 0.5
    assert md.caller.pk == node.pk


def test_protocols_load_and_the_paper_protocol_has_the_paper_sizes(classical_md_code):
    for name in ('moderate', 'tiny', 'demo', 'fast', 'paper'):
        builder = SamplingWorkChain.get_builder_from_protocol(classical_md_code, protocol=name)
        assert validate_cluster_parameters(builder.clusters, None) is None
    paper = load_protocol('paper')
    plan = cell_plan(paper['cells'])
    assert len(plan) == 13 * 10
    assert {entry['n_molecules'] for entry in plan if entry['n_units'] == 1} == {150}
    assert {entry['n_molecules'] for entry in plan if entry['n_units'] == 100} == {11}  # ~8000 atoms
    md = paper['md']['parameters']
    assert md['npt_steps'] * md['timestep_fs'] == 2e6  # 2 ns
    assert md['nvt_steps'] * md['timestep_fs'] == 1e7  # 10 ns
    assert paper['clusters']['max_molecules_by_units'] == {'1': 8, '2': 6, '3': 4}


def test_bad_inputs_are_named(classical_md_code):
    with pytest.raises(ValueError, match='unknown sampling protocol'):
        SamplingWorkChain.get_builder_from_protocol(classical_md_code, protocol='huge')
    with pytest.raises(ValueError, match='n_units'):
        cell_plan({'n_units': [0]})
    assert 'max_molecules_by_units' in validate_cluster_parameters(orm.Dict({'max_molecules_by_units': {}}), None)


def test_propylene_glycol_sampling_runs_gaff2_and_gives_clusters_of_pg_molecules(classical_md_code):
    """The polymer input: PG cells packed from core.polymer, GAFF2 MD (AmberTools), clusters of whole PG molecules."""
    from aiida_qrnn.core.polymer import PROPYLENE_GLYCOL

    polymer = orm.Dict(PROPYLENE_GLYCOL.to_dict())
    builder = SamplingWorkChain.get_builder_from_protocol(classical_md_code, protocol='tiny', overrides={
        'cells': {'n_units': [1, 2], 'target_atoms': 120}, 'clusters': {'max_molecules_by_units': {'1': 3, '2': 2}}})
    builder.polymer = polymer
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message

    cells = {label: results['final_structures'][label] for label in ('n001_r00', 'n002_r00')}
    assert cells['n001_r00'].get_ase().get_chemical_formula() == 'C27H72O18'  # 9 x C3H8O2
    md = results['final_structures']['n002_r00'].creator
    assert md.inputs.polymer.pk == polymer.pk and md.outputs.output_parameters['force_field'] == 'GAFF2'
    assert md.inputs.structure.creator.inputs.polymer.pk == polymer.pk
    assert md.inputs.structure.label.startswith('HO-(CH2CH(CH3)O)2-H x')

    clusters = results['clusters']
    assert clusters.creator.inputs.polymer.pk == polymer.pk
    assert sorted(clusters.elements) == ['C', 'H', 'O']
    with clusters.open_cluster_set() as opened:
        kinds = [str(kind) for kind in opened.read_column('clusters/kind')]
        sizes = set()
        for index in (index for index, kind in enumerate(kinds) if kind == 'extracted'):
            molecule = opened[index].arrays['molecule']
            sizes |= {int(np.count_nonzero(molecule == m)) for m in np.unique(molecule)}
    assert sizes and sizes <= {13, 23}  # whole PG (C3H8O2) and DPG (C6H14O3) molecules


def test_a_bad_polymer_is_named(classical_md_code):
    from aiida_qrnn.calculations.sampling import validate_polymer

    message = validate_polymer(orm.Dict({'repeat_units': {'X': '[*]C[Si]O[*]'}, 'head': 'O', 'tail': '[H]'}), None)
    assert "repeat_units['X']" in message and 'Si' in message
