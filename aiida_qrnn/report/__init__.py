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

The two halves are separate modules: :mod:`.collect` walks the graph into a :class:`Report`, :mod:`.write` renders it.
"""

from .collect import (
    PropertiesRun,
    Report,
    ReportError,
    ScanRun,
    SelectionRound,
    TrainingRun,
    collect_report,
    load_workflow,
    ref,
)
from .write import write_report

__all__ = ('PropertiesRun', 'Report', 'ReportError', 'ScanRun', 'SelectionRound', 'TrainingRun', 'collect_report',
           'load_workflow', 'ref', 'write_report')
