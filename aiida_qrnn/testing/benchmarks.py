"""The scripts of ``benchmarks/`` loaded as modules, for the tests that run their ``--quick`` modes.

The scripts are not a package (they are run as files), so a test loads one by path; its name goes into
``sys.modules`` while it is used (dataclasses look their module up by name) and ``benchmarks/`` onto ``sys.path``
(a script imports its neighbours, e.g. ``bench_model``). Both are undone afterwards.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ('BENCHMARKS', 'loaded_benchmark')

#: The repository's benchmark scripts (present in a source checkout, not in an installed wheel).
BENCHMARKS = pathlib.Path(__file__).parents[2] / 'benchmarks'


@contextmanager
def loaded_benchmark(name: str) -> Iterator[types.ModuleType]:
    """The module of ``benchmarks/<name>.py``; modules and path entries it added are removed on exit."""
    path = BENCHMARKS / f'{name}.py'
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no such benchmark script (the benchmarks ship with the source checkout).')
    modules, sys_path = set(sys.modules), list(sys.path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path[:] = sys_path
        for added in set(sys.modules) - modules:
            if added.startswith('bench'):
                sys.modules.pop(added, None)
