"""The end-to-end demo that the README's first command runs; each issue extends it with the step it adds.

Now: sample ethylene-glycol clusters from a packed cell run with the OPLS-AA baseline (SamplingWorkChain), label
them with GFN2-xTB in batches (LabelWorkChain on localhost), label them again to show that nothing is recomputed,
find the result with the QueryBuilder, print its provenance back to the cell, train a tiny QRNN on the labels
(TrainWorkChain), and compute liquid properties with the MD job and analyses that a QRNN uses too
(PropertiesWorkChain, here with the OPLS-AA baseline).
"""

from __future__ import annotations

import typing as t

import numpy as np

from aiida_qrnn.provenance import describe, provenance_lines

if t.TYPE_CHECKING:
    from aiida_qrnn.data.cluster_set import ClusterSetData


def build_ethylene_glycol_clusters(n_clusters: int, seed: int) -> list:
    """Clusters of 1-3 ethylene-glycol molecules (RDKit conformers, random placements, 0.02 Å rattle), seeded."""
    from aiida_qrnn.core.structures import ethylene_glycol_oligomer, molecular_cluster

    rng = np.random.default_rng(seed)
    images = []
    for index in range(n_clusters):
        n_molecules = index % 3 + 1
        molecules = [ethylene_glycol_oligomer(1, seed=int(rng.integers(1 << 30))) for _ in range(n_molecules)]
        atoms = molecular_cluster(molecules, rng=rng)
        atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
        atoms.info.update(kind='conformational', source=f'demo seed={seed} cluster={index} molecules={n_molecules}')
        images.append(atoms)
    return images


