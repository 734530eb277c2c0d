"""Reading the provenance graph: how a node was made, and which data, labels and models it descends from.

Used by ``aiida-qrnn lineage`` and the demo. Only the database is read; nothing is recomputed.
"""

from __future__ import annotations

import re
import typing as t

if t.TYPE_CHECKING:
    from aiida.orm import Node

__all__ = ('describe', 'lineage', 'provenance_lines')

#: Call-link labels of the processes an active-learning round runs (committee_round_01, model_round_01, ...).
ROUND_LABEL = re.compile(r'round_\d+')


def provenance_lines(node: Node, max_depth: int = 12) -> list[str]:
    """An indented text tree of how ``node`` was made: its creator, the creator's inputs, and so on.

    A node reached a second time is named, not expanded again.
    """
    from aiida.common.links import LinkType
    from aiida.orm import CalculationNode, Data

    lines: list[str] = []
    seen: set[int] = set()

    def visit(current: Node, depth: int, link_label: str = '') -> None:
        text = f'{"    " * depth}{link_label}{type(current).__name__}<{current.pk}> {describe(current)}'.rstrip()
        if current.pk in seen:
            lines.append(f'{text} (shown above)')
            return
        seen.add(current.pk)
        lines.append(text)
        if depth >= max_depth:
            return
        if isinstance(current, Data) and current.creator is not None:
            visit(current.creator, depth + 1)
        elif isinstance(current, CalculationNode):
            incoming = current.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
            for link in sorted(incoming, key=lambda link: link.link_label):
                visit(link.node, depth + 1, f'<- {link.link_label}: ')

    visit(node, 0)
    return lines


def describe(node: Node) -> str:
    """One line about ``node``: sizes and level of a cluster set, state and caller of a process, ..."""
    from aiida.orm import CalculationNode

    from aiida_qrnn.data.cluster_set import ClusterSetData

    if isinstance(node, ClusterSetData):
        level = node.level_of_theory or 'unlabelled'
        return f'{node.n_clusters} clusters, {node.n_atoms} atoms, {"".join(node.elements)}, {level}'
    if isinstance(node, CalculationNode):
        caller = f' in {node.caller.process_label}<{node.caller.pk}>' if node.caller else ''
        return f'{node.process_label} [{node.process_state.value if node.process_state else "?"}]{caller}'
    if node.__class__.__name__ == 'InstalledCode':
        return node.full_label
    if node.__class__.__name__ == 'StructureData':
        return node.get_formula()
    if node.__class__.__name__ == 'SinglefileData':
        return node.filename
    if node.__class__.__name__ == 'ModelData':
        return f'{", ".join(node.elements)} hash {node.model_hash[:12]}'
    return ''


def lineage(node: Node) -> dict[str, list[str]]:
    """What ``node`` descends from, each as one line, oldest first: its parent model (a transfer-learned model), the
    active-learning rounds (work chains called as ``*round_NN``), labelled cluster sets (with level of theory),
    models, and the work chains that ran the calculations on its path."""
    from aiida.common.links import LinkType
    from aiida.orm import CalculationNode, QueryBuilder, WorkflowNode
    from aiida.tools.graph.graph_traversers import traverse_graph

    from aiida_qrnn.data.cluster_set import ClusterSetData
    from aiida_qrnn.data.model import ModelData

    # Set-based traversal, one query per generation: the QueryBuilder's with_descendants enumerates paths, which
    # explodes on the many diamonds of an active-learning graph.
    provenance = traverse_graph([node.pk], links_backward=[LinkType.CREATE, LinkType.INPUT_CALC])['nodes'] - {node.pk}

    def ancestors(node_class, pks=provenance) -> list:
        if not pks:
            return []
        builder = QueryBuilder().append(node_class, filters={'id': {'in': sorted(pks)}}, project='*')
        return sorted(builder.all(flat=True), key=lambda ancestor: ancestor.pk)

    calculations = {calculation.pk for calculation in ancestors(CalculationNode)}
    callers = traverse_graph(calculations, links_backward=[LinkType.CALL_CALC, LinkType.CALL_WORK])['nodes']
    workflows: dict[int, WorkflowNode] = {workflow.pk: workflow
                                          for workflow in ancestors(WorkflowNode, callers - calculations)}
    labelled = [data for data in ancestors(ClusterSetData) if data.level_of_theory]
    rounds = []
    for _, workflow in sorted(workflows.items()):
        call = workflow.base.links.get_incoming(link_type=(LinkType.CALL_WORK, LinkType.CALL_CALC)).all()
        if call and ROUND_LABEL.search(call[0].link_label):
            rounds.append(f'{call[0].link_label}: {workflow.process_label}<{workflow.pk}> in '
                          f'{call[0].node.process_label}<{call[0].node.pk}>')
    parent = None
    if isinstance(node, ModelData) and node.creator is not None:
        link = node.creator.base.links.get_incoming(link_label_filter='parent_model').first()
        parent = link.node if link is not None else None
    return {
        'parent model': [f'ModelData<{parent.pk}> {describe(parent)}'] if parent is not None else [],
        'rounds': rounds,
        'labels': [f'ClusterSetData<{data.pk}> {describe(data)}' for data in labelled],
        'models': [f'ModelData<{model.pk}> {", ".join(model.elements)} hash {model.model_hash[:12]}'
                   for model in ancestors(ModelData)],
        'workflows': [f'{workflow.process_label}<{workflow.pk}> [{workflow.process_state.value}]'
                      for _, workflow in sorted(workflows.items())],
    }
