"""Properties from MD runs: density, self-diffusivity, heat capacity, chain size, torsions, pair structure.

Each module is one analysis: a function on arrays (ASE units in, units in the names out) and a PNG plot.
See ``docs/md-and-analysis.md`` for the formulas and what the tests check.
"""
