"""Collecting: walk a workflow node and its ``called_descendants`` and keep, by process type, what the report shows
(:class:`Report`); nothing is drawn or written here. :mod:`.write` renders it."""

from __future__ import annotations

import dataclasses
import typing as t

import numpy as np
from aiida import orm
from aiida.common.links import LinkType

if t.TYPE_CHECKING:
    from aiida_qrnn.data.cluster_set import ClusterSetData
    from aiida_qrnn.data.model import ModelData

__all__ = ('PropertiesRun', 'Report', 'ReportError', 'ScanRun', 'SelectionRound', 'TrainingRun', 'call_label',
           'collect_report', 'load_workflow', 'ref')

TRAIN_CALCULATION = 'aiida.calculations:qrnn.train'
SCORE_CALCULATION = 'aiida.calculations:qrnn.score'
TRAIN_WORKCHAIN = 'aiida.workflows:qrnn.train'
SCORE_WORKCHAIN = 'aiida.workflows:qrnn.score.sharded'
ACTIVE_LEARNING_WORKCHAIN = 'aiida.workflows:qrnn.active_learning'
LABEL_WORKCHAIN = 'aiida.workflows:qrnn.label'
PROPERTIES_WORKCHAIN = 'aiida.workflows:qrnn.properties'
SCAN_WORKCHAINS = {'aiida.workflows:qrnn.pair_scan': 'pair', 'aiida.workflows:qrnn.torsion_scan': 'torsion'}
SELECTION_FUNCTION = 'select_for_labelling'


class ReportError(ValueError):
    """The node cannot be reported on (it does not exist or is not a workflow)."""


@dataclasses.dataclass
class TrainingRun:
    """One finished ``TrainCalculation``: its model, the data it saw and the split it recorded."""

    round: int  # 1-based, in the order the training work chains (or lone jobs) were created
    stage: str  # call link label of the training work chain in its caller (e.g. committee_round_01), or '–'
    member: str  # call link label in its work chain, e.g. member_0
    calculation: orm.CalcJobNode
    model: ModelData
    datasets: dict[str, ClusterSetData]  # concatenated in key order by the job
    split: orm.ArrayData | None
    results: dict

    @property
    def n_clusters(self) -> int:
        return sum(dataset.n_clusters for dataset in self.datasets.values())


@dataclasses.dataclass
class SelectionRound:
    """One round of committee scoring, with the selection made from it and the reference energies found for it.

    A round of an ``ActiveLearningWorkChain`` is read from what the loop recorded: its outputs
    ``rounds.round_NN`` (scores, selected, labelled) and its ``summary`` entry (``record``); ``loop`` is then that
    work chain and ``round`` its ``NN``. Scorings outside any loop are rounds found by process type (``loop`` None).
    """

    round: int
    candidates: ClusterSetData
    scores: orm.ArrayData  # rho_f and the committee's mean energy per candidate
    score_jobs: list[orm.CalcJobNode]
    selection: orm.CalcFunctionNode | None
    selected: np.ndarray  # indices into the candidates (highest rho^f part and random part together)
    random: np.ndarray  # the random part of ``selected``
    references: list[ClusterSetData]  # labelled sets that contain some candidates (by cluster id)
    reference_energy: np.ndarray  # (candidates,) eV, NaN where no label was found
    n_atoms: np.ndarray  # (candidates,)
    loop: orm.WorkflowNode | None = None  # the ActiveLearningWorkChain that recorded this round
    record: dict = dataclasses.field(default_factory=dict)  # its summary entry (data size, ρ^f, metrics ...)


@dataclasses.dataclass
class PropertiesRun:
    """One finished ``PropertiesWorkChain``: per chain length (``nNNN``) the properties and distributions."""

    workchain: orm.WorkflowNode
    method: str  # 'QRNN' with a model input, 'OPLS-AA' without
    model: ModelData | None
    temperature_K: float
    properties: dict[str, orm.Dict]
    distributions: dict[str, orm.ArrayData]


@dataclasses.dataclass
class ScanRun:
    """One finished pair or torsion scan: the curves node of its ``scan_curves`` step."""

    workchain: orm.WorkflowNode
    kind: str  # 'pair' or 'torsion'
    curves: orm.ArrayData
    model: ModelData | None


