"""``TrainParser``: model, per-epoch metrics, plots and outcome of a ``TrainCalculation``."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.engine import ExitCode

from aiida_qrnn.jobs.train import EXIT_DIVERGED, EXIT_WALLTIME, JOB, PLOTS
from aiida_qrnn.parsers.base import JobParser

__all__ = ('TrainParser', 'read_metrics')


def read_metrics(text: str) -> dict[str, np.ndarray]:
    """metrics.csv -> one float array per column."""
    rows = np.genfromtxt(io.StringIO(text), delimiter=',', names=True, dtype=np.float64, ndmin=1)
    return {name: np.asarray(rows[name]) for name in rows.dtype.names}


class TrainParser(JobParser):
    """Attach what the job wrote, then map ``results.json`` onto 0, 400 (walltime), 410 or 510 (diverged).

    The ``model`` node carries the validation MAE/RMSE of exactly its own weights as ``metrics``. A job killed
    by the scheduler leaves no ``results.json``; with a ``checkpoint.pt`` it counts as a walltime stop (400),
    which ``TrainWorkChain`` continues.
    """

    def parse(self, **kwargs) -> ExitCode | None:
        from aiida_qrnn.data.model import ModelData

        failure = self.job_failure()
        if failure is not None:
            return failure
        repository = self.retrieved.base.repository
        names = self.retrieved_names
        outputs = JOB.outputs
        results_file = outputs['results']
        try:
            results = json.loads(repository.get_object_content(results_file)) if results_file in names else None
            if outputs['metrics'] in names:
                metrics = orm.ArrayData()
                for name, values in read_metrics(repository.get_object_content(outputs['metrics'])).items():
                    metrics.set_array(name, values)
                self.out('metrics', metrics)
            if outputs['split'] in names:
                with repository.open(outputs['split'], 'rb') as handle, np.load(handle) as split:
                    arrays = orm.ArrayData()
                    for name in ('train', 'validation'):
                        arrays.set_array(name, split[name])
                self.out('split', arrays)
            for label in PLOTS:
                filename = outputs[label]
                if filename in names:
                    with repository.open(filename, 'rb') as handle:
                        self.out(f'plots.{label}', orm.SinglefileData(handle, filename=filename))
        except Exception as exception:  # numpy, json and zip raise many types for malformed files
            return self.output_unreadable(', '.join(sorted(names)), exception)

        if results is None:
            if outputs['checkpoint'] in names:
                return self.exit_codes.ERROR_OUT_OF_WALLTIME.format(epoch='unknown (killed before results.json)')
            return self.output_missing(results_file)
        self.out('output_parameters', orm.Dict(results))
        if results['status'] == EXIT_WALLTIME:
            return self.exit_codes.ERROR_OUT_OF_WALLTIME.format(epoch=results['epochs'])
        if results['status'] == EXIT_DIVERGED:
            return self.exit_codes.ERROR_DIVERGED.format(message=results['message'])
        model_file = outputs['model']
        if model_file not in names:
            return self.output_missing(model_file)
        try:
            with repository.as_path(model_file) as path:
                model = ModelData.from_file(path, metrics=results['validation'])
        except Exception as exception:
            return self.output_unreadable(model_file, exception)
        self.out('model', model)
        return None
