"""``TrainParser``: model, per-epoch metrics, plots and outcome of a ``TrainCalculation``."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_qrnn.cli.exec_training import (
    ERROR_FILE,
    EXIT_BAD_INPUT,
    EXIT_DIVERGED,
    EXIT_WALLTIME,
    MODEL_FILE,
    PLOT_FILES,
    RESULTS_FILE,
    SPLIT_FILE,
)
from aiida_qrnn.core.training.trainer import CHECKPOINT_FILE, METRICS_FILE

__all__ = ('TrainParser', 'read_metrics')


def read_metrics(text: str) -> dict[str, np.ndarray]:
    """metrics.csv -> one float array per column."""
    rows = np.genfromtxt(io.StringIO(text), delimiter=',', names=True, dtype=np.float64, ndmin=1)
    return {name: np.asarray(rows[name]) for name in rows.dtype.names}


class TrainParser(Parser):
    """Attach what the job wrote, then map ``results.json`` onto 0, 400 (walltime), 410 or 510 (diverged).

    The ``model`` node carries the validation MAE/RMSE of exactly its own weights as ``metrics``. A job killed
    by the scheduler leaves no ``results.json``; with a ``checkpoint.pt`` it counts as a walltime stop (400),
    which ``TrainWorkChain`` continues.
    """

    def parse(self, **kwargs) -> ExitCode | None:
        from aiida_qrnn.data.model import ModelData

        repository = self.retrieved.base.repository
        names = set(repository.list_object_names())
        if ERROR_FILE in names:
            error = json.loads(repository.get_object_content(ERROR_FILE))
            if error.get('status') == EXIT_BAD_INPUT:
                return self.exit_codes.ERROR_INVALID_INPUT.format(message=error['message'])
        try:
            results = json.loads(repository.get_object_content(RESULTS_FILE)) if RESULTS_FILE in names else None
            if METRICS_FILE in names:
                metrics = orm.ArrayData()
                for name, values in read_metrics(repository.get_object_content(METRICS_FILE)).items():
                    metrics.set_array(name, values)
                self.out('metrics', metrics)
            if SPLIT_FILE in names:
                with repository.open(SPLIT_FILE, 'rb') as handle, np.load(handle) as split:
                    arrays = orm.ArrayData()
                    for name in ('train', 'validation'):
                        arrays.set_array(name, split[name])
                self.out('split', arrays)
            for label, filename in PLOT_FILES.items():
                if filename in names:
                    with repository.open(filename, 'rb') as handle:
                        self.out(f'plots.{label}', orm.SinglefileData(handle, filename=filename))
        except Exception as exception:  # numpy, json and zip raise many types for malformed files
            return self.exit_codes.ERROR_READING_OUTPUT.format(filename=', '.join(sorted(names)), exception=exception)

        if results is None:
            if CHECKPOINT_FILE in names:
                return self.exit_codes.ERROR_WALLTIME.format(epoch='unknown (killed before results.json)')
            return self.exit_codes.ERROR_OUTPUT_FILES_MISSING.format(filename=RESULTS_FILE)
        self.out('output_parameters', orm.Dict(results))
        if results['status'] == EXIT_WALLTIME:
            return self.exit_codes.ERROR_WALLTIME.format(epoch=results['epochs'])
        if results['status'] == EXIT_DIVERGED:
            return self.exit_codes.ERROR_DIVERGED.format(message=results['message'])
        if MODEL_FILE not in names:
            return self.exit_codes.ERROR_OUTPUT_FILES_MISSING.format(filename=MODEL_FILE)
        try:
            with repository.as_path(MODEL_FILE) as path:
                model = ModelData.from_file(path)
            model.set_model(model.get_state_dict(), model.config, model.elements, results['validation'])
        except Exception as exception:
            return self.exit_codes.ERROR_READING_OUTPUT.format(filename=MODEL_FILE, exception=exception)
        self.out('model', model)
        return None