@dataclasses.dataclass
class Report:
    """Everything :func:`collect_report` found under ``root``; ``ignored`` lists processes found but not used."""

    root: orm.WorkflowNode
    training: list[TrainingRun]
    selection: list[SelectionRound]
    properties: list[PropertiesRun]
    scans: list[ScanRun]
    ignored: list[str]


def load_workflow(identifier: int | str) -> orm.WorkflowNode:
    """The workflow node with pk (or uuid) ``identifier``; :class:`ReportError` naming it otherwise."""
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        node = orm.load_node(identifier)
    except (NotExistent, MultipleObjectsError, ValueError) as exception:
        raise ReportError(f'no node {identifier!r} in this profile ({exception}).') from None
    if not isinstance(node, orm.WorkflowNode):
        kind = node.process_label if isinstance(node, orm.ProcessNode) else type(node).__name__
        raise ReportError(f'node {node.pk} is a {kind}, not a workflow; give the pk of a work chain.')
    return node


def ref(node: orm.Node) -> str:
    """``Label<pk>``: the process label of a process, the class name of data."""
    label = node.process_label if isinstance(node, orm.ProcessNode) else type(node).__name__
    return f'{label}<{node.pk}>'


def collect_report(node: orm.WorkflowNode) -> Report:
    """What the workflow ``node`` and the processes it called produced, picked by process type."""
    if not isinstance(node, orm.WorkflowNode):
        raise ReportError(f'{ref(node)} is not a workflow node.')
    processes = sorted([node, *node.called_descendants], key=lambda process: (process.ctime, process.pk))
    ignored = [f'{ref(process)} [{_state(process)}]' for process in processes
               if _recognised(process) and not process.is_finished_ok]
    finished = [process for process in processes if process.is_finished_ok]
    return Report(root=node, training=_training_runs(finished), selection=_selection_rounds(processes, finished),
                  properties=_properties_runs(finished), scans=_scan_runs(finished), ignored=ignored)


def _state(process: orm.ProcessNode) -> str:
    """'finished, exit status 400', 'excepted', 'running', ..."""
    state = process.process_state.value if process.process_state else 'unknown'
    return f'{state}, exit status {process.exit_status}' if process.is_finished else state


def _recognised(process: orm.ProcessNode) -> bool:
    return (process.process_type in (TRAIN_CALCULATION, SCORE_CALCULATION, PROPERTIES_WORKCHAIN, *SCAN_WORKCHAINS)
            or process.process_label == SELECTION_FUNCTION)


def _namespace(node: orm.ProcessNode, name: str, link_type: LinkType) -> dict[str, orm.Node]:
    """The nodes linked as ``name.<key>`` (inputs or outputs), by key."""
    links = (node.base.links.get_incoming(link_type=link_type) if link_type in (LinkType.INPUT_CALC,
                                                                                LinkType.INPUT_WORK)
             else node.base.links.get_outgoing(link_type=link_type))
    prefix = f'{name}__'
    return {link.link_label.removeprefix(prefix): link.node for link in links.all()
            if link.link_label.startswith(prefix)}


def _training_runs(processes: list[orm.ProcessNode]) -> list[TrainingRun]:
    jobs = [process for process in processes if process.process_type == TRAIN_CALCULATION and 'model' in
            process.outputs]
    groups: dict[int, tuple[str, list[orm.CalcJobNode]]] = {}  # by training work chain (or lone job), in order
    for job in jobs:
        caller = job.caller
        if caller is not None and caller.process_type == TRAIN_WORKCHAIN:
            groups.setdefault(caller.pk, (call_label(caller), []))[1].append(job)
        else:
            groups[job.pk] = ('–', [job])
    runs = []
    for number, (stage, members) in enumerate(sorted(groups.values(), key=lambda group: group[1][0].ctime),
                                              start=1):
        for job in members:
            runs.append(TrainingRun(
                round=number, stage=stage, member=call_label(job), calculation=job, model=job.outputs.model,
                datasets=_namespace(job, 'datasets', LinkType.INPUT_CALC),
                split=job.outputs.split if 'split' in job.outputs else None,
                results=job.outputs.output_parameters.get_dict() if 'output_parameters' in job.outputs else {},
            ))
    return runs


def call_label(process: orm.ProcessNode) -> str:
    """The label its caller gave ``process`` (``member_0``, ``committee_round_01``); '–' for the default."""
    links = process.base.links.get_incoming(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK)).all()
    return links[0].link_label if links and links[0].link_label != 'CALL' else '–'


