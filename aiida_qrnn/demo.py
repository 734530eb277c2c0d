"""The end-to-end demo that the README's first command runs; each issue extends it with the step it adds.

Now: the paper end to end at demo size (``PolymerForceFieldWorkChain``, protocol ``demo``): ethylene-glycol and
diethylene-glycol clusters sampled with OPLS-AA, GFN2-xTB labels, a first QRNN, two rounds of active learning
(committee, candidates from the sampled clusters and from monitored QRNN MD, ρ^f, selection, labels, transfer
learning), liquid properties with the final model and OPLS-AA, torsion and pair scans. Then, from its graph: the
labelled clusters, a relabelling that reuses every label, a query, the provenance, the round-by-round record, the
property table, and the report with the paper's figures (``aiida-qrnn report``).
"""

from __future__ import annotations

import time
import typing as t
from pathlib import Path

import numpy as np

from aiida_qrnn.provenance import describe, provenance_lines

if t.TYPE_CHECKING:
    from aiida.orm import WorkflowNode

    from aiida_qrnn.data.cluster_set import ClusterSetData


def run_demo(protocol: str = 'demo', batch_size: int | None = None, report_dir: Path | None = None,
             echo=print) -> WorkflowNode:
    """Run the polymer workflow at ``protocol`` size on the loaded profile, show what it left, write the report."""
    from aiida.engine import run_get_node
    from aiida.orm import Int, QueryBuilder, load_code

    from aiida_qrnn.data.cluster_set import ClusterSetData
    from aiida_qrnn.workchains.label import LabelWorkChain
    from aiida_qrnn.workchains.polymer import PolymerForceFieldWorkChain, load_protocol

    echo(f'1. The polymer workflow (PolymerForceFieldWorkChain, protocol {protocol!r}): '
         f'{" ".join(load_protocol(protocol)["description"].split())}')
    echo('   sampling -> GFN2-xTB labels -> first model -> active-learning rounds -> properties and scans ...')
    builder = PolymerForceFieldWorkChain.get_builder_from_protocol(
        load_code('aiida-qrnn-exec@localhost'), load_code('xtb@localhost'), protocol)
    if batch_size is not None:
        builder.label.batch_size = Int(batch_size)
    started = time.monotonic()
    outputs, workflow = _finished(*run_get_node(builder))
    echo(f'   PolymerForceFieldWorkChain<{workflow.pk}> finished in {time.monotonic() - started:.0f} s')

    sampling = _called(workflow, 'sampling')
    sampled = sampling.outputs.clusters
    echo(f'2. Sampled clusters (SamplingWorkChain<{sampling.pk}>, OPLS-AA MD in OpenMM): {describe(sampled)}, '
         f'kinds {sampled.base.attributes.get("kind_counts")}')

    initial = _called(workflow, 'label_initial')
    labelled = initial.outputs.clusters
    echo(f'3. Initial labels (LabelWorkChain<{initial.pk}>, {len(_xtb_jobs(initial))} xtb job(s)): '
         f'{describe(labelled)}')
    _label_table(labelled, echo)
    label_inputs = {'clusters': initial.inputs.clusters, 'engine': initial.inputs.engine,
                    'code': initial.inputs.code}
    _, again = _finished(*run_get_node(LabelWorkChain, **label_inputs))
    echo(f'   labelling the same clusters again: LabelWorkChain<{again.pk}> ran {len(_xtb_jobs(again))} xtb job(s) '
         '(labels of the same cluster at the same level are reused)')

    echo('4. Querying the database: labelled sets at gfn2-xtb that contain oxygen ...')
    query = QueryBuilder().append(
        ClusterSetData, filters={'attributes.level_of_theory': 'gfn2-xtb', 'attributes.elements': {'contains': ['O']}},
        project=['id', 'attributes.n_clusters'],
    )
    echo(f'   found {query.count()} sets, e.g. (pk, n_clusters): {sorted(query.all())[:6]}')

    echo('5. Provenance of the initial labelled set:')
    for line in provenance_lines(labelled, max_depth=6):
        echo(f'   {line}')

    active = _called(workflow, 'active_learning')
    summary = outputs['summary'].get_dict()
    echo(f'6. Active learning (ActiveLearningWorkChain<{active.pk}>), stopped {summary["stopped"]}:')
    echo(f'   {"round":>5} {"data":>5} {"candidates":>10} {"median ρ^f":>10} {"max ρ^f":>8} {"selected":>8} '
         f'{"E MAE meV/atom":>14} {"F MAE eV/Å":>10}')
    for entry in summary['rounds']:
        echo(f'   {entry["round"]:>5} {entry["data_clusters"]:>5} {entry["candidates"]:>10} '
             f'{entry["rho_f_median"]:>10.3g} {entry["rho_f_max"]:>8.3g} {entry.get("selected", 0):>8} '
             f'{1000 * entry.get("energy_per_atom_mae", float("nan")):>14.1f} '
             f'{entry.get("forces_mae", float("nan")):>10.3f}')
    for entry in summary['rounds']:
        if entry.get('md_endings'):
            endings = ', '.join(f'{cell} {ending}' for cell, ending in sorted(entry['md_endings'].items()))
            echo(f'   round {entry["round"]}: candidate MD of the current model ended: {endings}')
    model = outputs['model']
    echo(f'   final ModelData<{model.pk}>: {model.base.attributes.get("n_parameters")} parameters, trained on '
         f'{outputs["clusters"].n_clusters} clusters; see `aiida-qrnn lineage {model.pk}` and '
         f'`aiida-qrnn model show {model.pk}`')

    echo('7. Liquid properties: the final QRNN and OPLS-AA through the same MD code, beside experiment')
    _property_table(outputs['properties'], echo)
    if protocol == 'demo':
        echo('   (runs of a few dozen steps with a model trained for minutes test the pipeline; the paper protocol '
             'gives the physics)')

    from aiida_qrnn.report import write_report

    directory = Path(report_dir or f'report-{workflow.pk}')
    echo(f'8. The report from the database (`aiida-qrnn report {workflow.pk}`):')
    path = write_report(workflow, directory, echo=lambda line: echo(f'   {line}'))
    echo(f'   figures and tables in {path.parent.resolve()}/ (open {path.name})')
    return workflow


