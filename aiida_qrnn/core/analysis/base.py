"""The contract of a trajectory analysis, after MDAnalysis's ``analysis/base.py``.

A subclass validates its fixed parameters in ``__init__``; :meth:`AnalysisBase.run` then selects frames
(``start:stop:step``) and calls

* ``_prepare()`` once: allocate ``self.results.*`` sized by ``self.n_frames``;
* ``_single_frame()`` per frame: fill row ``self._frame_index`` from ``self._frame`` (a :class:`~.frames.Frame`);
* ``_conclude()`` once: reduce.

``self.frames`` (indices in the trajectory) and ``self.times_fs`` are those of the selected frames.
:class:`AnalysisCollection` runs several analyses of one trajectory in a single pass over its frames (MDAnalysis's
``AnalysisCollection``), so that a replica's analyses read its trajectory once.
"""

from __future__ import annotations

import typing as t

import numpy as np

from .frames import Frame, FrameReader

__all__ = ('AnalysisBase', 'AnalysisCollection', 'Results')


class Results(dict):
    """The results of an analysis: a dict whose keys are also attributes (``results.msd_A2``)."""

    def __getattr__(self, name: str) -> t.Any:
        try:
            return self[name]
        except KeyError as exception:
            raise AttributeError(f'no result {name!r}; results are {sorted(self)}') from exception

    def __setattr__(self, name: str, value: t.Any) -> None:
        self[name] = value


class AnalysisBase:
    """One analysis of one trajectory (see the module docstring for the contract)."""

    def __init__(self, trajectory: FrameReader) -> None:
        self._trajectory = trajectory
        self.results = Results()
        self.n_frames = 0
        self.frames = np.zeros(0, dtype=np.int64)
        self.times_fs = np.zeros(0)
        self._frame_index = -1
        self._frame: Frame | None = None

    def run(self, start: int | None = None, stop: int | None = None, step: int | None = None) -> t.Self:
        """Analyse frames ``start:stop:step`` of the trajectory; returns the analysis (results in ``.results``)."""
        AnalysisCollection(self).run(start, stop, step)
        return self

    def _setup_frames(self, indices: range) -> None:
        self.n_frames = len(indices)
        self.frames = np.asarray(indices, dtype=np.int64)
        self.times_fs = self._trajectory.times_fs[self.frames]
        self.results = Results()

    def _prepare(self) -> None:
        """Allocate the results (nothing by default)."""

    def _single_frame(self) -> None:
        """Analyse ``self._frame``, the ``self._frame_index``-th selected frame."""
        raise NotImplementedError(f'{type(self).__name__} does not define _single_frame.')

    def _conclude(self) -> None:
        """Reduce the per-frame results (nothing by default)."""


class AnalysisCollection:
    """Analyses of the same trajectory, run in one pass over its frames."""

    def __init__(self, *analyses: AnalysisBase) -> None:
        if not analyses:
            raise ValueError('an analysis collection needs at least one analysis.')
        trajectories = {id(analysis._trajectory) for analysis in analyses}
        if len(trajectories) > 1:
            raise ValueError('the analyses of a collection must all analyse the same trajectory (FrameReader).')
        self.analyses = analyses
        self._trajectory = analyses[0]._trajectory

    def run(self, start: int | None = None, stop: int | None = None, step: int | None = None) -> None:
        """Each analysis's ``_prepare``, then ``_single_frame`` of every analysis per frame, then ``_conclude``."""
        indices = self._trajectory.frame_indices(start, stop, step)
        if len(indices) == 0:
            raise ValueError(f'{self._trajectory.name}: no frames selected (start={start}, stop={stop}, step={step}) '
                             f'of {self._trajectory.n_frames}.')
        for analysis in self.analyses:
            analysis._setup_frames(indices)
            analysis._prepare()
        for position, frame in enumerate(self._trajectory.iterate(indices)):
            for analysis in self.analyses:
                analysis._frame_index, analysis._frame = position, frame
                analysis._single_frame()
        for analysis in self.analyses:
            analysis._conclude()