def run_demo(protocol: str = 'tiny', batch_size: int = 10, echo=print) -> ClusterSetData:
    """Run the demo on the loaded profile and return the labelled cluster set."""
    from aiida.engine import run_get_node
    from aiida.orm import Int, QueryBuilder, Str, load_code

    from aiida_qrnn.data.cluster_set import ClusterSetData
    from aiida_qrnn.workchains.label import LabelWorkChain
    from aiida_qrnn.workchains.sampling import SamplingWorkChain

    echo(f'1. Sampling (protocol {protocol!r}): packmol cell -> OPLS-AA relax/NPT/NVT in OpenMM -> clusters ...')
    builder = SamplingWorkChain.get_builder_from_protocol(load_code('aiida-qrnn-exec@localhost'), protocol=protocol)
    sampled = _finished(*run_get_node(builder))[0]['clusters']
    echo(f'   {type(sampled).__name__}<{sampled.pk}>: {describe(sampled)}, '
         f'kinds {sampled.base.attributes.get("kind_counts")}')

    echo(f'2. Labelling with GFN2-xTB in batches of {batch_size} (LabelWorkChain -> XtbBaseWorkChain -> '
         'XtbCalculation) ...')
    label_inputs = {'clusters': sampled, 'engine': Str('xtb'), 'code': load_code('xtb@localhost'),
                    'batch_size': Int(batch_size)}
    outputs, first = _finished(*run_get_node(LabelWorkChain, **label_inputs))
    labelled = outputs['clusters']
    echo(f'   {type(labelled).__name__}<{labelled.pk}>: {describe(labelled)}; {len(_xtb_jobs(first))} xtb job(s)')
    arrays = labelled.get_arrays()
    echo(f'   {"cluster":>7} {"kind":>15} {"atoms":>5} {"energy / eV":>14} {"max |F| / eV/Å":>15} {"Σq / e":>8}')
    for index in range(min(arrays.n_clusters, 6)):
        start, stop = arrays.offsets[index], arrays.offsets[index + 1]
        max_force = np.linalg.norm(arrays.labels['forces'][start:stop], axis=1).max()
        echo(f'   {index:>7} {arrays.kind[index]:>15} {stop - start:>5} {arrays.labels["energy"][index]:>14.4f} '
             f'{max_force:>15.4f} {arrays.labels["charges"][start:stop].sum():>8.4f}')

    echo('3. Labelling the same set again: labels of the same cluster at the same level are reused ...')
    _, second = _finished(*run_get_node(LabelWorkChain, **label_inputs))
    echo(f'   LabelWorkChain<{second.pk}> ran {len(_xtb_jobs(second))} xtb job(s)')

    echo('4. Querying the database: labelled sets at gfn2-xtb that contain oxygen ...')
    query = QueryBuilder().append(
        ClusterSetData, filters={'attributes.level_of_theory': 'gfn2-xtb', 'attributes.elements': {'contains': ['O']}},
        project=['id', 'attributes.n_clusters'],
    )
    echo(f'   found (pk, n_clusters): {sorted(query.all())}')

    echo('5. Provenance of the labelled set:')
    for line in provenance_lines(labelled):
        echo(f'   {line}')

    echo('6. Training a tiny QRNN on the labelled clusters (TrainWorkChain -> TrainCalculation, 5 epochs) ...')
    from aiida.orm import Dict

    from aiida_qrnn.workchains.train import TrainWorkChain

    parameters = Dict({'model': {'charge_hidden': [16], 'energy_hidden': [16], 'dispersion': None},
                       'training': {'max_epochs': 5, 'batch_size': 4, 'validation_fraction': 0.2}})
    trained = _finished(*run_get_node(TrainWorkChain, train={
        'code': load_code('aiida-qrnn-exec@localhost'), 'datasets': {'demo': labelled}, 'parameters': parameters,
    }))[0]
    model = trained['model']
    metrics = model.metrics
    echo(f'   ModelData<{model.pk}>: {model.base.attributes.get("n_parameters")} parameters, validation energy MAE '
         f'{1000 * metrics["energy_per_atom_mae"]:.1f} meV/atom, force MAE {metrics["forces_mae"]:.3f} eV/Å '
         f'(5 epochs on {labelled.n_clusters} clusters: a pipeline check, not a usable model)')
    echo(f'   see `aiida-qrnn model show {model.pk}` and `aiida-qrnn lineage {model.pk}`')

    echo(f'7. Liquid properties (PropertiesWorkChain, protocol {protocol!r}, OPLS-AA through the QRNN MD job): '
         'NPT -> frame at the mean density -> NVT -> analyses ...')
    from aiida_qrnn.core.analysis.experimental import experimental
    from aiida_qrnn.workchains.properties import PropertiesWorkChain

    builder = PropertiesWorkChain.get_builder_from_protocol(load_code('aiida-qrnn-exec@localhost'), protocol)
    properties = _finished(*run_get_node(builder))[0]['properties']
    reference = {name: experimental(name, 300.0) for name in ('density', 'heat_capacity')}
    for chain, node in sorted(properties.items()):
        n_units = int(chain.lstrip('n'))
        for name, entry in sorted(node.get_dict().items()):
            known = reference.get(name)
            measured = ''
            if known is not None and n_units in known.n_units:
                measured = f'   (experiment {known.values[list(known.n_units).index(n_units)]:.4g}, {known.source})'
            echo(f'   n={n_units} {name:>20}: {entry["value"]:.4g} ± {entry["uncertainty"]:.2g} {entry["unit"]}'
                 f' over {entry["n_replicas"]} replicas{measured}')
    if protocol == 'tiny':
        echo('   (tiny runs of a few dozen steps test the pipeline; the paper protocol gives the physics)')
    return labelled


class DemoError(RuntimeError):
    """A step of the demo did not finish; the message names the process to inspect."""


def _finished(outputs: dict, node):
    if not node.is_finished_ok:
        raise DemoError(f'{node.process_label}<{node.pk}> failed: [{node.exit_status}] {node.exit_message} '
                        f'(see `verdi process report {node.pk}`)')
    return outputs, node


def _xtb_jobs(workchain) -> list:
    return [node for node in workchain.called_descendants if node.process_type == 'aiida.calculations:qrnn.xtb']
