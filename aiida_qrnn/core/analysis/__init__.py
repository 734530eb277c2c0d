"""Properties from MD runs: density, self-diffusivity, heat capacity, chain size, torsions, pair structure.

Each module is one property: functions on arrays (ASE units in, units in the names out), a PNG plot and, for the
quantities computed frame by frame, an analysis class with MDAnalysis's contract (:mod:`.base`: ``run(start, stop,
step)`` → ``_prepare``/``_single_frame``/``_conclude``, results in ``.results``) over the frame iterator of
:mod:`.frames`. See ``docs/md-and-analysis.md`` for the formulas and what the tests check, ``docs/properties.md`` for
how the analyses run as a job.
"""