def _cluster_columns(clusters: ClusterSetData, names: t.Sequence[str]) -> list[np.ndarray]:
    with clusters.open_cluster_set() as opened:
        return [opened.offsets.copy() if name == 'offsets' else opened.read_column(name) for name in names]


def _selection_rounds(processes: list[orm.ProcessNode], finished: list[orm.ProcessNode]) -> list[SelectionRound]:
    """The rounds every ``ActiveLearningWorkChain`` recorded (:func:`_recorded_rounds`), then, for scorings outside
    those loops, one round per ``select_for_labelling`` (with the score jobs upstream of its scores) and one per
    scoring that no selection used (a ``ScoreWorkChain`` with its shards, or a lone ``ScoreCalculation``)."""
    loops = [process for process in processes if process.process_type == ACTIVE_LEARNING_WORKCHAIN]
    recorded = [entry for loop in loops for entry in _recorded_rounds(loop)]
    if len(loops) > 1:  # the loops' own numbers would repeat: number the rounds in the order of the loops
        for number, entry in enumerate(recorded, start=1):
            entry.round = number
    used = {job.pk for entry in recorded for job in entry.score_jobs}
    used.update(entry.selection.pk for entry in recorded if entry.selection is not None)

    selections = [process for process in finished
                  if process.process_label == SELECTION_FUNCTION and process.pk not in used]
    score_jobs = [process for process in finished if process.process_type == SCORE_CALCULATION]
    rounds: list[tuple[orm.ProcessNode, ClusterSetData, orm.ArrayData, list, orm.ProcessNode | None]] = []
    for selection in selections:
        scores = selection.inputs.scores
        upstream = _score_jobs(scores)
        used.update(job.pk for job in upstream)
        rounds.append((selection, selection.inputs.clusters, scores, upstream, selection))
    unused: dict[int, tuple[orm.ProcessNode, list]] = {}
    for job in score_jobs:
        if job.pk not in used:
            caller = job.caller
            scoring = caller if caller is not None and caller.process_type == SCORE_WORKCHAIN else job
            unused.setdefault(scoring.pk, (scoring, []))[1].append(job)
    for scoring, jobs in unused.values():
        if 'scores' in scoring.outputs:
            rounds.append((scoring, scoring.inputs.clusters, scoring.outputs.scores, jobs, None))
    rounds.sort(key=lambda entry: (entry[0].ctime, entry[0].pk))
    if not rounds:
        return recorded

    references = [process.outputs.clusters for process in processes
                  if process.process_type == LABEL_WORKCHAIN and 'clusters' in process.outputs]
    labelled = [(reference, _energies_by_id(reference)) for reference in references
                if reference.label_names and 'energy' in reference.label_names]
    first = max((entry.round for entry in recorded), default=0) + 1
    result = list(recorded)
    for number, (_, candidates, scores, jobs, selection) in enumerate(rounds, start=first):
        level = _training_level(jobs)
        result.append(_selection_round(number, candidates, scores, jobs, selection,
                                       [entry for entry in labelled
                                        if level is None or entry[0].level_of_theory == level]))
    return result


def _recorded_rounds(loop: orm.WorkflowNode) -> list[SelectionRound]:
    """The rounds ``loop`` (an ``ActiveLearningWorkChain``) recorded, read, not re-derived: its outputs
    ``rounds.round_NN.scores`` / ``.selected`` / ``.labelled``, the ``ScoreWorkChain`` it called ``score_round_NN``
    (whose input is the round's candidate pool) and the round's entry of its ``summary`` output. The reference
    labels of a round are the labels the loop made for its selection; a round ended by the stopping rule has none."""
    outputs = _namespace(loop, 'rounds', LinkType.RETURN)
    summary = loop.outputs.summary.get_dict() if 'summary' in loop.outputs else {}
    records = {int(entry['round']): entry for entry in summary.get('rounds', []) if 'round' in entry}
    called = {link.link_label: link.node for link in
              loop.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK)).all()}
    result = []
    for name in sorted({key.split('__')[0] for key in outputs}):
        scores = outputs.get(f'{name}__scores')
        if scores is None:  # a round stopped before its scoring finished
            continue
        selected = outputs.get(f'{name}__selected')
        selection = selected.creator if selected is not None else None
        scoring = called.get(f'score_{name}')
        candidates = (scoring.inputs.clusters if scoring is not None else
                      selection.inputs.clusters if selection is not None else None)
        if candidates is None:
            continue
        labelled = outputs.get(f'{name}__labelled')
        references = [(labelled, _energies_by_id(labelled))] if labelled is not None else []
        number = int(name.removeprefix('round_'))
        result.append(_selection_round(number, candidates, scores, _score_jobs(scores), selection, references,
                                       loop=loop, record=records.get(number, {})))
    return result