def _label_table(labelled: ClusterSetData, echo) -> None:
    arrays = labelled.get_arrays()
    echo(f'   {"cluster":>7} {"kind":>15} {"atoms":>5} {"energy / eV":>14} {"max |F| / eV/Å":>15} {"Σq / e":>8}')
    for index in range(min(arrays.n_clusters, 6)):
        start, stop = arrays.offsets[index], arrays.offsets[index + 1]
        max_force = np.linalg.norm(arrays.labels['forces'][start:stop], axis=1).max()
        echo(f'   {index:>7} {arrays.kind[index]:>15} {stop - start:>5} {arrays.labels["energy"][index]:>14.4f} '
             f'{max_force:>15.4f} {arrays.labels["charges"][start:stop].sum():>8.4f}')


def _property_table(properties, echo) -> None:
    from aiida_qrnn.core.analysis.experimental import experimental

    names = ('density', 'heat_capacity', 'self_diffusivity')
    reference = {name: experimental(name, 300.0) for name in ('density', 'heat_capacity')}
    for method, label in (('qrnn', 'QRNN'), ('opls_aa', 'OPLS-AA')):
        if method not in properties:
            continue
        for length in sorted(properties[method]):
            n_units = int(length.lstrip('n'))
            values = properties[method][length].get_dict()
            for name in names:
                entry = values.get(name)
                if entry is None:
                    continue
                known = reference.get(name)
                measured = ''
                if known is not None and n_units in known.n_units:
                    measured = f'   (experiment {known.values[list(known.n_units).index(n_units)]:.4g})'
                echo(f'   {label:>7} n={n_units} {name:>16}: {entry["value"]:.4g} ± {entry["uncertainty"]:.2g} '
                     f'{entry["unit"]} over {entry["n_replicas"]} replicas{measured}')


class DemoError(RuntimeError):
    """A step of the demo did not finish; the message names the process to inspect."""


def _finished(outputs: dict, node):
    if not node.is_finished_ok:
        raise DemoError(f'{node.process_label}<{node.pk}> failed: [{node.exit_status}] {node.exit_message} '
                        f'(see `verdi process report {node.pk}`)')
    return outputs, node


def _called(workflow, link_label: str):
    """The process ``workflow`` called with ``link_label``."""
    return next(link.node for link in workflow.base.links.get_outgoing(link_label_filter=link_label).all())


def _xtb_jobs(workchain) -> list:
    return [node for node in workchain.called_descendants if node.process_type == 'aiida.calculations:qrnn.xtb']
