"""The end-to-end demo that the README's first command runs; each issue extends it with the step it adds.

Now: build ethylene-glycol clusters, label them with GFN2-xTB through a real CalcJob on localhost (two batches),
merge the labelled batches with a calcfunction, find the result with the QueryBuilder, and print its provenance.
"""

from __future__ import annotations

import typing as t

import numpy as np

if t.TYPE_CHECKING:
    from aiida.orm import Node

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


def label_with_xtb(clusters: ClusterSetData, code_label: str) -> ClusterSetData:
    """Run ``XtbCalculation`` on ``clusters`` in this process and return the labelled set."""
    from aiida.engine import run_get_node
    from aiida.orm import load_code

    from aiida_qrnn.calculations.xtb import XtbCalculation

    outputs, node = run_get_node(XtbCalculation, code=load_code(code_label), clusters=clusters)
    if not node.is_finished_ok:
        raise RuntimeError(f'{node.process_label}<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
    return outputs['clusters']


def provenance_lines(node: Node, depth: int = 0, max_depth: int = 4) -> list[str]:
    """An indented text tree of how ``node`` was made: its creator, the creator's inputs, and so on."""
    from aiida.orm import CalculationNode, Data

    indent = '    ' * depth
    lines = [f'{indent}{type(node).__name__}<{node.pk}> {_describe(node)}']
    if depth >= max_depth:
        return lines
    if isinstance(node, Data) and node.creator is not None:
        lines.extend(provenance_lines(node.creator, depth + 1, max_depth))
    elif isinstance(node, CalculationNode):
        for link in node.base.links.get_incoming().all():
            if link.link_label.startswith('metadata') or link.node.__class__.__name__ == 'InstalledCode':
                lines.append(f'{indent}    <- {link.link_label}: {type(link.node).__name__}<{link.node.pk}> '
                             f'{_describe(link.node)}')
                continue
            lines.append(f'{indent}    <- {link.link_label}:')
            lines.extend(provenance_lines(link.node, depth + 2, max_depth))
    return lines


def _describe(node: Node) -> str:
    from aiida.orm import CalculationNode

    from aiida_qrnn.data.cluster_set import ClusterSetData

    if isinstance(node, ClusterSetData):
        level = node.level_of_theory or 'unlabelled'
        return f'{node.n_clusters} clusters, {node.n_atoms} atoms, {"".join(node.elements)}, {level}'
    if isinstance(node, CalculationNode):
        return f'{node.process_label} [{node.process_state.value if node.process_state else "?"}]'
    if node.__class__.__name__ == 'InstalledCode':
        return node.full_label
    return ''


def run_demo(n_clusters: int = 4, seed: int = 0, code_label: str = 'xtb@localhost', echo=print) -> ClusterSetData:
    """Run the demo on the loaded profile and return the merged, labelled cluster set."""
    from aiida.orm import QueryBuilder

    from aiida_qrnn.calculations.merge import merge_cluster_sets
    from aiida_qrnn.data.cluster_set import ClusterSetData

    echo(f'1. Building {n_clusters} ethylene-glycol clusters in two batches (RDKit conformers, seed {seed}) ...')
    images = build_ethylene_glycol_clusters(n_clusters, seed)
    half = max(1, n_clusters // 2)
    batches = [ClusterSetData.from_atoms(part).store() for part in (images[:half], images[half:]) if part]
    for batch in batches:
        echo(f'   stored {type(batch).__name__}<{batch.pk}>: {_describe(batch)}')

    echo('2. Labelling each batch with GFN2-xTB (XtbCalculation on localhost) ...')
    labelled = [label_with_xtb(batch, code_label) for batch in batches]
    for node in labelled:
        echo(f'   {type(node).__name__}<{node.pk}>: {_describe(node)}')

    echo('3. Merging the labelled batches (calcfunction merge_cluster_sets) ...')
    merged = merge_cluster_sets(**{f'batch_{index}': node for index, node in enumerate(labelled)})
    arrays = merged.get_arrays()
    echo(f'   {"cluster":>7} {"atoms":>5} {"energy / eV":>14} {"max |F| / eV/Å":>15} {"Σq / e":>8}')
    for index in range(arrays.n_clusters):
        start, stop = arrays.offsets[index], arrays.offsets[index + 1]
        max_force = np.linalg.norm(arrays.labels['forces'][start:stop], axis=1).max()
        echo(f'   {index:>7} {stop - start:>5} {arrays.labels["energy"][index]:>14.4f} {max_force:>15.4f} '
             f'{arrays.labels["charges"][start:stop].sum():>8.4f}')

    echo('4. Querying the database: labelled sets at gfn2-xtb that contain oxygen ...')
    query = QueryBuilder().append(
        ClusterSetData, filters={'attributes.level_of_theory': 'gfn2-xtb', 'attributes.elements': {'contains': ['O']}},
        project=['id', 'attributes.n_clusters'],
    )
    echo(f'   found (pk, n_clusters): {sorted(query.all())}')

    echo('5. Provenance of the merged set:')
    for line in provenance_lines(merged, max_depth=6):
        echo(f'   {line}')
    return merged
