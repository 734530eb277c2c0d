"""``ScoreWorkChain`` (``qrnn.score.sharded``): a committee's ρ^f on a candidate set of any size, in shards.

The paper scores ~800 000 candidates per round. One ``ScoreCalculation`` bounds its memory by batching, but one job
for all of them is one long job on one device; here the set is cut into shards of ``shard_size`` clusters
(``split_cluster_set``), each scored by its own job in parallel, and the scores are put back together in input
order (``concatenate_scores``). A set no larger than one shard is scored directly, without copies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction

from aiida_qrnn.calculations.functions.cluster_sets import split_cluster_set
from aiida_qrnn.calculations.score import ScoreCalculation
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.workchains.protocols.utils import ProtocolMixin

__all__ = ('ScoreWorkChain', 'concatenate_scores')

SCORE_ARRAYS = ('rho_f', 'max_force_deviation', 'energy_std', 'energy')


@calcfunction
def concatenate_scores(**shards: orm.ArrayData) -> orm.ArrayData:
    """The shards' score arrays joined in the order of their names (``shard_0000``, ...)."""
    scores = orm.ArrayData()
    for name in SCORE_ARRAYS:
        scores.set_array(name, np.concatenate([shards[key].get_array(name) for key in sorted(shards)]))
    return scores


class ScoreWorkChain(ProtocolMixin, WorkChain):
    """Score ``clusters`` with a committee, one ``ScoreCalculation`` per shard of ``shard_size`` clusters."""

    _protocol_kind = 'score'

    @classmethod
    def define(cls, spec) -> None:
        super().define(spec)
        spec.input('clusters', valid_type=ClusterSetData, help='The candidate clusters.')
        spec.expose_inputs(ScoreCalculation, namespace='score', exclude=('clusters',),
                           namespace_options={'help': 'Inputs of every ScoreCalculation: code, models, parameters.'})
        spec.input('shard_size', valid_type=orm.Int, default=lambda: orm.Int(100_000),
                   validator=lambda value, _: None if value.value >= 1 else 'shard_size must be at least 1.',
                   help='Clusters per job.')
        spec.outline(cls.run_shards, cls.results)
        spec.output('scores', valid_type=orm.ArrayData, help='rho_f, max_force_deviation, energy_std, energy.')
        spec.exit_code(410, 'ERROR_SHARD_FAILED', message='Shard {shard}: {label}<{pk}> failed: [{status}] {message}')

    @classmethod
    def get_builder_from_protocol(
        cls, code: orm.AbstractCode, protocol: str | None = None, *, clusters: ClusterSetData | None = None,
        models: dict[str, ModelData] | None = None, overrides: dict[str, Any] | None = None,
    ):
        """A builder from ``protocols/score.yaml`` for aiida-qrnn-exec ``code``; data may be given later."""
        return cls._builder_from_protocol(protocol, overrides, {'clusters': clusters, 'score': {
            'code': code, 'models': models}})

    def run_shards(self):
        """Submit one job per shard (the whole set when it fits one shard)."""
        clusters = self.inputs.clusters
        if clusters.n_clusters <= self.inputs.shard_size.value:
            shards = {'shard_0000': clusters}
        else:
            shards = split_cluster_set(clusters, self.inputs.shard_size)
        inputs = self.exposed_inputs(ScoreCalculation, 'score')
        submitted = {}
        for name, shard in sorted(shards.items()):
            metadata = {**inputs.get('metadata', {}), 'call_link_label': name}
            submitted[name] = self.submit(ScoreCalculation, **{**inputs, 'clusters': shard, 'metadata': metadata})
        self.report(f'scoring {clusters.n_clusters} clusters in {len(submitted)} job(s)')
        return ToContext(**submitted)

    def results(self):
        names = sorted(key for key in self.ctx if key.startswith('shard_'))
        for name in names:
            node = self.ctx[name]
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_SHARD_FAILED.format(shard=name, label=node.process_label, pk=node.pk,
                                                                 status=node.exit_status, message=node.exit_message)
        if len(names) == 1:
            self.out('scores', self.ctx[names[0]].outputs.scores)
        else:
            self.out('scores', concatenate_scores(**{name: self.ctx[name].outputs.scores for name in names}))
        return None
