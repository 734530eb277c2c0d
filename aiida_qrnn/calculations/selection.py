"""Selecting clusters to label, as a calcfunction: the seed is an input, so a selection is reproducible and cached."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_qrnn.core.selection import select_by_trust_levels, select_top_k_plus_random
from aiida_qrnn.data.cluster_set import ClusterSetData

__all__ = ('select_for_labelling', 'validate_selection_parameters')

RULES = {
    'top_k_random': {'k', 'k_random', 'seed', 'random_kinds'},
    'trust_levels': {'lower', 'upper', 'max_selected', 'seed'},
}


def validate_selection_parameters(parameters: dict) -> str | None:
    """A message naming the bad key, or ``None``."""
    rule = parameters.get('rule')
    if rule not in RULES:
        return f'parameters.rule must be one of {sorted(RULES)}, got {rule!r}.'
    unknown = sorted(set(parameters) - RULES[rule] - {'rule'})
    if unknown:
        return f'parameters: unknown keys {unknown} for rule {rule!r}; known: {sorted(RULES[rule])}.'
    required = {'top_k_random': ('k', 'k_random'), 'trust_levels': ('lower', 'upper')}[rule]
    missing = [key for key in required if key not in parameters]
    if missing:
        return f'parameters: rule {rule!r} needs {missing}.'
    return None


@calcfunction
def select_for_labelling(clusters: ClusterSetData, scores: orm.ArrayData, parameters: orm.Dict) -> dict:
    """Pick the clusters to label from committee ``scores`` (the output of ``ScoreCalculation``).

    ``parameters``: ``rule`` = ``top_k_random`` (the paper: ``k`` highest ρ^f plus ``k_random`` random ones, the
    random part drawn from ``random_kinds`` only if given, e.g. ``['conformational']``) or ``trust_levels``
    (``lower`` <= max force deviation < ``upper`` eV/Å, at most ``max_selected``); ``seed`` (default 0).
    Outputs ``clusters`` (the selection, kind set to ``active-learning``, source keeps where each came from),
    ``indices`` (positions in the candidate set) and, for the paper's rule, ``random_indices``.
    """
    values = parameters.get_dict()
    message = validate_selection_parameters(values)
    if message:
        raise ValueError(message)
    arrays = clusters.get_arrays()
    seed = int(values.get('seed', 0))
    outputs = {}
    if values['rule'] == 'top_k_random':
        kinds = values.get('random_kinds')
        eligible_random = np.ones(arrays.n_clusters, bool) if kinds is None else np.isin(arrays.kind.astype(str), kinds)
        top = select_top_k_plus_random(scores.get_array('rho_f'), int(values['k']), 0, seed=seed)['top']
        remaining = eligible_random.copy()
        remaining[top] = False
        random = select_top_k_plus_random(np.zeros(arrays.n_clusters), 0, int(values['k_random']), seed=seed,
                                          eligible=remaining)['random']
        chosen = np.sort(np.concatenate([top, random]))
        outputs['random_indices'] = orm.List(random.tolist())
    else:
        chosen = select_by_trust_levels(scores.get_array('max_force_deviation'), float(values['lower']),
                                        float(values['upper']), max_selected=values.get('max_selected'), seed=seed)
    if len(chosen) == 0:
        raise ValueError('the selection is empty: no candidate satisfies the rule.')
    selected = arrays.select(chosen)
    selected.kind = np.array(['active-learning'] * len(chosen), dtype=object)
    outputs['clusters'] = ClusterSetData.from_arrays(selected.validate(), level_of_theory=clusters.level_of_theory)
    outputs['indices'] = orm.List(chosen.tolist())
    return outputs
