"""``aiida-qrnn report``: the paper's figures and a table of results, read only from a workflow's provenance graph.

:func:`collect_report` walks a workflow node and its ``called_descendants`` and keeps what it recognises by
process type (so it works on any workflow that calls the package's calculations and work chains):

* ``TrainCalculation`` jobs: model metrics, data-set size per training round, parity plots of the final round's
  models re-evaluated on their own validation clusters (the split the job recorded);
* ``select_for_labelling`` and ``ScoreCalculation``: ρ^f per round and, where a ``LabelWorkChain`` in the graph
  labelled candidates (matched by cluster id), the committee's energy error ε against ρ^f (the paper's Fig. 5);
* ``PropertiesWorkChain``: density, c_p, self-diffusivity and mean R_g against chain length per method (``QRNN`` with
  a model, ``OPLS-AA`` without) beside experiment, and the R_g, OCCO torsion and O-H g(r) distributions;
* ``PairScanWorkChain`` / ``TorsionScanWorkChain``: reference, OPLS-AA and QRNN scan curves.

:func:`write_report` draws the figures and writes ``report.md``, ``properties.csv`` and ``training.csv``; every
figure and row names the pk and uuid of the nodes it was made from. Nothing is run again except the evaluation of
the final models on (at most ``max_parity_clusters`` of) their validation clusters.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import typing as t
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.common.links import LinkType

from aiida_qrnn.core.analysis.report_figures import markdown_table

if t.TYPE_CHECKING:
    from aiida_qrnn.data.cluster_set import ClusterSetData
    from aiida_qrnn.data.model import ModelData

__all__ = ('PropertiesRun', 'Report', 'ReportError', 'ScanRun', 'SelectionRound', 'TrainingRun', 'collect_report',
           'load_workflow', 'ref', 'write_report')

TRAIN_CALCULATION = 'aiida.calculations:qrnn.train'
SCORE_CALCULATION = 'aiida.calculations:qrnn.score'
TRAIN_WORKCHAIN = 'aiida.workflows:qrnn.train'
SCORE_WORKCHAIN = 'aiida.workflows:qrnn.score.sharded'
LABEL_WORKCHAIN = 'aiida.workflows:qrnn.label'
PROPERTIES_WORKCHAIN = 'aiida.workflows:qrnn.properties'
SCAN_WORKCHAINS = {'aiida.workflows:qrnn.pair_scan': 'pair', 'aiida.workflows:qrnn.torsion_scan': 'torsion'}
SELECTION_FUNCTION = 'select_for_labelling'
#: Default cap on the validation clusters evaluated per parity plot (evenly spaced over the validation set).
MAX_PARITY_CLUSTERS = 500
#: Pair-scan plots cut the energy axis here (kcal/mol): the repulsive wall would hide the well.
PAIR_SCAN_YMAX_KCAL_PER_MOL = 10.0
PROPERTY_LABELS = {
    'density': 'density (g cm$^{-3}$)', 'heat_capacity': '$c_p$ (J g$^{-1}$ K$^{-1}$)',
    'self_diffusivity': 'self-diffusivity (cm$^2$ s$^{-1}$)', 'radius_of_gyration': 'mean $R_g$ (Å)',
}
DISTRIBUTION_AXES = {
    'radius_of_gyration': ('$R_g$ (Å)', 'probability density (Å$^{-1}$)'),
    'occo_torsion': ('OCCO dihedral (degree)', 'probability density (degree$^{-1}$)'),
    'oh_rdf': ('r (Å)', 'g(r), O – hydroxyl H'),
}
METRIC_COLUMNS = (('energy_per_atom_rmse', 'E/atom RMSE (meV)', 1000.0), ('forces_rmse', 'F RMSE (eV/Å)', 1.0),
                  ('charges_rmse', 'q RMSE (e)', 1.0), ('dipole_rmse', 'μ RMSE (e·Å)', 1.0))


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
    """One round of committee scoring, with the selection made from it and the reference energies found for it."""

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


def sources(nodes: t.Iterable[orm.Node | None]) -> str:
    """'Sources: Label<pk> (uuid), ...' for the report; each node once, in the given order."""
    seen, parts = set(), []
    for node in nodes:
        if node is not None and node.uuid not in seen:
            seen.add(node.uuid)
            parts.append(f'{ref(node)} (`{node.uuid}`)')
    return 'Sources: ' + ', '.join(parts) + '.'


# -- collecting -------------------------------------------------------------------------------------------------
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
            groups.setdefault(caller.pk, (_call_label(caller), []))[1].append(job)
        else:
            groups[job.pk] = ('–', [job])
    runs = []
    for number, (stage, members) in enumerate(sorted(groups.values(), key=lambda group: group[1][0].ctime),
                                              start=1):
        for job in members:
            runs.append(TrainingRun(
                round=number, stage=stage, member=_call_label(job), calculation=job, model=job.outputs.model,
                datasets=_namespace(job, 'datasets', LinkType.INPUT_CALC),
                split=job.outputs.split if 'split' in job.outputs else None,
                results=job.outputs.output_parameters.get_dict() if 'output_parameters' in job.outputs else {},
            ))
    return runs


def _call_label(process: orm.ProcessNode) -> str:
    """The label its caller gave ``process`` (``member_0``, ``committee_round_01``); '–' for the default."""
    links = process.base.links.get_incoming(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK)).all()
    return links[0].link_label if links and links[0].link_label != 'CALL' else '–'


def _cluster_columns(clusters: ClusterSetData, names: t.Sequence[str]) -> list[np.ndarray]:
    with clusters.open_cluster_set() as opened:
        return [opened.offsets.copy() if name == 'offsets' else opened.read_column(name) for name in names]


def _selection_rounds(processes: list[orm.ProcessNode], finished: list[orm.ProcessNode]) -> list[SelectionRound]:
    """One round per ``select_for_labelling`` (with the score jobs upstream of its scores), plus one per scoring
    that no selection used (a ``ScoreWorkChain`` with its shards, or a lone ``ScoreCalculation``)."""
    selections = [process for process in finished if process.process_label == SELECTION_FUNCTION]
    score_jobs = [process for process in finished if process.process_type == SCORE_CALCULATION]
    references = [process.outputs.clusters for process in processes
                  if process.process_type == LABEL_WORKCHAIN and 'clusters' in process.outputs]
    rounds: list[tuple[orm.ProcessNode, ClusterSetData, orm.ArrayData, list, orm.ProcessNode | None]] = []
    used: set[int] = set()
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

    labelled = []
    for reference in references:
        if reference.label_names and 'energy' in reference.label_names:
            ids, energies = _cluster_columns(reference, ['clusters/id', 'clusters/energy'])
            labelled.append((reference, dict(zip(ids.astype(str), energies, strict=True))))
    result = []
    for number, (_, candidates, scores, jobs, selection) in enumerate(rounds, start=1):
        ids, offsets = _cluster_columns(candidates, ['clusters/id', 'offsets'])
        ids = ids.astype(str)
        energy = np.full(len(ids), np.nan)
        found = []
        level = _training_level(jobs)
        for reference, by_id in labelled:
            if level is not None and reference.level_of_theory != level:
                continue
            hits = np.array([cluster_id in by_id for cluster_id in ids])
            if hits.any():
                found.append(reference)
                energy[hits] = [by_id[cluster_id] for cluster_id in ids[hits]]
        if selection is not None:
            chosen = np.asarray(selection.outputs.indices.get_list(), dtype=int)
            random = (np.asarray(selection.outputs.random_indices.get_list(), dtype=int)
                      if 'random_indices' in selection.outputs else np.zeros(0, dtype=int))
        else:
            chosen = random = np.zeros(0, dtype=int)
        result.append(SelectionRound(round=number, candidates=candidates, scores=scores, score_jobs=jobs,
                                     selection=selection, selected=chosen, random=random, references=found,
                                     reference_energy=energy, n_atoms=np.diff(offsets)))
    return result


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


# -- writing ----------------------------------------------------------------------------------------------------
class _Document:
    """report.md being written: sections, figures with their sources, tables, skip notes."""

    def __init__(self, directory: Path, echo: t.Callable[[str], None]) -> None:
        self.directory, self.echo, self.lines = directory, echo, []

    def section(self, title: str) -> None:
        self.echo(f'{title} ...')
        self.lines += [f'## {title}', '']

    def text(self, *lines: str) -> None:
        self.lines += [*lines, '']

    def skip(self, reason: str) -> None:
        self.echo(f'  skipped: {reason}')
        self.lines += [f'_Skipped: {reason}_', '']

    def figure(self, path: Path, caption: str, nodes: t.Iterable[orm.Node | None]) -> None:
        self.echo(f'  wrote {path.name}')
        self.lines += [f'![{path.stem}]({path.name})', '', f'{caption} {sources(nodes)}', '']

    def table(self, headers: t.Sequence[str], rows: t.Sequence[t.Sequence[object]]) -> None:
        self.lines += [markdown_table(headers, rows), '']


def write_report(node: orm.WorkflowNode, directory: str | Path, *, echo: t.Callable[[str], None] | None = None,
                 max_parity_clusters: int = MAX_PARITY_CLUSTERS) -> Path:
    """Collect what ``node`` produced and write ``report.md``, ``properties.csv``, ``training.csv`` and the figures
    (PNG) into ``directory`` (created if needed); returns the path of ``report.md``. ``echo`` receives one progress
    line per section."""
    if max_parity_clusters < 1:
        raise ValueError(f'max_parity_clusters must be at least 1, got {max_parity_clusters}.')
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    echo = echo or (lambda _: None)
    echo(f'Collecting the provenance graph of {ref(node)} ...')
    report = collect_report(node)
    document = _Document(directory, echo)
    root = report.root
    state = root.process_state.value if root.process_state else 'unknown'
    document.lines += [
        f'# Report on {ref(root)}', '',
        f'Workflow `{root.uuid}` ({state}, exit status {root.exit_status}), created {root.ctime:%Y-%m-%d %H:%M %Z}. '
        f'Generated by `aiida-qrnn report {root.pk}` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC '
        'from the nodes of its provenance graph only.', '',
        f'Found: {len(report.training)} finished training job(s), {len(report.selection)} active-learning round(s), '
        f'{len(report.properties)} properties run(s), {len(report.scans)} scan(s).', '',
    ]
    if report.ignored:
        document.text(f'Not used (did not finish successfully): {", ".join(report.ignored)}.')
    _training_section(report, document, max_parity_clusters)
    _selection_section(report, document)
    rows = _properties_section(report, document)
    _distributions_section(report, document)
    _scans_section(report, document)
    _write_csv(directory / 'properties.csv', rows, PROPERTY_CSV_COLUMNS)
    _write_csv(directory / 'training.csv', [_training_row(run) for run in report.training], TRAINING_CSV_COLUMNS)
    path = directory / 'report.md'
    path.write_text('\n'.join(document.lines).strip() + '\n')
    return path


def _write_csv(path: Path, rows: list[dict], columns: t.Sequence[str]) -> None:
    with path.open('w', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


# training --------------------------------------------------------------------------------------------------------
TRAINING_CSV_COLUMNS = ('round', 'stage', 'member', 'calculation_pk', 'calculation_uuid', 'model_pk', 'model_uuid',
                        'parent_model_pk', 'datasets', 'n_clusters', 'n_train', 'n_validation', 'epochs',
                        *(name for name, _, _ in METRIC_COLUMNS))


def _training_row(run: TrainingRun) -> dict:
    inputs = run.calculation.inputs
    return {
        'round': run.round, 'stage': run.stage, 'member': run.member, 'calculation_pk': run.calculation.pk,
        'calculation_uuid': run.calculation.uuid, 'model_pk': run.model.pk, 'model_uuid': run.model.uuid,
        'parent_model_pk': inputs.parent_model.pk if 'parent_model' in inputs else None,
        'datasets': ';'.join(f'{key}={dataset.pk}' for key, dataset in sorted(run.datasets.items())),
        'n_clusters': run.n_clusters, 'n_train': run.results.get('n_train'),
        'n_validation': run.results.get('n_validation'), 'epochs': run.results.get('epochs'),
        **{name: run.model.metrics.get(name) for name, _, _ in METRIC_COLUMNS},
    }


def _training_section(report: Report, document: _Document, max_parity_clusters: int) -> None:
    document.section('Training rounds and model metrics')
    if not report.training:
        document.skip('no finished TrainCalculation among the processes this workflow called.')
        document.section('Parity plots of the final model(s)')
        document.skip('no trained model to evaluate.')
        return
    document.text('Validation metrics are the ones each job stored on its model (its own validation clusters); '
                  '`n clusters` is the size of the training data set of the round (all `datasets` inputs).')
    rows = []
    for run in report.training:
        row = _training_row(run)
        rows.append([run.round, run.stage, run.member, ref(run.calculation), ref(run.model),
                     ', '.join(f'{key}: {ref(dataset)} ({dataset.n_clusters})'
                               for key, dataset in sorted(run.datasets.items())),
                     run.n_clusters, row['n_train'], row['n_validation'], row['epochs'],
                     *(None if row[name] is None else row[name] * scale for name, _, scale in METRIC_COLUMNS),
                     f'ModelData<{row["parent_model_pk"]}>' if row['parent_model_pk'] else '–'])
    document.table(['round', 'stage', 'member', 'job', 'model', 'datasets (n clusters)', 'n clusters', 'n train',
                    'n validation', 'epochs', *(title for _, title, _ in METRIC_COLUMNS), 'parent model'], rows)
    document.text(sources(node for run in report.training
                          for node in (run.calculation, run.model, *run.datasets.values())))

    document.section('Parity plots of the final model(s)')
    final = [run for run in report.training if run.round == report.training[-1].round]
    for run in final:
        if run.split is None:
            document.skip(f'{ref(run.calculation)} recorded no train/validation split.')
            continue
        _parity_figure(run, document, max_parity_clusters)


def _parity_figure(run: TrainingRun, document: _Document, max_clusters: int) -> None:
    from aiida_qrnn.core.training.plots import plot_parity
    from aiida_qrnn.core.training.trainer import error_metrics

    validation = np.sort(run.split.get_array('validation'))
    chosen = validation[np.unique(np.linspace(0, len(validation) - 1, min(max_clusters, len(validation)))
                                  .round().astype(int))] if len(validation) else validation
    if len(chosen) == 0:
        document.skip(f'{ref(run.calculation)} has no validation clusters.')
        return
    predictions = _predict(run, chosen)
    shown = {name: predictions[name] for name in ('energy', 'forces', 'n_atoms') if name in predictions}
    metrics = error_metrics(shown)
    path = plot_parity(shown, document.directory / f'parity_model_{run.model.pk}.png',
                       title=ref(run.model))
    details = [f'energy/atom RMSE {1000 * metrics["energy_per_atom_rmse"]:.4g} meV'] if 'energy' in shown else []
    if 'forces' in shown:
        details.append(f'force RMSE {metrics["forces_rmse"]:.4g} eV/Å')
    caption = (f'Parity of {ref(run.model)} (round {run.round}, {run.member}) on {len(chosen)} of its '
               f'{len(validation)} validation clusters (the split of {ref(run.calculation)}): '
               f'{", ".join(details)}.')
    document.figure(path, caption, [run.calculation, run.model, run.split, *run.datasets.values()])


def _predict(run: TrainingRun, indices: np.ndarray) -> dict:
    """Predictions of the run's model on ``indices`` of its datasets concatenated in key order, reading only those
    clusters from each file."""
    from aiida_qrnn.core.model.calculator import load_model
    from aiida_qrnn.core.training import FileClusters, predict

    model = load_model(run.model)
    keys = sorted(run.datasets)
    starts = np.concatenate([[0], np.cumsum([run.datasets[key].n_clusters for key in keys])])
    parts = []
    for key, start, stop in zip(keys, starts[:-1], starts[1:], strict=True):
        local = indices[(indices >= start) & (indices < stop)] - start
        if len(local):
            with run.datasets[key].as_path() as path:
                source = FileClusters(path)
                try:
                    parts.append(predict(model, source, local, batch_size=64))
                finally:
                    source.close()
    merged = {}
    for name, value in parts[0].items():
        if isinstance(value, tuple):
            merged[name] = tuple(np.concatenate([part[name][i] for part in parts]) for i in range(2))
        else:
            merged[name] = np.concatenate([part[name] for part in parts])
    return merged


# active learning ---------------------------------------------------------------------------------------------------
def _selection_section(report: Report, document: _Document) -> None:
    from aiida_qrnn.core.analysis.report_figures import plot_rho_f_histograms
    from aiida_qrnn.core.selection import plot_error_vs_rho_f

    document.section('Active learning: committee error ε against ρ^f')
    if not report.selection:
        document.skip('no ScoreCalculation or select_for_labelling among the processes this workflow called.')
        document.section('Active learning: ρ^f per round')
        document.skip('no committee scores.')
        return
    document.text('ε = |E_ref − E_committee mean| in eV per cluster (the paper\'s definition; per atom in the table), '
                  'for the candidates a LabelWorkChain of this workflow labelled (matched by cluster id); red: the '
                  'highest ρ^f, blue: the random part of the selection.')
    rows = []
    for entry in report.selection:
        rho_f = entry.scores.get_array('rho_f')
        known = np.flatnonzero(np.isfinite(entry.reference_energy))
        has_energy = 'energy' in entry.scores.get_arraynames()
        epsilon = (np.abs(entry.reference_energy - entry.scores.get_array('energy')) if has_energy
                   else np.full(len(rho_f), np.nan))
        per_atom = epsilon / entry.n_atoms
        top = np.setdiff1d(entry.selected, entry.random)
        nodes = [entry.selection, *entry.score_jobs, entry.candidates, entry.scores, *entry.references]
        if len(known) and has_energy:
            position = {index: row for row, index in enumerate(known)}
            path = plot_error_vs_rho_f(
                rho_f[known], epsilon[known], document.directory / f'error_vs_rho_f_round{entry.round}.png',
                selected=np.array([position[i] for i in top if i in position], dtype=int),
                random=np.array([position[i] for i in entry.random if i in position], dtype=int))
            document.figure(path, f'Round {entry.round}: ε against ρ^f of {len(known)} labelled candidates.', nodes)
        else:
            why = 'the scores carry no committee energy' if not has_energy else 'no candidate has a reference label'
            document.skip(f'round {entry.round}: no ε against ρ^f, {why} ({sources(nodes)})')
        rows.append([entry.round, ref(entry.selection) if entry.selection else '–',
                     ', '.join(ref(job) for job in entry.score_jobs) or '–',
                     f'{ref(entry.candidates)} ({len(rho_f)})', len(top), len(entry.random), len(known),
                     float(np.median(rho_f)) if len(rho_f) else None,
                     _mean(per_atom[np.intersect1d(top, known)]) * 1000, _mean(per_atom[np.intersect1d(entry.random,
                                                                                                     known)]) * 1000,
                     ', '.join(f'{ref(node)} ({node.level_of_theory})' for node in entry.references) or '–'])
    document.table(['round', 'selection', 'score job(s)', 'candidates (n)', 'n highest ρ^f', 'n random',
                    'n with reference', 'median ρ^f ((eV/Å)²)', 'mean ε/atom highest (meV)',
                    'mean ε/atom random (meV)', 'reference labels'], rows)

    document.section('Active learning: ρ^f per round')
    path = plot_rho_f_histograms({f'round {entry.round}': entry.scores.get_array('rho_f')
                                  for entry in report.selection}, document.directory / 'rho_f_histograms.png')
    document.figure(path, 'Distribution of ρ^f over the candidates of each round.',
                    [node for entry in report.selection for node in (entry.scores, *entry.score_jobs)])


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float('nan')


# properties --------------------------------------------------------------------------------------------------------
PROPERTY_CSV_COLUMNS = ('property', 'unit', 'n_units', 'method', 'value', 'uncertainty', 'n_replicas', 'experiment',
                        'experiment_source', 'deviation_from_experiment_percent', 'temperature_K', 'workchain_pk',
                        'workchain_uuid', 'node_pk', 'node_uuid', 'model_pk')


def _series_labels(runs: list[PropertiesRun]) -> dict[int, str]:
    """Workchain pk → series label: 'OPLS-AA', 'QRNN', or with several models 'QRNN <stage> (ModelData<pk>)', the
    stage being the call label of the training work chain that made the model (e.g. model_round_01)."""
    models = {run.model.uuid for run in runs if run.model is not None}
    labels = {}
    for run in runs:
        if run.model is None or len(models) == 1:
            labels[run.workchain.pk] = run.method
            continue
        creator = run.model.creator
        caller = creator.caller if creator is not None else None
        stage = _call_label(caller) if caller is not None and caller.process_type == TRAIN_WORKCHAIN else '–'
        labels[run.workchain.pk] = f'QRNN {stage} ({ref(run.model)})' if stage != '–' else f'QRNN ({ref(run.model)})'
    return labels


def _experiment(name: str, n_units: int, temperature_K: float) -> tuple[float | None, str | None]:
    from aiida_qrnn.core.analysis.experimental import PROPERTIES, experimental

    if name not in PROPERTIES:
        return None, None
    try:
        series = experimental(name, temperature_K)
    except ValueError:
        return None, None
    match = np.flatnonzero(series.n_units == n_units)
    return (float(series.values[match[0]]), series.source) if len(match) else (None, None)


def _property_entries(report: Report) -> tuple[dict[tuple[str, str, int], tuple[PropertiesRun, orm.Dict, dict]],
                                                list[str]]:
    """(label, property, n) → (run, node, entry); a later run replaces an earlier one of the same label and n (the
    replaced nodes are listed in the second return value)."""
    labels = _series_labels(report.properties)
    entries, replaced = {}, []
    for run in report.properties:
        for length, node in sorted(run.properties.items()):
            for name, entry in node.get_dict().items():
                key = (labels[run.workchain.pk], name, int(length.removeprefix('n')))
                if key in entries and entries[key][1].uuid != node.uuid:
                    replaced.append(f'{ref(entries[key][1])} ({key[0]}, n = {key[2]}) by {ref(node)}')
                entries[key] = (run, node, entry)
    return entries, sorted(set(replaced))


def _properties_section(report: Report, document: _Document) -> list[dict]:
    from aiida_qrnn.core.analysis.experimental import PROPERTIES, plot_property_vs_chain_length
    from aiida_qrnn.core.analysis.report_figures import plot_chain_length_series

    document.section('Properties against chain length')
    if not report.properties:
        document.skip('no finished PropertiesWorkChain among the processes this workflow called.')
        document.section('Properties table')
        document.skip('no properties (properties.csv has its header only).')
        return []
    entries, replaced = _property_entries(report)
    if replaced:
        document.text(f'Chain lengths computed twice by one method; the later run is shown: {"; ".join(replaced)}.')
    temperatures = sorted({run.temperature_K for run in report.properties})
    for name in sorted({key[1] for key in entries}, key=lambda name: list(PROPERTY_LABELS).index(name)
                       if name in PROPERTY_LABELS else len(PROPERTY_LABELS)):
        series: dict[str, tuple[list, list, list]] = {}
        nodes = []
        for (label, prop, n_units), (run, node, entry) in sorted(entries.items()):
            if prop == name:
                lengths, values, errors = series.setdefault(label, ([], [], []))
                lengths.append(n_units)
                values.append(entry['value'])
                errors.append(entry['uncertainty'])
                nodes += [run.workchain, node, run.model]
        path = document.directory / f'{name}_vs_chain_length.png'
        if name in PROPERTIES and len(temperatures) == 1:
            try:
                plot_property_vs_chain_length(name, series, path, temperature_K=temperatures[0])
                note = f'experiment at {temperatures[0]:g} K from `experimental.yaml`'
            except ValueError as exception:  # no tabulated data near this temperature
                plot_chain_length_series(series, path, ylabel=PROPERTY_LABELS[name])
                note = f'no experiment shown: {exception}'
        else:
            reason = ('no experimental data in `experimental.yaml`' if name not in PROPERTIES
                      else f'runs at several temperatures {temperatures} K')
            positive = all(value > 0 for _, values, _ in series.values() for value in values)
            plot_chain_length_series(series, path, ylabel=PROPERTY_LABELS.get(name, name), note=reason,
                                     log_y=name == 'self_diffusivity' and positive)
            note = reason
        document.figure(path, f'{name.replace("_", " ")} against chain length, mean ± std over replicas ({note}).',
                        nodes)

    document.section('Properties table')
    rows, origins = [], []
    for (label, name, n_units), (run, node, entry) in sorted(entries.items(), key=lambda item: (
            item[0][1], item[0][2], item[0][0])):
        origins.append(f'{ref(node)} of {ref(run.workchain)}')
        experiment, source = _experiment(name, n_units, run.temperature_K)
        deviation = None if experiment is None else 100.0 * (entry['value'] - experiment) / experiment
        rows.append({'property': name, 'unit': entry.get('unit'), 'n_units': n_units, 'method': label,
                     'value': entry['value'], 'uncertainty': entry['uncertainty'],
                     'n_replicas': entry.get('n_replicas'), 'experiment': experiment, 'experiment_source': source,
                     'deviation_from_experiment_percent': deviation,
                     'temperature_K': run.temperature_K, 'workchain_pk': run.workchain.pk,
                     'workchain_uuid': run.workchain.uuid, 'node_pk': node.pk, 'node_uuid': node.uuid,
                     'model_pk': run.model.pk if run.model is not None else None})
    document.text('Mean ± standard deviation over replicas; the same rows are in `properties.csv` (with uuids).')
    document.table(['property', 'n', 'method', 'value', '± std', 'unit', 'replicas', 'experiment', 'Δ (%)',
                    'T (K)', 'from'],
                   [[row['property'], row['n_units'], row['method'], row['value'], row['uncertainty'], row['unit'],
                     row['n_replicas'], row['experiment'], row['deviation_from_experiment_percent'],
                     row['temperature_K'], origin] for row, origin in zip(rows, origins, strict=True)])
    document.text(sources(source for run, node, _ in (entries[key] for key in sorted(entries))
                          for source in (run.workchain, node, run.model)))
    return rows


def _distributions_section(report: Report, document: _Document) -> None:
    from aiida_qrnn.core.analysis.properties import DISTRIBUTIONS
    from aiida_qrnn.core.analysis.report_figures import plot_distribution_panels

    document.section('Distributions: R_g, OCCO torsion, O-H g(r)')
    if not any(run.distributions for run in report.properties):
        document.skip('no distributions output of a PropertiesWorkChain.')
        return
    labels = _series_labels(report.properties)
    for name, (x_name, _, y_name) in DISTRIBUTIONS.items():
        panels: dict[str, dict] = {}
        nodes = []
        for run in report.properties:
            for length, node in sorted(run.distributions.items()):
                arrays = node.get_arraynames()
                if f'{name}__{y_name}' not in arrays:
                    continue
                spread = node.get_array(f'{name}__{y_name}_std') if f'{name}__{y_name}_std' in arrays else None
                panels.setdefault(f'n = {int(length.removeprefix("n"))}', {})[labels[run.workchain.pk]] = (
                    node.get_array(f'{name}__{x_name}'), node.get_array(f'{name}__{y_name}'), spread)
                nodes += [run.workchain, node]
        if not panels:
            document.skip(f'no {name} distribution in the distributions outputs.')
            continue
        panels = dict(sorted(panels.items(), key=lambda item: int(item[0].removeprefix('n = '))))
        xlabel, ylabel = DISTRIBUTION_AXES.get(name, (x_name, y_name))
        path = plot_distribution_panels(panels, document.directory / f'{name}_distribution.png', xlabel=xlabel,
                                        ylabel=ylabel)
        document.figure(path, f'{name.replace("_", " ")} distribution per chain length, mean ± std over replicas.',
                        nodes)


# scans -------------------------------------------------------------------------------------------------------------
def _scan_formula(scan: ScanRun) -> str:
    """Chemical formula of the scanned molecules (the first scan geometry)."""
    clusters = scan.workchain.outputs.clusters if 'clusters' in scan.workchain.outputs else None
    return clusters.get_atoms(0).get_chemical_formula() if clusters is not None else 'unknown molecules'


def _scans_section(report: Report, document: _Document) -> None:
    from aiida_qrnn.core.analysis.scans import plot_scan
    from aiida_qrnn.core.units import EV_TO_KCAL_PER_MOL

    document.section('Pair and torsion scans')
    if not report.scans:
        document.skip('no finished PairScanWorkChain or TorsionScanWorkChain among the processes this workflow '
                      'called.')
        return
    rows = []
    for scan in report.scans:
        names = scan.curves.get_arraynames()
        x_name = next(name for name in names if not name.endswith('_relative_energy_eV'))
        x = scan.curves.get_array(x_name)
        labels = scan.curves.base.attributes.get('labels')
        curves = {label: scan.curves.get_array(f'{key}_relative_energy_eV')
                  for key, label in zip(('reference', 'classical', 'qrnn'), labels, strict=False)}
        title = f'{scan.kind} scan of {_scan_formula(scan)} ({ref(scan.workchain)})'
        xlabel = 'centre-of-mass distance (Å)' if scan.kind == 'pair' else 'OCCO dihedral (degree)'
        path = plot_scan(x, curves, document.directory / f'{scan.kind}_scan_{scan.workchain.pk}.png', xlabel=xlabel,
                         title=title, ymax_kcal_per_mol=PAIR_SCAN_YMAX_KCAL_PER_MOL if scan.kind == 'pair' else None)
        zero = 'farthest point' if scan.kind == 'pair' else 'minimum'
        document.figure(path, f'{title}: energies relative to the {zero}.', [scan.workchain, scan.curves, scan.model])
        reference = next(iter(curves.values())) * EV_TO_KCAL_PER_MOL
        # Pair scans: compare where the plot shows the curves, not on the repulsive wall that would dominate.
        window = reference <= PAIR_SCAN_YMAX_KCAL_PER_MOL if scan.kind == 'pair' else np.ones(len(x), bool)
        for label, energies in curves.items():
            energies = energies * EV_TO_KCAL_PER_MOL
            rmse = float(np.sqrt(np.mean(np.square(energies[window] - reference[window]))))
            extreme = int(np.argmin(energies) if scan.kind == 'pair' else np.argmax(energies))
            rows.append([ref(scan.workchain), label, float(energies[extreme]), float(x[extreme]), rmse,
                         ref(scan.curves), ref(scan.model) if scan.model else '–'])
    document.table(['scan', 'engine', 'well depth / barrier (kcal/mol)', 'at', 'RMSE vs reference (kcal/mol)',
                    'curves', 'model'], rows)
    document.text('Pair scans: the minimum of each curve (the well), RMSE over the points where the reference is at '
                  f'most {PAIR_SCAN_YMAX_KCAL_PER_MOL:g} kcal/mol; torsion scans: the maximum (the highest barrier), '
                  'RMSE over all points. `at` is the distance (Å) or dihedral (degree).')