def _energies_by_id(clusters: ClusterSetData) -> dict[str, float]:
    ids, energies = _cluster_columns(clusters, ['clusters/id', 'clusters/energy'])
    return dict(zip(ids.astype(str), energies, strict=True))


def _selection_round(number: int, candidates: ClusterSetData, scores: orm.ArrayData, jobs: list,
                     selection: orm.ProcessNode | None, labelled: list[tuple[ClusterSetData, dict[str, float]]],
                     **recorded) -> SelectionRound:
    """A :class:`SelectionRound`: the selection's indices and the reference energies of the candidates found in
    ``labelled`` (sets with their energies by cluster id)."""
    ids, offsets = _cluster_columns(candidates, ['clusters/id', 'offsets'])
    ids = ids.astype(str)
    energy = np.full(len(ids), np.nan)
    found = []
    for reference, by_id in labelled:
        hits = np.array([cluster_id in by_id for cluster_id in ids], dtype=bool)
        if hits.any():
            found.append(reference)
            energy[hits] = [by_id[cluster_id] for cluster_id in ids[hits]]
    if selection is not None:
        chosen = np.asarray(selection.outputs.indices.get_list(), dtype=int)
        random = (np.asarray(selection.outputs.random_indices.get_list(), dtype=int)
                  if 'random_indices' in selection.outputs else np.zeros(0, dtype=int))
    else:
        chosen = random = np.zeros(0, dtype=int)
    return SelectionRound(round=number, candidates=candidates, scores=scores, score_jobs=jobs, selection=selection,
                          selected=chosen, random=random, references=found, reference_energy=energy,
                          n_atoms=np.diff(offsets), **recorded)


def _training_level(score_jobs: list[orm.CalcJobNode]) -> str | None:
    """The level of theory the committee was trained at (from the data sets of its models' training jobs), so that
    ε compares with labels at that level only; ``None`` when it cannot be told (then every labelled set counts)."""
    levels = set()
    for job in score_jobs:
        for model in _namespace(job, 'models', LinkType.INPUT_CALC).values():
            creator = model.creator
            if creator is not None and creator.process_type == TRAIN_CALCULATION:
                levels.update(data.level_of_theory for data in _namespace(creator, 'datasets', LinkType.INPUT_CALC)
                              .values())
    return levels.pop() if len(levels) == 1 else None


def _score_jobs(scores: orm.ArrayData) -> list[orm.CalcJobNode]:
    """The ``ScoreCalculation`` jobs that made ``scores``: its creator, or the jobs whose scores its creator joined
    (the shards of a ``ScoreWorkChain``). Not the whole ancestry: older rounds' jobs are ancestors too."""
    creator = scores.creator
    if creator is None:
        return []
    if creator.process_type == SCORE_CALCULATION:
        return [creator]
    parents = [link.node.creator for link in creator.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()]
    return sorted((job for job in parents if job is not None and job.process_type == SCORE_CALCULATION),
                  key=lambda job: job.pk)


def _properties_runs(processes: list[orm.ProcessNode]) -> list[PropertiesRun]:
    runs = []
    for workchain in processes:
        if workchain.process_type != PROPERTIES_WORKCHAIN:
            continue
        model = workchain.inputs.model if 'model' in workchain.inputs else None
        runs.append(PropertiesRun(
            workchain=workchain, method='QRNN' if model is not None else 'OPLS-AA', model=model,
            temperature_K=float(workchain.inputs.nvt.get_dict().get('temperature_K', 300.0)),
            properties=_namespace(workchain, 'properties', LinkType.RETURN),
            distributions=_namespace(workchain, 'distributions', LinkType.RETURN),
        ))
    return runs


def _scan_runs(processes: list[orm.ProcessNode]) -> list[ScanRun]:
    return [ScanRun(workchain=process, kind=SCAN_WORKCHAINS[process.process_type], curves=process.outputs.curves,
                    model=process.inputs.model if 'model' in process.inputs else None)
            for process in processes if process.process_type in SCAN_WORKCHAINS and 'curves' in process.outputs]
