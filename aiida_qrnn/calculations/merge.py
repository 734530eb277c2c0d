"""The merging calcfunction's former home: it lives with the other cutting and joining calcfunctions in
:mod:`aiida_qrnn.calculations.functions.cluster_sets`; this import path stays until its last user moves."""

from aiida_qrnn.calculations.functions.cluster_sets import merge_cluster_sets

__all__ = ('merge_cluster_sets',)
